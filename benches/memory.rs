//! Memory per open bucket: builds 1,000,000 (site, hour, page) buckets of
//! 1–3 visitors each, the long tail of a busy hour, and prints the growth of
//! this process's resident memory as they fill, in bytes per bucket.
//!
//! Then the same for open visits: 1,000,000 of them (100 sites, 1,000
//! entry pages each, half of them on a second page, a tenth from a
//! campaign), in bytes per open visit.
//!
//! Run with `cargo bench --bench memory` (Linux: reads /proc/self/status).
//! The goals: 1,000,000 such buckets in at most 256 MiB above the idle
//! size (issue 5), 1,000,000 open visits in at most 128 MiB (issue 14).

use std::hint::black_box;

use footfall_aggregator::Buckets;
use footfall_aggregator::sessions::{SessionSettings, Sessions};
use footfall_schemas::tables::DEFAULT_LG_K;
use footfall_schemas::{Campaign, Visit, VisitorKey};

const HOUR: i64 = 1_764_079_200;
const BUCKETS: usize = 1_000_000;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Prints the growth above `idle` at a few points on the way to `total`.
fn progress(n: usize, total: usize, idle: u64) {
    if [10_000, 100_000, 250_000, 500_000, 750_000, total].contains(&n) {
        let grown = rss_bytes().saturating_sub(idle);
        println!(
            "{n:>11}    {:>10.1} MiB         {:>6.0}",
            grown as f64 / (1024.0 * 1024.0),
            grown as f64 / n as f64
        );
    }
}

/// Prints the growth of `n` `what` above `idle` against the goal.
fn verdict(n: usize, what: &str, idle: u64, goal_mib: u64) {
    let grown = rss_bytes().saturating_sub(idle);
    let verdict = if grown <= goal_mib * 1024 * 1024 {
        "within"
    } else {
        "OVER"
    };
    println!(
        "{n} {what}: {:.1} MiB above idle, {verdict} the {goal_mib} MiB goal",
        grown as f64 / (1024.0 * 1024.0)
    );
}

fn main() {
    if std::env::var_os("FOOTFALL_MEMORY_PHASE").is_some_and(|p| p == "visits") {
        return visits();
    }
    // `cargo bench` passes flags such as `--bench`; this is not criterion.
    let limits = footfall_aggregator::buckets::Limits {
        max_pages: usize::MAX,
        max_sites: usize::MAX,
    };
    let mut buckets = Buckets::new(DEFAULT_LG_K)
        .expect("lg_k 12")
        .with_limits(limits);
    let idle = rss_bytes();
    println!("    buckets    resident above idle    bytes/bucket");
    let mut visitor = 0u64;
    for i in 0..BUCKETS {
        // 100 sites, 10,000 pages each; paths of realistic length.
        let site = format!("site-{}.example", i % 100);
        let page = format!("/blog/2026/11/some-article-title-{}", i / 100);
        for _ in 0..(1 + i % 3) {
            visitor += 1;
            let key = VisitorKey::from_hash(visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // Every table is folded, as in the server; the sources, devices
            // and countries rows of a site-hour are few next to its pages.
            buckets.fold(&Visit::landing(&site, HOUR + (i % 3600) as i64, &page, key));
        }
        progress(i + 1, BUCKETS, idle);
    }
    black_box(&buckets);
    verdict(BUCKETS, "buckets", idle, 256);
    // The visits in a process of their own: memory the buckets freed would
    // otherwise be reused, and hide what the visits take.
    let status = std::process::Command::new(std::env::current_exe().expect("this binary"))
        .env("FOOTFALL_MEMORY_PHASE", "visits")
        .status()
        .expect("run the visits phase");
    assert!(status.success());
}

const VISITS: usize = 1_000_000;

fn visits() {
    let mut sessions = Sessions::new(SessionSettings {
        max_visits: VISITS,
        ..SessionSettings::default()
    });
    let sites: Vec<String> = (0..100).map(|s| format!("site-{s}.example")).collect();
    let pages: Vec<String> = (0..1000)
        .map(|p| format!("/blog/2026/11/some-article-title-{p}"))
        .collect();
    let idle = rss_bytes();
    println!("\nopen visits    resident above idle    bytes/visit");
    for i in 0..VISITS {
        let key = VisitorKey::from_hash((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let landing = Visit {
            referrer: (i % 3 == 0).then_some("news.example"),
            campaign: Campaign {
                source: (i % 10 == 0).then_some("newsletter"),
                medium: (i % 10 == 0).then_some("email"),
                campaign: None,
            },
            ..Visit::landing(
                &sites[i % 100],
                HOUR + (i % 1800) as i64,
                &pages[(i / 100) % 1000],
                key,
            )
        };
        sessions.pageview(&landing, |_| unreachable!("no visit ends"));
        if i % 2 == 0 {
            let next = Visit {
                page: &pages[(i / 100 + 1) % 1000],
                entry: false,
                referrer: None,
                campaign: Campaign::default(),
                time: landing.time + 30,
                ..landing
            };
            sessions.pageview(&next, |_| unreachable!("no visit ends"));
        }
        progress(i + 1, VISITS, idle);
    }
    black_box(&sessions);
    verdict(VISITS, "open visits", idle, 128);
}
