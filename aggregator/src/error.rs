//! The aggregator's errors, each with the context an operator needs.

use std::path::PathBuf;

/// Everything that can go wrong between buckets and files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `lg_k` outside what DataSketches supports.
    #[error("lg_k {lg_k} is not usable: {reason}")]
    LgK { lg_k: u8, reason: String },
    /// The data dir was started with another `lg_k`; sketches of different
    /// `lg_k` cannot be unioned by most engines.
    #[error(
        "{} says this data dir uses lg_k {existing}, but lg_k {requested} was asked for; \
         sketches of different lg_k do not union in Spark or Druid. Use --lg-k {existing} \
         or a new data dir",
        path.display()
    )]
    LgKMismatch {
        path: PathBuf,
        existing: u8,
        requested: u8,
    },
    /// Building a record batch failed (a bug: the schema is ours).
    #[error("building a record batch: {0}")]
    Arrow(#[source] arrow_schema::ArrowError),
    /// Encoding Parquet failed.
    #[error("encoding {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Another process holds the state dir.
    #[error(
        "another footfall process is using this state dir ({} is locked); \
         two would count the same unwritten views twice. Give each its own --state-dir \
         (or --data-dir)",
        path.display()
    )]
    Locked { path: PathBuf },
    /// The checkpoint cannot be used.
    #[error("checkpoint {}: {what}; move it away to start without it (its views are lost)", path.display())]
    Checkpoint { path: PathBuf, what: String },
    /// An hourly file a rollup should read is not one it can merge.
    #[error("cannot roll up {}: {what}", path.display())]
    Rollup { path: PathBuf, what: String },
    /// The data location could not be read or written.
    #[error(transparent)]
    Store(#[from] footfall_storage::Error),
    /// A file-system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}
