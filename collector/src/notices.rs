//! Telling the owner why a site's beacons are not counted.
//!
//! A tag with the wrong `data-domain`, or a site missing from `--site`, is
//! answered 202 with `X-Footfall-Dropped`, which nobody reads; `/metrics`
//! counts it by reason but not by site. So the first such beacon of each
//! (site, reason) in an hour is logged at info, with the site id and the
//! reason only: never the page, the address or the User-Agent.
//!
//! Sites are whatever a beacon says, so the notices of an hour are bounded:
//! past [`MAX_NOTICES_PER_HOUR`] one line says so and the rest of the hour
//! stays quiet.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::error::DropReason;

/// Distinct (site, reason) pairs logged in one hour at most.
pub const MAX_NOTICES_PER_HOUR: usize = 100;

/// What to log for a refused site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The first of its (site, reason) this hour: log it.
    First,
    /// The first past the hour's bound: say that more are not logged.
    TooMany,
    /// Logged already, or past the bound.
    Quiet,
}

/// The (site, reason) pairs told this hour.
#[derive(Debug, Default)]
pub struct DropNotices {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    hour: i64,
    /// The sites told of this hour, by reason: looked up by `&str`, so a
    /// site already told costs no allocation.
    told: HashMap<DropReason, HashSet<Box<str>>>,
    /// How many (site, reason) pairs `told` holds.
    count: usize,
    too_many: bool,
}

impl DropNotices {
    /// Whether the refusal of `site` for `reason` at `now` (Unix seconds)
    /// should be logged.
    pub fn note(&self, site: &str, reason: DropReason, now: i64) -> Notice {
        let hour = now.div_euclid(3600);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.hour != hour {
            *s = State {
                hour,
                ..State::default()
            };
        }
        if s.told
            .get(&reason)
            .is_some_and(|sites| sites.contains(site))
        {
            return Notice::Quiet;
        }
        if s.count >= MAX_NOTICES_PER_HOUR {
            return if std::mem::replace(&mut s.too_many, true) {
                Notice::Quiet
            } else {
                Notice::TooMany
            };
        }
        s.told.entry(reason).or_default().insert(Box::from(site));
        s.count += 1;
        Notice::First
    }

    /// Notes a refusal and logs it if it is news.
    pub fn tell(&self, site: &str, reason: DropReason, now: i64) {
        match self.note(site, reason, now) {
            Notice::First => tracing::info!(
                site,
                reason = reason.as_str(),
                why = why(reason),
                "beacons for this site are not counted (said once an hour per site and reason)"
            ),
            Notice::TooMany => tracing::info!(
                "beacons for more than {MAX_NOTICES_PER_HOUR} sites were not counted this hour; \
                 the others are not logged (see footfall_beacons_dropped_total in /metrics)"
            ),
            Notice::Quiet => {}
        }
    }
}

/// What the owner can do about it.
fn why(reason: DropReason) -> &'static str {
    match reason {
        DropReason::UnknownSite => "the site is not on the --site allow-list",
        DropReason::UrlNotOnSite => {
            "the page's host is neither the site nor a subdomain of it: \
             does data-domain match the address the page is opened at?"
        }
        _ => "see X-Footfall-Dropped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 1_764_028_800;

    #[test]
    fn once_per_site_reason_and_hour() {
        let n = DropNotices::default();
        let url = DropReason::UrlNotOnSite;
        assert_eq!(n.note("example.com", url, HOUR), Notice::First);
        assert_eq!(n.note("example.com", url, HOUR + 3599), Notice::Quiet);
        assert_eq!(
            n.note("example.com", DropReason::UnknownSite, HOUR + 1),
            Notice::First
        );
        assert_eq!(n.note("other.org", url, HOUR + 2), Notice::First);
        // The next hour tells again.
        assert_eq!(n.note("example.com", url, HOUR + 3600), Notice::First);
    }

    #[test]
    fn a_flood_of_invented_sites_is_bounded() {
        let n = DropNotices::default();
        let site = |i: usize| format!("s{i}.example");
        for i in 0..MAX_NOTICES_PER_HOUR {
            assert_eq!(
                n.note(&site(i), DropReason::UnknownSite, HOUR),
                Notice::First
            );
        }
        let past = MAX_NOTICES_PER_HOUR;
        assert_eq!(
            n.note(&site(past), DropReason::UnknownSite, HOUR),
            Notice::TooMany
        );
        for i in past..past + 1000 {
            assert_eq!(
                n.note(&site(i), DropReason::UnknownSite, HOUR),
                Notice::Quiet
            );
        }
        assert_eq!(
            n.note("new.example", DropReason::UnknownSite, HOUR + 3600),
            Notice::First
        );
    }
}
