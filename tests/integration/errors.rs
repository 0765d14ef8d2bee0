//! Error bodies (WebOb negotiation), 404/405 handling and request ids.

use reqwest::Method;
use serde_json::Value;

use crate::support::{Backend, TestApp};

async fn app() -> TestApp {
    TestApp::spawn(Backend::Sqlite).await.expect("sqlite is always available")
}

const MISSING: &str = "/v2/images/5f3c2f1e-0000-4000-8000-000000000000";

#[tokio::test]
async fn error_without_accept_is_plain_text() {
    // reqwest always sends `Accept: */*`, so speak HTTP/1.1 by hand to send none.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = app().await;
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    let request = format!("GET {MISSING} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain"), "{head}");
    assert!(body.starts_with("404 Not Found\n\nNo image found with ID 5f3c2f1e"), "{body:?}");
}

#[tokio::test]
async fn error_for_star_accept_is_html_as_glanceclient_expects() {
    let response = app().await.raw(Method::GET, MISSING).header("Accept", "*/*").send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let body = response.text().await.unwrap();
    assert!(body.contains("<title>404 Not Found</title>") && body.contains("<h1>404 Not Found</h1>"), "{body}");
    assert!(body.contains("No image found with ID"), "{body}");
}

#[tokio::test]
async fn error_for_json_accept_is_flat_json() {
    let response = app().await.raw(Method::GET, MISSING).header("Accept", "application/json").send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "404 Not Found");
    assert_eq!(body["title"], "Not Found");
    assert!(body["message"].as_str().unwrap().starts_with("No image found with ID"));
    assert_eq!(body.as_object().unwrap().len(), 3);
}

#[tokio::test]
async fn unknown_path_under_v2_is_404() {
    let app = app().await;
    for path in ["/v2/nothing", "/v2/images/x/nothing", "/v2/schemas/unknown"] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert!(response.headers().contains_key("x-openstack-request-id"), "{path}");
    }
}

#[tokio::test]
async fn unsupported_method_is_405_with_allow() {
    let app = app().await;
    for (method, path, allow) in [
        (Method::PUT, "/v2/images", "GET, POST"),
        (Method::POST, MISSING, "GET, PATCH, DELETE"),
        (Method::GET, "/v2/images/x/tags/y", "PUT, DELETE"),
        (Method::GET, "/v2/images/x/actions/deactivate", "POST"),
        (Method::DELETE, "/v2/schemas/image", "GET"),
    ] {
        let response = app.request(method.clone(), path).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow);
        let body: Value = response.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().starts_with(&format!("The method {method} is not allowed")));
    }
}

#[tokio::test]
async fn every_v2_response_carries_a_request_id() {
    let app = app().await;
    for path in ["/v2/images", MISSING] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        let id = response.headers()["x-openstack-request-id"].to_str().unwrap();
        assert!(id.starts_with("req-") && id.len() == 40, "{id}");
    }
}

#[tokio::test]
async fn callers_request_id_is_echoed_with_req_prefix() {
    let app = app().await;
    let response =
        app.request(Method::GET, "/v2/images").header("X-Openstack-Request-Id", "req-abc").send().await.unwrap();
    assert_eq!(response.headers()["x-openstack-request-id"], "req-abc");
    let response = app.request(Method::GET, "/v2/images").header("X-Openstack-Request-Id", "abc").send().await.unwrap();
    assert_eq!(response.headers()["x-openstack-request-id"], "req-abc");
}

#[tokio::test]
async fn request_id_longer_than_64_is_431() {
    let app = app().await;
    let response =
        app.request(Method::GET, "/v2/images").header("X-Openstack-Request-Id", "r".repeat(65)).send().await.unwrap();
    assert_eq!(response.status(), 431);
}
