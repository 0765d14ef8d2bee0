//! The staging area: data waiting for an import (`PUT .../stage`, downloads to convert).
//!
//! One file per image, named by image id, in a directory every API and worker node shares.
//! Writes go through the filesystem store, so a staged file is either absent or whole, and
//! partial writes of dead processes are swept as the store's are. A whole staged file is
//! needed only while its image is `uploading` or `importing`; the sweep removes others (see
//! [`super::scrub::remove_orphan_staging`]).
//!
//! What was learnt of the data as it streamed in (its digests and inspection) is kept beside
//! it in `<id>.staged`, with the file's identity, size and times: an import that finds the
//! file as it was left uses them instead of reading it again, and one that finds anything
//! changed (written, truncated, replaced behind Glint's back) ignores them and hashes anew.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
        self.forget(image_id).await?;
        self.files.put(image_id, data, cap).await?;
        self.size(image_id).await
    }

    /// The store that staged files are written through (for hashing writers, see
    /// [`crate::image::data::stage`]).
    pub(crate) fn files(&self) -> &dyn Store {
        self.files.as_ref()
    }

    fn sidecar(&self, name: &str) -> PathBuf {
        self.files.dir().join(format!("{name}.{SIDECAR}"))
    }

    /// Keeps `facts` about the whole staged file `name` beside it, with its fingerprint as it
    /// is now. Written to a partial file and renamed, so a reader sees all of it or none.
    pub async fn record(&self, name: &str, facts: &StagedFacts) -> Result<(), StoreError> {
        let (path, sidecar) = (self.path(name), self.sidecar(name));
        let part = self.files.dir().join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
        let meta = tokio::fs::metadata(&path).await?;
        let record = Recorded { facts: facts.clone(), fingerprint: Fingerprint::of(&meta) };
        let text = serde_json::to_vec(&record).map_err(io::Error::other)?;
        tokio::fs::write(&part, text).await?;
        if let Err(err) = tokio::fs::rename(&part, &sidecar).await {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(StoreError::Io(err));
        }
        Ok(())
    }

    /// What [`Staging::record`] kept about `name`, if the file is still exactly as it was
    /// then: same file, size, modification and change times. A missing, unreadable or stale
    /// record is `None` (the data must be read and hashed again).
    pub async fn recorded(&self, name: &str) -> Option<StagedFacts> {
        let text = tokio::fs::read(self.sidecar(name)).await.ok()?;
        let record: Recorded = serde_json::from_slice(&text).ok()?;
        let meta = tokio::fs::metadata(self.path(name)).await.ok()?;
        if Fingerprint::of(&meta) != record.fingerprint || meta.len() != record.facts.size {
            tracing::warn!(
                staged = name,
                "the staged file changed after it was staged; its digests are computed again"
            );
            return None;
        }
        Some(record.facts)
    }

    /// Whether `name` still holds the data [`Staging::recorded`] vouched for as `facts`:
    /// checked again once the data has been used, as a link changes only the change time.
    pub async fn unchanged_since(&self, name: &str, facts: &StagedFacts) -> bool {
        let Ok(text) = tokio::fs::read(self.sidecar(name)).await else { return false };
        let Ok(record) = serde_json::from_slice::<Recorded>(&text) else { return false };
        let Ok(meta) = tokio::fs::metadata(self.path(name)).await else { return false };
        let now = Fingerprint::of(&meta);
        record.facts == *facts && now.same_data(&record.fingerprint) && meta.len() == facts.size
    }

    /// Removes the record of `name`, if any.
    async fn forget(&self, name: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.sidecar(name)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io(e)),
            _ => Ok(()),
        }
    }

    /// Streams `image_id`'s staged data.
    pub async fn read(&self, image_id: &str) -> Result<ByteStream, StoreError> {
        self.files.get(&self.location(image_id), None).await
    }

    /// Removes `image_id`'s staged data and its record; nothing staged counts as removed.
    pub async fn remove(&self, image_id: &str) -> Result<(), StoreError> {
        self.forget(image_id).await?;
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

/// Suffix of the record kept beside a staged file.
const SIDECAR: &str = "staged";

/// What was learnt of staged data while it streamed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFacts {
    /// Bytes staged.
    pub size: u64,
    /// Their md5, hex (Glance's `checksum`).
    pub checksum: String,
    /// The algorithm of `os_hash_value`.
    pub os_hash_algo: String,
    /// Their digest by `os_hash_algo`, hex.
    pub os_hash_value: String,
    /// What the format inspector reported.
    pub inspection: Inspection,
}

/// A [`glint_formats::Report`] as it is kept in a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    format: Option<String>,
    matched: Vec<String>,
    virtual_size: Option<u64>,
    bytes_read: u64,
    failures: BTreeMap<String, String>,
}

impl From<&glint_formats::Report> for Inspection {
    fn from(report: &glint_formats::Report) -> Self {
        let name = |format: glint_formats::Format| format.as_str().to_owned();
        Inspection {
            format: report.format.map(name),
            matched: report.matched.iter().copied().map(name).collect(),
            virtual_size: report.virtual_size,
            bytes_read: report.bytes_read,
            failures: report.failures.clone(),
        }
    }
}

impl Inspection {
    /// The report again; `None` if it names a format this build does not know.
    pub fn report(&self) -> Option<glint_formats::Report> {
        let format = match &self.format {
            Some(name) => Some(glint_formats::Format::from_name(name)?),
            None => None,
        };
        let matched = self.matched.iter().map(|name| glint_formats::Format::from_name(name)).collect::<Option<_>>()?;
        Some(glint_formats::Report {
            format,
            matched,
            virtual_size: self.virtual_size,
            bytes_read: self.bytes_read,
            failures: self.failures.clone(),
        })
    }
}

/// A record: the facts, and the file they are about as it was when they were recorded.
#[derive(Serialize, Deserialize)]
struct Recorded {
    facts: StagedFacts,
    fingerprint: Fingerprint,
}

/// What tells a file changed: its identity, size, and modification and change times to the
/// nanosecond (the change time cannot be set back, so a write hidden by restoring the
/// modification time still shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata) -> Fingerprint {
        Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The same file with the same data, whatever its change time (a new link changes it).
    fn same_data(&self, other: &Fingerprint) -> bool {
        (self.dev, self.ino, self.size, self.mtime) == (other.dev, other.ino, other.size, other.mtime)
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

    fn facts(size: u64) -> StagedFacts {
        let report = glint_formats::Inspector::new().finish();
        StagedFacts {
            size,
            checksum: "md5".into(),
            os_hash_algo: "sha512".into(),
            os_hash_value: "sha".into(),
            inspection: Inspection::from(&report),
        }
    }

    async fn staged(staging: &Staging, data: &'static [u8]) {
        let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(data))]));
        staging.put("img", body, 100).await.expect("put");
        staging.record("img", &facts(data.len() as u64)).await.expect("record");
    }

    #[tokio::test]
    async fn a_record_holds_while_the_file_is_untouched_and_goes_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = Staging::open(dir.path()).expect("open");
        staged(&staging, b"staged").await;
        let recorded = staging.recorded("img").await.expect("recorded");
        assert_eq!(recorded, facts(6));
        assert!(recorded.inspection.report().is_some());
        assert!(staging.unchanged_since("img", &recorded).await);
        staging.remove("img").await.expect("remove");
        assert!(std::fs::read_dir(dir.path()).expect("list").next().is_none(), "the record went with the data");
    }

    #[tokio::test]
    async fn a_record_of_a_file_written_truncated_or_replaced_since_is_ignored() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = Staging::open(dir.path()).expect("open");
        let path = dir.path().join("img");
        // Each change, and whether it shows without the change time (which a link changes too).
        let changes: [(&dyn Fn(), bool); 3] = [
            (
                &|| {
                    let file = std::fs::File::options().write(true).open(&path).expect("open");
                    let modified = file.metadata().expect("meta").modified().expect("mtime");
                    file.write_all_at(b"X", 0).expect("write");
                    file.set_modified(modified).expect("mtime back");
                },
                false,
            ),
            (&|| std::fs::File::options().write(true).open(&path).and_then(|f| f.set_len(3)).expect("truncate"), true),
            (
                &|| {
                    std::fs::write(dir.path().join("other"), b"STAGED").expect("write");
                    std::fs::rename(dir.path().join("other"), &path).expect("replace");
                },
                true,
            ),
        ];
        for (change, shows_without_ctime) in changes {
            staged(&staging, b"staged").await;
            let before = staging.recorded("img").await.expect("recorded");
            // File times tick coarsely (a few ms): a change within the tick of the staging
            // itself would not show.
            tokio::time::sleep(Duration::from_millis(20)).await;
            change();
            assert_eq!(staging.recorded("img").await, None);
            assert_eq!(staging.unchanged_since("img", &before).await, !shows_without_ctime);
            staging.remove("img").await.expect("remove");
        }
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
