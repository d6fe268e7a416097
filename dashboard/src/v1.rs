//! Plausible's Stats API v1, which most existing clients call (GET with a
//! query string), answered by translating each request into a v2 query
//! ([`crate::query::v2`]) and its answer back into v1's shapes. One
//! engine, so v1, v2, the dashboard and `footfall report` agree.

use chrono::NaiveDate;
use footfall_report::Store;
use serde_json::{Map, Value, json};

use crate::query::{Refusal, v2};

/// The v1 endpoints, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Aggregate,
    Timeseries,
    Breakdown,
}

impl Endpoint {
    pub fn of(path: &str) -> Option<Endpoint> {
        match path {
            "/api/v1/stats/aggregate" => Some(Endpoint::Aggregate),
            "/api/v1/stats/timeseries" => Some(Endpoint::Timeseries),
            "/api/v1/stats/breakdown" => Some(Endpoint::Breakdown),
            _ => None,
        }
    }
}

fn bad(error: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        error: error.into(),
    }
}

/// Answers one v1 request with query string `query`.
pub fn answer(
    endpoint: Endpoint,
    store: &Store,
    live: Option<std::sync::Arc<dyn footfall_report::Live>>,
    query: &str,
    today: NaiveDate,
) -> Result<Value, Refusal> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let site = get("site_id").ok_or_else(|| bad("site_id is required"))?;
    let metrics: Vec<String> = get("metrics")
        .unwrap_or("visitors")
        .split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    let period = get("period").unwrap_or("30d");
    let date_range = match period {
        "custom" => {
            let date =
                get("date").ok_or_else(|| bad("period=custom needs date=YYYY-MM-DD,YYYY-MM-DD"))?;
            let (from, to) = date
                .split_once(',')
                .ok_or_else(|| bad("period=custom needs date=YYYY-MM-DD,YYYY-MM-DD"))?;
            json!([from.trim(), to.trim()])
        }
        // A period ending on another day than today.
        p => match get("date") {
            None => json!(p),
            Some(date) => {
                let end = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                    .map_err(|_| bad(format!("date {date:?} is not YYYY-MM-DD")))?;
                let (from, to) = crate::query::range_of(p, end)?;
                json!([from.to_string(), to.to_string()])
            }
        },
    };
    let mut q = Map::new();
    q.insert("site_id".into(), json!(site));
    q.insert("metrics".into(), json!(metrics));
    q.insert("date_range".into(), date_range);
    if let Some(filters) = get("filters").filter(|f| !f.trim().is_empty()) {
        // Answered by v2's rule for filters, whatever it is.
        q.insert("filters".into(), json!([["is", "v1", [filters]]]));
    }
    let (key, limit, offset) = match endpoint {
        Endpoint::Aggregate => (None, None, 0),
        Endpoint::Timeseries => {
            let interval = match get("interval") {
                None if period == "day" => "time:hour",
                None | Some("date") => "time:day",
                Some("hour") => "time:hour",
                Some(other) => {
                    return Err(bad(format!(
                        "interval {other:?}: footfall answers date and hour"
                    )));
                }
            };
            q.insert("dimensions".into(), json!([interval]));
            (Some("date".to_owned()), None, 0)
        }
        Endpoint::Breakdown => {
            let property = get("property").ok_or_else(|| bad("property is required"))?;
            q.insert("dimensions".into(), json!([property]));
            let limit: usize = get("limit")
                .map(|l| l.parse().map_err(|_| bad("limit is a whole number")))
                .transpose()?
                .unwrap_or(100);
            let page: usize = get("page")
                .map(|p| p.parse().map_err(|_| bad("page is a whole number from 1")))
                .transpose()?
                .unwrap_or(1);
            if limit == 0 || limit > 1000 || page == 0 {
                return Err(bad("limit is 1 to 1000 and page from 1"));
            }
            let name = property.rsplit(':').next().unwrap_or(property).to_owned();
            (Some(name), Some(limit), (page - 1) * limit)
        }
    };
    if let Some(limit) = limit {
        q.insert(
            "pagination".into(),
            json!({"limit": limit, "offset": offset}),
        );
    }
    let answer = v2(store, live, Value::Object(q).to_string().as_bytes(), today)?;
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    let row = |r: &Value| -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(key) = &key {
            out.insert(key.clone(), r["dimensions"][0].clone());
        }
        for (m, v) in metrics
            .iter()
            .zip(r["metrics"].as_array().into_iter().flatten())
        {
            out.insert(m.clone(), v.clone());
        }
        out
    };
    Ok(match endpoint {
        Endpoint::Aggregate => {
            let first = results.first().cloned().unwrap_or(Value::Null);
            let mut out = Map::new();
            for (m, v) in metrics
                .iter()
                .zip(first["metrics"].as_array().into_iter().flatten())
            {
                out.insert(m.clone(), json!({"value": v}));
            }
            json!({"results": out})
        }
        Endpoint::Timeseries | Endpoint::Breakdown => {
            json!({"results": results.iter().map(row).collect::<Vec<_>>()})
        }
    })
}
