//! Custom events, their allowed properties and goals: reports over the
//! `events` and `event_props` tables (and `pages`, for page goals), each
//! row with its conversion rate against the site's visitors in the range.
//!
//! Goals are defined when a report is asked for, not when data is
//! collected, so a goal added today counts past data too.

use footfall_schemas::tables::{DEFAULT_LG_K, OVERFLOW, Table};

use crate::merge::{
    Acc, Filter, Test, check_known_site, check_lg_k, check_range, merge_table, settled_estimate,
};
use crate::{Dimension, Error, Metric, Query, Report, Row, Stats};

/// What counts as a conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// A custom event of this name.
    Event(String),
    /// A view of a page matching the pattern.
    Page(PagePattern),
}

impl Goal {
    /// Reads `NAME` (an event), `page:/path` or `page:/blog/*` (a page
    /// goal, `*` within a path segment, `**` across segments).
    pub fn parse(text: &str) -> Result<Goal, Error> {
        let bad = |why: &str| Error::BadGoal {
            goal: text.to_owned(),
            why: why.to_owned(),
        };
        if let Some(pattern) = text.strip_prefix("page:") {
            if !pattern.starts_with('/') {
                return Err(bad("a page goal's pattern starts with / (page:/pricing)"));
            }
            return Ok(Goal::Page(PagePattern(pattern.to_owned())));
        }
        if text.starts_with("scroll:") {
            return Err(bad(
                "scroll-depth goals are not supported: footfall keeps each page's summed \
                 scroll depth, not each visit's, so it cannot count the visitors past a threshold",
            ));
        }
        if text.trim().is_empty() {
            return Err(bad("name an event, or page:/path"));
        }
        Ok(Goal::Event(text.to_owned()))
    }

    /// How the goal is shown: the event's name, or `page:` and the pattern.
    pub fn name(&self) -> String {
        match self {
            Goal::Event(name) => name.clone(),
            Goal::Page(p) => format!("page:{}", p.0),
        }
    }
}

/// A page pattern as Plausible's page goals write it: `*` is any run of
/// characters but `/`, `**` any run at all; everything else is itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePattern(String);

impl PagePattern {
    /// Whether `page` matches the whole pattern.
    pub fn matches(&self, page: &str) -> bool {
        glob(self.0.as_bytes(), page.as_bytes())
    }
}

/// Matches `text` against `pattern` (see [`PagePattern`]). Backtracks only
/// at stars, and a page goal has one or two: the work is small.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        [b'*', rest @ ..] => {
            let segment = text.iter().position(|&b| b == b'/').unwrap_or(text.len());
            (0..=segment).any(|i| glob(rest, &text[i..]))
        }
        [c, rest @ ..] => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// A report by event, by one event's property values, or by goal.
pub(crate) fn run(q: &Query) -> Result<Report, Error> {
    check_range(q)?;
    let by = q.by.expect("only called for event, prop and goal reports");
    // The site's visitors in the range: the denominator of every rate.
    let totals = Query {
        by: None,
        ..q.clone()
    };
    let site = merge_table(&totals, Table::Pages, &[])?;
    let mut lg_k = site.lg_k.clone();
    let mut stats = site.stats;
    if site.groups.is_empty() {
        check_known_site(q)?;
    }
    let add = |merged: &crate::merge::Merged,
               stats: &mut Stats,
               lg_k: &mut Option<(u8, std::path::PathBuf)>|
     -> Result<(), Error> {
        stats.files += merged.stats.files;
        stats.rollups += merged.stats.rollups;
        stats.rows += merged.stats.rows;
        check_lg_k(lg_k, merged.lg_k.clone())
    };
    // (key, count, union) of each row, before estimates.
    let mut groups: Vec<(Option<String>, Acc)> = Vec::new();
    let key_name = match by {
        Dimension::Event => {
            let merged = merge_table(q, Table::Events, &[])?;
            add(&merged, &mut stats, &mut lg_k)?;
            groups.extend(merged.groups);
            "event".to_owned()
        }
        Dimension::Prop => {
            let (Some(key), Some(event)) = (&q.prop, &q.event) else {
                return Err(Error::PropNeedsEvent);
            };
            let filters = [
                Filter {
                    column: "name",
                    test: Test::Is(event),
                },
                Filter {
                    column: "key",
                    test: Test::Is(key),
                },
            ];
            let merged = merge_table(q, Table::EventProps, &filters)?;
            add(&merged, &mut stats, &mut lg_k)?;
            groups.extend(merged.groups);
            format!("prop:{key}")
        }
        Dimension::Goal => {
            if q.goals.is_empty() {
                return Err(Error::NoGoals);
            }
            for goal in &q.goals {
                let (table, filter) = match goal {
                    Goal::Event(name) => (
                        Table::Events,
                        Filter {
                            column: "name",
                            test: Test::Is(name),
                        },
                    ),
                    Goal::Page(pattern) => (
                        Table::Pages,
                        Filter {
                            column: "page",
                            test: Test::Page(pattern),
                        },
                    ),
                };
                let merged = merge_table(&totals, table, &[filter])?;
                add(&merged, &mut stats, &mut lg_k)?;
                // One group (the site) or none: nothing matched.
                let acc = match merged.groups.into_values().next() {
                    Some(acc) => acc,
                    None => Acc::empty(table, lg_k_of(&lg_k), &q.store)?,
                };
                groups.push((Some(goal.name()), acc));
            }
            "goal".to_owned()
        }
        _ => unreachable!("only called for event, prop and goal reports"),
    };
    let lg_k = lg_k_of(&lg_k);
    let estimate = |acc: &Acc| settled_estimate(&acc.union, lg_k);
    let site_visitors = site.groups.values().next().map_or(0.0, estimate);
    // At most 100: a visitor-day can send an event without a view, and
    // both numbers are estimates.
    let rate = |visitors: f64| {
        (site_visitors > 0.0)
            .then(|| ((visitors * 1000.0 / site_visitors).round() / 10.0).min(100.0))
    };
    let min = q.min_visitors;
    let mut rows = Vec::with_capacity(groups.len());
    let mut hidden: Option<Acc> = None;
    let mut suppressed = 0;
    for (key, acc) in groups {
        let visitors = estimate(&acc);
        let overflow = key.as_deref() == Some(OVERFLOW);
        if min > 0 && (overflow || (visitors.round() as u64) < min) {
            suppressed += usize::from(!overflow);
            // Goals count different things (events, views): a hidden one
            // is left out, never summed with another into `(other)`.
            if by == Dimension::Goal {
                continue;
            }
            match &mut hidden {
                None => hidden = Some(acc),
                Some(h) => h.absorb(acc),
            }
            continue;
        }
        rows.push(Row {
            key,
            count: acc.counts[0],
            visitors: visitors.round() as u64,
            metrics: vec![rate(visitors)],
        });
    }
    if let Some(h) = hidden {
        let visitors = estimate(&h);
        if visitors.round() as u64 >= min {
            rows.push(Row {
                key: Some(OVERFLOW.to_owned()),
                count: h.counts[0],
                visitors: visitors.round() as u64,
                metrics: vec![rate(visitors)],
            });
        }
    }
    if by != Dimension::Goal {
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    }
    if let Some(n) = q.limit {
        rows.truncate(n);
    }
    Ok(Report {
        key_name,
        count_name: "events",
        null_label: "(none)",
        shows_visitors: true,
        metrics: &[Metric::ConversionRate],
        rows,
        spans_windows: q.from != q.to,
        suppressed,
        min_visitors: min,
        stats,
    })
}

fn lg_k_of(seen: &Option<(u8, std::path::PathBuf)>) -> u8 {
    seen.as_ref().map_or(DEFAULT_LG_K, |(k, _)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_patterns_match_as_plausibles_page_goals() {
        let p = |s: &str| PagePattern(s.to_owned());
        let cases = [
            ("/pricing", "/pricing", true),
            ("/pricing", "/pricing/", false),
            ("/blog/*", "/blog/a", true),
            ("/blog/*", "/blog/", true),
            ("/blog/*", "/blog/a/b", false),
            ("/blog/**", "/blog/a/b", true),
            ("/blog/**", "/blog", false),
            ("/*/checkout", "/shop/checkout", true),
            ("/*/checkout", "/a/b/checkout", false),
            ("/**/checkout", "/a/b/checkout", true),
            ("/docs*", "/docs-v2", true),
        ];
        for (pattern, page, want) in cases {
            assert_eq!(p(pattern).matches(page), want, "{pattern} ~ {page}");
        }
    }

    #[test]
    fn goals_read_as_events_pages_or_a_clear_error() {
        assert_eq!(Goal::parse("Signup").unwrap(), Goal::Event("Signup".into()));
        assert_eq!(Goal::parse("page:/blog/*").unwrap().name(), "page:/blog/*");
        for (bad, why) in [
            ("page:blog", "starts with /"),
            ("scroll:/a>=75", "not supported"),
            (" ", "name an event"),
        ] {
            let e = Goal::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")) && e.contains(why), "{e}");
        }
    }
}
