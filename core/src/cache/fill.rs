//! Filling the cache: a download's bytes copied on their way to the client, or a prefetch.
//!
//! The copy goes through a bounded channel that the download never waits on: when the cache
//! writer falls behind (or fails) the copy is abandoned and the client goes on at its pace.
//! Only a whole download, of the image's size and md5, lets the write commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::{ImageCache, repo};
use crate::image::Image;
use crate::image::hash::Md5;
use crate::store::{ByteStream, Store};

/// Chunks that may wait for the cache writer before the copy is abandoned.
const BACKLOG: usize = 64;

/// What the written bytes must add up to.
struct Expected {
    size: u64,
    checksum: Option<String>,
}

/// `chunks`, failing at the end unless they were `expected.size` bytes with md5
/// `expected.checksum`: the store then abandons the write.
fn verified(chunks: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, expected: Expected) -> ByteStream {
    let state = (Box::pin(chunks), Md5::default(), 0u64, Some(expected));
    Box::pin(futures_util::stream::unfold(state, |(mut chunks, mut md5, mut seen, expected)| async move {
        let expected = expected?;
        match chunks.next().await {
            Some(Ok(chunk)) => {
                md5.update(&chunk);
                seen += chunk.len() as u64;
                Some((Ok(chunk), (chunks, md5, seen, Some(expected))))
            }
            Some(Err(err)) => Some((Err(err), (chunks, md5, seen, None))),
            None => {
                let digest = md5.finish_hex();
                let wrong_sum = expected.checksum.as_deref().is_some_and(|sum| sum != digest);
                if seen != expected.size || wrong_sum {
                    let why = format!("{seen} bytes with md5 {digest}, not {} bytes", expected.size);
                    Some((Err(std::io::Error::other(why)), (chunks, Md5::default(), seen, None)))
                } else {
                    None
                }
            }
        }
    }))
}

impl ImageCache {
    /// `data`, the whole of `image`'s data on its way to a client, copied into this node's
    /// cache when the image may be cached and is not being cached already.
    pub fn tee(self: &Arc<Self>, image: &Image, data: ByteStream) -> ByteStream {
        let Some((_, size)) = self.cacheable(image) else { return data };
        if !self.start_filling(&image.id) {
            return data;
        }
        let (tx, rx) = mpsc::channel::<Bytes>(BACKLOG);
        let complete = Arc::new(AtomicBool::new(false));
        let ended = complete.clone();
        let copies = futures_util::stream::unfold((rx, ended), |(mut rx, ended)| async move {
            let item = match rx.recv().await {
                Some(chunk) => Ok(chunk),
                None if ended.load(Ordering::SeqCst) => return None,
                None => Err(std::io::Error::other("the download did not complete")),
            };
            Some((item, (rx, ended)))
        });
        let expected = Expected { size, checksum: image.checksum.clone() };
        let cache = self.clone();
        let (image_id, checksum) = (image.id.clone(), image.checksum.clone());
        tokio::spawn(async move {
            cache.commit(&image_id, checksum.as_deref(), verified(copies, expected)).await;
            cache.done_filling(&image_id);
        });
        // The copy is complete once the image's size has gone by: a body of known length is
        // not polled again after its last byte, so its end may never be seen.
        let state = (data, Some(tx), complete, 0u64);
        Box::pin(futures_util::stream::unfold(state, move |(mut data, mut tx, complete, mut seen)| async move {
            let item = data.next().await;
            match &item {
                Some(Ok(chunk)) => {
                    if tx.as_ref().is_some_and(|t| t.try_send(chunk.clone()).is_err()) {
                        tracing::debug!("image cache writer behind or failed; copy abandoned");
                        tx = None;
                    }
                    seen += chunk.len() as u64;
                    // Marked complete before the sender goes, which is what the writer sees.
                    if seen >= size && tx.is_some() {
                        complete.store(true, Ordering::SeqCst);
                        tx = None;
                    }
                }
                Some(Err(_)) => tx = None,
                None => {
                    if tx.is_some() {
                        complete.store(true, Ordering::SeqCst);
                        tx = None;
                    }
                }
            }
            item.map(|item| (item, (data, tx, complete, seen)))
        }))
    }

    /// Writes `image`'s data from `store`'s `location` into the cache (the prefetch of a
    /// queued image); false when it could not be read or did not add up.
    pub(super) async fn fill_from(&self, image: &Image, store: &dyn Store, location: &str) -> bool {
        let Some((_, size)) = self.cacheable(image) else { return false };
        if !self.start_filling(&image.id) {
            return false;
        }
        let done = match store.get(location, None).await {
            Ok(data) => {
                let expected = Expected { size, checksum: image.checksum.clone() };
                self.commit(&image.id, image.checksum.as_deref(), verified(data, expected)).await
            }
            Err(err) => {
                tracing::warn!(image = %image.id, %location, error = %err, "prefetch could not read the image");
                false
            }
        };
        self.done_filling(&image.id);
        done
    }

    /// Writes `data` as the file of `image_id` and records the entry; nothing is kept if
    /// `data` fails.
    async fn commit(&self, image_id: &str, checksum: Option<&str>, data: ByteStream) -> bool {
        let Some(files) = &self.files else { return false };
        let written = match files.put(image_id, data, self.max_size).await {
            Ok(_) => files.dir().join(image_id),
            Err(err) => {
                tracing::debug!(image = %image_id, error = %err, "image not cached");
                return false;
            }
        };
        let size = tokio::fs::metadata(&written).await.map(|m| m.len()).unwrap_or(0);
        let recorded: crate::Result<bool> = async {
            let node = self.node().await?;
            // Off the queue first: an image is never listed as cached and queued at once.
            repo::dequeue(&self.db, node, image_id).await?;
            repo::insert_entry(&self.db, node, image_id, size, checksum).await?;
            // Deleted or deactivated while it was being written: its invalidation came first.
            if repo::active_images(&self.db, &[image_id.to_owned()]).await?.is_empty() {
                repo::delete_entry(&self.db, node, image_id).await?;
                return Ok(false);
            }
            Ok(true)
        }
        .await;
        if !matches!(recorded, Ok(true)) {
            if let Err(err) = recorded {
                tracing::warn!(image = %image_id, error = %err, "could not record the cached image");
            }
            self.remove_file(image_id).await;
            return false;
        }
        tracing::info!(image = %image_id, size, "image cached");
        true
    }
}
