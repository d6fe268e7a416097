//! footfall's analyst side: reads the `pages` Parquet files of a site and a
//! date range, sums the counts and unions the HLL sketches, and renders the
//! result as a table, CSV or JSON.
//!
//! # Layout
//! - [`Query`] and [`run`]: scan the partitions, check every file's
//!   metadata, merge rows by the requested dimension.
//! - [`render`]: the three output formats.
//! - [`Error`]: what a person can act on, each with the path or value.
//!
//! It reads files only through the documented layout and metadata, exactly
//! as DuckDB or Spark would: it knows nothing of the collector or the
//! aggregator's internals.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{
    Array, BinaryArray, Date32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use chrono::{DateTime, NaiveDate};
use datasketches::hll::{HllSketch, HllType, HllUnion};
use footfall_schemas::tables::{DEFAULT_LG_K, SCHEMA_VERSION, Table, meta};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaDataReader;

/// What went wrong, with what a person needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data dir {} does not exist (serve writes it; pass --data-dir)", .0.display())]
    DataDirMissing(PathBuf),
    #[error("empty range: --from {from} is after --to {to}")]
    EmptyRange { from: NaiveDate, to: NaiveDate },
    #[error("no data for site {site:?} from {from} to {to} in {}{}", dir.display(), seen_hint(.seen))]
    UnknownSite {
        site: String,
        from: NaiveDate,
        to: NaiveDate,
        dir: PathBuf,
        seen: Vec<String>,
    },
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
    #[error("{} is not a footfall file: {what}", path.display())]
    NotOurs { path: PathBuf, what: String },
    #[error("reading {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn seen_hint(seen: &[String]) -> String {
    if seen.is_empty() {
        String::new()
    } else {
        format!(" (sites with data in that range: {})", seen.join(", "))
    }
}

/// What to break the numbers down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Page,
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
}

impl Dimension {
    /// Every dimension, in the order `--help` lists them.
    pub const ALL: [Dimension; 11] = [
        Dimension::Page,
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
    ];

    /// The name on the command line, also the key in CSV and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Page => "page",
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
        }
    }

    /// The dimension named `name` (as [`Dimension::name`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The table the dimension is read from.
    pub fn table(self) -> Table {
        match self {
            Dimension::Page | Dimension::Hour | Dimension::Day => Table::Pages,
            Dimension::Referrer
            | Dimension::UtmSource
            | Dimension::UtmMedium
            | Dimension::UtmCampaign => Table::Sources,
            Dimension::Browser | Dimension::Os | Dimension::Device => Table::Devices,
            Dimension::Country => Table::Countries,
        }
    }

    /// The column holding the value (`hour` for both time series).
    fn column(self) -> &'static str {
        match self {
            Dimension::Day => "hour",
            d => d.name(),
        }
    }

    fn is_time(self) -> bool {
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

/// A report request. Dates are UTC and inclusive.
#[derive(Debug, Clone)]
pub struct Query {
    pub data_dir: PathBuf,
    pub site: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// `None`: one row of site totals.
    pub by: Option<Dimension>,
    /// Keep the first N rows (after sorting).
    pub limit: Option<usize>,
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
}

/// A finished report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Name of the key column: the dimension, or `site` for totals.
    pub key_name: &'static str,
    /// Name of the count column: `views`, or `entries` for sources.
    pub count_name: &'static str,
    /// How a null key is shown in a table or CSV.
    pub null_label: &'static str,
    pub rows: Vec<Row>,
    /// True when a row may span more than one uniqueness window (day), so
    /// its `visitors` counts visitor-days (not for hour or day series).
    pub spans_windows: bool,
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

struct Acc {
    count: i64,
    union: HllUnion,
}

/// Reads the range's files and merges them.
pub fn run(q: &Query) -> Result<Report, Error> {
    if !q.data_dir.is_dir() {
        return Err(Error::DataDirMissing(q.data_dir.clone()));
    }
    if q.from > q.to {
        return Err(Error::EmptyRange {
            from: q.from,
            to: q.to,
        });
    }
    let table = q.by.map_or(Table::Pages, Dimension::table);
    let count_name = table.counts()[0].name();
    // An hourly series needs the hours; everything else can use rollups.
    let use_rollups = q.by != Some(Dimension::Hour);
    let (files, rollups) = files_in_range(&q.data_dir, table, q.from, q.to, use_rollups)?;
    // No countries data in the range: say why if it was never written.
    if files.is_empty() && table == Table::Countries && !q.data_dir.join(table.name()).exists() {
        return Err(Error::NoCountries {
            dir: q.data_dir.clone(),
        });
    }
    // The files are split between the cores; each part is merged on its
    // own and the parts' unions merged at the end. Union is associative
    // and the estimate is settled, so the split changes no number.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Part, Error>> = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|files| scope.spawn(move || read_part(q, files, count_name)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut lg_k: Option<(u8, PathBuf)> = None;
    let mut groups: HashMap<Option<String>, Acc> = HashMap::new();
    let mut seen_sites: Vec<String> = Vec::new();
    let mut stats = Stats {
        files: files.len(),
        rollups,
        rows: 0,
    };
    for part in parts {
        let part = part?;
        if let Some((part_lg_k, path)) = part.lg_k {
            match &lg_k {
                None => lg_k = Some((part_lg_k, path)),
                Some((expected, _)) if *expected == part_lg_k => {}
                Some((expected, _)) => {
                    return Err(Error::LgKMismatch {
                        path,
                        found: part_lg_k.to_string(),
                        expected: *expected,
                    });
                }
            }
        }
        stats.rows += part.rows;
        for site in part.seen_sites {
            if !seen_sites.contains(&site) {
                seen_sites.push(site);
            }
        }
        for (key, acc) in part.groups {
            match groups.entry(key) {
                Entry::Vacant(v) => {
                    v.insert(acc);
                }
                Entry::Occupied(mut o) => {
                    let mine = o.get_mut();
                    mine.count += acc.count;
                    mine.union.update(&acc.union.to_sketch(HllType::Hll8));
                }
            }
        }
    }
    let lg_k = lg_k.map(|(k, _)| k);
    if groups.is_empty() {
        seen_sites.sort();
        return Err(Error::UnknownSite {
            site: q.site.clone(),
            from: q.from,
            to: q.to,
            dir: q.data_dir.clone(),
            seen: seen_sites,
        });
    }
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(key, acc)| Row {
            key,
            count: acc.count,
            visitors: settled_estimate(&acc.union, lg_k.unwrap_or(DEFAULT_LG_K)).round() as u64,
        })
        .collect();
    if q.by.is_some_and(Dimension::is_time) {
        // A time series reads in time order; the keys are ISO 8601.
        rows.sort_by(|a, b| a.key.cmp(&b.key));
    } else {
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    }
    if let Some(n) = q.limit {
        rows.truncate(n);
    }
    Ok(Report {
        key_name: q.by.map_or("site", Dimension::name),
        count_name,
        null_label: q.by.map_or("(none)", Dimension::null_label),
        rows,
        // A time series' rows each lie within one day.
        spans_windows: q.from != q.to && !q.by.is_some_and(Dimension::is_time),
        stats,
    })
}

/// The estimate of a union's registers by DataSketches' composite
/// estimator, whatever the union's history.
///
/// A union fed only small (list or set mode) sketches inserts their coupons
/// one by one and keeps the HIP estimator of an in-order sketch; once any
/// dense sketch is merged it switches to the composite estimator. Both are
/// within the sketch's error, but they differ by up to about 1 %, so the
/// same visitors would read differently from hourly files than from daily
/// rollups (whose sketches of busy keys are dense). Passing the result
/// through a fresh union twice marks it out of order, as the aggregator's
/// written sketches are: the number then depends on the visitors alone, not
/// on how the files happen to slice them.
fn settled_estimate(union: &HllUnion, lg_k: u8) -> f64 {
    let sketch = union.to_sketch(HllType::Hll8);
    match HllUnion::new(lg_k) {
        Ok(mut settled) => {
            settled.update(&sketch);
            settled.update(&sketch);
            settled.estimate()
        }
        Err(_) => union.estimate(),
    }
}

/// What one thread merged from its share of the files.
struct Part {
    /// The `lg_k` of its files and the first of them.
    lg_k: Option<(u8, PathBuf)>,
    groups: HashMap<Option<String>, Acc>,
    seen_sites: Vec<String>,
    rows: u64,
}

/// Reads and merges some files, in order; every file must have the `lg_k`
/// of the first.
fn read_part(q: &Query, files: &[PathBuf], count_name: &'static str) -> Result<Part, Error> {
    let mut part = Part {
        lg_k: None,
        groups: HashMap::new(),
        seen_sites: Vec::new(),
        rows: 0,
    };
    for file in files {
        let expected = part.lg_k.as_ref().map(|(k, _)| *k);
        let (file_lg_k, batches) = read(file, expected, q.by, count_name)?;
        part.lg_k.get_or_insert_with(|| (file_lg_k, file.clone()));
        for batch in batches {
            let mut folder = Folder {
                q,
                lg_k: file_lg_k,
                count_name,
                groups: &mut part.groups,
                seen_sites: &mut part.seen_sites,
                file,
            };
            part.rows += folder.fold(&batch)?;
        }
    }
    Ok(part)
}

/// Folds the rows of one file's batches into the report's groups.
struct Folder<'a> {
    q: &'a Query,
    lg_k: u8,
    count_name: &'static str,
    groups: &'a mut HashMap<Option<String>, Acc>,
    seen_sites: &'a mut Vec<String>,
    file: &'a Path,
}

impl Folder<'_> {
    fn not_ours(&self, what: &str) -> Error {
        Error::NotOurs {
            path: self.file.to_owned(),
            what: what.to_owned(),
        }
    }

    fn column<'b, T: 'static>(
        &self,
        batch: &'b RecordBatch,
        name: &str,
        kind: &str,
    ) -> Result<&'b T, Error> {
        batch
            .column_by_name(name)
            .ok_or_else(|| self.not_ours(&format!("no column {name}")))?
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| self.not_ours(&format!("{name} is not {kind}")))
    }

    /// Folds the batch's rows of the site; returns how many.
    fn fold(&mut self, batch: &RecordBatch) -> Result<u64, Error> {
        let sites: &StringArray = self.column(batch, "site", "a string")?;
        let counts: &Int64Array = self.column(batch, self.count_name, "int64")?;
        let sketches: &BinaryArray = self.column(batch, "visitors", "binary")?;
        let by = self.q.by;
        let values: Option<&StringArray> = match by {
            Some(d) if !d.is_time() => Some(self.column(batch, d.column(), "a string")?),
            _ => None,
        };
        // Time series read `hour`, except a day series over a rollup, which
        // has `day` instead.
        let days: Option<&Date32Array> = match by {
            Some(Dimension::Day) if batch.column_by_name("day").is_some() => {
                Some(self.column(batch, "day", "a date")?)
            }
            _ => None,
        };
        let hours: Option<&TimestampMicrosecondArray> = match by {
            Some(d) if d.is_time() && days.is_none() => {
                Some(self.column(batch, "hour", "a timestamp")?)
            }
            _ => None,
        };
        let mut folded = 0;
        for i in 0..batch.num_rows() {
            let site = sites.value(i);
            if site != self.q.site {
                if !self.seen_sites.iter().any(|s| s == site) {
                    self.seen_sites.push(site.to_owned());
                }
                continue;
            }
            folded += 1;
            let key: Option<String> = match (by, values, hours) {
                (None, ..) => Some(site.to_owned()),
                (Some(_), Some(v), _) => v.is_valid(i).then(|| v.value(i).to_owned()),
                (Some(_), None, None) if days.is_some() => {
                    let day = days
                        .and_then(|d| d.value_as_date(i))
                        .ok_or_else(|| self.not_ours(&format!("row {i}: day out of range")))?;
                    Some(day.format("%Y-%m-%d").to_string())
                }
                (Some(d), None, Some(h)) => {
                    let t = DateTime::from_timestamp_micros(h.value(i))
                        .ok_or_else(|| self.not_ours(&format!("row {i}: hour out of range")))?;
                    Some(if d == Dimension::Day {
                        t.format("%Y-%m-%d").to_string()
                    } else {
                        t.format("%Y-%m-%dT%H:00:00Z").to_string()
                    })
                }
                (Some(_), None, None) => unreachable!("a dimension reads values or hours"),
            };
            let sketch = if sketches.is_valid(i) {
                Some(HllSketch::deserialize(sketches.value(i)).map_err(|e| {
                    self.not_ours(&format!("row {i}: visitors is not an HLL sketch: {e}"))
                })?)
            } else {
                None
            };
            let acc = match self.groups.entry(key) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    let union = HllUnion::new(self.lg_k).map_err(|e| Error::NotOurs {
                        path: self.file.to_owned(),
                        what: format!("lg_k {}: {e}", self.lg_k),
                    })?;
                    v.insert(Acc { count: 0, union })
                }
            };
            acc.count += counts.value(i);
            if let Some(sketch) = sketch {
                acc.union.update(&sketch);
            }
        }
        Ok(folded)
    }
}

/// The files to read for a table from `from` to `to`: for each day, its
/// daily rollup when one covers exactly the hourly files present (and the
/// report does not need hours), otherwise those hourly files. Hidden files
/// (writes in progress) are never read.
fn files_in_range(
    data_dir: &Path,
    table: Table,
    from: NaiveDate,
    to: NaiveDate,
    use_rollups: bool,
) -> Result<(Vec<PathBuf>, usize), Error> {
    let mut files = Vec::new();
    let mut rollups = 0;
    let mut day = from;
    while day <= to {
        let date = format!("date={}", day.format("%Y-%m-%d"));
        let hourly_dir = data_dir.join(table.name()).join(&date);
        let hourly = visible_parquet(&hourly_dir)?;
        let rollup = if use_rollups && !hourly.is_empty() {
            let daily_dir = data_dir.join(table.daily_name()).join(&date);
            let covers = hourly.join(",");
            let mut found = None;
            for name in visible_parquet(&daily_dir)? {
                let path = daily_dir.join(name);
                if rollup_covers(&path)?.as_deref() == Some(covers.as_str()) {
                    found = Some(path);
                    break;
                }
            }
            found
        } else {
            None
        };
        match rollup {
            Some(path) => {
                files.push(path);
                rollups += 1;
            }
            None => files.extend(hourly.into_iter().map(|n| hourly_dir.join(n))),
        }
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    Ok((files, rollups))
}

/// Sorted names of the visible `*.parquet` files in `dir` (none if absent).
fn visible_parquet(dir: &Path) -> Result<Vec<String>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".parquet") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The hourly files a daily rollup covers, from its footer.
fn rollup_covers(path: &Path) -> Result<Option<String>, Error> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|source| Error::Parquet {
            path: path.to_owned(),
            source,
        })?;
    Ok(meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == meta::ROLLUP_COVERS))
        .and_then(|e| e.value.clone()))
}

/// Opens a file once: checks its schema version and `lg_k` against the
/// files read before it, then reads the columns a report needs. Returns the
/// file's `lg_k` and its batches.
fn read(
    path: &Path,
    expected: Option<u8>,
    by: Option<Dimension>,
    count: &str,
) -> Result<(u8, Vec<RecordBatch>), Error> {
    let parquet_err = |source| Error::Parquet {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
    let lg_k = check_metadata(
        path,
        builder.metadata().file_metadata().key_value_metadata(),
        expected,
    )?;
    let wanted = [
        "site",
        by.map_or("site", Dimension::column),
        count,
        "visitors",
        // A rollup has `day` where hourly files have `hour`.
        if by == Some(Dimension::Day) {
            "day"
        } else {
            "site"
        },
    ];
    let schema = builder.parquet_schema();
    let indices: Vec<usize> = (0..schema.num_columns())
        .filter(|&i| wanted.contains(&schema.column(i).name()))
        .collect();
    let mask = ProjectionMask::leaves(schema, indices);
    let batches = builder
        .with_projection(mask)
        .build()
        .map_err(parquet_err)?
        .map(|b| {
            b.map_err(|e| Error::Parquet {
                path: path.to_owned(),
                source: e.into(),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((lg_k, batches))
}

/// Checks schema version and `lg_k`; returns the file's `lg_k`.
fn check_metadata(
    path: &Path,
    kv: Option<&Vec<parquet::file::metadata::KeyValue>>,
    expected: Option<u8>,
) -> Result<u8, Error> {
    let get = |key: &str| {
        kv.and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.clone())
    };
    let version = get(meta::SCHEMA_VERSION).ok_or_else(|| Error::NotOurs {
        path: path.to_owned(),
        what: format!("no {} metadata", meta::SCHEMA_VERSION),
    })?;
    if version.parse::<u32>().map_or(true, |v| v > SCHEMA_VERSION) {
        return Err(Error::NewerSchema {
            path: path.to_owned(),
            found: version,
        });
    }
    let lg_k_text = get(meta::HLL_LG_K).unwrap_or_default();
    match (lg_k_text.parse::<u8>(), expected) {
        (Ok(found), None) => Ok(found),
        (Ok(found), Some(expected)) if found == expected => Ok(found),
        (_, expected) => Err(Error::LgKMismatch {
            path: path.to_owned(),
            found: lg_k_text,
            expected: expected.unwrap_or(footfall_schemas::tables::DEFAULT_LG_K),
        }),
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal, with a note on what visitors mean.
    Table,
    /// A header row, then one row per key.
    Csv,
    /// An array of objects with exactly the key column, the count
    /// (`views`, or `entries` for sources) and `visitors`.
    Json,
}

/// Renders a report.
pub fn render(report: &Report, format: Format) -> String {
    let (key, count) = (report.key_name, report.count_name);
    let shown = |r: &Row| {
        r.key
            .clone()
            .unwrap_or_else(|| report.null_label.to_owned())
    };
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = report
                .rows
                .iter()
                .map(|r| serde_json::json!({ key: r.key, count: r.count, "visitors": r.visitors }))
                .collect();
            let mut s = serde_json::to_string_pretty(&rows).expect("JSON of strings and numbers");
            s.push('\n');
            s
        }
        Format::Csv => {
            // A null is an empty field, as every CSV reader takes it.
            let mut s = format!("{key},{count},visitors\n");
            for r in &report.rows {
                s.push_str(&format!(
                    "{},{},{}\n",
                    csv_field(r.key.as_deref().unwrap_or("")),
                    r.count,
                    r.visitors
                ));
            }
            s
        }
        Format::Table => {
            let keys: Vec<String> = report.rows.iter().map(shown).collect();
            let counts: Vec<String> = report.rows.iter().map(|r| r.count.to_string()).collect();
            let visitors: Vec<String> =
                report.rows.iter().map(|r| r.visitors.to_string()).collect();
            let width = |cells: &[String], title: &str| {
                cells
                    .iter()
                    .map(|c| c.chars().count())
                    .chain([title.len()])
                    .max()
                    .unwrap_or(0)
            };
            let (w0, w1, w2) = (
                width(&keys, key),
                width(&counts, count),
                width(&visitors, "visitors"),
            );
            let mut s = format!("{key:<w0$}  {count:>w1$}  {:>w2$}\n", "visitors");
            for i in 0..keys.len() {
                s.push_str(&format!(
                    "{:<w0$}  {:>w1$}  {:>w2$}\n",
                    keys[i], counts[i], visitors[i]
                ));
            }
            if report.spans_windows {
                s.push_str(
                    "\nvisitors: distinct within one UTC day; over several days a person counts once per day (visitor-days).\n",
                );
            }
            s
        }
    }
}

fn csv_field(s: &str) -> String {
    // A spreadsheet would run a cell starting `=`, `+`, `-` or `@` as a
    // formula, and campaign values are whatever a link said: a leading `'`
    // keeps it text (OWASP's advice for CSV export).
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use footfall_aggregator::Buckets;
    use footfall_aggregator::writer::write_file;
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
                write_file(dir, table, d, lg_k, flush_id, &batch).unwrap();
            }
        }
    }

    fn row(key: Option<&str>, count: i64, visitors: u64) -> Row {
        Row {
            key: key.map(Into::into),
            count,
            visitors,
        }
    }

    fn query(dir: &Path, by: Option<Dimension>) -> Query {
        Query {
            data_dir: dir.to_owned(),
            site: "a.com".into(),
            from: date(25),
            to: date(26),
            by,
            limit: None,
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
            by_page.rows,
            vec![row(Some("/"), 3, 2), row(Some("/x"), 1, 1)]
        );
        let totals = run(&query(tmp.path(), None)).unwrap();
        assert_eq!(totals.rows, vec![row(Some("a.com"), 4, 3)]);
        assert!(totals.spans_windows);

        let json = render(&by_page, Format::Json);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            parsed[0],
            serde_json::json!({"page": "/", "views": 3, "visitors": 2})
        );
        assert_eq!(
            render(&by_page, Format::Csv),
            "page,views,visitors\n/,3,2\n/x,1,1\n"
        );
        let table = render(&by_page, Format::Table);
        assert!(
            table.starts_with("page  views  visitors\n/         3         2\n"),
            "{table}"
        );
        assert!(table.contains("visitor-days"));
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
            referrers.rows,
            [row(Some("mail.example"), 2, 1), row(None, 1, 1)]
        );
        assert_eq!(
            by(Dimension::UtmSource).rows,
            [row(Some("newsletter"), 2, 1), row(None, 1, 1)]
        );
        assert_eq!(
            by(Dimension::UtmMedium).rows,
            [row(Some("email"), 2, 1), row(None, 1, 1)]
        );
        assert_eq!(by(Dimension::UtmCampaign).rows, [row(None, 3, 2)]);
        let browsers = by(Dimension::Browser);
        assert_eq!(browsers.count_name, "views");
        assert_eq!(
            browsers.rows,
            [row(Some("Safari"), 3, 1), row(Some("Chrome"), 1, 1)]
        );
        assert_eq!(
            by(Dimension::Os).rows,
            [row(Some("iOS"), 3, 1), row(Some("Other"), 1, 1)]
        );
        assert_eq!(
            by(Dimension::Device).rows,
            [row(Some("mobile"), 3, 1), row(Some("desktop"), 1, 1)]
        );
        assert_eq!(
            by(Dimension::Country).rows,
            [
                row(Some("FR"), 2, 1),
                row(None, 1, 1),
                row(Some("DE"), 1, 1)
            ]
        );
        assert_eq!(
            by(Dimension::Hour).rows,
            [
                row(Some("2025-11-25T00:00:00Z"), 1, 1),
                row(Some("2025-11-25T01:00:00Z"), 1, 1),
                row(Some("2025-11-26T00:00:00Z"), 2, 1),
            ],
            "a time series in time order"
        );
        assert_eq!(
            by(Dimension::Day).rows,
            [row(Some("2025-11-25"), 2, 2), row(Some("2025-11-26"), 2, 1)]
        );

        // Nulls: `null` in JSON, an empty CSV field, a label in the table.
        let json: serde_json::Value =
            serde_json::from_str(&render(&referrers, Format::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"referrer": "mail.example", "entries": 2, "visitors": 1},
                {"referrer": null, "entries": 1, "visitors": 1}
            ])
        );
        assert_eq!(
            render(&referrers, Format::Csv),
            "referrer,entries,visitors\nmail.example,2,1\n,1,1\n"
        );
        let table = render(&referrers, Format::Table);
        assert!(table.contains("(direct)"), "{table}");
        assert!(
            table.starts_with("referrer      entries  visitors\n"),
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
            footfall_aggregator::rollup::rollup_date(tmp.path(), d, Some(12)).unwrap();
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

        // A late file for the 25th: its rollup no longer covers what is
        // there, so that day is read hourly (and still adds up).
        write(tmp.path(), 12, &[("a.com", DAY + 5, "/late", 999)]);
        let late = run(&query(tmp.path(), Some(Dimension::Page))).unwrap();
        assert_eq!(late.stats.rollups, 1);
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
        let missing = run(&query(&tmp.path().join("nope"), None)).unwrap_err();
        assert!(matches!(missing, Error::DataDirMissing(_)), "{missing}");

        let mut q = query(tmp.path(), None);
        q.from = date(27);
        assert!(matches!(run(&q).unwrap_err(), Error::EmptyRange { .. }));

        write(tmp.path(), 12, &[("b.org", DAY, "/", 1)]);
        let unknown = run(&query(tmp.path(), None)).unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("sites with data in that range: b.org"),
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
    fn dimensions_are_named_as_the_command_line_names_them() {
        for d in Dimension::ALL {
            assert_eq!(Dimension::from_name(d.name()), Some(d));
        }
        assert_eq!(Dimension::from_name("utm-source"), None);
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("/a,b"), "\"/a,b\"");
        assert_eq!(csv_field("/\"q\""), "\"/\"\"q\"\"\"");
        assert_eq!(csv_field("/plain"), "/plain");
        assert_eq!(csv_field("=cmd|'/c calc'!A1"), "'=cmd|'/c calc'!A1");
        assert_eq!(csv_field("@SUM(1,2)"), "\"'@SUM(1,2)\"");
    }
}
