//! Finding and opening the files of a range: the documented layout
//! (`<table>/date=YYYY-MM-DD/*.parquet`, rollups under `<table>_daily/`)
//! and each file's metadata, nothing else.

use std::path::PathBuf;

use arrow_array::{Array, RecordBatch, StringArray};
use bytes::Bytes;
use chrono::NaiveDate;
use footfall_schemas::tables::{SCHEMA_VERSION, Table, meta};
use footfall_storage::Store;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaDataReader;

use crate::{Dimension, Error};

/// The files (keys) to read for a table from `from` to `to`: for each day,
/// its daily rollup when there is one (and the report does not need
/// hours) plus the hourly files it does not cover (written after it);
/// otherwise the hourly files. A rollup whose covered files are not all
/// present any more (removed by hand) is not used. Hidden files are never
/// read.
pub(crate) fn files_in_range(
    store: &Store,
    table: Table,
    from: NaiveDate,
    to: NaiveDate,
    use_rollups: bool,
) -> Result<(Vec<String>, usize), Error> {
    let mut files = Vec::new();
    let mut rollups = 0;
    let mut day = from;
    while day <= to {
        let date = format!("date={}", day.format("%Y-%m-%d"));
        let hourly_dir = format!("{}/{date}", table.name());
        let hourly = store.parquet_files(&hourly_dir)?;
        let mut uncovered: Vec<&String> = hourly.iter().collect();
        if use_rollups && !hourly.is_empty() {
            let daily_dir = format!("{}/{date}", table.daily_name());
            for name in store.parquet_files(&daily_dir)? {
                let key = format!("{daily_dir}/{name}");
                let covers = rollup_covers(store, &key)?.unwrap_or_default();
                let covered: Vec<&str> = covers.split(',').collect();
                if covered.iter().all(|c| hourly.iter().any(|h| h == c)) {
                    files.push(key);
                    rollups += 1;
                    uncovered.retain(|h| !covered.contains(&h.as_str()));
                    break;
                }
            }
        }
        files.extend(uncovered.into_iter().map(|n| format!("{hourly_dir}/{n}")));
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    Ok((files, rollups))
}

/// The object at `key`, which was listed a moment ago.
fn fetch(store: &Store, key: &str) -> Result<Bytes, Error> {
    store.get(key)?.ok_or_else(|| Error::NotOurs {
        path: store.show(key).into(),
        what: "listed, then gone".to_owned(),
    })
}

/// The hourly files a daily rollup covers, from its footer.
fn rollup_covers(store: &Store, key: &str) -> Result<Option<String>, Error> {
    let bytes = fetch(store, key)?;
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

/// Opens a file once: checks its schema version and `lg_k` against the
/// files read before it, then reads the columns a report needs. Returns the
/// file's `lg_k` and its batches.
pub(crate) fn read(
    store: &Store,
    key: &str,
    expected: Option<u8>,
    by: Option<Dimension>,
    table: Table,
    filtered: &[&'static str],
) -> Result<(u8, Vec<RecordBatch>), Error> {
    let mut wanted = vec![
        "site",
        by.map_or("site", Dimension::column),
        "visitors",
        // A rollup has `day` where hourly files have `hour`.
        if by == Some(Dimension::Day) {
            "day"
        } else {
            "site"
        },
    ];
    wanted.extend(table.counts().iter().map(|c| c.name()));
    wanted.extend(filtered);
    read_columns(store, key, expected, &wanted)
}

/// Opens a file, checks its metadata (see [`check_metadata`]) and reads
/// the named columns of it.
fn read_columns(
    store: &Store,
    key: &str,
    expected: Option<u8>,
    wanted: &[&str],
) -> Result<(u8, Vec<RecordBatch>), Error> {
    let path = PathBuf::from(store.show(key));
    let parquet_err = |source| Error::Parquet {
        path: path.clone(),
        source,
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(fetch(store, key)?).map_err(parquet_err)?;
    let lg_k = check_metadata(
        &path,
        builder.metadata().file_metadata().key_value_metadata(),
        expected,
    )?;
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
    path: &std::path::Path,
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

/// The UTC days that have a `date=YYYY-MM-DD` folder of `table`, sorted.
/// Folders of another name (a stray copy, `date=x`) are not partitions.
pub(crate) fn partition_dates(store: &Store, table: Table) -> Result<Vec<NaiveDate>, Error> {
    let mut dates: Vec<NaiveDate> = store
        .list(table.name())?
        .dirs
        .iter()
        .filter_map(|n| n.strip_prefix("date="))
        .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .collect();
    dates.sort();
    Ok(dates)
}

/// The distinct sites of one file, after the same metadata checks as
/// [`read`]; only the `site` column is read.
pub(crate) fn read_sites(store: &Store, key: &str) -> Result<Vec<String>, Error> {
    let (_, batches) = read_columns(store, key, None, &["site"])?;
    let mut sites: Vec<String> = Vec::new();
    for batch in batches {
        let column = batch
            .column_by_name("site")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| Error::NotOurs {
                path: store.show(key).into(),
                what: "no string column site".to_owned(),
            })?;
        for site in column.iter().flatten() {
            if !sites.iter().any(|s| s == site) {
                sites.push(site.to_owned());
            }
        }
    }
    Ok(sites)
}
