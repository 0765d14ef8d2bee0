//! `POST|GET /v2/images/{id}/locations` (API 2.17): a location for a queued image, recorded
//! as a task the workers run; an image's locations, for services.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use glint_core::context::RequestContext;
use glint_core::image::{location_import, repo};
use glint_core::policy;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, NoBody};

/// `POST /v2/images/{id}/locations`: 202 once the `location_import` task is recorded.
pub async fn add(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    // Glance validates the body before it looks for the image.
    let request = location_import::parse(&body)?;
    let image = repo::find_visible(&state.db, &ctx, &id).await?;
    let ttl = state.config.tasks.task_ttl();
    let task = location_import::accept(&state.db, &state.stores, &ctx, &image, &request, ttl).await?;
    tracing::info!(image = %id, task = %task.id, "location import accepted");
    state.announce(&task.id);
    Ok(StatusCode::ACCEPTED)
}

/// `GET /v2/images/{id}/locations`: the live locations (`url`, `metadata`), oldest first;
/// `fetch_image_location` lets only services see them.
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let image = repo::find_visible(&state.db, &ctx, &id).await?;
    policy::check_image(&ctx, &image, "fetch_image_location")?;
    let shown = image.locations.iter().map(|location| {
        let mut metadata = location.metadata.clone();
        // As in image responses: Glance names the store only in multistore mode.
        if !state.stores.multistore() {
            metadata.remove("store");
        }
        json!({"url": location.url, "metadata": metadata})
    });
    Ok(Json(Value::Array(shown.collect())))
}
