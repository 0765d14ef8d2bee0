//! /v2/metadefs/namespaces[/{ns}]: create, list, show, replace, delete.

use reqwest::Method;
use serde_json::{Value, json};

use super::{create_namespace, json_of, ns_path, populated, put_json};
use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(
    namespace_create_answers_201_with_location_defaults_and_an_echo_of_its_parts,
    namespace_create_of_a_taken_name_is_409,
    namespace_bodies_breaking_the_schema_are_400,
    namespace_bodies_with_read_only_keys_are_403,
    namespace_create_with_a_nested_duplicate_leaves_nothing_behind,
    namespace_show_expands_associations_properties_objects_and_tags,
    namespace_show_leaves_out_empty_parts_and_null_fields,
    namespace_show_with_resource_type_applies_the_association_prefix,
    namespace_list_pages_with_limit_marker_and_next,
    namespace_list_sorts_by_sort_key_and_sort_dir,
    namespace_list_refuses_bad_parameters_with_400,
    namespace_list_filters_by_visibility_and_resource_types,
    namespace_update_replaces_every_own_field,
    namespace_rename_onto_a_taken_name_is_409,
    namespace_delete_removes_its_contents_and_frees_the_name,
    namespace_delete_contents_empties_objects_properties_and_tags,
    protected_namespace_refuses_every_delete_but_allows_updates,
    unknown_namespace_is_404_on_every_route,
    metadef_routes_answer_405_with_allow,
    metadef_bodies_on_body_less_routes_are_400,
);

async fn namespace_create_answers_201_with_location_defaults_and_an_echo_of_its_parts(app: TestApp) {
    let admin = app.as_project("p1", "admin");
    let response = admin
        .post_json(
            "/v2/metadefs/namespaces",
            &json!({"namespace": "OS::Compute::Quota", "tags": [{"name": "a"}],
                    "properties": {"n": {"type": "integer", "title": "N", "default": 5}}}),
        )
        .await;
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    let body = json_of(response, 201).await;
    assert_eq!(location, Some(format!("{}/v2/metadefs/namespaces/OS::Compute::Quota", app.base)));
    assert_eq!(body["visibility"], "private");
    assert_eq!(body["protected"], false);
    assert_eq!(body["owner"], "p1");
    assert_eq!(body["self"], "/v2/metadefs/namespaces/OS::Compute::Quota");
    assert_eq!(body["schema"], "/v2/schemas/metadefs/namespace");
    assert_eq!(body["created_at"], body["updated_at"]);
    assert_eq!(body["tags"], json!([{"name": "a"}]));
    assert_eq!(body["properties"], json!({"n": {"type": "integer", "title": "N", "default": "5"}}));
    assert!(body.get("objects").is_none() && body.get("display_name").is_none(), "{body}");
}

async fn namespace_create_of_a_taken_name_is_409(app: TestApp) {
    create_namespace(&app, json!({"namespace": "dup"})).await;
    expect_error(app.post_json("/v2/metadefs/namespaces", &json!({"namespace": "dup"})).await, 409).await;
}

async fn namespace_bodies_breaking_the_schema_are_400(app: TestApp) {
    for body in [
        json!({"display_name": "no namespace"}),
        json!({"namespace": "x".repeat(81)}),
        json!({"namespace": "n", "visibility": "shared"}),
        json!({"namespace": "n", "protected": "yes"}),
        json!({"namespace": "n", "bogus": 1}),
        json!({"namespace": "n", "properties": {"p": {"title": "P"}}}),
        json!({"namespace": "n", "properties": {"p": {"title": "P", "type": "string", "enum": [1]}}}),
        json!({"namespace": "n", "resource_type_associations": [{"prefix": "hw_"}]}),
        json!({"namespace": "n\u{1F600}"}),
        json!(["n"]),
    ] {
        expect_error(app.post_json("/v2/metadefs/namespaces", &body).await, 400).await;
    }
    let raw = app.request(Method::POST, "/v2/metadefs/namespaces").body("{not json").send().await.unwrap();
    expect_error(raw, 400).await;
    assert_eq!(app.get_json("/v2/metadefs/namespaces").await["namespaces"], json!([]));
}

async fn namespace_bodies_with_read_only_keys_are_403(app: TestApp) {
    for key in ["self", "schema", "created_at", "updated_at"] {
        let mut body = json!({"namespace": "n", "bogus": 1});
        body[key] = json!("x");
        let message = expect_error(app.post_json("/v2/metadefs/namespaces", &body).await, 403).await;
        assert!(message.contains(&format!("Attribute '{key}' is read-only.")), "{message}");
    }
}

async fn namespace_create_with_a_nested_duplicate_leaves_nothing_behind(app: TestApp) {
    let body = json!({"namespace": "atomic", "objects": [{"name": "o"}, {"name": "o"}]});
    expect_error(app.post_json("/v2/metadefs/namespaces", &body).await, 409).await;
    let body = json!({"namespace": "atomic", "tags": [{"name": "t"}, {"name": "t"}]});
    expect_error(app.post_json("/v2/metadefs/namespaces", &body).await, 409).await;
    expect_error(app.get(&ns_path("atomic", "")).await, 404).await;
}

async fn namespace_show_expands_associations_properties_objects_and_tags(app: TestApp) {
    populated(&app, "full").await;
    let body = app.get_json(&ns_path("full", "")).await;
    let association = &body["resource_type_associations"][0];
    assert_eq!((&association["name"], &association["prefix"]), (&json!("OS::Glance::Image"), &json!("hw_")));
    assert!(association["created_at"].is_string());
    assert_eq!(
        body["properties"],
        json!({"cpu_mode": {"type": "string", "title": "CPU Mode", "enum": ["host-model", "custom"]}})
    );
    let object = &body["objects"][0];
    assert_eq!(object["name"], "CPU Limits");
    assert_eq!(object["required"], json!(["period"]));
    assert_eq!(object["properties"]["period"]["minimum"], 1000);
    assert_eq!(object["self"], "/v2/metadefs/namespaces/full/objects/CPU Limits");
    assert_eq!(body["tags"], json!([{"name": "t1"}]));
}

async fn namespace_show_leaves_out_empty_parts_and_null_fields(app: TestApp) {
    create_namespace(&app, json!({"namespace": "bare"})).await;
    let body = app.get_json(&ns_path("bare", "")).await;
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "namespace", "owner", "protected", "schema", "self", "updated_at", "visibility"]);
}

async fn namespace_show_with_resource_type_applies_the_association_prefix(app: TestApp) {
    populated(&app, "prefixed").await;
    let body = app.get_json(&ns_path("prefixed", "?resource_type=OS::Glance::Image")).await;
    assert!(body["properties"].get("hw_cpu_mode").is_some(), "{body}");
    assert_eq!(body["objects"][0]["required"], json!(["hw_period"]));
    assert!(body["objects"][0]["properties"].get("hw_period").is_some());
    let unassociated = app.get_json(&ns_path("prefixed", "?resource_type=OS::Nova::Flavor")).await;
    assert!(unassociated["properties"].get("cpu_mode").is_some());
}

async fn namespace_list_pages_with_limit_marker_and_next(app: TestApp) {
    for name in ["a", "b", "c"] {
        create_namespace(&app, json!({"namespace": name})).await;
    }
    let page = app.get_json("/v2/metadefs/namespaces?limit=2&sort_key=namespace&sort_dir=asc").await;
    let names = |page: &Value| {
        page["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["namespace"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&page), ["a", "b"]);
    assert_eq!(page["first"], "/v2/metadefs/namespaces?limit=2&sort_key=namespace&sort_dir=asc");
    assert_eq!(page["schema"], "/v2/schemas/metadefs/namespaces");
    let next = page["next"].as_str().unwrap().to_owned();
    assert_eq!(next, "/v2/metadefs/namespaces?limit=2&sort_key=namespace&sort_dir=asc&marker=b");
    let last = app.get_json(&next).await;
    assert_eq!(names(&last), ["c"]);
    assert!(last.get("next").is_none());
    expect_error(app.get("/v2/metadefs/namespaces?marker=nope").await, 404).await;
    assert_eq!(app.get_json("/v2/metadefs/namespaces?limit=0").await["namespaces"], json!([]));
}

async fn namespace_list_sorts_by_sort_key_and_sort_dir(app: TestApp) {
    for (name, display) in [("x1", "b"), ("x2", "c"), ("x3", "a")] {
        create_namespace(&app, json!({"namespace": name, "display_name": display})).await;
    }
    let names = |page: Value| {
        page["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["namespace"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(app.get_json("/v2/metadefs/namespaces?sort_key=display_name&sort_dir=asc").await),
        ["x3", "x1", "x2"]
    );
    assert_eq!(names(app.get_json("/v2/metadefs/namespaces?sort_key=namespace").await), ["x3", "x2", "x1"]);
}

async fn namespace_list_refuses_bad_parameters_with_400(app: TestApp) {
    for query in ["limit=-1", "limit=abc", "sort_dir=up", "sort_key=bogus", "visibility=shared"] {
        expect_error(app.get(&format!("/v2/metadefs/namespaces?{query}")).await, 400).await;
    }
}

async fn namespace_list_filters_by_visibility_and_resource_types(app: TestApp) {
    populated(&app, "pub-image").await;
    create_namespace(
        &app,
        json!({"namespace": "priv-flavor", "resource_type_associations": [{"name": "OS::Nova::Flavor"}]}),
    )
    .await;
    let names = |page: Value| {
        let mut names: Vec<String> = page["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["namespace"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(app.get_json("/v2/metadefs/namespaces?visibility=public").await), ["pub-image"]);
    assert_eq!(names(app.get_json("/v2/metadefs/namespaces?visibility=private").await), ["priv-flavor"]);
    assert_eq!(names(app.get_json("/v2/metadefs/namespaces?resource_types=OS::Nova::Flavor").await), ["priv-flavor"]);
    assert_eq!(
        names(app.get_json("/v2/metadefs/namespaces?resource_types=OS::Nova::Flavor,OS::Glance::Image").await),
        ["priv-flavor", "pub-image"]
    );
    assert!(names(app.get_json("/v2/metadefs/namespaces?resource_types=OS::Trove::Instance").await).is_empty());
    let listed = app.get_json("/v2/metadefs/namespaces?resource_types=OS::Glance::Image").await;
    assert_eq!(listed["namespaces"][0]["resource_type_associations"][0]["name"], "OS::Glance::Image");
    assert!(listed["namespaces"][0].get("properties").is_none(), "list entries carry associations only");
}

async fn namespace_update_replaces_every_own_field(app: TestApp) {
    let admin = app.as_project("admin-project", "admin");
    populated(&admin, "old").await;
    put_json(
        &admin,
        &ns_path("old", ""),
        &json!({"namespace": "old", "protected": true, "display_name": "D", "owner": "p9"}),
    )
    .await;
    let body = json_of(
        put_json(&admin, &ns_path("old", ""), &json!({"namespace": "new", "description": "changed"})).await,
        200,
    )
    .await;
    assert_eq!(body["namespace"], "new");
    assert_eq!(body["description"], "changed");
    assert_eq!(body["visibility"], "private");
    assert_eq!(body["protected"], false);
    assert_eq!(body["owner"], "admin-project");
    assert!(body.get("display_name").is_none() && body.get("properties").is_none(), "{body}");
    expect_error(admin.get(&ns_path("old", "")).await, 404).await;
    let shown = admin.get_json(&ns_path("new", "")).await;
    assert_eq!(shown["objects"][0]["name"], "CPU Limits", "contents follow the rename");
}

async fn namespace_rename_onto_a_taken_name_is_409(app: TestApp) {
    create_namespace(&app, json!({"namespace": "one"})).await;
    create_namespace(&app, json!({"namespace": "two"})).await;
    expect_error(put_json(&app, &ns_path("one", ""), &json!({"namespace": "two"})).await, 409).await;
}

async fn namespace_delete_removes_its_contents_and_frees_the_name(app: TestApp) {
    populated(&app, "gone").await;
    assert_eq!(app.delete(&ns_path("gone", "")).await.status(), 204);
    expect_error(app.get(&ns_path("gone", "")).await, 404).await;
    let again = create_namespace(&app, json!({"namespace": "gone"})).await;
    assert_eq!(again["namespace"], "gone");
    let shown = app.get_json(&ns_path("gone", "")).await;
    assert!(
        shown.get("objects").is_none() && shown.get("tags").is_none() && shown.get("properties").is_none(),
        "{shown}"
    );
    let types = app.get_json("/v2/metadefs/resource_types").await;
    assert_eq!(types["resource_types"][0]["name"], "OS::Glance::Image", "resource types stay");
}

async fn namespace_delete_contents_empties_objects_properties_and_tags(app: TestApp) {
    populated(&app, "emptied").await;
    for part in ["objects", "properties", "tags"] {
        assert_eq!(app.delete(&ns_path("emptied", &format!("/{part}"))).await.status(), 204, "{part}");
    }
    assert_eq!(app.get_json(&ns_path("emptied", "/objects")).await["objects"], json!([]));
    assert_eq!(app.get_json(&ns_path("emptied", "/properties")).await, json!({"properties": {}}));
    assert_eq!(app.get_json(&ns_path("emptied", "/tags")).await, json!({"tags": []}));
    assert_eq!(
        app.get_json(&ns_path("emptied", "/resource_types")).await["resource_type_associations"][0]["name"],
        "OS::Glance::Image"
    );
}

async fn protected_namespace_refuses_every_delete_but_allows_updates(app: TestApp) {
    populated(&app, "guarded").await;
    put_json(
        &app,
        &ns_path("guarded", ""),
        &json!({"namespace": "guarded", "protected": true, "visibility": "public"}),
    )
    .await;
    for path in [
        "",
        "/objects",
        "/properties",
        "/tags",
        "/objects/CPU Limits",
        "/properties/cpu_mode",
        "/tags/t1",
        "/resource_types/OS::Glance::Image",
    ] {
        let message = expect_error(app.delete(&ns_path("guarded", path)).await, 403).await;
        assert!(message.contains("is protected and cannot be deleted"), "{path}: {message}");
    }
    assert_eq!(app.post_json(&ns_path("guarded", "/objects"), &json!({"name": "more"})).await.status(), 201);
    let body = json_of(
        put_json(&app, &ns_path("guarded", ""), &json!({"namespace": "guarded", "protected": false})).await,
        200,
    )
    .await;
    assert_eq!(body["protected"], false);
    assert_eq!(app.delete(&ns_path("guarded", "")).await.status(), 204);
}

async fn unknown_namespace_is_404_on_every_route(app: TestApp) {
    for (method, path) in [
        (Method::GET, ""),
        (Method::DELETE, ""),
        (Method::GET, "/objects"),
        (Method::DELETE, "/objects"),
        (Method::GET, "/objects/o"),
        (Method::DELETE, "/objects/o"),
        (Method::GET, "/properties"),
        (Method::DELETE, "/properties"),
        (Method::GET, "/properties/p"),
        (Method::DELETE, "/properties/p"),
        (Method::GET, "/tags"),
        (Method::DELETE, "/tags"),
        (Method::GET, "/tags/t"),
        (Method::POST, "/tags/t"),
        (Method::DELETE, "/tags/t"),
        (Method::GET, "/resource_types"),
        (Method::DELETE, "/resource_types/OS::Glance::Image"),
    ] {
        let response = app.request(method.clone(), &ns_path("missing", path)).send().await.unwrap();
        expect_error(response, 404).await;
    }
    for (path, body) in [
        ("", json!({"namespace": "missing"})),
        ("/objects", json!({"name": "o"})),
        ("/objects/o", json!({"name": "o"})),
        ("/properties", json!({"name": "p", "title": "P", "type": "string"})),
        ("/properties/p", json!({"name": "p", "title": "P", "type": "string"})),
        ("/tags/t", json!({"name": "t"})),
        ("/resource_types", json!({"name": "OS::Glance::Image"})),
    ] {
        let method = if path == "/objects" || path == "/properties" || path == "/resource_types" {
            Method::POST
        } else {
            Method::PUT
        };
        let response = app.request(method, &ns_path("missing", path)).json(&body).send().await.unwrap();
        expect_error(response, 404).await;
    }
    expect_error(app.post_json(&ns_path("missing", "/tags"), &json!({"tags": []})).await, 404).await;
    create_namespace(&app, json!({"namespace": "there"})).await;
    for path in ["/objects/o", "/properties/p", "/tags/t", "/resource_types/OS::Glance::Image"] {
        expect_error(app.delete(&ns_path("there", path)).await, 404).await;
    }
}

async fn metadef_routes_answer_405_with_allow(app: TestApp) {
    for (method, path, allow) in [
        (Method::PUT, "/v2/metadefs/namespaces", "GET, POST"),
        (Method::PATCH, "/v2/metadefs/namespaces/n", "GET, PUT, DELETE"),
        (Method::PUT, "/v2/metadefs/namespaces/n/objects", "GET, POST, DELETE"),
        (Method::POST, "/v2/metadefs/namespaces/n/properties/p", "GET, PUT, DELETE"),
        (Method::PATCH, "/v2/metadefs/namespaces/n/tags/t", "GET, POST, PUT, DELETE"),
        (Method::POST, "/v2/metadefs/resource_types", "GET"),
        (Method::DELETE, "/v2/metadefs/namespaces/n/resource_types", "GET, POST"),
        (Method::GET, "/v2/metadefs/namespaces/n/resource_types/r", "DELETE"),
        (Method::POST, "/v2/schemas/metadefs/namespace", "GET"),
    ] {
        let response = app.request(method, path).send().await.unwrap();
        assert_eq!(
            response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()),
            Some(allow.to_owned()),
            "{path}"
        );
        expect_error(response, 405).await;
    }
}

async fn metadef_bodies_on_body_less_routes_are_400(app: TestApp) {
    populated(&app, "quiet").await;
    for (method, path) in
        [(Method::GET, ""), (Method::DELETE, ""), (Method::POST, "/tags/new"), (Method::GET, "/objects/CPU Limits")]
    {
        let response = app.request(method, &ns_path("quiet", path)).body("{}").send().await.unwrap();
        let message = expect_error(response, 400).await;
        assert!(message.contains("A body is not expected"), "{message}");
    }
}
