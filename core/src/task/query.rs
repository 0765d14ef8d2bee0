//! The task list (`GET /v2/tasks`): its query type, sort keys and paging.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::repo::{assemble, purge_expired, visible_to};
use super::{Task, TaskStatus, TaskType};
use crate::context::RequestContext;
use crate::db::entity::task;
use crate::list::SortDir;
use crate::{Error, Result};

/// Sortable columns of the task list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum TaskSortKey {
    Id,
    Type,
    Status,
    Owner,
    ExpiresAt,
    CreatedAt,
    UpdatedAt,
}

impl TaskSortKey {
    /// Parses a sort key; unknown keys are a 400.
    pub fn parse(name: &str) -> Result<TaskSortKey> {
        Ok(match name {
            "id" => TaskSortKey::Id,
            "type" => TaskSortKey::Type,
            "status" => TaskSortKey::Status,
            "owner" => TaskSortKey::Owner,
            "expires_at" => TaskSortKey::ExpiresAt,
            "created_at" => TaskSortKey::CreatedAt,
            "updated_at" => TaskSortKey::UpdatedAt,
            other => return Err(Error::BadRequest(format!("Invalid sort key: {other}"))),
        })
    }

    fn column(self) -> task::Column {
        match self {
            TaskSortKey::Id => task::Column::Id,
            TaskSortKey::Type => task::Column::TaskType,
            TaskSortKey::Status => task::Column::Status,
            TaskSortKey::Owner => task::Column::Owner,
            TaskSortKey::ExpiresAt => task::Column::ExpiresAt,
            TaskSortKey::CreatedAt => task::Column::CreatedAt,
            TaskSortKey::UpdatedAt => task::Column::UpdatedAt,
        }
    }
}

/// A parsed `GET /v2/tasks`.
#[derive(Clone, Debug)]
pub struct TaskQuery {
    /// Only tasks in this status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this type.
    pub task_type: Option<TaskType>,
    /// Only tasks of this owner.
    pub owner: Option<String>,
    /// Only tasks of this image.
    pub image_id: Option<String>,
    /// Order (`created_at desc` by default); `id` breaks ties.
    pub sort: (TaskSortKey, SortDir),
    /// Page size (already clamped).
    pub limit: u64,
    /// The last task of the previous page.
    pub marker: Option<String>,
}

/// One page of the tasks the caller may see.
pub async fn list(db: &impl ConnectionTrait, ctx: &RequestContext, query: &TaskQuery) -> Result<Vec<Task>> {
    purge_expired(db).await?;
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let mut select = task::Entity::find().filter(task::Column::Deleted.eq(false)).filter(visible_to(ctx));
    if let Some(status) = query.status {
        select = select.filter(task::Column::Status.eq(status.as_str()));
    }
    if let Some(task_type) = query.task_type {
        select = select.filter(task::Column::TaskType.eq(task_type.as_str()));
    }
    if let Some(owner) = &query.owner {
        select = select.filter(task::Column::Owner.eq(owner.as_str()));
    }
    if let Some(image_id) = &query.image_id {
        select = select.filter(task::Column::ImageId.eq(image_id.as_str()));
    }
    let (key, dir) = query.sort;
    if let Some(marker) = &query.marker {
        let marker_row = task::Entity::find_by_id(marker.clone())
            .filter(task::Column::Deleted.eq(false))
            .filter(visible_to(ctx))
            .one(db)
            .await?
            .ok_or_else(|| Error::BadRequest(format!("Invalid marker. Task {marker} could not be found.")))?;
        let value = sort_value(key, &marker_row);
        let column = Expr::col((task::Entity, key.column()));
        let id = Expr::col((task::Entity, task::Column::Id));
        let (beyond, id_beyond) = match dir {
            SortDir::Asc => (column.clone().gt(value.clone()), id.gt(marker_row.id.clone())),
            SortDir::Desc => (column.clone().lt(value.clone()), id.lt(marker_row.id.clone())),
        };
        select = select.filter(Condition::any().add(beyond).add(Condition::all().add(column.eq(value)).add(id_beyond)));
    }
    let rows = select
        .order_by(key.column(), dir.order())
        .order_by(task::Column::Id, dir.order())
        .limit(query.limit)
        .all(db)
        .await?;
    assemble(db, rows).await
}

fn sort_value(key: TaskSortKey, row: &task::Model) -> sea_orm::Value {
    match key {
        TaskSortKey::Id => row.id.clone().into(),
        TaskSortKey::Type => row.task_type.clone().into(),
        TaskSortKey::Status => row.status.clone().into(),
        TaskSortKey::Owner => row.owner.clone().into(),
        TaskSortKey::ExpiresAt => row.expires_at.into(),
        TaskSortKey::CreatedAt => row.created_at.into(),
        TaskSortKey::UpdatedAt => row.updated_at.into(),
    }
}
