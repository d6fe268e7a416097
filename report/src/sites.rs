//! Which sites have data, and from which day to which.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use footfall_schemas::tables::Table;
use footfall_storage::Store;

use crate::Error;
use crate::scan::{files_in_range, partition_dates, read_sites};

/// A site with data, and the first and last UTC day it has views on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSpan {
    pub site: String,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

/// Every site with views in the `pages` table (every counted view is
/// there), sorted by name. A day is read from its rollup when one covers
/// it, as reports read it, and only the `site` column of each file.
pub fn sites(store: &Store) -> Result<Vec<SiteSpan>, Error> {
    let mut spans: BTreeMap<String, SiteSpan> = BTreeMap::new();
    for date in partition_dates(store, Table::Pages)? {
        let (files, _) = files_in_range(store, Table::Pages, date, date, true)?;
        for file in files {
            for site in read_sites(store, &file)? {
                spans
                    .entry(site.clone())
                    .and_modify(|s| s.last = date)
                    .or_insert(SiteSpan {
                        site,
                        first: date,
                        last: date,
                    });
            }
        }
    }
    Ok(spans.into_values().collect())
}

/// The one site with data, for a report that names none. The overflow
/// site `(other)` (sites past `--max-sites` in an hour) is nobody's site.
pub fn only_site(store: &Store) -> Result<String, Error> {
    let mut all = sites(store)?;
    all.retain(|s| s.site != footfall_schemas::tables::OVERFLOW);
    match all.len() {
        0 => Err(Error::NoSites {
            dir: store.to_string().into(),
        }),
        1 => Ok(all.remove(0).site),
        _ => Err(Error::WhichSite {
            dir: store.to_string().into(),
            sites: all.into_iter().map(|s| s.site).collect(),
        }),
    }
}
