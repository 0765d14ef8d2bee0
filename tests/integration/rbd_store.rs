//! The RBD store against a real Ceph cluster (one monitor, one OSD on loopback): Glance's
//! layout (image, protected snapshot `snap`) that Nova clones from, downloads, deletes refused
//! while clones exist, thin provisioning, and what is left in the pool after failures.

use std::io;
use std::time::Duration;

use glint_core::config::{BackendConfig, Config, RbdConfig};
use glint_core::store::{RbdStore, Store, SweepLimits};
use reqwest::Method;
use serde_json::Value;

use crate::s3_store::{chunked, payload, put, queued_image, show};
use crate::support::ceph::Ceph;
use crate::support::{Backend, TestApp, expect_error};

const MIB: usize = 1024 * 1024;

/// A TestApp whose default store is `ceph`, pool `images` of the test cluster.
async fn app(adjust: impl FnOnce(&mut RbdConfig, &mut Config)) -> Option<(TestApp, &'static Ceph)> {
    let ceph = Ceph::get()?;
    let app = TestApp::spawn_with(Backend::Sqlite, move |config: &mut Config| {
        let mut rbd = ceph.config();
        adjust(&mut rbd, config);
        config.storage.default = "ceph".into();
        config.storage.backends.insert("ceph".into(), BackendConfig::Rbd(rbd));
    })
    .await?;
    Some((app, ceph))
}

fn pool_images(ceph: &Ceph) -> Vec<String> {
    ceph.pool().list().expect("list the pool")
}

#[tokio::test]
async fn upload_writes_an_image_with_a_protected_snapshot_that_downloads_identically() {
    let Some((app, ceph)) = app(|_, config| config.images.show_image_direct_url = true).await else { return };
    let id = queued_image(&app).await;
    // Not a multiple of the 4 MiB objects, sent without a length.
    let data = payload(10 * MIB + 123);
    assert_eq!(put(&app, &id, chunked(data.clone(), 64 * 1024)).await.status(), 204);
    let image = show(&app, &id).await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], data.len());
    let url = format!("rbd://{}/images/{id}/snap", ceph.fsid);
    assert_eq!(image["direct_url"], url.as_str());
    let response = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.expect("body") == data, "downloaded bytes differ");

    let pool = ceph.pool();
    let snap = pool.open_read_only(&id, Some("snap")).expect("the snapshot exists");
    assert_eq!(snap.size().expect("size"), data.len() as u64, "the image is sized to the data");
    let head = pool.open_read_only(&id, None).expect("the image exists");
    assert!(head.snap_is_protected("snap").expect("protection"), "snap must be protected for clones");
}

#[tokio::test]
async fn ranged_download_reads_across_objects() {
    let Some((app, _)) = app(|_, _| {}).await else { return };
    let id = queued_image(&app).await;
    let data = payload(9 * MIB);
    assert_eq!(put(&app, &id, data.clone()).await.status(), 204);
    let (start, end) = (4 * MIB - 10, 8 * MIB + 9);
    let response = app
        .request(Method::GET, &format!("/v2/images/{id}/file"))
        .header("Range", format!("bytes={start}-{end}"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 206);
    assert!(response.bytes().await.expect("body") == data[start..=end], "ranged bytes differ");
}

#[tokio::test]
async fn an_empty_image_round_trips() {
    let Some((app, _)) = app(|_, _| {}).await else { return };
    let id = queued_image(&app).await;
    assert_eq!(put(&app, &id, Vec::<u8>::new()).await.status(), 204);
    let response = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn delete_removes_the_snapshot_and_the_image() {
    let Some((app, ceph)) = app(|_, _| {}).await else { return };
    let id = queued_image(&app).await;
    assert_eq!(put(&app, &id, payload(MIB)).await.status(), 204);
    assert!(pool_images(ceph).contains(&id));
    assert_eq!(app.request(Method::DELETE, &format!("/v2/images/{id}")).send().await.expect("delete").status(), 204);
    assert!(!pool_images(ceph).contains(&id), "the RBD image is gone");
}

#[tokio::test]
async fn delete_of_an_image_with_clones_is_refused_until_they_are_gone() {
    let Some((app, ceph)) = app(|_, _| {}).await else { return };
    let id = queued_image(&app).await;
    assert_eq!(put(&app, &id, payload(MIB)).await.status(), 204);
    // What Nova does for a copy-on-write boot from the image.
    let child = format!("vm-disk-{id}");
    ceph.rbd(&["clone", &format!("images/{id}@snap"), &format!("images/{child}")]);

    let refused = app.request(Method::DELETE, &format!("/v2/images/{id}")).send().await.expect("delete");
    let message = expect_error(refused, 409).await;
    assert!(message.contains("in use"), "{message}");
    assert_eq!(show(&app, &id).await["status"], "active");
    assert!(ceph.pool().open_read_only(&id, None).expect("image").snap_is_protected("snap").expect("protection"));

    ceph.rbd(&["rm", &format!("images/{child}")]);
    assert_eq!(app.request(Method::DELETE, &format!("/v2/images/{id}")).send().await.expect("delete").status(), 204);
    assert!(!pool_images(ceph).contains(&id));
}

#[tokio::test]
async fn thin_provisioning_leaves_zero_chunks_unwritten() {
    let Some((app, ceph)) = app(|rbd, _| rbd.thin_provisioning = true).await else { return };
    let id = queued_image(&app).await;
    // 32 MiB of zeros with 1 MiB of data in the middle: 8 objects of 4 MiB, one written.
    let mut data = vec![0u8; 32 * MIB];
    data[13 * MIB..14 * MIB].copy_from_slice(&payload(MIB));
    assert_eq!(put(&app, &id, data.clone()).await.status(), 204);
    assert!(app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body") == data);
    let du = ceph.rbd(&["du", "--format", "json", &format!("images/{id}@snap")]);
    let du: Value = serde_json::from_slice(&du.stdout).expect("rbd du json");
    let used = du["images"][0]["used_size"].as_u64().expect("used_size");
    assert!(used <= 4 * MIB as u64, "{used} bytes used for 1 MiB of data");
}

#[tokio::test]
async fn an_upload_that_breaks_off_leaves_nothing_in_the_pool() {
    let Some((app, ceph)) = app(|_, _| {}).await else { return };
    let id = queued_image(&app).await;
    let chunks: Vec<io::Result<Vec<u8>>> =
        vec![Ok(payload(5 * MIB)), Ok(payload(MIB)), Err(io::Error::other("client went away"))];
    let response = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await;
    assert!(response.is_err() || !response.expect("response").status().is_success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The server notices the broken body after the client has given up on the response.
    while pool_images(ceph).contains(&id) || show(&app, &id).await["status"] != "queued" {
        assert!(tokio::time::Instant::now() < deadline, "the partial RBD image or the saving status stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_upload_over_the_cap_leaves_nothing_in_the_pool() {
    let Some((app, ceph)) = app(|_, config| config.images.image_size_cap = 6 * MIB as u64).await else { return };
    let id = queued_image(&app).await;
    let response = put(&app, &id, chunked(payload(9 * MIB), MIB)).await;
    expect_error(response, 413).await;
    assert!(!pool_images(ceph).contains(&id));
}

#[tokio::test]
async fn the_sweep_removes_unfinished_images_of_dead_writers_only() {
    let Some(ceph) = Ceph::get() else { return };
    let store = RbdStore::open(&ceph.config()).expect("store");
    let pool = ceph.pool();
    let [dead, live, done] = [(); 3].map(|()| uuid::Uuid::new_v4().to_string());
    for name in [&dead, &live, &done] {
        pool.create(name, MIB as u64, 22).expect("create");
    }
    // A live writer holds its image open for writing; a finished image has its snapshot.
    let writer = pool.open(&live).expect("open for writing");
    pool.open(&done).expect("open").snap_create("snap").expect("snapshot");
    let limits = SweepLimits {
        lease: Duration::ZERO,
        idle: Duration::ZERO,
        max_time: Duration::from_secs(60),
        max_removals: 1000,
    };
    let swept = store.remove_abandoned(&limits).await.expect("sweep");
    assert!(swept.files >= 1);
    let left = pool_images(ceph);
    assert!(!left.contains(&dead), "the dead writer's image stays");
    assert!(left.contains(&live), "a live writer's image was removed");
    assert!(left.contains(&done), "a finished image was removed");
    drop(writer);
    pool.remove(&live).expect("remove");
    pool.open(&done).expect("open").snap_remove("snap").expect("unsnap");
    pool.remove(&done).expect("remove");
}

#[tokio::test]
async fn a_location_in_another_cluster_or_pool_is_not_ours() {
    let Some(ceph) = Ceph::get() else { return };
    let store = RbdStore::open(&ceph.config()).expect("store");
    let id = uuid::Uuid::new_v4();
    for location in [format!("rbd://not-our-fsid/images/{id}/snap"), format!("rbd://{}/volumes/{id}/snap", ceph.fsid)] {
        assert!(
            matches!(store.get(&location, None).await, Err(glint_core::store::StoreError::NotFound(_))),
            "{location}"
        );
    }
}

#[tokio::test]
async fn health_fails_fast_with_the_reason_when_the_cluster_is_unreachable() {
    let Some(ceph) = Ceph::get() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let conf = dir.path().join("ceph.conf");
    std::fs::write(&conf, format!("[global]\nfsid = {}\nmon host = v2:127.0.0.1:{port}\n", ceph.fsid)).expect("conf");
    let config = RbdConfig { conf_file: Some(conf), connect_timeout: 2, ..ceph.config() };
    let store = RbdStore::open(&config).expect("store");
    let started = std::time::Instant::now();
    let err = store.health().await.expect_err("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(err.to_string().contains("connecting to Ceph"), "{err}");
}

#[tokio::test]
async fn uploads_of_sizes_around_object_boundaries_round_trip() {
    let Some((app, ceph)) = app(|_, _| {}).await else { return };
    // The test store's objects are 4 MiB; sizes with and without a Content-Length.
    let object = 4 * MIB;
    for (len, announced) in [(object - 1, true), (object, false), (object + 1, true), (2 * object, false), (1, true)] {
        let id = queued_image(&app).await;
        let data = payload(len);
        let body = if announced { reqwest::Body::from(data.clone()) } else { chunked(data.clone(), 100_000) };
        assert_eq!(put(&app, &id, body).await.status(), 204, "{len} bytes");
        assert!(app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body") == data, "{len} bytes");
        let pool = ceph.pool();
        assert_eq!(pool.open_read_only(&id, Some("snap")).expect("snapshot").size().expect("size"), len as u64);
    }
}

#[tokio::test]
async fn concurrent_uploads_each_get_their_own_image() {
    let Some((app, _)) = app(|_, _| {}).await else { return };
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(queued_image(&app).await);
    }
    let uploads = ids.iter().enumerate().map(|(i, id)| {
        let data: Vec<u8> = payload(5 * MIB + i).into_iter().map(|b| b ^ i as u8).collect();
        let app = &app;
        async move {
            assert_eq!(put(app, id, chunked(data.clone(), 256 * 1024)).await.status(), 204);
            data
        }
    });
    let sent = futures_util::future::join_all(uploads).await;
    for (id, data) in ids.iter().zip(sent) {
        assert!(app.get(&format!("/v2/images/{id}/file")).await.bytes().await.expect("body") == data, "{id}");
    }
}
