//! Summing counts and unioning sketches of a range's files, split over the
//! cores, into a report's rows.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use arrow_array::{
    Array, BinaryArray, Date32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use chrono::DateTime;
use datasketches::hll::{HllSketch, HllType, HllUnion};
use footfall_schemas::tables::{DEFAULT_LG_K, OVERFLOW, Table};

use crate::scan::{files_in_range, read};
use crate::{Dimension, Error, Query, Report, Row, Stats};

struct Acc {
    count: i64,
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
    let table = q.by.map_or(Table::Pages, Dimension::table);
    let count_name = table.counts()[0].name();
    // An hourly series needs the hours; everything else can use rollups.
    let use_rollups = q.by != Some(Dimension::Hour);
    let (files, rollups) = files_in_range(&q.data_dir, table, q.from, q.to, use_rollups)?;
    // No countries data in the range: say why if it was never written.
    if files.is_empty() && table == Table::Countries && !q.data_dir.join(table.name()).exists() {
        return Err(Error::NoCountries {
            dir: q.data_dir.clone(),
        });
    }
    // The files are split between the cores; each part is merged on its
    // own and the parts' unions merged at the end. Union is associative
    // and the estimate is settled, so the split changes no number.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Part, Error>> = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|files| scope.spawn(move || read_part(q, files, count_name)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut lg_k: Option<(u8, PathBuf)> = None;
    let mut groups: HashMap<Option<String>, Acc> = HashMap::new();
    let mut stats = Stats {
        files: files.len(),
        rollups,
        rows: 0,
    };
    for part in parts {
        let part = part?;
        if let Some((part_lg_k, path)) = part.lg_k {
            match &lg_k {
                None => lg_k = Some((part_lg_k, path)),
                Some((expected, _)) if *expected == part_lg_k => {}
                Some((expected, _)) => {
                    return Err(Error::LgKMismatch {
                        path,
                        found: part_lg_k.to_string(),
                        expected: *expected,
                    });
                }
            }
        }
        stats.rows += part.rows;
        for (key, acc) in part.groups {
            match groups.entry(key) {
                Entry::Vacant(v) => {
                    v.insert(acc);
                }
                Entry::Occupied(mut o) => {
                    let mine = o.get_mut();
                    mine.count += acc.count;
                    mine.union.update(&acc.union.to_sketch(HllType::Hll8));
                }
            }
        }
    }
    let lg_k = lg_k.map(|(k, _)| k);
    if groups.is_empty() {
        // A quiet range of a known site is an answer (zero, or no rows),
        // so a script reading a day's numbers works on a day without any;
        // a site with no data at all is more likely a typo.
        let known: Vec<String> = crate::sites(&q.data_dir)?
            .into_iter()
            .map(|s| s.site)
            .collect();
        if !known.contains(&q.site) {
            return Err(Error::UnknownSite {
                site: q.site.clone(),
                dir: q.data_dir.clone(),
                known,
            });
        }
    }
    let lg_k = lg_k.unwrap_or(DEFAULT_LG_K);
    let estimate = |acc: &Acc| settled_estimate(&acc.union, lg_k).round() as u64;
    let min = q.min_visitors;
    let mut rows: Vec<Row> = Vec::with_capacity(groups.len());
    // Rows below `min` visitors, and the overflow row `(other)`, summed and
    // unioned into one `(other)` row.
    let mut hidden: Option<Acc> = None;
    let mut suppressed = 0;
    for (key, acc) in groups {
        let visitors = estimate(&acc);
        let overflow = key.as_deref() == Some(OVERFLOW);
        if min > 0 && (visitors < min || overflow) {
            suppressed += usize::from(!overflow);
            match &mut hidden {
                None => hidden = Some(acc),
                Some(h) => {
                    h.count += acc.count;
                    h.union.update(&acc.union.to_sketch(HllType::Hll8));
                }
            }
            continue;
        }
        rows.push(Row {
            key,
            count: acc.count,
            visitors,
        });
    }
    // `(other)` is itself shown only if it reaches the threshold.
    if let Some(h) = hidden {
        let visitors = estimate(&h);
        if visitors >= min {
            rows.push(Row {
                key: Some(OVERFLOW.to_owned()),
                count: h.count,
                visitors,
            });
        }
    }
    // Site totals are always one row: a quiet range's is zero (unless a
    // threshold hides it).
    if q.by.is_none() && rows.is_empty() && min == 0 {
        rows.push(Row {
            key: Some(q.site.clone()),
            count: 0,
            visitors: 0,
        });
    }
    if q.by.is_some_and(Dimension::is_time) {
        // A time series reads in time order; the keys are ISO 8601.
        rows.sort_by(|a, b| a.key.cmp(&b.key));
    } else {
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    }
    if let Some(n) = q.limit {
        rows.truncate(n);
    }
    Ok(Report {
        key_name: q.by.map_or("site", Dimension::name),
        count_name,
        null_label: q.by.map_or("(none)", Dimension::null_label),
        rows,
        // A time series' rows each lie within one day.
        spans_windows: q.from != q.to && !q.by.is_some_and(Dimension::is_time),
        suppressed,
        min_visitors: min,
        stats,
    })
}

/// The estimate of a union's registers by DataSketches' composite
/// estimator, whatever the union's history.
///
/// A union fed only small (list or set mode) sketches inserts their coupons
/// one by one and keeps the HIP estimator of an in-order sketch; once any
/// dense sketch is merged it switches to the composite estimator. Both are
/// within the sketch's error, but they differ by up to about 1 %, so the
/// same visitors would read differently from hourly files than from daily
/// rollups (whose sketches of busy keys are dense). Passing the result
/// through a fresh union twice marks it out of order, as the aggregator's
/// written sketches are: the number then depends on the visitors alone, not
/// on how the files happen to slice them.
fn settled_estimate(union: &HllUnion, lg_k: u8) -> f64 {
    let sketch = union.to_sketch(HllType::Hll8);
    match HllUnion::new(lg_k) {
        Ok(mut settled) => {
            settled.update(&sketch);
            settled.update(&sketch);
            settled.estimate()
        }
        Err(_) => union.estimate(),
    }
}

/// What one thread merged from its share of the files.
struct Part {
    /// The `lg_k` of its files and the first of them.
    lg_k: Option<(u8, PathBuf)>,
    groups: HashMap<Option<String>, Acc>,
    rows: u64,
}

/// Reads and merges some files, in order; every file must have the `lg_k`
/// of the first.
fn read_part(q: &Query, files: &[PathBuf], count_name: &'static str) -> Result<Part, Error> {
    let mut part = Part {
        lg_k: None,
        groups: HashMap::new(),
        rows: 0,
    };
    for file in files {
        let expected = part.lg_k.as_ref().map(|(k, _)| *k);
        let (file_lg_k, batches) = read(file, expected, q.by, count_name)?;
        part.lg_k.get_or_insert_with(|| (file_lg_k, file.clone()));
        for batch in batches {
            let mut folder = Folder {
                q,
                lg_k: file_lg_k,
                count_name,
                groups: &mut part.groups,
                file,
            };
            part.rows += folder.fold(&batch)?;
        }
    }
    Ok(part)
}

/// Folds the rows of one file's batches into the report's groups.
struct Folder<'a> {
    q: &'a Query,
    lg_k: u8,
    count_name: &'static str,
    groups: &'a mut HashMap<Option<String>, Acc>,
    file: &'a Path,
}

impl Folder<'_> {
    fn not_ours(&self, what: &str) -> Error {
        Error::NotOurs {
            path: self.file.to_owned(),
            what: what.to_owned(),
        }
    }

    fn column<'b, T: 'static>(
        &self,
        batch: &'b RecordBatch,
        name: &str,
        kind: &str,
    ) -> Result<&'b T, Error> {
        batch
            .column_by_name(name)
            .ok_or_else(|| self.not_ours(&format!("no column {name}")))?
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| self.not_ours(&format!("{name} is not {kind}")))
    }

    /// Folds the batch's rows of the site; returns how many.
    fn fold(&mut self, batch: &RecordBatch) -> Result<u64, Error> {
        let sites: &StringArray = self.column(batch, "site", "a string")?;
        let counts: &Int64Array = self.column(batch, self.count_name, "int64")?;
        let sketches: &BinaryArray = self.column(batch, "visitors", "binary")?;
        let by = self.q.by;
        let values: Option<&StringArray> = match by {
            Some(d) if !d.is_time() => Some(self.column(batch, d.column(), "a string")?),
            _ => None,
        };
        // Time series read `hour`, except a day series over a rollup, which
        // has `day` instead.
        let days: Option<&Date32Array> = match by {
            Some(Dimension::Day) if batch.column_by_name("day").is_some() => {
                Some(self.column(batch, "day", "a date")?)
            }
            _ => None,
        };
        let hours: Option<&TimestampMicrosecondArray> = match by {
            Some(d) if d.is_time() && days.is_none() => {
                Some(self.column(batch, "hour", "a timestamp")?)
            }
            _ => None,
        };
        let mut folded = 0;
        for i in 0..batch.num_rows() {
            let site = sites.value(i);
            if site != self.q.site {
                continue;
            }
            folded += 1;
            let key: Option<String> = match (by, values, hours) {
                (None, ..) => Some(site.to_owned()),
                (Some(_), Some(v), _) => v.is_valid(i).then(|| v.value(i).to_owned()),
                (Some(_), None, None) if days.is_some() => {
                    let day = days
                        .and_then(|d| d.value_as_date(i))
                        .ok_or_else(|| self.not_ours(&format!("row {i}: day out of range")))?;
                    Some(day.format("%Y-%m-%d").to_string())
                }
                (Some(d), None, Some(h)) => {
                    let t = DateTime::from_timestamp_micros(h.value(i))
                        .ok_or_else(|| self.not_ours(&format!("row {i}: hour out of range")))?;
                    Some(if d == Dimension::Day {
                        t.format("%Y-%m-%d").to_string()
                    } else {
                        t.format("%Y-%m-%dT%H:00:00Z").to_string()
                    })
                }
                (Some(_), None, None) => unreachable!("a dimension reads values or hours"),
            };
            let sketch = if sketches.is_valid(i) {
                Some(HllSketch::deserialize(sketches.value(i)).map_err(|e| {
                    self.not_ours(&format!("row {i}: visitors is not an HLL sketch: {e}"))
                })?)
            } else {
                None
            };
            let acc = match self.groups.entry(key) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    let union = HllUnion::new(self.lg_k).map_err(|e| Error::NotOurs {
                        path: self.file.to_owned(),
                        what: format!("lg_k {}: {e}", self.lg_k),
                    })?;
                    v.insert(Acc { count: 0, union })
                }
            };
            acc.count += counts.value(i);
            if let Some(sketch) = sketch {
                acc.union.update(&sketch);
            }
        }
        Ok(folded)
    }
}
