//! The async shell around the pure core: take visits, close hours on a tick,
//! write files off the request path, flush everything on a stop.

use std::fmt::Write as _;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use footfall_schemas::tables::{STATE_DIR, Table};
use footfall_schemas::{Visit, VisitSink};

use crate::buckets::Buckets;
use crate::error::Error;
use crate::writer::write_file;

/// The aggregator's settings.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// Root of the output: `<data_dir>/<table>/date=…/*.parquet`.
    pub data_dir: PathBuf,
    /// `lg_k` of every sketch; one value per data dir.
    pub lg_k: u8,
    /// How often to look for closed hours (and retry failed writes).
    pub tick: Duration,
}

/// Open buckets behind one mutex, and the machinery to write them.
///
/// One mutex, held for a fold (a hash lookup and a sketch update) or for the
/// split that takes closed hours out; encoding and writing happen after it
/// is released, on a blocking thread.
#[derive(Debug)]
pub struct Aggregator {
    config: AggregatorConfig,
    open: Mutex<Buckets>,
    /// Buckets whose write failed, with the reason: kept in memory and
    /// retried on every tick, so a full or read-only disk loses nothing
    /// while memory lasts.
    failed: Mutex<Option<(Buckets, String)>>,
    /// Serialises flushes, so a tick and the final flush never write the
    /// same buckets twice.
    flushing: Mutex<()>,
    metrics: Metrics,
}

#[derive(Debug, Default)]
struct Metrics {
    files: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    write_errors: AtomicU64,
    last_flush_micros: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the buckets half-updated
    // in a way that matters more than losing them would.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Aggregator {
    /// Prepares the data dir and checks that it was not started with
    /// another `lg_k`.
    pub fn open(config: AggregatorConfig) -> Result<Self, Error> {
        let buckets = Buckets::new(config.lg_k)?;
        fs::create_dir_all(&config.data_dir)
            .map_err(Error::io("creating data dir", &config.data_dir))?;
        check_lg_k(&config.data_dir, config.lg_k)?;
        let stale = crate::writer::remove_stale_temporaries(&config.data_dir, Table::Pages);
        if stale > 0 {
            tracing::info!(
                files = stale,
                "removed temporary files left by an interrupted write"
            );
        }
        Ok(Self {
            config,
            open: Mutex::new(buckets),
            failed: Mutex::new(None),
            flushing: Mutex::new(()),
            metrics: Metrics::default(),
        })
    }

    /// The data dir files are written under.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Writes the buckets of every hour that ended by `now` (Unix seconds),
    /// or every bucket when `now` is `None`, plus whatever failed before.
    /// On error the unwritten buckets stay in memory for the next try.
    pub fn flush(&self, now: Option<i64>) -> Result<(), Error> {
        let _one_at_a_time = lock(&self.flushing);
        let started = Instant::now();
        let taken = {
            let mut open = lock(&self.open);
            match now {
                Some(now) => open.take_closed(now),
                None => open.take_all(),
            }
        };
        let mut todo = match lock(&self.failed).take() {
            Some((mut earlier, _)) => {
                earlier.merge(taken);
                earlier
            }
            None => taken,
        };
        if todo.is_empty() {
            return Ok(());
        }
        let lg_k = todo.lg_k();
        let mut first_error = None;
        for (date, part) in std::mem::replace(&mut todo, Buckets::new(lg_k)?).split_by_date() {
            let written = part.to_record_batch().and_then(|batch| {
                write_file(&self.config.data_dir, Table::Pages, date, lg_k, &batch)
            });
            match written {
                Ok(w) => {
                    self.metrics.files.fetch_add(1, Relaxed);
                    self.metrics.rows.fetch_add(w.rows as u64, Relaxed);
                    self.metrics.bytes.fetch_add(w.bytes, Relaxed);
                    tracing::info!(path = %w.path.display(), rows = w.rows, bytes = w.bytes, "wrote file");
                }
                Err(e) => {
                    self.metrics.write_errors.fetch_add(1, Relaxed);
                    todo.merge(part);
                    first_error.get_or_insert(e);
                }
            }
        }
        self.metrics
            .last_flush_micros
            .store(started.elapsed().as_micros() as u64, Relaxed);
        match first_error {
            None => Ok(()),
            Some(e) => {
                *lock(&self.failed) = Some((todo, e.to_string()));
                Err(e)
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
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut stop => return,
            }
            let now = clock();
            let due = lock(&self.open).has_closed(now) || lock(&self.failed).is_some();
            if !due {
                continue;
            }
            let me = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || me.flush(Some(now))).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "writing closed hours failed; kept in memory, will retry")
                }
                Err(e) => tracing::error!(error = %e, "the flush task panicked"),
            }
        }
    }

    /// Writes every open bucket, retrying with backoff (up to `attempts`
    /// times) so a disk that is briefly full does not lose a stop's data.
    pub async fn flush_all(self: &Arc<Self>, attempts: u32) -> Result<(), Error> {
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
    fn record(&self, visit: Visit) {
        lock(&self.open).fold(&visit);
    }

    fn health(&self) -> Result<(), String> {
        match &*lock(&self.failed) {
            None => Ok(()),
            Some((_, why)) => Err(format!("cannot write aggregates: {why}")),
        }
    }

    fn render_metrics(&self, out: &mut String) {
        let open = lock(&self.open).len();
        let pending = lock(&self.failed).as_ref().map_or(0, |(b, _)| b.len());
        let m = &self.metrics;
        let series: [(&str, &str, &str, u64); 7] = [
            (
                "footfall_open_buckets",
                "gauge",
                "Open (site, hour, page) buckets in memory.",
                open as u64,
            ),
            (
                "footfall_unwritten_buckets",
                "gauge",
                "Closed buckets whose write failed, kept for retry.",
                pending as u64,
            ),
            (
                "footfall_files_written_total",
                "counter",
                "Parquet files written.",
                m.files.load(Relaxed),
            ),
            (
                "footfall_rows_written_total",
                "counter",
                "Rows written to Parquet.",
                m.rows.load(Relaxed),
            ),
            (
                "footfall_bytes_written_total",
                "counter",
                "Bytes of Parquet written.",
                m.bytes.load(Relaxed),
            ),
            (
                "footfall_write_errors_total",
                "counter",
                "Failed file writes (retried).",
                m.write_errors.load(Relaxed),
            ),
            (
                "footfall_last_flush_seconds",
                "gauge",
                "Duration of the last flush that wrote something.",
                0,
            ),
        ];
        for (name, kind, help, value) in &series[..6] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let (name, kind, help, _) = series[6];
        let secs = m.last_flush_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {secs}"
        );
    }
}

/// Records the data dir's `lg_k` on first use and refuses another one later.
fn check_lg_k(data_dir: &Path, lg_k: u8) -> Result<(), Error> {
    let state = data_dir.join(STATE_DIR);
    let path = state.join("lg_k");
    match fs::read_to_string(&path) {
        Ok(s) => match s.trim().parse::<u8>() {
            Ok(existing) if existing == lg_k => Ok(()),
            Ok(existing) => Err(Error::LgKMismatch {
                path,
                existing,
                requested: lg_k,
            }),
            Err(_) => fs::write(&path, format!("{lg_k}\n")).map_err(Error::io("writing", &path)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(&state).map_err(Error::io("creating", &state))?;
            fs::write(&path, format!("{lg_k}\n")).map_err(Error::io("writing", &path))
        }
        Err(e) => Err(Error::Io {
            what: "reading",
            path,
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use footfall_schemas::VisitorKey;

    fn config(dir: &Path, lg_k: u8) -> AggregatorConfig {
        AggregatorConfig {
            data_dir: dir.to_owned(),
            lg_k,
            tick: Duration::from_secs(1),
        }
    }

    fn visit(time: i64, page: &str) -> Visit {
        Visit {
            site: "a.com".into(),
            time,
            page: page.into(),
            referrer: None,
            entry: true,
            visitor: VisitorKey::from_hash(time as u64),
        }
    }

    fn parquet_files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
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

    #[test]
    fn one_lg_k_per_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        Aggregator::open(config(tmp.path(), 12)).unwrap();
        Aggregator::open(config(tmp.path(), 12)).unwrap();
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
        agg.record(visit(t0 + 1, "/closed"));
        agg.record(visit(t0 + 3601, "/open"));
        agg.flush(Some(t0 + 3602)).unwrap();
        assert_eq!(parquet_files(tmp.path()).len(), 1);
        agg.flush(Some(t0 + 3603)).unwrap();
        assert_eq!(
            parquet_files(tmp.path()).len(),
            1,
            "nothing new closed, nothing written"
        );
        agg.flush(None).unwrap();
        assert_eq!(parquet_files(tmp.path()).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ticker_writes_an_hour_once_it_has_closed() {
        use std::sync::atomic::AtomicI64;
        let tmp = tempfile::tempdir().unwrap();
        let agg = Arc::new(Aggregator::open(config(tmp.path(), 12)).unwrap());
        let t0 = 1_764_079_200;
        let now = Arc::new(AtomicI64::new(t0 + 10));
        agg.record(visit(t0 + 5, "/a"));
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
        assert_eq!(parquet_files(tmp.path()).len(), 1);
        assert!(lock(&agg.open).is_empty());
        stop_tx.send(()).unwrap();
        ticker.await.unwrap();
    }

    #[tokio::test]
    async fn the_final_flush_retries_until_the_disk_is_back() {
        let tmp = tempfile::tempdir().unwrap();
        let agg = Arc::new(Aggregator::open(config(tmp.path(), 12)).unwrap());
        agg.record(visit(1_764_079_200, "/x"));
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
        assert_eq!(parquet_files(tmp.path()).len(), 1);
        assert!(agg.health().is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_write_keeps_the_buckets_and_reports_unhealthy() {
        let tmp = tempfile::tempdir().unwrap();
        let agg = Aggregator::open(config(tmp.path(), 12)).unwrap();
        agg.record(visit(1_764_079_200, "/x"));
        // A file where the table folder should be makes every write fail,
        // even for root, which ignores permission bits.
        let table_dir = tmp.path().join("pages");
        fs::write(&table_dir, "blocker").unwrap();
        assert!(agg.flush(None).is_err());
        let health = agg.health().unwrap_err();
        assert!(health.contains("pages"), "{health}");
        let mut m = String::new();
        agg.render_metrics(&mut m);
        assert!(m.contains("footfall_unwritten_buckets 1"), "{m}");
        assert!(m.contains("footfall_write_errors_total 1"), "{m}");

        fs::remove_file(&table_dir).unwrap();
        agg.flush(None).unwrap();
        assert_eq!(parquet_files(tmp.path()).len(), 1);
        assert!(agg.health().is_ok());
    }
}
