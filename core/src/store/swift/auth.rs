//! Logging in to Swift: Keystone v3 (password, project-scoped; the storage URL from the
//! catalog's `object-store` entry) or the v1.0 protocol of tempauth and swauth. The token is
//! kept until shortly before it expires, or until Swift refuses it.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::StoreError;
use crate::config::SwiftConfig;

/// A token is renewed this long before it expires, so that no request starts with a token
/// about to lapse.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(120);

/// How to log in.
pub(super) enum Credentials {
    /// Keystone v3, password method, scoped to a project.
    Keystone {
        /// `<base>/v3/auth/tokens`.
        tokens_url: String,
        user: String,
        key: String,
        user_domain: String,
        project: String,
        project_domain: String,
        region: Option<String>,
        interface: String,
    },
    /// tempauth/swauth v1.0: `GET auth_url` with `X-Auth-User` and `X-Auth-Key`.
    V1 { auth_url: String, user: String, key: String },
}

/// A token and the account URL it is good for.
#[derive(Clone)]
pub(super) struct Session {
    /// `X-Auth-Token` for every request.
    pub(super) token: String,
    /// The account: `https://swift.example.org/v1/AUTH_<project>`.
    pub(super) storage_url: String,
    /// When to log in again, if the login said.
    renew_at: Option<Instant>,
}

impl Session {
    pub(super) fn fresh(&self) -> bool {
        self.renew_at.is_none_or(|at| Instant::now() < at)
    }
}

impl Credentials {
    /// The credentials of `cfg`, or what is missing for its `auth_version`.
    pub(super) fn from_config(cfg: &SwiftConfig) -> Result<Credentials, String> {
        let (user, key) = (cfg.user.clone(), cfg.key.clone());
        if user.is_empty() || key.is_empty() {
            return Err("user and key are required".into());
        }
        match cfg.auth_version {
            3 => {
                let project = cfg.project_name.clone().ok_or("auth_version = 3 needs project_name")?;
                let base = cfg.auth_url.trim_end_matches('/');
                let base = base.strip_suffix("/v3").unwrap_or(base);
                Ok(Credentials::Keystone {
                    tokens_url: format!("{base}/v3/auth/tokens"),
                    user,
                    key,
                    user_domain: cfg.user_domain_name.clone(),
                    project,
                    project_domain: cfg.project_domain_name.clone(),
                    region: cfg.region.clone(),
                    interface: cfg.interface.clone(),
                })
            }
            1 => Ok(Credentials::V1 { auth_url: cfg.auth_url.clone(), user, key }),
            other => Err(format!("auth_version = {other}: use 3 (Keystone v3) or 1 (tempauth, swauth)")),
        }
    }

    /// Logs in.
    pub(super) async fn login(&self, http: &reqwest::Client) -> Result<Session, StoreError> {
        match self {
            Credentials::V1 { auth_url, user, key } => {
                let response = http
                    .get(auth_url)
                    .header("X-Auth-User", user)
                    .header("X-Auth-Key", key)
                    .send()
                    .await
                    .map_err(|e| unreachable(auth_url, &e))?;
                refused(auth_url, &response)?;
                let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
                let (Some(token), Some(storage_url)) = (header("X-Auth-Token"), header("X-Storage-Url")) else {
                    return Err(StoreError::Denied(format!(
                        "{auth_url} answered the login without X-Auth-Token and X-Storage-Url"
                    )));
                };
                let lifetime = header("X-Auth-Token-Expires").and_then(|s| s.parse::<u64>().ok());
                Ok(Session {
                    token: token.to_owned(),
                    storage_url: storage_url.to_owned(),
                    renew_at: lifetime.map(|s| renew_at(Duration::from_secs(s))),
                })
            }
            Credentials::Keystone {
                tokens_url,
                user,
                key,
                user_domain,
                project,
                project_domain,
                region,
                interface,
            } => {
                let body = serde_json::json!({"auth": {
                    "identity": {"methods": ["password"], "password": {"user": {
                        "name": user, "domain": {"name": user_domain}, "password": key}}},
                    "scope": {"project": {"name": project, "domain": {"name": project_domain}}},
                }});
                let response =
                    http.post(tokens_url).json(&body).send().await.map_err(|e| unreachable(tokens_url, &e))?;
                refused(tokens_url, &response)?;
                let token = response
                    .headers()
                    .get("X-Subject-Token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| StoreError::Denied(format!("{tokens_url} issued no X-Subject-Token")))?;
                let issued: Issued = response.json().await.map_err(|e| {
                    StoreError::Io(std::io::Error::other(format!("{tokens_url} sent an unreadable token: {e}")))
                })?;
                let storage_url = issued.token.object_store(region.as_deref(), interface).ok_or_else(|| {
                    StoreError::Denied(format!(
                        "the catalog of project {project} has no {interface} object-store endpoint{}",
                        region.as_deref().map(|r| format!(" in region {r}")).unwrap_or_default()
                    ))
                })?;
                let lifetime = (issued.token.expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
                Ok(Session { token, storage_url, renew_at: Some(renew_at(lifetime)) })
            }
        }
    }
}

fn renew_at(lifetime: Duration) -> Instant {
    Instant::now() + lifetime.saturating_sub(RENEW_BEFORE_EXPIRY)
}

fn unreachable(url: &str, err: &reqwest::Error) -> StoreError {
    StoreError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        format!("cannot reach {url} to log in to Swift: {err}"),
    ))
}

fn refused(url: &str, response: &reqwest::Response) -> Result<(), StoreError> {
    match response.status().as_u16() {
        200..=299 => Ok(()),
        401 | 403 => Err(StoreError::Denied(format!("{url} refused the Swift credentials ({})", response.status()))),
        _ => Err(StoreError::Io(std::io::Error::other(format!(
            "{url} answered the Swift login with {}",
            response.status()
        )))),
    }
}

#[derive(Deserialize)]
struct Issued {
    token: Token,
}

#[derive(Deserialize)]
struct Token {
    expires_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    catalog: Vec<Service>,
}

#[derive(Deserialize)]
struct Service {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct Endpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

impl Token {
    /// The URL of the catalog's object-store endpoint of `interface` (in `region`, if given).
    fn object_store(&self, region: Option<&str>, interface: &str) -> Option<String> {
        let endpoints = self.catalog.iter().filter(|s| s.kind == "object-store").flat_map(|s| &s.endpoints);
        endpoints
            .filter(|e| e.interface == interface)
            .find(|e| region.is_none_or(|r| e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r)))
            .map(|e| e.url.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(version: u8, project: Option<&str>) -> SwiftConfig {
        let text = format!(
            "auth_url = \"http://keystone:5000/v3/\"\nauth_version = {version}\nuser = \"glance\"\nkey = \"k\"\n{}",
            project.map(|p| format!("project_name = \"{p}\"\n")).unwrap_or_default()
        );
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(&text)).extract().expect("config")
    }

    #[test]
    fn keystone_needs_a_project_and_finds_its_tokens_url() {
        assert!(Credentials::from_config(&config(3, None)).is_err());
        let Ok(Credentials::Keystone { tokens_url, .. }) = Credentials::from_config(&config(3, Some("service"))) else {
            panic!("keystone credentials");
        };
        assert_eq!(tokens_url, "http://keystone:5000/v3/auth/tokens");
        assert!(matches!(Credentials::from_config(&config(1, None)), Ok(Credentials::V1 { .. })));
        assert!(Credentials::from_config(&config(2, Some("service"))).is_err());
    }

    #[test]
    fn the_catalog_gives_the_object_store_endpoint_of_the_interface_and_region() {
        let token: Token = serde_json::from_value(serde_json::json!({
            "expires_at": "2030-01-01T00:00:00Z",
            "catalog": [
                {"type": "identity", "endpoints": [{"interface": "public", "region_id": "one", "url": "http://ks"}]},
                {"type": "object-store", "endpoints": [
                    {"interface": "public", "region_id": "one", "region": "one", "url": "http://one-public"},
                    {"interface": "internal", "region_id": "one", "url": "http://one-internal"},
                    {"interface": "public", "region_id": "two", "url": "http://two-public"},
                ]},
            ],
        }))
        .expect("token");
        assert_eq!(token.object_store(None, "public").as_deref(), Some("http://one-public"));
        assert_eq!(token.object_store(Some("two"), "public").as_deref(), Some("http://two-public"));
        assert_eq!(token.object_store(Some("one"), "internal").as_deref(), Some("http://one-internal"));
        assert_eq!(token.object_store(Some("three"), "public"), None);
        assert_eq!(token.object_store(None, "admin"), None);
    }
}
