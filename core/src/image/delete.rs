//! Deleting an image, or one store's copy of its data: the rows at once, the bytes as soon as
//! the stores allow.

use sea_orm::DatabaseConnection;

use super::repo;
use crate::Result;
use crate::store::{Staging, Stores, scrub};

/// Deletes image `id` (403 if protected, 404 if already gone) and removes its data from the
/// stores and the staging area. The image is gone for clients once its row is; bytes a store
/// fails to drop now are retried by the scrubber, so only the row can fail this.
pub async fn delete(db: &DatabaseConnection, stores: &Stores, staging: &Staging, id: &str) -> Result<()> {
    repo::delete(db, id).await?;
    if let Err(err) = scrub::purge(db, stores, Some(id)).await {
        tracing::warn!(image = %id, error = %err, "removing image data failed; the scrubber will retry");
    }
    if let Err(err) = staging.remove(id).await {
        tracing::warn!(image = %id, error = %err, "removing staged data failed");
    }
    Ok(())
}

/// Removes active image `id`'s copy in store `store_id` (`DELETE /v2/stores/{store}/{image}`),
/// refusing its last copy. The image no longer lists the store once the row is marked; bytes
/// the store fails to drop now are retried by the scrubber, as for a deleted image.
pub async fn delete_from_store(db: &DatabaseConnection, stores: &Stores, id: &str, store_id: &str) -> Result<()> {
    repo::remove_store_copy(db, id, store_id).await?;
    if let Err(err) = scrub::purge(db, stores, Some(id)).await {
        tracing::warn!(image = %id, store = %store_id, error = %err, "removing image data failed; the scrubber will retry");
    }
    Ok(())
}
