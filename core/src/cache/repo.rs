//! The image cache's bookkeeping in the shared database: nodes, their entries, their queues.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};

use crate::Result;
use crate::db::entity::{cache_queue, cached_image, image, node_reference};

/// Microseconds since the epoch, the cache tables' unit of time.
pub fn micros_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The id of the node named `url`, recorded on first use.
pub async fn node_id(db: &impl ConnectionTrait, url: &str) -> Result<i64> {
    let find = || node_reference::Entity::find().filter(node_reference::Column::NodeReferenceUrl.eq(url)).one(db);
    if let Some(node) = find().await? {
        return Ok(node.node_reference_id);
    }
    let row = node_reference::ActiveModel { node_reference_id: NotSet, node_reference_url: Set(url.to_owned()) };
    match node_reference::Entity::insert(row).exec_without_returning(db).await {
        Ok(_) => {}
        // Another process of the same node registered it meanwhile.
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
        Err(err) => return Err(err.into()),
    }
    let node = find().await?.ok_or_else(|| crate::Error::Internal(format!("node {url} was not recorded")))?;
    Ok(node.node_reference_id)
}

/// The entries of node `node`, least recently used first.
pub async fn entries(db: &impl ConnectionTrait, node: i64) -> Result<Vec<cached_image::Model>> {
    Ok(cached_image::Entity::find()
        .filter(cached_image::Column::NodeReferenceId.eq(node))
        .order_by_asc(cached_image::Column::LastAccessed)
        .order_by_asc(cached_image::Column::Id)
        .all(db)
        .await?)
}

/// Records that node `node` holds `size` bytes of image `image_id` (replacing an older record).
pub async fn insert_entry(
    db: &impl ConnectionTrait,
    node: i64,
    image_id: &str,
    size: u64,
    checksum: Option<&str>,
) -> Result<()> {
    delete_entry(db, node, image_id).await?;
    let now = micros_now();
    let row = cached_image::ActiveModel {
        id: NotSet,
        image_id: Set(image_id.to_owned()),
        last_accessed: Set(now),
        last_modified: Set(now),
        size: Set(i64::try_from(size).unwrap_or(i64::MAX)),
        hits: Set(0),
        checksum: Set(checksum.map(str::to_owned)),
        node_reference_id: Set(node),
    };
    cached_image::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// Counts a hit on node `node`'s entry of `image_id`; false when there is no such entry.
pub async fn hit(db: &impl ConnectionTrait, node: i64, image_id: &str) -> Result<bool> {
    let updated = cached_image::Entity::update_many()
        .col_expr(cached_image::Column::Hits, Expr::col(cached_image::Column::Hits).add(1))
        .col_expr(cached_image::Column::LastAccessed, Expr::value(micros_now()))
        .filter(cached_image::Column::NodeReferenceId.eq(node))
        .filter(cached_image::Column::ImageId.eq(image_id))
        .exec(db)
        .await?;
    Ok(updated.rows_affected > 0)
}

/// Forgets node `node`'s entry of `image_id`.
pub async fn delete_entry(db: &impl ConnectionTrait, node: i64, image_id: &str) -> Result<()> {
    cached_image::Entity::delete_many()
        .filter(cached_image::Column::NodeReferenceId.eq(node))
        .filter(cached_image::Column::ImageId.eq(image_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Forgets every entry of node `node`.
pub async fn delete_entries(db: &impl ConnectionTrait, node: i64) -> Result<()> {
    cached_image::Entity::delete_many().filter(cached_image::Column::NodeReferenceId.eq(node)).exec(db).await?;
    Ok(())
}

/// Forgets `image_id` on every node, cached or queued (the image is gone or deactivated).
pub async fn forget_everywhere(db: &impl ConnectionTrait, image_id: &str) -> Result<()> {
    cached_image::Entity::delete_many().filter(cached_image::Column::ImageId.eq(image_id)).exec(db).await?;
    cache_queue::Entity::delete_many().filter(cache_queue::Column::ImageId.eq(image_id)).exec(db).await?;
    Ok(())
}

/// The URLs of the nodes holding `image_id`.
pub async fn nodes_holding(db: &impl ConnectionTrait, image_id: &str) -> Result<Vec<String>> {
    let nodes: Vec<i64> = cached_image::Entity::find()
        .select_only()
        .column(cached_image::Column::NodeReferenceId)
        .filter(cached_image::Column::ImageId.eq(image_id))
        .order_by_asc(cached_image::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let urls: HashMap<i64, String> = node_reference::Entity::find()
        .filter(node_reference::Column::NodeReferenceId.is_in(nodes.clone()))
        .all(db)
        .await?
        .into_iter()
        .map(|n| (n.node_reference_id, n.node_reference_url))
        .collect();
    Ok(nodes.iter().filter_map(|id| urls.get(id).cloned()).collect())
}

/// Queues `image_id` for prefetching on node `node`; false when it already was.
pub async fn enqueue(db: &impl ConnectionTrait, node: i64, image_id: &str) -> Result<bool> {
    let row = cache_queue::ActiveModel {
        id: NotSet,
        image_id: Set(image_id.to_owned()),
        queued_at: Set(micros_now()),
        node_reference_id: Set(node),
    };
    match cache_queue::Entity::insert(row).exec_without_returning(db).await {
        Ok(_) => Ok(true),
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The images queued on node `node`, in the order they were queued.
pub async fn queued(db: &impl ConnectionTrait, node: i64) -> Result<Vec<String>> {
    Ok(cache_queue::Entity::find()
        .select_only()
        .column(cache_queue::Column::ImageId)
        .filter(cache_queue::Column::NodeReferenceId.eq(node))
        .order_by_asc(cache_queue::Column::QueuedAt)
        .order_by_asc(cache_queue::Column::Id)
        .into_tuple()
        .all(db)
        .await?)
}

/// Takes `image_id` off node `node`'s queue.
pub async fn dequeue(db: &impl ConnectionTrait, node: i64, image_id: &str) -> Result<()> {
    cache_queue::Entity::delete_many()
        .filter(cache_queue::Column::NodeReferenceId.eq(node))
        .filter(cache_queue::Column::ImageId.eq(image_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Empties node `node`'s queue; returns how many images were on it.
pub async fn clear_queue(db: &impl ConnectionTrait, node: i64) -> Result<u64> {
    let deleted =
        cache_queue::Entity::delete_many().filter(cache_queue::Column::NodeReferenceId.eq(node)).exec(db).await?;
    Ok(deleted.rows_affected)
}

/// Which of `ids` name images that are `active` (and not deleted).
pub async fn active_images(db: &impl ConnectionTrait, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(image::Entity::find()
        .select_only()
        .column(image::Column::Id)
        .filter(image::Column::Id.is_in(ids.to_vec()))
        .filter(image::Column::Status.eq("active"))
        .filter(image::Column::Deleted.eq(false))
        .into_tuple()
        .all(db)
        .await?)
}
