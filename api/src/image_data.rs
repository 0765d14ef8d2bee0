//! `PUT|GET /v2/images/{id}/file`: image data in and out, streamed.

use std::ops::Range;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use glint_core::context::RequestContext;
use glint_core::image::data::{self, Upload};
use glint_core::image::{Image, Status};
use glint_core::image::{locations, repo};
use glint_core::metrics::DataFlow;
use glint_core::policy;
use glint_core::quota::{self, Resource};
use glint_core::store::ByteStream;

use tracing::Instrument;

use crate::error::ApiError;
use crate::extract::NoBody;
use crate::list::Params;
use crate::server::Drain;
use crate::{AppState, body};

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Data requests must say `application/octet-stream` (parameters ignored), else 415.
pub(crate) fn require_octet_stream(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/octet-stream") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("The request media type {content_type} is not supported by this server."),
        ))
    }
}

/// The announced size: `x-openstack-image-size`, else `Content-Length`; 0 means unknown.
pub(crate) fn expected_size(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let announced =
        match header_str(headers, "x-openstack-image-size") {
            Some(text) => Some(text.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("x-openstack-image-size must be an integer, got '{text}'"))
            })?),
            None => header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse::<u64>().ok()),
        };
    Ok(announced.filter(|n| *n > 0))
}

/// `PUT /v2/images/{id}/file`: 204 once the image is `active`.
pub async fn upload(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    require_octet_stream(&headers)?;
    let expected_size = expected_size(&headers)?;
    let size = expected_size.map_or(0, quota::mib);
    let deltas = [(Resource::ImageSizeTotal, size), (Resource::ImageCountUploading, 1)];
    let image = admitted(&state, &ctx, &id, Some("upload_image"), &deltas).await?;
    // Only multistore mode lets the client pick a store, as in Glance.
    let store = header_str(&headers, "x-image-meta-store").filter(|_| state.stores.multistore()).map(str::to_owned);
    let idle = Duration::from_secs(state.config.server.body_idle_timeout);
    let stream = body::image_data(body, DataFlow::Uploaded, idle);
    let drain = state.drain.clone();
    outliving_the_client(&drain, "upload", async move {
        let images = &state.config.images;
        let how = Upload {
            store: store.as_deref(),
            expected_size,
            cap: images.image_size_cap,
            require_format_match: images.require_image_format_match,
        };
        data::upload(&state.db, &state.stores, &image, stream, how).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Image `id` as the caller sees it (404), allowed by the policy `rule` when the handler checks
/// it here (403), within its owner's quotas once `deltas` are added (413): the checks, in
/// Glance's order, that come before image data moves.
pub(crate) async fn admitted(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
    rule: Option<&str>,
    deltas: &[(Resource, i64)],
) -> Result<Image, ApiError> {
    let image = repo::find_visible(&state.db, ctx, id).await?;
    if let Some(rule) = rule {
        policy::check_image(ctx, &image, rule)?;
    }
    quota::enforce(&state.db, &state.config.quotas, image.owner.as_deref(), deltas).await?;
    Ok(image)
}

/// Runs `work`, which consumes a request body, in a task of its own: if the client disconnects
/// or a stopping server cuts the request, and the handler is dropped, `work` still sees the
/// body fail and puts the image back, and a stopping server waits for it (`drain`).
pub(crate) async fn outliving_the_client(
    drain: &Drain,
    what: &str,
    work: impl Future<Output = glint_core::Result<()>> + Send + 'static,
) -> Result<(), ApiError> {
    let finished = drain.spawn(work.instrument(tracing::Span::current())).await;
    finished.map_err(|e| ApiError::from(glint_core::Error::Internal(format!("{what} task failed: {e}"))))??;
    Ok(())
}

/// The stores `?prefer=a,b` names, in its order (blanks dropped): 400 when one is not
/// configured, or when any is named outside multistore mode.
fn preferred_stores(state: &AppState, params: &Params) -> Result<Vec<String>, ApiError> {
    let named: Vec<String> = params
        .last("prefer")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if named.is_empty() {
        return Ok(named);
    }
    if !state.stores.multistore() {
        return Err(ApiError::bad_request(
            "Store selection for download is not available when multiple backends are not enabled.",
        ));
    }
    if let Some(unknown) = named.iter().find(|s| state.stores.get(s).is_none()) {
        return Err(ApiError::bad_request(format!("Store '{unknown}' is not configured.")));
    }
    Ok(named)
}

/// `GET /v2/images/{id}/file`: 200 with the data, 206 for a range, 204 when there is none.
/// Copies are read oldest first, or those in the stores `?prefer=` names first, in its order
/// (as Glance documents it), then the others.
pub async fn download(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Params,
    _: NoBody,
) -> Result<Response, ApiError> {
    let image = repo::find_visible(&state.db, &ctx, &id).await?;
    if image.status == Status::Deactivated && !ctx.is_admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "The requested image has been deactivated. Image data download is forbidden.",
        ));
    }
    policy::check_image(&ctx, &image, "download_image")?;
    let preferred = preferred_stores(&state, &params)?;
    if !preferred.is_empty() {
        policy::check_image(&ctx, &image, "download_from_store")?;
    }
    let mut found = locations::active(&state.db, &id).await?;
    // Stable: copies in no preferred store keep their order, after the others.
    found.sort_by_key(|l| {
        l.store.as_deref().and_then(|s| preferred.iter().position(|p| p == s)).unwrap_or(preferred.len())
    });
    let (Some(size), false) = (image.size, found.is_empty()) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let size = u64::try_from(size).unwrap_or(0);
    let range = requested_range(&headers, size)?;
    // A download that names its stores reads them, as asked.
    let cache = state.cache.as_ref().filter(|_| preferred.is_empty());
    if let Some(cache) = cache
        && let Some(stream) = cache.read(&image, range.clone()).await
    {
        return Ok(data_response(stream, size, range, image.checksum.as_deref()));
    }
    let mut last_error = None;
    for location in &found {
        let Some(store) = location.store.as_deref().and_then(|s| state.stores.get(s)) else { continue };
        match store.get(&location.url, range.clone()).await {
            Ok(stream) => {
                // Only a whole download can fill the cache.
                let stream = match cache {
                    Some(cache) if range.is_none() => cache.tee(&image, stream),
                    _ => stream,
                };
                return Ok(data_response(stream, size, range, image.checksum.as_deref()));
            }
            Err(err) => {
                tracing::warn!(image = %id, location = %location.url, error = %err, "reading image data failed");
                last_error = Some(err);
            }
        }
    }
    Err(ApiError::from(glint_core::Error::Unavailable(match last_error {
        Some(err) => format!("Image data is not readable: {err}"),
        None => "Image data is in no configured store".to_owned(),
    })))
}

fn data_response(stream: ByteStream, size: u64, range: Option<Range<u64>>, checksum: Option<&str>) -> Response {
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, size),
    };
    let mut response = (status, Body::from_stream(body::counted_download(stream))).into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(md5) = checksum.and_then(|c| HeaderValue::from_str(c).ok()) {
        out.insert("content-md5", md5);
    }
    if let Some(r) = range
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
    {
        out.insert(header::CONTENT_RANGE, value);
    }
    response
}

/// The byte range asked for by `Range: bytes=...` (or a legacy `Content-Range` request
/// header), as a half-open range within `size`.
fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<Range<u64>>, ApiError> {
    let unsatisfiable = || {
        ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "The requested range is not satisfiable.")
            .with_dynamic_header(header::CONTENT_RANGE, format!("bytes */{size}"))
    };
    if let Some(spec) = header_str(headers, header::RANGE.as_str()) {
        let spec = spec.trim().strip_prefix("bytes=").ok_or_else(unsatisfiable)?;
        if spec.contains(',') {
            return Err(ApiError::bad_request("Multiple ranges are not supported."));
        }
        let (first, last) = spec.split_once('-').ok_or_else(unsatisfiable)?;
        let parse = |s: &str| s.trim().parse::<u64>().map_err(|_| unsatisfiable());
        let range = match (first.trim(), last.trim()) {
            ("", suffix) => {
                let n = parse(suffix)?;
                if n == 0 {
                    return Err(unsatisfiable());
                }
                size.saturating_sub(n)..size
            }
            (start, "") => parse(start)?..size,
            (start, end) => {
                let (start, end) = (parse(start)?, parse(end)?);
                if end < start {
                    return Err(unsatisfiable());
                }
                start..end.saturating_add(1).min(size)
            }
        };
        if range.start >= size {
            return Err(unsatisfiable());
        }
        return Ok(Some(range));
    }
    if let Some(legacy) = header_str(headers, header::CONTENT_RANGE.as_str()) {
        let spec = legacy.trim().strip_prefix("bytes ").ok_or_else(unsatisfiable)?;
        let (span, _) = spec.split_once('/').unwrap_or((spec, "*"));
        let (start, end) = span.split_once('-').ok_or_else(unsatisfiable)?;
        let start: u64 = start.trim().parse().map_err(|_| unsatisfiable())?;
        let end: u64 = end.trim().parse().map_err(|_| unsatisfiable())?;
        if start >= size || end < start {
            return Err(unsatisfiable());
        }
        return Ok(Some(start..end.saturating_add(1).min(size)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Result<Option<Range<u64>>, u16> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).expect("header"));
        requested_range(&headers, size).map_err(|e| e.into_response().status().as_u16())
    }

    #[test]
    fn ranges_follow_rfc_7233() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=-1000", 100), Ok(Some(0..100)));
        assert_eq!(range("bytes=50-1000", 100), Ok(Some(50..100)));
    }

    #[test]
    fn bad_ranges_are_416_and_several_are_400() {
        assert_eq!(range("bytes=100-", 100), Err(416));
        assert_eq!(range("bytes=9-3", 100), Err(416));
        assert_eq!(range("bytes=x-3", 100), Err(416));
        assert_eq!(range("items=0-3", 100), Err(416));
        assert_eq!(range("bytes=0-1,5-6", 100), Err(400));
    }
}
