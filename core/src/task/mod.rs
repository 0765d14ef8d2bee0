//! The task: an asynchronous job (an import) recorded as a row, and its one state machine.

pub mod query;
pub mod repo;

use chrono::NaiveDateTime;
use serde_json::Value;

use crate::context::RequestContext;
use crate::{Error, Result};

string_enum! {
    /// Where a task is in its life.
    TaskStatus {
        /// Recorded, waiting for a worker.
        Pending => "pending",
        /// A worker holds it.
        Processing => "processing",
        /// Finished well; final.
        Success => "success",
        /// Finished badly; final. The message says why.
        Failure => "failure",
    }
}

string_enum! {
    /// The kinds of task the API knows.
    TaskType {
        /// Legacy `POST /v2/tasks` import from a URL.
        Import => "import",
        /// Interoperable image import (`POST /v2/images/{id}/import`).
        ApiImageImport => "api_image_import",
        /// `POST /v2/images/{id}/locations`.
        LocationImport => "location_import",
    }
}

impl TaskStatus {
    /// Whether `self -> next` is allowed: pending -> processing -> success | failure, and
    /// pending -> failure; success and failure are final.
    pub fn can_become(self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, next),
            (Pending, Processing) | (Pending, Failure) | (Processing, Success) | (Processing, Failure)
        )
    }

    /// Moves to `next`, or says why not (409).
    pub fn next(self, next: TaskStatus) -> Result<TaskStatus> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(Error::Conflict(format!("Task status transition from {self} to {next} is not allowed")))
        }
    }

    /// Success and failure are final; such tasks expire after the time to live.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Success | TaskStatus::Failure)
    }
}

/// A task as the domain sees it: the `tasks` row with its `task_info`.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct Task {
    pub id: String,
    pub task_type: TaskType,
    pub status: TaskStatus,
    pub owner: String,
    pub expires_at: Option<NaiveDateTime>,
    pub image_id: Option<String>,
    pub request_id: Option<String>,
    pub user_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub input: Option<Value>,
    pub result: Option<Value>,
    /// Progress while running, the reason on failure; `""` when there is nothing to say.
    pub message: String,
}

impl Task {
    /// A new pending task of `task_type` on `image_id`, recorded for the caller `ctx` (owner,
    /// user, request id), with the worker's `input`.
    pub fn pending(ctx: &RequestContext, task_type: TaskType, image_id: String, input: Value) -> Task {
        let at = crate::db::now();
        Task {
            id: uuid::Uuid::new_v4().to_string(),
            task_type,
            status: TaskStatus::Pending,
            owner: ctx.project_id.clone().unwrap_or_default(),
            expires_at: None,
            image_id: Some(image_id),
            request_id: Some(ctx.request_id.clone()),
            user_id: ctx.user_id.clone(),
            created_at: at,
            updated_at: at,
            input: Some(input),
            result: None,
            message: String::new(),
        }
    }

    /// The input as callers see it: the URLs to fetch (`import_req.method.uri` of an image
    /// import, `import_from` of a legacy one) without their credentials, and without the
    /// caller's token and catalog (glance-download), which the stored input keeps for the
    /// worker alone.
    pub fn shown_input(&self) -> Option<Value> {
        let mut input = self.input.clone()?;
        if let Some(fields) = input.as_object_mut() {
            fields.remove(crate::image::import::CALLER);
        }
        for pointer in ["/import_req/method/uri", "/import_from"] {
            if let Some(url) = input.pointer_mut(pointer)
                && let Some(text) = url.as_str()
            {
                *url = Value::String(crate::fetch::redacted(text));
            }
        }
        Some(input)
    }
}

/// `GET /v2/schemas/task`.
pub fn task_schema() -> Value {
    let uuid = "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";
    serde_json::json!({
        "name": "task",
        "properties": {
            "id": {"type": "string", "description": "An identifier for the task", "pattern": uuid},
            "type": {"type": "string", "description": "The type of task represented by this content",
                     "enum": TaskType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>()},
            "status": {"type": "string", "description": "The current status of this task",
                       "enum": TaskStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()},
            "input": {"type": ["null", "object"], "description": "The parameters required by task, JSON blob"},
            "result": {"type": ["null", "object"], "description": "The result of current task, JSON blob"},
            "owner": {"type": "string", "description": "An identifier for the owner of this task"},
            "message": {"type": "string", "description": "Human-readable informative message only included when appropriate (usually on failure)"},
            "image_id": {"type": "string", "description": "Image associated with the task"},
            "request_id": {"type": "string", "description": "Human-readable informative request-id"},
            "user_id": {"type": "string", "description": "User associated with the task"},
            "expires_at": {"type": ["null", "string"], "description": "Datetime when this resource would be subject to removal"},
            "created_at": {"type": "string", "description": "Datetime when this resource was created"},
            "updated_at": {"type": "string", "description": "Datetime when this resource was updated"},
            "self": {"readOnly": true, "type": "string"},
            "schema": {"readOnly": true, "type": "string"}
        }
    })
}

/// `GET /v2/schemas/tasks`: list items are tasks without input, result and message.
pub fn tasks_schema() -> Value {
    let mut item = task_schema();
    if let Some(properties) = item.get_mut("properties").and_then(Value::as_object_mut) {
        for key in ["input", "result", "message"] {
            properties.remove(key);
        }
    }
    serde_json::json!({
        "name": "tasks",
        "properties": {"tasks": {"type": "array", "items": item}, "schema": {"type": "string"}},
        "links": [{"rel": "describedby", "href": "{schema}"}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_input_hides_the_credentials_of_urls_to_fetch() {
        let at = chrono::DateTime::UNIX_EPOCH.naive_utc();
        let task = |input: Value| Task {
            id: "t".into(),
            task_type: TaskType::ApiImageImport,
            status: TaskStatus::Pending,
            owner: "p".into(),
            expires_at: None,
            image_id: None,
            request_id: None,
            user_id: None,
            created_at: at,
            updated_at: at,
            input: Some(input),
            result: None,
            message: String::new(),
        };
        let import = task(serde_json::json!({"image_id": "i", "import_req": {"method":
            {"name": "web-download", "uri": "https://u:s3cret@h.example/x.img"}}, "backend": [null]}));
        let shown = import.shown_input().expect("input");
        assert_eq!(shown["import_req"]["method"]["uri"], "https://***:***@h.example/x.img");
        assert_eq!((shown["image_id"].as_str(), shown["backend"].clone()), (Some("i"), serde_json::json!([null])));
        assert!(import.input.as_ref().is_some_and(|i| i.to_string().contains("s3cret")), "stored for the worker");
        let legacy = task(serde_json::json!({"import_from": "http://t0ken@h.example/x", "import_from_format": "raw"}));
        assert_eq!(legacy.shown_input().expect("input")["import_from"], "http://***@h.example/x");
        let download = task(serde_json::json!({"image_id": "i", "caller": {"auth_token": "s3cret"}}));
        assert_eq!(download.shown_input(), Some(serde_json::json!({"image_id": "i"})));
        assert_eq!(
            task(serde_json::json!({"import_req": {"method": {"name": "glance-direct"}}})).shown_input(),
            Some(serde_json::json!({"import_req": {"method": {"name": "glance-direct"}}}))
        );
    }

    #[test]
    fn tasks_move_forward_only() {
        use TaskStatus::*;
        assert!(Pending.can_become(Processing) && Pending.can_become(Failure));
        assert!(Processing.can_become(Success) && Processing.can_become(Failure));
        for from in [Success, Failure] {
            for to in TaskStatus::ALL {
                assert!(!from.can_become(*to), "{from} -> {to}");
            }
        }
        assert!(!Pending.can_become(Success));
        assert!(matches!(Processing.next(Pending), Err(Error::Conflict(_))));
    }
}
