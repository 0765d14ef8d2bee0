//! Deleting an image: the row at once, its data as soon as the stores allow.

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
