//! `/v2/cache...`: the image cache API (Glance's cached_images controller), in Glance's order
//! of checks: the image (404), the policy rule (403), then whether this node caches at all
//! (404, as a Glance without `image_cache_dir` answers).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use glint_core::cache::{Entry, ImageCache};
use glint_core::context::RequestContext;
use glint_core::image::{Image, Status, repo};
use glint_core::policy;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::NoBody;
use crate::image_data::header_str;

/// This node's cache, or the 404 of a node that has none.
fn enabled(state: &AppState) -> Result<&Arc<ImageCache>, ApiError> {
    state
        .cache
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Caching via API is not supported at this site."))
}

/// Image `id` as the caller sees it; `None` when it does not exist for the caller.
async fn image(state: &AppState, ctx: &RequestContext, id: &str) -> Result<Option<Image>, ApiError> {
    match repo::find_visible(&state.db, ctx, id).await {
        Ok(image) => Ok(Some(image)),
        Err(glint_core::Error::NotFound(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn image_not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("Image {id} not found."))
}

/// Rule `rule` on `image` when there is one, else on the caller's own project (403).
fn enforce(ctx: &RequestContext, rule: &str, image: Option<&Image>) -> Result<(), ApiError> {
    match image {
        Some(image) => ctx.policy.enforce(rule, ctx, &policy::image_target(image))?,
        None => policy::check_own(ctx, rule)?,
    }
    Ok(())
}

fn entry_view(entry: &Entry) -> Value {
    json!({
        "id": entry.id,
        "image_id": entry.image_id,
        "hits": entry.hits,
        "last_accessed": entry.last_accessed,
        "last_modified": entry.last_modified,
        "size": entry.size,
        "checksum": entry.checksum,
    })
}

/// `GET /v2/cache`: this node's cached and queued images.
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    enforce(&ctx, "cache_list", None)?;
    let cache = enabled(&state)?;
    let cached: Vec<Value> = cache.entries().await?.iter().map(entry_view).collect();
    Ok(Json(json!({"cached_images": cached, "queued_images": cache.queued().await?})))
}

/// `PUT /v2/cache/{id}`: 202, the active image queued for prefetching on this node.
pub async fn queue(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let image = image(&state, &ctx, &id).await?.ok_or_else(|| image_not_found(&id))?;
    enforce(&ctx, "cache_image", Some(&image))?;
    let cache = enabled(&state)?;
    if image.status != Status::Active {
        return Err(ApiError::bad_request("Only images with status active can be targeted for queueing"));
    }
    cache.queue(&id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `DELETE /v2/cache/{id}`: 204, the image out of this node's cache and queue (also an image
/// that no longer exists but is still cached or queued).
pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let image = image(&state, &ctx, &id).await?;
    if image.is_none() {
        let known = match &state.cache {
            Some(cache) => cache.knows(&id).await?,
            None => false,
        };
        if !known {
            return Err(image_not_found(&id));
        }
    }
    enforce(&ctx, "cache_delete", image.as_ref())?;
    enabled(&state)?.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v2/cache`: 204, this node's cache, queue or both (`x-image-cache-clear-target`:
/// `cache`, `queue`, or empty / absent for both) emptied.
pub async fn clear(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    enforce(&ctx, "cache_delete", None)?;
    let cache = enabled(&state)?;
    let target = header_str(&headers, "x-image-cache-clear-target").unwrap_or("").trim().to_ascii_lowercase();
    let (cached, queued) = match target.as_str() {
        "" => (true, true),
        "cache" => (true, false),
        "queue" => (false, true),
        _ => {
            return Err(ApiError::bad_request(
                "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string.",
            ));
        }
    };
    if cached {
        cache.clear_cached().await?;
    }
    if queued {
        cache.clear_queue().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v2/cache/clean`: 200, what was out of place removed (entries of images no longer
/// active, stray and abandoned partial files), with Glint's count of files and bytes.
pub async fn clean(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<Json<Value>, ApiError> {
    enforce(&ctx, "cache_clean", None)?;
    let removed = enabled(&state)?.clean().await?;
    Ok(Json(json!({"total_files_cleaned": removed.files, "total_bytes_cleaned": removed.bytes})))
}

/// `POST /v2/cache/prune`: 200, least recently used images removed down to `max_size`, with
/// the files and bytes removed (v2.18).
pub async fn prune(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<Json<Value>, ApiError> {
    enforce(&ctx, "cache_prune", None)?;
    let removed = enabled(&state)?.prune().await?;
    Ok(Json(json!({"total_files_pruned": removed.files, "total_bytes_pruned": removed.bytes})))
}

/// `GET /v2/cache/nodes/{id}`: the URLs of every node holding the image.
pub async fn nodes(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    enforce(&ctx, "list_cached_nodes", None)?;
    let cache = enabled(&state)?;
    image(&state, &ctx, &id).await?.ok_or_else(|| image_not_found(&id))?;
    Ok(Json(json!(cache.nodes(&id).await?)))
}

/// Forgets `id` in every node's cache bookkeeping and removes this node's copy: the image was
/// deleted or deactivated. A failure is logged, not the caller's: stale entries are never
/// served (the image is not active) and the cache jobs remove their files.
pub(crate) async fn forget(state: &AppState, id: &str) {
    let forgotten = match &state.cache {
        Some(cache) => cache.invalidate(id).await,
        None => glint_core::cache::repo::forget_everywhere(&state.db, id).await,
    };
    if let Err(err) = forgotten {
        tracing::warn!(image = %id, error = %err, "could not drop the image from the image cache");
    }
}
