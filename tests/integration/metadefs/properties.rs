//! /v2/metadefs/namespaces/{ns}/properties[/{prop}].

use serde_json::json;

use super::{create_namespace, json_of, ns_path, populated, put_json};
use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(
    property_create_answers_201_with_what_show_answers,
    property_rendering_stringifies_default_and_truncates_bounds,
    property_list_names_only_properties_created_through_the_api,
    property_update_replaces_the_fragment_and_may_rename_it,
    property_delete_answers_204_then_404,
    property_show_with_resource_type_strips_the_prefix,
    property_duplicates_and_renames_onto_taken_names_are_409,
    property_bodies_breaking_the_schema_are_400,
);

async fn property_create_answers_201_with_what_show_answers(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    let body = json!({"name": "OS::Glance::Image", "title": "T", "type": "string", "description": "d", "enum": ["a", "b"], "readonly": false, "operators": ["<or>"]});
    let created = json_of(app.post_json(&ns_path("ns", "/properties"), &body).await, 201).await;
    let shown = app.get_json(&ns_path("ns", "/properties/OS::Glance::Image")).await;
    assert_eq!(created, shown);
    assert_eq!(shown, body);
}

async fn property_rendering_stringifies_default_and_truncates_bounds(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    let body = json!({"name": "n", "title": "N", "type": "number", "default": true, "minimum": 0.5, "maximum": 9.9,
                      "items": {"type": "string", "enum": ["x"]}, "minLength": 1});
    let created = json_of(app.post_json(&ns_path("ns", "/properties"), &body).await, 201).await;
    assert_eq!(created["default"], "True");
    assert_eq!((&created["minimum"], &created["maximum"]), (&json!(0), &json!(9)));
    assert_eq!(created["items"], json!({"type": "string", "enum": ["x"]}));
    let five = json_of(
        app.post_json(
            &ns_path("ns", "/properties"),
            &json!({"name": "f", "title": "F", "type": "integer", "default": 5}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(five["default"], "5");
}

async fn property_list_names_only_properties_created_through_the_api(app: TestApp) {
    populated(&app, "ns").await;
    app.post_json(&ns_path("ns", "/properties"), &json!({"name": "api", "title": "A", "type": "string"})).await;
    let listed = app.get_json(&ns_path("ns", "/properties")).await;
    assert_eq!(listed["properties"]["api"], json!({"name": "api", "type": "string", "title": "A"}));
    assert_eq!(listed["properties"]["cpu_mode"]["title"], "CPU Mode");
    assert!(listed["properties"]["cpu_mode"].get("name").is_none());
    let keys: Vec<&String> = listed["properties"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["cpu_mode", "api"], "creation order");
    assert_eq!(app.get_json(&ns_path("ns", "/properties/cpu_mode")).await["name"], "cpu_mode", "single ones always do");
}

async fn property_update_replaces_the_fragment_and_may_rename_it(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    app.post_json(
        &ns_path("ns", "/properties"),
        &json!({"name": "p", "title": "P", "type": "string", "description": "gone"}),
    )
    .await;
    let updated = json_of(
        put_json(&app, &ns_path("ns", "/properties/p"), &json!({"name": "q", "title": "Q", "type": "integer"})).await,
        200,
    )
    .await;
    assert_eq!(updated, json!({"name": "q", "type": "integer", "title": "Q"}));
    assert_eq!(app.get_json(&ns_path("ns", "/properties/q")).await, updated);
    expect_error(app.get(&ns_path("ns", "/properties/p")).await, 404).await;
    expect_error(put_json(&app, &ns_path("ns", "/properties/q"), &json!({"title": "Q", "type": "integer"})).await, 400)
        .await;
}

async fn property_delete_answers_204_then_404(app: TestApp) {
    populated(&app, "ns").await;
    assert_eq!(app.delete(&ns_path("ns", "/properties/cpu_mode")).await.status(), 204);
    expect_error(app.get(&ns_path("ns", "/properties/cpu_mode")).await, 404).await;
    assert_eq!(app.get_json(&ns_path("ns", "/properties")).await, json!({"properties": {}}));
}

async fn property_show_with_resource_type_strips_the_prefix(app: TestApp) {
    populated(&app, "ns").await;
    let shown = app.get_json(&ns_path("ns", "/properties/hw_cpu_mode?resource_type=OS::Glance::Image")).await;
    assert_eq!(shown["name"], "cpu_mode");
    let message =
        expect_error(app.get(&ns_path("ns", "/properties/cpu_mode?resource_type=OS::Glance::Image")).await, 404).await;
    assert!(
        message.contains("does not start with the expected resource type association prefix of 'hw_'"),
        "{message}"
    );
    expect_error(app.get(&ns_path("ns", "/properties/hw_cpu_mode?resource_type=OS::Nova::Flavor")).await, 404).await;
}

async fn property_duplicates_and_renames_onto_taken_names_are_409(app: TestApp) {
    populated(&app, "ns").await;
    let body = json!({"name": "cpu_mode", "title": "again", "type": "string"});
    expect_error(app.post_json(&ns_path("ns", "/properties"), &body).await, 409).await;
    app.post_json(&ns_path("ns", "/properties"), &json!({"name": "other", "title": "O", "type": "string"})).await;
    expect_error(put_json(&app, &ns_path("ns", "/properties/other"), &body).await, 409).await;
}

async fn property_bodies_breaking_the_schema_are_400(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    for body in [
        json!({"title": "T", "type": "string"}),
        json!({"name": "p", "type": "string"}),
        json!({"name": "p", "title": "T"}),
        json!({"name": "p", "title": "T", "type": null}),
        json!({"name": "p", "title": "T", "type": "date"}),
        json!({"name": "p", "title": "T", "type": "string", "confidential": true}),
        json!({"name": "p", "title": "T", "type": "string", "enum": [1, 2]}),
        json!({"name": "p", "title": "T", "type": "string", "minLength": -1}),
        json!({"name": "p".repeat(81), "title": "T", "type": "string"}),
    ] {
        expect_error(app.post_json(&ns_path("ns", "/properties"), &body).await, 400).await;
    }
    let read_only = json!({"name": "p", "title": "T", "type": "string", "created_at": "x"});
    expect_error(app.post_json(&ns_path("ns", "/properties"), &read_only).await, 403).await;
}
