//! The scrubber: removes the bytes of deleted images and recovers uploads whose process died.

use std::time::Duration;

use sea_orm::DatabaseConnection;

use super::{Staging, Stores};
use crate::Result;
use crate::image::{Status, locations, repo as images};

/// An upload silent for this long belongs to a dead process: its image goes back to `queued`
/// and its partial bytes are removed. Several heartbeats, so a slow database is no false alarm.
pub const UPLOAD_STALE_AFTER: Duration = Duration::from_secs(300);

/// Removes the bytes of deleted images: those of `image_id`, or a batch of any. Copies whose
/// store fails stay marked and are retried by the next pass. Returns how many were removed.
pub async fn purge(db: &DatabaseConnection, stores: &Stores, image_id: Option<&str>) -> Result<usize> {
    let mut removed = 0;
    for location in locations::pending_deletion(db, image_id, 100).await? {
        let Some(store) = location.store.as_deref().and_then(|id| stores.get(id)) else {
            tracing::warn!(location = %location.url, store = ?location.store, "data of a deleted image is in a store that is not configured");
            continue;
        };
        match store.delete(&location.url).await {
            Ok(()) => {
                locations::mark_deleted(db, location.id).await?;
                removed += 1;
            }
            Err(err) => {
                tracing::warn!(image = %location.image_id, location = %location.url, error = %err, "removing image data failed; will retry")
            }
        }
    }
    Ok(removed)
}

/// Cleans up after uploads and stagings whose process died: their images go back to
/// `queued`, and partial bytes idle for `idle` are removed from every store and the staging
/// area. An `uploading` image whose data was staged in full is waiting for its import, not
/// abandoned: it is left alone.
pub async fn recover_abandoned_uploads(
    db: &DatabaseConnection,
    stores: &Stores,
    staging: &Staging,
    idle: Duration,
) -> Result<()> {
    let reset = images::reset_stale_uploads(db, idle).await?;
    if reset > 0 {
        tracing::warn!(images = reset, "uploads abandoned by a dead process: images back to queued");
    }
    for id in images::stale_in_status(db, Status::Uploading, idle).await? {
        if !staging.contains(&id).await {
            tracing::warn!(image = %id, "staging abandoned by a dead process: image back to queued");
            images::back_to_queued(db, &id, Status::Uploading).await?;
        }
    }
    let partials = stores.all().map(|(id, store)| (id, store.remove_abandoned(idle)));
    for (id, sweep) in partials {
        match sweep.await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(store = id, removed, "removed partial data of abandoned uploads"),
            Err(err) => tracing::warn!(store = id, error = %err, "could not sweep abandoned uploads"),
        }
    }
    match staging.remove_abandoned(idle).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "removed partial staging data of abandoned stagings"),
        Err(err) => tracing::warn!(error = %err, "could not sweep the staging area"),
    }
    Ok(())
}

/// Every `every`, for as long as the process runs: retries removals that failed, and
/// recovers uploads abandoned by dead processes.
pub async fn scrub(db: DatabaseConnection, stores: Stores, staging: Staging, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(err) = purge(&db, &stores, None).await {
            tracing::warn!(error = %err, "scrubber pass failed");
        }
        if let Err(err) = recover_abandoned_uploads(&db, &stores, &staging, UPLOAD_STALE_AFTER).await {
            tracing::warn!(error = %err, "recovering abandoned uploads failed");
        }
    }
}
