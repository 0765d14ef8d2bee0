//! The read-only http store: image data left on a web server, read from its URL on download.
//!
//! Nothing is ever written here. Every URL, on acceptance and on every read, goes through the
//! store's own web-download filter ([`Fetcher`]): scheme, host and port lists, no private or
//! loopback addresses unless allowed, and each redirect checked again.

use std::ops::Range;

use super::{ByteStream, Store, StoreError};
use crate::config::FilteringConfig;
use crate::fetch::{FetchError, Fetcher};

/// Image data on web servers, reached through a filter.
pub struct HttpStore {
    fetcher: Fetcher,
}

impl HttpStore {
    /// A store reading only what `filtering` allows.
    pub fn open(filtering: &FilteringConfig) -> Result<HttpStore, StoreError> {
        let fetcher = Fetcher::new(filtering).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        Ok(HttpStore { fetcher })
    }
}

fn classify(err: FetchError) -> StoreError {
    match err {
        FetchError::Refused(why) => StoreError::Denied(why),
        FetchError::Status(404 | 410, why) => StoreError::NotFound(why),
        other => StoreError::Io(std::io::Error::other(other)),
    }
}

#[async_trait::async_trait]
impl Store for HttpStore {
    async fn put_sized(
        &self,
        _image_id: &str,
        _data: ByteStream,
        _cap: u64,
        _size: Option<u64>,
    ) -> Result<String, StoreError> {
        Err(StoreError::Denied("the http store is read-only".into()))
    }

    async fn get(&self, location: &str, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        self.fetcher.get_range(location, range).await.map_err(classify)
    }

    /// The data belongs to the web server: removing a location only forgets it.
    async fn delete(&self, _location: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn holds(&self, location: &str) -> bool {
        url::Url::parse(location).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    }

    async fn size(&self, location: &str) -> Result<u64, StoreError> {
        self.fetcher.size(location).await.map_err(classify)
    }

    fn writable(&self) -> bool {
        false
    }
}
