//! Criterion benchmarks of footfall's per-beacon hot path and of its flush
//! path.
//!
//! Run them with `cargo bench --bench pipeline`; `-- --quick` runs every
//! benchmark only until its estimate settles. The default configuration
//! below uses small sample counts and short measurement windows so that the
//! whole file finishes in about a minute on a 2-core machine. That is
//! enough for rough figures and ratios, but not for detecting small
//! regressions.
//!
//! Groups:
//! - `decode`: bytes of a Plausible JSON body to a `Beacon`, by the plain
//!   road and by serde_json; a pixel's query, by the one-pass decoder and
//!   by `form_urlencoded`.
//! - `anonymise`: a decoded beacon to a `Visit` (URL normalisation, site
//!   checks and the salted SipHash of IP and User-Agent).
//! - `fold`: one `Visit` into the hour's buckets and HLL sketch.
//! - `beacon`: `end_to_end` is decode, anonymise and fold per beacon, and
//!   `baseline` is a plain `serde_json::Value` parse of the same body,
//!   measured in the same run so that the two can be quoted as a ratio.
//! - `sketch_serialise`: the HLL image of small, medium and large sketches.
//! - `parquet_flush`: 10,000 buckets to a record batch and a Parquet file.
//! - `scale`: the aggregator's `record` (buckets and visits) from one
//!   thread and from two at once; with one shard per thread the two
//!   threads' throughput is about twice one's.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use datasketches::hll::HllSketch;
use footfall_aggregator::Buckets;
use footfall_aggregator::buckets::{HLL_TYPE, date_of};
use footfall_aggregator::writer::{file_name, new_flush_id, write_file};
use footfall_collector::agent;
use footfall_collector::anonymise::Context;
use footfall_collector::beacon::{QUERY_SCRATCH, decode_json_parsed, decode_query_parsed};
use footfall_collector::{
    Client, SaltKey, SiteFilter, agent_digest, anonymise, decode_json, decode_query,
};
use footfall_schemas::tables::{DEFAULT_LG_K, Table};
use footfall_schemas::{Browser, Os, Visit, VisitorKey};
use footfall_storage::Store;

/// A typical pageview as the Plausible-compatible tracker sends it: a page
/// URL with a campaign parameter, a search-engine referrer and a viewport
/// width. It is 142 bytes long.
const BODY: &[u8] = br#"{"n":"pageview","u":"https://example.com/docs/getting-started?utm_source=newsletter","d":"example.com","r":"https://www.google.com/","w":1440}"#;

/// The same page view as a `<noscript>` pixel sends it: the URLs
/// percent-encoded in the query string.
const PIXEL: &str = "d=example.com&u=https%3A%2F%2Fexample.com%2Fdocs%2Fgetting-started%3Futm_source%3Dnewsletter&r=https%3A%2F%2Fwww.google.com%2F&w=1440";

/// A current desktop Chrome User-Agent. Its length matters because the whole
/// header is hashed into the visitor key.
const CHROME_UA: &[u8] = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// 2025-11-25T14:00:00Z, the start of the hour every benchmark visit falls
/// in. A fixed time keeps all visits in one bucket hour, as they are between
/// two flushes.
const HOUR: i64 = 1_764_079_200;

/// A fixed salt: the benchmarks measure hashing, not the salt store.
const SALT: [u8; 16] = *b"footfall-bench!!";

/// A multiplier with well-mixed bits, used to turn counters into visitor
/// keys that look like hash outputs to the HLL sketch.
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

fn visitor(i: u64) -> VisitorKey {
    VisitorKey::from_hash(i.wrapping_mul(MIX))
}

/// Distinct clients, so that the end-to-end benchmark feeds the sketch many
/// visitors rather than one visitor reloading the same page.
fn clients(n: u32) -> Vec<Client<'static>> {
    (0..n)
        .map(|i| Client {
            // 198.18.0.0/15 is reserved for benchmarking (RFC 2544).
            ip: IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i)),
            user_agent: CHROME_UA,
            gpc: false,
        })
        .collect()
}

/// The shields `serve` has by default: the rate cap, nothing excluded.
static NO_PROPS: footfall_collector::events::EventProps =
    footfall_collector::events::EventProps::none();

static SHIELDS: std::sync::LazyLock<footfall_collector::shields::Shields> =
    std::sync::LazyLock::new(|| {
        footfall_collector::shields::Shields::new(
            Vec::new(),
            &[],
            Some(footfall_collector::shields::DEFAULT_MAX_VIEWS_PER_MINUTE),
        )
        .expect("no patterns")
    });

/// What `anonymise` gets besides the beacon: the fixed salt and hour, no
/// GeoIP database (its lookups are measured on their own: ~90 ns).
fn context(sites: &SiteFilter) -> Context<'_> {
    Context {
        salt: SaltKey::from_bytes(SALT),
        now: HOUR,
        sites,
        geo: None,
        honor_gpc: false,
        shields: &SHIELDS,
        event_props: &NO_PROPS,
    }
}

fn decode(c: &mut Criterion) {
    // The body must decode, or the benchmark would time the error path.
    decode_json(BODY).expect("the benchmark body decodes");

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("plausible_json", |b| {
        b.iter(|| decode_json(black_box(BODY)))
    });
    // The same body by serde_json, the road of bodies that are not plain:
    // the plain road's gain, measured in the same run.
    group.bench_function("plausible_json_by_serde", |b| {
        b.iter(|| decode_json_parsed(black_box(BODY)))
    });
    assert_eq!(
        decode_query(PIXEL, &mut [0; QUERY_SCRATCH]),
        decode_query_parsed(PIXEL)
    );
    // As the server's `pixel` does: the room is on the stack.
    group.bench_function("pixel_query", |b| {
        b.iter(|| {
            let mut scratch = [0; QUERY_SCRATCH];
            black_box(decode_query(black_box(PIXEL), &mut scratch).is_ok())
        })
    });
    group.bench_function("pixel_query_by_form_urlencoded", |b| {
        b.iter(|| decode_query_parsed(black_box(PIXEL)))
    });
    group.finish();
}

fn anonymise_beacon(c: &mut Criterion) {
    let beacon = decode_json(BODY).expect("the benchmark body decodes");
    let client = clients(1)[0];
    let sites = SiteFilter::any();
    let cx = context(&sites);
    // The beacon must become exactly one visit, or the benchmark would time
    // a drop rather than the common case.
    let mut visits = 0;
    let outcome = anonymise(&beacon, client, &cx, |_: &Visit<'_>| visits += 1, |_, _| {});
    assert_eq!(outcome, Ok(None));
    assert_eq!(visits, 1);

    let mut group = c.benchmark_group("anonymise");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pageview", |b| {
        b.iter(|| {
            anonymise(
                black_box(&beacon),
                black_box(client),
                &cx,
                |visit: &Visit<'_>| {
                    black_box(visit);
                },
                |_, _| {},
            )
        })
    });
    group.finish();
}

fn classify_user_agent(c: &mut Criterion) {
    let mut group = c.benchmark_group("user_agent");
    group.throughput(Throughput::Elements(1));
    // The common case: a User-Agent seen before, answered from the memo.
    // The digest (the memo's key) is part of the cost: `anonymise` hashes
    // the header once for the memo and the visitor key.
    let salt = SaltKey::from_bytes(SALT);
    agent::warm_up();
    assert!(agent::classify(CHROME_UA, agent_digest(salt, CHROME_UA)).is_some());
    group.bench_function("classify_seen", |b| {
        b.iter(|| {
            let ua = black_box(CHROME_UA);
            agent::classify(ua, agent_digest(salt, ua))
        })
    });
    // A first sight: the bot list and uap-core's parsers. Each iteration
    // varies the string so the memo never answers.
    let mut n = 0u64;
    group.bench_function("classify_new", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.{n}.0 Safari/537.36")
            },
            |ua| agent::classify(ua.as_bytes(), agent_digest(salt, ua.as_bytes())),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn fold(c: &mut Criterion) {
    const PAGES: u64 = 1000;
    const VISITORS_PER_PAGE: u64 = 16;
    // The visits are built before timing so that the benchmark measures the
    // fold alone. Cycling through them makes every bucket exist after the
    // first pass, which is the steady state of a busy hour: a page seen
    // before costs a hash lookup and a sketch update, not an allocation.
    let pages: Vec<String> = (0..PAGES)
        .map(|page| format!("/docs/section-{}/page-{page}", page / 50))
        .collect();
    let visits: Vec<Visit> = (0..PAGES * VISITORS_PER_PAGE)
        .map(|i| {
            let page = &pages[(i % PAGES) as usize];
            // A third land (from search, say), the rest navigate within
            // the site; all from one kind of desktop browser.
            let entry = i.is_multiple_of(3);
            Visit {
                entry,
                referrer: Some(if entry { "google.com" } else { "example.com" }),
                browser: Browser::Chrome,
                os: Os::Windows,
                ..Visit::landing("example.com", HOUR + (i % 3600) as i64, page, visitor(i))
            }
        })
        .collect();
    let mut buckets = Buckets::new(DEFAULT_LG_K).expect("the default lg_k is valid");
    let mut next = visits.iter().cycle();

    let mut group = c.benchmark_group("fold");
    group.throughput(Throughput::Elements(1));
    group.bench_function("1000_pages", |b| {
        b.iter(|| {
            let visit = next.next().expect("a cycle never ends");
            buckets.fold(black_box(visit));
        })
    });
    group.finish();
    // Unless a filter skipped the group, every page was folded.
    if !buckets.is_empty() {
        assert_eq!(buckets.rows_of(Table::Pages).count(), PAGES as usize);
    }
}

fn beacon_end_to_end(c: &mut Criterion) {
    let pool = clients(1024);
    let sites = SiteFilter::any();
    let cx = context(&sites);
    let mut buckets = Buckets::new(DEFAULT_LG_K).expect("the default lg_k is valid");
    let mut next_client = pool.iter().copied().cycle();

    let mut group = c.benchmark_group("beacon");
    group.throughput(Throughput::Elements(1));
    group.bench_function("end_to_end", |b| {
        b.iter(|| {
            // This is the collector's `ingest` without HTTP, the clock, the
            // salt store and the aggregator's mutex: decode, anonymise, and
            // hand every visit to the fold.
            let client = next_client.next().expect("a cycle never ends");
            let beacon = decode_json(black_box(BODY)).expect("the benchmark body decodes");
            anonymise(
                &beacon,
                client,
                &cx,
                |visit: &Visit<'_>| {
                    buckets.fold(visit);
                },
                |_, _| {},
            )
        })
    });
    // Any JSON endpoint has to parse the body at least this far, so this is
    // the floor against which the full path is quoted as a ratio. Measuring
    // it in the same run keeps both figures subject to the same machine
    // noise.
    group.bench_function("baseline", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(BODY)))
    });
    group.finish();
    if !buckets.is_empty() {
        assert_eq!(
            buckets.rows_of(Table::Pages).count(),
            1,
            "every beacon counts for the same page"
        );
    }
}

fn sketch_serialise(c: &mut Criterion) {
    let mut group = c.benchmark_group("sketch_serialise");
    group.throughput(Throughput::Elements(1));
    // Three visitors keep a sketch in list mode, 300 in set mode and 30,000
    // in the dense HLL_4 array, so these sizes cover each storage mode.
    for n in [3u64, 300, 30_000] {
        let mut sketch = HllSketch::new(DEFAULT_LG_K, HLL_TYPE).expect("valid sketch parameters");
        for i in 0..n {
            sketch.update(visitor(i).sketch_input());
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), &sketch, |b, s| {
            b.iter(|| black_box(s).serialize())
        });
    }
    group.finish();
}

fn parquet_flush(c: &mut Criterion) {
    const ROWS: u64 = 10_000;
    // Page popularity follows a Zipf-like long tail: the top page has 30,000
    // visitors, the thousandth has 30 and most pages have a handful. That
    // puts most sketches in list mode and a few in the dense array, as in a
    // real hour of a real site, and the mix decides the file size.
    let mut buckets = Buckets::new(DEFAULT_LG_K).expect("the default lg_k is valid");
    let mut key = 0u64;
    for rank in 1..=ROWS {
        let page = format!("/blog/{rank:05}-some-post-title");
        for _ in 0..(30_000 / rank).max(1) {
            key += 1;
            buckets.fold(&Visit {
                entry: key.is_multiple_of(2),
                ..Visit::landing("example.com", HOUR, &page, visitor(key))
            });
        }
    }
    assert_eq!(buckets.rows_of(Table::Pages).count(), ROWS as usize);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::local(dir.path()).expect("a data dir");
    let date = date_of(HOUR);

    let mut group = c.benchmark_group("parquet_flush");
    group.throughput(Throughput::Elements(ROWS));
    // A flush takes milliseconds and includes two fsyncs, so its time
    // depends on the disk; ten samples over a ten-second window give a
    // usable median without stretching the run.
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("10000_buckets", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let batch = buckets
                    .to_record_batch(Table::Pages)
                    .expect("a valid batch");
                let name = file_name(new_flush_id());
                write_file(&store, Table::Pages, date, DEFAULT_LG_K, &name, &batch)
                    .expect("the temporary folder is writable");
                timed += start.elapsed();
                // Each flush makes a new file. Deleting it outside the timed
                // region keeps the folder small without charging the unlink
                // to the flush.
                store
                    .delete(&format!("pages/date={date}/{name}"))
                    .expect("the file just written exists");
            }
            timed
        })
    });
    group.finish();
}

/// The aggregator's `record` (the sink every counted beacon reaches, with
/// its visits) from one thread and from two at once, each folding the same
/// number of views: the time of one iteration is the same for both when
/// the threads do not wait on each other, so the throughput doubles.
fn scale(c: &mut Criterion) {
    use footfall_aggregator::service::{Aggregator, AggregatorConfig};
    use footfall_schemas::VisitSink;
    const PER_THREAD: u64 = 20_000;
    let open = |shards: usize| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let aggregator = Aggregator::open(AggregatorConfig {
            store: Store::local(dir.path()).expect("a data dir"),
            state_dir: dir.path().join("_state"),
            lg_k: DEFAULT_LG_K,
            tick: Duration::from_secs(1),
            flush_interval: None,
            checkpoint_interval: Duration::from_secs(10),
            limits: Default::default(),
            countries: false,
            sessions: Some(Default::default()),
            shards,
        })
        .expect("a data dir");
        (dir, aggregator)
    };
    let pages: Vec<String> = (0..1000).map(|i| format!("/docs/page-{i}")).collect();
    // The n-th view: one of 1,000 pages and 4,096 visitors, over an hour.
    fn nth(pages: &[String], n: u64) -> Visit<'_> {
        Visit::landing(
            "example.com",
            HOUR + (n % 3600) as i64,
            &pages[(n % 1000) as usize],
            visitor(n % 4096),
        )
    }
    let mut group = c.benchmark_group("scale");
    // Two threads on one shard is the one lock every beacon took before.
    for (threads, shards) in [(1u64, 1), (2, 1), (2, 2)] {
        let (_dir, aggregator) = open(shards);
        group.throughput(Throughput::Elements(threads * PER_THREAD));
        let id = format!("{threads}_threads_{shards}_shards");
        group.bench_function(BenchmarkId::new("record", id), |b| {
            b.iter(|| {
                std::thread::scope(|scope| {
                    for t in 0..threads {
                        let (aggregator, pages) = (&aggregator, &pages);
                        scope.spawn(move || {
                            for i in 0..PER_THREAD {
                                let visit = nth(pages, i + t * PER_THREAD);
                                aggregator.record(black_box(&visit));
                            }
                        });
                    }
                });
            })
        });
    }
    // The machine's own ceiling: each thread folding into Buckets of its
    // own, sharing nothing (no locks, no visits).
    for threads in [1u64, 2] {
        group.throughput(Throughput::Elements(threads * PER_THREAD));
        let id = format!("{threads}_threads_private_buckets");
        group.bench_function(BenchmarkId::new("fold", id), |b| {
            b.iter(|| {
                std::thread::scope(|scope| {
                    for t in 0..threads {
                        let pages = &pages;
                        scope.spawn(move || {
                            let mut buckets =
                                Buckets::new(DEFAULT_LG_K).expect("the default lg_k is valid");
                            for i in 0..PER_THREAD {
                                buckets.fold(black_box(&nth(pages, i + t * PER_THREAD)));
                            }
                            black_box(buckets.len())
                        });
                    }
                });
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = pipeline;
    // Short windows keep the whole run to about a minute on two cores.
    // Command-line flags such as `--quick`, `--sample-size` and
    // `--measurement-time` override them, except where a group sets its own
    // values (`parquet_flush` does), because a group's settings take
    // precedence over the defaults.
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = decode, anonymise_beacon, classify_user_agent, fold, beacon_end_to_end, sketch_serialise, parquet_flush, scale
}
criterion_main!(pipeline);
