//! The staging area: data waiting for an import (`PUT .../stage`, downloads to convert).
//!
//! One file per image, named by image id, in a directory every API and worker node shares.
//! Writes go through the filesystem store, so a staged file is either absent or whole.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ByteStream, FilesystemStore, Store, StoreError, Swept};

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
    pub async fn remove_abandoned(&self, idle: std::time::Duration) -> Result<Swept, StoreError> {
        self.files.remove_abandoned(idle).await
    }
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
}
