//! Why a beacon was refused or not counted.
//!
//! Both types are small and cheap: they are expected on the hot path, so they
//! carry no input text. That is also a privacy property: an error message can
//! never echo a URL with its query string, a referrer or a User-Agent.

use http::StatusCode;

/// A request the collector refuses: the client gets a 4xx and a short JSON
/// message. Counted in `/metrics`, never logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    #[error("body is not valid JSON")]
    InvalidJson,
    #[error("body must be a JSON object")]
    NotAnObject,
    #[error("a field has the wrong type")]
    WrongType,
    #[error("missing `u` (url)")]
    MissingUrl,
    #[error("`u` must be an absolute http(s) URL")]
    InvalidUrl,
    #[error("`u` is longer than 4096 bytes")]
    UrlTooLong,
    #[error("`n` (name) must be 1 to 120 characters, with no control character or e-mail address")]
    InvalidName,
    #[error("missing `d` (domain)")]
    MissingDomain,
    #[error("`d` must be a domain name or a comma-separated list of them")]
    InvalidDomain,
    #[error("body is larger than 16 KiB")]
    BodyTooLarge,
    #[error("body could not be read")]
    BodyRead,
    #[error("body took too long to arrive")]
    BodyTimeout,
}

impl BeaconError {
    /// The HTTP status this error is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            BeaconError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BeaconError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A stable label for `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            BeaconError::InvalidJson => "invalid-json",
            BeaconError::NotAnObject => "not-an-object",
            BeaconError::WrongType => "wrong-type",
            BeaconError::MissingUrl => "missing-url",
            BeaconError::InvalidUrl => "invalid-url",
            BeaconError::UrlTooLong => "url-too-long",
            BeaconError::InvalidName => "invalid-name",
            BeaconError::MissingDomain => "missing-domain",
            BeaconError::InvalidDomain => "invalid-domain",
            BeaconError::BodyTooLarge => "body-too-large",
            BeaconError::BodyRead => "body-read",
            BeaconError::BodyTimeout => "body-timeout",
        }
    }

    /// Every variant, for pre-registering metrics.
    pub const ALL: [BeaconError; 12] = [
        BeaconError::InvalidJson,
        BeaconError::NotAnObject,
        BeaconError::WrongType,
        BeaconError::MissingUrl,
        BeaconError::InvalidUrl,
        BeaconError::UrlTooLong,
        BeaconError::InvalidName,
        BeaconError::MissingDomain,
        BeaconError::InvalidDomain,
        BeaconError::BodyTooLarge,
        BeaconError::BodyRead,
        BeaconError::BodyTimeout,
    ];
}

/// Why a well-formed beacon was answered 202 but not counted. Sent back in
/// the `X-Footfall-Dropped` header and counted in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// An engagement report (scroll depth, time on page) whose visitor has
    /// no open visit to count it for, or sessions are off.
    NoVisit,
    /// The site is not on the `--site` allow-list.
    UnknownSite,
    /// The page URL's host is neither the site nor one of its subdomains.
    UrlNotOnSite,
    /// The User-Agent is a crawler, bot, headless browser, command-line
    /// client or link previewer, or there is none.
    Bot,
    /// The browser sent `Sec-GPC: 1` and `--honor-gpc` is on.
    Gpc,
    /// The client's address is on `--exclude-ip`, or the page matches an
    /// `--exclude-page` pattern.
    Excluded,
    /// The visitor key sent more than `--max-views-per-minute` views in
    /// this minute.
    RateLimit,
    /// Collectors share their salts (`--salt-store`) and today's could not
    /// be fetched: it would be counted apart from the other collectors'.
    NoSalt,
}

impl DropReason {
    /// The header value and metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoVisit => "no-visit",
            DropReason::UnknownSite => "unknown-site",
            DropReason::UrlNotOnSite => "url-not-on-site",
            DropReason::Bot => "bot",
            DropReason::Gpc => "gpc",
            DropReason::Excluded => "excluded",
            DropReason::RateLimit => "rate-limit",
            DropReason::NoSalt => "no-salt",
        }
    }

    /// Every variant, for pre-registering metrics.
    pub const ALL: [DropReason; 8] = [
        DropReason::NoVisit,
        DropReason::UnknownSite,
        DropReason::UrlNotOnSite,
        DropReason::Bot,
        DropReason::Gpc,
        DropReason::Excluded,
        DropReason::RateLimit,
        DropReason::NoSalt,
    ];
}
