//! "Current visitors": the distinct visitors of each site over the last
//! five minutes, from a ring of one-minute sketches. Pure (the clock is an
//! argument), in memory only: nothing here is ever written, checkpointed
//! or logged, and a minute's sketches are dropped once it leaves the ring.

use std::collections::{HashMap, VecDeque};

use datasketches::hll::{Coupon, HllSketch, HllType, HllUnion};
use footfall_schemas::VisitorKey;

/// How far back "current" reaches, in whole minutes (Plausible's five).
pub const MINUTES: i64 = 5;

/// One thread's ring: per minute, a sketch per site.
#[derive(Debug)]
pub struct Recent {
    lg_k: u8,
    /// Oldest first; minutes are Unix minutes.
    minutes: VecDeque<(i64, HashMap<Box<str>, HllSketch>)>,
}

impl Recent {
    pub fn new(lg_k: u8) -> Self {
        Self {
            lg_k,
            minutes: VecDeque::with_capacity(MINUTES as usize + 1),
        }
    }

    /// Notes that `visitor` was on `site` at `time` (Unix seconds).
    pub fn note(&mut self, site: &str, time: i64, visitor: VisitorKey) {
        let minute = time.div_euclid(60);
        let fresh = match self.minutes.back() {
            Some(&(last, _)) => minute > last,
            None => true,
        };
        if fresh {
            self.minutes.push_back((minute, HashMap::new()));
            while self
                .minutes
                .front()
                .is_some_and(|&(m, _)| m <= minute - MINUTES)
            {
                self.minutes.pop_front();
            }
        }
        // A beacon of a minute already passed (a clock stepped back) goes
        // to the newest minute: it was current a moment ago.
        let sketches = &mut self.minutes.back_mut().expect("pushed above").1;
        let sketch = match sketches.get_mut(site) {
            Some(s) => s,
            None => sketches.entry(site.into()).or_insert_with(|| {
                HllSketch::new(self.lg_k, HllType::Hll8)
                    .expect("lg_k was checked by the aggregator")
            }),
        };
        sketch.update_with_coupon(Coupon::from_value(visitor.sketch_input()));
    }

    /// Adds `site`'s sketches of the minutes within [`MINUTES`] of `now`
    /// to `union`.
    pub fn union_into(&self, site: &str, now: i64, union: &mut HllUnion) {
        let minute = now.div_euclid(60);
        for (m, sketches) in &self.minutes {
            if *m > minute - MINUTES
                && *m <= minute
                && let Some(s) = sketches.get(site)
            {
                union.update(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_764_079_200; // a whole minute

    fn key(n: u64) -> VisitorKey {
        VisitorKey::from_hash(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn current(r: &Recent, site: &str, now: i64) -> f64 {
        let mut u = HllUnion::new(12).unwrap();
        r.union_into(site, now, &mut u);
        u.estimate().round()
    }

    #[test]
    fn the_last_five_minutes_count_each_visitor_once() {
        let mut r = Recent::new(12);
        r.note("b.org", T, key(1));
        for minute in 0..5 {
            for v in 0..10 {
                // The same ten visitors every minute, and one new each.
                r.note("a.com", T + minute * 60 + v as i64, key(v));
            }
            r.note("a.com", T + minute * 60 + 30, key(100 + minute as u64));
        }
        assert_eq!(current(&r, "a.com", T + 4 * 60 + 59), 15.0);
        assert_eq!(current(&r, "b.org", T + 60), 1.0);
        assert_eq!(current(&r, "nobody.net", T), 0.0);
        // Five minutes on, the first minute is out of reach.
        assert_eq!(current(&r, "b.org", T + 5 * 60), 0.0);
        assert_eq!(current(&r, "a.com", T + 5 * 60), 14.0);
        // And gone from memory once a beacon of a later minute comes.
        r.note("a.com", T + 9 * 60, key(7));
        assert!(r.minutes.len() <= MINUTES as usize);
        assert_eq!(current(&r, "a.com", T + 9 * 60), 1.0);
    }

    #[test]
    fn a_beacon_from_a_clock_behind_goes_to_the_newest_minute() {
        let mut r = Recent::new(12);
        r.note("a.com", T + 120, key(1));
        r.note("a.com", T + 60, key(2));
        assert_eq!(r.minutes.len(), 1);
        assert_eq!(current(&r, "a.com", T + 120), 2.0);
    }
}
