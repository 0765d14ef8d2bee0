//! Snapshot ingestion exactly as Nova does it (docs/glance-v2-api.md §9.1 and §9.2).

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, on_every_database};

on_every_database!(
    image_backed_snapshot_ends_active_with_data_and_properties,
    volume_backed_snapshot_is_an_empty_raw_image
);

/// A request as Nova's glanceclient sends it: `Accept: */*`, its user agent, a global request id.
fn nova(app: &TestApp, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.raw(method, path)
        .header("Accept", "*/*")
        .header("User-Agent", "python-glanceclient")
        .header("X-OpenStack-Request-ID", "req-6b5d2f8e-1f0c-4a51-9a36-2f8c1c6d0001")
}

async fn json_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "{}", response.url());
    response.json().await.expect("json")
}

async fn image_backed_snapshot_ends_active_with_data_and_properties(app: TestApp) {
    let project = app.as_project("demo-project", "member,reader");
    let base =
        project.create_image(json!({"name": "cirros", "disk_format": "qcow2", "container_format": "bare"})).await;
    let instance = "9c2a7d4e-3f51-4b8a-9d6e-0f1e2d3c4b5a";

    // 1. nova-api creates the snapshot record, without formats.
    let created = nova(&project, Method::POST, "/v2/images")
        .json(&json!({
            "name": "snap1", "visibility": "private", "min_ram": 512, "min_disk": 1,
            "instance_uuid": instance, "user_id": "3f1b0000000000000000000000000001",
            "image_type": "snapshot", "base_image_ref": base["id"], "owner_project_name": "demo",
            "owner_user_name": "alice", "boot_roles": "member,reader", "hw_disk_bus": "virtio",
            "os_distro": "cirros"
        }))
        .send()
        .await
        .expect("create");
    let image = json_of(created, 201).await;
    let id = image["id"].as_str().expect("id").to_owned();
    assert_eq!(image["status"], "queued");

    // 2. nova-compute looks at it.
    json_of(nova(&project, Method::GET, &format!("/v2/images/{id}")).send().await.expect("get"), 200).await;

    // 3. ...sets the formats and its bookkeeping properties with a v2.1 patch...
    let patch = json!([
        {"op": "replace", "path": "/name", "value": "snap1"},
        {"op": "add", "path": "/disk_format", "value": "qcow2"},
        {"op": "add", "path": "/container_format", "value": "bare"},
        {"op": "add", "path": "/image_location", "value": "snapshot"},
        {"op": "add", "path": "/image_state", "value": "available"},
        {"op": "add", "path": "/owner_id", "value": "demo-project"},
        {"op": "add", "path": "/kernel_id", "value": null},
        {"op": "add", "path": "/ramdisk_id", "value": null},
        {"op": "add", "path": "/os_type", "value": "linux"}
    ]);
    let patched = nova(&project, Method::PATCH, &format!("/v2/images/{id}"))
        .header("Content-Type", "application/openstack-images-v2.1-json-patch")
        .body(patch.to_string())
        .send()
        .await
        .expect("patch");
    json_of(patched, 200).await;

    // ...and uploads the disk chunked, without announcing its size.
    let disk = qcow2_disk();
    let chunks: Vec<std::io::Result<Vec<u8>>> = disk.chunks(65_536).map(|c| Ok(c.to_vec())).collect();
    let upload = nova(&project, Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 204);

    let image = json_of(nova(&project, Method::GET, &format!("/v2/images/{id}")).send().await.expect("get"), 200).await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], disk.len());
    assert_eq!(image["virtual_size"], 64 * 1024 * 1024);
    assert_eq!(image["checksum"].as_str().map(str::len), Some(32));
    assert_eq!(image["os_hash_algo"], "sha512");
    assert_eq!(image["os_hash_value"].as_str().map(str::len), Some(128));
    assert_eq!(image["owner"], "demo-project");
    assert_eq!(image["visibility"], "private");
    assert_eq!(image["min_ram"], 512);
    for (key, value) in [
        ("image_type", "snapshot"),
        ("instance_uuid", instance),
        ("image_location", "snapshot"),
        ("image_state", "available"),
        ("owner_project_name", "demo"),
        ("os_type", "linux"),
        ("hw_disk_bus", "virtio"),
    ] {
        assert_eq!(image[key], value, "{key}");
    }
    assert_eq!(image["base_image_ref"], base["id"]);
    assert!(image["kernel_id"].is_null() && image["ramdisk_id"].is_null());

    // Backup rotation lists by properties, newest first.
    let listed = nova(
        &project,
        Method::GET,
        &format!("/v2/images?image_type=snapshot&instance_uuid={instance}&sort_key=created_at&sort_dir=desc&limit=2"),
    )
    .send()
    .await
    .expect("list");
    let listed = json_of(listed, 200).await;
    assert_eq!(listed["images"][0]["id"], id.as_str());

    let data = nova(&project, Method::GET, &format!("/v2/images/{id}/file")).send().await.expect("download");
    assert_eq!(data.bytes().await.expect("bytes"), disk);
}

async fn volume_backed_snapshot_is_an_empty_raw_image(app: TestApp) {
    let project = app.as_project("demo-project", "member");
    let created = nova(&project, Method::POST, "/v2/images")
        .json(&json!({
            "name": "volsnap", "disk_format": "raw", "container_format": "bare",
            "root_device_name": "/dev/vda", "bdm_v2": "True",
            "block_device_mapping": "[{\"source_type\": \"snapshot\", \"snapshot_id\": \"5f3c2f1e-0000-4000-8000-000000000000\", \"boot_index\": 0, \"volume_size\": 1}]"
        }))
        .send()
        .await
        .expect("create");
    let id = json_of(created, 201).await["id"].as_str().expect("id").to_owned();
    let upload = nova(&project, Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(Vec::<u8>::new())
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 204);
    let image = json_of(nova(&project, Method::GET, &format!("/v2/images/{id}")).send().await.expect("get"), 200).await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], 0);
    assert_eq!(image["checksum"], "d41d8cd98f00b204e9800998ecf8427e");
    assert!(image["virtual_size"].is_null());
    assert_eq!(image["bdm_v2"], "True");
}

/// A 64 MiB qcow2 with some data written, as a hypervisor snapshot would be.
fn qcow2_disk() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("disk.qcow2");
    let run = |program: &str, args: &[&str]| {
        let status = std::process::Command::new(program).args(args).status().expect(program);
        assert!(status.success(), "{program} {args:?}");
    };
    let path_str = path.to_str().expect("utf8 path");
    run("qemu-img", &["create", "-q", "-f", "qcow2", path_str, "64M"]);
    run("qemu-io", &["-c", "write -P 0xab 0 1M", "-c", "write -P 0xcd 32M 512k", path_str]);
    std::fs::read(&path).expect("read disk")
}
