//! Task workers: consume task messages and run the import flows.
//!
//! The import pipeline (tasks, broker transport, flows) is not built yet, so a worker has
//! nothing it could run; it says so and exits rather than idling as if it were working.

use std::future::Future;

use glint_core::config::Config;
use sea_orm::DatabaseConnection;

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This build has no task flows to run.
    #[error("this build of glint has no task flows yet (the import pipeline is not implemented); nothing for a worker to run")]
    NoFlows,
}

/// Runs a worker until `shutdown` resolves.
pub async fn run(
    _config: &Config,
    _db: DatabaseConnection,
    _shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    Err(Error::NoFlows)
}
