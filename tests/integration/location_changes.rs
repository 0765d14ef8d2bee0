//! Changing where an image's data is: JSON-patch `add`, `replace` and `remove` on
//! `/locations` (docs/glance-v2-api.md §5.4), with Glance's rules, and the locations a caller
//! may name: only data of a configured store, never a way to read what they could not read.

use glint_core::config::Config;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(config = show_locations;
    adding_a_location_activates_a_queued_image_with_the_size_of_its_data,
    validation_data_of_the_first_location_sets_checksum_and_hash,
    validation_data_that_does_not_fit_is_409_and_changes_nothing,
    adding_to_an_image_neither_queued_nor_active_is_409,
    adding_a_second_location_keeps_the_image_and_downloads_still_work,
    a_location_already_there_is_400,
    a_location_pointer_of_the_wrong_depth_or_position_is_400,
    more_locations_than_image_location_quota_is_413,
    replacing_keeps_the_urls_and_changes_their_metadata,
    replacing_with_other_urls_or_nothing_is_refused,
    removing_a_location_forgets_it_and_removes_its_data,
    the_last_location_of_an_active_image_cannot_be_removed,
    location_changes_follow_their_policies,
    file_urls_outside_the_store_directory_are_invalid,
    a_symlink_in_the_store_directory_is_an_invalid_location,
    another_images_data_is_an_invalid_location,
    urls_of_no_configured_store_are_invalid,
);

fn show_locations(config: &mut Config) {
    config.images.show_multiple_locations = true;
    config.images.image_location_quota = 3;
}

/// The explanation of an error response with `status` (without WebOb's trailing markup).
async fn refusal(response: reqwest::Response, status: u16) -> String {
    let message = expect_error(response, status).await;
    message.split("<br />").next().unwrap_or_default().to_owned()
}

const DATA: &[u8] = b"external image data";
const MD5: &str = "b41342237ebcf0b6fe7c2a6a0bac94ce";
const SHA512: &str = "42a14d0f2b9fe8add288a4366bb8b92a3c5fce1eac7a0fd8024f7996a2f3893cc13b02acc759bd5b115e57c6ad0b648ec6fd7a80913e1f18040bc34a3c420d1a";

/// A file placed in the store directory by the operator; returns its URL.
fn external(app: &TestApp, name: &str, data: &[u8]) -> String {
    let path = app.store_path.join(name);
    std::fs::write(&path, data).expect("write");
    format!("file://{}", path.display())
}

async fn queued(app: &TestApp) -> String {
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    image["id"].as_str().expect("id").to_owned()
}

async fn uploaded(app: &TestApp) -> String {
    let id = queued(app).await;
    let response = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(DATA)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 204);
    id
}

fn add(url: &str) -> Value {
    json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}])
}

async fn show(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v2/images/{id}")).await
}

async fn urls(app: &TestApp, id: &str) -> Vec<String> {
    let image = show(app, id).await;
    image["locations"].as_array().expect("locations").iter().map(|l| l["url"].as_str().expect("url").into()).collect()
}

async fn download(app: &TestApp, id: &str) -> Vec<u8> {
    let response = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body").to_vec()
}

/// Asserts the image is as `before`, apart from nothing.
async fn unchanged(app: &TestApp, id: &str, before: &Value) {
    assert_eq!(&show(app, id).await, before);
}

async fn adding_a_location_activates_a_queued_image_with_the_size_of_its_data(app: TestApp) {
    let id = queued(&app).await;
    let url = external(&app, "external.img", DATA);
    let response = app.patch(&id, &add(&url)).await;
    assert_eq!(response.status(), 200);
    let image: Value = response.json().await.expect("json");
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], DATA.len());
    assert_eq!(image["locations"], json!([{"url": url, "metadata": {}}]));
    // Glance computes nothing on a PATCH: without validation_data there is no checksum.
    assert!(image["checksum"].is_null() && image["os_hash_value"].is_null(), "{image}");
    assert_eq!(show(&app, &id).await, image);
    assert_eq!(download(&app, &id).await, DATA);
}

async fn validation_data_of_the_first_location_sets_checksum_and_hash(app: TestApp) {
    let id = queued(&app).await;
    let url = external(&app, "external.img", DATA);
    let value = json!({"url": url, "metadata": {"k": "v"},
        "validation_data": {"checksum": MD5, "os_hash_algo": "sha512", "os_hash_value": SHA512}});
    let response = app.patch(&id, &json!([{"op": "add", "path": "/locations/-", "value": value}])).await;
    assert_eq!(response.status(), 200);
    let image = show(&app, &id).await;
    assert_eq!((image["checksum"].as_str(), image["os_hash_algo"].as_str()), (Some(MD5), Some("sha512")));
    assert_eq!(image["os_hash_value"], SHA512);
    assert_eq!(image["locations"], json!([{"url": url, "metadata": {"k": "v"}}]));
    let download = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(download.headers()["content-md5"], MD5);
}

async fn validation_data_that_does_not_fit_is_409_and_changes_nothing(app: TestApp) {
    let id = queued(&app).await;
    let url = external(&app, "external.img", DATA);
    let before = show(&app, &id).await;
    let cases = [
        (json!({"os_hash_algo": "md5", "os_hash_value": MD5}), "os_hash_algo must be sha512, not md5"),
        (
            json!({"os_hash_algo": "sha512", "os_hash_value": "zz"}),
            "os_hash_value (zz) is not a valid hexadecimal value",
        ),
        (
            json!({"os_hash_algo": "sha512", "os_hash_value": MD5}),
            "is not the correct size for sha512 (should be 64 bytes)",
        ),
        (
            json!({"checksum": "0123456789abcdef0123456789abcdeg", "os_hash_algo": "sha512", "os_hash_value": SHA512}),
            "is not a valid hexadecimal value",
        ),
    ];
    for (data, text) in cases {
        let value = json!({"url": url, "metadata": {}, "validation_data": data});
        let response = app.patch(&id, &json!([{"op": "add", "path": "/locations/-", "value": value}])).await;
        let message = refusal(response, 409).await;
        assert!(message.contains(text), "{message}");
    }
    // Two locations of one replace that disagree.
    let other = external(&app, "other.img", DATA);
    let value = |url: &str, hash: &str| json!({"url": url, "metadata": {}, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": hash}});
    let ops = json!([{"op": "replace", "path": "/locations", "value": [value(&url, SHA512), value(&other, &"0".repeat(128))]}]);
    let message = refusal(app.patch(&id, &ops).await, 409).await;
    assert_eq!(message, "Conflicting values for os_hash_value");
    unchanged(&app, &id, &before).await;
    // An active image's values may be repeated, not changed.
    let active = uploaded(&app).await;
    let value = json!({"url": other, "metadata": {}, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "0".repeat(128)}});
    let response = app.patch(&active, &json!([{"op": "add", "path": "/locations/-", "value": value}])).await;
    assert_eq!(refusal(response, 409).await, "os_hash_value is already set with a different value");
}

async fn adding_to_an_image_neither_queued_nor_active_is_409(app: TestApp) {
    let id = uploaded(&app).await;
    let deactivate = app.request(Method::POST, &format!("/v2/images/{id}/actions/deactivate")).send().await;
    assert_eq!(deactivate.expect("deactivate").status(), 204);
    let before = show(&app, &id).await;
    let url = external(&app, "external.img", DATA);
    let message = refusal(app.patch(&id, &add(&url)).await, 409).await;
    assert_eq!(message, "It's not allowed to add locations if image status is deactivated.");
    let remove = json!([{"op": "remove", "path": "/locations/0"}]);
    let message = refusal(app.patch(&id, &remove).await, 409).await;
    assert_eq!(message, "It's not allowed to remove locations if image status is deactivated.");
    unchanged(&app, &id, &before).await;
}

async fn adding_a_second_location_keeps_the_image_and_downloads_still_work(app: TestApp) {
    let id = uploaded(&app).await;
    let first = urls(&app, &id).await;
    let url = external(&app, "copy.img", DATA);
    assert_eq!(app.patch(&id, &add(&url)).await.status(), 200);
    let image = show(&app, &id).await;
    assert_eq!((image["status"].as_str(), image["checksum"].as_str()), (Some("active"), Some(MD5)));
    assert_eq!(urls(&app, &id).await, [first[0].clone(), url]);
    assert_eq!(download(&app, &id).await, DATA);
}

async fn a_location_already_there_is_400(app: TestApp) {
    let id = queued(&app).await;
    let url = external(&app, "external.img", DATA);
    assert_eq!(app.patch(&id, &add(&url)).await.status(), 200);
    let before = show(&app, &id).await;
    let message = refusal(app.patch(&id, &add(&url)).await, 400).await;
    assert_eq!(message, format!("The location {url} already exists"));
    unchanged(&app, &id, &before).await;
}

async fn a_location_pointer_of_the_wrong_depth_or_position_is_400(app: TestApp) {
    let id = queued(&app).await;
    let url = external(&app, "external.img", DATA);
    let value = json!({"url": url, "metadata": {}});
    let before = show(&app, &id).await;
    for (ops, text) in [
        (
            json!([{"op": "add", "path": "/locations", "value": value}]),
            "Invalid JSON pointer for this resource: '/locations'",
        ),
        (
            json!([{"op": "replace", "path": "/locations/0", "value": value}]),
            "Invalid JSON pointer for this resource: '/locations/0'",
        ),
        (json!([{"op": "add", "path": "/locations/x", "value": value}]), "Invalid position for adding a location."),
        (json!([{"op": "add", "path": "/locations/-", "value": {"url": url}}]), "'metadata' is a required property"),
        (
            json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {"n": 1}}}]),
            "The image metadata key n has an invalid type of int.",
        ),
    ] {
        let message = refusal(app.patch(&id, &ops).await, 400).await;
        assert!(message.contains(text), "{message}");
    }
    unchanged(&app, &id, &before).await;
}

async fn more_locations_than_image_location_quota_is_413(app: TestApp) {
    let id = uploaded(&app).await;
    for name in ["a", "b"] {
        assert_eq!(app.patch(&id, &add(&external(&app, name, DATA))).await.status(), 200);
    }
    let before = show(&app, &id).await;
    let message = refusal(app.patch(&id, &add(&external(&app, "c", DATA))).await, 413).await;
    assert_eq!(
        message,
        "The limit has been exceeded on the number of allowed image locations. Attempted: 4, Maximum: 3"
    );
    unchanged(&app, &id, &before).await;
}

async fn replacing_keeps_the_urls_and_changes_their_metadata(app: TestApp) {
    let id = queued(&app).await;
    let url = external(&app, "external.img", DATA);
    let first = json!([{"op": "replace", "path": "/locations", "value": [{"url": url, "metadata": {}}]}]);
    assert_eq!(app.patch(&id, &first).await.status(), 200);
    assert_eq!(show(&app, &id).await["status"], "active");
    let again = json!([{"op": "replace", "path": "/locations", "value": [{"url": url, "metadata": {"tier": "gold"}}]}]);
    let response = app.patch(&id, &again).await;
    assert_eq!(response.status(), 200);
    assert_eq!(show(&app, &id).await["locations"], json!([{"url": url, "metadata": {"tier": "gold"}}]));
    assert_eq!(download(&app, &id).await, DATA);
}

async fn replacing_with_other_urls_or_nothing_is_refused(app: TestApp) {
    let id = uploaded(&app).await;
    let before = show(&app, &id).await;
    let other = external(&app, "other.img", DATA);
    let ops = json!([{"op": "replace", "path": "/locations", "value": [{"url": other, "metadata": {}}]}]);
    let message = refusal(app.patch(&id, &ops).await, 400).await;
    assert!(message.starts_with("Original locations is not empty"), "{message}");
    let empty = json!([{"op": "replace", "path": "/locations", "value": []}]);
    assert_eq!(refusal(app.patch(&id, &empty).await, 403).await, "Cannot set locations to empty list.");
    unchanged(&app, &id, &before).await;
}

async fn removing_a_location_forgets_it_and_removes_its_data(app: TestApp) {
    let id = uploaded(&app).await;
    let url = external(&app, "copy.img", DATA);
    assert_eq!(app.patch(&id, &add(&url)).await.status(), 200);
    let kept = urls(&app, &id).await[0].clone();
    let response = app.patch(&id, &json!([{"op": "remove", "path": "/locations/1"}])).await;
    assert_eq!(response.status(), 200);
    assert_eq!(urls(&app, &id).await, [kept]);
    // Glance deletes the data of a removed location from its store.
    assert!(!app.store_path.join("copy.img").exists());
    assert_eq!(download(&app, &id).await, DATA);
}

async fn the_last_location_of_an_active_image_cannot_be_removed(app: TestApp) {
    let id = uploaded(&app).await;
    let before = show(&app, &id).await;
    let remove = json!([{"op": "remove", "path": "/locations/0"}]);
    assert_eq!(refusal(app.patch(&id, &remove).await, 403).await, "Cannot remove last location in the image.");
    unchanged(&app, &id, &before).await;
    assert_eq!(download(&app, &id).await, DATA);
}

async fn location_changes_follow_their_policies(app: TestApp) {
    let owner = app.as_project("p1", "member,reader");
    let id = queued(&owner).await;
    let url = external(&app, "external.img", DATA);
    // `set_image_location`: admin or a member of the owning project.
    let reader = app.as_project("p1", "reader");
    let message = refusal(reader.patch(&id, &add(&url)).await, 403).await;
    assert_eq!(message, "You are not authorized to complete set_image_location action.");
    assert_eq!(owner.patch(&id, &add(&url)).await.status(), 200);
    assert_eq!(app.patch(&id, &add(&external(&app, "copy.img", DATA))).await.status(), 200);
    // `delete_image_location`: admins only.
    let before = show(&app, &id).await;
    let remove = json!([{"op": "remove", "path": "/locations/1"}]);
    let message = refusal(owner.patch(&id, &remove).await, 403).await;
    assert_eq!(message, "You are not authorized to complete delete_image_location action.");
    unchanged(&app, &id, &before).await;
    assert_eq!(app.patch(&id, &remove).await.status(), 200);
}

/// Asserts `url` is refused as a location of a queued image, which stays as it was.
async fn refused(app: &TestApp, url: &str) {
    let id = queued(app).await;
    let before = show(app, &id).await;
    let message = refusal(app.patch(&id, &add(url)).await, 400).await;
    assert_eq!(message, "Invalid location", "{url}");
    unchanged(app, &id, &before).await;
    assert_eq!(app.get(&format!("/v2/images/{id}/file")).await.status(), 204);
}

async fn file_urls_outside_the_store_directory_are_invalid(app: TestApp) {
    for url in [
        "file:///etc/passwd".to_owned(),
        format!("file://{}/../etc/passwd", app.store_path.display()),
        format!("file://{}/missing.img", app.store_path.display()),
        format!("file://{}", app.store_path.display()),
    ] {
        refused(&app, &url).await;
    }
    std::fs::create_dir(app.store_path.join("sub")).expect("mkdir");
    refused(&app, &external(&app, "sub/nested.img", DATA)).await;
    refused(&app, &external(&app, "empty.img", b"")).await;
}

async fn a_symlink_in_the_store_directory_is_an_invalid_location(app: TestApp) {
    let link = app.store_path.join("passwd");
    std::os::unix::fs::symlink("/etc/passwd", &link).expect("symlink");
    refused(&app, &format!("file://{}", link.display())).await;
}

async fn another_images_data_is_an_invalid_location(app: TestApp) {
    let owner = app.as_project("p1", "member,reader");
    let private = uploaded(&owner).await;
    let thief = app.as_project("p2", "member,reader");
    // The file Glint wrote for another project's private image.
    refused(&thief, &format!("file://{}", app.store_path.join(&private).display())).await;
    // A file already some image's location, whose data removing it elsewhere would delete.
    let url = external(&app, "shared.img", DATA);
    let first = queued(&owner).await;
    assert_eq!(owner.patch(&first, &add(&url)).await.status(), 200);
    refused(&thief, &url).await;
}

async fn urls_of_no_configured_store_are_invalid(app: TestApp) {
    // No http store is configured, no S3 store either.
    for url in [
        "http://93.184.216.34/image.img",
        "https://example.org/image.img",
        "s3://bucket/image",
        "ftp://x/y",
        "nonsense",
    ] {
        refused(&app, url).await;
    }
}
