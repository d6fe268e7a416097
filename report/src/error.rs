//! What a report can fail on, each variant with what a person needs to act.

use std::path::PathBuf;

use chrono::NaiveDate;
use footfall_schemas::tables::SCHEMA_VERSION;

/// What went wrong, with what a person needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data dir {} does not exist (serve writes it; pass --data-dir)", .0.display())]
    DataDirMissing(PathBuf),
    #[error("empty range: --from {from} is after --to {to}")]
    EmptyRange { from: NaiveDate, to: NaiveDate },
    #[error("no data for site {site:?} on any day in {}{}", dir.display(), known_hint(.known))]
    UnknownSite {
        site: String,
        dir: PathBuf,
        /// Every site with data, on any day.
        known: Vec<String>,
    },
    #[error("no site has data in {} yet (serve writes files when an hour closes and when it stops)", dir.display())]
    NoSites { dir: PathBuf },
    #[error("several sites have data in {}: {}; pass --site", dir.display(), sites.join(", "))]
    WhichSite { dir: PathBuf, sites: Vec<String> },
    #[error("{} has lg_k {found}, but other files have lg_k {expected}: sketches of different lg_k cannot be merged", path.display())]
    LgKMismatch {
        path: PathBuf,
        found: String,
        expected: u8,
    },
    #[error("{} was written with schema version {found}; this footfall reads up to {SCHEMA_VERSION}: upgrade footfall", path.display())]
    NewerSchema { path: PathBuf, found: String },
    #[error("no countries data in {}: footfall writes the countries table only when serve runs with --geoip-db", dir.display())]
    NoCountries { dir: PathBuf },
    #[error("--goal {goal:?}: {why}")]
    BadGoal { goal: String, why: String },
    #[error("--by goal lists the goals you name: add --goal NAME (an event) or --goal page:/path")]
    NoGoals,
    #[error("--by prop:KEY lists one event's values of KEY: add --event NAME")]
    PropNeedsEvent,
    #[error("{} is not a footfall file: {what}", path.display())]
    NotOurs { path: PathBuf, what: String },
    #[error("reading {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error(transparent)]
    Store(#[from] footfall_storage::Error),
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn known_hint(known: &[String]) -> String {
    if known.is_empty() {
        " (no site has data there yet)".to_owned()
    } else {
        format!(" (sites with data: {})", known.join(", "))
    }
}
