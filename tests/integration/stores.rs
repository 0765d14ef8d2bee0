//! Multistore mode: /v2/info/stores, store selection on upload, the `stores` field.

use glint_core::config::{BackendConfig, Config};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, expect_error};

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
