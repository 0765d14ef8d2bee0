//! DELETE /v2/images/{id}.

use serde_json::json;

use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(
    delete_is_204_and_the_image_is_gone,
    delete_of_protected_image_is_403,
    delete_of_visible_image_of_another_project_is_403,
    delete_of_invisible_image_is_404,
    delete_by_reader_of_owner_project_is_403,
);

async fn delete_is_204_and_the_image_is_gone(app: TestApp) {
    let image = app.create_image(json!({"name": "doomed", "tags": ["x"], "os_distro": "cirros"})).await;
    let path = format!("/v2/images/{}", image["id"].as_str().unwrap());
    let response = app.delete(&path).await;
    assert_eq!(response.status(), 204);
    assert!(response.text().await.unwrap().is_empty());
    expect_error(app.get(&path).await, 404).await;
    expect_error(app.delete(&path).await, 404).await;
    assert!(app.list_ids("?visibility=all").await.is_empty());
}

async fn delete_of_protected_image_is_403(app: TestApp) {
    let image = app.create_image(json!({"protected": true})).await;
    let id = image["id"].as_str().unwrap();
    let message = expect_error(app.delete(&format!("/v2/images/{id}")).await, 403).await;
    assert!(message.contains(&format!("Image {id} is protected and cannot be deleted.")), "{message}");
    app.get_json(&format!("/v2/images/{id}")).await;
    let unprotect = app.patch(id, &json!([{"op": "replace", "path": "/protected", "value": false}])).await;
    assert_eq!(unprotect.status(), 200);
    assert_eq!(app.delete(&format!("/v2/images/{id}")).await.status(), 204);
}

async fn delete_of_visible_image_of_another_project_is_403(app: TestApp) {
    let image = app.as_project("p1", "member").create_image(json!({"visibility": "community"})).await;
    let path = format!("/v2/images/{}", image["id"].as_str().unwrap());
    expect_error(app.as_project("p2", "member").delete(&path).await, 403).await;
    app.get_json(&path).await;
}

async fn delete_of_invisible_image_is_404(app: TestApp) {
    let image = app.as_project("p1", "member").create_image(json!({"visibility": "private"})).await;
    let path = format!("/v2/images/{}", image["id"].as_str().unwrap());
    expect_error(app.as_project("p2", "member").delete(&path).await, 404).await;
    app.get_json(&path).await;
}

async fn delete_by_reader_of_owner_project_is_403(app: TestApp) {
    let image = app.as_project("p1", "member").create_image(json!({})).await;
    let path = format!("/v2/images/{}", image["id"].as_str().unwrap());
    expect_error(app.as_project("p1", "reader").delete(&path).await, 403).await;
    app.get_json(&path).await;
}
