//! The read-only http store (`type = "http"`): images whose location is an http(s) URL are
//! streamed from it, never written, and its URLs pass the store's web-download filter when
//! added and on every read, redirects included.

use glint_core::config::{BackendConfig, Config, FilteringConfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::web::{Reply, WebServer};
use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(config = with_web_store;
    an_http_location_activates_the_image_and_downloads_stream_from_it,
    ranges_are_passed_to_the_web_server,
    http_urls_the_filter_refuses_are_invalid_locations,
    a_redirect_to_a_refused_server_is_not_followed_on_download,
    removing_an_http_location_only_forgets_it,
    nothing_is_ever_written_to_the_http_store,
);

/// Stores `local` (the default) and `web`, whose filter allows 127.0.0.1 (any port) only.
fn with_web_store(config: &mut Config) {
    let local = std::env::temp_dir().join(format!("glint-http-store-{}", uuid::Uuid::new_v4().simple()));
    config.storage.default = "local".into();
    config.storage.backends.insert("local".into(), BackendConfig::Filesystem { path: local, description: None });
    let filtering = FilteringConfig {
        allowed_hosts: vec!["127.0.0.1".into()],
        allowed_ports: Vec::new(),
        allow_private_addresses: true,
        ..FilteringConfig::default()
    };
    config.storage.backends.insert("web".into(), BackendConfig::Http { description: None, filtering });
    config.images.show_multiple_locations = true;
}

/// The explanation of an error response with `status` (without WebOb's trailing markup).
async fn refusal(response: reqwest::Response, status: u16) -> String {
    let message = expect_error(response, status).await;
    message.split("<br />").next().unwrap_or_default().to_owned()
}

const DATA: &[u8] = b"0123456789 image data from the web";

async fn queued(app: &TestApp) -> String {
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    image["id"].as_str().expect("id").to_owned()
}

fn add(url: &str) -> Value {
    json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}])
}

async fn show(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v2/images/{id}")).await
}

/// A queued image given `url` (asserting 200).
async fn located(app: &TestApp, url: &str) -> String {
    let id = queued(app).await;
    let response = app.patch(&id, &add(url)).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
    id
}

async fn an_http_location_activates_the_image_and_downloads_stream_from_it(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/disk.img", Reply::Bytes(DATA.to_vec()));
    let id = located(&app, &url).await;
    let image = show(&app, &id).await;
    assert_eq!((image["status"].as_str(), image["stores"].as_str()), (Some("active"), Some("web")));
    assert_eq!(image["size"], DATA.len());
    assert_eq!(image["locations"], json!([{"url": url, "metadata": {"store": "web"}}]));
    let response = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("body").as_ref(), DATA);
}

async fn ranges_are_passed_to_the_web_server(app: TestApp) {
    let web = WebServer::start().await;
    let id = located(&app, &web.route("/disk.img", Reply::Bytes(DATA.to_vec()))).await;
    let response = app
        .request(Method::GET, &format!("/v2/images/{id}/file"))
        .header("Range", "bytes=11-15")
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], format!("bytes 11-15/{}", DATA.len()));
    assert_eq!(response.bytes().await.expect("body").as_ref(), b"image");
}

/// Asserts `url` is refused as a location of a queued image, which stays as it was.
async fn refused(app: &TestApp, url: &str) {
    let id = queued(app).await;
    let before = show(app, &id).await;
    assert_eq!(refusal(app.patch(&id, &add(url)).await, 400).await, "Invalid location", "{url}");
    assert_eq!(show(app, &id).await, before);
}

async fn http_urls_the_filter_refuses_are_invalid_locations(app: TestApp) {
    let allowed = WebServer::start().await;
    // Another loopback address: another host, which the filter does not allow.
    let other = WebServer::start_on("127.0.0.2").await;
    let secret = other.route("/secret", Reply::Bytes(b"secret".to_vec()));
    refused(&app, &secret).await;
    refused(&app, &allowed.route("/to-secret", Reply::Redirect(secret.clone()))).await;
    refused(&app, &allowed.route("/missing", Reply::Status(404))).await;
    refused(&app, &allowed.route("/empty", Reply::Bytes(Vec::new()))).await;
    let port = allowed.base.rsplit(':').next().expect("port");
    refused(&app, &format!("http://localhost:{port}/disk.img")).await;
    refused(&app, &format!("ftp://127.0.0.1:{port}/disk.img")).await;
}

async fn a_redirect_to_a_refused_server_is_not_followed_on_download(app: TestApp) {
    let allowed = WebServer::start().await;
    let other = WebServer::start_on("127.0.0.2").await;
    let secret = other.route("/secret", Reply::Bytes(DATA.to_vec()));
    let id = located(&app, &allowed.route("/disk.img", Reply::Bytes(DATA.to_vec()))).await;
    // The web server changes its mind after the location was accepted.
    allowed.route("/disk.img", Reply::Redirect(secret));
    let response = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(response.status(), 503);
    assert!(!response.bytes().await.expect("body").windows(DATA.len()).any(|w| w == DATA));
}

async fn removing_an_http_location_only_forgets_it(app: TestApp) {
    let web = WebServer::start().await;
    let first = web.route("/a.img", Reply::Bytes(DATA.to_vec()));
    let second = web.route("/b.img", Reply::Bytes(DATA.to_vec()));
    let id = located(&app, &first).await;
    assert_eq!(app.patch(&id, &add(&second)).await.status(), 200);
    let response = app.patch(&id, &json!([{"op": "remove", "path": "/locations/0"}])).await;
    assert_eq!(response.status(), 200);
    assert_eq!(show(&app, &id).await["locations"], json!([{"url": second, "metadata": {"store": "web"}}]));
    assert_eq!(app.delete(&format!("/v2/images/{id}")).await.status(), 204);
    let gone = app.get(&format!("/v2/images/{id}")).await;
    assert_eq!(gone.status(), 404);
}

async fn nothing_is_ever_written_to_the_http_store(app: TestApp) {
    let id = queued(&app).await;
    let response = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .header("X-Image-Meta-Store", "web")
        .body(DATA)
        .send()
        .await
        .expect("upload");
    let message = refusal(response, 400).await;
    assert_eq!(message, "Store web is read-only");
    assert_eq!(show(&app, &id).await["status"], "queued");
}
