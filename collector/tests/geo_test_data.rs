//! The country databases under `tests/data/`: built here, so they can be
//! rebuilt and cannot drift from this description, and read back through
//! [`GeoDb`] as the collector reads a real one.
//!
//! Regenerate them with
//! `FOOTFALL_REGENERATE_TEST_DATA=1 cargo test -p footfall-collector --test geo_test_data`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use footfall_collector::{GeoDb, GeoError};
use ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};

/// 2026-01-01T00:00:00Z, fixed so the bytes do not depend on the day.
const BUILT: u64 = 1_767_225_600;

const DESCRIPTION: &str = "footfall test data: invented countries on documentation ranges, CC0 1.0";

/// The GeoLite2 / DB-IP layout: `country.iso_code`, with
/// `registered_country` beside it and, for one network, alone.
const GEOLITE2: &str = "geo-geolite2.mmdb";
/// The ip-location-db layout: a flat `country_code`.
const FLAT: &str = "geo-flat.mmdb";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

fn writer(database_type: &str) -> Writer {
    // An IPv6 tree with the IPv4 space aliased in the usual way (mapped
    // `::ffff:0:0/96`, 6to4 and Teredo lead to the IPv4 subtree), as in
    // GeoLite2 and DB-IP.
    Writer::builder(database_type)
        .ip_version(IpVersion::V6)
        .description(&[("en", DESCRIPTION)])
        .build_epoch(UNIX_EPOCH + Duration::from_secs(BUILT))
        .build()
}

fn insert(w: &mut Writer, net: &str, value: Value) {
    let net: IpNet = net.parse().expect("a CIDR");
    w.insert_value(net, value).expect("insertable");
}

/// `{"iso_code": code, "names": {"en": name}}`, as GeoLite2 writes a country.
fn geolite2_country(code: &str, name: &str) -> Value {
    Value::map([
        ("iso_code", Value::from(code)),
        ("names", Value::map([("en", Value::from(name))])),
    ])
}

/// A GeoLite2-Country record. `continent` sorts before `country`, so a
/// lookup must skip a value to reach the code.
fn geolite2_record(continent: &str, country: &str, name: &str, registered: Value) -> Value {
    Value::map([
        ("continent", Value::map([("code", Value::from(continent))])),
        ("country", geolite2_country(country, name)),
        ("registered_country", registered),
    ])
}

fn build_geolite2() -> Vec<u8> {
    let mut w = writer("Footfall-Test-GeoLite2-Country");
    let de = geolite2_country("DE", "Germany");
    insert(
        &mut w,
        "203.0.113.0/24",
        geolite2_record("EU", "DE", "Germany", de),
    );
    // Registered in Belgium, located in France: `country` wins.
    let be = geolite2_country("BE", "Belgium");
    insert(
        &mut w,
        "198.51.100.0/24",
        geolite2_record("EU", "FR", "France", be),
    );
    let jp = geolite2_country("JP", "Japan");
    insert(
        &mut w,
        "192.0.2.0/25",
        geolite2_record("AS", "JP", "Japan", jp),
    );
    // GeoLite2 has such records: no `country`, only where the block is registered.
    let us_only = Value::map([
        ("continent", Value::map([("code", Value::from("NA"))])),
        (
            "registered_country",
            geolite2_country("US", "United States"),
        ),
    ]);
    insert(&mut w, "192.0.2.128/25", us_only);
    let br = geolite2_country("BR", "Brazil");
    insert(
        &mut w,
        "2001:db8::/32",
        geolite2_record("SA", "BR", "Brazil", br),
    );
    w.to_bytes().expect("a small database")
}

fn build_flat() -> Vec<u8> {
    let mut w = writer("Footfall-Test-ip-location-db-country");
    let code = |c: &str| Value::map([("country_code", Value::from(c))]);
    insert(&mut w, "203.0.113.0/24", code("DE"));
    insert(&mut w, "198.51.100.0/24", code("FR"));
    insert(&mut w, "192.0.2.0/25", code("JP"));
    // Lower case, to check that codes are uppercased.
    insert(&mut w, "192.0.2.128/25", code("us"));
    insert(&mut w, "2001:db8::/32", code("BR"));
    w.to_bytes().expect("a small database")
}

/// Every file and how it is built.
fn databases() -> [(&'static str, Vec<u8>); 2] {
    [(GEOLITE2, build_geolite2()), (FLAT, build_flat())]
}

/// What both databases answer: every network, an address just outside,
/// IPv4-mapped IPv6, and addresses in no network.
const EXPECTED: &[(&str, Option<&str>)] = &[
    ("203.0.113.0", Some("DE")),
    ("203.0.113.255", Some("DE")),
    ("198.51.100.42", Some("FR")),
    ("192.0.2.1", Some("JP")),
    ("192.0.2.127", Some("JP")),
    ("192.0.2.128", Some("US")),
    ("192.0.2.255", Some("US")),
    ("2001:db8::1", Some("BR")),
    ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Some("BR")),
    ("::ffff:203.0.113.7", Some("DE")),
    ("::ffff:192.0.2.200", Some("US")),
    // 6to4 (2002:cb00:7107:: is 203.0.113.7), aliased to IPv4 as GeoLite2 does.
    ("2002:cb00:7107::1", Some("DE")),
    ("203.0.114.0", None),
    ("192.0.3.0", None),
    ("8.8.8.8", None),
    ("127.0.0.1", None),
    ("::ffff:8.8.8.8", None),
    ("2001:db9::1", None),
    ("::1", None),
];

/// The path of a committed database. With `FOOTFALL_REGENERATE_TEST_DATA=1`
/// every database is (re)written first, once per run, whichever test asks
/// first, so no test reads a file that is missing or half written.
fn committed(name: &str) -> PathBuf {
    static REGENERATED: OnceLock<()> = OnceLock::new();
    if std::env::var_os("FOOTFALL_REGENERATE_TEST_DATA").is_some_and(|v| v == "1") {
        REGENERATED.get_or_init(|| {
            for (name, bytes) in databases() {
                std::fs::write(data_dir().join(name), bytes).unwrap();
            }
        });
    }
    data_dir().join(name)
}

#[test]
fn committed_databases_are_what_the_generator_builds() {
    // The writer promises a deterministic layout; check it here, in one
    // process, before comparing with bytes another process wrote.
    for ((name, built), (_, again)) in databases().into_iter().zip(databases()) {
        assert!(built == again, "{name}: the writer is not deterministic");
        let path = committed(name);
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == built,
            "{} differs from what this test builds; if the change is intended, run \
             FOOTFALL_REGENERATE_TEST_DATA=1 cargo test -p footfall-collector --test geo_test_data",
            path.display()
        );
    }
}

#[test]
fn committed_databases_answer_every_network() {
    for name in [GEOLITE2, FLAT] {
        let db = GeoDb::open(&committed(name)).unwrap();
        for &(ip, expected) in EXPECTED {
            let got = db.country(ip.parse::<IpAddr>().unwrap());
            assert_eq!(got.as_ref().map(|c| c.as_str()), expected, "{name}: {ip}");
        }
        let described = db.describe();
        assert!(described.contains("built 2026-01-01"), "{described}");
    }
}

#[test]
fn a_file_of_another_kind_is_refused_by_name() {
    let readme = data_dir().join("README.md");
    let err = GeoDb::open(&readme).unwrap_err();
    assert!(matches!(err, GeoError::Invalid { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("README.md") && message.contains("not a valid MaxMind DB"),
        "{message}"
    );

    let missing = data_dir().join("no-such.mmdb");
    let err = GeoDb::open(&missing).unwrap_err();
    assert!(matches!(err, GeoError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such.mmdb"), "{err}");
}
