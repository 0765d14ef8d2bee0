//! /v2/metadefs and /v2/schemas/metadefs: the metadata definitions catalog, its policy, and
//! loading and exporting definition files.

mod catalog;
mod namespaces;
mod objects;
mod policy;
mod properties;
mod resource_types;
mod schemas;
mod tags;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::support::TestApp;

/// `/v2/metadefs/namespaces/{ns}{rest}`.
pub fn ns_path(ns: &str, rest: &str) -> String {
    format!("/v2/metadefs/namespaces/{ns}{rest}")
}

pub async fn put_json(app: &TestApp, path: &str, body: &Value) -> Response {
    app.request(Method::PUT, path).json(body).send().await.expect("request")
}

pub async fn post_empty(app: &TestApp, path: &str) -> Response {
    app.request(Method::POST, path).send().await.expect("request")
}

/// The JSON of a response that must have `status`.
pub async fn json_of(response: Response, status: u16) -> Value {
    let url = response.url().to_string();
    let actual = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "{url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
}

/// Creates namespace `body` (201) as `app` and returns the response JSON.
pub async fn create_namespace(app: &TestApp, body: Value) -> Value {
    json_of(app.post_json("/v2/metadefs/namespaces", &body).await, 201).await
}

/// A public namespace `name` with one object, one property, one tag and one association.
pub async fn populated(app: &TestApp, name: &str) -> Value {
    create_namespace(
        app,
        json!({
            "namespace": name,
            "visibility": "public",
            "resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "hw_"}],
            "properties": {"cpu_mode": {"type": "string", "title": "CPU Mode", "enum": ["host-model", "custom"]}},
            "objects": [{"name": "CPU Limits", "required": ["period"], "properties": {"period": {"type": "integer", "title": "Period", "minimum": 1000}}}],
            "tags": [{"name": "t1"}]
        }),
    )
    .await
}
