//! `/v2/metadefs/resource_types` and `/v2/metadefs/namespaces/{ns}/resource_types[/{rt}]`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use glint_core::context::RequestContext;
use glint_core::metadefs::{self, body, repo};
use serde_json::{Map, Value, json};

use super::view;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, NoBody};
use crate::view::timestamp;

/// `GET /v2/metadefs/resource_types`: every type, associated or not.
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    metadefs::check_own(&ctx, "list_metadef_resource_types")?;
    let types: Vec<Value> = repo::resource_types(&state.db)
        .await?
        .into_iter()
        .map(|t| {
            let mut out = Map::new();
            out.insert("name".into(), json!(t.name));
            out.insert("created_at".into(), json!(timestamp(t.created_at)));
            if let Some(updated_at) = t.updated_at {
                out.insert("updated_at".into(), json!(timestamp(updated_at)));
            }
            Value::Object(out)
        })
        .collect();
    Ok(Json(json!({"resource_types": types})))
}

/// `GET .../namespaces/{ns}/resource_types`: the namespace's associations.
pub async fn associations(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "get_metadef_resource_type")?;
    let list: Vec<Value> = repo::associations(&state.db, &ns).await?.iter().map(view::association).collect();
    Ok(Json(json!({"resource_type_associations": list})))
}

/// `POST .../namespaces/{ns}/resource_types`: associates a type, creating it if unknown.
pub async fn associate(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = body::association(&body)?;
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "add_metadef_resource_type_association")?;
    let created = repo::associate(&state.db, &ns, &input).await?;
    Ok((StatusCode::CREATED, Json(view::association(&created))))
}

/// `DELETE .../namespaces/{ns}/resource_types/{rt}`: 204; the type itself stays.
pub async fn dissociate(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, rt)): Path<(String, String)>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "remove_metadef_resource_type_association")?;
    if !repo::associations(&state.db, &ns).await?.iter().any(|a| a.name == rt) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("Failed to find resource type {rt} to delete")));
    }
    metadefs::check_unprotected(&ns, &format!("Metadata definition resource type association {rt}"))?;
    repo::dissociate(&state.db, &ns, &rt).await?;
    Ok(StatusCode::NO_CONTENT)
}
