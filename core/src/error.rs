//! The one error type of the core crate; the API maps each variant to a Glance status code.
//!
//! Policy and validation refusals are status-like variants holding Glance's wire text.
//! Infrastructure failures keep their type ([`StoreError`], [`FetchError`]): the API decides
//! their status and a worker decides from them whether to retry.

use crate::fetch::FetchError;
use crate::store::StoreError;

/// What went wrong, in words a person can act on; the variant decides the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or breaks a schema rule (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request carries no valid credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may see the resource but not do this to it (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such resource, or one the caller may not see (404).
    #[error("{0}")]
    NotFound(String),
    /// The resource is in a state that forbids the operation, or a duplicate (409).
    #[error("{0}")]
    Conflict(String),
    /// A quota or size limit would be exceeded (413).
    #[error("{0}")]
    OverLimit(String),
    /// The data is not what it claims to be, or fails the safety checks (415).
    #[error("{0}")]
    UnsupportedMedia(String),
    /// The resource went away while the request was processed (410).
    #[error("{0}")]
    Gone(String),
    /// A backend (store) is unreachable or refuses us (503).
    #[error("{0}")]
    Unavailable(String),
    /// Something failed that the client cannot fix; the detail is logged (500).
    #[error("{0}")]
    Internal(String),
    /// The configuration is invalid; names the offending key.
    #[error("configuration error: {0}")]
    Config(String),
    /// The database failed; the detail is logged, never shown to clients (500).
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// An image store or the staging area failed; its kind decides the status.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Fetching image data over HTTP failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// `err` and its sources, `: `-separated, for logs and messages.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(err: sea_orm::TransactionError<Error>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => Error::Database(db),
            sea_orm::TransactionError::Transaction(inner) => inner,
        }
    }
}
