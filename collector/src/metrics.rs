//! The collector's counters, rendered in the Prometheus text format.
//!
//! Plain atomics: they sit on the request path, and a metrics crate would
//! bring a registry and label maps we do not need for a dozen fixed series.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::{BeaconError, DropReason};
use crate::events::PropDrop;

/// Counters by outcome. Labels are fixed enums, never request data.
#[derive(Debug, Default)]
pub struct Metrics {
    counted: AtomicU64,
    visits: AtomicU64,
    engagements: AtomicU64,
    events: AtomicU64,
    props_dropped: [AtomicU64; PropDrop::ALL.len()],
    dropped: [AtomicU64; DropReason::ALL.len()],
    rejected: [AtomicU64; BeaconError::ALL.len()],
}

impl Metrics {
    pub(crate) fn counted(&self, visits: usize) {
        self.counted.fetch_add(1, Relaxed);
        self.visits.fetch_add(visits as u64, Relaxed);
    }

    pub(crate) fn engaged(&self, reports: u64) {
        self.engagements.fetch_add(reports, Relaxed);
    }

    /// Custom events counted (one per site), and the properties of theirs
    /// not kept, by [`PropDrop::ALL`]'s order.
    pub(crate) fn events(&self, events: u64, props_dropped: &[u64; PropDrop::ALL.len()]) {
        self.events.fetch_add(events, Relaxed);
        for (counter, n) in self.props_dropped.iter().zip(props_dropped) {
            if *n > 0 {
                counter.fetch_add(*n, Relaxed);
            }
        }
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.dropped[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn rejected(&self, error: BeaconError) {
        let i = BeaconError::ALL
            .iter()
            .position(|e| *e == error)
            .unwrap_or(0);
        self.rejected[i].fetch_add(1, Relaxed);
    }

    /// Appends the counters in the Prometheus text exposition format.
    pub fn render(&self, out: &mut String) {
        let load = |n: &AtomicU64| n.load(Relaxed);
        counter(
            out,
            "footfall_beacons_counted_total",
            "Beacons answered 202 that counted as at least one view.",
            load(&self.counted),
        );
        counter(
            out,
            "footfall_views_total",
            "Views recorded (a beacon for several sites is one view per site).",
            load(&self.visits),
        );
        counter(
            out,
            "footfall_engagements_total",
            "Engagement reports counted for an open visit (one per site).",
            load(&self.engagements),
        );
        counter(
            out,
            "footfall_events_total",
            "Custom events counted (one per site).",
            load(&self.events),
        );
        by_reason(
            out,
            "footfall_event_props_dropped_total",
            "Properties of counted custom events not stored, by reason (not-allowed: key not on --event-prop).",
            PropDrop::ALL
                .iter()
                .map(|r| r.as_str())
                .zip(&self.props_dropped),
        );
        by_reason(
            out,
            "footfall_beacons_dropped_total",
            "Well-formed beacons answered 202 but not counted, by reason.",
            DropReason::ALL
                .iter()
                .map(|r| r.as_str())
                .zip(&self.dropped),
        );
        by_reason(
            out,
            "footfall_beacons_rejected_total",
            "Requests to /api/event refused with a 4xx, by reason.",
            BeaconError::ALL
                .iter()
                .map(|e| e.label())
                .zip(&self.rejected),
        );
    }
}

/// One counter: its help, its type and its value.
fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// A counter family labelled by reason, one line per (label, counter).
fn by_reason<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    reasons: impl Iterator<Item = (&'static str, &'a AtomicU64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (reason, n) in reasons {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", n.load(Relaxed));
    }
}
