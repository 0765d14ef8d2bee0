//! GET /v2/images/{id}.

use serde_json::json;

use crate::support::rows::{add_member, set_columns};
use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(
    show_returns_the_image,
    show_of_unknown_or_malformed_id_is_404,
    show_of_another_projects_private_image_is_404,
    show_of_shared_image_works_for_members_in_any_status,
    show_of_killed_image_works,
    show_with_a_body_is_400,
);

async fn show_returns_the_image(app: TestApp) {
    let created = app.create_image(json!({"name": "cirros", "os_distro": "cirros"})).await;
    let shown = app.get_json(&format!("/v2/images/{}", created["id"].as_str().unwrap())).await;
    assert_eq!(shown, created);
}

async fn show_of_unknown_or_malformed_id_is_404(app: TestApp) {
    let message = expect_error(app.get("/v2/images/5f3c2f1e-0000-4000-8000-000000000000").await, 404).await;
    assert!(message.contains("No image found with ID 5f3c2f1e-0000-4000-8000-000000000000"), "{message}");
    expect_error(app.get("/v2/images/not-a-uuid").await, 404).await;
}

async fn show_of_another_projects_private_image_is_404(app: TestApp) {
    let owner = app.as_project("p1", "member");
    for visibility in ["private", "shared"] {
        let image = owner.create_image(json!({"visibility": visibility})).await;
        let path = format!("/v2/images/{}", image["id"].as_str().unwrap());
        expect_error(app.as_project("p2", "member").get(&path).await, 404).await;
        owner.get_json(&path).await;
        app.as_project("p2", "admin").get_json(&path).await;
    }
    let community = owner.create_image(json!({"visibility": "community"})).await;
    app.as_project("p2", "reader").get_json(&format!("/v2/images/{}", community["id"].as_str().unwrap())).await;
}

async fn show_of_shared_image_works_for_members_in_any_status(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let image = owner.create_image(json!({"visibility": "shared"})).await;
    let id = image["id"].as_str().unwrap();
    for (member, status) in [("p2", "pending"), ("p3", "rejected"), ("p4", "accepted")] {
        add_member(&app, id, member, status).await;
        app.as_project(member, "reader").get_json(&format!("/v2/images/{id}")).await;
    }
}

async fn show_of_killed_image_works(app: TestApp) {
    let image = app.create_image(json!({"name": "old"})).await;
    let id = image["id"].as_str().unwrap();
    set_columns(&app, id, "status = 'killed'").await;
    assert_eq!(app.get_json(&format!("/v2/images/{id}")).await["status"], "killed");
}

async fn show_with_a_body_is_400(app: TestApp) {
    let image = app.create_image(json!({})).await;
    let response = app
        .request(reqwest::Method::GET, &format!("/v2/images/{}", image["id"].as_str().unwrap()))
        .body("{}")
        .send()
        .await
        .unwrap();
    let message = expect_error(response, 400).await;
    assert!(message.contains("A body is not expected with this request."), "{message}");
}
