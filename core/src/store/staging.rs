//! The staging area: data waiting for an import (`PUT .../stage`, downloads to convert).
//!
//! One file per image, named by image id, in a directory every API and worker node shares.
//! Writes go through the filesystem store, so a staged file is either absent or whole, and
//! partial writes of dead processes are swept as the store's are. A whole staged file is
//! needed only while its image is `uploading` or `importing`; the sweep removes others (see
//! [`super::scrub::remove_orphan_staging`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::fs::valid_name;
use super::{ByteStream, FilesystemStore, Store, StoreError, SweepLimits, Swept};

/// Staged image data, by image id.
#[derive(Clone)]
pub struct Staging {
    files: Arc<FilesystemStore>,
}

impl Staging {
    /// Stages into `dir` (created if missing).
    pub fn open(dir: &Path) -> io::Result<Staging> {
        Ok(Staging { files: Arc::new(FilesystemStore::open(dir)?) })
    }

    /// The staging area `[import] staging_dir` names; a configuration error if unusable.
    pub fn from_config(config: &crate::config::ImportConfig) -> crate::Result<Staging> {
        Staging::open(&config.staging_dir)
            .map_err(|e| crate::Error::Config(format!("import.staging_dir {}: {e}", config.staging_dir.display())))
    }

    /// The file holding `image_id`'s staged data (it may not exist).
    pub fn path(&self, image_id: &str) -> PathBuf {
        self.files.dir().join(image_id)
    }

    fn location(&self, image_id: &str) -> String {
        format!("file://{}", self.path(image_id).display())
    }

    /// Whether data is staged for `image_id`.
    pub async fn contains(&self, image_id: &str) -> bool {
        tokio::fs::try_exists(self.path(image_id)).await.unwrap_or(false)
    }

    /// Size in bytes of `image_id`'s staged data.
    pub async fn size(&self, image_id: &str) -> Result<u64, StoreError> {
        match tokio::fs::metadata(self.path(image_id)).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(format!("staged data of image {image_id}")))
            }
            Err(e) => Err(StoreError::Io(e)),
        }
    }

    /// Stages `data` for `image_id` (at most `cap` bytes), replacing what was there; returns
    /// the byte count. Nothing is left on error.
    pub async fn put(&self, image_id: &str, data: ByteStream, cap: u64) -> Result<u64, StoreError> {
        self.files.put(image_id, data, cap).await?;
        self.size(image_id).await
    }

    /// Streams `image_id`'s staged data.
    pub async fn read(&self, image_id: &str) -> Result<ByteStream, StoreError> {
        self.files.get(&self.location(image_id), None).await
    }

    /// Removes `image_id`'s staged data; nothing staged counts as removed.
    pub async fn remove(&self, image_id: &str) -> Result<(), StoreError> {
        self.files.delete(&self.location(image_id)).await
    }

    /// Removes partial files of writes abandoned by a dead process (see [`Store::remove_abandoned`]).
    pub async fn remove_abandoned(&self, limits: &SweepLimits) -> Result<Swept, StoreError> {
        self.files.remove_abandoned(limits).await
    }

    /// Up to `limit` whole staged files (partial writes are [`Staging::remove_abandoned`]'s)
    /// that nothing has written to for `idle`, with the image each belongs to: `<id>`, or a
    /// converted copy `<id>.<format>`.
    pub async fn idle_files(&self, idle: Duration, limit: usize) -> Result<Vec<StagedFile>, StoreError> {
        let dir = self.files.dir().to_path_buf();
        let list = move || -> io::Result<Vec<StagedFile>> {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                if found.len() >= limit {
                    break;
                }
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().filter(|n| valid_name(n)).map(str::to_owned) else {
                    continue;
                };
                let meta = entry.metadata()?;
                if meta.is_file() && meta.modified()?.elapsed().unwrap_or_default() >= idle {
                    let image_id = name.split('.').next().unwrap_or_default().to_owned();
                    found.push(StagedFile { name, image_id });
                }
            }
            Ok(found)
        };
        tokio::task::spawn_blocking(list)
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
            .map_err(StoreError::Io)
    }

    /// Removes the staged file `name` if nothing has written to it for `idle` still; its size
    /// if it did. Checked again right before the removal, so data staged anew since
    /// [`Staging::idle_files`] listed the name stays.
    pub async fn remove_if_idle(&self, name: &str, idle: Duration) -> Result<Option<u64>, StoreError> {
        let path = self.files.dir().join(name);
        let meta = match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io(e)),
        };
        if !meta.is_file() || meta.modified()?.elapsed().unwrap_or_default() < idle {
            return Ok(None);
        }
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io(e)),
        }
    }
}

/// A whole file in the staging area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedFile {
    /// Its name in the staging directory.
    pub name: String,
    /// The image whose data it is.
    pub image_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn staged_data_reads_back_and_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = Staging::open(dir.path()).expect("open");
        assert!(!staging.contains("img").await);
        let data: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(b"staged"))]));
        assert_eq!(staging.put("img", data, 100).await.expect("put"), 6);
        assert!(staging.contains("img").await);
        let read: Vec<u8> = staging.read("img").await.expect("read").map(|c| c.expect("chunk").to_vec()).concat().await;
        assert_eq!(read, b"staged");
        staging.remove("img").await.expect("remove");
        staging.remove("img").await.expect("remove again");
        assert!(!staging.contains("img").await);
        assert!(matches!(staging.read("img").await, Err(StoreError::NotFound(_))));
    }

    #[tokio::test]
    async fn only_whole_files_idle_long_enough_are_listed_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = Staging::open(dir.path()).expect("open");
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        for name in ["img", "img.raw", ".img.abc.part", "young"] {
            let file = std::fs::File::create(dir.path().join(name)).expect("create");
            if name != "young" {
                file.set_modified(hour_ago).expect("age");
            }
        }
        let mut idle = staging.idle_files(Duration::from_secs(600), 10).await.expect("list");
        idle.sort_by(|a, b| a.name.cmp(&b.name));
        let expected = [("img", "img"), ("img.raw", "img")]
            .map(|(name, image_id)| StagedFile { name: name.into(), image_id: image_id.into() });
        assert_eq!(idle, expected);
        assert_eq!(staging.remove_if_idle("young", Duration::from_secs(600)).await.expect("remove"), None);
        assert_eq!(staging.remove_if_idle("img.raw", Duration::from_secs(600)).await.expect("remove"), Some(0));
        assert_eq!(staging.remove_if_idle("img.raw", Duration::from_secs(600)).await.expect("remove"), None);
        assert!(dir.path().join("young").exists());
    }
}
