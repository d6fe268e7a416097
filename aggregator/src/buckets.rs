//! The pure core: folding visits into hourly buckets, merging bucket sets,
//! closing hours, and turning buckets into Arrow record batches.
//!
//! Nothing here does I/O or reads the clock; time comes in as `now`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use chrono::{DateTime, NaiveDate};
use datasketches::hll::{Coupon, HllSketch, HllType, HllUnion};
use footfall_schemas::Visit;
use footfall_schemas::tables::Table;

use crate::error::Error;

const SECONDS_PER_HOUR: i64 = 3600;

/// The sketches' storage type: 4 bits a register, the smallest image, and
/// the type every DataSketches library reads.
pub const HLL_TYPE: HllType = HllType::Hll4;

/// Counts and a sketch of one (site, hour, page).
#[derive(Clone)]
pub struct PageBucket {
    /// Page views.
    pub views: i64,
    /// Views that landed from elsewhere (no referrer, or another site's).
    pub entries: i64,
    /// Distinct visitor keys: a few bare coupons, then a sketch.
    pub visitors: Visitors,
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
    reason = "PageBucket's Debug shows it without the coupons"
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

impl std::fmt::Debug for PageBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageBucket")
            .field("views", &self.views)
            .field("entries", &self.entries)
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

/// page -> bucket, for one site and hour. Keys are looked up by `&str`, so a
/// page already seen this hour costs no allocation.
type Pages = HashMap<Box<str>, PageBucket>;
/// site -> pages, for one hour.
type Sites = HashMap<Box<str>, Pages>;

/// The page a view counts under once its (site, hour) has `max_pages`
/// pages, and the site once an hour has `max_sites` sites. Neither can be a
/// real page (pages start with `/`) or site (not a domain name).
pub const OVERFLOW: &str = "(other)";

/// Bounds on the buckets one hour may open, so a flood of unique URLs or
/// invented site ids cannot grow memory without end. Views past a bound
/// still count, under [`OVERFLOW`]: totals stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Distinct pages per (site, hour).
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

/// What a fold did, for the overflow metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folded {
    /// Counted under its own site and page.
    Exact,
    /// Counted under page [`OVERFLOW`]: its (site, hour) was full.
    PageOverflow,
    /// Counted under site and page [`OVERFLOW`]: its hour was full.
    SiteOverflow,
}

/// Open aggregates, keyed by hour (Unix seconds of its start), site and page.
///
/// Hours are the outer key, in order, so closing every hour before `now` is a
/// split of the map, not a scan.
#[derive(Debug, Clone)]
pub struct Buckets {
    lg_k: u8,
    limits: Limits,
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
            lg_k,
            limits: Limits::default(),
            hours: BTreeMap::new(),
        })
    }

    /// The same, with other bounds on the buckets per hour.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// An empty set with the same `lg_k` and limits.
    fn empty_like(&self) -> Buckets {
        Buckets {
            lg_k: self.lg_k,
            limits: self.limits,
            hours: BTreeMap::new(),
        }
    }

    /// The sketches' `lg_k`.
    pub fn lg_k(&self) -> u8 {
        self.lg_k
    }

    /// True when no bucket is open.
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// How many (site, hour, page) buckets are open.
    pub fn len(&self) -> usize {
        self.hours
            .values()
            .flat_map(|sites| sites.values())
            .map(HashMap::len)
            .sum()
    }

    /// Counts one visit: a view, an entry if it landed, its visitor key in
    /// the sketch. Past the hour's [`Limits`] it counts under [`OVERFLOW`].
    pub fn fold(&mut self, visit: &Visit) -> Folded {
        let hour = visit.time.div_euclid(SECONDS_PER_HOUR) * SECONDS_PER_HOUR;
        let lg_k = self.lg_k;
        // The common case, a page already open this hour: three lookups by
        // borrowed keys, no allocation.
        if let Some(bucket) = self
            .hours
            .get_mut(&hour)
            .and_then(|sites| sites.get_mut(&*visit.site))
            .and_then(|pages| pages.get_mut(&*visit.page))
        {
            bucket.add(visit, lg_k);
            return Folded::Exact;
        }
        let mut folded = Folded::Exact;
        let sites = self.hours.entry(hour).or_default();
        // Two lookups where one would do: the borrow checker cannot yet see
        // that a `get_mut` miss leaves the map free to insert into.
        let site: &str = if sites.contains_key(&*visit.site) || sites.len() < self.limits.max_sites
        {
            &visit.site
        } else {
            folded = Folded::SiteOverflow;
            OVERFLOW
        };
        if !sites.contains_key(site) {
            sites.insert(site.into(), Pages::default());
        }
        let pages = sites.get_mut(site).expect("inserted above");
        let page: &str = if folded == Folded::SiteOverflow {
            OVERFLOW
        } else {
            &visit.page
        };
        let page = if pages.contains_key(page) || pages.len() < self.limits.max_pages {
            page
        } else {
            folded = Folded::PageOverflow;
            OVERFLOW
        };
        if !pages.contains_key(page) {
            pages.insert(page.into(), PageBucket::empty());
        }
        let bucket = pages.get_mut(page).expect("inserted above");
        bucket.add(visit, self.lg_k);
        folded
    }

    /// Adds one bucket as it is (restoring a checkpoint): merged into an
    /// existing one, never subject to the limits, which applied when it was
    /// folded.
    pub fn insert(&mut self, site: &str, hour: i64, page: &str, bucket: PageBucket) {
        let pages = self
            .hours
            .entry(hour)
            .or_default()
            .entry(site.into())
            .or_default();
        match pages.get_mut(page) {
            Some(b) => b.absorb(&bucket, self.lg_k),
            None => {
                pages.insert(page.into(), bucket);
            }
        }
    }

    /// Adds every bucket of `other` into `self`: counts are summed, sketches
    /// unioned. Folding a stream equals merging the folds of its parts.
    pub fn merge(&mut self, other: Buckets) {
        debug_assert_eq!(self.lg_k, other.lg_k);
        for (hour, sites) in other.hours {
            let mine = self.hours.entry(hour).or_default();
            for (site, pages) in sites {
                let my_pages = mine.entry(site).or_default();
                for (page, bucket) in pages {
                    match my_pages.get_mut(&page) {
                        Some(b) => b.absorb(&bucket, self.lg_k),
                        None => {
                            my_pages.insert(page, bucket);
                        }
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

    /// Iterates (site, hour, page, bucket) in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64, &str, &PageBucket)> {
        self.hours.iter().flat_map(|(&hour, sites)| {
            sites.iter().flat_map(move |(site, pages)| {
                pages
                    .iter()
                    .map(move |(page, b)| (&**site, hour, &**page, b))
            })
        })
    }

    /// The `pages` table rows of these buckets, sorted by (site, hour, page)
    /// so that row-group statistics let engines skip what a query does not
    /// need.
    pub fn to_record_batch(&self) -> Result<RecordBatch, Error> {
        let mut rows: Vec<_> = self.iter().collect();
        rows.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let sketches: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| canonical_image(&r.3.visitors.to_sketch(self.lg_k), self.lg_k))
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1 * 1_000_000))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3.views))),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.3.entries),
            )),
            Arc::new(BinaryArray::from_iter_values(sketches.iter())),
        ];
        RecordBatch::try_new(Table::Pages.schema(self.lg_k), columns).map_err(Error::Arrow)
    }
}

impl PageBucket {
    /// A bucket with these counts and sketch (as read from a checkpoint).
    pub fn from_parts(views: i64, entries: i64, visitors: HllSketch) -> Self {
        Self {
            views,
            entries,
            visitors: Visitors::Sketch(Box::new(visitors)),
        }
    }

    fn add(&mut self, visit: &Visit, lg_k: u8) {
        self.views += 1;
        self.entries += i64::from(visit.entry);
        self.visitors
            .add(Coupon::from_value(visit.visitor.sketch_input()), lg_k);
    }

    fn empty() -> Self {
        Self {
            views: 0,
            entries: 0,
            visitors: Visitors::new(),
        }
    }

    fn absorb(&mut self, other: &PageBucket, lg_k: u8) {
        self.views += other.views;
        self.entries += other.entries;
        self.visitors.merge(&other.visitors, lg_k);
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
    use footfall_schemas::VisitorKey;
    use proptest::prelude::*;

    const T0: i64 = 1_764_079_200; // 2025-11-25T14:00:00Z

    fn visit(site: &str, time: i64, page: &str, entry: bool, visitor: u64) -> Visit {
        Visit {
            site: site.into(),
            time,
            page: page.into(),
            referrer: None,
            entry,
            visitor: VisitorKey::from_hash(visitor),
        }
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
        assert_eq!(b.len(), 3);
        let mut rows: Vec<_> = b
            .iter()
            .map(|(s, h, p, b)| {
                (
                    s.to_owned(),
                    h,
                    p.to_owned(),
                    b.views,
                    b.entries,
                    b.visitors.to_sketch(12).estimate().round(),
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

    #[test]
    fn closing_takes_only_finished_hours() {
        let mut b = Buckets::new(12).unwrap();
        b.fold(&visit("a.com", T0 - 1, "/old", true, 1));
        b.fold(&visit("a.com", T0 + 5, "/new", true, 1));
        assert!(!b.has_closed(T0 - 1));
        assert!(b.has_closed(T0));
        assert!(b.take_closed(T0 - 1).is_empty());
        let closed = b.take_closed(T0 + 5);
        assert_eq!(closed.iter().map(|r| r.2).collect::<Vec<_>>(), ["/old"]);
        assert_eq!(b.iter().map(|r| r.2).collect::<Vec<_>>(), ["/new"]);
        assert!(!b.has_closed(T0 + 3599));
        assert_eq!(b.take_all().len(), 1);
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
        let batch = b.to_record_batch().unwrap();
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
        let sketches = col(5);
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
        let (_, _, _, bucket) = b.iter().next().unwrap();
        // List mode: an 8-byte preamble and 4 bytes a coupon, not 2 KiB of
        // registers.
        assert!(bucket.visitors.to_sketch(12).serialize().len() <= 8 + 3 * 4);
        assert!(
            matches!(bucket.visitors, Visitors::Few { len: 3, .. }),
            "no sketch yet"
        );
        assert!(
            std::mem::size_of::<PageBucket>() <= 40,
            "{}",
            std::mem::size_of::<PageBucket>()
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
        use Folded::*;
        assert_eq!(
            outcomes,
            [
                Exact,
                Exact,
                Exact,
                PageOverflow,
                PageOverflow,
                Exact,
                SiteOverflow,
                SiteOverflow,
                Exact
            ]
        );
        let mut keys: Vec<_> = b
            .iter()
            .map(|(s, _, p, b)| (s.to_owned(), p.to_owned(), b.views))
            .collect();
        keys.sort();
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
        assert_eq!(
            b.iter().map(|r| r.3.views).sum::<i64>(),
            9,
            "every view still counts"
        );
        // The limits are per hour.
        assert_eq!(b.fold(&visit("a.com", T0 + 3600, "/p4", true, 1)), Exact);
    }

    #[test]
    fn rejects_out_of_range_lg_k() {
        assert!(Buckets::new(3).is_err());
        assert!(Buckets::new(22).is_err());
        assert!(Buckets::new(4).is_ok());
    }

    fn arb_visits() -> impl Strategy<Value = Vec<Visit>> {
        // Few sites, hours and pages so keys collide. With up to 1,500 visits
        // over 24 keys a key sees about 60 visitors: list and set mode at
        // lg_k 12, the dense HLL array at lg_k 5 (which leaves coupon mode
        // past 3 coupons), both at lg_k 8.
        let one = (0..2usize, 0..3i64, 0..4usize, any::<bool>(), 0..3000u64).prop_map(
            |(site, hour, page, entry, visitor)| {
                visit(
                    ["a.com", "b.org"][site],
                    T0 + hour * 3600 + 17,
                    ["/", "/x", "/y", "/z"][page],
                    entry,
                    visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                )
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
            let mut whole = Buckets::new(lg_k).unwrap();
            for v in &visits {
                whole.fold(v);
            }

            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(visits.len())).collect();
            bounds.push(0);
            bounds.push(visits.len());
            bounds.sort_unstable();
            let mut merged = Buckets::new(lg_k).unwrap();
            for w in bounds.windows(2) {
                let mut part = Buckets::new(lg_k).unwrap();
                for v in &visits[w[0]..w[1]] {
                    part.fold(v);
                }
                merged.merge(part);
            }

            // Compare what readers see: the rows written, sketches decoded
            // and unioned per key as any engine would.
            let written = |b: &Buckets| {
                let mut rows: Vec<_> = b
                    .iter()
                    .map(|(s, h, p, bucket)| {
                        let image = canonical_image(&bucket.visitors.to_sketch(lg_k), lg_k);
                        let sketch = HllSketch::deserialize(&image).unwrap();
                        ((s.to_owned(), h, p.to_owned()), bucket.views, bucket.entries, union_estimate(lg_k, [&sketch]))
                    })
                    .collect::<Vec<_>>();
                rows.sort_by(|a, b| a.0.cmp(&b.0));
                rows
            };
            prop_assert_eq!(written(&whole), written(&merged));
        }
    }
}
