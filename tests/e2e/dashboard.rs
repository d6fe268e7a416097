//! The dashboard listener of a real `serve`: the page and its assets, and
//! the Plausible-compatible Stats API answering as `footfall report` does
//! on the same files.

use serde_json::{Value, json};

use crate::support::{BROWSER_UA, Conn, Server, footfall, post};

const SITE: &str = "example.com";

/// Known traffic, written by one run and served by the next: 40 visitors
/// over four pages, half from a search engine, and one custom event.
fn traffic(data: &std::path::Path) {
    let mut server = Server::start(data, &["--trusted-proxy", "127.0.0.1"]);
    let mut conn = Conn::open(server.addr);
    for v in 0..40 {
        let xff = format!("198.51.100.{}", v + 1);
        for p in 0..(1 + v % 3) {
            let url = format!("https://{SITE}/p{}", (v + p) % 4);
            let referrer = if v % 2 == 0 {
                r#","r":"https://www.google.com/""#
            } else {
                ""
            };
            let body = format!(r#"{{"n":"pageview","u":"{url}","d":"{SITE}"{referrer}}}"#);
            let reply = conn.raw(&post(&body, BROWSER_UA, &xff, "text/plain"));
            assert_eq!(reply.status, 202);
        }
        if v % 5 == 0 {
            let body = format!(r#"{{"n":"Signup","u":"https://{SITE}/p0","d":"{SITE}"}}"#);
            let reply = conn.raw(&post(&body, BROWSER_UA, &xff, "text/plain"));
            assert_eq!(reply.status, 202);
        }
    }
    assert!(server.stop().success());
}

fn query(server: &Server, q: &Value) -> (u16, Value) {
    let reply = Conn::open(server.operator).send(
        "POST",
        "/api/v2/query",
        &[("Content-Type", "application/json")],
        q.to_string().as_bytes(),
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    private(&reply.text());
    (reply.status, serde_json::from_str(&reply.text()).unwrap())
}

/// The privacy scan of an answer or a log: no visitor's address (the
/// traffic's come from 198.51.100.0/24 and 203.0.113.0/24) and no
/// User-Agent.
fn private(text: &str) {
    for needle in ["198.51.100.", "203.0.113.", "Mozilla/", "Chrome/"] {
        assert!(!text.contains(needle), "{needle} in {text}");
    }
}

fn report(data: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["report", "--site", SITE, "--format", "json"];
    all.extend(args);
    let (ok, out, err) = footfall(&all, data);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// A breakdown's rows as (dimension value, first metric).
fn rows(answer: &Value) -> Vec<(Value, Value)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["dimensions"][0].clone(), r["metrics"][0].clone()))
        .collect()
}

#[test]
fn the_stats_api_answers_what_footfall_report_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    traffic(&data);
    let mut server = Server::start(&data, &[]);
    let today = chrono::Utc::now().date_naive().to_string();

    // The top row: every number equals the report's site totals.
    let (status, totals) = query(
        &server,
        &json!({"site_id": SITE, "date_range": "day", "metrics":
            ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"]}),
    );
    assert_eq!(status, 200, "{totals}");
    let r = &report(&data, &[])[0];
    let m = &totals["results"][0]["metrics"];
    assert_eq!(m[0], r["visitors"]);
    assert_eq!(m[1], r["visits"]);
    assert_eq!(m[2], r["views"]);
    assert_eq!(m[3].as_f64(), r["views_per_visit"].as_f64());
    assert_eq!(m[4].as_f64(), r["bounce_rate"].as_f64());
    assert_eq!(m[5].as_f64(), r["visit_duration"].as_f64());
    assert_eq!(m[2], json!(79), "40 visitors, 1 to 3 views each");
    assert_eq!(totals["query"]["site_id"], json!(SITE));

    // Breakdowns, each ordered by visitors, as the report's rows.
    for (dimension, by, key) in [
        ("event:page", "page", "page"),
        ("visit:source", "referrer", "referrer"),
        ("visit:browser", "browser", "browser"),
        ("visit:entry_page", "entry_page", "entry_page"),
    ] {
        let (status, answer) = query(
            &server,
            &json!({"site_id": SITE, "date_range": [today, today], "metrics": ["visitors"],
                    "dimensions": [dimension]}),
        );
        assert_eq!(status, 200, "{dimension}: {answer}");
        let mut ours = rows(&answer);
        let mut theirs: Vec<(Value, Value)> = report(&data, &["--by", by])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[key].clone(), r["visitors"].clone()))
            .collect();
        ours.sort_by_key(|r| r.0.to_string());
        theirs.sort_by_key(|r| r.0.to_string());
        assert_eq!(ours, theirs, "{dimension}");
        assert!(!ours.is_empty());
    }

    // A page's views, paged: the first two of four pages by pageviews.
    let (_, top) = query(
        &server,
        &json!({"site_id": SITE, "date_range": "day", "metrics": ["pageviews", "visitors"],
                "dimensions": ["event:page"], "order_by": [["pageviews", "desc"]],
                "pagination": {"limit": 2, "offset": 0}}),
    );
    let top = top["results"].as_array().unwrap().clone();
    assert_eq!(top.len(), 2);
    assert!(top[0]["metrics"][0].as_i64() >= top[1]["metrics"][0].as_i64());

    // The time series: today's hours, summing to the day's views.
    let (_, hours) = query(
        &server,
        &json!({"site_id": SITE, "date_range": "day", "metrics": ["pageviews"], "dimensions": ["time:hour"]}),
    );
    let sum: i64 = hours["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metrics"][0].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 79);
    let first = hours["results"][0]["dimensions"][0].as_str().unwrap();
    assert!(
        first.starts_with(&today) && first.ends_with(":00:00") && first.len() == 19,
        "{first}"
    );

    // Custom events: by name, and every event name as a goal.
    let (_, events) = query(
        &server,
        &json!({"site_id": SITE, "date_range": "day", "metrics": ["visitors", "events"], "dimensions": ["event:name"]}),
    );
    assert_eq!(
        events["results"],
        json!([{"dimensions": ["Signup"], "metrics": [8, 8]}])
    );
    let (_, goals) = query(
        &server,
        &json!({"site_id": SITE, "date_range": "day", "metrics": ["visitors", "events", "conversion_rate"],
                "dimensions": ["event:goal"]}),
    );
    assert_eq!(goals["results"][0]["dimensions"], json!(["Signup"]));
    assert_eq!(
        goals["results"][0]["metrics"][2],
        json!(20.0),
        "8 of 40 visitors"
    );

    // What the aggregates cannot tell: a 400 with Plausible's error shape.
    for (q, says) in [
        (
            json!({"site_id": SITE, "date_range": "day", "metrics": ["visitors"],
                   "dimensions": ["event:page", "visit:source"]}),
            "one dimension at a time",
        ),
        (
            json!({"site_id": SITE, "date_range": "day", "metrics": ["bounce_rate"], "dimensions": ["visit:country"]}),
            "bounce_rate cannot be told",
        ),
        (
            json!({"site_id": "nobody.example", "date_range": "day", "metrics": ["visitors"]}),
            "no data for site",
        ),
    ] {
        let (status, answer) = query(&server, &q);
        assert_eq!(status, 400, "{q}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    let junk = Conn::open(server.operator).send("POST", "/api/v2/query", &[], b"{nope");
    assert_eq!(junk.status, 400);
    assert!(junk.text().contains("not JSON"));
    let unknown = Conn::open(server.operator).send("GET", "/api/v1/nothing", &[], b"");
    assert_eq!(unknown.status, 404);
    assert!(unknown.text().contains("\"error\""));

    // v1, which most existing clients call, answers from the same engine.
    let v1 = |target: &str| {
        let reply = Conn::open(server.operator).send("GET", target, &[], b"");
        private(&reply.text());
        (
            reply.status,
            serde_json::from_str::<Value>(&reply.text()).unwrap(),
        )
    };
    let (status, agg) = v1(&format!(
        "/api/v1/stats/aggregate?site_id={SITE}&period=day&metrics=visitors,pageviews,bounce_rate"
    ));
    assert_eq!(status, 200, "{agg}");
    assert_eq!(agg["results"]["visitors"]["value"], r["visitors"]);
    assert_eq!(agg["results"]["pageviews"]["value"], r["views"]);
    assert_eq!(
        agg["results"]["bounce_rate"]["value"].as_f64(),
        r["bounce_rate"].as_f64()
    );
    let (_, custom) = v1(&format!(
        "/api/v1/stats/aggregate?site_id={SITE}&period=custom&date={today},{today}&metrics=pageviews"
    ));
    assert_eq!(custom["results"]["pageviews"]["value"], r["views"]);
    let (_, series) = v1(&format!(
        "/api/v1/stats/timeseries?site_id={SITE}&period=day&metrics=pageviews"
    ));
    let series = series["results"].as_array().unwrap().clone();
    assert!(series[0]["date"].as_str().unwrap().starts_with(&today));
    let total: i64 = series
        .iter()
        .map(|p| p["pageviews"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 79);
    let (_, first) = v1(&format!(
        "/api/v1/stats/breakdown?site_id={SITE}&period=day&property=event:page&metrics=visitors&limit=3&page=1"
    ));
    let (_, second) = v1(&format!(
        "/api/v1/stats/breakdown?site_id={SITE}&period=day&property=event:page&metrics=visitors&limit=3&page=2"
    ));
    let first = first["results"].as_array().unwrap().clone();
    let second = second["results"].as_array().unwrap().clone();
    assert_eq!(
        (first.len(), second.len()),
        (3, 1),
        "four pages, three a page"
    );
    assert!(first[0]["page"].as_str().unwrap().starts_with("/p"));
    assert!(first[0]["visitors"].as_i64().is_some());
    let (status, filtered) = v1(&format!(
        "/api/v1/stats/aggregate?site_id={SITE}&period=day&filters=event:page%3D%3D/p1"
    ));
    assert_eq!(status, 400);
    assert!(filtered["error"].as_str().unwrap().contains("filters"));
    let (status, site) = v1(&format!("/api/v1/sites/{SITE}"));
    assert_eq!(
        (status, site),
        (200, json!({"domain": SITE, "timezone": "Etc/UTC"}))
    );
    assert_eq!(v1("/api/v1/sites/nobody.example").0, 404);

    // The sites the picker offers.
    let sites = Conn::open(server.operator).send("GET", "/api/footfall/sites", &[], b"");
    assert_eq!(
        serde_json::from_str::<Value>(&sites.text()).unwrap(),
        json!({"sites": [{"site": SITE, "first": today, "last": today}]})
    );
    assert!(server.stop().success());
    private(&server.log());
}

#[test]
fn the_page_is_served_whole_with_a_strict_policy_and_no_cookie() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("data"), &[]);
    let page = Conn::open(server.operator).send("GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(page.header("set-cookie").is_none());
    let html = page.text();
    let script = html
        .split("src=\"./")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    // Content-hashed, cached for good, gzipped when asked.
    let js = Conn::open(server.operator).send(
        "GET",
        &format!("/{script}"),
        &[("Accept-Encoding", "gzip, br")],
        b"",
    );
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-encoding"), Some("gzip"));
    assert!(js.header("cache-control").unwrap().contains("immutable"));
    let plain = Conn::open(server.operator).send("GET", &format!("/{script}"), &[], b"");
    assert!(plain.header("content-encoding").is_none());
    assert!(plain.text().contains("uPlot"));
    assert_eq!(
        Conn::open(server.operator)
            .send("GET", "/nothing.js", &[], b"")
            .status,
        404
    );
    // The operator's endpoints are still there.
    let health = Conn::open(server.operator).send("GET", "/healthz", &[], b"");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert!(server.stop().success());
}

/// Sends `n` views of `/live`, one visitor each (addresses from `first`).
fn views(server: &Server, first: u32, n: u32) {
    let mut conn = Conn::open(server.addr);
    for v in first..first + n {
        let xff = format!("203.0.113.{}", v % 250 + 1);
        let body = format!(r#"{{"n":"pageview","u":"https://{SITE}/live","d":"{SITE}"}}"#);
        assert_eq!(
            conn.raw(&post(&body, BROWSER_UA, &xff, "text/plain"))
                .status,
            202
        );
    }
}

fn totals(server: &Server) -> (i64, i64) {
    let (status, answer) = query(
        server,
        &json!({"site_id": SITE, "date_range": "day", "metrics": ["pageviews", "visitors"]}),
    );
    assert_eq!(status, 200, "{answer}");
    let m = &answer["results"][0]["metrics"];
    (m[0].as_i64().unwrap(), m[1].as_i64().unwrap())
}

#[test]
fn a_beacon_is_on_the_dashboard_at_once_and_counted_once_after_a_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &["--trusted-proxy", "127.0.0.1"]);
    views(&server, 0, 5);
    // No file yet: the answer is the open hour, from memory.
    assert!(crate::support::parquet_files(&data).is_empty());
    assert_eq!(totals(&server), (5, 5));
    // Visits still open count as if they ended now: five visits of one
    // view each, all bounces so far.
    let (_, visits) = query(
        &server,
        &json!({"site_id": SITE, "date_range": "day", "metrics": ["visits", "bounce_rate"]}),
    );
    assert_eq!(visits["results"][0]["metrics"], json!([5, 100.0]));
    let sites = Conn::open(server.operator).send("GET", "/api/footfall/sites", &[], b"");
    assert!(sites.text().contains(SITE), "{}", sites.text());
    let (_, pages) = query(
        &server,
        &json!({"site_id": SITE, "date_range": "day", "metrics": ["visitors"], "dimensions": ["event:page"]}),
    );
    assert_eq!(
        pages["results"],
        json!([{"dimensions": ["/live"], "metrics": [5]}])
    );
    // No custom event yet: no goal, and no error.
    let (status, goals) = query(
        &server,
        &json!({"site_id": SITE, "date_range": "day", "metrics": ["visitors", "events"], "dimensions": ["event:goal"]}),
    );
    assert_eq!((status, goals["results"].clone()), (200, json!([])));
    // Current visitors: the last five minutes, from memory.
    let now = Conn::open(server.operator).send(
        "GET",
        &format!("/api/v1/stats/realtime/visitors?site_id={SITE}"),
        &[],
        b"",
    );
    assert_eq!((now.status, now.text().as_str()), (200, "5"));
    let nobody = Conn::open(server.operator).send(
        "GET",
        "/api/v1/stats/realtime/visitors?site_id=nobody.example",
        &[],
        b"",
    );
    assert_eq!(nobody.text(), "0");
    let unnamed =
        Conn::open(server.operator).send("GET", "/api/v1/stats/realtime/visitors", &[], b"");
    assert_eq!(unnamed.status, 400);
    assert!(server.stop().success());

    // The next run: five in files, three more in memory, none twice.
    let mut server = Server::start(
        &data,
        &["--trusted-proxy", "127.0.0.1", "--flush-interval", "1s"],
    );
    views(&server, 5, 3);
    assert_eq!(totals(&server), (8, 8));
    // Across the flushes of the next seconds, every answer is the same.
    for _ in 0..20 {
        assert_eq!(totals(&server), (8, 8));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Five visits ended by the first run's stop, in files; three open.
    let (_, visits) = query(
        &server,
        &json!({"site_id": SITE, "date_range": "day", "metrics": ["visits"]}),
    );
    assert_eq!(visits["results"][0]["metrics"], json!([8]));
    assert!(server.stop().success());
    let r = &report(&data, &[])[0];
    assert_eq!(
        (r["views"].as_i64(), r["visitors"].as_i64()),
        (Some(8), Some(8))
    );
}

#[test]
fn footfall_dashboard_serves_the_same_answers_from_files_alone() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    traffic(&data);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_footfall"))
        .args(["dashboard", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("FOOTFALL_DASHBOARD_PASSWORD")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let at: std::net::SocketAddr = loop {
        let line = lines.next().expect("footfall dashboard exited").unwrap();
        if let Some(rest) = line.split(" at=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let reply = Conn::open(at).send(
        "POST",
        "/api/v2/query",
        &[],
        json!({"site_id": SITE, "date_range": "day", "metrics": ["pageviews", "visitors"]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer: Value = serde_json::from_str(&reply.text()).unwrap();
    let r = &report(&data, &[])[0];
    assert_eq!(
        answer["results"][0]["metrics"],
        json!([r["views"], r["visitors"]])
    );
    assert_eq!(Conn::open(at).send("GET", "/", &[], b"").status, 200);
    // No collector here: no counters and no current visitors to show.
    assert_eq!(Conn::open(at).send("GET", "/metrics", &[], b"").status, 404);
    let realtime = format!("/api/v1/stats/realtime/visitors?site_id={SITE}");
    assert_eq!(Conn::open(at).send("GET", &realtime, &[], b"").status, 404);
    terminate(&mut child);

    // Off loopback, not without a secret.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_footfall"))
        .args(["dashboard", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .env_remove("FOOTFALL_DASHBOARD_PASSWORD")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("FOOTFALL_DASHBOARD_PASSWORD"));
}

/// Stops a child with SIGTERM, as a person's Ctrl-C or a service manager
/// would, and checks it exits cleanly.
fn terminate(child: &mut std::process::Child) {
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
}
