//! POST /v2/images/{id}/actions/deactivate and reactivate.

use reqwest::Method;
use serde_json::json;

use crate::support::rows::set_columns;
use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(
    deactivate_and_reactivate_an_active_image,
    deactivate_and_reactivate_are_idempotent,
    actions_on_images_without_data_are_403,
    actions_by_another_project_are_403_or_404,
    actions_with_a_body_are_400,
);

async fn action(app: &TestApp, id: &str, name: &str) -> reqwest::Response {
    app.request(Method::POST, &format!("/v2/images/{id}/actions/{name}")).send().await.unwrap()
}

async fn active_image(app: &TestApp, owner: &TestApp, visibility: &str) -> String {
    let id = owner.create_image(json!({"visibility": visibility})).await["id"].as_str().unwrap().to_owned();
    set_columns(app, &id, "status = 'active'").await;
    id
}

async fn status(app: &TestApp, id: &str) -> String {
    app.get_json(&format!("/v2/images/{id}")).await["status"].as_str().unwrap().to_owned()
}

async fn deactivate_and_reactivate_an_active_image(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let id = active_image(&app, &owner, "shared").await;
    assert_eq!(action(&owner, &id, "deactivate").await.status(), 204);
    assert_eq!(status(&app, &id).await, "deactivated");
    assert_eq!(owner.list_ids("").await, vec![id.clone()], "deactivated images are still listed");
    assert_eq!(action(&owner, &id, "reactivate").await.status(), 204);
    assert_eq!(status(&app, &id).await, "active");
}

async fn deactivate_and_reactivate_are_idempotent(app: TestApp) {
    let id = active_image(&app, &app, "shared").await;
    assert_eq!(action(&app, &id, "reactivate").await.status(), 204);
    assert_eq!(status(&app, &id).await, "active");
    assert_eq!(action(&app, &id, "deactivate").await.status(), 204);
    assert_eq!(action(&app, &id, "deactivate").await.status(), 204);
    assert_eq!(status(&app, &id).await, "deactivated");
}

async fn actions_on_images_without_data_are_403(app: TestApp) {
    let id = app.create_image(json!({})).await["id"].as_str().unwrap().to_owned();
    let message = expect_error(action(&app, &id, "deactivate").await, 403).await;
    assert!(message.contains("Not allowed to deactivate image in status 'queued'"), "{message}");
    expect_error(action(&app, &id, "reactivate").await, 403).await;
    set_columns(&app, &id, "status = 'killed'").await;
    expect_error(action(&app, &id, "deactivate").await, 403).await;
    assert_eq!(status(&app, &id).await, "killed");
}

async fn actions_by_another_project_are_403_or_404(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let community = active_image(&app, &owner, "community").await;
    let private = active_image(&app, &owner, "private").await;
    let other = app.as_project("p2", "member");
    expect_error(action(&other, &community, "deactivate").await, 403).await;
    expect_error(action(&other, &private, "deactivate").await, 404).await;
    expect_error(action(&app.as_project("p1", "reader"), &private, "deactivate").await, 403).await;
    assert_eq!(status(&app, &community).await, "active");
    expect_error(action(&app, "5f3c2f1e-0000-4000-8000-000000000000", "deactivate").await, 404).await;
}

async fn actions_with_a_body_are_400(app: TestApp) {
    let id = active_image(&app, &app, "shared").await;
    let response =
        app.request(Method::POST, &format!("/v2/images/{id}/actions/deactivate")).body("{}").send().await.unwrap();
    expect_error(response, 400).await;
    assert_eq!(status(&app, &id).await, "active");
}
