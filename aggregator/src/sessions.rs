//! The pure core of visits: every visitor key's open visit, in memory only,
//! and what a visit adds to the tables when it ends.
//!
//! A visit is the beacons of one visitor key (which already names the
//! site) with no gap over the timeout. It starts with a pageview; an
//! engagement report with no open visit starts nothing. It ends when it
//! times out, when the UTC day ends (the day's salt goes, so the key can
//! never come back: a visit across midnight counts as two), or on a stop.
//! Only then does it become counts ([`Ended`]), in the hour it started.
//!
//! Nothing here is written, logged or exported: an open visit holds a
//! visitor key, and this module has no way to show one. Nothing does I/O
//! or reads the clock; `now` is an argument.
//!
//! Memory: a slab of fixed-size [`Open`] records (80 bytes), an index from
//! key to slot (16 bytes an entry, at most 7/8 full), and the text of the
//! pages, sites and sources they name, each kept once however many visits
//! name it ([`Interner`]).

use std::hash::{BuildHasher, Hasher};

use footfall_schemas::{Engagement, Visit, VisitorKey};

use crate::sip::RandomSip;

/// How visits are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// The longest gap between two beacons of one visit, seconds.
    pub timeout: i64,
    /// Open visits at most; a new visitor past it is not tracked (its views
    /// count everywhere else).
    pub max_visits: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            timeout: 30 * 60,
            max_visits: 1_000_000,
        }
    }
}

/// A visit as it ends, borrowed for one `Buckets::fold_ended` call.
#[derive(Debug, Clone, Copy)]
pub struct Ended<'a> {
    pub site: &'a str,
    /// When its first pageview arrived, Unix seconds: its rows' hour.
    pub start: i64,
    pub entry_page: &'a str,
    /// The page of its last pageview.
    pub exit_page: &'a str,
    /// Its first pageview was a landing, so the visitor is among its
    /// source's visitors already.
    pub landed: bool,
    /// Its source: the entry's referrer host and campaign (all `None` for
    /// direct traffic).
    pub source: [Option<&'a str>; 4],
    pub pageviews: u32,
    /// Fewer than two pageviews and nothing interactive.
    pub bounce: bool,
    /// Last activity (pageview or engagement) minus start, seconds.
    pub duration_s: i64,
    pub visitor: VisitorKey,
}

/// What one engagement report adds to its page's row in the hour its visit
/// started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Engaged<'a> {
    pub site: &'a str,
    /// The visit's start, Unix seconds.
    pub start: i64,
    pub page: &'a str,
    pub engaged_ms: i64,
    /// The first report on this page in this visit: one more (visit, page)
    /// pair.
    pub new_pair: bool,
    /// How much deeper the pair's deepest scroll now is (so the sum of the
    /// increments is the sum of the maxima).
    pub scroll_added: i64,
    /// The first known scroll depth of the pair.
    pub new_scroll: bool,
}

/// Seconds of engaged time a visit may claim beyond its age, for clocks
/// that tick at different moments (the server counts whole seconds).
pub const ENGAGED_SLACK_S: i64 = 10;

/// Distinct pages one visit tracks engagement for; reports on further
/// pages still extend the visit but add no page data. Bounds what one
/// visitor can make us hold.
pub const MAX_PAGES_PER_VISIT: usize = 64;

/// What has happened in the visits since they were counted, for
/// `/metrics`: totals only, nothing of any one visit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub started: u64,
    pub ended: u64,
    /// New visitors not tracked because `max_visits` were open.
    pub untracked: u64,
    /// Engagement reports that found no open visit.
    pub orphan_engagements: u64,
}

/// The tallies of several shards, as one.
impl std::ops::Add for Tally {
    type Output = Tally;
    fn add(self, other: Tally) -> Tally {
        Tally {
            started: self.started + other.started,
            ended: self.ended + other.ended,
            untracked: self.untracked + other.untracked,
            orphan_engagements: self.orphan_engagements + other.orphan_engagements,
        }
    }
}

/// Every open visit.
pub struct Sessions {
    settings: SessionSettings,
    /// Visitor key → slot in `slab`.
    index: hashbrown::HashMap<u64, u32, KeyHash>,
    slab: Vec<Open>,
    /// Slots of `slab` free for reuse.
    vacant: Vec<u32>,
    texts: Interner,
    /// Where the next partial sweep begins.
    cursor: usize,
    tally: Tally,
}

/// `Debug` shows how many, never a key or a page.
impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("open", &self.len())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One open visit: text by interned id, times as `u32` Unix seconds (which
/// last until 2106).
struct Open {
    /// The visitor key, so a sweep of the slab can remove the index entry.
    key: u64,
    site: Id,
    entry: Id,
    exit: Id,
    source: [Id; 4],
    start: u32,
    last: u32,
    pageviews: u16,
    /// Engaged milliseconds counted so far: with one page focused at a
    /// time, they cannot pass the visit's age (see [`ENGAGED_SLACK_S`]).
    engaged_ms: u32,
    landed: bool,
    /// An interactive custom event happened in it: not a bounce, whatever
    /// its pageviews (Plausible's rule).
    interacted: bool,
    /// False for a vacant slot.
    live: bool,
    /// Pages with an engagement: a 32-bit hash of the page and its deepest
    /// scroll (`NO_SCROLL` unknown), three inline, more on the heap.
    seen: Seen,
}

#[derive(Default)]
struct Seen {
    hashes: [u32; 3],
    depths: [u8; 3],
    len: u8,
    #[expect(
        clippy::box_collection,
        reason = "8 bytes in every open visit where a Vec is 24; rare long visits pay the extra allocation"
    )]
    more: Option<Box<Vec<(u32, u8)>>>,
}

const NO_SCROLL: u8 = u8::MAX;

impl Seen {
    /// The deepest scroll of the page `hash`, and whether the page is new
    /// (its depth then `NO_SCROLL`); `None` for a new page past
    /// [`MAX_PAGES_PER_VISIT`].
    fn depth_of(&mut self, hash: u32) -> Option<(&mut u8, bool)> {
        let n = usize::from(self.len);
        let inline = self.hashes[..n].iter().position(|&h| h == hash);
        let spilled = self
            .more
            .as_ref()
            .and_then(|m| m.iter().position(|(h, _)| *h == hash));
        let count = n + self.more.as_ref().map_or(0, |m| m.len());
        match (inline, spilled) {
            (Some(i), _) => Some((&mut self.depths[i], false)),
            (None, Some(i)) => self.more.as_mut().map(|m| (&mut m[i].1, false)),
            (None, None) if count >= MAX_PAGES_PER_VISIT => None,
            (None, None) if n < self.hashes.len() => {
                self.hashes[n] = hash;
                self.depths[n] = NO_SCROLL;
                self.len += 1;
                Some((&mut self.depths[n], true))
            }
            (None, None) => {
                let more = self.more.get_or_insert_default();
                more.push((hash, NO_SCROLL));
                more.last_mut().map(|(_, d)| (d, true))
            }
        }
    }
}

impl Sessions {
    pub fn new(settings: SessionSettings) -> Self {
        Self {
            settings,
            index: hashbrown::HashMap::default(),
            slab: Vec::new(),
            vacant: Vec::new(),
            texts: Interner::default(),
            cursor: 0,
            tally: Tally::default(),
        }
    }

    /// Open visits.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn tally(&self) -> Tally {
        self.tally
    }

    fn expired(&self, open: &Open, now: i64) -> bool {
        let last = i64::from(open.last);
        now - last > self.settings.timeout || now.div_euclid(86_400) != last.div_euclid(86_400)
    }

    /// A pageview: extends the visitor's open visit, or ends an expired one
    /// (handing it to `ended`) and starts a new one.
    pub fn pageview(&mut self, visit: &Visit<'_>, ended: impl FnOnce(&Ended<'_>)) {
        let key = visit.visitor.sketch_input();
        let now = visit.time;
        if let Some(&slot) = self.index.get(&key) {
            let open = &self.slab[slot as usize];
            if !self.expired(open, now) {
                let exit = self.texts.intern(visit.page);
                let open = &mut self.slab[slot as usize];
                let old = std::mem::replace(&mut open.exit, exit);
                open.pageviews = open.pageviews.saturating_add(1);
                open.last = open.last.max(secs(now));
                self.texts.release(old);
                return;
            }
            self.index.remove(&key);
            self.end(slot, ended);
        }
        if self.index.len() >= self.settings.max_visits {
            self.tally.untracked += 1;
            return;
        }
        let c = &visit.campaign;
        let source = [visit.referrer, c.source, c.medium, c.campaign]
            .map(|part| part.map_or(NONE, |t| self.texts.intern(t)));
        let open = Open {
            key,
            site: self.texts.intern(visit.site),
            entry: self.texts.intern(visit.page),
            exit: self.texts.intern(visit.page),
            source,
            start: secs(now),
            last: secs(now),
            pageviews: 1,
            engaged_ms: 0,
            landed: visit.entry,
            interacted: false,
            live: true,
            seen: Seen::default(),
        };
        let slot = match self.vacant.pop() {
            Some(slot) => {
                self.slab[slot as usize] = open;
                slot
            }
            None => {
                self.slab.push(open);
                (self.slab.len() - 1) as u32
            }
        };
        self.index.insert(key, slot);
        self.tally.started += 1;
    }

    /// An engagement report: extends the open visit and says what it adds
    /// to its page (`None`, and nothing changes, without an open visit).
    pub fn engage<'s>(&'s mut self, e: &Engagement<'s>) -> Option<Engaged<'s>> {
        let key = e.visitor.sketch_input();
        let Some(&slot) = self.index.get(&key) else {
            self.tally.orphan_engagements += 1;
            return None;
        };
        if self.expired(&self.slab[slot as usize], e.time) {
            // Its end is the sweep's; a report after the gap starts nothing.
            self.tally.orphan_engagements += 1;
            return None;
        }
        let hash = page_hash(e.page);
        let open = &mut self.slab[slot as usize];
        open.last = open.last.max(secs(e.time));
        let depth = e.scroll_depth.map_or(NO_SCROLL, |d| d.min(100));
        let (deepest, new_pair) = open.seen.depth_of(hash)?;
        let (scroll_added, new_scroll) = match (*deepest, depth) {
            (_, NO_SCROLL) => (0, false),
            (NO_SCROLL, d) => (i64::from(d), true),
            (old, d) => (i64::from(d.saturating_sub(old)), false),
        };
        if new_scroll || scroll_added > 0 {
            *deepest = depth;
        }
        let (site, start) = (open.site, i64::from(open.start));
        // Engaged time counts while a page is visible and focused, one page
        // at a time, so a visit's cannot pass its age: a client claiming
        // more (an old tracker's nonsense, or someone inflating time on
        // page) is counted up to that.
        let age_ms = (e.time - start + ENGAGED_SLACK_S).clamp(0, i64::from(u32::MAX / 1000)) * 1000;
        let room = (age_ms - i64::from(open.engaged_ms)).max(0);
        let engaged_ms = e.engaged_ms.map_or(0, i64::from).min(room);
        open.engaged_ms = open.engaged_ms.saturating_add(engaged_ms as u32);
        Some(Engaged {
            site: self.texts.get(site),
            start,
            page: e.page,
            engaged_ms,
            new_pair,
            scroll_added,
            new_scroll,
        })
    }

    /// A custom event: extends the visitor's open visit, which an
    /// interactive event makes a non-bounce. False, and nothing changes,
    /// without an open visit (an event starts none: a visit begins with a
    /// pageview).
    pub fn event(&mut self, visitor: VisitorKey, time: i64, interactive: bool) -> bool {
        let Some(&slot) = self.index.get(&visitor.sketch_input()) else {
            return false;
        };
        if self.expired(&self.slab[slot as usize], time) {
            return false;
        }
        let open = &mut self.slab[slot as usize];
        open.last = open.last.max(secs(time));
        open.interacted |= interactive;
        true
    }

    /// Ends the expired visits among the next `budget` slots of the slab
    /// (all of them once every `slab / budget` calls), handing each to
    /// `ended`. A partial sweep keeps each call short, since it runs under
    /// the lock every beacon takes; a visit that lingers past its timeout
    /// until the sweep reaches it counts the same, as its duration ends at
    /// its last beacon.
    pub fn sweep(&mut self, now: i64, budget: usize, mut ended: impl FnMut(&Ended<'_>)) {
        let n = self.slab.len();
        if n == 0 {
            return;
        }
        for _ in 0..budget.min(n) {
            let slot = self.cursor.min(n - 1);
            let open = &self.slab[slot];
            if open.live && self.expired(open, now) {
                self.index.remove(&open.key);
                self.end(slot as u32, &mut ended);
            }
            self.cursor = slot + 1;
            if self.cursor >= n {
                // A full pass: the texts no visit names any more go too.
                self.cursor = 0;
                self.texts.collect();
            }
        }
    }

    /// Ends every open visit (a stop).
    pub fn end_all(&mut self, mut ended: impl FnMut(&Ended<'_>)) {
        self.index.clear();
        for slot in 0..self.slab.len() {
            if self.slab[slot].live {
                self.end(slot as u32, &mut ended);
            }
        }
        self.slab = Vec::new();
        self.vacant = Vec::new();
        self.cursor = 0;
        self.texts.collect();
    }

    /// Hands every open visit to `f` as if it ended now, and keeps it open:
    /// for a live answer, whose counts are folded into a copy of the
    /// buckets that is answered from and dropped (never written, never
    /// checkpointed). A visit is either open or ended, so a live answer
    /// counts each once.
    pub fn as_if_ended(&self, mut f: impl FnMut(&Ended<'_>)) {
        for open in self.slab.iter().filter(|o| o.live) {
            f(&self.ended(open));
        }
    }

    /// What `open` adds to the tables when it ends.
    fn ended(&self, open: &Open) -> Ended<'_> {
        let t = &self.texts;
        let text = |id: Id| (id != NONE).then(|| t.get(id));
        let pageviews = u32::from(open.pageviews);
        Ended {
            site: t.get(open.site),
            start: i64::from(open.start),
            entry_page: t.get(open.entry),
            exit_page: t.get(open.exit),
            landed: open.landed,
            source: open.source.map(text),
            pageviews,
            bounce: pageviews < 2 && !open.interacted,
            duration_s: i64::from(open.last - open.start),
            visitor: VisitorKey::from_hash(open.key),
        }
    }

    /// Hands the visit in `slot` to `ended` and frees the slot (whose index
    /// entry is already gone).
    fn end(&mut self, slot: u32, ended: impl FnOnce(&Ended<'_>)) {
        let open = std::mem::replace(&mut self.slab[slot as usize], Open::vacant());
        ended(&self.ended(&open));
        for id in [open.site, open.entry, open.exit]
            .into_iter()
            .chain(open.source)
        {
            self.texts.release(id);
        }
        self.vacant.push(slot);
        self.tally.ended += 1;
    }
}

impl Open {
    /// What a free slot holds.
    fn vacant() -> Open {
        Open {
            key: 0,
            site: NONE,
            entry: NONE,
            exit: NONE,
            source: [NONE; 4],
            start: 0,
            last: 0,
            pageviews: 0,
            engaged_ms: 0,
            landed: false,
            interacted: false,
            live: false,
            seen: Seen::default(),
        }
    }
}

/// Unix seconds as stored: clamped into `u32` (the year 2106).
fn secs(t: i64) -> u32 {
    u32::try_from(t.max(0)).unwrap_or(u32::MAX)
}

/// The page's hash in a visit's list of engaged pages: FNV-1a, 32 bits.
/// A collision only merges two of one visitor's own pages.
fn page_hash(page: &str) -> u32 {
    page.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The index's hasher: a visitor key is already a keyed SipHash, uniform
/// and unknown to any client, so it is its own hash.
#[derive(Clone, Copy, Default)]
struct KeyHash;

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Unused texts kept at most before they are dropped.
const MAX_UNUSED: usize = 4096;

/// An interned text's id.
type Id = u32;

/// No text (a source part that is absent).
const NONE: Id = Id::MAX;

/// Texts kept once each, with a count of the visits that name them. A text
/// no visit names any more is dropped, and its id reused, at the next
/// [`Interner::collect`]: not at once, so a page that visits keep leaving
/// and entering (a site's second page) is not freed and copied again on
/// every beacon.
#[derive(Default)]
struct Interner {
    /// Ids, hashed by their text.
    table: hashbrown::HashTable<Id>,
    slots: Vec<Slot>,
    free: Vec<Id>,
    /// Ids whose count fell to zero since the last collection.
    unused: Vec<Id>,
    hasher: RandomSip,
}

struct Slot {
    text: Box<str>,
    refs: u32,
    /// In `unused` already.
    listed: bool,
}

impl Interner {
    fn hash(&self, text: &str) -> u64 {
        self.hasher.hash_one(text)
    }

    /// The id of `text`, counted once more.
    fn intern(&mut self, text: &str) -> Id {
        let hash = self.hash(text);
        let slots = &mut self.slots;
        if let Some(&id) = self
            .table
            .find(hash, |&id| &*slots[id as usize].text == text)
        {
            slots[id as usize].refs += 1;
            return id;
        }
        let slot = Slot {
            text: text.into(),
            refs: 1,
            listed: false,
        };
        let id = match self.free.pop() {
            Some(id) => {
                slots[id as usize] = slot;
                id
            }
            None => {
                slots.push(slot);
                (slots.len() - 1) as Id
            }
        };
        let hasher = self.hasher;
        self.table
            .insert_unique(hash, id, |&id| hasher.hash_one(&*slots[id as usize].text));
        id
    }

    fn get(&self, id: Id) -> &str {
        &self.slots[id as usize].text
    }

    /// Counts `id` once less; at zero its text waits for [`collect`].
    ///
    /// [`collect`]: Interner::collect
    fn release(&mut self, id: Id) {
        if id == NONE {
            return;
        }
        let slot = &mut self.slots[id as usize];
        slot.refs -= 1;
        if slot.refs == 0 && !slot.listed {
            slot.listed = true;
            self.unused.push(id);
            // Bounded between full sweeps too: a visitor changing page on
            // every beacon must not pile up texts.
            if self.unused.len() >= MAX_UNUSED {
                self.collect();
            }
        }
    }

    /// Drops every text no visit names any more.
    fn collect(&mut self) {
        for id in std::mem::take(&mut self.unused) {
            let slot = &mut self.slots[id as usize];
            slot.listed = false;
            if slot.refs > 0 {
                continue;
            }
            let hash = self.hasher.hash_one(&*slot.text);
            if let Ok(entry) = self.table.find_entry(hash, |&other| other == id) {
                entry.remove();
            }
            self.slots[id as usize].text = Box::from("");
            self.free.push(id);
        }
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use footfall_schemas::Campaign;

    const T0: i64 = 1_796_292_000; // 2026-12-03T10:00:00Z
    const MIN: i64 = 60;

    /// (entry, exit, pageviews, bounce, duration, landed, referrer)
    type Summary = (String, String, u32, bool, i64, bool, Option<String>);

    fn summary(e: &Ended<'_>) -> Summary {
        (
            e.entry_page.to_owned(),
            e.exit_page.to_owned(),
            e.pageviews,
            e.bounce,
            e.duration_s,
            e.landed,
            e.source[0].map(Into::into),
        )
    }

    #[test]
    fn open_visits_show_as_if_ended_and_stay_open() {
        let mut s = Sessions::new(SessionSettings::default());
        s.pageview(&view(T0, "/a", 1), |_| panic!("nothing ends"));
        s.pageview(&view(T0 + 10, "/b", 1), |_| panic!("nothing ends"));
        s.pageview(&view(T0 + 20, "/c", 2), |_| panic!("nothing ends"));
        let mut seen = Vec::new();
        s.as_if_ended(|e| seen.push(summary(e)));
        seen.sort();
        assert_eq!(
            seen,
            [
                ("/a".into(), "/b".into(), 2, false, 10, true, None),
                ("/c".into(), "/c".into(), 1, true, 0, true, None),
            ]
        );
        assert_eq!(s.len(), 2, "still open");
        // When they do end, they end once, as they were shown.
        let mut ended = Vec::new();
        s.end_all(|e| ended.push(summary(e)));
        ended.sort();
        assert_eq!(ended, seen);
    }

    fn view(time: i64, page: &str, visitor: u64) -> Visit<'_> {
        Visit::landing("a.com", time, page, VisitorKey::from_hash(visitor))
    }

    fn engagement(time: i64, page: &str, visitor: u64, ms: u32, sd: Option<u8>) -> Engagement<'_> {
        Engagement {
            site: "a.com",
            time,
            page,
            engaged_ms: Some(ms),
            scroll_depth: sd,
            visitor: VisitorKey::from_hash(visitor),
        }
    }

    /// Runs pageviews in order and then ends everything at `end`, by
    /// sweeps, returning each visit's summary and start in the order they
    /// ended.
    fn visits(s: &mut Sessions, views: &[(i64, &str, u64)]) -> Vec<(i64, Summary)> {
        let mut out = Vec::new();
        for &(t, page, who) in views {
            s.pageview(&view(t, page, who), |e| out.push((e.start, summary(e))));
        }
        out
    }

    fn ended_at(s: &mut Sessions, now: i64) -> Vec<(i64, Summary)> {
        let mut out = Vec::new();
        s.sweep(now, usize::MAX, |e| out.push((e.start, summary(e))));
        out
    }

    fn s(entry: &str, exit: &str, views: u32, duration: i64) -> Summary {
        (
            entry.into(),
            exit.into(),
            views,
            views < 2,
            duration,
            true,
            None,
        )
    }

    #[test]
    fn a_gap_of_the_timeout_continues_a_visit_and_one_second_more_starts_another() {
        let mut sessions = Sessions::new(SessionSettings::default());
        let ended = visits(
            &mut sessions,
            &[
                (T0, "/a", 1),
                (T0 + 29 * MIN + 59, "/b", 1),
                // 30:00 after /b: still the same visit ("no gap over").
                (T0 + 59 * MIN + 59, "/c", 1),
                // 30:01 after /c: a new one; the first ends here.
                (T0 + 90 * MIN, "/d", 1),
            ],
        );
        assert_eq!(ended, [(T0, s("/a", "/c", 3, 59 * MIN + 59))]);
        assert_eq!(sessions.len(), 1);
        // Swept 30:00 after /d: still open; at 30:01 it ends.
        assert!(ended_at(&mut sessions, T0 + 120 * MIN).is_empty());
        assert_eq!(
            ended_at(&mut sessions, T0 + 120 * MIN + 1),
            [(T0 + 90 * MIN, s("/d", "/d", 1, 0))]
        );
        assert!(sessions.is_empty());
        assert_eq!(sessions.texts.live(), 0, "every text released");
    }

    #[test]
    fn a_visit_across_midnight_counts_as_two() {
        let midnight = 1_796_342_400; // 2026-12-04T00:00:00Z
        let mut sessions = Sessions::new(SessionSettings::default());
        // The same key on both sides (a real one changes with the salt):
        // the day ends the visit anyway.
        let ended = visits(
            &mut sessions,
            &[(midnight - 60, "/a", 7), (midnight + 60, "/b", 7)],
        );
        assert_eq!(ended, [(midnight - 60, s("/a", "/a", 1, 0))]);
        // And the sweep after midnight ends the day's visits at once.
        visits(&mut sessions, &[(midnight - 10, "/x", 8)]);
        let ended = ended_at(&mut sessions, midnight + 1);
        assert_eq!(ended, [(midnight - 10, s("/x", "/x", 1, 0))]);
    }

    #[test]
    fn bounces_are_single_page_visits_and_engagement_extends_the_duration() {
        let mut sessions = Sessions::new(SessionSettings::default());
        visits(
            &mut sessions,
            &[(T0, "/one", 1), (T0, "/two", 2), (T0 + 40, "/two-b", 2)],
        );
        // Visitor 1 reads /one for 90 s and leaves: still a bounce, but not
        // a zero-second one.
        assert!(
            sessions
                .engage(&engagement(T0 + 90, "/one", 1, 80_000, Some(60)))
                .is_some()
        );
        let mut ended = ended_at(&mut sessions, T0 + 90 + 31 * MIN);
        ended.sort();
        assert_eq!(
            ended,
            [
                (T0, s("/one", "/one", 1, 90)),
                (T0, s("/two", "/two-b", 2, 40)),
            ]
        );
    }

    #[test]
    fn an_interactive_event_makes_a_one_page_visit_no_bounce() {
        let mut sessions = Sessions::new(SessionSettings::default());
        let k = |who: u64| VisitorKey::from_hash(who);
        // No open visit: an event starts none.
        assert!(!sessions.event(k(1), T0, true));
        assert!(sessions.is_empty());
        visits(
            &mut sessions,
            &[(T0, "/a", 1), (T0, "/b", 2), (T0, "/c", 3)],
        );
        // Visitor 1 signs up at +50 s; visitor 2's event is marked
        // non-interactive (`i: false`); visitor 3 does nothing.
        assert!(sessions.event(k(1), T0 + 50, true));
        assert!(sessions.event(k(2), T0 + 70, false));
        // After the timeout an event belongs to no visit.
        assert!(!sessions.event(k(3), T0 + 31 * MIN, true));
        let mut ended = ended_at(&mut sessions, T0 + 40 * MIN);
        ended.sort();
        let mut no_bounce = s("/a", "/a", 1, 50);
        no_bounce.3 = false;
        assert_eq!(
            ended,
            [
                (T0, no_bounce),
                (T0, s("/b", "/b", 1, 70)),
                (T0, s("/c", "/c", 1, 0)),
            ]
        );
    }

    #[test]
    fn an_engagement_without_an_open_visit_starts_nothing() {
        let mut sessions = Sessions::new(SessionSettings::default());
        assert_eq!(
            sessions.engage(&engagement(T0, "/a", 1, 500, Some(10))),
            None
        );
        assert!(sessions.is_empty());
        visits(&mut sessions, &[(T0, "/a", 1)]);
        // After the timeout, the report belongs to no visit either.
        assert_eq!(
            sessions.engage(&engagement(T0 + 31 * MIN, "/a", 1, 500, None)),
            None
        );
        assert_eq!(sessions.tally().orphan_engagements, 2);
    }

    #[test]
    fn a_page_counts_one_pair_per_visit_and_its_deepest_scroll() {
        let mut sessions = Sessions::new(SessionSettings::default());
        visits(&mut sessions, &[(T0 + 5, "/a", 1)]);
        let mut got = Vec::new();
        for (t, page, ms, sd) in [
            (T0 + 10, "/a", 4_000, Some(30)),
            (T0 + 20, "/b", 1_000, None),
            (T0 + 30, "/a", 2_000, Some(20)), // shallower: adds nothing
            (T0 + 40, "/a", 1_000, Some(250)), // clamped to 100
            (T0 + 50, "/b", 500, Some(10)),
        ] {
            let e = sessions.engage(&engagement(t, page, 1, ms, sd)).unwrap();
            assert_eq!((e.site, e.start), ("a.com", T0 + 5));
            got.push((page, e.engaged_ms, e.new_pair, e.scroll_added, e.new_scroll));
        }
        assert_eq!(
            got,
            [
                ("/a", 4_000, true, 30, true),
                ("/b", 1_000, true, 0, false),
                ("/a", 2_000, false, 0, false),
                ("/a", 1_000, false, 70, false),
                ("/b", 500, false, 10, true),
            ]
        );
        // Summed: /a 7 s over one pair, deepest 100; /b 1.5 s, deepest 10.
    }

    #[test]
    fn a_visit_claims_no_more_engaged_time_than_its_age() {
        let mut sessions = Sessions::new(SessionSettings::default());
        visits(&mut sessions, &[(T0, "/", 1)]);
        // 29 days claimed 20 s in: counted up to 20 s and the slack.
        let e = sessions
            .engage(&engagement(T0 + 20, "/", 1, 29 * 86_400_000, None))
            .unwrap();
        assert_eq!(e.engaged_ms, (20 + ENGAGED_SLACK_S) * 1000);
        // Nothing left until the visit is older.
        let e = sessions
            .engage(&engagement(T0 + 21, "/b", 1, 5_000, None))
            .unwrap();
        assert_eq!(e.engaged_ms, 1_000);
        let e = sessions
            .engage(&engagement(T0 + 60, "/b", 1, 5_000, None))
            .unwrap();
        assert_eq!(e.engaged_ms, 5_000, "an honest report is counted whole");
    }

    #[test]
    fn a_visit_tracks_a_bounded_number_of_pages() {
        let mut sessions = Sessions::new(SessionSettings::default());
        visits(&mut sessions, &[(T0, "/", 1)]);
        let pages: Vec<String> = (0..MAX_PAGES_PER_VISIT + 5)
            .map(|i| format!("/{i}"))
            .collect();
        let counted = pages
            .iter()
            .filter(|p| {
                sessions
                    .engage(&engagement(T0 + 1, p, 1, 10, Some(1)))
                    .is_some()
            })
            .count();
        assert_eq!(counted, MAX_PAGES_PER_VISIT);
        // A page already tracked still counts.
        assert!(
            sessions
                .engage(&engagement(T0 + 2, "/0", 1, 10, None))
                .is_some()
        );
    }

    #[test]
    fn past_max_visits_new_visitors_are_not_tracked_and_are_counted_as_such() {
        let mut sessions = Sessions::new(SessionSettings {
            max_visits: 2,
            ..SessionSettings::default()
        });
        visits(
            &mut sessions,
            &[(T0, "/", 1), (T0, "/", 2), (T0, "/", 3), (T0 + 1, "/x", 1)],
        );
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.tally().untracked, 1);
        let mut ended = Vec::new();
        sessions.end_all(|e| ended.push(summary(e)));
        ended.sort();
        assert_eq!(ended, [s("/", "/", 1, 0), s("/", "/x", 2, 1)]);
        assert_eq!(sessions.tally().started, 2);
    }

    #[test]
    fn a_visit_keeps_its_entry_source_and_whether_it_landed() {
        let mut sessions = Sessions::new(SessionSettings::default());
        let first = Visit {
            referrer: Some("news.example"),
            campaign: Campaign {
                source: Some("mail"),
                medium: None,
                campaign: Some("dec"),
            },
            ..view(T0, "/in", 1)
        };
        sessions.pageview(&first, |_| unreachable!());
        // Internal navigation: no source of its own.
        let next = Visit {
            entry: false,
            ..view(T0 + 3, "/next", 1)
        };
        sessions.pageview(&next, |_| unreachable!());
        // A visit that begins with internal navigation (a tab left open
        // past the timeout) has no source and did not land.
        let again = Visit {
            entry: false,
            ..view(T0 + 3, "/back", 2)
        };
        sessions.pageview(&again, |_| unreachable!());
        let mut ended = Vec::new();
        sessions.end_all(|e| {
            ended.push((
                e.entry_page.to_owned(),
                e.landed,
                e.source.map(|p| p.map(String::from)),
            ))
        });
        ended.sort();
        assert_eq!(
            ended,
            [
                ("/back".into(), false, [None, None, None, None]),
                (
                    "/in".into(),
                    true,
                    [
                        Some("news.example".into()),
                        Some("mail".into()),
                        None,
                        Some("dec".into())
                    ]
                ),
            ]
        );
    }

    #[test]
    fn slots_and_texts_are_reused() {
        let mut sessions = Sessions::new(SessionSettings::default());
        for round in 0..5 {
            let t = T0 + round * 40 * MIN;
            for who in 0..100 {
                sessions.pageview(&view(t, &format!("/p{who}"), who), |_| {});
            }
        }
        assert!(sessions.slab.len() <= 200, "{} slots", sessions.slab.len());
        assert_eq!(sessions.len(), 100);
        assert_eq!(sessions.texts.live(), 101, "100 pages and the site");
    }

    #[test]
    fn a_partial_sweep_reaches_every_slot_in_turn() {
        let mut sessions = Sessions::new(SessionSettings::default());
        for who in 0..10 {
            sessions.pageview(&view(T0, "/", who), |_| {});
        }
        let mut n = 0;
        for _ in 0..4 {
            sessions.sweep(T0 + 31 * MIN, 3, |_| n += 1);
        }
        assert_eq!(n, 10);
        assert!(sessions.is_empty());
    }

    #[test]
    fn debug_shows_no_key_or_page() {
        let mut sessions = Sessions::new(SessionSettings::default());
        sessions.pageview(&view(T0, "/secret-page", 0xDEAD_BEEF), |_| {});
        let shown = format!("{sessions:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("3735928559"),
            "{shown}"
        );
    }
}
