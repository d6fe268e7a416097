//! The dashboard in Chromium against the real server: `serve` fed with
//! beacons and left running, so every number is live from its memory, and
//! `dashboard/ui/dev/real-check.mjs` (playwright-core and Debian's
//! chromium) checking that the page shows what the same server's Stats API
//! answers, through a period, the graph's metric and a filter this version
//! refuses. The screenshots it takes stay in `target/dashboard-shots/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Conn, Rng, Server, post, utc_date, wait_if_near_midnight};

const SITE: &str = "example.com";

/// Browsers people use, so the Browser card has more than one row.
const UAS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Mobile/15E148 Safari/604.1",
];

const PAGES: &[&str] = &["/", "/pricing", "/docs", "/blog/launch", "/about"];

const REFERRERS: &[&str] = &[
    "",
    "https://www.google.com/",
    "https://news.ycombinator.com/item?id=1",
    "https://duckduckgo.com/",
];

/// Sends one beacon and checks it was taken.
fn beacon(conn: &mut Conn, body: &str, ua: &str, xff: &str) {
    let reply = conn.raw(&post(body, ua, xff, "text/plain"));
    assert_eq!(reply.status, 202, "{body}: {}", reply.text());
}

/// `visitors` visitors (addresses from `net`), each viewing one to four
/// pages from a referrer; every fifth signs up (a custom event) and every
/// other one reports time on its last page (an engagement beacon).
fn feed(server: &Server, net: &str, visitors: usize) {
    let mut conn = Conn::open(server.addr);
    for v in 0..visitors {
        let xff = format!("{net}.{}", v + 1);
        let ua = UAS[v % UAS.len()];
        let referrer = REFERRERS[v % REFERRERS.len()];
        let views = 1 + (v * 7) % 4;
        let mut url = String::new();
        for p in 0..views {
            // The front page first for most; later pages less often.
            url = format!(
                "https://{SITE}{}",
                PAGES[(v % 3 + p * (v % 2 + 1)) % PAGES.len()]
            );
            let r = if p == 0 && !referrer.is_empty() {
                format!(r#","r":"{referrer}""#)
            } else {
                String::new()
            };
            beacon(
                &mut conn,
                &format!(r#"{{"n":"pageview","u":"{url}","d":"{SITE}"{r}}}"#),
                ua,
                &xff,
            );
        }
        if v % 2 == 0 {
            let ms = 4_000 + 9_000 * (v % 5);
            beacon(
                &mut conn,
                &format!(r#"{{"n":"engagement","u":"{url}","d":"{SITE}","e":{ms},"sd":60}}"#),
                ua,
                &xff,
            );
        }
        if v % 5 == 0 {
            beacon(
                &mut conn,
                &format!(r#"{{"n":"Signup","u":"https://{SITE}/pricing","d":"{SITE}"}}"#),
                ua,
                &xff,
            );
        }
    }
}

/// Where the screenshots go, kept after the test: `target/dashboard-shots/`.
fn shots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-shots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `node dashboard/ui/dev/real-check.mjs --url … ARGS` (at most three
/// minutes) and asserts it passed, showing what it printed if not.
fn real_check(server: &Server, out: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard/ui/dev/real-check.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .args(["--url", &format!("http://{}/", server.operator)])
        .args(["--site", SITE, "--out"])
        .arg(out)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js; scripts/test.sh needs it and installs scripts/dashboard-build)");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.is_some_and(|s| s.success()),
        "real-check.mjs {}:\n{stdout}\n{stderr}\nserver log:\n{}",
        status.map_or("ran over three minutes".into(), |s| s.to_string()),
        server.log()
    );
    stdout
}

#[test]
fn the_dashboard_in_chromium_shows_what_the_api_answers() {
    // Today's range must stay one day from the beacons to the checks.
    wait_if_near_midnight();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &["--trusted-proxy", "127.0.0.1"]);
    feed(&server, "198.51.100", 32);
    // Nothing written yet: what the page shows comes from memory.
    assert!(crate::support::parquet_files(&data).is_empty());
    let out = real_check(&server, &shots_dir(), &[]);
    println!("{out}");
    assert!(out.contains(" 0 failed"), "{out}");
    assert!(server.stop().success(), "{}", server.log());
}

/// A month of a small site's traffic, for the screenshot in
/// docs/dashboard.png (docs/dashboard.md, "The screenshot"): each of the
/// last 29 days and each past hour of today fed to a run of `serve` whose
/// clock libfaketime sets to that day or hour (written to files when it
/// stops), then a live run for this hour, left running while
/// real-check.mjs checks the page and shoots the last 30 days into
/// `target/dashboard-shots/month/`: a month of files (and their daily
/// rollups) beside a live hour, read alike by the page and the API.
#[test]
fn a_month_of_traffic_reads_the_same_in_chromium_as_in_the_api() {
    // Each past day's clock runs this many times fast, so the GAP between
    // a visitor's views is a minute or two of the server's time.
    const FAST: u32 = 200;
    const GAP: Duration = Duration::from_millis(400);
    wait_if_near_midnight();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let geo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo-geolite2.mmdb");
    // At 200 times the speed, the 10 s header timeout is 50 ms of real
    // time: a loaded machine could miss it between opening a connection
    // and sending the request. Ten minutes of the fast clock is 3 s.
    let args = [
        "--trusted-proxy",
        "127.0.0.1",
        "--geoip-db",
        geo.to_str().unwrap(),
        "--header-timeout",
        "10m",
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let today = now - now % 86_400;
    let mut rng = Rng(2026);
    // A growing site, quieter at weekends, with a day on Hacker News.
    for back in (1..30).rev() {
        let day = today - back * 86_400;
        let weekday = (day / 86_400 + 4) % 7; // 0 is Sunday
        let mut visitors = 60 + (30 - back as usize) * 3;
        if weekday == 0 || weekday == 6 {
            visitors = visitors * 3 / 5;
        }
        if back == 12 {
            visitors *= 3;
        }
        let at = format!("@{} 12:00:00 x{FAST}", utc_date(day));
        let mut server = Server::start_at(Some(&at), &data, &args);
        feed_month_day(&server, &mut rng, visitors, back == 12, GAP);
        assert!(server.stop().success(), "{}", server.log());
    }
    for hour in 0..(now % 86_400) / 3600 {
        let at = format!("@{} {hour:02}:20:00 x{FAST}", utc_date(today));
        let mut server = Server::start_at(Some(&at), &data, &args);
        let visitors = 4 + rng.below(6);
        feed_month_day(&server, &mut rng, visitors, false, GAP);
        assert!(server.stop().success(), "{}", server.log());
    }
    let mut server = Server::start(&data, &args);
    feed_month_day(&server, &mut rng, 12, false, Duration::ZERO);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-shots/month");
    std::fs::create_dir_all(&out).unwrap();
    let printed = real_check(&server, &out, &["--shot-view", "period=30d"]);
    println!("{printed}");
    assert!(server.stop().success(), "{}", server.log());
}

const MONTH_PAGES: &[&str] = &[
    "/",
    "/pricing",
    "/docs",
    "/docs/install",
    "/blog/counting-without-cookies",
    "/docs/api",
    "/about",
    "/changelog",
    "/blog/hll-sketches",
    "/contact",
    "/careers",
    "/blog/launch",
];

/// Browsers of today, most common first.
const MONTH_UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36 Edg/142.0.0.0",
    "Mozilla/5.0 (iPad; CPU OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Mobile/15E148 Safari/604.1",
];

/// One visitor's day: where from, with what, and the pages in order.
struct Plan {
    xff: String,
    ua: &'static str,
    referrer: &'static str,
    campaign: &'static str,
    pages: Vec<&'static str>,
    events: Vec<&'static str>,
    /// The engagement beacon's time on its page, none if 0.
    engaged_ms: usize,
}

/// `visitors` visitors of a day: pages, referrers and browsers skewed as
/// real traffic is, addresses over the test GeoIP database's countries
/// (tests/data: DE, FR, JP, US, BR, and some in none), two goals, and time
/// on the site: every visitor's first views go out, then `gap` later
/// everyone's second, and so on, then the engagements (a visit lasts from
/// its first beacon to its last; under a fast clock `gap` is minutes).
fn feed_month_day(server: &Server, rng: &mut Rng, visitors: usize, on_hn: bool, gap: Duration) {
    let referrers: &[&'static str] = if on_hn {
        &[
            "https://news.ycombinator.com/item?id=2",
            "",
            "https://www.google.com/",
        ]
    } else {
        &[
            "",
            "https://www.google.com/",
            "",
            "https://duckduckgo.com/",
            "https://github.com/footfall/footfall",
            "https://www.google.com/",
            "https://www.reddit.com/r/selfhosted/",
            "https://www.bing.com/",
            "https://news.ycombinator.com/item?id=1",
        ]
    };
    let plans: Vec<Plan> = (0..visitors)
        .map(|_| {
            let host = rng.below(250) + 1;
            let xff = match rng.below(20) {
                0..=5 => format!("192.0.2.{}", 128 + host % 72), // US
                6..=9 => format!("203.0.113.{host}"),            // DE
                10..=12 => format!("198.51.100.{host}"),         // FR
                13..=14 => format!("192.0.2.{}", host % 128),    // JP
                15..=16 => format!("2001:db8::{host:x}"),        // BR
                _ => format!("100.64.{}.{host}", rng.below(4)),  // in no country
            };
            let views = 1 + rng.zipf(5);
            Plan {
                xff,
                ua: MONTH_UAS[rng.zipf(MONTH_UAS.len())],
                referrer: referrers[rng.zipf(referrers.len())],
                campaign: if rng.below(12) == 0 {
                    "?utm_source=newsletter&utm_medium=email&utm_campaign=december"
                } else {
                    ""
                },
                pages: (0..views)
                    .map(|_| MONTH_PAGES[rng.zipf(MONTH_PAGES.len())])
                    .collect(),
                events: [("Signup", 25), ("Download", 9)]
                    .into_iter()
                    .filter(|(_, one_in)| rng.below(*one_in) == 0)
                    .map(|(e, _)| e)
                    .collect(),
                engaged_ms: if views > 1 || rng.below(3) == 0 {
                    5_000 + rng.below(120_000)
                } else {
                    0
                },
            }
        })
        .collect();
    let rounds = plans.iter().map(|p| p.pages.len()).max().unwrap_or(0);
    for round in 0..=rounds {
        if round > 0 {
            std::thread::sleep(gap);
        }
        // A new connection each round: the server closes an idle one.
        let mut conn = Conn::open(server.addr);
        for plan in &plans {
            let url = |page: &str| format!("https://{SITE}{page}");
            if let Some(page) = plan.pages.get(round) {
                let r = if round == 0 && !plan.referrer.is_empty() {
                    format!(r#","r":"{}""#, plan.referrer)
                } else {
                    String::new()
                };
                let q = if round == 0 { plan.campaign } else { "" };
                let u = url(page);
                let body = format!(r#"{{"n":"pageview","u":"{u}{q}","d":"{SITE}"{r}}}"#);
                beacon(&mut conn, &body, plan.ua, &plan.xff);
            }
            if round + 1 == plan.pages.len() {
                for event in &plan.events {
                    let u = url(plan.pages[round]);
                    let body = format!(r#"{{"n":"{event}","u":"{u}","d":"{SITE}"}}"#);
                    beacon(&mut conn, &body, plan.ua, &plan.xff);
                }
            }
            if round == plan.pages.len() && plan.engaged_ms > 0 {
                let u = url(plan.pages[round - 1]);
                let body = format!(
                    r#"{{"n":"engagement","u":"{u}","d":"{SITE}","e":{},"sd":{}}}"#,
                    plan.engaged_ms,
                    30 + 10 * plan.pages.len()
                );
                beacon(&mut conn, &body, plan.ua, &plan.xff);
            }
        }
    }
}
