//! `ApiError`: the one place where failures become Glance's status codes and error bodies.
//!
//! Handlers return `ApiError`; it renders a response carrying [`ErrorBody`] as an extension,
//! and [`render_errors`] then writes the body in the media type WebOb would have negotiated
//! from the request's `Accept` (plain text, HTML for `*/*`, flat JSON for `application/json`).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use glint_core::Error;
use glint_core::fetch::FetchError;
use glint_core::store::StoreError;

/// An HTTP error in Glance's shape: status, explanation and extra headers.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    explanation: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The explanation of an error response, rendered by [`render_errors`].
#[derive(Clone, Debug)]
pub struct ErrorBody(pub String);

impl ApiError {
    /// An error with `status` and the message a person reads.
    pub fn new(status: StatusCode, explanation: impl Into<String>) -> Self {
        Self { status, explanation: explanation.into(), headers: Vec::new() }
    }

    /// 400 with `explanation`.
    pub fn bad_request(explanation: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, explanation)
    }

    /// Adds a response header (`Allow`, `Accept-Patch`).
    pub fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    /// Adds a response header computed at run time (`Content-Range`).
    pub fn with_dynamic_header(mut self, name: HeaderName, value: String) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value) {
            self.headers.push((name, value));
        }
        self
    }

    /// 405 for `method` on a resource that accepts `allow` (e.g. "GET, PATCH, DELETE").
    pub fn method_not_allowed(method: &Method, allow: &'static str) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, format!("The method {method} is not allowed for this resource."))
            .with_header(header::ALLOW, allow)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let status = match &err {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::OverLimit(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Gone(_) => StatusCode::GONE,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) | Error::Config(_) | Error::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Store(StoreError::TooLarge(_) | StoreError::Full) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Store(StoreError::Denied(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            // The client stopped sending (server.body_idle_timeout).
            Error::Store(StoreError::Source(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                StatusCode::REQUEST_TIMEOUT
            }
            // The request body broke off: the client's doing.
            Error::Store(StoreError::Source(_)) => StatusCode::BAD_REQUEST,
            Error::Store(StoreError::InUse(_)) => StatusCode::CONFLICT,
            Error::Store(StoreError::Io(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            // Handlers check URLs themselves (with Glance's wording); a fetch failure reaching
            // here is sorted like the store failures it resembles.
            Error::Fetch(FetchError::Refused(_) | FetchError::Status(..)) => StatusCode::BAD_REQUEST,
            Error::Fetch(FetchError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Fetch(FetchError::Transient(_)) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::error!(error = %glint_core::error::chain(&err), "request failed");
            return ApiError::new(
                status,
                "The server has either erred or is incapable of performing the requested operation.",
            );
        }
        ApiError::new(status, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.headers_mut().extend(self.headers);
        response.extensions_mut().insert(ErrorBody(self.explanation));
        response
    }
}

/// Which body an error gets, by WebOb's negotiation between `text/html` and `application/json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorFormat {
    Plain,
    Html,
    Json,
}

fn negotiate(accept: Option<&str>) -> ErrorFormat {
    let Some(accept) = accept else { return ErrorFormat::Plain };
    // For each offer: the q of the most specific matching range (exact beats type/* beats */*).
    let quality = |offer: &str| -> f32 {
        let (offer_type, _) = offer.split_once('/').unwrap_or((offer, ""));
        let mut best: Option<(u8, f32)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.trim().parse::<f32>().ok()))
                .next()
                .unwrap_or(1.0);
            let specificity = if media == offer {
                3
            } else if media == format!("{offer_type}/*") {
                2
            } else if media == "*/*" {
                1
            } else {
                continue;
            };
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, q));
            }
        }
        best.map_or(0.0, |(_, q)| q)
    };
    let html = quality("text/html");
    let json = quality("application/json");
    if html <= 0.0 && json <= 0.0 {
        ErrorFormat::Plain
    } else if html >= json {
        ErrorFormat::Html
    } else {
        ErrorFormat::Json
    }
}

fn render(status: StatusCode, explanation: &str, format: ErrorFormat) -> (&'static str, String) {
    let line = format!("{} {}", status.as_str(), status.canonical_reason().unwrap_or(""));
    match format {
        ErrorFormat::Plain => ("text/plain; charset=UTF-8", format!("{line}\n\n{explanation}\n\n   ")),
        ErrorFormat::Html => (
            "text/html; charset=UTF-8",
            format!(
                "<html>\n <head>\n  <title>{line}</title>\n </head>\n <body>\n  <h1>{line}</h1>\n  {}<br /><br />\n\n\n\n </body>\n</html>",
                html_escape(explanation)
            ),
        ),
        ErrorFormat::Json => (
            "application/json",
            serde_json::json!({
                "message": format!("{explanation}<br /><br />\n\n\n"),
                "code": line,
                "title": status.canonical_reason().unwrap_or(""),
            })
            .to_string(),
        ),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Middleware: writes the body of every error response, negotiated on the request's `Accept`.
/// Errors raised outside handlers (unknown routes, axum rejections) get Glance's body too.
pub async fn render_errors(request: Request, next: Next) -> Response {
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // Responses that already carry a body of their own (health check) are left alone.
    let explanation = match response.extensions_mut().remove::<ErrorBody>() {
        Some(ErrorBody(text)) => text,
        None if response.headers().contains_key(header::CONTENT_TYPE) => return response,
        None => default_explanation(status),
    };
    let (content_type, body) = render(status, &explanation, negotiate(accept.as_deref()));
    let headers: HeaderMap = response.headers().clone();
    let mut rendered = (status, body).into_response();
    // The caller's context travels on for the access log.
    *rendered.extensions_mut() = std::mem::take(response.extensions_mut());
    for (name, value) in &headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rendered.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    rendered
}

fn default_explanation(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "The resource could not be found.".into(),
        StatusCode::PAYLOAD_TOO_LARGE => "The request is larger than the server is willing or able to process.".into(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "The request media type is not supported by this server.".into(),
        other if other.is_server_error() => {
            "The server has either erred or is incapable of performing the requested operation.".into()
        }
        other => other.canonical_reason().unwrap_or("Error").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_accept_gets_plain_text() {
        assert_eq!(negotiate(None), ErrorFormat::Plain);
    }

    #[test]
    fn star_star_gets_html() {
        assert_eq!(negotiate(Some("*/*")), ErrorFormat::Html);
    }

    #[test]
    fn json_only_gets_json() {
        assert_eq!(negotiate(Some("application/json")), ErrorFormat::Json);
    }

    #[test]
    fn json_preferred_by_q_gets_json() {
        assert_eq!(negotiate(Some("text/html;q=0.5, application/json")), ErrorFormat::Json);
    }

    #[test]
    fn text_plain_gets_plain() {
        assert_eq!(negotiate(Some("text/plain")), ErrorFormat::Plain);
    }

    #[test]
    fn store_failures_get_their_status_and_text() {
        let full = ApiError::from(Error::Store(StoreError::Full));
        assert_eq!((full.status, full.explanation.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "the store is full"));
        let broke_off = ApiError::from(Error::Store(StoreError::Source(std::io::Error::other("reset"))));
        assert_eq!(broke_off.status, StatusCode::BAD_REQUEST);
        let denied = ApiError::from(Error::Store(StoreError::Denied("bad credentials".into())));
        assert_eq!(denied.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!denied.explanation.contains("credentials"), "5xx details stay in the log");
    }

    #[test]
    fn json_body_is_flat() {
        let (_, body) = render(StatusCode::NOT_FOUND, "No image found with ID x", ErrorFormat::Json);
        let value: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(value["code"], "404 Not Found");
        assert_eq!(value["title"], "Not Found");
        assert_eq!(value["message"], "No image found with ID x<br /><br />\n\n\n");
    }
}
