//! The S3 store: one object per image, `<prefix>/<image id>`, in a bucket of Amazon S3 or an
//! S3-compatible service.
//!
//! A put streams through a task fed by a bounded channel, like the filesystem store. An image
//! that fits in one part goes up in a single PUT; a larger one as a multipart upload of
//! [`PART_SIZE`] parts with at most [`PARTS_IN_FLIGHT`] being sent at once, so an upload holds
//! a bounded amount of memory whatever the image size. S3 shows neither kind of object before
//! the last request succeeds, and every failed or abandoned multipart upload is aborted, so
//! its parts are neither billed nor left behind.

use std::io;
use std::ops::Range;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::{Path, PathPart};
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::mpsc;

use super::fs::valid_name;
use super::{ByteStream, Store, StoreError};
use crate::config::S3Config;

/// Size of a multipart upload part; S3 wants at least 5 MiB for all parts but the last.
pub(super) const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload sent concurrently: enough to hide request latency, few enough that an
/// upload holds at most `(PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes.
pub(super) const PARTS_IN_FLIGHT: usize = 4;
/// Prefix listed by the health check; a leading dot keeps it apart from every image id.
const HEALTH_PROBE: &str = ".glint-health-probe";

/// Image objects in one bucket, under one key prefix.
pub struct S3Store {
    client: AmazonS3,
    bucket: String,
    prefix: Path,
}

impl S3Store {
    /// A store for the bucket of `cfg`. Nothing is sent yet: a wrong endpoint or credentials
    /// show up on the first request (or [`Store::health`]).
    pub fn open(cfg: &S3Config) -> Result<S3Store, StoreError> {
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
        Ok(S3Store { client, bucket: cfg.bucket.clone(), prefix })
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

/// Writes chunks until the `None` end marker, then commits. A channel closed without the
/// marker means the put was abandoned: the object is never committed.
async fn write_object(
    client: AmazonS3,
    path: Path,
    mut chunks: mpsc::Receiver<Option<Bytes>>,
) -> Result<(), StoreError> {
    let mut head = Vec::new();
    let mut buffered = 0;
    while buffered < PART_SIZE {
        match chunks.recv().await {
            Some(Some(chunk)) => {
                buffered += chunk.len();
                head.push(chunk);
            }
            Some(None) => {
                client.put(&path, PutPayload::from_iter(head)).await.map_err(classify)?;
                return Ok(());
            }
            None => return Err(abandoned()),
        }
    }
    let mut upload =
        WriteMultipart::new_with_chunk_size(client.put_multipart(&path).await.map_err(classify)?, PART_SIZE);
    match write_parts(&mut upload, head, &mut chunks).await {
        // `finish` aborts the upload itself when a part or the completion fails.
        Ok(()) => upload.finish().await.map(drop).map_err(classify),
        Err(err) => {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(key = %path, error = %abort, "could not abort a failed multipart upload; its parts stay until a bucket lifecycle rule removes them");
            }
            Err(err)
        }
    }
}

async fn write_parts(
    upload: &mut WriteMultipart,
    head: Vec<Bytes>,
    chunks: &mut mpsc::Receiver<Option<Bytes>>,
) -> Result<(), StoreError> {
    for chunk in head {
        upload.put(chunk);
    }
    loop {
        match chunks.recv().await {
            Some(Some(chunk)) => {
                // Waiting before buffering more is what bounds the memory of an upload.
                upload.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(classify)?;
                upload.put(chunk);
            }
            Some(None) => return Ok(()),
            None => return Err(abandoned()),
        }
    }
}

#[async_trait::async_trait]
impl Store for S3Store {
    async fn put(&self, image_id: &str, data: ByteStream, cap: u64) -> Result<String, StoreError> {
        let path = self
            .path(image_id)
            .ok_or_else(|| StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, "invalid image id")))?;
        // A task of its own, so that a put dropped midway still aborts its multipart upload.
        let (client, key) = (self.client.clone(), path.clone());
        super::feed_writer(data, cap, move |rx| tokio::spawn(write_object(client, key, rx))).await?;
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
        S3Store::open(&config(prefix)).expect("open")
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
    fn a_prefix_with_empty_segments_is_refused() {
        assert!(S3Store::open(&config(Some("a//b"))).is_err());
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
