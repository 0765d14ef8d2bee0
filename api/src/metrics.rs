//! `GET /metrics` and the middleware that counts requests by route template, method and status.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use glint_core::db::DatabaseConnection;
use tokio::net::TcpListener;

use crate::error::ApiError;

/// Middleware around the whole router: counts each request once its response head is ready
/// (the latency of a streamed download is its time to first byte).
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The template, never the path: ids would make a series per image.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = matched.as_ref().map_or("(unmatched)", MatchedPath::as_str);
    glint_core::metrics::http_request(route, method.as_str(), response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics`: every family in the Prometheus text format.
pub async fn scrape(State(db): State<DatabaseConnection>) -> Result<Response, ApiError> {
    let text = glint_core::metrics::render(&db).await?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, glint_core::metrics::CONTENT_TYPE)], text).into_response())
}

/// Serves `GET /metrics` alone on `listener` (the `[metrics] bind` listener of every process,
/// the only one of `glint worker`) until `shutdown` resolves.
pub async fn serve(
    db: DatabaseConnection,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(scrape)).with_state(db);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
