//! One log line per request: method, route template, status, bytes, duration, request id and
//! project. Never the raw query string or any header, so no token or password reaches the log.

use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use glint_core::context::RequestContext;

/// Middleware around the whole router: logs each request once its response head is ready
/// (a streamed body may still be flowing: `bytes_out` is its announced length, 0 when unknown).
pub async fn log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The template (`/v2/images/{id}`), not the path: ids would make every line unique.
    let route = request.extensions().get::<MatchedPath>().map_or("(unmatched)".to_owned(), |p| p.as_str().to_owned());
    let bytes_in = content_length(request.headers());
    let response = next.run(request).await;
    let context = response.extensions().get::<RequestContext>();
    tracing::info!(
        target: "glint::access",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        bytes_in = bytes_in.unwrap_or(0),
        bytes_out = content_length(response.headers()).or(response.body().size_hint().exact()).unwrap_or(0),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = context.map_or("-", |c| c.request_id.as_str()),
        project_id = context.and_then(|c| c.project_id.as_deref()).unwrap_or("-"),
        "request"
    );
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
