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
//! rows whose table's date partition holds a file with that id were written
//! and are dropped; the others were not, and are restored.

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

use crate::buckets::{Bucket, Buckets, DimText, MAX_DIMS, Row, date_of};
use crate::error::Error;
use crate::writer::{flush_token, partition_dir};
use footfall_schemas::tables::MAX_COUNTS;
use footfall_schemas::tables::Table;

const FILE: &str = "checkpoint";
/// 3: every count of a row (`c0`..`c6`, in its table's order). 2: rows of
/// every table (`table`, dimensions `d0`..`d3`) with `views` and
/// `entries`. 1: `pages` rows only (`page`). The older ones are still read,
/// so an upgrade after a crash loses nothing.
const VERSION: &str = "3";
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
    let mut fields = vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("site", DataType::Utf8, false),
        Field::new("hour", DataType::Int64, false),
    ];
    fields.extend((0..MAX_DIMS).map(|i| Field::new(format!("d{i}"), DataType::Utf8, true)));
    fields.extend((0..MAX_COUNTS).map(|i| Field::new(format!("c{i}"), DataType::Int64, false)));
    fields.extend([
        Field::new("visitors", DataType::Binary, false),
        Field::new("pending", DataType::Boolean, false),
    ]);
    let schema = Arc::new(Schema::new(fields));
    let mut rows: Vec<(Row<'_>, bool)> = Vec::new();
    for b in unwritten {
        rows.extend(b.rows().map(|r| (r, false)));
    }
    if let Some(p) = &pending {
        rows.extend(p.buckets.rows().map(|r| (r, true)));
    }
    // The sketch as it is, HIP state included: a restored bucket goes on
    // folding exactly as if there had been no crash.
    let images: Vec<Vec<u8>> = rows
        .iter()
        .map(|(r, _)| r.bucket.visitors.to_sketch(lg_k).serialize())
        .collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(r, _)| r.table.name()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(r, _)| r.site),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(r, _)| r.hour),
        )),
    ];
    for i in 0..MAX_DIMS {
        columns.push(Arc::new(StringArray::from_iter(
            rows.iter().map(|(r, _)| r.dims[i]),
        )));
    }
    for i in 0..MAX_COUNTS {
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(r, _)| r.bucket.counts[i]),
        )));
    }
    columns.extend([
        Arc::new(BinaryArray::from_iter_values(images.iter())) as ArrayRef,
        Arc::new(BooleanArray::from_iter(rows.iter().map(|(_, p)| Some(*p)))),
    ]);
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
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // Aggregates only, but the owner's alone, like the rest of `_state`.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&tmp).map_err(Error::io("creating", &tmp))?;
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
    let version = get(KEY_VERSION);
    if !matches!(version.as_deref(), Some("1" | "2" | "3")) {
        return Err(corrupt(format!("unknown version {version:?}")));
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
    // (table, date) partitions checked for a file of the interrupted flush,
    // and whether they hold one.
    let mut written = std::collections::BTreeMap::new();
    for batch in reader.build().map_err(parquet_err)? {
        let batch = batch.map_err(|e| parquet_err(e.into()))?;
        let bad = |name: &str| corrupt(format!("column {name} missing or of another type"));
        use crate::column;
        let strings = |name: &str| column::<StringArray>(&batch, name).ok_or_else(|| bad(name));
        let ints = |name: &str| column::<Int64Array>(&batch, name).ok_or_else(|| bad(name));
        // Version 1 had no table column and one dimension, `page`.
        let tables = column::<StringArray>(&batch, "table");
        let dims: Vec<&StringArray> = if tables.is_some() {
            (0..MAX_DIMS)
                .map(|i| strings(&format!("d{i}")))
                .collect::<Result<_, _>>()?
        } else {
            vec![strings("page")?]
        };
        let (sites, hours) = (strings("site")?, ints("hour")?);
        // Version 3 has every count; 1 and 2 had `views` and `entries`
        // (a source's landings were both).
        let counts: Option<Vec<&Int64Array>> = (0..MAX_COUNTS)
            .map(|i| column::<Int64Array>(&batch, &format!("c{i}")))
            .collect();
        let legacy = match counts {
            Some(_) => None,
            None => Some((ints("views")?, ints("entries")?)),
        };
        let sketches = column::<BinaryArray>(&batch, "visitors").ok_or_else(|| bad("visitors"))?;
        let pending = column::<BooleanArray>(&batch, "pending").ok_or_else(|| bad("pending"))?;
        for i in 0..batch.num_rows() {
            let table = match tables {
                None => Table::Pages,
                Some(t) => Table::ALL
                    .into_iter()
                    .find(|table| table.name() == t.value(i))
                    .ok_or_else(|| corrupt(format!("row {i}: unknown table {:?}", t.value(i))))?,
            };
            let hour = hours.value(i);
            if pending.value(i) {
                let date = date_of(hour);
                let was_written = *written.entry((table, date)).or_insert_with(|| {
                    pending_flush
                        .as_deref()
                        .is_some_and(|token| partition_has(data_dir, table, date, token))
                });
                if was_written {
                    already_written += 1;
                    continue;
                }
            }
            let sketch = HllSketch::deserialize(sketches.value(i))
                .map_err(|e| corrupt(format!("row {i}: not an HLL sketch: {e}")))?;
            let mut text: DimText<'_> = [None; MAX_DIMS];
            for (slot, column) in text.iter_mut().zip(&dims) {
                *slot = column.is_valid(i).then(|| column.value(i));
            }
            buckets
                .insert(
                    table,
                    sites.value(i),
                    hour,
                    text,
                    Bucket::from_parts(row_counts(table, counts.as_deref(), legacy, i), sketch),
                )
                .ok_or_else(|| corrupt(format!("row {i}: invalid {} dimensions", table.name())))?;
        }
    }
    Ok(Some(Restored {
        buckets,
        already_written,
    }))
}

/// Row `i`'s counts, from the `c*` columns or, in an older checkpoint,
/// from `views` and `entries` as that table used them.
fn row_counts(
    table: Table,
    counts: Option<&[&Int64Array]>,
    legacy: Option<(&Int64Array, &Int64Array)>,
    i: usize,
) -> [i64; MAX_COUNTS] {
    let mut out = [0; MAX_COUNTS];
    match (counts, legacy) {
        (Some(columns), _) => {
            for (slot, column) in out.iter_mut().zip(columns) {
                *slot = column.value(i);
            }
        }
        (None, Some((views, entries))) => match table {
            Table::Pages => out[..2].copy_from_slice(&[views.value(i), entries.value(i)]),
            Table::Sources => out[0] = entries.value(i),
            _ => out[0] = views.value(i),
        },
        (None, None) => {}
    }
    out
}

fn partition_has(data_dir: &Path, table: Table, date: chrono::NaiveDate, token: &str) -> bool {
    let dir = partition_dir(data_dir, table, date);
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
    use footfall_schemas::{Country, Visit, VisitorKey};

    const T0: i64 = 1_764_079_200; // 2025-11-25T14:00:00Z

    fn buckets(visits: &[(&str, i64, u64)]) -> Buckets {
        let mut b = Buckets::new(12).unwrap().with_countries(true);
        for &(page, time, visitor) in visits {
            let key = VisitorKey::from_hash(visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            b.fold(&Visit {
                referrer: Some("ref.net"),
                country: Country::new("DE"),
                ..Visit::landing("a.com", time, page, key)
            });
        }
        b
    }

    fn views(b: &Buckets) -> Vec<(String, i64, i64)> {
        let mut v: Vec<_> = b
            .rows_of(Table::Pages)
            .map(|r| (r.dims[0].unwrap().to_owned(), r.hour, r.bucket.counts[0]))
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
        // Pages, sources, devices, countries: a row each per (hour, page).
        assert_eq!(save(&state, 12, &[&open, &failed], None).unwrap(), 3 * 4);
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
        let a = restored
            .buckets
            .rows()
            .find(|r| r.dims[0] == Some("/a"))
            .unwrap();
        assert_eq!(a.bucket.visitors.to_sketch(12).estimate().round(), 2.0);
        // Every table comes back, nulls and all.
        let tables = |b: &Buckets| {
            let mut rows: Vec<_> = b
                .rows()
                .map(|r| {
                    (
                        r.table,
                        r.hour,
                        r.dims.map(|d| d.map(str::to_owned)),
                        r.bucket.counts[0],
                        r.bucket.counts[1],
                    )
                })
                .collect();
            rows.sort();
            rows
        };
        let mut all = Buckets::new(12).unwrap().with_countries(true);
        all.merge(buckets(&[
            ("/a", T0, 1),
            ("/a", T0 + 1, 2),
            ("/b", T0 + 3600, 3),
        ]));
        all.merge(buckets(&[("/old", T0 - 7200, 4)]));
        assert_eq!(tables(&restored.buckets), tables(&all));

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

        // Crash after the pages file appeared but before the others: only
        // the pages rows were written. The pending mark is per (table, date).
        let write = |table: Table| {
            for (date, part) in closing.clone().split_by_date() {
                let batch = part.to_record_batch(table).unwrap();
                write_file(tmp.path(), table, date, 12, flush_id, &batch).unwrap();
            }
        };
        write(Table::Pages);
        let restored = load(&state, tmp.path(), Buckets::new(12).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(restored.already_written, 1);
        assert_eq!(views(&restored.buckets), [("/now".into(), T0 + 3600, 1)]);
        let pending_tables: Vec<Table> = restored
            .buckets
            .rows()
            .filter(|r| r.hour == T0)
            .map(|r| r.table)
            .collect();
        assert_eq!(pending_tables.len(), 3, "{pending_tables:?}");
        assert!(!pending_tables.contains(&Table::Pages));

        // Crash after every file appeared: all of the flush is dropped.
        for table in [Table::Sources, Table::Devices, Table::Countries] {
            write(table);
        }
        let restored = load(&state, tmp.path(), Buckets::new(12).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(restored.already_written, 4);
        assert_eq!(restored.buckets.rows().filter(|r| r.hour == T0).count(), 0);
        assert_eq!(views(&restored.buckets), [("/now".into(), T0 + 3600, 1)]);
    }

    /// Every row's table, hour, dims and counts, sorted.
    type Full = Vec<(Table, i64, [Option<String>; MAX_DIMS], [i64; MAX_COUNTS])>;

    fn full(b: &Buckets) -> Full {
        let mut rows: Full = b
            .rows()
            .map(|r| {
                (
                    r.table,
                    r.hour,
                    r.dims.map(|d| d.map(str::to_owned)),
                    r.bucket.counts,
                )
            })
            .collect();
        rows.sort();
        rows
    }

    fn with_visits() -> Buckets {
        let mut b = buckets(&[("/a", T0, 1), ("/b", T0 + 5, 1)]);
        b.fold_ended(&crate::sessions::Ended {
            site: "a.com",
            start: T0,
            entry_page: "/a",
            exit_page: "/b",
            landed: true,
            source: [Some("news.example"), None, None, None],
            pageviews: 2,
            bounce: false,
            duration_s: 5,
            visitor: footfall_schemas::VisitorKey::from_hash(1),
        });
        b.fold_engaged(&crate::sessions::Engaged {
            site: "a.com",
            start: T0,
            page: "/a",
            engaged_ms: 4_000,
            new_pair: true,
            scroll_added: 60,
            new_scroll: true,
        });
        b
    }

    #[test]
    fn visit_counts_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("_state");
        let open = with_visits();
        save(&state, 12, &[&open], None).unwrap();
        let restored = load(&state, tmp.path(), Buckets::new(12).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(full(&restored.buckets), full(&open));
        assert!(
            full(&open)
                .iter()
                .any(|r| r.0 == Table::Visits && r.3[..4] == [1, 0, 2, 5])
        );
    }

    #[test]
    fn custom_events_and_their_props_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("_state");
        let mut open = with_visits();
        for who in 1..=3 {
            open.fold_event(&footfall_schemas::CustomEvent {
                site: "a.com",
                time: T0 + 9,
                name: "Signup",
                page: "/a",
                props: &[("plan", "pro")],
                interactive: true,
                visitor: footfall_schemas::VisitorKey::from_hash(who),
            });
        }
        save(&state, 12, &[&open], None).unwrap();
        let restored = load(&state, tmp.path(), Buckets::new(12).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(full(&restored.buckets), full(&open));
        let rows = full(&open);
        for table in [Table::Events, Table::EventProps] {
            assert!(
                rows.iter().any(|r| r.0 == table && r.3[0] == 3),
                "{table:?} in {rows:?}"
            );
        }
    }

    #[test]
    fn a_checkpoint_of_the_version_before_is_read_as_it_meant() {
        // Version 2 had `views` and `entries` where version 3 has `c0`..:
        // a source's landings were both, other tables' views both.
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("_state");
        let open = buckets(&[("/a", T0, 1), ("/a", T0 + 1, 2), ("/b", T0 + 3600, 3)]);
        save(&state, 12, &[&open], None).unwrap();
        let file = File::open(path(&state)).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let int = |name: &str| crate::column::<Int64Array>(&batch, name).unwrap().clone();
        let tables = crate::column::<StringArray>(&batch, "table")
            .unwrap()
            .clone();
        let (c0, c1) = (int("c0"), int("c1"));
        let entries: Int64Array = (0..batch.num_rows())
            .map(|i| match tables.value(i) {
                "pages" => c1.value(i),
                _ => c0.value(i),
            })
            .map(Some)
            .collect();
        let mut fields = vec![];
        let mut columns: Vec<ArrayRef> = vec![];
        for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
            match f.name().as_str() {
                "c0" => {
                    fields.push(Field::new("views", DataType::Int64, false));
                    columns.push(c.clone());
                    fields.push(Field::new("entries", DataType::Int64, false));
                    columns.push(Arc::new(entries.clone()));
                }
                n if n.starts_with('c') && n[1..].parse::<usize>().is_ok() => {}
                _ => {
                    fields.push(f.as_ref().clone());
                    columns.push(c.clone());
                }
            }
        }
        let old = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![
                KeyValue::new(KEY_VERSION.into(), "2".to_owned()),
                KeyValue::new(KEY_LG_K.into(), "12".to_owned()),
            ]))
            .build();
        let out = File::create(path(&state)).unwrap();
        let mut w = ArrowWriter::try_new(out, old.schema(), Some(props)).unwrap();
        w.write(&old).unwrap();
        w.close().unwrap();
        let restored = load(&state, tmp.path(), Buckets::new(12).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(full(&restored.buckets), full(&open));
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
