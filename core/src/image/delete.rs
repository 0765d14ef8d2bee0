//! Deleting an image, or one store's copy of its data: the rows at once, the bytes as soon as
//! the stores allow.

use sea_orm::DatabaseConnection;

use super::{locations, repo};
use crate::store::{Staging, Stores, scrub};
use crate::{Error, Result};

/// Deletes image `id` (403 if protected, 404 if already gone, 409 while its data is in use,
/// such as RBD clones Nova made from it) and removes its data from the stores and the staging
/// area. The image is gone for clients once its row is; bytes a store fails to drop now are
/// retried by the scrubber.
pub async fn delete(db: &DatabaseConnection, stores: &Stores, staging: &Staging, id: &str) -> Result<()> {
    refuse_in_use(db, stores, id, None).await?;
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
    refuse_in_use(db, stores, id, Some(store_id)).await?;
    repo::remove_store_copy(db, id, store_id).await?;
    if let Err(err) = scrub::purge(db, stores, Some(id)).await {
        tracing::warn!(image = %id, store = %store_id, error = %err, "removing image data failed; the scrubber will retry");
    }
    Ok(())
}

/// 409, as Glance answers, when a store (of `only`, or any) says image `id`'s data there is in
/// use. A store that cannot tell right now does not hold the delete up: the scrubber's removal
/// meets the same refusal later and keeps retrying.
async fn refuse_in_use(db: &DatabaseConnection, stores: &Stores, id: &str, only: Option<&str>) -> Result<()> {
    for location in locations::active(db, id).await? {
        let Some(store_id) = location.store.as_deref().filter(|s| only.is_none_or(|only| only == *s)) else {
            continue;
        };
        let Some(store) = stores.get(store_id) else { continue };
        match store.in_use(&location.url).await {
            Ok(false) => {}
            Ok(true) => {
                return Err(Error::Conflict(format!(
                    "Image {id} could not be deleted because it is in use: its data in store {store_id} has clones"
                )));
            }
            Err(err) => {
                tracing::warn!(image = %id, store = store_id, error = %err, "could not tell whether image data is in use")
            }
        }
    }
    Ok(())
}
