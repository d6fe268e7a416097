//! Plausible's Stats API v2 (`POST /api/v2/query`) over footfall's report
//! engine: a query is read into a [`footfall_report::Query`], run, and the
//! report's rows written back in Plausible's shape. The same engine as
//! `footfall report`, so the two always agree; what the aggregates cannot
//! answer is refused with a sentence saying why, never a number made up.

use chrono::{Datelike, Days, Months, NaiveDate};
use footfall_report::{Dimension, Metric, Query, Report, Store};
use serde_json::{Value, json};

/// A refusal: the sentence goes to the client as `{"error": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub error: String,
}

fn bad(error: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        error: error.into(),
    }
}

/// The dimensions the API knows, by Plausible's names, and the report's
/// dimension each is read from.
const DIMENSIONS: &[(&str, Dimension)] = &[
    ("event:page", Dimension::Page),
    ("visit:entry_page", Dimension::EntryPage),
    ("visit:exit_page", Dimension::ExitPage),
    ("visit:source", Dimension::Referrer),
    ("visit:referrer", Dimension::Referrer),
    ("visit:utm_source", Dimension::UtmSource),
    ("visit:utm_medium", Dimension::UtmMedium),
    ("visit:utm_campaign", Dimension::UtmCampaign),
    ("visit:browser", Dimension::Browser),
    ("visit:os", Dimension::Os),
    ("visit:device", Dimension::Device),
    ("visit:country", Dimension::Country),
    ("event:name", Dimension::Event),
    ("event:goal", Dimension::Goal),
    ("time:hour", Dimension::Hour),
    ("time:day", Dimension::Day),
    ("time", Dimension::Day),
];

/// Answers one v2 query over the files in `store`, `today` being the
/// current UTC day.
pub fn v2(
    store: &Store,
    live: Option<std::sync::Arc<dyn footfall_report::Live>>,
    body: &[u8],
    today: NaiveDate,
) -> Result<Value, Refusal> {
    let q: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let obj = q
        .as_object()
        .ok_or_else(|| bad("the body must be a JSON object"))?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "site_id"
                | "metrics"
                | "date_range"
                | "date"
                | "dimensions"
                | "filters"
                | "order_by"
                | "include"
                | "pagination"
        ) {
            return Err(bad(format!("unknown key {key:?}")));
        }
    }
    let site = obj
        .get("site_id")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("site_id is required: the site's domain, as the tracker sends it"))?;
    let metrics: Vec<&str> = obj
        .get("metrics")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("metrics is required: a list such as [\"visitors\", \"pageviews\"]"))?
        .iter()
        .map(|m| m.as_str().ok_or_else(|| bad("each metric is a string")))
        .collect::<Result<_, _>>()?;
    let (from, to) = date_range(obj.get("date_range"), today)?;
    let dimensions: Vec<&str> = match obj.get("dimensions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(d)) => d
            .iter()
            .map(|d| d.as_str().ok_or_else(|| bad("each dimension is a string")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("dimensions is a list")),
    };
    if obj
        .get("filters")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
    {
        return Err(bad(
            "filters are not answered yet: footfall's dashboard API answers unfiltered \
             totals, time series and breakdowns in this version",
        ));
    }
    let by = match dimensions.as_slice() {
        [] => None,
        [one] => Some(dimension(one)?),
        _ => {
            return Err(bad(
                "one dimension at a time: the aggregates hold each table's dimensions \
                 apart, so a breakdown by two (or by time and another) cannot be told \
                 from them",
            ));
        }
    };
    let wanted: Vec<Wanted> = metrics
        .iter()
        .map(|m| wanted(m, by))
        .collect::<Result<_, _>>()?;

    let mut query = Query {
        store: store.clone(),
        site: site.clone(),
        from,
        to,
        by,
        limit: None,
        min_visitors: 0,
        event: None,
        prop: None,
        goals: Vec::new(),
        live,
    };
    if by == Some(Dimension::Goal) {
        // Every custom event is a goal: Plausible's goals are set up in
        // its site settings, footfall's are every event name it counted.
        let events = run(&Query {
            by: Some(Dimension::Event),
            ..query.clone()
        })?;
        query.goals = events
            .rows
            .iter()
            .filter_map(|r| r.key.as_deref())
            .filter(|name| *name != footfall_report::OVERFLOW)
            .map(|name| footfall_report::Goal::Event(name.to_owned()))
            .collect();
        if query.goals.is_empty() {
            // No custom event in the range: no goal to list, and no error.
            return Ok(answer(&site, &metrics, from, to, &dimensions, Vec::new()));
        }
    }
    let report = run(&query)?;
    let mut rows: Vec<(Value, Vec<Value>)> = Vec::with_capacity(report.rows.len());
    for row in &report.rows {
        let values = wanted
            .iter()
            .map(|w| w.value(&report, row))
            .collect::<Result<Vec<_>, _>>()?;
        let key = match by {
            None => Value::Null,
            Some(Dimension::Hour) => json!(row.key.as_deref().map(hour_label)),
            Some(_) => json!(row.key),
        };
        rows.push((key, values));
    }
    order(&mut rows, obj.get("order_by"), &metrics, &dimensions, by)?;
    let (limit, offset) = pagination(obj.get("pagination"))?;
    let results: Vec<Value> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(key, metrics)| match by {
            None => json!({"metrics": metrics, "dimensions": []}),
            Some(_) => json!({"metrics": metrics, "dimensions": [key]}),
        })
        .collect();
    let results = if by.is_none() && results.is_empty() {
        // A quiet range of a known site: zeros, as Plausible answers.
        vec![
            json!({"metrics": wanted.iter().map(Wanted::zero).collect::<Vec<_>>(), "dimensions": []}),
        ]
    } else {
        results
    };
    Ok(answer(&site, &metrics, from, to, &dimensions, results))
}

/// Plausible's answer: the results, and the query as understood.
fn answer(
    site: &str,
    metrics: &[&str],
    from: NaiveDate,
    to: NaiveDate,
    dimensions: &[&str],
    results: Vec<Value>,
) -> Value {
    json!({
        "results": results,
        "meta": {},
        "query": {
            "site_id": site,
            "metrics": metrics,
            "date_range": [format!("{from}T00:00:00Z"), format!("{to}T23:59:59Z")],
            "dimensions": dimensions,
            "filters": [],
        },
    })
}

fn run(q: &Query) -> Result<Report, Refusal> {
    footfall_report::run(q).map_err(|e| match e {
        footfall_report::Error::Store(e) => Refusal {
            status: 503,
            error: format!("cannot read the data: {e}"),
        },
        footfall_report::Error::NoCountries { .. } => bad(
            "no countries data: footfall writes the countries table only when serve runs \
             with --geoip-db",
        ),
        // The command line's sentences name the data dir; a browser is
        // told "the data" instead.
        e => bad(e.to_string().replace(&q.store.to_string(), "the data")),
    })
}

fn dimension(name: &str) -> Result<Dimension, Refusal> {
    if name.starts_with("event:props:") {
        return Err(bad(format!(
            "{name}: a property's values are kept per event; this version answers \
             them with footfall report --by prop:KEY --event NAME"
        )));
    }
    DIMENSIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, d)| d)
        .ok_or_else(|| {
            bad(format!(
                "unknown dimension {name:?}; footfall answers {}",
                DIMENSIONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Where a metric's value comes from in a report's row.
#[derive(Debug, Clone, Copy)]
enum Wanted {
    Visitors,
    /// The row's count (views, entries or events).
    Count,
    /// One of the report's metrics.
    Metric(Metric),
}

impl Wanted {
    fn value(self, report: &Report, row: &footfall_report::Row) -> Result<Value, Refusal> {
        Ok(match self {
            Wanted::Visitors => json!(row.visitors),
            Wanted::Count => json!(row.count),
            Wanted::Metric(m) => {
                let i =
                    report.metrics.iter().position(|&x| x == m).ok_or_else(|| {
                        bad(format!("{} is not known for this breakdown", m.name()))
                    })?;
                match row.metrics[i] {
                    // Counts and seconds are whole numbers, as Plausible
                    // writes them; rates keep their decimals.
                    Some(v) if m.decimals() == 0 => json!(v.round() as i64),
                    Some(v) => json!(v),
                    // No visit data in the range: Plausible's zero.
                    None => json!(0),
                }
            }
        })
    }

    fn zero(&self) -> Value {
        json!(0)
    }
}

/// Which value of a report answers `metric` for a breakdown by `by`, or why
/// none can.
fn wanted(metric: &str, by: Option<Dimension>) -> Result<Wanted, Refusal> {
    use Dimension as D;
    let events = matches!(by, Some(D::Event | D::Goal));
    let views = matches!(by, None | Some(D::Page | D::Hour | D::Day));
    let visit_numbers = matches!(
        by,
        None | Some(
            D::Hour
                | D::Day
                | D::EntryPage
                | D::Referrer
                | D::UtmSource
                | D::UtmMedium
                | D::UtmCampaign
        )
    );
    let refuse = |why: &str| {
        Err(bad(format!(
            "{metric} cannot be told from the aggregates for {}: {why}",
            by.map_or("site totals".to_owned(), |d| format!(
                "a breakdown by {}",
                d.name()
            ))
        )))
    };
    match metric {
        "visitors" if by == Some(D::ExitPage) => refuse(
            "the exit pages' sketches are of the pages' viewers, not of those who left; ask for visits",
        ),
        "visitors" => Ok(Wanted::Visitors),
        "pageviews" if views => Ok(Wanted::Count),
        "pageviews" => {
            refuse("views are counted per page and per hour, not per source, device or country")
        }
        "events" if events => Ok(Wanted::Count),
        "events" => refuse("custom events are counted by event:name and event:goal"),
        // An entry page's count is the visits that began there; an exit
        // page's, the visits that ended there.
        "visits" if matches!(by, Some(D::ExitPage | D::EntryPage)) => Ok(Wanted::Count),
        "visits" | "views_per_visit" | "bounce_rate" | "visit_duration" if visit_numbers => {
            let m = match metric {
                "visits" => Metric::Visits,
                "views_per_visit" => Metric::ViewsPerVisit,
                "bounce_rate" => Metric::BounceRate,
                _ => Metric::VisitDuration,
            };
            // Entry pages have no views per visit column in a report.
            if by == Some(D::EntryPage) && !matches!(m, Metric::BounceRate | Metric::VisitDuration)
            {
                return refuse("entry pages report their visits, bounce rate and visit duration");
            }
            if matches!(
                by,
                Some(D::Referrer | D::UtmSource | D::UtmMedium | D::UtmCampaign)
            ) && !matches!(
                m,
                Metric::Visits | Metric::BounceRate | Metric::VisitDuration
            ) {
                return refuse("sources report their visits, bounce rate and visit duration");
            }
            Ok(Wanted::Metric(m))
        }
        "visits" | "views_per_visit" | "bounce_rate" | "visit_duration" => refuse(
            "visits are counted by the page and source they began on, not by device, country or event",
        ),
        "exit_rate" if matches!(by, Some(D::Page | D::ExitPage)) => {
            Ok(Wanted::Metric(Metric::ExitRate))
        }
        "time_on_page" if by == Some(D::Page) => Ok(Wanted::Metric(Metric::TimeOnPage)),
        "scroll_depth" if by == Some(D::Page) => Ok(Wanted::Metric(Metric::ScrollDepth)),
        "exit_rate" | "time_on_page" | "scroll_depth" => {
            refuse("it is counted per page: break down by event:page")
        }
        "conversion_rate" if by == Some(D::Goal) => Ok(Wanted::Metric(Metric::ConversionRate)),
        "conversion_rate" => refuse("break down by event:goal"),
        "percentage" => refuse("this version does not compute shares"),
        other => Err(bad(format!(
            "unknown metric {other:?}; footfall answers visitors, visits, pageviews, \
             views_per_visit, bounce_rate, visit_duration, events, conversion_rate, \
             exit_rate, time_on_page and scroll_depth where the aggregates hold them"
        ))),
    }
}

/// `"2026-12-08T14:00:00Z"` as Plausible writes an hour: `"2026-12-08 14:00:00"`.
fn hour_label(key: &str) -> String {
    key.trim_end_matches('Z').replacen('T', " ", 1)
}

/// The inclusive UTC days of a named period ending on `end` (v1's `date`).
pub(crate) fn range_of(period: &str, end: NaiveDate) -> Result<(NaiveDate, NaiveDate), Refusal> {
    date_range(Some(&json!(period)), end)
}

/// The inclusive UTC days of a `date_range`.
fn date_range(range: Option<&Value>, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), Refusal> {
    let month_start = |d: NaiveDate| d.with_day(1).unwrap_or(d);
    let months_back = |n: u32| {
        month_start(today)
            .checked_sub_months(Months::new(n))
            .unwrap_or(today)
    };
    let days_back = |n: u64| today.checked_sub_days(Days::new(n)).unwrap_or(today);
    match range {
        Some(Value::String(s)) => Ok(match s.as_str() {
            "day" => (today, today),
            "7d" => (days_back(6), today),
            "28d" => (days_back(27), today),
            "30d" => (days_back(29), today),
            "91d" => (days_back(90), today),
            "month" => (month_start(today), today),
            "6mo" => (months_back(5), today),
            "12mo" => (months_back(11), today),
            "year" => (today.with_ordinal(1).unwrap_or(today), today),
            other => {
                return Err(bad(format!(
                    "date_range {other:?}: use day, 7d, 28d, 30d, 91d, month, 6mo, 12mo, year \
                     or [\"YYYY-MM-DD\", \"YYYY-MM-DD\"]"
                )));
            }
        }),
        Some(Value::Array(pair)) if pair.len() == 2 => {
            let day = |v: &Value| {
                v.as_str()
                    .and_then(|s| s.get(..10))
                    .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                    .ok_or_else(|| bad(format!("date_range: {v} is not a date (YYYY-MM-DD)")))
            };
            let (from, to) = (day(&pair[0])?, day(&pair[1])?);
            if from > to {
                return Err(bad(format!("date_range: {from} is after {to}")));
            }
            Ok((from, to))
        }
        _ => Err(bad(
            "date_range is required: day, 7d, 30d, month, 12mo… or [\"YYYY-MM-DD\", \"YYYY-MM-DD\"]",
        )),
    }
}

/// Sorts rows as `order_by` asks (Plausible's default: the first metric,
/// descending; time series by time).
fn order(
    rows: &mut [(Value, Vec<Value>)],
    order_by: Option<&Value>,
    metrics: &[&str],
    dimensions: &[&str],
    by: Option<Dimension>,
) -> Result<(), Refusal> {
    let pairs: Vec<(String, bool)> = match order_by {
        None | Some(Value::Null) => match by {
            Some(Dimension::Hour | Dimension::Day) => vec![(dimensions[0].to_owned(), false)],
            _ => vec![(metrics[0].to_owned(), true)],
        },
        Some(Value::Array(list)) => list
            .iter()
            .map(|p| match p.as_array().map(Vec::as_slice) {
                Some([Value::String(field), Value::String(dir)])
                    if dir == "asc" || dir == "desc" =>
                {
                    Ok((field.clone(), dir == "desc"))
                }
                _ => Err(bad("order_by is a list of [field, \"asc\" | \"desc\"]")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("order_by is a list of [field, \"asc\" | \"desc\"]")),
    };
    let mut keys = Vec::new();
    for (field, desc) in pairs {
        let index = match metrics.iter().position(|m| *m == field) {
            Some(i) => Some(i),
            None if dimensions.contains(&field.as_str()) => None,
            None => {
                return Err(bad(format!(
                    "order_by {field:?} is neither a metric nor a dimension of the query"
                )));
            }
        };
        keys.push((index, desc));
    }
    let cmp = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.as_str().unwrap_or("").cmp(b.as_str().unwrap_or("")),
    };
    rows.sort_by(|a, b| {
        for &(index, desc) in &keys {
            let (x, y) = match index {
                Some(i) => (&a.1[i], &b.1[i]),
                None => (&a.0, &b.0),
            };
            let o = cmp(x, y);
            let o = if desc { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    Ok(())
}

/// `pagination`'s limit (default 10,000, as Plausible) and offset.
fn pagination(p: Option<&Value>) -> Result<(usize, usize), Refusal> {
    let Some(p) = p.filter(|p| !p.is_null()) else {
        return Ok((10_000, 0));
    };
    let field = |name: &str, default: u64| match p.get(name) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad(format!("pagination.{name} is a whole number"))),
    };
    let limit = field("limit", 10_000)?;
    if limit == 0 || limit > 10_000 {
        return Err(bad("pagination.limit is between 1 and 10000"));
    }
    Ok((limit as usize, field("offset", 0)? as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn date_ranges_are_utc_days_ending_today() {
        let today = day("2026-12-08");
        let r = |v: Value| date_range(Some(&v), today).unwrap();
        assert_eq!(r(json!("day")), (today, today));
        assert_eq!(r(json!("7d")), (day("2026-12-02"), today));
        assert_eq!(r(json!("30d")), (day("2026-11-09"), today));
        assert_eq!(r(json!("month")), (day("2026-12-01"), today));
        assert_eq!(r(json!("12mo")), (day("2026-01-01"), today));
        assert_eq!(r(json!("year")), (day("2026-01-01"), today));
        assert_eq!(
            r(json!(["2026-11-01", "2026-11-30T23:59:59Z"])),
            (day("2026-11-01"), day("2026-11-30"))
        );
        for wrong in [
            json!("fortnight"),
            json!(["2026-12-09", "2026-12-01"]),
            json!(["x", "y"]),
            json!(3),
        ] {
            assert_eq!(
                date_range(Some(&wrong), today).unwrap_err().status,
                400,
                "{wrong}"
            );
        }
    }

    #[test]
    fn what_the_aggregates_cannot_tell_is_refused_with_a_reason() {
        let store = Store::in_memory();
        let today = day("2026-12-08");
        let ask = |q: Value| v2(&store, None, q.to_string().as_bytes(), today);
        let base = json!({"site_id": "example.com", "metrics": ["visitors"], "date_range": "day"});
        let with = |k: &str, v: Value| {
            let mut q = base.clone();
            q[k] = v;
            q
        };
        let breakdown = |metric: &str, dimension: &str| {
            let mut q = with("metrics", json!([metric]));
            q["dimensions"] = json!([dimension]);
            q
        };
        for (q, says) in [
            (
                with("dimensions", json!(["event:page", "visit:source"])),
                "one dimension at a time",
            ),
            (
                with("dimensions", json!(["visit:city"])),
                "unknown dimension",
            ),
            (
                breakdown("pageviews", "visit:country"),
                "pageviews cannot be told",
            ),
            (
                breakdown("bounce_rate", "visit:browser"),
                "visits are counted by the page and source",
            ),
            (
                with("filters", json!([["is", "event:page", ["/"]]])),
                "filters",
            ),
            (with("metrics", json!(["revenue"])), "unknown metric"),
            (with("color", json!(1)), "unknown key"),
        ] {
            let e = ask(q.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{q}");
            assert!(e.error.contains(says), "{q}: {}", e.error);
        }
        assert!(
            v2(&store, None, b"{", today)
                .unwrap_err()
                .error
                .contains("not JSON")
        );
        assert!(
            ask(json!({"metrics": ["visitors"], "date_range": "day"}))
                .unwrap_err()
                .error
                .contains("site_id")
        );
    }

    #[test]
    fn rows_are_ordered_and_paged_as_asked() {
        let mut rows = vec![
            (json!("/a"), vec![json!(5), json!(1)]),
            (json!("/b"), vec![json!(9), json!(3)]),
            (json!("/c"), vec![json!(5), json!(7)]),
        ];
        order(
            &mut rows,
            Some(&json!([["visitors", "desc"], ["pageviews", "asc"]])),
            &["visitors", "pageviews"],
            &["event:page"],
            Some(Dimension::Page),
        )
        .unwrap();
        let keys: Vec<&str> = rows.iter().map(|r| r.0.as_str().unwrap()).collect();
        assert_eq!(keys, ["/b", "/a", "/c"]);
        order(
            &mut rows,
            Some(&json!([["event:page", "desc"]])),
            &["visitors"],
            &["event:page"],
            Some(Dimension::Page),
        )
        .unwrap();
        assert_eq!(rows[0].0, json!("/c"));
        assert!(
            order(
                &mut rows,
                Some(&json!([["x", "desc"]])),
                &["visitors"],
                &[],
                None
            )
            .is_err()
        );
        assert_eq!(
            pagination(Some(&json!({"limit": 11, "offset": 2}))).unwrap(),
            (11, 2)
        );
        assert_eq!(pagination(None).unwrap(), (10_000, 0));
        assert!(pagination(Some(&json!({"limit": 0}))).is_err());
        assert_eq!(hour_label("2026-12-08T14:00:00Z"), "2026-12-08 14:00:00");
    }
}
