//! Image data in one pass: store the bytes while md5 and sha512 run on two other threads.
//!
//! SHA-512 is the bottleneck of an upload (about 600 MB/s on one core here), so each digest
//! gets its own blocking thread, fed the same `Bytes` chunks (reference-counted, not copied)
//! through bounded channels; the slowest consumer sets the pace and memory stays constant.

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::time::Duration;

use sea_orm::DatabaseConnection;

use super::hash::{Md5, Sha};
use super::repo as images;
use super::{Action, HASH_ALGO, Image, Ingested, Status};
use crate::heartbeat::while_ticking;
use crate::store::{ByteStream, Inspection, StagedFacts, Staging, Store, StoreError, Stores};
use crate::{Error, Result, metrics};

const CHANNEL_DEPTH: usize = 4;

/// How often a running upload proves it is alive.
const UPLOAD_HEARTBEAT: Duration = Duration::from_secs(30);

/// Sees every byte of an upload, in order, on the md5 thread (format inspection plugs in here).
pub trait Observer: Send + 'static {
    /// Called with each chunk in order.
    fn observe(&mut self, chunk: &[u8]);
}

impl Observer for () {
    fn observe(&mut self, _chunk: &[u8]) {}
}

/// The sha512 thread also counts the bytes.
impl Observer for (Sha, u64) {
    fn observe(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
        self.1 += chunk.len() as u64;
    }
}

impl Observer for glint_formats::Inspector {
    fn observe(&mut self, chunk: &[u8]) {
        self.feed(chunk);
    }
}

impl<O: Observer> Observer for Option<O> {
    fn observe(&mut self, chunk: &[u8]) {
        if let Some(inner) = self {
            inner.observe(chunk);
        }
    }
}

impl<O: Observer> Observer for (Md5, O) {
    fn observe(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
        self.1.observe(chunk);
    }
}

/// Chunks handed to the hashing threads and the store: big enough that the per-chunk cost of
/// three channel hand-offs vanishes (HTTP bodies may arrive in pieces of a few KiB), small enough
/// that the few chunks in flight keep memory flat.
const COALESCED_CHUNK: usize = 1 << 20;

/// Pieces at least this large already make the hand-offs cheap: they go on as they are, since
/// regrouping them would copy every byte once more (the API reads bodies in pieces of up to
/// 1 MiB).
const PASS_THROUGH: usize = 256 * 1024;

/// Regroups the small pieces of `body` into chunks of about [`COALESCED_CHUNK`] bytes (the last
/// may be shorter); pieces of [`PASS_THROUGH`] bytes or more are passed on without a copy.
fn coalesced(body: ByteStream) -> ByteStream {
    type State = (Option<ByteStream>, Option<Bytes>);
    let start: State = (Some(body), None);
    Box::pin(futures_util::stream::unfold(start, |(mut body, held): State| async move {
        // A large piece that arrived while small ones were being gathered goes right after them.
        if let Some(piece) = held {
            return Some((Ok(piece), (body, None)));
        }
        let pieces = body.as_mut()?;
        let mut buffer = bytes::BytesMut::new();
        loop {
            match pieces.next().await {
                Some(Ok(piece)) if piece.len() >= PASS_THROUGH => {
                    return Some(if buffer.is_empty() {
                        (Ok(piece), (body, None))
                    } else {
                        (Ok(buffer.freeze()), (body, Some(piece)))
                    });
                }
                Some(Ok(piece)) => {
                    if buffer.is_empty() {
                        buffer.reserve(COALESCED_CHUNK + PASS_THROUGH);
                    }
                    buffer.extend_from_slice(&piece);
                    if buffer.len() >= COALESCED_CHUNK {
                        return Some((Ok(buffer.freeze()), (body, None)));
                    }
                }
                // The error ends the stream; what was buffered before it is moot.
                Some(Err(err)) => return Some((Err(err), (None, None))),
                None if buffer.is_empty() => return None,
                None => return Some((Ok(buffer.freeze()), (None, None))),
            }
        }
    }))
}

/// Runs `state` on a blocking thread over the chunks sent to it; returns it at the end.
fn spawn_consumer<S: Observer>(mut state: S) -> (mpsc::Sender<Bytes>, tokio::task::JoinHandle<S>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let handle = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            state.observe(&chunk);
        }
        state
    });
    (tx, handle)
}

/// A digest of one of the algorithms `validation_data` may name (Glance's choice of four).
pub enum Hasher {
    /// `sha1`, `sha256` or `sha512` (what Glint computes for every image).
    Sha(Sha),
    /// `md5`.
    Md5(Md5),
}

impl Hasher {
    /// A fresh digest of `algo` (`sha1`, `sha256`, `sha512`, `md5`), if it is one of them.
    pub fn of(algo: &str) -> Option<Hasher> {
        Some(match algo {
            "sha1" => Hasher::Sha(Sha::sha1()),
            "sha256" => Hasher::Sha(Sha::sha256()),
            "sha512" => Hasher::Sha(Sha::sha512()),
            "md5" => Hasher::Md5(Md5::default()),
            _ => return None,
        })
    }

    /// The hex digest of everything observed.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha(h) => h.finish_hex(),
            Hasher::Md5(h) => h.finish_hex(),
        }
    }
}

impl Observer for Hasher {
    fn observe(&mut self, chunk: &[u8]) {
        match self {
            Hasher::Sha(h) => h.update(chunk),
            Hasher::Md5(h) => h.update(chunk),
        }
    }
}

/// Reads `body` to its end on a blocking thread, returning its md5 (Glance's `checksum`) and
/// its `hasher` digest, both hex.
pub async fn digest(mut body: ByteStream, hasher: Hasher) -> std::io::Result<(String, String)> {
    let (tx, done) = spawn_consumer((Md5::default(), hasher));
    while let Some(chunk) = body.next().await {
        if tx.send(chunk?).await.is_err() {
            return Err(std::io::Error::other("the hashing thread stopped"));
        }
    }
    drop(tx);
    let (md5, hasher) = done.await.map_err(std::io::Error::other)?;
    Ok((md5.finish_hex(), hasher.finish()))
}

/// Streams `body` into `store` as image `image_id` (at most `cap` bytes, `size` if that was
/// announced), hashing it and showing it to `observer` on the way. Nothing is kept in the
/// store on error.
pub async fn ingest<O: Observer>(
    store: &dyn Store,
    image_id: &str,
    (body, size): (ByteStream, Option<u64>),
    cap: u64,
    observer: O,
) -> Result<(Ingested, O), StoreError> {
    let (md5_tx, md5_done) = spawn_consumer((Md5::default(), observer));
    let (sha_tx, sha_done) = spawn_consumer((Sha::sha512(), 0u64));
    let tee: ByteStream = Box::pin(futures_util::stream::unfold(
        (coalesced(body), md5_tx, sha_tx),
        |(mut body, md5_tx, sha_tx)| async move {
            let item = match body.next().await? {
                Ok(chunk) => {
                    let fed = md5_tx.send(chunk.clone()).await.is_ok() && sha_tx.send(chunk.clone()).await.is_ok();
                    if fed { Ok(chunk) } else { Err(std::io::Error::other("a hashing thread stopped")) }
                }
                Err(err) => Err(err),
            };
            Some((item, (body, md5_tx, sha_tx)))
        },
    ));
    // `put` consumes and drops the tee, which closes both channels and ends the threads.
    let stored = store.put_sized(image_id, tee, cap, size).await;
    let joined = |e: tokio::task::JoinError| StoreError::Io(std::io::Error::other(e));
    let (md5, observer) = md5_done.await.map_err(joined)?;
    let (sha, size) = sha_done.await.map_err(joined)?;
    let location = stored?;
    Ok((Ingested { size, checksum: md5.finish_hex(), os_hash_value: sha.finish_hex(), location }, observer))
}

/// How an upload is to be done.
pub struct Upload<'a> {
    /// Store id to write to; `None` = the default store.
    pub store: Option<&'a str>,
    /// The size the client announced, if any: a different byte count is a 400.
    pub expected_size: Option<u64>,
    /// The image size cap.
    pub cap: u64,
    /// Whether content must be the declared `disk_format` (see [`verdict`]).
    pub require_format_match: bool,
}

/// `PUT /v2/images/{id}/file`: `queued -> saving -> active`, streaming `body` into a store.
/// Data of `bare` images is inspected on the way (docs/glance-v2-api.md §7.2): content that
/// fails the safety checks, or (when `how.require_format_match`) is not the declared
/// `disk_format`, is a 415. On any failure the image is
/// back in `queued` and no bytes are left in the store.
pub async fn upload(
    db: &DatabaseConnection,
    stores: &Stores,
    image: &Image,
    body: ByteStream,
    how: Upload<'_>,
) -> Result<()> {
    let store_id = how.store.unwrap_or(stores.default_id());
    let store = stores.get(store_id).ok_or_else(|| Error::BadRequest(format!("Store {store_id} is not available")))?;
    if !store.writable() {
        return Err(Error::BadRequest(format!("Store {store_id} is read-only")));
    }
    image.status.next(Action::Upload)?;
    image.check_formats_for_data()?;
    if let Some(expected) = how.expected_size.filter(|e| *e > how.cap) {
        return Err(Error::OverLimit(format!("Image size {expected} exceeds the maximum of {} bytes", how.cap)));
    }
    images::set_status(db, &image.id, Status::Queued, Status::Saving).await?;
    let outcome = async {
        // Other containers (ovf, ova, docker, ...) wrap the disk: there is nothing to inspect.
        let inspector = (image.container_format.as_deref() == Some("bare")).then(glint_formats::Inspector::new);
        let ingesting = ingest(store.as_ref(), &image.id, (body, how.expected_size), how.cap, inspector);
        let (ingested, inspector) = keeping_alive(db, &image.id, "upload", ingesting).await?;
        let committed = match how.expected_size {
            Some(expected) if expected != ingested.size => Err(Error::BadRequest(format!(
                "Size mismatch: expected {expected} bytes, got {} bytes",
                ingested.size
            ))),
            _ => match verdict(image, inspector.map(glint_formats::Inspector::finish), how.require_format_match) {
                Ok(virtual_size) => images::finish_upload(db, &image.id, &ingested, virtual_size, store_id).await,
                Err(err) => Err(err),
            },
        };
        if committed.is_err()
            && let Err(err) = store.delete(&ingested.location).await {
                tracing::error!(image = %image.id, location = %ingested.location, error = %err, "could not remove the data of a failed upload");
            }
        committed
    }
    .await;
    if let Err(err) = &outcome {
        tracing::info!(image = %image.id, error = %err, "upload failed; image back to queued");
        if let Err(restore) = images::back_to_queued(db, &image.id, Status::Saving).await {
            tracing::error!(image = %image.id, error = %restore, "could not put the image back to queued");
        }
    }
    outcome
}

/// `PUT /v2/images/{id}/stage`: `queued -> uploading`, `body` written to the staging area
/// (at most `cap` bytes) and the image's `size` set. The data is hashed and inspected on the
/// way, and what that found recorded beside it (see [`Staging::record`]), so that the import
/// need not read it again; the image shows none of it before the import. Staged data already
/// present is a 409. On failure the image is back in `queued` and nothing is staged.
pub async fn stage(
    db: &DatabaseConnection,
    staging: &Staging,
    image: &Image,
    body: ByteStream,
    expected_size: Option<u64>,
    cap: u64,
) -> Result<()> {
    image.status.next(Action::Stage)?;
    if staging.contains(&image.id).await {
        return Err(Error::Conflict(format!("The image {} has data on staging", image.id)));
    }
    if let Some(expected) = expected_size.filter(|e| *e > cap) {
        return Err(Error::OverLimit(format!("Image size {expected} exceeds the maximum of {cap} bytes")));
    }
    images::set_status(db, &image.id, Status::Queued, Status::Uploading).await?;
    let outcome = async {
        let inspector = glint_formats::Inspector::new();
        let staging_data = ingest(staging.files(), &image.id, (body, expected_size), cap, inspector);
        let (ingested, inspector) = keeping_alive(db, &image.id, "staging", staging_data).await?;
        let size = ingested.size;
        if let Some(expected) = expected_size
            && expected != size
        {
            return Err(Error::BadRequest(format!("Size mismatch: expected {expected} bytes, got {size} bytes")));
        }
        let facts = StagedFacts {
            size,
            checksum: ingested.checksum,
            os_hash_algo: HASH_ALGO.to_owned(),
            os_hash_value: ingested.os_hash_value,
            inspection: Inspection::from(&inspector.finish()),
        };
        // Without the record the import reads and hashes the data again: slower, still right.
        if let Err(err) = staging.record(&image.id, &facts).await {
            tracing::warn!(image = %image.id, error = %err, "could not record the digests of staged data");
        }
        images::finish_stage(db, &image.id, size).await
    }
    .await;
    if let Err(err) = &outcome {
        tracing::info!(image = %image.id, error = %err, "staging failed; image back to queued");
        if let Err(err) = staging.remove(&image.id).await {
            tracing::error!(image = %image.id, error = %err, "could not remove the data of a failed staging");
        }
        if let Err(restore) = images::back_to_queued(db, &image.id, Status::Uploading).await {
            tracing::error!(image = %image.id, error = %restore, "could not put the image back to queued");
        }
    }
    outcome
}

/// Runs `work` (the `what` of image `image_id`) while proving every [`UPLOAD_HEARTBEAT`] that
/// it is alive, so the scrubber does not take it for abandoned.
async fn keeping_alive<T>(db: &DatabaseConnection, image_id: &str, what: &str, work: impl Future<Output = T>) -> T {
    let Ok(out) = while_ticking(work, UPLOAD_HEARTBEAT, move || async move {
        if let Err(err) = images::touch_upload(db, image_id).await {
            tracing::warn!(image = %image_id, error = %err, "{what} heartbeat failed");
        }
        ControlFlow::<Infallible>::Continue(())
    })
    .await;
    out
}

/// The `virtual_size` to record for data inspected as `report`, or the 415 that refuses it.
/// Without `require_format_match` (Glance's `require_image_format_match = false`) content
/// that is not the declared `disk_format` is accepted with no `virtual_size`, unless it is
/// unsafe.
pub fn verdict(
    image: &Image,
    report: Option<glint_formats::Report>,
    require_format_match: bool,
) -> Result<Option<i64>> {
    let (Some(report), Some(disk_format)) = (report, image.disk_format.as_deref()) else {
        return Ok(None);
    };
    let decided = if require_format_match {
        glint_formats::check_declared(disk_format, &report)
    } else {
        glint_formats::check_declared_allowing_mismatch(disk_format, &report)
    };
    if decided.is_ok()
        && let Err(mismatch) = glint_formats::check_declared(disk_format, &report)
    {
        tracing::warn!(image = %image.id, %mismatch, "accepted although the content does not match (require_image_format_match = false)");
    }
    match decided {
        Ok(virtual_size) => Ok(virtual_size.and_then(|v| i64::try_from(v).ok())),
        Err(err) => {
            metrics::inspection_refused(refusal_reason(&err));
            tracing::warn!(image = %image.id, report = %report.to_json(), "upload refused by format inspection");
            Err(Error::UnsupportedMedia(err.to_string()))
        }
    }
}

/// The metrics label of an inspection refusal: one word per kind, never the details.
fn refusal_reason(err: &glint_formats::FormatError) -> &'static str {
    use glint_formats::FormatError;
    match err {
        FormatError::Mismatch { .. } => "mismatch",
        FormatError::Unsafe { .. } => "unsafe",
        FormatError::MultipleFormats { .. } => "multiple_formats",
        FormatError::Malformed { .. } => "malformed",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FilesystemStore;

    #[tokio::test]
    async fn ingest_hashes_counts_and_stores() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let body: ByteStream =
            Box::pin(futures_util::stream::iter([&b"hello "[..], b"world"].map(|c| Ok(Bytes::from_static(c)))));
        let (ingested, ()) = ingest(&store, "img", (body, None), 1 << 20, ()).await.expect("ingest");
        assert_eq!(ingested.size, 11);
        assert_eq!(ingested.checksum, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert!(ingested.os_hash_value.starts_with("309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f"));
    }

    #[tokio::test]
    async fn coalescing_keeps_every_byte_in_order() {
        let pieces: Vec<std::io::Result<Bytes>> =
            (0..3000u32).map(|i| Ok(Bytes::from(vec![(i % 251) as u8; 1 + (i as usize % 700)]))).collect();
        let expected: Vec<u8> = pieces.iter().flat_map(|p| p.as_ref().expect("ok").to_vec()).collect();
        let chunks: Vec<Bytes> =
            coalesced(Box::pin(futures_util::stream::iter(pieces))).map(|c| c.expect("chunk")).collect().await;
        assert!(chunks.iter().rev().skip(1).all(|c| c.len() >= COALESCED_CHUNK));
        assert_eq!(chunks.concat(), expected);
    }

    #[tokio::test]
    async fn coalescing_passes_large_pieces_on_without_a_copy() {
        let large = || Bytes::from(vec![7u8; PASS_THROUGH]);
        let pieces = [Bytes::from_static(b"small"), large(), large(), Bytes::from_static(b"tail")];
        let addresses: Vec<*const u8> = pieces.iter().map(|p| p.as_ptr()).collect();
        let chunks: Vec<Bytes> = coalesced(Box::pin(futures_util::stream::iter(pieces.clone().map(Ok))))
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        assert_eq!(chunks.iter().map(Bytes::len).collect::<Vec<_>>(), [5, PASS_THROUGH, PASS_THROUGH, 4]);
        assert_eq!(chunks[1].as_ptr(), addresses[1]);
        assert_eq!(chunks[2].as_ptr(), addresses[2]);
        assert_eq!(chunks.concat(), pieces.concat());
    }

    #[tokio::test]
    async fn ingest_of_nothing_is_the_empty_digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let (ingested, ()) =
            ingest(&store, "img", (Box::pin(futures_util::stream::empty()), None), 10, ()).await.expect("ingest");
        assert_eq!(ingested.size, 0);
        assert_eq!(ingested.checksum, "d41d8cd98f00b204e9800998ecf8427e");
        assert!(ingested.os_hash_value.starts_with("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"));
    }
}
