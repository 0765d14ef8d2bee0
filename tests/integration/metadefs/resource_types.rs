//! /v2/metadefs/resource_types and /v2/metadefs/namespaces/{ns}/resource_types[/{rt}].

use serde_json::{Value, json};

use super::{create_namespace, json_of, ns_path};
use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(
    association_create_answers_201_and_creates_the_resource_type,
    association_list_always_has_its_key,
    dissociation_keeps_the_resource_type,
    association_duplicates_are_409_and_unknown_ones_404,
    association_bodies_breaking_the_schema_are_400,
);

fn type_names(body: &Value) -> Vec<String> {
    body["resource_types"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

async fn association_create_answers_201_and_creates_the_resource_type(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    assert!(type_names(&app.get_json("/v2/metadefs/resource_types").await).is_empty());
    let body = json!({"name": "rs_type_of_ns", "prefix": "hw:", "properties_target": "image"});
    let created = json_of(app.post_json(&ns_path("ns", "/resource_types"), &body).await, 201).await;
    assert_eq!(
        (&created["name"], &created["prefix"], &created["properties_target"]),
        (&body["name"], &body["prefix"], &body["properties_target"])
    );
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());
    let types = app.get_json("/v2/metadefs/resource_types").await;
    assert_eq!(type_names(&types), ["rs_type_of_ns"]);
    assert!(types["resource_types"][0]["created_at"].is_string());
    create_namespace(&app, json!({"namespace": "ns2"})).await;
    json_of(app.post_json(&ns_path("ns2", "/resource_types"), &json!({"name": "rs_type_of_ns"})).await, 201).await;
    assert_eq!(
        type_names(&app.get_json("/v2/metadefs/resource_types").await),
        ["rs_type_of_ns"],
        "reused, not duplicated"
    );
}

async fn association_list_always_has_its_key(app: TestApp) {
    create_namespace(
        &app,
        json!({"namespace": "ns", "resource_type_associations": [{"name": "OS::Nova::Flavor", "prefix": "hw:"}]}),
    )
    .await;
    let listed = app.get_json(&ns_path("ns", "/resource_types")).await;
    assert_eq!(listed["resource_type_associations"][0]["prefix"], "hw:");
    assert_eq!(app.delete(&ns_path("ns", "/resource_types/OS::Nova::Flavor")).await.status(), 204);
    assert_eq!(app.get_json(&ns_path("ns", "/resource_types")).await, json!({"resource_type_associations": []}));
}

async fn dissociation_keeps_the_resource_type(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns", "resource_type_associations": [{"name": "OS::Cinder::Volume"}]}))
        .await;
    assert_eq!(app.delete(&ns_path("ns", "/resource_types/OS::Cinder::Volume")).await.status(), 204);
    assert_eq!(app.delete(&ns_path("ns", "")).await.status(), 204);
    assert_eq!(type_names(&app.get_json("/v2/metadefs/resource_types").await), ["OS::Cinder::Volume"]);
}

async fn association_duplicates_are_409_and_unknown_ones_404(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns", "resource_type_associations": [{"name": "OS::Glance::Image"}]}))
        .await;
    expect_error(app.post_json(&ns_path("ns", "/resource_types"), &json!({"name": "OS::Glance::Image"})).await, 409)
        .await;
    let message = expect_error(app.delete(&ns_path("ns", "/resource_types/OS::Nova::Server")).await, 404).await;
    assert!(message.contains("Failed to find resource type OS::Nova::Server to delete"), "{message}");
    create_namespace(&app, json!({"namespace": "other", "resource_type_associations": [{"name": "OS::Nova::Server"}]}))
        .await;
    expect_error(app.delete(&ns_path("ns", "/resource_types/OS::Nova::Server")).await, 404).await;
}

async fn association_bodies_breaking_the_schema_are_400(app: TestApp) {
    create_namespace(&app, json!({"namespace": "ns"})).await;
    for body in [
        json!({"prefix": "hw_"}),
        json!({"name": "t", "extra": 1}),
        json!({"name": "x".repeat(81)}),
        json!({"name": 5}),
    ] {
        expect_error(app.post_json(&ns_path("ns", "/resource_types"), &body).await, 400).await;
    }
    expect_error(app.post_json(&ns_path("ns", "/resource_types"), &json!({"name": "t", "updated_at": "x"})).await, 403)
        .await;
}
