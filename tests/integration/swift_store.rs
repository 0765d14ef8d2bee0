//! The Swift store against a real Swift (an all-in-one on loopback, see `support::swift`):
//! uploads and downloads through the API around every segment boundary, what the account holds
//! afterwards (single objects, static large objects and their segments), and what is left after
//! each kind of failure. Every test has containers of its own; the store segments images over
//! 1 MiB into 1 MiB segments.

use std::io;
use std::time::Duration;

use glint_core::config::{BackendConfig, Config, SwiftConfig};
use glint_core::store::{ByteStream, Store, StoreError, SwiftStore};
use reqwest::Method;
use serde_json::{Value, json};

use crate::image_data::coreutils_digests;
use crate::support::keystone::{User, keystone};
use crate::support::swift::{Account, Swift, keystone_proxy, swift};
use crate::support::web::{Reply, WebServer};
use crate::support::{Backend, TestApp, expect_error};

const MIB: usize = 1024 * 1024;
/// The store's lease when a test opens one itself, `tasks.lease`'s default.
const LEASE: Duration = Duration::from_secs(60);

/// A TestApp with two stores, `local` (filesystem) and `swift` (in a container of its own).
struct Setup {
    app: TestApp,
    swift: &'static Swift,
    account: Account,
    container: String,
    _local: tempfile::TempDir,
}

impl Setup {
    /// `swift` is the default store unless `adjust` says otherwise.
    async fn start(backend: Backend, adjust: impl FnOnce(&mut Config, &mut SwiftConfig)) -> Option<Setup> {
        let swift = swift()?;
        let container = Swift::container();
        let local = tempfile::tempdir().expect("tempdir");
        let local_path = local.path().join("local");
        let mut store = swift.config(&container);
        let app = TestApp::spawn_with(backend, move |config: &mut Config| {
            config.storage.default = "swift".into();
            config
                .storage
                .backends
                .insert("local".into(), BackendConfig::Filesystem { path: local_path, description: None });
            adjust(config, &mut store);
            config.storage.backends.insert("swift".into(), BackendConfig::Swift(store));
        })
        .await?;
        let account = swift.account().await;
        Some(Setup { app, swift, account, container, _local: local })
    }

    fn segments(&self) -> String {
        format!("{}_segments", self.container)
    }

    fn location(&self, id: &str) -> String {
        format!("swift+{}/{}/{id}", self.swift.auth_url, self.container)
    }

    /// Asserts the container holds exactly the objects of `ids`, and the segments container
    /// the segments of the large ones among them and nothing else (no lease either).
    async fn assert_account_holds(&self, ids: &[&str]) {
        let mut expected: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        expected.sort();
        assert_eq!(self.account.names(&self.container).await, expected);
        let mut segments = Vec::new();
        for id in ids {
            if self.is_large(id).await {
                let manifest = self.account.manifest(&self.container, id).await;
                segments.extend(manifest.into_iter().map(|(path, _)| path));
            }
        }
        segments.sort();
        let listed: Vec<String> =
            self.account.names(&self.segments()).await.iter().map(|n| format!("/{}/{n}", self.segments())).collect();
        assert_eq!(listed, segments, "the segments container holds the segments of the large images only");
    }

    async fn is_large(&self, id: &str) -> bool {
        let headers = self.account.head(&self.container, id).await.expect("image object");
        headers.get("X-Static-Large-Object").is_some_and(|v| v == "True")
    }

    /// Waits (up to 10 s) until the segments container is empty: a failed writer removes its
    /// segments after the API has answered.
    async fn assert_segments_go_away(&self) {
        let mut left = Vec::new();
        for _ in 0..200 {
            left = self.account.names(&self.segments()).await;
            if left.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("segments left behind: {left:?}");
    }
}

/// Bytes that differ from one segment to the next (a period of 251 would repeat in each).
fn payload(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn queued_image(app: &TestApp) -> String {
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    image["id"].as_str().expect("id").to_owned()
}

async fn put(app: &TestApp, id: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("request")
}

async fn show(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v2/images/{id}")).await
}

async fn download(app: &TestApp, id: &str) -> Vec<u8> {
    let response = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(response.status(), 200, "download of {id}");
    response.bytes().await.expect("body").to_vec()
}

/// A body sent with chunked encoding (no Content-Length), so only the store sees its size.
fn chunked(data: Vec<u8>, chunk: usize) -> reqwest::Body {
    let chunks: Vec<io::Result<Vec<u8>>> = data.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

async fn wait_for_status(app: &TestApp, id: &str, wanted: &str) -> Value {
    for _ in 0..300 {
        let image = show(app, id).await;
        if image["status"] == wanted {
            return image;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("image {id} never became {wanted}: {}", show(app, id).await);
}

#[tokio::test]
async fn uploads_round_trip_around_every_segment_boundary() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(setup) = Setup::start(backend, |_, _| {}).await else { return };
        let app = &setup.app;
        let mut ids = Vec::new();
        // Up to large_object_size (1 MiB) one object; past it 1 MiB segments.
        for (size, segments) in
            [(0, 0), (1000, 0), (MIB - 1, 0), (MIB, 0), (MIB + 1, 2), (2 * MIB, 2), (3 * MIB + 17, 4)]
        {
            let id = queued_image(app).await;
            let data = payload(size);
            let body = if size % 2 == 0 { reqwest::Body::from(data.clone()) } else { chunked(data.clone(), 64 * 1024) };
            assert_eq!(put(app, &id, body).await.status(), 204, "upload of {size} bytes");
            let image = show(app, &id).await;
            let (md5, sha512) = coreutils_digests(&data);
            assert_eq!(image["status"], "active", "{size}");
            assert_eq!(image["size"], size, "{size}");
            assert_eq!((image["checksum"].as_str(), image["os_hash_value"].as_str()), (Some(&*md5), Some(&*sha512)));
            assert!(download(app, &id).await == data, "downloaded bytes of {size} differ");
            assert!(setup.account.object(&setup.container, &id).await == data, "Swift's object of {size} differs");
            if segments == 0 {
                assert!(!setup.is_large(&id).await, "{size} bytes are one object");
            } else {
                let manifest = setup.account.manifest(&setup.container, &id).await;
                let sizes: Vec<u64> = manifest.iter().map(|(_, bytes)| *bytes).collect();
                assert_eq!(sizes.len(), segments, "{size} bytes: {manifest:?}");
                assert!(sizes[..segments - 1].iter().all(|s| *s == MIB as u64), "{manifest:?}");
                assert_eq!(sizes.iter().sum::<u64>(), size as u64);
            }
            let locations = glint_core::image::locations::active(&app.db, &id).await.expect("locations");
            let urls: Vec<&str> = locations.iter().map(|l| l.url.as_str()).collect();
            assert_eq!(urls, [setup.location(&id)]);
            assert!(!urls[0].contains(&setup.swift.key) && !urls[0].contains("tester"), "credentials in {urls:?}");
            ids.push(id);
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        setup.assert_account_holds(&ids).await;
    }
}

#[tokio::test]
async fn ranged_downloads_of_a_large_object_cross_segments() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_, _| {}).await else { return };
    let app = &setup.app;
    let id = queued_image(app).await;
    let data = payload(3 * MIB + 100);
    assert_eq!(put(app, &id, data.clone()).await.status(), 204);
    assert!(setup.is_large(&id).await);
    let size = data.len();
    for (range, start, end) in [
        (format!("bytes={}-{}", MIB - 10, MIB + 9), MIB - 10, MIB + 10),
        (format!("bytes={}-{}", MIB - 1, 3 * MIB), MIB - 1, 3 * MIB + 1),
        ("bytes=0-0".to_owned(), 0, 1),
        ("bytes=-5".to_owned(), size - 5, size),
        (format!("bytes={}-", 3 * MIB), 3 * MIB, size),
    ] {
        let response = app
            .request(Method::GET, &format!("/v2/images/{id}/file"))
            .header("Range", &range)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(response.headers()["content-range"], format!("bytes {start}-{}/{size}", end - 1).as_str());
        assert!(response.bytes().await.expect("body") == data[start..end], "{range}");
    }
}

#[tokio::test]
async fn delete_removes_the_manifest_and_every_segment() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_, _| {}).await else { return };
    let app = &setup.app;
    let (large, small, other) = (queued_image(app).await, queued_image(app).await, queued_image(app).await);
    assert_eq!(put(app, &large, payload(4 * MIB)).await.status(), 204);
    assert_eq!(put(app, &small, payload(10)).await.status(), 204);
    assert_eq!(put(app, &other, payload(2 * MIB + 1)).await.status(), 204);
    setup.assert_account_holds(&[&large, &small, &other]).await;
    assert_eq!(setup.account.names(&setup.segments()).await.len(), 4 + 3);
    assert_eq!(app.delete(&format!("/v2/images/{large}")).await.status(), 204);
    setup.assert_account_holds(&[&small, &other]).await;
    assert_eq!(app.delete(&format!("/v2/images/{small}")).await.status(), 204);
    assert_eq!(app.delete(&format!("/v2/images/{other}")).await.status(), 204);
    setup.assert_account_holds(&[]).await;
}

#[tokio::test]
async fn upload_over_the_cap_is_413_and_leaves_no_segment() {
    let cap = 5 * MIB / 2;
    let Some(setup) = Setup::start(Backend::Sqlite, |config, _| config.images.image_size_cap = cap as u64).await else {
        return;
    };
    let app = &setup.app;
    let id = queued_image(app).await;
    // Two segments are stored when the third goes past the cap.
    expect_error(put(app, &id, chunked(payload(4 * MIB), 256 * 1024)).await, 413).await;
    let image = show(app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image["size"].is_null());
    setup.assert_segments_go_away().await;
    setup.assert_account_holds(&[]).await;
    assert_eq!(put(app, &id, chunked(payload(cap), 256 * 1024)).await.status(), 204, "exactly the cap is fine");
    setup.assert_account_holds(&[&id]).await;
}

/// Starts an upload of `declared` bytes (Content-Length) of image `id`, sends `sent` of them
/// and returns the connection, whose drop is the client going away.
async fn start_upload(app: &TestApp, id: &str, declared: usize, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connect");
    let head = format!(
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n",
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&payload(sent)).await.expect("part of the body");
    stream.flush().await.expect("flush");
    stream
}

#[tokio::test]
async fn client_disconnect_mid_upload_puts_the_image_back_and_leaves_no_segment() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_, _| {}).await else { return };
    let app = &setup.app;
    let id = queued_image(app).await;
    // Past two segments, so that one is stored and the next is being written when the client goes.
    let stream = start_upload(app, &id, 8 * MIB, 5 * MIB / 2).await;
    let mut listed = Vec::new();
    for _ in 0..200 {
        listed = setup.account.names(&setup.segments()).await;
        if listed.iter().any(|n| n.starts_with(&format!("{id}/"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listed.iter().any(|n| n.starts_with(&format!("leases/{id}/"))), "the upload holds a lease: {listed:?}");
    assert!(listed.iter().any(|n| n.starts_with(&format!("{id}/"))), "a segment is stored: {listed:?}");
    assert_eq!(show(app, &id).await["status"], "saving");
    drop(stream);
    wait_for_status(app, &id, "queued").await;
    setup.assert_segments_go_away().await;
    setup.assert_account_holds(&[]).await;
    assert_eq!(put(app, &id, payload(10)).await.status(), 204, "the service still works");
}

#[tokio::test]
async fn an_image_of_announced_size_is_one_object_up_to_large_object_size() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_, store| store.large_object_size = 10).await else { return };
    let app = &setup.app;
    let (announced, unknown, over) = (queued_image(app).await, queued_image(app).await, queued_image(app).await);
    // Past what an upload buffers to find out (8 MiB), under large_object_size (10 MiB).
    let data = payload(9 * MIB);
    assert_eq!(put(app, &announced, data.clone()).await.status(), 204);
    assert!(!setup.is_large(&announced).await, "announced: streamed into one object");
    assert_eq!(put(app, &unknown, chunked(data.clone(), 256 * 1024)).await.status(), 204);
    assert_eq!(setup.account.manifest(&setup.container, &unknown).await.len(), 9, "unknown size: segmented");
    assert_eq!(put(app, &over, payload(10 * MIB + 1)).await.status(), 204);
    assert_eq!(setup.account.manifest(&setup.container, &over).await.len(), 11);
    for id in [&announced, &unknown] {
        assert!(download(app, id).await == data, "downloaded bytes differ");
    }
    setup.assert_account_holds(&[&announced, &unknown, &over]).await;

    // A client leaving mid-object leaves no object.
    let id = queued_image(app).await;
    let stream = start_upload(app, &id, 9 * MIB, 4 * MIB).await;
    drop(stream);
    wait_for_status(app, &id, "queued").await;
    setup.assert_account_holds(&[&announced, &unknown, &over]).await;
}

#[tokio::test]
async fn swift_refusing_the_manifest_fails_the_upload_and_leaves_no_segment() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_, _| {}).await else { return };
    let app = &setup.app;
    // A quota on the image container that the segments fit (they live in the other one) but
    // a manifest does not: Swift refuses it with 413, after every segment is stored.
    let quota = setup
        .account
        .request(Method::PUT, &format!("/{}", setup.container))
        .header("X-Container-Meta-Quota-Bytes", "100")
        .send()
        .await
        .expect("PUT container");
    assert!(quota.status().is_success());
    let id = queued_image(app).await;
    expect_error(put(app, &id, payload(4 * MIB)).await, 413).await;
    assert_eq!(show(app, &id).await["status"], "queued");
    setup.assert_segments_go_away().await;
    setup.assert_account_holds(&[]).await;
    assert_eq!(put(app, &id, payload(50)).await.status(), 204, "what fits goes in");
    setup.assert_account_holds(&[&id]).await;
}

#[tokio::test]
async fn concurrent_uploads_of_large_images_each_get_their_segments() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_, _| {}).await else { return };
    let app = &setup.app;
    let mut uploads = Vec::new();
    for n in 0..4 {
        let (app, id) = (app.clone(), queued_image(app).await);
        // Different sizes and contents, some of unknown size.
        let data: Vec<u8> = payload(2 * MIB + n * 300_000).into_iter().map(|b| b ^ n as u8).collect();
        uploads.push(tokio::spawn(async move {
            let body = if n % 2 == 0 { reqwest::Body::from(data.clone()) } else { chunked(data.clone(), 100_000) };
            assert_eq!(put(&app, &id, body).await.status(), 204);
            (id, data)
        }));
    }
    let mut ids = Vec::new();
    for upload in uploads {
        let (id, data) = upload.await.expect("upload");
        assert!(download(app, &id).await == data, "downloaded bytes of {id} differ");
        ids.push(id);
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    setup.assert_account_holds(&ids).await;
}

#[tokio::test]
async fn containers_are_created_on_put_only_when_allowed() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_, _| {}).await else { return };
    let (app, account) = (&setup.app, &setup.account);
    assert!(!account.has_container(&setup.container).await && !account.has_container(&setup.segments()).await);
    let small = queued_image(app).await;
    assert_eq!(put(app, &small, payload(100)).await.status(), 204);
    assert!(account.has_container(&setup.container).await, "the first upload created the container");
    assert!(!account.has_container(&setup.segments()).await, "no segments container before a large image");
    let large = queued_image(app).await;
    assert_eq!(put(app, &large, payload(MIB + 1)).await.status(), 204);
    assert!(account.has_container(&setup.segments()).await);

    let Some(strict) = Setup::start(Backend::Sqlite, |_, store| store.create_container_on_put = false).await else {
        return;
    };
    let id = queued_image(&strict.app).await;
    let message = expect_error(put(&strict.app, &id, payload(100)).await, 500).await;
    assert_eq!(show(&strict.app, &id).await["status"], "queued", "{message}");
    assert!(!strict.account.has_container(&strict.container).await);
    let store = SwiftStore::open(&strict.swift.config(&strict.container), LEASE).expect("store");
    let unhealthy = SwiftStore::open(
        &SwiftConfig { create_container_on_put: false, ..strict.swift.config(&strict.container) },
        LEASE,
    )
    .expect("store");
    store.health().await.expect("a store that creates its container is healthy without it");
    let err = unhealthy.health().await.expect_err("missing container");
    assert!(err.to_string().contains(&format!("the Swift container {} does not exist", strict.container)), "{err}");
    strict.account.create_container(&strict.container).await;
    unhealthy.health().await.expect("healthy once the container exists");
    assert_eq!(put(&strict.app, &id, payload(100)).await.status(), 204);
}

#[tokio::test]
async fn stores_detail_shows_the_swift_store_without_credentials() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_, _| {}).await else { return };
    let app = &setup.app;
    let (in_swift, in_local) = (queued_image(app).await, queued_image(app).await);
    assert_eq!(put(app, &in_swift, payload(100)).await.status(), 204);
    let response = app
        .request(Method::PUT, &format!("/v2/images/{in_local}/file"))
        .header("Content-Type", "application/octet-stream")
        .header("X-Image-Meta-Store", "local")
        .body(payload(100))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 204);
    assert_eq!(show(app, &in_swift).await["stores"], "swift");
    assert_eq!(show(app, &in_local).await["stores"], "local");
    setup.assert_account_holds(&[&in_swift]).await;

    let detail = app.get_json("/v2/info/stores/detail").await;
    let stores = detail["stores"].as_array().expect("stores");
    let swift = stores.iter().find(|s| s["id"] == "swift").expect("swift store");
    assert_eq!(swift["type"], "swift");
    assert_eq!(swift["default"], "true");
    assert_eq!(swift["description"], "Swift");
    assert_eq!(
        swift["properties"],
        json!({"container": setup.container, "large_object_size": MIB, "large_object_chunk_size": MIB})
    );
    assert!(!detail.to_string().contains(&setup.swift.key), "no credentials in {detail}");
}

#[tokio::test]
async fn web_download_imports_into_the_swift_store() {
    let Some(setup) = Setup::start(Backend::Sqlite, |config, _| {
        config.import.filtering.allow_private_addresses = true;
        config.import.filtering.allowed_ports = Vec::new();
    })
    .await
    else {
        return;
    };
    let app = &setup.app;
    let data = payload(3 * MIB + 5);
    let web = WebServer::start().await;
    let url = web.route("/disk.raw", Reply::Bytes(data.clone()));
    let id = queued_image(app).await;
    let body = json!({"method": {"name": "web-download", "uri": url}, "stores": ["swift"]});
    assert_eq!(app.post_json(&format!("/v2/images/{id}/import"), &body).await.status(), 202);
    let image = wait_for_status(app, &id, "active").await;
    assert_eq!(image["stores"], "swift");
    assert_eq!(image["checksum"].as_str(), Some(coreutils_digests(&data).0.as_str()));
    assert_eq!(setup.account.manifest(&setup.container, &id).await.len(), 4);
    assert!(download(app, &id).await == data, "downloaded bytes differ");
    setup.assert_account_holds(&[&id]).await;
}

/// Runs copy-image of `id` to `store` and waits until the image is in `stores`.
async fn copy_image(app: &TestApp, id: &str, store: &str, stores: &str) {
    let copy = json!({"method": {"name": "copy-image"}, "stores": [store]});
    assert_eq!(app.post_json(&format!("/v2/images/{id}/import"), &copy).await.status(), 202);
    for _ in 0..300 {
        let image = show(app, id).await;
        if image["stores"] == stores && image.get("os_glance_import_task").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("copy-image to {store} did not finish: {}", show(app, id).await);
}

#[tokio::test]
async fn copy_image_between_filesystem_and_swift_keeps_the_bytes_and_deleting_a_copy_removes_its_segments() {
    let Some(setup) = Setup::start(Backend::Sqlite, |config, _| config.storage.default = "local".into()).await else {
        return;
    };
    let app = &setup.app;
    let data = payload(5 * MIB / 2);
    let id = queued_image(app).await;
    assert_eq!(put(app, &id, data.clone()).await.status(), 204);
    let before = show(app, &id).await;
    assert_eq!(before["stores"], "local");
    copy_image(app, &id, "swift", "local,swift").await;
    setup.assert_account_holds(&[&id]).await;
    assert_eq!(setup.account.manifest(&setup.container, &id).await.len(), 3);
    assert!(setup.account.object(&setup.container, &id).await == data, "the copy in Swift differs");

    // fs -> swift -> fs: the copy in Swift is the only one left, then copied back.
    assert_eq!(app.delete(&format!("/v2/stores/local/{id}")).await.status(), 204);
    assert_eq!(show(app, &id).await["stores"], "swift");
    assert!(download(app, &id).await == data, "the Swift copy reads back");
    copy_image(app, &id, "local", "local,swift").await;
    assert_eq!(app.delete(&format!("/v2/stores/swift/{id}")).await.status(), 204);
    let after = show(app, &id).await;
    assert_eq!((after["stores"].as_str(), after["status"].as_str()), (Some("local"), Some("active")));
    assert_eq!((&after["checksum"], &after["os_hash_value"]), (&before["checksum"], &before["os_hash_value"]));
    setup.assert_account_holds(&[]).await;
    assert!(download(app, &id).await == data, "the copy back in the filesystem store reads back");
}

#[tokio::test]
async fn swift_locations_are_accepted_only_in_the_container() {
    let Some(setup) = Setup::start(Backend::Sqlite, |c, _| c.images.show_multiple_locations = true).await else {
        return;
    };
    let app = &setup.app;
    let data = payload(1000);
    let uploaded = queued_image(app).await;
    assert_eq!(put(app, &uploaded, data.clone()).await.status(), 204);
    let large = queued_image(app).await;
    assert_eq!(put(app, &large, payload(MIB + 10)).await.status(), 204);
    // An object the operator put in the container, outside Glint's image names.
    setup.account.put(&setup.container, "external.img", data.clone(), &[]).await;
    let segment = setup.account.manifest(&setup.container, &large).await.remove(0).0;
    let add = |url: String| json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}]);
    let base = format!("swift+{}", setup.swift.auth_url);
    for foreign in [
        format!("{base}/other-container/external.img"),
        format!("{base}{segment}"),
        format!("{base}/{}/missing.img", setup.container),
        format!("{base}/{}/{uploaded}", setup.container),
        format!("swift+http://{}:{}@{}/{}/external.img", "glint:tester", setup.swift.key, &base[13..], setup.container),
    ] {
        let id = queued_image(app).await;
        let message = expect_error(app.patch(&id, &add(foreign.clone())).await, 400).await;
        assert!(message.starts_with("Invalid location"), "{foreign}: {message}");
    }
    let id = queued_image(app).await;
    assert_eq!(app.patch(&id, &add(format!("{base}/{}/external.img", setup.container))).await.status(), 200);
    let image = show(app, &id).await;
    assert_eq!((image["status"].as_str(), image["stores"].as_str()), (Some("active"), Some("swift")));
    assert_eq!(image["size"], 1000);
    assert!(download(app, &id).await == data, "downloaded bytes differ");
}

/// A byte stream of `data` that stops after `first` bytes until `go` fires.
fn paused(data: Vec<u8>, first: usize, go: tokio::sync::oneshot::Receiver<()>) -> ByteStream {
    let (head, tail) = data.split_at(first);
    let (head, tail) = (bytes::Bytes::from(head.to_vec()), bytes::Bytes::from(tail.to_vec()));
    Box::pin(futures_util::stream::unfold((Some(head), Some(go), Some(tail)), |(head, go, tail)| async move {
        if let Some(head) = head {
            return Some((Ok(head), (None, go, tail)));
        }
        if let Some(go) = go {
            let _ = go.await;
        }
        tail.map(|tail| (Ok(tail), (None, None, None)))
    }))
}

/// All the bytes `store` streams for `location` (or the `range` of them).
async fn read_all(store: &SwiftStore, location: &str, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let stream = store.get(location, range).await.expect("get");
    futures_util::TryStreamExt::try_fold(stream, Vec::new(), |mut all, chunk| async move {
        all.extend_from_slice(&chunk);
        Ok(all)
    })
    .await
    .expect("read")
}

/// Writes what a writer that died mid-upload leaves: a lease last renewed two minutes ago
/// (Swift takes the client's `X-Timestamp`) and `segments` segments of `size` bytes.
async fn plant_dead_upload(setup: &Setup, image_id: &str, upload: &str, segments: usize, size: usize) {
    let long_ago = format!("{:.5}", chrono::Utc::now().timestamp_micros() as f64 / 1e6 - 120.0);
    for index in 1..=segments {
        let name = format!("{image_id}/{upload}/{index:08}");
        setup.account.put(&setup.segments(), &name, payload(size), &[("X-Timestamp", long_ago.clone())]).await;
    }
    let lease = format!("leases/{image_id}/{upload}");
    setup.account.put(&setup.segments(), &lease, Vec::new(), &[("X-Timestamp", long_ago)]).await;
}

#[tokio::test]
async fn the_sweep_removes_the_segments_of_dead_writers_only() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_, _| {}).await else { return };
    let store = SwiftStore::open(&setup.swift.config(&setup.container), LEASE).expect("store");
    setup.account.create_container(&setup.container).await;
    setup.account.create_container(&setup.segments()).await;
    // A committed large image, whose writer died after writing the manifest, before dropping
    // its lease.
    let committed = uuid::Uuid::new_v4().to_string();
    let upload = "00112233445566778899aabbccddeeff";
    plant_dead_upload(&setup, &committed, upload, 2, 1000).await;
    let manifest = json!([
        {"path": format!("/{}/{committed}/{upload}/00000001", setup.segments()), "etag": null, "size_bytes": null},
        {"path": format!("/{}/{committed}/{upload}/00000002", setup.segments()), "etag": null, "size_bytes": null},
    ]);
    let name = format!("{committed}?multipart-manifest=put");
    let headers = [("X-Object-Meta-Glint-Upload", upload.to_owned())];
    setup.account.put(&setup.container, &name, manifest.to_string().into_bytes(), &headers).await;
    let (location, data) = (setup.location(&committed), [payload(1000), payload(1000)].concat());
    // Two dead uploads, one of them of the same image as a live one.
    let (dead, live) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    plant_dead_upload(&setup, &dead, "0123456789abcdef0123456789abcdef", 2, 1000).await;
    plant_dead_upload(&setup, &live, "fedcba9876543210fedcba9876543210", 1, 500).await;
    // A live upload paused after its first segment.
    let (go, wait) = tokio::sync::oneshot::channel();
    let slow_data = payload(3 * MIB);
    let slow = tokio::spawn({
        let (store, live, slow_data) = (
            SwiftStore::open(&setup.swift.config(&setup.container), LEASE).expect("store"),
            live.clone(),
            slow_data.clone(),
        );
        async move { store.put(&live, paused(slow_data, 3 * MIB / 2, wait), u64::MAX).await }
    });
    let mut listed = Vec::new();
    for _ in 0..200 {
        listed = setup.account.names(&setup.segments()).await;
        if listed.iter().filter(|n| n.starts_with(&format!("{live}/"))).count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live_objects: Vec<String> = listed.iter().filter(|n| n.contains(&live)).cloned().collect();
    assert_eq!(live_objects.len(), 4, "dead segment + lease, live segment + lease: {listed:?}");

    let swept = store.remove_abandoned(&sweep_limits(Duration::from_secs(3600))).await.expect("sweep");
    assert_eq!((swept.files, swept.bytes), (3, 2 * 1000 + 500), "{swept:?}");
    let left = setup.account.names(&setup.segments()).await;
    assert!(!left.iter().any(|n| n.contains(&dead)), "the dead upload is gone: {left:?}");
    assert!(!left.iter().any(|n| n.contains("fedcba98")), "the dead upload of the live image is gone: {left:?}");
    assert!(
        !left.iter().any(|n| n.starts_with("leases/") && n.contains(&committed)),
        "the committed upload's lease went"
    );
    let still: Vec<&String> = left.iter().filter(|n| n.contains(&live)).collect();
    assert_eq!(still.len(), 2, "the live upload keeps its lease and segment: {left:?}");
    assert!(store.get(&location, None).await.is_ok());
    let read: Vec<u8> = read_all(&store, &location, None).await;
    assert!(read == data, "the committed image is intact");

    go.send(()).expect("resume");
    let slow_location = slow.await.expect("join").expect("the live upload completes");
    let read: Vec<u8> = read_all(&store, &slow_location, None).await;
    assert!(read == slow_data, "the live upload's image is intact");
    assert_eq!(store.remove_abandoned(&sweep_limits(Duration::ZERO)).await.expect("sweep").files, 0);
    assert!(!setup.account.names(&setup.segments()).await.iter().any(|n| n.starts_with("leases/")), "no lease left");
}

#[tokio::test]
async fn glance_s_dynamic_large_objects_are_read_and_deleted_with_their_segments() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_, _| {}).await else { return };
    let store = SwiftStore::open(&setup.swift.config(&setup.container), LEASE).expect("store");
    setup.account.create_container(&setup.container).await;
    // Glance's layout: `<name>-00001`... beside the manifest, in the same container.
    let (first, second) = (payload(1500), payload(700));
    setup.account.put(&setup.container, "migrated-00001", first.clone(), &[]).await;
    setup.account.put(&setup.container, "migrated-00002", second.clone(), &[]).await;
    let manifest = format!("{}/migrated-", setup.container);
    setup.account.put(&setup.container, "migrated", Vec::new(), &[("X-Object-Manifest", manifest)]).await;
    let location = setup.location("migrated");
    assert_eq!(store.size(&location).await.expect("size"), 2200);
    let read = read_all(&store, &location, Some(1400..1600)).await;
    assert!(read[..] == [&first[1400..], &second[..100]].concat()[..], "a range across Glance's segments");
    store.delete(&location).await.expect("delete");
    assert_eq!(setup.account.names(&setup.container).await, Vec::<String>::new());
    store.delete(&location).await.expect("deleting again is fine");
}

#[tokio::test]
async fn health_fails_fast_and_says_why() {
    let Some(swift) = swift() else { return };
    let container = Swift::container();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let unreachable = SwiftStore::open(
        &SwiftConfig { auth_url: format!("http://127.0.0.1:{closed}/auth/v1.0"), ..swift.config(&container) },
        LEASE,
    )
    .expect("store");
    let started = std::time::Instant::now();
    let err = unreachable.health().await.expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(err.to_string().contains("cannot reach"), "{err}");
    let wrong_key =
        SwiftStore::open(&SwiftConfig { key: "wrong".into(), ..swift.config(&container) }, LEASE).expect("store");
    let err = wrong_key.health().await.expect_err("wrong key");
    assert!(matches!(err, StoreError::Denied(_)), "{err}");
    assert!(!err.to_string().contains("wrong"), "the key stays out of messages: {err}");
    SwiftStore::open(&swift.config(&container), LEASE).expect("store").health().await.expect("healthy");
}

#[tokio::test]
async fn keystone_v3_credentials_find_swift_in_the_catalog() {
    let Some(swift) = swift() else { return };
    let Some(keystone) = keystone() else { return };
    let Some(proxy) = keystone_proxy(swift, keystone) else { return };
    let (user, password, project) = User::Alice.credentials();
    let container = Swift::container();
    let store = SwiftConfig {
        auth_url: keystone.url.clone(),
        auth_version: 3,
        user: user.into(),
        key: password.into(),
        project_name: Some(project.into()),
        ..swift.config(&container)
    };
    let healthy = SwiftStore::open(&store, LEASE).expect("store").health().await;
    healthy.unwrap_or_else(|e| panic!("Alice's account does not answer: {e}\n{}", swift.log("proxy-keystone")));
    let in_app = store.clone();
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, move |config: &mut Config| {
        config.storage.default = "swift".into();
        config.storage.backends.insert("swift".into(), BackendConfig::Swift(in_app));
    })
    .await
    else {
        return;
    };
    let id = queued_image(&app).await;
    let data = payload(5 * MIB / 2);
    assert_eq!(put(&app, &id, data.clone()).await.status(), 204);
    assert_eq!(show(&app, &id).await["status"], "active");
    let locations = glint_core::image::locations::active(&app.db, &id).await.expect("locations");
    assert_eq!(locations[0].url, format!("swift+{}/{container}/{id}", keystone.url));
    // In Alice's project's account, as seen through the Keystone proxy with her own token.
    let account_url = format!("{}/v1/AUTH_{}", proxy.url, keystone.project_of(User::Alice));
    let account = Account::at(account_url, keystone.token(User::Alice).await);
    assert_eq!(account.manifest(&container, &id).await.len(), 3);
    assert!(download(&app, &id).await == data, "downloaded bytes differ");
    assert_eq!(app.delete(&format!("/v2/images/{id}")).await.status(), 204);
    assert_eq!(account.names(&container).await, Vec::<String>::new());
    assert_eq!(account.names(&format!("{container}_segments")).await, Vec::<String>::new());

    let elsewhere =
        SwiftStore::open(&SwiftConfig { region: Some("nowhere".into()), ..store.clone() }, LEASE).expect("store");
    let err = elsewhere.health().await.expect_err("no endpoint in that region");
    assert!(err.to_string().contains("no public object-store endpoint in region nowhere"), "{err}");
    let wrong = SwiftStore::open(&SwiftConfig { key: "not-alice-pw".into(), ..store }, LEASE).expect("store");
    assert!(matches!(wrong.health().await, Err(StoreError::Denied(_))));
}

/// Sweep bounds that never cut a test's sweep short; `idle` (which Swift ignores) as given.
fn sweep_limits(idle: Duration) -> glint_core::store::SweepLimits {
    glint_core::store::SweepLimits { lease: idle, idle, max_time: Duration::from_secs(60), max_removals: 1000 }
}

/// A stand-in for a Swift proxy between the store and the all-in-one, at the account's storage
/// URL: it answers `GET /info` itself when told to (a cluster with other limits), counting the
/// requests, stalls segment PUTs whose name ends in `stall` (reads their body, never answers:
/// a hung proxy), and passes everything else through, one request per connection.
struct Front {
    /// The account's storage URL through the front.
    storage_url: String,
    info_requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    async fn start(account: &Account, info: Option<Value>, stall: Option<&'static str>) -> Front {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = reqwest::Url::parse(&account.storage_url).expect("storage URL");
        let upstream = format!("{}:{}", upstream.host_str().expect("host"), upstream.port().expect("port"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let storage_url = account.storage_url.replacen(&format!("//{upstream}"), &format!("//127.0.0.1:{port}"), 1);
        let info_requests = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = info_requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let (info, upstream, counter) = (info.clone(), upstream.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let line = text.lines().next().unwrap_or_default().to_owned();
                    let mut words = line.split(' ');
                    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
                    if method == "GET" && path == "/info" {
                        counter.fetch_add(1, Ordering::SeqCst);
                        if let Some(info) = &info {
                            let body = info.to_string();
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = client.write_all(answer.as_bytes()).await;
                            return;
                        }
                    }
                    if method == "PUT" && path.contains("_segments/") && stall.is_some_and(|s| path.ends_with(s)) {
                        let mut sink = vec![0u8; 64 * 1024];
                        while client.read(&mut sink).await.unwrap_or(0) > 0 {}
                        return;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    // One request per connection, so that every request passes through here.
                    let head = text.replacen("\r\n", "\r\nConnection: close\r\n", 1);
                    if server.write_all(head.as_bytes()).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Front { storage_url, info_requests, task }
    }

    fn info_requests(&self) -> usize {
        self.info_requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sizes of the segments of large object `id`, in MiB (rounded down).
async fn segment_mibs(setup: &Setup, id: &str) -> Vec<u64> {
    setup.account.manifest(&setup.container, id).await.iter().map(|(_, size)| size / MIB as u64).collect()
}

#[tokio::test]
async fn segments_grow_to_fit_the_cluster_s_limits_read_once_from_info() {
    let Some(swift) = swift() else { return };
    let account = swift.account().await;
    // A cluster whose manifests name at most 4 segments of at most 4 MiB.
    let info = json!({"swift": {"max_file_size": 4 * MIB}, "slo": {"max_manifest_segments": 4, "min_segment_size": 1}});
    let front = Front::start(&account, Some(info), None).await;
    let endpoint = front.storage_url.clone();
    let Some(setup) = Setup::start(Backend::Sqlite, move |config, store| {
        config.images.image_size_cap = 20 * MIB as u64;
        store.endpoint = Some(endpoint);
    })
    .await
    else {
        return;
    };
    let app = &setup.app;

    // Known size: 1 MiB segments would be 11; 3 MiB ones make 4.
    let (known, unknown) = (queued_image(app).await, queued_image(app).await);
    let data = payload(10 * MIB + 1);
    assert_eq!(put(app, &known, data.clone()).await.status(), 204);
    assert_eq!(segment_mibs(&setup, &known).await, [3, 3, 3, 1]);
    assert!(download(app, &known).await == data);
    // Unknown size: 1 MiB segments for half the count, then the largest object for the rest
    // of the cap (18 MiB left for 2 segments; at most 4 MiB each).
    let data = payload(10 * MIB);
    assert_eq!(put(app, &unknown, chunked(data.clone(), 256 * 1024)).await.status(), 204);
    assert_eq!(segment_mibs(&setup, &unknown).await, [1, 1, 4, 4]);
    assert!(download(app, &unknown).await == data);

    // More than 4 segments of 4 MiB hold: refused before a byte is sent when the size is
    // known, when the segments run out otherwise; nothing is left either way.
    let refused = queued_image(app).await;
    let message = expect_error(put(app, &refused, payload(17 * MIB)).await, 413).await;
    assert!(message.contains(&(16 * MIB).to_string()), "{message}");
    expect_error(put(app, &refused, chunked(payload(17 * MIB), 256 * 1024)).await, 413).await;
    // The failed writer removes its segments after the API has answered.
    for _ in 0..200 {
        if !setup.account.names(&setup.segments()).await.iter().any(|n| n.contains(&refused)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup.assert_account_holds(&[&known, &unknown]).await;
    assert_eq!(front.info_requests(), 1, "the limits are read once");
}

#[tokio::test]
async fn a_segment_size_over_the_cluster_s_largest_object_is_refused_by_name() {
    let Some(swift) = swift() else { return };
    let account = swift.account().await;
    let front = Front::start(&account, Some(json!({"swift": {"max_file_size": 2 * MIB}, "slo": {}})), None).await;
    let container = Swift::container();
    let config = SwiftConfig {
        endpoint: Some(front.storage_url.clone()),
        large_object_chunk_size: 3,
        ..swift.config(&container)
    };
    let store = SwiftStore::open(&config, LEASE).expect("store");
    let err = store.health().await.expect_err("3 MiB segments on a cluster of 2 MiB objects");
    let message = err.to_string();
    assert!(message.contains("large_object_chunk_size = 3 MiB") && message.contains("max_file_size"), "{message}");
    let data: ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from(payload(MIB)))]));
    let err = store.put("image", data, u64::MAX).await.expect_err("uploads fail too");
    assert!(err.to_string().contains("large_object_chunk_size"), "{err}");
    assert!(!account.has_container(&container).await, "nothing was written");
}

#[tokio::test]
async fn a_stalled_segment_upload_fails_after_segment_timeout_and_its_segments_go() {
    let Some(swift) = swift() else { return };
    let account = swift.account().await;
    // The second segment's PUT hangs; the first is stored.
    let front = Front::start(&account, None, Some("/00000002")).await;
    let endpoint = front.storage_url.clone();
    let Some(setup) = Setup::start(Backend::Sqlite, move |_, store| {
        store.endpoint = Some(endpoint);
        store.segment_timeout = 2;
    })
    .await
    else {
        return;
    };
    let app = &setup.app;
    let id = queued_image(app).await;
    let upload = tokio::time::timeout(Duration::from_secs(20), put(app, &id, payload(4 * MIB)));
    expect_error(upload.await.expect("the upload ends within 20 s"), 500).await;
    assert_eq!(show(app, &id).await["status"], "queued");
    setup.assert_segments_go_away().await;
    setup.assert_account_holds(&[]).await;
}
