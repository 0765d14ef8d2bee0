//! Task claiming and the outbox: which worker holds a task until when, and when its wake-up
//! message was last published.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Tasks {
    Table,
    Status,
    ClaimedBy,
    LeaseExpiresAt,
    PublishedAt,
    Attempts,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one column at a time.
        for column in [
            ColumnDef::new(Tasks::ClaimedBy).string_len(255).null().to_owned(),
            ColumnDef::new(Tasks::LeaseExpiresAt).date_time().null().to_owned(),
            ColumnDef::new(Tasks::PublishedAt).date_time().null().to_owned(),
            ColumnDef::new(Tasks::Attempts).integer().not_null().default(0).to_owned(),
        ] {
            manager.alter_table(Table::alter().table(Tasks::Table).add_column(column).to_owned()).await?;
        }
        // The outbox relay and the lease sweeper scan by status and these times.
        manager
            .create_index(
                Index::create()
                    .name("ix_tasks_status_published")
                    .table(Tasks::Table)
                    .col(Tasks::Status)
                    .col(Tasks::PublishedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_tasks_status_lease")
                    .table(Tasks::Table)
                    .col(Tasks::Status)
                    .col(Tasks::LeaseExpiresAt)
                    .to_owned(),
            )
            .await
    }
}
