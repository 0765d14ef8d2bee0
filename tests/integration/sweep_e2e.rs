//! Issue #21's check, in the production shape (`glint api` + `glint worker` over PostgreSQL
//! and RabbitMQ, see `support::cluster`): a worker is SIGKILLed in the middle of a
//! web-download several times in a row, the API restarted before each round, then one worker
//! starts. Within a few seconds of its start nothing the killed workers were writing is left
//! (partial files in a filesystem store; unfinished multipart uploads in an S3 store, moto on
//! loopback; segments of unfinished large objects in a Swift store, the all-in-one of
//! `support::swift`), while a slow upload that a live process is writing all along is
//! untouched and completes; then the killed imports are taken over and complete.
//!
//! Until the last worker, every process sweeps only when it starts (`sweep_interval` of an
//! hour), so what the last kill leaves is the last worker's to sweep; that worker sweeps every
//! second. Leases of 5 s: an S3 upload whose writer has not renewed its marker for that long
//! is a dead writer's (moto's `Initiated` dates are all in 2010, so only the markers tell), and
//! so is a Swift upload whose lease object has not been renewed for that long.
//! 15-20 s each on a quiet machine (plus the cluster's start), 25-40 s on a busy one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use crate::image_data::{coreutils_digests, payload};
use crate::support::cluster::{Cluster, SlowServer, Spec, listing};
use crate::support::s3::S3Server;
use crate::support::swift::{Account, Swift, swift};

/// The image every killed worker downloads: 3 s at the test server's rate.
const IMAGE_SIZE: usize = 24 << 20;
const RATE: u64 = 8 << 20;
/// Kills in a row.
const ROUNDS: usize = 3;
/// Seconds; the live upload renews its marker every third of it, which a loaded machine
/// (and moto answering slowly) must not stretch past a lease.
const LEASE: u64 = 5;
/// Key prefix of the S3 store.
const PREFIX: &str = "images";
/// How soon after the last worker's start the dead writers' leftovers must be gone: at once
/// for partial files (their locks are free), a lease and a sweep for S3 uploads.
const SWEPT_WITHIN: Duration = Duration::from_secs(LEASE + 7);

/// Where the partial data of writers is, and how to tell whose it is.
enum Partials<'a> {
    /// `.<image id>.<random>.part` files in a filesystem store's directory.
    Files(std::path::PathBuf),
    /// Unfinished multipart uploads of `<prefix>/<image id>`, by upload id.
    Uploads(&'a S3Server),
    /// Segmented uploads under way or abandoned in a Swift segments container: their leases,
    /// `leases/<image id>/<upload id>` (a lease goes after the last segment of its upload).
    Segments(Account, String),
}

impl Partials<'_> {
    /// The partial writes of image `id` now: file names, or upload ids.
    async fn of(&self, id: &str) -> Vec<String> {
        match self {
            Partials::Files(dir) => {
                let prefix = format!(".{id}.");
                listing(dir).into_iter().filter(|n| n.starts_with(&prefix) && n.ends_with(".part")).collect()
            }
            Partials::Uploads(s3) => {
                let key = format!("{PREFIX}/{id}");
                s3.pending_upload_ids().await.into_iter().filter(|(k, _)| *k == key).map(|(_, id)| id).collect()
            }
            Partials::Segments(account, segments) => {
                let prefix = format!("leases/{id}/");
                account.names(segments).await.into_iter().filter(|n| n.starts_with(&prefix)).collect()
            }
        }
    }

    /// Every partial write now.
    async fn all(&self) -> Vec<String> {
        match self {
            Partials::Files(dir) => listing(dir).into_iter().filter(|n| n.ends_with(".part")).collect(),
            Partials::Uploads(s3) => s3.pending_upload_ids().await.into_iter().map(|(_, id)| id).collect(),
            Partials::Segments(account, segments) => {
                account.names(segments).await.into_iter().filter(|n| n.starts_with("leases/")).collect()
            }
        }
    }

    /// Whether image `id`'s download has written enough that a kill leaves data behind: 2 MiB
    /// of a partial file, or a multipart upload that has had time to send its first part.
    async fn under_way(&self, id: &str) -> bool {
        match self {
            Partials::Files(dir) => {
                self.of(id).await.iter().filter_map(|n| std::fs::metadata(dir.join(n)).ok()).any(|m| m.len() >= 2 << 20)
            }
            Partials::Uploads(_) => {
                if self.of(id).await.is_empty() {
                    return false;
                }
                // The upload starts once a part is buffered, and sends it right away.
                tokio::time::sleep(Duration::from_millis(400)).await;
                true
            }
            Partials::Segments(account, segments) => {
                let leases = self.of(id).await;
                let names = account.names(segments).await;
                // A stored segment of one of the image's uploads: the kill leaves data behind.
                leases.iter().filter_map(|l| l.strip_prefix("leases/")).any(|upload| {
                    let prefix = format!("{upload}/");
                    names.iter().any(|n| n.starts_with(&prefix))
                })
            }
        }
    }
}

/// Waits until worker `victim` is in the middle of a download (whichever import it took);
/// that image's id.
async fn downloading(cluster: &Cluster, partials: &Partials<'_>, victim: usize) -> String {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        for task in cluster.tasks().await {
            if task.status == "processing"
                && task.claimed_by.as_deref().and_then(|c| cluster.worker_of_claim(c)) == Some(victim)
                && let Some(image) = task.image_id
                && partials.under_way(&image).await
            {
                return image;
            }
        }
        assert!(Instant::now() < until, "worker {victim} did not get a download going\n{}", cluster.logs(40));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What the last worker's sweeps removed, by store id, as its metrics say.
async fn swept_bytes(cluster: &Cluster, worker: usize, store: &str) -> f64 {
    let text = cluster.http.get(cluster.worker_metrics_url(worker)).send().await.expect("scrape");
    let series = format!("glint_partial_bytes_swept_total{{store=\"{store}\"}} ");
    text.text().await.expect("metrics").lines().find_map(|l| l.strip_prefix(&series)?.parse().ok()).unwrap_or(0.0)
}

async fn killed_workers_leftovers_are_swept_at_the_next_start_and_a_live_upload_completes(
    mut cluster: Cluster,
    partials: Partials<'_>,
    store: &str,
) {
    let body = Arc::new(payload(IMAGE_SIZE));
    let (md5, _) = coreutils_digests(&body);
    let web = SlowServer::start(body, RATE).await;
    let (mut accepted, mut dead) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for round in 0..ROUNDS {
        cluster.apis[0].restart();
        let image = json!({"name": format!("sweep-{round}"), "disk_format": "raw", "container_format": "bare"});
        let id = cluster.create_image(0, &image).await;
        let import = json!({"method": {"name": "web-download", "uri": format!("{}/{id}.raw", web.base)}});
        assert_eq!(cluster.import(0, &id, &import).await.expect("POST import").status(), 202);
        accepted.push(id);
        cluster.workers[0].restart();
        let image = downloading(&cluster, &partials, 0).await;
        cluster.workers[0].kill();
        let left = partials.of(&image).await;
        assert!(!left.is_empty(), "the killed worker left its partial data of {image}");
        dead.extend(left);
    }
    let rounds_took = started.elapsed();
    let before = partials.all().await;
    assert!(dead.iter().any(|d| before.contains(d)), "the last kill left something to sweep: {dead:?} {before:?}");

    // A live process's slow upload: a direct upload through the API, past one S3 part at
    // once, then 64 KiB every 250 ms until the test ends it.
    let live =
        cluster.create_image(0, &json!({"name": "live", "disk_format": "raw", "container_format": "bare"})).await;
    let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(1);
    let request = cluster
        .http
        .put(format!("{}/v2/images/{live}/file", cluster.url(0)))
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        })));
    let upload = tokio::spawn(request.send());
    let mut sent = payload(9 << 20);
    tx.send(Ok(sent.clone())).await.expect("send");
    let until = Instant::now() + Duration::from_secs(30);
    let live_partial = loop {
        if let Some(partial) = partials.of(&live).await.pop() {
            break partial;
        }
        assert!(Instant::now() < until, "the live upload did not start\n{}", cluster.logs(40));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let last =
        cluster.start_worker(&[("GLINT__STORAGE__SWEEP_INTERVAL", "1"), ("GLINT__TASKS__WORKER_CONCURRENCY", "4")]);
    let start = Instant::now();
    let mut swept_after = None;
    // The live upload goes on for a while after the sweeps have done their work: through
    // several sweeps that see its marker older than a lease's worth of renewals.
    while swept_after.is_none() || start.elapsed() < Duration::from_secs(LEASE + 3) {
        tx.send(Ok(vec![7u8; 64 << 10])).await.expect("send");
        sent.extend_from_slice(&[7u8; 64 << 10]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = partials.all().await;
        assert!(now.contains(&live_partial), "the live upload's partial data was swept\n{}", cluster.logs(40));
        if swept_after.is_none() && !dead.iter().any(|d| now.contains(d)) {
            swept_after = Some(start.elapsed());
        }
        assert!(
            swept_after.is_some() || start.elapsed() < SWEPT_WITHIN,
            "{:?} of the killed workers still there {SWEPT_WITHIN:?} after the last worker started\n{}",
            dead.iter().filter(|d| now.contains(d)).collect::<Vec<_>>(),
            cluster.logs(40)
        );
    }
    drop(tx);
    let response = upload.await.expect("join").expect("upload");
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap_or_default());
    let (live_md5, _) = coreutils_digests(&sent);
    let image = cluster.get_json(0, &format!("/v2/images/{live}")).await;
    assert_eq!((image["status"].as_str(), image["checksum"].as_str()), (Some("active"), Some(live_md5.as_str())));
    assert!(swept_bytes(&cluster, last, store).await > 0.0, "the last worker counted what it swept");

    // The killed imports are taken over and complete, leaving nothing partial behind.
    for id in &accepted {
        let image = cluster.wait_active(id, Duration::from_secs(60)).await;
        assert_eq!(image["checksum"].as_str(), Some(md5.as_str()), "{image}");
    }
    let until = Instant::now() + Duration::from_secs(10);
    while !partials.all().await.is_empty() {
        assert!(Instant::now() < until, "partial data left at the end: {:?}", partials.all().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{store}: {ROUNDS} kills in {rounds_took:?}, {} dead partial writes, all swept {:?} after the last worker started; total {:?}",
        dead.len(),
        swept_after.unwrap_or_default(),
        started.elapsed()
    );
}

/// Every process sweeps only at start-up, except the last worker (see the module docs).
fn spec() -> Spec {
    Spec {
        apis: 1,
        workers: 1,
        lease: LEASE,
        worker_concurrency: 1,
        env: vec![
            ("GLINT__STORAGE__SWEEP_INTERVAL", "3600".into()),
            // Dead workers' tasks count against the project until their leases end.
            ("GLINT__TASKS__MAX_RUNNING_PER_PROJECT", "0".into()),
        ],
        ..Spec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_files_of_killed_workers_are_swept_when_a_worker_starts_and_a_live_upload_completes() {
    let Some(cluster) = Cluster::start(spec()).await else { return };
    let partials = Partials::Files(cluster.store_dir("local").to_path_buf());
    killed_workers_leftovers_are_swept_at_the_next_start_and_a_live_upload_completes(cluster, partials, "local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_uploads_of_killed_workers_are_aborted_when_a_worker_starts_and_a_live_upload_completes() {
    let Some(s3) = S3Server::start().await else { return };
    let Some(cluster) = Cluster::start(Spec { s3: Some(s3.config(Some(PREFIX))), ..spec() }).await else { return };
    killed_workers_leftovers_are_swept_at_the_next_start_and_a_live_upload_completes(
        cluster,
        Partials::Uploads(&s3),
        "s3",
    )
    .await;
    let markers: Vec<String> = s3.keys().await.into_iter().filter(|k| k.contains("/.glint-uploads/")).collect();
    assert!(markers.is_empty(), "upload markers left: {markers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_segments_of_killed_workers_are_removed_when_a_worker_starts_and_a_live_upload_completes() {
    let Some(swift) = swift() else { return };
    let container = Swift::container();
    let Some(cluster) = Cluster::start(Spec { swift: Some(swift.config(&container)), ..spec() }).await else {
        return;
    };
    let partials = Partials::Segments(swift.account().await, format!("{container}_segments"));
    killed_workers_leftovers_are_swept_at_the_next_start_and_a_live_upload_completes(cluster, partials, "swift").await;
}
