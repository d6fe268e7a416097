//! Country lookup: a client address to an ISO 3166-1 alpha-2 code, read
//! from a MaxMind DB file held in memory.
//!
//! Two record layouts are found in the wild and both are read:
//! - GeoLite2 / GeoIP2 and DB-IP Lite: `{"country": {"iso_code": "DE"}, …}`,
//!   where some GeoLite2 records have no `country` and only
//!   `registered_country` (the country the block is registered to);
//! - ip-location-db (`@ip-location-db/*-mmdb`): a flat `{"country_code": "DE"}`.
//!
//! The address is looked up and forgotten: nothing here stores or logs it,
//! and neither [`GeoDb`]'s `Debug` nor any [`GeoError`] mentions one.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use footfall_schemas::Country;
use maxminddb::{LookupResult, MaxMindDbError, PathElement, Reader, WithinOptions};

/// GeoLite2's and DB-IP's country of the network.
const COUNTRY: &[PathElement<'static>] =
    &[PathElement::Key("country"), PathElement::Key("iso_code")];
/// GeoLite2's fallback when a record has no `country`.
const REGISTERED_COUNTRY: &[PathElement<'static>] = &[
    PathElement::Key("registered_country"),
    PathElement::Key("iso_code"),
];
/// ip-location-db's flat field.
const COUNTRY_CODE: &[PathElement<'static>] = &[PathElement::Key("country_code")];

/// How many distinct records [`GeoDb::open`] reads to learn the layout.
const PROBE_RECORDS: usize = 64;
/// How many networks it walks at most to find them, so that a database
/// whose networks all share one record cannot make opening slow.
const PROBE_NETWORKS: usize = 4096;

/// Where a database keeps the country code of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `country.iso_code`, else `registered_country.iso_code`.
    Nested,
    /// `country_code`.
    Flat,
}

impl Layout {
    fn field(self) -> &'static str {
        match self {
            Layout::Nested => "country.iso_code",
            Layout::Flat => "country_code",
        }
    }
}

/// Why a country database could not be opened. Each variant names the file;
/// none carries an address.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read (missing, unreadable, a directory…).
    #[error("cannot read GeoIP database {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not in MaxMind DB format, or is damaged.
    #[error("{} is not a valid MaxMind DB file: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: MaxMindDbError,
    },
    /// A valid MaxMind DB whose records carry no country, such as an ASN
    /// database.
    #[error(
        "GeoIP database {} ({database_type}) has no country field: its records have none of \
         `country.iso_code`, `registered_country.iso_code` or `country_code`",
        path.display()
    )]
    NoCountry {
        path: PathBuf,
        database_type: String,
    },
}

/// A country database in memory, shared read-only by every connection.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    layout: Layout,
    /// False for an IPv4-only database, where looking up an IPv6 address is
    /// an error in `maxminddb` rather than "not found"; checked first so
    /// that such lookups cost nothing.
    ipv6: bool,
    /// The country of recently read records, by record.
    memo: Memo,
}

impl GeoDb {
    /// Reads the database at `path` into memory and learns its layout.
    ///
    /// The layout is learnt by probing records rather than from the
    /// metadata's `database_type`, because that name is free text: GeoLite2
    /// says `GeoLite2-Country`, DB-IP `DBIP-Country-Lite`, ip-location-db
    /// `country ipv4`, and a database of another kind (ASN, ISP) is just as
    /// valid a MaxMind DB. So the first records of the database (up to 64
    /// distinct ones, in address order) are read, and the layout is the one
    /// that yields a country for more of them; a database where neither
    /// does is refused with [`GeoError::NoCountry`]. The probe adds well
    /// under a millisecond to opening, whatever the size of the file.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let bytes = std::fs::read(path).map_err(|source| GeoError::Read {
            path: path.to_owned(),
            source,
        })?;
        GeoDb::from_bytes(path, bytes)
    }

    /// [`GeoDb::open`] on bytes already read; `path` is for the errors.
    fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<GeoDb, GeoError> {
        let invalid = |source| GeoError::Invalid {
            path: path.to_owned(),
            source,
        };
        let reader = Reader::from_source(bytes).map_err(invalid)?;
        let Some(layout) = probe_layout(&reader).map_err(invalid)? else {
            return Err(GeoError::NoCountry {
                path: path.to_owned(),
                database_type: reader.metadata().database_type.clone(),
            });
        };
        let ipv6 = reader.metadata().ip_version == 6;
        Ok(GeoDb {
            reader,
            layout,
            ipv6,
            memo: Memo::new(),
        })
    }

    /// The country of `ip`, or `None` when the database has no record for
    /// it, the record has no valid two-letter code, or the database is
    /// IPv4-only and `ip` is a plain IPv6 address.
    ///
    /// IPv4-mapped addresses (`::ffff:a.b.c.d`, what a dual-stack socket
    /// reports for an IPv4 client) are looked up as the IPv4 address. Never
    /// panics and never logs; a damaged record reads as `None`.
    pub fn country(&self, ip: IpAddr) -> Option<Country> {
        let ip = match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None if self.ipv6 => ip,
                None => return None,
            },
        };
        let found = self.reader.lookup(ip).ok()?;
        let offset = found.offset()?;
        if let Some(known) = self.memo.get(offset) {
            return known;
        }
        let country = record_country(&found, self.layout);
        self.memo.put(offset, country);
        country
    }

    /// One line for the startup log: type, build date, size and layout.
    pub fn describe(&self) -> String {
        let meta = self.reader.metadata();
        let scope = if self.ipv6 { "" } else { ", IPv4 only" };
        format!(
            "{} built {}, {} nodes{scope}, country from `{}`",
            meta.database_type,
            build_date(meta.build_epoch),
            meta.node_count,
            self.layout.field(),
        )
    }
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meta = self.reader.metadata();
        f.debug_struct("GeoDb")
            .field("database_type", &meta.database_type)
            .field("built", &build_date(meta.build_epoch))
            .field("ip_version", &meta.ip_version)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// A direct-mapped memo from a record (its offset in the data section) to
/// its country, shared by every thread without a lock.
///
/// The tree walk of a lookup takes about 80 ns, but reading the code out of
/// a GeoLite2 record with `decode_path` takes 150–200 ns more, as the
/// decoder skips the `continent` map and the names before it. A country
/// database has few distinct records (a few thousand), so nearly every
/// lookup finds its record here. It holds record offsets and country codes,
/// never an address.
struct Memo {
    /// `(offset + 1) << 16 | code` per slot, where `code` is the country's
    /// two ASCII letters or 0 for a record without one; 0 is an empty slot.
    /// One word per entry, so a reader never sees half of a writer's entry.
    slots: Box<[AtomicU64]>,
}

impl Memo {
    /// 4096 slots, 32 KiB: room for a country database's records in cache.
    const SLOT_BITS: u32 = 12;
    /// Offsets that fit beside the code. A valid database's are below 2^32
    /// (records are at most 32 bits); larger ones are simply not memoised.
    const MAX_OFFSET: usize = 1 << 40;

    fn new() -> Memo {
        Memo {
            slots: (0..1 << Self::SLOT_BITS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    fn slot(&self, offset: usize) -> Option<&AtomicU64> {
        if offset >= Self::MAX_OFFSET {
            return None;
        }
        // Fibonacci hashing spreads neighbouring offsets over the slots.
        let hash = (offset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - Self::SLOT_BITS);
        self.slots.get(hash as usize)
    }

    /// The memoised country of the record at `offset`, if memoised.
    fn get(&self, offset: usize) -> Option<Option<Country>> {
        let entry = self.slot(offset)?.load(Ordering::Relaxed);
        if entry >> 16 != offset as u64 + 1 {
            return None;
        }
        let [a, b] = (entry as u16).to_be_bytes();
        Some(std::str::from_utf8(&[a, b]).ok().and_then(Country::new))
    }

    fn put(&self, offset: usize, country: Option<Country>) {
        if let Some(slot) = self.slot(offset) {
            let code = country.map_or(0, |c| {
                let [a, b] = <[u8; 2]>::try_from(c.as_str().as_bytes()).unwrap_or([0, 0]);
                u16::from_be_bytes([a, b])
            });
            slot.store(
                ((offset as u64 + 1) << 16) | u64::from(code),
                Ordering::Relaxed,
            );
        }
    }
}

/// The country of a record found in a database of this layout.
fn record_country<S: AsRef<[u8]>>(found: &LookupResult<'_, S>, layout: Layout) -> Option<Country> {
    match layout {
        Layout::Nested => code_at(found, COUNTRY).or_else(|| code_at(found, REGISTERED_COUNTRY)),
        Layout::Flat => code_at(found, COUNTRY_CODE),
    }
}

/// The two-letter code at `path`, decoding nothing else: the string is
/// borrowed from the database, so a lookup allocates nothing. A missing key,
/// a value of another type or a code that is not two letters all give
/// `None`.
fn code_at<S: AsRef<[u8]>>(
    found: &LookupResult<'_, S>,
    path: &[PathElement<'_>],
) -> Option<Country> {
    let code: &str = found.decode_path(path).ok()??;
    Country::new(code)
}

/// The layout that yields a country for more of the database's first
/// records (nested on a tie), or `None` when neither yields any.
fn probe_layout<S: AsRef<[u8]>>(reader: &Reader<S>) -> Result<Option<Layout>, MaxMindDbError> {
    let mut seen: Vec<usize> = Vec::with_capacity(PROBE_RECORDS);
    let (mut nested, mut flat) = (0_usize, 0_usize);
    for found in reader
        .networks(WithinOptions::default())?
        .take(PROBE_NETWORKS)
    {
        let found = found?;
        let Some(offset) = found.offset() else {
            continue;
        };
        if seen.contains(&offset) {
            continue;
        }
        seen.push(offset);
        nested += usize::from(record_country(&found, Layout::Nested).is_some());
        flat += usize::from(record_country(&found, Layout::Flat).is_some());
        if seen.len() == PROBE_RECORDS {
            break;
        }
    }
    Ok(match (nested, flat) {
        (0, 0) => None,
        (n, f) if n >= f => Some(Layout::Nested),
        _ => Some(Layout::Flat),
    })
}

/// `build_epoch` as a UTC date, `YYYY-MM-DD`.
fn build_date(epoch: u64) -> String {
    i64::try_from(epoch)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(
            || format!("at epoch {epoch}"),
            |t| t.date_naive().to_string(),
        )
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, UNIX_EPOCH};

    use ipnet::IpNet;
    use mmdb_writer::{IpVersion, Value, Writer};

    use super::*;

    /// 2026-01-01T00:00:00Z.
    const BUILT: u64 = 1_767_225_600;

    fn writer(database_type: &str, ip_version: IpVersion) -> Writer {
        Writer::builder(database_type)
            .ip_version(ip_version)
            .build_epoch(UNIX_EPOCH + Duration::from_secs(BUILT))
            .build()
    }

    fn insert(w: &mut Writer, net: &str, value: Value) {
        w.insert_value(net.parse::<IpNet>().unwrap(), value)
            .unwrap();
    }

    fn open(w: &Writer) -> Result<GeoDb, GeoError> {
        GeoDb::from_bytes(Path::new("test.mmdb"), w.to_bytes().unwrap())
    }

    fn nested(key: &str, code: &str) -> Value {
        Value::map([(key, Value::map([("iso_code", Value::from(code))]))])
    }

    fn flat(code: &str) -> Value {
        Value::map([("country_code", Value::from(code))])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn code(db: &GeoDb, s: &str) -> Option<String> {
        db.country(ip(s)).map(|c| c.as_str().to_owned())
    }

    #[test]
    fn nested_layout_prefers_country_then_registered_country() {
        let mut w = writer("GeoLite2-Country", IpVersion::V6);
        let both = Value::map([
            ("country", Value::map([("iso_code", Value::from("FR"))])),
            (
                "registered_country",
                Value::map([("iso_code", Value::from("BE"))]),
            ),
        ]);
        insert(&mut w, "198.51.100.0/24", both);
        insert(&mut w, "192.0.2.128/25", nested("registered_country", "US"));
        insert(&mut w, "2001:db8::/32", nested("country", "BR"));
        let db = open(&w).unwrap();
        assert_eq!(db.layout, Layout::Nested);
        assert_eq!(code(&db, "198.51.100.1").as_deref(), Some("FR"));
        assert_eq!(code(&db, "192.0.2.200").as_deref(), Some("US"));
        assert_eq!(code(&db, "2001:db8::1").as_deref(), Some("BR"));
        assert_eq!(code(&db, "::ffff:198.51.100.1").as_deref(), Some("FR"));
        assert_eq!(code(&db, "192.0.2.1"), None);
        assert_eq!(code(&db, "2001:db9::1"), None);
    }

    #[test]
    fn flat_layout_uppercases() {
        let mut w = writer("country ipv6", IpVersion::V6);
        insert(&mut w, "203.0.113.0/24", flat("de"));
        let db = open(&w).unwrap();
        assert_eq!(db.layout, Layout::Flat);
        assert_eq!(code(&db, "203.0.113.9").as_deref(), Some("DE"));
    }

    #[test]
    fn a_string_country_beside_country_code_reads_as_flat() {
        // IPinfo's layout: `country` is a name, not a map.
        let mut w = writer("ipinfo lite.mmdb", IpVersion::V6);
        let record = Value::map([
            ("country", Value::from("Germany")),
            ("country_code", Value::from("DE")),
        ]);
        insert(&mut w, "203.0.113.0/24", record);
        let db = open(&w).unwrap();
        assert_eq!(db.layout, Layout::Flat);
        assert_eq!(code(&db, "203.0.113.9").as_deref(), Some("DE"));
    }

    #[test]
    fn bad_codes_read_as_none() {
        let mut w = writer("GeoLite2-Country", IpVersion::V6);
        insert(&mut w, "203.0.113.0/24", nested("country", "DE"));
        insert(&mut w, "198.51.100.0/26", nested("country", "DEU"));
        insert(&mut w, "198.51.100.64/26", nested("country", ""));
        insert(&mut w, "198.51.100.128/26", nested("country", "1A"));
        let number = Value::map([("country", Value::map([("iso_code", Value::from(49_u32))]))]);
        insert(&mut w, "198.51.100.192/26", number);
        insert(
            &mut w,
            "192.0.2.0/24",
            Value::map([("country", Value::from("DE"))]),
        );
        let db = open(&w).unwrap();
        for addr in [
            "198.51.100.1",
            "198.51.100.65",
            "198.51.100.129",
            "198.51.100.193",
            "192.0.2.1",
        ] {
            assert_eq!(code(&db, addr), None, "{addr}");
        }
    }

    #[test]
    fn ipv4_only_database() {
        let mut w = writer("country ipv4", IpVersion::V4);
        insert(&mut w, "203.0.113.0/24", flat("DE"));
        let db = open(&w).unwrap();
        assert_eq!(code(&db, "203.0.113.9").as_deref(), Some("DE"));
        assert_eq!(code(&db, "::ffff:203.0.113.9").as_deref(), Some("DE"));
        assert_eq!(code(&db, "2001:db8::1"), None);
        assert_eq!(code(&db, "::1"), None);
        assert!(db.describe().contains("IPv4 only"), "{}", db.describe());
    }

    #[test]
    fn a_database_without_countries_is_refused() {
        let mut w = writer("GeoLite2-ASN", IpVersion::V6);
        let asn = Value::map([("autonomous_system_number", Value::from(64_496_u32))]);
        insert(&mut w, "203.0.113.0/24", asn);
        let err = open(&w).unwrap_err();
        assert!(matches!(err, GeoError::NoCountry { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("test.mmdb") && message.contains("GeoLite2-ASN"),
            "{message}"
        );
    }

    #[test]
    fn an_empty_database_is_refused() {
        let err = open(&writer("GeoLite2-Country", IpVersion::V6)).unwrap_err();
        assert!(matches!(err, GeoError::NoCountry { .. }), "{err:?}");
    }

    #[test]
    fn other_files_are_refused_with_their_path() {
        let err = GeoDb::from_bytes(Path::new("notes.txt"), b"hello".to_vec()).unwrap_err();
        assert!(matches!(err, GeoError::Invalid { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("notes.txt is not a valid MaxMind DB file"),
            "{err}"
        );

        let missing = Path::new("/nonexistent/footfall/geo.mmdb");
        let err = GeoDb::open(missing).unwrap_err();
        assert!(matches!(err, GeoError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/footfall/geo.mmdb"),
            "{err}"
        );
    }

    #[test]
    fn debug_and_describe_say_what_the_database_is() {
        let mut w = writer("GeoLite2-Country", IpVersion::V6);
        insert(&mut w, "203.0.113.0/24", nested("country", "DE"));
        let db = open(&w).unwrap();
        // Looking an address up leaves no trace in either.
        assert!(
            db.country(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)))
                .is_some()
        );
        assert!(db.country(IpAddr::V6(Ipv6Addr::LOCALHOST)).is_none());

        let described = db.describe();
        assert!(
            described.starts_with("GeoLite2-Country built 2026-01-01, "),
            "{described}"
        );
        assert!(
            described.contains(" nodes") && described.contains("country.iso_code"),
            "{described}"
        );
        let debug = format!("{db:?}");
        assert!(
            debug.contains("GeoLite2-Country") && debug.contains("2026-01-01"),
            "{debug}"
        );
        for text in [&described, &debug] {
            assert!(
                !text.contains("203.0.113") && !text.contains("::1"),
                "{text}"
            );
        }
    }

    #[test]
    fn memo_never_mixes_records_up() {
        // Twice as many distinct records as the memo has slots, so records
        // share slots and evict each other; every answer must stay right,
        // first time and from the memo.
        let mut w = writer("GeoLite2-Country", IpVersion::V6);
        let letter = |i: usize| char::from(b'A' + (i % 26) as u8);
        let expected = |i: usize| match i % 7 {
            0 => None,
            _ => Some(format!("{}{}", letter(i / 26), letter(i))),
        };
        let n = 2 << Memo::SLOT_BITS;
        for i in 0..n {
            let mut record = vec![("serial", Value::from(i as u32))];
            if let Some(code) = expected(i) {
                record.push(("country", Value::map([("iso_code", Value::from(code))])));
            }
            let net = IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32)), 32).unwrap();
            w.insert_value(net, Value::map(record)).unwrap();
        }
        let db = open(&w).unwrap();
        // Two threads at once, in opposite orders, so entries are replaced
        // while the other thread reads them.
        std::thread::scope(|scope| {
            for thread in 0..2 {
                let (db, expected) = (&db, &expected);
                scope.spawn(move || {
                    for pass in 0..3 {
                        for k in 0..n {
                            let i = if thread == 0 { k } else { n - 1 - k };
                            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
                            let got = db.country(ip).map(|c| c.as_str().to_owned());
                            assert_eq!(
                                got,
                                expected(i),
                                "thread {thread}, pass {pass}, record {i}"
                            );
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn build_dates() {
        assert_eq!(build_date(BUILT), "2026-01-01");
        assert_eq!(build_date(0), "1970-01-01");
        assert_eq!(build_date(u64::MAX), format!("at epoch {}", u64::MAX));
    }
}
