//! No-auth mode's identity headers: a request carrying one that is malformed is refused with
//! 400 on every `/v2` route, never served as the anonymous admin it would be without them.

use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::json;

use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(malformed_identity_headers_are_400_on_every_route, well_formed_identity_headers_still_work);

/// Every route of the route table, with ids that exist where one is needed.
fn routes(image: &str) -> Vec<(Method, String)> {
    let ns = "OS::Compute::Demo";
    [
        (Method::GET, "/v2/images".to_owned()),
        (Method::POST, "/v2/images".to_owned()),
        (Method::GET, format!("/v2/images/{image}")),
        (Method::PATCH, format!("/v2/images/{image}")),
        (Method::DELETE, format!("/v2/images/{image}")),
        (Method::GET, format!("/v2/images/{image}/file")),
        (Method::PUT, format!("/v2/images/{image}/file")),
        (Method::PUT, format!("/v2/images/{image}/stage")),
        (Method::POST, format!("/v2/images/{image}/import")),
        (Method::GET, "/v2/info/import".to_owned()),
        (Method::GET, format!("/v2/images/{image}/members")),
        (Method::POST, format!("/v2/images/{image}/members")),
        (Method::GET, format!("/v2/images/{image}/members/p2")),
        (Method::PUT, format!("/v2/images/{image}/members/p2")),
        (Method::DELETE, format!("/v2/images/{image}/members/p2")),
        (Method::GET, "/v2/schemas/member".to_owned()),
        (Method::GET, "/v2/schemas/members".to_owned()),
        (Method::PUT, format!("/v2/images/{image}/tags/t")),
        (Method::DELETE, format!("/v2/images/{image}/tags/t")),
        (Method::POST, format!("/v2/images/{image}/actions/deactivate")),
        (Method::POST, format!("/v2/images/{image}/actions/reactivate")),
        (Method::GET, format!("/v2/images/{image}/tasks")),
        (Method::GET, "/v2/tasks".to_owned()),
        (Method::POST, "/v2/tasks".to_owned()),
        (Method::GET, "/v2/tasks/0b0d4a2e-0000-4000-8000-000000000000".to_owned()),
        (Method::GET, "/v2/schemas/task".to_owned()),
        (Method::GET, "/v2/schemas/tasks".to_owned()),
        (Method::GET, "/v2/info/usage".to_owned()),
        (Method::GET, "/v2/info/stores".to_owned()),
        (Method::GET, "/v2/info/stores/detail".to_owned()),
        (Method::DELETE, format!("/v2/stores/local/{image}")),
        (Method::GET, "/v2/schemas/image".to_owned()),
        (Method::GET, "/v2/schemas/images".to_owned()),
        (Method::GET, "/v2/metadefs/namespaces".to_owned()),
        (Method::POST, "/v2/metadefs/namespaces".to_owned()),
        (Method::GET, format!("/v2/metadefs/namespaces/{ns}")),
        (Method::PUT, format!("/v2/metadefs/namespaces/{ns}")),
        (Method::DELETE, format!("/v2/metadefs/namespaces/{ns}")),
        (Method::GET, format!("/v2/metadefs/namespaces/{ns}/objects")),
        (Method::GET, format!("/v2/metadefs/namespaces/{ns}/properties")),
        (Method::GET, format!("/v2/metadefs/namespaces/{ns}/tags")),
        (Method::GET, "/v2/metadefs/resource_types".to_owned()),
        (Method::GET, format!("/v2/metadefs/namespaces/{ns}/resource_types")),
        (Method::GET, "/v2/schemas/metadefs/namespace".to_owned()),
        (Method::GET, "/v2/nowhere".to_owned()),
    ]
    .into()
}

/// Header sets that each carry a malformed identity: not ASCII, blank, repeated, or roles
/// and user without a project.
fn malformed() -> Vec<Vec<(&'static str, HeaderValue)>> {
    let bytes = |b: &'static [u8]| HeaderValue::from_bytes(b).unwrap();
    vec![
        vec![("X-Project-Id", bytes(b"\xffb")), ("X-Roles", bytes(b"reader"))],
        vec![("X-Project-Id", bytes("é".as_bytes())), ("X-Roles", bytes(b"reader"))],
        vec![("X-Project-Id", bytes(b"   ")), ("X-Roles", bytes(b"reader"))],
        vec![("X-Tenant-Id", bytes(b"\xff")), ("X-Roles", bytes(b"reader"))],
        vec![("X-Project-Id", bytes(b"p1")), ("X-Project-Id", bytes(b"p2")), ("X-Roles", bytes(b"reader"))],
        vec![("X-Roles", bytes(b"reader"))],
        vec![("X-Project-Id", bytes(b"p2")), ("X-Roles", bytes(b"read\xe9r"))],
        vec![("X-Project-Id", bytes(b"p2")), ("X-User-Id", bytes(b" ")), ("X-Roles", bytes(b"reader"))],
    ]
}

async fn malformed_identity_headers_are_400_on_every_route(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let image = owner.create_image(json!({"name": "secret", "visibility": "private"})).await;
    let id = image["id"].as_str().unwrap();
    for headers in malformed() {
        for (method, path) in routes(id) {
            let mut request = app.anonymous().request(method.clone(), &path);
            for (name, value) in &headers {
                request = request.header(*name, value.clone());
            }
            let response = request.body(json!({"name": "x"}).to_string()).send().await.unwrap();
            assert_eq!(response.status(), 400, "{method} {path} with {headers:?}");
            assert!(response.headers().contains_key("x-openstack-request-id"), "{method} {path}");
            expect_error(response, 400).await;
        }
    }
    // Nothing any of them tried happened.
    let image = owner.get_json(&format!("/v2/images/{id}")).await;
    assert_eq!((image["name"].as_str(), image["status"].as_str()), (Some("secret"), Some("queued")));
    assert_eq!(app.anonymous().get_json("/v2/images").await["images"].as_array().unwrap().len(), 1);
}

async fn well_formed_identity_headers_still_work(app: TestApp) {
    let owner = app.as_project("p1", "member");
    owner.create_image(json!({"name": "mine", "visibility": "private"})).await;
    let reader = app
        .anonymous()
        .request(Method::GET, "/v2/images")
        .header("X-Tenant-Id", " p2 ")
        .header("X-User-Id", "rita")
        .header("X-Roles", "Reader");
    let body: serde_json::Value = reader.send().await.unwrap().json().await.unwrap();
    assert_eq!(body["images"].as_array().unwrap().len(), 0, "{body}");
    let forbidden = app.anonymous().request(Method::GET, "/v2/tasks").header("X-Project-Id", "p2").send().await;
    expect_error(forbidden.unwrap(), 403).await;
}
