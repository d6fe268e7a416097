//! The vocabulary every footfall crate shares.
//!
//! # Layout
//! - [`Visit`], [`Engagement`], [`CustomEvent`] and [`VisitorKey`]: what the
//!   collector hands downstream. None has a field for an IP address, a
//!   User-Agent string, a cookie or a query string, so nothing after the
//!   collector can store them.
//! - [`VisitSink`]: where visits go; the aggregator implements it, the
//!   collector calls it, and neither crate depends on the other.
//! - [`dims`]: the closed vocabularies of the dimension tables (browser,
//!   OS and device families, country codes).
//! - [`tables`]: the Arrow schema of every table written to disk, and the
//!   key-value metadata every file carries.
//!
//! This crate knows nothing of HTTP, tokio or Parquet writing.

pub mod dims;
pub mod tables;

pub use dims::{Browser, Country, Device, Os};

use std::fmt;

/// One anonymous page view of one site, as it leaves the collector.
///
/// Every field is a value of a closed vocabulary or text cut down to what a
/// table stores; none can hold an address, a User-Agent or a query string.
///
/// Built only by the collector's `anonymise`; everything identifying was
/// consumed there and does not exist past this point.
///
/// Its text is borrowed, from the request or from what `anonymise`
/// normalised, for the length of one [`VisitSink::record`] call: a sink that
/// keeps a string copies it, and one that finds the row already open copies
/// nothing, so the common beacon costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Visit<'a> {
    /// The site the view counts for, normalised (lowercase, no `www.`).
    pub site: &'a str,
    /// When the beacon arrived, in seconds since the Unix epoch (UTC). Server
    /// time, never a client clock, so an hour that has passed stays closed.
    pub time: i64,
    /// URL path (and fragment under hash routing); never a query string.
    pub page: &'a str,
    /// Host of the referrer of a landing (lowercase, no `www.`), never the
    /// full URL; `None` for direct traffic, an address, and navigation
    /// within the site (which is not a source).
    pub referrer: Option<&'a str>,
    /// True when the view is a landing: no referrer, or one from another site.
    pub entry: bool,
    /// The campaign parameters of the page URL, for landings only: the
    /// three allow-listed values, nothing else of the query.
    pub campaign: Campaign<'a>,
    /// Browser family, from the User-Agent (which ends in the collector).
    pub browser: Browser,
    /// Operating system family, from the User-Agent.
    pub os: Os,
    /// Device class, from the screen width or else the User-Agent.
    pub device: Device,
    /// The country of the client address, when a database was given and
    /// knows it. The address itself ends in the collector.
    pub country: Option<Country>,
    /// Keyed hash of (site, IP, User-Agent) under the day's secret salt.
    pub visitor: VisitorKey,
}

impl<'a> Visit<'a> {
    /// A landing on `page` with no referrer, campaign or country, from an
    /// unknown desktop browser: the base that tests and benchmarks vary.
    pub fn landing(site: &'a str, time: i64, page: &'a str, visitor: VisitorKey) -> Self {
        Self {
            site,
            time,
            page,
            referrer: None,
            entry: true,
            campaign: Campaign::default(),
            browser: Browser::Other,
            os: Os::Other,
            device: Device::Desktop,
            country: None,
            visitor,
        }
    }
}

/// One anonymous engagement report: a visitor leaving a page (an SPA
/// navigation, or the page hidden) says how long it was engaged and how far
/// it scrolled. It counts for the visit the visitor key has open, if any,
/// and never as a view.
///
/// Borrowed like a [`Visit`], for one [`VisitSink::engage`] call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Engagement<'a> {
    /// The site, normalised as a visit's.
    pub site: &'a str,
    /// Arrival time, Unix seconds (server time).
    pub time: i64,
    /// The page being left, normalised as a visit's.
    pub page: &'a str,
    /// Engaged milliseconds since the page's last report; `None` when not
    /// sent or not believable (30 days or more).
    pub engaged_ms: Option<u32>,
    /// The deepest scroll on the page, 0–100 %; `None` when unknown.
    pub scroll_depth: Option<u8>,
    /// Keyed hash of (site, IP, User-Agent), as a visit's.
    pub visitor: VisitorKey,
}

impl fmt::Debug for Engagement<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engagement")
            .field("site", &self.site)
            .field("time", &self.time)
            .field("page", &self.page)
            .field("engaged_ms", &self.engaged_ms)
            .field("scroll_depth", &self.scroll_depth)
            .field("visitor", &self.visitor)
            .finish()
    }
}

/// One anonymous custom event (`Signup`, `Outbound Link: Click`, ...): its
/// name, the page it happened on and the properties the owner allowed,
/// already reduced and checked by the collector. Never a view.
///
/// Borrowed like a [`Visit`], for one [`VisitSink::event`] call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CustomEvent<'a> {
    /// The site, normalised as a visit's.
    pub site: &'a str,
    /// Arrival time, Unix seconds (server time).
    pub time: i64,
    /// The event's name as sent (at most 120 characters).
    pub name: &'a str,
    /// The page it was sent from, normalised as a visit's.
    pub page: &'a str,
    /// The allowed properties as (key, value): only keys on the owner's
    /// allow-list, values trimmed, bounded and never e-mail-like.
    pub props: &'a [(&'a str, &'a str)],
    /// False when the sender marked it non-interactive (`i: false`): such
    /// an event does not make its visit a non-bounce.
    pub interactive: bool,
    /// Keyed hash of (site, IP, User-Agent), as a visit's.
    pub visitor: VisitorKey,
}

impl fmt::Debug for CustomEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomEvent")
            .field("site", &self.site)
            .field("time", &self.time)
            .field("name", &self.name)
            .field("page", &self.page)
            .field("props", &self.props)
            .field("interactive", &self.interactive)
            .field("visitor", &self.visitor)
            .finish()
    }
}

/// The `utm_source`, `utm_medium` and `utm_campaign` values of a landing
/// page's URL (trimmed, bounded in length; absent when empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Campaign<'a> {
    pub source: Option<&'a str>,
    pub medium: Option<&'a str>,
    pub campaign: Option<&'a str>,
}

impl Campaign<'_> {
    /// True when no parameter was given.
    pub fn is_empty(&self) -> bool {
        self.source.is_none() && self.medium.is_none() && self.campaign.is_none()
    }
}

impl fmt::Debug for Visit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Visit")
            .field("site", &self.site)
            .field("time", &self.time)
            .field("page", &self.page)
            .field("referrer", &self.referrer)
            .field("entry", &self.entry)
            .field("campaign", &self.campaign)
            .field("browser", &self.browser)
            .field("os", &self.os)
            .field("device", &self.device)
            .field("country", &self.country)
            .field("visitor", &self.visitor)
            .finish()
    }
}

/// The anonymous visitor key: a keyed hash that only the day's salt can
/// reproduce. It lives in memory only and feeds the HLL sketches.
///
/// `Debug` never prints the value, so a stray `?visit` in a log line cannot
/// leak it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VisitorKey(u64);

impl VisitorKey {
    /// Wraps a hash computed by the collector.
    pub fn from_hash(hash: u64) -> Self {
        Self(hash)
    }

    /// The value a sketch is updated with.
    pub fn sketch_input(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for VisitorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VisitorKey(<redacted>)")
    }
}

/// Where the collector hands over the visits it made.
///
/// `record` must not block for long: it runs on the request path, and the
/// collector answers 202 only after it returned, which is what makes "every
/// 202-counted beacon is in the files after a clean stop" hold.
pub trait VisitSink: Send + Sync + 'static {
    /// Counts one visit. Its text is only lent: whatever the sink keeps, it
    /// copies.
    fn record(&self, visit: &Visit<'_>);

    /// Counts one engagement report for the visit its key has open. False
    /// when it counted for nothing: no open visit (or sessions are off).
    fn engage(&self, _engagement: &Engagement<'_>) -> bool {
        false
    }

    /// Counts one custom event (and, if it is interactive, makes the visit
    /// its key has open a non-bounce). Its text is only lent.
    fn event(&self, _event: &CustomEvent<'_>) {}

    /// Whether the sink can currently persist what it takes; the reason
    /// otherwise (answered on `/healthz` with a 503).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Appends the sink's own series to a `/metrics` answer, in the
    /// Prometheus text format.
    fn render_metrics(&self, _out: &mut String) {}
}
