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
use footfall_schemas::tables::{Count, DEFAULT_LG_K, OVERFLOW, Table};

use crate::goals::PagePattern;
use crate::scan::{files_in_range, read};
use crate::{Dimension, Error, Metric, Query, Report, Row, Stats};
use footfall_storage::Store;

/// One group's summed counts (in its table's [`Table::counts`] order) and
/// the union of its sketches.
pub(crate) struct Acc {
    pub(crate) counts: Vec<i64>,
    pub(crate) union: HllUnion,
}

impl Acc {
    /// No counts and no visitors, for a row the table has nothing of.
    pub(crate) fn empty(table: Table, lg_k: u8, store: &Store) -> Result<Acc, Error> {
        Ok(Acc {
            counts: vec![0; table.counts().len()],
            union: HllUnion::new(lg_k).map_err(|e| Error::NotOurs {
                path: store.to_string().into(),
                what: format!("lg_k {lg_k}: {e}"),
            })?,
        })
    }

    pub(crate) fn absorb(&mut self, other: Acc) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.union.update(&other.union.to_sketch(HllType::Hll8));
    }

    /// The sum of `count`, if `table` has it.
    fn get(&self, table: Table, count: Count) -> Option<i64> {
        table.count_index(count).map(|i| self.counts[i])
    }
}

/// A table's rows of the range, merged by the report's key.
pub(crate) struct Merged {
    pub(crate) table: Table,
    pub(crate) groups: HashMap<Option<String>, Acc>,
    pub(crate) lg_k: Option<(u8, PathBuf)>,
    pub(crate) stats: Stats,
}

/// A condition on one text column of a row: only rows that meet every
/// filter of a merge are read.
pub(crate) struct Filter<'a> {
    pub column: &'static str,
    pub test: Test<'a>,
}

pub(crate) enum Test<'a> {
    /// The value is exactly this.
    Is(&'a str),
    /// The value matches this page pattern.
    Page(&'a PagePattern),
}

impl Test<'_> {
    fn passes(&self, value: &str) -> bool {
        match self {
            Test::Is(v) => *v == value,
            Test::Page(p) => p.matches(value),
        }
    }
}

/// For a range without rows: a quiet range of a known site is an answer
/// (zero, or no rows), so a script reading a day's numbers works on a day
/// without any; a site with no data at all is more likely a typo.
pub(crate) fn check_known_site(q: &Query) -> Result<(), Error> {
    if q.live.as_ref().is_some_and(|l| l.sites().contains(&q.site)) {
        return Ok(());
    }
    let known: Vec<String> = crate::sites(&q.store)?
        .into_iter()
        .map(|s| s.site)
        .collect();
    if known.contains(&q.site) {
        return Ok(());
    }
    Err(Error::UnknownSite {
        site: q.site.clone(),
        dir: q.store.to_string().into(),
        known,
    })
}

/// Checks what every report checks before reading a file.
pub(crate) fn check_range(q: &Query) -> Result<(), Error> {
    if q.from > q.to {
        return Err(Error::EmptyRange {
            from: q.from,
            to: q.to,
        });
    }
    Ok(())
}

/// Reads the range's files and merges them (every report but those of
/// events and goals, which are `goals::run`'s).
pub(crate) fn run(q: &Query) -> Result<Report, Error> {
    check_range(q)?;
    let table = q.by.map_or(Table::Pages, Dimension::table);
    let main = merge_table(q, table, &[])?;
    // No countries data in the range: say why if it was never written.
    if main.stats.files == 0
        && main.groups.is_empty()
        && table == Table::Countries
        && !has_table(q, table)?
    {
        return Err(Error::NoCountries {
            dir: q.store.to_string().into(),
        });
    }
    let metrics = Metric::for_report(q.by);
    // Site totals and time series take their visit numbers from `visits`,
    // by the same key; every other report has them in its own table. With
    // no `visits` file in the range (sessions off, or files from before
    // visits were counted) every visit number is absent, not zero.
    let visits = if table == Table::Pages && metrics.contains(&Metric::Visits) {
        Some(merge_table(q, Table::Visits, &[])?)
    } else {
        None
    };
    let sessions_seen = match (&visits, table) {
        (Some(v), _) => v.stats.files > 0,
        (None, Table::Visits) => main.stats.files > 0,
        (None, _) => !metrics.is_empty() && any_visits_file(q)?,
    } || (main.stats.files == 0 && has_table(q, Table::Visits)?);
    // (A quiet range of a data dir that counts visits has zero of them.)
    let mut lg_k = main.lg_k.clone();
    if let Some(v) = &visits {
        check_lg_k(&mut lg_k, v.lg_k.clone())?;
    }
    if main.groups.is_empty() {
        check_known_site(q)?;
    }
    let lg_k = lg_k.map_or(DEFAULT_LG_K, |(k, _)| k);
    let estimate = |acc: &Acc| settled_estimate(&acc.union, lg_k).round() as u64;
    let count_index = if q.by == Some(Dimension::ExitPage) {
        table.count_index(Count::Exits).expect("pages count exits")
    } else {
        0
    };
    let count_name = table.counts()[count_index].name();
    let mut stats = main.stats;
    if let Some(v) = &visits {
        stats.files += v.stats.files;
        stats.rollups += v.stats.rollups;
        stats.rows += v.stats.rows;
    }
    let mut visit_groups = visits.map(|v| v.groups).unwrap_or_default();
    let min = q.min_visitors;
    // Each group with the visit sums of its key, if they are elsewhere.
    let mut groups: Vec<(Option<String>, Acc, Option<Acc>)> = main
        .groups
        .into_iter()
        .filter(|(_, acc)| q.by != Some(Dimension::ExitPage) || acc.counts[count_index] > 0)
        .map(|(key, acc)| {
            let visits = visit_groups.remove(&key);
            (key, acc, visits)
        })
        .collect();
    // Visits that began in an hour without a view of theirs (a visit's
    // counts belong to its start hour) still make their hour's row.
    for (key, acc) in visit_groups {
        let empty = Acc::empty(table, lg_k, &q.store)?;
        groups.push((key, empty, Some(acc)));
    }
    let mut rows: Vec<Row> = Vec::with_capacity(groups.len());
    // Rows below `min` visitors, and the overflow row `(other)`, summed and
    // unioned into one `(other)` row.
    let mut hidden: Option<(Acc, Option<Acc>)> = None;
    let mut suppressed = 0;
    let row = |key: Option<String>, acc: &Acc, visits: Option<&Acc>, visitors: u64| Row {
        key,
        count: acc.counts[count_index],
        visitors,
        metrics: metrics
            .iter()
            .map(|&m| metric(m, table, acc, visits, sessions_seen))
            .collect(),
    };
    for (key, acc, visits) in groups {
        let visitors = estimate(&acc);
        let overflow = key.as_deref() == Some(OVERFLOW);
        if min > 0 && (visitors < min || overflow) {
            suppressed += usize::from(!overflow);
            match &mut hidden {
                None => hidden = Some((acc, visits)),
                Some((h, hv)) => {
                    h.absorb(acc);
                    match (hv, visits) {
                        (Some(hv), Some(v)) => hv.absorb(v),
                        (hv @ None, Some(v)) => *hv = Some(v),
                        (_, None) => {}
                    }
                }
            }
            continue;
        }
        rows.push(row(key, &acc, visits.as_ref(), visitors));
    }
    // `(other)` is itself shown only if it reaches the threshold.
    if let Some((h, hv)) = hidden {
        let visitors = estimate(&h);
        if visitors >= min {
            rows.push(row(Some(OVERFLOW.to_owned()), &h, hv.as_ref(), visitors));
        }
    }
    // Site totals are always one row: a quiet range's is zero (unless a
    // threshold hides it).
    if q.by.is_none() && rows.is_empty() && min == 0 {
        let empty = Acc::empty(table, lg_k, &q.store)?;
        rows.push(row(Some(q.site.clone()), &empty, None, 0));
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
        key_name: q.by.map_or("site", Dimension::name).to_owned(),
        count_name,
        null_label: q.by.map_or("(none)", Dimension::null_label),
        shows_visitors: q.by != Some(Dimension::ExitPage),
        metrics,
        rows,
        // A time series' rows each lie within one day.
        spans_windows: q.from != q.to && !q.by.is_some_and(Dimension::is_time),
        suppressed,
        min_visitors: min,
        stats,
    })
}

/// One metric of a row, from its table's sums (and, for site totals and
/// time series, the `visits` table's sums of its key), rounded as shown.
fn metric(
    m: Metric,
    table: Table,
    acc: &Acc,
    visits: Option<&Acc>,
    sessions_seen: bool,
) -> Option<f64> {
    if !sessions_seen && !matches!(m, Metric::TimeOnPage | Metric::ScrollDepth) {
        return None;
    }
    // The visit sums: of the row itself, or of its key in `visits`.
    let (vt, va) = match table {
        Table::Pages if m != Metric::Exits && m != Metric::ExitRate => (Table::Visits, visits),
        _ => (table, Some(acc)),
    };
    let v = |c: Count| -> i64 { va.and_then(|a| a.get(vt, c)).unwrap_or(0) };
    let own = |c: Count| acc.get(table, c).unwrap_or(0);
    let ratio = |num: i64, den: i64, scale: f64| (den > 0).then(|| num as f64 * scale / den as f64);
    let value = match m {
        Metric::Visits => Some(v(Count::Visits) as f64),
        Metric::ViewsPerVisit => ratio(v(Count::Pageviews), v(Count::Visits), 1.0),
        Metric::BounceRate => ratio(v(Count::Bounces), v(Count::Visits), 100.0),
        Metric::VisitDuration => ratio(v(Count::DurationS), v(Count::Visits), 1.0),
        Metric::Exits => Some(own(Count::Exits) as f64),
        Metric::ExitRate => ratio(own(Count::Exits), own(Count::Views), 100.0),
        Metric::TimeOnPage => ratio(own(Count::EngagedMs), own(Count::Engagements), 0.001),
        Metric::ScrollDepth => ratio(own(Count::ScrollSum), own(Count::Scrolls), 1.0),
        Metric::ConversionRate => unreachable!("goals::run computes conversion rates"),
    }?;
    let scale = 10f64.powi(m.decimals() as i32);
    Some((value * scale).round() / scale)
}

/// Whether the range has any `visits` file: then the visit numbers of
/// pages and sources are known (zero where no visit ended there).
fn any_visits_file(q: &Query) -> Result<bool, Error> {
    if q.live.as_ref().is_some_and(|l| l.counts_visits()) {
        return Ok(true);
    }
    let (files, _) = files_in_range(&q.store, Table::Visits, q.from, q.to, true)?;
    Ok(!files.is_empty())
}

/// Whether the data location has a folder of `table` on any day (or,
/// live, counts visits).
fn has_table(q: &Query, table: Table) -> Result<bool, Error> {
    if table == Table::Visits && q.live.as_ref().is_some_and(|l| l.counts_visits()) {
        return Ok(true);
    }
    Ok(q.store.list("")?.dirs.iter().any(|d| d == table.name()))
}

/// Keeps the first `lg_k` seen; another one is an error naming its file.
pub(crate) fn check_lg_k(
    seen: &mut Option<(u8, PathBuf)>,
    found: Option<(u8, PathBuf)>,
) -> Result<(), Error> {
    let Some((found_lg_k, path)) = found else {
        return Ok(());
    };
    match seen {
        None => *seen = Some((found_lg_k, path)),
        Some((expected, _)) if *expected == found_lg_k => {}
        Some((expected, _)) => {
            return Err(Error::LgKMismatch {
                path,
                found: found_lg_k.to_string(),
                expected: *expected,
            });
        }
    }
    Ok(())
}

/// Reads one table's files of the range, split over the cores, and merges
/// their rows of the site that pass every filter by the report's key.
pub(crate) fn merge_table(
    q: &Query,
    table: Table,
    filters: &[Filter<'_>],
) -> Result<Merged, Error> {
    // An hourly series needs the hours; everything else can use rollups.
    let use_rollups = q.by != Some(Dimension::Hour);
    // With live rows, the files are listed while writes are held back, so
    // that a row is counted from a file or from memory, never both.
    let (files, rollups, live) = {
        let view = q.live.as_ref().map(|l| l.hold());
        let (files, rollups) = files_in_range(&q.store, table, q.from, q.to, use_rollups)?;
        let live = view
            .as_ref()
            .map(|v| (v.batches(table, q.from, q.to), v.lg_k()));
        (files, rollups, live)
    };
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
            .map(|files| scope.spawn(move || read_part(q, table, files, filters)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut merged = Merged {
        table,
        groups: HashMap::new(),
        lg_k: None,
        stats: Stats {
            files: files.len(),
            rollups,
            rows: 0,
        },
    };
    let parts = parts
        .into_iter()
        .chain(live.map(|(batches, lg_k)| live_part(q, table, lg_k, &batches, filters)));
    for part in parts {
        let part = part?;
        check_lg_k(&mut merged.lg_k, part.lg_k)?;
        merged.stats.rows += part.rows;
        for (key, acc) in part.groups {
            match merged.groups.entry(key) {
                Entry::Vacant(v) => {
                    v.insert(acc);
                }
                Entry::Occupied(mut o) => o.get_mut().absorb(acc),
            }
        }
    }
    debug_assert!(
        merged
            .groups
            .values()
            .all(|a| a.counts.len() == merged.table.counts().len())
    );
    Ok(merged)
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
pub(crate) fn settled_estimate(union: &HllUnion, lg_k: u8) -> f64 {
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

/// Merges the rows in memory, as one more file.
fn live_part(
    q: &Query,
    table: Table,
    lg_k: u8,
    batches: &[RecordBatch],
    filters: &[Filter<'_>],
) -> Result<Part, Error> {
    let shown = PathBuf::from("(open aggregates in memory)");
    let mut part = Part {
        lg_k: (!batches.is_empty()).then(|| (lg_k, shown.clone())),
        groups: HashMap::new(),
        rows: 0,
    };
    for batch in batches {
        let mut folder = Folder {
            q,
            table,
            lg_k,
            groups: &mut part.groups,
            file: &shown,
            filters,
        };
        part.rows += folder.fold(batch)?;
    }
    Ok(part)
}

/// Reads and merges some files, in order; every file must have the `lg_k`
/// of the first.
fn read_part(
    q: &Query,
    table: Table,
    files: &[String],
    filters: &[Filter<'_>],
) -> Result<Part, Error> {
    let mut part = Part {
        lg_k: None,
        groups: HashMap::new(),
        rows: 0,
    };
    for file in files {
        let expected = part.lg_k.as_ref().map(|(k, _)| *k);
        let filtered: Vec<&'static str> = filters.iter().map(|f| f.column).collect();
        let (file_lg_k, batches) = read(&q.store, file, expected, q.by, table, &filtered)?;
        let shown = PathBuf::from(q.store.show(file));
        part.lg_k.get_or_insert_with(|| (file_lg_k, shown.clone()));
        for batch in batches {
            let mut folder = Folder {
                q,
                table,
                lg_k: file_lg_k,
                groups: &mut part.groups,
                file: &shown,
                filters,
            };
            part.rows += folder.fold(&batch)?;
        }
    }
    Ok(part)
}

/// Folds the rows of one file's batches into the report's groups.
struct Folder<'a> {
    q: &'a Query,
    table: Table,
    lg_k: u8,
    groups: &'a mut HashMap<Option<String>, Acc>,
    file: &'a Path,
    filters: &'a [Filter<'a>],
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
        // A file of schema version 1 has no visit counts: they are zero.
        let counts: Vec<Option<&Int64Array>> = self
            .table
            .counts()
            .iter()
            .map(|c| match batch.column_by_name(c.name()) {
                None if c.of_visits() => Ok(None),
                _ => self.column(batch, c.name(), "int64").map(Some),
            })
            .collect::<Result<_, _>>()?;
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
        let tested: Vec<(&StringArray, &Test<'_>)> = self
            .filters
            .iter()
            .map(|f| Ok((self.column(batch, f.column, "a string")?, &f.test)))
            .collect::<Result<_, Error>>()?;
        let mut folded = 0;
        for i in 0..batch.num_rows() {
            let site = sites.value(i);
            if site != self.q.site
                || !tested
                    .iter()
                    .all(|(column, test)| column.is_valid(i) && test.passes(column.value(i)))
            {
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
                    v.insert(Acc {
                        counts: vec![0; counts.len()],
                        union,
                    })
                }
            };
            for (sum, column) in acc.counts.iter_mut().zip(&counts) {
                *sum += column.map_or(0, |c| c.value(i));
            }
            if let Some(sketch) = sketch {
                acc.union.update(&sketch);
            }
        }
        Ok(folded)
    }
}
