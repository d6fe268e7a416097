//! One step of the per-beacon path, run a given number of times, for
//! `benches/instructions.sh` to count under valgrind. Instruction counts do
//! not depend on what else the machine is doing, so two versions of the
//! code can be compared to the instruction, where criterion's times on a
//! shared machine move by 10 % from one run to the next.
//!
//! Usage: `per-beacon STEP N` with STEP one of `decode`, `anonymise`,
//! `fold`, `beacon` (all three, into the aggregator's buckets), `pixel`
//! (decoding the load benchmark's pixel query), `cap` (the rate cap's
//! check of one view, which `anonymise` and `beacon` include), or `visit`
//! (the visits layer's share of a view: its visitor's open visit found and
//! extended, or a new one opened; `serve` adds it to `beacon`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use footfall_aggregator::Buckets;
use footfall_aggregator::sessions::{SessionSettings, Sessions};
use footfall_collector::anonymise::Context;
use footfall_collector::beacon::QUERY_SCRATCH;
use footfall_collector::{
    Client, SaltKey, SiteFilter, agent, anonymise, decode_json, decode_query,
};
use footfall_schemas::tables::DEFAULT_LG_K;
use footfall_schemas::{Browser, Os, Visit, VisitorKey};

/// The load benchmark's body: a landing from another site with a campaign.
const BODY: &[u8] = br#"{"n":"pageview","u":"https://example.com/blog/2026/11/privacy-first-analytics?utm_source=newsletter","d":"example.com","r":"https://news.ycombinator.com/item?id=41234567","w":1440,"h":0}"#;

/// The load benchmark's pixel query: the same page and referrer, encoded.
const PIXEL: &str = "d=example.com&u=https%3A%2F%2Fexample.com%2Fblog%2F2026%2F11%2Fprivacy-first-analytics&r=https%3A%2F%2Fnews.ycombinator.com%2F&w=1440";

const CHROME: &[u8] = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// 2025-11-25T14:00:00Z.
const HOUR: i64 = 1_764_079_200;

fn client(i: u32) -> Client<'static> {
    Client {
        // 198.18.0.0/15 is reserved for benchmarking (RFC 2544).
        ip: IpAddr::V4(Ipv4Addr::from(0xC612_0000 + (i % 1024))),
        user_agent: CHROME,
        gpc: false,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let step = args.next().unwrap_or_default();
    let n: u32 = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: per-beacon decode|anonymise|fold|beacon|pixel|cap|visit N");

    agent::warm_up();
    let sites = SiteFilter::only(["example.com"]).expect("a valid site");
    // The shields `serve` has by default: the rate cap, nothing excluded.
    let shields = footfall_collector::shields::Shields::new(
        Vec::new(),
        &[],
        Some(footfall_collector::shields::DEFAULT_MAX_VIEWS_PER_MINUTE),
    )
    .expect("no patterns");
    let cx = Context {
        salt: SaltKey::from_bytes(*b"footfall-count!!"),
        now: HOUR + 1234,
        sites: &sites,
        geo: None,
        honor_gpc: false,
        shields: &shields,
        event_props: &footfall_collector::events::EventProps::none(),
    };
    let mut buckets = Buckets::new(DEFAULT_LG_K).expect("the default lg_k is valid");
    let beacon = decode_json(BODY).expect("the body decodes");
    // Each step's first run opens its rows and memoises the User-Agent, as
    // the first beacon of an hour does; the counts are of the runs after.
    let ingest = |i: u32, buckets: &mut Buckets| {
        let beacon = decode_json(black_box(BODY)).expect("the body decodes");
        anonymise(
            &beacon,
            client(i),
            &cx,
            |visit: &Visit<'_>| {
                buckets.fold(visit);
            },
            |_, _| {},
        )
    };
    ingest(0, &mut buckets).expect("the beacon counts");
    let visit = Visit {
        referrer: Some("news.ycombinator.com"),
        browser: Browser::Chrome,
        os: Os::Windows,
        ..Visit::landing(
            "example.com",
            HOUR + 1234,
            "/blog/2026/11/privacy-first-analytics",
            VisitorKey::from_hash(7),
        )
    };

    match step.as_str() {
        "decode" => {
            for _ in 0..n {
                black_box(decode_json(black_box(BODY)).ok());
            }
        }
        "anonymise" => {
            for i in 0..n {
                let outcome = anonymise(
                    black_box(&beacon),
                    client(i),
                    &cx,
                    |v: &Visit<'_>| {
                        black_box(v);
                    },
                    |_, _| {},
                );
                black_box(outcome.ok());
            }
        }
        "fold" => {
            for i in 0..n {
                let key =
                    VisitorKey::from_hash(u64::from(i % 1024).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                black_box(buckets.fold(black_box(&Visit {
                    visitor: key,
                    ..visit
                })));
            }
        }
        "beacon" => {
            for i in 0..n {
                black_box(ingest(i, &mut buckets).ok());
            }
        }
        "visit" => {
            // 1,024 visitors, as the other steps have, each on its visit:
            // the view of a visitor already reading, the common case (the
            // first 1,024 open their visits before the count starts).
            let mut sessions = Sessions::new(SessionSettings::default());
            let pages = ["/blog/2026/11/privacy-first-analytics", "/docs/", "/"];
            for i in 0..n {
                let key =
                    VisitorKey::from_hash(u64::from(i % 1024).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let view = Visit {
                    visitor: key,
                    page: pages[(i / 1024) as usize % pages.len()],
                    ..visit
                };
                sessions.pageview(black_box(&view), |ended| buckets.fold_ended(ended));
            }
            black_box(sessions.len());
        }
        "cap" => {
            for i in 0..n {
                // 1,024 visitors, as the other steps have: none reaches it.
                let key = u64::from(i % 1024).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                black_box(shields.over_cap(black_box(key), HOUR + 1234));
            }
        }
        "pixel" => {
            // It must decode, or the count would be of the error path.
            decode_query(PIXEL, &mut [0; QUERY_SCRATCH]).expect("the pixel query decodes");
            for _ in 0..n {
                // As the server's `pixel` does: the room is on the stack.
                let mut scratch = [0; QUERY_SCRATCH];
                black_box(decode_query(black_box(PIXEL), &mut scratch).ok());
            }
        }
        other => {
            panic!("unknown step {other:?}: decode, anonymise, fold, beacon, pixel, cap or visit")
        }
    }
}
