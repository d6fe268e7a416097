//! footfall's analyst side: reads the Parquet files of a site and a date
//! range, sums the counts and unions the HLL sketches, and renders the
//! result as a table, CSV or JSON.
//!
//! # Layout
//! - [`Query`] and [`run`] (`merge`): read the range's files, merge rows by
//!   the requested dimension.
//! - `scan`: which files a range reads (a day's rollup or its hourly
//!   files), and each file's metadata checked.
//! - [`sites`]: the sites with data and their first and last day.
//! - [`render`]: the three output formats.
//! - [`Error`]: what a person can act on, each with the path or value.
//!
//! It reads files only through the documented layout and metadata, exactly
//! as DuckDB or Spark would: it knows nothing of the collector or the
//! aggregator's internals.

use chrono::NaiveDate;
use footfall_schemas::tables::Table;

mod error;
mod goals;
mod merge;
mod render;
mod scan;
mod sites;

pub use error::Error;
pub use footfall_schemas::tables::OVERFLOW;
pub use footfall_storage::Store;
pub use goals::{Goal, PagePattern};
pub use render::{Format, csv_field, render, render_sites};
pub use sites::{SiteSpan, only_site, sites};

/// Rows not in any file yet (inside `serve`: the open hour and whatever a
/// flush has not written), read as one more input, so answers are live.
///
/// `report` knows nothing of the aggregator: the binary implements this
/// over it.
pub trait Live: Send + Sync + std::fmt::Debug {
    /// Holds writes back while the view lives, so that the files listed
    /// meanwhile and the view's rows hold every row exactly once: a row is
    /// either in a file visible then, or in memory.
    fn hold(&self) -> Box<dyn LiveView + '_>;
    /// The sites with rows in memory.
    fn sites(&self) -> Vec<String>;
    /// Whether visits are counted (sessions on): then the visit numbers
    /// are known, zero where none ended yet.
    fn counts_visits(&self) -> bool;
}

/// What [`Live::hold`] shows.
pub trait LiveView {
    /// One table's rows of the UTC days `from` to `to`, as record batches
    /// in the hourly files' schema.
    fn batches(
        &self,
        table: Table,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Vec<arrow_array::RecordBatch>;
    /// The `lg_k` of their sketches.
    fn lg_k(&self) -> u8;
}

/// Opens the data location a report reads: a local folder, which must
/// exist, or an object-store URL (`s3://bucket/prefix`, …).
pub fn open(data_dir: &str) -> Result<Store, Error> {
    Store::open(data_dir).map_err(|e| match e {
        footfall_storage::Error::Missing(path) => Error::DataDirMissing(path),
        e => Error::Store(e),
    })
}

/// What to break the numbers down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Page,
    /// The page a visit began on (the `visits` table).
    EntryPage,
    /// The page a visit ended on (`pages`' exits).
    ExitPage,
    Referrer,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    Browser,
    Os,
    Device,
    Country,
    /// A time series: one row per UTC hour.
    Hour,
    /// A time series: one row per UTC day.
    Day,
    /// Custom events by name (the `events` table).
    Event,
    /// One event's values of one allowed property ([`Query::event`],
    /// [`Query::prop`]; the `event_props` table).
    Prop,
    /// Each of [`Query::goals`]: its conversions and conversion rate.
    Goal,
}

impl Dimension {
    /// Every dimension, in the order `--help` lists them.
    pub const ALL: [Dimension; 16] = [
        Dimension::Page,
        Dimension::EntryPage,
        Dimension::ExitPage,
        Dimension::Referrer,
        Dimension::UtmSource,
        Dimension::UtmMedium,
        Dimension::UtmCampaign,
        Dimension::Browser,
        Dimension::Os,
        Dimension::Device,
        Dimension::Country,
        Dimension::Hour,
        Dimension::Day,
        Dimension::Event,
        Dimension::Prop,
        Dimension::Goal,
    ];

    /// The name on the command line, also the key in CSV and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Page => "page",
            Dimension::EntryPage => "entry_page",
            Dimension::ExitPage => "exit_page",
            Dimension::Referrer => "referrer",
            Dimension::UtmSource => "utm_source",
            Dimension::UtmMedium => "utm_medium",
            Dimension::UtmCampaign => "utm_campaign",
            Dimension::Browser => "browser",
            Dimension::Os => "os",
            Dimension::Device => "device",
            Dimension::Country => "country",
            Dimension::Hour => "hour",
            Dimension::Day => "day",
            Dimension::Event => "event",
            Dimension::Prop => "prop",
            Dimension::Goal => "goal",
        }
    }

    /// The dimension named `name` (as [`Dimension::name`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The table the dimension is read from.
    pub fn table(self) -> Table {
        match self {
            Dimension::Page | Dimension::ExitPage | Dimension::Hour | Dimension::Day => {
                Table::Pages
            }
            Dimension::EntryPage => Table::Visits,
            Dimension::Referrer
            | Dimension::UtmSource
            | Dimension::UtmMedium
            | Dimension::UtmCampaign => Table::Sources,
            Dimension::Browser | Dimension::Os | Dimension::Device => Table::Devices,
            Dimension::Country => Table::Countries,
            Dimension::Event | Dimension::Goal => Table::Events,
            Dimension::Prop => Table::EventProps,
        }
    }

    /// The column holding the value (`hour` for both time series).
    pub(crate) fn column(self) -> &'static str {
        match self {
            Dimension::Day => "hour",
            Dimension::ExitPage => "page",
            Dimension::Event => "name",
            Dimension::Prop => "value",
            d => d.name(),
        }
    }

    pub(crate) fn is_time(self) -> bool {
        matches!(self, Dimension::Hour | Dimension::Day)
    }

    /// How a null value reads in a table or CSV (JSON says `null`).
    pub fn null_label(self) -> &'static str {
        match self {
            Dimension::Referrer => "(direct)",
            Dimension::Country => "(unknown)",
            _ => "(none)",
        }
    }
}

/// A number a report shows besides the count and the visitors. Each is a
/// ratio or sum of the tables' counts, so any engine computes the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Visits (that began in the row's hour, page or source).
    Visits,
    /// Pageviews of the visits ÷ visits.
    ViewsPerVisit,
    /// Visits of one pageview ÷ visits, in percent.
    BounceRate,
    /// Mean of (last activity − start), seconds.
    VisitDuration,
    /// Visits that ended on the page.
    Exits,
    /// Exits ÷ views of the page, in percent.
    ExitRate,
    /// Engaged seconds per (visit, page) pair with an engagement.
    TimeOnPage,
    /// Mean of each (visit, page) pair's deepest scroll, in percent.
    ScrollDepth,
    /// The row's visitors ÷ the site's visitors in the range, in percent.
    ConversionRate,
}

impl Metric {
    /// The key in JSON, the column in CSV and the table.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Visits => "visits",
            Metric::ViewsPerVisit => "views_per_visit",
            Metric::BounceRate => "bounce_rate",
            Metric::VisitDuration => "visit_duration",
            Metric::Exits => "exits",
            Metric::ExitRate => "exit_rate",
            Metric::TimeOnPage => "time_on_page",
            Metric::ScrollDepth => "scroll_depth",
            Metric::ConversionRate => "conversion_rate",
        }
    }

    /// Decimals shown: rates one, views per visit two, the rest none.
    pub fn decimals(self) -> usize {
        match self {
            Metric::BounceRate | Metric::ExitRate | Metric::ConversionRate => 1,
            Metric::ViewsPerVisit => 2,
            _ => 0,
        }
    }

    /// The metrics a report by `by` shows (`None`: site totals).
    pub fn for_report(by: Option<Dimension>) -> &'static [Metric] {
        use Metric::*;
        match by {
            None | Some(Dimension::Hour | Dimension::Day) => {
                &[Visits, ViewsPerVisit, BounceRate, VisitDuration]
            }
            Some(Dimension::Page) => &[Exits, ExitRate, TimeOnPage, ScrollDepth],
            Some(Dimension::EntryPage) => &[BounceRate, VisitDuration],
            Some(Dimension::ExitPage) => &[ExitRate],
            Some(
                Dimension::Referrer
                | Dimension::UtmSource
                | Dimension::UtmMedium
                | Dimension::UtmCampaign,
            ) => &[Visits, BounceRate, VisitDuration],
            Some(Dimension::Browser | Dimension::Os | Dimension::Device | Dimension::Country) => {
                &[]
            }
            Some(Dimension::Event | Dimension::Prop | Dimension::Goal) => &[ConversionRate],
        }
    }
}

/// A report request. Dates are UTC and inclusive.
#[derive(Debug, Clone)]
pub struct Query {
    /// Where the files are: a local folder or an object-store prefix.
    pub store: footfall_storage::Store,
    pub site: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// `None`: one row of site totals.
    pub by: Option<Dimension>,
    /// Keep the first N rows (after sorting).
    pub limit: Option<usize>,
    /// Rows whose visitors estimate is below this are not shown: their
    /// counts and sketches go into one `(other)` row, itself shown only if
    /// it reaches the threshold. 0 shows everything.
    pub min_visitors: u64,
    /// The event whose property values `--by prop:KEY` lists.
    pub event: Option<String>,
    /// The property key of `--by prop:KEY`.
    pub prop: Option<String>,
    /// The goals `--by goal` lists, in order.
    pub goals: Vec<Goal>,
    /// Rows not in any file yet, read as one more input (`None`: files
    /// only, as `footfall report` reads).
    pub live: Option<std::sync::Arc<dyn Live>>,
}

/// Reads the range's files and merges them into the report `q` asks for.
pub fn run(q: &Query) -> Result<Report, Error> {
    match q.by {
        Some(Dimension::Event | Dimension::Prop | Dimension::Goal) => goals::run(q),
        _ => merge::run(q),
    }
}

/// One output row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The dimension value (the site for totals); `None` for a null one:
    /// direct traffic, no campaign, an unknown country.
    pub key: Option<String>,
    /// Views, or entries for the source dimensions.
    pub count: i64,
    /// Estimate of the sketch union over the whole range, rounded.
    pub visitors: u64,
    /// The values of [`Report::metrics`], rounded as each is shown; `None`
    /// where it cannot be computed (no visits, or no engagement data, in
    /// the row; or no visit data at all in the range).
    pub metrics: Vec<Option<f64>>,
}

/// A finished report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Name of the key column: the dimension, `prop:KEY` for a property,
    /// or `site` for totals.
    pub key_name: String,
    /// Name of the count column: `views`, or `entries` for sources.
    pub count_name: &'static str,
    /// How a null key is shown in a table or CSV.
    pub null_label: &'static str,
    /// Whether rows show `visitors` (not for exit pages: the sketch there
    /// is of the page's viewers, not of the visits that left from it).
    pub shows_visitors: bool,
    /// The metrics after the count (and visitors), in order.
    pub metrics: &'static [Metric],
    pub rows: Vec<Row>,
    /// True when a row may span more than one uniqueness window (day), so
    /// its `visitors` counts visitor-days (not for hour or day series).
    pub spans_windows: bool,
    /// Rows below [`Query::min_visitors`] folded into `(other)`.
    pub suppressed: usize,
    /// The threshold applied (0: none).
    pub min_visitors: u64,
    /// What the report read.
    pub stats: Stats,
}

/// The work behind a report, for benchmarks and curious operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Files read.
    pub files: usize,
    /// Of which daily rollups.
    pub rollups: usize,
    /// Rows of the site read, each one sketch merged.
    pub rows: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use footfall_aggregator::Buckets;
    use footfall_aggregator::writer::{file_name, write_file};

    fn store(dir: &Path) -> Store {
        Store::local(dir).unwrap()
    }
    use footfall_schemas::{Visit, VisitorKey};

    const DAY: i64 = 1_764_028_800; // 2025-11-25T00:00:00Z

    fn date(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 11, d).unwrap()
    }

    fn key(visitor: u64) -> VisitorKey {
        VisitorKey::from_hash(visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn write(dir: &Path, lg_k: u8, visits: &[(&str, i64, &str, u64)]) {
        let visits: Vec<Visit> = visits
            .iter()
            .map(|&(site, time, page, visitor)| Visit::landing(site, time, page, key(visitor)))
            .collect();
        write_visits(dir, lg_k, &visits);
    }

    /// Folds the visits and writes every table, as a flush does.
    fn write_visits(dir: &Path, lg_k: u8, visits: &[Visit]) {
        let mut b = Buckets::new(lg_k).unwrap().with_countries(true);
        for v in visits {
            b.fold(v);
        }
        let flush_id = footfall_aggregator::writer::new_flush_id();
        for (d, part) in b.split_by_date() {
            for table in part.tables() {
                let batch = part.to_record_batch(table).unwrap();
                write_file(&store(dir), table, d, lg_k, &file_name(flush_id), &batch).unwrap();
            }
        }
    }

    fn row(key: Option<&str>, count: i64, visitors: u64) -> Row {
        Row {
            key: key.map(Into::into),
            count,
            visitors,
            metrics: vec![],
        }
    }

    /// The rows without their metrics, to compare with [`row`]s.
    fn plain(rows: &[Row]) -> Vec<Row> {
        rows.iter()
            .map(|r| Row {
                metrics: vec![],
                ..r.clone()
            })
            .collect()
    }

    fn query(dir: &Path, by: Option<Dimension>) -> Query {
        Query {
            store: store(dir),
            site: "a.com".into(),
            from: date(25),
            to: date(26),
            by,
            limit: None,
            min_visitors: 0,
            event: None,
            prop: None,
            goals: Vec::new(),
            live: None,
        }
    }

    #[test]
    fn merges_across_files_hours_and_days() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            12,
            &[
                ("a.com", DAY + 10, "/", 1),
                ("a.com", DAY + 4000, "/", 1),
                ("a.com", DAY, "/x", 2),
            ],
        );
        write(
            tmp.path(),
            12,
            &[("a.com", DAY + 86_400, "/", 3), ("b.org", DAY, "/", 9)],
        );
        let by_page = run(&query(tmp.path(), Some(Dimension::Page))).unwrap();
        assert_eq!(
            plain(&by_page.rows),
            vec![row(Some("/"), 3, 2), row(Some("/x"), 1, 1)]
        );
        let totals = run(&query(tmp.path(), None)).unwrap();
        assert_eq!(plain(&totals.rows), vec![row(Some("a.com"), 4, 3)]);
        assert!(totals.spans_windows);

        let json = render(&by_page, Format::Json);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            parsed[0],
            // No visit data in these files: every visit number is absent.
            serde_json::json!({"page": "/", "views": 3, "visitors": 2, "exits": null,
                "exit_rate": null, "time_on_page": null, "scroll_depth": null})
        );
        assert_eq!(
            render(&by_page, Format::Csv),
            "page,views,visitors,exits,exit_rate,time_on_page,scroll_depth\n/,3,2,,,,\n/x,1,1,,,,\n"
        );
        let table = render(&by_page, Format::Table);
        assert!(
            table.starts_with(
                "page  views  visitors  exits  exit_rate  time_on_page  scroll_depth\n\
                 /         3         2      -          -             -             -\n"
            ),
            "{table}"
        );
        assert!(table.contains("visitor-days"));
    }

    /// Folds pageviews and engagement reports through the aggregator's
    /// visits core, as `serve` does, ends every visit and writes the tables.
    fn write_with_visits(dir: &Path, views: &[Visit], engaged: &[(i64, &str, u64, u32, u8)]) {
        use footfall_aggregator::sessions::{SessionSettings, Sessions};
        let mut b = Buckets::new(12).unwrap();
        let mut sessions = Sessions::new(SessionSettings::default());
        let mut all: Vec<(i64, bool)> = views.iter().map(|v| (v.time, true)).collect();
        all.extend(engaged.iter().map(|e| (e.0, false)));
        let (mut v, mut e) = (views.iter(), engaged.iter());
        all.sort_by_key(|x| x.0);
        for (_, is_view) in all {
            if is_view {
                let visit = v.next().unwrap();
                b.fold(visit);
                sessions.pageview(visit, |ended| b.fold_ended(ended));
            } else {
                let &(time, page, who, ms, sd) = e.next().unwrap();
                let report = footfall_schemas::Engagement {
                    site: "a.com",
                    time,
                    page,
                    engaged_ms: Some(ms),
                    scroll_depth: Some(sd),
                    visitor: key(who),
                };
                if let Some(engaged) = sessions.engage(&report) {
                    b.fold_engaged(&engaged);
                }
            }
        }
        sessions.end_all(|ended| b.fold_ended(ended));
        let flush_id = footfall_aggregator::writer::new_flush_id();
        for (d, part) in b.split_by_date() {
            for table in part.tables() {
                let batch = part.to_record_batch(table).unwrap();
                write_file(&store(dir), table, d, 12, &file_name(flush_id), &batch).unwrap();
            }
        }
    }

    #[test]
    fn visit_numbers_follow_their_definitions() {
        let tmp = tempfile::tempdir().unwrap();
        let at = |t: i64, page: &'static str, who: u64, referrer: Option<&'static str>| Visit {
            referrer,
            entry: true,
            ..Visit::landing("a.com", DAY + t, page, key(who))
        };
        let inside = |t: i64, page: &'static str, who: u64| Visit {
            referrer: None,
            entry: false,
            ..Visit::landing("a.com", DAY + t, page, key(who))
        };
        let views = [
            // Visitor 1: lands on / from news.example, reads /pricing, leaves.
            at(100, "/", 1, Some("news.example")),
            inside(160, "/pricing", 1),
            // Visitor 2: a bounce on /, read for 40 s (an engagement).
            at(200, "/", 2, None),
            // Visitor 3: lands on /pricing at 00:50, its visit runs into the
            // next hour; then comes back after the timeout: two visits.
            at(3000, "/pricing", 3, None),
            inside(3900, "/", 3),
            at(3900 + 31 * 60, "/", 3, None),
        ];
        let engaged = [
            (DAY + 150, "/", 1, 30_000, 40),
            (DAY + 240, "/", 2, 40_000, 100),
            (DAY + 3100, "/pricing", 3, 20_000, 60),
            (DAY + 3200, "/pricing", 3, 10_000, 80),
        ];
        write_with_visits(tmp.path(), &views, &engaged);
        let q = |by| Query {
            to: date(25),
            ..query(tmp.path(), by)
        };
        let named = |r: &Report| -> Vec<(Option<String>, i64, Vec<(&str, Option<f64>)>)> {
            r.rows
                .iter()
                .map(|row| {
                    let m = r
                        .metrics
                        .iter()
                        .map(|m| m.name())
                        .zip(row.metrics.clone())
                        .collect();
                    (row.key.clone(), row.count, m)
                })
                .collect()
        };
        let totals = run(&q(None)).unwrap();
        // 4 visits, 6 pageviews; bounces: visitor 2 and visitor 3's return;
        // durations 60 + 40 + 900 + 0.
        assert_eq!(
            named(&totals),
            [(
                Some("a.com".into()),
                6,
                vec![
                    ("visits", Some(4.0)),
                    ("views_per_visit", Some(1.5)),
                    ("bounce_rate", Some(50.0)),
                    ("visit_duration", Some(250.0))
                ]
            )]
        );
        let entry = run(&q(Some(Dimension::EntryPage))).unwrap();
        assert_eq!(
            named(&entry),
            [
                (
                    Some("/".into()),
                    3,
                    vec![("bounce_rate", Some(66.7)), ("visit_duration", Some(33.0))]
                ),
                (
                    Some("/pricing".into()),
                    1,
                    vec![("bounce_rate", Some(0.0)), ("visit_duration", Some(900.0))]
                ),
            ]
        );
        assert_eq!(entry.rows[0].visitors, 3);
        let exit = run(&q(Some(Dimension::ExitPage))).unwrap();
        // Exits: / (visitors 2 and 3, twice) and /pricing (visitor 1); views
        // of / are 4, of /pricing 2.
        assert_eq!(
            named(&exit),
            [
                (Some("/".into()), 3, vec![("exit_rate", Some(75.0))]),
                (Some("/pricing".into()), 1, vec![("exit_rate", Some(50.0))]),
            ]
        );
        assert!(!render(&exit, Format::Csv).contains("visitors"));
        let pages = run(&q(Some(Dimension::Page))).unwrap();
        assert_eq!(
            named(&pages),
            [
                (
                    Some("/".into()),
                    4,
                    vec![
                        ("exits", Some(3.0)),
                        ("exit_rate", Some(75.0)),
                        ("time_on_page", Some(35.0)),
                        ("scroll_depth", Some(70.0))
                    ]
                ),
                (
                    Some("/pricing".into()),
                    2,
                    vec![
                        ("exits", Some(1.0)),
                        ("exit_rate", Some(50.0)),
                        ("time_on_page", Some(30.0)),
                        ("scroll_depth", Some(80.0))
                    ]
                ),
            ]
        );
        let sources = run(&q(Some(Dimension::Referrer))).unwrap();
        assert_eq!(
            named(&sources),
            [
                (
                    None,
                    3,
                    vec![
                        ("visits", Some(3.0)),
                        ("bounce_rate", Some(66.7)),
                        ("visit_duration", Some(313.0))
                    ]
                ),
                (
                    Some("news.example".into()),
                    1,
                    vec![
                        ("visits", Some(1.0)),
                        ("bounce_rate", Some(0.0)),
                        ("visit_duration", Some(60.0))
                    ]
                ),
            ]
        );
        // A visit's numbers belong to the hour it began: visitor 3's first
        // visit is in hour 00 although it ended in hour 01.
        let hours = run(&q(Some(Dimension::Hour))).unwrap();
        assert_eq!(
            named(&hours),
            [
                (
                    Some("2025-11-25T00:00:00Z".into()),
                    4,
                    vec![
                        ("visits", Some(3.0)),
                        (
                            "views_per_visit",
                            Some(5.0 / 3.0 * 100.0).map(|v: f64| v.round() / 100.0)
                        ),
                        ("bounce_rate", Some(33.3)),
                        ("visit_duration", Some(333.0))
                    ]
                ),
                (
                    Some("2025-11-25T01:00:00Z".into()),
                    2,
                    vec![
                        ("visits", Some(1.0)),
                        ("views_per_visit", Some(1.0)),
                        ("bounce_rate", Some(100.0)),
                        ("visit_duration", Some(0.0))
                    ]
                ),
            ]
        );
        let json: serde_json::Value = serde_json::from_str(&render(&entry, Format::Json)).unwrap();
        assert_eq!(
            json[1],
            serde_json::json!({"entry_page": "/pricing", "visits": 1, "visitors": 1,
                "bounce_rate": 0.0, "visit_duration": 900})
        );
    }

    #[test]
    fn files_from_before_visits_read_as_absent_visit_numbers() {
        use arrow_array::{ArrayRef, RecordBatch};
        use std::sync::Arc;
        let tmp = tempfile::tempdir().unwrap();
        // A `pages` file as version 1 wrote it: no visit columns.
        let mut b = Buckets::new(12).unwrap();
        b.fold(&Visit::landing("a.com", DAY, "/", key(1)));
        let now = b.to_record_batch(Table::Pages).unwrap();
        let keep = ["site", "hour", "page", "views", "entries", "visitors"];
        let indices: Vec<usize> = keep
            .iter()
            .map(|n| now.schema().index_of(n).unwrap())
            .collect();
        let mut metadata = now.schema().metadata().clone();
        metadata.insert(
            footfall_schemas::tables::meta::SCHEMA_VERSION.to_owned(),
            "1".to_owned(),
        );
        let schema = Arc::new(
            now.schema()
                .project(&indices)
                .unwrap()
                .with_metadata(metadata),
        );
        let columns: Vec<ArrayRef> = indices.iter().map(|&i| now.column(i).clone()).collect();
        let old = RecordBatch::try_new(schema, columns).unwrap();
        write_file(
            &store(tmp.path()),
            Table::Pages,
            date(25),
            12,
            &file_name(1),
            &old,
        )
        .unwrap();
        let pages = run(&query(tmp.path(), Some(Dimension::Page))).unwrap();
        assert_eq!(plain(&pages.rows), [row(Some("/"), 1, 1)]);
        assert_eq!(pages.rows[0].metrics, [None, None, None, None]);
        let totals = run(&query(tmp.path(), None)).unwrap();
        assert_eq!(totals.rows[0].metrics, [None, None, None, None]);
    }

    #[test]
    fn every_dimension_reads_its_table() {
        let tmp = tempfile::tempdir().unwrap();
        let s = |v: &'static str| Some(v);
        let phone = |v: Visit<'static>| Visit {
            browser: footfall_schemas::Browser::Safari,
            os: footfall_schemas::Os::Ios,
            device: footfall_schemas::Device::Mobile,
            country: footfall_schemas::Country::new("FR"),
            ..v
        };
        let visits = vec![
            // Direct, from Germany's desktop Chrome (the base visit).
            Visit {
                browser: footfall_schemas::Browser::Chrome,
                country: footfall_schemas::Country::new("DE"),
                ..Visit::landing("a.com", DAY + 10, "/", key(1))
            },
            // From a newsletter, on a phone, twice by one person.
            phone(Visit {
                referrer: s("mail.example"),
                campaign: footfall_schemas::Campaign {
                    source: s("newsletter"),
                    medium: s("email"),
                    campaign: None,
                },
                ..Visit::landing("a.com", DAY + 3700, "/offer", key(2))
            }),
            phone(Visit {
                referrer: s("mail.example"),
                campaign: footfall_schemas::Campaign {
                    source: s("newsletter"),
                    medium: s("email"),
                    campaign: None,
                },
                ..Visit::landing("a.com", DAY + 86_400 + 5, "/offer", key(2))
            }),
            // Then within the site: a view, not a source; no country known.
            Visit {
                country: None,
                ..phone(Visit {
                    referrer: s("a.com"),
                    entry: false,
                    ..Visit::landing("a.com", DAY + 86_400 + 60, "/buy", key(2))
                })
            },
        ];
        write_visits(tmp.path(), 12, &visits);
        let by = |d: Dimension| run(&query(tmp.path(), Some(d))).unwrap();

        let referrers = by(Dimension::Referrer);
        assert_eq!(referrers.count_name, "entries");
        assert_eq!(
            plain(&referrers.rows),
            [row(Some("mail.example"), 2, 1), row(None, 1, 1)]
        );
        assert_eq!(
            plain(&by(Dimension::UtmSource).rows),
            [row(Some("newsletter"), 2, 1), row(None, 1, 1)]
        );
        assert_eq!(
            plain(&by(Dimension::UtmMedium).rows),
            [row(Some("email"), 2, 1), row(None, 1, 1)]
        );
        assert_eq!(plain(&by(Dimension::UtmCampaign).rows), [row(None, 3, 2)]);
        let browsers = by(Dimension::Browser);
        assert_eq!(browsers.count_name, "views");
        assert_eq!(
            plain(&browsers.rows),
            [row(Some("Safari"), 3, 1), row(Some("Chrome"), 1, 1)]
        );
        assert_eq!(
            plain(&by(Dimension::Os).rows),
            [row(Some("iOS"), 3, 1), row(Some("Other"), 1, 1)]
        );
        assert_eq!(
            plain(&by(Dimension::Device).rows),
            [row(Some("mobile"), 3, 1), row(Some("desktop"), 1, 1)]
        );
        assert_eq!(
            plain(&by(Dimension::Country).rows),
            [
                row(Some("FR"), 2, 1),
                row(None, 1, 1),
                row(Some("DE"), 1, 1)
            ]
        );
        assert_eq!(
            plain(&by(Dimension::Hour).rows),
            [
                row(Some("2025-11-25T00:00:00Z"), 1, 1),
                row(Some("2025-11-25T01:00:00Z"), 1, 1),
                row(Some("2025-11-26T00:00:00Z"), 2, 1),
            ],
            "a time series in time order"
        );
        assert_eq!(
            plain(&by(Dimension::Day).rows),
            [row(Some("2025-11-25"), 2, 2), row(Some("2025-11-26"), 2, 1)]
        );

        // Nulls: `null` in JSON, an empty CSV field, a label in the table.
        let json: serde_json::Value =
            serde_json::from_str(&render(&referrers, Format::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"referrer": "mail.example", "entries": 2, "visitors": 1,
                 "visits": null, "bounce_rate": null, "visit_duration": null},
                {"referrer": null, "entries": 1, "visitors": 1,
                 "visits": null, "bounce_rate": null, "visit_duration": null}
            ])
        );
        assert_eq!(
            render(&referrers, Format::Csv),
            "referrer,entries,visitors,visits,bounce_rate,visit_duration\nmail.example,2,1,,,\n,1,1,,,\n"
        );
        let table = render(&referrers, Format::Table);
        assert!(table.contains("(direct)"), "{table}");
        assert!(
            table.starts_with(
                "referrer      entries  visitors  visits  bounce_rate  visit_duration\n"
            ),
            "{table}"
        );
    }

    #[test]
    fn rollups_give_the_same_report_and_step_aside_for_late_files() {
        let tmp = tempfile::tempdir().unwrap();
        // 6,000 people over two days: about 40 per page and hour, so each
        // hourly sketch is small (set mode) while each page's union over a
        // day is dense, the case where the union's estimator would differ.
        let visits: Vec<(&str, i64, &str, u64)> = (0..6000u64)
            .map(|v| {
                let time = DAY + (v as i64 % 96) * 1800;
                ("a.com", time, ["/", "/x", "/y"][v as usize % 3], v)
            })
            .collect();
        write(tmp.path(), 12, &visits[..3000]);
        write(tmp.path(), 12, &visits[3000..]);
        let dims = [
            None,
            Some(Dimension::Page),
            Some(Dimension::Referrer),
            Some(Dimension::Browser),
            Some(Dimension::Day),
            Some(Dimension::Hour),
        ];
        let before: Vec<Report> = dims
            .iter()
            .map(|&d| run(&query(tmp.path(), d)).unwrap())
            .collect();
        assert!(before.iter().all(|r| r.stats.rollups == 0));

        for d in [date(25), date(26)] {
            footfall_aggregator::rollup::rollup_date(&store(tmp.path()), d, Some(12)).unwrap();
        }
        for (d, old) in dims.iter().zip(&before) {
            let now = run(&query(tmp.path(), *d)).unwrap();
            assert_eq!(now.rows, old.rows, "{d:?}");
            let expected_rollups = if *d == Some(Dimension::Hour) { 0 } else { 2 };
            assert_eq!(now.stats.rollups, expected_rollups, "{d:?}");
            assert_eq!(
                now.stats.files,
                if expected_rollups == 2 {
                    2
                } else {
                    old.stats.files
                },
                "{d:?}"
            );
        }

        // A late file for the 25th (written after its rollup): read beside
        // the rollup, which still covers the rest (and it all adds up).
        write(tmp.path(), 12, &[("a.com", DAY + 5, "/late", 999)]);
        let late = run(&query(tmp.path(), Some(Dimension::Page))).unwrap();
        assert_eq!(late.stats.rollups, 2);
        assert_eq!(late.stats.files, 3);
        assert!(late.rows.iter().any(|r| r.key.as_deref() == Some("/late")));
        let views = |r: &Report| r.rows.iter().map(|r| r.count).sum::<i64>();
        assert_eq!(views(&late), views(&before[1]) + 1);
    }

    #[test]
    fn countries_without_a_geoip_database_say_so() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), 12, &[("a.com", DAY, "/", 1)]);
        std::fs::remove_dir_all(tmp.path().join("countries")).unwrap();
        let e = run(&query(tmp.path(), Some(Dimension::Country))).unwrap_err();
        assert!(e.to_string().contains("--geoip-db"), "{e}");
    }

    #[test]
    fn errors_say_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = open(tmp.path().join("nope").to_str().unwrap()).unwrap_err();
        assert!(matches!(missing, Error::DataDirMissing(_)), "{missing}");

        let mut q = query(tmp.path(), None);
        q.from = date(27);
        assert!(matches!(run(&q).unwrap_err(), Error::EmptyRange { .. }));

        let nothing = run(&query(tmp.path(), None)).unwrap_err();
        assert!(
            nothing.to_string().contains("no site has data there yet"),
            "{nothing}"
        );

        write(tmp.path(), 12, &[("b.org", DAY, "/", 1)]);
        let unknown = run(&query(tmp.path(), None)).unwrap_err();
        assert!(matches!(unknown, Error::UnknownSite { .. }), "{unknown}");
        assert!(
            unknown.to_string().contains("sites with data: b.org"),
            "{unknown}"
        );

        write(tmp.path(), 10, &[("a.com", DAY, "/", 1)]);
        let mixed = run(&query(tmp.path(), None)).unwrap_err();
        assert!(matches!(mixed, Error::LgKMismatch { .. }), "{mixed}");
        assert!(
            mixed.to_string().contains(".parquet"),
            "names the file: {mixed}"
        );
    }

    #[test]
    fn a_quiet_range_of_a_known_site_is_zero_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            12,
            &[("a.com", DAY, "/", 1), ("b.org", DAY, "/", 2)],
        );
        let mut q = query(tmp.path(), None);
        (q.from, q.to) = (date(27), date(28));
        let totals = run(&q).unwrap();
        assert_eq!(plain(&totals.rows), vec![row(Some("a.com"), 0, 0)]);
        let json: serde_json::Value = serde_json::from_str(&render(&totals, Format::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"site": "a.com", "views": 0, "visitors": 0, "visits": null,
                "views_per_visit": null, "bounce_rate": null, "visit_duration": null}])
        );
        assert_eq!(
            render(&totals, Format::Csv),
            "site,views,visitors,visits,views_per_visit,bounce_rate,visit_duration\na.com,0,0,,,,\n"
        );

        // (A property's values need an event, goals a goal: below.)
        q.event = Some("Signup".into());
        q.prop = Some("plan".into());
        for by in Dimension::ALL
            .into_iter()
            .filter(|d| *d != Dimension::Country && *d != Dimension::Goal)
        {
            q.by = Some(by);
            let report = run(&q).unwrap();
            assert!(report.rows.is_empty(), "{by:?}: {:?}", report.rows);
            assert_eq!(render(&report, Format::Json), "[]\n", "{by:?}");
            let csv = render(&report, Format::Csv);
            assert_eq!(csv.lines().count(), 1, "{by:?}: header only: {csv}");
            assert!(render(&report, Format::Table).contains("no views in this range"));
        }
        // A goal is the owner's question: answered, with nothing.
        q.by = Some(Dimension::Goal);
        q.goals = vec![Goal::parse("Signup").unwrap()];
        let goals = run(&q).unwrap();
        assert_eq!(plain(&goals.rows), [row(Some("Signup"), 0, 0)]);
        assert_eq!(goals.rows[0].metrics, [None], "no visitors: no rate");
        // A known site's breakdown of a day with data but none of its own.
        write(tmp.path(), 12, &[("b.org", DAY + 86_400 * 2, "/", 3)]);
        q.by = Some(Dimension::Page);
        assert!(run(&q).unwrap().rows.is_empty());
    }

    #[test]
    fn events_props_and_goals_convert_against_the_sites_visitors() {
        use footfall_schemas::CustomEvent;
        let tmp = tempfile::tempdir().unwrap();
        let mut b = Buckets::new(12).unwrap();
        // Four visitors view pages over two days; 1 and 2 sign up (1 twice,
        // on two days), 3 downloads.
        for (who, t, page) in [
            (1, DAY, "/"),
            (2, DAY, "/blog/a"),
            (3, DAY + 86_400, "/blog/b/c"),
            (4, DAY + 86_400, "/pricing"),
            (1, DAY + 86_400, "/pricing"),
        ] {
            b.fold(&Visit::landing("a.com", t, page, key(who)));
        }
        let pro: &[(&str, &str)] = &[("plan", "pro")];
        for (who, t, name, props) in [
            (1, DAY, "Signup", pro),
            (1, DAY + 86_400, "Signup", pro),
            (2, DAY, "Signup", &[("plan", "free")][..]),
            (3, DAY + 86_400, "File Download", &[("url", "/f.pdf")][..]),
        ] {
            b.fold_event(&CustomEvent {
                site: "a.com",
                time: t + 10,
                name,
                page: "/",
                props,
                interactive: true,
                visitor: key(who),
            });
        }
        let flush_id = footfall_aggregator::writer::new_flush_id();
        for (d, part) in b.split_by_date() {
            for table in part.tables() {
                let batch = part.to_record_batch(table).unwrap();
                write_file(
                    &store(tmp.path()),
                    table,
                    d,
                    12,
                    &file_name(flush_id),
                    &batch,
                )
                .unwrap();
            }
        }
        let json = |q: &Query| -> serde_json::Value {
            serde_json::from_str(&render(&run(q).unwrap(), Format::Json)).unwrap()
        };
        let mut q = query(tmp.path(), Some(Dimension::Event));
        assert_eq!(
            json(&q),
            serde_json::json!([
                {"event": "Signup", "events": 3, "visitors": 2, "conversion_rate": 50.0},
                {"event": "File Download", "events": 1, "visitors": 1, "conversion_rate": 25.0},
            ])
        );
        q.by = Some(Dimension::Prop);
        q.prop = Some("plan".into());
        q.event = Some("Signup".into());
        assert_eq!(
            json(&q),
            serde_json::json!([
                {"prop:plan": "pro", "events": 2, "visitors": 1, "conversion_rate": 25.0},
                {"prop:plan": "free", "events": 1, "visitors": 1, "conversion_rate": 25.0},
            ])
        );
        q.by = Some(Dimension::Goal);
        q.goals = ["Signup", "page:/blog/*", "page:/blog/**", "page:/pricing"]
            .map(|g| Goal::parse(g).unwrap())
            .into();
        assert_eq!(
            json(&q),
            serde_json::json!([
                {"goal": "Signup", "events": 3, "visitors": 2, "conversion_rate": 50.0},
                {"goal": "page:/blog/*", "events": 1, "visitors": 1, "conversion_rate": 25.0},
                {"goal": "page:/blog/**", "events": 2, "visitors": 2, "conversion_rate": 50.0},
                {"goal": "page:/pricing", "events": 2, "visitors": 2, "conversion_rate": 50.0},
            ])
        );
        // One day: the rate's denominator is that day's visitors (1 and 2).
        q.to = date(25);
        let day = json(&q);
        assert_eq!(day[0]["conversion_rate"], 100.0, "{day}");
        q.by = Some(Dimension::Prop);
        q.event = None;
        assert!(matches!(run(&q), Err(Error::PropNeedsEvent)));
    }

    #[test]
    fn rows_below_the_threshold_are_counted_in_other_never_shown() {
        let tmp = tempfile::tempdir().unwrap();
        // /a: 5 visitors; /b: 2; /c and /d: 1 each, one of them also on /a.
        let mut visits = Vec::new();
        for v in 0..5 {
            visits.push(("a.com", DAY, "/a", v));
        }
        visits.extend([
            ("a.com", DAY, "/b", 10),
            ("a.com", DAY + 60, "/b", 11),
            ("a.com", DAY, "/c", 12),
            ("a.com", DAY, "/d", 0),
        ]);
        write(tmp.path(), 12, &visits);
        let mut q = query(tmp.path(), Some(Dimension::Page));
        let with = |q: &mut Query, k| {
            q.min_visitors = k;
            run(q).unwrap()
        };
        assert_eq!(with(&mut q, 0).rows.len(), 4);
        let r = with(&mut q, 3);
        assert_eq!(
            plain(&r.rows),
            vec![row(Some("/a"), 5, 5), row(Some("(other)"), 4, 4)],
            "/b, /c, /d in (other): 4 views, 4 distinct visitors"
        );
        assert_eq!(r.suppressed, 3);
        assert!(render(&r, Format::Table).contains("3 rows of fewer than 3 visitors not shown"));
        // (other) below the threshold is not shown either.
        let r = with(&mut q, 5);
        assert_eq!(plain(&r.rows), vec![row(Some("/a"), 5, 5)]);
        // Totals: the site's row is shown only if it reaches K.
        q.by = None;
        // 9 views by 8 distinct visitors (visitor 0 read /a and /d).
        assert_eq!(plain(&with(&mut q, 8).rows), vec![row(Some("a.com"), 9, 8)]);
        assert_eq!(plain(&with(&mut q, 9).rows), vec![]);
    }

    #[test]
    fn sites_lists_every_site_with_its_first_and_last_day() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            only_site(&store(tmp.path())).unwrap_err(),
            Error::NoSites { .. }
        ));
        assert_eq!(sites(&store(tmp.path())).unwrap(), vec![]);
        write(tmp.path(), 12, &[("b.org", DAY + 86_400, "/", 1)]);
        assert_eq!(only_site(&store(tmp.path())).unwrap(), "b.org");
        write(
            tmp.path(),
            12,
            &[("a.com", DAY, "/", 1), ("a.com", DAY + 3 * 86_400, "/x", 2)],
        );
        // A stray folder is not a partition.
        std::fs::create_dir_all(tmp.path().join("pages/date=x")).unwrap();
        let span = |site: &str, first, last| SiteSpan {
            site: site.into(),
            first: date(first),
            last: date(last),
        };
        let all = sites(&store(tmp.path())).unwrap();
        assert_eq!(all, vec![span("a.com", 25, 28), span("b.org", 26, 26)]);
        let which = only_site(&store(tmp.path())).unwrap_err();
        assert!(which.to_string().contains("a.com, b.org"), "{which}");
        assert_eq!(
            render_sites(&all, Format::Csv),
            "site,first,last\na.com,2025-11-25,2025-11-28\nb.org,2025-11-26,2025-11-26\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_sites(&all, Format::Json)).unwrap();
        assert_eq!(
            json[1],
            serde_json::json!({"site": "b.org", "first": "2025-11-26", "last": "2025-11-26"})
        );
        assert!(render_sites(&all, Format::Table).starts_with("site   first       last"));
        // Rollups answer the same.
        for d in [25, 26, 28] {
            footfall_aggregator::rollup::rollup_date(&store(tmp.path()), date(d), Some(12))
                .unwrap();
        }
        assert_eq!(sites(&store(tmp.path())).unwrap(), all);
    }

    #[test]
    fn dimensions_are_named_as_the_command_line_names_them() {
        for d in Dimension::ALL {
            assert_eq!(Dimension::from_name(d.name()), Some(d));
        }
        assert_eq!(Dimension::from_name("utm-source"), None);
    }
}
