//! `/v2/metadefs/...` and `/v2/schemas/metadefs/...`: the metadata definitions catalog.
//!
//! Every handler under a namespace follows Glance's order of checks: the body (403 for
//! read-only keys, 400 for schema violations), then the namespace (404, also when the caller
//! may not see it), then the policy (403), then the child (404), then protection (403) and
//! uniqueness (409).

pub mod objects;
pub mod properties;
pub mod resource_types;
pub mod tags;
mod view;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use glint_core::context::RequestContext;
use glint_core::list::SortDir;
use glint_core::metadefs::{self, body, repo, schema};
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, NoBody};
use crate::forwarded::BaseUrl;
use crate::list::{self, Params};

/// `resource_type=RT` on a show: the prefix of the namespace's association with RT, if any.
async fn prefix_for(state: &AppState, ns: &metadefs::Namespace, params: &Params) -> Result<String, ApiError> {
    let Some(rt) = params.last("resource_type") else { return Ok(String::new()) };
    let associations = repo::associations(&state.db, ns).await?;
    Ok(associations.into_iter().find(|a| a.name == rt).and_then(|a| a.prefix).unwrap_or_default())
}

/// `GET /v2/metadefs/namespaces`: the visible namespaces, filtered, sorted and paged.
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit(&state.config.images)?;
    let sort_key = params.last("sort_key").unwrap_or("created_at");
    if !repo::SORT_KEYS.contains(&sort_key) {
        return Err(ApiError::bad_request(format!("Invalid sort key: {sort_key}")));
    }
    let visibility = match params.last("visibility") {
        None => None,
        Some(v @ ("public" | "private")) => Some(v.to_owned()),
        Some(other) => return Err(ApiError::bad_request(format!("Invalid visibility value: {other}"))),
    };
    let query = repo::ListQuery {
        visibility,
        resource_types: params.last("resource_types").map(|t| t.split(',').map(|s| s.trim().to_owned()).collect()),
        sort_key: sort_key.to_owned(),
        dir: params.sort_dir()?,
        limit,
        marker: params.marker(),
    };
    metadefs::check_own(&ctx, "get_metadef_namespaces")?;
    let page = repo::list(&state.db, &ctx, &query).await?;
    let next_marker = list::next_marker(&page, limit, |(ns, _)| ns.namespace.as_str());
    let links = params.links("/v2/metadefs/namespaces", next_marker);
    let namespaces: Vec<Value> = page
        .iter()
        .map(|(ns, associations)| {
            let mut out = view::namespace(ns);
            if !associations.is_empty() {
                out.insert("resource_type_associations".into(), associations.iter().map(view::association).collect());
            }
            Value::Object(out)
        })
        .collect();
    Ok(Json(list::page("namespaces", namespaces, links, "/v2/schemas/metadefs/namespaces")))
}

/// `POST /v2/metadefs/namespaces`: 201, `Location`, the namespace and an echo of its parts.
pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Extension(base): Extension<BaseUrl>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let input = body::namespace(&body)?;
    metadefs::check_own(&ctx, "add_metadef_namespace")?;
    let owner = input.owner.clone().or_else(|| ctx.project_id.clone()).unwrap_or_default();
    let ns = repo::create_namespace(&state.db, &input, &owner).await?;
    let location = format!("{}{}", base.0, view::namespace_path(&ns.namespace));
    let mut response = (StatusCode::CREATED, Json(view::namespace_echo(&ns, &input))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /v2/metadefs/namespaces/{ns}[?resource_type=RT]`: with everything in it.
pub async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    params: Params,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "get_metadef_namespace")?;
    let prefix = prefix_for(&state, &ns, &params).await?;
    let mut out = view::namespace(&ns);
    let associations = repo::associations(&state.db, &ns).await?;
    if !associations.is_empty() {
        out.insert("resource_type_associations".into(), associations.iter().map(view::association).collect());
    }
    let properties = repo::properties(&state.db, &ns).await?;
    if !properties.is_empty() {
        let map: serde_json::Map<String, Value> =
            properties.into_iter().map(|p| (p.name, Value::Object(p.schema))).collect();
        out.insert("properties".into(), Value::Object(view::property_map(&map, &prefix)));
    }
    let objects = repo::objects(&state.db, &ns).await?;
    if !objects.is_empty() {
        out.insert("objects".into(), objects.iter().map(|o| view::object(&ns.namespace, o, &prefix)).collect());
    }
    let query = repo::TagQuery { sort_key: "created_at".into(), dir: SortDir::Desc, limit: None, marker: None };
    let tags = repo::tags(&state.db, &ns, &query).await?;
    if !tags.is_empty() {
        out.insert("tags".into(), view::tag_names(tags.iter().map(|t| t.name.as_str())));
    }
    Ok(Json(Value::Object(out)))
}

/// `PUT /v2/metadefs/namespaces/{ns}`: full replacement of the namespace's own fields.
pub async fn update(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let input = body::namespace(&body)?;
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "modify_metadef_namespace")?;
    let owner = input.owner.clone().or_else(|| ctx.project_id.clone()).unwrap_or_else(|| ns.owner.clone());
    let updated = repo::update_namespace(&state.db, &ns, &input, &owner).await?;
    Ok(Json(Value::Object(view::namespace(&updated))))
}

/// `DELETE /v2/metadefs/namespaces/{ns}`: 204; the namespace and everything in it.
pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let ns = repo::find_visible(&state.db, &ctx, &name).await?;
    metadefs::check(&ctx, &ns, "delete_metadef_namespace")?;
    metadefs::check_unprotected(&ns, &format!("Metadata definition namespace {name}"))?;
    repo::delete_namespace(&state.db, &ns).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The namespace of a "delete all objects/properties/tags" call, once the caller may empty it.
async fn to_empty(
    state: &AppState,
    ctx: &RequestContext,
    name: &str,
    extra_rule: Option<&str>,
) -> Result<metadefs::Namespace, ApiError> {
    let ns = repo::find_visible(&state.db, ctx, name).await?;
    metadefs::check(ctx, &ns, "delete_metadef_namespace")?;
    if let Some(rule) = extra_rule {
        metadefs::check(ctx, &ns, rule)?;
    }
    metadefs::check_unprotected(&ns, &format!("Metadata definition namespace {name}"))?;
    Ok(ns)
}

/// `GET /v2/schemas/metadefs/{name}`: the ten metadef schemas, to anyone.
pub async fn schema(Path(name): Path<String>, _: NoBody) -> Result<Json<Value>, ApiError> {
    let document = match name.as_str() {
        "namespace" => schema::namespace(),
        "namespaces" => schema::namespaces(),
        "object" => schema::object(),
        "objects" => schema::objects(),
        "property" => schema::property(),
        "properties" => schema::properties(),
        "tag" => schema::tag(),
        "tags" => schema::tags(),
        "resource_type" => schema::resource_type(),
        "resource_types" => schema::resource_types(),
        _ => return Err(ApiError::new(StatusCode::NOT_FOUND, "The resource could not be found.")),
    };
    Ok(Json(document))
}
