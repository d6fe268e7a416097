//! A newcomer's first ten minutes: the page at `/`, a log that explains a
//! silent drop, reports that answer a quiet range, `footfall sites`, and a
//! failed start that leaves nothing behind.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{Conn, Server, footfall, pageview, utc_today, wait_if_near_midnight};

fn beacon(conn: &mut Conn, site: &str, url: &str, ip: &str) -> crate::support::Reply {
    conn.raw(&pageview(site, url, ip))
}

#[test]
fn the_front_page_shows_the_tag_for_its_address_and_no_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]);
    let port = server.addr.port();
    let mut conn = Conn::open(server.addr);
    for _ in 0..3 {
        let r = beacon(&mut conn, "example.com", "https://example.com/", "");
        assert_eq!(r.status, 202);
    }
    let host = format!("127.0.0.1:{port}");
    let page = conn.raw(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let html = page.text();
    assert!(
        html.contains(&format!("src=\"http://127.0.0.1:{port}/script.js\"")),
        "the tag for this address: {html}"
    );
    assert!(
        html.contains(&format!("href=\"http://localhost:{port}/\"")),
        "opened by address, it says to open it as localhost: {html}"
    );
    assert!(
        !html.contains("src=\"/script.js\""),
        "opened by address, its own view would be dropped: it sends none: {html}"
    );
    let local = format!("localhost:{port}");
    let html = Conn::open(server.addr)
        .raw(format!("GET / HTTP/1.1\r\nHost: {local}\r\n\r\n").as_bytes())
        .text();
    assert!(
        html.contains("data-domain=\"localhost\" src=\"/script.js\""),
        "opened as localhost without --site, it carries the tracker: {html}"
    );
    // Three views were counted: the page says nothing of them.
    assert!(
        !html.split(|c: char| !c.is_ascii_digit()).any(|n| n == "3"),
        "no count on the public page: {html}"
    );
    // A Host header that is not a plain host is never echoed.
    let evil = Conn::open(server.addr)
        .raw(b"GET / HTTP/1.1\r\nHost: x\"><script>alert(1)</script>\r\n\r\n");
    assert_eq!(evil.status, 200);
    assert!(!evil.text().contains("alert(1)"), "{}", evil.text());
    assert!(server.stop().success());

    // With an allow-list the page does not count itself: `localhost`
    // would be an unknown site.
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--site", "example.com"]);
    let html = Conn::open(server.addr).send("GET", "/", &[], b"").text();
    assert!(!html.contains("src=\"/script.js\""), "{html}");
    assert!(html.contains("allow-list"), "{html}");
    assert!(server.stop().success());
}

#[test]
fn a_site_dropped_for_its_address_is_logged_once_an_hour() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &["--site", "example.com", "--site", "shop.example"],
    );
    let mut conn = Conn::open(server.addr);
    // The README's old trap: data-domain="example.com" on a page served
    // from 127.0.0.1. And a site that is not on the list.
    for i in 0..5 {
        let url = format!("http://127.0.0.1:3000/page-{i}?secret-query=1");
        let r = beacon(&mut conn, "example.com", &url, "");
        assert_eq!(r.header("x-footfall-dropped"), Some("url-not-on-site"));
        let r = beacon(&mut conn, "other.org", "https://other.org/", "");
        assert_eq!(r.header("x-footfall-dropped"), Some("unknown-site"));
    }
    let r = beacon(&mut conn, "shop.example", "https://shop.example/", "");
    assert_eq!(r.header("x-footfall-dropped"), None);
    drop(conn);
    assert!(server.stop().success());
    let log = server.log();
    let notices: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("not counted"))
        .collect();
    assert_eq!(notices.len(), 2, "one line per site and reason:\n{log}");
    let about = |site: &str, reason: &str| {
        notices
            .iter()
            .any(|l| l.contains(&format!("site=\"{site}\"")) && l.contains(reason))
    };
    assert!(about("example.com", "url-not-on-site"), "{notices:?}");
    assert!(about("other.org", "unknown-site"), "{notices:?}");
    for l in &notices {
        assert!(
            !l.contains("127.0.0.1") && !l.contains("page-") && !l.contains("secret"),
            "a notice names the site and the reason, nothing of the beacon: {l}"
        );
    }
}

#[test]
fn reports_answer_quiet_ranges_and_find_the_one_site() {
    wait_if_near_midnight();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let (ok, _, err) = footfall(&["report"], data);
    assert!(!ok && err.contains("no site has data"), "{err}");
    let (ok, out, err) = footfall(&["sites", "--format", "json"], data);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "[]");

    let mut server = Server::start(data, &[]);
    let mut conn = Conn::open(server.addr);
    for i in 0..4 {
        let ip = format!("198.51.100.{i}");
        assert_eq!(
            beacon(&mut conn, "example.com", "https://example.com/a", &ip).status,
            202
        );
    }
    drop(conn);
    assert!(server.stop().success());
    let today = utc_today();

    // One site with data: --site may be left out.
    let (ok, out, err) = footfall(&["report", "--format", "json"], data);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        // One visitor's four views in one visit, ended by the stop.
        serde_json::json!([{"site": "example.com", "views": 4, "visitors": 1, "visits": 1,
            "views_per_visit": 4.0, "bounce_rate": 0.0,
            "visit_duration": v[0]["visit_duration"].as_i64().filter(|d| (0..60).contains(d))}])
    );

    // Published numbers hide small cells: one visitor is below 2.
    let (ok, out, err) = footfall(
        &[
            "report",
            "--by",
            "page",
            "--min-visitors",
            "2",
            "--format",
            "json",
        ],
        data,
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "[]", "the lone visitor's page is not shown");

    // A quiet range of a known site: zeros or nothing, exit 0, every format.
    let quiet = ["--from", "2020-01-01", "--to", "2020-01-31"];
    let run = |extra: &[&str]| {
        let mut args = vec!["report", "--site", "example.com"];
        args.extend(quiet);
        args.extend(extra);
        let (ok, out, err) = footfall(&args, data);
        assert!(ok, "{args:?}: {err}");
        out
    };
    let v: serde_json::Value = serde_json::from_str(&run(&["--format", "json"])).unwrap();
    assert_eq!(
        v,
        // No visits either; their ratios have nothing to divide.
        serde_json::json!([{"site": "example.com", "views": 0, "visitors": 0, "visits": 0,
            "views_per_visit": null, "bounce_rate": null, "visit_duration": null}])
    );
    assert_eq!(
        run(&["--format", "csv"]),
        "site,views,visitors,visits,views_per_visit,bounce_rate,visit_duration\nexample.com,0,0,0,,,\n"
    );
    assert!(run(&[]).contains("example.com      0         0       0"));
    assert_eq!(run(&["--by", "page", "--format", "json"]).trim(), "[]");
    assert_eq!(
        run(&["--by", "referrer", "--format", "csv"]),
        "referrer,entries,visitors,visits,bounce_rate,visit_duration\n"
    );
    assert!(run(&["--by", "day"]).contains("no views in this range"));

    // An unknown site is still an error, naming the known ones.
    let (ok, _, err) = footfall(&["report", "--site", "exmaple.com"], data);
    assert!(!ok);
    assert!(err.contains("sites with data: example.com"), "{err}");

    // The implicit --to is named.
    let (ok, _, err) = footfall(&["report", "--from", "2999-01-01"], data);
    assert!(!ok);
    assert!(
        err.contains(&format!("--to, which defaults to today, {today}")),
        "{err}"
    );

    // Two sites: `sites` lists both; report asks which.
    let mut server = Server::start(data, &[]);
    let mut conn = Conn::open(server.addr);
    assert_eq!(
        beacon(&mut conn, "b.example", "https://b.example/", "198.51.100.9").status,
        202
    );
    drop(conn);
    assert!(server.stop().success());
    let (ok, out, err) = footfall(&["sites", "--format", "csv"], data);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!("site,first,last\nb.example,{today},{today}\nexample.com,{today},{today}\n")
    );
    let (ok, out, _) = footfall(&["sites"], data);
    assert!(ok && out.starts_with("site "), "{out}");
    let (ok, _, err) = footfall(&["report"], data);
    assert!(
        !ok && err.contains("b.example, example.com; pass --site"),
        "{err}"
    );
}

#[test]
fn a_failed_start_leaves_nothing_behind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let serve = |data_dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_footfall"))
            .args(["serve", "--listen", &addr, "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // A data dir it would have created.
    let fresh = tmp.path().join("footfall-data");
    let out = serve(&fresh);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("listening on {addr}")), "{err}");
    assert!(
        !fresh.exists(),
        "a failed start removed the data dir it made"
    );

    // A data dir that exists: left exactly as it was.
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep.txt"), "mine").unwrap();
    assert!(!serve(&existing).status.success());
    let left: Vec<_> = std::fs::read_dir(&existing)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["keep.txt"]);

    // A failure after the data dir was opened: another process holds it.
    drop(taken);
    let held = tmp.path().join("held");
    let mut first = Server::start(&held, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_footfall"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--dashboard-listen",
            "off",
            "--data-dir",
        ])
        .arg(&held)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lock"), "refused for the lock: {err}");
    assert!(
        held.join("_state").is_dir(),
        "the running server's state stays"
    );
    assert!(first.stop().success());
}
