//! Sources, devices, countries and bots on real traffic: known referrers,
//! campaigns, browsers, screen widths, addresses from a small GeoIP database
//! and a share of bots, over HTTP into the real server; every table read
//! back and checked against the truth.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::support::{
    Conn, Rng, Row, Server, all_files, assert_estimate, post, read_table, union_of,
    wait_if_near_midnight,
};

const SITE: &str = "example.com";

/// Browsers of today and what footfall should call them:
/// (User-Agent, browser, os, device by the User-Agent).
const BROWSERS: &[(&str, &str, &str, &str)] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
        "Chrome",
        "Windows",
        "desktop",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
        "Firefox",
        "Linux",
        "desktop",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Safari/605.1.15",
        "Safari",
        "macOS",
        "desktop",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Mobile/15E148 Safari/604.1",
        "Safari",
        "iOS",
        "mobile",
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36",
        "Chrome",
        "Android",
        "mobile",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Mobile/15E148 Safari/604.1",
        "Safari",
        "iOS",
        "tablet",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36 Edg/142.0.0.0",
        "Edge",
        "Windows",
        "desktop",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S928B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/29.0 Chrome/136.0.0.0 Mobile Safari/537.36",
        "Samsung Internet",
        "Android",
        "mobile",
    ),
];

/// Bots of every kind the issue names; none may count anywhere.
const BOTS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/142.0.0.0 Safari/537.36",
    "curl/8.14.1",
    "python-requests/2.32.5",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "",
];

/// Client address ranges of the test database (`tests/data`) and the
/// country each maps to; the last is in no network of it.
const PLACES: &[(&str, Option<&str>)] = &[
    ("203.0.113.", Some("DE")),
    ("198.51.100.", Some("FR")),
    ("192.0.2.", Some("JP")),  // .0 to .127
    ("192.0.2.1", Some("US")), // .128 to .199: registered_country only
    ("2001:db8::", Some("BR")),
    ("100.64.0.", None),
];

fn address(place: usize, host: usize) -> String {
    let (prefix, _) = PLACES[place];
    match place {
        2 => format!("{prefix}{}", host % 128),
        3 => format!("{prefix}{:02}", 28 + host % 72),
        4 => format!("{prefix}{:x}", host + 1),
        _ => format!("{prefix}{}", host % 256),
    }
}

/// Referrers a landing may come from: (the beacon's `r`, the host kept).
const REFERRERS: &[(Option<&str>, Option<&str>)] = &[
    (None, None),
    (
        Some("https://news.ycombinator.com/item?id=secret-item-42"),
        Some("news.ycombinator.com"),
    ),
    (
        Some("https://www.google.com/search?q=secret+search+terms"),
        Some("google.com"),
    ),
    // Someone's own machine: a landing, but never stored as a source.
    (Some("http://192.168.77.7:8000/share"), None),
];

/// The campaign a landing page's URL may carry (source, medium, campaign).
const CAMPAIGNS: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
    (None, None, None),
    (Some("newsletter"), Some("email"), Some("fall sale")),
    (Some("mastodon"), None, None),
];

/// What one table's rows should sum to: per dims, the count and the set of
/// visitors.
#[derive(Default)]
struct Expected(HashMap<Vec<Option<String>>, (i64, HashSet<usize>)>);

impl Expected {
    fn add(&mut self, dims: Vec<Option<String>>, visitor: usize) {
        let e = self.0.entry(dims).or_default();
        e.0 += 1;
        e.1.insert(visitor);
    }

    /// The rows, summed and unioned per dims, equal the truth: counts
    /// exactly, visitors within the sketch's error.
    fn check(&self, table: &str, count: &str, rows: &[Row]) {
        let mut got: HashMap<Vec<Option<String>>, (i64, Vec<&[u8]>)> = HashMap::new();
        for r in rows {
            assert_eq!(r.site, SITE, "{table}");
            assert_eq!(
                r.hour_micros % 3_600_000_000,
                0,
                "{table}: hours start on the hour"
            );
            let e = got.entry(r.dims.clone()).or_default();
            e.0 += r.count(count);
            e.1.push(&r.visitors);
        }
        fn keys<V>(m: &HashMap<Vec<Option<String>>, V>) -> Vec<Vec<Option<String>>> {
            let mut k: Vec<_> = m.keys().cloned().collect();
            k.sort();
            k
        }
        assert_eq!(keys(&got), keys(&self.0), "{table}: the same rows");
        for (dims, (n, visitors)) in &self.0 {
            let (got_n, sketches) = &got[dims];
            assert_eq!(got_n, n, "{table} {dims:?}: {count}");
            let estimate = union_of(sketches.iter().copied());
            assert_estimate(&format!("{table} {dims:?}"), estimate, visitors.len());
        }
    }
}

#[test]
fn sources_devices_and_countries_add_up_and_bots_count_nowhere() {
    wait_if_near_midnight();
    let geo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo-geolite2.mmdb");
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &[
            "--site",
            SITE,
            "--trusted-proxy",
            "127.0.0.1",
            "--geoip-db",
            geo.to_str().unwrap(),
            "--honor-gpc",
        ],
    );

    // At most 70 per place, so every address is distinct (the US range
    // of the test database holds 72).
    const VISITORS: usize = 420;
    const BEACONS: usize = 4000;
    let mut rng = Rng(0x5EED_D1E5);
    let (mut sources, mut devices, mut countries) = (
        Expected::default(),
        Expected::default(),
        Expected::default(),
    );
    let mut requests: Vec<(Vec<u8>, Option<&str>)> = Vec::new();
    let mut counted = 0;
    let mut secrets = Vec::new();
    let s = |v: Option<&str>| v.map(str::to_owned);
    for i in 0..BEACONS {
        let v = rng.below(VISITORS);
        // A visitor is one (address, browser): unique by address alone.
        let place = v % PLACES.len();
        let ip = address(place, v / PLACES.len());
        let kind = rng.below(100);
        let page = format!("/p/{}", rng.zipf(20));
        if kind < 12 {
            // A bot, from anywhere, anything it fetches.
            let ua = BOTS[i % BOTS.len()];
            let body = format!(r#"{{"n":"pageview","u":"https://{SITE}/bot-only","d":"{SITE}"}}"#);
            requests.push((post(&body, ua, &ip, "text/plain"), Some("bot")));
            continue;
        }
        let (ua, browser, os, ua_device) = BROWSERS[v % BROWSERS.len()];
        let secret = format!("secret-{i}-token");
        let (referrer, referrer_host) = REFERRERS[rng.below(REFERRERS.len())];
        let internal = rng.below(3) == 0;
        let (campaign, query) = match CAMPAIGNS[rng.below(CAMPAIGNS.len())] {
            (None, ..) => ((None, None, None), format!("?session={secret}")),
            (Some(source), medium, name) => {
                let mut q = format!("?utm_source={source}&email={secret}");
                if let Some(m) = medium {
                    q.push_str(&format!("&utm_medium={m}"));
                }
                if let Some(n) = name {
                    q.push_str(&format!("&utm_campaign={}", n.replace(' ', "+")));
                }
                ((Some(source), medium, name), q)
            }
        };
        secrets.push(secret);
        let referrer_json = match (internal, referrer) {
            (true, _) => format!(r#""https://{SITE}/previous""#),
            (false, Some(r)) => format!("{r:?}"),
            (false, None) => "null".into(),
        };
        // Half the beacons carry the screen width, which decides the class.
        let (width, device) = match rng.below(6) {
            0 => (",\"w\":390", "mobile"),
            1 => (",\"w\":820", "tablet"),
            2 => (",\"w\":1920", "desktop"),
            _ => ("", ua_device),
        };
        let body = format!(
            r#"{{"n":"pageview","u":"https://{SITE}{page}{query}","d":"{SITE}","r":{referrer_json}{width}}}"#
        );
        let mut request = post(&body, ua, &ip, "text/plain");
        if kind < 16 {
            // Global Privacy Control, honoured on this server.
            let at = request.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
            request.splice(at..at, b"Sec-GPC: 1\r\n".iter().copied());
            requests.push((request, Some("gpc")));
            continue;
        }
        requests.push((request, None));
        counted += 1;
        if !internal {
            sources.add(
                vec![
                    s(referrer_host),
                    s(campaign.0),
                    s(campaign.1),
                    s(campaign.2),
                ],
                v,
            );
        }
        devices.add(vec![s(Some(browser)), s(Some(os)), s(Some(device))], v);
        countries.add(vec![s(PLACES[place].1)], v);
    }

    let dropped_bots = requests.iter().filter(|r| r.1 == Some("bot")).count();
    std::thread::scope(|scope| {
        for chunk in requests.chunks(requests.len().div_ceil(4)) {
            let addr = server.addr;
            scope.spawn(move || {
                let mut conn = Conn::open(addr);
                for (request, dropped) in chunk {
                    let reply = conn.raw(request);
                    assert_eq!(reply.status, 202, "{}", reply.text());
                    assert_eq!(reply.header("x-footfall-dropped"), *dropped);
                }
            });
        }
    });
    let metric = server.metric("footfall_beacons_dropped_total{reason=\"bot\"}");
    assert_eq!(metric as usize, dropped_bots);
    assert!(server.stop().success());

    let pages = read_table(tmp.path(), "pages");
    let total = |rows: &[Row], count: &str| rows.iter().map(|r| r.count(count)).sum::<i64>();
    assert_eq!(total(&pages, "views"), counted, "pages: only people count");
    assert!(
        pages
            .iter()
            .all(|r| r.dims[0].as_deref() != Some("/bot-only")),
        "a page only bots fetched is in no table"
    );
    let source_rows = read_table(tmp.path(), "sources");
    let device_rows = read_table(tmp.path(), "devices");
    let country_rows = read_table(tmp.path(), "countries");
    sources.check("sources", "entries", &source_rows);
    devices.check("devices", "views", &device_rows);
    countries.check("countries", "views", &country_rows);
    assert_eq!(total(&source_rows, "entries"), total(&pages, "entries"));
    assert_eq!(total(&device_rows, "views"), counted);
    assert_eq!(total(&country_rows, "views"), counted);

    // Nothing of the requests beyond what the tables document: no address,
    // User-Agent, query value or referrer path in any file or the log.
    let mut needles: Vec<String> = secrets;
    needles
        .extend(["secret-item-42", "secret+search", "secret search", "email="].map(String::from));
    needles.push("192.168.77.7".into());
    needles.extend(BROWSERS.iter().map(|b| b.0.to_owned()));
    needles.extend(
        BOTS.iter()
            .filter(|b| !b.is_empty())
            .map(|b| (*b).to_owned()),
    );
    for v in 0..VISITORS {
        needles.push(address(v % PLACES.len(), v / PLACES.len()));
    }
    let log = server.log();
    let mut haystacks: Vec<(String, String)> = all_files(tmp.path())
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned(),
            )
        })
        .collect();
    for (table, rows) in [
        ("sources", &source_rows),
        ("devices", &device_rows),
        ("countries", &country_rows),
        ("pages", &pages),
    ] {
        for r in rows {
            let dims: Vec<&str> = r.dims.iter().flatten().map(String::as_str).collect();
            haystacks.push((format!("decoded {table} row"), dims.join("\n")));
        }
    }
    haystacks.push(("server log".into(), log));
    for (name, hay) in &haystacks {
        for needle in &needles {
            // An address is a needle only where it cannot be a prefix of a
            // longer one or of a date or count.
            let found = if needle.contains('.') || needle.contains(':') {
                hay.match_indices(needle.as_str()).any(|(at, _)| {
                    let next = hay[at + needle.len()..].chars().next();
                    !next.is_some_and(|c| c.is_ascii_hexdigit())
                })
            } else {
                hay.contains(needle.as_str())
            };
            assert!(!found, "{name} contains {needle:?}");
        }
    }
}

#[test]
fn without_a_geoip_database_there_is_no_countries_table() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--site", SITE]);
    let body = format!(r#"{{"n":"pageview","u":"https://{SITE}/","d":"{SITE}"}}"#);
    let reply = Conn::open(server.addr).raw(&post(&body, BROWSERS[0].0, "", "text/plain"));
    assert_eq!(reply.status, 202);
    assert_eq!(reply.header("x-footfall-dropped"), None);
    assert!(server.stop().success());
    for table in ["pages", "sources", "devices"] {
        assert_eq!(read_table(tmp.path(), table).len(), 1, "{table}");
    }
    assert!(!tmp.path().join("countries").exists());
}

#[test]
fn a_bad_geoip_database_stops_the_start_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_db = tmp.path().join("GeoLite2-Country.mmdb");
    std::fs::write(&not_a_db, "not a database").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_footfall"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .arg("--geoip-db")
        .arg(&not_a_db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GeoLite2-Country.mmdb"), "{err}");
}
