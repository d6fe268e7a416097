//! The invariants the fuzz targets check, in one place: the fuzz targets in
//! `fuzz/fuzz_targets/` include this file with `#[path]`, and the
//! `fuzz_regressions` test runs every saved input through it on stable.
//!
//! Each `check_*` takes the raw fuzz input and panics when an invariant
//! fails; a returned error from the code under test is not a failure.

use footfall_collector::anonymise::Context;
use footfall_collector::normalise::{
    MAX_CAMPAIGN_CHARS, on_site, page_url, referrer_host, site_id,
};
use footfall_schemas::Visit;

use footfall_collector::{
    Beacon, Client, SaltKey, SiteFilter, anonymise,
    anonymise::MAX_SITES_PER_BEACON,
    beacon::{MAX_URL_LEN, decode_json_parsed, decode_query_parsed},
    decode_json, decode_query,
};

/// Arrival time handed to `anonymise`.
const NOW: i64 = 1_700_000_000;

/// `decode_json` on the raw bytes; if a beacon comes out, anonymise it too.
pub fn check_json(data: &[u8]) {
    // The plain road, taken for what trackers send, reads as serde does.
    assert_eq!(
        decode_json(data),
        decode_json_parsed(data),
        "plain and parsed roads differ on {:?}",
        String::from_utf8_lossy(data)
    );
    if let Ok(beacon) = decode_json(data) {
        check_beacon(&beacon);
    }
}

/// `decode_query` on the input read as UTF-8 (invalid bytes replaced, as
/// the pixel's query string is always text by the time it is decoded).
pub fn check_query(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    let parsed = decode_query_parsed(&query);
    // The one-pass road reads as form_urlencoded does, with room for the
    // whole query (the server's case) and with too little.
    let mut short = [0; 16];
    assert_eq!(
        decode_query(&query, &mut short),
        parsed,
        "short scratch: {query:?}"
    );
    let mut scratch = vec![0; query.len()];
    let beacon = decode_query(&query, &mut scratch);
    assert_eq!(
        beacon, parsed,
        "one pass and form_urlencoded differ on {query:?}"
    );
    if let Ok(beacon) = beacon {
        check_beacon(&beacon);
    }
}

/// The `normalise` functions on arbitrary text.
///
/// Input layout: the first byte's low bit is `hash_mode` (so a hand-written
/// case starts with `0` or `1`); the rest is text (invalid UTF-8 replaced).
/// The whole text goes through `page_url`, `referrer_host` and `site_id`,
/// and again in a form that bypasses their fast paths; when it holds a
/// newline, the part before is a page URL and the part after a site id, and
/// `on_site` and site-id/host agreement are checked on the pair.
pub fn check_normalise(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let hash_mode = flags & 1 == 1;
    let text = String::from_utf8_lossy(rest);

    let page = page_url(&text, hash_mode);
    if let Ok(url) = &page {
        check_page(&url.page, hash_mode, &text);
        check_host(&url.host, &text);
    }
    let referrer = referrer_host(&text);
    if let Some(host) = &referrer {
        check_referrer(host, &text);
    }
    if let Ok(url) = &page {
        // A page URL's host, seen as a referrer, is the same host.
        assert_eq!(referrer.as_ref(), Some(&url.host), "from {text:?}");
    }
    let site = site_id(&text);
    if let Ok(site) = &site {
        check_site(site, &text);
    }

    // The normalisers take a fast path for plain input. A leading space
    // (which the WHATWG URL parser drops) or a percent-escaped character in
    // a host (which the host parser decodes) sends the same input down the
    // full parse instead, and both roads must end in the same place.
    let slow = format!(" {text}");
    assert_eq!(page_url(&slow, hash_mode), page, "page_url of {text:?}");
    assert_eq!(referrer_host(&slow), referrer, "referrer_host of {text:?}");
    // A source key is never longer than a domain name can be.
    assert!(
        referrer
            .as_ref()
            .is_none_or(|h| h.len() <= 253 && h.split('.').all(|l| l.len() <= 63)),
        "referrer host over a domain name's length from {text:?}"
    );
    if let Some(escaped) = escape_first_alphanumeric(&text) {
        assert_eq!(site_id(&escaped), site, "site_id of {text:?}");
    }

    if let Some((a, b)) = text.split_once('\n') {
        // On raw strings: never panics, and means "equal or a subdomain".
        assert_eq!(on_site(a, b), on_site_spec(a, b), "on_site({a:?}, {b:?})");
        assert!(on_site(a, a), "on_site({a:?}, itself)");
        if let (Ok(url), Ok(site)) = (page_url(a, hash_mode), site_id(b)) {
            assert_eq!(
                on_site(&url.host, &site),
                on_site_spec(&url.host, &site),
                "on_site({:?}, {site:?}) from {text:?}",
                url.host
            );
        }
        // A site id and a page on exactly that host normalise alike, or a
        // beacon with `d` = its own host would not count.
        if is_plain_host(b)
            && let (Ok(url), Ok(site)) = (page_url(&format!("https://{b}/"), false), site_id(b))
        {
            assert_eq!(url.host, site, "page host and site id of {b:?}");
        }
    }
}

/// `s` with its first ASCII letter or digit written as a percent escape,
/// which `site_id` must read as the same host; `None` when that could
/// change the meaning (other escapes, an IPv6 literal) or the length limit.
fn escape_first_alphanumeric(s: &str) -> Option<String> {
    if s.contains(['%', '[']) || s.trim().trim_end_matches('.').len() + 2 > 253 {
        return None;
    }
    let i = s.find(|c: char| c.is_ascii_alphanumeric())?;
    Some(format!(
        "{}%{:02X}{}",
        &s[..i],
        s.as_bytes()[i],
        &s[i + 1..]
    ))
}

/// Text that, put between `https://` and `/`, is all host: no userinfo,
/// port, path, query or fragment, and no spaces that `site_id` trims.
fn is_plain_host(s: &str) -> bool {
    let bracketed = s.starts_with('[') && s.ends_with(']');
    !s.is_empty()
        && s.trim() == s
        && !s.contains(['/', '\\', '?', '#', '@'])
        && (bracketed || !s.contains(':'))
}

/// What `on_site` promises: `host` is `site` or ends with `.site`.
fn on_site_spec(host: &str, site: &str) -> bool {
    host == site
        || host
            .strip_suffix(site)
            .is_some_and(|rest| rest.ends_with('.'))
}

fn check_beacon(beacon: &Beacon<'_>) {
    assert!(!beacon.url.is_empty(), "empty url in {beacon:?}");
    assert!(beacon.url.len() <= MAX_URL_LEN, "url over the limit");
    assert!(
        !beacon.domain.trim().is_empty(),
        "blank domain in {beacon:?}"
    );
    assert_ne!(beacon.referrer.as_deref(), Some(""), "empty referrer kept");

    let client = Client {
        ip: "203.0.113.9".parse().unwrap(),
        user_agent: b"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        gpc: false,
    };
    let sites = SiteFilter::any();
    let cx = Context {
        salt: SaltKey::from_bytes([7; 16]),
        now: NOW,
        sites: &sites,
        geo: None,
        honor_gpc: false,
        shields: &footfall_collector::shields::Shields::none(),
        event_props: &footfall_collector::events::EventProps::none(),
    };
    // Visits lend their text for the call only: each is checked there and
    // kept as its `Debug` text (everything but the visitor key, which
    // follows from the site) to compare the two roads below.
    let mut out = Vec::new();
    let result = anonymise(
        beacon,
        client,
        &cx,
        |visit: &Visit<'_>| {
            check_visit(visit, beacon);
            out.push(format!("{visit:?}"));
        },
        |_, _| {},
    );

    // The same beacon with a space before its URLs, which the WHATWG parser
    // drops, takes the full parse rather than a fast path: same outcome.
    let mut slow = beacon.clone();
    slow.url = format!(" {}", beacon.url).into();
    slow.referrer = beacon.referrer.as_ref().map(|r| format!(" {r}").into());
    let mut slow_out = Vec::new();
    let slow_result = anonymise(
        &slow,
        client,
        &cx,
        |visit: &Visit<'_>| {
            slow_out.push(format!("{visit:?}"));
        },
        |_, _| {},
    );
    assert_eq!(slow_result, result, "fast and full parse of {beacon:?}");
    assert!(
        slow_out == out,
        "fast and full parse of {beacon:?}: {slow_out:?} vs {out:?}"
    );
    match result {
        Ok(None) => assert!(!out.is_empty(), "Ok(None) without a visit: {beacon:?}"),
        _ => assert!(out.is_empty(), "{result:?} but visits made: {beacon:?}"),
    }
    assert!(out.len() <= MAX_SITES_PER_BEACON, "too many visits");
}

fn check_visit(visit: &Visit<'_>, beacon: &Beacon<'_>) {
    let from = &beacon.url;
    assert_eq!(visit.time, NOW);
    check_page(visit.page, beacon.hash_mode, from);
    check_site(visit.site, &beacon.domain);
    if let Some(r) = visit.referrer {
        check_referrer(r, beacon.referrer.as_deref().unwrap_or(""));
    }
    let c = &visit.campaign;
    assert!(
        visit.entry || c.is_empty(),
        "campaign off a landing: {beacon:?}"
    );
    for value in [c.source, c.medium, c.campaign].into_iter().flatten() {
        assert!(
            !value.is_empty() && value.trim() == value,
            "campaign {value:?}"
        );
        assert!(
            value.chars().count() <= MAX_CAMPAIGN_CHARS,
            "campaign {value:?}"
        );
        assert!(!value.chars().any(char::is_control), "campaign {value:?}");
    }
}

fn check_page(page: &str, hash_mode: bool, from: &str) {
    assert!(page.starts_with('/'), "page {page:?} from {from:?}");
    assert!(!page.contains('?'), "query in page {page:?} from {from:?}");
    assert!(
        hash_mode || !page.contains('#'),
        "fragment in page {page:?} from {from:?}"
    );
}

fn check_host(host: &str, from: &str) {
    assert!(!host.is_empty(), "empty page host from {from:?}");
    assert_eq!(host, host.to_lowercase(), "page host from {from:?}");
}

fn check_site(site: &str, from: &str) {
    assert!(!site.is_empty(), "empty site from {from:?}");
    assert!(
        !site.ends_with('.'),
        "trailing dot in site {site:?} from {from:?}"
    );
    assert_eq!(site, site.to_lowercase(), "site from {from:?}");
}

fn check_referrer(host: &str, from: &str) {
    assert!(!host.is_empty(), "empty referrer host from {from:?}");
    assert!(
        !host.contains(['/', '?', '#']),
        "referrer host {host:?} from {from:?}"
    );
}
