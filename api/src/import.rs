//! `PUT /v2/images/{id}/stage`, `POST /v2/images/{id}/import` and `GET /v2/info/import`:
//! interoperable import. The API records the task; workers run it.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use glint_core::context::RequestContext;
use glint_core::image::data;
use glint_core::image::import::{self, Importer};
use glint_core::metrics::DataFlow;
use glint_core::quota::{self, Resource};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{JsonBody, NoBody};
use crate::image_data::{admitted, expected_size, header_str, outliving_the_client, require_octet_stream};
use crate::{AppState, body};

fn enabled(state: &AppState, method: &str) -> bool {
    state.config.import.enabled_import_methods.iter().any(|m| m == method)
}

/// `PUT /v2/images/{id}/stage`: 204 once the data is in the staging area.
pub async fn stage(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    if !enabled(&state, "glance-direct") {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "The resource could not be found."));
    }
    require_octet_stream(&headers)?;
    let expected_size = expected_size(&headers)?;
    let size = expected_size.map_or(0, quota::mib);
    let deltas = [(Resource::ImageStageTotal, size), (Resource::ImageCountUploading, 1)];
    let image = admitted(&state, &ctx, &id, Some("modify_image"), &deltas).await?;
    let idle = Duration::from_secs(state.config.server.body_idle_timeout);
    let stream = body::image_data(body, DataFlow::Staged, idle);
    let drain = state.drain.clone();
    outliving_the_client(&drain, "staging", async move {
        let cap = state.config.images.image_size_cap;
        data::stage(&state.db, &state.staging, &image, stream, expected_size, cap).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v2/images/{id}/import`: 202 once the import task is recorded.
pub async fn import(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let mut request = import::parse(body, &state.config.import.enabled_import_methods)?;
    // glance-direct images are counted as uploading since their staging.
    let starts_upload = i64::from(request.method != import::Method::GlanceDirect);
    let deltas = [(Resource::ImageSizeTotal, 0), (Resource::ImageCountUploading, starts_upload)];
    // The policy rule depends on the method and comes after the status checks: accept() has it.
    let image = admitted(&state, &ctx, &id, None, &deltas).await?;
    let importer = Importer {
        db: &state.db,
        stores: &state.stores,
        fetcher: &state.fetcher,
        task_ttl: state.config.tasks.task_ttl(),
    };
    if let import::Method::GlanceDownload(_) = request.method {
        request.caller = Some(caller(&state, &ctx, &headers).await?);
    }
    let header_store = header_str(&headers, "x-image-meta-store");
    if let Some(task) = importer.accept(&ctx, &image, &request, header_store).await? {
        tracing::info!(image = %id, task = %task.id, method = request.method.name(), "import accepted");
        state.announce(&task.id);
    }
    Ok(StatusCode::ACCEPTED)
}

/// What a glance-download keeps of its caller: the roles, the token, and its service catalog from
/// Keystone (keystone mode) or from `X-Service-Catalog` (no-auth mode, where the proxy in
/// front, keystonemiddleware, sets it; invalid JSON is a 500 there as in Glance). A client's
/// own `X-Service-Catalog` counts for nothing in keystone mode.
async fn caller(state: &AppState, ctx: &RequestContext, headers: &HeaderMap) -> Result<import::Caller, ApiError> {
    let auth_token = header_str(headers, "x-auth-token").map(str::to_owned);
    let service_catalog = match (&state.keystone, &auth_token) {
        (Some(keystone), Some(token)) => Some(keystone.catalog(token).await?),
        (Some(_), None) => None,
        (None, _) => match header_str(headers, "x-service-catalog") {
            None => None,
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Invalid service catalog json."))?,
            ),
        },
    };
    Ok(import::Caller { auth_token, service_catalog, roles: ctx.roles.clone() })
}

/// `GET /v2/info/import`: the enabled import methods.
pub async fn info(State(state): State<AppState>, _: NoBody) -> Json<Value> {
    let methods = import::offered(&state.config.import.enabled_import_methods);
    Json(json!({"import-methods": {"description": "Import methods available.", "type": "array", "value": methods}}))
}
