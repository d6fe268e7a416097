//! The async shell around the pure core: take visits, close hours on a tick,
//! write files off the request path, flush everything on a stop.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::NaiveDate;
use footfall_schemas::tables::Table;
use footfall_schemas::{CustomEvent, Engagement, Visit, VisitSink};
use footfall_storage::{Created, Store};

use crate::buckets::{Buckets, Folded, Limits};
use crate::checkpoint::{self, Pending};
use crate::error::Error;
use crate::sessions::{SessionSettings, Sessions, Tally};
use crate::writer::{file_name, new_flush_id, write_file};

/// How long after a UTC day ends its rollup waits: the last hour closes at
/// midnight and is written on the next tick; this leaves room for a slow
/// flush or a quick restart.
pub const ROLLUP_GRACE: Duration = Duration::from_secs(15 * 60);

/// Days before today whose rollups are checked at start: a stop or crash
/// around midnight, or late files written while the process was down.
const ROLLUP_LOOKBACK_DAYS: u64 = 7;

/// The aggregator's settings.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// Where the output goes: `<table>/date=…/*.parquet` under a local
    /// folder or an object-store prefix.
    pub store: Store,
    /// Local state: the lock and the checkpoint (`<data-dir>/_state` for a
    /// local data dir), so crash safety never waits on a network.
    pub state_dir: PathBuf,
    /// `lg_k` of every sketch; one value per data dir.
    pub lg_k: u8,
    /// How often to look for closed hours (and retry failed writes).
    pub tick: Duration,
    /// Also write the open hour's buckets this often, so files are at most
    /// this old (`None`: only when an hour closes, and on a stop). Each flush
    /// makes a file per date; readers sum and union them as always.
    pub flush_interval: Option<Duration>,
    /// How often the unwritten aggregates are saved to `_state/checkpoint`:
    /// the most a crash can lose.
    pub checkpoint_interval: Duration,
    /// Bounds on the buckets one hour may open.
    pub limits: Limits,
    /// Whether to write the `countries` table (visits carry a country only
    /// when a GeoIP database was given).
    pub countries: bool,
    /// How visits are cut; `None` keeps no visits at all (no per-visitor
    /// state outlives a request, and no visit counts are written).
    pub sessions: Option<SessionSettings>,
    /// How many shards the open buckets and visits are split into, so that
    /// threads folding beacons at once rarely wait on each other: one per
    /// worker thread is right (at least 1).
    pub shards: usize,
}

/// Open buckets in shards, and the machinery to write them.
///
/// Each worker thread folds into a shard of its own, under that shard's
/// mutex (held for a hash lookup and a sketch update), so threads do not
/// wait on one lock; a flush or a checkpoint takes every shard's rows, one
/// shard at a time, and merges them: the same sum and union the
/// checkpoint and every reader already rely on. Encoding and writing
/// happen after the locks are released, on a blocking thread.
#[derive(Debug)]
pub struct Aggregator {
    config: AggregatorConfig,
    open: Shards,
    /// Each worker thread's ring of the last minutes' visitors per site
    /// ("current visitors"), beside its buckets shard: in memory only.
    recent: Box<[Padded<Mutex<crate::recent::Recent>>]>,
    /// The open visits, if sessions are on, sharded by visitor key (a
    /// visitor's beacons must meet in one visit, whichever thread takes
    /// them). A visits shard is locked before a buckets shard whenever
    /// both are held, never after.
    sessions: Option<Box<[Padded<Mutex<Sessions>>]>>,
    /// Rows taken by a flush and not yet known to be in their file, each
    /// with the file's name, and why the last write failed: kept in memory
    /// and the checkpoint and put again under the same names on every
    /// retry, so a full disk or an unreachable store loses nothing while
    /// memory lasts, and a put whose answer was lost is not written twice.
    unwritten: Mutex<Unwritten>,
    /// Serialises flushes and checkpoints, so a tick and the final flush
    /// never write the same buckets twice and a checkpoint never misses
    /// buckets that a flush has taken out but not yet written.
    flushing: Mutex<()>,
    /// Whether anything was folded since the last checkpoint: nothing to
    /// save when not. Set only when clear (see [`Aggregator::touch`]), so
    /// that threads folding at once do not fight over its cache line.
    dirty: AtomicBool,
    /// Days that got a new hourly file: their rollups are (re)built once
    /// the day and [`ROLLUP_GRACE`] are over.
    rollup_due: Mutex<BTreeSet<NaiveDate>>,
    /// An exclusive lock on `<state dir>/lock`, held while this aggregator
    /// lives: a second process on the same state would restore and write
    /// the same checkpoint, counting its views twice.
    _lock: fs::File,
    /// When the write in progress began (Unix seconds), 0 when none is: a
    /// store that stopped answering holds a write for as long as the
    /// client's timeouts, and `/healthz` says so before it fails.
    writing_since: AtomicU64,
    metrics: Metrics,
}

/// How long a write may take before `/healthz` calls the store slow.
const SLOW_WRITE_SECS: u64 = 10;

/// See [`Aggregator::unwritten`].
#[derive(Debug, Default)]
struct Unwritten {
    parts: Vec<Pending>,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct Metrics {
    files: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    write_errors: AtomicU64,
    last_flush_micros: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_errors: AtomicU64,
    last_checkpoint_micros: AtomicU64,
    rollups: AtomicU64,
    rollup_errors: AtomicU64,
    page_overflow: AtomicU64,
    source_overflow: AtomicU64,
    site_overflow: AtomicU64,
    event_overflow: AtomicU64,
}

/// The open buckets, split so that worker threads fold at once.
///
/// Each thread folds into one shard, chosen once per thread (round robin
/// over the threads as they first fold): tokio's worker threads live as
/// long as the runtime, so each keeps its shard and its mutex is not
/// contended. Anything that reads or takes rows visits every shard, one at a
/// time, and merges what it got; a row is in exactly one shard's map until
/// it is taken, so it is neither missed nor counted twice.
///
/// The bounds on buckets ([`Limits`]) hold per shard: with N shards an
/// hour's flood keeps up to N times `max_pages` rows in memory.
#[derive(Debug)]
struct Shards {
    shards: Box<[Padded<Mutex<Buckets>>]>,
}

/// A value alone on its cache lines (two, for the prefetcher's pairs), so
/// that locking one shard does not take a line another core is using for
/// its own shard.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Visits shards for each buckets shard (each worker thread).
const VISIT_SHARDS_PER_THREAD: usize = 16;

/// The next thread's place among the shards.
static NEXT_SHARD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's place among the shards, taken on its first fold.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed);
}

/// The calling thread's place among `n` shards.
fn my_shard(n: usize) -> usize {
    SHARD.with(|i| *i) % n
}

impl Shards {
    /// `first` (restored from a checkpoint, say) in shard 0, and `n - 1`
    /// empty shards with its settings.
    fn new(first: Buckets, n: usize) -> Self {
        let empty = first.empty_like();
        let shards = std::iter::once(first)
            .chain((1..n).map(|_| empty.clone()))
            .map(|b| Padded(Mutex::new(b)))
            .collect();
        Self { shards }
    }

    /// The calling thread's shard, locked.
    fn mine(&self) -> MutexGuard<'_, Buckets> {
        lock(&self.shards[my_shard(self.shards.len())])
    }

    /// What `f` takes out of every shard, merged.
    fn take(&self, f: impl Fn(&mut Buckets) -> Buckets) -> Buckets {
        let mut all = f(&mut lock(&self.shards[0]));
        for shard in &self.shards[1..] {
            let part = f(&mut lock(shard));
            all.merge(part);
        }
        all
    }

    /// A copy of every shard's rows, merged.
    fn snapshot(&self) -> Buckets {
        self.take(|b| b.clone())
    }

    /// Open rows, over every shard (a row open in two shards counts twice).
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    fn has_closed(&self, now: i64) -> bool {
        self.shards.iter().any(|s| lock(s).has_closed(now))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the buckets half-updated
    // in a way that matters more than losing them would.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Aggregator {
    /// Takes the state dir's lock and checks that the data location was
    /// not started with another `lg_k`.
    ///
    /// Aggregates a crash left in the checkpoint are restored: open rows
    /// into the open buckets (closed hours among them are written on the
    /// first tick), rows on their way to a file as they were, to be put
    /// again under the same names.
    pub fn open(config: AggregatorConfig) -> Result<Self, Error> {
        let empty = Buckets::new(config.lg_k)?
            .with_limits(config.limits)
            .with_countries(config.countries);
        // First, before touching anything another process may be using.
        let lock = lock_state_dir(&config.state_dir)?;
        check_lg_k(&config.store, config.lg_k)?;
        let stale: usize = Table::ALL
            .into_iter()
            .flat_map(|table| [table.name().to_owned(), table.daily_name()])
            .map(|folder| crate::writer::remove_stale_temporaries(&config.store, &folder))
            .sum();
        if stale > 0 {
            tracing::info!(
                files = stale,
                "removed temporary files left by an interrupted write"
            );
        }
        let (buckets, pending) =
            match checkpoint::load(&config.state_dir, &config.store, empty.clone())? {
                Some(restored) => {
                    tracing::info!(
                        buckets = restored.buckets.len(),
                        pending_files = restored.pending.len(),
                        already_written = restored.already_written,
                        "restored unwritten aggregates from the checkpoint"
                    );
                    (restored.buckets, restored.pending)
                }
                None => (empty, Vec::new()),
            };
        let today = chrono::Utc::now().date_naive();
        let recent =
            (1..=ROLLUP_LOOKBACK_DAYS).filter_map(|n| today.checked_sub_days(chrono::Days::new(n)));
        let shards = config.shards.max(1);
        // Visits are sharded by key, not by thread, so threads share their
        // shards: many of them make two threads rarely want the same one.
        // The bound on open visits is the whole process's: split it.
        let visit_shards = shards * VISIT_SHARDS_PER_THREAD;
        let sessions = config.sessions.map(|s| {
            (0..visit_shards)
                .map(|i| {
                    // An even share, the remainder to the first shards, so
                    // the shards together hold at most `max_visits`.
                    let share =
                        s.max_visits / visit_shards + usize::from(i < s.max_visits % visit_shards);
                    let per_shard = SessionSettings {
                        max_visits: share,
                        ..s
                    };
                    Padded(Mutex::new(Sessions::new(per_shard)))
                })
                .collect()
        });
        Ok(Self {
            open: Shards::new(buckets, shards),
            recent: (0..shards)
                .map(|_| Padded(Mutex::new(crate::recent::Recent::new(config.lg_k))))
                .collect(),
            config,
            sessions,
            unwritten: Mutex::new(Unwritten {
                parts: pending,
                error: None,
            }),
            flushing: Mutex::new(()),
            dirty: AtomicBool::new(false),
            rollup_due: Mutex::new(recent.collect()),
            _lock: lock,
            writing_since: AtomicU64::new(0),
            metrics: Metrics::default(),
        })
    }

    fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }

    /// Saves every unwritten aggregate to `_state/checkpoint`, if anything
    /// changed since the last save. The open buckets are copied under the
    /// lock (a short pause for requests) and encoded after it is released.
    pub fn checkpoint(&self) -> Result<(), Error> {
        let _one_at_a_time = lock(&self.flushing);
        if !self.dirty.swap(false, Relaxed) {
            return Ok(());
        }
        let open = self.open.snapshot();
        let pending = lock(&self.unwritten).parts.clone();
        self.save_checkpoint(&[&open], &pending).inspect_err(|_| {
            // Try again next time.
            self.touch();
        })
    }

    fn save_checkpoint(&self, unwritten: &[&Buckets], pending: &[Pending]) -> Result<(), Error> {
        let started = Instant::now();
        let result = checkpoint::save(self.state_dir(), self.config.lg_k, unwritten, pending);
        match &result {
            Ok(_) => {
                self.metrics.checkpoints.fetch_add(1, Relaxed);
                self.metrics
                    .last_checkpoint_micros
                    .store(started.elapsed().as_micros() as u64, Relaxed);
            }
            Err(e) => {
                self.metrics.checkpoint_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "saving the checkpoint failed");
            }
        }
        result.map(|_| ())
    }

    /// The store files are written to.
    pub fn store(&self) -> &Store {
        &self.config.store
    }

    /// Holds flushes and checkpoints back while the guard lives: files
    /// listed meanwhile and [`Aggregator::unwritten_batches`] then hold
    /// every row exactly once (a flush takes rows out of memory and makes
    /// their file visible under this lock).
    pub fn hold_writes(&self) -> MutexGuard<'_, ()> {
        lock(&self.flushing)
    }

    /// The rows of `table` not in any file (the open buckets, and rows a
    /// failed write kept) on the UTC days `from` to `to`, in the hourly
    /// files' schema: what a reader adds to the files to be live. Call
    /// under [`Aggregator::hold_writes`].
    pub fn unwritten_batches(
        &self,
        table: Table,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<arrow_array::RecordBatch>, Error> {
        let mut all = self.open.snapshot();
        // Open visits as if they ended now: today's visits, bounces and
        // durations so far, not half an hour late. Only into this copy,
        // and only for the tables a visit's end adds to. (A pass over the
        // open visits for each such query: a cost that grows with them.)
        if matches!(table, Table::Visits | Table::Pages | Table::Sources) {
            for shard in self.sessions.iter().flat_map(|s| s.iter()) {
                lock(shard).as_if_ended(|ended| all.fold_ended(ended));
            }
        }
        for part in lock(&self.unwritten)
            .parts
            .iter()
            .filter(|p| p.table == table && (from..=to).contains(&p.date))
        {
            all.merge(part.buckets.clone());
        }
        let mut out = Vec::new();
        for (date, part) in all.split_by_date() {
            if (from..=to).contains(&date) {
                let batch = part.to_record_batch(table)?;
                if batch.num_rows() > 0 {
                    out.push(batch);
                }
            }
        }
        Ok(out)
    }

    /// The sites with open rows.
    pub fn open_sites(&self) -> Vec<String> {
        let open = self.open.snapshot();
        let mut sites: Vec<String> = open
            .rows_of(Table::Pages)
            .map(|r| r.site.to_owned())
            .filter(|s| s != footfall_schemas::tables::OVERFLOW)
            .collect();
        sites.sort();
        sites.dedup();
        sites
    }

    /// The distinct visitors of `site` over the last five minutes before
    /// `now` (Unix seconds), from every thread's ring.
    pub fn current_visitors(&self, site: &str, now: i64) -> u64 {
        let Ok(mut union) = datasketches::hll::HllUnion::new(self.config.lg_k) else {
            return 0;
        };
        for ring in self.recent.iter() {
            lock(ring).union_into(site, now, &mut union);
        }
        union.estimate().round() as u64
    }

    fn note_recent(&self, site: &str, time: i64, visitor: footfall_schemas::VisitorKey) {
        lock(&self.recent[my_shard(self.recent.len())]).note(site, time, visitor);
    }

    /// Whether visits are counted (`--sessions on`).
    pub fn counts_visits(&self) -> bool {
        self.sessions.is_some()
    }

    /// The `lg_k` of every sketch.
    pub fn lg_k(&self) -> u8 {
        self.config.lg_k
    }

    /// Writes the buckets of every hour that ended by `now` (Unix seconds),
    /// or every bucket when `now` is `None`, plus whatever failed before.
    /// On error the unwritten rows stay in memory for the next try.
    ///
    /// Around the writes the checkpoint is saved twice: first with the rows
    /// about to be written marked pending under their files' names, then
    /// with only those whose write failed. A crash at any point neither
    /// loses nor doubles a row (see [`checkpoint`]).
    pub fn flush(&self, now: Option<i64>) -> Result<(), Error> {
        let _one_at_a_time = lock(&self.flushing);
        let started = Instant::now();
        let taken = self.open.take(|open| match now {
            Some(now) => open.take_closed(now),
            None => open.take_all(),
        });
        // Earlier failures first, under their own names; then this
        // flush's rows, one file per (date, table) under one new name.
        let mut parts = std::mem::take(&mut lock(&self.unwritten).parts);
        if !taken.is_empty() {
            let name = file_name(new_flush_id());
            for (date, part) in taken.split_by_date() {
                for table in part.tables() {
                    parts.push(Pending {
                        file: name.clone(),
                        table,
                        date,
                        buckets: part.clone().only(&[table]),
                    });
                }
            }
        }
        if parts.is_empty() {
            if now.is_none() {
                // A stop with nothing left to write: no checkpoint to keep.
                checkpoint::remove(self.state_dir())?;
            }
            return Ok(());
        }

        let open_now = self.open.snapshot();
        if self.save_checkpoint(&[&open_now], &parts).is_err() {
            // Without a durable pending mark, a crash after a data file
            // appeared would restore its rows from the old checkpoint and
            // count them twice. Losing the old checkpoint is the lesser harm;
            // if even that fails, write nothing now and retry later.
            if let Err(e) = checkpoint::remove(self.state_dir()) {
                *lock(&self.unwritten) = Unwritten {
                    parts,
                    error: Some(e.to_string()),
                };
                return Err(e);
            }
        }

        let mut failed = Vec::new();
        let mut first_error = None;
        self.writing_since.store(unix_secs(), Relaxed);
        for part in parts {
            if first_error.is_some() && self.config.store.local_dir().is_none() {
                // A remote store failed: the rest waits for the retry
                // rather than each waiting out the client's timeouts now.
                // (On a local disk a failure is one folder's, as a full
                // disk fails fast: the other tables are still written.)
                failed.push(part);
                continue;
            }
            // A table whose write fails keeps only its own rows for the
            // retry, under the same name: the others are in files now.
            let written = part.buckets.to_record_batch(part.table).and_then(|batch| {
                write_file(
                    &self.config.store,
                    part.table,
                    part.date,
                    self.config.lg_k,
                    &part.file,
                    &batch,
                )
            });
            match written {
                Ok(w) => {
                    lock(&self.rollup_due).insert(part.date);
                    if w.new {
                        self.metrics.files.fetch_add(1, Relaxed);
                        self.metrics.rows.fetch_add(w.rows as u64, Relaxed);
                        self.metrics.bytes.fetch_add(w.bytes, Relaxed);
                        tracing::info!(file = %w.at, rows = w.rows, bytes = w.bytes, "wrote file");
                    } else {
                        tracing::info!(file = %w.at, "found a file whose write had seemed to fail; not written again");
                    }
                }
                Err(e) => {
                    self.metrics.write_errors.fetch_add(1, Relaxed);
                    failed.push(part);
                    first_error.get_or_insert(e);
                }
            }
        }
        self.writing_since.store(0, Relaxed);
        self.metrics
            .last_flush_micros
            .store(started.elapsed().as_micros() as u64, Relaxed);

        // The checkpoint without the rows just written. On a stop that wrote
        // everything there is nothing left to keep.
        let open_now = self.open.snapshot();
        let everything_written = failed.is_empty() && now.is_none() && open_now.is_empty();
        let saved = if everything_written {
            checkpoint::remove(self.state_dir())
        } else {
            self.save_checkpoint(&[&open_now], &failed)
        };
        if saved.is_err() {
            // The pending marks still tell a restart which files to put.
            self.touch();
        }
        *lock(&self.unwritten) = Unwritten {
            parts: failed,
            error: first_error.as_ref().map(ToString::to_string),
        };
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Builds the rollups of every due day whose end plus [`ROLLUP_GRACE`]
    /// is before `now` (Unix seconds). A day that fails is logged and left
    /// until it gets another file or the next start.
    pub fn rollup_closed_days(&self, now: i64) {
        let ready: Vec<NaiveDate> = {
            let mut due = lock(&self.rollup_due);
            let ready: Vec<NaiveDate> = due
                .iter()
                .copied()
                .filter(|&d| rollup_ready(d, now))
                .collect();
            for d in &ready {
                due.remove(d);
            }
            ready
        };
        for date in ready {
            match crate::rollup::rollup_date(&self.config.store, date, Some(self.config.lg_k)) {
                Ok(outcomes) => {
                    for (table, outcome) in outcomes {
                        match outcome {
                            crate::rollup::Outcome::Written { written, covers } => {
                                self.metrics.rollups.fetch_add(1, Relaxed);
                                tracing::info!(table = table.name(), %date, covers, rows = written.rows, file = %written.at, "wrote daily rollup");
                            }
                            crate::rollup::Outcome::Exists { late } if late > 0 => {
                                tracing::info!(table = table.name(), %date, late, "the day has its rollup; files written after it are read beside it");
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    self.metrics.rollup_errors.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, %date, "daily rollup failed; reports read the hourly files");
                }
            }
        }
    }

    /// Closes finished hours every tick until `stop` completes. Writes run on
    /// a blocking thread, never on the request path. `clock` gives Unix
    /// seconds (the real clock in production, a fake one in tests).
    pub async fn run_ticker(
        self: Arc<Self>,
        clock: impl Fn() -> i64 + Send + 'static,
        stop: impl Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        let mut last_flush = Instant::now();
        // After a failed write, wait before the next try: 1 s, doubling up
        // to a minute, so a full disk is not hammered (or the log flooded)
        // every tick.
        let mut backoff = Duration::ZERO;
        let mut retry_after = Instant::now();
        // The hour whose closed predecessors were last written: ended
        // visits keep adding rows to past hours, and those wait for the
        // next hour's flush (or a periodic one, or the stop) rather than
        // making a file every tick.
        let mut flushed_in_hour: Option<i64> = None;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut stop => return,
            }
            let now = clock();
            self.sweep_visits(now);
            let this_hour = now.div_euclid(3600);
            let periodic = self
                .config
                .flush_interval
                .is_some_and(|every| last_flush.elapsed() >= every);
            let closed = flushed_in_hour != Some(this_hour) && self.open.has_closed(now);
            let retry = !lock(&self.unwritten).parts.is_empty() && Instant::now() >= retry_after;
            let flush_due = periodic || retry || (closed && Instant::now() >= retry_after);
            let checkpoint_due = last_checkpoint.elapsed() >= self.config.checkpoint_interval;
            let rollup_due = lock(&self.rollup_due)
                .first()
                .is_some_and(|&d| rollup_ready(d, now));
            if !flush_due && !checkpoint_due && !rollup_due {
                continue;
            }
            let me = Arc::clone(&self);
            let work = move || {
                // Rollups read files only, outside every lock but their own.
                me.rollup_closed_days(now);
                if flush_due {
                    // A periodic flush writes the open hour too.
                    let upto = if periodic { None } else { Some(now) };
                    me.flush(upto)
                        .map(|()| true)
                        .map_err(|e| ("writing aggregates failed; kept in memory, will retry", e))
                } else {
                    me.checkpoint()
                        .map(|()| false)
                        .map_err(|e| ("checkpoint failed; will retry", e))
                }
            };
            match tokio::task::spawn_blocking(work).await {
                Ok(Ok(flushed)) => {
                    if flushed {
                        backoff = Duration::ZERO;
                        last_flush = Instant::now();
                        flushed_in_hour = Some(this_hour);
                    }
                }
                Ok(Err((what, e))) => {
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
                    retry_after = Instant::now() + backoff;
                    if flush_due {
                        last_flush = Instant::now();
                    }
                    tracing::error!(error = %e, retry_in_secs = backoff.as_secs(), "{what}");
                }
                Err(e) => tracing::error!(error = %e, "the flush task panicked"),
            }
            // A flush saves the checkpoint too.
            last_checkpoint = Instant::now();
        }
    }

    /// Ends the expired visits of the next part of the open ones (the whole
    /// set every 30 calls), counting each in the hour it started.
    pub fn sweep_visits(&self, now: i64) {
        let Some(shards) = self.sessions.as_deref() else {
            return;
        };
        for sessions in shards {
            let mut sessions = lock(sessions);
            // The whole set every 30 calls, and at least 1,024 slots a call
            // over all the shards, as before they were split.
            let budget = sessions.len() / 30 + (1024 / shards.len()).max(64);
            let mut ended = 0;
            sessions.sweep(now, budget, |visit| {
                self.open.mine().fold_ended(visit);
                ended += 1;
            });
            if ended > 0 {
                self.touch();
            }
        }
    }

    /// Ends every open visit (a stop), counting each in its start hour.
    pub fn end_visits(&self) {
        for sessions in self.sessions.iter().flatten() {
            let mut sessions = lock(sessions);
            let mut open = self.open.mine();
            sessions.end_all(|visit| open.fold_ended(visit));
            self.touch();
        }
    }

    /// Marks the aggregates changed since the last checkpoint. A load
    /// first: every fold calls this, and a store to a line that other
    /// cores read would move it between them on every beacon.
    fn touch(&self) {
        if !self.dirty.load(Relaxed) {
            self.dirty.store(true, Relaxed);
        }
    }

    /// The visits shard of a visitor key.
    fn visits_of(&self, visitor: footfall_schemas::VisitorKey) -> Option<&Mutex<Sessions>> {
        let shards = self.sessions.as_deref()?;
        // The key is a keyed hash already: its bits are uniform. Not its
        // low bits, which pick a key's first slot in the shard's index
        // (all of a shard's keys would share them, and probe long), nor
        // its top 7, which the index keeps as a tag: bits 32 to 55.
        let bits = (visitor.sketch_input() >> 32) & 0xFF_FFFF;
        Some(&shards[(bits % shards.len() as u64) as usize])
    }

    /// Ends every open visit and writes every open bucket, retrying with
    /// backoff (up to `attempts` times) so a disk that is briefly full does
    /// not lose a stop's data. Only for a stop: nothing may be recorded
    /// after it.
    pub async fn flush_all(self: &Arc<Self>, attempts: u32) -> Result<(), Error> {
        self.end_visits();
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            let me = Arc::clone(self);
            let result = tokio::task::spawn_blocking(move || me.flush(None))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= attempts => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, attempt, "final flush failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
            }
        }
    }
}

impl VisitSink for Aggregator {
    fn record(&self, visit: &Visit<'_>) {
        let folded = self.open.mine().fold(visit);
        // A view counted under `(other)` is `(other)` in its visit and
        // among current visitors too: neither holds text the tables'
        // bounds turned away, so a flood of new pages or sites costs them
        // nothing.
        let counted = folded.as_counted(visit);
        self.note_recent(counted.site, visit.time, visit.visitor);
        if let Some(sessions) = self.visits_of(visit.visitor) {
            lock(sessions).pageview(&counted, |ended| self.open.mine().fold_ended(ended));
        }
        // After the visit that the view may have ended was folded too, so
        // a checkpoint that cleared the flag meanwhile is followed by one
        // that holds it.
        self.touch();
        if folded != Folded::default() {
            let m = &self.metrics;
            for (hit, counter) in [
                (folded.page, &m.page_overflow),
                (folded.source, &m.source_overflow),
                (folded.site, &m.site_overflow),
            ] {
                if hit {
                    counter.fetch_add(1, Relaxed);
                }
            }
        }
    }

    fn event(&self, event: &CustomEvent<'_>) {
        // Not noted among current visitors: a visitor's events follow a
        // view, which is, and an event's site is not bounded as a view's
        // is (a view past `--max-sites` is noted under `(other)`).
        if let Some(sessions) = self.visits_of(event.visitor) {
            lock(sessions).event(event.visitor, event.time, event.interactive);
        }
        if self.open.mine().fold_event(event) {
            self.metrics.event_overflow.fetch_add(1, Relaxed);
        }
        self.touch();
    }

    fn engage(&self, engagement: &Engagement<'_>) -> bool {
        let Some(sessions) = self.visits_of(engagement.visitor) else {
            return false;
        };
        let mut sessions = lock(sessions);
        match sessions.engage(engagement) {
            Some(engaged) => {
                self.open.mine().fold_engaged(&engaged);
                self.touch();
                true
            }
            None => false,
        }
    }

    fn health(&self) -> Result<(), String> {
        if let Some(why) = &lock(&self.unwritten).error {
            return Err(format!("cannot write aggregates: {why}"));
        }
        let since = self.writing_since.load(Relaxed);
        let taken = unix_secs().saturating_sub(since);
        if since > 0 && taken > SLOW_WRITE_SECS {
            return Err(format!(
                "cannot write aggregates: a write to {} has not finished in {taken} s; \
                 they are kept in memory and the checkpoint",
                self.config.store
            ));
        }
        Ok(())
    }

    fn render_metrics(&self, out: &mut String) {
        let open = self.open.len();
        let pending: usize = lock(&self.unwritten)
            .parts
            .iter()
            .map(|p| p.buckets.len())
            .sum();
        let m = &self.metrics;
        let load = |a: &AtomicU64| a.load(Relaxed);
        let secs = |a: &AtomicU64| a.load(Relaxed) as f64 / 1e6;
        let series: [(&str, &str, &str, String); 16] = [
            (
                "footfall_open_buckets",
                "gauge",
                "Open buckets (rows of every table) in memory.",
                open.to_string(),
            ),
            (
                "footfall_unwritten_buckets",
                "gauge",
                "Closed buckets whose write failed, kept for retry.",
                pending.to_string(),
            ),
            (
                "footfall_files_written_total",
                "counter",
                "Parquet files written.",
                load(&m.files).to_string(),
            ),
            (
                "footfall_rows_written_total",
                "counter",
                "Rows written to Parquet.",
                load(&m.rows).to_string(),
            ),
            (
                "footfall_bytes_written_total",
                "counter",
                "Bytes of Parquet written.",
                load(&m.bytes).to_string(),
            ),
            (
                "footfall_write_errors_total",
                "counter",
                "Failed file writes (retried).",
                load(&m.write_errors).to_string(),
            ),
            (
                "footfall_last_flush_seconds",
                "gauge",
                "Duration of the last flush that wrote something.",
                secs(&m.last_flush_micros).to_string(),
            ),
            (
                "footfall_checkpoints_total",
                "counter",
                "Checkpoints saved.",
                load(&m.checkpoints).to_string(),
            ),
            (
                "footfall_checkpoint_errors_total",
                "counter",
                "Checkpoints that could not be saved.",
                load(&m.checkpoint_errors).to_string(),
            ),
            (
                "footfall_last_checkpoint_seconds",
                "gauge",
                "Duration of the last checkpoint save.",
                secs(&m.last_checkpoint_micros).to_string(),
            ),
            (
                "footfall_rollups_total",
                "counter",
                "Daily rollup files written (one per table and closed day, again after a late file).",
                load(&m.rollups).to_string(),
            ),
            (
                "footfall_rollup_errors_total",
                "counter",
                "Daily rollups that failed (reports then read the hourly files).",
                load(&m.rollup_errors).to_string(),
            ),
            (
                "footfall_overflow_views_total{kind=\"page\"}",
                "counter",
                "Views counted under page (other) because their site had --max-pages pages that hour; kind=source: landings under referrer (other), past --max-pages sources; kind=site: under site (other), past --max-sites.",
                load(&m.page_overflow).to_string(),
            ),
            (
                "footfall_overflow_views_total{kind=\"source\"}",
                "",
                "",
                load(&m.source_overflow).to_string(),
            ),
            (
                "footfall_overflow_views_total{kind=\"site\"}",
                "",
                "",
                load(&m.site_overflow).to_string(),
            ),
            (
                "footfall_overflow_events_total",
                "counter",
                "Custom events with a name, page or property value counted under (other): past --max-pages rows or values that hour.",
                load(&m.event_overflow).to_string(),
            ),
        ];
        let mut visits = Vec::new();
        if let Some(sessions) = &self.sessions {
            let (open, tally) = sessions.iter().fold((0, Tally::default()), |(n, t), s| {
                let s = lock(s);
                (n + s.len(), t + s.tally())
            });
            visits = vec![
                (
                    "footfall_visits_open",
                    "gauge",
                    "Visits open in memory (never written until they end).",
                    open.to_string(),
                ),
                (
                    "footfall_visits_started_total",
                    "counter",
                    "Visits started.",
                    tally.started.to_string(),
                ),
                (
                    "footfall_visits_ended_total",
                    "counter",
                    "Visits ended and counted in the tables.",
                    tally.ended.to_string(),
                ),
                (
                    "footfall_visits_untracked_total",
                    "counter",
                    "New visitors not tracked as a visit because --max-visits were open (their views count as usual).",
                    tally.untracked.to_string(),
                ),
                (
                    "footfall_engagements_without_visit_total",
                    "counter",
                    "Engagement reports that found no open visit (dropped).",
                    tally.orphan_engagements.to_string(),
                ),
            ];
        }
        for (name, kind, help, value) in series.iter().chain(&visits) {
            if !kind.is_empty() {
                let family = name.split('{').next().unwrap_or(name);
                let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            }
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// True once a UTC day and its [`ROLLUP_GRACE`] are over at `now`.
fn rollup_ready(date: NaiveDate, now: i64) -> bool {
    let day_end = date
        .and_hms_opt(0, 0, 0)
        .map_or(i64::MAX, |t| t.and_utc().timestamp() + 86_400);
    day_end.saturating_add(ROLLUP_GRACE.as_secs() as i64) <= now
}

/// Takes the state dir's lock, or says who holds it. The OS releases it
/// when the process ends, however it ends, so a crash leaves no stale lock.
/// The state dir is created private (0700): the checkpoint holds
/// aggregates only, but they are the owner's alone.
fn lock_state_dir(state: &Path) -> Result<fs::File, Error> {
    fs::create_dir_all(state).map_err(Error::io("creating", state))?;
    let path = state.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io("opening", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked { path }),
        Err(fs::TryLockError::Error(source)) => Err(Error::Io {
            what: "locking",
            path,
            source,
        }),
    }
}

/// Where a data location records the `lg_k` its sketches use: one object,
/// created once, shared by every collector writing there.
const LG_K_KEY: &str = "_state/lg_k";

/// The `lg_k` a data location was first served with, if it was.
pub fn recorded_lg_k(store: &Store) -> Option<u8> {
    store
        .get(LG_K_KEY)
        .ok()
        .flatten()
        .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok())
}

/// Records the location's `lg_k` on first use (create-only, so collectors
/// starting at once agree on the first) and refuses another one later.
fn check_lg_k(store: &Store, lg_k: u8) -> Result<(), Error> {
    let mismatch = |existing| Error::LgKMismatch {
        path: store.show(LG_K_KEY).into(),
        existing,
        requested: lg_k,
    };
    if let Some(existing) = recorded_lg_k(store) {
        return if existing == lg_k {
            Ok(())
        } else {
            Err(mismatch(existing))
        };
    }
    match store.create(LG_K_KEY, Bytes::from(format!("{lg_k}\n")))? {
        Created::New => Ok(()),
        Created::Existed => match recorded_lg_k(store) {
            Some(existing) if existing != lg_k => Err(mismatch(existing)),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use footfall_schemas::VisitorKey;

    fn config(dir: &Path, lg_k: u8) -> AggregatorConfig {
        AggregatorConfig {
            store: Store::local(dir).unwrap(),
            state_dir: dir.join("_state"),
            lg_k,
            tick: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(10),
            flush_interval: None,
            limits: Limits::default(),
            countries: false,
            sessions: Some(Default::default()),
            shards: 2,
        }
    }

    fn visit(time: i64, page: &str) -> Visit<'_> {
        Visit::landing("a.com", time, page, VisitorKey::from_hash(time as u64))
    }

    fn parquet_files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    out.push(p);
                }
            }
        }
        out
    }

    /// A table's first count summed, and its visitors unioned, over every
    /// file written.
    fn count_and_visitors(dir: &Path, table: &str) -> (i64, f64) {
        use arrow_array::{BinaryArray, Int64Array};
        let mut union = datasketches::hll::HllUnion::new(12).unwrap();
        let mut sum = 0;
        for file in parquet_files(&dir.join(table)) {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                fs::File::open(file).unwrap(),
            )
            .unwrap()
            .build()
            .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let first = Table::ALL
                    .into_iter()
                    .find(|t| t.name() == table)
                    .unwrap()
                    .counts()[0]
                    .name();
                let counts = crate::column::<Int64Array>(&batch, first).unwrap();
                sum += counts.iter().flatten().sum::<i64>();
                let sketches = crate::column::<BinaryArray>(&batch, "visitors").unwrap();
                for blob in sketches.iter().flatten() {
                    union.update(&datasketches::hll::HllSketch::deserialize(blob).unwrap());
                }
            }
        }
        (sum, union.estimate())
    }

    #[test]
    fn beacons_folded_on_many_threads_count_once_and_each_visitor_once() {
        let tmp = tempfile::tempdir().unwrap();
        let agg = Aggregator::open(AggregatorConfig {
            shards: 4,
            ..config(tmp.path(), 12)
        })
        .unwrap();
        let t0 = 1_764_079_200;
        // Four threads, each folding into its own shard; every visitor's
        // beacons arrive on every thread, each its own page.
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let agg = &agg;
                scope.spawn(move || {
                    for i in 0..1000 {
                        let page = ["/a", "/b", "/c"][(i + thread) % 3];
                        let who = VisitorKey::from_hash((i % 50) as u64 * 0x9E37_79B9);
                        agg.record(&Visit::landing("a.com", t0 + 60, page, who));
                    }
                });
            }
        });
        // (Which shards the threads took depends on every thread of the
        // process that folded before them; the numbers must not.)
        assert!(agg.open.shards.iter().any(|s| !lock(s).is_empty()));
        agg.end_visits();
        agg.flush(None).unwrap();
        let (views, visitors) = count_and_visitors(tmp.path(), "pages");
        assert_eq!(views, 4000);
        assert_eq!(visitors.round(), 50.0);
        // One visit a visitor, whichever threads took its beacons.
        let (visits, visit_visitors) = count_and_visitors(tmp.path(), "visits");
        assert_eq!(visits, 50);
        assert_eq!(visit_visitors.round(), 50.0);
    }

    #[test]
    fn the_bound_on_open_visits_holds_over_every_shard() {
        let tmp = tempfile::tempdir().unwrap();
        let agg = Aggregator::open(AggregatorConfig {
            sessions: Some(SessionSettings {
                max_visits: 10,
                ..SessionSettings::default()
            }),
            ..config(tmp.path(), 12)
        })
        .unwrap();
        let t0 = 1_764_079_200;
        for i in 0..500u64 {
            let who = VisitorKey::from_hash(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            agg.record(&Visit::landing("a.com", t0, "/", who));
        }
        let mut out = String::new();
        agg.render_metrics(&mut out);
        let value = |name: &str| -> u64 {
            out.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {out}"))
        };
        // 32 shards share 10 places: at most 10 open, whatever the keys.
        let open = value("footfall_visits_open");
        assert!((1..=10).contains(&open), "{open} open");
        assert_eq!(open + value("footfall_visits_untracked_total"), 500);
    }

    #[test]
    fn one_process_per_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Aggregator::open(config(tmp.path(), 12)).unwrap();
        let e = Aggregator::open(config(tmp.path(), 12)).unwrap_err();
        assert!(matches!(e, Error::Locked { .. }), "{e}");
        assert!(e.to_string().contains("another footfall"), "{e}");
        drop(first);
        Aggregator::open(config(tmp.path(), 12)).unwrap();
    }

    #[test]
    fn rows_restored_on_their_way_to_a_file_that_landed_are_not_written_twice() {
        // A put whose answer was lost: the file is in the store, and the
        // checkpoint still has its rows pending under its name.
        let tmp = tempfile::tempdir().unwrap();
        let t0 = 1_764_079_200;
        let mut b = Buckets::new(12).unwrap();
        for i in 0..3 {
            b.fold(&visit(t0 + i, "/landed"));
        }
        let date = crate::buckets::date_of(t0);
        let file = file_name(new_flush_id());
        let store = Store::local(tmp.path()).unwrap();
        let landed = b.clone().only(&[Table::Pages]);
        let batch = landed.to_record_batch(Table::Pages).unwrap();
        write_file(&store, Table::Pages, date, 12, &file, &batch).unwrap();
        let pending = [Table::Pages, Table::Sources].map(|table| Pending {
            file: file.clone(),
            table,
            date,
            buckets: b.clone().only(&[table]),
        });
        checkpoint::save(&tmp.path().join("_state"), 12, &[], &pending).unwrap();

        let agg = Aggregator::open(config(tmp.path(), 12)).unwrap();
        agg.flush(None).unwrap();
        let counted = |table| {
            let (count, visitors) = count_and_visitors(tmp.path(), table);
            (count, visitors.round())
        };
        assert_eq!(counted("pages"), (3, 3.0), "once");
        assert_eq!(counted("sources"), (3, 3.0), "written now");
        assert_eq!(parquet_files(tmp.path()).len(), 2);
        assert!(!checkpoint::path(&tmp.path().join("_state")).exists());
    }

    #[test]
    fn a_remote_data_location_keeps_its_state_local() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::in_memory();
        let agg = Aggregator::open(AggregatorConfig {
            store: store.clone(),
            ..config(tmp.path(), 12)
        })
        .unwrap();
        agg.record(&visit(1_764_079_200, "/"));
        agg.checkpoint().unwrap();
        assert!(checkpoint::path(&tmp.path().join("_state")).exists());
        agg.flush(None).unwrap();
        assert_eq!(recorded_lg_k(&store), Some(12));
        let pages = store.list("pages/date=2025-11-25").unwrap().files;
        assert_eq!(pages.len(), 1, "{pages:?}");
        assert!(
            parquet_files(tmp.path()).is_empty(),
            "nothing of the data on the local disk"
        );
    }

    #[test]
    fn one_lg_k_per_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Aggregator::open(config(tmp.path(), 12)).unwrap());
        drop(Aggregator::open(config(tmp.path(), 12)).unwrap());
        let e = Aggregator::open(config(tmp.path(), 14)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LgKMismatch {
                    existing: 12,
                    requested: 14,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("--lg-k 12"), "{e}");
    }

    #[test]
    fn flush_writes_closed_hours_then_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let agg = Aggregator::open(config(tmp.path(), 12)).unwrap();
        let t0 = 1_764_079_200;
        agg.record(&visit(t0 + 1, "/closed"));
        agg.record(&visit(t0 + 3601, "/open"));
        agg.flush(Some(t0 + 3602)).unwrap();
        // One file per table with rows: pages, sources, devices (countries
        // only with a GeoIP database).
        assert_eq!(parquet_files(tmp.path()).len(), 3);
        for table in ["pages", "sources", "devices"] {
            assert_eq!(parquet_files(&tmp.path().join(table)).len(), 1, "{table}");
        }
        agg.flush(Some(t0 + 3603)).unwrap();
        assert_eq!(
            parquet_files(tmp.path()).len(),
            3,
            "nothing new closed, nothing written"
        );
        agg.flush(None).unwrap();
        assert_eq!(parquet_files(&tmp.path().join("pages")).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ticker_writes_an_hour_once_it_has_closed() {
        use std::sync::atomic::AtomicI64;
        let tmp = tempfile::tempdir().unwrap();
        let agg = Arc::new(Aggregator::open(config(tmp.path(), 12)).unwrap());
        let t0 = 1_764_079_200;
        let now = Arc::new(AtomicI64::new(t0 + 10));
        agg.record(&visit(t0 + 5, "/a"));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let clock = Arc::clone(&now);
        let ticker = tokio::spawn(Arc::clone(&agg).run_ticker(
            move || clock.load(Relaxed),
            async move {
                let _ = stop_rx.await;
            },
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            parquet_files(tmp.path()).is_empty(),
            "the hour is still open"
        );

        now.store(t0 + 3600, Relaxed);
        // The write runs on a blocking thread, outside paused time: poll.
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !parquet_files(tmp.path()).is_empty() {
                break;
            }
        }
        assert_eq!(parquet_files(&tmp.path().join("pages")).len(), 1);
        assert_eq!(agg.open.len(), 0);
        stop_tx.send(()).unwrap();
        ticker.await.unwrap();
    }

    #[test]
    fn a_day_is_rolled_up_once_it_and_its_grace_are_over() {
        let tmp = tempfile::tempdir().unwrap();
        let agg = Aggregator::open(config(tmp.path(), 12)).unwrap();
        let t0 = 1_764_079_200; // 2025-11-25T14:00:00Z
        let midnight = 1_764_115_200;
        agg.record(&visit(t0 + 1, "/a"));
        agg.flush(None).unwrap();
        let rollups = || parquet_files(&tmp.path().join("pages_daily"));
        agg.rollup_closed_days(midnight - 1);
        agg.rollup_closed_days(midnight + 60);
        assert!(rollups().is_empty(), "the day's grace is not over");
        agg.rollup_closed_days(midnight + ROLLUP_GRACE.as_secs() as i64);
        assert_eq!(rollups().len(), 1);
        for table in ["sources_daily", "devices_daily"] {
            assert_eq!(parquet_files(&tmp.path().join(table)).len(), 1, "{table}");
        }
        let mut m = String::new();
        agg.render_metrics(&mut m);
        assert!(m.contains("footfall_rollups_total 3"), "{m}");
        // Done: not again until the day gets another file.
        agg.rollup_closed_days(midnight + 86_400);
        assert_eq!(rollups().len(), 1);
    }

    #[tokio::test]
    async fn the_final_flush_retries_until_the_disk_is_back() {
        let tmp = tempfile::tempdir().unwrap();
        let agg = Arc::new(Aggregator::open(config(tmp.path(), 12)).unwrap());
        agg.record(&visit(1_764_079_200, "/x"));
        let blocker = tmp.path().join("pages");
        fs::write(&blocker, "blocker").unwrap();
        let unblock = {
            let blocker = blocker.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(400));
                fs::remove_file(blocker).unwrap();
            })
        };
        agg.flush_all(10).await.unwrap();
        unblock.join().unwrap();
        assert_eq!(parquet_files(&tmp.path().join("pages")).len(), 1);
        assert!(agg.health().is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_write_keeps_the_buckets_and_reports_unhealthy() {
        let tmp = tempfile::tempdir().unwrap();
        let agg = Aggregator::open(config(tmp.path(), 12)).unwrap();
        agg.record(&visit(1_764_079_200, "/x"));
        // A file where the table folder should be makes every write fail,
        // even for root, which ignores permission bits.
        let table_dir = tmp.path().join("pages");
        fs::write(&table_dir, "blocker").unwrap();
        assert!(agg.flush(None).is_err());
        let health = agg.health().unwrap_err();
        assert!(health.contains("pages"), "{health}");
        let mut m = String::new();
        agg.render_metrics(&mut m);
        // Only the pages row waits: the other tables' files were written.
        assert!(m.contains("footfall_unwritten_buckets 1"), "{m}");
        assert!(m.contains("footfall_write_errors_total 1"), "{m}");
        assert_eq!(parquet_files(tmp.path()).len(), 2);

        fs::remove_file(&table_dir).unwrap();
        agg.flush(None).unwrap();
        assert_eq!(parquet_files(&tmp.path().join("pages")).len(), 1);
        assert_eq!(parquet_files(tmp.path()).len(), 3, "nothing written twice");
        assert!(agg.health().is_ok());
    }
}
