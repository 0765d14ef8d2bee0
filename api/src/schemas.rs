//! `/v2/schemas/...`: the JSON schemas glanceclient and Nova download and enforce.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::NoBody;
use glint_core::image::schema;

/// `GET /v2/schemas/image`.
pub async fn image(State(state): State<AppState>, _: NoBody) -> Result<Json<Value>, ApiError> {
    Ok(Json(schema::image_schema(&state.config.images)))
}

/// `GET /v2/schemas/images`.
pub async fn images(State(state): State<AppState>, _: NoBody) -> Result<Json<Value>, ApiError> {
    Ok(Json(schema::images_schema(&state.config.images)))
}

/// `GET /v2/schemas/task`.
pub async fn task(_: NoBody) -> Json<Value> {
    Json(glint_core::task::task_schema())
}

/// `GET /v2/schemas/tasks`.
pub async fn tasks(_: NoBody) -> Json<Value> {
    Json(glint_core::task::tasks_schema())
}

/// `GET /v2/schemas/member`.
pub async fn member(_: NoBody) -> Json<Value> {
    Json(glint_core::member::member_schema())
}

/// `GET /v2/schemas/members`.
pub async fn members(_: NoBody) -> Json<Value> {
    Json(glint_core::member::members_schema())
}
