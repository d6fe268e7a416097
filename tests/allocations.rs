//! Issue 5's second goal, checked rather than timed: a beacon for a page
//! already seen in the hour costs no heap allocation from its JSON body to
//! its sketch, through the aggregator the server hands visits to. dhat's
//! heap profiler, in testing mode, counts every block this binary
//! allocates; the count is exact, so unlike a speed it can be a test on a
//! noisy machine.
//!
//! The pixel's query is covered too: its percent-encoded URLs are decoded
//! into a buffer on the stack, as the server does.
//!
//! Not covered: the HTTP shell (hyper's request and response, the body's
//! buffer), which the load benchmark measures; and a sketch's own growth
//! while it learns new visitors (amortised: its arrays double).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use footfall_aggregator::buckets::Limits;
use footfall_aggregator::{Aggregator, AggregatorConfig};
use footfall_collector::anonymise::Context;
use footfall_collector::beacon::QUERY_SCRATCH;
use footfall_collector::{
    Beacon, Client, SaltKey, SiteFilter, anonymise, decode_json, decode_query,
};
use footfall_schemas::tables::DEFAULT_LG_K;
use footfall_schemas::{Visit, VisitSink};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const CHROME: &[u8] = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// 2025-11-25T14:00:00Z.
const HOUR: i64 = 1_764_079_200;

fn client(i: u32) -> Client<'static> {
    Client {
        // 198.18.0.0/15 is reserved for benchmarking (RFC 2544).
        ip: IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i)),
        user_agent: CHROME,
        gpc: false,
    }
}

/// The real sink, on a temporary data dir, with small limits so that a
/// flood reaches `(other)` quickly. Nothing is written: no tick runs.
fn aggregator(dir: &std::path::Path) -> Aggregator {
    Aggregator::open(AggregatorConfig {
        store: footfall_storage::Store::local(dir).expect("a data dir"),
        state_dir: dir.join("_state"),
        lg_k: DEFAULT_LG_K,
        tick: Duration::from_secs(3600),
        flush_interval: None,
        checkpoint_interval: Duration::from_secs(3600),
        limits: Limits {
            max_pages: 8,
            max_sites: 2,
        },
        countries: false,
        sessions: Some(Default::default()),
        shards: 2,
    })
    .expect("a fresh data dir opens")
}

/// Decodes, anonymises and records one beacon, as the server's `ingest`
/// does; returns how many visits were recorded.
fn ingest(sink: &Aggregator, cx: &Context<'_>, body: &[u8], visitor: u32) -> usize {
    let beacon = decode_json(body).expect("the body decodes");
    record(sink, cx, &beacon, visitor)
}

/// The same for a pixel's query, decoded into a buffer on the stack as the
/// server's `pixel` does.
fn ingest_pixel(sink: &Aggregator, cx: &Context<'_>, query: &str, visitor: u32) -> usize {
    let mut scratch = [0; QUERY_SCRATCH];
    let beacon = decode_query(query, &mut scratch).expect("the query decodes");
    record(sink, cx, &beacon, visitor)
}

fn record(sink: &Aggregator, cx: &Context<'_>, beacon: &Beacon<'_>, visitor: u32) -> usize {
    let mut counted = 0;
    anonymise(
        beacon,
        client(visitor),
        cx,
        |visit: &Visit<'_>| {
            sink.record(visit);
            counted += 1;
        },
        |_, _| {},
    )
    .expect("a well-formed beacon");
    counted
}

/// Blocks allocated while `f` runs.
fn blocks(f: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    f();
    dhat::HeapStats::get().total_blocks - before
}

#[test]
fn beacons_for_open_rows_allocate_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let tmp = tempfile::tempdir().unwrap();
    let sink = aggregator(tmp.path());
    let sites = SiteFilter::any();
    // The rate cap on, its counters allocated once, here; high enough that
    // this test's few visitors, who send many views each, are never capped.
    let shields =
        footfall_collector::shields::Shields::new(Vec::new(), &[], Some(u32::MAX)).unwrap();
    let cx = Context {
        salt: SaltKey::from_bytes(*b"footfall-alloc!!"),
        now: HOUR + 1234,
        sites: &sites,
        geo: None,
        honor_gpc: false,
        shields: &shields,
        event_props: &footfall_collector::events::EventProps::none(),
    };

    // The shapes every tracker sends: a landing from a search engine with
    // a campaign, a navigation within the site, a hash-routed page and a
    // direct view, as the README's tracker sends them.
    let open: [&[u8]; 4] = [
        br#"{"n":"pageview","u":"https://example.com/blog/2026/11/privacy-first-analytics?utm_source=newsletter&utm_medium=email","d":"example.com","r":"https://news.ycombinator.com/item?id=41234567","w":1440,"h":0}"#,
        br#"{"n":"pageview","u":"https://www.example.com/docs/","d":"example.com","r":"https://example.com/blog/","w":390}"#,
        br#"{"n":"pageview","u":"https://example.com/app#/inbox?id=7","d":"example.com","r":null,"w":1280,"h":1}"#,
        br#"{"n":"pageview","u":"https://example.com/","d":"example.com"}"#,
    ];
    // The first sight of each row opens it, and a sketch grows while it
    // learns its first thousands of visitors (a few inline coupons, then
    // DataSketches' list, set and the fixed HLL array); the User-Agent's
    // verdict is memoised on first sight.
    let mut views = 0;
    const WARM: u32 = 20_000;
    for visitor in 0..WARM {
        for body in open {
            views += ingest(&sink, &cx, body, visitor);
        }
    }
    // From then on a beacon, from a new visitor or one seen before, only
    // updates what is there.
    let allocated = blocks(|| {
        for visitor in (WARM..WARM + 1000).chain(0..1000) {
            for body in open {
                views += ingest(&sink, &cx, body, visitor);
            }
        }
    });
    dhat::assert_eq!(allocated, 0, "blocks for 8,000 beacons to open pages");

    // The pixel of a page without JavaScript: its URLs come percent-encoded.
    let pixel = "d=example.com&u=https%3A%2F%2Fexample.com%2Fblog%2F2026%2F11%2Fprivacy-first-analytics&r=https%3A%2F%2Fnews.ycombinator.com%2F&w=1440";
    for visitor in 0..WARM {
        views += ingest_pixel(&sink, &cx, pixel, visitor);
    }
    let allocated = blocks(|| {
        for visitor in (WARM..WARM + 1000).chain(0..1000) {
            views += ingest_pixel(&sink, &cx, pixel, visitor);
        }
    });
    dhat::assert_eq!(allocated, 0, "blocks for 2,000 pixel beacons");

    // A page of the long tail: three visitors, kept as bare coupons, who
    // come back.
    let small = br#"{"n":"pageview","u":"https://example.com/small","d":"example.com","r":"https://example.com/"}"#;
    for visitor in 0..3 {
        views += ingest(&sink, &cx, small, visitor);
    }
    let allocated = blocks(|| {
        for visitor in (0..3).cycle().take(300) {
            views += ingest(&sink, &cx, small, visitor);
        }
    });
    dhat::assert_eq!(allocated, 0, "blocks for 300 beacons to a small page");

    // A flood: new pages, new referrers and new sites, past every limit,
    // all counted under `(other)`. The bodies are made before counting.
    let flood: Vec<String> = (0..600)
        .map(|i| {
            format!(
                r#"{{"n":"pageview","u":"https://site{s}.example/p/{i}","d":"site{s}.example","r":"https://spam{i}.example/"}}"#,
                s = i % 7
            )
        })
        .collect();
    // Three senders, so the `(other)` rows' sketches stop growing once
    // they have seen them.
    for (i, body) in flood[..100].iter().enumerate() {
        views += ingest(&sink, &cx, body.as_bytes(), i as u32 % 3);
    }
    let allocated = blocks(|| {
        for (i, body) in flood[100..].iter().enumerate() {
            views += ingest(&sink, &cx, body.as_bytes(), i as u32 % 3);
        }
    });
    dhat::assert_eq!(allocated, 0, "blocks for 500 beacons of a flood");

    // The flood was counted, under `(other)` in each bound.
    let mut metrics = String::new();
    sink.render_metrics(&mut metrics);
    for kind in ["page", "source", "site"] {
        let prefix = format!("footfall_overflow_views_total{{kind=\"{kind}\"}} ");
        let overflowed: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {kind} overflow series in {metrics}"));
        assert!(
            overflowed >= 50.0,
            "{kind}: {overflowed} views over the bound"
        );
    }
    // And every view is in the files, `(other)` rows included.
    sink.flush(None).expect("the buckets are written");
    assert_eq!(views_in_files(&tmp.path().join("pages")), views as i64);
    assert_eq!(views, 5 * 22_000 + 303 + 600);
}

/// The sum of `views` over every Parquet file under `dir`.
fn views_in_files(dir: &std::path::Path) -> i64 {
    use arrow_array::{Array, Int64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut sum = 0;
    for entry in std::fs::read_dir(dir).expect("the table was written") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sum += views_in_files(&path);
            continue;
        }
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let column = batch.column_by_name("views").expect("a views column");
            let column = column.as_any().downcast_ref::<Int64Array>().unwrap();
            sum += column.iter().flatten().sum::<i64>();
        }
    }
    sum
}
