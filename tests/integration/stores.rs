//! Multistore mode: /v2/info/stores, store selection on upload, the `stores` field, and
//! `DELETE /v2/stores/{store_id}/{image_id}`.

use std::time::Duration;

use glint_core::config::{BackendConfig, Config};
use reqwest::Method;
use serde_json::{Value, json};

use crate::image_data::payload;
use crate::support::{Backend, TestApp, expect_error, on_every_database};

on_every_database!(config = three_stores;
    deleting_from_a_store_removes_that_copy_and_its_bytes_only,
    deleting_the_last_copy_is_403,
    deleting_from_a_store_without_a_copy_is_404,
    deleting_from_an_unknown_store_is_409,
    deleting_from_a_store_of_an_image_that_is_not_active_is_409,
    deleting_from_a_store_of_a_missing_or_invisible_image_is_404,
    deleting_from_a_store_is_for_admins,
    download_reads_the_preferred_stores_first_in_their_order,
    download_preferring_an_unknown_store_is_400,
);

/// An app with two filesystem stores, `fast` (default, described) and `cheap`.
async fn multistore(backend: Backend, dir: &tempfile::TempDir) -> Option<TestApp> {
    let (fast, cheap) = (dir.path().join("fast"), dir.path().join("cheap"));
    TestApp::spawn_with(backend, move |config: &mut Config| {
        config.storage.default = "fast".into();
        config
            .storage
            .backends
            .insert("fast".into(), BackendConfig::Filesystem { path: fast, description: Some("Fast store".into()) });
        config.storage.backends.insert("cheap".into(), BackendConfig::Filesystem { path: cheap, description: None });
    })
    .await
}

fn files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn info_stores_is_404_in_single_store_mode() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    expect_error(app.get("/v2/info/stores").await, 404).await;
    expect_error(app.get("/v2/info/stores/detail").await, 404).await;
    let versions: Value = app.raw(Method::GET, "/versions").send().await.expect("versions").json().await.expect("json");
    assert!(!versions.to_string().contains("v2.12"));
}

#[tokio::test]
async fn info_stores_lists_the_stores_and_the_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = multistore(Backend::Sqlite, &dir).await.expect("sqlite");
    let body = app.get_json("/v2/info/stores").await;
    assert_eq!(
        body,
        json!({"stores": [{"id": "cheap"}, {"id": "fast", "description": "Fast store", "default": "true"}]})
    );
    let detail = app.get_json("/v2/info/stores/detail").await;
    let fast = &detail["stores"][1];
    assert_eq!(fast["type"], "file");
    assert_eq!(fast["weight"], 0);
    assert!(fast["properties"]["data_dir"].as_str().expect("data_dir").ends_with("/fast"));
    expect_error(app.as_project("p1", "member").get("/v2/info/stores/detail").await, 403).await;
    app.as_project("p1", "reader").get_json("/v2/info/stores").await;
}

#[tokio::test]
async fn multistore_advertises_the_store_api_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = multistore(Backend::Sqlite, &dir).await.expect("sqlite");
    let versions: Value = app.raw(Method::GET, "/versions").send().await.expect("versions").json().await.expect("json");
    let ids: Vec<&str> =
        versions["versions"].as_array().expect("list").iter().map(|v| v["id"].as_str().expect("id")).collect();
    for id in ["v2.8", "v2.9", "v2.10", "v2.11", "v2.12", "v2.13", "v2.17"] {
        assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "{id} in {ids:?}");
    }
    assert_eq!(app.raw(Method::GET, "/v2.12/images").send().await.expect("list").status(), 200);
}

async fn upload_to(app: &TestApp, id: &str, store: Option<&str>, data: &'static [u8]) -> reqwest::Response {
    let mut request = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(data);
    if let Some(store) = store {
        request = request.header("X-Image-Meta-Store", store);
    }
    request.send().await.expect("upload")
}

#[tokio::test]
async fn upload_goes_to_the_store_the_client_picks() {
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::Mariadb] {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some(app) = multistore(backend, &dir).await else { continue };
        let response = app.post_json("/v2/images", &json!({"disk_format": "raw", "container_format": "bare"})).await;
        assert_eq!(response.headers()["openstack-image-store-ids"], "cheap,fast");
        let image: Value = response.json().await.expect("json");
        let id = image["id"].as_str().expect("id").to_owned();
        assert!(image.get("stores").is_none(), "no data, no stores: {image}");

        expect_error(upload_to(&app, &id, Some("nowhere"), b"data").await, 400).await;
        assert_eq!(app.get_json(&format!("/v2/images/{id}")).await["status"], "queued");

        assert_eq!(upload_to(&app, &id, Some("cheap"), b"data").await.status(), 204);
        assert_eq!(app.get_json(&format!("/v2/images/{id}")).await["stores"], "cheap");
        assert_eq!(files(&dir.path().join("cheap")), vec![id.clone()]);
        assert!(files(&dir.path().join("fast")).is_empty());
        let listed = app.get_json("/v2/images").await;
        assert_eq!(listed["images"][0]["stores"], "cheap");
        assert_eq!(app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("data"), &b"data"[..]);

        let other = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
        let other_id = other["id"].as_str().expect("id");
        assert_eq!(upload_to(&app, other_id, None, b"x").await.status(), 204);
        assert_eq!(app.get_json(&format!("/v2/images/{other_id}")).await["stores"], "fast");

        assert_eq!(app.delete(&format!("/v2/images/{id}")).await.status(), 204);
        assert!(files(&dir.path().join("cheap")).is_empty());
    }
}

#[tokio::test]
async fn store_header_is_ignored_in_single_store_mode() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    let id = image["id"].as_str().expect("id");
    assert_eq!(upload_to(&app, id, Some("nowhere"), b"data").await.status(), 204);
    assert!(app.get_json(&format!("/v2/images/{id}")).await.get("stores").is_none());
}

/// Filesystem stores `fast` (default), `cheap` and `spare`, each in a directory of its own.
fn three_stores(config: &mut Config) {
    let dir = |name: &str| {
        let path = std::env::temp_dir().join(format!("glint-stores-{name}-{}", uuid::Uuid::new_v4().simple()));
        BackendConfig::Filesystem { path, description: None }
    };
    config.storage.default = "fast".into();
    config.storage.backends = ["fast", "cheap", "spare"].into_iter().map(|name| (name.to_owned(), dir(name))).collect();
}

/// The files in store `store`'s directory (as /v2/info/stores/detail reports it).
async fn files_in(app: &TestApp, store: &str) -> Vec<String> {
    let detail = app.get_json("/v2/info/stores/detail").await;
    let store = detail["stores"].as_array().expect("stores").iter().find(|s| s["id"] == store).expect("store");
    files(std::path::Path::new(store["properties"]["data_dir"].as_str().expect("data_dir")))
}

async fn show(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v2/images/{id}")).await
}

/// An active image with data in `fast` and, copied there by copy-image, in `cheap`.
async fn in_fast_and_cheap(app: &TestApp) -> String {
    let image =
        app.create_image(json!({"disk_format": "raw", "container_format": "bare", "visibility": "public"})).await;
    let id = image["id"].as_str().expect("id").to_owned();
    let uploaded = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(payload(3000))
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 204);
    let copy = json!({"method": {"name": "copy-image"}, "stores": ["cheap"]});
    assert_eq!(app.post_json(&format!("/v2/images/{id}/import"), &copy).await.status(), 202);
    for _ in 0..300 {
        let image = show(app, &id).await;
        if image["stores"] == "cheap,fast" && image.get("os_glance_import_task").is_none() {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("copy-image to cheap did not finish: {}", show(app, &id).await);
}

async fn delete_from(app: &TestApp, store: &str, id: &str) -> reqwest::Response {
    app.delete(&format!("/v2/stores/{store}/{id}")).await
}

async fn deleting_from_a_store_removes_that_copy_and_its_bytes_only(app: TestApp) {
    let id = in_fast_and_cheap(&app).await;
    let before = show(&app, &id).await;
    assert_eq!(files_in(&app, "cheap").await, vec![id.clone()]);
    let response = delete_from(&app, "cheap", &id).await;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.expect("body").is_empty());
    let after = show(&app, &id).await;
    assert_eq!((after["stores"].as_str(), after["status"].as_str()), (Some("fast"), Some("active")));
    assert_eq!((&after["checksum"], &after["size"]), (&before["checksum"], &before["size"]));
    assert!(files_in(&app, "cheap").await.is_empty(), "the copy's bytes are gone");
    assert_eq!(files_in(&app, "fast").await, vec![id.clone()]);
    let downloaded = app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("data");
    assert_eq!(downloaded.as_ref(), &payload(3000)[..]);
    let listed = app.get_json("/v2/images").await;
    assert_eq!(listed["images"][0]["stores"], "fast");
}

async fn deleting_the_last_copy_is_403(app: TestApp) {
    let id = in_fast_and_cheap(&app).await;
    assert_eq!(delete_from(&app, "fast", &id).await.status(), 204);
    let message = expect_error(delete_from(&app, "cheap", &id).await, 403).await;
    assert!(message.contains("Cannot delete image data from the only store containing it"), "{message}");
    assert_eq!(show(&app, &id).await["stores"], "cheap");
    assert_eq!(files_in(&app, "cheap").await, vec![id.clone()]);
}

async fn deleting_from_a_store_without_a_copy_is_404(app: TestApp) {
    let id = in_fast_and_cheap(&app).await;
    let message = expect_error(delete_from(&app, "spare", &id).await, 404).await;
    assert!(message.starts_with(&format!("Image {id} is not stored in store spare.")), "{message}");
    assert_eq!(show(&app, &id).await["stores"], "cheap,fast");
}

async fn deleting_from_an_unknown_store_is_409(app: TestApp) {
    let id = in_fast_and_cheap(&app).await;
    let message = expect_error(delete_from(&app, "nowhere", &id).await, 409).await;
    assert!(message.starts_with("The selected store nowhere is not available on this node."), "{message}");
    assert_eq!(show(&app, &id).await["stores"], "cheap,fast");
}

async fn deleting_from_a_store_of_an_image_that_is_not_active_is_409(app: TestApp) {
    let queued = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    let message = expect_error(delete_from(&app, "fast", queued["id"].as_str().expect("id")).await, 409).await;
    assert!(message.contains("if image status is not 'active'"), "{message}");
    let id = in_fast_and_cheap(&app).await;
    let deactivated = app.request(Method::POST, &format!("/v2/images/{id}/actions/deactivate")).send().await;
    assert_eq!(deactivated.expect("deactivate").status(), 204);
    expect_error(delete_from(&app, "cheap", &id).await, 409).await;
    assert_eq!(show(&app, &id).await["stores"], "cheap,fast");
    assert_eq!(files_in(&app, "cheap").await, vec![id.clone()]);
}

async fn deleting_from_a_store_of_a_missing_or_invisible_image_is_404(app: TestApp) {
    let missing = uuid::Uuid::new_v4().to_string();
    let message = expect_error(delete_from(&app, "fast", &missing).await, 404).await;
    assert!(message.starts_with(&format!("Failed to find image {missing}")), "{message}");
    let private = app.as_project("p1", "member").create_image(json!({"visibility": "private"})).await;
    let private = private["id"].as_str().expect("id");
    expect_error(delete_from(&app.as_project("p2", "member"), "fast", private).await, 404).await;
}

async fn deleting_from_a_store_is_for_admins(app: TestApp) {
    let id = in_fast_and_cheap(&app).await;
    app.patch(&id, &json!([{"op": "replace", "path": "/owner", "value": "p1"}])).await;
    let message = expect_error(delete_from(&app.as_project("p1", "member"), "cheap", &id).await, 403).await;
    assert!(message.contains("delete_image_location"), "{message}");
    let message = expect_error(delete_from(&app.as_project("p2", "reader"), "cheap", &id).await, 403).await;
    assert!(message.contains("get_image_location"), "{message}");
    assert_eq!(show(&app, &id).await["stores"], "cheap,fast");
    assert_eq!(files_in(&app, "cheap").await, vec![id.clone()]);
}

#[tokio::test]
async fn deleting_from_a_store_is_404_in_single_store_mode() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    let id = image["id"].as_str().expect("id");
    assert_eq!(upload_to(&app, id, None, b"data").await.status(), 204);
    expect_error(delete_from(&app, "local", id).await, 404).await;
    assert_eq!(show(&app, id).await["status"], "active");
    assert_eq!(crate::support::store_listing(&app), vec![id.to_owned()]);
}

/// Fills the copy in `store` with `fill` bytes (same length), so a download shows which store
/// it read.
async fn mark_copy(app: &TestApp, store: &str, id: &str, fill: u8) -> u8 {
    let detail = app.get_json("/v2/info/stores/detail").await;
    let store = detail["stores"].as_array().expect("stores").iter().find(|s| s["id"] == store).expect("store");
    let file = std::path::Path::new(store["properties"]["data_dir"].as_str().expect("data_dir")).join(id);
    let marked = vec![fill; std::fs::metadata(&file).expect("copy").len() as usize];
    std::fs::write(&file, &marked).expect("mark the copy");
    fill
}

/// The byte a download of `id` is filled with (the store it came from, see [`mark_copy`]).
async fn download(app: &TestApp, id: &str, query: &str) -> u8 {
    let response = app.get(&format!("/v2/images/{id}/file{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    let data = response.bytes().await.expect("data");
    assert!(data.len() == 3000 && data.iter().all(|b| *b == data[0]), "{query}: one copy, whole");
    data[0]
}

async fn download_reads_the_preferred_stores_first_in_their_order(app: TestApp) {
    let id = in_fast_and_cheap(&app).await;
    let in_fast = mark_copy(&app, "fast", &id, b'f').await;
    let in_cheap = mark_copy(&app, "cheap", &id, b'c').await;
    assert_eq!(download(&app, &id, "").await, in_fast, "the oldest copy without a preference");
    assert_eq!(download(&app, &id, "?prefer=cheap").await, in_cheap);
    assert_eq!(download(&app, &id, "?prefer=cheap,fast").await, in_cheap);
    assert_eq!(download(&app, &id, "?prefer=fast,%20cheap").await, in_fast);
    assert_eq!(download(&app, &id, "?prefer=spare,cheap").await, in_cheap, "stores without a copy are skipped");
    assert_eq!(download(&app, &id, "?prefer=spare").await, in_fast, "then the others, as without a preference");
    assert_eq!(download(&app, &id, "?prefer=").await, in_fast);
    let member = app.as_project("p2", "member");
    assert_eq!(download(&member, &id, "?prefer=cheap").await, in_cheap, "download_from_store: any downloader");
    let ranged = app.request(Method::GET, &format!("/v2/images/{id}/file?prefer=cheap")).header("Range", "bytes=0-1");
    let ranged = ranged.send().await.expect("range");
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.expect("data").as_ref(), b"cc");
}

async fn download_preferring_an_unknown_store_is_400(app: TestApp) {
    let id = in_fast_and_cheap(&app).await;
    let message = expect_error(app.get(&format!("/v2/images/{id}/file?prefer=cheap,nowhere")).await, 400).await;
    assert!(message.starts_with("Store 'nowhere' is not configured."), "{message}");
    let reader = app.as_project("p2", "reader");
    expect_error(reader.get(&format!("/v2/images/{id}/file?prefer=nowhere")).await, 403).await;
    let missing = uuid::Uuid::new_v4();
    expect_error(app.get(&format!("/v2/images/{missing}/file?prefer=nowhere")).await, 404).await;
}

#[tokio::test]
async fn download_with_a_preference_is_400_in_single_store_mode() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    let id = image["id"].as_str().expect("id");
    assert_eq!(upload_to(&app, id, None, b"data").await.status(), 204);
    let message = expect_error(app.get(&format!("/v2/images/{id}/file?prefer=local")).await, 400).await;
    assert!(message.contains("not available when multiple backends are not enabled"), "{message}");
    assert_eq!(app.get(&format!("/v2/images/{id}/file?prefer=")).await.status(), 200);
}
