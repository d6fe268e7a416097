//! Reducing URLs to what footfall may keep: the page path, the site's host,
//! the referrer's host. Query strings, fragments (unless hash routing) and
//! full referrer URLs end here.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use url::{Host, Url};

use crate::error::BeaconError;

/// The parts of a page URL that survive anonymisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageUrl {
    /// The URL's host, lowercase, IDNA-encoded, without a leading `www.`.
    pub host: String,
    /// The path, percent-decoded where that gives readable text, plus
    /// `#fragment` under hash routing. Never a query string.
    pub page: String,
}

/// Parses an absolute http(s) page URL and keeps only host and page.
///
/// The `url` crate implements the WHATWG URL standard, the same parser the
/// browser used to build `location.href`, so `/a/../b`, `%7E` and IDNA hosts
/// are normalised exactly as the browser shows them.
pub fn page_url(raw: &str, hash_mode: bool) -> Result<PageUrl, BeaconError> {
    let url = Url::parse(raw).map_err(|_| BeaconError::InvalidUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BeaconError::InvalidUrl);
    }
    let host = match url.host() {
        Some(Host::Domain(d)) => strip_www(d.trim_end_matches('.')).to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => format!("[{ip}]"),
        None => return Err(BeaconError::InvalidUrl),
    };
    let mut page = readable_path(url.path()).into_owned();
    if hash_mode && let Some(route) = url.fragment().and_then(hash_route) {
        page.push('#');
        page.push_str(&readable_path(route));
    }
    Ok(PageUrl { host, page })
}

/// The route part of a hash-routed fragment: `/settings` of
/// `#/settings?tab=2`. Only fragments that look like routes (`/…` or `!/…`)
/// are pages; anything else in a fragment (`#access_token=…` of an OAuth
/// redirect, an anchor) is not, and a query inside the route is cut like
/// any other query string.
fn hash_route(fragment: &str) -> Option<&str> {
    if !(fragment.starts_with('/') || fragment.starts_with("!/")) {
        return None;
    }
    let route = fragment.split(['?', '&']).next().unwrap_or("");
    (!route.is_empty()).then_some(route)
}

/// Reduces a referrer to its host (lowercase, no `www.`). Anything that is
/// not a URL with a host (an app id, garbage) counts as no referrer: it is
/// never an error, since browsers send all sorts.
pub fn referrer_host(raw: &str) -> Option<String> {
    let url = Url::parse(raw).ok()?;
    let host = match url.host()? {
        Host::Domain(d) => strip_www(d.trim_end_matches('.')).to_ascii_lowercase(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => format!("[{ip}]"),
    };
    (!host.is_empty()).then_some(host)
}

/// Normalises one site id from `d`/`--site`: trimmed, lowercase, IDNA,
/// without a leading `www.` or trailing dot.
pub fn site_id(raw: &str) -> Result<String, BeaconError> {
    let raw = raw.trim().trim_end_matches('.');
    if raw.is_empty() || raw.len() > 253 {
        return Err(BeaconError::InvalidDomain);
    }
    match Host::parse(raw).map_err(|_| BeaconError::InvalidDomain)? {
        Host::Domain(d) => Ok(strip_www(&d).to_owned()),
        Host::Ipv4(ip) => Ok(ip.to_string()),
        Host::Ipv6(ip) => Ok(format!("[{ip}]")),
    }
}

/// True when `host` is `site` or one of its subdomains. Both sides are
/// already normalised.
pub fn on_site(host: &str, site: &str) -> bool {
    host == site
        || (host.len() > site.len()
            && host.ends_with(site)
            && host.as_bytes()[host.len() - site.len() - 1] == b'.')
}

fn strip_www(host: &str) -> &str {
    host.strip_prefix("www.").unwrap_or(host)
}

/// Percent-decodes a path for people to read (`/caf%C3%A9` becomes `/café`)
/// when the result is valid UTF-8 that cannot mislead: no control or
/// bidirectional-override characters (a report must not print raw control
/// bytes or text that reads backwards), and no decoded `/`, `?` or `#`, which
/// would merge distinct pages or look like a query. Otherwise the encoded
/// form is kept.
fn readable_path(encoded: &str) -> Cow<'_, str> {
    if !encoded.contains('%') {
        return Cow::Borrowed(encoded);
    }
    let lower = encoded.to_ascii_lowercase();
    if ["%2f", "%3f", "%23"].iter().any(|r| lower.contains(r)) {
        return Cow::Borrowed(encoded);
    }
    match percent_decode_str(encoded).decode_utf8() {
        Ok(decoded) if !decoded.chars().any(misleading) => decoded,
        _ => Cow::Borrowed(encoded),
    }
}

fn misleading(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_urls() {
        // (url, hash mode, host, page)
        let cases = [
            ("https://example.com/", false, "example.com", "/"),
            ("https://example.com", false, "example.com", "/"),
            (
                "https://www.Example.COM/About?utm_source=x&email=a@b.c#top",
                false,
                "example.com",
                "/About",
            ),
            (
                "http://blog.example.com/post/1/",
                false,
                "blog.example.com",
                "/post/1/",
            ),
            (
                "https://example.com/a/../b/./c",
                false,
                "example.com",
                "/b/c",
            ),
            (
                "https://example.com/caf%C3%A9",
                false,
                "example.com",
                "/café",
            ),
            (
                "https://example.com/bad%FF",
                false,
                "example.com",
                "/bad%FF",
            ),
            (
                "https://example.com/nul%00x",
                false,
                "example.com",
                "/nul%00x",
            ),
            (
                "https://example.com/app#/settings?tab=1&email=a@b.c",
                true,
                "example.com",
                "/app#/settings",
            ),
            (
                "https://example.com/app#!/inbox",
                true,
                "example.com",
                "/app#!/inbox",
            ),
            (
                "https://example.com/cb#access_token=secret&state=x",
                true,
                "example.com",
                "/cb",
            ),
            (
                "https://example.com/doc#section-2",
                true,
                "example.com",
                "/doc",
            ),
            ("https://example.com/a%2Fb", false, "example.com", "/a%2Fb"),
            (
                "https://example.com/a%3Fq=1",
                false,
                "example.com",
                "/a%3Fq=1",
            ),
            ("https://example.com/a%23b", false, "example.com", "/a%23b"),
            (
                "https://example.com/x%E2%80%AEfdp.exe",
                false,
                "example.com",
                "/x%E2%80%AEfdp.exe",
            ),
            (
                "https://example.com/app#/settings",
                false,
                "example.com",
                "/app",
            ),
            ("https://example.com/app#", true, "example.com", "/app"),
            (
                "https://bücher.example/",
                false,
                "xn--bcher-kva.example",
                "/",
            ),
            ("http://127.0.0.1:8080/x", false, "127.0.0.1", "/x"),
            ("https://example.com./x", false, "example.com", "/x"),
        ];
        for (url, hash, host, page) in cases {
            let got = page_url(url, hash).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(got.host, host, "{url}");
            assert_eq!(got.page, page, "{url}");
        }
    }

    #[test]
    fn bad_page_urls() {
        for url in [
            "/relative/path",
            "example.com/x",
            "ftp://example.com/file",
            "data:text/html,<b>hi</b>",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "https://",
            "http://exa mple.com/",
            "not a url",
        ] {
            assert_eq!(page_url(url, false), Err(BeaconError::InvalidUrl), "{url}");
        }
    }

    #[test]
    fn referrers_keep_only_the_host() {
        let cases = [
            ("https://www.google.com/search?q=secret", Some("google.com")),
            (
                "https://News.YCombinator.com/item?id=1#c",
                Some("news.ycombinator.com"),
            ),
            (
                "android-app://com.google.android.gm/",
                Some("com.google.android.gm"),
            ),
            ("http://10.0.0.1:3000/x", Some("10.0.0.1")),
            ("not a url", None),
            ("about:blank", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(referrer_host(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn site_ids() {
        for (raw, want) in [
            ("example.com", "example.com"),
            (" Example.COM ", "example.com"),
            ("www.example.com", "example.com"),
            ("example.com.", "example.com"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("127.0.0.1", "127.0.0.1"),
        ] {
            assert_eq!(site_id(raw).as_deref(), Ok(want), "{raw}");
        }
        for raw in ["", "  ", "exa mple.com", "a/b", "x@y", &"a".repeat(300)] {
            assert_eq!(site_id(raw), Err(BeaconError::InvalidDomain), "{raw}");
        }
    }

    #[test]
    fn site_membership() {
        assert!(on_site("example.com", "example.com"));
        assert!(on_site("blog.example.com", "example.com"));
        assert!(!on_site("badexample.com", "example.com"));
        assert!(!on_site("example.com.evil.net", "example.com"));
        assert!(!on_site("com", "example.com"));
        assert!(!on_site("example.com", "blog.example.com"));
    }
}
