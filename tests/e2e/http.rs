//! The beacon API's answers, request by request: status codes, headers,
//! error bodies, and never a 5xx or a cookie, whatever comes in.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{BROWSER_UA, Conn, Server, read_pages};

const OK_BODY: &str = r#"{"n":"pageview","u":"https://example.com/ok","d":"example.com"}"#;

#[test]
fn answers_follow_the_beacon_api() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--site", "example.com"]);
    let long_path = format!(
        r#"{{"u":"https://example.com/{}","d":"example.com"}}"#,
        "a".repeat(10_000)
    );
    let huge = format!(
        r#"{{"u":"https://example.com/","d":"example.com","p":"{}"}}"#,
        "x".repeat(17_000)
    );
    let secret_url = r#"{"u":"ftp://example.com/?token=leak-me-not","d":"example.com"}"#;
    let bad_number = r#"{"u":"https://example.com/n","d":"example.com","w":1e999999}"#;
    let nested = format!(
        r#"{{"u":"https://example.com/deep","d":"example.com","p":{}{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let nested_unclosed = format!(
        r#"{{"u":"https://example.com/deep","p":{}"#,
        "{\"a\":".repeat(3000)
    );
    let huge_number =
        r#"{"u":"https://example.com/n","d":"example.com","w":123456789012345678901234567890}"#;
    let ua = (
        "User-Agent",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    );

    // (method, target, content type, body, status, dropped reason)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, Option<&'a str>);
    let cases: Vec<Case> =
        vec![
        (
            "POST",
            "/api/event",
            "text/plain",
            // Before this client has viewed a page: no visit to count it for.
            br#"{"n":"engagement","u":"https://example.com/","d":"example.com","sd":50,"e":3000}"#
                .to_vec(),
            202,
            Some("no-visit"),
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            OK_BODY.into(),
            202,
            None,
        ),
        (
            "POST",
            "/api/event",
            "application/json",
            OK_BODY.into(),
            202,
            None,
        ),
        (
            "POST",
            "/api/event",
            "application/x-www-form-urlencoded",
            OK_BODY.into(),
            202,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            // A custom event: counted as an event, never as a view.
            br#"{"n":"signup","u":"https://example.com/","d":"example.com"}"#.to_vec(),
            202,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            // For the visit this client's views above opened: counted.
            br#"{"n":"engagement","u":"https://example.com/","d":"example.com","sd":50,"e":3000}"#
                .to_vec(),
            202,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            br#"{"u":"https://other.org/","d":"other.org"}"#.to_vec(),
            202,
            Some("unknown-site"),
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            br#"{"u":"https://evil.net/","d":"example.com"}"#.to_vec(),
            202,
            Some("url-not-on-site"),
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            huge_number.into(),
            202,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            b"{not json".to_vec(),
            400,
            None,
        ),
        ("POST", "/api/event", "text/plain", b"".to_vec(), 400, None),
        (
            "POST",
            "/api/event",
            "text/plain",
            b"[]".to_vec(),
            400,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            br#"{"d":"example.com"}"#.to_vec(),
            400,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            br#"{"u":"https://example.com/"}"#.to_vec(),
            400,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            br#"{"u":"data:text/html,hi","d":"example.com"}"#.to_vec(),
            400,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            secret_url.into(),
            400,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            b"{\"u\":\"https://example.com/\xff\xfe\",\"d\":\"example.com\"}".to_vec(),
            400,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            long_path.into(),
            400,
            None,
        ),
        (
            "POST",
            "/api/event",
            "text/plain",
            bad_number.into(),
            400,
            None,
        ),
        ("POST", "/api/event", "text/plain", huge.into(), 413, None),
        ("POST", "/api/event", "text/plain", nested.into(), 202, None),
        ("POST", "/api/event", "text/plain", nested_unclosed.into(), 400, None),
        (
            "GET",
            "/api/event?d=example.com&u=https%3A%2F%2Fexample.com%2Fpixel",
            "",
            vec![],
            202,
            None,
        ),
        ("GET", "/api/event?d=example.com", "", vec![], 400, None),
        ("OPTIONS", "/api/event", "", vec![], 204, None),
        ("PUT", "/api/event", "text/plain", OK_BODY.into(), 405, None),
        ("GET", "/healthz", "", vec![], 200, None),
        ("GET", "/metrics", "", vec![], 404, None),
        ("GET", "/nope", "", vec![], 404, None),
    ];
    for (method, target, ct, body, status, dropped) in &cases {
        // A fresh connection each: a 413 closes its connection.
        let mut conn = Conn::open(server.addr);
        let mut headers = vec![ua];
        if !ct.is_empty() {
            headers.push(("Content-Type", ct));
        }
        let reply = conn.send(method, target, &headers, body);
        let what = format!(
            "{method} {target} {}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert_eq!(reply.status, *status, "{what}: {}", reply.text());
        assert_eq!(reply.header("x-footfall-dropped"), *dropped, "{what}");
        // A page's script may read the reason, where there is one.
        let exposed = reply.header("access-control-expose-headers");
        assert_eq!(exposed, dropped.map(|_| "X-Footfall-Dropped"), "{what}");
        assert!(reply.header("set-cookie").is_none(), "{what}");
        if target.starts_with("/api/event") {
            assert_eq!(
                reply.header("access-control-allow-origin"),
                Some("*"),
                "{what}"
            );
        }
        if (400..500).contains(status) {
            assert_eq!(
                reply.header("content-type"),
                Some("application/json"),
                "{what}"
            );
            let text = reply.text();
            assert!(
                text.starts_with("{\"error\":\"") && text.ends_with("\"}"),
                "{what}: {text}"
            );
            assert!(
                !text.contains("leak-me-not") && !text.contains("ftp:"),
                "errors never echo input: {text}"
            );
        }
    }

    // The pixel is a GIF that no cache keeps.
    let reply = Conn::open(server.addr).send(
        "GET",
        "/api/event?d=example.com&u=https%3A%2F%2Fexample.com%2Fpx",
        &[ua],
        b"",
    );
    assert_eq!(reply.header("content-type"), Some("image/gif"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(reply.body.starts_with(b"GIF89a"));

    // The preflight allows a beacon from any page.
    let reply = Conn::open(server.addr).send(
        "OPTIONS",
        "/api/event",
        &[
            ("Origin", "https://example.com"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert!(
        reply
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );

    // The tracker, plain and gzipped (under 1 KB).
    let plain = Conn::open(server.addr).send("GET", "/script.js", &[], b"");
    assert_eq!(plain.status, 200);
    assert!(plain.header("content-type").unwrap().contains("javascript"));
    assert!(plain.text().contains("sendBeacon"));
    let gz = Conn::open(server.addr).send(
        "GET",
        "/script.js",
        &[("Accept-Encoding", "gzip, deflate, br")],
        b"",
    );
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(gz.body.len() < 1024, "{} bytes gzipped", gz.body.len());

    let metrics = server.metrics();
    for line in [
        "footfall_events_total 1",
        "footfall_beacons_dropped_total{reason=\"unknown-site\"} 1",
        "footfall_beacons_rejected_total{reason=\"body-too-large\"} 1",
        "footfall_beacons_rejected_total{reason=\"invalid-url\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    assert!(server.stop().success());
    // Counted: three POSTs of /ok, the huge-number one, the deeply nested
    // one, two pixels.
    let rows = read_pages(tmp.path());
    let views = |page: &str| {
        rows.iter()
            .filter(|r| r.page == page)
            .map(|r| r.views)
            .sum::<i64>()
    };
    assert_eq!(views("/ok"), 3);
    assert_eq!(views("/n"), 1);
    assert_eq!(views("/pixel") + views("/px"), 2);
    assert_eq!(views("/deep"), 1);
    assert_eq!(rows.iter().map(|r| r.views).sum::<i64>(), 7);
}

#[test]
fn oversized_bodies_are_refused_before_they_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]);

    // A declared 100 MB body gets its 413 at once, without sending a byte of it.
    let mut conn = Conn::open(server.addr);
    let reply =
        conn.raw(b"POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n");
    assert_eq!(reply.status, 413);

    // A chunked body with no declared length is cut off at 16 KiB.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /api/event HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
    for _ in 0..5 {
        // The server may close after the limit; later writes can fail.
        let _ = stream.write_all(chunk.as_bytes());
    }
    let mut answer = vec![0u8; 12];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");

    // The server is still fine.
    let ok = Conn::open(server.addr).send(
        "POST",
        "/api/event",
        &[("User-Agent", BROWSER_UA)],
        OK_BODY.as_bytes(),
    );
    assert_eq!(ok.status, 202);
    assert_eq!(ok.header("x-footfall-dropped"), None);
    assert!(server.stop().success());
}

/// A stop closes idle keep-alive connections at once rather than waiting
/// out the grace period (10 s) for them: browsers keep connections open.
#[test]
fn a_stop_closes_idle_keep_alive_connections_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--header-timeout", "60s"]);
    let mut idle = Conn::open(server.addr);
    let reply = idle.send(
        "POST",
        "/api/event",
        &[("User-Agent", BROWSER_UA)],
        OK_BODY.as_bytes(),
    );
    assert_eq!(reply.status, 202, "{}", reply.text());

    let stopping = std::time::Instant::now();
    assert!(server.stop().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the stop waited {:?} for an idle connection",
        stopping.elapsed()
    );
    let rest = idle.read_to_end();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let views: i64 = read_pages(tmp.path()).iter().map(|r| r.views).sum();
    assert_eq!(views, 1, "the 202 is in the files");
}

#[test]
fn a_request_in_flight_at_sigterm_is_answered_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]);
    let mut conn = Conn::open(server.addr);
    let body = OK_BODY.as_bytes();
    let (first, rest) = body.split_at(20);
    let head = format!(
        "POST /api/event HTTP/1.1\r\nHost: x\r\nUser-Agent: {BROWSER_UA}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(first);
    conn.write_raw(&request);
    std::thread::sleep(Duration::from_millis(200));

    server.terminate();
    // The server stops accepting but lets this request finish.
    std::thread::sleep(Duration::from_millis(500));
    conn.write_raw(rest);
    let reply = conn.read_reply();
    assert_eq!(reply.status, 202, "{}", reply.text());

    assert!(server.wait().success());
    let rows = read_pages(tmp.path());
    assert_eq!(
        rows.iter().map(|r| r.views).sum::<i64>(),
        1,
        "the 202 is in the files"
    );
}
