//! `/v2/tasks`, `/v2/tasks/{id}` and `/v2/images/{id}/tasks`: reading tasks.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDateTime;
use glint_core::context::RequestContext;
use glint_core::image::repo as images;
use glint_core::image::schema::is_uuid;
use glint_core::policy;
use glint_core::task::query::{self, TaskQuery, TaskSortKey};
use glint_core::task::repo;
use glint_core::task::{Task, TaskStatus, TaskType};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, NoBody};
use crate::forwarded::BaseUrl;
use crate::list::{self, Links, Params};
use crate::view::timestamp;

/// `tasks_api_access` (the legacy tasks API is for admins by default), then the call's own rule.
fn check_tasks_api(ctx: &RequestContext, rule: &str) -> Result<(), ApiError> {
    policy::check_own(ctx, "tasks_api_access")?;
    Ok(policy::check_own(ctx, rule)?)
}

/// The list entry of a task: no input, result or message.
fn stub(task: &Task) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(task.id));
    out.insert("type".into(), json!(task.task_type.as_str()));
    out.insert("status".into(), json!(task.status.as_str()));
    out.insert("owner".into(), json!(task.owner));
    out.insert("created_at".into(), json!(timestamp(task.created_at)));
    out.insert("updated_at".into(), json!(timestamp(task.updated_at)));
    if let Some(expires_at) = task.expires_at {
        out.insert("expires_at".into(), json!(timestamp(expires_at)));
    }
    out.insert("self".into(), json!(format!("/v2/tasks/{}", task.id)));
    out.insert("schema".into(), json!("/v2/schemas/task"));
    Value::Object(out)
}

/// The full task of `GET /v2/tasks/{id}`.
fn full(task: &Task) -> Value {
    let mut out = match stub(task) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    out.insert("input".into(), task.shown_input().unwrap_or(Value::Null));
    out.insert("result".into(), task.result.clone().unwrap_or(Value::Null));
    out.insert("message".into(), json!(task.message));
    for (key, value) in [("image_id", &task.image_id), ("request_id", &task.request_id), ("user_id", &task.user_id)] {
        if let Some(value) = value {
            out.insert(key.into(), json!(value));
        }
    }
    Value::Object(out)
}

/// `GET /v2/images/{id}/tasks` shows raw database datetimes (microseconds, no zone) and the
/// deletion columns: its keys are exactly upstream's.
fn image_task(task: &Task) -> Value {
    let raw = |at: NaiveDateTime| at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    json!({
        "id": task.id,
        "type": task.task_type.as_str(),
        "status": task.status.as_str(),
        "owner": task.owner,
        "image_id": task.image_id,
        "request_id": task.request_id,
        "user_id": task.user_id,
        "created_at": raw(task.created_at),
        "updated_at": raw(task.updated_at),
        "expires_at": task.expires_at.map(raw),
        "deleted_at": null,
        "deleted": false,
        "input": task.shown_input(),
        "result": task.result,
        "message": task.message,
    })
}

fn parse_query(params: &Params, state: &AppState) -> Result<TaskQuery, ApiError> {
    let limit = params.limit(&state.config.images)?;
    let marker = match params.last("marker") {
        Some(marker) if !is_uuid(marker) => {
            return Err(ApiError::bad_request(format!("Invalid marker format: {marker}")));
        }
        other => other.map(str::to_owned),
    };
    let sort_key = TaskSortKey::parse(params.last("sort_key").unwrap_or("created_at"))?;
    let sort_dir = params.sort_dir()?;
    let status = params
        .last("status")
        .map(|s| s.parse::<TaskStatus>().map_err(|_| ApiError::bad_request(format!("Invalid status value: {s}"))))
        .transpose()?;
    let task_type = match params.last("type") {
        None => None,
        Some("import") => Some(TaskType::Import),
        Some(other) => return Err(ApiError::bad_request(format!("Invalid type value: {other}"))),
    };
    Ok(TaskQuery {
        status,
        task_type,
        owner: params.last("owner").map(str::to_owned),
        image_id: params.last("image_id").map(str::to_owned),
        sort: (sort_key, sort_dir),
        limit,
        marker,
    })
}

/// `GET /v2/tasks`: a page of task stubs with `first`/`next` links.
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    check_tasks_api(&ctx, "get_tasks")?;
    let parsed = parse_query(&params, &state)?;
    let tasks = query::list(&state.db, &ctx, &parsed).await?;
    let links = params.links("/v2/tasks", list::next_marker(&tasks, parsed.limit, |t| t.id.as_str()));
    // Glance's task list points `first` at the bare collection, whatever the filters.
    let links = Links { first: "/v2/tasks".to_owned(), ..links };
    Ok(Json(list::page("tasks", tasks.iter().map(stub).collect(), links, "/v2/schemas/tasks")))
}

/// `POST /v2/tasks`: records a legacy `import` task; 201 with the pending task.
pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Extension(base): Extension<BaseUrl>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    check_tasks_api(&ctx, "add_task")?;
    let task =
        glint_core::image::import::legacy_task(&ctx, &body, &state.fetcher, &state.config.images, &state.validator)
            .await?;
    repo::insert(&state.db, &task).await?;
    tracing::info!(task = %task.id, "legacy import task accepted");
    state.announce(&task.id);
    let mut response = (StatusCode::CREATED, Json(full(&task))).into_response();
    let location = format!("{}/v2/tasks/{}", base.0, task.id);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /v2/tasks/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_tasks_api(&ctx, "get_task")?;
    Ok(Json(full(&repo::find_visible(&state.db, &ctx, &id).await?)))
}

/// `GET /v2/images/{id}/tasks`: the image's tasks the caller may see (image invisible: 404).
pub async fn for_image(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    images::find_visible(&state.db, &ctx, &id).await?;
    let tasks = repo::for_image(&state.db, &ctx, &id).await?;
    Ok(Json(json!({ "tasks": tasks.iter().map(image_task).collect::<Vec<_>>() })))
}
