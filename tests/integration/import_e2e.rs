//! The import pipeline end to end in its production shape: two `glint api` and two
//! `glint worker` processes over PostgreSQL and the real RabbitMQ on 127.0.0.1:5672, with a
//! shared staging directory and shared filesystem stores (see `support::cluster`).
//!
//! * The unmodified `glance` and `openstack` clients run each import method and read the
//!   tasks, against either API; web-download sources are served by the test.
//! * Fault loops, each one test that repeats a fault and counts at the end (lost, duplicated,
//!   stuck, orphan bytes): a worker SIGKILLed in the middle of a download, RabbitMQ stopped
//!   while imports are being accepted, the API restarted (SIGKILL or SIGTERM) during imports.
//! * A worker SIGTERMed in the middle of a download hands the import over at its shutdown
//!   deadline, and the other worker finishes it within seconds rather than after the lease.
//!   The round counts are sized to keep each test around two minutes on the 2-core
//!   development machine with the debug build when nothing else runs on it: 10 worker kills,
//!   about 11 s each (lease expiry plus a new download; 15-18 s on a busy machine); 10 broker
//!   outages, 9-11 s each; 20 API restarts, under a second each.
//!   `GLINT_E2E_FAULT_ROUNDS=20` (or any count) runs that many of each.
//!
//! Every test here holds the process-wide broker lock of `support::broker` for its whole run,
//! because the outage test stops the broker: they run one at a time. Without RabbitMQ or
//! PostgreSQL they print "skipped: ... unreachable" and pass, except under `CI=true`, where
//! they fail. `GLINT_E2E_KEEP=1` keeps each cluster's directory (every process's log, the
//! stores, the staging area) and prints where it is.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::image_data::{coreutils_digests, payload, qemu_image};
use crate::support::cluster::{Cluster, SlowServer, Spec, listing, md5sum, properties, table_rows};
use crate::support::venv;
use crate::support::web::{Reply, WebServer};

/// How long an ordinary import may take to settle.
const SETTLE: Duration = Duration::from_secs(60);

/// Rounds of a fault loop: `GLINT_E2E_FAULT_ROUNDS` if set, else `default`.
fn rounds(default: usize) -> usize {
    std::env::var("GLINT_E2E_FAULT_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// The Python clients and a cluster of `spec`, or `None` when something is unavailable
/// (outside CI; the reason is printed).
async fn clients_and_cluster(spec: Spec) -> Option<(std::path::PathBuf, Cluster)> {
    let bin = venv::clients()?;
    let cluster = Cluster::start(spec).await?;
    Some((bin, cluster))
}

/// The value of column `key` in the row of a `glance task-list` table whose first cell is `id`.
fn cell(table: &[Vec<String>], id: &str, key: &str) -> String {
    let header = table.first().unwrap_or_else(|| panic!("no table"));
    let column = header.iter().position(|h| h == key).unwrap_or_else(|| panic!("no column {key} in {header:?}"));
    let row = table
        .iter()
        .find(|r| r.first().map(String::as_str) == Some(id))
        .unwrap_or_else(|| panic!("no row {id} in {table:?}"));
    row[column].clone()
}

async fn only_task(cluster: &Cluster, image: &str) -> Value {
    let tasks = cluster.get_json(1, &format!("/v2/images/{image}/tasks")).await;
    let tasks = tasks["tasks"].as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    tasks[0].clone()
}

// --- the real clients -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_web_download_import_through_api_and_worker_processes_makes_the_image_active() {
    let Some((bin, cluster)) = clients_and_cluster(Spec::default()).await else { return };
    let data = qemu_image(&["-f", "qcow2"]);
    let (md5, sha512) = coreutils_digests(&data);
    let web = WebServer::start().await;
    let url = web.route("/cirros.qcow2", Reply::Bytes(data.clone()));
    let created = cluster.glance(
        &bin,
        0,
        &[
            "image-create-via-import",
            "--name",
            "cirros-web",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--import-method",
            "web-download",
            "--uri",
            &url,
        ],
    );
    let id = properties(&created.stdout)["id"].clone();
    cluster.wait_active(&id, SETTLE).await;
    // The other API shows what the worker did.
    let shown = properties(&cluster.glance(&bin, 1, &["image-show", &id]).stdout);
    assert_eq!(shown["status"], "active", "{shown:?}");
    assert_eq!((shown["checksum"].as_str(), shown["os_hash_value"].as_str()), (md5.as_str(), sha512.as_str()));
    assert_eq!(
        (shown["size"].clone(), shown["virtual_size"].clone()),
        (data.len().to_string(), (10u64 << 20).to_string())
    );
    assert_eq!(shown["stores"], "local");
    assert!(!shown.contains_key("os_glance_import_task"), "the import lock is released: {shown:?}");
    assert_eq!(md5sum(&cluster.store_dir("local").join(&id)), md5);
    let task = only_task(&cluster, &id).await;
    assert_eq!(
        (task["status"].as_str(), task["input"]["import_req"]["method"]["uri"].as_str()),
        (Some("success"), Some(url.as_str()))
    );
    cluster.audit(&[id], &BTreeSet::new(), 1).await.assert_clean(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_direct_import_with_file_stages_on_one_api_and_the_worker_activates_it() {
    let Some((bin, cluster)) = clients_and_cluster(Spec::default()).await else { return };
    let data = qemu_image(&["-f", "qcow2"]);
    let (md5, _) = coreutils_digests(&data);
    std::fs::write(cluster.clients_dir().join("cirros.qcow2"), &data).expect("write the image file");
    let created = cluster.glance(
        &bin,
        1,
        &[
            "image-create-via-import",
            "--name",
            "cirros-direct",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--import-method",
            "glance-direct",
            "--file",
            "cirros.qcow2",
        ],
    );
    let id = properties(&created.stdout)["id"].clone();
    cluster.wait_active(&id, SETTLE).await;
    let shown = properties(&cluster.glance(&bin, 0, &["image-show", &id]).stdout);
    assert_eq!((shown["status"].as_str(), shown["checksum"].as_str()), ("active", md5.as_str()), "{shown:?}");
    assert_eq!(shown["virtual_size"], (10u64 << 20).to_string());
    assert_eq!(md5sum(&cluster.store_dir("local").join(&id)), md5);
    assert_eq!(only_task(&cluster, &id).await["input"]["import_req"]["method"]["name"], "glance-direct");
    assert!(
        listing(cluster.staging_dir()).is_empty(),
        "the staged data is removed: {:?}",
        listing(cluster.staging_dir())
    );
    cluster.audit(&[id], &BTreeSet::new(), 1).await.assert_clean(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_copy_image_import_adds_the_second_store() {
    let spec = Spec { stores: vec!["fast", "cheap"], ..Spec::default() };
    let Some((bin, cluster)) = clients_and_cluster(spec).await else { return };
    let data = qemu_image(&["-f", "qcow2"]);
    let (md5, _) = coreutils_digests(&data);
    let web = WebServer::start().await;
    let url = web.route("/cirros.qcow2", Reply::Bytes(data));
    let created = cluster.glance(
        &bin,
        0,
        &[
            "image-create-via-import",
            "--name",
            "cirros-copy",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--import-method",
            "web-download",
            "--uri",
            &url,
        ],
    );
    let id = properties(&created.stdout)["id"].clone();
    let image = cluster.wait_active(&id, SETTLE).await;
    assert_eq!(image["stores"], "fast");
    cluster.glance(&bin, 1, &["image-import", &id, "--import-method", "copy-image", "--stores", "cheap"]);
    let until = Instant::now() + SETTLE;
    let shown = loop {
        let shown = properties(&cluster.glance(&bin, 0, &["image-show", &id]).stdout);
        if shown["stores"] == "cheap,fast" || Instant::now() > until {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        (shown["status"].as_str(), shown["stores"].as_str()),
        ("active", "cheap,fast"),
        "{shown:?}\n{}",
        cluster.logs(30)
    );
    assert_eq!(shown["os_glance_importing_to_stores"], "", "{shown:?}");
    assert_eq!(shown["os_glance_failed_import"], "", "{shown:?}");
    assert_eq!(md5sum(&cluster.store_dir("cheap").join(&id)), md5);
    assert_eq!(md5sum(&cluster.store_dir("fast").join(&id)), md5);
    let tasks = cluster.get_json(0, &format!("/v2/images/{id}/tasks")).await;
    let mut methods: Vec<&str> = tasks["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["input"]["import_req"]["method"]["name"].as_str().unwrap_or("?"))
        .collect();
    // Ordered by created_at, kept at whole seconds: two tasks of the same second come in id order.
    methods.sort_unstable();
    assert_eq!(methods, ["copy-image", "web-download"]);
    cluster.audit(&[id], &BTreeSet::new(), 2).await.assert_clean(&cluster);
}

/// A web-download through `glance image-create-via-import` and a legacy `glance task-create`
/// import, both run to success; returns (image id of the first, its task id, legacy task id).
async fn two_finished_imports(bin: &std::path::Path, cluster: &Cluster, url: &str) -> (String, String, String) {
    let created = cluster.glance(
        bin,
        0,
        &[
            "image-create-via-import",
            "--name",
            "tasked",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--import-method",
            "web-download",
            "--uri",
            url,
        ],
    );
    let image = properties(&created.stdout)["id"].clone();
    cluster.wait_active(&image, SETTLE).await;
    let task = only_task(cluster, &image).await["id"].as_str().expect("task id").to_owned();
    let input = json!({"import_from": url, "import_from_format": "qcow2",
        "image_properties": {"disk_format": "qcow2", "container_format": "bare", "name": "legacy"}});
    let legacy =
        properties(&cluster.glance(bin, 1, &["task-create", "--type", "import", "--input", &input.to_string()]).stdout);
    let legacy_id = legacy["id"].clone();
    let until = Instant::now() + SETTLE;
    loop {
        let task = cluster.get_json(0, &format!("/v2/tasks/{legacy_id}")).await;
        if task["status"] == "success" {
            break;
        }
        assert!(task["status"] != "failure" && Instant::now() < until, "{task}\n{}", cluster.logs(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (image, task, legacy_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_task_list_and_task_show_report_the_finished_imports() {
    let Some((bin, cluster)) = clients_and_cluster(Spec::default()).await else { return };
    let web = WebServer::start().await;
    let url = web.route("/cirros.qcow2", Reply::Bytes(qemu_image(&["-f", "qcow2"])));
    let (image, task, legacy) = two_finished_imports(&bin, &cluster, &url).await;
    let table = table_rows(&cluster.glance(&bin, 1, &["task-list"]).stdout);
    assert_eq!(table.len(), 3, "a header and two tasks: {table:?}");
    assert_eq!([cell(&table, &task, "Type"), cell(&table, &task, "Status")], ["api_image_import", "success"]);
    assert_eq!([cell(&table, &legacy, "Type"), cell(&table, &legacy, "Status")], ["import", "success"]);
    let filtered = table_rows(&cluster.glance(&bin, 0, &["task-list", "--type", "import"]).stdout);
    assert_eq!(filtered.iter().skip(1).map(|r| r[0].as_str()).collect::<Vec<_>>(), [legacy.as_str()]);
    let shown = properties(&cluster.glance(&bin, 0, &["task-show", &task]).stdout);
    assert_eq!((shown["status"].as_str(), shown["type"].as_str()), ("success", "api_image_import"), "{shown:?}");
    let result: Value =
        serde_json::from_str(&shown["result"]).unwrap_or_else(|e| panic!("result {:?}: {e}", shown["result"]));
    assert_eq!(result, json!({"image_id": image}));
    assert!(shown["input"].contains("web-download") && shown["input"].contains(&url), "{shown:?}");
    assert!(!shown["expires_at"].is_empty(), "{shown:?}");
    let shown = properties(&cluster.glance(&bin, 1, &["task-show", &legacy]).stdout);
    assert_eq!(shown["status"], "success", "{shown:?}");
    let legacy_image = serde_json::from_str::<Value>(&shown["result"]).expect("result")["image_id"]
        .as_str()
        .expect("image id")
        .to_owned();
    cluster.wait_active(&legacy_image, SETTLE).await;
    cluster.audit(&[image, legacy_image], &BTreeSet::new(), 1).await.assert_clean(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstack_image_task_list_and_show_report_the_finished_imports() {
    let Some((bin, cluster)) = clients_and_cluster(Spec::default()).await else { return };
    let web = WebServer::start().await;
    let url = web.route("/cirros.qcow2", Reply::Bytes(qemu_image(&["-f", "qcow2"])));
    let (image, task, legacy) = two_finished_imports(&bin, &cluster, &url).await;
    let json_of = |run: crate::support::cluster::ClientRun| -> Value {
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
    };
    let list = json_of(cluster.openstack(&bin, 1, &["image", "task", "list", "-f", "json"]));
    let rows = list.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{list:#}");
    let row = |id: &str| rows.iter().find(|r| r["ID"] == id).unwrap_or_else(|| panic!("no {id} in {list:#}")).clone();
    assert_eq!(
        (row(&task)["Type"].as_str(), row(&task)["Status"].as_str()),
        (Some("api_image_import"), Some("success"))
    );
    assert_eq!((row(&legacy)["Type"].as_str(), row(&legacy)["Status"].as_str()), (Some("import"), Some("success")));
    let shown = json_of(cluster.openstack(&bin, 0, &["image", "task", "show", &task, "-f", "json"]));
    assert_eq!(
        (shown["status"].as_str(), shown["type"].as_str()),
        (Some("success"), Some("api_image_import")),
        "{shown:#}"
    );
    let result = if shown["result"].is_string() {
        serde_json::from_str(shown["result"].as_str().unwrap_or_default()).expect("result")
    } else {
        shown["result"].clone()
    };
    assert_eq!(result, json!({"image_id": image}), "{shown:#}");
    let shown = json_of(cluster.openstack(&bin, 1, &["image", "task", "show", &legacy, "-f", "json"]));
    assert_eq!(shown["status"], "success", "{shown:#}");
    cluster.audit(&[image], &BTreeSet::new(), 1).await.assert_clean(&cluster);
}

// --- fault loops ------------------------------------------------------------------------------

/// The image the worker-kill test downloads, and how fast the test server sends it: each
/// download takes 3 s or more whatever the build, and the kill lands after 2 MiB.
const KILL_IMAGE_SIZE: usize = 24 << 20;
const KILL_RATE: u64 = 8 << 20;
const KILL_AFTER: u64 = 2 << 20;

/// Waits until image `id`'s download is under way (its partial file in the store has
/// [`KILL_AFTER`] bytes or more); returns the worker running it and its claim.
async fn mid_download(cluster: &Cluster, id: &str) -> (usize, String) {
    let until = Instant::now() + Duration::from_secs(60);
    let store = cluster.store_dir("local").to_path_buf();
    loop {
        if let Some(task) = cluster.task_of(id).await
            && task.status == "processing"
            && let Some(claim) = task.claimed_by
            && let Some(worker) = cluster.worker_of_claim(&claim)
        {
            let prefix = format!(".{id}.");
            let written = listing(&store)
                .iter()
                .filter(|n| n.starts_with(&prefix) && n.ends_with(".part"))
                .filter_map(|n| std::fs::metadata(store.join(n)).ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0);
            if written >= KILL_AFTER {
                return (worker, claim);
            }
        }
        assert!(Instant::now() < until, "the download of {id} did not get going\n{}", cluster.logs(40));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkilled_mid_download_is_taken_over_and_the_image_becomes_active_once() {
    // Leases of 6 s (renewed every 2 s) so a dead worker's task is taken over quickly; one
    // task per worker, so that a kill interrupts exactly the round's download.
    let spec = Spec { lease: 6, worker_concurrency: 1, ..Spec::default() };
    let Some(mut cluster) = Cluster::start(spec).await else { return };
    let body = Arc::new(payload(KILL_IMAGE_SIZE));
    let (md5, _) = coreutils_digests(&body);
    let web = SlowServer::start(body.clone(), KILL_RATE).await;
    let rounds = rounds(10);
    let (mut accepted, mut interrupted, mut took) = (Vec::new(), BTreeSet::new(), Vec::new());
    let started = Instant::now();
    for round in 0..rounds {
        let round_started = Instant::now();
        let body = json!({"name": format!("kill-{round}"), "disk_format": "raw", "container_format": "bare"});
        let id = cluster.create_image(round % 2, &body).await;
        let import = json!({"method": {"name": "web-download", "uri": format!("{}/{id}.raw", web.base)}});
        let response = cluster.import((round + 1) % 2, &id, &import).await.expect("POST import");
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
        accepted.push(id.clone());
        let (victim, claim) = mid_download(&cluster, &id).await;
        cluster.workers[victim].kill();
        let task = cluster.task_of(&id).await.expect("task");
        assert_eq!(
            (task.status.as_str(), task.claimed_by.as_deref()),
            ("processing", Some(claim.as_str())),
            "the kill interrupted the download"
        );
        interrupted.insert(id.clone());
        // The replacement: a new process (new pid, new worker id) with the same configuration.
        cluster.workers[victim].restart();
        let image = cluster.wait_active(&id, Duration::from_secs(90)).await;
        assert_eq!(image["checksum"].as_str(), Some(md5.as_str()), "{image}");
        let task = cluster.task_of(&id).await.expect("task");
        assert_eq!(task.status, "success", "{task:?}");
        assert!(
            task.claimed_by.as_deref() != Some(claim.as_str()) && task.attempts >= 2,
            "completed by another worker: {task:?}"
        );
        took.push(round_started.elapsed());
    }
    let audit = cluster.audit(&accepted, &interrupted, 1).await;
    eprintln!(
        "worker kill loop: {rounds} rounds in {:?} (per round {:?}..{:?}), {} downloads served: {}",
        started.elapsed(),
        took.iter().min().copied().unwrap_or_default(),
        took.iter().max().copied().unwrap_or_default(),
        web.requests(),
        audit.summary()
    );
    audit.assert_clean(&cluster);
    // One takeover per kill; more would be leases that lapsed under load (allowed, and still
    // no duplicate: the audit counted those).
    assert!(audit.takeovers >= rounds, "a takeover per kill: {}", audit.summary());
    assert!(audit.parts.len() <= rounds, "at most one partial file per kill: {:?}", audit.parts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_sweeps_the_partial_file_of_its_killed_predecessor_at_start_up() {
    let spec = Spec { lease: 6, worker_concurrency: 1, ..Spec::default() };
    let Some(mut cluster) = Cluster::start(spec).await else { return };
    let body = Arc::new(payload(KILL_IMAGE_SIZE));
    let web = SlowServer::start(body, KILL_RATE).await;
    let store = cluster.store_dir("local").to_path_buf();
    for round in 0..rounds(2) {
        let body = json!({"name": format!("sweep-{round}"), "disk_format": "raw", "container_format": "bare"});
        let id = cluster.create_image(0, &body).await;
        let import = json!({"method": {"name": "web-download", "uri": format!("{}/{id}.raw", web.base)}});
        assert_eq!(cluster.import(1, &id, &import).await.expect("POST import").status(), 202);
        let (victim, _) = mid_download(&cluster, &id).await;
        cluster.workers[victim].kill();
        let prefix = format!(".{id}.");
        let dead: Vec<String> =
            listing(&store).into_iter().filter(|n| n.starts_with(&prefix) && n.ends_with(".part")).collect();
        assert!(!dead.is_empty(), "the killed worker left its partial file");
        // Young (seconds old), far below the 5-minute age guard: only the free lock tells.
        cluster.workers[victim].restart();
        let until = Instant::now() + Duration::from_secs(5);
        while dead.iter().any(|n| store.join(n).exists()) {
            assert!(Instant::now() < until, "{dead:?} still there 5 s after the restart\n{}", cluster.logs(40));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The takeover's own (live) download is left alone and completes.
        let image = cluster.wait_active(&id, Duration::from_secs(90)).await;
        assert_eq!(image["status"], "active", "{image}");
    }
    assert!(!listing(&store).iter().any(|n| n.ends_with(".part")), "{:?}", listing(&store));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sigtermed_mid_download_hands_the_import_over_and_another_finishes_it_within_seconds() {
    // The lease is the default minute; the stopping worker gives its task one second.
    let spec = Spec { apis: 1, worker_concurrency: 1, shutdown_timeout: 1, ..Spec::default() };
    let Some(mut cluster) = Cluster::start(spec).await else { return };
    // 4 s a download, so the deadline lands in the middle of it.
    let body = Arc::new(payload(16 << 20));
    let (md5, _) = coreutils_digests(&body);
    let web = SlowServer::start(body, 4 << 20).await;
    let id = cluster
        .create_image(0, &json!({"name": "handed-over", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let import = json!({"method": {"name": "web-download", "uri": format!("{}/{id}.raw", web.base)}});
    assert_eq!(cluster.import(0, &id, &import).await.expect("POST import").status(), 202);
    let (victim, claim) = mid_download(&cluster, &id).await;
    let other = 1 - victim;
    let stopped = Instant::now();
    cluster.workers[victim].terminate();
    let (mut exited, mut taken) = (None, None);
    while exited.is_none() || taken.is_none() {
        if exited.is_none() && cluster.workers[victim].exited() {
            exited = Some(stopped.elapsed());
        }
        if taken.is_none()
            && let Some(task) = cluster.task_of(&id).await
            && task.claimed_by.as_deref().and_then(|c| cluster.worker_of_claim(c)) == Some(other)
        {
            taken = Some(stopped.elapsed());
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "15 s after SIGTERM: exited {exited:?}, taken over {taken:?}\n{}",
            cluster.logs(40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let image = cluster.wait_active(&id, Duration::from_secs(30)).await;
    let finished = stopped.elapsed();
    assert_eq!(image["checksum"].as_str(), Some(md5.as_str()), "{image}");
    let task = cluster.task_of(&id).await.expect("task");
    assert_eq!(task.status, "success", "{task:?}");
    assert!(task.claimed_by.as_deref() != Some(claim.as_str()), "finished by the other worker: {task:?}");
    assert_eq!(task.attempts, 1, "the hand-over is not counted as an attempt: {task:?}");
    eprintln!(
        "worker SIGTERM mid-download: exited after {:?}, taken over after {:?}, image active after {finished:?} (lease 60 s)",
        exited.unwrap_or_default(),
        taken.unwrap_or_default()
    );
    // The deadline (1 s) and a moment to unwind; then the other worker downloads anew (4 s).
    assert!(exited < Some(Duration::from_secs(4)) && taken < Some(Duration::from_secs(4)), "{exited:?} {taken:?}");
    assert!(finished < Duration::from_secs(15), "active only after {finished:?}");
    // No partial file of the stopped worker's download is left in the store.
    cluster.audit(&[id], &BTreeSet::new(), 1).await.assert_clean(&cluster);
}

/// One import submitted by the background client of the broker outage test.
struct Submitted {
    id: String,
    at: Instant,
    status: Result<u16, String>,
    took: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_accepted_while_rabbitmq_is_stopped_all_complete_once_it_is_back() {
    let Some(cluster) = Cluster::start(Spec::default()).await else { return };
    let cluster = Arc::new(cluster);
    let data = payload(256 << 10);
    let web = WebServer::start().await;
    let url = web.route("/small.raw", Reply::Bytes(data.clone()));
    // A client importing all along, alternating the APIs, while the broker goes down and up.
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = tokio::spawn({
        let (cluster, stop) = (cluster.clone(), stop.clone());
        async move {
            let mut submitted = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let id = cluster
                    .create_image(
                        n % 2,
                        &json!({"name": format!("outage-{n}"), "disk_format": "raw", "container_format": "bare"}),
                    )
                    .await;
                let body = json!({"method": {"name": "web-download", "uri": url}});
                let status = cluster
                    .import((n + 1) % 2, &id, &body)
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string());
                submitted.push(Submitted { id, at, status, took: at.elapsed() });
                n += 1;
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            submitted
        }
    });
    let rounds = rounds(10);
    let mut outages = Vec::new();
    let started = Instant::now();
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_secs(2));
        let stopping = Instant::now();
        let outage = cluster.broker_outage();
        std::thread::sleep(Duration::from_secs(2));
        let restart = outage.end();
        // From stop_app to the first confirmed publish after start_app.
        outages.push((stopping, Instant::now(), restart));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let submitted = submitter.await.expect("submitter");
    let refused: Vec<String> =
        submitted.iter().filter(|s| s.status != Ok(202)).map(|s| format!("{}: {:?}", s.id, s.status)).collect();
    assert!(refused.is_empty(), "every import is accepted whatever the broker does: {refused:?}");
    let during = submitted.iter().filter(|s| outages.iter().any(|(down, up, _)| s.at >= *down && s.at <= *up)).count();
    let slowest = submitted.iter().map(|s| s.took).max().unwrap_or_default();
    let accepted: Vec<String> = submitted.iter().map(|s| s.id.clone()).collect();
    let drained = Instant::now();
    for id in &accepted {
        cluster.wait_active(id, Duration::from_secs(120)).await;
    }
    let audit = cluster.audit(&accepted, &BTreeSet::new(), 1).await;
    eprintln!(
        "broker outage loop: {rounds} outages in {:?} (start_app to a confirmed publish: {:?}..{:?}); {} imports accepted, {during} of them while the broker was down; slowest create+import {slowest:?}; all active {:?} after the last outage; {}",
        started.elapsed(),
        outages.iter().map(|o| o.2).min().unwrap_or_default(),
        outages.iter().map(|o| o.2).max().unwrap_or_default(),
        accepted.len(),
        drained.elapsed(),
        audit.summary()
    );
    audit.assert_clean(&cluster);
    assert!(during >= rounds, "imports were submitted during every outage ({during} in {rounds} outages)");
    assert_eq!(audit.parts.len(), 0, "{:?}", audit.parts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_survive_api_restarts() {
    let Some(mut cluster) = Cluster::start(Spec::default()).await else { return };
    let data = payload(128 << 10);
    let web = WebServer::start().await;
    let url = web.route("/small.raw", Reply::Bytes(data.clone()));
    let rounds = rounds(20);
    let (mut accepted, mut retried, mut recorded_before_the_kill) = (Vec::new(), 0usize, 0usize);
    let started = Instant::now();
    for round in 0..rounds {
        let (victim, other) = (round % 2, 1 - round % 2);
        // Six images made through the other API: three to download, three staged.
        let mut imports = Vec::new();
        for k in 0..6 {
            let id = cluster
                .create_image(
                    other,
                    &json!({"name": format!("restart-{round}-{k}"), "disk_format": "raw", "container_format": "bare"}),
                )
                .await;
            let body = if k % 2 == 0 {
                json!({"method": {"name": "web-download", "uri": url}})
            } else {
                cluster.stage(other, &id, data.clone()).await;
                json!({"method": {"name": "glance-direct"}})
            };
            imports.push((id, body));
        }
        // The imports go to the victim 15 ms apart while it is stopped after about 40 ms:
        // some land before, some during, some after.
        let (client, target) = (cluster.http.clone(), cluster.url(victim));
        let sends = imports.iter().enumerate().map(|(k, (id, body))| {
            let (client, url) = (client.clone(), format!("{target}/v2/images/{id}/import"));
            async move {
                tokio::time::sleep(Duration::from_millis(15 * k as u64)).await;
                client.post(url).json(body).timeout(Duration::from_secs(20)).send().await.map(|r| r.status().as_u16())
            }
        });
        let graceful = round % 4 >= 2;
        let stop = async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let node = &mut cluster.apis[victim];
            if graceful {
                node.terminate();
                let until = Instant::now() + Duration::from_secs(20);
                while !node.exited() && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            node.kill();
        };
        let (outcomes, ()) = tokio::join!(join_all(sends), stop);
        cluster.apis[victim].restart();
        for ((id, body), outcome) in imports.iter().zip(outcomes) {
            match outcome {
                Ok(202) => {}
                Ok(status) => panic!("import of {id} answered {status} while the API stopped\n{}", cluster.logs(30)),
                Err(_) => {
                    // No answer: like a client, try again (through the other API).
                    retried += 1;
                    let status = cluster.import(other, id, body).await.expect("retry").status().as_u16();
                    match status {
                        202 => {}
                        409 if cluster.task_of(id).await.is_some() => recorded_before_the_kill += 1,
                        other => panic!("retried import of {id} answered {other}"),
                    }
                }
            }
            accepted.push(id.clone());
        }
    }
    for id in &accepted {
        cluster.wait_active(id, Duration::from_secs(120)).await;
    }
    let audit = cluster.audit(&accepted, &BTreeSet::new(), 1).await;
    eprintln!(
        "API restart loop: {rounds} restarts (SIGKILL and SIGTERM) in {:?}; {} imports, {retried} without an answer and retried, {recorded_before_the_kill} of those recorded before the API died; {}",
        started.elapsed(),
        accepted.len(),
        audit.summary()
    );
    audit.assert_clean(&cluster);
    assert_eq!(audit.parts.len(), 0, "{:?}", audit.parts);
}
