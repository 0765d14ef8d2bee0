//! PUT and GET /v2/images/{id}/file: streaming upload and download, and their failures.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use glint_core::config::Config;
use glint_core::store::{ByteStream, Store, StoreError};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::rows::set_columns;
use crate::support::{Backend, TestApp, expect_error, on_every_database, store_listing};

on_every_database!(
    upload_then_download_gives_back_the_same_bytes,
    upload_with_chunked_encoding_works,
    upload_of_empty_data_activates_with_empty_digests,
    upload_to_an_image_that_is_not_queued_is_409,
    upload_without_formats_is_400_and_image_stays_queued,
    upload_without_octet_stream_content_type_is_415,
    upload_with_size_mismatch_is_400_and_leaves_nothing,
    upload_with_bad_image_size_header_is_400,
    upload_by_reader_is_403_and_by_stranger_404,
    concurrent_uploads_exactly_one_wins,
    client_disconnect_mid_upload_puts_image_back_to_queued,
    download_of_range_is_206_with_content_range,
    download_of_unsatisfiable_range_is_416,
    download_of_image_without_data_is_204,
    download_of_deactivated_image_is_403_except_for_admins,
    download_by_reader_is_403,
    delete_removes_the_bytes_from_the_store,
    upload_of_qcow2_records_its_virtual_size,
    upload_of_raw_data_declared_qcow2_is_415_and_leaves_nothing,
    upload_of_qcow2_with_a_backing_file_is_415_whatever_is_declared,
    upload_of_qcow2_declared_raw_is_kept_as_raw,
    upload_in_a_non_bare_container_is_not_inspected,
    raw_upload_with_long_runs_of_zeros_is_stored_sparse_with_the_digests_of_every_byte,
);

on_every_database!(config = small_cap; upload_over_the_cap_is_413_with_and_without_content_length);

on_every_database!(config = format_match_not_required;
    upload_of_data_that_is_not_the_declared_format_is_accepted_without_a_virtual_size_when_no_match_is_required,
    upload_of_qcow2_with_a_backing_file_is_415_even_when_no_match_is_required,
);

/// Glance's `[image_format] require_image_format_match = false`.
pub(crate) fn format_match_not_required(config: &mut Config) {
    config.images.require_image_format_match = false;
}

fn small_cap(config: &mut Config) {
    config.images.image_size_cap = 1024;
}

pub(crate) fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// md5 and sha512 as coreutils compute them: an oracle independent of our hashing code.
pub(crate) fn coreutils_digests(data: &[u8]) -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("data");
    std::fs::write(&file, data).expect("write");
    let digest = |tool: &str| {
        let out = std::process::Command::new(tool).arg(&file).output().expect(tool);
        String::from_utf8(out.stdout).expect("utf8").split_whitespace().next().expect("digest").to_owned()
    };
    (digest("md5sum"), digest("sha512sum"))
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

async fn raw_upload_with_long_runs_of_zeros_is_stored_sparse_with_the_digests_of_every_byte(app: TestApp) {
    use std::os::unix::fs::MetadataExt;
    // A fresh 64 MiB disk with 4 MiB written: a header, a run in the middle at an odd offset,
    // and a tail that ends off any block boundary.
    let mut data = vec![0u8; (64 << 20) + 4321];
    let written = [(0, 1 << 20), ((30 << 20) + 12_345, 2 << 20), (data.len() - (1 << 20), 1 << 20)];
    for (at, len) in written {
        data[at..at + len].copy_from_slice(&payload(len));
    }
    let id = queued_image(&app).await;
    assert_eq!(put(&app, &id, data.clone()).await.status(), 204);
    let image = show(&app, &id).await;
    let (md5, sha512) = coreutils_digests(&data);
    assert_eq!(
        (image["checksum"].as_str(), image["os_hash_value"].as_str()),
        (Some(md5.as_str()), Some(sha512.as_str()))
    );
    let path = app.store_path.join(&id);
    let stored = std::fs::metadata(&path).expect("stored file");
    assert_eq!(stored.len(), data.len() as u64);
    let allocated = stored.blocks() * 512;
    assert!(allocated <= (4 << 20) + (512 << 10), "{allocated} bytes allocated for 4 MiB of data");
    let on_disk = std::fs::read(&path).expect("read the stored file");
    assert_eq!(coreutils_digests(&on_disk), (md5, sha512), "the file reads back as every byte uploaded");
}

async fn upload_then_download_gives_back_the_same_bytes(app: TestApp) {
    let id = queued_image(&app).await;
    let data = payload(3 * 1024 * 1024 + 17);
    let response = put(&app, &id, data.clone()).await;
    assert_eq!(response.status(), 204);
    let image = show(&app, &id).await;
    let (md5, sha512) = coreutils_digests(&data);
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], data.len());
    assert_eq!(image["checksum"], md5);
    assert_eq!(image["os_hash_algo"], "sha512");
    assert_eq!(image["os_hash_value"], sha512);
    let response = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    assert_eq!(response.headers()["content-length"], data.len().to_string().as_str());
    assert_eq!(response.headers()["content-md5"], md5.as_str());
    assert_eq!(response.bytes().await.expect("body"), data);
    assert_eq!(store_listing(&app), vec![id]);
}

async fn upload_with_chunked_encoding_works(app: TestApp) {
    let id = queued_image(&app).await;
    let data = payload(1024 * 1024);
    let chunks: Vec<io::Result<Vec<u8>>> = data.chunks(65_537).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    assert_eq!(put(&app, &id, body).await.status(), 204);
    let image = show(&app, &id).await;
    assert_eq!(image["size"], data.len());
    assert_eq!(image["os_hash_value"], coreutils_digests(&data).1);
}

async fn upload_of_empty_data_activates_with_empty_digests(app: TestApp) {
    let id = queued_image(&app).await;
    assert_eq!(put(&app, &id, Vec::<u8>::new()).await.status(), 204);
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], 0);
    assert_eq!(image["checksum"], "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        image["os_hash_value"],
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
    );
    assert!(image["virtual_size"].is_null());
}

async fn upload_to_an_image_that_is_not_queued_is_409(app: TestApp) {
    let id = queued_image(&app).await;
    assert_eq!(put(&app, &id, b"first".to_vec()).await.status(), 204);
    expect_error(put(&app, &id, b"second".to_vec()).await, 409).await;
    assert_eq!(app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body"), &b"first"[..]);
    for status in ["saving", "uploading", "importing", "deactivated", "killed"] {
        let other = queued_image(&app).await;
        set_columns(&app, &other, &format!("status = '{status}'")).await;
        expect_error(put(&app, &other, b"x".to_vec()).await, 409).await;
        assert_eq!(show(&app, &other).await["status"], status);
    }
}

async fn upload_without_formats_is_400_and_image_stays_queued(app: TestApp) {
    let bare = app.create_image(json!({"container_format": "bare"})).await;
    let id = bare["id"].as_str().expect("id");
    let message = expect_error(put(&app, id, b"x".to_vec()).await, 400).await;
    assert!(message.contains("Property disk_format must be set prior to saving data."), "{message}");
    let neither = app.create_image(json!({})).await;
    let message = expect_error(put(&app, neither["id"].as_str().expect("id"), b"x".to_vec()).await, 400).await;
    assert!(message.contains("Properties disk_format, container_format must be set"), "{message}");
    assert_eq!(show(&app, id).await["status"], "queued");
    assert!(store_listing(&app).is_empty());
}

async fn upload_without_octet_stream_content_type_is_415(app: TestApp) {
    let id = queued_image(&app).await;
    let response = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request");
    expect_error(response, 415).await;
    let response = app.request(Method::PUT, &format!("/v2/images/{id}/file")).body("x").send().await.expect("request");
    expect_error(response, 415).await;
    let with_params = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream; charset=binary")
        .body("x")
        .send()
        .await
        .expect("request");
    assert_eq!(with_params.status(), 204);
}

async fn upload_with_size_mismatch_is_400_and_leaves_nothing(app: TestApp) {
    let id = queued_image(&app).await;
    let response = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .header("x-openstack-image-size", "10")
        .body(b"12345".to_vec())
        .send()
        .await
        .expect("request");
    let message = expect_error(response, 400).await;
    assert!(message.contains("Size mismatch: expected 10 bytes, got 5 bytes"), "{message}");
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image["size"].is_null() && image["checksum"].is_null());
    assert!(store_listing(&app).is_empty());
    assert_eq!(put(&app, &id, b"12345".to_vec()).await.status(), 204, "the image can be uploaded again");
}

async fn upload_with_bad_image_size_header_is_400(app: TestApp) {
    let id = queued_image(&app).await;
    let response = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .header("x-openstack-image-size", "lots")
        .body(b"12345".to_vec())
        .send()
        .await
        .expect("request");
    expect_error(response, 400).await;
    assert_eq!(show(&app, &id).await["status"], "queued");
}

async fn upload_by_reader_is_403_and_by_stranger_404(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let id = queued_image(&owner).await;
    expect_error(put(&app.as_project("p1", "reader"), &id, b"x".to_vec()).await, 403).await;
    expect_error(put(&app.as_project("p2", "member"), &id, b"x".to_vec()).await, 404).await;
    assert_eq!(show(&owner, &id).await["status"], "queued");
}

async fn upload_over_the_cap_is_413_with_and_without_content_length(app: TestApp) {
    let id = queued_image(&app).await;
    expect_error(put(&app, &id, payload(1025)).await, 413).await;
    assert_eq!(show(&app, &id).await["status"], "queued");
    let chunks: Vec<io::Result<Vec<u8>>> = vec![Ok(payload(1000)), Ok(payload(1000))];
    expect_error(put(&app, &id, reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))).await, 413).await;
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image["size"].is_null());
    assert!(store_listing(&app).is_empty());
    assert_eq!(put(&app, &id, payload(1024)).await.status(), 204);
}

async fn concurrent_uploads_exactly_one_wins(app: TestApp) {
    let id = queued_image(&app).await;
    let slow = |fill: u8| {
        let chunks = futures_util::stream::iter(0..8).then(move |_| async move {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            Ok::<_, io::Error>(vec![fill; 4096])
        });
        reqwest::Body::wrap_stream(chunks)
    };
    let (a, b) = tokio::join!(put(&app, &id, slow(b'a')), put(&app, &id, slow(b'b')));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [204, 409]);
    let winner = if a.status() == 204 { b'a' } else { b'b' };
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "active");
    let bytes = app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body");
    assert_eq!(bytes.len(), 8 * 4096);
    assert!(bytes.iter().all(|b| *b == winner));
    assert_eq!(store_listing(&app), vec![id]);
}

async fn client_disconnect_mid_upload_puts_image_back_to_queued(app: TestApp) {
    use tokio::io::AsyncWriteExt;
    let id = queued_image(&app).await;
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connect");
    let head = format!(
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&payload(100_000)).await.expect("part of the body");
    stream.flush().await.expect("flush");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(show(&app, &id).await["status"], "saving");
    drop(stream);
    let mut status = String::new();
    for _ in 0..100 {
        status = show(&app, &id).await["status"].as_str().expect("status").to_owned();
        if status == "queued" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "queued");
    assert!(store_listing(&app).is_empty(), "{:?}", store_listing(&app));
    assert_eq!(put(&app, &id, payload(10)).await.status(), 204, "the service still works");
}

async fn uploaded(app: &TestApp, data: &[u8]) -> String {
    let id = queued_image(app).await;
    assert_eq!(put(app, &id, data.to_vec()).await.status(), 204);
    id
}

async fn get_range(app: &TestApp, id: &str, range: &str) -> reqwest::Response {
    app.request(Method::GET, &format!("/v2/images/{id}/file")).header("Range", range).send().await.expect("request")
}

async fn download_of_range_is_206_with_content_range(app: TestApp) {
    let data = payload(1000);
    let id = uploaded(&app, &data).await;
    let (md5, _) = coreutils_digests(&data);
    for (range, expected, content_range) in [
        ("bytes=10-19", 10..20, "bytes 10-19/1000"),
        ("bytes=990-", 990..1000, "bytes 990-999/1000"),
        ("bytes=-5", 995..1000, "bytes 995-999/1000"),
        ("bytes=0-5000", 0..1000, "bytes 0-999/1000"),
    ] {
        let response = get_range(&app, &id, range).await;
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(response.headers()["content-range"], content_range);
        assert_eq!(response.headers()["content-md5"], md5.as_str());
        let Range { start, end } = expected;
        assert_eq!(response.headers()["content-length"], (end - start).to_string().as_str());
        assert_eq!(response.bytes().await.expect("body"), &data[start..end]);
    }
}

async fn download_of_unsatisfiable_range_is_416(app: TestApp) {
    let id = uploaded(&app, &payload(100)).await;
    for range in ["bytes=100-", "bytes=200-300", "bytes=5-2", "bytes=abc"] {
        assert_eq!(get_range(&app, &id, range).await.status(), 416, "{range}");
    }
    assert_eq!(get_range(&app, &id, "bytes=0-1,5-6").await.status(), 400);
}

async fn download_of_image_without_data_is_204(app: TestApp) {
    let id = queued_image(&app).await;
    let response = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.expect("body").is_empty());
    assert_eq!(get_range(&app, &id, "bytes=0-10").await.status(), 204);
}

async fn download_of_deactivated_image_is_403_except_for_admins(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let id = uploaded(&owner, b"secret").await;
    let deactivate =
        owner.request(Method::POST, &format!("/v2/images/{id}/actions/deactivate")).send().await.expect("request");
    assert_eq!(deactivate.status(), 204);
    let message = expect_error(owner.get(&format!("/v2/images/{id}/file")).await, 403).await;
    assert!(message.contains("The requested image has been deactivated"), "{message}");
    let admin = app.as_project("p9", "admin");
    assert_eq!(admin.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body"), &b"secret"[..]);
}

async fn download_by_reader_is_403(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let id = uploaded(&owner, b"data").await;
    expect_error(app.as_project("p1", "reader").get(&format!("/v2/images/{id}/file")).await, 403).await;
    expect_error(app.as_project("p2", "member").get(&format!("/v2/images/{id}/file")).await, 404).await;
}

async fn delete_removes_the_bytes_from_the_store(app: TestApp) {
    let id = uploaded(&app, b"doomed").await;
    assert_eq!(store_listing(&app), vec![id.clone()]);
    assert_eq!(app.delete(&format!("/v2/images/{id}")).await.status(), 204);
    assert!(store_listing(&app).is_empty());
    expect_error(app.get(&format!("/v2/images/{id}/file")).await, 404).await;
}

/// A store that breaks after `budget` bytes, the way a full or failing disk would.
struct FailingStore {
    inner: Arc<dyn Store>,
    budget: u64,
    full: bool,
}

#[async_trait::async_trait]
impl Store for FailingStore {
    async fn put_sized(
        &self,
        image_id: &str,
        data: ByteStream,
        cap: u64,
        size: Option<u64>,
    ) -> Result<String, StoreError> {
        let seen = Arc::new(AtomicU64::new(0));
        let (budget, full) = (self.budget, self.full);
        let failing: ByteStream = Box::pin(data.map(move |chunk| {
            let chunk = chunk?;
            if seen.fetch_add(chunk.len() as u64, Ordering::SeqCst) + chunk.len() as u64 > budget {
                let kind = if full { io::ErrorKind::StorageFull } else { io::ErrorKind::Other };
                return Err(io::Error::new(kind, "injected store failure"));
            }
            Ok::<Bytes, io::Error>(chunk)
        }));
        match self.inner.put_sized(image_id, failing, cap, size).await {
            Err(StoreError::Source(e)) if e.kind() == io::ErrorKind::StorageFull => Err(StoreError::Full),
            Err(StoreError::Source(e)) if e.to_string().contains("injected") => Err(StoreError::Io(e)),
            other => other,
        }
    }
    async fn get(&self, location: &str, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        self.inner.get(location, range).await
    }
    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        self.inner.delete(location).await
    }
    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }
}

async fn failing_store_leaves_image_queued_and_store_empty(backend: Backend, full: bool, status: u16) {
    let Some(app) =
        TestApp::spawn_full(backend, |_| {}, |inner| Arc::new(FailingStore { inner, budget: 100_000, full })).await
    else {
        return;
    };
    let id = queued_image(&app).await;
    expect_error(put(&app, &id, payload(300_000)).await, status).await;
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image["size"].is_null() && image["checksum"].is_null());
    assert!(store_listing(&app).is_empty(), "{:?}", store_listing(&app));
    assert_eq!(put(&app, &id, payload(1000)).await.status(), 204, "other requests are still served");
}

#[tokio::test]
async fn store_full_mid_write_is_413_and_leaves_nothing() {
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::Mariadb] {
        failing_store_leaves_image_queued_and_store_empty(backend, true, 413).await;
    }
}

#[tokio::test]
async fn store_failure_mid_write_is_500_and_leaves_nothing() {
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::Mariadb] {
        failing_store_leaves_image_queued_and_store_empty(backend, false, 500).await;
    }
}

/// Makes an image with qemu-img (the format oracle) and returns its bytes.
pub(crate) fn qemu_image(args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("image");
    let mut command = std::process::Command::new("qemu-img");
    command.current_dir(dir.path()).arg("create").args(args).arg(&path);
    if args.contains(&"-b") {
        std::process::Command::new("qemu-img")
            .current_dir(dir.path())
            .args(["create", "-f", "qcow2", "base.qcow2", "1M"])
            .status()
            .expect("qemu-img base");
    }
    let size = if args.contains(&"vmdk") { "4M" } else { "10M" };
    assert!(command.arg(size).status().expect("qemu-img").success());
    std::fs::read(path).expect("read image")
}

pub(crate) async fn image_of(app: &TestApp, disk_format: &str, container_format: &str) -> String {
    let image = app.create_image(json!({"disk_format": disk_format, "container_format": container_format})).await;
    image["id"].as_str().expect("id").to_owned()
}

async fn upload_of_qcow2_records_its_virtual_size(app: TestApp) {
    let data = qemu_image(&["-f", "qcow2"]);
    let id = image_of(&app, "qcow2", "bare").await;
    assert_eq!(put(&app, &id, data.clone()).await.status(), 204);
    let image = show(&app, &id).await;
    assert_eq!(image["virtual_size"], 10 * 1024 * 1024);
    assert_eq!(image["size"], data.len());
    let raw = image_of(&app, "raw", "bare").await;
    assert_eq!(put(&app, &raw, payload(5000)).await.status(), 204);
    assert_eq!(show(&app, &raw).await["virtual_size"], 5000);
}

async fn upload_of_raw_data_declared_qcow2_is_415_and_leaves_nothing(app: TestApp) {
    let id = image_of(&app, "qcow2", "bare").await;
    let message = expect_error(put(&app, &id, payload(100_000)).await, 415).await;
    assert!(message.contains("Image disk_format qcow2 does not match stream data raw"), "{message}");
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image["size"].is_null() && image["checksum"].is_null());
    assert!(store_listing(&app).is_empty());
    let vmdk = image_of(&app, "vmdk", "bare").await;
    expect_error(put(&app, &vmdk, qemu_image(&["-f", "qcow2"])).await, 415).await;
    let vhd = image_of(&app, "vhd", "bare").await;
    let message = expect_error(put(&app, &vhd, payload(100_000)).await, 415).await;
    assert!(message.contains("Image disk_format vhd does not match stream data raw"), "{message}");
    assert!(store_listing(&app).is_empty());
}

async fn upload_of_data_that_is_not_the_declared_format_is_accepted_without_a_virtual_size_when_no_match_is_required(
    app: TestApp,
) {
    let data = payload(100_000);
    let (md5, _) = coreutils_digests(&data);
    for declared in ["qcow2", "vmdk", "vhd"] {
        let id = image_of(&app, declared, "bare").await;
        assert_eq!(put(&app, &id, data.clone()).await.status(), 204, "{declared}");
        let image = show(&app, &id).await;
        assert_eq!(
            (image["status"].as_str(), image["disk_format"].as_str(), image["checksum"].as_str()),
            (Some("active"), Some(declared), Some(md5.as_str()))
        );
        // Glance cannot compute one for content it did not recognise as the declared format.
        assert!(image["virtual_size"].is_null(), "{image}");
        assert_eq!(app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("data"), data);
    }
    // A clean qcow2 declared vmdk is a mismatch too.
    let id = image_of(&app, "vmdk", "bare").await;
    assert_eq!(put(&app, &id, qemu_image(&["-f", "qcow2"])).await.status(), 204);
    assert!(show(&app, &id).await["virtual_size"].is_null());
    // What matches keeps its virtual size.
    let id = image_of(&app, "qcow2", "bare").await;
    assert_eq!(put(&app, &id, qemu_image(&["-f", "qcow2"])).await.status(), 204);
    assert_eq!(show(&app, &id).await["virtual_size"], 10 * 1024 * 1024);
}

async fn upload_of_qcow2_with_a_backing_file_is_415_even_when_no_match_is_required(app: TestApp) {
    let data = qemu_image(&["-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2"]);
    for declared in ["qcow2", "vmdk", "vhd", "raw"] {
        let id = image_of(&app, declared, "bare").await;
        let message = expect_error(put(&app, &id, data.clone()).await, 415).await;
        assert!(message.contains("backing"), "{declared}: {message}");
        let image = show(&app, &id).await;
        assert_eq!(image["status"], "queued", "{declared}");
        assert!(image["size"].is_null() && image["checksum"].is_null(), "{image}");
    }
    assert!(store_listing(&app).is_empty());
}

async fn upload_of_qcow2_with_a_backing_file_is_415_whatever_is_declared(app: TestApp) {
    let data = qemu_image(&["-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2"]);
    for declared in ["qcow2", "raw"] {
        let id = image_of(&app, declared, "bare").await;
        let message = expect_error(put(&app, &id, data.clone()).await, 415).await;
        assert!(message.contains("backing"), "{declared}: {message}");
        assert_eq!(show(&app, &id).await["status"], "queued");
    }
    assert!(store_listing(&app).is_empty());
}

async fn upload_of_qcow2_declared_raw_is_kept_as_raw(app: TestApp) {
    let data = qemu_image(&["-f", "qcow2"]);
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(put(&app, &id, data.clone()).await.status(), 204);
    let image = show(&app, &id).await;
    assert_eq!(image["disk_format"], "raw");
    assert_eq!(image["virtual_size"], data.len(), "a raw image's virtual size is its byte count");
}

async fn upload_in_a_non_bare_container_is_not_inspected(app: TestApp) {
    let id = image_of(&app, "qcow2", "ovf").await;
    assert_eq!(put(&app, &id, payload(1000)).await.status(), 204);
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "active");
    assert!(image["virtual_size"].is_null());
}

on_every_database!(upload_abandoned_by_a_dead_process_is_recovered);

async fn upload_abandoned_by_a_dead_process_is_recovered(app: TestApp) {
    let abandoned = queued_image(&app).await;
    let live = queued_image(&app).await;
    // A process died mid-upload an hour ago; another upload is in progress right now.
    set_columns(&app, &abandoned, "status = 'saving', size = 5, updated_at = '2020-01-01 00:00:00'").await;
    set_columns(&app, &live, "status = 'saving'").await;
    let part = app.store_path.join(format!(".{abandoned}.0123.part"));
    std::fs::write(&part, b"half").expect("part file");
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&part).and_then(|f| f.set_modified(hour_ago)).expect("age");

    app.recover_abandoned_uploads().await;
    let image = show(&app, &abandoned).await;
    assert_eq!(image["status"], "queued");
    assert!(image["size"].is_null());
    assert_eq!(show(&app, &live).await["status"], "saving");
    assert!(store_listing(&app).is_empty());
    assert_eq!(put(&app, &abandoned, payload(10)).await.status(), 204);
}

/// A store whose first `failures` deletes fail, like an object store having a bad minute.
struct FlakyDeletes {
    inner: Arc<dyn Store>,
    failures: AtomicU64,
}

#[async_trait::async_trait]
impl Store for FlakyDeletes {
    async fn put_sized(
        &self,
        image_id: &str,
        data: ByteStream,
        cap: u64,
        size: Option<u64>,
    ) -> Result<String, StoreError> {
        self.inner.put_sized(image_id, data, cap, size).await
    }
    async fn get(&self, location: &str, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        self.inner.get(location, range).await
    }
    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(StoreError::Io(io::Error::other("injected delete failure")));
        }
        self.inner.delete(location).await
    }
    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }
}

#[tokio::test]
async fn failed_data_removal_is_retried_and_the_image_stays_deleted() {
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::Mariadb] {
        let flaky: Arc<std::sync::Mutex<Option<Arc<dyn Store>>>> = Arc::default();
        let keep = flaky.clone();
        let Some(app) = TestApp::spawn_full(
            backend,
            |_| {},
            move |inner| {
                let store: Arc<dyn Store> = Arc::new(FlakyDeletes { inner, failures: AtomicU64::new(1) });
                *keep.lock().unwrap() = Some(store.clone());
                store
            },
        )
        .await
        else {
            continue;
        };
        let id = uploaded(&app, b"stubborn").await;
        assert_eq!(
            app.delete(&format!("/v2/images/{id}")).await.status(),
            204,
            "the client is not made to wait for the store"
        );
        expect_error(app.get(&format!("/v2/images/{id}")).await, 404).await;
        assert_eq!(store_listing(&app), vec![id.clone()], "the first removal failed");

        let store = flaky.lock().unwrap().clone().unwrap();
        let stores =
            glint_core::store::Stores::new("local", std::collections::BTreeMap::from([("local".to_owned(), store)]));
        assert_eq!(
            glint_core::store::scrub::purge(&app.db, &stores, None).await.unwrap(),
            1,
            "the scrubber's pass removes it"
        );
        assert!(store_listing(&app).is_empty());
        assert_eq!(
            glint_core::store::scrub::purge(&app.db, &stores, None).await.unwrap(),
            0,
            "and nothing is left to do"
        );
        expect_error(app.get(&format!("/v2/images/{id}")).await, 404).await;
    }
}
