//! `footfall report` over a long range, with and without daily rollups.
//!
//! Generates `FOOTFALL_BENCH_DAYS` (default 90) days of hourly files for one
//! site of 10,000 pages with long-tailed (Zipf-like) traffic, through the
//! real fold and writer, then times `report --by page` over the whole range
//! reading the hourly files, builds the daily rollups (timed too), and
//! times the same report again. Both runs must give the same rows. Each
//! report is also timed over the first third and two thirds of the range,
//! to show how the time scales with the sketches merged.
//!
//! Run with `cargo bench --bench report`. The goal (issue 4): the 90-day
//! report in under 2 s on a 2-core machine with rollups, linear in the
//! number of sketches merged.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use footfall_aggregator::Buckets;
use footfall_aggregator::rollup::rollup_date;
use footfall_aggregator::writer::{file_name, new_flush_id, write_file};
use footfall_report::Store;
use footfall_report::{Dimension, Query, Report, run};
use footfall_schemas::tables::DEFAULT_LG_K;
use footfall_schemas::{Visit, VisitorKey};

const PAGES: usize = 10_000;
/// Views an hour: a mid-sized site, about 480k views a day.
const VIEWS_PER_HOUR: usize = 20_000;
/// Distinct visitors a day (one salt a day: new keys every day).
const VISITORS_PER_DAY: u64 = 60_000;
const FIRST_DAY: i64 = 1_756_684_800; // 2025-09-01T00:00:00Z

/// SplitMix64: spread, not security.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Index in 0..n, log-uniform: page k gets about 1/k of the views.
    fn zipf(&mut self, n: usize) -> usize {
        (((n as f64).powf(self.unit()) - 1.0).floor() as usize).min(n - 1)
    }
}

fn date(day: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp(FIRST_DAY + day * 86_400, 0)
        .expect("in range")
        .date_naive()
}

fn report(dir: &std::path::Path, days: i64) -> (Report, Duration) {
    let q = Query {
        store: Store::local(dir).expect("a data dir"),
        site: "example.com".into(),
        from: date(0),
        to: date(days - 1),
        by: Some(Dimension::Page),
        limit: None,
        min_visitors: 0,
        event: None,
        prop: None,
        goals: Vec::new(),
        live: None,
    };
    let started = Instant::now();
    let r = run(&q).expect("a report");
    (r, started.elapsed())
}

fn main() {
    let days: i64 = std::env::var("FOOTFALL_BENCH_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(90);
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = tmp.path();
    let pages: Vec<String> = (0..PAGES)
        .map(|p| format!("/docs/article-{p:05}"))
        .collect();

    let started = Instant::now();
    let mut rng = Rng(0x5EED);
    let mut files = 0;
    for day in 0..days {
        for hour in 0..24 {
            let time = FIRST_DAY + day * 86_400 + hour * 3600;
            let mut b = Buckets::new(DEFAULT_LG_K).expect("lg_k 12");
            for _ in 0..VIEWS_PER_HOUR {
                let page = &pages[rng.zipf(PAGES)];
                let visitor = ((day as u64) << 32) | (rng.next() % VISITORS_PER_DAY);
                let key = VisitorKey::from_hash(visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                b.fold(&Visit::landing("example.com", time, page, key));
            }
            let batch = b
                .to_record_batch(footfall_schemas::tables::Table::Pages)
                .expect("a batch");
            write_file(
                &Store::local(dir).expect("a data dir"),
                footfall_schemas::tables::Table::Pages,
                date(day),
                DEFAULT_LG_K,
                &file_name(new_flush_id()),
                &batch,
            )
            .expect("writable");
            files += 1;
        }
    }
    println!(
        "generated {days} days: {files} hourly files, {VIEWS_PER_HOUR} views/hour over {PAGES} pages, in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let spans = [days / 3, 2 * days / 3, days];
    println!(
        "\n{:<8} {:>6} {:>8} {:>11} {:>9} {:>15}",
        "source", "days", "files", "rows", "seconds", "sketches/s"
    );
    let mut hourly = Vec::new();
    for &span in &spans {
        let (r, t) = report(dir, span);
        print_row("hourly", span, &r, t);
        hourly.push(r);
    }

    let started = Instant::now();
    for day in 0..days {
        rollup_date(
            &Store::local(dir).expect("a data dir"),
            date(day),
            Some(DEFAULT_LG_K),
        )
        .expect("rollup");
    }
    let rollup_time = started.elapsed();

    for (i, &span) in spans.iter().enumerate() {
        let (r, t) = report(dir, span);
        print_row("rollups", span, &r, t);
        assert_eq!(
            r.stats.rollups, span as usize,
            "every day read from its rollup"
        );
        let differ: Vec<_> = r
            .rows
            .iter()
            .zip(&hourly[i].rows)
            .filter(|(a, b)| a != b)
            .take(5)
            .collect();
        assert!(differ.is_empty(), "rollups change no number: {differ:?}");
    }
    println!(
        "\nbuilding the {days} days' rollups took {:.1} s ({:.0} ms a day)",
        rollup_time.as_secs_f64(),
        rollup_time.as_secs_f64() * 1000.0 / days as f64
    );
}

fn print_row(source: &str, days: i64, r: &Report, t: Duration) {
    println!(
        "{source:<8} {days:>6} {:>8} {:>11} {:>9.2} {:>15.0}",
        r.stats.files,
        r.stats.rows,
        t.as_secs_f64(),
        r.stats.rows as f64 / t.as_secs_f64()
    );
}
