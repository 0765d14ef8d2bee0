//! The version document (`/`, `/versions`, unknown versions), `/v2.N` prefixes and /healthcheck.

use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::forwarded::BaseUrl;

/// Versions the image cache adds, in upstream's order (2.15 is in this block then).
const CACHE_VERSIONS: &[(&str, &str)] = &[
    ("v2.18", "CURRENT"),
    ("v2.17", "SUPPORTED"),
    ("v2.16", "SUPPORTED"),
    ("v2.15", "SUPPORTED"),
    ("v2.14", "SUPPORTED"),
];

/// Versions multistore mode adds (2.9 is in this block then).
const MULTISTORE_VERSIONS: &[(&str, &str)] = &[
    ("v2.13", "SUPPORTED"),
    ("v2.12", "SUPPORTED"),
    ("v2.11", "SUPPORTED"),
    ("v2.10", "SUPPORTED"),
    ("v2.9", "SUPPORTED"),
    ("v2.8", "SUPPORTED"),
];

/// Versions every configuration offers, last in the document.
const BASE_VERSIONS: &[(&str, &str)] = &[
    ("v2.7", "SUPPORTED"),
    ("v2.6", "SUPPORTED"),
    ("v2.5", "SUPPORTED"),
    ("v2.4", "SUPPORTED"),
    ("v2.3", "SUPPORTED"),
    ("v2.2", "SUPPORTED"),
    ("v2.1", "SUPPORTED"),
    ("v2.0", "SUPPORTED"),
];

/// The advertised versions in upstream's order (glance/api/versions.py): the cache block or
/// 2.15, the multistore block or 2.9, 2.17 as CURRENT without the cache, then 2.7 to 2.0.
fn advertised(multistore: bool, cache: bool) -> Vec<(&'static str, &'static str)> {
    let mut versions = Vec::new();
    versions.extend_from_slice(if cache { CACHE_VERSIONS } else { &[("v2.15", "SUPPORTED")] });
    versions.extend_from_slice(if multistore { MULTISTORE_VERSIONS } else { &[("v2.9", "SUPPORTED")] });
    if !cache {
        versions.push(("v2.17", "CURRENT"));
    }
    versions.extend_from_slice(BASE_VERSIONS);
    versions
}

fn document(state: &AppState, base: &BaseUrl) -> serde_json::Value {
    let href = format!("{}/v2/", base.0);
    let versions: Vec<_> = advertised(state.stores.multistore(), state.cache.is_some())
        .iter()
        .map(|(id, status)| json!({"id": id, "status": status, "links": [{"rel": "self", "href": href}]}))
        .collect();
    json!({ "versions": versions })
}

/// `GET /versions`: 200 with the version document.
pub async fn versions(State(state): State<AppState>, Extension(base): Extension<BaseUrl>) -> Response {
    (StatusCode::OK, axum::Json(document(&state, &base))).into_response()
}

/// `GET /` and any unversioned or unknown-version path: 300 with the version document.
pub async fn multiple_choices(State(state): State<AppState>, Extension(base): Extension<BaseUrl>) -> Response {
    (StatusCode::MULTIPLE_CHOICES, axum::Json(document(&state, &base))).into_response()
}

/// Rewrites `/v2.N/...` to `/v2/...` for every advertised minor version, before routing.
/// Unadvertised minors are left alone and end at the 300 document.
pub fn rewrite_version_prefix(multistore: bool, cache: bool) -> impl Fn(Request) -> Request + Clone {
    let minors: Vec<&'static str> =
        advertised(multistore, cache).iter().filter_map(|(id, _)| id.strip_prefix("v2.")).collect();
    move |request| rewrite(request, &minors)
}

fn rewrite(mut request: Request, minors: &[&str]) -> Request {
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix("/v2.") else { return request };
    let (minor, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if !minors.contains(&minor) {
        return request;
    }
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    if let Ok(uri) = format!("/v2/{tail}{query}").parse() {
        *request.uri_mut() = uri;
    }
    request
}

/// `GET|HEAD /healthcheck`: no auth; 503 while the operator's disable file exists, and while
/// the server is stopping (asked over a connection opened before: it accepts no new one).
pub async fn healthcheck(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    let disabled = state.config.server.healthcheck_disable_file.as_ref().is_some_and(|p| p.exists());
    let unavailable =
        if state.drain.is_draining() { Some("SHUTTING DOWN") } else { disabled.then_some("DISABLED BY FILE") };
    let (status, reason) = unavailable.map_or((StatusCode::OK, "OK"), |r| (StatusCode::SERVICE_UNAVAILABLE, r));
    if method == Method::HEAD {
        let status = if unavailable.is_some() { status } else { StatusCode::NO_CONTENT };
        return status.into_response();
    }
    let wants_json =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"));
    if wants_json {
        (status, axum::Json(json!({"detailed": false, "reasons": [reason]}))).into_response()
    } else {
        (status, [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], reason).into_response()
    }
}
