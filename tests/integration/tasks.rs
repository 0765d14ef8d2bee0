//! GET /v2/tasks, /v2/tasks/{id} and /v2/images/{id}/tasks.

use chrono::NaiveDateTime;
use glint_core::task::{Task, TaskStatus, TaskType};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(idle;
    tasks_api_is_for_admins,
    task_list_filters_sorts_and_pages,
    task_list_rejects_bad_parameters,
    task_show_returns_the_full_task,
    expired_tasks_disappear,
    image_tasks_lists_the_images_tasks_as_upstream_does,
    task_delete_is_405,
);

fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("time")
}

/// Records a task directly, with the timestamps and statuses a test needs (the API cannot
/// choose them).
async fn task(app: &TestApp, id: &str, status: TaskStatus, owner: &str, created: &str, image_id: Option<&str>) -> Task {
    let task = Task {
        id: id.to_owned(),
        task_type: if image_id.is_some() { TaskType::ApiImageImport } else { TaskType::Import },
        status,
        owner: owner.to_owned(),
        expires_at: None,
        image_id: image_id.map(str::to_owned),
        request_id: Some("req-6b5d2f8e-1f0c-4a51-9a36-2f8c1c6d0001".into()),
        user_id: None,
        created_at: at(created),
        updated_at: at(created),
        input: Some(json!({"import_from": "http://example.org/img", "import_from_format": "qcow2"})),
        result: (status == TaskStatus::Success).then(|| json!({"image_id": "8b1a0000-0000-4000-8000-000000000001"})),
        message: String::new(),
    };
    glint_core::task::repo::insert(&app.db, &task).await.expect("insert task");
    task
}

const T1: &str = "11111111-0000-4000-8000-000000000001";
const T2: &str = "22222222-0000-4000-8000-000000000002";
const T3: &str = "33333333-0000-4000-8000-000000000003";

fn ids(body: &Value) -> Vec<&str> {
    body["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].as_str().expect("id")).collect()
}

async fn tasks_api_is_for_admins(app: TestApp) {
    task(&app, T1, TaskStatus::Pending, "p1", "2024-01-01 00:00:00", None).await;
    for path in ["/v2/tasks".to_owned(), format!("/v2/tasks/{T1}")] {
        expect_error(app.as_project("p1", "member").get(&path).await, 403).await;
        app.as_project("p9", "admin").get_json(&path).await;
    }
}

async fn task_list_filters_sorts_and_pages(app: TestApp) {
    task(&app, T1, TaskStatus::Pending, "p1", "2024-01-01 00:00:00", None).await;
    task(&app, T2, TaskStatus::Success, "p2", "2024-01-02 00:00:00", None).await;
    task(&app, T3, TaskStatus::Failure, "p1", "2024-01-03 00:00:00", Some("8b1a0000-0000-4000-8000-000000000001"))
        .await;
    let body = app.get_json("/v2/tasks").await;
    assert_eq!(ids(&body), [T3, T2, T1]);
    assert_eq!(body["first"], "/v2/tasks");
    assert_eq!(body["schema"], "/v2/schemas/tasks");
    let stub = body["tasks"][1].as_object().expect("stub");
    let mut keys: Vec<&str> = stub.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "id", "owner", "schema", "self", "status", "type", "updated_at"]);
    assert_eq!(stub["self"], format!("/v2/tasks/{T2}"));
    assert_eq!(stub["created_at"], "2024-01-02T00:00:00Z");

    assert_eq!(ids(&app.get_json("/v2/tasks?status=success").await), [T2]);
    assert_eq!(ids(&app.get_json("/v2/tasks?type=import").await), [T2, T1]);
    assert_eq!(ids(&app.get_json("/v2/tasks?owner=p1&sort_dir=asc").await), [T1, T3]);
    assert_eq!(ids(&app.get_json("/v2/tasks?sort_key=status&sort_dir=asc").await), [T3, T1, T2]);

    let page = app.get_json("/v2/tasks?limit=2").await;
    assert_eq!(ids(&page), [T3, T2]);
    let next = page["next"].as_str().expect("next").to_owned();
    assert_eq!(next, format!("/v2/tasks?limit=2&marker={T2}"));
    let rest = app.get_json(&next).await;
    assert_eq!(ids(&rest), [T1]);
    assert!(rest.get("next").is_none());
}

async fn task_list_rejects_bad_parameters(app: TestApp) {
    for query in [
        "status=done",
        "type=api_image_import",
        "sort_dir=up",
        "sort_key=message",
        "limit=x",
        "limit=-1",
        "marker=not-a-uuid",
        "marker=99999999-0000-4000-8000-000000000009",
    ] {
        expect_error(app.get(&format!("/v2/tasks?{query}")).await, 400).await;
    }
}

async fn task_show_returns_the_full_task(app: TestApp) {
    task(&app, T2, TaskStatus::Success, "p2", "2024-01-02 00:00:00", None).await;
    let shown = app.get_json(&format!("/v2/tasks/{T2}")).await;
    assert_eq!(shown["status"], "success");
    assert_eq!(shown["type"], "import");
    assert_eq!(shown["input"]["import_from_format"], "qcow2");
    assert_eq!(shown["result"]["image_id"], "8b1a0000-0000-4000-8000-000000000001");
    assert_eq!(shown["message"], "");
    assert_eq!(shown["request_id"], "req-6b5d2f8e-1f0c-4a51-9a36-2f8c1c6d0001");
    assert!(shown.get("user_id").is_none() && shown.get("image_id").is_none() && shown.get("expires_at").is_none());
    expect_error(app.get("/v2/tasks/99999999-0000-4000-8000-000000000009").await, 404).await;
}

async fn expired_tasks_disappear(app: TestApp) {
    let mut expired = task(&app, T1, TaskStatus::Success, "p1", "2024-01-01 00:00:00", None).await;
    expired.id = T2.into();
    expired.expires_at = Some(at("2024-01-03 00:00:00"));
    glint_core::task::repo::insert(&app.db, &expired).await.expect("insert");
    let mut live = expired.clone();
    live.id = T3.into();
    live.expires_at = Some(at("2999-01-01 00:00:00"));
    glint_core::task::repo::insert(&app.db, &live).await.expect("insert");
    assert_eq!(ids(&app.get_json("/v2/tasks?sort_dir=asc").await), [T1, T3]);
    expect_error(app.get(&format!("/v2/tasks/{T2}")).await, 404).await;
    assert_eq!(app.get_json(&format!("/v2/tasks/{T3}")).await["expires_at"], "2999-01-01T00:00:00Z");
}

async fn image_tasks_lists_the_images_tasks_as_upstream_does(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let image = owner.create_image(json!({"visibility": "shared"})).await;
    let id = image["id"].as_str().expect("id");
    task(&app, T1, TaskStatus::Processing, "p1", "2024-01-01 00:00:00", Some(id)).await;
    task(&app, T2, TaskStatus::Success, "p2", "2024-01-02 00:00:00", Some(id)).await;
    task(&app, T3, TaskStatus::Pending, "p1", "2024-01-03 00:00:00", None).await;

    let body = owner.get_json(&format!("/v2/images/{id}/tasks")).await;
    assert_eq!(ids(&body), [T1], "another project's task on the image is not shown");
    let entry = body["tasks"][0].as_object().expect("task");
    let mut keys: Vec<&str> = entry.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "created_at",
            "deleted",
            "deleted_at",
            "expires_at",
            "id",
            "image_id",
            "input",
            "message",
            "owner",
            "request_id",
            "result",
            "status",
            "type",
            "updated_at",
            "user_id"
        ]
    );
    assert_eq!(entry["created_at"], "2024-01-01T00:00:00.000000");
    assert_eq!(entry["type"], "api_image_import");
    assert_eq!(ids(&app.as_project("p9", "admin").get_json(&format!("/v2/images/{id}/tasks")).await), [T1, T2]);
    expect_error(app.as_project("p3", "member").get(&format!("/v2/images/{id}/tasks")).await, 404).await;
}

async fn task_delete_is_405(app: TestApp) {
    task(&app, T1, TaskStatus::Pending, "p1", "2024-01-01 00:00:00", None).await;
    let response = app.request(Method::DELETE, &format!("/v2/tasks/{T1}")).send().await.expect("delete");
    assert_eq!(response.headers()["allow"], "GET");
    expect_error(response, 405).await;
}
