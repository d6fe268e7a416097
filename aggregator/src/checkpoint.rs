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
//! saved with the rows it is about to write marked *pending*, each with the
//! name of the file it goes to (unique: a random flush id is in it). Rows
//! whose write failed stay pending under that name. At restart, pending
//! rows are put again under their names with a create-only put: a file
//! that had landed is found there and nothing is written twice; one that
//! had not is written now. No listing is needed, so a restart does not
//! depend on the store answering.

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
use crate::writer::partition_key;
use chrono::NaiveDate;
use footfall_schemas::tables::MAX_COUNTS;
use footfall_schemas::tables::Table;
use footfall_storage::Store;

const FILE: &str = "checkpoint";
/// 4: a pending row names its file (`file`). 3: every count of a row
/// (`c0`..`c6`, in its table's order); pending rows marked by `pending`
/// under one flush id in the footer. 2: rows of
/// every table (`table`, dimensions `d0`..`d3`) with `views` and
/// `entries`. 1: `pages` rows only (`page`). The older ones are still read,
/// so an upgrade after a crash loses nothing.
const VERSION: &str = "4";
const KEY_VERSION: &str = "footfall.checkpoint.version";
const KEY_FLUSH: &str = "footfall.checkpoint.pending_flush";
const KEY_LG_K: &str = "footfall.hll.lg_k";

/// Where the checkpoint of a data dir lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Rows of one table and date on their way to one file, not yet known to
/// be in it.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The file's name in its partition (`part-….parquet`).
    pub file: String,
    pub table: Table,
    pub date: NaiveDate,
    /// Only rows of `table` on `date`.
    pub buckets: Buckets,
}

/// Saves `unwritten` (open buckets) and `pending` (rows on their way to a
/// file) atomically: a temporary file, fsynced, renamed over the old
/// checkpoint.
pub fn save(
    state_dir: &Path,
    lg_k: u8,
    unwritten: &[&Buckets],
    pending: &[Pending],
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
        Field::new("file", DataType::Utf8, true),
    ]);
    let schema = Arc::new(Schema::new(fields));
    let mut rows: Vec<(Row<'_>, Option<&str>)> = Vec::new();
    for b in unwritten {
        rows.extend(b.rows().map(|r| (r, None)));
    }
    for p in pending {
        rows.extend(p.buckets.rows().map(|r| (r, Some(p.file.as_str()))));
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
        Arc::new(StringArray::from_iter(rows.iter().map(|(_, f)| *f))),
    ]);
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(Error::Arrow)?;
    let kv = vec![
        KeyValue::new(KEY_VERSION.into(), VERSION.to_string()),
        KeyValue::new(KEY_LG_K.into(), lg_k.to_string()),
    ];
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

/// What a checkpoint held that is not yet known to be in any data file.
#[derive(Debug)]
pub struct Restored {
    /// Rows no flush had taken.
    pub buckets: Buckets,
    /// Rows on their way to a file, by file: put them again under the same
    /// names.
    pub pending: Vec<Pending>,
    /// Rows of an interrupted flush of an older version (3 and before)
    /// found already in a data file.
    pub already_written: usize,
}

/// Reads the checkpoint, if any, into `into` (empty buckets with the data
/// dir's `lg_k` and limits). An older version's interrupted flush is
/// resolved against the files in `store`.
pub fn load(state_dir: &Path, store: &Store, into: Buckets) -> Result<Option<Restored>, Error> {
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
    if !matches!(version.as_deref(), Some("1" | "2" | "3" | "4")) {
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

    let empty = into.clone();
    let mut buckets = into;
    let mut pending_parts: std::collections::BTreeMap<(String, Table, NaiveDate), Buckets> =
        std::collections::BTreeMap::new();
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
        // Version 4 names a pending row's file; before, `pending` marked
        // the rows of the one flush named in the footer.
        let files = column::<StringArray>(&batch, "file");
        let pending = match files {
            Some(_) => None,
            None => Some(column::<BooleanArray>(&batch, "pending").ok_or_else(|| bad("pending"))?),
        };
        for i in 0..batch.num_rows() {
            let table = match tables {
                None => Table::Pages,
                Some(t) => Table::ALL
                    .into_iter()
                    .find(|table| table.name() == t.value(i))
                    .ok_or_else(|| corrupt(format!("row {i}: unknown table {:?}", t.value(i))))?,
            };
            let hour = hours.value(i);
            if pending.is_some_and(|p| p.value(i)) {
                let date = date_of(hour);
                let was_written = match written.get(&(table, date)) {
                    Some(&was) => was,
                    None => {
                        let was = match pending_flush.as_deref() {
                            Some(token) => partition_has(store, table, date, token)?,
                            None => false,
                        };
                        written.insert((table, date), was);
                        was
                    }
                };
                if was_written {
                    already_written += 1;
                    continue;
                }
            }
            let into = match files.filter(|f| f.is_valid(i)) {
                Some(f) => pending_parts
                    .entry((f.value(i).to_owned(), table, date_of(hour)))
                    .or_insert_with(|| empty.clone()),
                None => &mut buckets,
            };
            let sketch = HllSketch::deserialize(sketches.value(i))
                .map_err(|e| corrupt(format!("row {i}: not an HLL sketch: {e}")))?;
            let mut text: DimText<'_> = [None; MAX_DIMS];
            for (slot, column) in text.iter_mut().zip(&dims) {
                *slot = column.is_valid(i).then(|| column.value(i));
            }
            into.insert(
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
        pending: pending_parts
            .into_iter()
            .map(|((file, table, date), buckets)| Pending {
                file,
                table,
                date,
                buckets,
            })
            .collect(),
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

/// Whether a table's partition holds a file of the flush `token` (how a
/// checkpoint of version 3 or before is resolved).
fn partition_has(store: &Store, table: Table, date: NaiveDate, token: &str) -> Result<bool, Error> {
    Ok(store
        .parquet_files(&partition_key(table, date))?
        .iter()
        .any(|name| name.contains(token)))
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(save(&state, 12, &[&open, &failed], &[]).unwrap(), 3 * 4);
        assert!(!path(&state).to_string_lossy().ends_with(".parquet"));

        let restored = load(
            &state,
            &Store::local(tmp.path()).unwrap(),
            Buckets::new(12).unwrap(),
        )
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
            load(
                &state,
                &Store::local(tmp.path()).unwrap(),
                Buckets::new(12).unwrap()
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn rows_on_their_way_to_a_file_come_back_with_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("_state");
        let open = buckets(&[("/now", T0 + 3600, 1)]);
        let closing = buckets(&[("/done", T0, 2), ("/done", T0 + 5, 3)]);
        let date = date_of(T0);
        let file = crate::writer::file_name(0xfeed_beef);
        let pending: Vec<Pending> = [Table::Pages, Table::Sources]
            .into_iter()
            .map(|table| Pending {
                file: file.clone(),
                table,
                date,
                buckets: closing.clone().only(&[table]),
            })
            .collect();
        save(&state, 12, &[&open], &pending).unwrap();

        let restored = load(
            &state,
            &Store::local(tmp.path()).unwrap(),
            Buckets::new(12).unwrap(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(views(&restored.buckets), [("/now".into(), T0 + 3600, 1)]);
        let back: Vec<_> = restored
            .pending
            .iter()
            .map(|p| (p.file.as_str(), p.table, p.date, full(&p.buckets)))
            .collect();
        let sent: Vec<_> = pending
            .iter()
            .map(|p| (p.file.as_str(), p.table, p.date, full(&p.buckets)))
            .collect();
        assert_eq!(back, sent);
    }

    #[test]
    fn a_version_3_flush_interrupted_after_its_file_is_not_restored_twice() {
        // Version 3 marked the rows of one flush pending, its id in the
        // footer; a restart looks for that id among the files present.
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("_state");
        let store = Store::local(tmp.path()).unwrap();
        let open = buckets(&[("/now", T0 + 3600, 1)]);
        let closing = buckets(&[("/done", T0, 2), ("/done", T0 + 5, 3)]);
        let flush_id = 0xfeed_beef;
        save(&state, 12, &[&open, &closing], &[]).unwrap();
        rewrite_as_version_3(&state, &closing, flush_id);

        let restored = load(&state, &store, Buckets::new(12).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(restored.already_written, 0);
        assert_eq!(views(&restored.buckets).len(), 2);

        // The pages file of that flush is there: its rows are not restored.
        let name = crate::writer::file_name(flush_id);
        let batch = closing.to_record_batch(Table::Pages).unwrap();
        crate::writer::write_file(&store, Table::Pages, date_of(T0), 12, &name, &batch).unwrap();
        let restored = load(&state, &store, Buckets::new(12).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(restored.already_written, 1);
        assert_eq!(views(&restored.buckets), [("/now".into(), T0 + 3600, 1)]);
        assert!(restored.pending.is_empty());
        let others = restored.buckets.rows().filter(|r| r.hour == T0).count();
        assert_eq!(others, 3, "sources, devices and countries of the flush");
    }

    /// Rewrites a version 4 checkpoint as version 3 wrote it: `pending`
    /// for the rows of `closing`, the flush id in the footer.
    fn rewrite_as_version_3(state: &Path, closing: &Buckets, flush_id: u64) {
        let file = File::open(path(state)).unwrap();
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let closing_hours: Vec<i64> = closing.rows().map(|r| r.hour).collect();
        let batch = &batches[0];
        let hours = crate::column::<Int64Array>(batch, "hour").unwrap();
        let pending = BooleanArray::from_iter(
            hours
                .iter()
                .map(|h| Some(closing_hours.contains(&h.unwrap()))),
        );
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        fields.pop();
        columns.pop();
        fields.push(Field::new("pending", DataType::Boolean, false));
        columns.push(Arc::new(pending));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![
                KeyValue::new(KEY_VERSION.into(), "3".to_string()),
                KeyValue::new(KEY_LG_K.into(), "12".to_string()),
                KeyValue::new(KEY_FLUSH.into(), crate::writer::flush_token(flush_id)),
            ]))
            .build();
        let out = File::create(path(state)).unwrap();
        let mut writer = ArrowWriter::try_new(out, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
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
        save(&state, 12, &[&open], &[]).unwrap();
        let restored = load(
            &state,
            &Store::local(tmp.path()).unwrap(),
            Buckets::new(12).unwrap(),
        )
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
        save(&state, 12, &[&open], &[]).unwrap();
        let restored = load(
            &state,
            &Store::local(tmp.path()).unwrap(),
            Buckets::new(12).unwrap(),
        )
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
        save(&state, 12, &[&open], &[]).unwrap();
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
        let restored = load(
            &state,
            &Store::local(tmp.path()).unwrap(),
            Buckets::new(12).unwrap(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(full(&restored.buckets), full(&open));
    }

    #[test]
    fn a_checkpoint_of_another_lg_k_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("_state");
        save(&state, 12, &[&buckets(&[("/a", T0, 1)])], &[]).unwrap();
        let e = load(
            &state,
            &Store::local(tmp.path()).unwrap(),
            Buckets::new(10).unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("lg_k"), "{e}");
    }
}
