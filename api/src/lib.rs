//! Glint's HTTP API: the Glance v2 wire contract on axum.

mod actions;
mod context;
mod error;
mod extract;
mod image_data;
mod images;
mod info;
mod list;
mod router;
mod schemas;
mod tags;
mod tasks;
mod versions;
mod view;

use std::future::Future;
use std::sync::Arc;

use axum::ServiceExt;
use axum::extract::Request;
use glint_core::config::Config;
use glint_core::image::schema::Validator;
use glint_core::store::Stores;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tower::Layer;
use tower::util::MapRequestLayer;

/// What every handler shares: the database pool, the configuration, the schema validator.
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
}

impl AppState {
    /// State for `config` over the pool `db`, writing data to `stores`.
    pub fn new(config: Config, db: DatabaseConnection, stores: Stores) -> Self {
        let validator = Arc::new(Validator::new(&config.images));
        Self { db, config: Arc::new(config), validator, stores }
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let rewrite = versions::rewrite_version_prefix(state.stores.multistore());
    let app = MapRequestLayer::new(rewrite).layer(router::router(state));
    axum::serve(listener, ServiceExt::<Request>::into_make_service(app))
        .with_graceful_shutdown(shutdown)
        .await
}
