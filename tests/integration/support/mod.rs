//! Test support: a `TestApp` per test on its own database, and helpers to speak to it.

pub mod broker;
pub mod ceph;
pub mod cluster;
pub mod keystone;
pub mod rows;
pub mod s3;
pub mod server;
pub mod swift;
pub mod venv;
pub mod web;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use glint_core::config::Config;
use std::time::Duration;

use glint_core::queue::{MemoryQueue, TaskQueue};
use glint_core::store::{FilesystemStore, Store, Stores};
use glint_worker::flows::Deps;
use reqwest::{Method, RequestBuilder, Response};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;

/// The databases the suite runs against.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

impl Backend {
    fn admin_url(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => "postgres://postgres@127.0.0.1:5432/test",
            Backend::Mariadb => "mysql://root@127.0.0.1:3306/test",
        }
    }
}

/// A database made for one test, dropped when the test ends.
pub(crate) struct TestDatabase {
    backend: Backend,
    name: String,
    /// Its connection URL.
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A fresh database on `backend`; `None` (after printing "skipped: ... unreachable") when
    /// its server is down outside CI, a panic when `CI=true`.
    pub(crate) async fn create(backend: Backend) -> Option<TestDatabase> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "glint_t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap_or("x")
        );
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("glint.db").display());
                Some(TestDatabase { backend, name, url, _dir: Some(dir) })
            }
            Backend::Postgres | Backend::Mariadb => {
                let admin = match Database::connect(backend.admin_url()).await {
                    Ok(admin) => admin,
                    Err(err) => {
                        let why = format!("{backend:?} at {} unreachable: {err}", backend.admin_url());
                        if std::env::var("CI").as_deref() == Ok("true") {
                            panic!("{why} (CI=true: server databases are required)");
                        }
                        eprintln!("skipped: {why}");
                        return None;
                    }
                };
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create database");
                admin.close().await.ok();
                let base = backend.admin_url().rsplit_once('/').map(|(b, _)| b).unwrap_or_default();
                Some(TestDatabase { backend, url: format!("{base}/{name}"), name, _dir: None })
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (backend, name) = (self.backend, self.name.clone());
        let statement = match backend {
            Backend::Sqlite => return,
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            Backend::Mariadb => format!("DROP DATABASE IF EXISTS {name}"),
        };
        // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let admin = Database::connect(backend.admin_url()).await.ok()?;
                admin.execute_unprepared(&statement).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
    }
}

/// What a test's server owns: stopping it and dropping its database when the test ends.
struct Running {
    shutdown: tokio::sync::watch::Sender<bool>,
    _database: TestDatabase,
    _store: tempfile::TempDir,
    _staging: tempfile::TempDir,
    _cache: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The API served in-process on a loopback port, over a fresh, migrated database.
#[derive(Clone)]
pub struct TestApp {
    pub base: String,
    pub db: DatabaseConnection,
    /// The directory of the filesystem store `local`.
    pub store_path: std::path::PathBuf,
    /// The staging directory.
    pub staging_path: std::path::PathBuf,
    /// The image cache's directory (`[cache] dir`; the cache is off unless a test turns it on).
    pub cache_path: std::path::PathBuf,
    client: reqwest::Client,
    headers: Vec<(String, String)>,
    _running: Arc<Running>,
}

impl TestApp {
    /// One pass of the scrubber's recovery of abandoned uploads and of the sweep of partial
    /// writes over this app's store and staging area, as a process runs them every minute.
    pub async fn recover_abandoned_uploads(&self) {
        use glint_core::store::scrub;
        let local = glint_core::store::FilesystemStore::open(&self.store_path).expect("store");
        let stores = glint_core::store::Stores::new("local", [("local".to_owned(), Arc::new(local) as _)].into());
        let staging = glint_core::store::Staging::open(&self.staging_path).expect("staging");
        scrub::recover_abandoned_uploads(&self.db, &staging, scrub::UPLOAD_STALE_AFTER).await.expect("recover");
        let limits = glint_core::store::SweepLimits {
            lease: std::time::Duration::from_secs(60),
            idle: scrub::UPLOAD_STALE_AFTER,
            max_time: std::time::Duration::from_secs(10),
            max_removals: 1000,
        };
        scrub::sweep_partial_writes(&stores, &staging, &limits).await;
        scrub::remove_orphan_staging(&self.db, &staging, &limits).await.expect("orphan staging");
    }

    /// Starts the API on `backend`; `None` (after saying "skipped") when its server is down
    /// outside CI.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Like [`TestApp::spawn`], with a chance to adjust the configuration first.
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
        Self::spawn_full(backend, adjust, |store| store).await
    }

    /// Like [`TestApp::spawn_with`], and `wrap` may replace the `local` store (fault tests).
    pub async fn spawn_full(
        backend: Backend,
        adjust: impl FnOnce(&mut Config),
        wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
    ) -> Option<TestApp> {
        Self::start(backend, adjust, wrap, true).await
    }

    /// The API without the in-process worker and outbox relay, for tests that drive task rows
    /// themselves.
    pub async fn spawn_idle(backend: Backend) -> Option<TestApp> {
        Self::spawn_idle_with(backend, |_| {}).await
    }

    /// Like [`TestApp::spawn_idle`], with a chance to adjust the configuration first.
    pub async fn spawn_idle_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
        Self::start(backend, adjust, |store| store, false).await
    }

    async fn start(
        backend: Backend,
        adjust: impl FnOnce(&mut Config),
        wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
        workers: bool,
    ) -> Option<TestApp> {
        let database = TestDatabase::create(backend).await?;
        let store = tempfile::tempdir().expect("store dir");
        let staging = tempfile::tempdir().expect("staging dir");
        let cache = tempfile::tempdir().expect("cache dir");
        let mut config = Config::default();
        config.cache.dir = cache.path().to_path_buf();
        config.database.url = database.url.clone();
        config.database.max_connections = 4;
        config.import.staging_dir = staging.path().to_path_buf();
        adjust(&mut config);
        let db = glint_core::db::connect(&config.database).await.expect("connect");
        glint_core::db::migrate(&db).await.expect("migrate");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (shutdown, stopping) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stopping.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        // Tests that configure stores get Glance's multistore mode, the others one local store.
        let stores = if config.storage.backends.is_empty() {
            let local = Arc::new(FilesystemStore::open(store.path()).expect("store")) as Arc<dyn Store>;
            Stores::new("local", std::collections::BTreeMap::from([("local".to_owned(), wrap(local))]))
        } else {
            Stores::from_config(&config.storage, std::time::Duration::from_secs(config.tasks.lease)).expect("stores")
        };
        // The in-process shape of `glint serve`: API, one worker and the outbox relay.
        let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
        if workers {
            let flows = glint_worker::flows::registry(Deps::from_config(&config, stores.clone()).expect("flow deps"));
            let settings = glint_worker::Settings::from_config(&config);
            tokio::spawn(glint_worker::run(db.clone(), queue.clone(), flows, settings, stopped()));
            let (every, republish) =
                (Duration::from_secs(config.tasks.relay_interval), Duration::from_secs(config.tasks.republish_after));
            tokio::spawn(glint_worker::relay(db.clone(), queue.clone(), every, republish, stopped()));
        }
        let state = glint_api::AppState::new(config, db.clone(), stores, queue).expect("app state");
        tokio::spawn(glint_api::serve(state, listener, stopped()));
        Some(TestApp {
            base,
            db,
            store_path: store.path().canonicalize().expect("store path"),
            staging_path: staging.path().canonicalize().expect("staging path"),
            cache_path: cache.path().canonicalize().expect("cache path"),
            client: reqwest::Client::new(),
            headers: Vec::new(),
            _running: Arc::new(Running {
                shutdown,
                _database: database,
                _store: store,
                _staging: staging,
                _cache: cache,
            }),
        })
    }

    /// A view of the same server that sends the identity headers of `project` with `roles`.
    pub fn as_project(&self, project: &str, roles: &str) -> TestApp {
        TestApp {
            headers: vec![("X-Project-Id".into(), project.into()), ("X-Roles".into(), roles.into())],
            ..self.clone()
        }
    }

    /// A view of the same server that sends `token` as `X-Auth-Token` (keystone mode).
    pub fn with_token(&self, token: &str) -> TestApp {
        TestApp { headers: vec![("X-Auth-Token".into(), token.into())], ..self.clone() }
    }

    /// A view that sends no credentials at all.
    pub fn anonymous(&self) -> TestApp {
        TestApp { headers: Vec::new(), ..self.clone() }
    }

    /// A request to `path` (relative to the service root) with this view's identity, asking
    /// for JSON error bodies as Tempest does.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.raw(method, path).header("Accept", "application/json")
    }

    /// A request with this view's identity and no `Accept` header.
    pub fn raw(&self, method: Method, path: &str) -> RequestBuilder {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("request")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("json")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path).json(body).send().await.expect("request")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.expect("request")
    }

    /// PATCH in the v2.1 dialect (glanceclient, openstacksdk).
    pub async fn patch(&self, id: &str, ops: &Value) -> Response {
        self.patch_as(id, "application/openstack-images-v2.1-json-patch", ops).await
    }

    pub async fn patch_as(&self, id: &str, content_type: &str, ops: &Value) -> Response {
        self.request(Method::PATCH, &format!("/v2/images/{id}"))
            .header("Content-Type", content_type)
            .body(ops.to_string())
            .send()
            .await
            .expect("request")
    }

    /// Creates an image and returns its JSON (asserting 201).
    pub async fn create_image(&self, body: Value) -> Value {
        let response = self.post_json("/v2/images", &body).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 201, "create failed: {text}");
        serde_json::from_str(&text).expect("json")
    }

    /// The ids of a list response, in order.
    pub async fn list_ids(&self, query: &str) -> Vec<String> {
        let body = self.get_json(&format!("/v2/images{query}")).await;
        ids(&body)
    }
}

/// Names of the files in the test's store directory (partial files included).
pub fn store_listing(app: &TestApp) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&app.store_path)
        .expect("store dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The `id`s of `body["images"]`.
pub fn ids(body: &Value) -> Vec<String> {
    body["images"].as_array().expect("images array").iter().map(|i| i["id"].as_str().expect("id").to_owned()).collect()
}

/// Asserts `response` has `status` and Glance's flat JSON error body, and returns its message.
pub async fn expect_error(response: Response, status: u16) -> String {
    assert_eq!(response.status(), status, "unexpected status for {}", response.url());
    let body = response.text().await.expect("body");
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if value.is_object() {
        assert!(value["code"].as_str().is_some_and(|c| c.starts_with(&status.to_string())), "{body}");
        return value["message"].as_str().unwrap_or_default().to_owned();
    }
    body
}

/// Generates one `#[tokio::test]` per backend for each `async fn name(app: TestApp)`;
/// `config = f;` first applies `fn f(&mut Config)` to every app, `idle;` spawns apps without
/// the worker, `keystone;` apps in keystone mode against the test Keystone.
macro_rules! on_every_database {
    (@spawn |$backend:ident| $spawn:expr; $($name:ident),+) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use $crate::support::{Backend, TestApp, keystone::keystone};

                async fn run($backend: Backend) {
                    if let Some(app) = $spawn.await {
                        super::$name(app).await;
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
    (idle; $($name:ident),+ $(,)?) => {
        on_every_database!(@spawn |backend| TestApp::spawn_idle(backend); $($name),+);
    };
    (config = $config:ident; $($name:ident),+ $(,)?) => {
        on_every_database!(@spawn |backend| TestApp::spawn_with(backend, super::$config); $($name),+);
    };
    (keystone; $($name:ident),+ $(,)?) => {
        on_every_database!(@spawn |backend| async {
            let keystone = keystone()?;
            TestApp::spawn_with(backend, |config| keystone.configure(config)).await
        }; $($name),+);
    };
    ($($name:ident),+ $(,)?) => {
        on_every_database!(@spawn |backend| TestApp::spawn(backend); $($name),+);
    };
}
pub(crate) use on_every_database;
