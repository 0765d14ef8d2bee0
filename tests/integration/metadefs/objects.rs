//! /v2/metadefs/namespaces/{ns}/objects[/{obj}].

use serde_json::json;

use super::{create_namespace, json_of, ns_path, put_json};
use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(
    object_create_answers_201_with_what_was_asked,
    object_show_and_list_fill_in_required_and_properties,
    object_update_replaces_the_object_and_may_rename_it,
    object_delete_answers_204_then_404,
    object_duplicates_and_renames_onto_taken_names_are_409,
    object_bodies_breaking_the_schema_are_400_and_read_only_keys_403,
);

async fn object_create_answers_201_with_what_was_asked(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    let minimal = json_of(app.post_json(&ns_path("ns", "/objects"), &json!({"name": "CPU Limits"})).await, 201).await;
    let mut keys: Vec<&str> = minimal.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "name", "schema", "self", "updated_at"]);
    assert_eq!(minimal["self"], "/v2/metadefs/namespaces/ns/objects/CPU Limits");
    let full = json_of(
        app.post_json(
            &ns_path("ns", "/objects"),
            &json!({"name": "o2", "description": "d", "required": ["a"], "properties": {"a": {"type": "number", "title": "A", "maximum": 2.5}}}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(full["required"], json!(["a"]));
    assert_eq!(full["properties"], json!({"a": {"type": "number", "title": "A", "maximum": 2}}));
}

async fn object_show_and_list_fill_in_required_and_properties(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    app.post_json(&ns_path("ns", "/objects"), &json!({"name": "first"})).await;
    app.post_json(&ns_path("ns", "/objects"), &json!({"name": "second", "description": "two"})).await;
    let shown = app.get_json(&ns_path("ns", "/objects/first")).await;
    assert_eq!((&shown["required"], &shown["properties"]), (&json!([]), &json!({})));
    let listed = app.get_json(&ns_path("ns", "/objects?limit=1&sort_dir=asc")).await;
    assert_eq!(listed["schema"], "v2/schemas/metadefs/objects");
    let names: Vec<&str> = listed["objects"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["first", "second"], "paging parameters are validated, then ignored");
    expect_error(app.get(&ns_path("ns", "/objects?limit=0")).await, 400).await;
    expect_error(app.get(&ns_path("ns", "/objects/nope")).await, 404).await;
}

async fn object_update_replaces_the_object_and_may_rename_it(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    app.post_json(&ns_path("ns", "/objects"), &json!({"name": "o", "description": "d", "required": ["x"]})).await;
    let updated = json_of(
        put_json(&app, &ns_path("ns", "/objects/o"), &json!({"name": "renamed", "description": "new"})).await,
        200,
    )
    .await;
    assert_eq!(updated["description"], "new");
    let shown = app.get_json(&ns_path("ns", "/objects/renamed")).await;
    assert_eq!(shown["required"], json!([]), "absent fields are cleared");
    expect_error(app.get(&ns_path("ns", "/objects/o")).await, 404).await;
    expect_error(put_json(&app, &ns_path("ns", "/objects/nope"), &json!({"name": "x"})).await, 404).await;
}

async fn object_delete_answers_204_then_404(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns", "objects": [{"name": "o"}]})).await;
    assert_eq!(app.delete(&ns_path("ns", "/objects/o")).await.status(), 204);
    expect_error(app.get(&ns_path("ns", "/objects/o")).await, 404).await;
    expect_error(app.delete(&ns_path("ns", "/objects/o")).await, 404).await;
}

async fn object_duplicates_and_renames_onto_taken_names_are_409(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns", "objects": [{"name": "a"}, {"name": "b"}]})).await;
    let message = expect_error(app.post_json(&ns_path("ns", "/objects"), &json!({"name": "a"})).await, 409).await;
    assert!(message.contains("A metadata definition object with name=a already exists in namespace=ns."), "{message}");
    expect_error(put_json(&app, &ns_path("ns", "/objects/b"), &json!({"name": "a"})).await, 409).await;
    create_namespace(&app, json!({"namespace": "other", "objects": [{"name": "a"}]})).await;
}

async fn object_bodies_breaking_the_schema_are_400_and_read_only_keys_403(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    for body in [
        json!({"description": "no name"}),
        json!({"name": "o", "required": "a"}),
        json!({"name": "o", "required": ["a", "a"]}),
        json!({"name": "o", "properties": {"p": {"title": "P", "type": "string", "unknown": 1}}}),
        json!({"name": "o", "properties": {"p": {"title": "P", "type": "date"}}}),
        json!({"name": "o", "extra": true}),
    ] {
        expect_error(app.post_json(&ns_path("ns", "/objects"), &body).await, 400).await;
    }
    expect_error(app.post_json(&ns_path("ns", "/objects"), &json!({"name": "o", "self": "x"})).await, 403).await;
}
