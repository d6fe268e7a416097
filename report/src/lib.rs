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
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, BinaryArray, Int64Array, RecordBatch, StringArray};
use chrono::NaiveDate;
use datasketches::hll::{HllSketch, HllUnion};
use footfall_schemas::tables::{SCHEMA_VERSION, Table, meta};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

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
    /// One row per page.
    Page,
}

impl Dimension {
    /// The column name, also the key in CSV and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Page => "page",
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
    /// The dimension value; the site for totals.
    pub key: String,
    pub views: i64,
    /// Estimate of the sketch union over the whole range, rounded.
    pub visitors: u64,
}

/// A finished report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Name of the key column: the dimension, or `site` for totals.
    pub key_name: &'static str,
    pub rows: Vec<Row>,
    /// True when the range spans more than one uniqueness window (day), so
    /// `visitors` counts visitor-days.
    pub spans_windows: bool,
}

struct Acc {
    views: i64,
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
    let mut lg_k: Option<u8> = None;
    let mut groups: HashMap<String, Acc> = HashMap::new();
    let mut seen_sites: Vec<String> = Vec::new();
    for file in files_in_range(&q.data_dir, Table::Pages, q.from, q.to)? {
        let (file_lg_k, batches) = read(&file, lg_k)?;
        lg_k = Some(file_lg_k);
        for batch in batches {
            fold_batch(&batch, q, file_lg_k, &mut groups, &mut seen_sites, &file)?;
        }
    }
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
            views: acc.views,
            visitors: acc.union.estimate().round() as u64,
        })
        .collect();
    rows.sort_by(|a, b| b.views.cmp(&a.views).then_with(|| a.key.cmp(&b.key)));
    if let Some(n) = q.limit {
        rows.truncate(n);
    }
    Ok(Report {
        key_name: q.by.map_or("site", Dimension::name),
        rows,
        spans_windows: q.from != q.to,
    })
}

fn fold_batch(
    batch: &RecordBatch,
    q: &Query,
    lg_k: u8,
    groups: &mut HashMap<String, Acc>,
    seen_sites: &mut Vec<String>,
    file: &Path,
) -> Result<(), Error> {
    let not_ours = |what: &str| Error::NotOurs {
        path: file.to_owned(),
        what: what.to_owned(),
    };
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| not_ours(&format!("no column {name}")))
    };
    let sites = column("site")?;
    let sites = sites
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| not_ours("site is not a string"))?;
    let pages = column("page")?;
    let pages = pages
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| not_ours("page is not a string"))?;
    let views = column("views")?;
    let views = views
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| not_ours("views is not int64"))?;
    let sketches = column("visitors")?;
    let sketches = sketches
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| not_ours("visitors is not binary"))?;
    for i in 0..batch.num_rows() {
        let site = sites.value(i);
        if site != q.site {
            if !seen_sites.iter().any(|s| s == site) {
                seen_sites.push(site.to_owned());
            }
            continue;
        }
        let key = match q.by {
            None => site,
            Some(Dimension::Page) => pages.value(i),
        };
        let acc = match groups.get_mut(key) {
            Some(acc) => acc,
            None => groups.entry(key.to_owned()).or_insert(Acc {
                views: 0,
                union: HllUnion::new(lg_k).map_err(|e| not_ours(&format!("lg_k {lg_k}: {e}")))?,
            }),
        };
        acc.views += views.value(i);
        if sketches.is_valid(i) {
            let sketch = HllSketch::deserialize(sketches.value(i))
                .map_err(|e| not_ours(&format!("row {i}: visitors is not an HLL sketch: {e}")))?;
            acc.union.update(&sketch);
        }
    }
    Ok(())
}

/// The visible `*.parquet` files of a table's partitions from `from` to `to`.
/// Hidden files (writes in progress) are skipped.
fn files_in_range(
    data_dir: &Path,
    table: Table,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    let mut day = from;
    while day <= to {
        let dir = data_dir
            .join(table.name())
            .join(format!("date={}", day.format("%Y-%m-%d")));
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|source| Error::Io {
                        path: dir.clone(),
                        source,
                    })?;
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    if name.ends_with(".parquet") && !name.starts_with('.') {
                        files.push(entry.path());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Io { path: dir, source }),
        }
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    files.sort();
    Ok(files)
}

/// Opens a file once: checks its schema version and `lg_k` against the
/// files read before it, then reads the columns a report needs. Returns the
/// file's `lg_k` and its batches.
fn read(path: &Path, expected: Option<u8>) -> Result<(u8, Vec<RecordBatch>), Error> {
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
    let wanted = ["site", "page", "views", "visitors"];
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
    /// An array of objects with exactly the key column, `views`, `visitors`.
    Json,
}

/// Renders a report.
pub fn render(report: &Report, format: Format) -> String {
    let key = report.key_name;
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = report
                .rows
                .iter()
                .map(
                    |r| serde_json::json!({ key: r.key, "views": r.views, "visitors": r.visitors }),
                )
                .collect();
            let mut s = serde_json::to_string_pretty(&rows).expect("JSON of strings and numbers");
            s.push('\n');
            s
        }
        Format::Csv => {
            let mut s = format!("{key},views,visitors\n");
            for r in &report.rows {
                s.push_str(&format!(
                    "{},{},{}\n",
                    csv_field(&r.key),
                    r.views,
                    r.visitors
                ));
            }
            s
        }
        Format::Table => {
            let views: Vec<String> = report.rows.iter().map(|r| r.views.to_string()).collect();
            let visitors: Vec<String> =
                report.rows.iter().map(|r| r.visitors.to_string()).collect();
            let w0 = report
                .rows
                .iter()
                .map(|r| r.key.chars().count())
                .chain([key.len()])
                .max()
                .unwrap_or(0);
            let w1 = views.iter().map(String::len).chain([5]).max().unwrap_or(5);
            let w2 = visitors
                .iter()
                .map(String::len)
                .chain([8])
                .max()
                .unwrap_or(8);
            let mut s = format!("{key:<w0$}  {:>w1$}  {:>w2$}\n", "views", "visitors");
            for (i, r) in report.rows.iter().enumerate() {
                s.push_str(&format!(
                    "{:<w0$}  {:>w1$}  {:>w2$}\n",
                    r.key, views[i], visitors[i]
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
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
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

    fn write(dir: &Path, lg_k: u8, visits: &[(&str, i64, &str, u64)]) {
        let mut b = Buckets::new(lg_k).unwrap();
        for &(site, time, page, visitor) in visits {
            let key = VisitorKey::from_hash(visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            b.fold(&Visit::landing(site, time, page, key));
        }
        for (d, part) in b.split_by_date() {
            write_file(
                dir,
                Table::Pages,
                d,
                lg_k,
                footfall_aggregator::writer::new_flush_id(),
                &part.to_record_batch(Table::Pages).unwrap(),
            )
            .unwrap();
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
            vec![
                Row {
                    key: "/".into(),
                    views: 3,
                    visitors: 2
                },
                Row {
                    key: "/x".into(),
                    views: 1,
                    visitors: 1
                },
            ]
        );
        let totals = run(&query(tmp.path(), None)).unwrap();
        assert_eq!(
            totals.rows,
            vec![Row {
                key: "a.com".into(),
                views: 4,
                visitors: 3
            }]
        );
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
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("/a,b"), "\"/a,b\"");
        assert_eq!(csv_field("/\"q\""), "\"/\"\"q\"\"\"");
        assert_eq!(csv_field("/plain"), "/plain");
    }
}
