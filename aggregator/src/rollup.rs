//! Daily rollups: each table's rows of one UTC day, summed and unioned per
//! (site, dimensions), written once the day is over to `<table>_daily/`.
//!
//! A long range then merges one sketch per key and day instead of one per
//! key and hour. The hourly files stay the source of truth and are never
//! touched: a rollup records in its footer ([`meta::ROLLUP_COVERS`]) the
//! exact hourly files it was built from, readers use it only while those
//! are still exactly the files present, and a late file (a retried write, a
//! restart's checkpoint) makes the next rollup run build a new one, which
//! replaces the old by a rename.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, Date32Array, Int64Array, RecordBatch, StringArray,
};
use chrono::NaiveDate;
use datasketches::hll::{HllSketch, HllUnion};
use footfall_schemas::tables::{SCHEMA_VERSION, Table, meta};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::buckets::canonical_image;
use crate::error::Error;
use crate::writer::{Written, date_dir, partition_dir, publish};

/// What a rollup run did for one table and day.
#[derive(Debug)]
pub enum Outcome {
    /// A new rollup, covering `covers` hourly files.
    Written { written: Written, covers: usize },
    /// The existing rollup still covers exactly the hourly files present.
    UpToDate,
    /// No hourly file for that day.
    NoData,
}

/// The one file of a day's rollup, in its folder.
pub const ROLLUP_FILE: &str = "rollup.parquet";

/// The folder of a table's daily rollup for `date`.
pub fn daily_dir(data_dir: &Path, table: Table, date: NaiveDate) -> PathBuf {
    date_dir(data_dir, &table.daily_name(), date)
}

/// Rolls up every table for `date`; see [`rollup`].
///
/// `lg_k`: the data dir's, when known (`serve`); `None` takes the first
/// file's and requires every other to match.
pub fn rollup_date(
    data_dir: &Path,
    date: NaiveDate,
    lg_k: Option<u8>,
) -> Result<Vec<(Table, Outcome)>, Error> {
    Table::ALL
        .into_iter()
        .map(|table| rollup(data_dir, table, date, lg_k).map(|o| (table, o)))
        .collect()
}

/// Builds the daily rollup of `table` for `date`, unless one already covers
/// exactly the hourly files present. Superseded rollups are deleted once
/// the new one is visible.
pub fn rollup(
    data_dir: &Path,
    table: Table,
    date: NaiveDate,
    lg_k: Option<u8>,
) -> Result<Outcome, Error> {
    let hourly = partition_dir(data_dir, table, date);
    let files = visible_parquet(&hourly)?;
    if files.is_empty() {
        return Ok(Outcome::NoData);
    }
    let covers = files.join(",");
    let daily = daily_dir(data_dir, table, date);
    let existing = visible_parquet(&daily)?;
    for name in &existing {
        if covers_of(&daily.join(name))?.as_deref() == Some(covers.as_str()) {
            return Ok(Outcome::UpToDate);
        }
    }

    let mut merged = Merged::new(table, lg_k);
    for name in &files {
        merged.read(&hourly.join(name))?;
    }
    let batch = merged.into_batch(date, &covers)?;
    let kv = batch
        .schema()
        .metadata()
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    // One name a day, replaced by a rename: a reader (or a glob of
    // `<table>_daily/`) sees the old rollup or the new one, never both and
    // never neither, even with two runs at once.
    let written = publish(&daily, ROLLUP_FILE, kv, &batch)?;
    for other in existing.into_iter().filter(|n| n != ROLLUP_FILE) {
        // Not ours to keep: a day's folder holds its one rollup.
        let old = daily.join(other);
        if let Err(e) = fs::remove_file(&old) {
            tracing::warn!(error = %e, path = %old.display(), "could not remove a stray file beside a rollup");
        }
    }
    Ok(Outcome::Written {
        written,
        covers: files.len(),
    })
}

/// Every date that has a partition folder in some table, sorted.
pub fn dates_with_partitions(data_dir: &Path) -> Vec<NaiveDate> {
    let mut dates: Vec<NaiveDate> = Table::ALL
        .into_iter()
        .filter_map(|t| fs::read_dir(data_dir.join(t.name())).ok())
        .flat_map(|entries| entries.flatten())
        .filter_map(|e| {
            let name = e.file_name();
            let day = name.to_str()?.strip_prefix("date=")?;
            NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
        })
        .collect();
    dates.sort();
    dates.dedup();
    dates
}

/// Sorted names of the visible `*.parquet` files in `dir` (none if absent).
pub fn visible_parquet(dir: &Path) -> Result<Vec<String>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                what: "listing",
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet") && !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// The hourly files a rollup says it covers, from its footer.
pub fn covers_of(path: &Path) -> Result<Option<String>, Error> {
    let file = File::open(path).map_err(Error::io("opening", path))?;
    let reader = SerializedFileReader::new(file).map_err(|source| Error::Parquet {
        path: path.to_owned(),
        source,
    })?;
    Ok(reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == meta::ROLLUP_COVERS))
        .and_then(|e| e.value.clone()))
}

/// Per (site, dimensions): summed counts and a union of sketches.
struct Merged {
    table: Table,
    /// Set by the first file when not given.
    lg_k: Option<u8>,
    rows: BTreeMap<(String, Vec<Option<String>>), (Vec<i64>, HllUnion)>,
}

impl Merged {
    fn new(table: Table, lg_k: Option<u8>) -> Self {
        Self {
            table,
            lg_k,
            rows: BTreeMap::new(),
        }
    }

    fn read(&mut self, path: &Path) -> Result<(), Error> {
        let bad = |what: String| Error::Rollup {
            path: path.to_owned(),
            what,
        };
        let file = File::open(path).map_err(Error::io("opening", path))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|source| Error::Parquet {
                path: path.to_owned(),
                source,
            })?;
        let kv = builder.metadata().file_metadata().key_value_metadata();
        let get = |key: &str| {
            kv.and_then(|kv| kv.iter().find(|e| e.key == key))
                .and_then(|e| e.value.clone())
        };
        let file_lg_k = get(meta::HLL_LG_K).and_then(|v| v.parse::<u8>().ok());
        match (file_lg_k, self.lg_k) {
            (Some(found), None) => self.lg_k = Some(found),
            (Some(found), Some(expected)) if found == expected => {}
            (found, expected) => {
                return Err(bad(format!(
                    "lg_k {found:?}, but the data dir uses {expected:?}: sketches of different lg_k cannot be merged"
                )));
            }
        }
        if get(meta::SCHEMA_VERSION).and_then(|v| v.parse::<u32>().ok()) > Some(SCHEMA_VERSION) {
            return Err(bad("written by a newer footfall".into()));
        }
        let reader = builder.build().map_err(|source| Error::Parquet {
            path: path.to_owned(),
            source,
        })?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::Parquet {
                path: path.to_owned(),
                source: e.into(),
            })?;
            self.fold(&batch).map_err(bad)?;
        }
        Ok(())
    }

    fn fold(&mut self, batch: &RecordBatch) -> Result<(), String> {
        fn column<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> Result<&'b T, String> {
            crate::column(batch, name)
                .ok_or_else(|| format!("column {name} missing or of another type"))
        }
        let sites: &StringArray = column(batch, "site")?;
        let dims: Vec<&StringArray> = self
            .table
            .dims()
            .iter()
            .map(|(name, _)| column(batch, name))
            .collect::<Result<_, _>>()?;
        // A file of schema version 1 has no visit counts: they are zero.
        let counts: Vec<Option<&Int64Array>> = self
            .table
            .counts()
            .iter()
            .map(|c| match column(batch, c.name()) {
                Ok(array) => Ok(Some(array)),
                Err(_) if c.of_visits() && batch.schema().column_with_name(c.name()).is_none() => {
                    Ok(None)
                }
                Err(e) => Err(e),
            })
            .collect::<Result<_, _>>()?;
        let sketches: &BinaryArray = column(batch, "visitors")?;
        for i in 0..batch.num_rows() {
            let key = (
                sites.value(i).to_owned(),
                dims.iter()
                    .map(|d| d.is_valid(i).then(|| d.value(i).to_owned()))
                    .collect(),
            );
            let sketch = HllSketch::deserialize(sketches.value(i))
                .map_err(|e| format!("row {i}: not an HLL sketch: {e}"))?;
            let lg_k = self.lg_k.expect("set by read");
            let n = counts.len();
            let (sums, union) = self.rows.entry(key).or_insert_with(|| {
                (
                    vec![0; n],
                    HllUnion::new(lg_k).expect("lg_k was checked by the aggregator"),
                )
            });
            for (sum, c) in sums.iter_mut().zip(&counts) {
                *sum += c.map_or(0, |c| c.value(i));
            }
            union.update(&sketch);
        }
        Ok(())
    }

    fn into_batch(self, date: NaiveDate, covers: &str) -> Result<RecordBatch, Error> {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
        let day = (date - epoch).num_days() as i32;
        let n = self.rows.len();
        let rows: Vec<_> = self.rows.into_iter().collect();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0.0))),
            Arc::new(Date32Array::from(vec![day; n])),
        ];
        for d in 0..self.table.dims().len() {
            columns.push(Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.0.1[d].as_deref()),
            )));
        }
        for c in 0..self.table.counts().len() {
            columns.push(Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.1.0[c]),
            )));
        }
        let lg_k = self.lg_k.expect("set by the first file read");
        let images: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| canonical_image(&r.1.1.to_sketch(crate::buckets::HLL_TYPE), lg_k))
            .collect();
        columns.push(Arc::new(BinaryArray::from_iter_values(images.iter())));
        RecordBatch::try_new(self.table.daily_schema(lg_k, covers), columns).map_err(Error::Arrow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::Buckets;
    use crate::writer::{new_flush_id, write_file};
    use footfall_schemas::{Visit, VisitorKey};

    const DAY: i64 = 1_764_028_800; // 2025-11-25T00:00:00Z

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 11, 25).unwrap()
    }

    /// One flush: the visits' rows of every table, one file each.
    fn flush(dir: &Path, lg_k: u8, visits: &[(i64, &str, Option<&str>, u64)]) {
        let mut b = Buckets::new(lg_k).unwrap();
        for &(time, page, referrer, visitor) in visits {
            let key = VisitorKey::from_hash(visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            b.fold(&Visit {
                referrer,
                ..Visit::landing("a.com", time, page, key)
            });
        }
        write_all(dir, &b);
    }

    /// Every table of `b` in one flush, a file each.
    fn write_all(dir: &Path, b: &Buckets) {
        let id = new_flush_id();
        for table in b.tables() {
            let batch = b.to_record_batch(table).unwrap();
            write_file(dir, table, date(), b.lg_k(), id, &batch).unwrap();
        }
    }

    /// One flush of visits that ended: the `visits` table's rows and the
    /// visit counts of `pages` and `sources`.
    fn flush_ended(dir: &Path, ended: &[(i64, &str, u32, i64, u64)]) {
        let mut b = Buckets::new(12).unwrap();
        for &(start, entry, pageviews, duration_s, visitor) in ended {
            b.fold_ended(&crate::sessions::Ended {
                site: "a.com",
                start,
                entry_page: entry,
                exit_page: entry,
                landed: true,
                source: [None; 4],
                pageviews,
                bounce: pageviews < 2,
                duration_s,
                visitor: VisitorKey::from_hash(visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            });
        }
        write_all(dir, &b);
    }

    #[test]
    fn visits_roll_up_like_every_table() {
        let tmp = tempfile::tempdir().unwrap();
        flush_ended(
            tmp.path(),
            &[(DAY + 10, "/", 1, 0, 1), (DAY + 4000, "/", 3, 120, 2)],
        );
        flush_ended(
            tmp.path(),
            &[(DAY + 8000, "/", 2, 30, 1), (DAY + 9000, "/x", 1, 0, 3)],
        );
        let outcomes = rollup_date(tmp.path(), date(), Some(12)).unwrap();
        assert!(
            outcomes.iter().any(
                |(t, o)| *t == Table::Visits && matches!(o, Outcome::Written { covers: 2, .. })
            ),
            "{outcomes:?}"
        );
        let (visits, _) = read_rollup(tmp.path(), Table::Visits);
        let s = |v: &str| Some(v.to_owned());
        // (visits, bounces, pageviews, duration_s), summed over the day;
        // visitor 1's two visits are one visitor.
        assert_eq!(
            visits,
            [
                ("a.com".into(), vec![s("/")], vec![3, 1, 6, 150], 2.0),
                ("a.com".into(), vec![s("/x")], vec![1, 1, 1, 0], 1.0),
            ]
        );
        let (pages, _) = read_rollup(tmp.path(), Table::Pages);
        let exits: i64 = pages.iter().map(|p| p.2[2]).sum();
        assert_eq!(exits, 4);
    }

    /// (site, dims, counts, estimate) of a rollup file.
    type Rolled = Vec<(String, Vec<Option<String>>, Vec<i64>, f64)>;

    fn read_rollup(dir: &Path, table: Table) -> (Rolled, String) {
        let daily = daily_dir(dir, table, date());
        let files = visible_parquet(&daily).unwrap();
        assert_eq!(files.len(), 1, "one rollup per day: {files:?}");
        let path = daily.join(&files[0]);
        let covers = covers_of(&path).unwrap().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            assert_eq!(batch.schema().field(1).name(), "day");
            let days = batch
                .column(1)
                .as_any()
                .downcast_ref::<Date32Array>()
                .unwrap();
            let n = table.dims().len();
            for i in 0..batch.num_rows() {
                assert_eq!(days.value_as_date(i), Some(date()));
                let s = |c: usize| {
                    batch
                        .column(c)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .unwrap()
                        .clone()
                };
                let dims = (2..2 + n)
                    .map(|c| {
                        let a = s(c);
                        a.is_valid(i).then(|| a.value(i).to_owned())
                    })
                    .collect();
                let counts = (2 + n..batch.num_columns() - 1)
                    .map(|c| {
                        batch
                            .column(c)
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .unwrap()
                            .value(i)
                    })
                    .collect();
                let blob = batch
                    .column(batch.num_columns() - 1)
                    .as_any()
                    .downcast_ref::<BinaryArray>()
                    .unwrap()
                    .value(i)
                    .to_vec();
                let estimate = HllSketch::deserialize(&blob).unwrap().estimate().round();
                rows.push((s(0).value(i).to_owned(), dims, counts, estimate));
            }
        }
        (rows, covers)
    }

    #[test]
    fn a_day_rolls_up_once_and_again_after_a_late_file() {
        let tmp = tempfile::tempdir().unwrap();
        flush(
            tmp.path(),
            12,
            &[
                (DAY + 10, "/", None, 1),
                (DAY + 20, "/", Some("ref.net"), 2),
            ],
        );
        flush(
            tmp.path(),
            12,
            &[(DAY + 7200, "/", None, 1), (DAY + 7300, "/x", None, 3)],
        );

        let outcomes = rollup_date(tmp.path(), date(), Some(12)).unwrap();
        let written: Vec<Table> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Written { covers: 2, .. }))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(written, [Table::Pages, Table::Sources, Table::Devices]);
        assert!(matches!(outcomes[3], (Table::Countries, Outcome::NoData)));

        let (pages, covers) = read_rollup(tmp.path(), Table::Pages);
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            pages,
            [
                ("a.com".into(), vec![s("/")], vec![3, 3, 0, 0, 0, 0, 0], 2.0),
                (
                    "a.com".into(),
                    vec![s("/x")],
                    vec![1, 1, 0, 0, 0, 0, 0],
                    1.0
                ),
            ]
        );
        assert_eq!(
            covers,
            visible_parquet(&partition_dir(tmp.path(), Table::Pages, date()))
                .unwrap()
                .join(",")
        );
        let (sources, _) = read_rollup(tmp.path(), Table::Sources);
        assert_eq!(
            sources,
            [
                (
                    "a.com".into(),
                    vec![None, None, None, None],
                    vec![3, 0, 0, 0, 0],
                    2.0
                ),
                (
                    "a.com".into(),
                    vec![s("ref.net"), None, None, None],
                    vec![1, 0, 0, 0, 0],
                    1.0
                ),
            ]
        );

        // Nothing new: nothing written.
        let again = rollup(tmp.path(), Table::Pages, date(), Some(12)).unwrap();
        assert!(matches!(again, Outcome::UpToDate), "{again:?}");

        // A late file (a retried write): a new rollup replaces the old one.
        flush(tmp.path(), 12, &[(DAY + 80_000, "/", None, 9)]);
        let late = rollup(tmp.path(), Table::Pages, date(), Some(12)).unwrap();
        assert!(
            matches!(late, Outcome::Written { covers: 3, .. }),
            "{late:?}"
        );
        let (pages, covers) = read_rollup(tmp.path(), Table::Pages);
        assert_eq!(pages[0].2, vec![4, 4, 0, 0, 0, 0, 0]);
        assert_eq!(pages[0].3, 3.0);
        assert_eq!(covers.split(',').count(), 3);
    }

    #[test]
    fn files_of_another_lg_k_are_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        flush(tmp.path(), 12, &[(DAY, "/", None, 1)]);
        flush(tmp.path(), 10, &[(DAY, "/", None, 2)]);
        let e = rollup(tmp.path(), Table::Pages, date(), None).unwrap_err();
        assert!(matches!(e, Error::Rollup { .. }), "{e}");
        assert!(
            e.to_string().contains(".parquet") && e.to_string().contains("lg_k"),
            "{e}"
        );
        assert!(
            visible_parquet(&daily_dir(tmp.path(), Table::Pages, date()))
                .unwrap()
                .is_empty()
        );
    }
}
