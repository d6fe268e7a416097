//! Custom events from a real browser: footfall's own script variant (links,
//! downloads, tagged elements and `window.plausible()` called before the
//! script loaded), and Plausible's official npm tracker pointed at footfall.
//! Headless Chromium clicks as the page's own script tells it; the events
//! and the one allowed prop come out of `footfall report`, and a prop that
//! was not allowed is nowhere under the data dir.

use std::fs::File;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arrow_array::{Array, BinaryArray, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::browser::{
    Browser, SITE, Seen, plausible_tracker, report_json, row_of, serve_pages_seen,
};
use crate::support::{Conn, Server, all_files, parquet_files};

/// Where the test pages' outbound link leads: another host (Chromium
/// resolves every host to loopback), with a port, a query and a fragment
/// that the stored prop must not keep.
const OTHER: &str = "other.test";

/// A prop value under a key the owner did not allow (`--event-prop plan`
/// allows only `plan`).
const SECRET: &str = "tok_live_123";

/// The links every test page has, each opening in a frame of the page so
/// that following it leaves the page (and its tracker) in place: one to
/// another host (served by the site's server, `site`) and one to a file on
/// the site.
fn links(site: SocketAddr) -> String {
    format!(
        "<a id=\"away\" target=\"a\" href=\"http://{OTHER}:{port}/away?x=1#y\">elsewhere</a>\
         <a id=\"report\" target=\"b\" href=\"/files/report.pdf\">the report</a>\
         <iframe name=\"a\"></iframe><iframe name=\"b\"></iframe>",
        port = site.port()
    )
}

/// `answered(n, then)`, for the page's script: calls `then` once `n`
/// requests to /api/event have been answered (the browser's resource timing
/// lists a beacon, or a fetch, when its answer is in). The collector answers
/// only once it has counted, so after that a stop loses nothing.
const ANSWERED: &str = "function answered(n, then) {\
     const count = () => performance.getEntriesByType('resource')\
       .filter((e) => e.name.includes('/api/event')).length;\
     (function poll() { count() >= n ? then() : setTimeout(poll, 50); })();\
   }";

/// Starts footfall, allowing prop `plan`; serves the page that `page`
/// makes (from the collector's and its own server's addresses) at `/page`,
/// and the links' targets; shows it in Chromium until the page has asked
/// for `/done` and both links were followed; then stops the server.
fn run_page(page: impl FnOnce(SocketAddr, SocketAddr) -> String) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--site", SITE, "--event-prop", "plan"]);
    let collector = server.addr;
    let (site, seen) = serve_pages_seen(|site| {
        vec![
            ("/page", page(collector, site)),
            ("/away", "<p>elsewhere</p>".to_owned()),
            ("/files/report.pdf", "<p>a report</p>".to_owned()),
        ]
    });
    {
        let _browser = Browser::open(&format!("http://{SITE}:{}/page", site.port()));
        wait_for_request(&seen, "/done");
        // The tracker let both links be followed.
        wait_for_request(&seen, "/away?x=1");
        wait_for_request(&seen, "/files/report.pdf");
    }
    assert!(server.stop().success());
    (tmp, server)
}

/// A test page: `head`, then the links of [`links`] and `body`.
fn page(site: SocketAddr, head: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><title>events</title>{head}</head><body>{}{body}</body></html>",
        links(site)
    )
}

/// Waits (at most 60 s) until a page server has been asked for `target`.
fn wait_for_request(seen: &Seen, target: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.lock().unwrap().iter().any(|t| t == target) {
        assert!(
            Instant::now() < deadline,
            "no request for {target} within 60 s: {:?}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `footfall report --by event`: each of `names` once, by the one visitor
/// (so a conversion rate of 100 %), and no other event.
fn assert_events(data: &std::path::Path, names: &[&str]) {
    let events = report_json(data, &["--by", "event"]);
    for name in names {
        let row = row_of(&events, "event", name);
        assert_eq!(row["events"], 1, "{name}: {events}");
        assert_eq!(row["visitors"], 1, "{name}: {events}");
        assert_eq!(row["conversion_rate"], 100.0, "{name}: {events}");
    }
    for row in events.as_array().unwrap() {
        let name = row["event"].as_str().unwrap();
        assert!(
            names.contains(&name) || name == "pageview",
            "an event no one sent: {events}"
        );
    }
}

/// `footfall report --by prop:KEY --event NAME`: the one value of that prop.
fn assert_prop(data: &std::path::Path, event: &str, key: &str, value: &str) {
    let by = format!("prop:{key}");
    let rows = report_json(data, &["--by", &by, "--event", event]);
    let all = rows.as_array().unwrap();
    assert_eq!(all.len(), 1, "{event} {by}: {rows}");
    assert_eq!(all[0][by.as_str()], value, "{event}: {rows}");
    assert_eq!(all[0]["events"], 1, "{event}: {rows}");
    assert_eq!(all[0]["visitors"], 1, "{event}: {rows}");
}

/// What both trackers must have sent: `names` once each, `Signup` with
/// prop `plan`, the links' events with their `url` as the collector keeps
/// it (the outbound link's host and path, without port, query or fragment;
/// the download's path on the site), and the prop that was not allowed
/// nowhere.
fn assert_sent(server: &Server, names: &[&str]) {
    let data = &server.data_dir;
    assert_events(data, names);
    assert_prop(data, "Signup", "plan", "pro");
    assert_prop(
        data,
        "Outbound Link: Click",
        "url",
        &format!("{OTHER}/away"),
    );
    assert_prop(data, "File Download", "url", "/files/report.pdf");
    assert_nowhere(server, SECRET);
}

/// Neither the bytes of any file under the data dir, nor any text or
/// binary value of any Parquet file's columns (a compressed page could hide
/// a value from the byte scan), nor the server's log holds `needle`.
fn assert_nowhere(server: &Server, needle: &str) {
    let mut haystacks: Vec<(String, Vec<u8>)> = all_files(&server.data_dir)
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    for file in parquet_files(&server.data_dir) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            for column in batch.unwrap().columns() {
                let any = column.as_any();
                let values: Vec<&[u8]> = if let Some(s) = any.downcast_ref::<StringArray>() {
                    s.iter().flatten().map(str::as_bytes).collect()
                } else if let Some(b) = any.downcast_ref::<BinaryArray>() {
                    b.iter().flatten().collect()
                } else {
                    continue;
                };
                haystacks.push((format!("decoded {}", file.display()), values.concat()));
            }
        }
    }
    haystacks.push(("server log".into(), server.log().into_bytes()));
    assert!(haystacks.len() > 2, "files were written: {haystacks:?}");
    for (name, hay) in &haystacks {
        assert!(
            !hay.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{name} holds {needle}"
        );
    }
}

#[test]
fn footfalls_script_variant_sends_links_downloads_tagged_and_queued_events() {
    let (_tmp, server) = run_page(|collector, site| {
        page(
            site,
            &format!(
                "<script>\
                   window.plausible = window.plausible || function () {{ (window.plausible.q = window.plausible.q || []).push(arguments) }};\
                   plausible('Signup', {{props: {{plan: 'pro', secret: '{SECRET}'}}}});\
                 </script>\
                 <script defer data-domain=\"{SITE}\" src=\"http://{collector}/js/script.outbound-links.file-downloads.tagged-events.js\"></script>"
            ),
            &format!(
                "<button id=\"join\" class=\"plausible-event-name=Newsletter+Signup plausible-event-plan=pro\">join</button>\
                 <script>{ANSWERED}\
                   addEventListener('load', () => answered(2, () => {{\
                     join.click(); away.click(); report.click();\
                     answered(5, () => fetch('/done'));\
                   }}));\
                 </script>"
            ),
        )
    });
    assert_sent(
        &server,
        &[
            "Signup",
            "Newsletter Signup",
            "Outbound Link: Click",
            "File Download",
        ],
    );
    assert_prop(&server.data_dir, "Newsletter Signup", "plan", "pro");
    // One page, but interactive events: a visit, and no bounce.
    let totals = &report_json(&server.data_dir, &[])[0];
    assert_eq!(totals["visits"], 1, "{totals}");
    assert_eq!(totals["bounce_rate"], 0.0, "{totals}");
}

#[test]
fn plausibles_official_tracker_sends_custom_events_outbound_clicks_and_downloads() {
    let (_tmp, server) = run_page(|collector, site| {
        // Inline, the package runs as the page's module, after the page is
        // parsed; it sends its pageview, then the page's events.
        page(
            site,
            &format!(
                "<script type=\"module\">{tracker}\n\
                   {ANSWERED}\
                   init({{ domain: '{SITE}', endpoint: 'http://{collector}/api/event', outboundLinks: true, fileDownloads: true }});\
                   track('Signup', {{ props: {{ plan: 'pro', secret: '{SECRET}' }} }});\
                   document.getElementById('away').click();\
                   document.getElementById('report').click();\
                   answered(4, () => fetch('/done'));\
                 </script>",
                tracker = plausible_tracker()
            ),
            "",
        )
    });
    assert_sent(
        &server,
        &["Signup", "Outbound Link: Click", "File Download"],
    );
}

/// Plausible's script paths, as a browser asks for them: every variant
/// with the tracker's headers, gzipped within its budget; an unknown
/// extension is a 404 that says which there are.
#[test]
fn plausibles_script_paths_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--site", SITE]);
    let get =
        |path: &str| Conn::open(server.addr).send("GET", path, &[("Accept-Encoding", "gzip")], b"");
    let core = get("/script.js");
    for path in [
        "/js/script.js",
        "/js/script.hash.js",
        "/js/script.manual.js",
        "/js/script.tagged-events.file-downloads.outbound-links.hash.manual.js",
    ] {
        let r = get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        assert!(r.body.len() < 1536, "{path}: {} bytes", r.body.len());
        for name in [
            "content-type",
            "cache-control",
            "vary",
            "access-control-allow-origin",
            "x-content-type-options",
        ] {
            assert_eq!(r.header(name), core.header(name), "{path}: {name}");
        }
        let etag = r.header("etag").unwrap();
        let again = Conn::open(server.addr).send(
            "GET",
            path,
            &[("Accept-Encoding", "gzip"), ("If-None-Match", etag)],
            b"",
        );
        assert_eq!(again.status, 304, "{path}");
    }
    assert_eq!(
        get("/js/script.js").header("etag"),
        core.header("etag"),
        "/js/script.js is /script.js"
    );
    for path in ["/js/script.hash.hash.js", "/js/script.revenue.js"] {
        let r = get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.text().contains("outbound-links"), "{}", r.text());
    }
    assert!(server.stop().success());
}
