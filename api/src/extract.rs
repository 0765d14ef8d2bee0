//! Request extractors with Glance's rules for bodies: required JSON, or no body at all.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use serde_json::Value;

use crate::error::ApiError;

/// Refuses a request that carries a body (400), for Glance's body-less routes.
pub struct NoBody;

impl<S: Send + Sync> FromRequestParts<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let encoded = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
            && parts.headers.get(header::TRANSFER_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(',').any(|e| {
                    matches!(
                        e.trim().to_ascii_lowercase().as_str(),
                        "chunked" | "compress" | "deflate" | "gzip" | "identity"
                    )
                })
            });
        if length > 0 || encoded {
            Err(ApiError::bad_request("A body is not expected with this request."))
        } else {
            Ok(NoBody)
        }
    }
}

/// A JSON request body; its `Content-Type` is not checked, as in Glance.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("Body expected in request."));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|_| ApiError::bad_request("Malformed JSON in request body."))
    }
}
