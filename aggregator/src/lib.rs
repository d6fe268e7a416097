//! footfall's aggregator: folds anonymous visits into hourly buckets (view
//! and entry counts, a DataSketches HLL sketch of visitor keys) and writes
//! closed buckets as immutable Parquet files.
//!
//! # Layout
//! - [`buckets`]: the pure core. `Buckets::fold`, `merge`, `take_closed(now)`,
//!   `to_record_batch`; no I/O, no clock.
//! - [`writer`]: one record batch to one atomically published Parquet file.
//! - [`checkpoint`]: the unwritten aggregates saved under `_state/`, so a
//!   crash loses at most one interval, and never counts a row twice.
//! - [`recent`]: the pure core of "current visitors": per thread, a ring
//!   of one-minute sketches per site, never written.
//! - [`rollup`]: each closed day's rows summed per key into
//!   `<table>_daily/`, recording which hourly files they cover.
//! - [`service`]: the async shell. [`Aggregator`] is the collector's
//!   [`VisitSink`](footfall_schemas::VisitSink); it closes hours on a tick
//!   and flushes everything on a stop.
//! - [`error`]: [`Error`], with the path or value that went wrong.
//! - `sip`: the hasher of the maps whose keys visitors choose.

pub mod buckets;
pub mod checkpoint;
pub mod error;
pub mod recent;
pub mod rollup;
pub mod service;
pub mod sessions;
mod sip;
pub mod writer;

pub use buckets::Buckets;

/// A column of one of our own files' batches, by name, as the array type
/// it should be (`None` when missing or of another type).
pub(crate) fn column<'b, T: 'static>(
    batch: &'b arrow_array::RecordBatch,
    name: &str,
) -> Option<&'b T> {
    batch.column_by_name(name)?.as_any().downcast_ref::<T>()
}
pub use error::Error;
pub use service::{Aggregator, AggregatorConfig};
