//! `/v2/images/{id}/members[/{member_id}]`: sharing an image with other projects.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use glint_core::context::RequestContext;
use glint_core::image::repo as images;
use glint_core::member::repo;
use glint_core::member::{self, Member};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, NoBody};
use crate::view::timestamp;

fn view(member: &Member) -> Value {
    json!({
        "image_id": member.image_id,
        "member_id": member.member_id,
        "status": member.status.as_str(),
        "created_at": timestamp(member.created_at),
        "updated_at": timestamp(member.updated_at),
        "schema": "/v2/schemas/member",
    })
}

/// `GET /v2/images/{id}/members`: every member for the owner and admins, a member project
/// sees only its own entry.
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let image = images::find_visible(&state.db, &ctx, &id).await?;
    member::check_shared(&image)?;
    member::check_read(&ctx, &image, "get_members")?;
    let members = repo::list(&state.db, &id, member::readable_by(&ctx, &image)).await?;
    Ok(Json(json!({"members": members.iter().map(view).collect::<Vec<_>>(), "schema": "/v2/schemas/members"})))
}

/// `POST /v2/images/{id}/members`: 200 (not 201) with the new `pending` member.
pub async fn add(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let member_id = member::member_to_add(&body)?;
    let image = images::find_visible(&state.db, &ctx, &id).await?;
    member::check_shared(&image)?;
    member::check_manage(&ctx, &image, "add_member")?;
    let added = repo::add(&state.db, &id, &member_id, state.config.images.image_member_quota).await?;
    Ok(Json(view(&added)))
}

/// `GET /v2/images/{id}/members/{member_id}`: 404 for every refusal, as in Glance.
pub async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((id, member_id)): Path<(String, String)>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("Member {member_id} not found for image {id}"));
    let image = images::find_visible(&state.db, &ctx, &id).await?;
    let readable = member::readable_by(&ctx, &image).is_none_or(|own| own == member_id);
    if member::check_shared(&image).is_err() || !readable || member::check_read(&ctx, &image, "get_member").is_err() {
        return Err(not_found());
    }
    Ok(Json(view(&repo::get(&state.db, &id, &member_id).await?)))
}

/// `PUT /v2/images/{id}/members/{member_id}`: the member project accepts or rejects.
pub async fn answer(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((id, member_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let status = member::status_to_set(&body)?;
    let image = images::find_visible(&state.db, &ctx, &id).await?;
    member::check_shared(&image)?;
    member::check_answer(&ctx, &image, &member_id)?;
    Ok(Json(view(&repo::set_status(&state.db, &id, &member_id, status).await?)))
}

/// `DELETE /v2/images/{id}/members/{member_id}`: 204.
pub async fn remove(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((id, member_id)): Path<(String, String)>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let image = images::find_visible(&state.db, &ctx, &id).await?;
    member::check_shared(&image)?;
    member::check_manage(&ctx, &image, "delete_member")?;
    repo::remove(&state.db, &id, &member_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
