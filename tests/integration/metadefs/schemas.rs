//! /v2/schemas/metadefs/*: the documents glanceclient builds its models from.

use serde_json::json;

use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(metadef_schemas_are_served_to_any_caller_with_their_names, unknown_metadef_schema_is_404);

async fn metadef_schemas_are_served_to_any_caller_with_their_names(app: TestApp) {
    let reader = app.as_project("p1", "reader");
    for (path, name) in [
        ("namespace", "namespace"),
        ("namespaces", "namespaces"),
        ("object", "object"),
        ("objects", "objects"),
        ("property", "property"),
        ("properties", "properties"),
        ("tag", "tag"),
        ("tags", "tags"),
        ("resource_type", "resource_type_association"),
        ("resource_types", "resource_type_associations"),
    ] {
        let schema = reader.get_json(&format!("/v2/schemas/metadefs/{path}")).await;
        assert_eq!(schema["name"], name, "{path}");
    }
    let namespace = reader.get_json("/v2/schemas/metadefs/namespace").await;
    assert_eq!(namespace["additionalProperties"], false);
    assert_eq!(namespace["required"], json!(["namespace"]));
    assert_eq!(namespace["properties"]["visibility"]["enum"], json!(["public", "private"]));
    let property = reader.get_json("/v2/schemas/metadefs/property").await;
    assert_eq!(property["required"], json!(["type", "title", "name"]));
    let namespaces = reader.get_json("/v2/schemas/metadefs/namespaces").await;
    assert_eq!(namespaces["properties"]["namespaces"]["items"]["name"], "namespace");
    assert!(namespaces["definitions"]["property"].is_object());
    assert_eq!(namespaces["links"][1], json!({"rel": "next", "href": "{next}"}));
}

async fn unknown_metadef_schema_is_404(app: TestApp) {
    expect_error(app.get("/v2/schemas/metadefs/bogus").await, 404).await;
}
