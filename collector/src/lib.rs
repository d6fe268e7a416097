//! footfall's collector: the HTTP edge that turns page-visit beacons into
//! anonymous [`Visit`](footfall_schemas::Visit)s.
//!
//! # Layout
//! - [`beacon`]: `decode_json` / `decode_query`, pure, bytes to [`Beacon`].
//! - [`normalise`]: URLs reduced to host and path, referrers to a host.
//! - [`events`]: which of a custom event's properties may be kept (the
//!   owner's allow-list, short values, no e-mail addresses), and the
//!   automatic events' `url` reduced to host and path.
//! - [`agent`]: a User-Agent reduced to bot, or browser, OS and device
//!   families (isbot's and uap-core's lists, embedded).
//! - [`anonymise`]: the one place that sees the client IP and User-Agent,
//!   hashes them with the day's salt and lets them go.
//! - [`salt`]: one secret salt per UTC day, destroyed when the day ends.
//! - [`geo`]: the country of an address, from a MaxMind DB held in memory.
//! - [`server`]: the hyper shell; `serve(listener, collector, shutdown)`.
//! - [`metrics`]: the counters the dashboard listener (the
//!   `footfall-dashboard` crate) shows at `/metrics`.
//! - [`notices`]: the log line, once an hour per site, that says why a
//!   site's beacons are not counted.
//! - [`shields`]: excluded addresses and pages, the cap on views a minute
//!   per visitor key.
//! - [`welcome`]: the page at `/` (pure: `Host` in, HTML out).
//! - `scripts`: the tracker as served, `/script.js` and Plausible's script
//!   variants at `/js/script.<ext>….js`, built from `tracker.js` and the
//!   fragments in `tracker/`.
//!
//! The pure parts (`beacon`, `normalise`, `anonymise`) do no I/O; the shell
//! only calls them.

pub mod agent;
pub mod anonymise;
pub mod beacon;
pub mod error;
pub mod events;
pub mod geo;
pub mod metrics;
pub mod normalise;
pub mod notices;
pub mod salt;
mod scripts;
pub mod server;
pub mod shields;
pub mod welcome;

pub use anonymise::{Client, SaltKey, SiteFilter, agent_digest, anonymise, visitor_key};
pub use beacon::{Beacon, decode_json, decode_query};
pub use error::{BeaconError, DropReason};
pub use geo::{GeoDb, GeoError};
pub use salt::{SaltError, SaltStore};
pub use server::{Collector, CollectorConfig, serve};
