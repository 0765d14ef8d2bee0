//! Interoperable import: PUT /stage, POST /import (glance-direct, web-download, copy-image),
//! GET /v2/info/import, legacy POST /v2/tasks, run by the in-process worker.

use std::time::Duration;

use glint_core::config::{BackendConfig, Config};
use reqwest::Method;
use serde_json::{Value, json};

use crate::image_data::{coreutils_digests, format_match_not_required, image_of, payload, qemu_image};
use crate::support::rows::set_columns;
use crate::support::web::{Reply, WebServer};
use crate::support::{TestApp, expect_error, on_every_database, store_listing};

on_every_database!(
    stage_moves_the_image_to_uploading_and_records_the_size,
    stage_twice_is_409,
    stage_with_a_size_mismatch_is_400_and_leaves_nothing,
    stage_of_an_image_without_glance_direct_enabled_is_404,
    glance_direct_import_makes_the_image_active_with_digests_and_virtual_size,
    glance_direct_of_data_that_is_not_the_declared_format_fails_and_requeues,
    glance_direct_of_qcow2_with_a_backing_file_fails_and_requeues,
    glance_direct_before_staging_is_409,
    import_of_an_active_image_is_409,
    import_with_unknown_or_missing_method_is_400,
    import_by_a_reader_is_403,
    deleting_a_staged_image_removes_the_staged_data,
    info_import_lists_the_enabled_methods,
    staging_abandoned_by_a_dead_process_is_recovered,
    staged_data_no_image_needs_is_swept_and_data_waiting_for_its_import_stays,
    glance_direct_links_the_staged_file_into_the_store_with_the_digests_taken_while_staging,
    a_staged_file_changed_behind_glints_back_is_hashed_again_before_it_becomes_active,
);

on_every_database!(config = web_allowed;
    web_download_import_fetches_the_url,
    web_download_of_a_missing_url_fails_the_task_and_requeues,
    web_download_following_a_redirect_to_a_refused_port_fails,
    legacy_import_task_creates_and_fills_an_image,
    legacy_import_task_with_a_bad_url_is_400,
    legacy_import_task_failure_deletes_its_image,
);

on_every_database!(config = format_match_not_required;
    glance_direct_of_data_that_is_not_the_declared_format_is_imported_without_a_virtual_size_when_no_match_is_required,
    glance_direct_of_qcow2_with_a_backing_file_fails_even_when_no_match_is_required,
);
on_every_database!(config = web_default; web_download_to_loopback_is_refused_by_default);
on_every_database!(config = web_any_port;
    web_download_to_ipv6_forms_carrying_loopback_is_refused_without_connecting,
);
on_every_database!(config = impatient; web_download_of_a_stalling_server_fails_after_the_retries);
on_every_database!(config = web_allowed;
    a_slow_server_holds_only_its_projects_share_of_workers,
);
on_every_database!(config = converting; imports_are_converted_when_configured);
on_every_database!(config = converting_web; web_download_of_vmdk_and_vhdx_is_converted_to_raw);
on_every_database!(config = two_stores; copy_image_adds_a_store_and_rejects_a_store_already_holding_it);
on_every_database!(config = small_cap; stage_over_the_cap_is_413_and_leaves_nothing);

pub(crate) fn web_allowed(config: &mut Config) {
    config.import.filtering.allow_private_addresses = true;
    config.import.filtering.allowed_ports = Vec::new();
    config.import.filtering.disallowed_ports = vec![1];
}

fn web_default(_config: &mut Config) {}

/// The default address filter, without the port rule (so that only the address decides).
fn web_any_port(config: &mut Config) {
    config.import.filtering.allowed_ports = Vec::new();
}

fn impatient(config: &mut Config) {
    web_allowed(config);
    config.import.filtering.read_timeout = 1;
    config.tasks.max_attempts = 2;
}

pub(crate) fn converting(config: &mut Config) {
    config.import.conversion_output_format = Some("raw".into());
}

fn converting_web(config: &mut Config) {
    web_allowed(config);
    converting(config);
}

fn small_cap(config: &mut Config) {
    config.images.image_size_cap = 1024;
}

fn two_stores(config: &mut Config) {
    let dir = |name: &str| {
        let path = std::env::temp_dir().join(format!("glint-copy-{name}-{}", uuid::Uuid::new_v4().simple()));
        BackendConfig::Filesystem { path, description: None }
    };
    config.storage.default = "fast".into();
    config.storage.backends = [("fast".to_owned(), dir("fast")), ("cheap".to_owned(), dir("cheap"))].into();
}

pub(crate) async fn stage(app: &TestApp, id: &str, data: Vec<u8>) -> reqwest::Response {
    app.request(Method::PUT, &format!("/v2/images/{id}/stage"))
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .expect("stage")
}

pub(crate) async fn import(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.post_json(&format!("/v2/images/{id}/import"), &body).await
}

pub(crate) async fn show(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v2/images/{id}")).await
}

/// Waits until every task of the image has finished; returns them.
async fn settled(app: &TestApp, id: &str) -> Vec<Value> {
    for _ in 0..300 {
        let tasks = app.get_json(&format!("/v2/images/{id}/tasks")).await;
        let tasks = tasks["tasks"].as_array().cloned().unwrap_or_default();
        if !tasks.is_empty() && tasks.iter().all(|t| matches!(t["status"].as_str(), Some("success" | "failure"))) {
            return tasks;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the import of {id} did not finish: {}", app.get_json(&format!("/v2/images/{id}/tasks")).await);
}

/// Waits for the image's one import task to finish; returns it.
pub(crate) async fn finished_task(app: &TestApp, id: &str) -> Value {
    let mut tasks = settled(app, id).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    tasks.remove(0)
}

/// Waits (5 s at most) for the staging area to be empty: a worker clears it just after the
/// task's final commit, which the test may see first.
pub(crate) async fn staging_emptied(app: &TestApp) {
    for _ in 0..50 {
        if staged(app).is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("staging still holds {:?}", staged(app));
}

pub(crate) fn staged(app: &TestApp) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&app.staging_path)
        .expect("staging dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn stage_moves_the_image_to_uploading_and_records_the_size(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(stage(&app, &id, payload(3000)).await.status(), 204);
    let image = show(&app, &id).await;
    assert_eq!((image["status"].as_str(), image["size"].as_i64()), (Some("uploading"), Some(3000)));
    assert!(image["checksum"].is_null(), "staging computes no digests: {image}");
    assert_eq!(staged(&app), [id.clone(), format!("{id}.staged")], "the data and the record of its digests");
}

async fn stage_with_a_size_mismatch_is_400_and_leaves_nothing(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    let response = app
        .request(Method::PUT, &format!("/v2/images/{id}/stage"))
        .header("Content-Type", "application/octet-stream")
        .header("x-openstack-image-size", "3001")
        .body(payload(3000))
        .send()
        .await
        .expect("stage");
    let message = expect_error(response, 400).await;
    assert!(message.contains("Size mismatch: expected 3001 bytes, got 3000 bytes"), "{message}");
    let image = show(&app, &id).await;
    assert_eq!((image["status"].as_str(), image["size"].as_i64()), (Some("queued"), None));
    staging_emptied(&app).await;
    assert_eq!(stage(&app, &id, payload(3000)).await.status(), 204, "the image can be staged again");
}

async fn stage_twice_is_409(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(stage(&app, &id, payload(10)).await.status(), 204);
    expect_error(stage(&app, &id, payload(10)).await, 409).await;
    assert_eq!(show(&app, &id).await["size"], 10);
}

async fn stage_of_an_image_without_glance_direct_enabled_is_404(_app: TestApp) {
    let Some(app) = TestApp::spawn_with(crate::support::Backend::Sqlite, |c| {
        c.import.enabled_import_methods = vec!["web-download".into()];
    })
    .await
    else {
        return;
    };
    let id = image_of(&app, "raw", "bare").await;
    expect_error(stage(&app, &id, payload(10)).await, 404).await;
    let message = expect_error(import(&app, &id, json!({"method": {"name": "glance-direct"}})).await, 400).await;
    assert!(message.contains("Unknown import method name 'glance-direct'"), "{message}");
    assert_eq!(app.get_json("/v2/info/import").await["import-methods"]["value"], json!(["web-download"]));
}

async fn stage_over_the_cap_is_413_and_leaves_nothing(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    expect_error(stage(&app, &id, payload(2000)).await, 413).await;
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image["size"].is_null());
    staging_emptied(&app).await;
}

async fn staging_abandoned_by_a_dead_process_is_recovered(app: TestApp) {
    let abandoned = image_of(&app, "raw", "bare").await;
    let waiting = image_of(&app, "raw", "bare").await;
    assert_eq!(stage(&app, &waiting, payload(10)).await.status(), 204);
    // The first died mid-staging an hour ago; the second was staged in full long ago and
    // waits for its import.
    for id in [&abandoned, &waiting] {
        set_columns(&app, id, "status = 'uploading', updated_at = '2020-01-01 00:00:00'").await;
    }
    let part = app.staging_path.join(format!(".{abandoned}.0123.part"));
    std::fs::write(&part, b"half").expect("part file");
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&part).and_then(|f| f.set_modified(hour_ago)).expect("age");
    app.recover_abandoned_uploads().await;
    assert_eq!(show(&app, &abandoned).await["status"], "queued");
    assert_eq!(show(&app, &waiting).await["status"], "uploading");
    assert_eq!(staged(&app), [waiting.clone(), format!("{waiting}.staged")]);
    assert_eq!(import(&app, &waiting, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    assert_eq!(finished_task(&app, &waiting).await["status"], "success");
}

async fn staged_data_no_image_needs_is_swept_and_data_waiting_for_its_import_stays(app: TestApp) {
    // Staged long ago and waiting for its import, however long: needed.
    let waiting = image_of(&app, "raw", "bare").await;
    assert_eq!(stage(&app, &waiting, payload(10)).await.status(), 204);
    // An import under way (its download and conversion): needed.
    let importing = image_of(&app, "raw", "bare").await;
    set_columns(&app, &importing, "status = 'importing'").await;
    // Leftovers of processes that died before their clean-up: an import that ended, images
    // deleted, an image that never existed; and one written a moment ago, maybe by a flow
    // that is about to record its image.
    let (active, deleted, fresh) =
        (image_of(&app, "raw", "bare").await, image_of(&app, "raw", "bare").await, image_of(&app, "raw", "bare").await);
    set_columns(&app, &active, "status = 'active'").await;
    for id in [&deleted, &fresh] {
        assert_eq!(app.delete(&format!("/v2/images/{id}")).await.status(), 204);
    }
    let unknown = "aaaaaaaa-0000-4000-8000-00000000dead";
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for name in [
        importing.clone(),
        format!("{importing}.raw"),
        active.clone(),
        format!("{active}.qcow2"),
        deleted.clone(),
        unknown.to_owned(),
        fresh.clone(),
        waiting.clone(),
    ] {
        let path = app.staging_path.join(&name);
        if !path.exists() {
            std::fs::write(&path, b"staged").expect("staged file");
        }
        if name != fresh {
            std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(hour_ago)).expect("age");
        }
    }
    app.recover_abandoned_uploads().await;
    let mut kept =
        vec![waiting.clone(), format!("{waiting}.staged"), importing.clone(), format!("{importing}.raw"), fresh];
    kept.sort();
    assert_eq!(staged(&app), kept);
    assert_eq!(import(&app, &waiting, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    assert_eq!(finished_task(&app, &waiting).await["status"], "success");
}

async fn glance_direct_import_makes_the_image_active_with_digests_and_virtual_size(app: TestApp) {
    let data = qemu_image(&["-f", "qcow2"]);
    let id = image_of(&app, "qcow2", "bare").await;
    assert_eq!(stage(&app, &id, data.clone()).await.status(), 204);
    assert_eq!(import(&app, &id, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(task["type"], "api_image_import");
    assert_eq!(task["result"], json!({"image_id": id}));
    assert_eq!(task["input"]["import_req"]["method"]["name"], "glance-direct");
    let image = show(&app, &id).await;
    let (md5, sha512) = coreutils_digests(&data);
    assert_eq!(image["status"], "active");
    assert_eq!(
        (image["checksum"].as_str(), image["os_hash_value"].as_str()),
        (Some(md5.as_str()), Some(sha512.as_str()))
    );
    assert_eq!((image["size"].as_u64(), image["virtual_size"].as_u64()), (Some(data.len() as u64), Some(10 << 20)));
    assert!(image.get("os_glance_import_task").is_none(), "the lock is released: {image}");
    assert_eq!(image["os_glance_importing_to_stores"], "");
    assert_eq!(image["os_glance_failed_import"], "");
    assert!(staged(&app).is_empty(), "staged data is removed: {:?}", staged(&app));
    let downloaded = app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body");
    assert_eq!(downloaded.as_ref(), &data[..]);
}

async fn glance_direct_links_the_staged_file_into_the_store_with_the_digests_taken_while_staging(app: TestApp) {
    use std::os::unix::fs::MetadataExt;
    let data = payload(3 << 20);
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(stage(&app, &id, data.clone()).await.status(), 204);
    let staged_inode = std::fs::metadata(app.staging_path.join(&id)).expect("staged file").ino();
    assert_eq!(import(&app, &id, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    assert_eq!(finished_task(&app, &id).await["status"], "success");
    let image = show(&app, &id).await;
    let (md5, sha512) = coreutils_digests(&data);
    assert_eq!(image["status"], "active");
    assert_eq!(
        (image["checksum"].as_str(), image["os_hash_value"].as_str(), image["size"].as_u64()),
        (Some(md5.as_str()), Some(sha512.as_str()), Some(data.len() as u64))
    );
    let stored = std::fs::metadata(app.store_path.join(&id)).expect("stored file");
    assert_eq!(stored.ino(), staged_inode, "the staged file itself is the stored one, not a copy");
    staging_emptied(&app).await;
    assert_eq!(stored.nlink(), 1, "nothing links it from the staging area any more");
    let downloaded = app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body");
    assert!(downloaded.as_ref() == &data[..], "downloaded bytes differ");
}

async fn a_staged_file_changed_behind_glints_back_is_hashed_again_before_it_becomes_active(app: TestApp) {
    use std::os::unix::fs::FileExt;
    let mut data = payload(3 << 20);
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(stage(&app, &id, data.clone()).await.status(), 204);
    // Same size, other bytes, and the modification time put back to the nanosecond: only
    // the change time, which cannot be set, tells.
    let path = app.staging_path.join(&id);
    let modified = std::fs::metadata(&path).expect("staged file").modified().expect("mtime");
    let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).expect("after the epoch");
    data[1 << 20..(1 << 20) + 4].copy_from_slice(b"evil");
    let file = std::fs::File::options().write(true).open(&path).expect("open the staged file");
    file.write_all_at(b"evil", 1 << 20).expect("write");
    drop(file);
    let stamp = format!("@{}.{:09}", since_epoch.as_secs(), since_epoch.subsec_nanos());
    let touched = std::process::Command::new("touch").args(["-d", &stamp]).arg(&path).status().expect("touch");
    assert!(touched.success());
    assert_eq!(std::fs::metadata(&path).expect("staged file").modified().expect("mtime"), modified);
    assert_eq!(import(&app, &id, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    assert_eq!(finished_task(&app, &id).await["status"], "success");
    let image = show(&app, &id).await;
    let (md5, sha512) = coreutils_digests(&data);
    assert_eq!(
        (image["checksum"].as_str(), image["os_hash_value"].as_str()),
        (Some(md5.as_str()), Some(sha512.as_str())),
        "the digests are of the bytes stored, not of those staged"
    );
    let downloaded = app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body");
    assert!(downloaded.as_ref() == &data[..], "downloaded bytes differ");
}

async fn glance_direct_of_data_that_is_not_the_declared_format_fails_and_requeues(app: TestApp) {
    let id = image_of(&app, "qcow2", "bare").await;
    assert_eq!(stage(&app, &id, payload(100_000)).await.status(), 204);
    assert_eq!(import(&app, &id, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "failure");
    let message = task["message"].as_str().unwrap_or_default();
    assert!(message.contains("qcow2") && message.contains("raw"), "the message says what was found: {message}");
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image["size"].is_null() && image["checksum"].is_null(), "{image}");
    assert!(image.get("os_glance_import_task").is_none(), "{image}");
    staging_emptied(&app).await;
    assert!(store_listing(&app).is_empty(), "{:?}", store_listing(&app));
    assert_eq!(stage(&app, &id, qemu_image(&["-f", "qcow2"])).await.status(), 204, "the import can be retried");
}

/// Stages `data` for a new `bare` image declared `disk_format` and imports it with
/// glance-direct; returns the image id and its finished task.
async fn glance_direct(app: &TestApp, disk_format: &str, data: Vec<u8>) -> (String, Value) {
    let id = image_of(app, disk_format, "bare").await;
    assert_eq!(stage(app, &id, data).await.status(), 204);
    assert_eq!(import(app, &id, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    let task = finished_task(app, &id).await;
    (id, task)
}

/// The image is back to `queued` with nothing recorded, staged or stored.
async fn assert_requeued_with_nothing_left(app: &TestApp, id: &str) {
    let image = show(app, id).await;
    assert_eq!(image["status"], "queued", "{image}");
    assert!(image["size"].is_null() && image["checksum"].is_null(), "{image}");
    assert!(image.get("os_glance_import_task").is_none(), "{image}");
    staging_emptied(app).await;
    assert!(store_listing(app).is_empty(), "{:?}", store_listing(app));
}

async fn glance_direct_of_qcow2_with_a_backing_file_fails_and_requeues(app: TestApp) {
    let (id, task) =
        glance_direct(&app, "qcow2", qemu_image(&["-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2"])).await;
    assert_eq!(task["status"], "failure");
    assert!(task["message"].as_str().unwrap_or_default().contains("backing"), "{task}");
    assert_requeued_with_nothing_left(&app, &id).await;
}

async fn glance_direct_of_data_that_is_not_the_declared_format_is_imported_without_a_virtual_size_when_no_match_is_required(
    app: TestApp,
) {
    let data = payload(100_000);
    let (md5, _) = coreutils_digests(&data);
    for declared in ["qcow2", "vmdk", "vhd"] {
        let (id, task) = glance_direct(&app, declared, data.clone()).await;
        assert_eq!(task["status"], "success", "{declared}: {task}");
        let image = show(&app, &id).await;
        assert_eq!(
            (image["status"].as_str(), image["disk_format"].as_str(), image["checksum"].as_str()),
            (Some("active"), Some(declared), Some(md5.as_str()))
        );
        assert!(image["virtual_size"].is_null(), "{image}");
        assert_eq!(app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("data"), data);
    }
    staging_emptied(&app).await;
}

async fn glance_direct_of_qcow2_with_a_backing_file_fails_even_when_no_match_is_required(app: TestApp) {
    let data = qemu_image(&["-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2"]);
    for declared in ["qcow2", "vmdk"] {
        let (id, task) = glance_direct(&app, declared, data.clone()).await;
        assert_eq!(task["status"], "failure", "{declared}: {task}");
        assert!(task["message"].as_str().unwrap_or_default().contains("backing"), "{declared}: {task}");
        assert_requeued_with_nothing_left(&app, &id).await;
    }
}

async fn glance_direct_before_staging_is_409(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    let message = expect_error(import(&app, &id, json!({"method": {"name": "glance-direct"}})).await, 409).await;
    assert!(message.contains("Image needs to be staged before 'glance-direct' method can be used"), "{message}");
    assert_eq!(show(&app, &id).await["status"], "queued");
}

async fn import_of_an_active_image_is_409(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    let uploaded = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(payload(10))
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 204);
    let body = json!({"method": {"name": "web-download", "uri": "http://example.org/x"}});
    let message = expect_error(import(&app, &id, body).await, 409).await;
    assert!(message.contains("Image with status active cannot be target for import"), "{message}");
}

async fn import_with_unknown_or_missing_method_is_400(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    let message = expect_error(import(&app, &id, json!({})).await, 400).await;
    assert!(message.contains("Import request requires a 'method' field."), "{message}");
    let message = expect_error(import(&app, &id, json!({"method": {"name": "floppy-disk"}})).await, 400).await;
    assert!(message.contains("Unknown import method name 'floppy-disk'."), "{message}");
    let missing = "/v2/images/00000000-0000-0000-0000-000000000000/import";
    expect_error(app.post_json(missing, &json!({"method": {"name": "glance-direct"}})).await, 404).await;
    assert_eq!(app.get_json(&format!("/v2/images/{id}/tasks")).await["tasks"], json!([]));
}

async fn import_by_a_reader_is_403(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let image = owner.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    let id = image["id"].as_str().expect("id");
    assert_eq!(stage(&owner, id, payload(10)).await.status(), 204);
    let reader = app.as_project("p1", "reader");
    expect_error(import(&reader, id, json!({"method": {"name": "glance-direct"}})).await, 403).await;
    expect_error(stage(&reader, id, payload(10)).await, 403).await;
    let stranger = app.as_project("p2", "member");
    expect_error(import(&stranger, id, json!({"method": {"name": "glance-direct"}})).await, 404).await;
    assert_eq!(show(&app, id).await["status"], "uploading");
}

async fn deleting_a_staged_image_removes_the_staged_data(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(stage(&app, &id, payload(10)).await.status(), 204);
    assert_eq!(app.delete(&format!("/v2/images/{id}")).await.status(), 204);
    staging_emptied(&app).await;
}

async fn info_import_lists_the_enabled_methods(app: TestApp) {
    let info = app.get_json("/v2/info/import").await;
    assert_eq!(
        info,
        json!({"import-methods": {"description": "Import methods available.", "type": "array",
                                  "value": ["glance-direct", "web-download", "copy-image"]}})
    );
}

async fn web_download_import_fetches_the_url(app: TestApp) {
    let data = qemu_image(&["-f", "qcow2"]);
    let web = WebServer::start().await;
    let url = web.route("/cirros.qcow2", Reply::Bytes(data.clone()));
    let id = image_of(&app, "qcow2", "bare").await;
    assert_eq!(import(&app, &id, json!({"method": {"name": "web-download", "uri": url}})).await.status(), 202);
    assert_eq!(show(&app, &id).await["status"].as_str().map(|s| s == "importing" || s == "active"), Some(true));
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "success", "{task}");
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["checksum"].as_str(), Some(coreutils_digests(&data).0.as_str()));
    assert_eq!(image["virtual_size"], 10 << 20);
    assert!(staged(&app).is_empty(), "a single-store download streams past the staging area");
}

async fn web_download_to_loopback_is_refused_by_default(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/x", Reply::Bytes(payload(10)));
    let id = image_of(&app, "raw", "bare").await;
    let message =
        expect_error(import(&app, &id, json!({"method": {"name": "web-download", "uri": url}})).await, 400).await;
    assert!(message.contains("URI for web-download does not pass filtering"), "{message}");
    for refused in
        ["file:///etc/passwd", "http://169.254.169.254/latest/meta-data/", "http://2130706433/", "http://localhost/x"]
    {
        let body = json!({"method": {"name": "web-download", "uri": refused}});
        expect_error(import(&app, &id, body).await, 400).await;
    }
    assert_eq!(show(&app, &id).await["status"], "queued");
    assert_eq!(app.get_json(&format!("/v2/images/{id}/tasks")).await["tasks"], json!([]));
}

async fn web_download_to_ipv6_forms_carrying_loopback_is_refused_without_connecting(app: TestApp) {
    let web = WebServer::start().await;
    web.route("/x", Reply::Bytes(payload(10)));
    let port = web.port();
    let id = image_of(&app, "raw", "bare").await;
    for host in [
        "[::ffff:127.0.0.1]",
        "[::ffff:0:127.0.0.1]",
        "[::127.0.0.1]",
        "[64:ff9b::127.0.0.1]",
        "[64:ff9b:1::7f00:1]",
        "[2002:7f00:1::1]",
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
        "192.0.0.170",
    ] {
        let url = format!("http://{host}:{port}/x");
        let body = json!({"method": {"name": "web-download", "uri": url}});
        let message = expect_error(import(&app, &id, body).await, 400).await;
        assert!(message.contains("URI for web-download does not pass filtering"), "{url}: {message}");
        let legacy = json!({"type": "import", "input": {"import_from": url, "import_from_format": "raw",
                            "image_properties": {"disk_format": "raw", "container_format": "bare"}}});
        expect_error(create_task(&app, legacy).await, 400).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(web.connections(), 0, "a refused URL was connected to");
    assert_eq!(show(&app, &id).await["status"], "queued");
    assert_eq!(app.get_json(&format!("/v2/images/{id}/tasks")).await["tasks"], json!([]));
}

async fn a_slow_server_holds_only_its_projects_share_of_workers(app: TestApp) {
    let web = WebServer::start().await;
    let slow = web.route("/slow", Reply::Trickle(10_000));
    let fast = web.route("/fast", Reply::Bytes(payload(4096)));
    let greedy = app.as_project("greedy", "member");
    let mut hogs = Vec::new();
    for _ in 0..4 {
        let id = image_of(&greedy, "raw", "bare").await;
        assert_eq!(import(&greedy, &id, json!({"method": {"name": "web-download", "uri": slow}})).await.status(), 202);
        hogs.push(id);
    }
    // Let the four reach the worker (four places by default) before the victim comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = app.as_project("victim", "member");
    let id = image_of(&victim, "raw", "bare").await;
    let started = std::time::Instant::now();
    assert_eq!(import(&victim, &id, json!({"method": {"name": "web-download", "uri": fast}})).await.status(), 202);
    assert_eq!(finished_task(&victim, &id).await["status"], "success");
    assert!(started.elapsed() < Duration::from_secs(3), "the victim waited {:?}", started.elapsed());
    let mut statuses = Vec::new();
    for hog in &hogs {
        let tasks = greedy.get_json(&format!("/v2/images/{hog}/tasks")).await;
        statuses.push(tasks["tasks"][0]["status"].as_str().unwrap_or_default().to_owned());
    }
    statuses.sort();
    assert_eq!(statuses, ["pending", "pending", "processing", "processing"], "two run, two queue behind them");
}

async fn web_download_of_a_missing_url_fails_the_task_and_requeues(app: TestApp) {
    let web = WebServer::start().await;
    let id = image_of(&app, "raw", "bare").await;
    let url = format!("{}/missing", web.base);
    assert_eq!(import(&app, &id, json!({"method": {"name": "web-download", "uri": url}})).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "failure");
    assert!(task["message"].as_str().unwrap_or_default().contains("404"), "{task}");
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image.get("os_glance_import_task").is_none());
    assert!(store_listing(&app).is_empty());
    let web_ok = web.route("/now", Reply::Bytes(payload(50)));
    assert_eq!(import(&app, &id, json!({"method": {"name": "web-download", "uri": web_ok}})).await.status(), 202);
    let outcomes: Vec<Value> = settled(&app, &id).await.iter().map(|t| t["status"].clone()).collect();
    assert!(outcomes.contains(&json!("success")) && outcomes.len() == 2, "the import can be retried: {outcomes:?}");
    assert_eq!(show(&app, &id).await["status"], "active");
}

async fn web_download_following_a_redirect_to_a_refused_port_fails(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/hop", Reply::Redirect("http://127.0.0.1:1/secret".into()));
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(import(&app, &id, json!({"method": {"name": "web-download", "uri": url}})).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "failure");
    assert!(task["message"].as_str().unwrap_or_default().contains("127.0.0.1:1"), "{task}");
    assert_eq!(show(&app, &id).await["status"], "queued");
}

async fn imports_are_converted_when_configured(app: TestApp) {
    let data = qemu_image(&["-f", "qcow2"]);
    let id = image_of(&app, "qcow2", "bare").await;
    assert_eq!(stage(&app, &id, data).await.status(), 204);
    assert_eq!(import(&app, &id, json!({"method": {"name": "glance-direct"}})).await.status(), 202);
    assert_eq!(finished_task(&app, &id).await["status"], "success");
    let image = show(&app, &id).await;
    assert_eq!((image["disk_format"].as_str(), image["container_format"].as_str()), (Some("raw"), Some("bare")));
    assert_eq!((image["size"].as_u64(), image["virtual_size"].as_u64()), (Some(10 << 20), Some(10 << 20)));
    let zeros = vec![0u8; 10 << 20];
    assert_eq!(image["checksum"].as_str(), Some(coreutils_digests(&zeros).0.as_str()));
    let stored = std::fs::metadata(app.store_path.join(&id)).expect("stored file");
    assert_eq!(std::os::unix::fs::MetadataExt::blocks(&stored), 0, "a disk of zeros is stored as a hole");
    staging_emptied(&app).await;
}

/// A vmdk (streamOptimized) and a vhdx with data, made by qemu-img, and their raw disks.
fn converted_pair(format: &str, options: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (plain, image, raw) = (dir.path().join("plain.raw"), dir.path().join("image"), dir.path().join("disk.raw"));
    let data: Vec<u8> = (0..3 << 20).map(|at: usize| (at % 251) as u8 | 1).collect();
    let mut disk = vec![0u8; 8 << 20];
    disk[(1 << 20)..(1 << 20) + data.len()].copy_from_slice(&data);
    std::fs::write(&plain, &disk).expect("write");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("qemu-img").args(args).status().expect("qemu-img");
        assert!(status.success(), "qemu-img {args:?}");
    };
    let (plain_s, image_s, raw_s) = (plain.to_str(), image.to_str(), raw.to_str());
    let (plain_s, image_s, raw_s) = (plain_s.expect("utf-8"), image_s.expect("utf-8"), raw_s.expect("utf-8"));
    run(&["convert", "-f", "raw", "-O", format, "-o", options, plain_s, image_s]);
    run(&["convert", "-f", format, "-O", "raw", image_s, raw_s]);
    (std::fs::read(&image).expect("image"), std::fs::read(&raw).expect("raw"))
}

async fn web_download_of_vmdk_and_vhdx_is_converted_to_raw(app: TestApp) {
    let web = WebServer::start().await;
    for (disk_format, qemu_format, options) in
        [("vmdk", "vmdk", "subformat=streamOptimized"), ("vhdx", "vhdx", "block_size=1M")]
    {
        let (image, raw) = converted_pair(qemu_format, options);
        let url = web.route(&format!("/disk.{disk_format}"), Reply::Bytes(image));
        let id = image_of(&app, disk_format, "bare").await;
        assert_eq!(import(&app, &id, json!({"method": {"name": "web-download", "uri": url}})).await.status(), 202);
        let task = finished_task(&app, &id).await;
        assert_eq!(task["status"], "success", "{task}");
        let shown = show(&app, &id).await;
        assert_eq!(shown["disk_format"], "raw", "{shown}");
        assert_eq!(shown["virtual_size"].as_u64(), Some(raw.len() as u64));
        assert_eq!(shown["checksum"].as_str(), Some(coreutils_digests(&raw).0.as_str()));
        let downloaded = app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body");
        assert!(downloaded.as_ref() == raw.as_slice(), "{disk_format}: the stored disk is qemu-img's raw");
    }
    staging_emptied(&app).await;
}

async fn copy_image_adds_a_store_and_rejects_a_store_already_holding_it(app: TestApp) {
    let id = image_of(&app, "raw", "bare").await;
    let uploaded = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(payload(5000))
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 204);
    assert_eq!(show(&app, &id).await["stores"], "fast");
    let copy = json!({"method": {"name": "copy-image"}, "stores": ["cheap"]});
    expect_error(import(&app.as_project("p1", "member"), &id, copy.clone()).await, 403).await;
    assert_eq!(import(&app, &id, copy.clone()).await.status(), 202);
    assert_eq!(finished_task(&app, &id).await["status"], "success");
    let image = show(&app, &id).await;
    assert_eq!((image["status"].as_str(), image["stores"].as_str()), (Some("active"), Some("cheap,fast")));
    let message = expect_error(import(&app, &id, copy).await, 400).await;
    assert!(message.contains("Image is already present at store 'cheap'"), "{message}");
    let unknown = json!({"method": {"name": "copy-image"}, "stores": ["nowhere"]});
    expect_error(import(&app, &id, unknown).await, 409).await;
    let downloaded = app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body");
    assert_eq!(downloaded.as_ref(), &payload(5000)[..]);
}

async fn create_task(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/v2/tasks", &body).await
}

async fn finished(app: &TestApp, task_id: &str) -> Value {
    for _ in 0..300 {
        let task = app.get_json(&format!("/v2/tasks/{task_id}")).await;
        if matches!(task["status"].as_str(), Some("success" | "failure")) {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {task_id} did not finish");
}

async fn legacy_import_task_creates_and_fills_an_image(app: TestApp) {
    let data = qemu_image(&["-f", "qcow2"]);
    let web = WebServer::start().await;
    let url = web.route("/legacy.qcow2", Reply::Bytes(data.clone()));
    let body = json!({"type": "import", "input": {"import_from": url, "import_from_format": "qcow2",
        "image_properties": {"disk_format": "qcow2", "container_format": "bare", "name": "legacy", "os_distro": "cirros"}}});
    let response = create_task(&app, body).await;
    assert_eq!(response.status(), 201);
    let location = response.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_owned);
    let task: Value = response.json().await.expect("task");
    assert_eq!((task["status"].as_str(), task["message"].as_str()), (Some("pending"), Some("")));
    assert!(task["result"].is_null());
    let task_id = task["id"].as_str().expect("id");
    assert!(location.is_some_and(|l| l.ends_with(&format!("/v2/tasks/{task_id}"))));
    let done = finished(&app, task_id).await;
    assert_eq!(done["status"], "success", "{done}");
    let image_id = done["result"]["image_id"].as_str().expect("image id");
    let image = show(&app, image_id).await;
    assert_eq!(
        (image["status"].as_str(), image["name"].as_str(), image["os_distro"].as_str()),
        (Some("active"), Some("legacy"), Some("cirros"))
    );
    assert_eq!(image["checksum"].as_str(), Some(coreutils_digests(&data).0.as_str()));
}

async fn legacy_import_task_with_a_bad_url_is_400(app: TestApp) {
    let task = |url: &str| {
        json!({"type": "import", "input": {"import_from": url, "import_from_format": "raw",
        "image_properties": {"disk_format": "raw", "container_format": "bare"}}})
    };
    let message = expect_error(create_task(&app, task("file:///etc/passwd")).await, 400).await;
    assert!(message.contains("File based imports are not allowed"), "{message}");
    expect_error(create_task(&app, task("ftp://example.org/x")).await, 400).await;
    expect_error(create_task(&app, json!({"input": {}})).await, 400).await;
    expect_error(create_task(&app, json!({"type": "reboot", "input": {}})).await, 400).await;
    expect_error(create_task(&app.as_project("p1", "member"), task("http://example.org/x")).await, 403).await;
    assert_eq!(app.get_json("/v2/tasks").await["tasks"], json!([]));
}

async fn legacy_import_task_failure_deletes_its_image(app: TestApp) {
    let web = WebServer::start().await;
    let url = format!("{}/gone", web.base);
    let body = json!({"type": "import", "input": {"import_from": url, "import_from_format": "raw",
        "image_properties": {"disk_format": "raw", "container_format": "bare", "name": "doomed"}}});
    let response = create_task(&app, body).await;
    assert_eq!(response.status(), 201);
    let task: Value = response.json().await.expect("task");
    let done = finished(&app, task["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "failure");
    assert!(done["message"].as_str().unwrap_or_default().contains("404"), "{done}");
    assert!(app.list_ids("").await.is_empty(), "the task's image is deleted");
    assert!(store_listing(&app).is_empty());
}

async fn web_download_of_a_stalling_server_fails_after_the_retries(app: TestApp) {
    let web = WebServer::start().await;
    let url = web.route("/slow", Reply::Stall(1000));
    let id = image_of(&app, "raw", "bare").await;
    assert_eq!(import(&app, &id, json!({"method": {"name": "web-download", "uri": url}})).await.status(), 202);
    let task = finished_task(&app, &id).await;
    assert_eq!(task["status"], "failure");
    assert!(task["message"].as_str().unwrap_or_default().contains("gave up after 2 attempts"), "{task}");
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "queued");
    assert!(image.get("os_glance_import_task").is_none(), "{image}");
    assert!(store_listing(&app).iter().all(|f| f.ends_with(".part")), "{:?}", store_listing(&app));
}
