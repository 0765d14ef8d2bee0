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

/// The links a client gets with forged forwarded headers: the version document's and the
/// `Location` of every create (image, task, metadef namespace).
async fn links_given_forged_forwarded_headers(app: &TestApp) -> Vec<String> {
    let forged = |method: Method, path: &str| {
        app.raw(method, path).header("X-Forwarded-Proto", "https").header("X-Forwarded-Host", "images.example.org")
    };
    let body: Value = forged(Method::GET, "/versions").send().await.unwrap().json().await.unwrap();
    let mut links = vec![body["versions"][0]["links"][0]["href"].as_str().unwrap().to_owned()];
    let body: Value = forged(Method::GET, "/").send().await.unwrap().json().await.unwrap();
    links.push(body["versions"][0]["links"][0]["href"].as_str().unwrap().to_owned());
    let task = serde_json::json!({"type": "import", "input": {"import_from": "http://93.184.216.34/x",
        "import_from_format": "raw", "image_properties": {"disk_format": "raw", "container_format": "bare"}}});
    for (path, body) in [
        ("/v2/images", serde_json::json!({"name": "x"})),
        ("/v2/tasks", task),
        ("/v2/metadefs/namespaces", serde_json::json!({"namespace": "OS::Forged"})),
    ] {
        let response = forged(Method::POST, path).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201, "{path}: {}", response.text().await.unwrap());
        links.push(response.headers()["location"].to_str().unwrap().to_owned());
    }
    links
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_reach_no_link() {
    // Idle: the task it records is never run, so its URL is never fetched.
    let app = TestApp::spawn_idle(Backend::Sqlite).await.unwrap();
    for link in links_given_forged_forwarded_headers(&app).await {
        assert!(link.starts_with(&format!("{}/", app.base)), "{link}");
    }
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_proxy_make_the_links() {
    let app = TestApp::spawn_idle_with(Backend::Sqlite, |c| c.server.trusted_proxies = vec!["127.0.0.0/8".into()])
        .await
        .unwrap();
    for link in links_given_forged_forwarded_headers(&app).await {
        assert!(link.starts_with("https://images.example.org/"), "{link}");
    }
    let refused = app.raw(Method::GET, "/versions").header("X-Forwarded-Host", "evil.example/path").send().await;
    assert_eq!(refused.unwrap().status(), 400);
}

#[tokio::test]
async fn a_malformed_host_is_400() {
    let app = app().await;
    for host in ["evil.example/path", "evil.example:99999", "user@evil.example", "[::1"] {
        let response = app.raw(Method::GET, "/versions").header("Host", host).send().await.unwrap();
        assert_eq!(response.status(), 400, "{host}");
        let response = app.raw(Method::GET, "/v2/images").header("Host", host).send().await.unwrap();
        assert_eq!(response.status(), 400, "{host}");
    }
    let response = app.raw(Method::GET, "/versions").header("Host", "glance.example.org:9292").send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["versions"][0]["links"][0]["href"], "http://glance.example.org:9292/v2/");
}

#[tokio::test]
async fn version_links_use_public_endpoint_when_set() {
    let configured = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.server.public_endpoint = Some("https://cloud.example.org/image/".into());
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
    .unwrap();
    let response = configured.raw(Method::GET, "/").header("X-Forwarded-Host", "images.example.org").send().await;
    let body: Value = response.unwrap().json().await.unwrap();
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
