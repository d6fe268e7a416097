//! Visits end to end: scripted visitors of known behaviour against the real
//! server, whose clock libfaketime starts just before an hour ends and runs
//! ten times fast, so a visit crosses the hour and a return after the
//! timeout takes seconds, not half an hour. Then the numbers `footfall
//! report` gives, and what the data dir holds (nothing per visitor).

use std::time::Duration;

use crate::support::*;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

fn view(page: &str, referrer: &str, ip: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"n":"pageview","u":"https://example.com{page}?secret=query-text","d":"example.com","r":"{referrer}"}}"#
    );
    post(&body, UA, ip, "text/plain")
}

fn engagement(page: &str, ms: u32, sd: u8, ip: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"n":"engagement","u":"https://example.com{page}","d":"example.com","e":{ms},"sd":{sd}}}"#
    );
    post(&body, UA, ip, "text/plain")
}

/// Real seconds for `fake` seconds of the server's clock (ten times fast).
fn fake_secs(fake: u64) -> Duration {
    Duration::from_millis(fake * 100)
}

#[test]
fn scripted_visitors_give_exact_visits_bounces_entries_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    // A minute before 11:00, ten times fast: the first views are in hour
    // 10, even when a loaded machine takes a few seconds to start.
    let mut server = Server::start_at(
        Some("@2026-12-03 10:59:00 x10"),
        tmp.path(),
        &[
            "--site",
            "example.com",
            "--trusted-proxy",
            "127.0.0.1",
            "--session-timeout",
            "1m",
        ],
    );
    // A connection a beacon: an idle one is closed after the header
    // timeout, 10 s of the server's fast clock. Each answer's `Date` says
    // the server's time, to the second, as its visits see it.
    let addr = server.addr;
    let send = |beacon: Vec<u8>| -> (Option<String>, i64) {
        let r = Conn::open(addr).raw(&beacon);
        assert_eq!(r.status, 202, "{}", r.text());
        let date = r.header("date").expect("a Date header");
        let at = chrono::DateTime::parse_from_rfc2822(date).expect("an HTTP date");
        (
            r.header("x-footfall-dropped").map(str::to_owned),
            at.timestamp(),
        )
    };
    let counted = |beacon: Vec<u8>| {
        let (dropped, at) = send(beacon);
        assert_eq!(dropped, None);
        at
    };
    const ELEVEN: i64 = 1_796_295_600; // 2026-12-03T11:00:00Z
    let (one, many, back, late) = ("203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4");
    // Begin at 10:59:30 of the server's clock, however long a loaded
    // machine took to start it.
    let clock = Conn::open(addr).send("GET", "/healthz", &[], b"");
    let now = chrono::DateTime::parse_from_rfc2822(clock.header("date").expect("a Date header"))
        .expect("an HTTP date")
        .timestamp();
    if now < ELEVEN - 30 {
        std::thread::sleep(fake_secs((ELEVEN - 30 - now) as u64));
    }
    // An engagement before any view starts nothing.
    assert_eq!(
        send(engagement("/a", 500, 10, late)).0.as_deref(),
        Some("no-visit")
    );
    // `one`: a one-page visit from a search engine, read for a while.
    let one_start = counted(view("/a", "https://search.example/?q=x", one));
    // `many`: three pages, across 11:00.
    let many_start = counted(view("/a", "", many));
    // `back`: one page now, and another after the timeout.
    counted(view("/b", "", back));
    std::thread::sleep(fake_secs(8));
    let one_end = counted(engagement("/a", 8_000, 70, one));
    let t = counted(view("/b", "https://example.com/a", many));
    assert!(t < ELEVEN - 2, "the start was slow: {}", ELEVEN - t);
    std::thread::sleep(fake_secs((ELEVEN + 3 - t) as u64));
    let many_end = counted(view("/c", "https://example.com/b", many));
    assert!(many_end >= ELEVEN);
    // A minute and a half without a beacon from `back`: its visit is over.
    std::thread::sleep(fake_secs(75));
    counted(view("/a", "", back));
    assert!(
        server.metric("footfall_visits_ended_total") >= 1.0,
        "swept during the run"
    );
    assert!(server.stop().success());

    let data = tmp.path();
    let report = |by: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "report",
            "--site",
            "example.com",
            "--from",
            "2026-12-03",
            "--to",
            "2026-12-03",
            "--format",
            "json",
        ];
        args.extend(by);
        let (ok, out, err) = footfall(&args, data);
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    // 4 visits (`back` twice), 6 pageviews, bounces: `one` and both of
    // `back`'s. Durations: `one` ~10 s (its engagement), `many` ~25 s.
    let totals = report(&[]);
    let t = &totals[0];
    assert_eq!(t["views"], 6, "{totals}");
    assert_eq!(t["visits"], 4, "{totals}");
    assert_eq!(t["views_per_visit"], 1.5, "{totals}");
    assert_eq!(t["bounce_rate"], 75.0, "{totals}");
    // `one`'s ends at its engagement, `many`'s at /c, `back`'s are 0 s;
    // the answers' dates are the server's seconds (give or take the one
    // hyper's cached date may lag).
    let mean = t["visit_duration"].as_f64().unwrap();
    let truth = ((one_end - one_start) + (many_end - many_start)) as f64 / 4.0;
    assert!((mean - truth).abs() <= 1.0, "{mean} vs {truth}: {totals}");

    let entries = report(&["--by", "entry_page"]);
    let row = |v: &serde_json::Value, key: &str, page: &str| -> serde_json::Value {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r[key] == page)
            .unwrap_or_else(|| panic!("no {page} in {v}"))
            .clone()
    };
    assert_eq!(entries.as_array().unwrap().len(), 2, "{entries}");
    let a = row(&entries, "entry_page", "/a");
    assert_eq!(
        (a["visits"].as_i64(), a["visitors"].as_i64()),
        (Some(3), Some(3)),
        "{entries}"
    );
    assert_eq!(a["bounce_rate"], 66.7, "{entries}");
    let b = row(&entries, "entry_page", "/b");
    assert_eq!(
        (b["visits"].as_i64(), b["bounce_rate"].as_f64()),
        (Some(1), Some(100.0))
    );
    assert_eq!(b["visit_duration"], 0);

    let exits = report(&["--by", "exit_page"]);
    let exit = |page: &str| row(&exits, "exit_page", page)["exits"].as_i64().unwrap();
    assert_eq!((exit("/a"), exit("/b"), exit("/c")), (2, 1, 1), "{exits}");
    // /a: 3 views, 2 exits.
    assert_eq!(row(&exits, "exit_page", "/a")["exit_rate"], 66.7, "{exits}");

    let pages = report(&["--by", "page"]);
    let a = row(&pages, "page", "/a");
    assert_eq!(
        (a["time_on_page"].as_i64(), a["scroll_depth"].as_i64()),
        (Some(8), Some(70))
    );
    assert_eq!(
        row(&pages, "page", "/c")["time_on_page"],
        serde_json::Value::Null
    );

    let sources = report(&["--by", "referrer"]);
    let search = row(&sources, "referrer", "search.example");
    assert_eq!(
        (search["visits"].as_i64(), search["bounce_rate"].as_f64()),
        (Some(1), Some(100.0))
    );

    // A visit's numbers belong to the hour it began: `many`'s in 10:00,
    // though two of its views are in 11:00.
    let hours = report(&["--by", "hour"]);
    let h10 = row(&hours, "hour", "2026-12-03T10:00:00Z");
    let h11 = row(&hours, "hour", "2026-12-03T11:00:00Z");
    assert_eq!(
        (h10["views"].as_i64(), h10["visits"].as_i64()),
        (Some(4), Some(3)),
        "{hours}"
    );
    assert_eq!(
        (h11["views"].as_i64(), h11["visits"].as_i64()),
        (Some(2), Some(1)),
        "{hours}"
    );
    // The pageviews of the visits that began in 10:00: 1 + 3 + 1.
    assert_eq!(h10["views_per_visit"], 1.67, "{hours}");

    // Nothing per visitor at rest: no address, no User-Agent, no query,
    // no key; and one `visits` row per (hour, entry page), not per visit.
    for file in all_files(data) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for needle in ["203.0.113", "Chrome/131", "query-text", "search.example/?"] {
            assert!(!text.contains(needle), "{needle} in {}", file.display());
        }
    }
    let visits = read_table(data, "visits");
    let mut keys: Vec<(i64, Option<String>)> = visits
        .iter()
        .map(|r| (r.hour_micros, r.dims[0].clone()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 3, "(10:00, /a), (10:00, /b), (11:00, /a)");
    assert_eq!(visits.iter().map(|r| r.count("visits")).sum::<i64>(), 4);
    assert_eq!(visits.len(), 3, "one flush, one row a key: {visits:?}");
    let log = server.log();
    for needle in ["203.0.113", "Chrome/131", "query-text"] {
        assert!(!log.contains(needle), "{needle} in the log");
    }
}

#[test]
fn with_sessions_off_no_visit_is_kept_and_the_numbers_are_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--site", "example.com", "--sessions", "off"]);
    let mut conn = Conn::open(server.addr);
    assert_eq!(conn.raw(&view("/a", "", "203.0.113.9")).status, 202);
    let r = conn.raw(&engagement("/a", 4_000, 50, "203.0.113.9"));
    assert_eq!(r.header("x-footfall-dropped"), Some("no-visit"));
    let metrics = server.metrics();
    assert!(
        !metrics.contains("footfall_visits_"),
        "no visit series at all:\n{metrics}"
    );
    drop(conn);
    assert!(server.stop().success());
    assert!(!tmp.path().join("visits").exists());
    let (ok, out, err) = footfall(
        &["report", "--site", "example.com", "--format", "json"],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["views"], 1);
    assert_eq!(
        v[0]["visits"],
        serde_json::Value::Null,
        "absent, not zero: {v}"
    );
    assert_eq!(v[0]["bounce_rate"], serde_json::Value::Null);
}
