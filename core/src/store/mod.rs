//! Image data stores: streaming put with a size cap, ranged get, delete, health check.
//!
//! A store only moves bytes; hashing, inspection and status changes happen around it
//! (see [`crate::image::data`]). Stores are chosen at boot and kept by id in [`Stores`].

mod counted;
mod fs;
mod http;
mod rbd;
mod s3;
pub mod scrub;
mod staging;
mod swift;

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use crate::config::{BackendConfig, StorageConfig};
use crate::{Error, Result};

pub use fs::FilesystemStore;
pub use http::HttpStore;
pub use rbd::RbdStore;
pub use s3::S3Store;
pub use staging::{Inspection, StagedFacts, StagedFile, Staging};
pub use swift::SwiftStore;

/// Image bytes in flight: chunks in order, ending early with an error if the source fails.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data went past the size cap; nothing was kept.
    #[error("image data exceeds the maximum size of {0} bytes")]
    TooLarge(u64),
    /// The backend has no room left; nothing was kept.
    #[error("the store is full")]
    Full,
    /// The backend refused access (permissions, credentials).
    #[error("the store refused access: {0}")]
    Denied(String),
    /// The location does not exist in this store.
    #[error("no data at {0}")]
    NotFound(String),
    /// The incoming stream failed (client went away, body error); nothing was kept.
    #[error("reading the image data failed: {0}")]
    Source(io::Error),
    /// The data is in use where it lives (RBD: the snapshot has clones) and cannot be removed.
    #[error("image data is in use: {0}")]
    InUse(String),
    /// The backend failed.
    #[error("store I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// A place image data can live.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Writes `data` as image `image_id`, refusing more than `cap` bytes, and returns the
    /// location URL. On any error nothing is left behind and no earlier data is touched.
    async fn put(&self, image_id: &str, data: ByteStream, cap: u64) -> Result<String, StoreError> {
        self.put_sized(image_id, data, cap, None).await
    }
    /// [`put`](Store::put) of data whose size may have been announced (a Content-Length, a
    /// staged file's size), so that a store that sizes its objects up front (RBD) does it
    /// once. The hint may be wrong: the caller still checks the byte count.
    async fn put_sized(
        &self,
        image_id: &str,
        data: ByteStream,
        cap: u64,
        size: Option<u64>,
    ) -> Result<String, StoreError>;
    /// Makes the whole file at `file` image `image_id`'s data without copying it (the
    /// filesystem store links it when both are on one filesystem), durably, and returns the
    /// location; `Ok(None)` when this store cannot, and the caller copies. The file stays
    /// where it is too. The default suits stores that always copy.
    async fn adopt(&self, _image_id: &str, _file: &std::path::Path) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    /// Streams the bytes at `location`, or the half-open byte `range` of them.
    async fn get(&self, location: &str, range: Option<Range<u64>>) -> Result<ByteStream, StoreError>;
    /// Removes the data at `location`; data already gone counts as removed.
    async fn delete(&self, location: &str) -> Result<(), StoreError>;
    /// Whether the data at `location` is in use where it lives, so that removing it would
    /// fail (RBD: clones of the image's snapshot). The default suits stores without such uses.
    async fn in_use(&self, _location: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// Checks that the store can be written to.
    async fn health(&self) -> Result<(), StoreError>;
    /// Removes what writes of processes that died left behind, never what a live writer
    /// (of any process, on any node) is still writing, spending at most what `limits` allow;
    /// returns what went. The default suits stores that are never written.
    async fn remove_abandoned(&self, _limits: &SweepLimits) -> Result<Swept, StoreError> {
        Ok(Swept::default())
    }
    /// Whether `location` names data inside this store (its directory, its bucket and prefix,
    /// any http(s) URL for an http store), judging by the URL alone. The default suits stores
    /// that take no locations from callers.
    fn holds(&self, _location: &str) -> bool {
        false
    }
    /// The size of the data at `location`, one this store [`holds`](Store::holds), checked
    /// as a caller-given location must be: a regular file and never a symlink, an existing
    /// object, a URL the store's filter allows.
    async fn size(&self, location: &str) -> Result<u64, StoreError> {
        Err(StoreError::NotFound(location.to_owned()))
    }
    /// Whether image data can be written here (the http store is read-only).
    fn writable(&self) -> bool {
        true
    }
}

/// What a sweep of abandoned partial writes removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Leftovers removed.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// What a sweep of abandoned partial writes may take for dead and may spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepLimits {
    /// A writer that shows it is alive by renewing a mark (the S3 store's upload markers)
    /// and has not for this long is dead, as a worker whose task lease ran out is.
    pub lease: Duration,
    /// Where a store cannot tell a live writer at all (a filesystem without locks), partial
    /// data not written to for this long is taken for abandoned.
    pub idle: Duration,
    /// Longest one sweep of one store may take; what is left waits for the next sweep.
    pub max_time: Duration,
    /// Most leftovers one sweep of one store removes.
    pub max_removals: usize,
}

impl SweepLimits {
    /// `[storage]`'s sweep bounds, `[tasks] lease`, and `idle` for stores that must guess.
    pub fn new(storage: &StorageConfig, lease: Duration, idle: Duration) -> SweepLimits {
        SweepLimits {
            lease,
            idle,
            max_time: Duration::from_secs(storage.sweep_max_seconds),
            max_removals: storage.sweep_max_removals,
        }
    }

    /// Whether a sweep that started at `started` and removed `removed` must stop here.
    fn spent(&self, started: std::time::Instant, removed: usize) -> bool {
        removed >= self.max_removals || started.elapsed() >= self.max_time
    }
}

#[cfg(test)]
impl SweepLimits {
    /// Generous bounds, `idle` seconds for stores that must guess and a lease as long.
    pub(crate) fn idle(idle: u64) -> SweepLimits {
        let idle = Duration::from_secs(idle);
        SweepLimits { lease: idle, idle, max_time: Duration::from_secs(60), max_removals: 1000 }
    }
}

/// How much data may wait between a put's reader and its writer.
const WRITER_CHANNEL_DEPTH: usize = 8;

/// The put protocol both backends share: `data` flows to a writer task through a bounded
/// channel, at most `cap` bytes, and only an explicit `None` end marker lets the writer
/// commit. A writer whose channel closes without the marker must abandon (delete, abort) what
/// it wrote, so an error or a cancelled put never leaves a partial object behind.
async fn feed_writer<W>(mut data: ByteStream, cap: u64, spawn_writer: W) -> Result<(), StoreError>
where
    W: FnOnce(tokio::sync::mpsc::Receiver<Option<Bytes>>) -> tokio::task::JoinHandle<Result<(), StoreError>>,
{
    use futures_util::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(WRITER_CHANNEL_DEPTH);
    let writer = spawn_writer(rx);
    let mut written = 0u64;
    let fed: Result<(), StoreError> = async {
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(StoreError::Source)?;
            written += chunk.len() as u64;
            if written > cap {
                return Err(StoreError::TooLarge(cap));
            }
            if tx.send(Some(chunk)).await.is_err() {
                // The writer stopped early; its own error says why.
                return Ok(());
            }
        }
        let _ = tx.send(None).await;
        Ok(())
    }
    .await;
    drop(tx);
    if let Err(err) = fed {
        let _ = writer.await;
        return Err(err);
    }
    writer.await.map_err(|e| StoreError::Io(io::Error::other(e)))?
}

/// The configured stores by id, with the default one.
#[derive(Clone)]
pub struct Stores {
    default: String,
    by_id: BTreeMap<String, Arc<dyn Store>>,
    descriptions: BTreeMap<String, StoreInfo>,
    multistore: bool,
}

/// What /v2/info/stores tells about one store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    /// Glance's store type name (`file`, `s3`).
    pub kind: &'static str,
    /// The operator's description, if any.
    pub description: Option<String>,
    /// Backend details for /v2/info/stores/detail.
    pub properties: serde_json::Value,
}

impl Stores {
    /// Opens every store of `cfg` (creating filesystem directories as needed). `lease` is how
    /// long a writer may go without proving it is alive (`tasks.lease`): S3 uploads renew
    /// their markers and Swift's segmented uploads their leases every third of it, so that
    /// sweeps can tell them from dead ones.
    pub fn from_config(cfg: &StorageConfig, lease: Duration) -> Result<Stores> {
        let mut stores = Stores::new(&cfg.default, BTreeMap::new());
        for (id, backend) in cfg.effective_backends() {
            let (store, info): (Arc<dyn Store>, StoreInfo) = match backend {
                BackendConfig::Filesystem { path, description } => {
                    let store = FilesystemStore::open(&path)
                        .map_err(|e| Error::Config(format!("store {id}: cannot use {}: {e}", path.display())))?;
                    let properties = serde_json::json!({
                        "data_dir": store.dir().display().to_string(),
                        "chunk_size": fs::READ_CHUNK,
                        "thin_provisioning": false,
                    });
                    (Arc::new(store), StoreInfo { kind: "file", description, properties })
                }
                BackendConfig::S3(cfg) => {
                    let store = S3Store::open(&cfg, lease).map_err(|e| Error::Config(format!("store {id}: {e}")))?;
                    // Glance's names; an image larger than one part goes up as a multipart upload.
                    let properties = serde_json::json!({
                        "s3_store_large_object_size": s3::PART_SIZE,
                        "s3_store_large_object_chunk_size": s3::PART_SIZE,
                        "s3_store_thread_pools": s3::PARTS_IN_FLIGHT,
                    });
                    (Arc::new(store), StoreInfo { kind: "s3", description: cfg.description, properties })
                }
                BackendConfig::Rbd(cfg) => {
                    let store = RbdStore::open(&cfg).map_err(|e| Error::Config(format!("store {id}: {e}")))?;
                    // Glance's names for what /v2/info/stores/detail shows of an rbd store.
                    let properties = serde_json::json!({
                        "pool": cfg.pool,
                        "chunk_size": cfg.chunk_size,
                        "thin_provisioning": cfg.thin_provisioning,
                    });
                    (Arc::new(store), StoreInfo { kind: "rbd", description: cfg.description, properties })
                }
                BackendConfig::Swift(cfg) => {
                    let store = SwiftStore::open(&cfg, lease).map_err(|e| Error::Config(format!("store {id}: {e}")))?;
                    let properties = store.properties();
                    (Arc::new(store), StoreInfo { kind: "swift", description: cfg.description, properties })
                }
                BackendConfig::Http { description, filtering } => {
                    let store = HttpStore::open(&filtering).map_err(|e| Error::Config(format!("store {id}: {e}")))?;
                    (Arc::new(store), StoreInfo { kind: "http", description, properties: serde_json::json!({}) })
                }
            };
            stores.by_id.insert(id.clone(), counted::Counted::wrap(&id, store));
            stores.descriptions.insert(id, info);
        }
        // Glance is in multistore mode as soon as `enabled_backends` is set, even to one store.
        stores.multistore = !cfg.backends.is_empty();
        Ok(stores)
    }

    /// Stores from already-opened backends, in single-store mode; `default` must be one of them.
    pub fn new(default: &str, by_id: BTreeMap<String, Arc<dyn Store>>) -> Stores {
        let by_id = by_id.into_iter().map(|(id, store)| (id.clone(), counted::Counted::wrap(&id, store))).collect();
        Stores { default: default.to_owned(), by_id, descriptions: BTreeMap::new(), multistore: false }
    }

    /// Whether stores were configured explicitly (Glance's multistore mode: store ids are
    /// shown on images and selectable on upload, /v2/info/stores exists).
    pub fn multistore(&self) -> bool {
        self.multistore
    }

    /// Every store, by id.
    pub fn all(&self) -> impl Iterator<Item = (&str, &Arc<dyn Store>)> {
        self.by_id.iter().map(|(id, store)| (id.as_str(), store))
    }

    /// Checks every store once and logs each one that cannot be used with the reason, so
    /// that a wrong endpoint or an unreachable cluster shows at start-up, not at the first
    /// upload.
    pub async fn report_health(self) {
        for (id, store) in self.all() {
            if let Err(err) = store.health().await {
                tracing::warn!(store = id, error = %err, "store unavailable");
            }
        }
    }

    /// Every store id with what /v2/info/stores shows of it.
    pub fn infos(&self) -> impl Iterator<Item = (&str, Option<&StoreInfo>)> {
        self.by_id.keys().map(|id| (id.as_str(), self.descriptions.get(id)))
    }

    /// The id of the default store.
    pub fn default_id(&self) -> &str {
        &self.default
    }

    /// The store `id`, if configured.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Store>> {
        self.by_id.get(id)
    }

    /// The id of the store a caller-given location URL belongs to and the size of its data,
    /// or why it is refused: it belongs to no configured store, the store's checks refuse it
    /// (symlinks, filter), there is no data, or it names data Glint itself writes (a file or
    /// object named by an image id), which would let a caller read another image's data.
    pub async fn check_location(&self, url: &str) -> Result<(String, u64), StoreError> {
        let Some((id, store)) = self.by_id.iter().find(|(_, store)| store.holds(url)) else {
            return Err(StoreError::Denied(format!("{url} is in no configured store")));
        };
        let own_name = url.rsplit_once('/').is_some_and(|(_, name)| crate::image::schema::is_uuid(name));
        if store.writable() && own_name {
            return Err(StoreError::Denied(format!("{url} names image data written by Glint")));
        }
        match store.size(url).await? {
            0 => Err(StoreError::NotFound(format!("{url} holds no data"))),
            size => Ok((id.clone(), size)),
        }
    }
}
