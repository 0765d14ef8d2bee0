//! The auth layer: gives every `/v2` request its request id and [`RequestContext`].

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use glint_core::config::AuthMode;
use glint_core::context::RequestContext;
use glint_core::keystone::{Keystone, UNAUTHORIZED};

use tracing::Instrument;

use crate::AppState;
use crate::error::ApiError;

const REQUEST_ID: &str = "x-openstack-request-id";
const MAX_REQUEST_ID_LENGTH: usize = 64;

/// Middleware: assigns the request id (the caller's `X-Openstack-Request-Id` if sent),
/// builds the caller's context, and echoes the id on the response.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let request_id = match request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(given) if given.len() > MAX_REQUEST_ID_LENGTH => {
            return ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("Request ID length exceeds the maximum of {MAX_REQUEST_ID_LENGTH} characters."),
            )
            .into_response();
        }
        Some(given) if given.starts_with("req-") => given.to_owned(),
        Some(given) if !given.is_empty() => format!("req-{given}"),
        _ => format!("req-{}", uuid::Uuid::new_v4()),
    };
    let context = match (state.config.auth.mode, &state.keystone) {
        (AuthMode::Keystone, Some(keystone)) => match token_context(keystone, request.headers(), &request_id).await {
            Ok(context) => context,
            Err(refusal) => return refusal,
        },
        _ => match trusted_headers(request.headers(), request_id.clone()) {
            Ok(context) => context,
            Err(refusal) => return with_request_id(refusal.into_response(), &request_id),
        },
    };
    let context = context.under(state.policy.clone());
    let span = tracing::info_span!("request", request_id = %request_id);
    request.extensions_mut().insert(context.clone());
    let mut response = next.run(request).instrument(span).await;
    // For the access log, which runs outside this layer.
    response.extensions_mut().insert(context);
    with_request_id(response, &request_id)
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Keystone mode: the identity is the token's, whatever identity headers the client sent.
/// 401s carry `WWW-Authenticate` (as keystonemiddleware adds) and no request id (as they come
/// from the auth layer, before Glance's request-id handling).
async fn token_context(keystone: &Keystone, headers: &HeaderMap, request_id: &str) -> Result<RequestContext, Response> {
    let token = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| !t.is_empty());
    // A valid service token with the service (or admin) role lets an expired user token
    // through, as keystonemiddleware's service tokens do; an invalid one is simply not used.
    let by_a_service = match token("x-service-token") {
        Some(service) => match keystone.validate(service).await {
            Ok(identity) => {
                identity.roles.iter().any(|r| r.eq_ignore_ascii_case("service") || r.eq_ignore_ascii_case("admin"))
            }
            Err(glint_core::Error::Unauthorized(_)) => false,
            Err(err) => return Err(keystone_unavailable(&err)),
        },
        None => false,
    };
    let identity = match token("x-auth-token") {
        Some(token) if by_a_service => keystone.validate_allowing_expired(token).await,
        Some(token) => keystone.validate(token).await,
        None => Err(glint_core::Error::Unauthorized(UNAUTHORIZED.into())),
    };
    let identity = identity.map_err(|err| match err {
        glint_core::Error::Unauthorized(_) => ApiError::from(err)
            .with_dynamic_header(
                header::WWW_AUTHENTICATE,
                format!("Keystone uri=\"{}\"", keystone.www_authenticate_uri()),
            )
            .into_response(),
        err => keystone_unavailable(&err),
    })?;
    Ok(match identity.project_id {
        Some(project) => {
            RequestContext::new(Some(project), Some(identity.user_id), identity.roles, request_id.to_owned())
        }
        // Glance accepts system- and domain-scoped tokens and lets its (project-scoped) rules
        // refuse them, which is what a system admin's client expects to hear: 404s and 403s.
        None => RequestContext::outside_project(Some(identity.user_id), request_id.to_owned()),
    })
}

/// keystonemiddleware's answer when Keystone cannot be asked; the cause is for the operator's
/// log, not the caller.
fn keystone_unavailable(err: &glint_core::Error) -> Response {
    tracing::error!(error = %err, "cannot validate a token");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "The Keystone service is temporarily unavailable.").into_response()
}

/// The headers that carry an identity in no-auth mode.
const IDENTITY_HEADERS: [&str; 4] = ["x-project-id", "x-tenant-id", "x-user-id", "x-roles"];

/// Longest project or user id taken (Glance's `owner` column).
const MAX_ID_LENGTH: usize = 255;

/// No-auth mode: identity headers are trusted as a proxy would set them; a request without
/// any of them is Glance's unauthenticated admin. One that carries identity headers but not
/// a well-formed project is refused: dropping a malformed header would make its sender that
/// admin.
fn trusted_headers(headers: &HeaderMap, request_id: String) -> Result<RequestContext, ApiError> {
    if IDENTITY_HEADERS.iter().all(|name| headers.get(*name).is_none()) {
        return Ok(RequestContext::anonymous_admin(request_id));
    }
    let header = |name: &'static str| -> Result<Option<&str>, ApiError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else { return Ok(None) };
        let malformed = || ApiError::bad_request(format!("Invalid {} header.", canonical(name)));
        if values.next().is_some() {
            return Err(malformed());
        }
        let text = value.to_str().map_err(|_| malformed())?.trim();
        if text.chars().any(|c| c.is_ascii_control()) {
            return Err(malformed());
        }
        Ok(Some(text))
    };
    let id = |name: &'static str| -> Result<Option<String>, ApiError> {
        match header(name)? {
            None => Ok(None),
            Some(id) if id.is_empty() || id.len() > MAX_ID_LENGTH || id.contains(char::is_whitespace) => {
                Err(ApiError::bad_request(format!("Invalid {} header.", canonical(name))))
            }
            Some(id) => Ok(Some(id.to_owned())),
        }
    };
    let project = match (id("x-project-id")?, id("x-tenant-id")?) {
        (Some(project), Some(tenant)) if project != tenant => {
            return Err(ApiError::bad_request("X-Project-Id and X-Tenant-Id name different projects."));
        }
        (Some(project), _) | (None, Some(project)) => project,
        (None, None) => return Err(ApiError::bad_request("Identity headers without X-Project-Id.")),
    };
    let user = id("x-user-id")?;
    let roles = header("x-roles")?.unwrap_or_default();
    Ok(RequestContext::new(Some(project), user, roles.split(',').map(str::to_owned), request_id))
}

/// The spelling of an identity header in messages.
fn canonical(name: &str) -> &'static str {
    match name {
        "x-project-id" => "X-Project-Id",
        "x-tenant-id" => "X-Tenant-Id",
        "x-user-id" => "X-User-Id",
        _ => "X-Roles",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn no_identity_headers_is_an_anonymous_admin() {
        let ctx = trusted_headers(&headers(&[]), "req-1".into()).expect("context");
        assert!(ctx.is_admin && ctx.project_id.is_none());
    }

    #[test]
    fn tenant_id_is_the_legacy_project_header() {
        let ctx = trusted_headers(&headers(&[("x-tenant-id", "p1"), ("x-roles", "Member, reader")]), "req-1".into())
            .expect("context");
        assert_eq!(ctx.project_id.as_deref(), Some("p1"));
        assert!(ctx.has_role("member") && !ctx.is_admin);
    }

    #[test]
    fn malformed_identity_headers_are_refused_never_an_admin() {
        let refused = |pairs: &[(&'static str, &[u8])]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.append(*k, HeaderValue::from_bytes(v).expect("header value"));
            }
            trusted_headers(&map, "req-1".into()).is_err()
        };
        assert!(refused(&[("x-project-id", b"\xffb"), ("x-roles", b"reader")]));
        assert!(refused(&[("x-project-id", "é".as_bytes())]));
        assert!(refused(&[("x-project-id", b"   "), ("x-roles", b"reader")]));
        assert!(refused(&[("x-project-id", b"")]));
        assert!(refused(&[("x-project-id", b"a b")]));
        assert!(refused(&[("x-project-id", b"p1"), ("x-project-id", b"p2")]));
        assert!(refused(&[("x-project-id", b"p1"), ("x-tenant-id", b"p2")]));
        assert!(refused(&[("x-roles", b"reader")]));
        assert!(refused(&[("x-user-id", b"alice")]));
        assert!(refused(&[("x-project-id", b"p1"), ("x-roles", b"r\xe9ader")]));
        assert!(refused(&[("x-project-id", b"p1"), ("x-user-id", b"   ")]));
        assert!(!refused(&[("x-project-id", b" p1 "), ("x-tenant-id", b"p1"), ("x-roles", b"")]));
    }
}
