//! PUT|DELETE /v2/images/{id}/tags/{tag}.

use reqwest::Method;
use serde_json::json;

use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(
    tag_put_adds_and_is_idempotent,
    tag_delete_removes_and_missing_tag_is_404,
    tag_longer_than_255_is_400,
    tag_over_quota_is_413,
    tag_on_image_of_another_project_is_403_or_404,
    tag_with_a_body_is_400,
);

async fn tags_of(app: &TestApp, id: &str) -> Vec<String> {
    let mut tags: Vec<String> =
        serde_json::from_value(app.get_json(&format!("/v2/images/{id}")).await["tags"].clone()).unwrap();
    tags.sort();
    tags
}

async fn put(app: &TestApp, id: &str, tag: &str) -> reqwest::Response {
    app.request(Method::PUT, &format!("/v2/images/{id}/tags/{tag}")).send().await.unwrap()
}

async fn tag_put_adds_and_is_idempotent(app: TestApp) {
    let id = app.create_image(json!({"tags": ["a"]})).await["id"].as_str().unwrap().to_owned();
    let response = put(&app, &id, "b").await;
    assert_eq!(response.status(), 204);
    assert_eq!(put(&app, &id, "b").await.status(), 204);
    assert_eq!(put(&app, &id, "with%20space").await.status(), 204);
    assert_eq!(tags_of(&app, &id).await, ["a", "b", "with space"]);
}

async fn tag_delete_removes_and_missing_tag_is_404(app: TestApp) {
    let id = app.create_image(json!({"tags": ["a", "b"]})).await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.delete(&format!("/v2/images/{id}/tags/a")).await.status(), 204);
    assert_eq!(tags_of(&app, &id).await, ["b"]);
    expect_error(app.delete(&format!("/v2/images/{id}/tags/a")).await, 404).await;
    expect_error(app.delete("/v2/images/5f3c2f1e-0000-4000-8000-000000000000/tags/b").await, 404).await;
}

async fn tag_longer_than_255_is_400(app: TestApp) {
    let id = app.create_image(json!({})).await["id"].as_str().unwrap().to_owned();
    expect_error(put(&app, &id, &"t".repeat(256)).await, 400).await;
    assert!(tags_of(&app, &id).await.is_empty());
}

async fn tag_over_quota_is_413(app: TestApp) {
    let tags: Vec<String> = (0..128).map(|i| format!("t{i}")).collect();
    let id = app.create_image(json!({ "tags": tags })).await["id"].as_str().unwrap().to_owned();
    expect_error(put(&app, &id, "one-more").await, 413).await;
    assert_eq!(put(&app, &id, "t5").await.status(), 204, "an existing tag is a no-op, not a new one");
    assert_eq!(tags_of(&app, &id).await.len(), 128);
}

async fn tag_on_image_of_another_project_is_403_or_404(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let public = owner.create_image(json!({"visibility": "community"})).await["id"].as_str().unwrap().to_owned();
    let private = owner.create_image(json!({"visibility": "private"})).await["id"].as_str().unwrap().to_owned();
    let other = app.as_project("p2", "member");
    expect_error(put(&other, &public, "x").await, 403).await;
    expect_error(put(&other, &private, "x").await, 404).await;
    expect_error(other.delete(&format!("/v2/images/{private}/tags/x")).await, 404).await;
}

async fn tag_with_a_body_is_400(app: TestApp) {
    let id = app.create_image(json!({})).await["id"].as_str().unwrap().to_owned();
    let response = app.request(Method::PUT, &format!("/v2/images/{id}/tags/x")).body("x").send().await.unwrap();
    expect_error(response, 400).await;
}
