//! Issue 5's second goal, checked rather than timed: a beacon for a page
//! already seen in the hour costs no heap allocation from its JSON body to
//! its sketch. dhat's heap profiler, in testing mode, counts every block
//! this binary allocates; the count is exact, so unlike a speed it can be a
//! test on a noisy machine.
//!
//! The HTTP shell (hyper's request and response) is not covered here: the
//! load benchmark measures it.

use std::net::{IpAddr, Ipv4Addr};

use footfall_aggregator::Buckets;
use footfall_collector::anonymise::Context;
use footfall_collector::{Client, SaltKey, SiteFilter, anonymise, decode_json};
use footfall_schemas::tables::{DEFAULT_LG_K, Table};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// A landing from a search engine with a campaign, a navigation within the
/// site, a hash-routed page and a direct view: the shapes every tracker
/// sends, as the README's tracker sends them.
const BODIES: [&[u8]; 4] = [
    br#"{"n":"pageview","u":"https://example.com/blog/2026/11/privacy-first-analytics?utm_source=newsletter&utm_medium=email","d":"example.com","r":"https://news.ycombinator.com/item?id=41234567","w":1440,"h":0}"#,
    br#"{"n":"pageview","u":"https://www.example.com/docs/","d":"example.com","r":"https://example.com/blog/","w":390}"#,
    br#"{"n":"pageview","u":"https://example.com/app#/inbox?id=7","d":"example.com","r":null,"w":1280,"h":1}"#,
    br#"{"n":"pageview","u":"https://example.com/","d":"example.com"}"#,
];

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

#[test]
fn a_beacon_for_a_page_seen_this_hour_allocates_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let sites = SiteFilter::only(["example.com"]).unwrap();
    let cx = Context {
        salt: SaltKey::from_bytes(*b"footfall-alloc!!"),
        now: HOUR + 1234,
        sites: &sites,
        geo: None,
        honor_gpc: false,
    };
    let mut buckets = Buckets::new(DEFAULT_LG_K).unwrap();
    let mut beacon = |body: &[u8], visitor: u32| {
        let beacon = decode_json(body).expect("the body decodes");
        let mut counted = 0;
        let outcome = anonymise(&beacon, client(visitor), &cx, |visit| {
            buckets.fold(visit);
            counted += 1;
        });
        assert_eq!((outcome, counted), (Ok(None), 1));
    };

    // The first sight of each page, source and device opens its rows, and
    // a sketch grows while it learns its first thousands of visitors (from
    // a few inline coupons to DataSketches' list, set and then the fixed
    // HLL array); the User-Agent's verdict is memoised on first sight.
    const WARM: u32 = 20_000;
    for visitor in 0..WARM {
        for body in BODIES {
            beacon(body, visitor);
        }
    }

    // From then on a beacon, from a new visitor or one seen before, only
    // updates what is there.
    let before = dhat::HeapStats::get();
    for visitor in (WARM..WARM + 1000).chain(0..1000) {
        for body in BODIES {
            beacon(body, visitor);
        }
    }
    let after = dhat::HeapStats::get();
    dhat::assert_eq!(
        after.total_blocks - before.total_blocks,
        0,
        "allocations for 8,000 beacons"
    );
    // The beacons were counted, under the pages they name.
    let pages: Vec<_> = buckets
        .rows_of(Table::Pages)
        .map(|row| (row.dims[0].unwrap().to_owned(), row.bucket.views))
        .collect();
    assert_eq!(pages.len(), 4, "{pages:?}");
    for (page, views) in pages {
        assert!(
            [
                "/blog/2026/11/privacy-first-analytics",
                "/docs/",
                "/app#/inbox",
                "/"
            ]
            .contains(&page.as_str()),
            "{page}"
        );
        assert_eq!(views, i64::from(WARM) + 2000, "{page}");
    }
}
