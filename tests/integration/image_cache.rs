//! The image cache: filled by downloads and prefetches, served from the node's disk, evicted
//! least recently used first, and its API `/v2/cache...` (admin-only by default).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use glint_core::config::Config;
use glint_core::store::{ByteStream, Store, StoreError};
use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::image_data::payload;
use crate::support::server::Server;
use crate::support::{Backend, TestApp, TestDatabase, expect_error, on_every_database};

on_every_database!(config = cached;
    a_deactivated_image_is_dropped_from_the_cache_and_never_served_from_it,
    a_deleted_image_is_dropped_from_the_cache,
    an_entry_another_node_dropped_is_not_served,
    clean_removes_files_without_an_entry_and_reports_them,
    queueing_prefetches_the_image_and_lists_this_node,
    queueing_refuses_unknown_and_inactive_images,
    clearing_empties_the_cache_the_queue_or_both,
    the_cache_api_is_admin_only,
    the_version_document_lists_2_14_to_2_18_with_the_cache,
);

on_every_database!(config = small_cache; prune_removes_least_recently_used_images_down_to_max_size);

on_every_database!(config = unwritable_cache; an_unwritable_cache_directory_never_breaks_downloads);

on_every_database!(the_cache_api_is_404_when_the_cache_is_off);

fn cached(config: &mut Config) {
    config.cache.enabled = true;
}

/// Room for two images of [`SIZE`] bytes, not three.
fn small_cache(config: &mut Config) {
    cached(config);
    config.cache.max_size = 2 * SIZE as u64 + SIZE as u64 / 2;
}

/// A cache directory that cannot be created, even by root: /proc takes no new directories.
fn unwritable_cache(config: &mut Config) {
    cached(config);
    config.cache.dir = "/proc/glint-image-cache".into();
}

const SIZE: usize = 300_000;

/// A store that counts its reads.
struct CountingReads {
    inner: Arc<dyn Store>,
    reads: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Store for CountingReads {
    async fn put_sized(
        &self,
        image_id: &str,
        data: ByteStream,
        cap: u64,
        size: Option<u64>,
    ) -> Result<String, StoreError> {
        self.inner.put_sized(image_id, data, cap, size).await
    }
    async fn get(&self, location: &str, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(location, range).await
    }
    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        self.inner.delete(location).await
    }
    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }
}

/// An app with the cache on whose store counts its reads.
async fn counting(backend: Backend) -> Option<(TestApp, Arc<AtomicUsize>)> {
    let reads = Arc::new(AtomicUsize::new(0));
    let counter = reads.clone();
    let app =
        TestApp::spawn_full(backend, cached, move |inner| Arc::new(CountingReads { inner, reads: counter })).await?;
    Some((app, reads))
}

macro_rules! with_counted_reads {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use crate::support::Backend;

                async fn run(backend: Backend) {
                    if let Some((app, reads)) = super::counting(backend).await {
                        super::$name(app, reads).await;
                    }
                }

                #[tokio::test]
                async fn sqlite() { run(Backend::Sqlite).await }

                #[tokio::test]
                async fn postgres() { run(Backend::Postgres).await }

                #[tokio::test]
                async fn mariadb() { run(Backend::Mariadb).await }
            }
        )+
    };
}

with_counted_reads!(
    a_download_fills_the_cache_and_the_next_is_served_without_the_store,
    ranges_are_served_from_the_cache
);

/// An active image holding `data`; its id.
async fn active(app: &TestApp, data: Vec<u8>) -> String {
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    let id = image["id"].as_str().expect("id").to_owned();
    let put = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .expect("upload");
    assert_eq!(put.status(), 204);
    id
}

async fn download(app: &TestApp, id: &str) -> reqwest::Response {
    let response = app.get(&format!("/v2/images/{id}/file")).await;
    assert_eq!(response.status(), 200, "download of {id}");
    response
}

/// The image ids of `GET /v2/cache`'s `cached_images`.
async fn cached_ids(app: &TestApp) -> Vec<String> {
    let listing = app.get_json("/v2/cache").await;
    listing["cached_images"]
        .as_array()
        .expect("cached_images")
        .iter()
        .map(|e| e["image_id"].as_str().expect("id").to_owned())
        .collect()
}

/// This node's entry of `id` once the fill (which finishes after the download) committed it.
async fn wait_cached(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listing = app.get_json("/v2/cache").await;
        let entry =
            listing["cached_images"].as_array().expect("cached_images").iter().find(|e| e["image_id"] == id).cloned();
        if let Some(entry) = entry {
            return entry;
        }
        assert!(Instant::now() < deadline, "{id} not cached: {listing}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Downloads `id` and waits until the copy is in the cache.
async fn fill(app: &TestApp, id: &str) -> Value {
    download(app, id).await.bytes().await.expect("body");
    wait_cached(app, id).await
}

fn file_in_cache(app: &TestApp, id: &str) -> bool {
    app.cache_path.join(id).is_file()
}

async fn a_download_fills_the_cache_and_the_next_is_served_without_the_store(app: TestApp, reads: Arc<AtomicUsize>) {
    let data = payload(SIZE);
    let id = active(&app, data.clone()).await;
    let first = download(&app, &id).await;
    let md5 = first.headers()["content-md5"].clone();
    assert_eq!(first.bytes().await.expect("body"), data);
    let entry = wait_cached(&app, &id).await;
    assert_eq!((entry["size"].as_u64(), entry["hits"].as_u64()), (Some(SIZE as u64), Some(0)));
    assert_eq!(reads.load(Ordering::SeqCst), 1);

    let second = download(&app, &id).await;
    assert_eq!(second.headers()["content-md5"], md5);
    assert_eq!(second.headers()["content-length"], SIZE.to_string().as_str());
    assert_eq!(second.bytes().await.expect("body"), data);
    assert_eq!(reads.load(Ordering::SeqCst), 1, "the second download read the store");
    assert_eq!(wait_cached(&app, &id).await["hits"], 1);
}

async fn ranges_are_served_from_the_cache(app: TestApp, reads: Arc<AtomicUsize>) {
    let data = payload(SIZE);
    let id = active(&app, data.clone()).await;
    let partial = app.request(Method::GET, &format!("/v2/images/{id}/file")).header("Range", "bytes=0-99").send().await;
    assert_eq!(partial.expect("range").status(), 206);
    fill(&app, &id).await;
    assert_eq!(reads.load(Ordering::SeqCst), 2, "a range download does not fill the cache; the whole one does");

    let response = app
        .request(Method::GET, &format!("/v2/images/{id}/file"))
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .expect("range");
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], format!("bytes 1000-1999/{SIZE}").as_str());
    assert!(response.headers().contains_key("content-md5"));
    assert_eq!(response.bytes().await.expect("body"), data[1000..2000]);
    let suffix = app.request(Method::GET, &format!("/v2/images/{id}/file")).header("Range", "bytes=-10").send().await;
    assert_eq!(suffix.expect("suffix").bytes().await.expect("body"), data[SIZE - 10..]);
    assert_eq!(reads.load(Ordering::SeqCst), 2, "ranges were read from the store");
}

async fn prune_removes_least_recently_used_images_down_to_max_size(app: TestApp) {
    let empty = app.post_json("/v2/cache/prune", &json!({})).await;
    assert_eq!(empty.json::<Value>().await.expect("json"), json!({"total_files_pruned": 0, "total_bytes_pruned": 0}));
    let (a, b, c) =
        (active(&app, payload(SIZE)).await, active(&app, payload(SIZE)).await, active(&app, payload(SIZE)).await);
    for id in [&a, &b, &c] {
        fill(&app, id).await;
    }
    // `a` becomes the most recently used: `b` is now the least.
    download(&app, &a).await.bytes().await.expect("body");
    assert_eq!(wait_cached(&app, &a).await["hits"], 1);

    let pruned = app.post_json("/v2/cache/prune", &json!({})).await;
    assert_eq!(pruned.status(), 200);
    assert_eq!(
        pruned.json::<Value>().await.expect("json"),
        json!({"total_files_pruned": 1, "total_bytes_pruned": SIZE})
    );
    let mut left = cached_ids(&app).await;
    left.sort();
    let mut expected = vec![a.clone(), c.clone()];
    expected.sort();
    assert_eq!(left, expected);
    assert!(!file_in_cache(&app, &b) && file_in_cache(&app, &a) && file_in_cache(&app, &c));
}

async fn clean_removes_files_without_an_entry_and_reports_them(app: TestApp) {
    let id = active(&app, payload(SIZE)).await;
    fill(&app, &id).await;
    std::fs::write(app.cache_path.join("stray"), b"0123456789").expect("stray file");
    // The entry's row is gone (as after a crash between the file and the row): the file is stray too.
    app.db.execute_unprepared(&format!("DELETE FROM cached_images WHERE image_id = '{id}'")).await.expect("delete row");
    let cleaned = app.post_json("/v2/cache/clean", &json!({})).await;
    assert_eq!(cleaned.status(), 200);
    assert_eq!(
        cleaned.json::<Value>().await.expect("json"),
        json!({"total_files_cleaned": 2, "total_bytes_cleaned": SIZE + 10})
    );
    assert!(!file_in_cache(&app, &id) && !app.cache_path.join("stray").exists());
    let again = app.post_json("/v2/cache/clean", &json!({})).await.json::<Value>().await.expect("json");
    assert_eq!(again["total_files_cleaned"], 0);
}

async fn a_deactivated_image_is_dropped_from_the_cache_and_never_served_from_it(app: TestApp) {
    let data = payload(SIZE);
    let id = active(&app, data.clone()).await;
    fill(&app, &id).await;
    let deactivate = app.request(Method::POST, &format!("/v2/images/{id}/actions/deactivate")).send().await;
    assert_eq!(deactivate.expect("deactivate").status(), 204);
    assert!(cached_ids(&app).await.is_empty());
    assert!(!file_in_cache(&app, &id));
    // A file left behind with bogus bytes (a node that missed the news) is never served.
    std::fs::write(app.cache_path.join(&id), vec![0u8; SIZE]).expect("plant");
    assert_eq!(download(&app, &id).await.bytes().await.expect("body"), data, "admins read the store");
    let reactivate = app.request(Method::POST, &format!("/v2/images/{id}/actions/reactivate")).send().await;
    assert_eq!(reactivate.expect("reactivate").status(), 204);
    assert_eq!(download(&app, &id).await.bytes().await.expect("body"), data, "no entry: the store is read");
}

async fn a_deleted_image_is_dropped_from_the_cache(app: TestApp) {
    let id = active(&app, payload(SIZE)).await;
    fill(&app, &id).await;
    assert_eq!(app.delete(&format!("/v2/images/{id}")).await.status(), 204);
    assert!(cached_ids(&app).await.is_empty());
    assert!(!file_in_cache(&app, &id));
    expect_error(app.get(&format!("/v2/images/{id}/file")).await, 404).await;
}

async fn an_entry_another_node_dropped_is_not_served(app: TestApp) {
    let data = payload(SIZE);
    let id = active(&app, data.clone()).await;
    fill(&app, &id).await;
    app.db.execute_unprepared(&format!("DELETE FROM cached_images WHERE image_id = '{id}'")).await.expect("delete row");
    std::fs::write(app.cache_path.join(&id), vec![0u8; SIZE]).expect("overwrite");
    assert_eq!(download(&app, &id).await.bytes().await.expect("body"), data);
}

async fn an_unwritable_cache_directory_never_breaks_downloads(app: TestApp) {
    let data = payload(SIZE);
    let id = active(&app, data.clone()).await;
    for _ in 0..2 {
        assert_eq!(download(&app, &id).await.bytes().await.expect("body"), data);
    }
    assert_eq!(app.request(Method::PUT, &format!("/v2/cache/{id}")).send().await.expect("queue").status(), 202);
    assert_eq!(download(&app, &id).await.bytes().await.expect("body"), data);
    assert!(cached_ids(&app).await.is_empty());
}

async fn queueing_prefetches_the_image_and_lists_this_node(app: TestApp) {
    let id = active(&app, payload(SIZE)).await;
    assert_eq!(app.get_json(&format!("/v2/cache/nodes/{id}")).await, json!([]));
    assert_eq!(app.request(Method::PUT, &format!("/v2/cache/{id}")).send().await.expect("queue").status(), 202);
    wait_cached(&app, &id).await;
    assert!(file_in_cache(&app, &id));
    assert_eq!(app.get_json("/v2/cache").await["queued_images"], json!([]));
    // Without [cache] node_reference_url a node is named after its [server] bind address.
    assert_eq!(app.get_json(&format!("/v2/cache/nodes/{id}")).await, json!(["http://127.0.0.1:9292"]));
    assert_eq!(app.delete(&format!("/v2/cache/{id}")).await.status(), 204);
    assert!(cached_ids(&app).await.is_empty() && !file_in_cache(&app, &id));
    assert_eq!(app.get_json(&format!("/v2/cache/nodes/{id}")).await, json!([]));
}

async fn queueing_refuses_unknown_and_inactive_images(app: TestApp) {
    let unknown = uuid::Uuid::new_v4();
    expect_error(app.request(Method::PUT, &format!("/v2/cache/{unknown}")).send().await.expect("queue"), 404).await;
    let queued = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    let queued = queued["id"].as_str().expect("id");
    let message =
        expect_error(app.request(Method::PUT, &format!("/v2/cache/{queued}")).send().await.expect("queue"), 400).await;
    assert!(message.contains("Only images with status active"), "{message}");
    expect_error(app.delete(&format!("/v2/cache/{unknown}")).await, 404).await;
    expect_error(app.get(&format!("/v2/cache/nodes/{unknown}")).await, 404).await;
}

async fn clearing_empties_the_cache_the_queue_or_both(app: TestApp) {
    let (a, b) = (active(&app, payload(SIZE)).await, active(&app, payload(SIZE)).await);
    fill(&app, &a).await;
    // Queued straight into the table, so that the cache job does not take it off the queue.
    let node: i64 = glint_core::cache::repo::node_id(&app.db, &nodes_url(&app).await).await.expect("node");
    glint_core::cache::repo::enqueue(&app.db, node, &b).await.expect("enqueue");
    let both = app.request(Method::DELETE, "/v2/cache").header("x-image-cache-clear-target", "both").send().await;
    let message = expect_error(both.expect("clear"), 400).await;
    assert!(message.contains("'cache', 'queue' or empty string"), "{message}");

    let queue = app.request(Method::DELETE, "/v2/cache").header("x-image-cache-clear-target", "queue").send().await;
    assert_eq!(queue.expect("clear").status(), 204);
    let listing = app.get_json("/v2/cache").await;
    assert_eq!((listing["queued_images"].clone(), cached_ids(&app).await), (json!([]), vec![a.clone()]));

    glint_core::cache::repo::enqueue(&app.db, node, &b).await.expect("enqueue");
    let cache = app.request(Method::DELETE, "/v2/cache").header("x-image-cache-clear-target", "cache").send().await;
    assert_eq!(cache.expect("clear").status(), 204);
    let listing = app.get_json("/v2/cache").await;
    assert_eq!((listing["queued_images"].clone(), cached_ids(&app).await), (json!([b.clone()]), vec![]));
    assert!(!file_in_cache(&app, &a));

    fill(&app, &a).await;
    assert_eq!(app.delete("/v2/cache").await.status(), 204);
    let listing = app.get_json("/v2/cache").await;
    assert_eq!(listing, json!({"cached_images": [], "queued_images": []}));
}

/// This node's URL, as the nodes endpoint reports it once it holds an image.
async fn nodes_url(app: &TestApp) -> String {
    let id = cached_ids(app).await.pop().expect("an image is cached");
    app.get_json(&format!("/v2/cache/nodes/{id}")).await[0].as_str().expect("url").to_owned()
}

async fn the_cache_api_is_admin_only(app: TestApp) {
    let member = app.as_project("p1", "member");
    let id = active(&member, payload(100)).await;
    let calls = [
        (Method::GET, "/v2/cache".to_owned()),
        (Method::DELETE, "/v2/cache".to_owned()),
        (Method::PUT, format!("/v2/cache/{id}")),
        (Method::DELETE, format!("/v2/cache/{id}")),
        (Method::POST, "/v2/cache/clean".to_owned()),
        (Method::POST, "/v2/cache/prune".to_owned()),
        (Method::GET, format!("/v2/cache/nodes/{id}")),
    ];
    for (method, path) in calls {
        let response = member.request(method.clone(), &path).send().await.expect("request");
        let message = expect_error(response, 403).await;
        assert!(message.contains("cache") || message.contains("list_cached_nodes"), "{method} {path}: {message}");
    }
    assert_eq!(app.get("/v2/cache").await.status(), 200);
}

async fn the_cache_api_is_404_when_the_cache_is_off(app: TestApp) {
    let id = active(&app, payload(100)).await;
    for (method, path) in [
        (Method::GET, "/v2/cache".to_owned()),
        (Method::DELETE, "/v2/cache".to_owned()),
        (Method::PUT, format!("/v2/cache/{id}")),
        (Method::DELETE, format!("/v2/cache/{id}")),
        (Method::POST, "/v2/cache/clean".to_owned()),
        (Method::POST, "/v2/cache/prune".to_owned()),
        (Method::GET, format!("/v2/cache/nodes/{id}")),
    ] {
        let message = expect_error(app.request(method, &path).send().await.expect("request"), 404).await;
        assert!(message.contains("Caching via API is not supported at this site."), "{path}: {message}");
    }
    // A non-admin is refused by policy first, as in Glance.
    expect_error(app.as_project("p1", "member").get("/v2/cache").await, 403).await;
    let ids: Vec<Value> = app.get_json("/versions").await["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["id"].clone())
        .collect();
    assert!(!ids.contains(&json!("v2.14")) && ids.contains(&json!("v2.17")), "{ids:?}");
}

async fn the_version_document_lists_2_14_to_2_18_with_the_cache(app: TestApp) {
    let document = app.get_json("/versions").await;
    let versions: Vec<(String, String)> = document["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| (v["id"].as_str().expect("id").to_owned(), v["status"].as_str().expect("status").to_owned()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("v2.18", "CURRENT"),
        ("v2.17", "SUPPORTED"),
        ("v2.16", "SUPPORTED"),
        ("v2.15", "SUPPORTED"),
        ("v2.14", "SUPPORTED"),
        ("v2.9", "SUPPORTED"),
        ("v2.7", "SUPPORTED"),
        ("v2.6", "SUPPORTED"),
        ("v2.5", "SUPPORTED"),
        ("v2.4", "SUPPORTED"),
        ("v2.3", "SUPPORTED"),
        ("v2.2", "SUPPORTED"),
        ("v2.1", "SUPPORTED"),
        ("v2.0", "SUPPORTED"),
    ]
    .iter()
    .map(|(id, status)| ((*id).to_owned(), (*status).to_owned()))
    .collect();
    assert_eq!(versions, expected);
    assert_eq!(app.get("/v2.18/cache").await.status(), 200, "an advertised version is a path prefix");
}

/// Two `glint serve` processes on one PostgreSQL database and one shared store, each with its
/// own cache: each reports the other's copy.
#[tokio::test(flavor = "multi_thread")]
async fn two_api_processes_on_one_database_report_each_others_cached_copies() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let store = tempfile::tempdir().expect("store");
    let config = |dir: &str| -> Vec<(String, String)> {
        vec![
            ("GLINT__DATABASE__URL".into(), database.url.clone()),
            ("GLINT__CACHE__ENABLED".into(), "true".into()),
            ("GLINT__CACHE__DIR".into(), dir.into()),
            ("GLINT__STORAGE__DEFAULT".into(), "shared".into()),
            ("GLINT__STORAGE__BACKENDS__SHARED__TYPE".into(), "filesystem".into()),
            ("GLINT__STORAGE__BACKENDS__SHARED__PATH".into(), store.path().display().to_string()),
        ]
    };
    // One after the other: the first one migrates the database.
    let first = tokio::task::spawn_blocking({
        let config = config("cache-one");
        move || Server::start_with(&config)
    })
    .await
    .expect("first");
    let second = tokio::task::spawn_blocking({
        let config = config("cache-two");
        move || Server::start_with(&config)
    })
    .await
    .expect("second");
    let client = reqwest::Client::new();
    let data = payload(SIZE);
    let created: Value = client
        .post(format!("{}/v2/images", first.url()))
        .json(&json!({"disk_format": "raw", "container_format": "bare"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let put = client
        .put(format!("{}/v2/images/{id}/file", first.url()))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(put.status(), 204);
    let nodes_of = |server: &Server| format!("{}/v2/cache/nodes/{id}", server.url());
    for server in [&first, &second] {
        let body = client.get(format!("{}/v2/images/{id}/file", server.url())).send().await.expect("download");
        assert_eq!(body.bytes().await.expect("body"), data);
    }
    let expected = {
        let mut urls = vec![first.url(), second.url()];
        urls.sort();
        urls
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    for server in [&first, &second] {
        loop {
            let nodes: Vec<String> =
                client.get(nodes_of(server)).send().await.expect("nodes").json().await.expect("json");
            let mut nodes = nodes;
            nodes.sort();
            if nodes == expected {
                break;
            }
            assert!(Instant::now() < deadline, "nodes {nodes:?}, expected {expected:?}\n{}", server.output());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Deactivating on one node forgets every node's copy.
    let deactivate = client.post(format!("{}/v2/images/{id}/actions/deactivate", second.url())).send().await;
    assert_eq!(deactivate.expect("deactivate").status(), 204);
    let nodes: Vec<String> = client.get(nodes_of(&first)).send().await.expect("nodes").json().await.expect("json");
    assert!(nodes.is_empty(), "a deactivated image is cached nowhere: {nodes:?}");
}

/// A tmpfs of `bytes` mounted on a temporary directory for as long as it lives.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// None (after saying why) where this process may not mount; under CI that is a failure.
    fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        if mounted {
            return Some(SmallDisk { dir });
        }
        assert!(std::env::var_os("CI").is_none(), "CI runs as root and must be able to mount a tmpfs");
        eprintln!("skipped: cannot mount a tmpfs (not root?)");
        None
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A cache on a disk too small for the image: every fill fails with ENOSPC part-way, and the
/// downloads, the prefetch and the cache's listing all carry on as if there were no cache.
#[tokio::test]
async fn a_full_cache_disk_never_breaks_downloads() {
    let Some(disk) = SmallDisk::mount(64 * 1024) else { return };
    let dir = disk.dir.path().to_path_buf();
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |config| {
        cached(config);
        config.cache.dir = dir;
    })
    .await
    else {
        return;
    };
    let data = payload(SIZE);
    let id = active(&app, data.clone()).await;
    for _ in 0..2 {
        assert_eq!(download(&app, &id).await.bytes().await.expect("body"), data);
    }
    assert_eq!(app.request(Method::PUT, &format!("/v2/cache/{id}")).send().await.expect("queue").status(), 202);
    assert_eq!(download(&app, &id).await.bytes().await.expect("body"), data);
    assert!(cached_ids(&app).await.is_empty());
    let range = app.request(Method::GET, &format!("/v2/images/{id}/file")).header("Range", "bytes=10-19").send().await;
    let range = range.expect("range");
    assert_eq!(range.status(), 206);
    assert_eq!(range.bytes().await.expect("range"), data[10..20]);
    // A fill ends (and cleans up) just after the download it copies.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !files_under(disk.dir.path()).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(files_under(disk.dir.path()), Vec::<std::path::PathBuf>::new(), "failed fills leave nothing");
}

/// Every regular file under `dir`, at any depth.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
    }
    files
}
