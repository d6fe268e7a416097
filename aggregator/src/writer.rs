//! Writing one table's rows for one UTC date as an immutable Parquet file.
//!
//! A file is written under a hidden temporary name (`.part-….parquet.tmp`,
//! which no `*.parquet` glob and no Spark/Hive reader picks up), fsynced,
//! renamed into place and the folder fsynced: readers see the whole file or
//! nothing, and a file once visible is never rewritten.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::RecordBatch;
use chrono::NaiveDate;
use footfall_schemas::tables::Table;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::Error;

/// What one write produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// The visible file.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: usize,
    /// Its size on disk.
    pub bytes: u64,
}

/// The folder of a table's partition: `<data-dir>/<table>/date=YYYY-MM-DD`.
pub fn partition_dir(data_dir: &Path, table: Table, date: NaiveDate) -> PathBuf {
    date_dir(data_dir, table.name(), date)
}

/// `<data-dir>/<folder>/date=YYYY-MM-DD`, the Hive-style partition every
/// table and rollup uses.
pub fn date_dir(data_dir: &Path, folder: &str, date: NaiveDate) -> PathBuf {
    data_dir
        .join(folder)
        .join(format!("date={}", date.format("%Y-%m-%d")))
}

/// Writes `batch` as a new file in the table's partition for `date`.
///
/// `flush_id` goes into the file name, so that a checkpoint can tell whether
/// an interrupted flush reached the disk (see [`crate::checkpoint`]).
pub fn write_file(
    data_dir: &Path,
    table: Table,
    date: NaiveDate,
    lg_k: u8,
    flush_id: u64,
    batch: &RecordBatch,
) -> Result<Written, Error> {
    let kv = table
        .metadata(lg_k)
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect();
    publish(
        &partition_dir(data_dir, table, date),
        &unique_name("part", flush_id),
        kv,
        batch,
    )
}

/// Makes `batch` visible as `dir/name` with this footer metadata, or fails
/// leaving nothing visible: a hidden temporary, fsynced, renamed (over a
/// file of that name, atomically), then the folder fsynced.
pub(crate) fn publish(
    dir: &Path,
    name: &str,
    kv: Vec<KeyValue>,
    batch: &RecordBatch,
) -> Result<Written, Error> {
    fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    // Opened before the file is written: once the rename has made the file
    // visible, nothing may fail in a way that makes the caller write the
    // same rows again.
    let dir_handle = File::open(dir).map_err(Error::io("opening", dir))?;
    let path = dir.join(name);
    // Unique, so two writers of one name (two rollup runs) never share a
    // temporary; the rename makes the last one win, whole.
    let tmp = dir.join(format!(".{name}.{}.tmp", flush_token(new_flush_id())));

    let bytes = match write_tmp(&tmp, kv, batch).and_then(|bytes| {
        fs::rename(&tmp, &path)
            .map(|()| bytes)
            .map_err(Error::io("renaming into place", &path))
    }) {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // The rename is durable only once the folder's entry is on disk. If that
    // sync fails the file is still visible and complete; reporting an error
    // would make the caller retry and count its rows twice.
    if let Err(e) = dir_handle.sync_all() {
        tracing::warn!(error = %e, dir = %dir.display(), "folder sync failed after publishing a file");
    }
    Ok(Written {
        path,
        rows: batch.num_rows(),
        bytes,
    })
}

/// Removes temporary files that a crash left in a table's partitions
/// (`.part-….parquet.….tmp`, `.rollup.parquet.….tmp`; `folder` is a table's
/// name or its daily rollup's): they were never visible and never will be.
pub fn remove_stale_temporaries(data_dir: &Path, folder: &str) -> usize {
    let Ok(partitions) = fs::read_dir(data_dir.join(folder)) else {
        return 0;
    };
    let mut removed = 0;
    for partition in partitions.flatten() {
        let Ok(files) = fs::read_dir(partition.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.')
                && name.ends_with(".tmp")
                && name.contains(".parquet.")
                && fs::remove_file(file.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

fn write_tmp(tmp: &Path, kv: Vec<KeyValue>, batch: &RecordBatch) -> Result<u64, Error> {
    let file = File::create(tmp).map_err(Error::io("creating", tmp))?;
    let parquet_err = |source| Error::Parquet {
        path: tmp.to_owned(),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(properties(kv))).map_err(parquet_err)?;
    writer.write(batch).map_err(parquet_err)?;
    let file = writer.into_inner().map_err(parquet_err)?;
    file.sync_all().map_err(Error::io("syncing", tmp))?;
    let bytes = file
        .metadata()
        .map_err(Error::io("reading size of", tmp))?
        .len();
    Ok(bytes)
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

/// `<kind>-<unix millis>-<id>.parquet`: unique across flushes, restarts
/// and collectors sharing a folder (the id is 64 random bits), and in time
/// order when listed.
pub(crate) fn unique_name(kind: &str, id: u64) -> String {
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

    #[test]
    fn round_trips_through_parquet_with_metadata() {
        let mut b = Buckets::new(12).unwrap();
        for i in 0..50u64 {
            let key = VisitorKey::from_hash(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let page = format!("/p{}", i % 5);
            b.fold(&Visit {
                entry: i % 2 == 0,
                ..Visit::landing("a.com", 1_764_079_200 + i as i64, &page, key)
            });
        }
        let batch = b.to_record_batch(Table::Pages).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let date = NaiveDate::from_ymd_opt(2025, 11, 25).unwrap();
        let w = write_file(tmp.path(), Table::Pages, date, 12, 7, &batch).unwrap();
        assert_eq!(w.rows, 5);
        assert!(w.path.starts_with(tmp.path().join("pages/date=2025-11-25")));
        assert!(w.path.extension().is_some_and(|e| e == "parquet"));
        let names: Vec<_> = fs::read_dir(w.path.parent().unwrap())
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");

        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&w.path).unwrap()).unwrap();
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
    fn stale_temporaries_are_removed_and_files_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = partition_dir(
            tmp.path(),
            Table::Pages,
            NaiveDate::from_ymd_opt(2025, 11, 25).unwrap(),
        );
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".part-1-2.parquet.tmp"), "torn").unwrap();
        fs::write(dir.join("part-1-3.parquet"), "kept").unwrap();
        assert_eq!(remove_stale_temporaries(tmp.path(), Table::Pages.name()), 1);
        let left: Vec<_> = fs::read_dir(&dir)
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
        fs::write(&blocker, "a file where a folder should be").unwrap();
        let b = Buckets::new(12).unwrap();
        let batch = b.to_record_batch(Table::Pages).unwrap();
        let date = NaiveDate::from_ymd_opt(2025, 11, 25).unwrap();
        let e = write_file(tmp.path(), Table::Pages, date, 12, 7, &batch).unwrap_err();
        assert!(e.to_string().contains("pages"), "{e}");
    }
}
