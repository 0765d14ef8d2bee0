//! `/v2/metadefs/namespaces/{ns}/tags[/{tag}]`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use glint_core::context::RequestContext;
use glint_core::metadefs::{self, body, repo};
use serde_json::{Value, json};

use super::{to_empty, view};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, NoBody};
use crate::list::Params;

/// `GET .../tags`: names, newest first unless sorted otherwise; `limit` and `marker` (a name).
/// `visibility` is validated and then ignored, as in Glance.
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit_as_given()?;
    let sort_key = params.last("sort_key").unwrap_or("created_at");
    if !repo::TAG_SORT_KEYS.contains(&sort_key) {
        return Err(ApiError::bad_request(format!("Invalid sort key: {sort_key}")));
    }
    if let Some(v) = params.last("visibility").filter(|v| !matches!(*v, "public" | "private" | "shared")) {
        return Err(ApiError::bad_request(format!("Invalid visibility value: {v}")));
    }
    let query =
        repo::TagQuery { sort_key: sort_key.to_owned(), dir: params.sort_dir()?, limit, marker: params.marker() };
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "get_metadef_tags")?;
    let tags = repo::tags(&state.db, &ns, &query).await?;
    Ok(Json(json!({"tags": view::tag_names(tags.iter().map(|t| t.name.as_str()))})))
}

/// oslo's `bool_from_string`, which Glance applies to `X-Openstack-Append`.
fn truthy(headers: &HeaderMap) -> bool {
    headers
        .get("x-openstack-append")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on" | "y" | "t"))
}

/// `POST .../tags`: replaces every tag (appends with `X-Openstack-Append: true`), all or nothing.
pub async fn create_many(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let names = body::tags(&body)?;
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "add_metadef_tags")?;
    repo::replace_tags(&state.db, &ns, &names, truthy(&headers)).await?;
    Ok((StatusCode::CREATED, Json(json!({"tags": view::tag_names(names.iter().map(String::as_str))}))))
}

/// `DELETE .../tags`: every tag of the namespace.
pub async fn delete_all(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ns = to_empty(&state, &ctx, &name, Some("delete_metadef_tags")).await?;
    repo::delete_tags(&state.db, &ns).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../tags/{tag}`: creates one tag, named by the path (no body).
pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, tag)): Path<(String, String)>,
    _: NoBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    body::tag_name(&tag)?;
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "add_metadef_tag")?;
    let created = repo::create_tag(&state.db, &ns, &tag).await?;
    Ok((StatusCode::CREATED, Json(view::tag(&created))))
}

/// `GET .../tags/{tag}`.
pub async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, tag)): Path<(String, String)>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "get_metadef_tag")?;
    Ok(Json(view::tag(&repo::tag(&state.db, &ns, &tag).await?)))
}

/// `PUT .../tags/{tag}`: renames it.
pub async fn rename(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, tag)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let new_name = body::tag(&body)?;
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "modify_metadef_tag")?;
    Ok(Json(view::tag(&repo::rename_tag(&state.db, &ns, &tag, &new_name).await?)))
}

/// `DELETE .../tags/{tag}`: 204; 403 in a protected namespace.
pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, tag)): Path<(String, String)>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "delete_metadef_tag")?;
    repo::tag(&state.db, &ns, &tag).await?;
    metadefs::check_unprotected(&ns, &format!("Metadata definition tag {tag}"))?;
    repo::delete_tag(&state.db, &ns, &tag).await?;
    Ok(StatusCode::NO_CONTENT)
}
