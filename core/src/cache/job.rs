//! The node's cache job: prefetches the images queued on this node, removes what is out of
//! place and prunes down to `max_size`, every `interval` and whenever an image is queued.

use std::sync::Arc;

use super::{ImageCache, repo};
use crate::Result;
use crate::image::Status;
use crate::store::Stores;

impl ImageCache {
    /// Runs the job over `stores` until the task is dropped (the server stopped).
    pub async fn run(self: Arc<Self>, stores: Stores) {
        loop {
            self.pass(&stores).await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One pass: prefetch, clean, prune; failures are logged and left for the next pass.
    pub async fn pass(&self, stores: &Stores) {
        if let Err(err) = self.prefetch(stores).await {
            tracing::warn!(error = %err, "image cache prefetch failed");
        }
        match self.clean().await {
            Ok(removed) if removed.files > 0 => {
                tracing::info!(files = removed.files, bytes = removed.bytes, "image cache cleaned")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "image cache clean failed"),
        }
        match self.prune().await {
            Ok(removed) if removed.files > 0 => {
                tracing::info!(files = removed.files, bytes = removed.bytes, "image cache pruned")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "image cache prune failed"),
        }
    }

    /// Caches every image queued on this node, oldest first. An image that can no longer be
    /// cached (gone, not active, too large, cached already) leaves the queue; one whose data
    /// could not be read stays for the next pass.
    async fn prefetch(&self, stores: &Stores) -> Result<()> {
        let node = self.node().await?;
        for image_id in repo::queued(&self.db, node).await? {
            let image = crate::image::repo::get(&self.db, &image_id).await?.filter(|i| i.status == Status::Active);
            let Some(image) = image.filter(|i| self.cacheable(i).is_some()) else {
                repo::dequeue(&self.db, node, &image_id).await?;
                continue;
            };
            // A fill that commits takes the image off the queue.
            for location in &image.locations {
                let Some(store) = location.store.as_deref().and_then(|s| stores.get(s)) else { continue };
                if self.fill_from(&image, store.as_ref(), &location.url).await {
                    break;
                }
            }
        }
        Ok(())
    }
}
