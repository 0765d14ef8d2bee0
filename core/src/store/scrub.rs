//! The scrubber: removes the bytes of deleted images and recovers uploads whose process died;
//! the sweep: removes partial writes of dead processes.

use std::time::Duration;

use sea_orm::DatabaseConnection;

use super::{Staging, Stores, Swept};
use crate::image::{Status, locations, repo as images};
use crate::{Result, metrics};

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

/// Recovers uploads and stagings whose process died (silent for `idle`): their images go back
/// to `queued`. Their partial bytes are [`sweep`]'s. An `uploading` image whose data was
/// staged in full is waiting for its import, not abandoned: it is left alone.
pub async fn recover_abandoned_uploads(db: &DatabaseConnection, staging: &Staging, idle: Duration) -> Result<()> {
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
    Ok(())
}

/// Removes the partial data of writes abandoned by a dead process from every store and the
/// staging area (see [`super::Store::remove_abandoned`]; `idle` only counts where a store
/// cannot tell a dead writer otherwise). Each store bounds what one sweep spends.
pub async fn sweep_partial_writes(stores: &Stores, staging: &Staging, idle: Duration) {
    let partials = stores.all().map(|(id, store)| (id, store.remove_abandoned(idle)));
    for (id, sweep) in partials {
        match sweep.await {
            Ok(Swept { files: 0, .. }) => {}
            Ok(removed) => {
                metrics::partial_bytes_swept(id, removed.bytes);
                tracing::info!(
                    store = id,
                    removed = removed.files,
                    bytes = removed.bytes,
                    "removed partial data of abandoned uploads"
                );
            }
            Err(err) => tracing::warn!(store = id, error = %err, "could not sweep abandoned uploads"),
        }
    }
    match staging.remove_abandoned(idle).await {
        Ok(Swept { files: 0, .. }) => {}
        Ok(removed) => {
            metrics::partial_bytes_swept("staging", removed.bytes);
            tracing::info!(
                removed = removed.files,
                bytes = removed.bytes,
                "removed partial staging data of abandoned stagings"
            );
        }
        Err(err) => tracing::warn!(error = %err, "could not sweep the staging area"),
    }
}

/// At once, then every `every` for as long as the process runs: sweeps partial writes
/// abandoned by dead processes. Every process that writes to a store runs it, so a node
/// whose processes restart more often than the scrubber's pass still gets swept.
pub async fn sweep(stores: Stores, staging: Staging, every: Duration) {
    loop {
        sweep_partial_writes(&stores, &staging, UPLOAD_STALE_AFTER).await;
        tokio::time::sleep(every).await;
    }
}

/// Every `every`, for as long as the process runs: retries removals that failed, and
/// recovers uploads abandoned by dead processes.
pub async fn scrub(db: DatabaseConnection, stores: Stores, staging: Staging, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(err) = purge(&db, &stores, None).await {
            tracing::warn!(error = %err, "scrubber pass failed");
        }
        if let Err(err) = recover_abandoned_uploads(&db, &staging, UPLOAD_STALE_AFTER).await {
            tracing::warn!(error = %err, "recovering abandoned uploads failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::FilesystemStore;

    #[tokio::test]
    async fn a_starting_process_sweeps_young_partial_writes_of_dead_writers_at_once() {
        let (store_dir, staging_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let store = FilesystemStore::open(store_dir.path()).expect("store");
        let stores = Stores::new("local", [("local".to_owned(), Arc::new(store) as _)].into());
        let staging = Staging::open(staging_dir.path()).expect("staging");
        let dead = [store_dir.path().join(".img.dead.part"), staging_dir.path().join(".img.dead.part")];
        for part in &dead {
            std::fs::write(part, b"half").expect("write");
        }
        let live = store_dir.path().join(".img2.live.part");
        let writer = std::fs::File::create(&live).expect("create");
        writer.lock().expect("lock");

        let sweeper = tokio::spawn(sweep(stores, staging, Duration::from_secs(3600)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while dead.iter().any(|p| p.exists()) {
            assert!(tokio::time::Instant::now() < deadline, "start-up sweep did not remove dead partial writes");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(live.exists(), "a live writer's partial file was swept");
        sweeper.abort();
    }
}
