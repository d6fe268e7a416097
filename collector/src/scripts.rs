//! The tracker as served: `/script.js`, and Plausible's script variants at
//! `/js/script.js` and `/js/script.<ext>.<ext>….js`, so that a Plausible tag
//! works by changing only its host.
//!
//! A variant is the core (`tracker.js`) with the fragments of its
//! extensions (`tracker/*.js`) put at the core's `@variants` line; the
//! manual variant leaves out the core's automatic views. All 32 are
//! composed and minified by terser at development time,
//! `node scripts/build-tracker.mjs`, into `tracker/dist/`, which is
//! committed and embedded here: nothing is built at run time. Each is
//! gzipped and given its ETag once, when first asked for, and kept.

use std::io::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::server::{Resp, empty, text};

/// The extensions a variant's path may name, each at most once and in any
/// order; a variant's bit for each is its place here. (Plausible's
/// `pageview-props` is not among them: footfall stores no properties of
/// page views, so the script would send what is only dropped.) `scripts/build-tracker.mjs` has the same list, which also
/// orders the fragments: `hash` before anything reads it, and the
/// tagged-events rule for a link before the outbound and download rules it
/// overrides.
const EXTENSIONS: [&str; 5] = [
    "hash",
    "manual",
    "tagged-events",
    "outbound-links",
    "file-downloads",
];

/// Every variant as `scripts/build-tracker.mjs` wrote it, indexed by its
/// extensions' bits: its file name (the extensions in [`EXTENSIONS`]
/// order) and its minified text. `/script.js` is the first, with none.
const VARIANTS: [(&str, &str); 1 << EXTENSIONS.len()] = include!("tracker/dist/variants.rs");

/// The answer to `GET /script.js`: the core, which is also `/js/script.js`.
pub(crate) fn script(headers: &HeaderMap) -> Resp {
    serve(built(0), headers)
}

/// The answer to `GET /js/…`: the variant the file name asks for, or a 404
/// that lists what may be asked for.
pub(crate) fn variant(path: &str, headers: &HeaderMap) -> Resp {
    match path.strip_prefix("/js/").and_then(extensions) {
        Some(mask) => serve(built(mask), headers),
        None => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!(
                "no such script: footfall serves /js/script.js and /js/script.<ext>.js with \
                 any of the extensions {}, each at most once, joined by dots in any order\n",
                EXTENSIONS.join(", ")
            ),
        ),
    }
}

/// The extensions a file name asks for, one bit each (by its place in
/// [`EXTENSIONS`]): `script.js` is none, `script.hash.outbound-links.js`
/// two. An unknown or repeated name, or an empty one, is `None`.
fn extensions(file: &str) -> Option<u8> {
    let names = file.strip_prefix("script")?.strip_suffix(".js")?;
    if names.is_empty() {
        return Some(0);
    }
    let mut mask = 0u8;
    for name in names.strip_prefix('.')?.split('.') {
        let bit = 1 << EXTENSIONS.iter().position(|n| *n == name)?;
        if mask & bit != 0 {
            return None;
        }
        mask |= bit;
    }
    Some(mask)
}

/// A variant, gzipped the first time it is asked for.
fn built(mask: u8) -> &'static Script {
    static BUILT: [OnceLock<Script>; 1 << EXTENSIONS.len()] =
        [const { OnceLock::new() }; 1 << EXTENSIONS.len()];
    BUILT[usize::from(mask)].get_or_init(|| Script::new(VARIANTS[usize::from(mask)].1))
}

/// One variant, both ways it is served.
#[derive(Debug)]
struct Script {
    plain: Bytes,
    gzipped: Bytes,
    plain_etag: HeaderValue,
    gzipped_etag: HeaderValue,
}

impl Script {
    fn new(plain: &'static str) -> Script {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(plain.as_bytes()).expect("gzip into memory");
        let gzipped = gz.finish().expect("gzip into memory");
        // The tracker changes only with a release: its content names it.
        let digest = {
            use std::hash::Hasher as _;
            let mut h = siphasher::sip::SipHasher13::new();
            h.write(plain.as_bytes());
            h.finish()
        };
        let tag = |suffix: &str| {
            HeaderValue::from_str(&format!("\"{digest:016x}{suffix}\""))
                .expect("hex is a header value")
        };
        Script {
            plain: Bytes::from_static(plain.as_bytes()),
            gzipped: Bytes::from(gzipped),
            // Each encoding is its own representation, with its own tag.
            plain_etag: tag(""),
            gzipped_etag: tag("-gz"),
        }
    }
}

fn serve(s: &Script, headers: &HeaderMap) -> Resp {
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(accepts_gzip);
    let (body, etag) = if gzip {
        (&s.gzipped, &s.gzipped_etag)
    } else {
        (&s.plain, &s.plain_etag)
    };
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").as_bytes() == etag.as_bytes());
    let mut r = if fresh {
        empty(StatusCode::NOT_MODIFIED)
    } else {
        Response::new(Full::new(body.clone()))
    };
    let h = r.headers_mut();
    if !fresh {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        );
        if gzip {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    // A day without asking, then a 304 for as long as the release lasts.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    h.insert(header::ETAG, etag.clone());
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// True for an `Accept-Encoding` item that asks for gzip: `gzip` or
/// `gzip;q=0.8`, but not `gzip;q=0`, which refuses it.
fn accepts_gzip(item: &str) -> bool {
    let mut parts = item.split(';').map(str::trim);
    if !parts.next().is_some_and(|e| e.eq_ignore_ascii_case("gzip")) {
        return false;
    }
    parts
        .filter_map(|p| p.strip_prefix("q="))
        .all(|q| q.parse::<f32>().is_ok_and(|q| q > 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_bytes(r: Resp) -> Bytes {
        use http_body_util::BodyExt as _;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(r.into_body().collect()).unwrap().to_bytes()
    }

    #[test]
    fn the_tracker_is_revalidated_by_its_etag() {
        let mut h = HeaderMap::new();
        let first = script(&h);
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].clone();
        h.insert(header::IF_NONE_MATCH, etag.clone());
        let again = script(&h);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag);
        assert!(body_bytes(again).is_empty());
        // The gzipped tracker is another representation.
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let gz = script(&h);
        assert_eq!(gz.status(), StatusCode::OK);
        assert_ne!(gz.headers()[header::ETAG], etag);
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"other\", *"),
        );
        assert_eq!(script(&h).status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn the_tracker_is_under_a_kilobyte_gzipped() {
        let Script { plain, gzipped, .. } = built(0);
        assert!(gzipped.len() < 1024, "{} bytes gzipped", gzipped.len());
        let text = std::str::from_utf8(plain).unwrap();
        assert!(text.contains("sendBeacon") && text.contains("pushState"));
        assert!(text.contains(".plausible=") && text.contains(".plausible.q"));
        assert!(!text.contains("document.cookie"));
    }

    /// Every variant's extension bits.
    fn every_mask() -> impl Iterator<Item = u8> {
        0..1 << EXTENSIONS.len()
    }

    /// An extension's bit.
    fn bit(name: &str) -> u8 {
        1 << EXTENSIONS.iter().position(|n| *n == name).unwrap()
    }

    /// A variant's file name, its extensions in their canonical order.
    fn names(mask: u8) -> String {
        let mut file = String::from("script");
        for (i, name) in EXTENSIONS.iter().enumerate() {
            if mask & (1 << i) != 0 {
                file = format!("{file}.{name}");
            }
        }
        file + ".js"
    }

    #[test]
    fn a_variant_is_named_by_its_extensions_in_any_order() {
        assert_eq!(extensions("script.js"), Some(0));
        for name in EXTENSIONS {
            assert_eq!(extensions(&format!("script.{name}.js")), Some(bit(name)));
        }
        let all = bit("outbound-links") | bit("file-downloads") | bit("tagged-events");
        for file in [
            "script.outbound-links.file-downloads.tagged-events.js",
            "script.tagged-events.outbound-links.file-downloads.js",
            "script.file-downloads.tagged-events.outbound-links.js",
        ] {
            assert_eq!(extensions(file), Some(all), "{file}");
        }
        assert_eq!(
            extensions("script.hash.manual.tagged-events.outbound-links.file-downloads.js"),
            Some((1 << EXTENSIONS.len()) - 1)
        );
    }

    /// The build script numbers the extensions as [`EXTENSIONS`] does: the
    /// variant at a path's bits is the file of that path's extensions.
    #[test]
    fn each_built_variant_is_at_its_extensions_bits() {
        for mask in every_mask() {
            let (file, _) = VARIANTS[usize::from(mask)];
            assert_eq!(file, names(mask));
            assert_eq!(extensions(file), Some(mask), "{file}");
        }
    }

    #[test]
    fn unknown_repeated_or_empty_extensions_are_not_a_variant() {
        for file in [
            "script.hash.hash.js",
            "script.outbound-links.hash.outbound-links.js",
            "script.revenue.js",
            "script.pageview-props.js",
            "script.HASH.js",
            "script..js",
            "script.hash..js",
            "script.hash.",
            "script.hash",
            "script",
            "scripthash.js",
            "script.js.js",
            "plausible.js",
            "x/script.js",
            "",
        ] {
            assert_eq!(extensions(file), None, "{file}");
        }
    }

    #[test]
    fn an_unknown_variant_is_a_404_that_names_the_extensions() {
        let h = HeaderMap::new();
        for path in [
            "/js/script.revenue.js",
            "/js/script.hash.hash.js",
            "/js/other.js",
        ] {
            let r = variant(path, &h);
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(
                r.headers()[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain")
            );
            let body = String::from_utf8(body_bytes(r).to_vec()).unwrap();
            for name in EXTENSIONS {
                assert!(body.contains(name), "{body}");
            }
        }
    }

    #[test]
    fn a_variant_is_served_as_the_tracker_is() {
        let h = HeaderMap::new();
        let core = script(&h);
        let plain = variant("/js/script.js", &h);
        assert_eq!(plain.status(), StatusCode::OK);
        // /js/script.js is /script.js.
        assert_eq!(plain.headers()[header::ETAG], core.headers()[header::ETAG]);
        let a = variant("/js/script.outbound-links.hash.js", &h);
        let b = variant("/js/script.hash.outbound-links.js", &h);
        assert_eq!(a.status(), StatusCode::OK);
        assert_eq!(a.headers()[header::ETAG], b.headers()[header::ETAG]);
        assert_ne!(a.headers()[header::ETAG], core.headers()[header::ETAG]);
        for name in [
            header::CONTENT_TYPE,
            header::CACHE_CONTROL,
            header::VARY,
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
        ] {
            assert_eq!(a.headers()[&name], core.headers()[&name], "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let gz = variant("/js/script.hash.outbound-links.js", &h);
        assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
        h.insert(header::IF_NONE_MATCH, gz.headers()[header::ETAG].clone());
        let again = variant("/js/script.outbound-links.hash.js", &h);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn every_variant_is_under_one_and_a_half_kilobytes_gzipped() {
        for mask in every_mask() {
            let s = built(mask);
            assert!(
                s.gzipped.len() < 1536,
                "{}: {} bytes gzipped",
                names(mask),
                s.gzipped.len()
            );
        }
    }

    /// Each variant has exactly the code of its extensions: the manual one
    /// no automatic view, the others their events' names (strings, which
    /// minifying keeps as they are).
    #[test]
    fn a_variant_has_the_code_of_its_extensions_and_no_other() {
        for mask in every_mask() {
            let t = VARIANTS[usize::from(mask)].1;
            let has = |name: &str| mask & bit(name) != 0;
            assert_eq!(t.contains("pushState"), !has("manual"), "{}", names(mask));
            assert_eq!(t.contains("prerenderingchange"), !has("manual"));
            assert_eq!(t.contains("plausible-event-"), has("tagged-events"));
            assert_eq!(t.contains("\"submit\""), has("tagged-events"));
            assert_eq!(t.contains("Outbound Link: Click"), has("outbound-links"));
            assert_eq!(t.contains("File Download"), has("file-downloads"));
            assert_eq!(
                t.contains("\"auxclick\""),
                has("tagged-events") || has("outbound-links") || has("file-downloads")
            );
            // What every variant keeps: the API, the engagement reports,
            // the opt-out and the automation check.
            for kept in [
                ".plausible=",
                ".plausible.q",
                "\"engagement\"",
                "footfall_ignore",
                "webdriver",
                "data-api",
            ] {
                assert!(t.contains(kept), "{}: {kept}", names(mask));
            }
        }
    }

    /// Runs Node.js (which scripts/test.sh needs for Plausible's tracker and
    /// for terser) with these arguments.
    fn node(args: &[&std::ffi::OsStr]) -> std::process::Output {
        std::process::Command::new("node")
            .args(args)
            .output()
            .expect("node (Node.js), which scripts/test.sh needs too")
    }

    /// Every variant in a folder of its own, each in a file named as it is
    /// served.
    fn written() -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let paths = every_mask()
            .map(|mask| {
                let path = dir.path().join(names(mask));
                std::fs::write(&path, VARIANTS[usize::from(mask)].1).unwrap();
                path
            })
            .collect();
        (dir, paths)
    }

    /// Node.js parses every variant.
    #[test]
    fn every_variant_parses() {
        let (_dir, paths) = written();
        for path in paths {
            let out = node(&["--check".as_ref(), path.as_ref()]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Runs each variant named on its command line in a page of stubs, as
    /// a browser would load it with a call queued: then calls
    /// `plausible("Signup")`, clicks a link to another host's PDF and a
    /// tagged element inside a link on the site. Prints, a line per
    /// variant, the beacons sent (name and `h`) and the events listened to.
    const PAGE: &str = r##"
        const vm = require("vm"), fs = require("fs");
        for (const file of process.argv.slice(1)) {
          const sent = [], on = {};
          const listen = (target) => (type, f) => { on[target + " " + type] = f; };
          const location = { href: "http://site.test/a#/b", pathname: "/a", hash: "#/b",
            hostname: "site.test", host: "site.test" };
          const document = {
            currentScript: { src: "http://collector.test/js/x.js",
              getAttribute: () => null, hasAttribute: () => false },
            referrer: "", visibilityState: "visible", hasFocus: () => true,
            documentElement: { scrollHeight: 100, offsetHeight: 100 },
            addEventListener: listen("document") };
          const navigator = { sendBeacon: (url, body) => sent.push(JSON.parse(body)) > 0 };
          const w = vm.createContext({ document, location, navigator, URL, scrollY: 0,
            innerHeight: 100, innerWidth: 1280, localStorage: {},
            history: { pushState() {} }, addEventListener: listen("window") });
          w.window = w;
          w.plausible = { q: [["Queued"]] };
          vm.runInContext(fs.readFileSync(file, "utf8"), w);
          w.plausible("Signup");
          const click = (target) => on["document click"] && on["document click"]({ type: "click", button: 0, target });
          click({ localName: "a", host: "other.test", href: "http://other.test/report.pdf" });
          click({ localName: "span", classList: "plausible-event-name=Tagged",
            parentNode: { localName: "a", host: "site.test", href: "http://site.test/next" } });
          console.log(JSON.stringify({ sent: sent.map((b) => b.n + " " + b.h), on: Object.keys(on).sort() }));
        }
    "##;

    /// What each variant does, run: the hash variants send `h` 1 and
    /// follow `hashchange`, the manual ones send no view of their own, the
    /// others each send their events; all send the queued call after their
    /// first view.
    #[test]
    fn a_variant_does_what_its_extensions_do() {
        let (_dir, paths) = written();
        let mut args: Vec<&std::ffi::OsStr> = vec!["-e".as_ref(), PAGE.as_ref()];
        args.extend(paths.iter().map(|p| p.as_os_str()));
        let out = node(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1 << EXTENSIONS.len(), "{stdout}");
        for (mask, line) in every_mask().zip(lines) {
            let has = |name: &str| mask & bit(name) != 0;
            let h = u8::from(has("hash"));
            // The automatic view first, so that the queued call finds the
            // visit it opened.
            let mut sent = vec![];
            if !has("manual") {
                sent.push(format!("pageview {h}"));
            }
            sent.push(format!("Queued {h}"));
            sent.push(format!("Signup {h}"));
            if has("outbound-links") {
                sent.push(format!("Outbound Link: Click {h}"));
            } else if has("file-downloads") {
                sent.push(format!("File Download {h}"));
            }
            if has("tagged-events") {
                sent.push(format!("Tagged {h}"));
            }
            let mut on = vec![
                "document visibilitychange",
                "window blur",
                "window focus",
                "window scroll",
            ];
            if mask & (bit("tagged-events") | bit("outbound-links") | bit("file-downloads")) != 0 {
                on.extend(["document auxclick", "document click"]);
            }
            if has("tagged-events") {
                on.push("document submit");
            }
            if !has("manual") {
                on.push("window popstate");
                if has("hash") {
                    on.push("window hashchange");
                }
            }
            on.sort_unstable();
            let got: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                got,
                serde_json::json!({ "sent": sent, "on": on }),
                "{}",
                names(mask)
            );
        }
    }

    /// What is embedded is what the tracker's sources build: a change to
    /// `tracker.js` or `tracker/*.js` without `node
    /// scripts/build-tracker.mjs` fails here.
    #[test]
    fn the_embedded_variants_are_built_from_the_sources() {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-tracker.mjs");
        let out = node(&[script.as_ref(), "--check".as_ref()]);
        assert!(
            out.status.success(),
            "{}{}\ncollector/src/tracker/dist/ is stale: run `node scripts/build-tracker.mjs` \
             (terser first: `npm ci --prefix scripts/tracker-build --ignore-scripts`) and commit \
             what it writes",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn gzip_only_when_accepted() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip(" GZIP;q=0.5"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("br"));
        assert!(!accepts_gzip("x-gzip-ish"));
    }
}
