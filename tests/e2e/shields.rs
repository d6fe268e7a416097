//! What a stranger can learn from the public listener (nothing about the
//! traffic), the operator's listener and its secret, and the shields
//! against inflated counts: the rate cap, excluded addresses and pages.

use base64::Engine as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{BROWSER_UA, Conn, Server, pageview, read_pages};

/// A view of `page` on example.com from `xff`.
fn beacon_from(page: &str, xff: &str) -> Vec<u8> {
    pageview("example.com", &format!("https://example.com{page}"), xff)
}

/// Every route of the public listener, and a few that are not.
const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/script.js"),
    ("GET", "/js/script.outbound-links.file-downloads.js"),
    ("GET", "/js/script.no-such-extension.js"),
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/event"),
    (
        "GET",
        "/api/event?d=example.com&u=https%3A%2F%2Fexample.com%2F",
    ),
    ("OPTIONS", "/api/event"),
    ("DELETE", "/api/event"),
    ("GET", "/api/v1/stats/aggregate?site_id=example.com"),
    ("GET", "/stats"),
    ("GET", "/robots.txt"),
];

#[test]
fn the_public_listener_tells_a_stranger_nothing_about_the_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &["--site", "example.com", "--trusted-proxy", "127.0.0.1"],
    );
    let mut conn = Conn::open(server.addr);
    // 37 views from 37 visitors: numbers no answer may carry.
    for i in 0..37 {
        let r = conn.raw(&beacon_from(
            &format!("/p{}", i % 2),
            &format!("198.51.100.{i}"),
        ));
        assert_eq!(r.status, 202);
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    let metrics = server.metrics();
    assert!(metrics.contains("footfall_views_total 37\n"), "{metrics}");
    for (method, target) in PUBLIC_ROUTES {
        let r = Conn::open(server.addr).send(method, target, &[("User-Agent", BROWSER_UA)], b"");
        let what = format!("{method} {target}: {} {}", r.status, r.text());
        assert!(r.status < 500, "{what}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert!(r.header("server").is_none(), "no Server header: {what}");
        let text = r.text();
        assert!(
            !text.contains("footfall_views") && !text.contains("footfall_beacons"),
            "no metric on the public listener: {what}"
        );
        for n in text.split(|c: char| !c.is_ascii_digit()) {
            assert!(
                // 37 views, and a 38th from the pixel route above.
                !["36", "37", "38"].contains(&n),
                "no count on the public listener: {what}"
            );
        }
    }
    assert_eq!(
        Conn::open(server.addr)
            .send("GET", "/metrics", &[], b"")
            .status,
        404
    );
    // The tracker: a long cache, and a 304 for the same release.
    let first = Conn::open(server.addr).send("GET", "/script.js", &[], b"");
    assert_eq!(first.header("cache-control"), Some("public, max-age=86400"));
    let etag = first.header("etag").expect("an ETag").to_owned();
    let again = Conn::open(server.addr).send("GET", "/script.js", &[("If-None-Match", &etag)], b"");
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert!(server.stop().success());
}

#[test]
fn the_operator_listener_off_loopback_needs_its_secret() {
    let tmp = tempfile::tempdir().unwrap();
    // Refused without a secret: a start that fails, with what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_footfall"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--dashboard-listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(tmp.path().join("refused"))
        .env_remove("FOOTFALL_DASHBOARD_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FOOTFALL_DASHBOARD_PASSWORD"), "{err}");
    assert!(!tmp.path().join("refused").exists());

    // With a secret in a file: only requests that carry it are answered.
    let secret = "s3cret-for-the-operator-only";
    let file = tmp.path().join("password");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let mut server = Server::start(
        &tmp.path().join("data"),
        &[
            "--dashboard-listen",
            "0.0.0.0:0",
            "--dashboard-password-file",
            &file,
        ],
    );
    let operator = std::net::SocketAddr::from(([127, 0, 0, 1], server.operator.port()));
    let denied = Conn::open(operator).send("GET", "/metrics", &[], b"");
    assert_eq!(denied.status, 401);
    assert!(!denied.text().contains("footfall_"));
    let wrong = Conn::open(operator).send(
        "GET",
        "/metrics",
        &[("Authorization", "Bearer s3cret-for-the-operator-onlX")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {secret}");
    let ok = Conn::open(operator).send("GET", "/metrics", &[("Authorization", &bearer)], b"");
    assert_eq!(ok.status, 200);
    assert!(
        ok.text().contains("footfall_views_total 0"),
        "{}",
        ok.text()
    );
    // The dashboard and its API behind the same secret: a browser's own
    // prompt (HTTP Basic, the secret as the password), or a bearer token.
    let page = Conn::open(operator).send("GET", "/", &[], b"");
    assert_eq!(page.status, 401);
    assert!(!page.text().contains("<html"));
    let challenge = page.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Basic realm=\"footfall\""),
        "{challenge}"
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("owner:{secret}"))
    );
    let page = Conn::open(operator).send("GET", "/", &[("Authorization", &basic)], b"");
    assert_eq!(page.status, 200);
    let api = Conn::open(operator).send(
        "GET",
        "/api/footfall/sites",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!((api.status, api.text().as_str()), (200, "{\"sites\":[]}"));
    let refused = Conn::open(operator).send("GET", "/api/footfall/sites", &[], b"");
    assert_eq!(refused.status, 401);
    assert!(server.stop().success());
    assert!(!server.log().contains(secret), "the secret is never logged");
}

#[test]
fn one_client_cannot_inflate_the_numbers_past_the_cap() {
    let tmp = tempfile::tempdir().unwrap();
    // The server's clock starts 5 s into a minute (faketime), so the burst
    // below has 55 s of one minute, whatever the real clock says.
    let mut server = Server::start_at(
        Some("@2026-12-03 10:00:05"),
        tmp.path(),
        &[
            "--site",
            "example.com",
            "--trusted-proxy",
            "127.0.0.1",
            "--max-views-per-minute",
            "50",
        ],
    );
    let started = std::time::Instant::now();
    // A loop of 10,000 identical pageviews from one address. (Views of one
    // visitor racing on several threads may pass by one per other thread:
    // collector/src/shields.rs tests that bound.)
    let mut conn = Conn::open(server.addr);
    for _ in 0..10_000 {
        let r = conn.raw(&beacon_from("/flood", "203.0.113.7"));
        assert_eq!(r.status, 202);
    }
    // And 1,000 distinct visitors, one view each.
    for i in 0..1_000u32 {
        let ip = format!("198.51.{}.{}", 100 + i / 250, i % 250);
        let r = conn.raw(&beacon_from("/people", &ip));
        assert_eq!(r.header("x-footfall-dropped"), None, "visitor {i}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "the burst fit in the server's one minute"
    );
    assert_eq!(
        server.metric("footfall_beacons_dropped_total{reason=\"rate-limit\"}"),
        9_950.0
    );
    assert!(server.stop().success());
    let views = |page: &str| -> i64 {
        read_pages(tmp.path())
            .iter()
            .filter(|r| r.page == page)
            .map(|r| r.views)
            .sum()
    };
    assert_eq!(views("/flood"), 50, "exactly the cap");
    assert_eq!(views("/people"), 1_000, "every person");
    // The server's clock was the faked one: every row is of its hour.
    let hour = 1_796_292_000 * 1_000_000; // 2026-12-03T10:00:00Z
    assert!(read_pages(tmp.path()).iter().all(|r| r.hour_micros == hour));
}

#[test]
fn excluded_addresses_and_pages_count_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &[
            "--site",
            "example.com",
            "--trusted-proxy",
            "127.0.0.1",
            "--exclude-ip",
            "203.0.113.0/24",
            "--exclude-ip",
            "2001:db8::1",
            "--exclude-page",
            "/admin/**",
            "--exclude-page",
            "/preview/*",
        ],
    );
    let mut conn = Conn::open(server.addr);
    let cases = [
        ("/office", "203.0.113.50", Some("excluded")),
        ("/office", "2001:db8::1", Some("excluded")),
        ("/admin/users/7", "198.51.100.1", Some("excluded")),
        ("/preview/draft", "198.51.100.2", Some("excluded")),
        ("/preview/a/b", "198.51.100.3", None),
        ("/counted", "198.51.100.4", None),
    ];
    for (page, ip, dropped) in cases {
        let r = conn.raw(&beacon_from(page, ip));
        assert_eq!(r.header("x-footfall-dropped"), dropped, "{page} from {ip}");
    }
    assert_eq!(
        server.metric("footfall_beacons_dropped_total{reason=\"excluded\"}"),
        4.0
    );
    drop(conn);
    assert!(server.stop().success());
    let mut pages: Vec<String> = read_pages(tmp.path()).into_iter().map(|r| r.page).collect();
    pages.sort();
    assert_eq!(pages, ["/counted", "/preview/a/b"]);
    let device_views: i64 = crate::support::read_table(tmp.path(), "devices")
        .iter()
        .map(|r| r.count("views"))
        .sum();
    assert_eq!(device_views, 2, "excluded views are in no table");
}
