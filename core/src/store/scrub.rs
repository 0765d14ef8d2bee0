//! The scrubber: removes the bytes of deleted images and recovers uploads whose process died;
//! the sweep: removes partial writes of dead processes, and staged data no image needs.

use std::collections::BTreeSet;
use std::time::Duration;

use sea_orm::DatabaseConnection;

use super::{Staging, Stores, SweepLimits, Swept};
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

/// Removes the partial data of writes abandoned by dead processes from every store and the
/// staging area (see [`super::Store::remove_abandoned`]), each within `limits`.
pub async fn sweep_partial_writes(stores: &Stores, staging: &Staging, limits: &SweepLimits) {
    for (id, store) in stores.all() {
        report(id, "partial data of abandoned uploads", store.remove_abandoned(limits).await);
    }
    report("staging", "partial staging data of abandoned stagings", staging.remove_abandoned(limits).await);
}

/// Removes whole staged files that no image needs any more: their image is gone, or no longer
/// `uploading` or `importing`, and nothing has written to them for `limits.idle`. A live flow
/// removes its own files; these are what a process that died before its clean-up left
/// (a deletion's, an import's). Data staged for an `uploading` image waits for its import,
/// however long: it stays.
pub async fn remove_orphan_staging(db: &DatabaseConnection, staging: &Staging, limits: &SweepLimits) -> Result<Swept> {
    let started = std::time::Instant::now();
    let files = staging.idle_files(limits.idle, STAGED_FILES_LISTED).await?;
    let ids: Vec<String> = files.iter().map(|f| f.image_id.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let using = images::using_staged_data(db, &ids).await?;
    let mut removed = Swept::default();
    for file in files.iter().filter(|f| !using.contains(&f.image_id)) {
        if limits.spent(started, removed.files) {
            tracing::info!(removed = removed.files, "sweep budget spent; the next sweep goes on");
            break;
        }
        if let Some(bytes) = staging.remove_if_idle(&file.name, limits.idle).await? {
            removed.files += 1;
            removed.bytes += bytes;
        }
    }
    Ok(removed)
}

/// Most staged files one sweep looks at: far more than it may remove, so that orphans are
/// found among many files still needed (one per image waiting for its import).
const STAGED_FILES_LISTED: usize = 100_000;

/// Logs and counts what one sweep of `store` removed.
fn report<E: std::fmt::Display>(store: &str, what: &str, swept: std::result::Result<Swept, E>) {
    match swept {
        Ok(Swept { files: 0, .. }) => {}
        Ok(removed) => {
            metrics::partial_bytes_swept(store, removed.bytes);
            tracing::info!(store, removed = removed.files, bytes = removed.bytes, "removed {what}");
        }
        Err(err) => tracing::warn!(store, error = %err, "could not sweep {what}"),
    }
}

/// At once, then every `every` for as long as the process runs: sweeps what dead processes
/// left in the stores and the staging area. Every process that writes to a store runs it, so
/// a node whose processes restart more often than `every` still gets swept.
pub async fn sweep(db: DatabaseConnection, stores: Stores, staging: Staging, limits: SweepLimits, every: Duration) {
    loop {
        sweep_partial_writes(&stores, &staging, &limits).await;
        report("staging", "staged data no image needs", remove_orphan_staging(&db, &staging, &limits).await);
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

        let db = crate::db::connect(&crate::config::DatabaseConfig {
            url: "sqlite::memory:".into(),
            max_connections: 1,
            migrate_on_start: true,
        })
        .await
        .expect("database");
        crate::db::migrate(&db).await.expect("migrate");

        let sweeper = tokio::spawn(sweep(db, stores, staging, SweepLimits::idle(300), Duration::from_secs(3600)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while dead.iter().any(|p| p.exists()) {
            assert!(tokio::time::Instant::now() < deadline, "start-up sweep did not remove dead partial writes");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(live.exists(), "a live writer's partial file was swept");
        sweeper.abort();
    }
}
