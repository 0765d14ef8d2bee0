//! The task tables: tasks and task_info (input, result and message of a task).

use sea_orm_migration::prelude::*;

use crate::builders::cascade_fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Tasks {
    Table,
    Id,
    Type,
    Status,
    Owner,
    ExpiresAt,
    ImageId,
    RequestId,
    UserId,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
    Deleted,
}

#[derive(DeriveIden, Clone, Copy)]
enum TaskInfo {
    Table,
    TaskId,
    Input,
    Result,
    Message,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(ColumnDef::new(Tasks::Id).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(Tasks::Type).string_len(30).not_null())
                    .col(ColumnDef::new(Tasks::Status).string_len(30).not_null())
                    .col(ColumnDef::new(Tasks::Owner).string_len(255).not_null())
                    .col(ColumnDef::new(Tasks::ExpiresAt).date_time().null())
                    .col(ColumnDef::new(Tasks::ImageId).string_len(36).null())
                    .col(ColumnDef::new(Tasks::RequestId).string_len(64).null())
                    .col(ColumnDef::new(Tasks::UserId).string_len(64).null())
                    .col(ColumnDef::new(Tasks::CreatedAt).date_time().not_null())
                    .col(ColumnDef::new(Tasks::UpdatedAt).date_time().not_null())
                    .col(ColumnDef::new(Tasks::DeletedAt).date_time().null())
                    .col(ColumnDef::new(Tasks::Deleted).boolean().not_null().default(false))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("ix_tasks_owner", Tasks::Owner),
            ("ix_tasks_status", Tasks::Status),
            ("ix_tasks_type", Tasks::Type),
            ("ix_tasks_image_id", Tasks::ImageId),
            ("ix_tasks_updated_at", Tasks::UpdatedAt),
            ("ix_tasks_expires_at", Tasks::ExpiresAt),
        ] {
            manager.create_index(Index::create().name(name).table(Tasks::Table).col(column).to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(TaskInfo::Table)
                    .col(ColumnDef::new(TaskInfo::TaskId).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(TaskInfo::Input).json().null())
                    .col(ColumnDef::new(TaskInfo::Result).json().null())
                    .col(ColumnDef::new(TaskInfo::Message).text().not_null())
                    .foreign_key(&mut cascade_fk(TaskInfo::Table, TaskInfo::TaskId, Tasks::Table, Tasks::Id))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
