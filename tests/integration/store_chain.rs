//! One image's data copied around every kind of store with copy-image, each hop leaving the
//! new copy as the only one: filesystem -> RBD -> Swift -> S3 -> filesystem, against the real
//! Ceph, Swift and S3 servers of the test run. Bytes, checksum and hash never change.

use std::time::Duration;

use glint_core::config::{BackendConfig, Config};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::ceph::Ceph;
use crate::support::s3::S3Server;
use crate::support::swift::{Swift, swift};
use crate::support::{Backend, TestApp};

const MIB: usize = 1024 * 1024;

async fn show(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v2/images/{id}")).await
}

/// Copies `id` to `store`, waits for it, then removes the copy in `from`, so the new copy is
/// the only one left; returns the image as it is then.
async fn hop(app: &TestApp, id: &str, from: &str, store: &str) -> Value {
    let copy = json!({"method": {"name": "copy-image"}, "stores": [store]});
    assert_eq!(app.post_json(&format!("/v2/images/{id}/import"), &copy).await.status(), 202);
    let mut both: Vec<&str> = vec![from, store];
    both.sort();
    let both = both.join(",");
    for _ in 0..600 {
        let image = show(app, id).await;
        if image["stores"] == both.as_str() && image.get("os_glance_import_task").is_none() {
            let removed = app.request(Method::DELETE, &format!("/v2/stores/{from}/{id}")).send().await.expect("delete");
            assert_eq!(removed.status(), 204, "removing the copy in {from}");
            let image = show(app, id).await;
            assert_eq!(image["stores"], store);
            return image;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("copy-image from {from} to {store} did not finish: {}", show(app, id).await);
}

#[tokio::test]
async fn copy_image_carries_the_data_through_filesystem_rbd_swift_and_s3_unchanged() {
    let Some(ceph) = Ceph::get() else { return };
    let Some(swift) = swift() else { return };
    let Some(s3) = S3Server::start().await else { return };
    let local = tempfile::tempdir().expect("tempdir");
    let (local_path, s3_config, swift_config) =
        (local.path().join("local"), s3.config(Some("images")), swift.config(&Swift::container()));
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, move |config: &mut Config| {
        config.storage.default = "local".into();
        let backends = &mut config.storage.backends;
        backends.insert("local".into(), BackendConfig::Filesystem { path: local_path, description: None });
        backends.insert("ceph".into(), BackendConfig::Rbd(ceph.config()));
        backends.insert("swift".into(), BackendConfig::Swift(swift_config));
        backends.insert("s3".into(), BackendConfig::S3(s3_config));
    })
    .await
    else {
        return;
    };
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    let id = image["id"].as_str().expect("id").to_owned();
    // Not a multiple of RBD's objects, Swift's segments or S3's parts.
    let data: Vec<u8> = (0..9 * MIB + 4321).map(|i| (i * 13 % 251) as u8).collect();
    let put = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(put.status(), 204);
    let first = show(&app, &id).await;
    for (from, to) in [("local", "ceph"), ("ceph", "swift"), ("swift", "s3"), ("s3", "local")] {
        let image = hop(&app, &id, from, to).await;
        assert_eq!(
            (&image["checksum"], &image["os_hash_value"], &image["size"]),
            (&first["checksum"], &first["os_hash_value"], &first["size"]),
            "after the hop to {to}"
        );
        let downloaded = app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("download");
        assert!(downloaded == data, "the copy in {to} reads back other bytes");
    }
    assert!(!ceph.pool().list().expect("list").contains(&id), "the RBD copy is gone");
    assert!(s3.keys().await.is_empty(), "the S3 copy is gone");
}
