//! Writing one image: a single object, or a static large object whose segments stream up as
//! the data arrives.
//!
//! An image whose size the caller knows goes up in one PUT streamed as the data arrives when
//! that size is at most `large_object_size`, segmented when it is more. Otherwise the writer
//! first buffers up to [`SINGLE_PUT_BUFFER`] bytes (never more than `large_object_size`): an
//! image that ends there goes up in one PUT; a longer one is segmented, as Glance's driver does
//! with every upload of unknown size. Segments of `large_object_chunk_size` bytes (or larger,
//! when the cluster's limits call for it: see [`super::limits`]) are named
//! `<image id>/<upload id>/<index>` in the segments container, each streamed in its own PUT
//! while the data arrives; the next segment starts as soon as one is full, while at most
//! [`SEGMENTS_IN_FLIGHT`] earlier ones still wait for Swift's answer. Each segment's PUT may
//! take `segment_timeout` in all, so that a stalled proxy fails the upload (and its segments
//! go) rather than hanging it. The manifest (`?multipart-manifest=put`) is written last, so
//! readers never see a partial image.
//!
//! A segmented upload holds a lease, the object `leases/<image id>/<upload id>` in the
//! segments container, written before the first segment and renewed every third of the
//! store's lease (`tasks.lease`, as the S3 store's markers) while the upload runs. A failed or
//! abandoned upload removes its segments, then its lease; one whose process died leaves a
//! lease that stops being renewed, and the sweep (see [`super::SwiftStore`]) removes its
//! segments once the lease was last renewed a whole lease ago (by Swift's clock).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::Method;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::client::{self, Client, object_path};
use super::limits::Plan;
use super::{Layout, StoreError};

/// The most an upload buffers to find out whether the image fits in one object.
pub(super) const SINGLE_PUT_BUFFER: u64 = 8 * 1024 * 1024;
/// Segments of one upload whose data is sent and whose answer is awaited, beside the one
/// being written: enough to hide Swift's commit latency.
pub(super) const SEGMENTS_IN_FLIGHT: usize = 4;
/// A writer commits only if it renewed its lease within the last half lease, and its manifest
/// PUT may take at most two fifths of one: a sweep takes a lease a whole lease after its last
/// renewal, so never that of an upload whose manifest may still be written.
fn commit_within(lease: Duration) -> Duration {
    lease / 2
}

fn manifest_timeout(lease: Duration) -> Duration {
    lease * 2 / 5
}
/// Bytes waiting between the writer and one segment's request.
const SEGMENT_CHANNEL_DEPTH: usize = 8;
/// The prefix of lease objects in the segments container; image ids never start with it.
pub(super) const LEASES: &str = "leases/";
/// Metadata on a manifest naming the upload that wrote it, so that a sweep can tell a
/// committed upload whose writer died before dropping its lease.
pub(super) const UPLOAD_HEADER: &str = "X-Object-Meta-Glint-Upload";

/// What a writer task needs of the store.
#[derive(Clone)]
pub(super) struct Writer {
    pub(super) client: Arc<Client>,
    pub(super) layout: Arc<Layout>,
}

/// What an upload to (or a health check of) a store whose container is missing says.
pub(super) fn missing_container(container: &str) -> StoreError {
    StoreError::Io(io::Error::other(format!(
        "the Swift container {container} does not exist; create it, or set create_container_on_put = true"
    )))
}

fn no_large_objects() -> StoreError {
    StoreError::Io(io::Error::other(
        "this Swift cluster offers no static large objects (no slo in its /info): images over large_object_size cannot be stored",
    ))
}

fn abandoned() -> StoreError {
    StoreError::Source(io::Error::other("upload abandoned"))
}

impl Writer {
    /// Writes chunks until the `None` end marker, then commits; `size` is what the caller
    /// expects (see [`super::super::Store::put_sized`]), `cap` the most it may send. A channel
    /// closed without the marker means the put was abandoned: nothing is committed and every
    /// segment goes.
    pub(super) async fn write(
        self,
        image_id: String,
        size: Option<u64>,
        cap: u64,
        mut chunks: mpsc::Receiver<Option<Bytes>>,
    ) -> Result<(), StoreError> {
        let limits = self.client.limits().await?;
        if let Some(limits) = &limits {
            limits.check(self.layout.large_object_size, self.layout.chunk_size)?;
        }
        self.ensure_container(&self.layout.container).await?;
        let mut head = Vec::new();
        match size {
            Some(size) if size <= self.layout.large_object_size => return self.stream_object(&image_id, chunks).await,
            Some(_) => {}
            None => {
                let limit = SINGLE_PUT_BUFFER.min(self.layout.large_object_size);
                let mut buffered = 0u64;
                while buffered <= limit {
                    match chunks.recv().await {
                        Some(Some(chunk)) => {
                            buffered += chunk.len() as u64;
                            head.push(chunk);
                        }
                        Some(None) => return self.put_object(&image_id, head, buffered).await,
                        None => return Err(abandoned()),
                    }
                }
            }
        }
        let limits = limits.ok_or_else(no_large_objects)?;
        let upload = uuid::Uuid::new_v4().simple().to_string();
        // The manifest names segments by path: /<segments>/<image id>/<upload id>/<8 digits>.
        let path_len = self.layout.segments.len() + image_id.len() + upload.len() + 12;
        let plan = Plan::new(&limits, self.layout.chunk_size, limits.max_segments(path_len), size, cap)?;
        self.ensure_container(&self.layout.segments).await?;
        super::LIVE_UPLOADS.lock().unwrap_or_else(|p| p.into_inner()).insert(upload.clone());
        let written = self.write_large(&image_id, &upload, plan, head, chunks).await;
        super::LIVE_UPLOADS.lock().unwrap_or_else(|p| p.into_inner()).remove(&upload);
        written
    }

    /// Creates `container` when it is missing and the store may; an error when it may not.
    async fn ensure_container(&self, container: &str) -> Result<(), StoreError> {
        let path = client::container_path(container);
        let found = self.client.send(Method::HEAD, &path, |r| r).await?;
        if found.status() != reqwest::StatusCode::NOT_FOUND {
            client::check(found, &format!("HEAD of container {container}")).await?;
            return Ok(());
        }
        if !self.layout.create_container_on_put {
            return Err(missing_container(container));
        }
        tracing::info!(container, "creating Swift container");
        let created = self.client.send(Method::PUT, &path, |r| r).await?;
        client::check(created, &format!("creating container {container}")).await.map(drop)
    }

    async fn put_object(&self, image_id: &str, head: Vec<Bytes>, len: u64) -> Result<(), StoreError> {
        let mut body = BytesMut::with_capacity(len as usize);
        for chunk in head {
            body.extend_from_slice(&chunk);
        }
        let body = body.freeze();
        let path = object_path(&self.layout.container, image_id);
        let response = self
            .client
            .send(Method::PUT, &path, |r| {
                // Explicit: without it an empty body goes without a length, which Swift refuses.
                r.header("Content-Type", "application/octet-stream")
                    .header("Content-Length", body.len())
                    .body(body.clone())
            })
            .await?;
        client::check(response, &format!("PUT of {path}")).await.map(drop)
    }

    /// Streams the data into one object, as it arrives.
    async fn stream_object(&self, image_id: &str, mut chunks: mpsc::Receiver<Option<Bytes>>) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel(SEGMENT_CHANNEL_DEPTH);
        let request = spawn_put(&self.client, object_path(&self.layout.container, image_id), rx, None);
        loop {
            match chunks.recv().await {
                Some(Some(chunk)) => {
                    if tx.send(Some(chunk)).await.is_err() {
                        // The request ended before its data did: its answer says why.
                        break;
                    }
                }
                Some(None) => {
                    let _ = tx.send(None).await;
                    break;
                }
                None => {
                    // Dropping the sender without the end marker breaks the request off.
                    drop(tx);
                    let _ = request.await;
                    return Err(abandoned());
                }
            }
        }
        drop(tx);
        joined(request.await).map(drop)
    }

    async fn write_large(
        &self,
        image_id: &str,
        upload: &str,
        plan: Plan,
        head: Vec<Bytes>,
        chunks: mpsc::Receiver<Option<Bytes>>,
    ) -> Result<(), StoreError> {
        let lease = Lease::take(self.clone(), format!("{LEASES}{image_id}/{upload}")).await?;
        let prefix = format!("{image_id}/{upload}/");
        let mut segments = Segments::new(self, &prefix, plan);
        let result = async {
            let done = segments.write_all(head, chunks).await?;
            lease.check_fresh()?;
            self.put_manifest(image_id, upload, &done).await
        }
        .await;
        match result {
            Ok(()) => {
                // Committed: a lease left behind is dropped by a sweep (the manifest names it).
                lease.release().await;
                Ok(())
            }
            Err(err) => {
                let written = segments.abandon().await;
                if self.remove_segments(&prefix, written).await {
                    lease.release().await;
                } else {
                    // Kept so that a sweep finds and removes what is left.
                    lease.stop();
                }
                Err(err)
            }
        }
    }

    async fn put_manifest(&self, image_id: &str, upload: &str, segments: &[Segment]) -> Result<(), StoreError> {
        let manifest: Vec<serde_json::Value> = segments
            .iter()
            .map(|s| {
                serde_json::json!({
                    "path": format!("/{}/{}", self.layout.segments, s.name),
                    "etag": s.etag,
                    "size_bytes": s.size,
                })
            })
            .collect();
        let body = serde_json::to_vec(&manifest).map_err(|e| StoreError::Io(io::Error::other(e)))?;
        let path = format!("{}?multipart-manifest=put", object_path(&self.layout.container, image_id));
        let response = self
            .client
            .send(Method::PUT, &path, |r| {
                r.timeout(manifest_timeout(self.layout.lease))
                    .header("Content-Type", "application/octet-stream")
                    .header(UPLOAD_HEADER, upload)
                    .body(body.clone())
            })
            .await?;
        client::check(response, &format!("the manifest PUT of {path}")).await.map(drop)
    }

    /// Removes the segments under `prefix`: those `written` and whatever the listing shows
    /// (a segment whose answer was lost may exist all the same). Whether all went.
    async fn remove_segments(&self, prefix: &str, written: Vec<String>) -> bool {
        let mut names: HashSet<String> = written.into_iter().collect();
        let mut complete = true;
        match super::list(&self.client, &self.layout.segments, prefix, usize::MAX).await {
            Ok(listing) => names.extend(listing.objects.into_iter().map(|o| o.name)),
            Err(err) => {
                tracing::warn!(prefix, error = %err, "could not list the segments of a failed upload");
                complete = false;
            }
        }
        for name in names {
            if let Err(err) = self.delete_object(&self.layout.segments, &name).await {
                tracing::warn!(segment = %name, error = %err, "could not remove a segment of a failed upload; a sweep will");
                complete = false;
            }
        }
        complete
    }

    /// Deletes one object; one already gone counts as deleted.
    pub(super) async fn delete_object(&self, container: &str, name: &str) -> Result<(), StoreError> {
        let path = object_path(container, name);
        let response = self.client.send(Method::DELETE, &path, |r| r).await?;
        match client::check(response, &format!("DELETE of {path}")).await {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// A segment Swift has stored.
struct Segment {
    name: String,
    etag: String,
    size: u64,
}

/// A segment whose data is being written.
struct Open {
    name: String,
    tx: mpsc::Sender<Option<Bytes>>,
    /// What the plan sized it to.
    size: u64,
    written: u64,
    request: JoinHandle<Result<String, StoreError>>,
}

/// A segment whose data is all sent, awaiting Swift's answer.
struct Sent {
    name: String,
    size: u64,
    request: JoinHandle<Result<String, StoreError>>,
}

/// The segments of one upload.
struct Segments<'a> {
    writer: &'a Writer,
    prefix: &'a str,
    plan: Plan,
    open: Option<Open>,
    sent: VecDeque<Sent>,
    done: Vec<Segment>,
    count: u64,
    /// Bytes in all segments so far.
    written: u64,
}

impl<'a> Segments<'a> {
    fn new(writer: &'a Writer, prefix: &'a str, plan: Plan) -> Segments<'a> {
        Segments { writer, prefix, plan, open: None, sent: VecDeque::new(), done: Vec::new(), count: 0, written: 0 }
    }

    /// Writes `head`, then the chunks up to the end marker; the stored segments in order.
    async fn write_all(
        &mut self,
        head: Vec<Bytes>,
        mut chunks: mpsc::Receiver<Option<Bytes>>,
    ) -> Result<Vec<Segment>, StoreError> {
        for chunk in head {
            self.write(chunk).await?;
        }
        loop {
            match chunks.recv().await {
                Some(Some(chunk)) => self.write(chunk).await?,
                Some(None) => break,
                None => return Err(abandoned()),
            }
        }
        self.close().await;
        while let Some(sent) = self.sent.pop_front() {
            self.settle(sent).await?;
        }
        Ok(std::mem::take(&mut self.done))
    }

    async fn write(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        while !chunk.is_empty() {
            if self.open.is_none() {
                self.open().await?;
            }
            let Some(open) = self.open.as_mut() else { unreachable!("opened above") };
            let room = (open.size - open.written).min(chunk.len() as u64) as usize;
            let part = chunk.split_to(room);
            open.written += part.len() as u64;
            self.written += part.len() as u64;
            if open.tx.send(Some(part)).await.is_err() {
                // The request ended before its data did: its answer says why.
                let Some(open) = self.open.take() else { unreachable!("written to above") };
                drop(open.tx);
                return Err(joined(open.request.await).err().unwrap_or_else(|| {
                    StoreError::Io(io::Error::other(format!("Swift took segment {} before its end", open.name)))
                }));
            }
            if open.written == open.size {
                self.close().await;
            }
        }
        Ok(())
    }

    /// Starts the next segment's request, once fewer than [`SEGMENTS_IN_FLIGHT`] await an answer.
    async fn open(&mut self) -> Result<(), StoreError> {
        let Some(size) = self.plan.segment_size(self.count, self.written) else {
            // Every segment the manifest may name is full.
            return Err(StoreError::TooLarge(self.written));
        };
        while self.sent.len() >= SEGMENTS_IN_FLIGHT || self.sent.front().is_some_and(|s| s.request.is_finished()) {
            let Some(sent) = self.sent.pop_front() else { break };
            self.settle(sent).await?;
        }
        self.count += 1;
        let name = format!("{}{:08}", self.prefix, self.count);
        let (tx, rx) = mpsc::channel(SEGMENT_CHANNEL_DEPTH);
        let path = object_path(&self.writer.layout.segments, &name);
        let request = spawn_put(&self.writer.client, path, rx, Some(self.writer.layout.segment_timeout));
        self.open = Some(Open { name, tx, size, written: 0, request });
        Ok(())
    }

    /// Ends the open segment's data; its answer is awaited later.
    async fn close(&mut self) {
        if let Some(open) = self.open.take() {
            // A closed channel here means the request already failed; `settle` tells why.
            let _ = open.tx.send(None).await;
            self.sent.push_back(Sent { name: open.name, size: open.written, request: open.request });
        }
    }

    async fn settle(&mut self, sent: Sent) -> Result<(), StoreError> {
        let etag = joined(sent.request.await)?;
        self.done.push(Segment { name: sent.name, etag, size: sent.size });
        Ok(())
    }

    /// Stops every request (the open one without its end, so Swift drops it) and waits for
    /// those already sent; the names of the segments that may exist.
    async fn abandon(&mut self) -> Vec<String> {
        let mut names: Vec<String> = self.done.drain(..).map(|s| s.name).collect();
        if let Some(open) = self.open.take() {
            drop(open.tx);
            let _ = open.request.await;
            names.push(open.name);
        }
        for sent in self.sent.drain(..) {
            let _ = sent.request.await;
            names.push(sent.name);
        }
        names
    }
}

fn joined<T>(result: Result<Result<T, StoreError>, tokio::task::JoinError>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Io(io::Error::other(e)))?
}

/// Starts a PUT of `path` whose body is what comes through `rx` (see [`body`]), taking at
/// most `timeout` in all if given; its answer is the object's ETag.
fn spawn_put(
    client: &Arc<Client>,
    path: String,
    rx: mpsc::Receiver<Option<Bytes>>,
    timeout: Option<Duration>,
) -> JoinHandle<Result<String, StoreError>> {
    let client = client.clone();
    tokio::spawn(async move {
        let response = client
            .send_body(Method::PUT, &path, |r| {
                let r = r.header("Content-Type", "application/octet-stream").body(reqwest::Body::wrap_stream(body(rx)));
                match timeout {
                    Some(timeout) => r.timeout(timeout),
                    None => r,
                }
            })
            .await?;
        let response = client::check(response, &format!("PUT of {path}")).await?;
        let etag = response.headers().get("Etag").and_then(|v| v.to_str().ok()).unwrap_or_default();
        Ok(etag.trim_matches('"').to_owned())
    })
}

/// A request body: the channel's chunks up to the `None` end marker. A channel closed
/// without the marker fails the body, so the request breaks off and Swift stores nothing.
fn body(rx: mpsc::Receiver<Option<Bytes>>) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Some(chunk)) => Some((Ok(chunk), Some(rx))),
            Some(None) => None,
            None => Some((Err(io::Error::other("upload abandoned")), None)),
        }
    })
}

/// The lease of a running segmented upload, renewed in the background until released.
struct Lease {
    writer: Writer,
    name: String,
    renewed: Arc<Mutex<Instant>>,
    renewer: JoinHandle<()>,
}

impl Lease {
    async fn take(writer: Writer, name: String) -> Result<Lease, StoreError> {
        put_lease(&writer, &name).await?;
        let renewed = Arc::new(Mutex::new(Instant::now()));
        let renewer = tokio::spawn({
            let (writer, name, renewed) = (writer.clone(), name.clone(), renewed.clone());
            async move {
                loop {
                    tokio::time::sleep(writer.layout.lease / 3).await;
                    let started = Instant::now();
                    match put_lease(&writer, &name).await {
                        Ok(()) => *renewed.lock().unwrap_or_else(|p| p.into_inner()) = started,
                        Err(err) => tracing::warn!(lease = %name, error = %err, "could not renew an upload's lease"),
                    }
                }
            }
        });
        Ok(Lease { writer, name, renewed, renewer })
    }

    /// Whether the lease is surely still ours: renewed recently enough that no sweep takes it
    /// before the manifest is written.
    fn check_fresh(&self) -> Result<(), StoreError> {
        let renewed = *self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        if renewed.elapsed() < commit_within(self.writer.layout.lease) {
            return Ok(());
        }
        Err(StoreError::Io(io::Error::other(format!(
            "the upload's lease {} was last renewed {}s ago; a sweep may have taken its segments",
            self.name,
            renewed.elapsed().as_secs()
        ))))
    }

    fn stop(&self) {
        self.renewer.abort();
    }

    async fn release(self) {
        self.stop();
        if let Err(err) = self.writer.delete_object(&self.writer.layout.segments, &self.name).await {
            tracing::warn!(lease = %self.name, error = %err, "could not drop an upload's lease; a sweep will");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

async fn put_lease(writer: &Writer, name: &str) -> Result<(), StoreError> {
    let path = object_path(&writer.layout.segments, name);
    let response = writer.client.send(Method::PUT, &path, |r| r.header("Content-Length", 0)).await?;
    client::check(response, &format!("PUT of lease {path}")).await.map(drop)
}
