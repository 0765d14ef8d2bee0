//! The production topology as plain processes: `glint api` and `glint worker` processes over a
//! fresh PostgreSQL database and a RabbitMQ queue of their own, sharing one staging directory
//! and filesystem stores, as docker-compose.yml runs them (a one-shot `glint migrate` first).
//!
//! Each process runs in a directory of its own, so nothing is shared by accident through the
//! current directory: the stores are named in a TOML file given with `GLINT_CONFIG`, everything
//! else comes from `GLINT__*` variables. A [`Cluster`] holds the broker lock of
//! [`super::broker`] for its whole life, and on drop kills its processes, then drops its
//! database, its directory and its queues.
//!
//! Besides starting and restarting processes it offers what the end-to-end and fault tests
//! assert with: the real `glance` and `openstack` clients pointed at one of the APIs, a
//! throttled web server for downloads that take a while, and [`Audit`], which checks that
//! nothing was lost, duplicated, left stuck or left behind on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use glint_core::config::{S3Config, SwiftConfig};

use super::broker;
use super::server::{Node, Role, free_loopback_port, run_to_completion};
use super::{Backend, TestDatabase};

/// Any token does: the APIs run in no-auth mode and ignore it.
const TOKEN: &str = "glint-noauth";

/// How long one client invocation may take (Python start-up alone is 1-2 s).
const CLI_DEADLINE: Duration = Duration::from_secs(90);

/// The shape of a cluster.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Number of `glint api` processes.
    pub apis: usize,
    /// Number of `glint worker` processes.
    pub workers: usize,
    /// Filesystem stores by id; the first is the default. Each gets a directory of its own.
    pub stores: Vec<&'static str>,
    /// `tasks.lease`, seconds: a killed worker's task is taken over this long after.
    pub lease: u64,
    /// `tasks.relay_interval`, seconds.
    pub relay_interval: u64,
    /// `tasks.republish_after`, seconds.
    pub republish_after: u64,
    /// `tasks.worker_concurrency`.
    pub worker_concurrency: u16,
    /// `server.shutdown_timeout`, seconds: what a SIGTERMed process gives the work it started.
    pub shutdown_timeout: u64,
    /// An S3 store `s3`, the default store when set (the filesystem stores stay beside it).
    pub s3: Option<S3Config>,
    /// A Swift store `swift` (tempauth), the default store when set.
    pub swift: Option<SwiftConfig>,
    /// More `GLINT__*` variables for every process.
    pub env: Vec<(&'static str, String)>,
}

impl Default for Spec {
    /// docker-compose.yml's shape (2 APIs, 2 workers) with one store `local` and a relay that
    /// runs every second.
    fn default() -> Self {
        Spec {
            apis: 2,
            workers: 2,
            stores: vec!["local"],
            lease: 60,
            relay_interval: 1,
            republish_after: 30,
            worker_concurrency: 2,
            shutdown_timeout: 30,
            s3: None,
            swift: None,
            env: Vec::new(),
        }
    }
}

/// What goes away with the cluster, in this order (after its processes). With
/// `GLINT_E2E_KEEP=1` the directory (logs, stores, staging) is kept for a look afterwards.
struct Leftovers {
    _database: TestDatabase,
    queues: Vec<String>,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for queue in &self.queues {
            broker::delete_queue(queue);
        }
        if let Some(dir) = self.dir.take()
            && std::env::var_os("GLINT_E2E_KEEP").is_some()
        {
            eprintln!("kept the cluster's directory {}", dir.keep().display());
        }
    }
}

/// A running cluster; see the module documentation.
pub struct Cluster {
    /// The `glint api` processes.
    pub apis: Vec<Node>,
    /// The `glint worker` processes.
    pub workers: Vec<Node>,
    worker_metrics: Vec<SocketAddr>,
    db: DatabaseConnection,
    /// An HTTP client for the APIs (60 s timeout).
    pub http: reqwest::Client,
    root: PathBuf,
    staging: PathBuf,
    stores: Vec<(String, PathBuf)>,
    probe_queue: String,
    /// Every process's variables, for workers started later.
    config: Vec<(String, String)>,
    // Dropped after the processes (fields drop in order): database, queues, directory, then
    // the broker lock last.
    _leftovers: Leftovers,
    _broker: broker::Exclusive,
}

impl Cluster {
    /// Starts `spec` on a fresh PostgreSQL database and a new RabbitMQ queue, and waits until
    /// every process is ready. `None` (after printing why, "skipped: ... unreachable") when
    /// RabbitMQ or PostgreSQL is down outside CI; with `CI=true` that panics.
    pub async fn start(spec: Spec) -> Option<Cluster> {
        let guard = broker::exclusive().await?;
        let database = TestDatabase::create(Backend::Postgres).await?;
        let dir = tempfile::tempdir().expect("cluster directory");
        let root = dir.path().canonicalize().expect("cluster directory path");
        let staging = root.join("staging");
        let stores: Vec<(String, PathBuf)> =
            spec.stores.iter().map(|id| ((*id).to_owned(), root.join(format!("store-{id}")))).collect();
        let queue = format!("glint-e2e-{}", uuid::Uuid::new_v4().simple());
        let probe_queue = format!("{queue}.probe");
        let config_file = root.join("glint.toml");
        let toml = config_toml(&stores, spec.s3.as_ref(), spec.swift.as_ref());
        std::fs::write(&config_file, toml).expect("write the configuration file");
        let config: Vec<(String, String)> = [
            ("GLINT_CONFIG", config_file.display().to_string()),
            ("GLINT__DATABASE__URL", database.url.clone()),
            ("GLINT__DATABASE__MAX_CONNECTIONS", "5".into()),
            ("GLINT__DATABASE__MIGRATE_ON_START", "false".into()),
            ("GLINT__IMPORT__STAGING_DIR", staging.display().to_string()),
            ("GLINT__TASKS__TRANSPORT", "rabbitmq".into()),
            ("GLINT__TASKS__BROKER_URL", broker::URL.into()),
            ("GLINT__TASKS__QUEUE_NAME", queue.clone()),
            ("GLINT__TASKS__LEASE", spec.lease.to_string()),
            ("GLINT__TASKS__RELAY_INTERVAL", spec.relay_interval.to_string()),
            ("GLINT__TASKS__REPUBLISH_AFTER", spec.republish_after.to_string()),
            ("GLINT__TASKS__WORKER_CONCURRENCY", spec.worker_concurrency.to_string()),
            ("GLINT__SERVER__SHUTDOWN_TIMEOUT", spec.shutdown_timeout.to_string()),
        ]
        .into_iter()
        .chain(spec.env.iter().cloned())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let leftovers = Leftovers { _database: database, queues: vec![queue, probe_queue.clone()], dir: Some(dir) };
        // As docker-compose.yml does: one `glint migrate`, then the long-running processes.
        run_to_completion("migrate", &root.join("migrate"), &config);
        let apis = (0..spec.apis)
            .map(|i| Node::start(Role::Api, &format!("api-{i}"), &root.join(format!("api-{i}")), &config))
            .collect();
        // A worker has no API port: its metrics have a listener of their own.
        let worker_metrics: Vec<SocketAddr> = (0..spec.workers).map(|_| free_loopback_port()).collect();
        let workers = worker_metrics
            .iter()
            .enumerate()
            .map(|(i, metrics)| {
                let mut config = config.clone();
                config.push(("GLINT__METRICS__BIND".to_owned(), metrics.to_string()));
                Node::start(Role::Worker, &format!("worker-{i}"), &root.join(format!("worker-{i}")), &config)
            })
            .collect();
        let url = config.iter().find(|(k, _)| k == "GLINT__DATABASE__URL").map(|(_, v)| v.clone()).unwrap_or_default();
        let db = Database::connect(url).await.expect("connect to the cluster's database");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        std::fs::create_dir_all(root.join("clients")).expect("clients directory");
        Some(Cluster {
            apis,
            workers,
            worker_metrics,
            db,
            http,
            root,
            staging,
            stores,
            probe_queue,
            config,
            _leftovers: leftovers,
            _broker: guard,
        })
    }

    /// Starts one more `glint worker` with the cluster's configuration and `overrides` on
    /// top, and waits until it runs; its index in [`Cluster::workers`].
    pub fn start_worker(&mut self, overrides: &[(&str, &str)]) -> usize {
        let index = self.workers.len();
        let metrics = free_loopback_port();
        let mut config = self.config.clone();
        config.push(("GLINT__METRICS__BIND".to_owned(), metrics.to_string()));
        config.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let name = format!("worker-{index}");
        self.workers.push(Node::start(Role::Worker, &name, &self.root.join(&name), &config));
        self.worker_metrics.push(metrics);
        index
    }

    /// The `GET /metrics` URL of worker `i`.
    pub fn worker_metrics_url(&self, i: usize) -> String {
        format!("http://{}/metrics", self.worker_metrics[i])
    }

    /// The root URL of API `i`.
    pub fn url(&self, i: usize) -> String {
        self.apis[i].url()
    }

    /// The directory the clients run in (files for `--file` go here).
    pub fn clients_dir(&self) -> PathBuf {
        self.root.join("clients")
    }

    /// The shared staging directory.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    /// The directory of store `id`.
    pub fn store_dir(&self, id: &str) -> &Path {
        &self.stores.iter().find(|(s, _)| s == id).unwrap_or_else(|| panic!("no store {id}")).1
    }

    /// Stops the broker application until [`broker::Outage::end`] (or its drop).
    pub fn broker_outage(&self) -> broker::Outage {
        broker::Outage::begin(&self.probe_queue)
    }

    /// The worker process whose task claims look like `host:PID:suffix`.
    pub fn worker_of_claim(&self, claimed_by: &str) -> Option<usize> {
        let pid: u32 = claimed_by.split(':').nth(1)?.parse().ok()?;
        self.workers.iter().position(|w| w.pid() == Some(pid))
    }

    /// The last `lines` lines of every process's log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        self.apis
            .iter()
            .chain(&self.workers)
            .map(|node| {
                let all = node.output();
                let tail: Vec<&str> = all.lines().collect();
                format!(
                    "===== {} (last {lines} lines)\n{}\n",
                    node.name(),
                    tail[tail.len().saturating_sub(lines)..].join("\n")
                )
            })
            .collect()
    }

    /// How many times the workers logged "import succeeded" for task `task_id`, over every
    /// incarnation of every worker: more than one means the import ran to the end twice.
    pub fn successes_logged(&self, task_id: &str) -> usize {
        let needle = format!("task={task_id}");
        self.workers
            .iter()
            .map(|w| w.output().lines().filter(|l| l.contains("import succeeded") && l.contains(&needle)).count())
            .sum()
    }

    // --- the HTTP API -----------------------------------------------------------------------

    /// `GET path` on API `api`; its JSON (asserting 200).
    pub async fn get_json(&self, api: usize, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url(api)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).expect("json")
    }

    /// Creates an image through API `api`; its id.
    pub async fn create_image(&self, api: usize, body: &Value) -> String {
        let response =
            self.http.post(format!("{}/v2/images", self.url(api))).json(body).send().await.expect("create image");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 201, "POST /v2/images: {text}");
        let image: Value = serde_json::from_str(&text).expect("json");
        image["id"].as_str().expect("id").to_owned()
    }

    /// `POST /v2/images/{id}/import` on API `api` with `body`.
    pub async fn import(&self, api: usize, id: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.http.post(format!("{}/v2/images/{id}/import", self.url(api))).json(body).send().await
    }

    /// `PUT /v2/images/{id}/stage` on API `api`; asserts 204.
    pub async fn stage(&self, api: usize, id: &str, data: Vec<u8>) {
        let response = self
            .http
            .put(format!("{}/v2/images/{id}/stage", self.url(api)))
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .expect("stage");
        assert_eq!(response.status(), 204, "PUT /stage: {}", response.text().await.unwrap_or_default());
    }

    /// Waits until image `id` is `active` (asserting it gets there within `deadline`,
    /// and not through a failed task); returns it as API 0 shows it.
    pub async fn wait_active(&self, id: &str, deadline: Duration) -> Value {
        let until = Instant::now() + deadline;
        loop {
            let image = self.get_json(0, &format!("/v2/images/{id}")).await;
            if image["status"] == "active"
                && image["os_glance_importing_to_stores"].as_str().unwrap_or_default().is_empty()
            {
                return image;
            }
            let tasks = self.get_json(0, &format!("/v2/images/{id}/tasks")).await;
            let failed = tasks["tasks"].as_array().into_iter().flatten().find(|t| t["status"] == "failure");
            assert!(failed.is_none(), "an import of {id} failed: {failed:?}\n{}", self.logs(30));
            assert!(
                Instant::now() < until,
                "image {id} not active within {deadline:?}: {image}\ntasks: {tasks}\n{}",
                self.logs(40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // --- the database, read directly -------------------------------------------------------

    async fn rows(&self, sql: &str) -> Vec<sea_orm::QueryResult> {
        self.db
            .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every live task with what the workers did with it.
    pub async fn tasks(&self) -> Vec<TaskRow> {
        let sql = "SELECT t.id, t.image_id, t.status, t.claimed_by, t.attempts, i.message \
                   FROM tasks t JOIN task_info i ON i.task_id = t.id WHERE NOT t.deleted ORDER BY t.created_at";
        self.rows(sql)
            .await
            .into_iter()
            .map(|r| TaskRow {
                id: r.try_get("", "id").expect("id"),
                image_id: r.try_get("", "image_id").expect("image_id"),
                status: r.try_get("", "status").expect("status"),
                claimed_by: r.try_get("", "claimed_by").expect("claimed_by"),
                attempts: r.try_get("", "attempts").expect("attempts"),
                message: r.try_get::<Option<String>>("", "message").expect("message").unwrap_or_default(),
            })
            .collect()
    }

    /// The task row of image `image_id`'s only task, if it has one.
    pub async fn task_of(&self, image_id: &str) -> Option<TaskRow> {
        self.tasks().await.into_iter().find(|t| t.image_id.as_deref() == Some(image_id))
    }

    /// Every live image: id -> (status, checksum).
    async fn images(&self) -> BTreeMap<String, (String, Option<String>)> {
        self.rows("SELECT id, status, checksum FROM images WHERE NOT deleted")
            .await
            .into_iter()
            .map(|r| {
                let id: String = r.try_get("", "id").expect("id");
                (id, (r.try_get("", "status").expect("status"), r.try_get("", "checksum").expect("checksum")))
            })
            .collect()
    }

    /// Every live location: (image id, URL).
    async fn locations(&self) -> Vec<(String, String)> {
        self.rows("SELECT image_id, value FROM image_locations WHERE NOT deleted")
            .await
            .into_iter()
            .map(|r| (r.try_get("", "image_id").expect("image_id"), r.try_get("", "value").expect("value")))
            .collect()
    }

    /// Checks every invariant of a finished run over `accepted` (the images whose import was
    /// accepted, `imports_per_image` times each: 2 after a copy-image); `interrupted` are the
    /// images whose download a killed worker abandoned (their `.part` files may remain).
    pub async fn audit(&self, accepted: &[String], interrupted: &BTreeSet<String>, imports_per_image: usize) -> Audit {
        let images = self.images().await;
        let tasks = self.tasks().await;
        let locations = self.locations().await;
        let mut audit = Audit { accepted: accepted.len(), ..Audit::default() };
        for id in accepted {
            match images.get(id).map(|(status, _)| status.as_str()) {
                Some("active") => audit.active += 1,
                Some("importing" | "uploading" | "saving") => {
                    audit.stuck.push(format!("image {id} still {}", images[id].0))
                }
                other => audit.lost.push(format!("image {id} is {other:?}")),
            }
        }
        for (id, (status, _)) in &images {
            if matches!(status.as_str(), "importing" | "uploading" | "saving") && !accepted.contains(id) {
                audit.stuck.push(format!("image {id} (not accepted) is {status}"));
            }
        }
        for task in &tasks {
            match task.status.as_str() {
                "pending" | "processing" => {
                    audit.stuck.push(format!("task {} is {} ({:?})", task.id, task.status, task.claimed_by))
                }
                "failure" => {
                    audit.failed.push(format!("task {} of image {:?}: {}", task.id, task.image_id, task.message))
                }
                _ => {}
            }
            audit.takeovers += usize::try_from(task.attempts.max(1) - 1).unwrap_or(0);
            if task.status == "success" {
                let runs = self.successes_logged(&task.id);
                if runs > 1 {
                    audit.duplicated.push(format!("task {} ran to success {runs} times", task.id));
                }
            }
        }
        for id in accepted {
            let successes = tasks.iter().filter(|t| t.image_id.as_deref() == Some(id) && t.status == "success").count();
            if successes > imports_per_image {
                audit.duplicated.push(format!("image {id} has {successes} successful import tasks"));
            } else if successes < imports_per_image {
                audit.lost.push(format!("image {id} has {successes} successful import tasks, not {imports_per_image}"));
            }
        }
        // Bytes: every committed file in a store is the data of one active image, whole.
        let mut referenced: BTreeMap<PathBuf, String> = BTreeMap::new();
        for (image, url) in &locations {
            let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
            if referenced.insert(path.clone(), image.clone()).is_some() {
                audit.duplicated.push(format!("two locations point at {}", path.display()));
            }
        }
        let per_image = locations.iter().fold(BTreeMap::<&str, usize>::new(), |mut m, (image, _)| {
            *m.entry(image.as_str()).or_default() += 1;
            m
        });
        for (image, count) in per_image {
            if count > self.stores.len() {
                audit.duplicated.push(format!("image {image} has {count} locations for {} stores", self.stores.len()));
            }
        }
        for (_, dir) in &self.stores {
            for name in listing(dir) {
                let path = dir.join(&name);
                if name.ends_with(".part") {
                    let owner = name.trim_start_matches('.').split('.').next().unwrap_or_default().to_owned();
                    if interrupted.contains(&owner) {
                        audit.parts.push(name);
                    } else {
                        audit.orphans.push(format!("partial file {} of an import nobody interrupted", path.display()));
                    }
                    continue;
                }
                match referenced.get(&path) {
                    None => audit.orphans.push(format!("{} belongs to no image", path.display())),
                    Some(image) => {
                        let checksum = images.get(image).and_then(|(_, c)| c.clone()).unwrap_or_default();
                        let (status, _) = images.get(image).cloned().unwrap_or_default();
                        if status != "active" {
                            audit
                                .orphans
                                .push(format!("{} belongs to image {image} which is {status}", path.display()));
                        } else if md5sum(&path) != checksum {
                            audit
                                .corrupt
                                .push(format!("{} does not match the image's checksum {checksum}", path.display()));
                        }
                    }
                }
            }
        }
        for (path, image) in &referenced {
            if !path.exists() && images.get(image).is_some_and(|(s, _)| s == "active") {
                audit.lost.push(format!("active image {image} has no data at {}", path.display()));
            }
        }
        audit.staged = listing(&self.staging);
        audit
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs(60));
        }
    }
}

/// One row of the tasks table, as the workers left it.
#[derive(Clone, Debug)]
pub struct TaskRow {
    pub id: String,
    pub image_id: Option<String>,
    pub status: String,
    /// `host:pid:suffix` of the worker that claimed it last.
    pub claimed_by: Option<String>,
    /// How many times a worker claimed it.
    pub attempts: i32,
    pub message: String,
}

/// What [`Cluster::audit`] found. [`Audit::assert_clean`] wants every list but `parts` empty.
#[derive(Debug, Default)]
pub struct Audit {
    /// Images whose import was accepted.
    pub accepted: usize,
    /// Of those, the ones `active` now.
    pub active: usize,
    /// Accepted imports that did not make their image active.
    pub lost: Vec<String>,
    /// Images or tasks still in a transitional state (importing, pending, processing...).
    pub stuck: Vec<String>,
    /// Anything done twice: two successful tasks for one image, a task that ran to success
    /// twice, two locations for one copy.
    pub duplicated: Vec<String>,
    /// Tasks that ended in failure, with their message.
    pub failed: Vec<String>,
    /// Files in a store that belong to no active image.
    pub orphans: Vec<String>,
    /// Stored files whose md5 (as md5sum computes it) is not the image's checksum.
    pub corrupt: Vec<String>,
    /// Files left in the staging directory.
    pub staged: Vec<String>,
    /// `.part` files of interrupted imports still in a store (the API's scrubber removes
    /// them only after 5 minutes without a write).
    pub parts: Vec<String>,
    /// Claims beyond the first, summed over the tasks (lease expiries after a kill).
    pub takeovers: usize,
}

impl Audit {
    /// One line for the test output.
    pub fn summary(&self) -> String {
        format!(
            "{} accepted, {} active, {} lost, {} duplicated, {} stuck, {} failed, {} orphan files, {} corrupt, {} staged leftovers, {} .part leftovers, {} takeovers",
            self.accepted,
            self.active,
            self.lost.len(),
            self.duplicated.len(),
            self.stuck.len(),
            self.failed.len(),
            self.orphans.len(),
            self.corrupt.len(),
            self.staged.len(),
            self.parts.len(),
            self.takeovers
        )
    }

    /// Panics with the details (and the cluster's logs) unless nothing went wrong.
    #[track_caller]
    pub fn assert_clean(&self, cluster: &Cluster) {
        let clean = self.active == self.accepted
            && self.lost.is_empty()
            && self.stuck.is_empty()
            && self.duplicated.is_empty()
            && self.failed.is_empty()
            && self.orphans.is_empty()
            && self.corrupt.is_empty()
            && self.staged.is_empty();
        assert!(clean, "{}\n{self:#?}\n{}", self.summary(), cluster.logs(40));
    }
}

/// The TOML file naming the stores (and letting web-download reach the loopback test
/// servers on any port).
fn config_toml(stores: &[(String, PathBuf)], s3: Option<&S3Config>, swift: Option<&SwiftConfig>) -> String {
    let default = match (s3, swift) {
        (Some(_), _) => "s3",
        (None, Some(_)) => "swift",
        (None, None) => stores[0].0.as_str(),
    };
    let mut toml = format!("[storage]\ndefault = \"{default}\"\n");
    for (id, path) in stores {
        toml.push_str(&format!("\n[storage.backends.{id}]\ntype = \"filesystem\"\npath = \"{}\"\n", path.display()));
    }
    if let Some(s3) = s3 {
        toml.push_str(&format!(
            "\n[storage.backends.s3]\ntype = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\nregion = \"{}\"\n\
             access_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprefix = \"{}\"\nallow_http = {}\n",
            s3.bucket,
            s3.endpoint.as_deref().unwrap_or_default(),
            s3.region,
            s3.access_key_id,
            s3.secret_access_key,
            s3.prefix.as_deref().unwrap_or_default(),
            s3.allow_http,
        ));
    }
    if let Some(swift) = swift {
        toml.push_str(&format!(
            "\n[storage.backends.swift]\ntype = \"swift\"\nauth_url = \"{}\"\nauth_version = {}\nuser = \"{}\"\n\
             key = \"{}\"\ncontainer = \"{}\"\nlarge_object_size = {}\nlarge_object_chunk_size = {}\n\
             create_container_on_put = {}\n",
            swift.auth_url,
            swift.auth_version,
            swift.user,
            swift.key,
            swift.container,
            swift.large_object_size,
            swift.large_object_chunk_size,
            swift.create_container_on_put,
        ));
    }
    toml.push_str("\n[import.filtering]\nallow_private_addresses = true\nallowed_ports = []\n");
    toml
}

/// The names in `dir`, sorted (none if it does not exist).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// md5 of a file as coreutils' md5sum computes it.
pub fn md5sum(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

// --- the real clients -------------------------------------------------------------------------

/// One finished client invocation.
pub struct ClientRun {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ClientRun {
    fn describe(&self) -> String {
        format!(
            "`{}` exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

impl Cluster {
    /// `glance <args>` (python-glanceclient from `bin`) against API `api`; must succeed.
    pub fn glance(&self, bin: &Path, api: usize, args: &[&str]) -> ClientRun {
        let mut all = vec!["--os-image-url".to_owned(), self.url(api), "--os-auth-token".into(), TOKEN.into()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        self.succeed(run_client(&bin.join("glance"), &all, &self.clients_dir()))
    }

    /// `openstack <args>` (python-openstackclient from `bin`) against API `api`; must succeed.
    pub fn openstack(&self, bin: &Path, api: usize, args: &[&str]) -> ClientRun {
        let mut all = vec!["--os-auth-type".to_owned(), "none".into(), "--os-endpoint".into(), self.url(api)];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        self.succeed(run_client(&bin.join("openstack"), &all, &self.clients_dir()))
    }

    #[track_caller]
    fn succeed(&self, run: ClientRun) -> ClientRun {
        assert!(run.status.success(), "{}\n{}", run.describe(), self.logs(30));
        run
    }
}

/// Runs a client with a deadline, a pseudo-terminal as stdin (both clients read image data
/// from any stdin that is not a terminal, and glanceclient refuses web-download then) and no
/// `OS_*` variables from the caller's environment.
fn run_client(program: &Path, args: &[String], dir: &Path) -> ClientRun {
    let command_line = format!("{} {}", program.display(), args.join(" "));
    let pty = nix::pty::openpty(None, None).expect("open a pseudo-terminal for the client's stdin");
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PYTHONIOENCODING", "utf-8");
    let inherited: Vec<OsString> = std::env::vars_os().map(|(name, _)| name).collect();
    for name in inherited.iter().filter(|n| n.to_string_lossy().starts_with("OS_")) {
        command.env_remove(name);
    }
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command_line}: {e}"));
    drop(command);
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + CLI_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the client") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{command_line}` did not finish within {CLI_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The terminal's master side stays open until the client is gone (closing it hangs up).
    drop(pty.master);
    let join = |h: std::thread::JoinHandle<String>| h.join().unwrap_or_else(|_| "(reader panicked)".into());
    ClientRun { command: command_line, status, stdout: join(stdout), stderr: join(stderr) }
}

/// glanceclient's `Property | Value` table as a map (wrapped values rejoined).
pub fn properties(output: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut last = String::new();
    for row in table_rows(output).into_iter().skip(1) {
        let [key, value] =
            <[String; 2]>::try_from(row).unwrap_or_else(|r| panic!("not a 2-column row {r:?} in:\n{output}"));
        if key.is_empty() {
            map.entry(last.clone()).and_modify(|v: &mut String| v.push_str(&value));
        } else {
            map.insert(key.clone(), value);
            last = key;
        }
    }
    assert!(!map.is_empty(), "no property table in:\n{output}");
    map
}

/// The cells of every row of a prettytable (`| a | b |`), header row included.
pub fn table_rows(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('|') && line.ends_with('|') && line.len() > 1)
        .map(|line| line[1..line.len() - 1].split('|').map(|cell| cell.trim().to_owned()).collect())
        .collect()
}

// --- a slow web server ------------------------------------------------------------------------

/// A loopback HTTP server answering every GET with the same body at a limited rate, so that
/// a download takes a while whatever the build profile: the far end of the worker-kill test.
pub struct SlowServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    requests: Arc<AtomicU64>,
}

impl SlowServer {
    /// Serves `body` at about `bytes_per_second`.
    pub async fn start(body: Arc<Vec<u8>>, bytes_per_second: u64) -> SlowServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve_slowly(socket, body.clone(), bytes_per_second));
            }
        });
        SlowServer { base, requests }
    }

    /// Connections accepted so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

async fn serve_slowly(mut socket: tokio::net::TcpStream, body: Arc<Vec<u8>>, bytes_per_second: u64) {
    const CHUNK: usize = 64 * 1024;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    if socket.write_all(header.as_bytes()).await.is_err() {
        return;
    }
    let pause = Duration::from_secs_f64(CHUNK as f64 / bytes_per_second.max(1) as f64);
    let started = Instant::now();
    for (n, chunk) in body.chunks(CHUNK).enumerate() {
        if socket.write_all(chunk).await.is_err() {
            return;
        }
        // Paced against the start, so slow writes do not add up to a slower rate.
        let due = started + pause * u32::try_from(n + 1).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
    }
    let _ = socket.shutdown().await;
}
