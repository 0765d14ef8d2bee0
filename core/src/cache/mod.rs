//! The image cache: image data kept on this API node's local disk and served from there, the
//! least recently used going first when it outgrows `[cache] max_size` (Glance's image cache
//! with its `centralized_db` driver).
//!
//! The files are a [`FilesystemStore`] of their own (one file per image, written crash-safely
//! under a lock, so a partial file never looks like an entry); which node holds which image,
//! with its hits and last access, and each node's prefetch queue, are rows in the shared
//! database ([`repo`]). An entry is served only while its row exists and the image is
//! `active`: image data never changes once active, so a file can be out of place (its image
//! deleted or deactivated, its row dropped by another node) but never wrong.

mod fill;
mod job;
pub mod repo;

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, OnceCell};

use crate::config::{CacheConfig, ServerConfig};
use crate::image::{Image, Status};
use crate::store::{ByteStream, FilesystemStore, Store, SweepLimits};
use crate::{Error, Result};

/// One node's image cache.
pub struct ImageCache {
    /// The cached files; `None` when the directory cannot be used (nothing is then cached).
    files: Option<FilesystemStore>,
    db: DatabaseConnection,
    node_url: String,
    node: OnceCell<i64>,
    max_size: u64,
    stall_time: Duration,
    interval: Duration,
    /// Images being written into the cache by this process right now.
    filling: Mutex<HashSet<String>>,
    /// Starts a pass of the cache job (an image was queued).
    wake: Notify,
}

/// One entry of this node's cache, as `GET /v2/cache` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The row's id.
    pub id: i64,
    /// The image.
    pub image_id: String,
    /// Downloads served from the entry.
    pub hits: i32,
    /// Last download served from it (or its filling), seconds since the epoch.
    pub last_accessed: f64,
    /// When it was filled, seconds since the epoch.
    pub last_modified: f64,
    /// Its bytes.
    pub size: i64,
    /// The image's md5.
    pub checksum: Option<String>,
}

/// What a clean or a prune removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Files removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl ImageCache {
    /// The cache `cfg` describes for the API node `server` configures, or `None` when it is
    /// off. A directory that cannot be created or written is logged, not fatal: downloads
    /// then simply bypass the cache.
    pub fn open(cfg: &CacheConfig, server: &ServerConfig, db: DatabaseConnection) -> Option<Arc<ImageCache>> {
        if !cfg.enabled {
            return None;
        }
        let files = match FilesystemStore::open(&cfg.dir) {
            Ok(files) => Some(files),
            Err(err) => {
                tracing::warn!(dir = %cfg.dir.display(), error = %err, "image cache directory unusable; nothing will be cached");
                None
            }
        };
        Some(Arc::new(ImageCache {
            files,
            db,
            node_url: cfg.node_url(server),
            node: OnceCell::new(),
            max_size: cfg.max_size,
            stall_time: Duration::from_secs(cfg.stall_time),
            interval: Duration::from_secs(cfg.interval),
            filling: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        }))
    }

    /// This node's URL in the bookkeeping.
    pub fn node_url(&self) -> &str {
        &self.node_url
    }

    /// This node's id in the bookkeeping, recorded on first use.
    async fn node(&self) -> Result<i64> {
        self.node.get_or_try_init(|| repo::node_id(&self.db, &self.node_url)).await.copied()
    }

    fn location(files: &FilesystemStore, image_id: &str) -> String {
        format!("file://{}", files.dir().join(image_id).display())
    }

    /// The image's data (or the half-open `range` of it) from this node's cache, counting a
    /// hit; `None` when it is not served from here: not cached, not `active`, or the entry
    /// was dropped by another node (its file then goes too).
    pub async fn read(&self, image: &Image, range: Option<Range<u64>>) -> Option<ByteStream> {
        let files = self.files.as_ref()?;
        let size = u64::try_from(image.size?).ok()?;
        if image.status != Status::Active {
            return None;
        }
        let path = files.dir().join(&image.id);
        let meta = tokio::fs::symlink_metadata(&path).await.ok()?;
        if !meta.is_file() || meta.len() != size {
            return None;
        }
        let node = self.node().await.map_err(|e| tracing::warn!(error = %e, "image cache bookkeeping failed")).ok()?;
        match repo::hit(&self.db, node, &image.id).await {
            Ok(true) => {}
            Ok(false) => {
                if !self.is_filling(&image.id) {
                    self.remove_file(&image.id).await;
                }
                return None;
            }
            Err(err) => {
                tracing::warn!(image = %image.id, error = %err, "image cache bookkeeping failed");
                return None;
            }
        }
        match files.get(&Self::location(files, &image.id), range).await {
            Ok(stream) => Some(stream),
            Err(err) => {
                tracing::warn!(image = %image.id, error = %err, "reading the cached image failed; reading the store");
                None
            }
        }
    }

    fn is_filling(&self, image_id: &str) -> bool {
        self.filling.lock().is_ok_and(|set| set.contains(image_id))
    }

    /// Marks `image_id` as being filled by this process; false when it already is.
    fn start_filling(&self, image_id: &str) -> bool {
        self.filling.lock().is_ok_and(|mut set| set.insert(image_id.to_owned()))
    }

    fn done_filling(&self, image_id: &str) {
        if let Ok(mut set) = self.filling.lock() {
            set.remove(image_id);
        }
    }

    /// Whether `image` may be cached: active, of known size within `max_size`, not cached yet.
    fn cacheable(&self, image: &Image) -> Option<(&FilesystemStore, u64)> {
        let files = self.files.as_ref()?;
        let size = u64::try_from(image.size?).ok()?;
        (image.status == Status::Active && size <= self.max_size && !files.dir().join(&image.id).exists())
            .then_some((files, size))
    }

    async fn remove_file(&self, image_id: &str) -> u64 {
        let Some(files) = &self.files else { return 0 };
        let size = tokio::fs::symlink_metadata(files.dir().join(image_id)).await.map(|m| m.len()).unwrap_or(0);
        if let Err(err) = files.delete(&Self::location(files, image_id)).await {
            tracing::warn!(image = %image_id, error = %err, "could not remove a cached image file");
        }
        size
    }

    /// This node's entries, least recently used first.
    pub async fn entries(&self) -> Result<Vec<Entry>> {
        let rows = repo::entries(&self.db, self.node().await?).await?;
        let seconds = |micros: i64| micros as f64 / 1e6;
        Ok(rows
            .into_iter()
            .map(|row| Entry {
                id: row.id,
                image_id: row.image_id,
                hits: row.hits,
                last_accessed: seconds(row.last_accessed),
                last_modified: seconds(row.last_modified),
                size: row.size,
                checksum: row.checksum,
            })
            .collect())
    }

    /// The images queued on this node, oldest first.
    pub async fn queued(&self) -> Result<Vec<String>> {
        repo::queued(&self.db, self.node().await?).await
    }

    /// Queues `image_id` for prefetching on this node and wakes the cache job.
    pub async fn queue(&self, image_id: &str) -> Result<()> {
        repo::enqueue(&self.db, self.node().await?, image_id).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Whether this node has `image_id` cached or queued.
    pub async fn knows(&self, image_id: &str) -> Result<bool> {
        Ok(self.queued().await?.iter().any(|id| id == image_id)
            || self.entries().await?.iter().any(|e| e.image_id == image_id))
    }

    /// Removes `image_id` from this node's cache and queue.
    pub async fn delete(&self, image_id: &str) -> Result<()> {
        let node = self.node().await?;
        repo::delete_entry(&self.db, node, image_id).await?;
        repo::dequeue(&self.db, node, image_id).await?;
        self.remove_file(image_id).await;
        Ok(())
    }

    /// Empties this node's cache; returns how many images were in it.
    pub async fn clear_cached(&self) -> Result<u64> {
        let node = self.node().await?;
        repo::delete_entries(&self.db, node).await?;
        let mut removed = 0;
        for image_id in self.files_on_disk().await {
            self.remove_file(&image_id).await;
            removed += 1;
        }
        Ok(removed)
    }

    /// Empties this node's queue; returns how many images were on it.
    pub async fn clear_queue(&self) -> Result<u64> {
        repo::clear_queue(&self.db, self.node().await?).await
    }

    /// The URLs of every node holding `image_id`.
    pub async fn nodes(&self, image_id: &str) -> Result<Vec<String>> {
        repo::nodes_holding(&self.db, image_id).await
    }

    /// Forgets `image_id` on every node and removes this node's copy: the image was deleted
    /// or deactivated. Other nodes' copies are never served again (their rows are gone) and
    /// their files go at their next pass.
    pub async fn invalidate(&self, image_id: &str) -> Result<()> {
        repo::forget_everywhere(&self.db, image_id).await?;
        self.remove_file(image_id).await;
        Ok(())
    }

    /// Names of the complete cached files (partial files start with a dot).
    async fn files_on_disk(&self) -> Vec<String> {
        let Some(files) = &self.files else { return Vec::new() };
        let dir = files.dir().to_path_buf();
        tokio::task::spawn_blocking(move || cached_names(&dir)).await.unwrap_or_default()
    }

    /// Removes what is out of place: entries of images that are no longer active, files
    /// without an entry, entries without a file, queued images that are no longer active, and
    /// partial files of writers that died (or, without `flock`, older than `stall_time`).
    pub async fn clean(&self) -> Result<Removed> {
        let node = self.node().await?;
        let mut removed = Removed::default();
        let rows = repo::entries(&self.db, node).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.image_id.clone()).collect();
        let active: HashSet<String> = repo::active_images(&self.db, &ids).await?.into_iter().collect();
        let on_disk: HashSet<String> = self.files_on_disk().await.into_iter().collect();
        for row in &rows {
            if !active.contains(&row.image_id) || !on_disk.contains(&row.image_id) {
                repo::delete_entry(&self.db, node, &row.image_id).await?;
            }
        }
        for image_id in &on_disk {
            if (!active.contains(image_id) || !ids.contains(image_id)) && !self.is_filling(image_id) {
                removed.bytes += self.remove_file(image_id).await;
                removed.files += 1;
            }
        }
        let queued = repo::queued(&self.db, node).await?;
        let queued_active: HashSet<String> = repo::active_images(&self.db, &queued).await?.into_iter().collect();
        for image_id in queued.iter().filter(|id| !queued_active.contains(*id)) {
            repo::dequeue(&self.db, node, image_id).await?;
        }
        if let Some(files) = &self.files {
            let limits = SweepLimits {
                lease: self.stall_time,
                idle: self.stall_time,
                max_time: Duration::from_secs(60),
                max_removals: 100_000,
            };
            let swept = files.remove_abandoned(&limits).await.map_err(Error::Store)?;
            removed.files += swept.files as u64;
            removed.bytes += swept.bytes;
        }
        Ok(removed)
    }

    /// Removes least recently used entries until the cache holds at most `max_size` bytes.
    pub async fn prune(&self) -> Result<Removed> {
        let node = self.node().await?;
        let rows = repo::entries(&self.db, node).await?;
        let mut total: u64 = rows.iter().map(|r| u64::try_from(r.size).unwrap_or(0)).sum();
        let mut removed = Removed::default();
        for row in rows {
            if total <= self.max_size {
                break;
            }
            let size = u64::try_from(row.size).unwrap_or(0);
            repo::delete_entry(&self.db, node, &row.image_id).await?;
            self.remove_file(&row.image_id).await;
            total = total.saturating_sub(size);
            removed.files += 1;
            removed.bytes += size;
        }
        Ok(removed)
    }
}

/// The names of the complete files in `dir`.
fn cached_names(dir: &Path) -> Vec<String> {
    let Ok(listing) = std::fs::read_dir(dir) else { return Vec::new() };
    listing
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect()
}
