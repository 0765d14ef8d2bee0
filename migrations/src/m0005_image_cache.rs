//! The image cache's bookkeeping, shared by every API node (Glance's `centralized_db` driver):
//! the nodes, the images each node holds on its disk, and the images queued for prefetching
//! on each node. Times are microseconds since the epoch, so that least-recently-used order
//! holds within a second on every backend (MariaDB's DATETIME keeps whole seconds).

use sea_orm_migration::prelude::*;

use crate::builders::{big_id, unique_index};

#[derive(DeriveMigrationName)]
pub struct Migration;

// Glance's column names repeat the table's.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden, Clone, Copy)]
enum NodeReference {
    Table,
    NodeReferenceId,
    NodeReferenceUrl,
}

#[derive(DeriveIden, Clone, Copy)]
enum CachedImages {
    Table,
    Id,
    ImageId,
    LastAccessed,
    LastModified,
    Size,
    Hits,
    Checksum,
    NodeReferenceId,
}

#[derive(DeriveIden, Clone, Copy)]
enum CacheQueue {
    Table,
    Id,
    ImageId,
    QueuedAt,
    NodeReferenceId,
}

fn node_fk<T: IntoIden + Copy + 'static>(table: T, column: T) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(table, column).to(NodeReference::Table, NodeReference::NodeReferenceId).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(NodeReference::Table)
                    .col(big_id(NodeReference::NodeReferenceId))
                    .col(ColumnDef::new(NodeReference::NodeReferenceUrl).string_len(255).not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique_index(
                "uq_node_reference_node_reference_url",
                NodeReference::Table,
                &[NodeReference::NodeReferenceUrl],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CachedImages::Table)
                    .col(big_id(CachedImages::Id))
                    .col(ColumnDef::new(CachedImages::ImageId).string_len(36).not_null())
                    .col(ColumnDef::new(CachedImages::LastAccessed).big_integer().not_null())
                    .col(ColumnDef::new(CachedImages::LastModified).big_integer().not_null())
                    .col(ColumnDef::new(CachedImages::Size).big_integer().not_null())
                    .col(ColumnDef::new(CachedImages::Hits).integer().not_null())
                    .col(ColumnDef::new(CachedImages::Checksum).string_len(32).null())
                    .col(ColumnDef::new(CachedImages::NodeReferenceId).big_integer().not_null())
                    .foreign_key(&mut node_fk(CachedImages::Table, CachedImages::NodeReferenceId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique_index(
                "ix_cached_images_image_id_node_reference_id",
                CachedImages::Table,
                &[CachedImages::ImageId, CachedImages::NodeReferenceId],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CacheQueue::Table)
                    .col(big_id(CacheQueue::Id))
                    .col(ColumnDef::new(CacheQueue::ImageId).string_len(36).not_null())
                    .col(ColumnDef::new(CacheQueue::QueuedAt).big_integer().not_null())
                    .col(ColumnDef::new(CacheQueue::NodeReferenceId).big_integer().not_null())
                    .foreign_key(&mut node_fk(CacheQueue::Table, CacheQueue::NodeReferenceId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique_index(
                "ix_cache_queue_image_id_node_reference_id",
                CacheQueue::Table,
                &[CacheQueue::ImageId, CacheQueue::NodeReferenceId],
            ))
            .await
    }
}
