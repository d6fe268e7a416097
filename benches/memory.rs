//! Memory per open bucket: builds 1,000,000 (site, hour, page) buckets of
//! 1–3 visitors each, the long tail of a busy hour, and prints the growth of
//! this process's resident memory as they fill, in bytes per bucket.
//!
//! Run with `cargo bench --bench memory` (Linux: reads /proc/self/status).
//! The goal (issue 5): 1,000,000 such buckets in at most 256 MiB above the
//! idle size.

use std::hint::black_box;

use footfall_aggregator::Buckets;
use footfall_schemas::tables::DEFAULT_LG_K;
use footfall_schemas::{Visit, VisitorKey};

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

fn main() {
    // `cargo bench` passes flags such as `--bench`; this is not criterion.
    let limits = footfall_aggregator::buckets::Limits {
        max_pages: usize::MAX,
        max_sites: usize::MAX,
    };
    let mut buckets = Buckets::new(DEFAULT_LG_K)
        .expect("lg_k 12")
        .with_limits(limits);
    let idle = rss_bytes();
    println!("buckets    resident above idle    bytes/bucket");
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
        let n = i + 1;
        if [10_000, 100_000, 250_000, 500_000, 750_000, BUCKETS].contains(&n) {
            let grown = rss_bytes().saturating_sub(idle);
            println!(
                "{n:>9}    {:>10.1} MiB         {:>6.0}",
                grown as f64 / (1024.0 * 1024.0),
                grown as f64 / n as f64
            );
        }
    }
    black_box(&buckets);
    let grown = rss_bytes().saturating_sub(idle);
    let verdict = if grown <= 256 * 1024 * 1024 {
        "within"
    } else {
        "OVER"
    };
    println!(
        "{BUCKETS} buckets: {:.1} MiB above idle, {verdict} the 256 MiB goal",
        grown as f64 / (1024.0 * 1024.0)
    );
}
