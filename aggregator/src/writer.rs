//! Writing one table's rows for one UTC date as an immutable Parquet file.
//!
//! A file is encoded in memory and handed to the store with a create-only
//! put under its unique name: readers see the whole file or nothing, a
//! file once visible is never rewritten, and a retried put of a file whose
//! first put did land (its answer lost) finds it there and writes nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::RecordBatch;
use bytes::Bytes;
use chrono::NaiveDate;
use footfall_schemas::tables::Table;
use footfall_storage::{Created, Store};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::Error;

/// What one write produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// Where the file is, as logs show it.
    pub at: String,
    /// Rows in it.
    pub rows: usize,
    /// Its size.
    pub bytes: u64,
    /// Whether this put made it; `false` when an earlier put of the same
    /// file had already landed.
    pub new: bool,
}

/// The key of a table's partition: `<table>/date=YYYY-MM-DD`.
pub fn partition_key(table: Table, date: NaiveDate) -> String {
    date_key(table.name(), date)
}

/// `<folder>/date=YYYY-MM-DD`, the Hive-style partition every table and
/// rollup uses.
pub fn date_key(folder: &str, date: NaiveDate) -> String {
    format!("{folder}/date={}", date.format("%Y-%m-%d"))
}

/// Writes `batch` as the file `name` in the table's partition for `date`.
///
/// `name` is chosen once per flush ([`file_name`]) and kept with rows whose
/// write failed, so that a retry puts the same file (see
/// [`crate::checkpoint`]).
pub fn write_file(
    store: &Store,
    table: Table,
    date: NaiveDate,
    lg_k: u8,
    name: &str,
    batch: &RecordBatch,
) -> Result<Written, Error> {
    let kv = table
        .metadata(lg_k)
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect();
    publish(store, &partition_key(table, date), name, kv, batch)
}

/// Makes `batch` visible as `dir/name` with this footer metadata, unless a
/// file of that name is there already (then it is left as it was).
pub(crate) fn publish(
    store: &Store,
    dir: &str,
    name: &str,
    kv: Vec<KeyValue>,
    batch: &RecordBatch,
) -> Result<Written, Error> {
    let key = format!("{dir}/{name}");
    let bytes = encode(&key, kv, batch)?;
    let size = bytes.len() as u64;
    let created = store.create(&key, bytes)?;
    Ok(Written {
        at: store.show(&key),
        rows: batch.num_rows(),
        bytes: size,
        new: created == Created::New,
    })
}

/// Removes what a crash left of a write in progress on a local disk:
/// hidden temporaries of earlier versions (`.part-….parquet.….tmp`) and
/// the store's staged uploads (`part-….parquet#N`). They were never
/// visible as `*.parquet` and never will be. An object store keeps no
/// partial objects.
pub fn remove_stale_temporaries(store: &Store, folder: &str) -> usize {
    let Some(root) = store.local_dir() else {
        return 0;
    };
    let Ok(partitions) = std::fs::read_dir(root.join(folder)) else {
        return 0;
    };
    let mut removed = 0;
    for partition in partitions.flatten() {
        let Ok(files) = std::fs::read_dir(partition.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let name = name.to_string_lossy();
            let old_tmp =
                name.starts_with('.') && name.ends_with(".tmp") && name.contains(".parquet.");
            let staged = name
                .rsplit_once(".parquet#")
                .is_some_and(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()));
            if (old_tmp || staged) && std::fs::remove_file(file.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

fn encode(key: &str, kv: Vec<KeyValue>, batch: &RecordBatch) -> Result<Bytes, Error> {
    let parquet_err = |source| Error::Parquet {
        path: key.into(),
        source,
    };
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties(kv)))
        .map_err(parquet_err)?;
    writer.write(batch).map_err(parquet_err)?;
    Ok(Bytes::from(writer.into_inner().map_err(parquet_err)?))
}

/// ZSTD, statistics on the key columns, rows declared sorted by (site,
/// hour or day, first dimension) with nulls first (as the rows are: Rust
/// orders `None` first), and the table's metadata in the file footer where
/// every engine can read it (`parquet_kv_metadata` in DuckDB,
/// `pq.read_metadata(...).metadata` in pyarrow).
fn properties(kv: Vec<KeyValue>) -> WriterProperties {
    let sketch_col = ColumnPath::from("visitors");
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        // Min/max of sketch bytes help no query and bloat the footer; a
        // dictionary of near-unique blobs only costs.
        .set_column_statistics_enabled(sketch_col.clone(), EnabledStatistics::None)
        .set_column_dictionary_enabled(sketch_col, false)
        .set_sorting_columns(Some(
            (0..3)
                .map(|column_idx| SortingColumn {
                    column_idx,
                    descending: false,
                    nulls_first: true,
                })
                .collect(),
        ))
        .set_key_value_metadata(Some(kv))
        .set_created_by(format!("footfall {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `part-<unix millis>-<id>.parquet`, a flush's file name in every
/// partition it writes: unique across flushes, restarts and collectors
/// sharing a bucket (the id is 64 random bits), and in time order when
/// listed.
pub fn file_name(id: u64) -> String {
    unique_name("part", id)
}

fn unique_name(kind: &str, id: u64) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{kind}-{millis:013}-{}.parquet", flush_token(id))
}

/// How a flush id appears in file names and checkpoints.
pub fn flush_token(flush_id: u64) -> String {
    format!("{flush_id:016x}")
}

/// A new random flush id.
pub fn new_flush_id() -> u64 {
    let mut rand = [0u8; 8];
    // If the OS cannot give randomness the clock still separates flushes.
    if getrandom::fill(&mut rand).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return nanos as u64;
    }
    u64::from_le_bytes(rand)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::Buckets;
    use footfall_schemas::tables::meta;
    use footfall_schemas::{Visit, VisitorKey};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn batch() -> RecordBatch {
        let mut b = Buckets::new(12).unwrap();
        for i in 0..50u64 {
            let key = VisitorKey::from_hash(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let page = format!("/p{}", i % 5);
            b.fold(&Visit {
                entry: i % 2 == 0,
                ..Visit::landing("a.com", 1_764_079_200 + i as i64, &page, key)
            });
        }
        b.to_record_batch(Table::Pages).unwrap()
    }

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 11, 25).unwrap()
    }

    #[test]
    fn round_trips_through_parquet_with_metadata() {
        let batch = batch();
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::local(tmp.path()).unwrap();
        let name = file_name(7);
        let w = write_file(&store, Table::Pages, date(), 12, &name, &batch).unwrap();
        assert_eq!(w.rows, 5);
        assert!(w.new);
        let dir = tmp.path().join("pages/date=2025-11-25");
        assert!(
            w.at.ends_with(&format!("pages/date=2025-11-25/{name}")),
            "{}",
            w.at
        );
        assert!(name.starts_with("part-") && name.ends_with("-0000000000000007.parquet"));
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");

        let file = std::fs::File::open(dir.join(&name)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let kv = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .clone();
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        assert_eq!(get(meta::HLL_LG_K).as_deref(), Some("12"));
        assert_eq!(get(meta::HLL_TYPE).as_deref(), Some("HLL_4"));
        assert_eq!(get(meta::SCHEMA_VERSION).as_deref(), Some("3"));
        assert_eq!(get(meta::UNIQUENESS_WINDOW).as_deref(), Some("day"));
        let rg = reader.metadata().row_group(0);
        assert_eq!(rg.sorting_columns().map(Vec::len), Some(3));
        assert_eq!(
            rg.column(0).compression(),
            Compression::ZSTD(ZstdLevel::default())
        );
        let back: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].columns(), batch.columns());
        assert_eq!(back[0].schema().fields(), batch.schema().fields());
    }

    #[test]
    fn a_file_put_again_under_its_name_is_found_not_doubled() {
        let store = Store::in_memory();
        let name = file_name(new_flush_id());
        let first = write_file(&store, Table::Pages, date(), 12, &name, &batch()).unwrap();
        let again = write_file(&store, Table::Pages, date(), 12, &name, &batch()).unwrap();
        assert!(first.new && !again.new);
        assert_eq!(store.list("pages/date=2025-11-25").unwrap().files, [name]);
    }

    #[test]
    fn stale_temporaries_are_removed_and_files_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pages/date=2025-11-25");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".part-1-2.parquet.tmp"), "torn").unwrap();
        std::fs::write(dir.join("part-1-4.parquet#3"), "staged").unwrap();
        std::fs::write(dir.join("part-1-3.parquet"), "kept").unwrap();
        let store = Store::local(tmp.path()).unwrap();
        assert_eq!(remove_stale_temporaries(&store, Table::Pages.name()), 2);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["part-1-3.parquet"]);
    }

    #[test]
    fn unwritable_dirs_are_errors_with_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("pages");
        std::fs::write(&blocker, "a file where a folder should be").unwrap();
        let store = Store::local(tmp.path()).unwrap();
        let b = Buckets::new(12).unwrap();
        let batch = b.to_record_batch(Table::Pages).unwrap();
        let e = write_file(&store, Table::Pages, date(), 12, "part-x.parquet", &batch).unwrap_err();
        assert!(e.to_string().contains("pages"), "{e}");
    }
}
