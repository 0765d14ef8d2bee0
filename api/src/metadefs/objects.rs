//! `/v2/metadefs/namespaces/{ns}/objects[/{obj}]`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use glint_core::context::RequestContext;
use glint_core::metadefs::{self, body, repo};
use serde_json::{Value, json};

use super::{to_empty, view};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, NoBody};
use crate::list::Params;

/// `GET .../objects`: every object, in creation order. Glance validates the paging
/// parameters and then ignores them; so do we.
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    if let Some(limit) = params.last("limit")
        && !limit.trim().parse::<i64>().is_ok_and(|n| n > 0)
    {
        return Err(ApiError::bad_request("limit param must be positive"));
    }
    params.sort_dir()?;
    if let Some(v) = params.last("visibility").filter(|v| !matches!(*v, "public" | "private" | "shared")) {
        return Err(ApiError::bad_request(format!("Invalid visibility value: {v}")));
    }
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "get_metadef_objects")?;
    let objects = repo::objects(&state.db, &ns).await?;
    let objects: Vec<Value> = objects.iter().map(|o| view::object(&ns.namespace, o, "")).collect();
    // Upstream's collection schema link has no leading slash; clients do not follow it.
    Ok(Json(json!({"objects": objects, "schema": "v2/schemas/metadefs/objects"})))
}

/// `POST .../objects`: 201 with what was asked for.
pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = body::object(&body)?;
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "add_metadef_object")?;
    let created = repo::create_object(&state.db, &ns, &input).await?;
    Ok((StatusCode::CREATED, Json(view::object_echo(&ns.namespace, &input, &created))))
}

/// `DELETE .../objects`: every object of the namespace.
pub async fn delete_all(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ns = to_empty(&state, &ctx, &name, None).await?;
    repo::delete_objects(&state.db, &ns).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../objects/{obj}`.
pub async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, object)): Path<(String, String)>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "get_metadef_object")?;
    let object = repo::object(&state.db, &ns, &object).await?;
    Ok(Json(view::object(&ns.namespace, &object, "")))
}

/// `PUT .../objects/{obj}`: full replacement, rename included.
pub async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, object)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let input = body::object(&body)?;
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "modify_metadef_object")?;
    let updated = repo::update_object(&state.db, &ns, &object, &input).await?;
    Ok(Json(view::object_echo(&ns.namespace, &input, &updated)))
}

/// `DELETE .../objects/{obj}`: 204; 403 in a protected namespace.
pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, object)): Path<(String, String)>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "delete_metadef_object")?;
    repo::object(&state.db, &ns, &object).await?;
    metadefs::check_unprotected(&ns, &format!("Metadata definition object {object}"))?;
    repo::delete_object(&state.db, &ns, &object).await?;
    Ok(StatusCode::NO_CONTENT)
}
