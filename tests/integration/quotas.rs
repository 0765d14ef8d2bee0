//! Per-project quotas: /v2/info/usage and the 413s of create, upload, stage and import.

use glint_core::config::{Config, LimitOverrides};
use reqwest::Method;
use serde_json::json;

use crate::image_data::payload;
use crate::support::{TestApp, expect_error, on_every_database};

on_every_database!(usage_is_empty_when_quotas_are_off);
on_every_database!(config = limited;
    usage_reports_every_limit_and_what_the_project_uses,
    creating_beyond_image_count_total_is_413,
    uploading_beyond_image_size_total_is_413_and_leaves_the_image_queued,
    staging_beyond_image_stage_total_is_413,
    an_announced_image_size_over_the_quota_is_413_before_any_byte,
    per_project_overrides_replace_only_the_limits_they_name,
);
on_every_database!(config = no_uploads; uploads_stages_and_imports_beyond_image_count_uploading_are_413);

fn limited(config: &mut Config) {
    config.quotas.enabled = true;
    config.quotas.default.image_count_total = 2;
    config.quotas.default.image_size_total = 3;
    config.quotas.default.image_stage_total = 1;
    config.quotas.projects.insert("big".into(), LimitOverrides { image_count_total: Some(3), ..Default::default() });
}

fn no_uploads(config: &mut Config) {
    config.quotas.enabled = true;
    config.quotas.default.image_count_uploading = 0;
}

async fn image(app: &TestApp) -> String {
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    image["id"].as_str().expect("id").to_owned()
}

async fn send(app: &TestApp, id: &str, target: &str, data: Vec<u8>) -> reqwest::Response {
    app.request(Method::PUT, &format!("/v2/images/{id}/{target}"))
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .expect("send data")
}

async fn usage_is_empty_when_quotas_are_off(app: TestApp) {
    assert_eq!(app.as_project("p1", "member").get_json("/v2/info/usage").await, json!({"usage": {}}));
}

async fn usage_reports_every_limit_and_what_the_project_uses(app: TestApp) {
    let p1 = app.as_project("p1", "member");
    let uploaded = image(&p1).await;
    assert_eq!(send(&p1, &uploaded, "file", payload(2 << 20)).await.status(), 204);
    let staged = image(&p1).await;
    assert_eq!(send(&p1, &staged, "stage", payload(1000)).await.status(), 204);
    let usage = p1.get_json("/v2/info/usage").await;
    assert_eq!(
        usage,
        json!({"usage": {
            "image_size_total": {"limit": 3, "usage": 2},
            "image_stage_total": {"limit": 1, "usage": 1},
            "image_count_total": {"limit": 2, "usage": 2},
            "image_count_uploading": {"limit": 10, "usage": 1},
        }})
    );
    assert_eq!(
        app.as_project("p2", "member").get_json("/v2/info/usage").await["usage"]["image_count_total"]["usage"],
        0
    );
}

async fn creating_beyond_image_count_total_is_413(app: TestApp) {
    let p1 = app.as_project("p1", "member");
    image(&p1).await;
    image(&p1).await;
    let refused = p1.post_json("/v2/images", &json!({"name": "third"})).await;
    let message = expect_error(refused, 413).await;
    assert!(message.contains("image_count_total"), "{message}");
    assert_eq!(p1.list_ids("").await.len(), 2);
    image(&app.as_project("p2", "member")).await;
}

async fn uploading_beyond_image_size_total_is_413_and_leaves_the_image_queued(app: TestApp) {
    let p1 = app.as_project("p1", "member");
    let id = image(&p1).await;
    let message = expect_error(send(&p1, &id, "file", payload(4 << 20)).await, 413).await;
    assert!(message.contains("image_size_total"), "{message}");
    assert_eq!(p1.get_json(&format!("/v2/images/{id}")).await["status"], "queued");
    assert_eq!(send(&p1, &id, "file", payload(3 << 20)).await.status(), 204);
    let other = image(&p1).await;
    expect_error(send(&p1, &other, "file", payload(1 << 20)).await, 413).await;
}

/// `x-openstack-image-size` is what the quota check counts, before the body is read: a body
/// that is small (and would be a size mismatch, 400) never gets that far.
async fn an_announced_image_size_over_the_quota_is_413_before_any_byte(app: TestApp) {
    let p1 = app.as_project("p1", "member");
    for (target, resource) in [("file", "image_size_total"), ("stage", "image_stage_total")] {
        let id = image(&p1).await;
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x"))]);
        let response = p1
            .request(Method::PUT, &format!("/v2/images/{id}/{target}"))
            .header("Content-Type", "application/octet-stream")
            .header("x-openstack-image-size", (4u64 << 20).to_string())
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .expect("send data");
        let message = expect_error(response, 413).await;
        assert!(message.contains(resource), "{target}: {message}");
        let image = p1.get_json(&format!("/v2/images/{id}")).await;
        assert_eq!((image["status"].as_str(), image["size"].as_i64()), (Some("queued"), None), "{target}");
    }
    assert!(crate::support::store_listing(&app).is_empty());
}

async fn staging_beyond_image_stage_total_is_413(app: TestApp) {
    let p1 = app.as_project("p1", "member");
    let id = image(&p1).await;
    let message = expect_error(send(&p1, &id, "stage", payload(2 << 20)).await, 413).await;
    assert!(message.contains("image_stage_total"), "{message}");
    assert_eq!(p1.get_json(&format!("/v2/images/{id}")).await["status"], "queued");
}

async fn per_project_overrides_replace_only_the_limits_they_name(app: TestApp) {
    let big = app.as_project("big", "member");
    for _ in 0..3 {
        image(&big).await;
    }
    expect_error(big.post_json("/v2/images", &json!({})).await, 413).await;
    let usage = big.get_json("/v2/info/usage").await;
    assert_eq!(usage["usage"]["image_count_total"], json!({"limit": 3, "usage": 3}));
    assert_eq!(usage["usage"]["image_size_total"]["limit"], 3, "not overridden: the default");
}

async fn uploads_stages_and_imports_beyond_image_count_uploading_are_413(app: TestApp) {
    let p1 = app.as_project("p1", "member");
    let id = image(&p1).await;
    expect_error(send(&p1, &id, "file", payload(10)).await, 413).await;
    expect_error(send(&p1, &id, "stage", payload(10)).await, 413).await;
    let body = json!({"method": {"name": "web-download", "uri": "http://example.org/image"}});
    expect_error(p1.post_json(&format!("/v2/images/{id}/import"), &body).await, 413).await;
    assert_eq!(send(&app, &image(&app).await, "file", payload(10)).await.status(), 204, "no project, no quota");
}
