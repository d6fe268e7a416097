//! The pure core: folding visits into hourly buckets of every table,
//! merging bucket sets, closing hours, and turning buckets into Arrow
//! record batches.
//!
//! Nothing here does I/O or reads the clock; time comes in as `now`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use chrono::{DateTime, NaiveDate};
use datasketches::hll::{Coupon, HllSketch, HllType, HllUnion};
use footfall_schemas::tables::{MAX_COUNTS, Table};
use footfall_schemas::{Browser, Country, CustomEvent, Device, Os, Visit};

use crate::error::Error;
use crate::sessions::{Ended, Engaged};
use crate::sip::RandomSip;

const SECONDS_PER_HOUR: i64 = 3600;

/// The sketches' storage type: 4 bits a register, the smallest image, and
/// the type every DataSketches library reads.
pub const HLL_TYPE: HllType = HllType::Hll4;

/// Counts and a sketch of one row: (site, hour) and a table's dimensions.
#[derive(Clone)]
pub struct Bucket {
    /// The row's counts, in its table's [`Table::counts`] order (see
    /// [`col`]); zero past them.
    pub counts: [i64; MAX_COUNTS],
    /// Distinct visitor keys: a few bare coupons, then a sketch.
    pub visitors: Visitors,
}

/// Where each count sits in [`Bucket::counts`], per table (the order of
/// [`Table::counts`]; a test holds the two together).
pub mod col {
    /// `pages`, `devices`, `countries`: views.
    pub const VIEWS: usize = 0;
    /// `pages`: landings.
    pub const ENTRIES: usize = 1;
    /// `pages`: visits that ended there.
    pub const EXITS: usize = 2;
    /// `pages`: where the engagement counts begin (engaged_ms,
    /// engagements, scroll_sum, scrolls).
    pub const ENGAGED_MS: usize = 3;
    /// `sources`: where its visit counts begin (visits, bounces, pageviews,
    /// duration_s); `visits` holds the same four from 0.
    pub const SOURCE_VISITS: usize = 1;
}

/// How many distinct visitors a bucket holds as bare coupons before it
/// needs a sketch.
const FEW: usize = 3;

/// The distinct visitors of one bucket.
///
/// Most buckets of an hour are the long tail: a page seen by one to three
/// people. A DataSketches sketch is 88 bytes before its first coupon, more
/// than the rest of the bucket, so the first few coupons (the 32-bit hash
/// fragments a sketch would store anyway, never the visitor keys) are kept
/// inline and a sketch is made only for the fourth. A sketch fed the same
/// coupons is the same sketch, so nothing downstream can tell.
#[derive(Clone)]
#[expect(
    missing_debug_implementations,
    reason = "Bucket's Debug shows it without the coupons"
)]
pub enum Visitors {
    Few { coupons: [Coupon; FEW], len: u8 },
    Sketch(Box<HllSketch>),
}

impl Visitors {
    fn new() -> Self {
        Visitors::Few {
            coupons: [Coupon::from_value(0u64); FEW],
            len: 0,
        }
    }

    fn add(&mut self, coupon: Coupon, lg_k: u8) {
        match self {
            Visitors::Few { coupons, len } => {
                let n = usize::from(*len);
                if coupons[..n].contains(&coupon) {
                    return;
                }
                if n < FEW {
                    coupons[n] = coupon;
                    *len += 1;
                    return;
                }
                let mut sketch = empty_sketch(lg_k);
                for &c in &coupons[..n] {
                    sketch.update_with_coupon(c);
                }
                sketch.update_with_coupon(coupon);
                *self = Visitors::Sketch(Box::new(sketch));
            }
            Visitors::Sketch(sketch) => sketch.update_with_coupon(coupon),
        }
    }

    /// The visitors as a DataSketches sketch (made on the spot for a few).
    pub fn to_sketch(&self, lg_k: u8) -> std::borrow::Cow<'_, HllSketch> {
        match self {
            Visitors::Few { coupons, len } => {
                let mut sketch = empty_sketch(lg_k);
                for &c in &coupons[..usize::from(*len)] {
                    sketch.update_with_coupon(c);
                }
                std::borrow::Cow::Owned(sketch)
            }
            Visitors::Sketch(sketch) => std::borrow::Cow::Borrowed(sketch),
        }
    }

    fn merge(&mut self, other: &Visitors, lg_k: u8) {
        if let Visitors::Few { coupons, len } = other {
            for &c in &coupons[..usize::from(*len)] {
                self.add(c, lg_k);
            }
            return;
        }
        let mut union = HllUnion::new(lg_k).expect("lg_k was checked by Buckets::new");
        union.update(&self.to_sketch(lg_k));
        union.update(&other.to_sketch(lg_k));
        *self = Visitors::Sketch(Box::new(union.to_sketch(HLL_TYPE)));
    }
}

fn empty_sketch(lg_k: u8) -> HllSketch {
    HllSketch::new(lg_k, HLL_TYPE).expect("lg_k was checked by Buckets::new")
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("counts", &self.counts)
            .field(
                "visitors",
                &match &self.visitors {
                    Visitors::Few { len, .. } => format!("{len} coupons"),
                    Visitors::Sketch(s) => format!("sketch, estimate {:.1}", s.estimate()),
                },
            )
            .finish()
    }
}

impl Bucket {
    /// A bucket with these counts and sketch (as read from a checkpoint).
    pub fn from_parts(counts: [i64; MAX_COUNTS], visitors: HllSketch) -> Self {
        Self {
            counts,
            visitors: Visitors::Sketch(Box::new(visitors)),
        }
    }

    fn empty() -> Self {
        Self {
            counts: [0; MAX_COUNTS],
            visitors: Visitors::new(),
        }
    }

    /// One view of a `pages` row, and a landing if `entry`.
    fn add(&mut self, entry: bool, coupon: Coupon, lg_k: u8) {
        self.counts[col::VIEWS] += 1;
        self.counts[col::ENTRIES] += i64::from(entry);
        self.visitors.add(coupon, lg_k);
    }

    /// One to the first count of any other table's row (its views, or a
    /// source's landings).
    fn add_one(&mut self, coupon: Coupon, lg_k: u8) {
        self.counts[0] += 1;
        self.visitors.add(coupon, lg_k);
    }

    /// Adds `values` to the counts from `at` on.
    fn add_counts(&mut self, at: usize, values: &[i64]) {
        for (c, v) in self.counts[at..].iter_mut().zip(values) {
            *c += v;
        }
    }

    fn absorb(&mut self, other: &Bucket, lg_k: u8) {
        self.add_counts(0, &other.counts);
        self.visitors.merge(&other.visitors, lg_k);
    }
}

/// The most dimension columns a table has (`sources`: four).
pub const MAX_DIMS: usize = 4;

/// A row's dimension values as text, in the table's column order; `None`
/// is a null (and pads past the table's last dimension).
pub type DimText<'a> = [Option<&'a str>; MAX_DIMS];

/// The key of one table's rows within a (site, hour): its dimension values.
pub trait Dims: Clone + Eq + Hash + Ord {
    /// The table these are the dimensions of.
    const TABLE: Table;
    /// How the table's map hashes its keys: SipHash with a random key (as
    /// std's maps, but fed in one piece: [`RandomSip`]) where visitors
    /// choose the keys (pages, sources), so no one can send a flood of
    /// colliding ones; aHash (in the tree through arrow already) for the
    /// closed sets, a few hundred keys at most, where it costs a fraction
    /// of SipHash on every beacon.
    type Hasher: BuildHasher + Default + Clone + std::fmt::Debug;
    /// The values as the files write them.
    fn text(&self) -> DimText<'_>;
    /// The values written as `text`, if they are valid ones.
    fn from_text(text: DimText<'_>) -> Option<Self>;
}

/// `pages`: the page.
impl Dims for Box<str> {
    const TABLE: Table = Table::Pages;
    type Hasher = RandomSip;
    fn text(&self) -> DimText<'_> {
        [Some(self), None, None, None]
    }
    fn from_text(text: DimText<'_>) -> Option<Self> {
        match text {
            [Some(page), None, None, None] => Some(page.into()),
            _ => None,
        }
    }
}

/// `visits`: the page a visit began on. Its own type so that the table's
/// rows are told from `pages`' ones; looked up by `&str` like a page.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryPage(pub Box<str>);

impl std::borrow::Borrow<str> for EntryPage {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Dims for EntryPage {
    const TABLE: Table = Table::Visits;
    type Hasher = RandomSip;
    fn text(&self) -> DimText<'_> {
        [Some(&self.0), None, None, None]
    }
    fn from_text(text: DimText<'_>) -> Option<Self> {
        match text {
            [Some(page), None, None, None] => Some(EntryPage(page.into())),
            _ => None,
        }
    }
}

/// `sources`: where a landing came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceKey {
    /// The referrer's host; `None` for direct traffic.
    pub referrer: Option<Box<str>>,
    /// The landing page's campaign parameters.
    pub utm_source: Option<Box<str>>,
    pub utm_medium: Option<Box<str>>,
    pub utm_campaign: Option<Box<str>>,
}

/// Hashed as its four optional strings, exactly as [`SourceRef`] hashes,
/// so a key can be looked up by borrowed parts.
impl Hash for SourceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

/// A [`SourceKey`] borrowed from a visit: looking one up costs no
/// allocation, only a new key is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SourceRef<'a>([Option<&'a str>; 4]);

/// Each part as its bytes and a `0xFF`, or a lone `0xFE` when absent:
/// neither byte occurs in UTF-8, so no two keys hash the same bytes. Half
/// of what the derived `Hash` writes (a length, and a word for every tag),
/// and every byte costs SipHash work on every landing.
impl Hash for SourceRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for part in self.0 {
            match part {
                Some(text) => {
                    state.write(text.as_bytes());
                    state.write_u8(0xFF);
                }
                None => state.write_u8(0xFE),
            }
        }
    }
}

impl hashbrown::Equivalent<SourceKey> for SourceRef<'_> {
    fn equivalent(&self, key: &SourceKey) -> bool {
        *self == key.as_ref()
    }
}

impl SourceKey {
    fn as_ref(&self) -> SourceRef<'_> {
        SourceRef(self.text())
    }

    fn of<'a>(visit: &Visit<'a>) -> SourceRef<'a> {
        let c = &visit.campaign;
        SourceRef([visit.referrer, c.source, c.medium, c.campaign])
    }
}

impl Dims for SourceKey {
    const TABLE: Table = Table::Sources;
    type Hasher = RandomSip;
    fn text(&self) -> DimText<'_> {
        [
            self.referrer.as_deref(),
            self.utm_source.as_deref(),
            self.utm_medium.as_deref(),
            self.utm_campaign.as_deref(),
        ]
    }
    fn from_text([referrer, source, medium, campaign]: DimText<'_>) -> Option<Self> {
        Some(Self {
            referrer: referrer.map(Into::into),
            utm_source: source.map(Into::into),
            utm_medium: medium.map(Into::into),
            utm_campaign: campaign.map(Into::into),
        })
    }
}

/// `devices`: browser family, OS family, device class. A closed set, so
/// these rows need no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    pub browser: Browser,
    pub os: Os,
    pub device: Device,
}

impl Dims for DeviceKey {
    const TABLE: Table = Table::Devices;
    type Hasher = ahash::RandomState;
    fn text(&self) -> DimText<'_> {
        [
            Some(self.browser.name()),
            Some(self.os.name()),
            Some(self.device.name()),
            None,
        ]
    }
    fn from_text(text: DimText<'_>) -> Option<Self> {
        match text {
            [Some(b), Some(o), Some(d), None] => Some(Self {
                browser: Browser::from_name(b)?,
                os: Os::from_name(o)?,
                device: Device::from_name(d)?,
            }),
            _ => None,
        }
    }
}

/// `countries`: the country, `None` when the database does not know the
/// address. At most ~250 values, so no limit either.
impl Dims for Option<Country> {
    const TABLE: Table = Table::Countries;
    type Hasher = ahash::RandomState;
    fn text(&self) -> DimText<'_> {
        [self.as_ref().map(Country::as_str), None, None, None]
    }
    fn from_text(text: DimText<'_>) -> Option<Self> {
        match text {
            [Some(code), None, None, None] => Country::new(code).map(Some),
            [None, None, None, None] => Some(None),
            _ => None,
        }
    }
}

/// `events` (name, page) and `event_props` (name, key, value): texts that
/// visitors choose, looked up by borrowed parts ([`TextsRef`]) so an event
/// whose row is open costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Texts<const N: usize>(pub [Box<str>; N]);

/// A [`Texts`] key borrowed from an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextsRef<'a, const N: usize>(pub [&'a str; N]);

/// Each part as its bytes and a `0xFF` (never in UTF-8), so no two keys
/// hash the same bytes; [`Texts`] hashes exactly as its borrowed form.
impl<const N: usize> Hash for TextsRef<'_, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for part in self.0 {
            state.write(part.as_bytes());
            state.write_u8(0xFF);
        }
    }
}

impl<const N: usize> Hash for Texts<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

impl<const N: usize> Texts<N> {
    fn as_ref(&self) -> TextsRef<'_, N> {
        TextsRef(std::array::from_fn(|i| &*self.0[i]))
    }
}

impl<'a, const N: usize> TextsRef<'a, N> {
    fn to_owned_key(self) -> Texts<N> {
        Texts(self.0.map(Into::into))
    }
}

impl<const N: usize> hashbrown::Equivalent<Texts<N>> for TextsRef<'_, N> {
    fn equivalent(&self, key: &Texts<N>) -> bool {
        *self == key.as_ref()
    }
}

/// The table whose keys are `n` texts: `events` (name, page) or
/// `event_props` (name, key, value). Any other `n` does not compile.
const fn texts_table(n: usize) -> Table {
    match n {
        2 => Table::Events,
        3 => Table::EventProps,
        _ => panic!("no table has that many text dimensions"),
    }
}

impl<const N: usize> Dims for Texts<N> {
    const TABLE: Table = texts_table(N);
    type Hasher = RandomSip;
    fn text(&self) -> DimText<'_> {
        let mut out: DimText<'_> = [None; MAX_DIMS];
        for (slot, part) in out.iter_mut().zip(&self.0) {
            *slot = Some(part);
        }
        out
    }
    /// The first `N` values, all present, and nothing after them.
    fn from_text(text: DimText<'_>) -> Option<Self> {
        if text[..N].iter().any(Option::is_none) || text[N..].iter().any(Option::is_some) {
            return None;
        }
        Some(Texts(std::array::from_fn(|i| {
            text[i].expect("checked above").into()
        })))
    }
}

/// One table's rows of a (site, hour), hashed as its keys need.
type Rows<K> = hashbrown::HashMap<K, Bucket, <K as Dims>::Hasher>;

/// The rows of one site in one hour, one map per table.
///
/// Pages are keyed by `Box<str>` and looked up by `&str`, so a page already
/// seen this hour costs no allocation; devices and countries are `Copy`.
#[derive(Debug, Clone, Default)]
struct SiteHour {
    pages: Rows<Box<str>>,
    sources: Rows<SourceKey>,
    devices: Rows<DeviceKey>,
    countries: Rows<Option<Country>>,
    visits: Rows<EntryPage>,
    events: Rows<Texts<2>>,
    props: Rows<Texts<3>>,
    /// Distinct values per (event name, property key) among `props`, so
    /// one busy key (an outbound link's `url`) cannot crowd out another.
    /// Derived from `props`: rebuilt whenever rows come in by a merge.
    prop_values: hashbrown::HashMap<Texts<2>, usize, RandomSip>,
}

impl SiteHour {
    fn len(&self) -> usize {
        self.pages.len()
            + self.sources.len()
            + self.devices.len()
            + self.countries.len()
            + self.visits.len()
            + self.events.len()
            + self.props.len()
    }

    /// One custom event: its (name, page) row and a row per allowed
    /// property. Past the hour's bound an event counts under name and page
    /// `(other)` (its properties under name `(other)`). A property's new
    /// value counts under value `(other)` once its (name, key) has the
    /// bound's number of values, so a busy key cannot crowd out another,
    /// or once the hour has [`PROP_ROWS`] times the bound's number of
    /// property rows, so the rows of every name together stay bounded too.
    /// Returns whether a bound was hit.
    fn fold_event(
        &mut self,
        e: &CustomEvent<'_>,
        coupon: Coupon,
        set: &Settings,
        site_full: bool,
    ) -> bool {
        let (lg_k, max) = (set.lg_k, set.limits.max_pages);
        let other2 = TextsRef([OVERFLOW, OVERFLOW]);
        let probe = if site_full {
            other2
        } else {
            TextsRef([e.name, e.page])
        };
        // An open row is found by one lookup, as a view's page is; only a
        // new one asks whether the bound turned its name away.
        let name = match self.events.get_mut(&probe) {
            Some(row) => {
                row.add_one(coupon, lg_k);
                probe.0[0]
            }
            None => {
                let row = row_in(&mut self.events, &probe, &other2, max, |k| k.to_owned_key());
                row.add_one(coupon, lg_k);
                if self.events.contains_key(&probe) {
                    probe.0[0]
                } else {
                    OVERFLOW
                }
            }
        };
        let mut overflow = name == OVERFLOW && e.name != OVERFLOW;
        for &(key, value) in e.props {
            let pair = TextsRef([name, key]);
            let probe = TextsRef([name, key, value]);
            let row = match self.props.get_mut(&probe) {
                Some(row) => row,
                None => {
                    let seen = self.prop_values.get(&pair).copied();
                    let probe = match seen {
                        // A new value, while its (name, key) and the hour
                        // have room.
                        Some(n) if n < max && self.props.len() < max * PROP_ROWS => probe,
                        None if self.props.len() < max * PROP_ROWS => probe,
                        // Past either bound: `(other)` of its own (name,
                        // key) if that has rows, else of name `(other)`,
                        // so the rows stay within twice the hour's bound
                        // (plus one a key).
                        Some(_) => {
                            overflow = true;
                            TextsRef([name, key, OVERFLOW])
                        }
                        None => {
                            overflow = true;
                            TextsRef([OVERFLOW, key, OVERFLOW])
                        }
                    };
                    if !self.props.contains_key(&probe) {
                        count_value(&mut self.prop_values, TextsRef([probe.0[0], key]));
                        self.props.insert(probe.to_owned_key(), Bucket::empty());
                    }
                    self.props.get_mut(&probe).expect("inserted above")
                }
            };
            row.add_one(coupon, lg_k);
        }
        overflow
    }

    /// Counts `props`' distinct values per (name, key) afresh.
    fn recount_prop_values(&mut self) {
        self.prop_values.clear();
        for key in self.props.keys() {
            let [name, k, _] = &key.0;
            count_value(&mut self.prop_values, TextsRef([name, k]));
        }
    }

    /// The counts of an ended visit: its entry page's `visits` row, its
    /// source's row (with the visitor only if the visit began with a
    /// landing, so that a source's visitors stay those who landed from
    /// it), and an exit on its last page (no visitor: the page's visitors
    /// are those who viewed it in the hour). Past the bounds, `(other)`.
    fn fold_ended(&mut self, v: &Ended<'_>, set: &Settings, site_full: bool) {
        let (lg_k, max) = (set.lg_k, set.limits.max_pages);
        let coupon = Coupon::from_value(v.visitor.sketch_input());
        let visit = [1, i64::from(v.bounce), i64::from(v.pageviews), v.duration_s];

        let entry = if site_full { OVERFLOW } else { v.entry_page };
        let row = row_in(&mut self.visits, entry, OVERFLOW, max, |p| {
            EntryPage(p.into())
        });
        row.add_counts(0, &visit);
        row.visitors.add(coupon, lg_k);

        let other = SourceRef([Some(OVERFLOW), None, None, None]);
        let probe = if site_full {
            other
        } else {
            SourceRef(v.source)
        };
        let key = |probe: SourceRef<'_>| {
            SourceKey::from_text(probe.0).expect("any four strings are a source")
        };
        let row = row_in(&mut self.sources, &probe, &other, max, |p| key(*p));
        row.add_counts(col::SOURCE_VISITS, &visit);
        if v.landed {
            row.visitors.add(coupon, lg_k);
        }

        let exit = if site_full { OVERFLOW } else { v.exit_page };
        row_in(&mut self.pages, exit, OVERFLOW, max, |p| p.into()).counts[col::EXITS] += 1;
    }

    /// What an engagement report adds to its page's row in the hour its
    /// visit started (no visitor, as for an exit).
    fn fold_engaged(&mut self, e: &Engaged<'_>, set: &Settings, site_full: bool) {
        let page = if site_full { OVERFLOW } else { e.page };
        let row = row_in(&mut self.pages, page, OVERFLOW, set.limits.max_pages, |p| {
            p.into()
        });
        row.add_counts(
            col::ENGAGED_MS,
            &[
                e.engaged_ms,
                i64::from(e.new_pair),
                e.scroll_added,
                i64::from(e.new_scroll),
            ],
        );
    }

    fn fold(
        &mut self,
        visit: &Visit<'_>,
        coupon: Coupon,
        set: &Settings,
        site_full: bool,
    ) -> Folded {
        let mut folded = Folded {
            site: site_full,
            ..Folded::default()
        };
        let lg_k = set.lg_k;
        let max = set.limits.max_pages;

        // Every row is looked up by borrowed parts first, so a row already
        // open, the `(other)` row of a flood included, costs no allocation.
        let page: &str = if site_full { OVERFLOW } else { visit.page };
        if let Some(bucket) = self.pages.get_mut(page) {
            bucket.add(visit.entry, coupon, lg_k);
        } else {
            folded.page = self.pages.len() >= max;
            row_in(&mut self.pages, page, OVERFLOW, max, |p| p.into()).add(
                visit.entry,
                coupon,
                lg_k,
            );
        }

        if visit.entry {
            let other = SourceRef([Some(OVERFLOW), None, None, None]);
            let probe = if site_full {
                other
            } else {
                SourceKey::of(visit)
            };
            let key = |probe: SourceRef<'_>| {
                SourceKey::from_text(probe.0).expect("any four strings are a source")
            };
            if let Some(bucket) = self.sources.get_mut(&probe) {
                bucket.add_one(coupon, lg_k);
            } else {
                // A full site's landings all count under `(other)`, whatever
                // the bound, and are counted as site overflow only.
                let max = if site_full { usize::MAX } else { max };
                folded.source = self.sources.len() >= max;
                row_in(&mut self.sources, &probe, &other, max, |p| key(*p)).add_one(coupon, lg_k);
            }
        }

        let device = DeviceKey {
            browser: visit.browser,
            os: visit.os,
            device: visit.device,
        };
        let bucket = self.devices.entry(device).or_insert_with(Bucket::empty);
        bucket.add_one(coupon, lg_k);

        if set.countries {
            let bucket = self
                .countries
                .entry(visit.country)
                .or_insert_with(Bucket::empty);
            bucket.add_one(coupon, lg_k);
        }
        folded
    }

    fn merge(&mut self, other: SiteHour, lg_k: u8) {
        merge_rows(&mut self.pages, other.pages, lg_k);
        merge_rows(&mut self.sources, other.sources, lg_k);
        merge_rows(&mut self.devices, other.devices, lg_k);
        merge_rows(&mut self.countries, other.countries, lg_k);
        merge_rows(&mut self.visits, other.visits, lg_k);
        merge_rows(&mut self.events, other.events, lg_k);
        merge_rows(&mut self.props, other.props, lg_k);
        self.recount_prop_values();
    }
}

/// One more distinct value of the (name, key) `pair`.
fn count_value(counts: &mut hashbrown::HashMap<Texts<2>, usize, RandomSip>, pair: TextsRef<'_, 2>) {
    match counts.get_mut(&pair) {
        Some(n) => *n += 1,
        None => {
            counts.insert(pair.to_owned_key(), 1);
        }
    }
}

/// How many times `--max-pages` property rows a site-hour may hold, over
/// every (event name, key): room for a few busy keys at their own bound
/// (`url` of outbound links, say) beside the rest.
pub const PROP_ROWS: usize = 4;

/// The row `key` names, opened (with the key `make` builds) if the (site,
/// hour) has fewer than `max` rows, else the `other` row, opened if need
/// be: where every fold past the table's bound lands.
fn row_in<'r, K: Dims, Q: Hash + hashbrown::Equivalent<K> + ?Sized>(
    rows: &'r mut Rows<K>,
    key: &'r Q,
    other: &'r Q,
    max: usize,
    make: impl FnOnce(&Q) -> K,
) -> &'r mut Bucket {
    let key = if rows.len() < max || rows.contains_key(key) {
        key
    } else {
        other
    };
    if !rows.contains_key(key) {
        rows.insert(make(key), Bucket::empty());
    }
    rows.get_mut(key).expect("inserted above")
}

fn merge_rows<K: Dims>(mine: &mut Rows<K>, theirs: Rows<K>, lg_k: u8) {
    for (key, bucket) in theirs {
        match mine.get_mut(&key) {
            Some(b) => b.absorb(&bucket, lg_k),
            None => {
                mine.insert(key, bucket);
            }
        }
    }
}

/// site -> its rows, for one hour.
type Sites = HashMap<Box<str>, SiteHour, RandomSip>;

pub use footfall_schemas::tables::OVERFLOW;

/// Bounds on the buckets one hour may open, so a flood of unique URLs,
/// referrers, campaign values or invented site ids cannot grow memory
/// without end. Views past a bound still count, under [`OVERFLOW`]: totals
/// stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Distinct pages per (site, hour); the same bound for distinct sources.
    pub max_pages: usize,
    /// Distinct sites per hour.
    pub max_sites: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pages: 10_000,
            max_sites: 1_000,
        }
    }
}

/// Which bounds a fold ran into, for the overflow metrics. The default is
/// none: counted under its own site, page and source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Folded {
    /// Counted under site [`OVERFLOW`]: its hour was full of sites.
    pub site: bool,
    /// Counted under page [`OVERFLOW`]: its (site, hour) was full of pages.
    pub page: bool,
    /// Counted under referrer [`OVERFLOW`]: its (site, hour) was full of
    /// sources.
    pub source: bool,
}

impl Folded {
    /// The visit as the tables counted it: `(other)` for the site, page or
    /// source a bound turned away.
    pub fn as_counted<'a>(self, visit: &Visit<'a>) -> Visit<'a> {
        let source_away = self.site || self.source;
        Visit {
            site: if self.site { OVERFLOW } else { visit.site },
            page: if self.site || self.page {
                OVERFLOW
            } else {
                visit.page
            },
            referrer: if source_away {
                Some(OVERFLOW)
            } else {
                visit.referrer
            },
            campaign: if source_away {
                footfall_schemas::Campaign::default()
            } else {
                visit.campaign
            },
            ..*visit
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    lg_k: u8,
    limits: Limits,
    /// Whether visits' countries are counted (a GeoIP database is set).
    countries: bool,
}

/// One row of any table, borrowed from the buckets.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub table: Table,
    pub site: &'a str,
    /// Start of the UTC hour, Unix seconds.
    pub hour: i64,
    pub dims: DimText<'a>,
    pub bucket: &'a Bucket,
}

/// Open aggregates, keyed by hour (Unix seconds of its start), site and
/// each table's dimensions.
///
/// Hours are the outer key, in order, so closing every hour before `now` is a
/// split of the map, not a scan.
#[derive(Debug, Clone)]
pub struct Buckets {
    settings: Settings,
    hours: BTreeMap<i64, Sites>,
}

impl Buckets {
    /// An empty set whose sketches use `lg_k` (4..=21).
    pub fn new(lg_k: u8) -> Result<Self, Error> {
        HllSketch::new(lg_k, HLL_TYPE).map_err(|e| Error::LgK {
            lg_k,
            reason: e.to_string(),
        })?;
        Ok(Self {
            settings: Settings {
                lg_k,
                limits: Limits::default(),
                countries: false,
            },
            hours: BTreeMap::new(),
        })
    }

    /// The same, with other bounds on the buckets per hour.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// The same, counting the `countries` table too (off by default: only a
    /// GeoIP database gives visits a country).
    pub fn with_countries(mut self, on: bool) -> Self {
        self.settings.countries = on;
        self
    }

    /// An empty set with the same settings.
    pub fn empty_like(&self) -> Buckets {
        Buckets {
            settings: self.settings,
            hours: BTreeMap::new(),
        }
    }

    /// The sketches' `lg_k`.
    pub fn lg_k(&self) -> u8 {
        self.settings.lg_k
    }

    /// True when no bucket is open.
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// How many buckets (rows, across every table) are open.
    pub fn len(&self) -> usize {
        self.hours
            .values()
            .flat_map(|sites| sites.values())
            .map(SiteHour::len)
            .sum()
    }

    /// Counts one visit in every table: a view, an entry if it landed, its
    /// visitor key in each row's sketch. Past the hour's [`Limits`] it counts
    /// under [`OVERFLOW`].
    pub fn fold(&mut self, visit: &Visit<'_>) -> Folded {
        let hour = visit.time.div_euclid(SECONDS_PER_HOUR) * SECONDS_PER_HOUR;
        let coupon = Coupon::from_value(visit.visitor.sketch_input());
        let settings = self.settings;
        // The common case, a site already open this hour: two lookups by
        // borrowed keys, no allocation.
        if let Some(site_hour) = self
            .hours
            .get_mut(&hour)
            .and_then(|sites| sites.get_mut(visit.site))
        {
            return site_hour.fold(visit, coupon, &settings, false);
        }
        let sites = self.hours.entry(hour).or_default();
        let site_full = sites.len() >= settings.limits.max_sites;
        let site: &str = if site_full { OVERFLOW } else { visit.site };
        // `(other)` is made once, not boxed again for every site past the
        // bound.
        match sites.get_mut(site) {
            Some(rows) => rows.fold(visit, coupon, &settings, site_full),
            None => sites
                .entry(site.into())
                .or_default()
                .fold(visit, coupon, &settings, site_full),
        }
    }

    /// Counts an ended visit in the hour it started (see
    /// [`Sessions`](crate::sessions::Sessions)): that hour may have been
    /// written already, and its new rows go out with the next flush.
    pub fn fold_ended(&mut self, visit: &Ended<'_>) {
        let settings = self.settings;
        let (site_hour, full) = self.site_hour(visit.start, visit.site);
        site_hour.fold_ended(visit, &settings, full);
    }

    /// Counts one custom event in the hour it arrived; true when a bound
    /// turned a name, page or value into [`OVERFLOW`].
    pub fn fold_event(&mut self, event: &CustomEvent<'_>) -> bool {
        let settings = self.settings;
        let coupon = Coupon::from_value(event.visitor.sketch_input());
        let hour = event.time.div_euclid(SECONDS_PER_HOUR) * SECONDS_PER_HOUR;
        // The common case, a site already open this hour: one lookup of
        // the site, as a view's fold.
        if let Some(site_hour) = self
            .hours
            .get_mut(&hour)
            .and_then(|sites| sites.get_mut(event.site))
        {
            return site_hour.fold_event(event, coupon, &settings, false);
        }
        let (site_hour, full) = self.site_hour(event.time, event.site);
        site_hour.fold_event(event, coupon, &settings, full) || full
    }

    /// Counts an engagement report in its visit's start hour.
    pub fn fold_engaged(&mut self, engaged: &Engaged<'_>) {
        let settings = self.settings;
        let (site_hour, full) = self.site_hour(engaged.start, engaged.site);
        site_hour.fold_engaged(engaged, &settings, full);
    }

    /// The rows of `site` in the hour of `time`, or of `(other)` when the
    /// hour is full of sites (and whether it was).
    fn site_hour(&mut self, time: i64, site: &str) -> (&mut SiteHour, bool) {
        let hour = time.div_euclid(SECONDS_PER_HOUR) * SECONDS_PER_HOUR;
        let max_sites = self.settings.limits.max_sites;
        let sites = self.hours.entry(hour).or_default();
        let full = !sites.contains_key(site) && sites.len() >= max_sites;
        let site = if full { OVERFLOW } else { site };
        if !sites.contains_key(site) {
            sites.insert(site.into(), SiteHour::default());
        }
        (sites.get_mut(site).expect("inserted above"), full)
    }

    /// Adds one row as it is (restoring a checkpoint): merged into an
    /// existing one, never subject to the limits, which applied when it was
    /// folded. `None` when `dims` are not valid for `table`.
    pub fn insert(
        &mut self,
        table: Table,
        site: &str,
        hour: i64,
        dims: DimText<'_>,
        bucket: Bucket,
    ) -> Option<()> {
        let lg_k = self.settings.lg_k;
        let site_hour = self
            .hours
            .entry(hour)
            .or_default()
            .entry(site.into())
            .or_default();
        fn put<K: Dims>(
            rows: &mut Rows<K>,
            dims: DimText<'_>,
            bucket: Bucket,
            lg_k: u8,
        ) -> Option<()> {
            let key = K::from_text(dims)?;
            match rows.get_mut(&key) {
                Some(b) => b.absorb(&bucket, lg_k),
                None => {
                    rows.insert(key, bucket);
                }
            }
            Some(())
        }
        match table {
            Table::Pages => put(&mut site_hour.pages, dims, bucket, lg_k),
            Table::Sources => put(&mut site_hour.sources, dims, bucket, lg_k),
            Table::Devices => put(&mut site_hour.devices, dims, bucket, lg_k),
            Table::Countries => put(&mut site_hour.countries, dims, bucket, lg_k),
            Table::Visits => put(&mut site_hour.visits, dims, bucket, lg_k),
            Table::Events => put(&mut site_hour.events, dims, bucket, lg_k),
            Table::EventProps => {
                let before = site_hour.props.len();
                put(&mut site_hour.props, dims, bucket, lg_k)?;
                if site_hour.props.len() > before {
                    let [name, key, ..] = dims;
                    let pair = TextsRef([name?, key?]);
                    count_value(&mut site_hour.prop_values, pair);
                }
                Some(())
            }
        }
    }

    /// Adds every bucket of `other` into `self`: counts are summed, sketches
    /// unioned. Folding a stream equals merging the folds of its parts.
    pub fn merge(&mut self, other: Buckets) {
        debug_assert_eq!(self.lg_k(), other.lg_k());
        let lg_k = self.lg_k();
        for (hour, sites) in other.hours {
            let mine = self.hours.entry(hour).or_default();
            for (site, rows) in sites {
                match mine.get_mut(&site) {
                    Some(m) => m.merge(rows, lg_k),
                    None => {
                        mine.insert(site, rows);
                    }
                }
            }
        }
    }

    /// True when some open hour ended before `now`.
    pub fn has_closed(&self, now: i64) -> bool {
        self.hours
            .keys()
            .next()
            .is_some_and(|&h| h + SECONDS_PER_HOUR <= now)
    }

    /// Removes and returns the buckets of every hour that ended by `now`.
    pub fn take_closed(&mut self, now: i64) -> Buckets {
        let current_hour = now.div_euclid(SECONDS_PER_HOUR) * SECONDS_PER_HOUR;
        let open = self.hours.split_off(&current_hour);
        let mut closed = self.empty_like();
        closed.hours = std::mem::replace(&mut self.hours, open);
        closed
    }

    /// Removes and returns every bucket (for a stop).
    pub fn take_all(&mut self) -> Buckets {
        let mut all = self.empty_like();
        all.hours = std::mem::take(&mut self.hours);
        all
    }

    /// Splits the buckets by UTC date: each date is one file's worth.
    pub fn split_by_date(self) -> BTreeMap<NaiveDate, Buckets> {
        let mut out: BTreeMap<NaiveDate, Buckets> = BTreeMap::new();
        let template = self.empty_like();
        for (hour, sites) in self.hours {
            out.entry(date_of(hour))
                .or_insert_with(|| template.clone())
                .hours
                .insert(hour, sites);
        }
        out
    }

    /// Only the rows of `tables` (the rest dropped).
    pub fn only(mut self, tables: &[Table]) -> Buckets {
        for sites in self.hours.values_mut() {
            for rows in sites.values_mut() {
                for table in Table::ALL {
                    if tables.contains(&table) {
                        continue;
                    }
                    match table {
                        Table::Pages => rows.pages.clear(),
                        Table::Sources => rows.sources.clear(),
                        Table::Devices => rows.devices.clear(),
                        Table::Countries => rows.countries.clear(),
                        Table::Visits => rows.visits.clear(),
                        Table::Events => rows.events.clear(),
                        Table::EventProps => {
                            rows.props.clear();
                            rows.prop_values.clear();
                        }
                    }
                }
            }
        }
        self
    }

    /// Every row of every table, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.hours.iter().flat_map(|(&hour, sites)| {
            sites.iter().flat_map(move |(site, rows)| {
                fn each<'a, K: Dims>(
                    rows: &'a Rows<K>,
                    site: &'a str,
                    hour: i64,
                ) -> impl Iterator<Item = Row<'a>> {
                    rows.iter().map(move |(key, bucket)| Row {
                        table: K::TABLE,
                        site,
                        hour,
                        dims: key.text(),
                        bucket,
                    })
                }
                each(&rows.pages, site, hour)
                    .chain(each(&rows.sources, site, hour))
                    .chain(each(&rows.devices, site, hour))
                    .chain(each(&rows.countries, site, hour))
                    .chain(each(&rows.visits, site, hour))
                    .chain(each(&rows.events, site, hour))
                    .chain(each(&rows.props, site, hour))
            })
        })
    }

    /// The rows of one table.
    pub fn rows_of(&self, table: Table) -> impl Iterator<Item = Row<'_>> {
        self.rows().filter(move |r| r.table == table)
    }

    /// The tables that have rows here.
    pub fn tables(&self) -> Vec<Table> {
        Table::ALL
            .into_iter()
            .filter(|&t| self.rows_of(t).next().is_some())
            .collect()
    }

    /// One table's rows as a record batch, sorted by (site, hour, dims) so
    /// that row-group statistics let engines skip what a query does not
    /// need. Empty when the table has no rows here.
    pub fn to_record_batch(&self, table: Table) -> Result<RecordBatch, Error> {
        let lg_k = self.lg_k();
        let mut rows: Vec<Row<'_>> = self.rows_of(table).collect();
        rows.sort_unstable_by(|a, b| (a.site, a.hour, a.dims).cmp(&(b.site, b.hour, b.dims)));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.site))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|r| r.hour * 1_000_000),
                )
                .with_timezone("UTC"),
            ),
        ];
        for i in 0..table.dims().len() {
            columns.push(Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.dims[i]),
            )));
        }
        for i in 0..table.counts().len() {
            let values = rows.iter().map(|r| r.bucket.counts[i]);
            columns.push(Arc::new(Int64Array::from_iter_values(values)));
        }
        let sketches: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| canonical_image(&r.bucket.visitors.to_sketch(lg_k), lg_k))
            .collect();
        columns.push(Arc::new(BinaryArray::from_iter_values(sketches.iter())));
        RecordBatch::try_new(table.schema(lg_k), columns).map_err(Error::Arrow)
    }
}

/// The sketch image written to a file: registers only, with the estimator
/// state every union ends in.
///
/// A sketch folded in order carries DataSketches' HIP estimator; a union
/// whose input came from several histories (a merge of two flushes, a
/// restart) is marked out of order and uses the composite estimator, which
/// depends on the registers alone. Readers union rows anyway, but a union of
/// a single in-order sketch keeps its HIP state, so without this step the
/// same visitors would estimate differently depending on how many flushes
/// they were written in. Merging the sketch into a union twice marks it out
/// of order (merging registers into a non-empty union always does), so the
/// file is a function of the visitors alone: the fold of a stream equals
/// the merge of its parts, estimates included. Sketches still in list or
/// set mode are unaffected: their estimate depends on their coupons only.
pub fn canonical_image(sketch: &HllSketch, lg_k: u8) -> Vec<u8> {
    let mut union = HllUnion::new(lg_k).expect("lg_k was checked by Buckets::new");
    union.update(sketch);
    union.update(sketch);
    union.to_sketch(HLL_TYPE).serialize()
}

/// The UTC date an hour (Unix seconds) falls on.
pub fn date_of(hour: i64) -> NaiveDate {
    DateTime::from_timestamp(hour, 0)
        .map(|t| t.date_naive())
        .unwrap_or(NaiveDate::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use footfall_schemas::{Campaign, VisitorKey};
    use proptest::prelude::*;

    const T0: i64 = 1_764_079_200; // 2025-11-25T14:00:00Z

    fn visit<'a>(site: &'a str, time: i64, page: &'a str, entry: bool, visitor: u64) -> Visit<'a> {
        Visit {
            entry,
            referrer: (!entry).then_some(site),
            ..Visit::landing(site, time, page, VisitorKey::from_hash(visitor))
        }
    }

    /// (site, hour, page, views, entries) of the `pages` rows, sorted.
    /// (dimension values joined by `|`, events, distinct visitors) of one
    /// event table's rows, sorted.
    fn event_rows(b: &Buckets, table: Table) -> Vec<(String, i64, u64)> {
        let mut rows: Vec<_> = b
            .rows_of(table)
            .map(|r| {
                let dims: Vec<&str> = r.dims.iter().flatten().copied().collect();
                let visitors = r.bucket.visitors.to_sketch(12).estimate().round() as u64;
                (dims.join("|"), r.bucket.counts[0], visitors)
            })
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn events_and_allowed_props_fold_into_their_tables_within_bounds() {
        let mut b = Buckets::new(12).unwrap().with_limits(Limits {
            max_pages: 2,
            max_sites: 10,
        });
        let ev = |name, page, props: &'static [(&'static str, &'static str)], who| CustomEvent {
            site: "a.com",
            time: T0 + 60,
            name,
            page,
            props,
            interactive: true,
            visitor: VisitorKey::from_hash(who),
        };
        let pro: &[(&str, &str)] = &[("plan", "pro")];
        assert!(!b.fold_event(&ev("Signup", "/", pro, 1)));
        assert!(!b.fold_event(&ev("Signup", "/", pro, 2)));
        assert!(!b.fold_event(&ev("Signup", "/", &[("plan", "free")], 2)));
        // A third value of `plan` is past the bound of two.
        assert!(b.fold_event(&ev("Signup", "/", &[("plan", "team")], 3)));
        // Another key has a bound of its own.
        assert!(!b.fold_event(&ev("Signup", "/", &[("size", "xl")], 3)));
        assert!(!b.fold_event(&ev("Download", "/f", &[], 1)));
        // A third (name, page) is past the hour's bound: the event is
        // `(other)`, its property counts under name `(other)`.
        assert!(b.fold_event(&ev("Spam", "/x", pro, 4)));
        assert_eq!(
            event_rows(&b, Table::Events),
            [
                ("(other)|(other)".into(), 1, 1),
                ("Download|/f".into(), 1, 1),
                ("Signup|/".into(), 5, 3),
            ]
        );
        assert_eq!(
            event_rows(&b, Table::EventProps),
            [
                ("(other)|plan|pro".into(), 1, 1),
                ("Signup|plan|(other)".into(), 1, 1),
                ("Signup|plan|free".into(), 1, 1),
                ("Signup|plan|pro".into(), 2, 2),
                ("Signup|size|xl".into(), 1, 1),
            ]
        );
        // The hour's property rows are bounded over every (name, key) too,
        // at PROP_ROWS times the bound: 5 rows so far, room for 3 more.
        for props in [&[("a", "1")][..], &[("b", "1")], &[("c", "1")]] {
            assert!(!b.fold_event(&ev("Signup", "/", props, 6)));
        }
        // Full: a new (name, key) counts under name `(other)`, a known one
        // under its own `(other)`.
        assert!(b.fold_event(&ev("Signup", "/", &[("d", "1")], 6)));
        assert!(b.fold_event(&ev("Signup", "/", &[("a", "2")], 6)));
        let props = event_rows(&b, Table::EventProps);
        assert!(
            props.contains(&("(other)|d|(other)".into(), 1, 1)),
            "{props:?}"
        );
        assert!(
            props.contains(&("Signup|a|(other)".into(), 1, 1)),
            "{props:?}"
        );
        assert_eq!(props.len(), 10);
        // Rows restored from a checkpoint count towards the bounds again.
        let mut restored = Buckets::new(12).unwrap().with_limits(Limits {
            max_pages: 2,
            max_sites: 10,
        });
        for row in b.rows() {
            restored
                .insert(row.table, row.site, row.hour, row.dims, row.bucket.clone())
                .unwrap();
        }
        assert!(restored.fold_event(&ev("Signup", "/", &[("plan", "enterprise")], 5)));
        assert!(!restored.fold_event(&ev("Signup", "/", &[("plan", "free")], 5)));
        // Both tables are written in the files' shape.
        let batch = b.to_record_batch(Table::EventProps).unwrap();
        assert_eq!(batch.num_rows(), 10);
        assert_eq!(batch.schema(), Table::EventProps.schema(12));
    }

    fn pages(b: &Buckets) -> Vec<(String, i64, String, i64, i64)> {
        let mut rows: Vec<_> = b
            .rows_of(Table::Pages)
            .map(|r| {
                (
                    r.site.to_owned(),
                    r.hour,
                    r.dims[0].unwrap().to_owned(),
                    r.bucket.counts[0],
                    r.bucket.counts[1],
                )
            })
            .collect();
        rows.sort();
        rows
    }

    /// What a reader computes for a key: the estimate of the union of every
    /// row's sketch, as DuckDB, Spark or `footfall report` would.
    fn union_estimate<'a>(lg_k: u8, sketches: impl IntoIterator<Item = &'a HllSketch>) -> f64 {
        let mut u = HllUnion::new(lg_k).unwrap();
        for s in sketches {
            u.update(s);
        }
        u.estimate()
    }

    #[test]
    fn folds_views_entries_and_visitors_per_hour_and_page() {
        let mut b = Buckets::new(12).unwrap();
        b.fold(&visit("a.com", T0 + 10, "/", true, 1));
        b.fold(&visit("a.com", T0 + 20, "/", false, 1));
        b.fold(&visit("a.com", T0 + 30, "/", true, 2));
        b.fold(&visit("a.com", T0 + 3600, "/", true, 1));
        b.fold(&visit("b.com", T0 + 40, "/", true, 1));
        assert_eq!(b.rows_of(Table::Pages).count(), 3);
        let mut rows: Vec<_> = b
            .rows_of(Table::Pages)
            .map(|r| {
                (
                    r.site.to_owned(),
                    r.hour,
                    r.dims[0].unwrap().to_owned(),
                    r.bucket.counts[0],
                    r.bucket.counts[1],
                    r.bucket.visitors.to_sketch(12).estimate().round(),
                )
            })
            .collect();
        rows.sort_by(|x, y| x.partial_cmp(y).unwrap());
        assert_eq!(
            rows,
            vec![
                ("a.com".into(), T0, "/".into(), 3, 2, 2.0),
                ("a.com".into(), T0 + 3600, "/".into(), 1, 1, 1.0),
                ("b.com".into(), T0, "/".into(), 1, 1, 1.0),
            ]
        );
    }

    /// (dims, views, entries, visitors) of one table's rows, sorted.
    fn table(b: &Buckets, table: Table) -> Vec<(Vec<Option<String>>, i64, i64, f64)> {
        let n = table.dims().len();
        let mut rows: Vec<_> = b
            .rows_of(table)
            .map(|r| {
                (
                    r.dims[..n]
                        .iter()
                        .map(|d| d.map(str::to_owned))
                        .collect::<Vec<_>>(),
                    r.bucket.counts[0],
                    r.bucket.counts[1],
                    r.bucket.visitors.to_sketch(12).estimate().round(),
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    #[test]
    fn folds_sources_from_landings_only_and_devices_and_countries_from_every_view() {
        let s = |v: &str| Some(v.to_owned());
        let mut b = Buckets::new(12).unwrap().with_countries(true);
        let news = Campaign {
            source: Some("news"),
            medium: Some("email"),
            campaign: None,
        };
        let phone = |v: Visit<'static>| Visit {
            browser: Browser::Safari,
            os: Os::Ios,
            device: Device::Mobile,
            country: Country::new("FR"),
            ..v
        };
        b.fold(&visit("a.com", T0, "/", true, 1)); // direct
        b.fold(&Visit {
            referrer: Some("ref.net"),
            ..visit("a.com", T0, "/", true, 2)
        });
        b.fold(&phone(Visit {
            campaign: news,
            ..visit("a.com", T0, "/", true, 3)
        }));
        b.fold(&phone(Visit {
            campaign: news,
            ..visit("a.com", T0, "/", true, 3)
        }));
        // Internal navigation: a view, never a source.
        b.fold(&phone(visit("a.com", T0, "/next", false, 3)));

        assert_eq!(
            table(&b, Table::Sources),
            [
                (vec![None, None, None, None], 1, 0, 1.0),
                (vec![None, s("news"), s("email"), None], 2, 0, 1.0),
                (vec![s("ref.net"), None, None, None], 1, 0, 1.0),
            ]
        );
        assert_eq!(
            table(&b, Table::Devices),
            [
                (vec![s("Other"), s("Other"), s("desktop")], 2, 0, 2.0),
                (vec![s("Safari"), s("iOS"), s("mobile")], 3, 0, 1.0),
            ]
        );
        assert_eq!(
            table(&b, Table::Countries),
            [(vec![None], 2, 0, 2.0), (vec![s("FR")], 3, 0, 1.0)]
        );

        // Without a GeoIP database there is no countries table at all.
        let mut off = Buckets::new(12).unwrap();
        off.fold(&phone(visit("a.com", T0, "/", true, 1)));
        assert_eq!(off.tables(), [Table::Pages, Table::Sources, Table::Devices]);
        let batch = b.to_record_batch(Table::Sources).unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.schema().field(2).name(), "referrer");
    }

    #[test]
    fn a_source_is_found_by_borrowed_parts() {
        use std::hash::BuildHasher;
        let key = SourceKey {
            referrer: Some("ref.net".into()),
            utm_source: Some("news".into()),
            utm_medium: None,
            utm_campaign: None,
        };
        let probe = SourceRef([Some("ref.net"), Some("news"), None, None]);
        let state = std::hash::RandomState::new();
        assert_eq!(state.hash_one(&key), state.hash_one(probe));
        let mut rows: Rows<SourceKey> = Rows::default();
        rows.insert(key, Bucket::empty());
        assert!(rows.get_mut(&probe).is_some());
        assert!(
            rows.get_mut(&SourceRef([Some("ref.net"), None, Some("news"), None]))
                .is_none()
        );
    }

    #[test]
    fn a_flood_of_referrers_or_campaigns_folds_into_other() {
        let limits = Limits {
            max_pages: 2,
            max_sites: 10,
        };
        let mut b = Buckets::new(12).unwrap().with_limits(limits);
        let mut overflowed = 0;
        for i in 0..5u64 {
            let spam = format!("spam{i}.example");
            let folded = b.fold(&Visit {
                referrer: Some(&spam),
                ..visit("a.com", T0, "/", true, i)
            });
            overflowed += u64::from(folded.source);
        }
        assert_eq!(overflowed, 3);
        let rows = table(&b, Table::Sources);
        assert_eq!(rows.len(), 3);
        assert!(rows.contains(&(vec![Some(OVERFLOW.into()), None, None, None], 3, 0, 3.0)));
        assert_eq!(
            rows.iter().map(|r| r.1).sum::<i64>(),
            5,
            "every entry counts"
        );
    }

    #[test]
    fn the_count_positions_are_the_tables_columns() {
        use footfall_schemas::tables::Count;
        let at = |t: Table, c: Count| t.count_index(c).unwrap();
        assert_eq!(at(Table::Pages, Count::Views), col::VIEWS);
        assert_eq!(at(Table::Pages, Count::Entries), col::ENTRIES);
        assert_eq!(at(Table::Pages, Count::Exits), col::EXITS);
        assert_eq!(at(Table::Pages, Count::EngagedMs), col::ENGAGED_MS);
        assert_eq!(
            Table::Pages.counts()[col::ENGAGED_MS..],
            [
                Count::EngagedMs,
                Count::Engagements,
                Count::ScrollSum,
                Count::Scrolls
            ]
        );
        assert_eq!(at(Table::Sources, Count::Entries), 0);
        assert_eq!(
            Table::Sources.counts()[col::SOURCE_VISITS..],
            *Table::Visits.counts()
        );
        for t in [Table::Devices, Table::Countries] {
            assert_eq!(at(t, Count::Views), 0);
        }
    }

    #[test]
    fn an_ended_visit_counts_in_the_hour_it_started() {
        let mut b = Buckets::new(12).unwrap();
        let key = VisitorKey::from_hash(42);
        // Began at 10:50 from a newsletter, read three pages, left at 11:20.
        let ended = Ended {
            site: "a.com",
            start: T0 + 50 * 60,
            entry_page: "/in",
            exit_page: "/out",
            landed: true,
            source: [Some("news.example"), Some("mail"), None, None],
            pageviews: 3,
            bounce: false,
            duration_s: 30 * 60,
            visitor: key,
        };
        b.fold_ended(&ended);
        // And one that began with internal navigation: no source of its own,
        // and its visitor is not among the direct visitors.
        b.fold_ended(&Ended {
            entry_page: "/in",
            exit_page: "/in",
            landed: false,
            source: [None; 4],
            pageviews: 1,
            bounce: true,
            duration_s: 0,
            visitor: VisitorKey::from_hash(43),
            ..ended
        });
        b.fold_engaged(&Engaged {
            site: "a.com",
            start: T0 + 50 * 60,
            page: "/out",
            engaged_ms: 4_500,
            new_pair: true,
            scroll_added: 80,
            new_scroll: true,
        });
        let rows = |t: Table| -> Vec<(Vec<Option<String>>, Vec<i64>, f64)> {
            let mut rows: Vec<(Vec<Option<String>>, Vec<i64>, f64)> = b
                .rows_of(t)
                .map(|r| {
                    assert_eq!(r.hour, T0, "the start hour");
                    (
                        r.dims[..t.dims().len()]
                            .iter()
                            .map(|d| d.map(String::from))
                            .collect(),
                        r.bucket.counts[..t.counts().len()].to_vec(),
                        r.bucket.visitors.to_sketch(12).estimate().round(),
                    )
                })
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            rows
        };
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            rows(Table::Visits),
            [(vec![s("/in")], vec![2, 1, 4, 1800], 2.0)]
        );
        assert_eq!(
            rows(Table::Sources),
            [
                (vec![None, None, None, None], vec![0, 1, 1, 1, 0], 0.0),
                (
                    vec![s("news.example"), s("mail"), None, None],
                    vec![0, 1, 0, 3, 1800],
                    1.0
                ),
            ]
        );
        // Exits and engagement carry no visitor: a page's visitors are its
        // viewers in the hour.
        assert_eq!(
            rows(Table::Pages),
            [
                (vec![s("/in")], vec![0, 0, 1, 0, 0, 0, 0], 0.0),
                (vec![s("/out")], vec![0, 0, 1, 4_500, 1, 80, 1], 0.0),
            ]
        );
        assert!(b.rows_of(Table::Devices).next().is_none());
    }

    #[test]
    fn closing_takes_only_finished_hours() {
        let mut b = Buckets::new(12).unwrap();
        b.fold(&visit("a.com", T0 - 1, "/old", true, 1));
        b.fold(&visit("a.com", T0 + 5, "/new", true, 1));
        assert!(!b.has_closed(T0 - 1));
        assert!(b.has_closed(T0));
        assert!(b.take_closed(T0 - 1).is_empty());
        let closed = b.take_closed(T0 + 5);
        assert_eq!(pages(&closed)[0].2, "/old");
        assert_eq!(pages(&closed).len(), 1);
        assert_eq!(pages(&b)[0].2, "/new");
        assert!(!b.has_closed(T0 + 3599));
        assert_eq!(pages(&b.take_all()).len(), 1);
        assert!(b.is_empty());
    }

    #[test]
    fn splits_by_utc_date() {
        let mut b = Buckets::new(12).unwrap();
        let midnight = 1_764_115_200; // 2025-11-26T00:00:00Z
        b.fold(&visit("a.com", midnight - 1, "/", true, 1));
        b.fold(&visit("a.com", midnight, "/", true, 1));
        let dates: Vec<String> = b.split_by_date().keys().map(|d| d.to_string()).collect();
        assert_eq!(dates, ["2025-11-25", "2025-11-26"]);
    }

    #[test]
    fn record_batches_are_sorted_and_typed() {
        let mut b = Buckets::new(12).unwrap();
        b.fold(&visit("b.com", T0, "/", true, 1));
        b.fold(&visit("a.com", T0 + 3600, "/a", true, 1));
        b.fold(&visit("a.com", T0, "/z", false, 2));
        b.fold(&visit("a.com", T0, "/a", true, 3));
        let batch = b.to_record_batch(Table::Pages).unwrap();
        let col = |i: usize| batch.column(i).clone();
        let sites = col(0);
        let sites = sites.as_any().downcast_ref::<StringArray>().unwrap();
        let pages = col(2);
        let pages = pages.as_any().downcast_ref::<StringArray>().unwrap();
        let got: Vec<(&str, &str)> = sites
            .iter()
            .zip(pages.iter())
            .map(|(s, p)| (s.unwrap(), p.unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("a.com", "/a"),
                ("a.com", "/z"),
                ("a.com", "/a"),
                ("b.com", "/")
            ]
        );
        let hours = col(1);
        let hours = hours
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(hours.value(0), T0 * 1_000_000);
        assert_eq!(hours.value(2), (T0 + 3600) * 1_000_000);
        let sketches = col(10);
        let sketches = sketches.as_any().downcast_ref::<BinaryArray>().unwrap();
        let s = HllSketch::deserialize(sketches.value(0)).unwrap();
        assert_eq!(s.estimate(), 1.0);
        assert_eq!(s.lg_config_k(), 12);
    }

    #[test]
    fn small_sketches_stay_small() {
        let mut b = Buckets::new(12).unwrap();
        for v in 0..3 {
            b.fold(&visit("a.com", T0, "/", true, v));
        }
        let bucket = b.rows_of(Table::Pages).next().unwrap().bucket;
        // List mode: an 8-byte preamble and 4 bytes a coupon, not 2 KiB of
        // registers.
        assert!(bucket.visitors.to_sketch(12).serialize().len() <= 8 + 3 * 4);
        assert!(
            matches!(bucket.visitors, Visitors::Few { len: 3, .. }),
            "no sketch yet"
        );
        assert!(
            std::mem::size_of::<Bucket>() <= 72,
            "{}",
            std::mem::size_of::<Bucket>()
        );
    }

    #[test]
    fn a_flood_of_pages_or_sites_folds_into_other_and_still_adds_up() {
        let limits = Limits {
            max_pages: 3,
            max_sites: 2,
        };
        let mut b = Buckets::new(12).unwrap().with_limits(limits);
        let mut outcomes = Vec::new();
        for i in 0..5u64 {
            outcomes.push(b.fold(&visit("a.com", T0, &format!("/p{i}"), true, i)));
        }
        outcomes.push(b.fold(&visit("b.com", T0, "/", true, 9)));
        outcomes.push(b.fold(&visit("c.com", T0, "/", true, 10)));
        outcomes.push(b.fold(&visit("d.com", T0, "/x", true, 11)));
        // A page already open keeps counting under its own name.
        outcomes.push(b.fold(&visit("a.com", T0, "/p0", true, 12)));
        let exact = Folded::default();
        let page = Folded {
            page: true,
            ..exact
        };
        let site = Folded {
            site: true,
            ..exact
        };
        assert_eq!(
            outcomes,
            [exact, exact, exact, page, page, exact, site, site, exact]
        );
        let keys: Vec<_> = pages(&b)
            .into_iter()
            .map(|(s, _, p, views, _)| (s, p, views))
            .collect();
        assert_eq!(
            keys,
            [
                ("(other)".into(), "(other)".into(), 2),
                ("a.com".into(), "(other)".into(), 2),
                ("a.com".into(), "/p0".into(), 2),
                ("a.com".into(), "/p1".into(), 1),
                ("a.com".into(), "/p2".into(), 1),
                ("b.com".into(), "/".into(), 1),
            ]
        );
        for table in [Table::Pages, Table::Devices] {
            assert_eq!(
                b.rows_of(table).map(|r| r.bucket.counts[0]).sum::<i64>(),
                9,
                "every view still counts in {table:?}"
            );
        }
        // The limits are per hour.
        assert_eq!(b.fold(&visit("a.com", T0 + 3600, "/p4", true, 1)), exact);
    }

    #[test]
    fn rejects_out_of_range_lg_k() {
        assert!(Buckets::new(3).is_err());
        assert!(Buckets::new(22).is_err());
        assert!(Buckets::new(4).is_ok());
    }

    fn arb_visits() -> impl Strategy<Value = Vec<Visit<'static>>> {
        // Few sites, hours and pages so keys collide. With up to 1,500 visits
        // over 24 keys a key sees about 60 visitors: list and set mode at
        // lg_k 12, the dense HLL array at lg_k 5 (which leaves coupon mode
        // past 3 coupons), both at lg_k 8.
        let one = (
            (0..2usize, 0..3i64, 0..4usize, any::<bool>(), 0..3000u64),
            (0..3usize, 0..3usize, 0..3usize),
        )
            .prop_map(
                |((site, hour, page, entry, visitor), (source, device, country))| {
                    let base = visit(
                        ["a.com", "b.org"][site],
                        T0 + hour * 3600 + 17,
                        ["/", "/x", "/y", "/z"][page],
                        entry,
                        visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    let campaign = Campaign {
                        source: (source == 2).then_some("news"),
                        ..Campaign::default()
                    };
                    Visit {
                        referrer: if entry {
                            [None, Some("ref.net"), None][source]
                        } else {
                            base.referrer
                        },
                        campaign,
                        browser: [Browser::Chrome, Browser::Firefox, Browser::Safari][device],
                        os: [Os::Windows, Os::Linux, Os::Ios][device],
                        device: [Device::Desktop, Device::Desktop, Device::Mobile][device],
                        country: [None, Country::new("DE"), Country::new("FR")][country],
                        ..base
                    }
                },
            );
        prop::collection::vec(one, 0..1500)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The algebra readers rely on: folding a stream equals merging the
        /// folds of any split of it. Views and entries exactly; estimates
        /// identical as a reader sees them (a union over the key's sketches).
        #[test]
        fn fold_of_a_stream_is_the_merge_of_folds_of_its_parts(
            visits in arb_visits(),
            cuts in prop::collection::vec(0..1500usize, 0..4),
            lg_k in prop::sample::select(vec![5u8, 8, 12]),
        ) {
            let mut whole = Buckets::new(lg_k).unwrap().with_countries(true);
            for v in &visits {
                whole.fold(v);
            }

            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(visits.len())).collect();
            bounds.push(0);
            bounds.push(visits.len());
            bounds.sort_unstable();
            let mut merged = Buckets::new(lg_k).unwrap().with_countries(true);
            for w in bounds.windows(2) {
                let mut part = Buckets::new(lg_k).unwrap().with_countries(true);
                for v in &visits[w[0]..w[1]] {
                    part.fold(v);
                }
                merged.merge(part);
            }

            // Compare what readers see: the rows written, sketches decoded
            // and unioned per key as any engine would.
            let written = |b: &Buckets| {
                let mut rows: Vec<_> = b
                    .rows()
                    .map(|r| {
                        let image = canonical_image(&r.bucket.visitors.to_sketch(lg_k), lg_k);
                        let sketch = HllSketch::deserialize(&image).unwrap();
                        let dims = r.dims.map(|d| d.map(str::to_owned));
                        ((r.table, r.site.to_owned(), r.hour, dims), r.bucket.counts[0], r.bucket.counts[1], union_estimate(lg_k, [&sketch]))
                    })
                    .collect::<Vec<_>>();
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                rows
            };
            prop_assert_eq!(written(&whole), written(&merged));
        }
    }
}
