//! What a scrape reads from the database: two indexed aggregate queries and the pool's state.

use std::time::Duration;

use prometheus::{Gauge, IntGauge, IntGaugeVec, Opts, Registry};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};

use crate::Result;
use crate::db::entity::task;
use crate::db::now;
use crate::task::TaskStatus;

/// The database's side of the metrics at one moment.
pub(super) struct Snapshot {
    /// Unfinished tasks by status, every such status present (0 when none).
    tasks: Vec<(&'static str, i64)>,
    /// Pending tasks whose wake-up is unconfirmed.
    outbox_backlog: i64,
    /// How long the oldest of them has waited.
    outbox_oldest_age: Duration,
    /// Pool connections in use and idle, when the driver tells.
    pool: Option<(i64, i64)>,
}

pub(super) async fn read(db: &DatabaseConnection) -> Result<Snapshot> {
    let unfinished = [TaskStatus::Pending, TaskStatus::Processing];
    // One grouped count over the status index; finished tasks are not scanned.
    let counts: Vec<(String, i64)> = task::Entity::find()
        .select_only()
        .column(task::Column::Status)
        .column_as(Expr::col(task::Column::Id).count(), "n")
        .filter(task::Column::Deleted.eq(false))
        .filter(task::Column::Status.is_in(unfinished.map(TaskStatus::as_str)))
        .group_by(task::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let tasks = unfinished
        .map(|status| {
            let count = counts.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
            (status.as_str(), count)
        })
        .to_vec();
    // The outbox relay's own query shape (status, published_at index).
    let outbox: Option<(i64, Option<chrono::NaiveDateTime>)> = task::Entity::find()
        .select_only()
        .column_as(Expr::col(task::Column::Id).count(), "n")
        .column_as(Expr::col(task::Column::CreatedAt).min(), "oldest")
        .filter(task::Column::Deleted.eq(false))
        .filter(task::Column::Status.eq(TaskStatus::Pending.as_str()))
        .filter(task::Column::PublishedAt.is_null())
        .into_tuple()
        .one(db)
        .await?;
    let (outbox_backlog, oldest) = outbox.unwrap_or((0, None));
    let outbox_oldest_age = oldest.map_or(Duration::ZERO, |t| (now() - t).to_std().unwrap_or(Duration::ZERO));
    Ok(Snapshot { tasks, outbox_backlog, outbox_oldest_age, pool: crate::db::pool_state(db) })
}

impl Snapshot {
    /// The snapshot as gauges, in a registry of its own.
    pub(super) fn registry(&self) -> prometheus::Result<Registry> {
        let registry = Registry::new();
        let tasks = IntGaugeVec::new(
            Opts::new("glint_tasks", "Tasks not yet finished, by status (read from the database)."),
            &["status"],
        )?;
        for (status, count) in &self.tasks {
            tasks.with_label_values(&[*status]).set(*count);
        }
        registry.register(Box::new(tasks))?;
        let backlog = IntGauge::new(
            "glint_outbox_backlog",
            "Pending tasks whose wake-up the broker has not confirmed (read from the database).",
        )?;
        backlog.set(self.outbox_backlog);
        registry.register(Box::new(backlog))?;
        let oldest = Gauge::new(
            "glint_outbox_oldest_unpublished_age_seconds",
            "Age of the oldest pending task whose wake-up is unconfirmed; 0 when there is none.",
        )?;
        oldest.set(self.outbox_oldest_age.as_secs_f64());
        registry.register(Box::new(oldest))?;
        if let Some((in_use, idle)) = self.pool {
            let pool = IntGaugeVec::new(
                Opts::new("glint_db_pool_connections", "Database pool connections, by state (in_use, idle)."),
                &["state"],
            )?;
            pool.with_label_values(&["in_use"]).set(in_use);
            pool.with_label_values(&["idle"]).set(idle);
            registry.register(Box::new(pool))?;
        }
        Ok(registry)
    }
}
