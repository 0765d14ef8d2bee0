//! `/console/api/v2/...`: a console request handed to the API's router as the session's
//! identity, so that it meets the same authentication, policy and handlers as any API call.

use axum::Extension;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use glint_core::config::AuthMode;
use std::net::SocketAddr;
use tower::ServiceExt;

use super::session::{self, Session};
use super::{Console, csrf_refused};
use crate::error::ApiError;

/// Request headers that say who the caller is; the console sets them, the browser cannot.
const IDENTITY: [&str; 7] =
    ["x-auth-token", "x-service-token", "x-project-id", "x-tenant-id", "x-user-id", "x-roles", "x-identity-status"];

/// Any method on `/console/api/{rest}`: `/{rest}` on the API, with the session's token (or
/// the configured no-auth identity), after the CSRF check for anything but GET and HEAD.
pub async fn forward(Extension(console): Extension<Console>, request: Request) -> Response {
    let keystone = console.state.config.auth.mode == AuthMode::Keystone;
    let session = console.sessions.find(request.headers());
    let Some((id, session)) = session.filter(|(_, s)| !keystone || s.signed_in.is_some()) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "The console session has ended; sign in again.")
            .into_response();
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD) && !session::csrf_matches(request.headers(), &session) {
        return csrf_refused().into_response();
    }
    let Some(inner) = rebuild(request, &console, &session) else {
        return ApiError::new(StatusCode::NOT_FOUND, "The resource could not be found.").into_response();
    };
    let response = match console.api.clone().oneshot(inner).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    // The API no longer takes the token (expired or revoked): the session is over.
    if keystone && response.status() == StatusCode::UNAUTHORIZED {
        console.sessions.remove(&id);
    }
    response
}

/// A fresh request for the API: the path without `/console/api` (only `/v2/...`), the body
/// streamed through, the browser's identity headers and cookies dropped and the session's set.
/// Fresh rather than edited, so that nothing of the console's routing (its path parameters)
/// reaches the API's handlers; only the peer address is carried over.
fn rebuild(request: Request, console: &Console, session: &Session) -> Option<Request> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().strip_prefix("/console/api")?;
    if !(path == "/v2" || path.starts_with("/v2/")) {
        return None;
    }
    let target = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut inner =
        axum::http::Request::builder().method(parts.method).uri(target).version(parts.version).body(body).ok()?;
    let headers = inner.headers_mut();
    *headers = parts.headers;
    headers.remove(header::COOKIE);
    headers.remove(session::CSRF_HEADER);
    for name in IDENTITY {
        headers.remove(name);
    }
    match &session.signed_in {
        Some(issued) => {
            headers.insert("x-auth-token", HeaderValue::from_str(&issued.token).ok()?);
        }
        None => {
            let config = &console.state.config.console;
            if let Some(project) = &config.noauth_project_id {
                headers.insert("x-project-id", HeaderValue::from_str(project).ok()?);
                headers.insert("x-roles", HeaderValue::from_str(&config.noauth_roles.join(",")).ok()?);
                if let Some(user) = &config.noauth_user_id {
                    headers.insert("x-user-id", HeaderValue::from_str(user).ok()?);
                }
            }
        }
    }
    if let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        inner.extensions_mut().insert(*peer);
    }
    Some(inner)
}
