//! `DELETE /v2/stores/{store_id}/{image_id}`: removing one store's copy of an image's data
//! (API 2.10, multistore only).

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use glint_core::context::RequestContext;
use glint_core::image::{self, repo};
use glint_core::{Error, policy};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::NoBody;

/// 204 once the copy is gone from the image; Glance's order of checks: multistore (404),
/// store configured (409), image visible (404), policy (403), then the image's state.
pub async fn delete_copy(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((store_id, image_id)): Path<(String, String)>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    if !state.stores.multistore() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "The resource could not be found."));
    }
    if state.stores.get(&store_id).is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("The selected store {store_id} is not available on this node."),
        ));
    }
    let found = repo::find_visible(&state.db, &ctx, &image_id).await;
    let image = found.map_err(|err| match err {
        Error::NotFound(_) => Error::NotFound(format!("Failed to find image {image_id}")),
        err => err,
    })?;
    policy::check_image(&ctx, &image, "get_image_location")?;
    policy::check_image(&ctx, &image, "delete_image_location")?;
    image::delete_from_store(&state.db, &state.stores, &image_id, &store_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
