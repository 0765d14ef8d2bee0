//! Glint's HTTP API: the Glance v2 wire contract on axum.

mod access_log;
mod actions;
mod body;
mod cache;
mod console;
mod context;
mod error;
mod extract;
mod forwarded;
mod image_data;
mod images;
mod import;
mod info;
mod list;
mod locations;
mod members;
mod metadefs;
pub mod metrics;
mod router;
mod schemas;
mod server;
mod stores;
mod tags;
mod tasks;
mod versions;
mod view;

use std::future::Future;
use std::sync::Arc;

use glint_core::cache::ImageCache;
use glint_core::config::{AuthMode, Config, Network};
use glint_core::db::DatabaseConnection;
use glint_core::fetch::Fetcher;
use glint_core::image::schema::Validator;
use glint_core::keystone::Keystone;
use glint_core::policy::Policy;
use glint_core::queue::TaskQueue;
use glint_core::store::{Staging, Stores};
use tokio::net::TcpListener;
use tower::Layer;
use tower::util::MapRequestLayer;

/// What every handler shares: the database pool, the configuration, the schema validator,
/// the stores and the task transport.
#[derive(Clone)]
pub struct AppState {
    /// Metadata database pool.
    pub db: DatabaseConnection,
    /// The process configuration.
    pub config: Arc<Config>,
    /// The image schema, compiled once.
    pub validator: Arc<Validator>,
    /// The image data stores.
    pub stores: Stores,
    /// Data staged for imports.
    pub staging: Staging,
    /// Checks web-download URLs.
    pub fetcher: Arc<Fetcher>,
    /// Where task wake-ups are published.
    pub queue: Arc<dyn TaskQueue>,
    /// Validates tokens in `keystone` auth mode.
    pub keystone: Option<Arc<Keystone>>,
    /// The peers whose X-Forwarded-* headers are believed (`[server] trusted_proxies`).
    pub trusted_proxies: Arc<Vec<Network>>,
    /// The rules every request is judged by.
    pub policy: Arc<Policy>,
    /// This node's image cache, when `[cache] enabled`.
    pub cache: Option<Arc<ImageCache>>,
    /// Whether the server is stopping, and the work it waits for.
    pub(crate) drain: server::Drain,
}

impl AppState {
    /// State for `config` over the pool `db`, writing data to `stores` and waking workers
    /// through `queue`.
    pub fn new(
        config: Config,
        db: DatabaseConnection,
        stores: Stores,
        queue: Arc<dyn TaskQueue>,
    ) -> glint_core::Result<Self> {
        let validator = Arc::new(Validator::new(&config.images));
        let staging = Staging::from_config(&config.import)?;
        let fetcher =
            Arc::new(Fetcher::new(&config.import.filtering).map_err(|e| glint_core::Error::Config(e.to_string()))?);
        let keystone = match config.auth.mode {
            AuthMode::Keystone => Some(Arc::new(Keystone::new(&config.auth.keystone)?)),
            AuthMode::Noauth => None,
        };
        let trusted_proxies = Arc::new(config.server.trusted_proxy_networks()?);
        let cache = ImageCache::open(&config.cache, &config.server, db.clone());
        let protections = config.images.property_protection_file.as_deref();
        let policy = Arc::new(Policy::load(
            config.auth.policy_file.as_deref(),
            protections.map(|file| (file, config.images.property_protection_rule_format)),
        )?);
        Ok(Self {
            db,
            config: Arc::new(config),
            validator,
            stores,
            staging,
            fetcher,
            queue,
            keystone,
            trusted_proxies,
            policy,
            cache,
            drain: server::Drain::default(),
        })
    }

    /// Wakes a worker for recorded task `id`, in the background: the row is the truth, and the
    /// outbox relay publishes whatever this does not get through.
    pub(crate) fn announce(&self, id: &str) {
        let (db, queue, id) = (self.db.clone(), self.queue.clone(), id.to_owned());
        tokio::spawn(async move { glint_core::queue::announce(&db, queue.as_ref(), &id).await });
    }
}

/// `GET /metrics` reads the database through the pool alone.
impl axum::extract::FromRef<AppState> for DatabaseConnection {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting, lets the
/// requests in flight finish until `[server] shutdown_timeout`, and cuts the rest. With the
/// image cache on, the node's cache job runs alongside.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let rewrite = versions::rewrite_version_prefix(state.stores.multistore(), state.cache.is_some());
    let limits = server::Limits::from_config(&state.config.server);
    let drain = state.drain.clone();
    let cache_job = state.cache.clone().map(|cache| tokio::spawn(cache.run(state.stores.clone())));
    let app = MapRequestLayer::new(rewrite).layer(router::router(state));
    let served = server::run(app, listener, limits, drain, shutdown).await;
    // A fill cut here leaves no entry: its partial file goes with its writer.
    if let Some(job) = cache_job {
        job.abort();
    }
    served
}
