//! /v2/metadefs/namespaces/{ns}/tags[/{tag}].

use reqwest::Method;
use serde_json::{Value, json};

use super::{create_namespace, json_of, ns_path, post_empty, put_json};
use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(
    tag_create_show_rename_delete,
    tag_create_with_a_body_or_a_long_name_is_400,
    tag_duplicates_are_409,
    tags_bulk_create_replaces_all_tags,
    tags_bulk_create_appends_with_the_append_header,
    tags_bulk_create_with_a_duplicate_changes_nothing,
    tags_bulk_create_with_an_empty_list_changes_nothing,
    tags_bulk_bodies_breaking_the_schema_are_400,
    tags_list_sorts_and_pages_by_name_markers,
    metadef_names_are_case_sensitive_on_every_database,
);

fn names(body: &Value) -> Vec<String> {
    body["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

async fn sorted_names(app: &TestApp, ns: &str) -> Vec<String> {
    let mut names = names(&app.get_json(&ns_path(ns, "/tags")).await);
    names.sort();
    names
}

async fn tag_create_show_rename_delete(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    let created = json_of(post_empty(&app, &ns_path("ns", "/tags/sample tag")).await, 201).await;
    assert_eq!(created["name"], "sample tag");
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());
    assert_eq!(app.get_json(&ns_path("ns", "/tags/sample tag")).await, created);
    let renamed =
        json_of(put_json(&app, &ns_path("ns", "/tags/sample tag"), &json!({"name": "renamed"})).await, 200).await;
    assert_eq!(renamed["name"], "renamed");
    expect_error(app.get(&ns_path("ns", "/tags/sample tag")).await, 404).await;
    assert_eq!(app.delete(&ns_path("ns", "/tags/renamed")).await.status(), 204);
    expect_error(app.get(&ns_path("ns", "/tags/renamed")).await, 404).await;
    expect_error(put_json(&app, &ns_path("ns", "/tags/renamed"), &json!({"name": "x"})).await, 404).await;
}

async fn tag_create_with_a_body_or_a_long_name_is_400(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    let with_body =
        app.request(Method::POST, &ns_path("ns", "/tags/t")).json(&json!({"name": "t"})).send().await.unwrap();
    expect_error(with_body, 400).await;
    expect_error(post_empty(&app, &ns_path("ns", &format!("/tags/{}", "t".repeat(81)))).await, 400).await;
    post_empty(&app, &ns_path("ns", "/tags/t")).await;
    expect_error(put_json(&app, &ns_path("ns", "/tags/t"), &json!({})).await, 400).await;
    expect_error(put_json(&app, &ns_path("ns", "/tags/t"), &json!({"name": "u", "created_at": "x"})).await, 403).await;
}

async fn tag_duplicates_are_409(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns", "tags": [{"name": "a"}, {"name": "b"}]})).await;
    let message = expect_error(post_empty(&app, &ns_path("ns", "/tags/a")).await, 409).await;
    assert!(message.contains("A metadata tag with name=a already exists in namespace=ns."), "{message}");
    expect_error(put_json(&app, &ns_path("ns", "/tags/b"), &json!({"name": "a"})).await, 409).await;
}

async fn tags_bulk_create_replaces_all_tags(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns", "tags": [{"name": "old"}]})).await;
    let body = json!({"tags": [{"name": "x"}, {"name": "y"}, {"name": "z"}]});
    let created = json_of(app.post_json(&ns_path("ns", "/tags"), &body).await, 201).await;
    assert_eq!(created, body);
    assert_eq!(sorted_names(&app, "ns").await, ["x", "y", "z"]);
    let not_append = app
        .request(Method::POST, &ns_path("ns", "/tags"))
        .header("X-OpenStack-Append", "False")
        .json(&json!({"tags": [{"name": "w"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_append.status(), 201);
    assert_eq!(sorted_names(&app, "ns").await, ["w"]);
}

async fn tags_bulk_create_appends_with_the_append_header(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns", "tags": [{"name": "old"}]})).await;
    for (value, tag) in [("True", "a"), ("1", "b"), ("yes", "c")] {
        let response = app
            .request(Method::POST, &ns_path("ns", "/tags"))
            .header("X-Openstack-Append", value)
            .json(&json!({"tags": [{"name": tag}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    assert_eq!(sorted_names(&app, "ns").await, ["a", "b", "c", "old"]);
}

async fn tags_bulk_create_with_a_duplicate_changes_nothing(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns", "tags": [{"name": "keep"}]})).await;
    expect_error(app.post_json(&ns_path("ns", "/tags"), &json!({"tags": [{"name": "a"}, {"name": "a"}]})).await, 409)
        .await;
    let append = app
        .request(Method::POST, &ns_path("ns", "/tags"))
        .header("X-Openstack-Append", "true")
        .json(&json!({"tags": [{"name": "new"}, {"name": "keep"}]}))
        .send()
        .await
        .unwrap();
    expect_error(append, 409).await;
    assert_eq!(sorted_names(&app, "ns").await, ["keep"]);
}

async fn tags_bulk_create_with_an_empty_list_changes_nothing(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns", "tags": [{"name": "keep"}]})).await;
    let created = json_of(app.post_json(&ns_path("ns", "/tags"), &json!({"tags": []})).await, 201).await;
    assert_eq!(created, json!({"tags": []}));
    assert_eq!(sorted_names(&app, "ns").await, ["keep"]);
}

async fn tags_bulk_bodies_breaking_the_schema_are_400(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    for body in [
        json!({}),
        json!({"tags": [{"name": "a", "x": 1}]}),
        json!({"tags": [{}]}),
        json!({"tags": "a"}),
        json!({"tags": [], "more": 1}),
    ] {
        expect_error(app.post_json(&ns_path("ns", "/tags"), &body).await, 400).await;
    }
    expect_error(app.post_json(&ns_path("ns", "/tags"), &json!({"tags": [], "created_at": "x"})).await, 403).await;
}

async fn tags_list_sorts_and_pages_by_name_markers(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns", "tags": [{"name": "b"}, {"name": "c"}, {"name": "a"}]})).await;
    let page = app.get_json(&ns_path("ns", "/tags?sort_key=name&sort_dir=asc&limit=2")).await;
    assert_eq!(names(&page), ["a", "b"]);
    let rest = app.get_json(&ns_path("ns", "/tags?sort_key=name&sort_dir=asc&marker=b")).await;
    assert_eq!(names(&rest), ["c"]);
    let desc = app.get_json(&ns_path("ns", "/tags?sort_key=name")).await;
    assert_eq!(names(&desc), ["c", "b", "a"]);
    expect_error(app.get(&ns_path("ns", "/tags?marker=zz")).await, 404).await;
    expect_error(app.get(&ns_path("ns", "/tags?sort_key=bogus")).await, 400).await;
    expect_error(app.get(&ns_path("ns", "/tags?limit=-1")).await, 400).await;
    expect_error(app.get(&ns_path("ns", "/tags?visibility=everyone")).await, 400).await;
}

async fn metadef_names_are_case_sensitive_on_every_database(app: TestApp) {
    create_namespace(&app, json!({"namespace": "Case"})).await;
    create_namespace(&app, json!({"namespace": "case", "tags": [{"name": "Tag"}, {"name": "tag"}]})).await;
    expect_error(app.get(&ns_path("CASE", "")).await, 404).await;
    assert_eq!(sorted_names(&app, "case").await, ["Tag", "tag"]);
    expect_error(app.get(&ns_path("case", "/tags/TAG")).await, 404).await;
    let object = app.post_json(&ns_path("case", "/objects"), &json!({"name": "Obj"})).await;
    assert_eq!(object.status(), 201);
    assert_eq!(app.post_json(&ns_path("case", "/objects"), &json!({"name": "obj"})).await.status(), 201);
    let property = json!({"name": "P", "title": "P", "type": "string"});
    assert_eq!(app.post_json(&ns_path("case", "/properties"), &property).await.status(), 201);
    let lower = json!({"name": "p", "title": "p", "type": "string"});
    assert_eq!(app.post_json(&ns_path("case", "/properties"), &lower).await.status(), 201);
    json_of(app.post_json(&ns_path("case", "/resource_types"), &json!({"name": "OS::Type"})).await, 201).await;
    json_of(app.post_json(&ns_path("case", "/resource_types"), &json!({"name": "os::type"})).await, 201).await;
}
