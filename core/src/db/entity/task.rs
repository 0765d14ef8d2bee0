//! The `tasks` row.

use sea_orm::entity::prelude::*;

/// One task; its input, result and message are in `task_info`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
#[allow(missing_docs)]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(column_name = "type")]
    pub task_type: String,
    pub status: String,
    pub owner: String,
    pub expires_at: Option<DateTime>,
    pub image_id: Option<String>,
    pub request_id: Option<String>,
    pub user_id: Option<String>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub deleted_at: Option<DateTime>,
    pub deleted: bool,
    /// The worker holding the task while it is `processing`.
    pub claimed_by: Option<String>,
    /// Until when the claim holds unless renewed; past it, the task is pending again.
    pub lease_expires_at: Option<DateTime>,
    /// When the wake-up message was last confirmed by the broker (the outbox mark).
    pub published_at: Option<DateTime>,
    /// How many times a worker claimed the task.
    pub attempts: i32,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
