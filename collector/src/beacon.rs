//! Decoding a beacon: the Plausible-compatible JSON body of `POST /api/event`,
//! or the query string of the `GET /api/event` pixel.
//!
//! Decoding only checks shape (JSON, required fields, types); what the values
//! mean (is the URL on the site?) is `anonymise`'s business. Strings borrow
//! from the request body when they contain no escapes, which is nearly
//! always; a pixel's escaped values are decoded into a buffer the caller
//! lends and borrow from it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::error::BeaconError;

/// The longest page URL accepted. Browsers send longer ones only for
/// generated junk; the limit also bounds what one beacon can make us store.
pub const MAX_URL_LEN: usize = 4096;

/// A well-formed beacon, before anonymisation. It still holds the full URL
/// and referrer, so it never leaves the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon<'a> {
    /// Event name; `pageview` unless the client said otherwise.
    pub name: Cow<'a, str>,
    /// Absolute page URL as sent (checked later).
    pub url: Cow<'a, str>,
    /// Site id, or a comma-separated list of them.
    pub domain: Cow<'a, str>,
    /// Referrer as sent; `None` when absent, null or empty.
    pub referrer: Option<Cow<'a, str>>,
    /// Viewport width in CSS pixels, when the client sent a usable number.
    pub screen_width: Option<u32>,
    /// Hash routing: the fragment is part of the page.
    pub hash_mode: bool,
    /// An engagement's deepest scroll, 0–100 % (`sd`; larger is read as
    /// 100, Plausible's 255 and anything negative as unknown).
    pub scroll_depth: Option<u8>,
    /// An engagement's engaged milliseconds (`e`); values of 30 days or
    /// more, which old trackers sent, are ignored.
    pub engaged_ms: Option<u32>,
    /// A custom event's properties as sent (`p`, `props`, `m` or `meta`: an
    /// object, or a JSON string of one), in order: each key with its value
    /// as text (numbers and booleans written as JSON writes them), `None`
    /// for a value that is not a string, number or boolean. Which of them
    /// may be kept is `anonymise`'s business. `None` for nearly every
    /// beacon; boxed so that a pageview's beacon stays as small as it was
    /// (a larger one is copied by a call to `memcpy`, which cost every
    /// pageview about 90 instructions). See [`Beacon::props`].
    pub props: Option<Box<PropList<'a>>>,
    /// False when the sender marked a custom event non-interactive (`i`
    /// or `interactive` false): it then does not make a visit a non-bounce.
    pub interactive: bool,
}

/// A custom event's properties as sent: each key with its value as text,
/// `None` for one that is not a string, number or boolean.
pub type PropList<'a> = Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>;

impl<'a> Beacon<'a> {
    /// The properties as sent (none for nearly every beacon).
    pub fn props(&self) -> &[(Cow<'a, str>, Option<Cow<'a, str>>)] {
        self.props.as_deref().map_or(&[], Vec::as_slice)
    }
}

/// The longest event name accepted, in characters (Plausible's bound).
pub const MAX_NAME_CHARS: usize = 120;

/// The least `e` that is not believed: 30 days, in milliseconds.
pub const MAX_ENGAGED_MS: u32 = 30 * 24 * 3600 * 1000;

/// Decodes a JSON beacon body. Long (`url`) and short (`u`) keys are both
/// accepted; unknown keys are ignored.
///
/// A plain body (see [`plain_json`]), which is what every tracker sends,
/// is read in one pass; anything else goes to serde_json, which decides.
pub fn decode_json(body: &[u8]) -> Result<Beacon<'_>, BeaconError> {
    match plain_json(body) {
        Some(wire) => finish(wire),
        None => decode_json_parsed(body),
    }
}

/// [`decode_json`] by serde_json alone: the reference the plain road must
/// agree with, and the road for every body it does not take.
pub fn decode_json_parsed(body: &[u8]) -> Result<Beacon<'_>, BeaconError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let wire = de
        .deserialize_map(WireVisitor)
        .map_err(|e| classify(e, body))?;
    de.end().map_err(|_| BeaconError::InvalidJson)?;
    finish(wire)
}

/// Room on the stack for a pixel query's decoded values, enough for
/// every query a tracker's pixel sends (a few hundred bytes); see
/// [`decode_query`].
pub const QUERY_SCRATCH: usize = 2048;

/// Decodes the query string of a pixel request (`d=…&u=…&r=…&w=…`) as a
/// form (`application/x-www-form-urlencoded`), reading exactly what
/// [`decode_query_parsed`] reads, in one pass.
///
/// A pixel's `u` and `r` are percent-encoded URLs, so their values nearly
/// always need decoding; they are decoded into `scratch` and borrowed from
/// it, so the beacon costs no allocation. A decoded value is never longer
/// than its encoding, so a scratch as long as the query always has room;
/// a value that no longer fits, or whose bytes are not UTF-8 once decoded
/// (each bad sequence becomes U+FFFD), is decoded into a `String` instead.
/// Only the values of beacon keys are decoded at all.
pub fn decode_query<'a>(query: &'a str, scratch: &'a mut [u8]) -> Result<Beacon<'a>, BeaconError> {
    let mut wire = Wire::default();
    let mut room = scratch;
    // Split at `&` and `=` with memchr: `str::split` costs several times
    // as much on a query this short.
    let bytes = query.as_bytes();
    let mut start = 0;
    while start <= bytes.len() {
        let end = memchr::memchr(b'&', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        // `&` and `=` are ASCII, so every cut is at a char boundary.
        let pair = &query[start..end];
        start = end + 1;
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match memchr::memchr(b'=', pair.as_bytes()) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        let Some(field) = QueryField::of(key) else {
            continue;
        };
        wire.set(field, form_value(value, &mut room));
    }
    finish(wire)
}

/// [`decode_query`] through `url::form_urlencoded`, which decodes every
/// key and value into its own `String` when it has escapes: the reference
/// the one-pass road must agree with (a proptest and the fuzz corpus
/// compare the two).
pub fn decode_query_parsed(query: &str) -> Result<Beacon<'_>, BeaconError> {
    let mut wire = Wire::default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if let Some(field) = QueryField::named(key.as_bytes()) {
            wire.set(field, value);
        }
    }
    finish(wire)
}

/// The beacon keys a pixel query may carry, long or short.
#[derive(Clone, Copy)]
enum QueryField {
    Name,
    Url,
    Domain,
    Referrer,
    ScreenWidth,
    Hash,
}

impl QueryField {
    /// Longest key, `screen_width`.
    const MAX_LEN: usize = 12;

    /// The field a raw (still encoded) key names, if any. No name holds a
    /// `%` or a `+`, so a key that is a name as it stands needs no decoding,
    /// and only a key that is not is searched for escapes.
    fn of(raw: &str) -> Option<Self> {
        Self::named(raw.as_bytes()).or_else(|| {
            // An escape is three bytes that decode to one, so a key encoded
            // in more than three times the longest name's length names
            // nothing.
            let mut buf = [0; 3 * Self::MAX_LEN];
            let key = buf.get_mut(..raw.len())?;
            memchr::memchr2(b'%', b'+', raw.as_bytes())?;
            let n = decode_form(raw.as_bytes(), key);
            // Bytes that are not UTF-8 decode to U+FFFD, which no name
            // holds, so comparing the raw bytes decides the same.
            Self::named(&key[..n])
        })
    }

    fn named(key: &[u8]) -> Option<Self> {
        Some(match key {
            b"n" | b"name" => Self::Name,
            b"u" | b"url" => Self::Url,
            b"d" | b"domain" => Self::Domain,
            b"r" | b"referrer" => Self::Referrer,
            b"w" | b"screen_width" => Self::ScreenWidth,
            b"h" | b"hash" => Self::Hash,
            _ => return None,
        })
    }
}

impl<'a> Wire<'a> {
    /// A pixel query's value for `field`; the last of a key wins.
    fn set(&mut self, field: QueryField, value: Cow<'a, str>) {
        match field {
            QueryField::Name => self.name = Some(value),
            QueryField::Url => self.url = Some(value),
            QueryField::Domain => self.domain = Some(value),
            QueryField::Referrer => self.referrer = Some(value),
            QueryField::ScreenWidth => self.screen_width = value.parse().ok(),
            QueryField::Hash => self.hash_mode = matches!(&*value, "1" | "true"),
        }
    }
}

/// A form value, decoded as `url::form_urlencoded` does: borrowed from the
/// query when it has no `+` or `%`, else decoded into the front of `room`,
/// which keeps what is left.
fn form_value<'a>(raw: &'a str, room: &mut &'a mut [u8]) -> Cow<'a, str> {
    let bytes = raw.as_bytes();
    if memchr::memchr2(b'%', b'+', bytes).is_none() {
        return Cow::Borrowed(raw);
    }
    if bytes.len() > room.len() {
        let mut out = vec![0; bytes.len()];
        let n = decode_form(bytes, &mut out);
        out.truncate(n);
        return Cow::Owned(String::from_utf8_lossy(&out).into_owned());
    }
    let n = decode_form(bytes, room);
    let (decoded, rest) = std::mem::take(room).split_at_mut(n);
    *room = rest;
    let decoded: &'a [u8] = decoded;
    match std::str::from_utf8(decoded) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(String::from_utf8_lossy(decoded).into_owned()),
    }
}

/// Writes `input` with `+` as a space and each `%` and two hex digits as
/// their byte into `out` (at least as long as `input`), returning the
/// length written. A `%` without two hex digits after it stays as it is,
/// as in `percent_encoding`. (`form_urlencoded` replaces `+` first and
/// then decodes escapes; a `+` is never a hex digit, so one pass reads
/// every input the same.) By hand rather than `percent_decode` between
/// the `+`s: its byte-at-a-time iterator cost about 900 instructions more
/// a pixel (`benches/instructions.sh`), and the proptest and fuzz corpus
/// hold this one to it.
fn decode_form(input: &[u8], out: &mut [u8]) -> usize {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let (mut i, mut n) = (0, 0);
    loop {
        // Plain stretches, most of a URL, are copied whole.
        let run = memchr::memchr2(b'%', b'+', &input[i..]).unwrap_or(input.len() - i);
        out[n..n + run].copy_from_slice(&input[i..i + run]);
        (i, n) = (i + run, n + run);
        let Some(&b) = input.get(i) else {
            return n;
        };
        out[n] = match (b, input.get(i + 1..i + 3)) {
            (b'+', _) => b' ',
            (_, Some(&[h, l])) => match (hex(h), hex(l)) {
                (Some(h), Some(l)) => {
                    i += 2;
                    h << 4 | l
                }
                _ => b'%',
            },
            _ => b'%',
        };
        (i, n) = (i + 1, n + 1);
    }
}

fn finish(wire: Wire<'_>) -> Result<Beacon<'_>, BeaconError> {
    let url = wire.url.ok_or(BeaconError::MissingUrl)?;
    if url.is_empty() {
        return Err(BeaconError::MissingUrl);
    }
    if url.len() > MAX_URL_LEN {
        return Err(BeaconError::UrlTooLong);
    }
    let domain = wire.domain.ok_or(BeaconError::MissingDomain)?;
    if domain.trim().is_empty() {
        return Err(BeaconError::MissingDomain);
    }
    let name = wire.name.unwrap_or(Cow::Borrowed("pageview"));
    // Bytes first: a name of at most 120 bytes has at most 120 characters.
    let too_long = name.len() > MAX_NAME_CHARS && name.chars().nth(MAX_NAME_CHARS).is_some();
    if too_long || name.trim_start().is_empty() {
        return Err(BeaconError::InvalidName);
    }
    Ok(Beacon {
        name,
        url,
        domain,
        referrer: wire.referrer.filter(|r| !r.is_empty()),
        screen_width: wire.screen_width,
        hash_mode: wire.hash_mode,
        scroll_depth: wire
            .scroll_depth
            .filter(|&d| d != 255)
            .map(|d| d.min(100) as u8),
        engaged_ms: wire.engaged_ms.filter(|&e| e < MAX_ENGAGED_MS),
        props: wire.props,
        interactive: wire.interactive.unwrap_or(true),
    })
}

/// serde_json's messages can quote the input (`invalid type: string "…"`),
/// so they are classified and dropped, never shown.
fn classify(e: serde_json::Error, body: &[u8]) -> BeaconError {
    match e.classify() {
        serde_json::error::Category::Data => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => BeaconError::WrongType,
            _ => BeaconError::NotAnObject,
        },
        _ => BeaconError::InvalidJson,
    }
}

/// The fields of a *plain* body in one pass, without serde: a JSON object
/// (whitespace allowed around every token) whose keys and string values
/// have no escapes or control characters, and whose other values are
/// `null`, `true`, `false` or integers of up to 15 digits, with the whole
/// body valid UTF-8. Trackers send nothing else, and serde_json's generic
/// machinery costs more: the whole decode of a 190-byte beacon takes 2,440
/// instructions this way against 3,900 through serde_json
/// (`benches/instructions.sh`), 125 against 275 ns (`cargo bench --bench
/// pipeline -- decode`).
///
/// `None` for anything outside that subset (an escape, a nested value, a
/// fraction, a string where `w` wants a number, invalid JSON): the caller
/// then lets serde_json decide, so the subset can only be read the way
/// serde_json reads it (a test and the fuzz corpus compare the two).
fn plain_json(body: &[u8]) -> Option<Wire<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    // Compact JSON has no byte below 0x20 at all; then no string needs its
    // own check for control characters. (A fold, not `any`, so the compiler
    // can look at many bytes a step.)
    let controls = body.iter().fold(false, |seen, &b| seen | (b < 0x20));
    let mut p = Plain {
        text,
        at: 0,
        controls,
    };
    let mut wire = Wire::default();
    p.skip_ws();
    p.eat(b'{')?;
    p.skip_ws();
    if p.eat(b'}').is_none() {
        loop {
            let key = p.string()?;
            p.skip_ws();
            p.eat(b':')?;
            p.skip_ws();
            // A custom event's properties: a flat object of plain values
            // is read here, anything else is serde's.
            let object = p.peek() == Some(b'{') && matches!(key, "p" | "props" | "m" | "meta");
            let value = if object {
                wire.props = p.props()?.map(Box::new);
                Scalar::Null
            } else {
                p.value()?
            };
            match (key, value) {
                _ if object => {}
                ("n" | "name", Scalar::Str(v)) => wire.name = Some(Cow::Borrowed(v)),
                ("u" | "url", Scalar::Str(v)) => wire.url = Some(Cow::Borrowed(v)),
                ("d" | "domain", Scalar::Str(v)) => wire.domain = Some(Cow::Borrowed(v)),
                ("r" | "referrer", Scalar::Str(v)) => wire.referrer = Some(Cow::Borrowed(v)),
                ("r" | "referrer", Scalar::Null) => wire.referrer = None,
                ("w" | "screen_width" | "h" | "hash" | "sd" | "e", Scalar::Str(_)) => {
                    // Loose's reading of numbers in strings: serde's road.
                    return None;
                }
                ("w" | "screen_width", v) => wire.screen_width = v.loose().as_u32(),
                ("sd", v) => wire.scroll_depth = v.loose().as_u32(),
                ("e", v) => wire.engaged_ms = v.loose().as_u32(),
                ("h" | "hash", v) => wire.hash_mode = v.loose().truthy(),
                // A string field given something else is an error to report
                // (or, for a name, an integer to read as text: serde's road).
                ("n" | "name" | "u" | "url" | "d" | "domain" | "r" | "referrer", _) => {
                    return None;
                }
                // A custom event's keys last, after every pageview's.
                ("i" | "interactive", Scalar::Str(_)) => return None,
                ("i" | "interactive", v) => wire.interactive = v.loose().flag(),
                // No properties (a null), or serde's to read (a string of
                // JSON, or a scalar it ignores).
                ("p" | "props" | "m" | "meta", Scalar::Null) => wire.props = None,
                ("p" | "props" | "m" | "meta", _) => return None,
                _ => {}
            }
            p.skip_ws();
            if p.eat(b'}').is_some() {
                break;
            }
            p.eat(b',')?;
            p.skip_ws();
        }
    }
    p.skip_ws();
    (p.at == body.len()).then_some(wire)
}

/// A cursor over a plain body.
struct Plain<'a> {
    text: &'a str,
    at: usize,
    /// Whether the body has any byte below 0x20 (whitespace included).
    controls: bool,
}

/// A value of the plain subset.
enum Scalar<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Null,
}

impl Scalar<'_> {
    /// As serde_json hands these to [`Loose`]: integers as numbers, `null`
    /// as nothing.
    fn loose(&self) -> Loose {
        match *self {
            Scalar::Int(n) => Loose::Number(n as f64),
            Scalar::Bool(b) => Loose::Bool(b),
            Scalar::Str(_) | Scalar::Null => Loose::Other,
        }
    }
}

impl<'a> Plain<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.at += 1)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let rest = &self.text.as_bytes()[self.at..];
        let len = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[len] != b'"' || (self.controls && rest[..len].iter().any(|&b| b < 0x20)) {
            return None;
        }
        // Both ends are ASCII quotes, so these are char boundaries.
        let s = &self.text[self.at..self.at + len];
        self.at += len + 1;
        Some(s)
    }

    fn value(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Scalar::Str),
            b'n' => self.word("null", Scalar::Null),
            b't' => self.word("true", Scalar::Bool(true)),
            b'f' => self.word("false", Scalar::Bool(false)),
            b'-' | b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    /// A flat object of properties whose values are plain strings, each
    /// borrowed as [`PropValue`] reads it. Any other value (a number, a
    /// boolean, null, something nested) is serde's to read.
    /// `Some(None)` for an empty object: no properties.
    fn props(&mut self) -> Option<Option<PropList<'a>>> {
        self.eat(b'{')?;
        self.skip_ws();
        let mut props = Vec::new();
        if self.eat(b'}').is_some() {
            return Some(None);
        }
        loop {
            let key = self.string()?;
            self.skip_ws();
            self.eat(b':')?;
            self.skip_ws();
            // Strings only (what trackers send), so that `value` stays
            // inlined in the one place every pageview calls it.
            let value = match self.peek()? {
                b'"' => Some(Cow::Borrowed(self.string()?)),
                _ => None?,
            };
            props.push((Cow::Borrowed(key), value));
            self.skip_ws();
            if self.eat(b'}').is_some() {
                return Some(Some(props));
            }
            self.eat(b',')?;
            self.skip_ws();
        }
    }

    fn word(&mut self, word: &str, value: Scalar<'a>) -> Option<Scalar<'a>> {
        self.text[self.at..].starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }

    /// `-?(0|[1-9][0-9]*)`, up to 15 digits, not followed by a fraction or
    /// an exponent (those are serde's to read).
    fn integer(&mut self) -> Option<Scalar<'a>> {
        let start = self.at;
        self.eat(b'-');
        let digits = self.text.as_bytes()[self.at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let first = self.peek()?;
        if digits == 0 || digits > 15 || (first == b'0' && digits > 1) {
            return None;
        }
        self.at += digits;
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.text[start..self.at].parse().ok().map(Scalar::Int)
    }
}

#[derive(Default)]
struct Wire<'a> {
    name: Option<Cow<'a, str>>,
    url: Option<Cow<'a, str>>,
    domain: Option<Cow<'a, str>>,
    referrer: Option<Cow<'a, str>>,
    screen_width: Option<u32>,
    hash_mode: bool,
    scroll_depth: Option<u32>,
    engaged_ms: Option<u32>,
    props: Option<Box<PropList<'a>>>,
    interactive: Option<bool>,
}

/// A hand-written visitor rather than a derive: it borrows strings, accepts
/// both key styles without serde's duplicate-field errors (the last one wins,
/// as in a JavaScript object), and is lenient with the optional numeric and
/// boolean fields that different tracker versions send in different types.
struct WireVisitor;

impl<'de> Visitor<'de> for WireVisitor {
    type Value = Wire<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a beacon object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
        let mut wire = Wire::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                // Plausible's 404 snippet sends its name as a number.
                "n" | "name" => wire.name = Some(map.next_value::<Name<'de>>()?.0),
                "u" | "url" => wire.url = Some(map.next_value::<Str<'de>>()?.0),
                "d" | "domain" => wire.domain = Some(map.next_value::<Str<'de>>()?.0),
                "r" | "referrer" => {
                    wire.referrer = map.next_value::<Option<Str<'de>>>()?.map(|s| s.0)
                }
                "w" | "screen_width" => {
                    wire.screen_width = map.next_value::<Loose>()?.as_u32();
                }
                "h" | "hash" => wire.hash_mode = map.next_value::<Loose>()?.truthy(),
                "sd" => wire.scroll_depth = map.next_value::<Loose>()?.as_u32(),
                "e" => wire.engaged_ms = map.next_value::<Loose>()?.as_u32(),
                "i" | "interactive" => wire.interactive = map.next_value::<Loose>()?.flag(),
                "p" | "props" | "m" | "meta" => {
                    let props = map.next_value::<PropsField<'de>>()?.0;
                    wire.props = (!props.is_empty()).then(|| Box::new(props));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(wire)
    }
}

/// A string that borrows from the input when it can.
struct Str<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An event name: a string, or an integer read as its decimal text.
struct Name<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A custom event's properties: a flat object, or a string holding the
/// JSON of one (both occur in the wild). Anything else, or a string that
/// is not such JSON, is no properties at all.
struct PropsField<'a>(PropList<'a>);

impl<'de> de::Deserialize<'de> for PropsField<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PropsField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of properties")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PropsField<'de>, A::Error> {
                let mut props = Vec::new();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    props.push((key.0, map.next_value::<PropValue<'de>>()?.0));
                }
                Ok(PropsField(props))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PropsField<'de>, E> {
                let owned = |props: PropsField<'_>| {
                    props
                        .0
                        .into_iter()
                        .map(|(k, v)| {
                            (
                                Cow::Owned(k.into_owned()),
                                v.map(|v| Cow::Owned(v.into_owned())),
                            )
                        })
                        .collect()
                };
                Ok(PropsField(
                    serde_json::from_str::<PropsField<'_>>(v).map_or_else(|_| Vec::new(), owned),
                ))
            }
            fn visit_bool<E>(self, _: bool) -> Result<PropsField<'de>, E> {
                Ok(PropsField(Vec::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<PropsField<'de>, E> {
                Ok(PropsField(Vec::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<PropsField<'de>, E> {
                Ok(PropsField(Vec::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<PropsField<'de>, E> {
                Ok(PropsField(Vec::new()))
            }
            fn visit_unit<E>(self) -> Result<PropsField<'de>, E> {
                Ok(PropsField(Vec::new()))
            }
            fn visit_none<E>(self) -> Result<PropsField<'de>, E> {
                Ok(PropsField(Vec::new()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<PropsField<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PropsField(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One property's value as text: a string as it is, a number or a boolean
/// as JSON writes it; `None` for null, an array or an object.
struct PropValue<'a>(Option<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for PropValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PropValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<PropValue<'de>, E> {
                Ok(PropValue(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<PropValue<'de>, E> {
                Ok(PropValue(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<PropValue<'de>, E> {
                Ok(PropValue(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<PropValue<'de>, E> {
                Ok(PropValue(Some(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<PropValue<'de>, E> {
                Ok(PropValue(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<PropValue<'de>, E> {
                Ok(PropValue(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<PropValue<'de>, E> {
                Ok(PropValue(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E>(self) -> Result<PropValue<'de>, E> {
                Ok(PropValue(None))
            }
            fn visit_none<E>(self) -> Result<PropValue<'de>, E> {
                Ok(PropValue(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<PropValue<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PropValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<PropValue<'de>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(PropValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value, kept only as far as `w` and `h` need it. Strings,
/// objects and arrays in these fields are ignored rather than refused (a
/// number too large for JSON itself is still invalid JSON).
enum Loose {
    Number(f64),
    Bool(bool),
    Other,
}

impl Loose {
    fn as_u32(&self) -> Option<u32> {
        match *self {
            Loose::Number(n) if n >= 0.0 && n <= u32::MAX as f64 => Some(n as u32),
            _ => None,
        }
    }

    /// A flag that defaults to true: only `false` or `0` say no, and
    /// anything unreadable is as if absent.
    fn flag(&self) -> Option<bool> {
        match *self {
            Loose::Number(n) => Some(n != 0.0),
            Loose::Bool(b) => Some(b),
            Loose::Other => None,
        }
    }

    fn truthy(&self) -> bool {
        match *self {
            Loose::Number(n) => n != 0.0,
            Loose::Bool(b) => b,
            Loose::Other => false,
        }
    }
}

impl<'de> de::Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Loose, E> {
                Ok(Loose::Bool(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Loose, E> {
                Ok(Loose::Number(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Loose, E> {
                Ok(Loose::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Loose, E> {
                Ok(Loose::Number(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Loose, E> {
                Ok(match v.trim() {
                    "true" => Loose::Bool(true),
                    "false" => Loose::Bool(false),
                    n => n.parse().map_or(Loose::Other, Loose::Number),
                })
            }
            fn visit_unit<E>(self) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_none<E>(self) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Loose, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Loose, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn what_trackers_send_takes_the_plain_road() {
        for body in [
            r#"{"n":"pageview","u":"https://example.com/blog/2026/11/privacy-first-analytics?utm_source=newsletter","d":"example.com","r":"https://news.ycombinator.com/item?id=41234567","w":1440,"h":0}"#,
            r#"{"n":"pageview","u":"https://example.com/","d":"example.com","r":null,"w":390,"h":1}"#,
            "{ \"name\" : \"pageview\",\n \"url\": \"https://example.com/café\", \"domain\": \"example.com\", \"hash\": true, \"props\": null }\n",
        ] {
            let wire = plain_json(body.as_bytes()).unwrap_or_else(|| panic!("not plain: {body}"));
            assert_eq!(finish(wire), decode_json_parsed(body.as_bytes()), "{body}");
        }
        // So is a custom event with a flat object of properties.
        let event = r#"{"n":"Signup","u":"https://example.com/","d":"example.com","p":{"plan":"pro","seats":"3"}}"#;
        let wire = plain_json(event.as_bytes()).expect("a flat props object is plain");
        assert_eq!(finish(wire), decode_json_parsed(event.as_bytes()));
        // Numbers are serde's, which prints them as it reads them (`-0`,
        // a float to it, too).
        let numbers = r#"{"u":"https://a.com/","d":"a.com","p":{"a":-0,"b":-12,"c":1}}"#;
        assert!(plain_json(numbers.as_bytes()).is_none());
        let b = decode_json(numbers.as_bytes()).unwrap();
        let values: Vec<_> = b.props().iter().map(|(_, v)| v.as_deref()).collect();
        assert_eq!(values, [Some("-0"), Some("-12"), Some("1")]);
        // Escapes, nesting, fractions and strings for numbers are serde's.
        for body in [
            r#"{"u":"https:\/\/example.com\/","d":"example.com"}"#,
            r#"{"u":"https://example.com/","d":"example.com","p":{"a":[1]}}"#,
            r#"{"u":"https://example.com/","d":"example.com","p":"{\"a\":1}"}"#,
            r#"{"u":"https://example.com/","d":"example.com","w":1440.5}"#,
            r#"{"u":"https://example.com/","d":"example.com","w":"1440"}"#,
            r#"{"u":"https://example.com/","d":"example.com","w":1e3}"#,
        ] {
            assert!(plain_json(body.as_bytes()).is_none(), "{body}");
            assert!(decode_json(body.as_bytes()).is_ok(), "{body}");
        }
    }

    /// Every key a beacon may carry, short and long.
    const BEACON_KEYS: [&str; 12] = [
        "n",
        "u",
        "d",
        "r",
        "w",
        "h",
        "name",
        "url",
        "domain",
        "referrer",
        "screen_width",
        "hash",
    ];

    /// A key drawn from [`BEACON_KEYS`] and `others`.
    fn keys_and(others: &[&'static str]) -> impl Strategy<Value = &'static str> {
        prop::sample::select([&BEACON_KEYS[..], others].concat())
    }

    /// JSON-ish bodies made of beacon keys and values of every kind, valid
    /// and not, with whitespace where JSON allows it and some where it
    /// does not.
    fn bodies() -> impl Strategy<Value = String> {
        let ws = prop::sample::select(vec!["", "", " ", "\n\t", "\r "]);
        let key = keys_and(&["props", "", "u\\u0072l", "p", "m", "i", "interactive"]);
        let value = prop::sample::select(vec![
            "\"pageview\"",
            "\"https://example.com/a?b=1#c\"",
            "\"example.com\"",
            "\"\"",
            "\"a\\\"b\"",
            "\"caf\u{e9}\"",
            "\"\\u00e9\"",
            "\"tab\there\"",
            "\"1440\"",
            "\" true \"",
            "0",
            "-0",
            "1440",
            "-5",
            "01",
            "1.5",
            "1e3",
            "123456789012345",
            "1234567890123456",
            "99999999999999999999",
            "-",
            "null",
            "true",
            "false",
            "nul",
            "[1,2]",
            "{\"a\":[]}",
            "{}",
            "{\"plan\":\"pro\",\"n\":3}",
            "{ \"a\" : null , \"b\":true,\"a\":\"x\"}",
            "{\"a\":-0,\"b\":01}",
            "{\"a\":\"\\u00e9\"}",
            "{\"a\":1.5}",
            "{\"a\":\"b\",}",
        ]);
        let member = (ws.clone(), key, ws.clone(), ws.clone(), value, ws.clone())
            .prop_map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"));
        let end = prop::sample::select(vec!["", " ", "\n", "x", ",", "}"]);
        (prop::collection::vec(member, 0..8), ws, end)
            .prop_map(|(members, w, end)| format!("{w}{{{}}}{end}", members.join(",")))
    }

    proptest! {
        /// Whatever road a body takes, it is read as serde_json reads it.
        #[test]
        fn both_roads_read_every_body_alike(body in bodies()) {
            prop_assert_eq!(decode_json(body.as_bytes()), decode_json_parsed(body.as_bytes()), "{}", body);
        }
    }

    fn ok(body: &str) -> Beacon<'_> {
        decode_json(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    #[test]
    fn reads_custom_events_in_every_shape_trackers_send() {
        let p = |b: &Beacon<'_>| -> Vec<(String, Option<String>)> {
            b.props()
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_deref().map(Into::into)))
                .collect()
        };
        let kv = |pairs: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
            pairs
                .iter()
                .map(|&(k, v)| (k.into(), v.map(Into::into)))
                .collect()
        };
        let base = r#""u":"https://a.com/x","d":"a.com""#;
        // (extra members, name, props, interactive)
        let cases: &[(&str, &str, &[(&str, Option<&str>)], bool)] = &[
            // Plausible's tracker: props as an object.
            (
                r#""n":"Signup","p":{"plan":"pro","seats":3,"trial":true}"#,
                "Signup",
                &[
                    ("plan", Some("pro")),
                    ("seats", Some("3")),
                    ("trial", Some("true")),
                ],
                true,
            ),
            // Older trackers and server senders: a JSON string of them.
            (
                r#""name":"Signup","props":"{\"plan\":\"pro\"}""#,
                "Signup",
                &[("plan", Some("pro"))],
                true,
            ),
            (
                r#""n":"Signup","m":{"plan":"pro"}"#,
                "Signup",
                &[("plan", Some("pro"))],
                true,
            ),
            (
                r#""n":"Signup","meta":"{\"a\":null}""#,
                "Signup",
                &[("a", None)],
                true,
            ),
            // Nested values are kept as unusable, for the reason count.
            (
                r#""n":"Signup","p":{"a":[1],"b":{"c":1},"d":null,"e":1.5}"#,
                "Signup",
                &[("a", None), ("b", None), ("d", None), ("e", Some("1.5"))],
                true,
            ),
            // Plausible's 404 snippet: an integer name.
            (
                r#""n":404,"p":{"path":"/gone"}"#,
                "404",
                &[("path", Some("/gone"))],
                true,
            ),
            // Not interactive, in each spelling.
            (r#""n":"Scrolled","i":false"#, "Scrolled", &[], false),
            (r#""n":"Scrolled","interactive":0"#, "Scrolled", &[], false),
            (r#""n":"Scrolled","i":"false""#, "Scrolled", &[], false),
            (r#""n":"Scrolled","i":true"#, "Scrolled", &[], true),
            // A string that is not JSON of an object, or a null: no props.
            (r#""n":"X","p":"plan=pro""#, "X", &[], true),
            (
                r#""n":"X","p":null,"v":"2.1.0","$":{"amount":"1","currency":"EUR"}"#,
                "X",
                &[],
                true,
            ),
            (r#""n":"X","p":[1,2]"#, "X", &[], true),
        ];
        for &(extra, name, props, interactive) in cases {
            let body = format!("{{{base},{extra}}}");
            let b = ok(&body);
            assert_eq!(b.name, name, "{body}");
            assert_eq!(p(&b), kv(props), "{body}");
            assert_eq!(b.interactive, interactive, "{body}");
            assert_eq!(decode_json_parsed(body.as_bytes()), Ok(b), "{body}");
        }
        // What trackers send takes the plain road, and reads as serde does.
        for extra in [
            r#""n":"Signup","p":{"plan":"pro","size":"xl"}"#,
            r#""n":"Signup","p":{"plan":"pro"},"p":{"size":"xl"}"#,
            r#""n":"Signup","p":{"plan":"pro"},"props":null"#,
            r#""n":"Signup","p":{},"i":0"#,
            r#""n":"Signup","meta":{ "plan" : "pro" },"interactive":false"#,
        ] {
            let body = format!("{{{base},{extra}}}");
            let wire = plain_json(body.as_bytes()).unwrap_or_else(|| panic!("not plain: {body}"));
            assert_eq!(finish(wire), decode_json_parsed(body.as_bytes()), "{body}");
        }
        // A name of 120 characters is one; 121, or none, is an error.
        let named = |n: &str| {
            decode_json(format!(r#"{{{base},"n":"{n}"}}"#).as_bytes()).map(|b| b.name.len())
        };
        assert_eq!(named(&"é".repeat(120)), Ok(240));
        assert_eq!(named(&"x".repeat(121)), Err(BeaconError::InvalidName));
        assert_eq!(named(" "), Err(BeaconError::InvalidName));
        assert_eq!(
            decode_json(format!(r#"{{{base},"n":1.5}}"#).as_bytes()),
            Err(BeaconError::WrongType)
        );
        // A pageview carries no props and allocates none.
        let body = format!("{{{base}}}");
        let view = ok(&body);
        assert!(view.props.is_none());
        assert!(view.interactive);
    }

    #[test]
    fn reads_an_engagement_as_plausible_sends_it() {
        // Plausible's tracker 0.4.6, verbatim.
        let body = r#"{"n":"engagement","sd":41,"d":"site.test","u":"http://site.test/a/","e":3003,"v":36}"#;
        let b = ok(body);
        assert_eq!((b.scroll_depth, b.engaged_ms), (Some(41), Some(3003)));
        // The same through serde_json (an escape in the URL): the same read.
        let escaped = body.replace("/a/", "\\/a\\/");
        assert_eq!(ok(&escaped), b);
        // 255 (and anything negative) is unknown, more than 100 is 100;
        // 30 days of engagement or more is not believed.
        let read = |sd: &str, e: &str| {
            let body = format!(
                r#"{{"n":"engagement","u":"https://a.com/","d":"a.com","sd":{sd},"e":{e}}}"#
            );
            let b = ok(&body);
            (b.scroll_depth, b.engaged_ms)
        };
        assert_eq!(read("255", "0"), (None, Some(0)));
        assert_eq!(read("-3", "1"), (None, Some(1)));
        assert_eq!(read("180", "2591999999"), (Some(100), Some(2_591_999_999)));
        assert_eq!(read("0", "2592000000"), (Some(0), None));
        assert_eq!(read("null", "\"12\""), (None, Some(12)));
        let b = ok(r#"{"u":"https://a.com/","d":"a.com"}"#);
        assert_eq!((b.scroll_depth, b.engaged_ms), (None, None));
    }

    #[test]
    fn decodes_short_and_long_keys_alike() {
        let short = ok(
            r#"{"n":"pageview","u":"https://example.com/a?x=1","d":"example.com","r":"https://news.ycombinator.com/item","w":1280,"h":0}"#,
        );
        let long = ok(
            r#"{"name":"pageview","url":"https://example.com/a?x=1","domain":"example.com","referrer":"https://news.ycombinator.com/item","screen_width":1280,"hash":false}"#,
        );
        assert_eq!(short, long);
        assert_eq!(short.url, "https://example.com/a?x=1");
        assert_eq!(short.domain, "example.com");
        assert_eq!(
            short.referrer.as_deref(),
            Some("https://news.ycombinator.com/item")
        );
        assert_eq!(short.screen_width, Some(1280));
        assert!(!short.hash_mode);
    }

    #[test]
    fn table_of_valid_bodies() {
        // (body, name, referrer, width, hash)
        let cases: &[(&str, &str, Option<&str>, Option<u32>, bool)] = &[
            (
                r#"{"u":"https://a.com/","d":"a.com"}"#,
                "pageview",
                None,
                None,
                false,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","r":null}"#,
                "pageview",
                None,
                None,
                false,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","r":""}"#,
                "pageview",
                None,
                None,
                false,
            ),
            (
                r#"{"n":"signup","u":"https://a.com/","d":"a.com"}"#,
                "signup",
                None,
                None,
                false,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","h":1}"#,
                "pageview",
                None,
                None,
                true,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","h":true}"#,
                "pageview",
                None,
                None,
                true,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","h":"true"}"#,
                "pageview",
                None,
                None,
                true,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","h":"0"}"#,
                "pageview",
                None,
                None,
                false,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","w":"390"}"#,
                "pageview",
                None,
                Some(390),
                false,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","w":-5}"#,
                "pageview",
                None,
                None,
                false,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","w":{"x":1}}"#,
                "pageview",
                None,
                None,
                false,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","p":{"plan":"pro"},"extra":[1,2]}"#,
                "pageview",
                None,
                None,
                false,
            ),
            (
                r#"{"u":"https://a.com/","d":"a.com","p":"{\"a\":1}"}"#,
                "pageview",
                None,
                None,
                false,
            ),
            (
                r#"{"u":"https:\/\/a.com\/","d":"a.com","r":"https://b.com/"}"#,
                "pageview",
                Some("https://b.com/"),
                None,
                false,
            ),
            (
                r#"  {"u":"https://a.com/","d":"a.com"}  "#,
                "pageview",
                None,
                None,
                false,
            ),
        ];
        for &(body, name, referrer, width, hash) in cases {
            let b = ok(body);
            assert_eq!(b.name, name, "{body}");
            assert_eq!(b.referrer.as_deref(), referrer, "{body}");
            assert_eq!(b.screen_width, width, "{body}");
            assert_eq!(b.hash_mode, hash, "{body}");
            assert_eq!(b.url, "https://a.com/", "{body}");
        }
    }

    #[test]
    fn table_of_bad_bodies() {
        let long_url = format!(
            r#"{{"u":"https://a.com/{}","d":"a.com"}}"#,
            "x".repeat(5000)
        );
        let cases: Vec<(&[u8], BeaconError)> = vec![
            (b"", BeaconError::InvalidJson),
            (b"not json", BeaconError::InvalidJson),
            (
                b"{\"u\":\"https://a.com/\",\"d\":\"a.com\"",
                BeaconError::InvalidJson,
            ),
            (
                b"{\"u\":\"https://a.com/\",\"d\":\"a.com\"} trailing",
                BeaconError::InvalidJson,
            ),
            (b"[1,2]", BeaconError::NotAnObject),
            (b"\"a string\"", BeaconError::NotAnObject),
            (b"null", BeaconError::NotAnObject),
            (b"{}", BeaconError::MissingUrl),
            (br#"{"d":"a.com"}"#, BeaconError::MissingUrl),
            (br#"{"u":"","d":"a.com"}"#, BeaconError::MissingUrl),
            (br#"{"u":"https://a.com/"}"#, BeaconError::MissingDomain),
            (
                br#"{"u":"https://a.com/","d":"  "}"#,
                BeaconError::MissingDomain,
            ),
            (br#"{"u":42,"d":"a.com"}"#, BeaconError::WrongType),
            (
                br#"{"u":"https://a.com/","d":["a.com"]}"#,
                BeaconError::WrongType,
            ),
            (
                br#"{"u":"https://a.com/","d":"a.com","r":7}"#,
                BeaconError::WrongType,
            ),
            (
                b"{\"u\":\"https://a.com/\xff\",\"d\":\"a.com\"}",
                BeaconError::InvalidJson,
            ),
            (long_url.as_bytes(), BeaconError::UrlTooLong),
        ];
        for (body, want) in cases {
            assert_eq!(
                decode_json(body),
                Err(want),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn deep_nesting_in_ignored_fields_is_skipped_without_recursion() {
        // serde_json skips ignored values iteratively: no stack overflow.
        for field in ["p", "w", "extra"] {
            let body = format!(
                r#"{{"u":"https://a.com/","d":"a.com","{field}":{}{}}}"#,
                "[".repeat(5000),
                "]".repeat(5000)
            );
            assert_eq!(ok(&body).url, "https://a.com/");
        }
        let unbalanced = format!(
            r#"{{"u":"https://a.com/","d":"a.com","p":{}}}"#,
            "[".repeat(5000)
        );
        assert_eq!(
            decode_json(unbalanced.as_bytes()),
            Err(BeaconError::InvalidJson)
        );
    }

    #[test]
    fn borrows_strings_without_escapes() {
        let b = ok(r#"{"u":"https://a.com/x","d":"a.com"}"#);
        assert!(matches!(b.url, Cow::Borrowed(_)));
        assert!(matches!(b.domain, Cow::Borrowed(_)));
    }

    /// `decode_query` with room for the whole query, as the server gives.
    fn query(q: &str) -> Result<Beacon<'static>, BeaconError> {
        let scratch = Box::leak(vec![0; q.len()].into_boxed_slice());
        decode_query(Box::leak(q.into()), scratch)
    }

    #[test]
    fn decodes_pixel_query_strings() {
        let b = query("d=a.com&u=https%3A%2F%2Fa.com%2Fp%3Fq%3D1&r=https%3A%2F%2Fb.com%2F&w=800")
            .unwrap();
        assert_eq!(b.domain, "a.com");
        assert_eq!(b.url, "https://a.com/p?q=1");
        assert_eq!(b.referrer.as_deref(), Some("https://b.com/"));
        assert_eq!(b.screen_width, Some(800));
        assert_eq!(b.name, "pageview");
        // Decoded into the scratch and borrowed from it: no allocation.
        for value in [&b.domain, &b.url, b.referrer.as_ref().unwrap()] {
            assert!(matches!(value, Cow::Borrowed(_)), "{value:?}");
        }

        assert_eq!(query("d=a.com"), Err(BeaconError::MissingUrl));
        assert_eq!(query("u=https://a.com/"), Err(BeaconError::MissingDomain));
        assert_eq!(query(""), Err(BeaconError::MissingUrl));
    }

    #[test]
    fn table_of_pixel_queries() {
        // (query, url, domain, referrer, width, hash)
        let cases: &[(&str, &str, &str, Option<&str>, Option<u32>, bool)] = &[
            (
                "u=https://a.com/&d=a.com",
                "https://a.com/",
                "a.com",
                None,
                None,
                false,
            ),
            // `+` is a space, `%2B` a plus.
            (
                "u=https://a.com/a+b%2Bc&d=a.com",
                "https://a.com/a b+c",
                "a.com",
                None,
                None,
                false,
            ),
            // A `%` without two hex digits stays; lower-case hex decodes.
            (
                "u=https://a.com/%zz%2%&d=a.com",
                "https://a.com/%zz%2%",
                "a.com",
                None,
                None,
                false,
            ),
            (
                "u=https://a.com/%c3%a9&d=a.com",
                "https://a.com/\u{e9}",
                "a.com",
                None,
                None,
                false,
            ),
            // Bytes that are not UTF-8 once decoded become U+FFFD.
            (
                "u=https://a.com/%FF&d=a.com",
                "https://a.com/\u{fffd}",
                "a.com",
                None,
                None,
                false,
            ),
            // Escaped keys, empty pairs, a key without `=`.
            (
                "%75=https://a.com/&&domain=a.com&referrer&h=1",
                "https://a.com/",
                "a.com",
                None,
                None,
                true,
            ),
            (
                "url=https://a.com/&d=a.com&screen_width=390&hash=true&r=x",
                "https://a.com/",
                "a.com",
                Some("x"),
                Some(390),
                true,
            ),
            // The last of a key wins; unknown keys are ignored.
            (
                "u=https://a.com/1&u=https://a.com/2&d=a.com&zz=%FF&w=nan",
                "https://a.com/2",
                "a.com",
                None,
                None,
                false,
            ),
        ];
        for &(q, url, domain, referrer, width, hash) in cases {
            let b = query(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(
                (
                    &*b.url,
                    &*b.domain,
                    b.referrer.as_deref(),
                    b.screen_width,
                    b.hash_mode
                ),
                (url, domain, referrer, width, hash),
                "{q}"
            );
            assert_eq!(Ok(b), decode_query_parsed(q), "{q}");
        }
    }

    /// Query strings of beacon keys (some escaped) and values with escapes
    /// of every kind, good and broken.
    fn queries() -> impl Strategy<Value = String> {
        let key = keys_and(&["%75", "%75%72%6C", "do%6Dain", "u+", "x", ""]);
        let piece = prop::sample::select(vec![
            "a",
            "https",
            "%3A",
            "%2F",
            "%2f",
            "+",
            "%2B",
            "%",
            "%2",
            "%zz",
            "%C3%A9",
            "%FF",
            "%E2%82",
            "\u{e9}",
            "=",
            "1",
            "0",
            "true",
            "1440",
            "example.com",
            "%20",
            "%25",
        ]);
        let value = prop::collection::vec(piece, 0..6).prop_map(|p| p.concat());
        let pair = (key, prop::option::of(value)).prop_map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.to_owned(),
        });
        prop::collection::vec(pair, 0..8).prop_map(|pairs| pairs.join("&"))
    }

    proptest! {
        /// The one-pass pixel decoder reads every query as
        /// `form_urlencoded` does, with room for it all or with too little.
        #[test]
        fn pixel_queries_read_as_form_urlencoded_does(q in queries(), room in 0..64usize) {
            let mut scratch = vec![0; q.len()];
            prop_assert_eq!(decode_query(&q, &mut scratch), decode_query_parsed(&q), "{}", q);
            let mut short = vec![0; room.min(q.len())];
            prop_assert_eq!(decode_query(&q, &mut short), decode_query_parsed(&q), "{}", q);
        }
    }
}
