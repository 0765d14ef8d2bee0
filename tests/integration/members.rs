//! /v2/images/{id}/members: offering a shared image to projects, and their answers.

use glint_core::config::Config;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(
    owner_adds_a_member_as_pending_with_200,
    member_list_is_complete_for_the_owner_and_own_entry_for_a_member,
    members_of_an_image_that_is_not_shared_are_403,
    adding_needs_an_owner_member_and_a_valid_body,
    adding_the_same_member_twice_is_409,
    member_accepts_and_rejects_but_the_owner_may_not,
    show_member_is_404_for_every_refusal,
    removed_member_loses_access_and_can_be_added_again,
    accepted_images_are_listed_for_the_member_pending_only_on_request,
    member_schemas_are_served,
);

on_every_database!(config = one_member; adding_beyond_the_member_quota_is_413);

fn one_member(config: &mut Config) {
    config.images.image_member_quota = 1;
}

async fn shared_image(app: &TestApp) -> String {
    let owner = app.as_project("p1", "member");
    let image = owner.create_image(json!({"name": "shared", "visibility": "shared"})).await;
    image["id"].as_str().expect("id").to_owned()
}

async fn add(app: &TestApp, id: &str, member: &str) -> reqwest::Response {
    app.post_json(&format!("/v2/images/{id}/members"), &json!({"member": member})).await
}

async fn answer(app: &TestApp, id: &str, member: &str, status: &str) -> reqwest::Response {
    app.request(Method::PUT, &format!("/v2/images/{id}/members/{member}"))
        .json(&json!({"status": status}))
        .send()
        .await
        .expect("put member")
}

fn member_ids(list: &Value) -> Vec<String> {
    list["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["member_id"].as_str().expect("id").to_owned())
        .collect()
}

async fn owner_adds_a_member_as_pending_with_200(app: TestApp) {
    let id = shared_image(&app).await;
    let response = add(&app.as_project("p1", "member"), &id, "p2").await;
    assert_eq!(response.status(), 200);
    let member: Value = response.json().await.expect("member");
    assert_eq!((member["image_id"].as_str(), member["member_id"].as_str()), (Some(id.as_str()), Some("p2")));
    assert_eq!((member["status"].as_str(), member["schema"].as_str()), (Some("pending"), Some("/v2/schemas/member")));
    assert!(member["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{member}");
    assert_eq!(
        app.as_project("p2", "reader").get_json(&format!("/v2/images/{id}")).await["id"],
        json!(id),
        "a pending member may use the image by id"
    );
}

async fn member_list_is_complete_for_the_owner_and_own_entry_for_a_member(app: TestApp) {
    let id = shared_image(&app).await;
    let owner = app.as_project("p1", "member");
    for member in ["p2", "p3"] {
        assert_eq!(add(&owner, &id, member).await.status(), 200);
    }
    let path = format!("/v2/images/{id}/members");
    let list = app.as_project("p1", "reader").get_json(&path).await;
    assert_eq!(member_ids(&list), ["p2", "p3"]);
    assert_eq!(list["schema"], "/v2/schemas/members");
    assert_eq!(member_ids(&app.get_json(&path).await), ["p2", "p3"], "admins see every member");
    assert_eq!(member_ids(&app.as_project("p2", "reader").get_json(&path).await), ["p2"]);
    expect_error(app.as_project("p4", "member").get(&path).await, 404).await;
}

async fn members_of_an_image_that_is_not_shared_are_403(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let image = owner.create_image(json!({"visibility": "private"})).await;
    let id = image["id"].as_str().expect("id");
    let message = expect_error(add(&owner, id, "p2").await, 403).await;
    assert!(message.contains("Only shared images have members."), "{message}");
    expect_error(owner.get(&format!("/v2/images/{id}/members")).await, 403).await;
    expect_error(owner.get(&format!("/v2/images/{id}/members/p2")).await, 404).await;
}

async fn adding_needs_an_owner_member_and_a_valid_body(app: TestApp) {
    let id = shared_image(&app).await;
    let path = format!("/v2/images/{id}/members");
    let owner = app.as_project("p1", "member");
    for (body, text) in
        [(json!({}), "Member to be added not specified"), (json!({"member": ""}), "Member can't be empty")]
    {
        let message = expect_error(owner.post_json(&path, &body).await, 400).await;
        assert!(message.contains(text), "{message}");
    }
    expect_error(add(&app.as_project("p1", "reader"), &id, "p2").await, 403).await;
    expect_error(add(&app.as_project("p2", "member"), &id, "p2").await, 404).await;
    assert!(member_ids(&app.get_json(&path).await).is_empty());
}

async fn adding_the_same_member_twice_is_409(app: TestApp) {
    let id = shared_image(&app).await;
    assert_eq!(add(&app, &id, "p2").await.status(), 200);
    expect_error(add(&app, &id, "p2").await, 409).await;
}

async fn adding_beyond_the_member_quota_is_413(app: TestApp) {
    let id = shared_image(&app).await;
    assert_eq!(add(&app, &id, "p2").await.status(), 200);
    expect_error(add(&app, &id, "p3").await, 413).await;
}

async fn member_accepts_and_rejects_but_the_owner_may_not(app: TestApp) {
    let id = shared_image(&app).await;
    assert_eq!(add(&app, &id, "p2").await.status(), 200);
    let member = app.as_project("p2", "member");
    let accepted: Value = answer(&member, &id, "p2", "accepted").await.json().await.expect("member");
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(answer(&member, &id, "p2", "rejected").await.status(), 200);
    expect_error(answer(&app.as_project("p1", "member"), &id, "p2", "accepted").await, 403).await;
    expect_error(answer(&app.as_project("p2", "reader"), &id, "p2", "accepted").await, 403).await;
    let message = expect_error(answer(&member, &id, "p2", "maybe").await, 400).await;
    assert!(message.contains("Provided image member status 'maybe' is not supported"), "{message}");
    assert_eq!(answer(&app, &id, "p2", "pending").await.status(), 200, "admins may answer");
    expect_error(answer(&app, &id, "p9", "accepted").await, 404).await;
}

async fn show_member_is_404_for_every_refusal(app: TestApp) {
    let id = shared_image(&app).await;
    for member in ["p2", "p3"] {
        assert_eq!(add(&app, &id, member).await.status(), 200);
    }
    let path = |m: &str| format!("/v2/images/{id}/members/{m}");
    assert_eq!(app.as_project("p1", "reader").get_json(&path("p2")).await["status"], "pending");
    assert_eq!(app.as_project("p2", "reader").get_json(&path("p2")).await["member_id"], "p2");
    expect_error(app.as_project("p2", "reader").get(&path("p3")).await, 404).await;
    expect_error(app.as_project("p4", "member").get(&path("p2")).await, 404).await;
    expect_error(app.get(&path("p9")).await, 404).await;
}

async fn removed_member_loses_access_and_can_be_added_again(app: TestApp) {
    let id = shared_image(&app).await;
    assert_eq!(add(&app, &id, "p2").await.status(), 200);
    assert_eq!(answer(&app.as_project("p2", "member"), &id, "p2", "accepted").await.status(), 200);
    expect_error(app.as_project("p1", "reader").delete(&format!("/v2/images/{id}/members/p2")).await, 403).await;
    assert_eq!(app.as_project("p1", "member").delete(&format!("/v2/images/{id}/members/p2")).await.status(), 204);
    expect_error(app.as_project("p2", "member").get(&format!("/v2/images/{id}")).await, 404).await;
    expect_error(app.delete(&format!("/v2/images/{id}/members/p2")).await, 404).await;
    let again: Value = add(&app, &id, "p2").await.json().await.expect("member");
    assert_eq!(again["status"], "pending", "a re-added member answers anew");
}

async fn accepted_images_are_listed_for_the_member_pending_only_on_request(app: TestApp) {
    let id = shared_image(&app).await;
    assert_eq!(add(&app, &id, "p2").await.status(), 200);
    let member = app.as_project("p2", "member");
    assert!(member.list_ids("").await.is_empty(), "pending images are not listed by default");
    assert_eq!(member.list_ids("?member_status=pending").await, std::slice::from_ref(&id));
    assert_eq!(answer(&member, &id, "p2", "accepted").await.status(), 200);
    assert_eq!(member.list_ids("").await, std::slice::from_ref(&id));
    assert_eq!(answer(&member, &id, "p2", "rejected").await.status(), 200);
    assert!(member.list_ids("").await.is_empty());
    assert_eq!(member.list_ids("?member_status=rejected").await, [id]);
}

async fn member_schemas_are_served(app: TestApp) {
    let member = app.get_json("/v2/schemas/member").await;
    assert_eq!(member["name"], "member");
    assert_eq!(member["properties"]["status"]["enum"], json!(["pending", "accepted", "rejected"]));
    let members = app.get_json("/v2/schemas/members").await;
    assert_eq!(members["properties"]["members"]["items"], member);
}
