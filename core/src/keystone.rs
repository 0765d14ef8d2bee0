//! Keystone token validation, as keystonemiddleware's auth_token does it: a service token,
//! `GET /v3/auth/tokens`, and a bounded cache of the answers.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::KeystoneConfig;
use crate::{Error, Result, metrics};

/// Who a valid token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The project the token is scoped to; `None` for unscoped, domain- or system-scoped tokens.
    pub project_id: Option<String>,
    /// The user the token was issued to.
    pub user_id: String,
    /// Role names on that scope, implied roles included (Keystone expands them).
    pub roles: Vec<String>,
    /// When Keystone stops honouring the token.
    pub expires_at: DateTime<Utc>,
}

/// Validates tokens against one Keystone, caching answers for `cache_ttl`.
pub struct Keystone {
    config: KeystoneConfig,
    tokens_url: String,
    http: reqwest::Client,
    service_token: tokio::sync::Mutex<Option<ServiceToken>>,
    cache: Mutex<Cache>,
}

struct ServiceToken {
    token: String,
    expires_at: DateTime<Utc>,
}

/// Keystone's answer about one token, as remembered.
#[derive(Clone)]
enum Verdict {
    Valid(Identity),
    Invalid,
}

struct Cached {
    verdict: Verdict,
    until: Instant,
}

/// Tokens are keyed by their SHA-256, so a memory dump holds no usable token; eviction is
/// oldest-first, which keeps a flood of bogus tokens from growing the map without bound.
struct Cache {
    entries: HashMap<[u8; 32], Cached>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl Cache {
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some(cached) if cached.until > now => Some(cached.verdict.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: [u8; 32], cached: Cached) {
        if self.entries.insert(key, cached).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        // Entries dropped by `get` leave their key in `order`; compact once they dominate.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenData,
}

#[derive(Deserialize)]
struct TokenData {
    expires_at: DateTime<Utc>,
    user: Named,
    project: Option<Named>,
    #[serde(default)]
    roles: Vec<Role>,
}

#[derive(Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    name: String,
}

/// A token Keystone issued to a person signing in (the console's), with what it says.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The token itself, for `X-Auth-Token`.
    pub token: String,
    /// Its identity (project, user, roles, expiry).
    pub identity: Identity,
    /// The user's name.
    pub user_name: String,
    /// The project's name, when the token is project-scoped.
    pub project_name: Option<String>,
}

/// A project a user may scope a token to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Project {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

#[derive(Deserialize)]
struct ProjectsBody {
    projects: Vec<Project>,
}

/// Keystone's error body (`{"error": {"message": ...}}`), whose message a person signing in reads.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

#[derive(Deserialize)]
struct Role {
    name: String,
}

/// What a 401 says, whatever the reason (WebOb's text, which Glance sends): unknown, malformed,
/// expired and revoked tokens are not told apart to the caller.
pub const UNAUTHORIZED: &str = "This server could not verify that you are authorized to access the document you \
     requested. Either you supplied the wrong credentials (e.g., bad password), or your browser does not understand \
     how to supply the credentials required.";

impl Keystone {
    /// A validator for the Keystone `config` names; fails only if the HTTP client cannot be built.
    pub fn new(config: &KeystoneConfig) -> Result<Self> {
        let base = config.auth_url.trim_end_matches('/');
        let base = base.strip_suffix("/v3").unwrap_or(base);
        let http = reqwest::Client::builder()
            .user_agent(concat!("glint/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(config.timeout))
            .build()
            .map_err(|e| Error::Config(format!("auth.keystone: cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            config: config.clone(),
            tokens_url: format!("{base}/v3/auth/tokens"),
            http,
            service_token: tokio::sync::Mutex::new(None),
            cache: Mutex::new(Cache { entries: HashMap::new(), order: VecDeque::new(), capacity: config.cache_size }),
        })
    }

    /// The endpoint clients are sent to by `WWW-Authenticate` on a 401.
    pub fn www_authenticate_uri(&self) -> &str {
        self.config.www_authenticate_uri.as_deref().unwrap_or(&self.config.auth_url)
    }

    /// Who `token` speaks for. `Unauthorized` when Keystone says it is not valid (or it expired
    /// since), `Unavailable` when Keystone cannot be asked.
    pub async fn validate(&self, token: &str) -> Result<Identity> {
        self.check(token, false).await
    }

    /// Like [`Keystone::validate`], but a token that expired recently (within Keystone's
    /// `allow_expired_window`) still counts: for requests that also carry a valid service
    /// token, as keystonemiddleware allows, so that a service (Nova uploading a snapshot) can
    /// finish work a user started with a token that has expired since.
    pub async fn validate_allowing_expired(&self, token: &str) -> Result<Identity> {
        self.check(token, true).await
    }

    async fn check(&self, token: &str, allow_expired: bool) -> Result<Identity> {
        let key: [u8; 32] =
            Sha256::new().chain_update([u8::from(allow_expired)]).chain_update(token.as_bytes()).finalize().into();
        let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key, Instant::now());
        metrics::token_cache(cached.is_some());
        let verdict = match cached {
            Some(verdict) => verdict,
            None => {
                let asked = self.ask(token, allow_expired).await;
                metrics::keystone_validation(match &asked {
                    Ok(Verdict::Valid(_)) => "valid",
                    Ok(Verdict::Invalid) => "invalid",
                    Err(_) => "error",
                });
                let verdict = asked?;
                let ttl = Duration::from_secs(self.config.cache_ttl);
                let until = Instant::now() + ttl;
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .put(key, Cached { verdict: verdict.clone(), until });
                verdict
            }
        };
        match verdict {
            Verdict::Valid(identity) if allow_expired || identity.expires_at > Utc::now() => Ok(identity),
            _ => Err(Error::Unauthorized(UNAUTHORIZED.into())),
        }
    }

    /// The service catalog of `token` (Keystone's v3 form), as keystonemiddleware hands it on
    /// in `X-Service-Catalog`: what glance-download finds another region's image endpoint in.
    /// Never cached, as it is asked for once per import. `Unauthorized` when the token is not
    /// valid, `Unavailable` when Keystone cannot be asked.
    pub async fn catalog(&self, token: &str) -> Result<serde_json::Value> {
        let response = self.subject(token, &self.tokens_url).await?;
        let Some(response) = response else {
            return Err(Error::Unauthorized(UNAUTHORIZED.into()));
        };
        let mut body: serde_json::Value =
            response.json().await.map_err(|e| Error::Unavailable(format!("Keystone sent an unreadable token: {e}")))?;
        Ok(body["token"]["catalog"].take())
    }

    /// Asks Keystone about `token`.
    async fn ask(&self, token: &str, allow_expired: bool) -> Result<Verdict> {
        let url = format!("{}?nocatalog{}", self.tokens_url, if allow_expired { "&allow_expired=1" } else { "" });
        let Some(response) = self.subject(token, &url).await? else {
            return Ok(Verdict::Invalid);
        };
        let body: TokenBody =
            response.json().await.map_err(|e| Error::Unavailable(format!("Keystone sent an unreadable token: {e}")))?;
        let token = body.token;
        Ok(Verdict::Valid(Identity {
            project_id: token.project.map(|p| p.id),
            user_id: token.user.id,
            roles: token.roles.into_iter().map(|r| r.name).collect(),
            expires_at: token.expires_at,
        }))
    }

    /// `GET url` about the subject `token` as the service user, renewing the service token
    /// once if Keystone no longer takes it: the response when the token is valid, `None` when
    /// Keystone says it is not.
    async fn subject(&self, token: &str, url: &str) -> Result<Option<reqwest::Response>> {
        for renewed in [false, true] {
            let service = self.service_token(renewed).await?;
            let response = self
                .http
                .get(url)
                .header("X-Auth-Token", service)
                .header("X-Subject-Token", token)
                .send()
                .await
                .map_err(|e| unreachable(&e))?;
            match response.status().as_u16() {
                200 => return Ok(Some(response)),
                // 400: not even a token's shape; 404: unknown, expired or revoked.
                400 | 404 => return Ok(None),
                401 if !renewed => continue,
                status => {
                    return Err(Error::Unavailable(format!(
                        "Keystone refused to validate tokens for the service user (HTTP {status})"
                    )));
                }
            }
        }
        Err(Error::Unavailable("Keystone does not accept the service user's token".into()))
    }

    /// The service user's token: the remembered one unless it is about to expire or `renew`.
    async fn service_token(&self, renew: bool) -> Result<String> {
        let mut held = self.service_token.lock().await;
        if let Some(current) = held.as_ref()
            && !renew
            && current.expires_at > Utc::now() + chrono::Duration::seconds(60)
        {
            return Ok(current.token.clone());
        }
        let c = &self.config;
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "domain": {"name": c.user_domain_name}, "password": c.password}}},
            "scope": {"project": {"name": c.project_name, "domain": {"name": c.project_domain_name}}},
        }});
        let response = self.post_tokens(&body).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Unavailable(format!(
                "Keystone refused the service user {:?} (HTTP {}); check [auth.keystone]",
                c.username,
                status.as_u16()
            )));
        }
        let (token, body) = issued(response).await?;
        *held = Some(ServiceToken { token: token.clone(), expires_at: body.token.expires_at });
        Ok(token)
    }

    /// `POST /v3/auth/tokens?nocatalog` with `body`, Keystone's answer whatever its status.
    async fn post_tokens(&self, body: &serde_json::Value) -> Result<reqwest::Response> {
        let request = self.http.post(format!("{}?nocatalog", self.tokens_url)).json(body);
        request.send().await.map_err(|e| unreachable(&e))
    }
}

/// The token Keystone issued in a successful `response`: its `X-Subject-Token` and its body.
async fn issued(response: reqwest::Response) -> Result<(String, TokenBody)> {
    let token = response
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| Error::Unavailable("Keystone issued no X-Subject-Token".into()))?;
    let body =
        response.json().await.map_err(|e| Error::Unavailable(format!("Keystone sent an unreadable token: {e}")))?;
    Ok((token, body))
}

/// The URL of the `image` service's `interface` endpoint in `region` (named in any case, as
/// Glance compares them) in a service `catalog`: Keystone's v3 form (`interface`, `url`,
/// `region` or `region_id`) or the v2 form keystonemiddleware puts in `X-Service-Catalog`
/// (`region`, `<interface>URL`). Without a trailing slash.
pub fn image_endpoint(catalog: &serde_json::Value, region: &str, interface: &str) -> Option<String> {
    let services = catalog.as_array()?;
    let region = region.to_lowercase();
    let in_region = |endpoint: &serde_json::Value| {
        ["region", "region_id"]
            .iter()
            .any(|key| endpoint.get(key).and_then(|r| r.as_str()).is_some_and(|r| r.to_lowercase() == region))
    };
    let url = |endpoint: &serde_json::Value| -> Option<String> {
        let v3 = endpoint.get("interface").and_then(|i| i.as_str()) == Some(interface);
        let url = if v3 { endpoint.get("url") } else { endpoint.get(format!("{interface}URL")) };
        url.and_then(|u| u.as_str()).map(|u| u.trim_end_matches('/').to_owned())
    };
    services
        .iter()
        .filter(|service| service.get("type").and_then(|t| t.as_str()) == Some("image"))
        .filter_map(|service| service.get("endpoints")?.as_array())
        .flatten()
        .filter(|endpoint| in_region(endpoint))
        .find_map(url)
}

impl Keystone {
    /// Signs a person in with a password: a token scoped to `project` (a name in `domain`, the
    /// user's domain too), or, when `project` is empty, unscoped. Keystone's refusal is
    /// `Unauthorized` with Keystone's own message.
    pub async fn sign_in(&self, user: &str, password: &str, domain: &str, project: &str) -> Result<Issued> {
        let mut auth = serde_json::json!({
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": domain}, "password": password}}},
        });
        if !project.is_empty() {
            auth["scope"] = serde_json::json!({"project": {"name": project, "domain": {"name": domain}}});
        }
        self.issue(serde_json::json!({ "auth": auth })).await
    }

    /// A token for the same user as `token`, scoped to project `project_id`.
    pub async fn rescope(&self, token: &str, project_id: &str) -> Result<Issued> {
        self.issue(serde_json::json!({"auth": {
            "identity": {"methods": ["token"], "token": {"id": token}},
            "scope": {"project": {"id": project_id}},
        }}))
        .await
    }

    /// The projects `token`'s user may scope a token to (`GET /v3/auth/projects`).
    pub async fn projects(&self, token: &str) -> Result<Vec<Project>> {
        let url = self.tokens_url.replace("/auth/tokens", "/auth/projects");
        let response = self.http.get(url).header("X-Auth-Token", token).send().await.map_err(|e| unreachable(&e))?;
        let response = refusal(response).await?;
        let body: ProjectsBody = response
            .json()
            .await
            .map_err(|e| Error::Unavailable(format!("Keystone sent an unreadable project list: {e}")))?;
        Ok(body.projects)
    }

    /// Revokes `token`, which its holder may do; Keystone's answer does not matter to a
    /// caller who forgets the token anyway, so failures are only logged.
    pub async fn revoke(&self, token: &str) {
        let sent = self.http.delete(&self.tokens_url).header("X-Auth-Token", token).header("X-Subject-Token", token);
        match sent.send().await {
            Ok(response) if response.status().is_success() || response.status().as_u16() == 404 => {}
            Ok(response) => tracing::warn!(status = response.status().as_u16(), "Keystone did not revoke a token"),
            Err(err) => tracing::warn!(error = %unreachable(&err), "cannot revoke a token"),
        }
    }

    async fn issue(&self, body: serde_json::Value) -> Result<Issued> {
        let response = refusal(self.post_tokens(&body).await?).await?;
        let (token, body) = issued(response).await?;
        let data = body.token;
        let project_name = data.project.as_ref().map(|p| p.name.clone());
        Ok(Issued {
            token,
            user_name: data.user.name.clone(),
            project_name,
            identity: Identity {
                project_id: data.project.map(|p| p.id),
                user_id: data.user.id,
                roles: data.roles.into_iter().map(|r| r.name).collect(),
                expires_at: data.expires_at,
            },
        })
    }
}

/// `response` if it is a success; Keystone's 4xx as `Unauthorized` with its message (what a
/// person signing in needs to read), anything else as `Unavailable`.
async fn refusal(response: reqwest::Response) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status.is_client_error() {
        let message = response.json::<ErrorBody>().await.map(|b| b.error.message);
        return Err(Error::Unauthorized(message.unwrap_or_else(|_| format!("Keystone refused (HTTP {status})"))));
    }
    Err(Error::Unavailable(format!("Keystone answered HTTP {}", status.as_u16())))
}

fn unreachable(err: &reqwest::Error) -> Error {
    Error::Unavailable(format!("The identity service is unavailable: {}", crate::error::chain(err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(until: Instant) -> Cached {
        Cached { verdict: Verdict::Invalid, until }
    }

    #[test]
    fn cache_forgets_the_oldest_tokens_beyond_its_size() {
        let mut cache = Cache { entries: HashMap::new(), order: VecDeque::new(), capacity: 2 };
        let later = Instant::now() + Duration::from_secs(60);
        for k in 1..=3u8 {
            cache.put([k; 32], cached(later));
        }
        let now = Instant::now();
        assert!(cache.get(&[1; 32], now).is_none());
        assert!(cache.get(&[2; 32], now).is_some() && cache.get(&[3; 32], now).is_some());
    }

    #[test]
    fn the_image_endpoint_is_found_by_region_in_any_case_and_interface() {
        let v3 = serde_json::json!([
            {"type": "identity", "endpoints": [{"interface": "public", "region": "RegionTwo", "url": "http://k/"}]},
            {"type": "image", "endpoints": [
                {"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "http://one:9292"},
                {"interface": "internal", "region": "RegionTwo", "region_id": "RegionTwo", "url": "http://two-in:9292/"},
                {"interface": "public", "region_id": "RegionTwo", "url": "http://two:9292/"}
            ]}
        ]);
        assert_eq!(image_endpoint(&v3, "regiontwo", "public").as_deref(), Some("http://two:9292"));
        assert_eq!(image_endpoint(&v3, "RegionTwo", "internal").as_deref(), Some("http://two-in:9292"));
        assert_eq!(image_endpoint(&v3, "RegionTwo", "admin"), None);
        assert_eq!(image_endpoint(&v3, "RegionThree", "public"), None);
        let v2 = serde_json::json!([{"type": "image", "name": "glance",
            "endpoints": [{"region": "RegionTwo", "publicURL": "http://two:9292", "internalURL": "http://in"}]}]);
        assert_eq!(image_endpoint(&v2, "RegionTwo", "public").as_deref(), Some("http://two:9292"));
        assert_eq!(image_endpoint(&v2, "RegionTwo", "internal").as_deref(), Some("http://in"));
        assert_eq!(image_endpoint(&serde_json::json!({"not": "a list"}), "RegionTwo", "public"), None);
    }

    #[test]
    fn cache_entries_end_at_their_deadline() {
        let mut cache = Cache { entries: HashMap::new(), order: VecDeque::new(), capacity: 8 };
        let now = Instant::now();
        cache.put([7; 32], cached(now + Duration::from_secs(1)));
        assert!(cache.get(&[7; 32], now).is_some());
        assert!(cache.get(&[7; 32], now + Duration::from_secs(2)).is_none());
        assert!(cache.entries.is_empty());
    }
}
