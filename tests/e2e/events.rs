//! Custom events end to end over HTTP: the wire shapes Plausible's trackers
//! and server-side senders use, the properties the owner allowed (and no
//! other) in the files, goals and conversion rates from `footfall report`,
//! and an interactive event ending a bounce.

use crate::support::*;

const SITE: &str = "example.com";

fn event(body: &str, ip: &str) -> Vec<u8> {
    post(body, BROWSER_UA, ip, "text/plain")
}

/// What nothing at rest or in the log may hold: values of properties the
/// owner did not allow, e-mail addresses, query strings and fragments.
const SECRETS: [&str; 7] = [
    "tok_live_4242",
    "jane.doe@mail.example",
    "jane.doe%40mail.example",
    "user-8812",
    "utm_secret",
    "frag-secret",
    "sessionid",
];

#[test]
fn events_and_allowed_props_reach_the_report_and_nothing_else_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &[
            "--site",
            SITE,
            "--trusted-proxy",
            "127.0.0.1",
            "--event-prop",
            "plan",
        ],
    );
    let send = |beacon: Vec<u8>| {
        let r = Conn::open(server.addr).raw(&beacon);
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(r.header("x-footfall-dropped"), None, "{}", r.text());
    };
    // Four visitors view a page each: 1 and 2 land on /pricing, 3 on a
    // blog post, 4 on /.
    for (ip, page) in [
        ("198.51.100.1", "/pricing"),
        ("198.51.100.2", "/pricing"),
        ("198.51.100.3", "/blog/hello"),
        ("198.51.100.4", "/"),
    ] {
        send(pageview(SITE, &format!("https://{SITE}{page}"), ip));
    }
    // Visitor 1 signs up on the pricing page (props as an object, with
    // what must never be kept beside the allowed plan); visitor 2 signs
    // up too, props as a JSON string, as older trackers send them.
    send(event(
        r#"{"n":"Signup","u":"https://example.com/pricing?utm_secret=1#frag-secret","d":"example.com","p":{"plan":"pro","token":"tok_live_4242","email":"jane.doe@mail.example","user":"user-8812"}}"#,
        "198.51.100.1",
    ));
    send(event(
        r#"{"name":"Signup","url":"https://example.com/pricing","domain":"example.com","props":"{\"plan\":\"team\",\"plan2\":\"x\"}"}"#,
        "198.51.100.2",
    ));
    // An allowed key whose value is an address is refused all the same.
    send(event(
        r#"{"n":"Signup","u":"https://example.com/pricing","d":"example.com","p":{"plan":"jane.doe@mail.example"}}"#,
        "198.51.100.1",
    ));
    // Visitor 3 clicks out and downloads (the download marked
    // non-interactive: the click still ends the bounce).
    send(event(
        r#"{"n":"Outbound Link: Click","u":"https://example.com/blog/hello","d":"example.com","p":{"url":"https://Other.example:8443/away?sessionid=9#x"}}"#,
        "198.51.100.3",
    ));
    send(event(
        r#"{"n":"File Download","u":"https://example.com/blog/hello","d":"example.com","p":{"url":"https://example.com/files/report.pdf?sessionid=1"},"i":false}"#,
        "198.51.100.3",
    ));
    // An allowed key given a URL with a token in its query, and an address
    // passed through encodeURIComponent: the first is kept as host and
    // path, the second refused.
    send(event(
        r#"{"n":"Reset","u":"https://example.com/pricing","d":"example.com","p":{"plan":"https://x.example/reset?t=tok_live_4242#frag-secret"}}"#,
        "198.51.100.1",
    ));
    send(event(
        r#"{"n":"Reset","u":"https://example.com/pricing","d":"example.com","p":{"plan":"jane.doe%40mail.example"}}"#,
        "198.51.100.1",
    ));
    // Plausible's 404 snippet names its event with a number.
    send(event(
        r#"{"n":404,"u":"https://example.com/missing","d":"example.com","p":{"path":"/missing"}}"#,
        "198.51.100.4",
    ));
    // An over-long name is refused outright.
    let long = format!(
        r#"{{"n":"{}","u":"https://example.com/","d":"example.com"}}"#,
        "x".repeat(121)
    );
    let refused = Conn::open(server.addr).raw(&event(&long, "198.51.100.9"));
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("120 characters"),
        "{}",
        refused.text()
    );

    let metrics = server.metrics();
    for line in [
        "footfall_events_total 8",
        "footfall_event_props_dropped_total{reason=\"not-allowed\"} 5",
        "footfall_event_props_dropped_total{reason=\"email\"} 2",
        "footfall_views_total 4",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(server.stop().success());

    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["report", "--site", SITE, "--format", "json"];
        all.extend(args);
        let (ok, out, err) = footfall(&all, tmp.path());
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    assert_eq!(
        json(&["--by", "event"]),
        serde_json::json!([
            {"event": "Signup", "events": 3, "visitors": 2, "conversion_rate": 50.0},
            {"event": "Reset", "events": 2, "visitors": 1, "conversion_rate": 25.0},
            {"event": "404", "events": 1, "visitors": 1, "conversion_rate": 25.0},
            {"event": "File Download", "events": 1, "visitors": 1, "conversion_rate": 25.0},
            {"event": "Outbound Link: Click", "events": 1, "visitors": 1, "conversion_rate": 25.0},
        ])
    );
    assert_eq!(
        json(&["--by", "prop:plan", "--event", "Signup"]),
        serde_json::json!([
            {"prop:plan": "pro", "events": 1, "visitors": 1, "conversion_rate": 25.0},
            {"prop:plan": "team", "events": 1, "visitors": 1, "conversion_rate": 25.0},
        ])
    );
    assert_eq!(
        json(&["--by", "prop:url", "--event", "Outbound Link: Click"]),
        serde_json::json!([{"prop:url": "other.example/away", "events": 1, "visitors": 1, "conversion_rate": 25.0}])
    );
    assert_eq!(
        json(&["--by", "prop:url", "--event", "File Download"])[0]["prop:url"],
        "/files/report.pdf"
    );
    assert_eq!(
        json(&["--by", "prop:plan", "--event", "Reset"]),
        serde_json::json!([{"prop:plan": "x.example/reset", "events": 1, "visitors": 1, "conversion_rate": 25.0}])
    );
    assert_eq!(
        json(&[
            "--by",
            "goal",
            "--goal",
            "Signup",
            "--goal",
            "page:/blog/*",
            "--goal",
            "Purchase"
        ]),
        serde_json::json!([
            {"goal": "Signup", "events": 3, "visitors": 2, "conversion_rate": 50.0},
            {"goal": "page:/blog/*", "events": 1, "visitors": 1, "conversion_rate": 25.0},
            {"goal": "Purchase", "events": 0, "visitors": 0, "conversion_rate": 0.0},
        ])
    );
    // Bounces: 1 and 2 converted (interactive), 3 only clicked out (an
    // interactive event too), 4's 404 event is interactive: no visit is
    // a one-page visit without an interactive event.
    let totals = json(&[]);
    assert_eq!(totals[0]["visits"], 4, "{totals}");
    assert_eq!(totals[0]["bounce_rate"], 0.0, "{totals}");

    // A query the aggregates cannot answer is refused, saying why.
    let (ok, _, err) = footfall(
        &[
            "report",
            "--site",
            SITE,
            "--by",
            "goal",
            "--goal",
            "scroll:/blog/*>=75",
        ],
        tmp.path(),
    );
    assert!(
        !ok && err.contains("scroll-depth goals are not supported"),
        "{err}"
    );
    let (ok, _, err) = footfall(&["report", "--site", SITE, "--by", "prop:plan"], tmp.path());
    assert!(!ok && err.contains("--event"), "{err}");

    // Nothing the owner did not allow is at rest, or in the log.
    for file in all_files(tmp.path()) {
        let bytes = std::fs::read(&file).unwrap();
        for secret in SECRETS {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {}",
                file.display()
            );
        }
    }
    let log = server.log();
    for secret in SECRETS {
        assert!(!log.contains(secret), "{secret} in the log");
    }
    // The events tables hold rows per (hour, name, page) and value, not
    // per visitor.
    assert_eq!(read_table(tmp.path(), "events").len(), 5);
    assert_eq!(read_table(tmp.path(), "event_props").len(), 5);
}

#[test]
fn a_non_interactive_event_leaves_a_one_page_visit_a_bounce() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &["--site", SITE, "--trusted-proxy", "127.0.0.1"],
    );
    let send = |beacon: Vec<u8>| {
        let r = Conn::open(server.addr).raw(&beacon);
        assert_eq!(r.status, 202, "{}", r.text());
    };
    send(pageview(SITE, "https://example.com/a", "198.51.100.1"));
    send(pageview(SITE, "https://example.com/b", "198.51.100.2"));
    send(event(
        r#"{"n":"Scrolled","u":"https://example.com/a","d":"example.com","i":false}"#,
        "198.51.100.1",
    ));
    send(event(
        r#"{"n":"Play","u":"https://example.com/b","d":"example.com"}"#,
        "198.51.100.2",
    ));
    assert!(server.stop().success());
    let (ok, out, err) = footfall(
        &[
            "report",
            "--site",
            SITE,
            "--by",
            "entry_page",
            "--format",
            "json",
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rate = |page: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["entry_page"] == page)
            .map(|r| r["bounce_rate"].clone())
    };
    assert_eq!(rate("/a"), Some(100.0.into()), "{rows}");
    assert_eq!(rate("/b"), Some(0.0.into()), "{rows}");
}
