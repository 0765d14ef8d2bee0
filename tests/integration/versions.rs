//! The version document, `/v2.N` prefixes and /healthcheck.

use reqwest::Method;
use serde_json::Value;

use crate::support::{Backend, TestApp};

async fn app() -> TestApp {
    TestApp::spawn(Backend::Sqlite).await.expect("sqlite is always available")
}

fn version_ids(body: &Value) -> Vec<(String, String)> {
    body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap().to_owned(), v["status"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn root_is_300_with_the_version_document() {
    let app = app().await;
    let response = app.raw(Method::GET, "/").send().await.unwrap();
    assert_eq!(response.status(), 300);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let ids = version_ids(&body);
    assert!(ids.contains(&("v2.17".into(), "CURRENT".into())), "{ids:?}");
    for minor in [0, 1, 2, 3, 4, 5, 6, 7, 9, 15] {
        assert!(ids.contains(&(format!("v2.{minor}"), "SUPPORTED".into())), "v2.{minor} missing: {ids:?}");
    }
    for version in body["versions"].as_array().unwrap() {
        assert_eq!(version["links"], serde_json::json!([{"rel": "self", "href": format!("{}/v2/", app.base)}]));
        assert_eq!(version.as_object().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn versions_is_200_with_the_same_document() {
    let app = app().await;
    let root: Value = app.raw(Method::GET, "/").send().await.unwrap().json().await.unwrap();
    let response = app.raw(Method::GET, "/versions").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-openstack-request-id").is_none());
    assert_eq!(response.json::<Value>().await.unwrap(), root);
}

#[tokio::test]
async fn unknown_versions_get_the_300_document() {
    let app = app().await;
    for path in ["/v1/images", "/v3", "/v2.8/images", "/v2.99/images", "/anything"] {
        assert_eq!(app.raw(Method::GET, path).send().await.unwrap().status(), 300, "{path}");
    }
}

#[tokio::test]
async fn advertised_minor_versions_work_as_path_prefixes() {
    let app = app().await;
    let response = app.raw(Method::GET, "/v2.9/images?limit=1").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["schema"], "/v2/schemas/images");
    assert_eq!(app.raw(Method::GET, "/v2.17/schemas/image").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn version_links_honour_forwarded_headers_and_public_endpoint() {
    let app = app().await;
    let body: Value = app
        .raw(Method::GET, "/versions")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "images.example.org")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["versions"][0]["links"][0]["href"], "https://images.example.org/v2/");

    let configured = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.server.public_endpoint = Some("https://cloud.example.org/image/".into());
    })
    .await
    .unwrap();
    let body: Value = configured.raw(Method::GET, "/").send().await.unwrap().json().await.unwrap();
    assert_eq!(body["versions"][0]["links"][0]["href"], "https://cloud.example.org/image/v2/");
}

#[tokio::test]
async fn healthcheck_answers_ok_in_text_and_json() {
    let app = app().await;
    let response = app.raw(Method::GET, "/healthcheck").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(response.text().await.unwrap(), "OK");
    let json: Value = app.request(Method::GET, "/healthcheck").send().await.unwrap().json().await.unwrap();
    assert_eq!(json, serde_json::json!({"detailed": false, "reasons": ["OK"]}));
    assert_eq!(app.raw(Method::HEAD, "/healthcheck").send().await.unwrap().status(), 204);
}

#[tokio::test]
async fn healthcheck_is_503_while_the_disable_file_exists() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("healthcheck_disable");
    let path = file.clone();
    let app =
        TestApp::spawn_with(Backend::Sqlite, move |c| c.server.healthcheck_disable_file = Some(path)).await.unwrap();
    assert_eq!(app.raw(Method::GET, "/healthcheck").send().await.unwrap().status(), 200);
    std::fs::write(&file, "").unwrap();
    let response = app.raw(Method::GET, "/healthcheck").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), "DISABLED BY FILE");
}
