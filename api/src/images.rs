//! `/v2/images` and `/v2/images/{id}`: create, list, show, update (JSON patch), delete.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use glint_core::context::RequestContext;
use glint_core::image::{self, Action, Dialect, Op, PatchOp, PatchPath};
use glint_core::image::{query, repo};
use glint_core::policy;
use glint_core::quota::{self, Resource};
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, NoBody};
use crate::forwarded::BaseUrl;
use crate::list::Params;
use crate::{list, view};

/// `POST /v2/images`: 201 with the new queued image, its Location, the import methods on offer
/// (openstacksdk imports only if its method is listed there) and, in multistore mode, the
/// store ids.
pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Extension(base): Extension<BaseUrl>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request("Request body must be a JSON object."));
    };
    let image = image::new_image(body, &ctx, &state.config.images, &state.validator)?;
    quota::enforce(&state.db, &state.config.quotas, image.owner.as_deref(), &[(Resource::ImageCountTotal, 1)]).await?;
    repo::insert(&state.db, &image).await?;
    let location = format!("{}/v2/images/{}", base.0, image.id);
    let mut response = (StatusCode::CREATED, Json(view::ImageView::new(&state, &ctx).render(&image))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    // Comma-separated without spaces, as Glance writes them: openstacksdk splits on ','.
    let methods = image::import::offered(&state.config.import.enabled_import_methods);
    if !methods.is_empty()
        && let Ok(value) = HeaderValue::from_str(&methods.join(","))
    {
        response.headers_mut().insert("openstack-image-import-methods", value);
    }
    if state.stores.multistore() {
        let ids: Vec<&str> = state.stores.infos().map(|(id, _)| id).collect();
        if let Ok(value) = HeaderValue::from_str(&ids.join(",")) {
            response.headers_mut().insert("openstack-image-store-ids", value);
        }
    }
    Ok(response)
}

/// `GET /v2/images`: one page of the images the caller may see, with `first`/`next` links.
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    policy::check_own(&ctx, "get_images")?;
    let parsed = list::images::parse(&params, &state.config.images)?;
    let images = query::list(&state.db, &ctx, &parsed).await?;
    let links = params.links("/v2/images", list::next_marker(&images, parsed.limit, |i| i.id.as_str()));
    let view = view::ImageView::new(&state, &ctx);
    let items = images.iter().map(|i| view.render(i)).collect();
    Ok(Json(list::page("images", items, links, "/v2/schemas/images")))
}

/// `GET /v2/images/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let image = repo::find_visible(&state.db, &ctx, &id).await?;
    Ok(Json(view::ImageView::new(&state, &ctx).render(&image)))
}

const ACCEPT_PATCH: &str = "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch";

/// `PATCH /v2/images/{id}`: both JSON-patch dialects, applied atomically.
pub async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let dialect = match media.as_str() {
        "application/openstack-images-v2.1-json-patch" => Dialect::V21,
        "application/openstack-images-v2.0-json-patch" => Dialect::V20,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("The request media type {content_type} is not supported by this server."),
            )
            .with_header(header::HeaderName::from_static("accept-patch"), ACCEPT_PATCH));
        }
    };
    let ops = parse_patch(body, dialect)?;
    let before = repo::find_visible(&state.db, &ctx, &id).await?;
    if ops.is_empty() {
        return Ok(Json(view::ImageView::new(&state, &ctx).render(&before)));
    }
    let mut after = before.clone();
    image::apply_patch(&mut after, ops, dialect, &ctx, &state.config.images, &state.validator)?;
    let saved = image::location_rules::save(&state.db, &state.stores, &before, after).await?;
    Ok(Json(view::ImageView::new(&state, &ctx).render(&saved)))
}

fn parse_patch(body: Value, dialect: Dialect) -> Result<Vec<PatchOp>, ApiError> {
    let Value::Array(items) = body else {
        return Err(ApiError::bad_request("Request body must be a JSON array of operation objects."));
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Object(mut item) = item else {
                return Err(ApiError::bad_request("Operations must be JSON objects."));
            };
            let (op, path) = match dialect {
                Dialect::V21 => {
                    let op = item.get("op").and_then(Value::as_str).ok_or_else(|| {
                        ApiError::bad_request("Unable to find 'op' in JSON Schema change")
                    })?;
                    let path = item.get("path").and_then(Value::as_str).ok_or_else(|| {
                        ApiError::bad_request("Unable to find 'path' in JSON Schema change")
                    })?;
                    (Op::parse(op)?, path.to_owned())
                }
                Dialect::V20 => {
                    let present: Vec<&str> =
                        ["add", "remove", "replace"].into_iter().filter(|k| item.contains_key(*k)).collect();
                    let [name] = present.as_slice() else {
                        return Err(ApiError::bad_request(
                            "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".",
                        ));
                    };
                    let path = item.get(*name).and_then(Value::as_str).ok_or_else(|| {
                        ApiError::bad_request(format!("Value of member \"{name}\" must be a string."))
                    })?;
                    (Op::parse(name)?, path.to_owned())
                }
            };
            let path = PatchPath::parse(&path)?;
            Ok(PatchOp { op, path, value: item.remove("value") })
        })
        .collect()
}

/// `DELETE /v2/images/{id}`: 204; protected images are 403.
pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let image = repo::find_visible(&state.db, &ctx, &id).await?;
    policy::check_image(&ctx, &image, "delete_image")?;
    if image.protected {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("Image {id} is protected and cannot be deleted.")));
    }
    image.status.next(Action::Delete)?;
    image::delete(&state.db, &state.stores, &state.staging, &id).await?;
    crate::cache::forget(&state, &id).await;
    Ok(StatusCode::NO_CONTENT)
}
