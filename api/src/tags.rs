//! `PUT|DELETE /v2/images/{id}/tags/{tag}`.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use glint_core::context::RequestContext;
use glint_core::image::repo;
use glint_core::policy;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::NoBody;

/// `PUT .../tags/{tag}`: adds the tag (a no-op when present); 413 over the tag quota.
pub async fn add(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((id, tag)): Path<(String, String)>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let before = repo::find_visible(&state.db, &ctx, &id).await?;
    policy::check_image(&ctx, &before, "modify_image")?;
    if tag.chars().count() > 255 {
        return Err(ApiError::bad_request(format!(
            "Provided object does not match schema 'image': '{tag}' is too long"
        )));
    }
    if before.tags.contains(&tag) {
        return Ok(StatusCode::NO_CONTENT);
    }
    let quota = state.config.images.image_tag_quota;
    if quota >= 0 && before.tags.len() as i64 >= quota {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Attempted: {}, Maximum: {quota}. Maximum number of tags exceeded.", before.tags.len() + 1),
        ));
    }
    let mut after = before.clone();
    after.tags.insert(tag);
    repo::update(&state.db, &before, &after).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../tags/{tag}`: 404 when the image does not carry the tag.
pub async fn remove(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((id, tag)): Path<(String, String)>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let before = repo::find_visible(&state.db, &ctx, &id).await?;
    policy::check_image(&ctx, &before, "modify_image")?;
    let mut after = before.clone();
    if !after.tags.remove(&tag) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("Tag {tag} not found")));
    }
    repo::update(&state.db, &before, &after).await?;
    Ok(StatusCode::NO_CONTENT)
}
