//! Crash safety: the aggregates not yet in a data file, saved atomically to
//! `_state/checkpoint` so that a `kill -9` loses at most one checkpoint
//! interval of views.
//!
//! Only aggregates are saved (the same rows a data file holds, sketches
//! included), never visits, addresses or keys. The file is Parquet, but its
//! name does not end in `.parquet` and it lives under `_state/`, so no
//! reader's glob ever picks it up.
//!
//! # Never counting twice
//!
//! A flush writes data files and then a new checkpoint without the rows it
//! wrote. A crash between the two would leave those rows in the checkpoint
//! as well as in a file. So before a flush writes anything, the checkpoint is
//! saved with the rows it is about to write marked *pending*, under a random
//! flush id that also goes into each data file's name. At restart, pending
//! rows whose date partition holds a file with that id were written and are
//! dropped; the others were not, and are restored.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use datasketches::hll::HllSketch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::buckets::{Buckets, PageBucket, date_of};
use crate::error::Error;
use crate::writer::{flush_token, partition_dir};
use footfall_schemas::tables::Table;

const FILE: &str = "checkpoint";
const VERSION: &str = "1";
const KEY_VERSION: &str = "footfall.checkpoint.version";
const KEY_FLUSH: &str = "footfall.checkpoint.pending_flush";
const KEY_LG_K: &str = "footfall.hll.lg_k";

/// Where the checkpoint of a data dir lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// A flush about to happen: its id and the buckets it will write.
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    pub flush_id: u64,
    pub buckets: &'a Buckets,
}

/// Saves `unwritten` (and the rows of a flush about to run, marked pending)
/// atomically: a temporary file, fsynced, renamed over the old checkpoint.
pub fn save(
    state_dir: &Path,
    lg_k: u8,
    unwritten: &[&Buckets],
    pending: Option<Pending<'_>>,
) -> Result<u64, Error> {
    fs::create_dir_all(state_dir).map_err(Error::io("creating", state_dir))?;
    let target = path(state_dir);
    let tmp = state_dir.join(format!("{FILE}.tmp"));
    let schema = Arc::new(Schema::new(vec![
        Field::new("site", DataType::Utf8, false),
        Field::new("hour", DataType::Int64, false),
        Field::new("page", DataType::Utf8, false),
        Field::new("views", DataType::Int64, false),
        Field::new("entries", DataType::Int64, false),
        Field::new("visitors", DataType::Binary, false),
        Field::new("pending", DataType::Boolean, false),
    ]));
    let mut rows: Vec<(&str, i64, &str, &PageBucket, bool)> = Vec::new();
    for b in unwritten {
        rows.extend(b.iter().map(|(s, h, p, b)| (s, h, p, b, false)));
    }
    if let Some(p) = &pending {
        rows.extend(p.buckets.iter().map(|(s, h, p, b)| (s, h, p, b, true)));
    }
    // The sketch as it is, HIP state included: a restored bucket goes on
    // folding exactly as if there had been no crash.
    let images: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| r.3.visitors.to_sketch(lg_k).serialize())
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3.views))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.3.entries),
        )),
        Arc::new(BinaryArray::from_iter_values(images.iter())),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.4)))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(Error::Arrow)?;
    let mut kv = vec![
        KeyValue::new(KEY_VERSION.into(), VERSION.to_string()),
        KeyValue::new(KEY_LG_K.into(), lg_k.to_string()),
    ];
    if let Some(p) = &pending {
        kv.push(KeyValue::new(KEY_FLUSH.into(), flush_token(p.flush_id)));
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(kv))
        .build();
    let parquet_err = |source| Error::Parquet {
        path: tmp.clone(),
        source,
    };
    let result = (|| {
        let file = File::create(&tmp).map_err(Error::io("creating", &tmp))?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(parquet_err)?;
        writer.write(&batch).map_err(parquet_err)?;
        let file = writer.into_inner().map_err(parquet_err)?;
        file.sync_all().map_err(Error::io("syncing", &tmp))?;
        fs::rename(&tmp, &target).map_err(Error::io("renaming into place", &target))?;
        if let Ok(dir) = File::open(state_dir) {
            let _ = dir.sync_all();
        }
        Ok(batch.num_rows() as u64)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Deletes the checkpoint (after a clean stop wrote everything).
pub fn remove(state_dir: &Path) -> Result<(), Error> {
    let target = path(state_dir);
    match fs::remove_file(&target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            what: "removing",
            path: target,
            source,
        }),
    }
}

/// What a checkpoint held that is not yet in any data file.
#[derive(Debug)]
pub struct Restored {
    pub buckets: Buckets,
    /// Rows of an interrupted flush that had already reached a data file.
    pub already_written: usize,
}

/// Reads the checkpoint, if any, into `into` (empty buckets with the data
/// dir's `lg_k` and limits), resolving an interrupted flush against the data
/// files present.
pub fn load(state_dir: &Path, data_dir: &Path, into: Buckets) -> Result<Option<Restored>, Error> {
    let target = path(state_dir);
    let file = match File::open(&target) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                what: "opening",
                path: target,
                source,
            });
        }
    };
    let parquet_err = |source| Error::Parquet {
        path: target.clone(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    let corrupt = |what: String| Error::Checkpoint {
        path: target.clone(),
        what,
    };
    if get(KEY_VERSION).as_deref() != Some(VERSION) {
        return Err(corrupt(format!("unknown version {:?}", get(KEY_VERSION))));
    }
    let lg_k = get(KEY_LG_K).and_then(|v| v.parse::<u8>().ok());
    if lg_k != Some(into.lg_k()) {
        return Err(corrupt(format!(
            "lg_k {lg_k:?}, the data dir uses {}",
            into.lg_k()
        )));
    }
    let pending_flush = get(KEY_FLUSH);

    let mut buckets = into;
    let mut already_written = 0;
    // Dates whose partition holds a file of the interrupted flush.
    let mut written_dates = BTreeSet::new();
    let mut checked_dates = BTreeSet::new();
    for batch in reader.build().map_err(parquet_err)? {
        let batch = batch.map_err(|e| parquet_err(e.into()))?;
        let col = |i: usize| batch.column(i).clone();
        let (sites, hours, pages, views, entries, sketches, pending) =
            (col(0), col(1), col(2), col(3), col(4), col(5), col(6));
        let bad = || corrupt("unexpected column types".into());
        let sites = sites
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(bad)?;
        let hours = hours
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(bad)?;
        let pages = pages
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(bad)?;
        let views = views
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(bad)?;
        let entries = entries
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(bad)?;
        let sketches = sketches
            .as_any()
            .downcast_ref::<BinaryArray>()
            .ok_or_else(bad)?;
        let pending = pending
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(bad)?;
        for i in 0..batch.num_rows() {
            let hour = hours.value(i);
            if pending.value(i) {
                let date = date_of(hour);
                if checked_dates.insert(date)
                    && let Some(token) = &pending_flush
                    && partition_has(data_dir, date, token)
                {
                    written_dates.insert(date);
                }
                if written_dates.contains(&date) {
                    already_written += 1;
                    continue;
                }
            }
            let sketch = HllSketch::deserialize(sketches.value(i))
                .map_err(|e| corrupt(format!("row {i}: not an HLL sketch: {e}")))?;
            buckets.insert(
                sites.value(i),
                hour,
                pages.value(i),
                PageBucket::from_parts(views.value(i), entries.value(i), sketch),
            );
        }
    }
    Ok(Some(Restored {
        buckets,
        already_written,
    }))
}

fn partition_has(data_dir: &Path, date: chrono::NaiveDate, token: &str) -> bool {
    let dir = partition_dir(data_dir, Table::Pages, date);
    fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && name.ends_with(".parquet") && name.contains(token)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::write_file;
    use footfall_schemas::{Visit, VisitorKey};

    const T0: i64 = 1_764_079_200; // 2025-11-25T14:00:00Z

    fn buckets(visits: &[(&str, i64, u64)]) -> Buckets {
        let mut b = Buckets::new(12).unwrap();
        for &(page, time, visitor) in visits {
            b.fold(&Visit {
                site: "a.com".into(),
                time,
                page: page.into(),
                referrer: None,
                entry: true,
                visitor: VisitorKey::from_hash(visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            });
        }
        b
    }

    fn views(b: &Buckets) -> Vec<(String, i64, i64)> {
        let mut v: Vec<_> = b
            .iter()
            .map(|(_, h, p, b)| (p.to_owned(), h, b.views))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn round_trips_unwritten_buckets() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("_state");
        let open = buckets(&[("/a", T0, 1), ("/a", T0 + 1, 2), ("/b", T0 + 3600, 3)]);
        let failed = buckets(&[("/old", T0 - 7200, 4)]);
        assert_eq!(save(&state, 12, &[&open, &failed], None).unwrap(), 3);
        assert!(!path(&state).to_string_lossy().ends_with(".parquet"));

        let restored = load(&state, tmp.path(), Buckets::new(12).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(restored.already_written, 0);
        assert_eq!(
            views(&restored.buckets),
            [
                ("/a".into(), T0, 2),
                ("/b".into(), T0 + 3600, 1),
                ("/old".into(), T0 - 7200, 1)
            ]
        );
        let (_, _, _, a) = restored.buckets.iter().find(|r| r.2 == "/a").unwrap();
        assert_eq!(a.visitors.to_sketch(12).estimate().round(), 2.0);

        remove(&state).unwrap();
        assert!(
            load(&state, tmp.path(), Buckets::new(12).unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_flush_interrupted_after_its_file_is_not_restored_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("_state");
        let open = buckets(&[("/now", T0 + 3600, 1)]);
        let closing = buckets(&[("/done", T0, 2), ("/done", T0 + 5, 3)]);
        let flush_id = 0xfeed_beef;
        save(
            &state,
            12,
            &[&open],
            Some(Pending {
                flush_id,
                buckets: &closing,
            }),
        )
        .unwrap();

        // Crash before the data file appeared: the pending rows come back.
        let restored = load(&state, tmp.path(), Buckets::new(12).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(restored.already_written, 0);
        assert_eq!(views(&restored.buckets).len(), 2);

        // Crash after it appeared: they were written, and are dropped.
        for (date, part) in closing.split_by_date() {
            write_file(
                tmp.path(),
                Table::Pages,
                date,
                12,
                flush_id,
                &part.to_record_batch().unwrap(),
            )
            .unwrap();
        }
        let restored = load(&state, tmp.path(), Buckets::new(12).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(restored.already_written, 1);
        assert_eq!(views(&restored.buckets), [("/now".into(), T0 + 3600, 1)]);
    }

    #[test]
    fn a_checkpoint_of_another_lg_k_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("_state");
        save(&state, 12, &[&buckets(&[("/a", T0, 1)])], None).unwrap();
        let e = load(&state, tmp.path(), Buckets::new(10).unwrap()).unwrap_err();
        assert!(e.to_string().contains("lg_k"), "{e}");
    }
}
