//! POST /v2/images.

use serde_json::json;

use crate::support::{Backend, TestApp, expect_error, on_every_database};

on_every_database!(
    create_returns_201_with_location_and_glance_defaults,
    create_accepts_every_writable_field_and_a_chosen_id,
    create_flattens_extra_properties_at_top_level,
    create_with_duplicate_id_is_409,
    create_with_malformed_id_is_400,
    create_with_read_only_attribute_is_403,
    create_with_reserved_attribute_is_403,
    create_with_non_string_property_is_400,
    create_with_unknown_disk_format_is_400,
    create_with_out_of_range_min_ram_is_400,
    create_with_malformed_or_missing_body_is_400,
    create_over_property_quota_is_413,
    create_with_a_property_value_over_65535_bytes_is_400,
    create_over_the_property_size_quota_is_413,
    create_sets_owner_to_callers_project,
    create_for_another_project_is_403,
    create_public_by_non_admin_is_403,
    create_by_reader_is_403,
);

async fn image_count(app: &TestApp) -> usize {
    app.list_ids("?visibility=all&limit=1000").await.len()
}

async fn create_returns_201_with_location_and_glance_defaults(app: TestApp) {
    let response = app.post_json("/v2/images", &json!({"name": "cirros"})).await;
    assert_eq!(response.status(), 201);
    let request_id = response.headers()["x-openstack-request-id"].to_str().unwrap().to_owned();
    assert!(request_id.starts_with("req-"));
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["openstack-image-import-methods"], "glance-direct,web-download,copy-image");
    assert!(response.headers().get("openstack-image-store-ids").is_none(), "single-store mode");
    let image: serde_json::Value = response.json().await.unwrap();
    let id = image["id"].as_str().unwrap();
    assert_eq!(location, format!("{}/v2/images/{id}", app.base));
    assert_eq!(image["status"], "queued");
    assert_eq!(image["visibility"], "shared");
    assert_eq!(image["protected"], false);
    assert_eq!(image["os_hidden"], false);
    assert_eq!(image["min_ram"], 0);
    assert_eq!(image["min_disk"], 0);
    assert_eq!(image["tags"], json!([]));
    for always_null in [
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "size",
        "virtual_size",
        "disk_format",
        "container_format",
        "owner",
    ] {
        assert!(image[always_null].is_null(), "{always_null} should be null: {image}");
    }
    assert_eq!(image["self"], format!("/v2/images/{id}"));
    assert_eq!(image["file"], format!("/v2/images/{id}/file"));
    assert_eq!(image["schema"], "/v2/schemas/image");
    assert_eq!(image["created_at"], image["updated_at"]);
    assert!(image["created_at"].as_str().unwrap().ends_with('Z'));
}

async fn create_accepts_every_writable_field_and_a_chosen_id(app: TestApp) {
    let id = "b2173dd3-7ad6-4362-baa6-a68bce3565cb";
    let image = app
        .create_image(json!({
            "id": id, "name": "Ubuntu", "container_format": "bare", "disk_format": "qcow2",
            "visibility": "private", "protected": true, "os_hidden": true, "min_disk": 10,
            "min_ram": 512, "tags": ["ubuntu", "lts", "ubuntu"], "owner": null
        }))
        .await;
    assert_eq!(image["id"], id);
    assert_eq!(image["visibility"], "private");
    assert_eq!(image["protected"], true);
    assert_eq!(image["os_hidden"], true);
    assert_eq!(image["min_disk"], 10);
    assert_eq!(image["min_ram"], 512);
    assert_eq!(image["disk_format"], "qcow2");
    assert_eq!(image["container_format"], "bare");
    let mut tags: Vec<String> = serde_json::from_value(image["tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, ["lts", "ubuntu"]);
    let shown = app.get_json(&format!("/v2/images/{id}")).await;
    assert_eq!(shown, image);
}

async fn create_flattens_extra_properties_at_top_level(app: TestApp) {
    let image = app
        .create_image(json!({
            "name": "snap1", "os_distro": "cirros", "owner_specified.openstack.md5": "",
            "trait:CUSTOM_X": "required", "kernel_id": null,
            "block_device_mapping": "[{\"boot_index\": 0}]"
        }))
        .await;
    assert_eq!(image["os_distro"], "cirros");
    assert_eq!(image["owner_specified.openstack.md5"], "");
    assert_eq!(image["trait:CUSTOM_X"], "required");
    assert!(image["kernel_id"].is_null() && image.as_object().unwrap().contains_key("kernel_id"));
    assert_eq!(image["block_device_mapping"], "[{\"boot_index\": 0}]");
    let shown = app.get_json(&format!("/v2/images/{}", image["id"].as_str().unwrap())).await;
    assert_eq!(shown, image);
}

async fn create_with_duplicate_id_is_409(app: TestApp) {
    let id = "0b1e6e0d-6c36-4f44-8bb7-7f7bd2d2a001";
    app.create_image(json!({"id": id, "name": "first"})).await;
    let response = app.post_json("/v2/images", &json!({"id": id, "name": "second"})).await;
    expect_error(response, 409).await;
    assert_eq!(app.get_json(&format!("/v2/images/{id}")).await["name"], "first");
}

async fn create_with_malformed_id_is_400(app: TestApp) {
    for bad in ["not-a-uuid", "0b1e6e0d6c364f448bb77f7bd2d2a001", "0b1e6e0d-6c36-4f44-8bb7-7f7bd2d2a00g"] {
        expect_error(app.post_json("/v2/images", &json!({"id": bad})).await, 400).await;
    }
    assert_eq!(image_count(&app).await, 0);
}

async fn create_with_read_only_attribute_is_403(app: TestApp) {
    for (key, value) in [
        ("status", json!("active")),
        ("size", json!(5)),
        ("checksum", json!("abc")),
        ("self", json!("/x")),
        ("file", json!("/x")),
        ("schema", json!("/x")),
        ("direct_url", json!("x")),
        ("created_at", json!("2024-05-05T17:15:10Z")),
        ("os_hash_value", json!("ab")),
        ("virtual_size", json!(1)),
    ] {
        let message = expect_error(app.post_json("/v2/images", &json!({ key: value })).await, 403).await;
        assert!(message.contains(&format!("Attribute '{key}' is read-only.")), "{message}");
    }
    assert_eq!(image_count(&app).await, 0);
}

async fn create_with_reserved_attribute_is_403(app: TestApp) {
    for key in ["os_glance_import_task", "os_glancefoo", "location", "deleted", "deleted_at"] {
        let message = expect_error(app.post_json("/v2/images", &json!({ key: "x" })).await, 403).await;
        assert!(message.contains("is reserved"), "{key}: {message}");
    }
    let message = expect_error(app.post_json("/v2/images", &json!({"locations": []})).await, 403).await;
    assert!(message.contains("reserved"), "{message}");
    assert_eq!(image_count(&app).await, 0);
}

async fn create_with_non_string_property_is_400(app: TestApp) {
    for value in [json!(1), json!(true), json!({"a": 1}), json!(["a"]), json!(null)] {
        expect_error(app.post_json("/v2/images", &json!({"hw_disk_bus": value})).await, 400).await;
    }
    let long_key = "k".repeat(256);
    expect_error(app.post_json("/v2/images", &json!({ long_key: "v" })).await, 400).await;
    assert_eq!(image_count(&app).await, 0);
}

async fn create_with_unknown_disk_format_is_400(app: TestApp) {
    expect_error(app.post_json("/v2/images", &json!({"disk_format": "qcow3"})).await, 400).await;
    expect_error(app.post_json("/v2/images", &json!({"container_format": "zip"})).await, 400).await;
    expect_error(app.post_json("/v2/images", &json!({"visibility": "everyone"})).await, 400).await;
    expect_error(app.post_json("/v2/images", &json!({"name": "n".repeat(256)})).await, 400).await;
    expect_error(app.post_json("/v2/images", &json!({"protected": "yes"})).await, 400).await;
    expect_error(app.post_json("/v2/images", &json!({"tags": "a,b"})).await, 400).await;
    assert_eq!(image_count(&app).await, 0);
}

async fn create_with_out_of_range_min_ram_is_400(app: TestApp) {
    for value in [json!(-1), json!(2_147_483_648i64), json!(null), json!(1.5), json!("512")] {
        expect_error(app.post_json("/v2/images", &json!({"min_ram": value})).await, 400).await;
        expect_error(app.post_json("/v2/images", &json!({"min_disk": value})).await, 400).await;
    }
    let image = app.create_image(json!({"min_ram": 2_147_483_647i64})).await;
    assert_eq!(image["min_ram"], 2_147_483_647i64);
}

async fn create_with_malformed_or_missing_body_is_400(app: TestApp) {
    let send = |body: &'static str| app.request(reqwest::Method::POST, "/v2/images").body(body).send();
    let message = expect_error(send("{\"name\": ").await.unwrap(), 400).await;
    assert!(message.contains("Malformed JSON in request body."), "{message}");
    let message = expect_error(send("").await.unwrap(), 400).await;
    assert!(message.contains("Body expected in request."), "{message}");
    expect_error(send("[1, 2]").await.unwrap(), 400).await;
    expect_error(send("\"name\"").await.unwrap(), 400).await;
    assert_eq!(image_count(&app).await, 0);
}

async fn create_over_property_quota_is_413(app: TestApp) {
    let mut body = serde_json::Map::new();
    for i in 0..129 {
        body.insert(format!("p{i}"), json!("v"));
    }
    expect_error(app.post_json("/v2/images", &serde_json::Value::Object(body.clone())).await, 413).await;
    body.remove("p0");
    app.create_image(serde_json::Value::Object(body)).await;
    let tags: Vec<String> = (0..129).map(|i| format!("t{i}")).collect();
    expect_error(app.post_json("/v2/images", &json!({ "tags": tags })).await, 413).await;
    assert_eq!(image_count(&app).await, 1);
}

async fn create_sets_owner_to_callers_project(app: TestApp) {
    let member = app.as_project("p1", "member");
    let image = member.create_image(json!({"name": "mine"})).await;
    assert_eq!(image["owner"], "p1");
    let explicit = member.create_image(json!({"name": "mine too", "owner": "p1"})).await;
    assert_eq!(explicit["owner"], "p1");
    let admin = app.as_project("adminproject", "admin");
    let for_other = admin.create_image(json!({"owner": "p7"})).await;
    assert_eq!(for_other["owner"], "p7");
}

async fn create_for_another_project_is_403(app: TestApp) {
    let member = app.as_project("p1", "member");
    let message = expect_error(member.post_json("/v2/images", &json!({"owner": "p2"})).await, 403).await;
    assert!(message.contains("owned by 'p2'"), "{message}");
    assert_eq!(image_count(&app).await, 0);
}

async fn create_public_by_non_admin_is_403(app: TestApp) {
    let member = app.as_project("p1", "member");
    expect_error(member.post_json("/v2/images", &json!({"visibility": "public"})).await, 403).await;
    assert_eq!(image_count(&app).await, 0);
    let community = member.create_image(json!({"visibility": "community"})).await;
    assert_eq!(community["visibility"], "community");
}

async fn create_by_reader_is_403(app: TestApp) {
    let reader = app.as_project("p1", "reader");
    expect_error(reader.post_json("/v2/images", &json!({"name": "x"})).await, 403).await;
    assert_eq!(image_count(&app).await, 0);
}

#[tokio::test]
async fn create_lists_the_enabled_import_methods_in_their_configured_order() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.import.enabled_import_methods =
            ["web-download", "glance-download", "glance-direct"].map(String::from).to_vec();
    })
    .await
    .expect("sqlite");
    let response = app.post_json("/v2/images", &json!({"name": "cirros"})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["openstack-image-import-methods"], "web-download,glance-download,glance-direct");
    let info = app.get_json("/v2/info/import").await;
    assert_eq!(info["import-methods"]["value"], json!(["web-download", "glance-download", "glance-direct"]));
}

#[tokio::test]
async fn create_without_enabled_import_methods_sends_no_import_methods_header() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| config.import.enabled_import_methods.clear())
        .await
        .expect("sqlite");
    let response = app.post_json("/v2/images", &json!({"name": "cirros"})).await;
    assert_eq!(response.status(), 201);
    assert!(response.headers().get("openstack-image-import-methods").is_none(), "{:?}", response.headers());
}

async fn create_with_a_property_value_over_65535_bytes_is_400(app: TestApp) {
    let longest = app.create_image(json!({"note": "x".repeat(65_535)})).await;
    assert_eq!(longest["note"].as_str().map(str::len), Some(65_535));
    for value in ["x".repeat(65_536), "é".repeat(32_768), "x".repeat(1_900_000)] {
        let message = expect_error(app.post_json("/v2/images", &json!({"note": value})).await, 400).await;
        assert!(message.contains("Value of property 'note' is too long"), "{message}");
    }
    let message = expect_error(app.post_json("/v2/images", &json!({"description": "d".repeat(65_536)})).await, 400);
    assert!(message.await.contains("'description' is too long"));
    assert_eq!(image_count(&app).await, 1);
}

async fn create_over_the_property_size_quota_is_413(app: TestApp) {
    // Two longest values and their names: 131,074 bytes, over the default 131,072.
    let body = json!({"a1": "x".repeat(65_535), "b1": "x".repeat(65_535)});
    let message = expect_error(app.post_json("/v2/images", &body).await, 413).await;
    assert!(message.contains("Maximum size of image properties"), "{message}");
    app.create_image(json!({"a": "x".repeat(65_535), "b": "x".repeat(65_535)})).await;
    assert_eq!(image_count(&app).await, 1);
}
