//! The web console at `/console`: one page, one script and one style sheet compiled into the
//! binary, a server-side sign-in, and `/console/api/v2/...`, which hands each request to the
//! API's own router as the session's identity (so the console obeys exactly the API's policy).

mod proxy;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use glint_core::config::AuthMode;
use glint_core::keystone::{Issued, Keystone};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::forwarded::BaseUrl;
use session::{Session, Sessions, Summary};

/// What the console's handlers share: the API state, the API router requests are handed to,
/// and the sessions.
#[derive(Clone)]
struct Console {
    state: AppState,
    api: Router,
    sessions: Arc<Sessions>,
}

/// Strict by design: everything comes from this origin, nothing inline, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The console's routes, answering through `api` (the API router, its layers included).
pub fn router(state: AppState, api: Router) -> Router {
    let config = &state.config.console;
    let sessions = Arc::new(Sessions::new(Duration::from_secs(config.session_idle_timeout), config.max_sessions));
    let console = Console { state, api, sessions };
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
        .route("/console/icon.svg", get(icon))
        .route("/console/session", get(current))
        .route("/console/login", post(login))
        .route("/console/logout", post(logout))
        .route("/console/projects", get(projects))
        .route("/console/project", post(switch_project))
        .route("/console/api/{*rest}", any(proxy::forward))
        .layer(Extension(console))
        .layer(middleware::from_fn(secure_headers))
}

/// Middleware: the security headers of every console response.
async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", include_str!("assets/index.html"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/app.js"))
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

async fn icon() -> Response {
    asset("image/svg+xml", include_str!("assets/icon.svg"))
}

/// Whether the client reached the service over HTTPS, so the cookie must be `Secure`.
fn over_tls(base: &BaseUrl) -> bool {
    base.0.starts_with("https:")
}

impl Console {
    fn keystone(&self) -> Option<&Keystone> {
        match self.state.config.auth.mode {
            AuthMode::Keystone => self.state.keystone.as_deref(),
            AuthMode::Noauth => None,
        }
    }

    fn summary(&self, session: Option<&Session>) -> Summary {
        let csrf = session.map(|s| s.csrf.clone());
        let multistore = self.state.stores.multistore();
        match (self.keystone(), session.and_then(|s| s.signed_in.as_ref())) {
            (Some(_), Some(issued)) => Summary {
                mode: "keystone",
                signed_in: true,
                csrf,
                user: Some(issued.user_name.clone()),
                project: issued.project_name.clone(),
                project_id: issued.identity.project_id.clone(),
                admin: issued.identity.roles.iter().any(|r| r.eq_ignore_ascii_case("admin")),
                roles: issued.identity.roles.clone(),
                expires_at: Some(issued.identity.expires_at),
                multistore,
            },
            (Some(_), None) => Summary {
                mode: "keystone",
                signed_in: false,
                csrf: None,
                user: None,
                project: None,
                project_id: None,
                roles: Vec::new(),
                admin: false,
                expires_at: None,
                multistore,
            },
            (None, _) => {
                let config = &self.state.config.console;
                let project = config.noauth_project_id.clone();
                let roles = if project.is_some() { config.noauth_roles.clone() } else { vec!["admin".into()] };
                Summary {
                    mode: "noauth",
                    signed_in: true,
                    csrf,
                    user: config.noauth_user_id.clone().filter(|_| project.is_some()),
                    admin: roles.iter().any(|r| r.eq_ignore_ascii_case("admin")),
                    project_id: project.clone(),
                    project,
                    roles,
                    expires_at: None,
                    multistore,
                }
            }
        }
    }
}

/// `GET /console/session`: who the console acts as, and the CSRF token. In no-auth mode a
/// visitor without a session gets one (there is nobody to sign in as).
async fn current(
    Extension(console): Extension<Console>,
    Extension(base): Extension<BaseUrl>,
    headers: HeaderMap,
) -> Response {
    if let Some((_, session)) = console.sessions.find(&headers) {
        return Json(console.summary(Some(&session))).into_response();
    }
    if console.keystone().is_some() {
        return Json(console.summary(None)).into_response();
    }
    let (id, session) = console.sessions.create(None);
    let cookie = session::set_cookie(&id, over_tls(&base));
    ([(header::SET_COOKIE, cookie)], Json(console.summary(Some(&session)))).into_response()
}

/// What the sign-in form sends. A JSON body only: a cross-site form cannot send one, so no
/// other site can sign a visitor in to an account of its choosing.
#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
    #[serde(default = "default_domain")]
    domain: String,
    #[serde(default)]
    project: String,
}

fn default_domain() -> String {
    "Default".into()
}

/// `POST /console/login`: asks Keystone for a token (scoped to the named project, else to the
/// user's first project) and starts a session holding it.
async fn login(
    Extension(console): Extension<Console>,
    Extension(base): Extension<BaseUrl>,
    headers: HeaderMap,
    Json(credentials): Json<Credentials>,
) -> Result<Response, ApiError> {
    let keystone = console
        .keystone()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "The console has no sign-in in no-auth mode."))?;
    let domain = if credentials.domain.trim().is_empty() { "Default" } else { credentials.domain.trim() };
    let issued =
        keystone.sign_in(credentials.user.trim(), &credentials.password, domain, credentials.project.trim()).await?;
    let issued = if issued.identity.project_id.is_some() { issued } else { first_project(keystone, issued).await? };
    if let Some((old, _)) = console.sessions.find(&headers) {
        forget(&console, &old).await;
    }
    let (id, session) = console.sessions.create(Some(issued));
    let cookie = session::set_cookie(&id, over_tls(&base));
    Ok(([(header::SET_COOKIE, cookie)], Json(console.summary(Some(&session)))).into_response())
}

/// Scopes an unscoped sign-in to the first project its user has.
async fn first_project(keystone: &Keystone, unscoped: Issued) -> Result<Issued, ApiError> {
    let projects = keystone.projects(&unscoped.token).await?;
    let scoped = match projects.first() {
        Some(project) => keystone.rescope(&unscoped.token, &project.id).await,
        None => Err(glint_core::Error::Forbidden("This user has a role on no project.".into())),
    };
    keystone.revoke(&unscoped.token).await;
    Ok(scoped?)
}

/// Forgets session `id`, revoking the token the console obtained for it.
async fn forget(console: &Console, id: &str) {
    let removed = console.sessions.remove(id);
    if let (Some(keystone), Some(issued)) = (console.keystone(), removed.and_then(|s| s.signed_in)) {
        keystone.revoke(&issued.token).await;
    }
}

/// The session of a state-changing request whose CSRF token is right.
fn checked(console: &Console, headers: &HeaderMap) -> Result<(String, Session), ApiError> {
    let (id, session) = console
        .sessions
        .find(headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "The console session has ended; sign in again."))?;
    if !session::csrf_matches(headers, &session) {
        return Err(csrf_refused());
    }
    Ok((id, session))
}

fn csrf_refused() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "The console's CSRF token is missing or wrong; reload the page.")
}

/// `POST /console/logout`: forgets the session (and revokes its token, which the console
/// obtained); the cookie is cleared.
async fn logout(
    Extension(console): Extension<Console>,
    Extension(base): Extension<BaseUrl>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (id, _) = checked(&console, &headers)?;
    forget(&console, &id).await;
    Ok(([(header::SET_COOKIE, session::clear_cookie(over_tls(&base)))], StatusCode::NO_CONTENT).into_response())
}

/// `GET /console/projects`: the projects the signed-in user may switch to.
async fn projects(Extension(console): Extension<Console>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (keystone, issued) = signed_in(&console, &headers)?;
    Ok(Json(serde_json::json!({ "projects": keystone.projects(&issued.token).await? })).into_response())
}

fn signed_in<'a>(console: &'a Console, headers: &HeaderMap) -> Result<(&'a Keystone, Issued), ApiError> {
    let keystone = console
        .keystone()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "The console has no projects in no-auth mode."))?;
    let issued = console
        .sessions
        .find(headers)
        .and_then(|(_, s)| s.signed_in)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "The console session has ended; sign in again."))?;
    Ok((keystone, issued))
}

#[derive(Deserialize)]
struct Switch {
    project_id: String,
}

/// `POST /console/project`: rescopes the session's token to another of the user's projects.
async fn switch_project(
    Extension(console): Extension<Console>,
    headers: HeaderMap,
    Json(switch): Json<Switch>,
) -> Result<Response, ApiError> {
    let (id, _) = checked(&console, &headers)?;
    let (keystone, issued) = signed_in(&console, &headers)?;
    let scoped = keystone.rescope(&issued.token, &switch.project_id).await?;
    console.sessions.replace(&id, scoped);
    let session = console.sessions.find(&headers).map(|(_, s)| s);
    Ok(Json(console.summary(session.as_ref())).into_response())
}
