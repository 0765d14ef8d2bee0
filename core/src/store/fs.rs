//! The filesystem store: one file per image, named by image id, written crash-safely.
//!
//! A put writes `.<id>.<random>.part` in the same directory, fsyncs it, renames it to `<id>`
//! and fsyncs the directory, so a crash at any point leaves either no file or a whole one.
//! The writer holds an exclusive advisory lock (`flock`) on its partial file until the rename,
//! and the kernel drops it when the writer's process dies: a partial file whose lock can be
//! taken is abandoned, whatever its age, while a slow but live upload's never is.
//! File I/O runs on a blocking thread fed through a bounded channel: tokio's `fs::File` would
//! hop to the blocking pool once per chunk, which costs more than the write itself.
//! Files are written sparse: an all-zero block ([`HOLE_BLOCK`]) is seeked over, not written,
//! and the length set at the end, so a disk image takes the space of its data.
//! Where the filesystem allows it, the data goes to the disk with direct I/O (`O_DIRECT`), in
//! [`DIRECT_BUFFER`] pieces gathered in one aligned buffer: a buffered write copies every byte
//! into fresh page-cache pages, which here cost about as much CPU as hashing it with SHA-512
//! (profiled: `copy_folio_from_iter_atomic`, ~1 s per GB), while the direct write's only copy is
//! the one into the reused buffer. The image is then not in the page cache after its upload.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::{ByteStream, Store, StoreError, SweepLimits, Swept};

/// Bytes per read when streaming a download.
pub(super) const READ_CHUNK: usize = 256 * 1024;
const CHANNEL_DEPTH: usize = 8;
/// Granularity of holes: blocks of this many bytes (aligned in the file) that hold only zeros
/// are not written. A multiple of every usual filesystem block and of qcow2's default cluster.
pub(super) const HOLE_BLOCK: usize = 64 * 1024;
static ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];
/// Bytes gathered for one direct write: a multiple of [`HOLE_BLOCK`], large enough that the
/// device is kept busy between the writer's calls, small enough to stay one per upload.
const DIRECT_BUFFER: usize = 32 * HOLE_BLOCK;
/// The alignment direct I/O asks of memory, file offsets and lengths: the page size, which is
/// a multiple of every usual logical block size (512 B, 4 KiB).
const DIRECT_ALIGN: usize = 4096;

/// Image files in one directory.
pub struct FilesystemStore {
    dir: PathBuf,
}

impl FilesystemStore {
    /// Uses `dir` (created if missing) for image files.
    pub fn open(dir: &Path) -> io::Result<FilesystemStore> {
        std::fs::create_dir_all(dir)?;
        Ok(FilesystemStore { dir: dir.canonicalize()? })
    }

    /// The directory image files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn url(&self, name: &str) -> String {
        format!("file://{}", self.dir.join(name).display())
    }

    /// The file behind `location`, only if it names a file directly inside our directory.
    fn path_of(&self, location: &str) -> Result<PathBuf, StoreError> {
        let path = location
            .strip_prefix("file://")
            .map(PathBuf::from)
            .filter(|p| p.parent() == Some(self.dir.as_path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(valid_name));
        path.ok_or_else(|| StoreError::NotFound(location.to_owned()))
    }
}

/// Whether `name` can name an image's data (also in the S3 store, which shares the rule).
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/') && !name.contains('\0')
}

fn classify(err: io::Error) -> StoreError {
    match err.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StoreError::Full,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => StoreError::Denied(err.to_string()),
        _ => StoreError::Io(err),
    }
}

/// Removes the partial file unless the write was committed.
struct PartFile(Option<PathBuf>);

impl Drop for PartFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Creates and locks a fresh partial file for `name`. A sweep may have taken the lock and
/// removed the file between its creation and our lock, so the lock counts only once the path
/// still names the file we locked; otherwise we start over under a new name.
fn create_locked(dir: &Path, name: &str) -> Result<(PathBuf, File), StoreError> {
    loop {
        let part = dir.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
        let file = File::options().write(true).create_new(true).open(&part).map_err(classify)?;
        match file.lock() {
            Ok(()) => {}
            // Without locks (some network filesystems) sweeps fall back to the file's age.
            Err(e) if lock_unsupported(&e) => return Ok((part, file)),
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(classify(e));
            }
        }
        let ours = file.metadata().map_err(classify)?;
        match std::fs::metadata(&part) {
            Ok(meta) if meta.dev() == ours.dev() && meta.ino() == ours.ino() => return Ok((part, file)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(classify(e)),
        }
    }
}

/// Whether `err` says the filesystem has no advisory locks, rather than that locking failed:
/// `Unsupported` (`EOPNOTSUPP`, `ENOSYS`), or `ENOLCK`, which NFS without a lock manager
/// answers and std has no kind for.
fn lock_unsupported(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Unsupported || err.raw_os_error() == Some(libc::ENOLCK)
}

/// Writes chunks until the `None` end marker, then commits. A channel closed without the
/// marker means the put was abandoned: the partial file is removed, never renamed. The file
/// stays open, and so locked, until after the rename, so no sweep can take it mid-commit.
fn write_file(dir: &Path, name: &str, mut chunks: mpsc::Receiver<Option<Bytes>>) -> Result<(), StoreError> {
    let (part, file) = create_locked(dir, name)?;
    let mut guard = PartFile(Some(part.clone()));
    let mut out = Appender { file: &file, sparse: SparseFile { len: 0 }, direct: Direct::open(&part, &file) };
    loop {
        match chunks.blocking_recv() {
            Some(Some(chunk)) => out.append(&chunk).map_err(classify)?,
            Some(None) => break,
            None => return Err(StoreError::Source(io::Error::other("upload abandoned"))),
        }
    }
    let len = out.finish().map_err(classify)?;
    // Trailing zeros were never written: the length makes them a hole.
    file.set_len(len).map_err(classify)?;
    file.sync_all().map_err(classify)?;
    std::fs::rename(&part, dir.join(name)).map_err(classify)?;
    guard.0 = None;
    drop(file);
    File::open(dir).and_then(|d| d.sync_all()).map_err(classify)
}

/// Appends to a partial file: through the [`Direct`] buffer while the filesystem takes direct
/// writes, straight from the chunks with buffered writes otherwise, and the last partial
/// buffer's worth (not a whole number of blocks) buffered at the end.
struct Appender<'a> {
    /// The partial file as created (buffered I/O).
    file: &'a File,
    sparse: SparseFile,
    direct: Option<Direct>,
}

impl Appender<'_> {
    fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        let Some(direct) = self.direct.as_mut() else {
            return self.sparse.append(self.file, data);
        };
        while !data.is_empty() {
            let took = direct.fill(data);
            data = data.get(took..).unwrap_or_default();
            if direct.filled < DIRECT_BUFFER {
                continue;
            }
            let full = direct.buffer();
            match self.sparse.append(&direct.file, full) {
                Ok(()) => {}
                // The filesystem opened the file for direct I/O but refuses this write (an
                // alignment it wants larger than ours): this and the rest go through the page
                // cache (the failed write left the length where it was).
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!(error = %e, "direct write refused; writing buffered");
                    self.sparse.append(self.file, full)?;
                    self.direct = None;
                    return self.sparse.append(self.file, data);
                }
                Err(e) => return Err(e),
            }
            direct.filled = 0;
        }
        Ok(())
    }

    /// Writes what is still gathered; the file's length.
    fn finish(mut self) -> io::Result<u64> {
        if let Some(direct) = self.direct.take() {
            let rest = direct.buffer().get(..direct.filled).unwrap_or_default();
            self.sparse.append(self.file, rest)?;
        }
        Ok(self.sparse.len)
    }
}

/// The partial file opened a second time for direct I/O, and the aligned buffer its writes
/// are gathered in.
struct Direct {
    file: File,
    /// [`DIRECT_BUFFER`] bytes from `start` on are aligned to [`DIRECT_ALIGN`].
    memory: Vec<u8>,
    start: usize,
    filled: usize,
}

impl Direct {
    /// `part` (which `ours` has open and locked) opened for direct I/O, if its filesystem can.
    fn open(part: &Path, ours: &File) -> Option<Direct> {
        let file = File::options().write(true).custom_flags(libc::O_DIRECT).open(part).ok()?;
        let (a, b) = (file.metadata().ok()?, ours.metadata().ok()?);
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            return None;
        }
        let memory = vec![0u8; DIRECT_BUFFER + DIRECT_ALIGN];
        let start = memory.as_ptr().align_offset(DIRECT_ALIGN);
        (start < DIRECT_ALIGN).then_some(Direct { file, memory, start, filled: 0 })
    }

    /// The aligned buffer, all of it.
    fn buffer(&self) -> &[u8] {
        self.memory.get(self.start..self.start + DIRECT_BUFFER).unwrap_or_default()
    }

    /// Copies as much of `data` as fits after what is gathered; how much that was.
    fn fill(&mut self, data: &[u8]) -> usize {
        let at = self.start + self.filled;
        let take = data.len().min(DIRECT_BUFFER - self.filled);
        if let (Some(to), Some(from)) = (self.memory.get_mut(at..at + take), data.get(..take)) {
            to.copy_from_slice(from);
        }
        self.filled += take;
        take
    }
}

/// A file that starts empty and grows by appends, all-zero blocks left as holes.
struct SparseFile {
    /// Bytes appended so far, holes included.
    len: u64,
}

impl SparseFile {
    /// Appends `data` through `file`: each run of blocks (aligned to [`HOLE_BLOCK`] in the
    /// file) that are not all zeros is written in one call, the zero blocks between them are
    /// skipped.
    fn append(&mut self, file: &File, data: &[u8]) -> io::Result<()> {
        let start = self.len;
        let mut run: Option<usize> = None;
        let mut at = 0;
        while at < data.len() {
            let offset = start + at as u64;
            let to_boundary = HOLE_BLOCK - (offset % HOLE_BLOCK as u64) as usize;
            let end = (at + to_boundary).min(data.len());
            let block = data.get(at..end).unwrap_or_default();
            let zero = ZEROS.get(..block.len()) == Some(block);
            match (zero, run) {
                (true, Some(from)) => {
                    file.write_all_at(data.get(from..at).unwrap_or_default(), start + from as u64)?;
                    run = None;
                }
                (false, None) => run = Some(at),
                _ => {}
            }
            at = end;
        }
        if let Some(from) = run {
            file.write_all_at(data.get(from..).unwrap_or_default(), start + from as u64)?;
        }
        self.len = start + data.len() as u64;
        Ok(())
    }
}

/// Makes the whole file at `source` image `name`'s file in `dir` without copying it: a hard
/// link under a locked partial name (so a sweep tells it from an abandoned one), fsynced, then
/// renamed into place and the directory fsynced, as a put commits. `Ok(false)` when `source`
/// is on another filesystem, or the filesystem has no hard links.
fn link_file(dir: &Path, name: &str, source: &Path) -> Result<bool, StoreError> {
    let mut guard = PartFile(None);
    let (part, file) = loop {
        let part = dir.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
        match std::fs::hard_link(source, &part) {
            Ok(()) => guard.0 = Some(part.clone()),
            Err(e) if cannot_link(&e) => return Ok(false),
            Err(e) => return Err(classify(e)),
        }
        let file = File::open(&part).map_err(classify)?;
        match file.lock() {
            Ok(()) => {}
            Err(e) if lock_unsupported(&e) => {}
            Err(e) => return Err(classify(e)),
        }
        // A sweep may have taken the link for abandoned before our lock and removed it.
        let ours = file.metadata().map_err(classify)?;
        match std::fs::metadata(&part) {
            Ok(meta) if meta.dev() == ours.dev() && meta.ino() == ours.ino() => break (part, file),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(classify(e)),
        }
        guard.0 = None;
    };
    file.sync_all().map_err(classify)?;
    std::fs::rename(&part, dir.join(name)).map_err(classify)?;
    guard.0 = None;
    drop(file);
    File::open(dir).and_then(|d| d.sync_all()).map_err(classify)?;
    Ok(true)
}

/// Whether a failed `link` says that this file cannot be linked here, rather than that
/// something went wrong: another filesystem, no hard links, too many links already.
fn cannot_link(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::CrossesDevices | io::ErrorKind::Unsupported)
        || matches!(err.raw_os_error(), Some(libc::EPERM | libc::EMLINK))
}

/// Removes the partial files in `dir` whose writer is gone: those whose lock can be taken,
/// and, where the filesystem cannot lock, those not written to for `limits.idle`. Stops when
/// `limits` are spent, so a directory full of leftovers cannot stall a starting process.
fn sweep_dir(dir: &Path, limits: &SweepLimits) -> io::Result<Swept> {
    let started = std::time::Instant::now();
    let mut removed = Swept::default();
    for entry in std::fs::read_dir(dir)? {
        if limits.spent(started, removed.files) {
            tracing::info!(dir = %dir.display(), removed = removed.files, "sweep budget spent; the next sweep goes on");
            break;
        }
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(".part")) {
            continue;
        }
        if let Some(bytes) = remove_if_abandoned(&entry.path(), limits.idle)? {
            removed.files += 1;
            removed.bytes += bytes;
        }
    }
    Ok(removed)
}

/// Removes the partial file at `path` if it has no live writer; its size if it did. The lock
/// taken to tell is held until the file is gone: a writer that has just created it waits on
/// that lock (see [`create_locked`]) and then finds it removed, never the other way round.
fn remove_if_abandoned(path: &Path, idle: std::time::Duration) -> io::Result<Option<u64>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let abandoned = match file.try_lock() {
        Ok(()) => true,
        Err(std::fs::TryLockError::WouldBlock) => false,
        Err(std::fs::TryLockError::Error(e)) if lock_unsupported(&e) => {
            file.metadata()?.modified()?.elapsed().unwrap_or_default() >= idle
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    };
    // Sized under the lock: no writer can add to it any more.
    let size = if abandoned { file.metadata()?.len() } else { 0 };
    // Gone already: its writer committed it (renamed away) or another sweep took it.
    let removed = abandoned && std::fs::remove_file(path).is_ok();
    drop(file);
    Ok(removed.then_some(size))
}

#[async_trait::async_trait]
impl Store for FilesystemStore {
    async fn put_sized(
        &self,
        image_id: &str,
        data: ByteStream,
        cap: u64,
        _size: Option<u64>,
    ) -> Result<String, StoreError> {
        if !valid_name(image_id) {
            return Err(StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, "invalid image id")));
        }
        let (dir, name) = (self.dir.clone(), image_id.to_owned());
        super::feed_writer(data, cap, move |rx| tokio::task::spawn_blocking(move || write_file(&dir, &name, rx)))
            .await?;
        Ok(self.url(image_id))
    }

    async fn get(&self, location: &str, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        let path = self.path_of(location)?;
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(location.to_owned())),
            Err(e) => return Err(classify(e)),
        };
        let opened = file.metadata().map_err(classify)?;
        // `open` follows symlinks: what was opened must be the regular file the path names
        // itself, or a symlink placed in the directory would serve whatever it points to.
        let named = std::fs::symlink_metadata(&path).map_err(classify)?;
        if !named.file_type().is_file() || (named.dev(), named.ino()) != (opened.dev(), opened.ino()) {
            return Err(StoreError::Denied(format!("{location} is not a regular file")));
        }
        let len = opened.len();
        let Range { start, end } = range.unwrap_or(0..len);
        file.seek(SeekFrom::Start(start)).map_err(classify)?;
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
        tokio::task::spawn_blocking(move || {
            let mut left = end.saturating_sub(start);
            while left > 0 {
                let mut buf = BytesMut::zeroed(READ_CHUNK.min(left as usize));
                match file.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.blocking_send(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "image file is shorter than recorded",
                        )));
                        return;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        left -= n as u64;
                        if tx.blocking_send(Ok(buf.freeze())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })))
    }

    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        let path = self.path_of(location)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    async fn adopt(&self, image_id: &str, file: &Path) -> Result<Option<String>, StoreError> {
        if !valid_name(image_id) {
            return Err(StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, "invalid image id")));
        }
        let (dir, name, source) = (self.dir.clone(), image_id.to_owned(), file.to_path_buf());
        let linked = tokio::task::spawn_blocking(move || link_file(&dir, &name, &source))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        Ok(linked.then(|| self.url(image_id)))
    }

    fn holds(&self, location: &str) -> bool {
        self.path_of(location).is_ok()
    }

    async fn size(&self, location: &str) -> Result<u64, StoreError> {
        let path = self.path_of(location)?;
        let meta = match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(location.to_owned())),
            Err(e) => return Err(classify(e)),
        };
        if !meta.file_type().is_file() {
            return Err(StoreError::Denied(format!("{location} is not a regular file")));
        }
        Ok(meta.len())
    }

    async fn health(&self) -> Result<(), StoreError> {
        let probe = self.dir.join(format!(".health.{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&probe, b"ok").await.map_err(classify)?;
        tokio::fs::remove_file(&probe).await.map_err(classify)
    }

    /// A partial file is abandoned once its writer's lock is gone (the writer died or gave
    /// up), whatever its age; on a filesystem without locks, once it has not been written to
    /// for `limits.idle` (a live put, on this node or another sharing the directory, keeps
    /// its file's mtime fresh).
    async fn remove_abandoned(&self, limits: &SweepLimits) -> Result<Swept, StoreError> {
        let (dir, limits) = (self.dir.clone(), *limits);
        tokio::task::spawn_blocking(move || sweep_dir(&dir, &limits))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
            .map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::Arc;

    fn chunks(parts: Vec<io::Result<Bytes>>) -> ByteStream {
        Box::pin(futures_util::stream::iter(parts))
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn put_then_get_returns_the_bytes_and_ranges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let data = chunks(vec![Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))]);
        let location = store.put("img", data, 100).await.expect("put");
        assert!(location.starts_with("file:///") && location.ends_with("/img"));
        let read = |range| async {
            store.get(&location, range).await.expect("get").map(|c| c.expect("chunk").to_vec()).concat().await
        };
        assert_eq!(&read(None).await[..], b"hello world");
        assert_eq!(&read(Some(6..11)).await[..], b"world");
        assert_eq!(listing(dir.path()), ["img"]);
    }

    #[tokio::test]
    async fn put_over_the_cap_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let data = chunks(vec![Ok(Bytes::from_static(b"12345")), Ok(Bytes::from_static(b"678"))]);
        assert!(matches!(store.put("img", data, 6).await, Err(StoreError::TooLarge(6))));
        assert!(listing(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn put_of_a_failing_stream_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let data = chunks(vec![Ok(Bytes::from_static(b"12345")), Err(io::Error::other("client went away"))]);
        assert!(matches!(store.put("img", data, 100).await, Err(StoreError::Source(_))));
        assert!(listing(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn locations_outside_the_directory_are_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        for location in ["file:///etc/passwd", "file:///tmp/../etc/passwd", "http://x/img"] {
            assert!(matches!(store.get(location, None).await, Err(StoreError::NotFound(_))), "{location}");
            assert!(matches!(store.delete(location).await, Err(StoreError::NotFound(_))), "{location}");
        }
        let escape = format!("file://{}/../escape", store.dir.display());
        assert!(store.get(&escape, None).await.is_err());
    }

    #[tokio::test]
    async fn symlinks_in_the_directory_are_neither_sized_nor_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).expect("symlink");
        std::fs::write(dir.path().join("real"), b"data").expect("write");
        let url = |name: &str| format!("file://{}/{name}", store.dir.display());
        assert!(store.holds(&url("passwd")));
        assert!(matches!(store.size(&url("passwd")).await, Err(StoreError::Denied(_))));
        assert!(matches!(store.get(&url("passwd"), None).await, Err(StoreError::Denied(_))));
        assert_eq!(store.size(&url("real")).await.expect("size"), 4);
        assert!(!store.holds("file:///etc/passwd"));
    }

    #[tokio::test]
    async fn partial_files_without_a_live_writer_are_removed_even_if_young() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        // Written and closed: like a writer that died, nobody holds its lock.
        std::fs::write(dir.path().join(".img.abc.part"), b"x").expect("write");
        std::fs::write(dir.path().join("img2"), b"x").expect("write");
        let removed = store.remove_abandoned(&SweepLimits::idle(600)).await.expect("sweep");
        assert_eq!(removed, Swept { files: 1, bytes: 1 });
        assert_eq!(listing(dir.path()), ["img2"]);
    }

    #[tokio::test]
    async fn partial_files_whose_writer_holds_the_lock_are_kept_however_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let part = dir.path().join(".img.abc.part");
        let writer = File::create(&part).expect("create");
        writer.lock().expect("lock");
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        writer.set_modified(hour_ago).expect("age");
        assert_eq!(store.remove_abandoned(&SweepLimits::idle(600)).await.expect("sweep").files, 0);
        assert_eq!(listing(dir.path()), [".img.abc.part"]);
        drop(writer);
        assert_eq!(store.remove_abandoned(&SweepLimits::idle(600)).await.expect("sweep").files, 1);
        assert!(listing(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_sweep_stops_at_its_removal_budget_and_the_next_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        for n in 0..3 {
            std::fs::write(dir.path().join(format!(".img{n}.abc.part")), b"xy").expect("write");
        }
        let limits = SweepLimits { max_removals: 2, ..SweepLimits::idle(600) };
        assert_eq!(store.remove_abandoned(&limits).await.expect("sweep"), Swept { files: 2, bytes: 4 });
        assert_eq!(listing(dir.path()).len(), 1);
        assert_eq!(store.remove_abandoned(&limits).await.expect("sweep").files, 1);
        assert!(listing(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_slow_live_put_survives_sweeps_and_completes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(FilesystemStore::open(dir.path()).expect("open"));
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(1);
        let data: ByteStream =
            Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }));
        let put = tokio::spawn({
            let store = store.clone();
            async move { store.put("img", data, 100).await }
        });
        tx.send(Ok(Bytes::from_static(b"slow "))).await.expect("send");
        while !listing(dir.path()).iter().any(|n| n.ends_with(".part")) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        for _ in 0..3 {
            assert_eq!(store.remove_abandoned(&SweepLimits::idle(0)).await.expect("sweep").files, 0);
            tx.send(Ok(Bytes::from_static(b"data "))).await.expect("send");
        }
        drop(tx);
        let location = put.await.expect("join").expect("put");
        let read: Vec<u8> =
            store.get(&location, None).await.expect("get").map(|c| c.expect("chunk").to_vec()).concat().await;
        assert_eq!(read, b"slow data data data ");
        assert_eq!(listing(dir.path()), ["img"]);
    }

    #[tokio::test]
    async fn zero_blocks_become_holes_and_read_back_as_zeros() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let block = HOLE_BLOCK;
        // Zeros then data in one chunk, a chunk of zeros straddling block boundaries, data
        // that ends off a boundary, trailing zeros that only the length can give.
        let mut head = vec![0u8; 3 * block];
        head.extend(std::iter::repeat_n(7u8, block + 5));
        let parts = [head, vec![0u8; 40 * block + 3], vec![9u8; 100], vec![0u8; 20 * block]];
        let expected = parts.concat();
        let data = chunks(parts.into_iter().map(|p| Ok(Bytes::from(p))).collect());
        let location = store.put("img", data, 1 << 30).await.expect("put");
        let meta = std::fs::metadata(dir.path().join("img")).expect("stored");
        assert_eq!(meta.len(), expected.len() as u64);
        assert!(meta.blocks() * 512 <= 4 * block as u64, "{} bytes allocated", meta.blocks() * 512);
        let read: Vec<u8> =
            store.get(&location, None).await.expect("get").map(|c| c.expect("chunk").to_vec()).concat().await;
        assert!(read == expected, "the file reads back as every byte put");
    }

    #[tokio::test]
    async fn uneven_chunks_across_many_direct_buffers_read_back_whole_with_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        // Data, then zeros from inside one direct buffer to inside the next, then data that
        // ends one byte past an aligned length (the tail the direct buffer cannot write).
        let mut expected: Vec<u8> = (0..DIRECT_BUFFER + 3 * HOLE_BLOCK + 11).map(|i| (i % 251 + 1) as u8).collect();
        expected.extend(vec![0u8; 2 * DIRECT_BUFFER]);
        expected.extend((0..DIRECT_BUFFER + DIRECT_ALIGN + 1).map(|i| (i % 13 + 1) as u8));
        let mut parts = Vec::new();
        let (mut at, mut step) = (0, 1);
        while at < expected.len() {
            let end = (at + step).min(expected.len());
            parts.push(Ok(Bytes::copy_from_slice(&expected[at..end])));
            at = end;
            step = step * 31 % 700_001 + 1;
        }
        let location = store.put("img", chunks(parts), 1 << 30).await.expect("put");
        let meta = std::fs::metadata(dir.path().join("img")).expect("stored");
        assert_eq!(meta.len(), expected.len() as u64);
        let data = (2 * DIRECT_BUFFER + 5 * HOLE_BLOCK) as u64;
        assert!(meta.blocks() * 512 <= data + 2 * HOLE_BLOCK as u64, "{} bytes allocated", meta.blocks() * 512);
        let read: Vec<u8> =
            store.get(&location, None).await.expect("get").map(|c| c.expect("chunk").to_vec()).concat().await;
        assert!(read == expected, "the file reads back as every byte put");
        assert_eq!(listing(dir.path()), ["img"]);
    }

    #[tokio::test]
    async fn adopting_a_file_on_the_same_filesystem_links_it_and_leaves_it_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(&dir.path().join("store")).expect("open");
        let source = dir.path().join("staged");
        std::fs::write(&source, b"staged bytes").expect("write");
        let location = store.adopt("img", &source).await.expect("adopt").expect("linked");
        let (stored, staged) = (dir.path().join("store/img"), std::fs::metadata(&source).expect("source stays"));
        assert_eq!(std::fs::metadata(&stored).expect("stored").ino(), staged.ino());
        assert_eq!(listing(store.dir()), ["img"], "no partial link is left");
        let read: Vec<u8> =
            store.get(&location, None).await.expect("get").map(|c| c.expect("chunk").to_vec()).concat().await;
        assert_eq!(read, b"staged bytes");
    }

    #[tokio::test]
    async fn adopting_a_file_on_another_filesystem_is_declined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let elsewhere = Path::new("/dev/shm");
        let source_dir = tempfile::tempdir_in(elsewhere).expect("tempdir on tmpfs");
        if std::fs::metadata(source_dir.path()).expect("meta").dev()
            == std::fs::metadata(dir.path()).expect("meta").dev()
        {
            panic!("/dev/shm and the temporary directory share a filesystem: nothing to test");
        }
        let source = source_dir.path().join("staged");
        std::fs::write(&source, b"x").expect("write");
        assert_eq!(store.adopt("img", &source).await.expect("adopt"), None);
        assert!(listing(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn delete_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let location = store.put("img", chunks(vec![Ok(Bytes::from_static(b"x"))]), 10).await.expect("put");
        store.delete(&location).await.expect("delete");
        store.delete(&location).await.expect("delete again");
        assert!(listing(dir.path()).is_empty());
        store.health().await.expect("healthy");
    }
}
