//! The tracker as served: `/script.js`, and Plausible's script variants at
//! `/js/script.js` and `/js/script.<ext>.<ext>….js`, so that a Plausible tag
//! works by changing only its host.
//!
//! A variant is the core (`tracker.js`) with the fragments of its
//! extensions (`tracker/*.js`) put at the core's `@variants` line; the
//! manual variant leaves out the core's automatic views. Each is minified
//! (comments and spaces dropped, declared names shortened) and gzipped once,
//! when first asked for, and kept: there are 32 at most.

use std::io::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::server::{Resp, empty, text};

/// The extensions a variant's path may name, each at most once and in any
/// order, with their fragments. A variant's fragments are put in this
/// order, whatever the path's: `hash` before anything reads it, and the
/// tagged-events rule for a link before the outbound and download rules it
/// overrides. (Plausible's `pageview-props` is not among them: with the
/// others it would not fit in 1.5 KB.)
const EXTENSIONS: [(&str, &str); 5] = [
    ("hash", include_str!("tracker/hash.js")),
    // Nothing to add: it takes the automatic views away.
    ("manual", ""),
    ("tagged-events", include_str!("tracker/tagged-events.js")),
    ("outbound-links", include_str!("tracker/outbound-links.js")),
    ("file-downloads", include_str!("tracker/file-downloads.js")),
];

/// The manual extension, whose variant has no automatic views.
const MANUAL: u8 = 1 << 1;
/// The extensions that watch clicks, and so need `links.js`.
const LINKS: u8 = 1 << 2 | 1 << 3 | 1 << 4;
/// The core tracker, which is `/script.js` as it is.
const CORE: &str = include_str!("tracker.js");

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
                EXTENSIONS.map(|(name, _)| name).join(", ")
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
        let bit = 1 << EXTENSIONS.iter().position(|(n, _)| *n == name)?;
        if mask & bit != 0 {
            return None;
        }
        mask |= bit;
    }
    Some(mask)
}

/// A variant, built the first time it is asked for.
fn built(mask: u8) -> &'static Script {
    static BUILT: [OnceLock<Script>; 1 << EXTENSIONS.len()] =
        [const { OnceLock::new() }; 1 << EXTENSIONS.len()];
    BUILT[usize::from(mask)].get_or_init(|| Script::new(minify(&compose(mask))))
}

/// The source of a variant: the core with the fragments at its `@variants`
/// line, and without its automatic views (from `@auto` to `@end auto`) if
/// manual.
fn compose(mask: u8) -> String {
    let mut out = String::new();
    let mut auto = false;
    for line in CORE.lines() {
        match line.trim() {
            "// @variants" => {
                if mask & LINKS != 0 {
                    out.push_str(include_str!("tracker/links.js"));
                }
                for (i, (_, fragment)) in EXTENSIONS.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        out.push_str(fragment);
                    }
                }
            }
            l if l.starts_with("// @auto") => auto = true,
            "// @end auto" => auto = false,
            _ if auto && mask & MANUAL != 0 => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
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
    fn new(plain: String) -> Script {
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
            plain: Bytes::from(plain),
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

/// One token of the tracker's JavaScript.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    /// An identifier or a keyword.
    Word(&'a str),
    Num(&'a str),
    /// A string or a regular expression literal, quotes or slashes and
    /// flags included: copied as it is.
    Literal(&'a str),
    Punct(u8),
}

/// The tracker's source as tokens, each with whether space came before
/// it. It knows what the tracker's sources use, and panics on anything
/// else (every variant is built by the unit tests): strings in single or
/// double quotes, `//` and `/* */` comments, and a regular expression
/// wherever a value may start (after anything but a name, a number or a
/// closing bracket).
fn tokens(src: &str) -> Vec<(Tok<'_>, bool)> {
    let b = src.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$';
    let mut out: Vec<(Tok<'_>, bool)> = Vec::new();
    let (mut i, mut space) = (0, false);
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            _ if c.is_ascii_whitespace() => {
                space = true;
                i += 1;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = src[i..].find('\n').map_or(b.len(), |n| i + n);
                space = true;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = src[i..].find("*/").expect("a closed comment") + i + 2;
                space = true;
                continue;
            }
            b'"' | b'\'' => {
                i += 1;
                while b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                Tok::Literal(&src[start..i])
            }
            b'/' if !matches!(
                out.last(),
                Some((Tok::Word(w), _)) if !matches!(*w, "return" | "typeof")
            ) && !matches!(
                out.last(),
                Some((Tok::Num(_) | Tok::Punct(b')' | b']'), _))
            ) =>
            {
                let mut class = false;
                i += 1;
                while class || b[i] != b'/' {
                    match b[i] {
                        b'\\' => i += 1,
                        b'[' => class = true,
                        b']' => class = false,
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                while i < b.len() && b[i].is_ascii_alphabetic() {
                    i += 1;
                }
                Tok::Literal(&src[start..i])
            }
            _ if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                Tok::Num(&src[start..i])
            }
            _ if word(c) => {
                while i < b.len() && word(b[i]) {
                    i += 1;
                }
                Tok::Word(&src[start..i])
            }
            _ if c.is_ascii_punctuation() => {
                i += 1;
                Tok::Punct(c)
            }
            _ => panic!(
                "the tracker's sources are ASCII outside strings: {:?}",
                &src[i..]
            ),
        };
        out.push((tok, std::mem::take(&mut space)));
    }
    out
}

/// The names a script declares (`var`, `function`, parameters, `catch`).
/// An arrow function's parameters are not among them, and keep their
/// names: the tracker gives them a letter.
fn declared<'a>(toks: &[(Tok<'a>, bool)]) -> Vec<&'a str> {
    let mut names = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match toks[i].0 {
            // A function's name, if any, and its parameters.
            Tok::Word("function" | "catch") => {
                while !matches!(toks[i].0, Tok::Punct(b')')) {
                    if let Tok::Word(w) = toks[i + 1].0 {
                        names.push(w);
                    }
                    i += 1;
                }
            }
            // Each name after `var` or a comma outside brackets, up to the
            // `;` that ends the declaration.
            Tok::Word("var") => {
                let (mut depth, mut expect) = (0, true);
                i += 1;
                while depth > 0 || toks[i].0 != Tok::Punct(b';') {
                    match toks[i].0 {
                        Tok::Word(w) if expect => names.push(w),
                        Tok::Punct(b'(' | b'[' | b'{') => depth += 1,
                        Tok::Punct(b')' | b']' | b'}') => depth -= 1,
                        _ => {}
                    }
                    expect = depth == 0 && toks[i].0 == Tok::Punct(b',');
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// True if the word at `i` is a name, not a property: not after `.` (but
/// after `...`), nor an object literal's key (after `{` or `,` and before
/// `:`).
fn is_name(toks: &[(Tok<'_>, bool)], i: usize) -> bool {
    let before = i.checked_sub(1).map(|j| toks[j].0);
    let after = toks.get(i + 1).map(|t| t.0);
    let spread = i >= 3 && toks[i - 3..i].iter().all(|t| t.0 == Tok::Punct(b'.'));
    (spread || before != Some(Tok::Punct(b'.')))
        && !(matches!(before, Some(Tok::Punct(b'{' | b','))) && after == Some(Tok::Punct(b':')))
}

/// The tracker as served: comments and spaces dropped, and every declared
/// name longer than a letter or two renamed, the most used first, to a
/// short name the script uses nowhere else. A name is renamed everywhere
/// it is a name (not a property or a key), in every scope alike, so what
/// refers to what does not change.
fn minify(src: &str) -> String {
    let toks = tokens(src);
    let used: std::collections::HashSet<&str> = (0..toks.len())
        .filter_map(|i| match toks[i].0 {
            Tok::Word(w) if is_name(&toks, i) => Some(w),
            _ => None,
        })
        .collect();
    let mut names: Vec<(usize, &str)> = declared(&toks)
        .into_iter()
        .map(|n| {
            let uses = (0..toks.len())
                .filter(|&i| toks[i].0 == Tok::Word(n) && is_name(&toks, i))
                .count();
            (uses, n)
        })
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    let letters = ('a'..='z').chain('A'..='Z');
    let mut short = letters
        .clone()
        .map(String::from)
        .chain(
            letters
                .clone()
                .flat_map(|a| letters.clone().map(move |b| format!("{a}{b}"))),
        )
        .filter(|s| !used.contains(s.as_str()) && !matches!(s.as_str(), "do" | "if" | "in"));
    let mut renamed = std::collections::HashMap::new();
    for (_, name) in names {
        let new = short.next().expect("enough short names");
        if new.len() < name.len() {
            renamed.insert(name, new);
        }
    }

    let mut out = String::with_capacity(src.len());
    let mut prev: Option<Tok<'_>> = None;
    for (i, &(tok, space)) in toks.iter().enumerate() {
        let text = match tok {
            Tok::Word(w) if is_name(&toks, i) => renamed.get(w).map_or(w, String::as_str),
            Tok::Word(w) | Tok::Num(w) | Tok::Literal(w) => w,
            // A `;` before `}` ends nothing that `}` does not.
            Tok::Punct(b';') if toks.get(i + 1).map(|t| t.0) == Some(Tok::Punct(b'}')) => {
                continue;
            }
            Tok::Punct(_) => "",
        };
        let wordy = |t: Option<Tok<'_>>| matches!(t, Some(Tok::Word(_) | Tok::Num(_)));
        // A space stays only where two names or numbers would run into
        // one, or `a - -b` into `a--b`.
        let keep = match (prev, tok) {
            (Some(Tok::Punct(p)), Tok::Punct(c)) => space && p == c && matches!(c, b'+' | b'-'),
            _ => wordy(prev) && wordy(Some(tok)),
        };
        if keep {
            out.push(' ');
        }
        match tok {
            Tok::Punct(c) => out.push(char::from(c)),
            _ => out.push_str(text),
        }
        prev = Some(tok);
    }
    out
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

    /// Every variant's file name, each extension set in its canonical
    /// order.
    fn every_mask() -> impl Iterator<Item = u8> {
        0..1 << EXTENSIONS.len()
    }

    #[test]
    fn a_variant_is_named_by_its_extensions_in_any_order() {
        let bit = |name: &str| 1 << EXTENSIONS.iter().position(|(n, _)| *n == name).unwrap();
        assert_eq!(extensions("script.js"), Some(0));
        for (name, _) in EXTENSIONS {
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
            for (name, _) in EXTENSIONS {
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

    fn names(mask: u8) -> String {
        let mut file = String::from("script");
        for (i, (name, _)) in EXTENSIONS.iter().enumerate() {
            if mask & (1 << i) != 0 {
                file = format!("{file}.{name}");
            }
        }
        file + ".js"
    }

    /// Each variant has exactly the code of its extensions: the manual one
    /// no automatic view, the others theirs.
    #[test]
    fn a_variant_has_the_code_of_its_extensions_and_no_other() {
        let text = |mask: u8| String::from_utf8(built(mask).plain.to_vec()).unwrap();
        let bit = |name: &str| 1 << EXTENSIONS.iter().position(|(n, _)| *n == name).unwrap();
        for mask in every_mask() {
            let t = text(mask);
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
        // The hash variant sets what data-hash sets.
        let hash = compose(bit("hash"));
        assert!(hash.lines().any(|l| l.trim() == "hash = 1;"), "{hash}");
    }

    /// Node.js (which scripts/test.sh needs for Plausible's tracker) parses
    /// every variant: the minifier broke none.
    #[test]
    fn every_variant_parses() {
        let dir = tempfile::tempdir().unwrap();
        for mask in every_mask() {
            let path = dir.path().join(names(mask));
            std::fs::write(&path, &built(mask).plain).unwrap();
            let out = std::process::Command::new("node")
                .arg("--check")
                .arg(&path)
                .output()
                .expect("node (Node.js), which scripts/test.sh needs too");
            assert!(
                out.status.success(),
                "{}: {}",
                names(mask),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn the_minifier_keeps_literals_properties_and_keys() {
        let src = r#"
            // a comment
            var counter = 1, label = "a // b  c", re = /x\/ "y"/g; /* block */
            function bump(amount, obj) {
              counter = counter + amount - -1;
              obj.counter = { counter: counter, label: label };
              return typeof label == "string" ? label : 'it\'s';
            }
            var list = [counter], spread = [...list];
        "#;
        let out = minify(src);
        // Strings and the regular expression exactly as written.
        assert!(out.contains(r#""a // b  c""#), "{out}");
        assert!(out.contains(r#"/x\/ "y"/g"#), "{out}");
        assert!(out.contains(r#"'it\'s'"#), "{out}");
        // Declared names shortened; properties and keys not.
        assert!(
            !out.contains("var counter") && !out.contains("amount"),
            "{out}"
        );
        assert!(!out.contains("list"), "a spread name is a name too: {out}");
        assert!(
            out.contains(".counter=") && out.contains("{counter:"),
            "{out}"
        );
        // A space only where words would join, and `- -1` not `--1`.
        assert!(out.contains("return typeof"), "{out}");
        assert!(out.contains("- -1"), "{out}");
        assert!(!out.contains("comment") && !out.contains("block"), "{out}");
        assert!(!out.contains(";}"), "{out}");
    }

    #[test]
    fn renamed_names_do_not_meet_names_in_use() {
        // `b` is used by the script; `counter` and `total` must get other
        // names, and different ones.
        let out =
            minify("var counter = 1, total = 2; function f(b) { return b + counter + total; }");
        let toks = tokens(&out);
        let words: Vec<&str> = toks
            .iter()
            .filter_map(|(t, _)| match t {
                Tok::Word(w) => Some(*w),
                _ => None,
            })
            .collect();
        // var counter, total; function f(b) { return b + counter + total; }
        let [_, counter, total, _, f, b, _, b2, counter2, total2] = words[..] else {
            panic!("{out}");
        };
        assert_eq!((f, b, b2), ("f", "b", "b"), "{out}");
        assert_eq!((counter, total), (counter2, total2), "{out}");
        assert!(counter != total && counter != "b" && total != "b", "{out}");
        assert!(counter.len() < "counter".len(), "{out}");
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
