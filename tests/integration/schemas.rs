//! /v2/schemas/image and /v2/schemas/images.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, expect_error};

async fn app() -> TestApp {
    TestApp::spawn(Backend::Sqlite).await.expect("sqlite is always available")
}

#[tokio::test]
async fn image_schema_is_what_glanceclient_enforces() {
    let schema = app().await.get_json("/v2/schemas/image").await;
    assert_eq!(schema["name"], "image");
    assert_eq!(schema["additionalProperties"], json!({"type": "string"}));
    assert_eq!(
        schema["links"],
        json!([{"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"}, {"rel": "describedby", "href": "{schema}"}])
    );
    let props = &schema["properties"];
    assert_eq!(props["kernel_id"]["type"], json!(["null", "string"]));
    assert_eq!(props["ramdisk_id"]["is_base"], false);
    assert_eq!(props["os_distro"]["is_base"], false);
    assert!(props["name"].get("is_base").is_none());
    let disk_formats = props["disk_format"]["enum"].as_array().unwrap();
    assert_eq!(disk_formats[0], Value::Null);
    for format in ["qcow2", "raw", "vmdk", "vhd", "vhdx", "vdi", "iso", "ami", "ari", "aki", "ploop"] {
        assert!(disk_formats.contains(&json!(format)), "{format}");
    }
    assert_eq!(props["container_format"]["enum"][0], Value::Null);
    assert_eq!(props["status"]["readOnly"], true);
    assert_eq!(props["visibility"]["enum"], json!(["community", "public", "private", "shared"]));
    assert_eq!(props["min_ram"]["type"], "integer");
    assert_eq!(props["locations"]["items"]["required"], json!(["url", "metadata"]));
    for (name, prop) in props.as_object().unwrap() {
        assert!(
            prop["description"].is_string() || name == "locations" && prop["description"].is_string(),
            "{name} lacks a description"
        );
    }
}

#[tokio::test]
async fn images_schema_wraps_the_image_schema() {
    let app = app().await;
    let schema = app.get_json("/v2/schemas/images").await;
    let image = app.get_json("/v2/schemas/image").await;
    assert_eq!(schema["name"], "images");
    assert_eq!(schema["properties"]["images"]["items"], image);
    assert_eq!(
        schema["links"],
        json!([{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"}, {"rel": "describedby", "href": "{schema}"}])
    );
}

#[tokio::test]
async fn schema_with_a_body_is_400() {
    let response = app().await.request(Method::GET, "/v2/schemas/image").body("{}").send().await.unwrap();
    expect_error(response, 400).await;
}

#[tokio::test]
async fn task_schemas_describe_the_task_resource() {
    let app = app().await;
    let task = app.get_json("/v2/schemas/task").await;
    assert_eq!(task["name"], "task");
    assert_eq!(task["properties"]["status"]["enum"], json!(["pending", "processing", "success", "failure"]));
    assert_eq!(task["properties"]["type"]["enum"], json!(["import", "api_image_import", "location_import"]));
    assert_eq!(task["properties"]["input"]["type"], json!(["null", "object"]));
    let tasks = app.get_json("/v2/schemas/tasks").await;
    let item = &tasks["properties"]["tasks"]["items"]["properties"];
    assert!(item.get("input").is_none() && item.get("message").is_none() && item.get("status").is_some());
}
