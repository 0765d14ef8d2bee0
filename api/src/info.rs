//! `/v2/info/stores[/detail]` (which stores exist, multistore mode only) and `/v2/info/usage`.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use glint_core::context::RequestContext;
use glint_core::policy;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::NoBody;

fn stores(state: &AppState, detail: bool) -> Result<Json<Value>, ApiError> {
    if !state.stores.multistore() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Multi backend is not supported at this site."));
    }
    let list: Vec<Value> = state
        .stores
        .infos()
        .map(|(id, info)| {
            let mut store = Map::new();
            store.insert("id".into(), json!(id));
            if let Some(description) = info.and_then(|i| i.description.as_ref()) {
                store.insert("description".into(), json!(description));
            }
            if id == state.stores.default_id() {
                store.insert("default".into(), json!("true"));
            }
            // Glance's flag for its read-only http store.
            if info.is_some_and(|i| i.kind == "http") {
                store.insert("read-only".into(), json!("true"));
            }
            if detail {
                store.insert("type".into(), json!(info.map_or("file", |i| i.kind)));
                store.insert("weight".into(), json!(0));
                store.insert("properties".into(), info.map_or(json!({}), |i| i.properties.clone()));
            }
            Value::Object(store)
        })
        .collect();
    Ok(Json(json!({ "stores": list })))
}

/// `GET /v2/info/usage`: the caller's project's limits and usage (`{}` with quotas off).
pub async fn usage(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(glint_core::quota::report(&state.db, &state.config.quotas, ctx.project_id.as_deref()).await?))
}

/// `GET /v2/info/stores`: 404 unless several stores are configured.
pub async fn list(State(state): State<AppState>, _: NoBody) -> Result<Json<Value>, ApiError> {
    stores(&state, false)
}

/// `GET /v2/info/stores/detail`: the same with types and properties, for admins (and services).
pub async fn detail(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    policy::check_own(&ctx, "stores_info_detail")?;
    stores(&state, true)
}
