//! `POST /v2/images/{id}/actions/deactivate|reactivate`.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use glint_core::context::RequestContext;
use glint_core::image::Action;
use glint_core::image::repo;
use glint_core::policy;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::NoBody;

async fn run(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    action: Action,
    rule: &str,
) -> Result<StatusCode, ApiError> {
    let image = repo::find_visible(&state.db, ctx, id).await?;
    policy::check_image(ctx, &image, rule)?;
    let next = image.status.next(action)?;
    if next != image.status {
        repo::set_status(&state.db, id, image.status, next).await?;
        if action == Action::Deactivate {
            crate::cache::forget(state, id).await;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Deactivate: `active -> deactivated` (204, also when already deactivated).
pub async fn deactivate(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    run(&state, &ctx, &id, Action::Deactivate, "deactivate").await
}

/// Reactivate: `deactivated -> active` (204, also when already active).
pub async fn reactivate(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    run(&state, &ctx, &id, Action::Reactivate, "reactivate").await
}
