//! The Swift store: one object per image, `<container>/<image id>`, in one Swift account;
//! images over `large_object_size` as static large objects (SLO) whose segments live in
//! `<container>_segments` (Swift's own convention, which keeps them out of the image
//! container's listings and out of reach of caller-given locations).
//!
//! Locations are `swift+http(s)://<auth URL without its scheme>/<container>/<image id>`, as
//! Glance's swift driver writes them, without the credentials Glance puts in front of the host:
//! the store logs in with its own (see [`auth`]).
//!
//! How an image is written, and how a dead writer's segments are told from a live one's, is
//! [`upload`]'s. Delete removes the manifest and every segment in one request
//! (`?multipart-manifest=delete`), and then any segment of the image still listed, so a delete
//! that failed half-way is finished by its retry. Images that Glance wrote as dynamic large
//! objects (`X-Object-Manifest`) are read as they are and deleted with their segments.

mod auth;
mod client;
mod limits;
mod upload;

use std::collections::HashSet;
use std::io;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::TryStreamExt;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::fs::valid_name;
use super::{ByteStream, Store, StoreError, SweepLimits, Swept};
use crate::config::SwiftConfig;
use client::{Client, object_path};
use upload::{LEASES, UPLOAD_HEADER, Writer};

const MIB: u64 = 1024 * 1024;
/// Swift's default largest object (`max_file_size`): a single object or one segment.
const MAX_OBJECT_SIZE: u64 = 5 * 1024 * MIB;
/// Objects per listing page (Swift's default `container_listing_limit`).
const LISTING_PAGE: usize = 10_000;
/// A delete of a large object deletes its segments one by one inside Swift.
const LARGE_DELETE_TIMEOUT: Duration = Duration::from_secs(600);

/// The ids of the segmented uploads running in this process (see [`upload`]): a sweep never
/// takes them, whatever their lease looks like.
static LIVE_UPLOADS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Where a store's objects go, and how big they get.
pub(super) struct Layout {
    /// The container of the image objects (and manifests).
    container: String,
    /// The container of the segments and leases: `<container>_segments`.
    segments: String,
    /// Images larger than this are segmented, in bytes.
    large_object_size: u64,
    /// Bytes per segment.
    chunk_size: u64,
    create_container_on_put: bool,
    /// A segmented upload renews its lease every third of this; a lease not renewed for this
    /// long belongs to a dead writer.
    lease: Duration,
    /// The most one segment's PUT may take.
    segment_timeout: Duration,
    /// `swift+http(s)://<auth URL without scheme>/<container>/`: a location is this and a name.
    location_prefix: String,
}

impl Layout {
    fn from_config(cfg: &SwiftConfig, lease: Duration) -> Result<Layout, String> {
        let container = cfg.container.clone();
        if container.is_empty() || container.contains('/') || container.len() > 200 {
            return Err(format!("container = {container:?}: a non-empty name without '/' of at most 200 bytes"));
        }
        let (large_object_size, chunk_size) = (cfg.large_object_size * MIB, cfg.large_object_chunk_size * MIB);
        for (key, size) in [("large_object_size", large_object_size), ("large_object_chunk_size", chunk_size)] {
            if size == 0 || size > MAX_OBJECT_SIZE {
                return Err(format!(
                    "{key} must be between 1 and {} MiB (Swift's largest object)",
                    MAX_OBJECT_SIZE / MIB
                ));
            }
        }
        let (scheme, rest) = if let Some(rest) = cfg.auth_url.strip_prefix("https://") {
            ("swift+https", rest)
        } else if let Some(rest) = cfg.auth_url.strip_prefix("http://") {
            ("swift+http", rest)
        } else {
            return Err(format!("auth_url = {:?} is not an http(s) URL", cfg.auth_url));
        };
        if cfg.segment_timeout == 0 {
            return Err("segment_timeout must be at least 1 second".into());
        }
        let location_prefix = format!("{scheme}://{}/{container}/", rest.trim_matches('/'));
        Ok(Layout {
            segments: format!("{container}_segments"),
            container,
            large_object_size,
            chunk_size,
            create_container_on_put: cfg.create_container_on_put,
            lease,
            segment_timeout: Duration::from_secs(cfg.segment_timeout),
            location_prefix,
        })
    }
}

/// Image objects in one container of a Swift account.
pub struct SwiftStore {
    writer: Writer,
}

impl SwiftStore {
    /// A store for `cfg`, whose segmented uploads renew their lease every third of `lease`
    /// (see the `upload` module). Nothing is sent yet: a wrong address or credentials show up
    /// on the first request (or [`Store::health`]).
    pub fn open(cfg: &SwiftConfig, lease: Duration) -> Result<SwiftStore, StoreError> {
        let invalid = |e: String| StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, e));
        let layout = Layout::from_config(cfg, lease).map_err(invalid)?;
        let credentials = auth::Credentials::from_config(cfg).map_err(invalid)?;
        let client = Client::new(credentials, cfg.endpoint.clone()).map_err(invalid)?;
        Ok(SwiftStore { writer: Writer { client: Arc::new(client), layout: Arc::new(layout) } })
    }

    /// What /v2/info/stores/detail shows, with Glance's names (sizes in bytes).
    pub fn properties(&self) -> serde_json::Value {
        let layout = &self.writer.layout;
        serde_json::json!({
            "container": layout.container,
            "large_object_size": layout.large_object_size,
            "large_object_chunk_size": layout.chunk_size,
        })
    }

    fn client(&self) -> &Client {
        &self.writer.client
    }

    fn layout(&self) -> &Layout {
        &self.writer.layout
    }

    /// The object name behind `location`, only if it names an object of our container.
    fn name_of<'a>(&self, location: &'a str) -> Result<&'a str, StoreError> {
        location
            .strip_prefix(&self.layout().location_prefix)
            .filter(|name| valid_name(name))
            .ok_or_else(|| StoreError::NotFound(location.to_owned()))
    }

    /// Removes the large object `name`: its manifest and segments in one request.
    async fn delete_static_large_object(&self, path: &str) -> Result<(), StoreError> {
        let response = self
            .client()
            .send(Method::DELETE, &format!("{path}?multipart-manifest=delete"), |r| {
                r.timeout(LARGE_DELETE_TIMEOUT).header("Accept", "application/json")
            })
            .await?;
        let response = client::check(response, &format!("DELETE of large object {path}")).await?;
        // The answer is 200 whatever happened to the segments; the body tells.
        let outcome: BulkDelete = response.json().await.map_err(|e| {
            StoreError::Io(io::Error::other(format!("Swift's answer to the DELETE of {path} is unreadable: {e}")))
        })?;
        if outcome.errors.is_empty() {
            return Ok(());
        }
        Err(StoreError::Io(io::Error::other(format!(
            "deleting large object {path}: {} ({} deleted; failed: {:?})",
            outcome.status, outcome.deleted, outcome.errors
        ))))
    }

    /// Removes the dynamic large object at `path` (as Glance wrote them): the segments under
    /// `manifest` (`<container>/<prefix>`), then the manifest.
    async fn delete_dynamic_large_object(&self, path: &str, manifest: &str) -> Result<(), StoreError> {
        let Some((container, prefix)) = manifest.split_once('/') else {
            return Err(StoreError::Io(io::Error::other(format!("{path} has a malformed manifest {manifest:?}"))));
        };
        for segment in list(self.client(), container, prefix, usize::MAX).await?.objects {
            self.writer.delete_object(container, &segment.name).await?;
        }
        self.delete_path(path).await
    }

    async fn delete_path(&self, path: &str) -> Result<(), StoreError> {
        let response = self.client().send(Method::DELETE, path, |r| r).await?;
        match client::check(response, &format!("DELETE of {path}")).await {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Removes the segments and lease of an upload whose lease expired, unless it committed
    /// (its manifest names it): then only the lease. How many objects and bytes went.
    async fn sweep_upload(&self, image_id: &str, upload: &str, lease: &str) -> Result<Swept, StoreError> {
        let layout = self.layout();
        let manifest = self.client().send(Method::HEAD, &object_path(&layout.container, image_id), |r| r).await?;
        let committed = manifest.status().is_success()
            && manifest.headers().get(UPLOAD_HEADER).and_then(|v| v.to_str().ok()) == Some(upload);
        let mut swept = Swept::default();
        if !committed {
            let leftovers = list(self.client(), &layout.segments, &format!("{image_id}/{upload}/"), usize::MAX).await?;
            for segment in leftovers.objects {
                self.writer.delete_object(&layout.segments, &segment.name).await?;
                swept.files += 1;
                swept.bytes += segment.bytes;
            }
        }
        self.writer.delete_object(&layout.segments, lease).await?;
        Ok(swept)
    }
}

/// What Swift's bulk delete (`?multipart-manifest=delete`) reports.
#[derive(Deserialize)]
struct BulkDelete {
    #[serde(rename = "Response Status", default)]
    status: String,
    #[serde(rename = "Number Deleted", default)]
    deleted: u64,
    #[serde(rename = "Errors", default)]
    errors: Vec<serde_json::Value>,
}

/// One object of a container listing.
#[derive(Deserialize)]
struct Listed {
    name: String,
    bytes: u64,
    /// UTC, without a zone: `2026-01-31T12:00:00.123456`.
    last_modified: String,
}

impl Listed {
    fn modified(&self) -> Option<DateTime<Utc>> {
        NaiveDateTime::parse_from_str(&self.last_modified, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc())
    }
}

/// A container listing and the time Swift answered (its clock, against which ages count).
struct Listing {
    objects: Vec<Listed>,
    date: Option<DateTime<Utc>>,
}

/// The objects of `container` under `prefix`, at most `max`; a missing container lists nothing.
async fn list(client: &Client, container: &str, prefix: &str, max: usize) -> Result<Listing, StoreError> {
    let mut listing = Listing { objects: Vec::new(), date: None };
    let prefix = utf8_percent_encode(prefix, NON_ALPHANUMERIC).to_string();
    loop {
        let marker = listing.objects.last().map(|o| utf8_percent_encode(&o.name, NON_ALPHANUMERIC).to_string());
        let limit = LISTING_PAGE.min(max - listing.objects.len());
        let path = format!(
            "{}?format=json&limit={limit}&prefix={prefix}&marker={}",
            client::container_path(container),
            marker.unwrap_or_default()
        );
        let response = client.send(Method::GET, &path, |r| r).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(listing);
        }
        let response = client::check(response, &format!("listing of {container}")).await?;
        listing.date = listing.date.or_else(|| {
            let date = response.headers().get("Date")?.to_str().ok()?;
            DateTime::parse_from_rfc2822(date).ok().map(|d| d.with_timezone(&Utc))
        });
        let page: Vec<Listed> = response.json().await.map_err(|e| {
            StoreError::Io(io::Error::other(format!("Swift's listing of {container} is unreadable: {e}")))
        })?;
        let full = page.len() == limit;
        listing.objects.extend(page);
        if !full || listing.objects.len() >= max {
            return Ok(listing);
        }
    }
}

#[async_trait::async_trait]
impl Store for SwiftStore {
    async fn put_sized(
        &self,
        image_id: &str,
        data: ByteStream,
        cap: u64,
        size: Option<u64>,
    ) -> Result<String, StoreError> {
        if !valid_name(image_id) {
            return Err(StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, "invalid image id")));
        }
        // A task of its own, so that a put dropped midway still removes its segments.
        let (writer, id) = (self.writer.clone(), image_id.to_owned());
        super::feed_writer(data, cap, move |rx| tokio::spawn(writer.write(id, size, cap, rx))).await?;
        Ok(format!("{}{image_id}", self.layout().location_prefix))
    }

    async fn get(&self, location: &str, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        let path = object_path(&self.layout().container, self.name_of(location)?);
        let response = self
            .client()
            .open(Method::GET, &path, |r| match &range {
                Some(range) => r.header("Range", format!("bytes={}-{}", range.start, range.end.saturating_sub(1))),
                None => r,
            })
            .await?;
        let response = match client::check(response, &format!("GET of {path}")).await {
            Err(StoreError::NotFound(_)) => return Err(StoreError::NotFound(location.to_owned())),
            other => other?,
        };
        Ok(Box::pin(response.bytes_stream().map_err(io::Error::other)))
    }

    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        let name = self.name_of(location)?;
        let layout = self.layout();
        let path = object_path(&layout.container, name);
        let found = self.client().send(Method::HEAD, &path, |r| r).await?;
        if found.status() != StatusCode::NOT_FOUND {
            let found = client::check(found, &format!("HEAD of {path}")).await?;
            let header = |name: &str| found.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            if header("X-Static-Large-Object").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                self.delete_static_large_object(&path).await?;
            } else if let Some(manifest) = header("X-Object-Manifest") {
                self.delete_dynamic_large_object(&path, &manifest).await?;
            } else {
                self.delete_path(&path).await?;
            }
        }
        // Segments a delete that failed half-way left behind.
        for segment in list(self.client(), &layout.segments, &format!("{name}/"), usize::MAX).await?.objects {
            self.writer.delete_object(&layout.segments, &segment.name).await?;
        }
        Ok(())
    }

    async fn health(&self) -> Result<(), StoreError> {
        if let Some(limits) = self.client().limits().await? {
            limits.check(self.layout().large_object_size, self.layout().chunk_size)?;
        }
        let container = &self.layout().container;
        let response = self.client().send(Method::HEAD, &client::container_path(container), |r| r).await?;
        if response.status() == StatusCode::NOT_FOUND {
            // The account answered; the container comes with the first upload, if it may.
            return if self.layout().create_container_on_put {
                Ok(())
            } else {
                Err(upload::missing_container(container))
            };
        }
        client::check(response, &format!("HEAD of container {container}")).await.map(drop)
    }

    /// Removes the segments of segmented uploads whose lease expired (see the `upload` module):
    /// the store's own lease tells a dead writer, `limits.idle` does not count.
    async fn remove_abandoned(&self, limits: &SweepLimits) -> Result<Swept, StoreError> {
        let started = Instant::now();
        let leases = list(self.client(), &self.layout().segments, LEASES, limits.max_removals).await?;
        let now = leases.date.unwrap_or_else(Utc::now);
        let expiry = chrono::Duration::from_std(self.layout().lease).unwrap_or(chrono::Duration::MAX);
        let mut swept = Swept::default();
        for lease in &leases.objects {
            if limits.spent(started, swept.files) {
                tracing::info!(removed = swept.files, "sweep budget spent; the next sweep goes on");
                break;
            }
            let Some((image_id, upload)) = lease.name.strip_prefix(LEASES).and_then(|rest| rest.split_once('/')) else {
                continue;
            };
            let live = LIVE_UPLOADS.lock().unwrap_or_else(|p| p.into_inner()).contains(upload);
            if live || lease.modified().is_none_or(|renewed| now - renewed < expiry) {
                continue;
            }
            let removed = self.sweep_upload(image_id, upload, &lease.name).await?;
            swept.files += removed.files;
            swept.bytes += removed.bytes;
        }
        Ok(swept)
    }

    fn holds(&self, location: &str) -> bool {
        self.name_of(location).is_ok()
    }

    async fn size(&self, location: &str) -> Result<u64, StoreError> {
        let path = object_path(&self.layout().container, self.name_of(location)?);
        let response = self.client().send(Method::HEAD, &path, |r| r).await?;
        let response = match client::check(response, &format!("HEAD of {path}")).await {
            Err(StoreError::NotFound(_)) => return Err(StoreError::NotFound(location.to_owned())),
            other => other?,
        };
        let length = response.headers().get("Content-Length").and_then(|v| v.to_str().ok());
        length
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Io(io::Error::other(format!("Swift gave no size for {path}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(cfg: &SwiftConfig) -> Result<SwiftStore, StoreError> {
        SwiftStore::open(cfg, Duration::from_secs(60))
    }

    fn config(auth_url: &str) -> SwiftConfig {
        let text = format!("auth_url = \"{auth_url}\"\nauth_version = 1\nuser = \"test:tester\"\nkey = \"testing\"\n");
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(&text)).extract().expect("config")
    }

    #[test]
    fn locations_are_the_auth_url_container_and_name_without_credentials() {
        let store = open(&config("http://swift.example:8080/auth/v1.0/")).expect("open");
        assert_eq!(store.layout().location_prefix, "swift+http://swift.example:8080/auth/v1.0/glance/");
        let secure = open(&config("https://keystone.example/v3")).expect("open");
        assert_eq!(secure.layout().location_prefix, "swift+https://keystone.example/v3/glance/");
        assert!(open(&config("ftp://swift.example")).is_err());
    }

    #[test]
    fn only_names_directly_in_the_container_are_held() {
        let store = open(&config("http://swift.example:8080/auth/v1.0")).expect("open");
        assert!(store.holds("swift+http://swift.example:8080/auth/v1.0/glance/external.img"));
        for location in [
            "swift+http://swift.example:8080/auth/v1.0/glance_segments/img",
            "swift+http://swift.example:8080/auth/v1.0/glance/img/00000001",
            "swift+http://swift.example:8080/auth/v1.0/glance/.hidden",
            "swift+http://swift.example:8080/auth/v1.0/glance/",
            "swift+https://swift.example:8080/auth/v1.0/glance/img",
            "swift+http://test:tester:testing@swift.example:8080/auth/v1.0/glance/img",
            "swift+http://other.example:8080/auth/v1.0/glance/img",
            "swift://swift.example:8080/auth/v1.0/glance/img",
        ] {
            assert!(!store.holds(location), "{location}");
        }
    }

    #[test]
    fn sizes_are_checked_against_swifts_largest_object() {
        let mut cfg = config("http://swift.example/auth/v1.0");
        cfg.large_object_chunk_size = 0;
        assert!(open(&cfg).is_err());
        cfg.large_object_chunk_size = 6 * 1024;
        assert!(open(&cfg).is_err());
        cfg.large_object_chunk_size = 200;
        cfg.container = "a/b".into();
        assert!(open(&cfg).is_err());
    }

    #[test]
    fn listing_times_are_utc() {
        let listed = Listed { name: "x".into(), bytes: 0, last_modified: "2026-01-31T12:00:00.123456".into() };
        assert_eq!(listed.modified().map(|t| t.to_rfc3339()).as_deref(), Some("2026-01-31T12:00:00.123456+00:00"));
    }
}
