//! Daily rollups: each table's rows of one UTC day, summed and unioned per
//! (site, dimensions), written once the day is over to `<table>_daily/`.
//!
//! A long range then merges one sketch per key and day instead of one per
//! key and hour. The hourly files stay the source of truth and are never
//! touched. A day's rollup is written once, create-only, as
//! `<table>_daily/date=…/rollup.parquet`, and records in its footer
//! ([`meta::ROLLUP_COVERS`]) the exact hourly files it was built from: a
//! glob reader sees at most one rollup a day, and a file that arrives
//! after it (a collector's checkpoint restored after a crash) is read
//! beside it by `footfall report`, never folded into a second rollup. When
//! several collectors race to roll up one day, the first put wins and the
//! others find it there.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, Date32Array, Int64Array, RecordBatch, StringArray,
};
use bytes::Bytes;
use chrono::NaiveDate;
use datasketches::hll::{HllSketch, HllUnion};
use footfall_schemas::tables::{SCHEMA_VERSION, Table, meta};
use footfall_storage::Store;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::{KeyValue, ParquetMetaDataReader};

use crate::buckets::canonical_image;
use crate::error::Error;
use crate::writer::{Written, date_key, partition_key, publish};

/// What a rollup run did for one table and day.
#[derive(Debug)]
pub enum Outcome {
    /// A new rollup, covering `covers` hourly files.
    Written { written: Written, covers: usize },
    /// The day has its rollup already; `late` hourly files arrived after
    /// it (readers take them beside it).
    Exists { late: usize },
    /// No hourly file for that day.
    NoData,
}

/// The one file of a day's rollup, in its folder.
pub const ROLLUP_FILE: &str = "rollup.parquet";

/// The key of a table's daily rollup folder for `date`.
pub fn daily_key(table: Table, date: NaiveDate) -> String {
    date_key(&table.daily_name(), date)
}

/// Rolls up every table for `date`; see [`rollup`].
///
/// `lg_k`: the data dir's, when known (`serve`); `None` takes the first
/// file's and requires every other to match.
pub fn rollup_date(
    store: &Store,
    date: NaiveDate,
    lg_k: Option<u8>,
) -> Result<Vec<(Table, Outcome)>, Error> {
    Table::ALL
        .into_iter()
        .map(|table| rollup(store, table, date, lg_k).map(|o| (table, o)))
        .collect()
}

/// Builds the daily rollup of `table` for `date`, unless the day has one.
pub fn rollup(
    store: &Store,
    table: Table,
    date: NaiveDate,
    lg_k: Option<u8>,
) -> Result<Outcome, Error> {
    let hourly = partition_key(table, date);
    let files = store.parquet_files(&hourly)?;
    if files.is_empty() {
        return Ok(Outcome::NoData);
    }
    let daily = daily_key(table, date);
    let existing = store.parquet_files(&daily)?;
    if let Some(name) = existing.first() {
        return existing_rollup(store, &format!("{daily}/{name}"), &files);
    }

    let covers = files.join(",");
    let mut merged = Merged::new(table, lg_k);
    for name in &files {
        let key = format!("{hourly}/{name}");
        let bytes = store.get(&key)?.ok_or_else(|| Error::Rollup {
            path: store.show(&key).into(),
            what: "listed, then gone".into(),
        })?;
        merged.read(&store.show(&key), bytes)?;
    }
    let batch = merged.into_batch(date, &covers)?;
    let kv = batch
        .schema()
        .metadata()
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let written = publish(store, &daily, ROLLUP_FILE, kv, &batch)?;
    if !written.new {
        // Another collector's rollup run got there first.
        return existing_rollup(store, &format!("{daily}/{ROLLUP_FILE}"), &files);
    }
    Ok(Outcome::Written {
        written,
        covers: files.len(),
    })
}

/// What a day's existing rollup at `key` means for its hourly `files`: how
/// many of them it does not cover.
fn existing_rollup(store: &Store, key: &str, files: &[String]) -> Result<Outcome, Error> {
    let covers = covers_of(store, key)?.unwrap_or_default();
    let covered: Vec<&str> = covers.split(',').collect();
    let late = files
        .iter()
        .filter(|f| !covered.contains(&f.as_str()))
        .count();
    Ok(Outcome::Exists { late })
}

/// Every date that has a partition folder in some table, sorted.
pub fn dates_with_partitions(store: &Store) -> Result<Vec<NaiveDate>, Error> {
    let mut dates = Vec::new();
    for table in Table::ALL {
        for dir in store.list(table.name())?.dirs {
            if let Some(date) = dir
                .strip_prefix("date=")
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            {
                dates.push(date);
            }
        }
    }
    dates.sort();
    dates.dedup();
    Ok(dates)
}

/// The hourly files a rollup says it covers, from its footer.
pub fn covers_of(store: &Store, key: &str) -> Result<Option<String>, Error> {
    let Some(bytes) = store.get(key)? else {
        return Ok(None);
    };
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .map_err(|source| Error::Parquet {
            path: store.show(key).into(),
            source,
        })?;
    Ok(meta
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

    fn read(&mut self, path: &str, bytes: Bytes) -> Result<(), Error> {
        let bad = |what: String| Error::Rollup {
            path: path.into(),
            what,
        };
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|source| Error::Parquet {
                path: path.into(),
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
            path: path.into(),
            source,
        })?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::Parquet {
                path: path.into(),
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
    use crate::writer::{file_name, new_flush_id, write_file};
    use footfall_schemas::{Visit, VisitorKey};

    const DAY: i64 = 1_764_028_800; // 2025-11-25T00:00:00Z

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 11, 25).unwrap()
    }

    /// One flush: the visits' rows of every table, one file each.
    fn flush(store: &Store, lg_k: u8, visits: &[(i64, &str, Option<&str>, u64)]) {
        let mut b = Buckets::new(lg_k).unwrap();
        for &(time, page, referrer, visitor) in visits {
            let key = VisitorKey::from_hash(visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            b.fold(&Visit {
                referrer,
                ..Visit::landing("a.com", time, page, key)
            });
        }
        write_all(store, &b);
    }

    /// Every table of `b` in one flush, a file each.
    fn write_all(store: &Store, b: &Buckets) {
        let name = file_name(new_flush_id());
        for table in b.tables() {
            let batch = b.to_record_batch(table).unwrap();
            write_file(store, table, date(), b.lg_k(), &name, &batch).unwrap();
        }
    }

    /// One flush of visits that ended: the `visits` table's rows and the
    /// visit counts of `pages` and `sources`.
    fn flush_ended(store: &Store, ended: &[(i64, &str, u32, i64, u64)]) {
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
        write_all(store, &b);
    }

    #[test]
    fn visits_roll_up_like_every_table() {
        let store = Store::in_memory();
        flush_ended(
            &store,
            &[(DAY + 10, "/", 1, 0, 1), (DAY + 4000, "/", 3, 120, 2)],
        );
        flush_ended(
            &store,
            &[(DAY + 8000, "/", 2, 30, 1), (DAY + 9000, "/x", 1, 0, 3)],
        );
        let outcomes = rollup_date(&store, date(), Some(12)).unwrap();
        assert!(
            outcomes.iter().any(
                |(t, o)| *t == Table::Visits && matches!(o, Outcome::Written { covers: 2, .. })
            ),
            "{outcomes:?}"
        );
        let (visits, _) = read_rollup(&store, Table::Visits);
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
        let (pages, _) = read_rollup(&store, Table::Pages);
        let exits: i64 = pages.iter().map(|p| p.2[2]).sum();
        assert_eq!(exits, 4);
    }

    /// (site, dims, counts, estimate) of a rollup file.
    type Rolled = Vec<(String, Vec<Option<String>>, Vec<i64>, f64)>;

    fn read_rollup(store: &Store, table: Table) -> (Rolled, String) {
        let daily = daily_key(table, date());
        let files = store.parquet_files(&daily).unwrap();
        assert_eq!(files, [ROLLUP_FILE], "one rollup per day");
        let key = format!("{daily}/{ROLLUP_FILE}");
        let covers = covers_of(store, &key).unwrap().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(store.get(&key).unwrap().unwrap())
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
        let store = Store::in_memory();
        flush(
            &store,
            12,
            &[
                (DAY + 10, "/", None, 1),
                (DAY + 20, "/", Some("ref.net"), 2),
            ],
        );
        flush(
            &store,
            12,
            &[(DAY + 7200, "/", None, 1), (DAY + 7300, "/x", None, 3)],
        );

        let outcomes = rollup_date(&store, date(), Some(12)).unwrap();
        let written: Vec<Table> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Written { covers: 2, .. }))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(written, [Table::Pages, Table::Sources, Table::Devices]);
        assert!(matches!(outcomes[3], (Table::Countries, Outcome::NoData)));

        let (pages, covers) = read_rollup(&store, Table::Pages);
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
            store
                .parquet_files(&partition_key(Table::Pages, date()))
                .unwrap()
                .join(",")
        );
        let (sources, _) = read_rollup(&store, Table::Sources);
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
        let again = rollup(&store, Table::Pages, date(), Some(12)).unwrap();
        assert!(matches!(again, Outcome::Exists { late: 0 }), "{again:?}");

        // A late file (a checkpoint restored after the day was rolled
        // up): the rollup stays as it was, and says one file is beside it.
        flush(&store, 12, &[(DAY + 80_000, "/", None, 9)]);
        let late = rollup(&store, Table::Pages, date(), Some(12)).unwrap();
        assert!(matches!(late, Outcome::Exists { late: 1 }), "{late:?}");
        let (pages_after, covers_after) = read_rollup(&store, Table::Pages);
        assert_eq!((pages_after, covers_after.clone()), (pages, covers));
        assert_eq!(covers_after.split(',').count(), 2);
    }

    #[test]
    fn files_of_another_lg_k_are_refused_by_name() {
        let store = Store::in_memory();
        flush(&store, 12, &[(DAY, "/", None, 1)]);
        flush(&store, 10, &[(DAY, "/", None, 2)]);
        let e = rollup(&store, Table::Pages, date(), None).unwrap_err();
        assert!(matches!(e, Error::Rollup { .. }), "{e}");
        assert!(
            e.to_string().contains(".parquet") && e.to_string().contains("lg_k"),
            "{e}"
        );
        assert!(
            store
                .parquet_files(&daily_key(Table::Pages, date()))
                .unwrap()
                .is_empty()
        );
    }
}
