//! The route table: every path Glint answers, and what happens to the rest.

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::routing::{MethodRouter, any, delete, get, post, put};

use crate::access_log;
use crate::error::{self, ApiError};
use crate::metadefs::{
    self, objects as md_objects, properties as md_properties, resource_types as md_types, tags as md_tags,
};
use crate::{
    AppState, actions, cache, console, context, forwarded, image_data, images, import, info, locations, members,
    metrics, schemas, stores, tags, tasks, versions,
};

/// A resource's methods; any other method is a 405 listing `allowed` in `Allow`.
fn resource(methods: MethodRouter<AppState>, allowed: &'static str) -> MethodRouter<AppState> {
    methods.fallback(move |method: Method| async move { ApiError::method_not_allowed(&method, allowed) })
}

/// Builds the router for `state`: versions and health outside auth, `/v2` behind it.
pub fn router(state: AppState) -> Router {
    let v2 = Router::new()
        .route("/v2/images", resource(get(images::list).post(images::create), "GET, POST"))
        .route(
            "/v2/images/{id}",
            resource(get(images::show).patch(images::update).delete(images::delete), "GET, PATCH, DELETE"),
        )
        .route("/v2/images/{id}/file", resource(get(image_data::download).put(image_data::upload), "GET, PUT"))
        .route("/v2/images/{id}/stage", resource(put(import::stage), "PUT"))
        .route("/v2/images/{id}/import", resource(post(import::import), "POST"))
        .route("/v2/images/{id}/locations", resource(get(locations::list).post(locations::add), "GET, POST"))
        .route("/v2/info/import", resource(get(import::info), "GET"))
        .route("/v2/images/{id}/members", resource(get(members::list).post(members::add), "GET, POST"))
        .route(
            "/v2/images/{id}/members/{member_id}",
            resource(get(members::show).put(members::answer).delete(members::remove), "GET, PUT, DELETE"),
        )
        .route("/v2/schemas/member", resource(get(schemas::member), "GET"))
        .route("/v2/schemas/members", resource(get(schemas::members), "GET"))
        .route("/v2/images/{id}/tags/{tag}", resource(put(tags::add).delete(tags::remove), "PUT, DELETE"))
        .route("/v2/images/{id}/actions/deactivate", resource(post(actions::deactivate), "POST"))
        .route("/v2/images/{id}/actions/reactivate", resource(post(actions::reactivate), "POST"))
        .route("/v2/images/{id}/tasks", resource(get(tasks::for_image), "GET"))
        .route("/v2/tasks", resource(get(tasks::list).post(tasks::create), "GET, POST"))
        .route("/v2/tasks/{id}", resource(get(tasks::show), "GET"))
        .route("/v2/schemas/task", resource(get(schemas::task), "GET"))
        .route("/v2/schemas/tasks", resource(get(schemas::tasks), "GET"))
        .route("/v2/info/usage", resource(get(info::usage), "GET"))
        .route("/v2/info/stores", resource(get(info::list), "GET"))
        .route("/v2/info/stores/detail", resource(get(info::detail), "GET"))
        .route("/v2/stores/{store_id}/{image_id}", resource(delete(stores::delete_copy), "DELETE"))
        .route("/v2/schemas/image", resource(get(schemas::image), "GET"))
        .route("/v2/schemas/images", resource(get(schemas::images), "GET"))
        .route("/v2/metadefs/namespaces", resource(get(metadefs::list).post(metadefs::create), "GET, POST"))
        .route(
            "/v2/metadefs/namespaces/{ns}",
            resource(get(metadefs::show).put(metadefs::update).delete(metadefs::delete), "GET, PUT, DELETE"),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/objects",
            resource(
                get(md_objects::list).post(md_objects::create).delete(md_objects::delete_all),
                "GET, POST, DELETE",
            ),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/objects/{object}",
            resource(get(md_objects::show).put(md_objects::update).delete(md_objects::delete), "GET, PUT, DELETE"),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/properties",
            resource(
                get(md_properties::list).post(md_properties::create).delete(md_properties::delete_all),
                "GET, POST, DELETE",
            ),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/properties/{property}",
            resource(
                get(md_properties::show).put(md_properties::update).delete(md_properties::delete),
                "GET, PUT, DELETE",
            ),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/tags",
            resource(get(md_tags::list).post(md_tags::create_many).delete(md_tags::delete_all), "GET, POST, DELETE"),
        )
        .route(
            "/v2/metadefs/namespaces/{ns}/tags/{tag}",
            resource(
                get(md_tags::show).post(md_tags::create).put(md_tags::rename).delete(md_tags::delete),
                "GET, POST, PUT, DELETE",
            ),
        )
        .route("/v2/metadefs/resource_types", resource(get(md_types::list), "GET"))
        .route(
            "/v2/metadefs/namespaces/{ns}/resource_types",
            resource(get(md_types::associations).post(md_types::associate), "GET, POST"),
        )
        .route("/v2/metadefs/namespaces/{ns}/resource_types/{rt}", resource(delete(md_types::dissociate), "DELETE"))
        .route("/v2/schemas/metadefs/{name}", resource(get(metadefs::schema), "GET"))
        .route("/v2/cache", resource(get(cache::list).delete(cache::clear), "GET, DELETE"))
        .route("/v2/cache/{id}", resource(put(cache::queue).delete(cache::delete), "DELETE, PUT"))
        .route("/v2/cache/nodes/{id}", resource(get(cache::nodes), "GET"))
        .route("/v2/cache/clean", resource(post(cache::clean), "POST"))
        .route("/v2/cache/prune", resource(post(cache::prune), "POST"))
        .route("/v2", any(not_found))
        .route("/v2/{*rest}", any(not_found))
        .layer(middleware::from_fn_with_state(state.clone(), context::authenticate));
    let metrics_config = &state.config.metrics;
    let mut unversioned = Router::new()
        .route("/", get(versions::multiple_choices))
        .route("/versions", get(versions::versions))
        .route("/versions/{*rest}", get(versions::versions))
        .route("/healthcheck", get(versions::healthcheck));
    if metrics_config.on_api_port(state.config.server.bind) {
        unversioned = unversioned.route("/metrics", get(metrics::scrape));
    }
    let api = unversioned
        .merge(v2)
        .fallback(versions::multiple_choices)
        .layer(middleware::from_fn_with_state(state.clone(), forwarded::base_url))
        .layer(middleware::from_fn(error::render_errors))
        .with_state(state.clone());
    // The console hands its `/console/api` requests to `api` itself: one code path, one policy.
    let app = if state.config.console.enabled {
        console::router(state.clone(), api.clone())
            .layer(middleware::from_fn_with_state(state.clone(), forwarded::base_url))
            .layer(middleware::from_fn(error::render_errors))
            .merge(api)
    } else {
        api
    };
    let app = app.layer(middleware::from_fn(access_log::log));
    if metrics_config.enabled { app.layer(middleware::from_fn(metrics::record)) } else { app }
}

/// Unknown paths under `/v2` (behind auth, so they carry a request id like every v2 answer).
async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "The resource could not be found.")
}
