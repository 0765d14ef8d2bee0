//! A store whose failures are counted in `glint_store_errors_total` under its id.

use std::ops::Range;
use std::sync::Arc;

use super::{ByteStream, Store, StoreError, SweepLimits, Swept};
use crate::metrics;

/// `inner`, counting its failures as store `id`'s.
pub(super) struct Counted {
    id: String,
    inner: Arc<dyn Store>,
}

impl Counted {
    pub(super) fn wrap(id: &str, inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(Counted { id: id.to_owned(), inner })
    }

    fn count<T>(&self, operation: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
        // A body that broke off or went past the cap is the client's doing, not the store's.
        if let Err(err) = &result
            && !matches!(err, StoreError::Source(_) | StoreError::TooLarge(_))
        {
            metrics::store_error(&self.id, operation);
        }
        result
    }
}

#[async_trait::async_trait]
impl Store for Counted {
    async fn put_sized(
        &self,
        image_id: &str,
        data: ByteStream,
        cap: u64,
        size: Option<u64>,
    ) -> Result<String, StoreError> {
        self.count("put", self.inner.put_sized(image_id, data, cap, size).await)
    }

    async fn adopt(&self, image_id: &str, file: &std::path::Path) -> Result<Option<String>, StoreError> {
        self.count("put", self.inner.adopt(image_id, file).await)
    }

    async fn get(&self, location: &str, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        self.count("get", self.inner.get(location, range).await)
    }

    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        self.count("delete", self.inner.delete(location).await)
    }

    async fn in_use(&self, location: &str) -> Result<bool, StoreError> {
        self.count("in_use", self.inner.in_use(location).await)
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.count("health", self.inner.health().await)
    }

    async fn remove_abandoned(&self, limits: &SweepLimits) -> Result<Swept, StoreError> {
        self.count("sweep", self.inner.remove_abandoned(limits).await)
    }

    fn holds(&self, location: &str) -> bool {
        self.inner.holds(location)
    }

    async fn size(&self, location: &str) -> Result<u64, StoreError> {
        // A refused or missing caller-given location is the caller's doing, not the store's.
        self.inner.size(location).await
    }

    fn writable(&self) -> bool {
        self.inner.writable()
    }
}
