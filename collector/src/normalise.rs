//! Reducing URLs to what footfall may keep: the page path, the site's host,
//! the referrer's host. Query strings, fragments (unless hash routing) and
//! full referrer URLs end here.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use url::{Host, Url};

use footfall_schemas::Campaign;

use crate::error::BeaconError;

/// The parts of a page URL that survive anonymisation: borrowed from the
/// URL when it already is in normal form (nearly always), so that a beacon
/// costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageUrl<'a> {
    /// The URL's host, lowercase, IDNA-encoded, without a leading `www.`.
    pub host: Cow<'a, str>,
    /// The path, percent-decoded where that gives readable text, plus
    /// `#fragment` under hash routing. Never a query string.
    pub page: Cow<'a, str>,
}

/// Parses an absolute http(s) page URL and keeps only host and page.
///
/// The `url` crate implements the WHATWG URL standard, the same parser the
/// browser used to build `location.href`, so `/a/../b`, `%7E` and IDNA hosts
/// are normalised exactly as the browser shows them.
pub fn page_url(raw: &str, hash_mode: bool) -> Result<PageUrl<'_>, BeaconError> {
    if let Some(page) = plain_page_url(raw, hash_mode) {
        return Ok(page);
    }
    parsed_page_url(raw, hash_mode)
}

/// The same as [`page_url`] without the full parse, for the URLs that the
/// WHATWG parser would return unchanged but for the host's case: an
/// `http(s)` scheme, a plain domain, and a path and fragment of characters
/// it leaves alone, with no dot segments to resolve. Nearly every URL a
/// tracker sends is one; anything else (`None`) takes the full parse.
fn plain_page_url(raw: &str, hash_mode: bool) -> Option<PageUrl<'_>> {
    // The WHATWG parser drops tabs and newlines anywhere in the input, which
    // can join what they separate. None can be in the host, path or route
    // taken here (their characters are checked one by one), and the query is
    // not kept; only a fragment could hide one before its route.
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))?;
    let (host, host_end) = plain_authority(rest)?;
    let rest = &rest[host_end..];
    let (path_end, escaped) = plain_path(rest)?;
    let path = &rest[..path_end];
    let mut page = match path {
        "" => Cow::Borrowed("/"),
        _ if escaped => readable_path(path),
        _ => Cow::Borrowed(path),
    };
    if hash_mode {
        let fragment = rest.split_once('#').map(|(_, f)| f);
        if fragment.is_some_and(|f| f.bytes().any(|b| matches!(b, b'\t' | b'\n' | b'\r'))) {
            return None;
        }
        if let Some(route) = fragment.and_then(hash_route) {
            if plain_path(route)?.0 != route.len() {
                return None;
            }
            let route = readable_path(route);
            // `/app#/inbox` is one slice of the URL when neither part was
            // decoded and no query stands between them.
            let adjacent = !path.is_empty() && rest.as_bytes().get(path_end) == Some(&b'#');
            page = match (&page, &route) {
                (Cow::Borrowed(_), Cow::Borrowed(r)) if adjacent => {
                    Cow::Borrowed(&rest[..path_end + 1 + r.len()])
                }
                _ => Cow::Owned(format!("{page}#{route}")),
            };
        }
    }
    Some(PageUrl { host, page })
}

/// Where the first of the ASCII bytes `set` is (so the index is a char
/// boundary), or the end. `memchr` looks at many bytes a step; `str::find`
/// with a set of chars decodes every char, and the URL is scanned on every
/// beacon.
fn find_any(s: &str, set: &[u8]) -> usize {
    let bytes = s.as_bytes();
    match *set {
        [a] => memchr::memchr(a, bytes),
        [a, b] => memchr::memchr2(a, b, bytes),
        _ => bytes.iter().position(|x| set.contains(x)),
    }
    .unwrap_or(bytes.len())
}

/// The bytes of a URL path, by class: those the WHATWG parser's path
/// percent-encode set leaves alone (plain), `/`, `?` and `#` (which end it),
/// `%` (checked as an escape), and everything else.
const PATH_BYTES: [u8; 256] = {
    let mut class = [FOREIGN; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        class[b] = if c == b'/' {
            SLASH
        } else if c == b'?' || c == b'#' {
            END
        } else if c == b'%' {
            PERCENT
        } else if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            )
        {
            PLAIN
        } else {
            FOREIGN
        };
        b += 1;
    }
    class
};

/// Classes of [`PATH_BYTES`] besides `FOREIGN` and `PLAIN`.
const SLASH: u8 = 4;
const PERCENT: u8 = 5;
/// `?` or `#`, which end a path.
const END: u8 = 6;

/// Reads a URL path that the WHATWG parser keeps as it is: characters it
/// leaves alone, valid percent escapes, and no `.`/`..` segment (not even
/// spelled `%2e`). It ends at a `?`, a `#` or the end of `path`, which is
/// where this returns, with whether it holds an escape; `None` for a path
/// that is anything else. One pass: this runs on every beacon.
fn plain_path(path: &str) -> Option<(usize, bool)> {
    let bytes = path.as_bytes();
    let dots = |segment: &[u8]| segment == b"." || segment == b"..";
    let mut segment_start = 0;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        match PATH_BYTES[usize::from(bytes[i])] {
            PLAIN => {}
            SLASH => {
                if dots(&bytes[segment_start..i]) {
                    return None;
                }
                segment_start = i + 1;
            }
            PERCENT => match bytes.get(i + 1..i + 3) {
                // `%2e` is a dot to the parser, and may make a dot segment.
                Some([b'2', b'e' | b'E']) => return None,
                Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    escaped = true;
                    i += 2;
                }
                _ => return None,
            },
            END => break,
            _ => return None,
        }
        i += 1;
    }
    (!dots(&bytes[segment_start..i])).then_some((i, escaped))
}

/// True when `s` holds one of `escapes` (lowercase, three bytes each) in
/// any case.
fn has_escape(s: &str, escapes: &[&str]) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| escapes.iter().any(|e| w.eq_ignore_ascii_case(e.as_bytes())))
}

fn parsed_page_url(raw: &str, hash_mode: bool) -> Result<PageUrl<'static>, BeaconError> {
    let url = Url::parse(raw).map_err(|_| BeaconError::InvalidUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BeaconError::InvalidUrl);
    }
    let host = host_name(&url.host().ok_or(BeaconError::InvalidUrl)?);
    // A host of dots alone (`https://./`), or with an empty label
    // (`.a.com`, `a..com`), names no site.
    if !has_no_empty_label(&host) {
        return Err(BeaconError::InvalidUrl);
    }
    let mut page = readable_path(url.path()).into_owned();
    if hash_mode && let Some(route) = url.fragment().and_then(hash_route) {
        page.push('#');
        page.push_str(&readable_path(route));
    }
    Ok(PageUrl {
        host: host.into(),
        page: page.into(),
    })
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
/// not a URL with a host (an app id, garbage), or whose host is longer than
/// a domain name can be (253 bytes, 63 a label: a scheme the URL standard
/// does not know gets an unchecked "opaque" host), counts as no referrer:
/// it is never an error, since browsers send all sorts. The length bound
/// is what bounds a `sources` key, and so the memory a flood of invented
/// referrers can take.
pub fn referrer_host(raw: &str) -> Option<Cow<'_, str>> {
    if let Some(host) = plain_http_host(raw) {
        return Some(host);
    }
    let url = Url::parse(raw).ok()?;
    let host = host_name(&url.host()?);
    let domain_sized = host.len() <= 253 && host.split('.').all(|label| label.len() <= 63);
    (!host.is_empty() && domain_sized).then_some(Cow::Owned(host))
}

/// True for a host that is an IP address (`10.1.2.3`, `[2001:db8::7]`),
/// as [`host_name`] writes them. Such a referrer may be a person's own
/// machine, so it is never stored as a source.
pub fn is_ip_host(host: &str) -> bool {
    host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// The longest campaign value kept, in characters. Real ones are short
/// (`spring_sale`, `newsletter`); a bound keeps a crafted URL from making a
/// row of any size.
pub const MAX_CAMPAIGN_CHARS: usize = 100;

/// The campaign values of a landing page's URL, borrowed from it unless
/// decoding changed them; [`CampaignValues::view`] is what a visit carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignValues<'a> {
    pub source: Option<Cow<'a, str>>,
    pub medium: Option<Cow<'a, str>>,
    pub campaign: Option<Cow<'a, str>>,
}

impl CampaignValues<'_> {
    /// The values as a visit holds them.
    pub fn view(&self) -> Campaign<'_> {
        Campaign {
            source: self.source.as_deref(),
            medium: self.medium.as_deref(),
            campaign: self.campaign.as_deref(),
        }
    }
}

/// The allow-listed campaign parameters of a page URL's query:
/// `utm_source`, `utm_medium`, `utm_campaign` (the first of each), decoded
/// as a form would be, trimmed, cut to [`MAX_CAMPAIGN_CHARS`], and absent
/// when empty or when they hold control characters. Nothing else of the
/// query is read.
pub fn campaign(raw_url: &str) -> CampaignValues<'_> {
    let mut out = CampaignValues::default();
    // The query runs from the first `?` to a `#`; a `#` before any `?`
    // means there is none.
    let start = find_any(raw_url, b"?#");
    if raw_url.as_bytes().get(start) != Some(&b'?') {
        return out;
    }
    let query = &raw_url[start + 1..];
    let query = &query[..find_any(query, b"#")];
    for (key, value) in query.split('&').filter_map(form_pair) {
        let slot = match &*key {
            "utm_source" => &mut out.source,
            "utm_medium" => &mut out.medium,
            "utm_campaign" => &mut out.campaign,
            _ => continue,
        };
        if slot.is_none() {
            *slot = campaign_value(value);
        }
    }
    out
}

/// One `key=value` of a query (split at `&`), decoded as a form is, as
/// `url::form_urlencoded::parse` does; borrowed when there was nothing to
/// decode, which is the common case.
fn form_pair(pair: &str) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    if pair.is_empty() {
        return None;
    }
    if memchr::memchr2(b'+', b'%', pair.as_bytes()).is_some() {
        return url::form_urlencoded::parse(pair.as_bytes()).next();
    }
    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
    Some((Cow::Borrowed(key), Cow::Borrowed(value)))
}

/// One campaign value as kept: trimmed and cut, borrowed when it was.
fn campaign_value(value: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return None;
    }
    // In ASCII a char is a byte, and only controls mislead.
    let end = if trimmed.is_ascii() {
        if trimmed.bytes().any(|b| b.is_ascii_control()) {
            return None;
        }
        trimmed.len().min(MAX_CAMPAIGN_CHARS)
    } else {
        if trimmed.chars().any(misleading) {
            return None;
        }
        trimmed
            .char_indices()
            .nth(MAX_CAMPAIGN_CHARS)
            .map_or(trimmed.len(), |(i, _)| i)
    };
    let start = value.len() - value.trim_start().len();
    let end = start + trimmed[..end].trim_end().len();
    Some(match value {
        Cow::Borrowed(v) => Cow::Borrowed(&v[start..end]),
        Cow::Owned(v) => Cow::Owned(v[start..end].to_owned()),
    })
}

/// Normalises one site id from `d`/`--site`: trimmed, lowercase, IDNA,
/// without a leading `www.` or trailing dot.
///
/// It follows the same steps as a page URL's host (parse, then drop trailing
/// dots and `www.`), so a site id always equals the host of its own pages.
pub fn site_id(raw: &str) -> Result<Cow<'_, str>, BeaconError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 253 {
        return Err(BeaconError::InvalidDomain);
    }
    if let Some(site) = plain_domain(raw) {
        // Its labels are not empty, and dropping `www.` leaves one.
        return Ok(site);
    }
    // Trailing dots go after parsing (in `host_name`): IDNA maps other full
    // stops (`。`) to `.`, and `88..` is a domain while `88` is an address.
    let site = host_name(&Host::parse(raw).map_err(|_| BeaconError::InvalidDomain)?);
    if !has_no_empty_label(&site) {
        return Err(BeaconError::InvalidDomain);
    }
    Ok(Cow::Owned(site))
}

/// False for `""`, `.a.com`, `a..com`: names with an empty label.
fn has_no_empty_label(host: &str) -> bool {
    !host.is_empty() && !host.starts_with('.') && !host.contains("..")
}

/// True when `host` is `site` or one of its subdomains. Both sides are
/// already normalised.
pub fn on_site(host: &str, site: &str) -> bool {
    host == site
        || (host.len() > site.len()
            && host.ends_with(site)
            && host.as_bytes()[host.len() - site.len() - 1] == b'.')
}

/// The host of an `http(s)://` URL, named as [`host_name`] names it, when
/// it is a plain domain name, found without a full parse; `None` sends the
/// caller to the WHATWG parser.
///
/// Tabs and newlines, which the parser drops wherever they are, cannot be
/// in what this returns: a plain domain and a port have none.
fn plain_http_host(raw: &str) -> Option<Cow<'_, str>> {
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))?;
    plain_authority(rest).map(|(host, _)| host)
}

/// The host of the authority (`host` or `host:port`) that `rest` (what
/// follows `scheme://`) starts with, when it is a plain domain name, as
/// [`plain_domain`] names it; and where the authority ends (at `/`, `?`, `#`
/// or the end). User info, brackets or anything unusual: `None`.
fn plain_authority(rest: &str) -> Option<(Cow<'_, str>, usize)> {
    let bytes = rest.as_bytes();
    let (host_end, capitals) = domain_prefix(bytes)?;
    let end = match bytes.get(host_end) {
        None | Some(b'/' | b'?' | b'#') => host_end,
        Some(b':') => {
            let port = &bytes[host_end + 1..];
            let digits = port.iter().take_while(|b| b.is_ascii_digit()).count();
            if !matches!(port.get(digits), None | Some(b'/' | b'?' | b'#'))
                || rest[host_end + 1..host_end + 1 + digits]
                    .parse::<u16>()
                    .is_err()
            {
                return None;
            }
            host_end + 1 + digits
        }
        Some(_) => return None,
    };
    Some((domain_name(&rest[..host_end], capitals), end))
}

/// A domain name that the WHATWG host parser (IDNA, IPv4 forms) would
/// return unchanged but for case, named as [`host_name`] names it
/// (lowercase, no `www.`; borrowed unless it had capitals): letters, digits
/// and hyphens in non-empty labels, no punycode, and a last label that
/// does not start with a digit (which would make it an IPv4 address like
/// `0x7f.1`). `None` for anything else. Checking this is far cheaper than
/// the parse, and nearly every real host passes.
fn plain_domain(host: &str) -> Option<Cow<'_, str>> {
    match domain_prefix(host.as_bytes())? {
        (end, capitals) if end == host.len() => Some(domain_name(host, capitals)),
        _ => None,
    }
}

/// The plain domain name that `bytes` starts with (see [`plain_domain`]):
/// where it ends (at the first byte that cannot be in one), and whether it
/// has capitals. `None` when what comes before that byte is not one. One
/// pass: each byte's class, each label checked at its end. Three hosts a
/// beacon come through here.
fn domain_prefix(bytes: &[u8]) -> Option<(usize, bool)> {
    let mut capitals = false;
    let mut label_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match DOMAIN_BYTES[usize::from(bytes[i])] {
            PLAIN => {}
            CAPITAL => capitals = true,
            DOT => {
                if !plain_label(&bytes[label_start..i]) {
                    return None;
                }
                label_start = i + 1;
            }
            _ => break,
        }
        i += 1;
    }
    let last = &bytes[label_start..i];
    (i <= 253 && plain_label(last) && !last[0].is_ascii_digit()).then_some((i, capitals))
}

/// A plain domain as named: lowercase, without a leading `www.`.
fn domain_name(host: &str, capitals: bool) -> Cow<'_, str> {
    let host = match host.get(..4) {
        Some(www) if www.eq_ignore_ascii_case("www.") => &host[4..],
        _ => host,
    };
    if capitals {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// A label of a plain domain: 1 to 63 bytes, no hyphen at either end, not
/// punycode (`xn--`, which IDNA would check and may change).
fn plain_label(label: &[u8]) -> bool {
    match label {
        [] | [b'-', ..] | [.., b'-'] => false,
        [x, n, b'-', b'-', ..]
            if x.eq_ignore_ascii_case(&b'x') && n.eq_ignore_ascii_case(&b'n') =>
        {
            false
        }
        _ => label.len() <= 63,
    }
}

/// Classes of [`DOMAIN_BYTES`].
const FOREIGN: u8 = 0;
const PLAIN: u8 = 1;
const CAPITAL: u8 = 2;
const DOT: u8 = 3;

/// The bytes of a plain domain name, by class: a small letter, digit or
/// `-` is plain; then capitals, the dot, and everything else (foreign).
const DOMAIN_BYTES: [u8; 256] = {
    let mut class = [FOREIGN; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        class[b] = if c.is_ascii_uppercase() {
            CAPITAL
        } else if c == b'.' {
            DOT
        } else if c.is_ascii_alphanumeric() || c == b'-' {
            PLAIN
        } else {
            FOREIGN
        };
        b += 1;
    }
    class
};

/// A parsed host as footfall names it: a domain lowercase, without trailing
/// dots or a leading `www.`; an address in its canonical text form (IPv6 in
/// brackets). Page hosts, referrer hosts and site ids all go through here,
/// so they always compare equal when they name the same host.
fn host_name<S: AsRef<str>>(host: &Host<S>) -> String {
    match host {
        Host::Domain(d) => {
            strip_www(&d.as_ref().trim_end_matches('.').to_ascii_lowercase()).to_owned()
        }
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => format!("[{ip}]"),
    }
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
    if memchr::memchr(b'%', encoded.as_bytes()).is_none()
        || has_escape(encoded, &["%2f", "%3f", "%23"])
    {
        return Cow::Borrowed(encoded);
    }
    match percent_decode_str(encoded).decode_utf8() {
        Ok(decoded) if !decoded.chars().any(misleading) => decoded,
        _ => Cow::Borrowed(encoded),
    }
}

pub(crate) fn misleading(c: char) -> bool {
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
            // The parser drops a tab anywhere, even where it hides a route.
            (
                "https://example.com/app#\t/inbox",
                true,
                "example.com",
                "/app#/inbox",
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
            ("https://example.com:443/x", false, "example.com", "/x"),
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
            "https://example.com:99999/",
            "https://example.com:65536/x",
            "/relative/path",
            "example.com/x",
            "ftp://example.com/file",
            "data:text/html,<b>hi</b>",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "https://",
            "https://./",
            "https://.a.com/x",
            "https://a..com/x",
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
            ("http://[2001:db8::7]/secret", Some("[2001:db8::7]")),
            ("not a url", None),
            ("about:blank", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(referrer_host(raw).as_deref(), want, "{raw}");
        }
        // Nothing longer than a domain name can be becomes a source key.
        let opaque = format!("z://{}/", "a".repeat(30_000));
        let label = format!("zz://{}.example/", "b".repeat(64));
        let long = format!("https://{}.example/", vec!["c".repeat(60); 5].join("."));
        for raw in [&opaque, &label, &long] {
            assert_eq!(referrer_host(raw), None, "{} bytes", raw.len());
        }
        assert!(is_ip_host("10.0.0.1") && is_ip_host("[2001:db8::7]"));
        assert!(!is_ip_host("example.com") && !is_ip_host("10.example"));
    }

    #[test]
    fn campaigns_keep_the_three_utm_values_and_nothing_else() {
        let c = |source, medium, campaign| Campaign {
            source,
            medium,
            campaign,
        };
        let long = "x".repeat(300);
        let long_url = format!("https://a.com/?utm_campaign={long}");
        let cases: &[(&str, Campaign)] = &[
            ("https://a.com/", c(None, None, None)),
            (
                "https://a.com/p?utm_source=news&utm_medium=email&utm_campaign=spring%20sale&id=42",
                c(Some("news"), Some("email"), Some("spring sale")),
            ),
            (
                "https://a.com/?utm_source=a+b&utm_source=second",
                c(Some("a b"), None, None),
            ),
            (
                "https://a.com/?utm_term=x&utm_content=y&email=me%40x.com",
                c(None, None, None),
            ),
            (
                "https://a.com/?utm_source=%20%20&utm_medium=",
                c(None, None, None),
            ),
            (
                "https://a.com/?utm_source=caf%C3%A9",
                c(Some("café"), None, None),
            ),
            ("https://a.com/?utm_source=bad%0Aline", c(None, None, None)),
            ("https://a.com/#/route?utm_source=frag", c(None, None, None)),
            ("https://a.com/?x=1#utm_source=frag", c(None, None, None)),
            (
                "https://a.com/?utm_medium=cpc#top",
                c(None, Some("cpc"), None),
            ),
            (
                "https://a.com/?utm_source=%FF",
                c(Some("\u{FFFD}"), None, None),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(campaign(url).view(), *want, "{url}");
        }
        let got = campaign(&long_url).campaign.unwrap();
        assert_eq!(got.chars().count(), MAX_CAMPAIGN_CHARS);
        assert!(matches!(got, Cow::Borrowed(_)), "cut, not copied");
        // Plain values are slices of the URL; decoded ones are copies.
        let plain = campaign("https://a.com/?utm_source=news&utm_medium=+cpc+");
        assert_eq!(plain.source, Some(Cow::Borrowed("news")));
        assert_eq!(plain.medium, Some(Cow::<str>::Owned("cpc".into())));
    }

    #[test]
    fn plain_urls_and_hosts_are_borrowed_not_copied() {
        let borrowed = |c: &Cow<'_, str>| matches!(c, Cow::Borrowed(_));
        for (raw, hash) in [
            ("https://example.com/docs/a?utm_source=x", false),
            ("https://www.example.com/", false),
            ("https://example.com/app#/inbox?id=3", true),
            ("http://t.co:8080/a-b_c~d/", false),
        ] {
            let url = page_url(raw, hash).unwrap();
            assert!(borrowed(&url.host) && borrowed(&url.page), "{raw}");
        }
        // Capitals, an empty path, decoding, or a query between path and
        // route need a copy; the result is the same as ever.
        for (raw, hash, page) in [
            ("https://Example.com/a", false, "/a"),
            ("https://example.com", false, "/"),
            ("https://example.com/caf%C3%A9", false, "/café"),
            ("https://example.com/app?x=1#/inbox", true, "/app#/inbox"),
        ] {
            let url = page_url(raw, hash).unwrap();
            assert_eq!((&*url.host, &*url.page), ("example.com", page), "{raw}");
        }
        assert!(borrowed(&referrer_host("https://www.google.com/").unwrap()));
        assert!(borrowed(&site_id(" example.com ").unwrap()));
        assert!(borrowed(&site_id("x.io").unwrap()));
        assert_eq!(site_id("WWW.Example.com").unwrap(), "example.com");
    }

    #[test]
    fn site_ids() {
        for (raw, want) in [
            ("example.com", "example.com"),
            (" Example.COM ", "example.com"),
            ("www.example.com", "example.com"),
            ("example.com.", "example.com"),
            ("example。com。", "example.com"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("127.0.0.1", "127.0.0.1"),
        ] {
            assert_eq!(site_id(raw).as_deref(), Ok(want), "{raw}");
        }
        for raw in [
            "",
            "  ",
            "exa mple.com",
            "a/b",
            "x@y",
            &"a".repeat(300),
            ".a.com",
            "a..com",
            "。a.com",
        ] {
            assert_eq!(site_id(raw), Err(BeaconError::InvalidDomain), "{raw}");
        }
    }

    #[test]
    fn the_fast_paths_agree_with_the_whatwg_parser() {
        let hosts = [
            "https://Example.COM/x",
            "https://www.google.com/search?q=1",
            "https://WWW.Google.com/",
            "http://news.ycombinator.com:8080/item",
            "https://a-b.c-d.example/",
            "https://0x7f.1/",
            "https://127.0.0.1/",
            "https://xn--bcher-kva.example/",
            "https://bücher.example/",
            "https://user:pw@example.com/",
            "https://example.com:/",
            "https://-bad-.example/",
            "https://exa_mple.com/",
            "https://[::1]:80/",
            "https://example.com.",
            "https:\\\\example.com\\x",
            "https://ex%41mple.com/",
            "https://1.2.3/",
        ];
        for raw in hosts {
            let slow = Url::parse(raw).ok().and_then(|u| {
                Some(match u.host()? {
                    Host::Domain(d) => strip_www(d.trim_end_matches('.')).to_ascii_lowercase(),
                    Host::Ipv4(ip) => ip.to_string(),
                    Host::Ipv6(ip) => format!("[{ip}]"),
                })
            });
            assert_eq!(referrer_host(raw).map(Cow::into_owned), slow, "{raw}");
        }
        for raw in [
            "Example.COM",
            "a-b.example",
            "www.x.org",
            "127.0.0.1",
            "1.2.3",
            "0x7f.1",
            "xn--bcher-kva.example",
            "bücher.example",
        ] {
            let slow = match Host::parse(raw) {
                Ok(Host::Domain(d)) => Ok(strip_www(&d).to_owned()),
                Ok(Host::Ipv4(ip)) => Ok(ip.to_string()),
                Ok(Host::Ipv6(ip)) => Ok(format!("[{ip}]")),
                Err(_) => Err(BeaconError::InvalidDomain),
            };
            assert_eq!(site_id(raw).map(Cow::into_owned), slow, "{raw}");
        }
    }

    proptest::proptest! {
        /// The fast path and the full WHATWG parse give the same page for
        /// every URL the fast path takes.
        #[test]
        fn the_fast_page_path_agrees_with_the_full_parse(
            scheme in proptest::sample::select(vec!["http://", "https://", "HTTPS://", "ftp://"]),
            host in "(www\\.)?[a-zA-Z0-9-]{1,8}(\\.[a-zA-Z0-9-]{1,6}){0,2}(:[0-9]{0,5})?",
            // Tabs and newlines too: the parser drops them anywhere.
            path in "(/[a-zA-Z0-9._~%!$&'()*+,;=:@ #?\\[\\]{}|^`\"<>\t\n-]{0,10}){0,4}",
            hash in proptest::bool::ANY,
        ) {
            let raw = format!("{scheme}{host}{path}");
            if let Some(fast) = plain_page_url(&raw, hash) {
                proptest::prop_assert_eq!(Ok(fast), parsed_page_url(&raw, hash), "{}", raw);
            }
        }
    }

    proptest::proptest! {
        /// The same for URLs shaped like real ones, which the fast path
        /// nearly always takes (the generator above mostly sends it to the
        /// full parse): it must take them, and agree.
        #[test]
        fn the_fast_page_path_takes_plain_urls_and_agrees(
            scheme in proptest::sample::select(vec!["http://", "https://"]),
            host in "(www\\.|WWW\\.)?[a-zA-Z0-9]{1,8}(\\.[a-z]{2,6}){1,2}(:[0-9]{2,4})?",
            path in "(/([a-zA-Z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2}){0,10}){0,4}",
            query in "(\\?[a-z0-9=&_%]{0,12})?",
            fragment in "(#!?/?[a-z0-9/?&=]{0,8})?",
            hash in proptest::bool::ANY,
        ) {
            let raw = format!("{scheme}{host}{path}{query}{fragment}");
            let fast = plain_page_url(&raw, hash);
            // Only a dot segment (`.`, `..`, `%2e`) may send it to the parser.
            let dotted = path.split('/').any(|seg| seg == "." || seg == "..")
                || path.to_ascii_lowercase().contains("%2e");
            proptest::prop_assert!(fast.is_some() || dotted, "not taken: {}", raw);
            if let Some(fast) = fast {
                proptest::prop_assert_eq!(Ok(fast), parsed_page_url(&raw, hash), "{}", raw);
            }
        }
    }

    /// `campaign` as it was written first, on the form parser alone: the
    /// reference its fast road must agree with.
    fn campaign_by_the_form_parser(raw_url: &str) -> CampaignValues<'static> {
        let mut out = CampaignValues::default();
        let Some(start) = raw_url.find(['?', '#']) else {
            return out;
        };
        if raw_url.as_bytes()[start] != b'?' {
            return out;
        }
        let query = &raw_url[start + 1..];
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*key {
                "utm_source" => &mut out.source,
                "utm_medium" => &mut out.medium,
                "utm_campaign" => &mut out.campaign,
                _ => continue,
            };
            if slot.is_none() {
                *slot = campaign_value(value).map(|v| Cow::Owned(v.into_owned()));
            }
        }
        out
    }

    proptest::proptest! {
        /// Campaign values are read from the query exactly as a form
        /// parser reads them, escapes, `+`, empty pairs and all.
        #[test]
        fn campaigns_read_the_query_as_a_form_would(
            query in "(utm_source|utm_medium|utm_campaign|utm%5Fsource|utm_medium%20|[a-z=&#?+ \t]|%2[0-9B]|%C3%A9|%FF|%0A){0,14}",
        ) {
            let url = format!("https://a.com/p?{query}");
            proptest::prop_assert_eq!(campaign(&url), campaign_by_the_form_parser(&url), "{}", url);
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
