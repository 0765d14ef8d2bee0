//! The S3 store against a real S3-compatible server (moto on loopback): uploads and downloads
//! through the API, and what is left in the bucket after each kind of failure.

use std::io;

use glint_core::config::{BackendConfig, Config, StorageConfig};
use glint_core::store::Stores;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::s3::S3Server;
use crate::support::{Backend, TestApp, expect_error};

/// Key prefix of the image objects.
const PREFIX: &str = "images";
const MIB: usize = 1024 * 1024;

/// A TestApp with two stores, `local` (filesystem) and `s3` (the default, in `s3`'s bucket).
struct Setup {
    app: TestApp,
    s3: S3Server,
    _local: tempfile::TempDir,
}

impl Setup {
    async fn start(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<Setup> {
        let s3 = S3Server::start().await?;
        let local = tempfile::tempdir().expect("tempdir");
        let (local_path, s3_config) = (local.path().join("local"), s3.config(Some(PREFIX)));
        let app = TestApp::spawn_with(backend, move |config: &mut Config| {
            config.storage.default = "s3".into();
            config
                .storage
                .backends
                .insert("local".into(), BackendConfig::Filesystem { path: local_path, description: None });
            config.storage.backends.insert("s3".into(), BackendConfig::S3(s3_config));
            adjust(config);
        })
        .await?;
        Some(Setup { app, s3, _local: local })
    }

    fn key(&self, id: &str) -> String {
        format!("{PREFIX}/{id}")
    }

    /// Asserts the bucket holds exactly the objects of `ids` and no unfinished upload.
    async fn assert_bucket_holds(&self, ids: &[&str]) {
        let mut expected: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        expected.sort();
        assert_eq!(self.s3.keys().await, expected);
        assert_eq!(self.s3.pending_uploads().await, Vec::<String>::new());
    }
}

pub(crate) fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

pub(crate) async fn queued_image(app: &TestApp) -> String {
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    image["id"].as_str().expect("id").to_owned()
}

pub(crate) async fn put(app: &TestApp, id: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("request")
}

pub(crate) async fn show(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v2/images/{id}")).await
}

/// A body sent with chunked encoding (no Content-Length), so only the store sees its size.
pub(crate) fn chunked(data: Vec<u8>, chunk: usize) -> reqwest::Body {
    let chunks: Vec<io::Result<Vec<u8>>> = data.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn upload_then_download_gives_identical_bytes() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(setup) = Setup::start(backend, |_| {}).await else { continue };
        let app = &setup.app;
        let id = queued_image(app).await;
        // Three parts of a multipart upload: 8 MiB, 8 MiB and the rest.
        let data = payload(20 * MIB + 17);
        assert_eq!(put(app, &id, data.clone()).await.status(), 204);
        let image = show(app, &id).await;
        assert_eq!(image["status"], "active");
        assert_eq!(image["size"], data.len());
        let response = app.get(&format!("/v2/images/{id}/file")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-length"], data.len().to_string().as_str());
        assert!(response.bytes().await.expect("body") == data, "downloaded bytes differ");
        setup.assert_bucket_holds(&[&id]).await;
        assert!(setup.s3.object(&setup.key(&id)).await == data, "the object in the bucket differs");
        let locations = glint_core::image::locations::active(&app.db, &id).await.expect("locations");
        let urls: Vec<&str> = locations.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(urls, [format!("s3://{}/{PREFIX}/{id}", setup.s3.bucket)]);
    }
}

#[tokio::test]
async fn glance_direct_into_s3_copies_the_staged_data_with_the_digests_taken_while_staging() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_| {}).await else { return };
    let app = &setup.app;
    let id = queued_image(app).await;
    let data = payload(20 * MIB + 17);
    assert_eq!(crate::imports::stage(app, &id, data.clone()).await.status(), 204);
    let started = crate::imports::import(app, &id, json!({"method": {"name": "glance-direct"}})).await;
    assert_eq!(started.status(), 202);
    assert_eq!(crate::imports::finished_task(app, &id).await["status"], "success");
    let image = show(app, &id).await;
    let (md5, sha512) = crate::image_data::coreutils_digests(&data);
    assert_eq!(image["status"], "active");
    assert_eq!(
        (image["checksum"].as_str(), image["os_hash_value"].as_str(), image["size"].as_u64()),
        (Some(md5.as_str()), Some(sha512.as_str()), Some(data.len() as u64))
    );
    setup.assert_bucket_holds(&[&id]).await;
    assert!(setup.s3.object(&setup.key(&id)).await == data, "the object in the bucket differs");
}

#[tokio::test]
async fn small_upload_round_trips_in_a_single_put() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_| {}).await else { return };
    let app = &setup.app;
    let (small, empty) = (queued_image(app).await, queued_image(app).await);
    assert_eq!(put(app, &small, payload(1000)).await.status(), 204);
    assert_eq!(put(app, &empty, Vec::<u8>::new()).await.status(), 204);
    assert_eq!(app.get(&format!("/v2/images/{small}/file")).await.bytes().await.expect("body"), payload(1000));
    let response = app.get(&format!("/v2/images/{empty}/file")).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.expect("body").is_empty());
    setup.assert_bucket_holds(&[&small, &empty]).await;
    assert!(setup.s3.object(&setup.key(&empty)).await.is_empty());
}

#[tokio::test]
async fn ranged_download_is_206_with_the_requested_bytes() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_| {}).await else { return };
    let app = &setup.app;
    let id = queued_image(app).await;
    let data = payload(9 * MIB);
    assert_eq!(put(app, &id, data.clone()).await.status(), 204);
    let size = data.len();
    let boundary = 8 * MIB;
    for (range, start, end) in [
        (format!("bytes={}-{}", boundary - 10, boundary + 9), boundary - 10, boundary + 10),
        ("bytes=0-0".to_owned(), 0, 1),
        ("bytes=-5".to_owned(), size - 5, size),
    ] {
        let response = app
            .request(Method::GET, &format!("/v2/images/{id}/file"))
            .header("Range", &range)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(response.headers()["content-range"], format!("bytes {start}-{}/{size}", end - 1).as_str());
        assert_eq!(response.bytes().await.expect("body"), &data[start..end], "{range}");
    }
}

#[tokio::test]
async fn delete_removes_the_object() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_| {}).await else { return };
    let app = &setup.app;
    let (doomed, kept) = (queued_image(app).await, queued_image(app).await);
    assert_eq!(put(app, &doomed, payload(10 * MIB)).await.status(), 204);
    assert_eq!(put(app, &kept, payload(10)).await.status(), 204);
    setup.assert_bucket_holds(&[&doomed, &kept]).await;
    assert_eq!(app.delete(&format!("/v2/images/{doomed}")).await.status(), 204);
    setup.assert_bucket_holds(&[&kept]).await;
}

#[tokio::test]
async fn upload_over_the_cap_is_413_and_leaves_no_object_nor_multipart_upload() {
    let cap = 12 * MIB;
    let Some(setup) = Setup::start(Backend::Sqlite, |config| config.images.image_size_cap = cap as u64).await else {
        return;
    };
    let app = &setup.app;
    let id = queued_image(app).await;
    // Past one part, so the cap is hit in the middle of a multipart upload.
    expect_error(put(app, &id, chunked(payload(20 * MIB), MIB)).await, 413).await;
    let image = show(app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image["size"].is_null());
    setup.assert_bucket_holds(&[]).await;
    assert_eq!(put(app, &id, chunked(payload(cap), MIB)).await.status(), 204, "exactly the cap is fine");
    setup.assert_bucket_holds(&[&id]).await;
}

#[tokio::test]
async fn client_disconnect_mid_upload_puts_image_back_to_queued_and_leaves_nothing() {
    use tokio::io::AsyncWriteExt;
    let Some(setup) = Setup::start(Backend::Sqlite, |_| {}).await else { return };
    let app = &setup.app;
    let id = queued_image(app).await;
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connect");
    let head = format!(
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        32 * MIB
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    // More than a part, so a multipart upload is under way when the client goes.
    stream.write_all(&payload(12 * MIB)).await.expect("part of the body");
    stream.flush().await.expect("flush");
    let mut pending = Vec::new();
    for _ in 0..200 {
        pending = setup.s3.pending_uploads().await;
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(pending, vec![setup.key(&id)], "a multipart upload is under way");
    assert_eq!(show(app, &id).await["status"], "saving");
    drop(stream);
    let mut status = String::new();
    for _ in 0..200 {
        status = show(app, &id).await["status"].as_str().expect("status").to_owned();
        if status == "queued" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "queued");
    setup.assert_bucket_holds(&[]).await;
    assert_eq!(put(app, &id, payload(10)).await.status(), 204, "the service still works");
}

#[tokio::test]
async fn image_stores_field_names_the_s3_store() {
    let Some(setup) = Setup::start(Backend::Sqlite, |_| {}).await else { return };
    let app = &setup.app;
    let (in_s3, in_local) = (queued_image(app).await, queued_image(app).await);
    assert_eq!(put(app, &in_s3, payload(100)).await.status(), 204);
    let response = app
        .request(Method::PUT, &format!("/v2/images/{in_local}/file"))
        .header("Content-Type", "application/octet-stream")
        .header("X-Image-Meta-Store", "local")
        .body(payload(100))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 204);
    assert_eq!(show(app, &in_s3).await["stores"], "s3");
    assert_eq!(show(app, &in_local).await["stores"], "local");
    setup.assert_bucket_holds(&[&in_s3]).await;

    let detail = app.get_json("/v2/info/stores/detail").await;
    let s3 = detail["stores"].as_array().expect("stores").iter().find(|s| s["id"] == "s3").expect("s3 store").clone();
    assert_eq!(s3["type"], "s3");
    assert_eq!(s3["default"], "true");
    assert_eq!(s3["description"], "Object storage");
    assert_eq!(s3["properties"]["s3_store_large_object_chunk_size"], 8 * MIB);
    assert!(!detail.to_string().contains("testing"), "no credentials in {detail}");
}

#[tokio::test]
async fn health_check_fails_for_a_missing_bucket() {
    let Some(s3) = S3Server::start().await else { return };
    let missing = glint_core::config::S3Config { bucket: "no-such-bucket".into(), ..s3.config(None) };
    let storage = StorageConfig {
        default: "s3".into(),
        backends: [
            ("s3".to_owned(), BackendConfig::S3(s3.config(Some(PREFIX)))),
            ("gone".to_owned(), BackendConfig::S3(missing)),
        ]
        .into(),
        ..StorageConfig::default()
    };
    let stores = Stores::from_config(&storage, std::time::Duration::from_secs(60)).expect("stores");
    stores.get("s3").expect("s3").health().await.expect("healthy");
    assert!(stores.get("gone").expect("gone").health().await.is_err());
}

#[tokio::test]
async fn s3_locations_are_accepted_only_under_the_configured_bucket_and_prefix() {
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::Mariadb] {
        let Some(setup) = Setup::start(backend, |c| c.images.show_multiple_locations = true).await else { continue };
        let app = &setup.app;
        let config = setup.s3.config(Some(PREFIX));
        // An object the operator put in the bucket, outside Glint's image names.
        let store = glint_core::store::S3Store::open(&config, std::time::Duration::from_secs(60)).expect("s3 store");
        let data = payload(1000);
        let body: glint_core::store::ByteStream =
            Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from(data.clone()))]));
        let url = glint_core::store::Store::put(&store, "external.img", body, 1 << 20).await.expect("put");
        assert_eq!(url, format!("s3://{}/{PREFIX}/external.img", config.bucket));
        let uploaded = queued_image(app).await;
        assert_eq!(put(app, &uploaded, data.clone()).await.status(), 204);
        let add = |url: String| json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}]);
        for foreign in [
            format!("s3://other-{}/{PREFIX}/external.img", config.bucket),
            format!("s3://{}/elsewhere/external.img", config.bucket),
            format!("s3://{}/{PREFIX}/missing.img", config.bucket),
            format!("s3://{}/{PREFIX}/{uploaded}", config.bucket),
        ] {
            let id = queued_image(app).await;
            let message = expect_error(app.patch(&id, &add(foreign.clone())).await, 400).await;
            assert!(message.starts_with("Invalid location"), "{foreign}: {message}");
            assert_eq!(show(app, &id).await["status"], "queued", "{foreign}");
        }
        let id = queued_image(app).await;
        assert_eq!(app.patch(&id, &add(url)).await.status(), 200);
        let image = show(app, &id).await;
        assert_eq!((image["status"].as_str(), image["stores"].as_str()), (Some("active"), Some("s3")));
        let response = app.get(&format!("/v2/images/{id}/file")).await;
        assert!(response.bytes().await.expect("body") == data, "downloaded bytes differ");
    }
}

/// The marker name of upload `id` of image `name` (see glint_core::store::S3Store).
fn upload_marker(name: &str, id: &str) -> String {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}/.glint-uploads/{name}/{hex}")
}

#[tokio::test]
async fn sweeps_abort_the_uploads_of_dead_writers_and_leave_live_and_foreign_ones() {
    use glint_core::store::{ByteStream, S3Store, Store, SweepLimits, Swept};
    use std::time::Duration;

    let Some(s3) = S3Server::start().await else { return };
    let lease = Duration::from_secs(2);
    let store = std::sync::Arc::new(S3Store::open(&s3.config(Some(PREFIX)), lease).expect("store"));
    let limits =
        SweepLimits { lease, idle: Duration::from_secs(300), max_time: Duration::from_secs(30), max_removals: 100 };
    // A writer that died after its first part: its marker, put then, is never renewed.
    let dead_key = format!("{PREFIX}/dead-img");
    let dead = s3.start_upload(&dead_key, payload(5 * MIB)).await;
    s3.put(&upload_marker("dead-img", &dead), Vec::new()).await;
    // Uploads that are not of Glint's image objects: never touched.
    let foreign = [
        s3.start_upload("elsewhere/img", payload(10)).await,
        s3.start_upload(&format!("{PREFIX}/dir/img"), payload(10)).await,
    ];
    // A live writer, and a slow one: past one part at once, then a byte every half second.
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(1);
    let data: ByteStream =
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }));
    let put = tokio::spawn({
        let store = store.clone();
        async move { store.put("live-img", data, 1 << 30).await }
    });
    tx.send(Ok(payload(9 * MIB).into())).await.expect("send");
    let live_key = format!("{PREFIX}/live-img");
    for _ in 0..200 {
        if s3.pending_uploads().await.contains(&live_key) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(s3.pending_uploads().await.contains(&live_key), "the live upload is under way");

    assert_eq!(store.remove_abandoned(&limits).await.expect("sweep"), Swept::default(), "the dead marker is fresh yet");
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send(Ok(bytes::Bytes::from_static(b"x"))).await.expect("send");
    }
    // One that has just begun: only its writer's `starting-` marker is there yet.
    let young = s3.start_upload(&format!("{PREFIX}/young-img"), payload(10)).await;
    s3.put(&format!("{PREFIX}/.glint-uploads/young-img/starting-0123"), Vec::new()).await;

    let swept = store.remove_abandoned(&limits).await.expect("sweep");
    assert_eq!(swept, Swept { files: 1, bytes: 5 * MIB as u64 }, "the dead writer's upload, sized by its parts");
    let pending = s3.pending_upload_ids().await;
    assert!(!pending.iter().any(|(key, _)| *key == dead_key), "{pending:?}");
    for id in foreign.iter().chain([&young]) {
        assert!(pending.iter().any(|(_, pending)| pending == id), "{id} is left alone: {pending:?}");
    }
    assert!(!s3.keys().await.contains(&upload_marker("dead-img", &dead)), "the stale marker is removed");

    drop(tx);
    let location = put.await.expect("join").expect("the live upload completes");
    assert_eq!(location, format!("s3://{}/{live_key}", s3.bucket));
    let mut expected = payload(9 * MIB);
    expected.extend_from_slice(b"xxxxxxxx");
    assert!(s3.object(&live_key).await == expected, "the live upload's object is whole");
    assert!(!s3.pending_uploads().await.contains(&live_key));
    let markers: Vec<String> = s3.keys().await.into_iter().filter(|k| k.contains(".glint-uploads/live-img")).collect();
    assert!(markers.is_empty(), "the writer removes its marker when done: {markers:?}");
}
