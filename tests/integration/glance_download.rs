//! POST /v2/images/{id}/import with glance-download, in-process on every database: the API's
//! checks, and the worker against a canned remote image service whose endpoint comes in the
//! `X-Service-Catalog` a proxy (keystonemiddleware) passes in no-auth mode. Two real Glint
//! processes in two Keystone regions: tests/integration/cli/glance_download.rs.

use glint_core::config::Config;
use reqwest::Method;
use serde_json::{Value, json};

use crate::image_data::{coreutils_digests, image_of, payload};
use crate::imports::{finished_task, import, show, web_allowed};
use crate::support::web::{Reply, WebServer};
use crate::support::{TestApp, expect_error, on_every_database, store_listing};

on_every_database!(glance_download_is_refused_unless_enabled);
on_every_database!(config = enabled;
    glance_download_fields_are_checked_after_the_status_rules_as_glance_orders_them,
    glance_download_copies_data_formats_and_properties_from_the_catalog_s_endpoint,
    glance_download_of_data_unlike_the_remote_checksum_fails_and_leaves_nothing,
    glance_download_of_fewer_bytes_than_the_remote_size_fails_and_leaves_nothing,
    glance_download_with_a_service_catalog_that_is_not_json_is_500,
);
on_every_database!(config = protected; glance_download_leaves_out_properties_the_caller_may_not_set);
on_every_database!(config = two_properties;
    glance_download_of_more_properties_than_the_quota_fails_and_leaves_nothing,
);

fn enabled(config: &mut Config) {
    web_allowed(config);
    config.import.enabled_import_methods.push("glance-download".into());
}

/// `hw_secret*` properties are for admins only; every other property for everyone.
fn protected(config: &mut Config) {
    enabled(config);
    let rules = "[^hw_secret]\ncreate = admin\nread = admin\nupdate = admin\ndelete = admin\n\n\
                 [.*]\ncreate = @\nread = @\nupdate = @\ndelete = @\n";
    // In the app's own (unused, the cache being off) cache directory, which goes with the app.
    let file = config.cache.dir.join("protections.conf");
    std::fs::write(&file, rules).expect("write the protection file");
    config.images.property_protection_file = Some(file);
}

fn two_properties(config: &mut Config) {
    enabled(config);
    config.images.image_property_quota = 2;
}

const REMOTE_ID: &str = "c4705b36-b281-40f6-a01d-bf98883ead8e";

fn method(region: &str) -> Value {
    json!({"method": {"name": "glance-download", "glance_image_id": REMOTE_ID, "glance_region": region}})
}

/// The catalog keystonemiddleware passes on (v2 form), `web` as RegionTwo's image endpoint.
fn catalog(web: &WebServer) -> String {
    json!([{"type": "image", "name": "glance", "endpoints": [
        {"region": "RegionTwo", "publicURL": web.base, "internalURL": "http://internal.invalid"}
    ]}])
    .to_string()
}

/// `POST .../import` with `body` and the `X-Service-Catalog` header.
async fn import_with_catalog(app: &TestApp, id: &str, body: &Value, catalog: &str) -> reqwest::Response {
    let request = app.request(Method::POST, &format!("/v2/images/{id}/import"));
    request.header("X-Service-Catalog", catalog).json(body).send().await.expect("import")
}

/// Serves a remote active image holding `data` whose metadata says `fields` besides.
fn serve_remote(web: &WebServer, data: &[u8], fields: Value) {
    let (md5, sha512) = coreutils_digests(data);
    let mut document = json!({"id": REMOTE_ID, "status": "active", "disk_format": "raw", "container_format": "bare",
        "size": data.len(), "checksum": md5, "os_hash_algo": "sha512", "os_hash_value": sha512});
    for (key, value) in fields.as_object().into_iter().flatten() {
        document[key] = value.clone();
    }
    web.route(&format!("/v2/images/{REMOTE_ID}"), Reply::Bytes(document.to_string().into_bytes()));
    web.route(&format!("/v2/images/{REMOTE_ID}/file"), Reply::Bytes(data.to_vec()));
}

/// The caller's token and catalog, kept in the task's input for the worker, are gone from
/// the row once `task` has ended.
async fn assert_caller_forgotten(app: &TestApp, task: &Value) {
    let id = task["id"].as_str().expect("task id");
    let stored = glint_core::task::repo::get(&app.db, id).await.expect("task row").expect("task");
    let input = stored.input.expect("input");
    assert!(input.get("caller").is_none() && input.get("import_req").is_some(), "{input}");
}

async fn glance_download_is_refused_unless_enabled(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    let message = expect_error(import(&app, &id, method("RegionTwo")).await, 400).await;
    assert!(message.contains("Unknown import method name 'glance-download'."), "{message}");
    let offered = app.get_json("/v2/info/import").await;
    assert!(!offered.to_string().contains("glance-download"), "{offered}");
}

async fn glance_download_fields_are_checked_after_the_status_rules_as_glance_orders_them(app: TestApp) {
    let offered = app.get_json("/v2/info/import").await;
    assert!(offered["import-methods"]["value"].as_array().expect("list").contains(&json!("glance-download")));
    let active = image_of(&app, "raw", "bare").await;
    let put = app.request(Method::PUT, &format!("/v2/images/{active}/file"));
    let put = put.header("content-type", "application/octet-stream").body(payload(10)).send().await.expect("put");
    assert_eq!(put.status(), 204);
    let bare = json!({"method": {"name": "glance-download"}});
    expect_error(import(&app, &active, bare.clone()).await, 409).await;
    let id = image_of(&app, "raw", "bare").await;
    let refused = async |body: Value| expect_error(import(&app, &id, body).await, 400).await;
    let region_only = json!({"method": {"name": "glance-download", "glance_region": "RegionTwo"}});
    let id_only = json!({"method": {"name": "glance-download", "glance_image_id": REMOTE_ID}});
    let not_uuid =
        json!({"method": {"name": "glance-download", "glance_image_id": "123", "glance_region": "RegionTwo"}});
    assert!(refused(bare).await.contains("'glance_region' needs to be set for glance-download import method"));
    assert!(refused(region_only).await.contains("'glance_image_id' needs to be set for glance-download import method"));
    assert!(refused(id_only).await.contains("'glance_region' needs to be set"));
    assert!(refused(not_uuid).await.contains("Remote image id does not look like a UUID: 123"));
    assert_eq!(show(&app, &id).await["status"], "queued");
    assert_eq!(app.get_json(&format!("/v2/images/{id}/tasks")).await["tasks"], json!([]));
}

async fn glance_download_copies_data_formats_and_properties_from_the_catalog_s_endpoint(app: TestApp) {
    let web = WebServer::start().await;
    let data = payload(3000);
    serve_remote(&web, &data, json!({"hw_disk_bus": "scsi", "os_distro": "cirros", "architecture": "x86_64"}));
    let id = image_of(&app, "qcow2", "ovf").await;
    assert_eq!(import_with_catalog(&app, &id, &method("regiontwo"), &catalog(&web)).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(task["input"]["import_req"]["method"]["glance_service_interface"], "public");
    assert!(task["input"].get("caller").is_none(), "{task}");
    assert_caller_forgotten(&app, &task).await;
    let image = show(&app, &id).await;
    let (md5, sha512) = coreutils_digests(&data);
    assert_eq!((image["status"].as_str(), image["size"].as_u64()), (Some("active"), Some(3000)));
    assert_eq!((image["checksum"].as_str(), image["os_hash_value"].as_str()), (Some(&*md5), Some(&*sha512)));
    assert_eq!((image["disk_format"].as_str(), image["container_format"].as_str()), (Some("raw"), Some("bare")));
    assert_eq!((image["hw_disk_bus"].as_str(), image["os_distro"].as_str()), (Some("scsi"), Some("cirros")));
    assert!(image.get("architecture").is_none(), "{image}");
}

/// Imports from a remote image whose metadata says `fields` but whose data is `data`, which
/// must fail with `expected` in the message and leave the image as it was.
async fn fails_leaving_nothing(app: &TestApp, data: &[u8], fields: Value, expected: &str) {
    let web = WebServer::start().await;
    serve_remote(&web, data, fields);
    let id = image_of(app, "qcow2", "ovf").await;
    assert_eq!(import_with_catalog(app, &id, &method("RegionTwo"), &catalog(&web)).await.status(), 202);
    let task = finished_task(app, &id).await;
    assert_eq!(task["status"], "failure", "{task}");
    assert!(task["message"].as_str().unwrap_or_default().contains(expected), "{task}");
    assert_caller_forgotten(app, &task).await;
    let image = show(app, &id).await;
    assert_eq!((image["status"].as_str(), image["checksum"].as_str()), (Some("queued"), None), "{image}");
    assert_eq!((image["disk_format"].as_str(), image["container_format"].as_str()), (Some("qcow2"), Some("ovf")));
    assert!(image.get("hw_disk_bus").is_none() && image.get("os_glance_import_task").is_none(), "{image}");
    assert!(store_listing(app).is_empty(), "nothing stored");
}

async fn glance_download_of_data_unlike_the_remote_checksum_fails_and_leaves_nothing(app: TestApp) {
    let wrong = json!({"checksum": "0".repeat(32), "hw_disk_bus": "scsi"});
    fails_leaving_nothing(&app, &payload(3000), wrong, "does not match the remote image").await;
}

async fn glance_download_of_fewer_bytes_than_the_remote_size_fails_and_leaves_nothing(app: TestApp) {
    // The remote serves 2000 bytes with their right digests, but says there are 3000.
    let larger = json!({"size": 3000, "hw_disk_bus": "scsi"});
    fails_leaving_nothing(&app, &payload(2000), larger, "has 2000 bytes where the remote image has 3000").await;
}

async fn glance_download_leaves_out_properties_the_caller_may_not_set(app: TestApp) {
    let web = WebServer::start().await;
    let data = payload(3000);
    serve_remote(&web, &data, json!({"hw_disk_bus": "scsi", "hw_secret_key": "k"}));
    let member = app.as_project("a-project", "member");
    let id = image_of(&member, "raw", "bare").await;
    assert_eq!(import_with_catalog(&member, &id, &method("RegionTwo"), &catalog(&web)).await.status(), 202);
    assert_eq!(finished_task(&member, &id).await["status"], "success");
    // Shown to an admin, who could see the protected property if it had been copied.
    let image = show(&app, &id).await;
    assert_eq!((image["status"].as_str(), image["hw_disk_bus"].as_str()), (Some("active"), Some("scsi")), "{image}");
    assert!(image.get("hw_secret_key").is_none(), "{image}");
}

async fn glance_download_of_more_properties_than_the_quota_fails_and_leaves_nothing(app: TestApp) {
    let three = json!({"hw_disk_bus": "scsi", "hw_vif_model": "virtio", "os_distro": "cirros"});
    fails_leaving_nothing(&app, &payload(3000), three, "Maximum number of image properties exceeded").await;
}

async fn glance_download_with_a_service_catalog_that_is_not_json_is_500(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    let response = import_with_catalog(&app, &id, &method("RegionTwo"), "[not json").await;
    assert!(expect_error(response, 500).await.contains("Invalid service catalog json."));
    assert_eq!(show(&app, &id).await["status"], "queued");
}
