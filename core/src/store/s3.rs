//! The S3 store: one object per image, `<prefix>/<image id>`, in a bucket of Amazon S3 or an
//! S3-compatible service.
//!
//! A put streams through a task fed by a bounded channel, like the filesystem store. An image
//! that fits in one part goes up in a single PUT; a larger one as a multipart upload of
//! [`PART_SIZE`] parts with at most [`PARTS_IN_FLIGHT`] being sent at once, so an upload holds
//! a bounded amount of memory whatever the image size. S3 shows neither kind of object before
//! the last request succeeds, and every failed or abandoned multipart upload is aborted, so
//! its parts are neither billed nor left behind.
//!
//! A process that dies mid-upload cannot abort its upload: sweeps do. S3 keeps no word of who
//! writes an upload, so the writer says it is alive with a marker object,
//! `<prefix>/.glint-uploads/<image id>/<hex of the upload id>`, which it writes again every
//! third of the lease and removes when done. An upload whose marker has not been renewed for
//! a lease (as the bucket's clock tells) belongs to a dead writer, however young or old the
//! upload: a slow live upload is never taken, and a dead one goes within a lease. Before it
//! starts an upload (whose id it cannot know yet) the writer puts a `starting-<random>`
//! marker under the image, which spares the image's uploads until the upload's own marker is
//! there.

use std::collections::HashSet;
use std::io;
use std::ops::{ControlFlow, Range};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::{Path, PathPart};
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{GetOptions, MultipartId, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::fs::valid_name;
use super::{ByteStream, Store, StoreError, SweepLimits, Swept};
use crate::config::S3Config;
use crate::heartbeat::while_ticking;

/// Size of a multipart upload part; S3 wants at least 5 MiB for all parts but the last.
pub(super) const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload sent concurrently: enough to hide request latency, few enough that an
/// upload holds at most `(PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes.
pub(super) const PARTS_IN_FLIGHT: usize = 4;
/// Prefix listed by the health check; a leading dot keeps it apart from every image id.
const HEALTH_PROBE: &str = ".glint-health-probe";
/// Where upload markers live, under the prefix (see the module documentation).
const MARKERS: &str = ".glint-uploads";
/// Name prefix of the marker a writer puts before it starts an upload; upload ids are
/// hex-encoded in marker names, so no upload's marker looks like one.
const STARTING: &str = "starting-";
/// How long a presigned listing request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(300);

/// Image objects in one bucket, under one key prefix.
pub struct S3Store {
    client: AmazonS3,
    bucket: String,
    prefix: Path,
    /// A writer renews its upload's marker every third of this; sweeps take an upload whose
    /// marker is older for abandoned.
    lease: Duration,
    /// For the listings object_store does not make (multipart uploads, parts), presigned.
    http: reqwest::Client,
}

impl S3Store {
    /// A store for the bucket of `cfg` whose writers prove they are alive every third of
    /// `lease`. Nothing is sent yet: a wrong endpoint or credentials show up on the first
    /// request (or [`Store::health`]).
    pub fn open(cfg: &S3Config, lease: Duration) -> Result<S3Store, StoreError> {
        let prefix = Path::parse(cfg.prefix.as_deref().unwrap_or_default()).map_err(invalid_config)?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(&cfg.access_key_id)
            .with_secret_access_key(&cfg.secret_access_key)
            .with_allow_http(cfg.allow_http);
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let client = builder.build().map_err(invalid_config)?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().map_err(invalid_config)?;
        Ok(S3Store { client, bucket: cfg.bucket.clone(), prefix, lease, http })
    }

    fn url(&self, path: &Path) -> String {
        format!("s3://{}/{path}", self.bucket)
    }

    /// The key of image `name`, if it is a valid object name.
    fn path(&self, name: &str) -> Option<Path> {
        let part = PathPart::parse(name).ok().filter(|_| valid_name(name))?;
        Some(self.prefix.clone().join(part))
    }

    /// The key behind `location`, only if it names an image object of our bucket and prefix.
    fn path_of(&self, location: &str) -> Result<Path, StoreError> {
        let path =
            location.rsplit_once('/').and_then(|(_, name)| self.path(name)).filter(|path| self.url(path) == location);
        path.ok_or_else(|| StoreError::NotFound(location.to_owned()))
    }

    /// The image whose object `key` is: one level under the prefix, a valid image name.
    fn image_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        let prefix = self.prefix.as_ref();
        let name = if prefix.is_empty() { key } else { key.strip_prefix(prefix)?.strip_prefix('/')? };
        valid_name(name).then_some(name)
    }

    /// Where the markers of image `name`'s writers live.
    fn markers(&self, name: &str) -> Path {
        self.prefix.clone().join(MARKERS).join(name)
    }

    /// The marker that says upload `id` of image `name` has a live writer.
    fn upload_marker(&self, name: &str, id: &str) -> Path {
        self.markers(name).join(hex::encode(id))
    }

    /// `path` signed for a GET with `query`, as object_store signs its own requests.
    async fn signed_get(&self, path: &Path, query: &[(&str, &str)]) -> Result<url::Url, StoreError> {
        let options = SignedUrlOptions::new().with_query(query.iter().copied());
        self.client.signed_url_opts(reqwest::Method::GET, path, SIGNED_FOR, &options).await.map_err(classify)
    }

    /// GETs a presigned URL; the response's body and the bucket's clock (its `Date` header).
    async fn fetch_listing(&self, url: url::Url) -> Result<(String, Option<DateTime<Utc>>), StoreError> {
        // The URL carries a signature: errors must not show it.
        let failed = |e: reqwest::Error| StoreError::Io(io::Error::other(e.without_url()));
        let response = self.http.get(url).send().await.map_err(failed)?;
        let status = response.status();
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.with_timezone(&Utc));
        let body = response.text().await.map_err(failed)?;
        match status.as_u16() {
            200..=299 => Ok((body, date)),
            401 | 403 => Err(StoreError::Denied(format!("listing refused with {status}"))),
            404 => Err(StoreError::NotFound(format!("listing answered {status}"))),
            _ => Err(StoreError::Io(io::Error::other(format!("listing answered {status}: {body}")))),
        }
    }

    /// The unfinished multipart uploads of image objects, and the bucket's clock when it
    /// answered; listed within `limits` (from `started`).
    async fn list_uploads(
        &self,
        limits: &SweepLimits,
        started: Instant,
    ) -> Result<(DateTime<Utc>, Vec<PendingUpload>), StoreError> {
        let prefix = if self.prefix.as_ref().is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let (mut uploads, mut now, mut after) = (Vec::new(), None, None::<(String, String)>);
        loop {
            let mut query = vec![("uploads", ""), ("prefix", prefix.as_str())];
            if let Some((key, id)) = &after {
                query.extend([("key-marker", key.as_str()), ("upload-id-marker", id.as_str())]);
            }
            let (body, date) = self.fetch_listing(self.signed_get(&Path::default(), &query).await?).await?;
            now = now.or(date);
            let page: listing::Uploads = listing::parse(&body)?;
            let next = page.next();
            uploads.extend(page.uploads.into_iter().filter(|u| self.image_of(&u.key).is_some()).filter_map(|u| {
                let initiated = DateTime::parse_from_rfc3339(&u.initiated).ok()?.with_timezone(&Utc);
                Some(PendingUpload { key: u.key, id: u.upload_id, initiated })
            }));
            match next {
                Some(next) if !limits.spent(started, 0) => after = Some(next),
                _ => break,
            }
        }
        Ok((now.unwrap_or_else(Utc::now), uploads))
    }

    /// The bytes the parts of `upload` hold (counted, not needed: a failure counts none).
    async fn uploaded_bytes(&self, upload: &PendingUpload) -> Result<u64, StoreError> {
        let path = Path::parse(&upload.key).map_err(invalid_config)?;
        let (mut bytes, mut after) = (0, None::<String>);
        loop {
            let mut query = vec![("uploadId", upload.id.as_str())];
            query.extend(after.as_deref().map(|marker| ("part-number-marker", marker)));
            let (body, _) = self.fetch_listing(self.signed_get(&path, &query).await?).await?;
            let page: listing::Parts = listing::parse(&body)?;
            bytes += page.parts.iter().map(|p| p.size).sum::<u64>();
            match page.next() {
                Some(next) => after = Some(next),
                None => return Ok(bytes),
            }
        }
    }

    /// Aborts the unfinished uploads no live writer renews a marker for, then removes markers
    /// no writer renews any more; within `limits`.
    async fn sweep_uploads(&self, limits: &SweepLimits) -> Result<Swept, StoreError> {
        let started = Instant::now();
        // Uploads before markers: an upload listed was started before the markers are listed,
        // so its writer's `starting-` marker or its own marker is in that listing.
        let (now, uploads) = self.list_uploads(limits, started).await?;
        let markers_root = self.prefix.clone().join(MARKERS);
        let markers: Vec<ObjectMeta> = self.client.list(Some(&markers_root)).try_collect().await.map_err(classify)?;
        let lease = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
        let fresh = |at: DateTime<Utc>| now.signed_duration_since(at) < lease;
        let live: HashSet<&str> =
            markers.iter().filter(|m| fresh(m.last_modified)).map(|m| m.location.as_ref()).collect();
        let starting: HashSet<&str> = markers
            .iter()
            .filter(|m| fresh(m.last_modified) && m.location.filename().is_some_and(|n| n.starts_with(STARTING)))
            .filter_map(|m| m.location.as_ref().rsplit_once('/').map(|(dir, _)| dir))
            .collect();
        let mut swept = Swept::default();
        let mut removals = 0;
        for upload in &uploads {
            if limits.spent(started, removals) {
                tracing::info!(bucket = %self.bucket, removed = swept.files, "sweep budget spent; the next sweep goes on");
                return Ok(swept);
            }
            let Some(image) = self.image_of(&upload.key) else { continue };
            let marker = self.upload_marker(image, &upload.id);
            if !fresh(upload.initiated)
                && !live.contains(marker.as_ref())
                && !starting.contains(self.markers(image).as_ref())
            {
                let bytes = self.uploaded_bytes(upload).await.unwrap_or_else(|err| {
                    tracing::debug!(key = %upload.key, error = %err, "could not size an abandoned upload");
                    0
                });
                removals += 1;
                match self.abort(&upload.key, &upload.id).await {
                    Ok(()) => {
                        swept.files += 1;
                        swept.bytes += bytes;
                    }
                    // Aborted meanwhile: by another sweep, or its writer was alive after all
                    // and finished.
                    Err(StoreError::NotFound(_)) => {}
                    Err(err) => tracing::warn!(key = %upload.key, error = %err, "could not abort an abandoned upload"),
                }
            }
        }
        for marker in markers.iter().filter(|m| !fresh(m.last_modified)) {
            if limits.spent(started, removals) {
                break;
            }
            removals += 1;
            match self.client.delete(&marker.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => {
                    tracing::warn!(marker = %marker.location, error = %err, "could not remove a stale upload marker")
                }
            }
        }
        Ok(swept)
    }

    async fn abort(&self, key: &str, id: &str) -> Result<(), StoreError> {
        let path = Path::parse(key).map_err(invalid_config)?;
        self.client.abort_multipart(&path, &id.to_owned()).await.map_err(classify)
    }
}

/// An unfinished multipart upload of an image object.
#[derive(Debug)]
struct PendingUpload {
    key: String,
    id: String,
    initiated: DateTime<Utc>,
}

/// S3's XML answers to ListMultipartUploads and ListParts, as far as sweeps read them.
mod listing {
    use serde::Deserialize;

    use super::StoreError;

    pub(super) fn parse<'de, T: Deserialize<'de>>(xml: &'de str) -> Result<T, StoreError> {
        quick_xml::de::from_str(xml).map_err(|e| {
            StoreError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unreadable S3 listing: {e}")))
        })
    }

    /// `ListMultipartUploadsResult`.
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub(super) struct Uploads {
        #[serde(default, rename = "Upload")]
        pub uploads: Vec<Upload>,
        #[serde(default)]
        is_truncated: bool,
        #[serde(default)]
        next_key_marker: Option<String>,
        #[serde(default)]
        next_upload_id_marker: Option<String>,
    }

    impl Uploads {
        /// Where the next page starts, if there is one.
        pub fn next(&self) -> Option<(String, String)> {
            let key = self.next_key_marker.clone().filter(|k| !k.is_empty())?;
            self.is_truncated.then(|| (key, self.next_upload_id_marker.clone().unwrap_or_default()))
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub(super) struct Upload {
        pub key: String,
        pub upload_id: String,
        pub initiated: String,
    }

    /// `ListPartsResult`.
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub(super) struct Parts {
        #[serde(default, rename = "Part")]
        pub parts: Vec<Part>,
        #[serde(default)]
        is_truncated: bool,
        #[serde(default)]
        next_part_number_marker: Option<String>,
    }

    impl Parts {
        /// The part number the next page starts after, if there is one.
        pub fn next(&self) -> Option<String> {
            self.next_part_number_marker.clone().filter(|m| self.is_truncated && !m.is_empty())
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub(super) struct Part {
        pub size: u64,
    }
}

fn invalid_config(err: impl std::fmt::Display) -> StoreError {
    StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))
}

fn classify(err: object_store::Error) -> StoreError {
    match err {
        object_store::Error::NotFound { path, .. } => StoreError::NotFound(path),
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            StoreError::Denied(err.to_string())
        }
        other => StoreError::Io(io::Error::other(other)),
    }
}

fn abandoned() -> StoreError {
    StoreError::Source(io::Error::other("upload abandoned"))
}

/// What a put's writer task needs of the store.
struct Writer {
    client: AmazonS3,
    path: Path,
    /// Where this image's upload markers go.
    markers: Path,
    lease: Duration,
}

/// Writes chunks until the `None` end marker, then commits. A channel closed without the
/// marker means the put was abandoned: the object is never committed.
async fn write_object(writer: Writer, mut chunks: mpsc::Receiver<Option<Bytes>>) -> Result<(), StoreError> {
    let mut head = Vec::new();
    let mut buffered = 0;
    while buffered < PART_SIZE {
        match chunks.recv().await {
            Some(Some(chunk)) => {
                buffered += chunk.len();
                head.push(chunk);
            }
            Some(None) => {
                writer.client.put(&writer.path, PutPayload::from_iter(head)).await.map_err(classify)?;
                return Ok(());
            }
            None => return Err(abandoned()),
        }
    }
    let (id, marker) = writer.start_upload().await?;
    // Renewed for as long as the upload runs, completion included.
    let (client, renewed) = (&writer.client, &marker);
    let renewal = while_ticking(writer.upload(&id, head, &mut chunks), writer.lease / 3, move || async move {
        if let Err(err) = client.put(renewed, PutPayload::default()).await {
            tracing::warn!(marker = %renewed, error = %err, "could not renew an upload's marker");
        }
        ControlFlow::<std::convert::Infallible>::Continue(())
    });
    let Ok(written) = renewal.await;
    if written.is_err()
        && let Err(abort) = writer.client.abort_multipart(&writer.path, &id).await
    {
        tracing::warn!(key = %writer.path, error = %abort, "could not abort a failed multipart upload; a sweep will");
    }
    writer.remove(&marker).await;
    written
}

impl Writer {
    /// Starts a multipart upload with its marker in place; the upload's id and marker. The
    /// `starting-` marker covers the moment the upload exists and its own marker not yet.
    async fn start_upload(&self) -> Result<(MultipartId, Path), StoreError> {
        let starting = self.markers.clone().join(format!("{STARTING}{}", uuid::Uuid::new_v4().simple()));
        self.client.put(&starting, PutPayload::default()).await.map_err(classify)?;
        let started = async {
            let id = self.client.create_multipart(&self.path).await.map_err(classify)?;
            let marker = self.markers.clone().join(hex::encode(&id));
            if let Err(err) = self.client.put(&marker, PutPayload::default()).await {
                // Unmarked, the upload would be taken for a dead writer's.
                let _ = self.client.abort_multipart(&self.path, &id).await;
                return Err(classify(err));
            }
            Ok((id, marker))
        }
        .await;
        self.remove(&starting).await;
        started
    }

    /// Uploads `head` and the rest of `chunks` as the parts of upload `id` and completes it.
    async fn upload(
        &self,
        id: &MultipartId,
        head: Vec<Bytes>,
        chunks: &mut mpsc::Receiver<Option<Bytes>>,
    ) -> Result<(), StoreError> {
        let parts = self.send_parts(id, head, chunks).await?;
        self.client.complete_multipart(&self.path, id, parts).await.map_err(classify)?;
        Ok(())
    }

    /// Sends parts of [`PART_SIZE`] bytes or a little more (whole chunks), at most
    /// [`PARTS_IN_FLIGHT`] at once: waiting for one to finish before buffering more is what
    /// bounds an upload's memory. Returns the parts in order.
    async fn send_parts(
        &self,
        id: &MultipartId,
        mut buffer: Vec<Bytes>,
        chunks: &mut mpsc::Receiver<Option<Bytes>>,
    ) -> Result<Vec<PartId>, StoreError> {
        // Dropped on error or cancellation, which aborts the parts still being sent.
        let mut sending = JoinSet::new();
        let mut parts: Vec<(usize, PartId)> = Vec::new();
        let mut buffered: usize = buffer.iter().map(Bytes::len).sum();
        let (mut index, mut finished) = (0, false);
        loop {
            if buffered >= PART_SIZE || (finished && buffered > 0) {
                while sending.len() >= PARTS_IN_FLIGHT {
                    parts.push(sent(sending.join_next().await)?);
                }
                let (client, path, id) = (self.client.clone(), self.path.clone(), id.clone());
                let payload = PutPayload::from_iter(std::mem::take(&mut buffer));
                sending
                    .spawn(async move { client.put_part(&path, &id, index, payload).await.map(|part| (index, part)) });
                (index, buffered) = (index + 1, 0);
            }
            if finished {
                while !sending.is_empty() {
                    parts.push(sent(sending.join_next().await)?);
                }
                parts.sort_by_key(|(index, _)| *index);
                return Ok(parts.into_iter().map(|(_, part)| part).collect());
            }
            match chunks.recv().await {
                Some(Some(chunk)) => {
                    buffered += chunk.len();
                    buffer.push(chunk);
                }
                Some(None) => finished = true,
                None => return Err(abandoned()),
            }
        }
    }

    /// Removes marker `marker`; one left behind goes with a later sweep.
    async fn remove(&self, marker: &Path) {
        if let Err(err) = self.client.delete(marker).await {
            tracing::debug!(marker = %marker, error = %err, "could not remove an upload marker");
        }
    }
}

/// The outcome of one part's upload task.
fn sent(
    joined: Option<Result<object_store::Result<(usize, PartId)>, tokio::task::JoinError>>,
) -> Result<(usize, PartId), StoreError> {
    match joined {
        Some(Ok(part)) => part.map_err(classify),
        Some(Err(err)) => Err(StoreError::Io(io::Error::other(err))),
        None => Err(StoreError::Io(io::Error::other("no part upload was running"))),
    }
}

#[async_trait::async_trait]
impl Store for S3Store {
    async fn put_sized(
        &self,
        image_id: &str,
        data: ByteStream,
        cap: u64,
        _size: Option<u64>,
    ) -> Result<String, StoreError> {
        let path = self
            .path(image_id)
            .ok_or_else(|| StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, "invalid image id")))?;
        // A task of its own, so that a put dropped midway still aborts its multipart upload.
        let writer = Writer {
            client: self.client.clone(),
            path: path.clone(),
            markers: self.markers(image_id),
            lease: self.lease,
        };
        super::feed_writer(data, cap, move |rx| tokio::spawn(write_object(writer, rx))).await?;
        Ok(self.url(&path))
    }

    async fn get(&self, location: &str, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        let path = self.path_of(location)?;
        let found = self.client.get_opts(&path, GetOptions::new().with_range(range)).await;
        let result = found.map_err(|e| match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound(location.to_owned()),
            other => classify(other),
        })?;
        Ok(Box::pin(result.into_stream().map_err(io::Error::from)))
    }

    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        let path = self.path_of(location)?;
        match self.client.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    fn holds(&self, location: &str) -> bool {
        self.path_of(location).is_ok()
    }

    async fn size(&self, location: &str) -> Result<u64, StoreError> {
        let path = self.path_of(location)?;
        match self.client.head(&path).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(location.to_owned())),
            Err(e) => Err(classify(e)),
        }
    }

    async fn remove_abandoned(&self, limits: &SweepLimits) -> Result<Swept, StoreError> {
        self.sweep_uploads(limits).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        // A listing under a prefix no image has is one small request that fails on a wrong
        // endpoint, credentials or bucket; a HEAD could not tell a missing bucket from a
        // missing key (both are a bodiless 404).
        let probe = self.prefix.clone().join(HEALTH_PROBE);
        match self.client.list(Some(&probe)).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(classify(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: Option<&str>) -> S3Config {
        S3Config {
            bucket: "images".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            access_key_id: "id".into(),
            secret_access_key: "secret".into(),
            prefix: prefix.map(str::to_owned),
            allow_http: true,
            description: None,
        }
    }

    fn store(prefix: Option<&str>) -> S3Store {
        S3Store::open(&config(prefix), Duration::from_secs(60)).expect("open")
    }

    #[test]
    fn urls_name_bucket_prefix_and_image_only() {
        let nested = store(Some("/glance/v2/"));
        assert_eq!(nested.url(&nested.path("img").expect("valid")), "s3://images/glance/v2/img");
        let flat = store(None);
        assert_eq!(flat.url(&flat.path("img").expect("valid")), "s3://images/img");
        for name in ["", ".hidden", "a/b", "..", "tab\there"] {
            assert!(flat.path(name).is_none(), "{name:?}");
        }
    }

    #[test]
    fn only_image_objects_directly_under_the_prefix_are_swept() {
        let nested = store(Some("glance/v2"));
        assert_eq!(nested.image_of("glance/v2/img"), Some("img"));
        for key in ["glance/v2/.glint-uploads/img/ab", "glance/v2img", "glance/img", "other/glance/v2/img", "img"] {
            assert_eq!(nested.image_of(key), None, "{key}");
        }
        let flat = store(None);
        assert_eq!(flat.image_of("img"), Some("img"));
        assert_eq!(flat.image_of("dir/img"), None);
        assert_eq!(flat.upload_marker("img", "a+/=").as_ref(), ".glint-uploads/img/612b2f3d");
    }

    #[test]
    fn listings_of_uploads_and_parts_are_read_with_where_the_next_page_starts() {
        let uploads = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>images</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>glance/b</NextKeyMarker><NextUploadIdMarker>id+2/=</NextUploadIdMarker>
  <MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>glance/a</Key><UploadId>id1</UploadId><Initiator><ID>x</ID><DisplayName>y</DisplayName></Initiator>
    <StorageClass>STANDARD</StorageClass><Initiated>2024-01-02T03:04:05.000Z</Initiated></Upload>
  <Upload><Key>glance/b&amp;c</Key><UploadId>id+2/=</UploadId><Initiated>2024-01-02T03:04:06.000Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page: listing::Uploads = listing::parse(uploads).expect("uploads");
        let read: Vec<(&str, &str)> = page.uploads.iter().map(|u| (u.key.as_str(), u.upload_id.as_str())).collect();
        assert_eq!(read, [("glance/a", "id1"), ("glance/b&c", "id+2/=")]);
        assert_eq!(page.uploads[0].initiated, "2024-01-02T03:04:05.000Z");
        assert_eq!(page.next(), Some(("glance/b".to_owned(), "id+2/=".to_owned())));
        let last: listing::Uploads =
            listing::parse("<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>")
                .expect("empty");
        assert!(last.uploads.is_empty() && last.next().is_none());

        let parts = r#"<ListPartsResult><Bucket>images</Bucket><Key>glance/a</Key><UploadId>id1</UploadId>
  <PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>2</NextPartNumberMarker><IsTruncated>true</IsTruncated>
  <Part><PartNumber>1</PartNumber><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>"e1"</ETag><Size>8388608</Size></Part>
  <Part><PartNumber>2</PartNumber><ETag>"e2"</ETag><Size>17</Size></Part>
</ListPartsResult>"#;
        let page: listing::Parts = listing::parse(parts).expect("parts");
        assert_eq!(page.parts.iter().map(|p| p.size).sum::<u64>(), 8388625);
        assert_eq!(page.next().as_deref(), Some("2"));
        assert!(listing::parse::<listing::Parts>("not xml <").is_err());
    }

    #[test]
    fn a_prefix_with_empty_segments_is_refused() {
        assert!(S3Store::open(&config(Some("a//b")), Duration::from_secs(60)).is_err());
    }

    #[tokio::test]
    async fn locations_outside_the_bucket_or_prefix_are_not_found() {
        let store = store(Some("glance"));
        for location in [
            "s3://images/other/img",
            "s3://images/img",
            "s3://other/glance/img",
            "s3://images/glance/../img",
            "s3://images/glance/.glint-health-probe",
            "s3://images/glance/",
            "file:///images/glance/img",
            "s3://id:secret@images/glance/img",
        ] {
            assert!(matches!(store.get(location, None).await, Err(StoreError::NotFound(_))), "{location}");
            assert!(matches!(store.delete(location).await, Err(StoreError::NotFound(_))), "{location}");
        }
    }
}
