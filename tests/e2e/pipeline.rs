//! The whole pipeline on real traffic: beacons over HTTP in, Parquet out,
//! numbers checked against the truth, files and logs scanned for anything
//! personal.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use crate::support::{
    Conn, Rng, Server, all_files, assert_estimate, by_page, post, read_pages, read_table,
    union_estimate, utc_date, wait_if_near_midnight,
};

struct Beacon {
    /// `POST` JSON (short or long keys) or `GET` pixel.
    request: Vec<u8>,
    /// Sites it should count for, with the page each sees.
    counts: Vec<(&'static str, String)>,
    /// The `X-Footfall-Dropped` reason expected, if it counts nowhere.
    dropped: Option<&'static str>,
    visitor: usize,
    entry: bool,
}

#[derive(Default)]
struct Truth {
    views: HashMap<(String, String), i64>,
    entries: HashMap<(String, String), i64>,
    page_visitors: HashMap<(String, String), HashSet<usize>>,
    site_visitors: HashMap<String, HashSet<usize>>,
}

fn ip(v: usize) -> String {
    if v.is_multiple_of(5) {
        format!("2001:db8::{:x}", 0x1000 + v)
    } else {
        format!("100.64.{}.{}", v / 256, v % 256)
    }
}

fn user_agent(v: usize) -> String {
    format!(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.{v}.0 Safari/537.36"
    )
}

/// Secrets that must never reach a file or a log: query values, fragments,
/// referrer paths.
fn secrets(n: usize) -> [String; 4] {
    [
        format!("jane.doe.{n}@example.org"),
        format!("tok-{n:08}-s3cr3t"),
        format!("frag-secret-{n}"),
        format!("story-secret-{n}"),
    ]
}

fn make_beacons(n: usize, visitors: usize, rng: &mut Rng) -> Vec<Beacon> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let v = rng.below(visitors);
        let [email, token, fragment, story] = secrets(i);
        let query = format!(
            "?email={}&token={token}&utm_source=news",
            email.replace('@', "%40")
        );
        let kind = rng.below(100);
        let (host, page, d, counts): (&str, String, &str, Vec<(&'static str, String)>) =
            if kind < 70 {
                let page = format!("/docs/page-{}", rng.zipf(40));
                let host = if kind.is_multiple_of(2) {
                    "www.example.com"
                } else {
                    "example.com"
                };
                (
                    host,
                    page.clone(),
                    "example.com",
                    vec![("example.com", page)],
                )
            } else if kind < 80 {
                let page = format!("/post-{}", rng.zipf(10));
                (
                    "blog.example.com",
                    page.clone(),
                    "blog.example.com,example.com",
                    vec![("blog.example.com", page.clone()), ("example.com", page)],
                )
            } else if kind < 92 {
                let page = format!("/item/{}", rng.zipf(10));
                (
                    "shop.test",
                    page.clone(),
                    "shop.test",
                    vec![("shop.test", page)],
                )
            } else if kind < 96 {
                ("other.org", "/".into(), "other.org", vec![])
            } else {
                ("evil.example.net", "/phish".into(), "example.com", vec![])
            };
        let dropped = match (counts.is_empty(), host) {
            (false, _) => None,
            (true, "other.org") => Some("unknown-site"),
            (true, _) => Some("url-not-on-site"),
        };
        // One beacon in ten uses hash routing: its route counts as part of
        // the page, but the query and secrets after it never do.
        let hash = i % 10 == 9;
        let (url, counts) = if hash {
            let route = format!("#/tab-{}", i % 3);
            let url = format!("https://{host}{page}{query}{route}?s={fragment}&email={email}");
            let counts = counts
                .into_iter()
                .map(|(s, p)| (s, format!("{p}{route}")))
                .collect();
            (url, counts)
        } else {
            (format!("https://{host}{page}{query}#{fragment}"), counts)
        };
        let h = u8::from(hash);
        let (referrer, entry) = match rng.below(10) {
            0..=3 => (None, true),
            4..=6 => (
                Some(format!("https://{host}/docs/page-1?from=internal-{token}")),
                false,
            ),
            _ => (
                Some(format!("https://news.example.net/{story}?ref={token}")),
                true,
            ),
        };
        let ua = user_agent(v);
        let xff = ip(v);
        let request = match i % 4 {
            0 | 1 => {
                let r = referrer
                    .as_ref()
                    .map_or("null".to_owned(), |r| format!("\"{r}\""));
                let body =
                    format!(r#"{{"n":"pageview","u":"{url}","d":"{d}","r":{r},"w":1280,"h":{h}}}"#);
                post(&body, &ua, &xff, "text/plain;charset=UTF-8")
            }
            2 => {
                let r = referrer
                    .as_ref()
                    .map_or("null".to_owned(), |r| format!("\"{r}\""));
                let body = format!(
                    r#"{{"name":"pageview","url":"{url}","domain":"{d}","referrer":{r},"screen_width":390,"h":{h}}}"#
                );
                post(&body, &ua, &xff, "application/json")
            }
            _ => {
                let enc = |s: &str| url_encode(s);
                let mut target = format!("/api/event?d={}&u={}&w=800&h={h}", enc(d), enc(&url));
                if let Some(r) = &referrer {
                    target.push_str(&format!("&r={}", enc(r)));
                }
                // Behind an appending proxy the client's own header comes
                // first: a forged address, different every time. Only the
                // hop the trusted proxy added may count.
                let forged = format!("198.18.{}.{}", i / 256 % 256, i % 256);
                format!(
                    "GET {target} HTTP/1.1\r\nHost: collector.test\r\nUser-Agent: {ua}\r\nX-Forwarded-For: {forged}, {xff}\r\n\r\n"
                )
                .into_bytes()
            }
        };
        out.push(Beacon {
            request,
            counts,
            dropped,
            visitor: v,
            entry,
        });
    }
    out
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends the beacons over `threads` keep-alive connections; checks every
/// answer and returns the truth of what was counted.
fn send_all(addr: SocketAddr, beacons: &[Beacon], threads: usize) -> Truth {
    let chunks: Vec<&[Beacon]> = beacons.chunks(beacons.len().div_ceil(threads)).collect();
    std::thread::scope(|s| {
        for chunk in chunks {
            s.spawn(move || {
                let mut conn = Conn::open(addr);
                for b in chunk {
                    let reply = conn.raw(&b.request);
                    assert_eq!(reply.status, 202, "{}", reply.text());
                    assert_eq!(reply.header("x-footfall-dropped"), b.dropped);
                    assert!(reply.header("set-cookie").is_none());
                }
            });
        }
    });
    let mut t = Truth::default();
    for b in beacons {
        for (site, page) in &b.counts {
            let key = (site.to_string(), page.clone());
            *t.views.entry(key.clone()).or_default() += 1;
            *t.entries.entry(key.clone()).or_default() += i64::from(b.entry);
            t.page_visitors.entry(key).or_default().insert(b.visitor);
            t.site_visitors
                .entry(site.to_string())
                .or_default()
                .insert(b.visitor);
        }
    }
    t
}

#[test]
fn beacons_become_exact_counts_and_accurate_uniques() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &[
            "--trusted-proxy",
            "127.0.0.1/32",
            "--site",
            "example.com",
            "--site",
            "blog.example.com",
            "--site",
            "shop.test",
        ],
    );
    let mut rng = Rng(0x0f00_7fa1);
    let beacons = make_beacons(6000, 2500, &mut rng);
    wait_if_near_midnight();
    let started = chrono_hour_now();
    let truth = send_all(server.addr, &beacons, 4);

    let metrics = server.metrics();
    let total_views: i64 = truth.views.values().sum();
    assert!(
        metrics.contains(&format!("footfall_views_total {total_views}\n")),
        "{metrics}"
    );

    let status = server.stop();
    assert!(status.success(), "exit {status:?}\n{}", server.log());
    let rows = read_pages(tmp.path());
    assert!(!rows.is_empty());

    // Views and entries: exact, per page.
    let grouped = by_page(&rows);
    let got_keys: HashSet<_> = grouped.keys().cloned().collect();
    let want_keys: HashSet<_> = truth.views.keys().cloned().collect();
    assert_eq!(got_keys, want_keys, "the same (site, page) keys");
    for (key, rs) in &grouped {
        let views: i64 = rs.iter().map(|r| r.views).sum();
        let entries: i64 = rs.iter().map(|r| r.entries).sum();
        assert_eq!(views, truth.views[key], "views of {key:?}");
        assert_eq!(entries, truth.entries[key], "entries of {key:?}");
        assert_estimate(
            &format!("visitors of {key:?}"),
            union_estimate(rs.iter().copied()),
            truth.page_visitors[key].len(),
        );
    }
    let sizes: Vec<usize> = truth.page_visitors.values().map(HashSet::len).collect();
    assert!(
        sizes.iter().any(|&n| n < 100) && sizes.iter().any(|&n| n > 500),
        "{sizes:?}"
    );

    // Uniques per site: the union of all its pages' sketches.
    for (site, visitors) in &truth.site_visitors {
        let estimate = union_estimate(rows.iter().filter(|r| &r.site == site));
        assert_estimate(&format!("visitors of {site}"), estimate, visitors.len());
    }

    // Hours are whole UTC hours of the run, in the partition of their date.
    for r in &rows {
        assert_eq!(r.hour_micros % 3_600_000_000, 0);
        let hour = r.hour_micros / 1_000_000;
        assert!(
            hour == started || hour == started + 3600,
            "hour {hour} vs run at {started}"
        );
        let date = utc_date(hour);
        assert!(
            r.file
                .to_string_lossy()
                .contains(&format!("/pages/date={date}/")),
            "{}",
            r.file.display()
        );
    }
    // Rows come sorted by (site, hour, page) within each file.
    let mut by_file: HashMap<_, Vec<_>> = HashMap::new();
    for r in &rows {
        by_file.entry(r.file.clone()).or_default().push((
            r.site.clone(),
            r.hour_micros,
            r.page.clone(),
        ));
    }
    for keys in by_file.values() {
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicate keys in a file"
        );
    }

    privacy_scan(&server, &beacons, 2500, started, &metrics);
}

/// Nothing personal anywhere: no IP, User-Agent, query value, fragment,
/// referrer path or visitor key in any file under the data dir (raw bytes,
/// and decoded column values since Parquet pages are compressed) or in the
/// debug-level log.
fn privacy_scan(server: &Server, beacons: &[Beacon], visitors: usize, started: i64, metrics: &str) {
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for v in 0..visitors {
        needles.push(ip(v).into_bytes());
        needles.push(user_agent(v).into_bytes());
    }
    for i in 0..beacons.len() {
        for s in secrets(i) {
            needles.push(s.into_bytes());
        }
    }
    needles.push(b"news.example.net/".to_vec());
    // The parameter as it appears in a query (`utm_source` alone is a
    // column name of the sources table).
    needles.push(b"utm_source=".to_vec());

    // The visitor keys themselves, recomputed from today's salt.
    let salt_hex = std::fs::read_to_string(
        server
            .data_dir
            .join("_state")
            .join(format!("salt-{}", utc_date(started))),
    )
    .unwrap();
    let mut salt = [0u8; 16];
    for (i, b) in salt.iter_mut().enumerate() {
        *b = u8::from_str_radix(&salt_hex.trim()[2 * i..2 * i + 2], 16).unwrap();
    }
    let salt = footfall_collector::SaltKey::from_bytes(salt);
    let mut keys = Vec::new();
    for v in 0..visitors {
        let ua = user_agent(v);
        for site in ["example.com", "blog.example.com", "shop.test"] {
            let client = footfall_collector::Client {
                ip: ip(v).parse().unwrap(),
                user_agent: ua.as_bytes(),
                gpc: false,
            };
            let k = footfall_collector::visitor_key(salt, site, client).sketch_input();
            let digest = footfall_collector::agent_digest(salt, ua.as_bytes());
            // Neither the key nor the User-Agent's digest may be stored.
            for secret in [k, digest] {
                keys.push(secret.to_le_bytes().to_vec());
                keys.push(secret.to_be_bytes().to_vec());
            }
        }
    }

    let mut haystacks: Vec<(String, Vec<u8>)> = all_files(&server.data_dir)
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    for r in read_pages(&server.data_dir) {
        // Decoded values: Parquet pages are compressed, so the raw-byte scan
        // alone could miss a value stored in the clear inside them.
        haystacks.push((
            "decoded row".into(),
            format!("{}\n{}\n", r.site, r.page).into_bytes(),
        ));
        haystacks.push(("decoded sketch".into(), r.visitors.clone()));
        let without_route = r.page.split("#/tab-").next().unwrap();
        assert!(
            !r.page.contains('?') && !without_route.contains('#'),
            "page {:?}",
            r.page
        );
    }
    // Every other table, decoded the same way.
    for table in ["sources", "devices", "countries", "visits"] {
        for r in read_table(&server.data_dir, table) {
            let dims: Vec<&str> = r.dims.iter().flatten().map(String::as_str).collect();
            haystacks.push((
                format!("decoded {table} row"),
                format!("{}\n{}\n", r.site, dims.join("\n")).into_bytes(),
            ));
            haystacks.push((format!("decoded {table} sketch"), r.visitors.clone()));
        }
    }
    // Visits are counted per (site, hour, entry page), never one row a
    // visitor: thousands of visits, a few rows.
    let visits = read_table(&server.data_dir, "visits");
    let counted: i64 = visits.iter().map(|r| r.count("visits")).sum();
    let keys_written: HashSet<(String, i64, Vec<Option<String>>)> = visits
        .iter()
        .map(|r| (r.site.clone(), r.hour_micros, r.dims.clone()))
        .collect();
    assert!(
        counted >= visitors as i64,
        "every visitor's visit: {counted}"
    );
    assert_eq!(visits.len(), keys_written.len(), "one row a key");
    assert!(
        visits.len() * 10 < counted as usize,
        "{} rows for {counted} visits",
        visits.len()
    );
    haystacks.push(("server log".into(), server.log().into_bytes()));
    haystacks.push(("/metrics".into(), metrics.as_bytes().to_vec()));
    assert!(
        server.log().contains("DEBUG") || server.log().contains("INFO"),
        "the log was captured"
    );

    for (name, hay) in &haystacks {
        // Index every 8-byte window once, then check each needle's prefix:
        // linear in haystack plus needles, where a naive search of tens of
        // thousands of needles took most of a minute.
        let windows: HashSet<&[u8]> = hay.windows(8).collect();
        for needle in needles.iter().chain(&keys) {
            assert!(needle.len() >= 8, "needles are at least 8 bytes");
            let found = windows.contains(&needle[..8])
                && hay.windows(needle.len()).any(|w| w == &needle[..]);
            assert!(
                !found,
                "{name} contains {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}

#[test]
fn a_restart_within_the_day_reuses_the_salt() {
    wait_if_near_midnight();
    let tmp = tempfile::tempdir().unwrap();
    let send = |server: &Server| {
        let mut conn = Conn::open(server.addr);
        for v in 0..60 {
            let body = r#"{"u":"https://example.com/","d":"example.com"}"#;
            let reply = conn.raw(&post(body, &user_agent(v), &ip(v), "text/plain"));
            assert_eq!(reply.status, 202);
        }
    };
    let args = ["--trusted-proxy", "127.0.0.0/8"];
    let mut first = Server::start(tmp.path(), &args);
    send(&first);
    assert!(first.stop().success());
    let mut second = Server::start(tmp.path(), &args);
    send(&second);
    assert!(second.stop().success());

    let rows = read_pages(tmp.path());
    let files: HashSet<_> = rows.iter().map(|r| r.file.clone()).collect();
    assert_eq!(files.len(), 2, "one file per run");
    assert_eq!(rows.iter().map(|r| r.views).sum::<i64>(), 120);
    assert_eq!(
        union_estimate(&rows).round(),
        60.0,
        "the same 60 people, not 120"
    );
}

#[test]
fn forwarded_for_is_ignored_unless_the_peer_is_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &[]);
    let mut conn = Conn::open(server.addr);
    for v in 0..40 {
        let body = r#"{"u":"https://example.com/","d":"example.com"}"#;
        let reply = conn.raw(&post(body, &user_agent(1), &ip(v), "text/plain"));
        assert_eq!(reply.status, 202);
    }
    assert!(server.stop().success());
    let rows = read_pages(tmp.path());
    assert_eq!(rows.iter().map(|r| r.views).sum::<i64>(), 40);
    assert_eq!(
        union_estimate(&rows).round(),
        1.0,
        "forged addresses must not make uniques"
    );
    assert!(
        server.log().contains("no --site given"),
        "warns when any site is accepted"
    );
}

fn chrono_hour_now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    secs - secs % 3600
}
