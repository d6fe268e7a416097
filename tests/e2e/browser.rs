//! The tracker in a real browser: headless Chromium loads pages that embed
//! the README's `<script>` tag, from a site origin other than the
//! collector's, exactly as a site owner would deploy it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Server, read_pages, read_table, union_estimate};

/// The site the test pages pretend to be; Chromium resolves it to loopback.
pub(crate) const SITE: &str = "example.com";

/// The `<script>` line of the README, the one a site owner copies, with
/// its `src` pointing at this test's collector instead of the README's
/// example host.
fn readme_tag(collector: SocketAddr) -> String {
    let readme = include_str!("../../README.md");
    // The tag of the ```html block ("Embed it"), not a shell example's.
    let tag = readme
        .split("```html\n")
        .nth(1)
        .and_then(|block| {
            block
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("<script"))
        })
        .filter(|l| l.contains("/script.js"))
        .expect("README.md has an html block with the tracker's <script> tag");
    let src = tag
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .filter(|src| src.ends_with("/script.js"))
        .unwrap_or_else(|| panic!("the README's tag loads /script.js from a src: {tag}"));
    tag.replace(src, &format!("http://{collector}/script.js"))
}

/// Serves fixed pages on a loopback port: the site that embeds the tracker.
fn serve_pages(pages: Vec<(&'static str, String)>) -> SocketAddr {
    serve_pages_seen(|_| pages).0
}

/// The request targets (path and query) a page server was asked for, in
/// the order they came.
pub(crate) type Seen = Arc<Mutex<Vec<String>>>;

/// As [`serve_pages`], with pages that may name the server's own address,
/// and what was asked for.
pub(crate) fn serve_pages_seen(
    pages: impl FnOnce(SocketAddr) -> Vec<(&'static str, String)>,
) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pages = Arc::new(pages(addr));
    let seen = Seen::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            // A thread per connection: Chromium opens spare connections it
            // may never use, and one must not block the others.
            let pages = Arc::clone(&pages);
            let log = Arc::clone(&log);
            std::thread::spawn(move || serve_one(stream, &pages, &log));
        }
    });
    (addr, seen)
}

fn serve_one(mut stream: std::net::TcpStream, pages: &[(&'static str, String)], seen: &Seen) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    seen.lock().unwrap().push(target.to_owned());
    let path = target.split('?').next().unwrap_or(target);
    let (status, body) = match pages.iter().find(|(p, _)| *p == path) {
        Some((_, body)) => ("200 OK", body.clone()),
        None => ("404 Not Found", "not found".to_owned()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Headless Chromium showing `url`, until killed.
pub(crate) struct Browser {
    child: Child,
    /// A fresh profile each time: no opt-out flag or cache carries over.
    _profile: tempfile::TempDir,
}

/// How the test browser introduces itself: a person's desktop Chromium.
/// Headless Chromium's own User-Agent says `HeadlessChrome`, which footfall
/// rightly drops as a bot.
const DESKTOP_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// Leaves `navigator.webdriver` false.
const NOT_AUTOMATED: &str = "--disable-blink-features=AutomationControlled";

impl Browser {
    /// Chromium as a person's browser: a desktop User-Agent, and not marked
    /// as driven by automation (the remote-debugging port that keeps it
    /// running would otherwise set `navigator.webdriver`).
    pub(crate) fn open(url: &str) -> Browser {
        // A laptop's window: the tracker reports its width, which makes the
        // device class (headless Chromium's default 800 px is a tablet's).
        Browser::launch(
            url,
            &[
                &format!("--user-agent={DESKTOP_UA}"),
                NOT_AUTOMATED,
                "--window-size=1280,800",
            ],
        )
    }

    fn launch(url: &str, extra: &[&str]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                // Every host name is this machine: the test sites, and the
                // places their links lead to.
                "--host-resolver-rules=MAP * 127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; scripts/test.sh installs Debian's chromium",
                    chromium()
                )
            });
        Browser {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Polls `/metrics` until the collector has recorded at least `views`
/// views. (More than expected shows up in the final assertions, with the
/// pages named.)
fn wait_for_views(server: &Server, views: u64) {
    wait_for_metric(server, "footfall_views_total", views);
}

/// Polls `/metrics` until `series` reaches `at_least`.
fn wait_for_metric(server: &Server, series: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = server.metrics();
        let seen: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        if seen >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} below {at_least} within 60 s:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_readme_tag_counts_loads_and_spa_navigation_and_honours_opt_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--site", SITE]);
    let tag = readme_tag(server.addr);
    let collector = format!("http://{}", server.addr);

    let index = format!(
        "<!doctype html><html><head><title>home</title>{tag}</head><body><h1>home</h1>\
         <script>addEventListener('load', () => setTimeout(() => \
         history.pushState({{}}, '', '/spa-next?session=spa-secret#frag'), 300));</script></body></html>"
    );
    // Opted out before the tracker runs; a marker beacon sent later tells
    // the test the page is done without waiting blindly.
    let optout = format!(
        "<!doctype html><html><head><title>opt out</title>\
         <script>localStorage.setItem('footfall_ignore', 'true');</script>{tag}</head><body>\
         <script>addEventListener('load', () => setTimeout(() => fetch('{collector}/api/event', \
         {{method: 'POST', body: JSON.stringify({{n: 'pageview', u: location.origin + '/optout-marker', d: '{SITE}'}})}}), 500));\
         </script></body></html>"
    );
    let site = serve_pages(vec![("/index.html", index), ("/optout.html", optout)]);
    let site_url = format!("http://{SITE}:{}", site.port());

    {
        let _browser = Browser::open(&format!("{site_url}/index.html?utm_campaign=x"));
        wait_for_views(&server, 2);
    }
    {
        let _browser = Browser::open(&format!("{site_url}/optout.html"));
        wait_for_views(&server, 3);
    }
    assert!(server.stop().success());

    let rows = read_pages(tmp.path());
    let get = |page: &str| {
        let rs: Vec<_> = rows.iter().filter(|r| r.page == page).collect();
        (
            rs.iter().map(|r| r.views).sum::<i64>(),
            rs.iter().map(|r| r.entries).sum::<i64>(),
        )
    };
    assert_eq!(
        get("/index.html"),
        (1, 1),
        "the load is a view and a landing"
    );
    assert_eq!(
        get("/spa-next"),
        (1, 0),
        "pushState is a view, referred by the previous page"
    );
    assert_eq!(get("/optout-marker"), (1, 1));
    assert_eq!(get("/optout.html"), (0, 0), "opted out: not counted");
    assert_eq!(rows.iter().map(|r| r.views).sum::<i64>(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.site == SITE));
    assert_eq!(
        union_estimate(&rows).round(),
        1.0,
        "one browser, one visitor"
    );
    let devices = read_table(tmp.path(), "devices");
    let families: Vec<_> = devices.iter().map(|r| r.dims.clone()).collect();
    let s = |v: &str| Some(v.to_owned());
    assert!(
        families
            .iter()
            .all(|d| *d == [s("Chrome"), s("Linux"), s("desktop")]),
        "{families:?}"
    );
}

/// A page that sends, 500 ms after load, a marker beacon from its own
/// script (not the tracker), so the test knows the tracker has had its
/// chance without waiting blindly.
fn page_with_marker(tag: &str, collector: &str, marker: &str) -> String {
    format!(
        "<!doctype html><html><head><title>{marker}</title>{tag}</head><body>\
         <script>addEventListener('load', () => setTimeout(() => fetch('{collector}/api/event', \
         {{method: 'POST', body: JSON.stringify({{n: 'pageview', u: location.origin + '/{marker}', d: '{SITE}'}})}}), 500));\
         </script></body></html>"
    )
}

#[test]
fn headless_and_automated_browsers_are_not_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--site", SITE]);
    let tag = readme_tag(server.addr);
    let collector = format!("http://{}", server.addr);
    let site = serve_pages(vec![
        (
            "/headless.html",
            page_with_marker(&tag, &collector, "headless-marker"),
        ),
        (
            "/automated.html",
            page_with_marker(&tag, &collector, "automated-marker"),
        ),
    ]);
    let site_url = format!("http://{SITE}:{}", site.port());

    // Headless Chromium's own User-Agent (`HeadlessChrome`), not marked as
    // automated, so the tracker does send: the server drops its beacon and
    // the marker alike, as bots.
    {
        let _browser = Browser::launch(&format!("{site_url}/headless.html"), &[NOT_AUTOMATED]);
        wait_for_metric(&server, "footfall_beacons_dropped_total{reason=\"bot\"}", 2);
    }
    // A person's User-Agent, but driven over the remote-debugging protocol,
    // as Puppeteer and Playwright drive it (navigator.webdriver): the
    // tracker sends nothing; only the page's own marker arrives.
    {
        let _browser = Browser::launch(
            &format!("{site_url}/automated.html"),
            &[&format!("--user-agent={DESKTOP_UA}")],
        );
        wait_for_metric(&server, "footfall_views_total", 1);
    }
    // Let a late tracker beacon arrive, if one were coming.
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.stop().success());
    let rows = read_pages(tmp.path());
    let pages: Vec<&str> = rows.iter().map(|r| r.page.as_str()).collect();
    assert_eq!(pages, ["/automated-marker"], "only the marker counts");
}

/// The README's "Try it": open the collector's own page as
/// `http://localhost:PORT/` and that visit is counted under `localhost`.
#[test]
fn the_front_page_counts_its_own_visit_as_localhost() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]);
    {
        let _browser = Browser::open(&format!("http://localhost:{}/", server.addr.port()));
        wait_for_views(&server, 1);
    }
    assert!(server.stop().success());
    let rows = read_pages(tmp.path());
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!((row.site.as_str(), row.page.as_str()), ("localhost", "/"));
    assert_eq!((row.views, row.entries), (1, 1));
    assert_eq!(union_estimate(&rows).round(), 1.0);
}

/// `footfall report --site SITE --format json` with `args`, parsed.
pub(crate) fn report_json(data: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["report", "--site", SITE, "--format", "json"];
    all.extend(args);
    let (ok, out, err) = crate::support::footfall(&all, data);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn page_report(data: &std::path::Path, by: &str) -> serde_json::Value {
    report_json(data, &["--by", by])
}

fn page_report_totals(data: &std::path::Path) -> serde_json::Value {
    report_json(data, &[])[0].clone()
}

/// Chromium reads [`two_page_spa`] as the site, to its last engagement
/// report; then the server stops.
fn read_the_spa(server: &mut Server, head: &str, scroll_to: f64, stay_ms: u32) {
    let site = serve_pages(vec![("/read", two_page_spa(head, scroll_to, stay_ms))]);
    {
        let _browser = Browser::open(&format!("http://{SITE}:{}/read", site.port()));
        wait_for_metric(server, "footfall_engagements_total", 2);
    }
    assert!(server.stop().success());
}

pub(crate) fn row_of<'a>(
    v: &'a serde_json::Value,
    key: &str,
    value: &str,
) -> &'a serde_json::Value {
    v.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no {key} {value} in {v}"))
}

/// A tall page that scrolls to `scroll_to` (a fraction of its height)
/// after load, stays `stay_ms`, moves by pushState to `/next`, stays a
/// little, then leaves for about:blank, which hides it (the tracker's
/// last engagement report).
///
/// It scrolls again just before it moves on: headless Chromium's viewport
/// can still change size after `load` (CI once read 99 % for a page
/// scrolled to its bottom at `load`), and the tracker measures the depth
/// with the viewport of the moment it reports.
fn two_page_spa(head: &str, scroll_to: f64, stay_ms: u32) -> String {
    format!(
        "<!doctype html><html><head><title>read</title>{head}</head>\
         <body style=\"margin:0\"><div style=\"height:4000px\">an article</div>\
         <script>\
         const go = () => scrollTo(0, document.documentElement.scrollHeight * {scroll_to} - innerHeight);\
         addEventListener('load', () => {{\
           go();\
           setTimeout(() => {{\
             go();\
             history.pushState({{}}, '', '/next');\
             setTimeout(() => {{ location.href = 'about:blank'; }}, 700);\
           }}, {stay_ms});\
         }});</script></body></html>"
    )
}

#[test]
fn footfalls_tracker_reports_time_on_page_and_scroll_depth() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--site", SITE]);
    let tag = readme_tag(server.addr);
    read_the_spa(&mut server, &tag, 1.0, 2_000);
    let pages = page_report(tmp.path(), "page");
    let read = row_of(&pages, "page", "/read");
    // Scrolled to the bottom; about 2 s on the page.
    assert_eq!(read["scroll_depth"], 100, "{pages}");
    let t = read["time_on_page"].as_i64().unwrap();
    assert!((1..=4).contains(&t), "{pages}");
    assert_eq!(read["exits"], 0);
    let next = row_of(&pages, "page", "/next");
    assert_eq!(next["exits"], 1, "{pages}");
    assert!(next["time_on_page"].is_number(), "{pages}");
    let totals = page_report_totals(tmp.path());
    assert_eq!(totals["visits"], 1, "{totals}");
    assert_eq!(totals["views_per_visit"], 2.0);
    assert_eq!(totals["bounce_rate"], 0.0);
    assert!(totals["visit_duration"].as_i64().unwrap() >= 2, "{totals}");
}

/// Plausible's own tracker, `@plausible-analytics/tracker` from npm
/// (installed by scripts/test.sh from tests/e2e/plausible/), pointed at
/// footfall by its `endpoint`: nothing else changed.
pub(crate) fn plausible_tracker() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/e2e/plausible/node_modules/@plausible-analytics/tracker/plausible.js"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{path}: {e}; scripts/test.sh installs it (npm ci --prefix tests/e2e/plausible)")
    })
}

#[test]
fn plausibles_official_tracker_gives_visits_time_on_page_and_scroll_depth() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--site", SITE]);
    // The package is one ES module; inline, it runs as the page's module
    // and `init` is called as Plausible's npm README shows.
    let head = format!(
        "<script type=\"module\">{}\ninit({{ domain: '{SITE}', endpoint: 'http://{}/api/event' }});</script>",
        plausible_tracker(),
        server.addr
    );
    read_the_spa(&mut server, &head, 0.5, 2_500);
    let pages = page_report(tmp.path(), "page");
    let read = row_of(&pages, "page", "/read");
    let t = read["time_on_page"].as_i64().unwrap();
    assert!((2..=5).contains(&t), "about 2.5 s on /read: {pages}");
    let sd = read["scroll_depth"].as_i64().unwrap();
    assert!(
        (40..=60).contains(&sd),
        "scrolled to half the page: {pages}"
    );
    assert!(row_of(&pages, "page", "/next")["time_on_page"].is_number());
    let totals = page_report_totals(tmp.path());
    assert_eq!(totals["views"], 2, "{totals}");
    assert_eq!(totals["visits"], 1, "one visit of two pages: {totals}");
    assert_eq!(totals["bounce_rate"], 0.0);
    assert!(totals["visit_duration"].as_i64().unwrap() >= 3, "{totals}");
    let entries = page_report(tmp.path(), "entry_page");
    assert_eq!(
        row_of(&entries, "entry_page", "/read")["visits"],
        1,
        "{entries}"
    );
}
