//! `/v2/metadefs/namespaces/{ns}/properties[/{prop}]`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use glint_core::context::RequestContext;
use glint_core::metadefs::body::render_property;
use glint_core::metadefs::{self, body, repo};
use serde_json::{Map, Value, json};

use super::{to_empty, view};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, NoBody};
use crate::list::Params;

/// `GET .../properties`: name → property; an entry names itself only if it was created through
/// this API (as in Glance, whose clients tolerate both).
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "get_metadef_properties")?;
    let properties: Map<String, Value> = repo::properties(&state.db, &ns)
        .await?
        .into_iter()
        .map(|p| (p.name, Value::Object(render_property(&p.schema, true))))
        .collect();
    Ok(Json(json!({"properties": properties})))
}

/// `POST .../properties`: 201 with the property exactly as a later GET shows it.
pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (property, fragment) = body::property(&body)?;
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "add_metadef_property")?;
    let created = repo::create_property(&state.db, &ns, &property, fragment).await?;
    Ok((StatusCode::CREATED, Json(view::property(&created, &created.name))))
}

/// `DELETE .../properties`: every property of the namespace.
pub async fn delete_all(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ns = to_empty(&state, &ctx, &name, None).await?;
    repo::delete_properties(&state.db, &ns).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../properties/{prop}[?resource_type=RT]`: with RT, `{prop}` carries RT's prefix,
/// which is stripped before the lookup.
pub async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, property)): Path<(String, String)>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "get_metadef_property")?;
    let mut lookup = property.as_str();
    if let Some(rt) = params.last("resource_type") {
        let association =
            repo::associations(&state.db, &ns).await?.into_iter().find(|a| a.name == rt).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("Resource type {rt} is not associated with namespace {name}"),
                )
            })?;
        let prefix = association.prefix.unwrap_or_default();
        lookup = property.strip_prefix(prefix.as_str()).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("Property {property} does not start with the expected resource type association prefix of '{prefix}'."),
            )
        })?;
    }
    let found = repo::property(&state.db, &ns, lookup).await?;
    Ok(Json(view::property(&found, lookup)))
}

/// `PUT .../properties/{prop}`: replaces the whole fragment, rename included.
pub async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, property)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let (new_name, fragment) = body::property(&body)?;
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "modify_metadef_property")?;
    let updated = repo::update_property(&state.db, &ns, &property, &new_name, fragment).await?;
    Ok(Json(view::property(&updated, &updated.name)))
}

/// `DELETE .../properties/{prop}`: 204; 403 in a protected namespace.
pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, property)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "remove_metadef_property")?;
    repo::property(&state.db, &ns, &property).await?;
    metadefs::check_unprotected(&ns, &format!("Metadata definition property {property}"))?;
    repo::delete_property(&state.db, &ns, &property).await?;
    Ok(StatusCode::NO_CONTENT)
}
