//! Requests to one Swift account with a token that is renewed as needed.

use std::io;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::StoreError;
use super::auth::{Credentials, Session};
use super::limits::Limits;

/// How long a metadata request (HEAD, DELETE, listing, manifest) may take; data transfers have
/// no total limit, only the connect timeout.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What is escaped in an object name: everything but unreserved characters and `/`, which
/// Swift takes as part of the name.
const NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
/// A container name is one path segment.
const SEGMENT: &AsciiSet = &NAME.add(b'/');

/// One Swift account, reached with the store's credentials.
pub(super) struct Client {
    http: reqwest::Client,
    credentials: Credentials,
    /// The operator's storage URL, used instead of the one the login returns.
    endpoint: Option<String>,
    session: tokio::sync::Mutex<Option<Session>>,
    /// The cluster's limits, read once from its `/info`; `None` inside: no large objects.
    limits: tokio::sync::OnceCell<Option<Limits>>,
}

/// The path of `name` in `container`, relative to the account, escaped.
pub(super) fn object_path(container: &str, name: &str) -> String {
    format!("/{}/{}", utf8_percent_encode(container, SEGMENT), utf8_percent_encode(name, NAME))
}

/// The path of `container`, relative to the account, escaped.
pub(super) fn container_path(container: &str) -> String {
    format!("/{}", utf8_percent_encode(container, SEGMENT))
}

impl Client {
    pub(super) fn new(credentials: Credentials, endpoint: Option<String>) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("glint/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Client {
            http,
            credentials,
            endpoint,
            session: tokio::sync::Mutex::new(None),
            limits: tokio::sync::OnceCell::new(),
        })
    }

    /// The current session, logging in again if it is about to expire or `renew` (Swift
    /// refused its token).
    async fn session(&self, renew: bool) -> Result<Session, StoreError> {
        let mut held = self.session.lock().await;
        if let Some(session) = held.as_ref()
            && !renew
            && session.fresh()
        {
            return Ok(session.clone());
        }
        let session = self.credentials.login(&self.http).await?;
        *held = Some(session.clone());
        Ok(session)
    }

    /// The cluster's limits (see [`super::limits`]), read from `/info` beside the account's
    /// URL on first use; `None` when the cluster has no static large objects. A cluster that
    /// keeps its `/info` to itself gets Swift's defaults; one that cannot be reached is asked
    /// again next time.
    pub(super) async fn limits(&self) -> Result<Option<Limits>, StoreError> {
        self.limits.get_or_try_init(|| self.read_limits()).await.cloned()
    }

    async fn read_limits(&self) -> Result<Option<Limits>, StoreError> {
        let session = self.session(false).await?;
        let base = self.endpoint.as_deref().unwrap_or(&session.storage_url);
        let url = reqwest::Url::parse(base)
            .and_then(|u| u.join("/info"))
            .map_err(|e| StoreError::Io(io::Error::other(format!("the storage URL {base} is not a URL: {e}"))))?;
        let response = self
            .http
            .get(url.clone())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| unreachable(&Method::GET, url.as_str(), &e))?;
        if !response.status().is_success() {
            tracing::warn!(%url, status = %response.status(), "Swift does not publish its limits; assuming its defaults");
            return Ok(Some(Limits::default()));
        }
        let body = response.bytes().await.map_err(|e| unreachable(&Method::GET, url.as_str(), &e))?;
        let limits = Limits::from_info(&body).map_err(|e| StoreError::Io(io::Error::other(e)))?;
        tracing::info!(%url, ?limits, "Swift's limits");
        Ok(limits)
    }

    fn request(&self, session: &Session, method: Method, path: &str) -> RequestBuilder {
        let base = self.endpoint.as_deref().unwrap_or(&session.storage_url).trim_end_matches('/');
        self.http.request(method, format!("{base}{path}")).header("X-Auth-Token", &session.token)
    }

    /// Sends a metadata request (no streamed body, at most [`REQUEST_TIMEOUT`] in all): once
    /// more with a new token if Swift refuses the one held.
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, StoreError> {
        self.send_retrying(method, path, |r| build(r.timeout(REQUEST_TIMEOUT))).await
    }

    /// Like [`Client::send`], without a total time limit: for downloads, whose body streams
    /// for as long as the reader takes.
    pub(super) async fn open(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, StoreError> {
        self.send_retrying(method, path, build).await
    }

    async fn send_retrying(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, StoreError> {
        let mut renew = false;
        loop {
            let session = self.session(renew).await?;
            let request = build(self.request(&session, method.clone(), path));
            let response = request.send().await.map_err(|e| unreachable(&method, path, &e))?;
            if response.status() == StatusCode::UNAUTHORIZED && !renew {
                renew = true;
                continue;
            }
            return Ok(response);
        }
    }

    /// Sends a request whose body streams (sent once: a refused token fails it).
    pub(super) async fn send_body(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, StoreError> {
        let session = self.session(false).await?;
        let response = build(self.request(&session, method.clone(), path)).send().await;
        let response = response.map_err(|e| unreachable(&method, path, &e))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            // Revoked early: the next request logs in again.
            self.session.lock().await.take();
        }
        Ok(response)
    }
}

fn unreachable(method: &Method, path: &str, err: &reqwest::Error) -> StoreError {
    // The source chain says whether the connection failed or the body did (our side).
    let mut why = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        why = format!("{why}: {cause}");
        source = cause.source();
    }
    StoreError::Io(io::Error::other(format!("Swift {method} {path}: {why}")))
}

/// `response` as an error unless its status is a success: 401/403 refuse access, 404 is
/// nothing there, 413/507 a full store.
pub(super) async fn check(response: Response, what: &str) -> Result<Response, StoreError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let detail = body.trim().chars().take(200).collect::<String>();
    Err(match status.as_u16() {
        401 | 403 => StoreError::Denied(format!("Swift refused {what} ({status})")),
        404 => StoreError::NotFound(what.to_owned()),
        413 | 507 => StoreError::Full,
        _ => StoreError::Io(io::Error::other(format!("Swift answered {status} to {what}: {detail}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_names_but_keep_their_slashes() {
        assert_eq!(object_path("glance", "6a1b-c/0001"), "/glance/6a1b-c/0001");
        assert_eq!(object_path("my images", "a b?c#d%"), "/my%20images/a%20b%3Fc%23d%25");
        assert_eq!(container_path("a/b"), "/a%2Fb");
    }
}
