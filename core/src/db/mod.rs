//! The metadata database: connecting (SQLite, PostgreSQL, MySQL/MariaDB), migrating, the entities.

pub mod entity;

use std::time::Duration;

use chrono::{NaiveDateTime, SubsecRound, Utc};
use glint_migrations::{Migrator, MigratorTrait};
/// The database pool, re-exported so that the API holds one without depending on sea-orm.
pub use sea_orm::DatabaseConnection;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend};

use crate::config::DatabaseConfig;
use crate::{Error, Result};

/// The current time as stored: UTC, whole seconds (Glance's precision on every backend).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(0)
}

/// Opens a pool for `cfg.url`; for SQLite, creates the file's directory and turns on WAL.
pub async fn connect(cfg: &DatabaseConfig) -> Result<DatabaseConnection> {
    if let Some(path) = sqlite_path(&cfg.url)
        && let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut options = ConnectOptions::new(cfg.url.clone());
    options.max_connections(cfg.max_connections).connect_timeout(Duration::from_secs(10)).sqlx_logging(false);
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // WAL lets readers proceed while a writer commits; the setting persists in the file.
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Ok(db)
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    Migrator::up(db, None).await?;
    Ok(())
}

/// Connections of `db`'s pool in use and idle; `None` for a connection that is no pool.
pub fn pool_state(db: &DatabaseConnection) -> Option<(i64, i64)> {
    use sea_orm::DatabaseConnectionType as Kind;
    let (size, idle) = match &db.inner {
        Kind::SqlxPostgresPoolConnection(_) => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        Kind::SqlxMySqlPoolConnection(_) => {
            let pool = db.get_mysql_connection_pool();
            (pool.size(), pool.num_idle())
        }
        Kind::SqlxSqlitePoolConnection(_) => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    let idle = i64::try_from(idle).unwrap_or(i64::MAX);
    Some((i64::from(size).saturating_sub(idle).max(0), idle))
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_path_strips_scheme_and_options() {
        assert_eq!(sqlite_path("sqlite://data/glint.db?mode=rwc"), Some("data/glint.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://localhost/test"), None);
    }
}
