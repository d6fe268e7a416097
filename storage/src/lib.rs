//! footfall's one storage interface.
//!
//! Every data file the writer, the rollup and the readers touch goes
//! through a [`Store`]: a local folder (the default) or an object store
//! named by a URL (`s3://bucket/prefix`, `gs://…`, `az://…`, `file://…`),
//! all through the `object_store` crate, so one code path is tested
//! everywhere. The store is used in only four ways, which every backend
//! does alike:
//!
//! - [`Store::create`]: a create-only put (`If-None-Match: *` on S3, a hard
//!   link on a local disk). Nothing is ever overwritten or renamed, so a
//!   file once visible never changes, and a retry of a put whose answer was
//!   lost finds its own object ([`Created::Existed`]) instead of writing
//!   the rows twice.
//! - [`Store::get`], [`Store::list`], [`Store::delete`].
//!
//! Keys are `/`-separated paths under the store's prefix
//! (`pages/date=2026-12-08/part-….parquet`). Calls are blocking, for the
//! aggregator's blocking threads and the command-line readers; each runs
//! on a small runtime of the crate's own, so the HTTP clients' connections
//! live on one runtime whoever calls. The `*_async` forms are for async
//! callers (the salt fetcher).

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use url::Url;

/// What can go wrong, with the location it happened at (never a
/// credential: URLs are shown without user info or query).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data dir or URL cannot be used at all.
    #[error("{spec}: {why}")]
    Spec { spec: String, why: String },
    /// A local data dir that does not exist.
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    /// An operation on the store failed.
    #[error("{what} {at}: {source}")]
    Store {
        what: &'static str,
        at: String,
        #[source]
        source: Box<object_store::Error>,
    },
}

/// What a create-only put found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object is new: these bytes.
    New,
    /// An object of that key was already there, and was left as it was.
    Existed,
}

/// The names directly under a folder of the store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Objects (files), by name, sorted.
    pub files: Vec<String>,
    /// Sub-folders (common prefixes), by name, sorted.
    pub dirs: Vec<String>,
}

/// A place files are kept: a local folder or an object-store prefix.
/// Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// How it is shown: the local path, or the URL without credentials.
    shown: String,
    /// Scheme and bucket (or `file`), for [`Store::contains`].
    root: String,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    local: Option<PathBuf>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.inner.shown)
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.shown)
    }
}

/// Whether `spec` names an object store rather than a local path.
pub fn is_url(spec: &str) -> bool {
    spec.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

impl Store {
    /// Opens a local folder (which must exist) or an object-store URL.
    ///
    /// Object stores are configured as their ecosystems expect, from the
    /// environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP` for S3 and
    /// S3-compatible servers; `GOOGLE_*` for GCS; `AZURE_*` for Azure.
    pub fn open(spec: &str) -> Result<Store, Error> {
        if !is_url(spec) {
            return Store::local(FsPath::new(spec));
        }
        let bad = |why: String| Error::Spec {
            spec: shown_url(spec),
            why,
        };
        let url = Url::parse(spec).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL; set them in the environment".into(),
            ));
        }
        let bucket = url.host_str().unwrap_or_default().to_owned();
        let scheme = url.scheme().to_ascii_lowercase();
        if scheme == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| bad("not a local path".into()))?;
            return Store::local(&path);
        }
        if bucket.is_empty() {
            return Err(bad("no bucket named".into()));
        }
        let store: Arc<dyn ObjectStore> = match scheme.as_str() {
            "s3" | "s3a" => Arc::new(
                AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .with_config(timeout_key!(Aws, ConnectTimeout), "5s")
                    .with_config(timeout_key!(Aws, Timeout), "10s")
                    .with_retry(retry_config())
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "gs" => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&bucket)
                    .with_config(timeout_key!(Gcp, ConnectTimeout), "5s")
                    .with_config(timeout_key!(Gcp, Timeout), "10s")
                    .with_retry(retry_config())
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "az" | "azure" | "abfs" | "abfss" => Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_url(url.as_str())
                    .with_config(timeout_key!(Azure, ConnectTimeout), "5s")
                    .with_config(timeout_key!(Azure, Timeout), "10s")
                    .with_retry(retry_config())
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            other => {
                return Err(bad(format!(
                    "the scheme {other}:// is not one footfall reads (s3://, gs://, az://, file://, or a path)"
                )));
            }
        };
        let prefix = Path::parse(url.path().trim_matches('/'))
            .map_err(|e| bad(format!("not a usable prefix: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                shown: shown_url(spec),
                root: format!("{scheme}://{bucket}"),
                store,
                prefix,
                local: None,
            }),
        })
    }

    /// A local folder, which must exist. Writes are fsynced, file and
    /// folder, before they count as done.
    pub fn local(dir: &FsPath) -> Result<Store, Error> {
        if !dir.is_dir() {
            return Err(Error::Missing(dir.to_owned()));
        }
        let canonical = dir.canonicalize().map_err(|e| Error::Spec {
            spec: dir.display().to_string(),
            why: e.to_string(),
        })?;
        let store = LocalFileSystem::new_with_prefix(&canonical)
            .map_err(|e| Error::Spec {
                spec: dir.display().to_string(),
                why: e.to_string(),
            })?
            .with_fsync(true);
        Ok(Store {
            inner: Arc::new(Inner {
                shown: dir.display().to_string(),
                root: "file://".into(),
                store: Arc::new(store),
                // The file system's own prefix is the folder.
                prefix: Path::default(),
                local: Some(canonical),
            }),
        })
    }

    /// A store in memory (object_store's `InMemory`, whose create-only put
    /// is atomic), for tests.
    pub fn in_memory() -> Store {
        Store {
            inner: Arc::new(Inner {
                shown: "memory://".into(),
                root: "memory://".into(),
                store: Arc::new(InMemory::new()),
                prefix: Path::default(),
                local: None,
            }),
        }
    }

    /// The local folder, when the store is one.
    pub fn local_dir(&self) -> Option<&FsPath> {
        self.inner.local.as_deref()
    }

    /// How `key` is shown in logs and errors.
    pub fn show(&self, key: &str) -> String {
        format!("{}/{key}", self.inner.shown.trim_end_matches('/'))
    }

    /// Whether everything of `other` lies inside this store's location
    /// (same bucket, and its prefix at or under this one's): a salt store
    /// must not.
    pub fn contains(&self, other: &Store) -> bool {
        if let (Some(mine), Some(theirs)) = (&self.inner.local, &other.inner.local) {
            return theirs.starts_with(mine);
        }
        if self.inner.root != other.inner.root {
            return false;
        }
        let mine: Vec<_> = self.inner.prefix.parts().collect();
        let theirs: Vec<_> = other.inner.prefix.parts().collect();
        theirs.starts_with(&mine)
    }

    fn path(&self, key: &str) -> Result<Path, Error> {
        let key_path = Path::parse(key).map_err(|e| Error::Spec {
            spec: key.to_owned(),
            why: format!("not a key: {e}"),
        })?;
        Ok(Path::from_iter(
            self.inner.prefix.parts().chain(key_path.parts()),
        ))
    }

    fn err(&self, what: &'static str, key: &str) -> impl FnOnce(object_store::Error) -> Error {
        let at = self.show(key);
        move |source| Error::Store {
            what,
            at,
            source: Box::new(source),
        }
    }

    /// Puts `bytes` at `key` unless an object is already there.
    pub fn create(&self, key: &str, bytes: Bytes) -> Result<Created, Error> {
        block_on(self.create_async(key, bytes))
    }

    /// [`Store::create`] for async callers.
    pub async fn create_async(&self, key: &str, bytes: Bytes) -> Result<Created, Error> {
        let path = self.path(key)?;
        let store = Arc::clone(&self.inner.store);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let result = spawn(async move {
            store
                .put_opts(&path, PutPayload::from_bytes(bytes), opts)
                .await
        })
        .await;
        match result {
            Ok(_) => Ok(Created::New),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::Existed),
            Err(e) => Err(self.err("writing", key)(e)),
        }
    }

    /// The object at `key`, or `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        block_on(self.get_async(key))
    }

    /// [`Store::get`] for async callers.
    pub async fn get_async(&self, key: &str) -> Result<Option<Bytes>, Error> {
        let path = self.path(key)?;
        let store = Arc::clone(&self.inner.store);
        let result = spawn(async move {
            match store.get(&path).await {
                Ok(got) => got.bytes().await,
                Err(e) => Err(e),
            }
        })
        .await;
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("reading", key)(e)),
        }
    }

    /// The files and sub-folders directly under `dir` (`""` for the top);
    /// empty if there is no such folder.
    pub fn list(&self, dir: &str) -> Result<Listing, Error> {
        block_on(self.list_async(dir))
    }

    /// [`Store::list`] for async callers.
    pub async fn list_async(&self, dir: &str) -> Result<Listing, Error> {
        let path = if dir.is_empty() {
            self.inner.prefix.clone()
        } else {
            self.path(dir)?
        };
        let store = Arc::clone(&self.inner.store);
        let result = spawn(async move { store.list_with_delimiter(Some(&path)).await }).await;
        let listed = match result {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => return Ok(Listing::default()),
            Err(e) => return Err(self.err("listing", dir)(e)),
        };
        let name = |p: &Path| p.filename().map(str::to_owned);
        let mut listing = Listing {
            files: listed
                .objects
                .iter()
                .filter_map(|o| name(&o.location))
                .collect(),
            dirs: listed.common_prefixes.iter().filter_map(name).collect(),
        };
        listing.files.sort();
        listing.dirs.sort();
        Ok(listing)
    }

    /// The sorted names of the visible Parquet files directly under `dir`:
    /// `*.parquet`, not hidden (`.…`, as writes in progress of earlier
    /// versions were). What every reader of the layout reads.
    pub fn parquet_files(&self, dir: &str) -> Result<Vec<String>, Error> {
        let mut names = self.list(dir)?.files;
        names.retain(|n| n.ends_with(".parquet") && !n.starts_with('.'));
        Ok(names)
    }

    /// Deletes the object at `key`; one that is not there is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        block_on(self.delete_async(key))
    }

    /// [`Store::delete`] for async callers.
    pub async fn delete_async(&self, key: &str) -> Result<(), Error> {
        let path = self.path(key)?;
        let store = Arc::clone(&self.inner.store);
        match spawn(async move { store.delete(&path).await }).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("deleting", key)(e)),
        }
    }

    /// Checks that the store honours create-only puts: some S3 emulators
    /// ignore `If-None-Match` and overwrite, which would let two collectors
    /// each believe their salt won. Writes and removes one probe object
    /// under `dir`.
    pub async fn probe_create_only(&self, dir: &str) -> Result<bool, Error> {
        let key = format!("{dir}/.probe-{:016x}", random_u64());
        let first = self.create_async(&key, Bytes::from_static(b"1")).await?;
        let second = self.create_async(&key, Bytes::from_static(b"2")).await;
        let kept = self.get_async(&key).await;
        let _ = self.delete_async(&key).await;
        Ok(first == Created::New
            && matches!(second, Ok(Created::Existed))
            && matches!(kept, Ok(Some(b)) if b.as_ref() == b"1"))
    }
}

/// The URL as shown: scheme, bucket and path, without user info or query.
fn shown_url(spec: &str) -> String {
    match Url::parse(spec) {
        Ok(url) => format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.path().trim_end_matches('/')
        ),
        Err(_) => spec
            .split(['?', '#', '@'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// A client timeout's key for one backend's builder. Set one by one, on
/// top of what the builder read from the environment (`AWS_ALLOW_HTTP` and
/// the rest), which a whole `ClientOptions` would replace. Short enough
/// that a store that stopped answering is noticed within seconds: the
/// aggregator keeps what it could not write and tries again with its own
/// backoff.
macro_rules! timeout_key {
    (Aws, $key:ident) => {
        object_store::aws::AmazonS3ConfigKey::Client(object_store::ClientConfigKey::$key)
    };
    (Gcp, $key:ident) => {
        object_store::gcp::GoogleConfigKey::Client(object_store::ClientConfigKey::$key)
    };
    (Azure, $key:ident) => {
        object_store::azure::AzureConfigKey::Client(object_store::ClientConfigKey::$key)
    };
}
use timeout_key;

/// A few quick retries inside a call; longer outages are the caller's
/// (the aggregator retries on its tick, the salt fetcher on its own).
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(10),
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // Unique enough for a probe's name: std's random keys, no new dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

/// The runtime every store operation runs on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("footfall-store")
            .enable_all()
            .build()
            .expect("cannot start the storage runtime's threads")
    })
}

/// Runs `fut` on the storage runtime and waits for it, from any thread.
async fn spawn<T: Send + 'static>(
    fut: impl Future<Output = Result<T, object_store::Error>> + Send + 'static,
) -> Result<T, object_store::Error> {
    match runtime().spawn(fut).await {
        Ok(result) => result,
        Err(join) => Err(object_store::Error::Generic {
            store: "footfall",
            source: Box::new(join),
        }),
    }
}

/// Blocks the calling thread on `fut`, driven by the storage runtime.
///
/// Tokio refuses to block a thread that is inside a runtime, even one of
/// its blocking threads' callers' (an `async fn` that opens a store, a
/// `#[tokio::test]`), so from there the wait moves to a thread of its own:
/// a few dozen microseconds, next to a network round trip or an fsync.
fn block_on<T: Send>(fut: impl Future<Output = T> + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime().block_on(fut);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime().block_on(fut))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests;
