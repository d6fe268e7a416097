//! Finding and opening the files of a range: the documented layout
//! (`<table>/date=YYYY-MM-DD/*.parquet`, rollups under `<table>_daily/`)
//! and each file's metadata, nothing else.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch, StringArray};
use chrono::NaiveDate;
use footfall_schemas::tables::{SCHEMA_VERSION, Table, meta};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaDataReader;

use crate::{Dimension, Error};

/// The files to read for a table from `from` to `to`: for each day, its
/// daily rollup when one covers exactly the hourly files present (and the
/// report does not need hours), otherwise those hourly files. Hidden files
/// (writes in progress) are never read.
pub(crate) fn files_in_range(
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

/// The names of the entries of `dir` (none if it is absent).
fn entry_names(dir: &Path) -> Result<Vec<String>, Error> {
    let io = |source| Error::Io {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io(source)),
    };
    entries
        .map(|e| {
            e.map(|e| e.file_name().to_string_lossy().into_owned())
                .map_err(io)
        })
        .collect()
}

/// Sorted names of the visible `*.parquet` files in `dir` (none if absent).
pub(crate) fn visible_parquet(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = entry_names(dir)?
        .into_iter()
        .filter(|n| n.ends_with(".parquet") && !n.starts_with('.'))
        .collect();
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
pub(crate) fn read(
    path: &Path,
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
    read_columns(path, expected, &wanted)
}

/// Opens a file, checks its metadata (see [`check_metadata`]) and reads
/// the named columns of it.
fn read_columns(
    path: &Path,
    expected: Option<u8>,
    wanted: &[&str],
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

/// The UTC days that have a `date=YYYY-MM-DD` folder of `table`, sorted.
/// Folders of another name (a stray copy, `date=x`) are not partitions.
pub(crate) fn partition_dates(data_dir: &Path, table: Table) -> Result<Vec<NaiveDate>, Error> {
    let mut dates: Vec<NaiveDate> = entry_names(&data_dir.join(table.name()))?
        .iter()
        .filter_map(|n| n.strip_prefix("date="))
        .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .collect();
    dates.sort();
    Ok(dates)
}

/// The distinct sites of one file, after the same metadata checks as
/// [`read`]; only the `site` column is read.
pub(crate) fn read_sites(path: &Path) -> Result<Vec<String>, Error> {
    let (_, batches) = read_columns(path, None, &["site"])?;
    let mut sites: Vec<String> = Vec::new();
    for batch in batches {
        let column = batch
            .column_by_name("site")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| Error::NotOurs {
                path: path.to_owned(),
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
