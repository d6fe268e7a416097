//! Custom events' properties: which ones may be kept, and in what form.
//!
//! Properties are where site developers send, by accident, what must never
//! be stored: e-mail addresses, user ids, tokens. So footfall keeps only
//! the keys the owner named (`--event-prop`), and of those only short
//! values that do not look like an e-mail address. Everything else is
//! dropped here, before anything is aggregated, and counted by reason.
//!
//! The one exception is the `url` of the events Plausible's trackers send
//! by themselves (`Outbound Link: Click`, `File Download`), which is always
//! kept, reduced as a page or referrer is: a host and a path, never a
//! query string or a fragment.

use std::borrow::Cow;

use crate::normalise::{is_ip_host, misleading, on_site, page_url};

/// The longest property value kept, in characters once trimmed.
pub const MAX_VALUE_CHARS: usize = 100;

/// The longest link kept (a `url`, or any value that is a URL, once
/// reduced to host and path), in characters: a download's path is often
/// longer than a value, and is as bounded as a page.
pub const MAX_LINK_CHARS: usize = 300;

/// The most properties one event is read for (Plausible's bound); the
/// rest are dropped as [`PropDrop::TooMany`].
pub const MAX_PROPS: usize = 30;

/// The automatic events whose `url` is kept without being allowed.
pub const OUTBOUND_LINK: &str = "Outbound Link: Click";
pub const FILE_DOWNLOAD: &str = "File Download";

/// The property keys the owner allows to be stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventProps {
    /// Sorted, without repeats.
    allowed: Vec<Box<str>>,
}

impl EventProps {
    /// No property is kept (but the automatic events' `url`).
    pub const fn none() -> Self {
        Self {
            allowed: Vec::new(),
        }
    }

    /// These keys may be kept. A key is 1 to 100 characters of anything
    /// but white space at its ends (as a value is kept), so an allow-list
    /// cannot name a key no event could match.
    pub fn only<I: IntoIterator<Item = S>, S: AsRef<str>>(keys: I) -> Result<Self, String> {
        let mut allowed: Vec<Box<str>> = Vec::new();
        for key in keys {
            let key = key.as_ref();
            if key.is_empty() || key.trim() != key || key.chars().count() > MAX_VALUE_CHARS {
                return Err(format!(
                    "event property key {key:?} must be 1 to {MAX_VALUE_CHARS} characters without white space at its ends"
                ));
            }
            allowed.push(key.into());
        }
        allowed.sort();
        allowed.dedup();
        Ok(Self { allowed })
    }

    /// The allowed keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.allowed.iter().map(|k| &**k)
    }

    fn allows(&self, key: &str) -> bool {
        // An owner allows a handful of keys: comparing lengths first finds
        // most misses without comparing bytes, where a binary search
        // compares bytes at every step.
        if self.allowed.len() <= 16 {
            return self.allowed.iter().any(|k| **k == *key);
        }
        self.allowed.binary_search_by(|k| (**k).cmp(key)).is_ok()
    }
}

/// Why a property was not kept. Counted in `/metrics`; the property itself
/// goes nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropDrop {
    /// Its key is not on the owner's allow-list.
    NotAllowed,
    /// Its value is longer than [`MAX_VALUE_CHARS`] once trimmed (a link,
    /// than [`MAX_LINK_CHARS`] once reduced).
    TooLong,
    /// Its value looks like an e-mail address.
    Email,
    /// Its value is empty, null, an array or an object, holds a control
    /// or bidirectional-override character, its key repeats one before
    /// it, or (a `url`) it is not an http(s) URL or names an IP address.
    Invalid,
    /// The event had more than [`MAX_PROPS`] properties.
    TooMany,
}

impl PropDrop {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            PropDrop::NotAllowed => "not-allowed",
            PropDrop::TooLong => "too-long",
            PropDrop::Email => "email",
            PropDrop::Invalid => "invalid",
            PropDrop::TooMany => "too-many",
        }
    }

    /// Every variant, for pre-registering metrics.
    pub const ALL: [PropDrop; 5] = [
        PropDrop::NotAllowed,
        PropDrop::TooLong,
        PropDrop::Email,
        PropDrop::Invalid,
        PropDrop::TooMany,
    ];
}

/// The properties of one event that may be kept for `site`, in the order
/// sent, each dropped one told to `dropped`.
///
/// A `url` (of an automatic event, or allowed) becomes its host and path,
/// or for a link on the site itself its path; so does any allowed value
/// that is an absolute http(s) URL, and a value that is a path (`/…`)
/// loses its query and fragment: no query string is ever kept, whatever
/// the key.
pub fn keep<'p>(
    props: &'p [(Cow<'p, str>, Option<Cow<'p, str>>)],
    name: &str,
    site: &str,
    allowed: &EventProps,
    mut dropped: impl FnMut(PropDrop),
) -> Vec<(&'p str, Cow<'p, str>)> {
    let mut kept: Vec<(&'p str, Cow<'p, str>)> = Vec::new();
    for (i, (key, value)) in props.iter().enumerate() {
        if i >= MAX_PROPS {
            dropped(PropDrop::TooMany);
            continue;
        }
        let key: &str = key;
        let automatic = key == "url" && (name == OUTBOUND_LINK || name == FILE_DOWNLOAD);
        if !automatic && !allowed.allows(key) {
            dropped(PropDrop::NotAllowed);
            continue;
        }
        let value = match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() && !has_misleading(v) => v,
            _ => {
                dropped(PropDrop::Invalid);
                continue;
            }
        };
        if kept.iter().any(|(k, _)| *k == key) {
            dropped(PropDrop::Invalid);
            continue;
        }
        let absolute = value.starts_with("http://") || value.starts_with("https://");
        let reduced: Option<(Cow<'p, str>, usize)> = if absolute {
            link_target(value, site).map(|v| (Cow::Owned(v), MAX_LINK_CHARS))
        } else if value.starts_with('/') {
            // A path: never its query string or fragment.
            let end = value.find(['?', '#']).unwrap_or(value.len());
            Some((Cow::Borrowed(&value[..end]), MAX_LINK_CHARS))
        } else if key == "url" {
            // A `url` that is neither (`mailto:`, `javascript:`, junk).
            None
        } else {
            Some((Cow::Borrowed(value), MAX_VALUE_CHARS))
        };
        let Some((value, limit)) = reduced else {
            dropped(PropDrop::Invalid);
            continue;
        };
        if value.chars().nth(limit).is_some() {
            dropped(PropDrop::TooLong);
            continue;
        }
        if looks_like_email(&value) {
            dropped(PropDrop::Email);
            continue;
        }
        kept.push((key, value));
    }
    kept
}

/// Whether `text` holds a control or bidirectional-override character.
/// Printable ASCII, nearly every name and value, holds none, and bytes are
/// checked faster than characters.
pub fn has_misleading(text: &str) -> bool {
    !text.bytes().all(|b| (0x20..0x7f).contains(&b)) && text.contains(misleading)
}

/// A link as kept: the path of one on the site itself (a download from
/// it), else its host and path. Never a query string, a fragment or a
/// port. `None` for anything but an absolute http(s) URL with a host name:
/// an IP address may be someone's own machine, as for a referrer.
fn link_target(href: &str, site: &str) -> Option<String> {
    let url = page_url(href, false).ok()?;
    if is_ip_host(&url.host) {
        return None;
    }
    Some(if on_site(&url.host, site) {
        url.page.into_owned()
    } else {
        format!("{}{}", url.host, url.page)
    })
}

/// Whether some word of `text`, as it stands or percent-decoded (an
/// address passed through `encodeURIComponent`), has the shape of an
/// e-mail address: a local part, `@`, and a domain with a dot and at least
/// two letters after its last dot. Shape only: the point is to refuse what
/// a person could be reached by, not to validate.
pub fn looks_like_email(text: &str) -> bool {
    // Nearly every value has neither byte: one scan says so.
    let Some(first) = memchr::memchr2(b'@', b'%', text.as_bytes()) else {
        return false;
    };
    email_shaped(text)
        || (text[first..].contains('%')
            && email_shaped(&percent_encoding::percent_decode_str(text).decode_utf8_lossy()))
}

fn email_shaped(text: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || "._%+-'".contains(c);
    let is_domain = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    text.match_indices('@').any(|(at, _)| {
        let local = text[..at].chars().next_back().is_some_and(is_word);
        let domain: &str = {
            let rest = &text[at + 1..];
            let end = rest.find(|c: char| !is_domain(c)).unwrap_or(rest.len());
            rest[..end].trim_end_matches('.')
        };
        let tld_ok = domain.rsplit_once('.').is_some_and(|(host, tld)| {
            !host.is_empty() && tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic)
        });
        local && tld_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(
        pairs: &[(&'static str, Option<&'static str>)],
    ) -> Vec<(Cow<'static, str>, Option<Cow<'static, str>>)> {
        pairs
            .iter()
            .map(|&(k, v)| (Cow::Borrowed(k), v.map(Cow::Borrowed)))
            .collect()
    }

    /// (kept, dropped reasons) of `sent` for an event `name` on a.com,
    /// with `plan` and `size` allowed.
    fn run(
        name: &str,
        sent: &[(&'static str, Option<&'static str>)],
    ) -> (Vec<(String, String)>, Vec<PropDrop>) {
        let allowed = EventProps::only(["plan", "size"]).unwrap();
        let sent = props(sent);
        let mut drops = Vec::new();
        let kept = keep(&sent, name, "a.com", &allowed, |d| drops.push(d));
        (
            kept.into_iter()
                .map(|(k, v)| (k.to_owned(), v.into_owned()))
                .collect(),
            drops,
        )
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|&(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn only_allowed_short_values_that_are_no_address_are_kept() {
        let (kept, drops) = run(
            "Signup",
            &[
                ("plan", Some("  pro ")),
                ("email", Some("jane@example.com")),
                ("user_id", Some("4711")),
                ("size", Some("write to jane.doe@mail.example.org")),
                ("plan", Some("again")),
            ],
        );
        assert_eq!(kept, pairs(&[("plan", "pro")]));
        assert_eq!(
            drops,
            [
                PropDrop::NotAllowed,
                PropDrop::NotAllowed,
                PropDrop::Email,
                PropDrop::Invalid
            ]
        );
        let long = "x".repeat(MAX_VALUE_CHARS + 1);
        let long: &'static str = Box::leak(long.into_boxed_str());
        let fits: &'static str = Box::leak("é".repeat(MAX_VALUE_CHARS).into_boxed_str());
        let (kept, drops) = run(
            "Signup",
            &[("plan", Some(long)), ("size", Some(fits)), ("x", None)],
        );
        assert_eq!(kept, pairs(&[("size", fits)]));
        assert_eq!(drops, [PropDrop::TooLong, PropDrop::NotAllowed]);
        let (kept, drops) = run("Signup", &[("plan", None), ("size", Some("  "))]);
        assert!(kept.is_empty());
        assert_eq!(drops, [PropDrop::Invalid, PropDrop::Invalid]);
    }

    #[test]
    fn no_allowed_value_keeps_a_query_string_or_a_hidden_address() {
        let (kept, drops) = run(
            "Signup",
            &[
                // A URL on an allowed key: host and path, as a link.
                ("plan", Some("https://x.example/reset?token=abc#f")),
                // A path: no query, no fragment.
                ("size", Some("/reset?token=abc#f")),
            ],
        );
        assert_eq!(
            kept,
            pairs(&[("plan", "x.example/reset"), ("size", "/reset")])
        );
        assert!(drops.is_empty());
        let (kept, drops) = run(
            "Signup",
            &[
                // encodeURIComponent of an address.
                ("plan", Some("jane.doe%40mail.example")),
                // A control or bidirectional-override character.
                ("size", Some("pro\u{202E}")),
            ],
        );
        assert!(kept.is_empty(), "{kept:?}");
        assert_eq!(drops, [PropDrop::Email, PropDrop::Invalid]);
        // An allowed `url` of any event is a link, and not a `mailto:`.
        let allowed = EventProps::only(["url"]).unwrap();
        let sent = props(&[("url", Some("https://a.com/r?t=1"))]);
        let kept = keep(&sent, "Signup", "a.com", &allowed, |_| {});
        assert_eq!(kept, [("url", Cow::Borrowed("/r"))]);
        let sent = props(&[("url", Some("mailto:x@y.io"))]);
        let mut why = Vec::new();
        assert!(keep(&sent, "Signup", "a.com", &allowed, |d| why.push(d)).is_empty());
        assert_eq!(why, [PropDrop::Invalid]);
    }

    #[test]
    fn more_than_thirty_properties_are_dropped_past_the_thirtieth() {
        let many: Vec<(&'static str, Option<&'static str>)> =
            (0..MAX_PROPS + 2).map(|_| ("other", Some("v"))).collect();
        let (_, drops) = run("Signup", &many);
        assert_eq!(drops.iter().filter(|d| **d == PropDrop::TooMany).count(), 2);
    }

    #[test]
    fn an_automatic_events_url_is_reduced_to_host_and_path() {
        let out = |name: &str, href: &'static str| run(name, &[("url", Some(href))]);
        assert_eq!(
            out(
                OUTBOUND_LINK,
                "https://WWW.Other.example:8443/away/?utm_source=x#top"
            )
            .0,
            pairs(&[("url", "other.example/away/")])
        );
        // A download from the site itself keeps the path; from elsewhere,
        // host and path.
        assert_eq!(
            out(FILE_DOWNLOAD, "https://a.com/files/report.pdf?token=secret").0,
            pairs(&[("url", "/files/report.pdf")])
        );
        assert_eq!(
            out(FILE_DOWNLOAD, "https://blog.a.com/f.zip").0,
            pairs(&[("url", "/f.zip")])
        );
        assert_eq!(
            out(FILE_DOWNLOAD, "https://cdn.example/f.zip#x").0,
            pairs(&[("url", "cdn.example/f.zip")])
        );
        assert_eq!(
            out(OUTBOUND_LINK, "mailto:jane@example.com").1,
            [PropDrop::Invalid]
        );
        // An address is not kept as a link's host, as for a referrer.
        assert_eq!(
            out(OUTBOUND_LINK, "http://192.0.2.7/admin").1,
            [PropDrop::Invalid]
        );
        // A link may be longer than a value, to a bound.
        let path: &'static str =
            Box::leak(format!("https://cdn.example/{}", "d/".repeat(140)).into_boxed_str());
        assert_eq!(
            out(FILE_DOWNLOAD, path).0[0].1.len(),
            "cdn.example/".len() + 280
        );
        let longer: &'static str = Box::leak(format!("{path}{}", "x".repeat(20)).into_boxed_str());
        assert_eq!(out(FILE_DOWNLOAD, longer).1, [PropDrop::TooLong]);
        assert_eq!(
            out(
                OUTBOUND_LINK,
                "https://example.org/unsubscribe/jane@example.com"
            )
            .1,
            [PropDrop::Email]
        );
        // Another event's `url` is a property like any other: not allowed.
        assert_eq!(
            out("Signup", "https://other.example/").1,
            [PropDrop::NotAllowed]
        );
    }

    #[test]
    fn e_mail_shapes() {
        for yes in [
            "jane@example.com",
            "Jane.Doe+news@mail.example.co.uk",
            "mailto:x@y.io",
            "contact: o'brien@example.ie.",
            "jane%40example.com",
        ] {
            assert!(looks_like_email(yes), "{yes}");
        }
        for no in [
            "@handle",
            "pro",
            "a@b",
            "user@localhost",
            "price@1.50",
            "x @ example.com",
            "",
        ] {
            assert!(!looks_like_email(no), "{no}");
        }
    }

    #[test]
    fn allow_lists_refuse_keys_no_event_could_match() {
        assert!(EventProps::only(["plan"]).is_ok());
        assert!(EventProps::only([""]).is_err());
        assert!(EventProps::only([" plan"]).is_err());
        let keys: Vec<String> = EventProps::only(["b", "a", "b"])
            .unwrap()
            .keys()
            .map(Into::into)
            .collect();
        assert_eq!(keys, ["a", "b"]);
    }
}
