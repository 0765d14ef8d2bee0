//! API 2.17's location calls (docs/glance-v2-api.md §4.17): `POST /v2/images/{id}/locations`
//! records a `location_import` task that the worker runs (hashing the data when
//! `do_secure_hash` is on), `GET /v2/images/{id}/locations` lists them for services.

use std::time::Duration;

use glint_core::config::{BackendConfig, Config, FilteringConfig};
use serde_json::{Value, json};

use crate::support::web::{Reply, WebServer};
use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(config = with_web_store;
    an_http_location_is_hashed_checked_and_activates_the_image,
    without_validation_data_the_worker_computes_the_hash,
    a_hash_that_does_not_match_fails_the_task_and_leaves_the_image_queued,
    unreachable_data_fails_the_task_after_http_retries,
    bad_requests_are_refused_before_any_task,
    only_services_may_name_locations_outside_the_http_store,
    only_services_list_locations,
);
on_every_database!(config = without_secure_hash;
    without_secure_hash_the_validation_data_is_recorded_as_given,
);

/// Stores `local` (the default) and `web`, whose filter allows 127.0.0.1 (any port) only.
fn with_web_store(config: &mut Config) {
    let local = std::env::temp_dir().join(format!("glint-location-api-{}", uuid::Uuid::new_v4().simple()));
    config.storage.default = "local".into();
    config.storage.backends.insert("local".into(), BackendConfig::Filesystem { path: local, description: None });
    let filtering = FilteringConfig {
        allowed_hosts: vec!["127.0.0.1".into()],
        allowed_ports: Vec::new(),
        allow_private_addresses: true,
        ..FilteringConfig::default()
    };
    config.storage.backends.insert("web".into(), BackendConfig::Http { description: None, filtering });
    config.images.http_retries = 2;
}

fn without_secure_hash(config: &mut Config) {
    with_web_store(config);
    config.images.do_secure_hash = false;
}

const DATA: &[u8] = b"0123456789 image data from the web";
const MD5: &str = "3ea9a0a5b24aa3d6e0d423c747886d38";
const SHA512: &str = "838515f71e44654f98689959d501209d73d74465d0232625d32f0355cbae01c6234e7efc6b632031f3d149208332cf9ce00c5db45f7ec017e50ac69077e78a4b";
const SHA256: &str = "0dff0c3947a6152476ea999f321159e62987c284376211d8d1889ef92e76b64b";

/// The explanation of an error response with `status` (without WebOb's trailing markup).
async fn refusal(response: reqwest::Response, status: u16) -> String {
    let message = expect_error(response, status).await;
    message.split("<br />").next().unwrap_or_default().to_owned()
}

/// Project p1's member, owner of the images of these tests.
fn owner(app: &TestApp) -> TestApp {
    app.as_project("p1", "member,reader")
}

async fn queued(app: &TestApp) -> String {
    let image = owner(app).create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    image["id"].as_str().expect("id").to_owned()
}

async fn post(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.post_json(&format!("/v2/images/{id}/locations"), &body).await
}

async fn show(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v2/images/{id}")).await
}

/// Waits for the image's one task to finish; returns it.
async fn finished_task(app: &TestApp, id: &str) -> Value {
    for _ in 0..300 {
        let tasks = app.get_json(&format!("/v2/images/{id}/tasks")).await;
        if let [task] = tasks["tasks"].as_array().map(Vec::as_slice).unwrap_or_default()
            && matches!(task["status"].as_str(), Some("success" | "failure"))
        {
            return task.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the location task of {id} did not finish: {}", app.get_json(&format!("/v2/images/{id}/tasks")).await);
}

async fn an_http_location_is_hashed_checked_and_activates_the_image(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/disk.img", Reply::Bytes(DATA.to_vec()));
    let id = queued(&app).await;
    let body = json!({"url": url, "validation_data": {"os_hash_algo": "sha256", "os_hash_value": SHA256}});
    let response = post(&owner(&app), &id, body).await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.text().await.expect("body"), "");
    let task = finished_task(&app, &id).await;
    assert_eq!((task["type"].as_str(), task["status"].as_str()), (Some("location_import"), Some("success")), "{task}");
    let image = show(&app, &id).await;
    assert_eq!((image["status"].as_str(), image["stores"].as_str()), (Some("active"), Some("web")));
    assert_eq!((image["size"].as_u64(), image["checksum"].as_str()), (Some(DATA.len() as u64), Some(MD5)));
    assert_eq!((image["os_hash_algo"].as_str(), image["os_hash_value"].as_str()), (Some("sha256"), Some(SHA256)));
    assert!(image.get("os_glance_import_task").is_none(), "{image}");
    let download = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(download.bytes().await.expect("body").as_ref(), DATA);
}

async fn without_validation_data_the_worker_computes_the_hash(app: TestApp) {
    let web = WebServer::start().await;
    let id = queued(&app).await;
    let response = post(&owner(&app), &id, json!({"url": web.route("/disk.img", Reply::Bytes(DATA.to_vec()))})).await;
    assert_eq!(response.status(), 202);
    assert_eq!(finished_task(&app, &id).await["status"], "success");
    let image = show(&app, &id).await;
    assert_eq!((image["status"].as_str(), image["checksum"].as_str()), (Some("active"), Some(MD5)));
    assert_eq!((image["os_hash_algo"].as_str(), image["os_hash_value"].as_str()), (Some("sha512"), Some(SHA512)));
}

async fn a_hash_that_does_not_match_fails_the_task_and_leaves_the_image_queued(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/disk.img", Reply::Bytes(DATA.to_vec()));
    let id = queued(&app).await;
    let before = show(&app, &id).await;
    let wrong = "0".repeat(128);
    let body = json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": wrong}});
    assert_eq!(post(&owner(&app), &id, body).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "failure");
    assert_eq!(task["message"], format!("os_hash_value: ({wrong}) not matched with actual os_hash_value: ({SHA512})"));
    let mut after = show(&app, &id).await;
    after["updated_at"] = before["updated_at"].clone();
    assert_eq!(after, before);
    // The lock is gone: the image takes a location again.
    assert_eq!(post(&owner(&app), &id, json!({"url": url})).await.status(), 202);
}

async fn unreachable_data_fails_the_task_after_http_retries(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/disk.img", Reply::Bytes(DATA.to_vec()));
    let id = queued(&app).await;
    let body = json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": SHA512}});
    assert_eq!(post(&owner(&app), &id, body).await.status(), 202);
    // Accepted, then the server breaks before the worker reads it.
    web.route("/disk.img", Reply::Status(500));
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "failure", "{task}");
    assert_eq!(show(&app, &id).await["status"], "queued");
}

async fn bad_requests_are_refused_before_any_task(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/disk.img", Reply::Bytes(DATA.to_vec()));
    let other = WebServer::start_on("127.0.0.2").await.route("/disk.img", Reply::Bytes(DATA.to_vec()));
    let id = queued(&app).await;
    let user = owner(&app);
    let cases = [
        (json!({}), 400, "'url' is a required property"),
        (
            json!({"url": url, "validation_data": {"os_hash_algo": "crc32", "os_hash_value": "00"}}),
            400,
            "'crc32' is not one of",
        ),
        (
            json!({"url": url, "validation_data": {"os_hash_algo": "sha512"}}),
            400,
            "'os_hash_value' is a dependency of 'os_hash_algo'",
        ),
        (
            json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "xy"}}),
            400,
            "os_hash_value (xy) is not a valid hexadecimal value",
        ),
        (
            json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": MD5}}),
            400,
            "is not the correct size for (sha512) (should be (64) bytes)",
        ),
        (json!({"url": url, "validation_data": {"checksum": MD5}}), 400, "Additional properties are not allowed"),
        (json!({"url": other}), 400, "Invalid location"),
    ];
    for (body, status, text) in cases {
        let message = refusal(post(&user, &id, body.clone()).await, status).await;
        assert!(message.contains(text), "{body}: {message}");
    }
    let reader = app.as_project("p1", "reader");
    let message = refusal(post(&reader, &id, json!({"url": url})).await, 403).await;
    assert_eq!(message, "You are not authorized to complete add_image_location action.");
    let stranger = app.as_project("p2", "member,reader");
    assert_eq!(post(&stranger, &id, json!({"url": url})).await.status(), 404);
    assert_eq!(app.get_json(&format!("/v2/images/{id}/tasks")).await["tasks"], json!([]));
    // Only a queued image.
    assert_eq!(post(&user, &id, json!({"url": url})).await.status(), 202);
    assert_eq!(finished_task(&app, &id).await["status"], "success");
    let message = refusal(post(&user, &id, json!({"url": url})).await, 409).await;
    assert_eq!(message, "It's not allowed to add locations if image status is active.");
}

async fn only_services_may_name_locations_outside_the_http_store(app: TestApp) {
    let stores = app.get_json("/v2/info/stores/detail").await;
    let local =
        stores["stores"].as_array().expect("stores").iter().find(|s| s["id"] == "local").expect("local").clone();
    let dir = std::path::PathBuf::from(local["properties"]["data_dir"].as_str().expect("data_dir"));
    std::fs::write(dir.join("external.img"), DATA).expect("write");
    let url = format!("file://{}", dir.join("external.img").display());
    let id = queued(&app).await;
    let message = refusal(post(&owner(&app), &id, json!({"url": url})).await, 403).await;
    assert_eq!(message, "http store must be enabled to use location API by normal user.");
    let service = app.as_project("p1", "member,reader,service");
    let message = refusal(post(&service, &id, json!({"url": "file:///etc/passwd"})).await, 400).await;
    assert_eq!(message, "Invalid location");
    assert_eq!(post(&service, &id, json!({"url": url})).await.status(), 202);
    assert_eq!(finished_task(&app, &id).await["status"], "success");
    assert_eq!(show(&app, &id).await["stores"], "local");
}

async fn only_services_list_locations(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/disk.img", Reply::Bytes(DATA.to_vec()));
    let id = queued(&app).await;
    assert_eq!(post(&owner(&app), &id, json!({"url": url})).await.status(), 202);
    finished_task(&app, &id).await;
    let message = refusal(owner(&app).get(&format!("/v2/images/{id}/locations")).await, 403).await;
    assert_eq!(message, "You are not authorized to complete fetch_image_location action.");
    let service = app.as_project("p1", "reader,service");
    let listed = service.get_json(&format!("/v2/images/{id}/locations")).await;
    assert_eq!(listed, json!([{"url": url, "metadata": {"store": "web"}}]));
}

async fn without_secure_hash_the_validation_data_is_recorded_as_given(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/disk.img", Reply::Bytes(DATA.to_vec()));
    let id = queued(&app).await;
    let given = "ab".repeat(64);
    let body = json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": given}});
    assert_eq!(post(&owner(&app), &id, body).await.status(), 202);
    assert_eq!(finished_task(&app, &id).await["status"], "success");
    let image = show(&app, &id).await;
    assert_eq!((image["status"].as_str(), image["os_hash_value"].as_str()), (Some("active"), Some(given.as_str())));
    assert!(image["checksum"].is_null(), "{image}");
}
