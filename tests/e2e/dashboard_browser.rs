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

use crate::support::{Conn, Server, post, wait_if_near_midnight};

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
