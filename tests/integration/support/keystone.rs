//! A real Keystone shared by the tests of one process (keystone_server.py), with the projects,
//! users and roles the identity tests speak as.
//!
//! | user  | project | roles on it | |
//! |-------|---------|-------------|---|
//! | admin | admin   | admin (⇒ member, reader) | Keystone's bootstrap admin |
//! | alice | one     | member      | owner member |
//! | rita  | one     | reader      | owner reader |
//! | bob   | two     | member      | another project's member |
//! | glint | service | service     | Glint's service user |
//!
//! The admin also holds `admin` on the system (bootstrap) and on the `Default` domain, for
//! system- and domain-scoped tokens.
//!
//! The catalog starts with the identity service only; a test that needs image endpoints
//! (glance-download between regions) registers them with [`Keystone::register_image_endpoint`]
//! while it holds [`Keystone::catalog`], as the catalog is the whole test process's.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

use glint_core::config::{AuthMode, Config};
use serde_json::{Value, json};

use super::venv;

/// The people (and the service) in the test Keystone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum User {
    /// Cloud admin (role admin on project `admin`).
    Admin,
    /// Member of project `one`.
    Alice,
    /// Reader of project `one`.
    Rita,
    /// Member of project `two`.
    Bob,
}

impl User {
    /// Keystone user name, password and project name.
    pub fn credentials(self) -> (&'static str, &'static str, &'static str) {
        match self {
            User::Admin => ("admin", "secret", "admin"),
            User::Alice => ("alice", "alice-pw", "one"),
            User::Rita => ("rita", "rita-pw", "one"),
            User::Bob => ("bob", "bob-pw", "two"),
        }
    }
}

const SERVICE_USER: (&str, &str) = ("glint", "glint-service-pw");

/// The running Keystone.
pub struct Keystone {
    /// Its identity v3 endpoint, `http://127.0.0.1:N/v3`.
    pub url: String,
    projects: HashMap<&'static str, String>,
    users: HashMap<User, String>,
    _server: Server,
    _dir: tempfile::TempDir,
}

/// Kills keystone_server.py if the test process unwinds before it exits on its own (it also
/// exits when its parent goes away).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The process-wide Keystone, started on first use. `None` (after "skipped: ...") when it
/// cannot be installed or started outside CI; under `CI=true` that panics.
pub fn keystone() -> Option<&'static Keystone> {
    static KEYSTONE: OnceLock<Result<Keystone, String>> = OnceLock::new();
    let bin = venv::keystone()?;
    // Setting up talks HTTP: on a thread of its own, as callers run inside a test's runtime.
    let started = KEYSTONE.get_or_init(|| {
        std::thread::spawn(move || start(&bin)).join().unwrap_or_else(|_| Err("setup panicked".into()))
    });
    match started {
        Ok(keystone) => Some(keystone),
        Err(why) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("keystone could not be started (required when CI=true): {why}");
            }
            eprintln!("skipped: keystone could not be started: {why}");
            None
        }
    }
}

fn start(bin: &std::path::Path) -> Result<Keystone, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/support/keystone_server.py");
    let mut child = Command::new(bin.join("python"))
        .arg(script)
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(dir.path().join("server.log")).map_err(|e| e.to_string())?))
        .spawn()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
    let Some(port) = line.trim().strip_prefix("port ") else {
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        return Err(format!(
            "keystone_server.py did not start: {}",
            log.lines().rev().take(15).collect::<Vec<_>>().join("\n")
        ));
    };
    let url = format!("http://127.0.0.1:{port}/v3");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let (projects, users) = runtime.block_on(populate(&url))?;
    Ok(Keystone { url, projects, users, _server: server, _dir: dir })
}

/// Creates the projects, users and role assignments of the table above.
async fn populate(url: &str) -> Result<(HashMap<&'static str, String>, HashMap<User, String>), String> {
    let http = reqwest::Client::new();
    let admin = password_token(&http, url, "admin", "secret", "admin").await?;
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let (http, admin) = (http.clone(), admin.clone());
        async move {
            let mut request = http.request(method.clone(), format!("{url}{path}")).header("X-Auth-Token", admin);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(format!("{method} {path}: {status} {text}"));
            }
            Ok::<Value, String>(serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    };
    let mut projects = HashMap::new();
    let listed = call(reqwest::Method::GET, "/projects?name=admin".into(), None).await?;
    projects.insert("admin", listed["projects"][0]["id"].as_str().ok_or("no admin project")?.to_owned());
    for name in ["one", "two", "service"] {
        let made = call(
            reqwest::Method::POST,
            "/projects".into(),
            Some(json!({"project": {"name": name, "domain_id": "default"}})),
        )
        .await?;
        projects.insert(name, made["project"]["id"].as_str().ok_or("project id")?.to_owned());
    }
    let mut roles = HashMap::new();
    for role in call(reqwest::Method::GET, "/roles".into(), None).await?["roles"].as_array().ok_or("roles")? {
        roles.insert(
            role["name"].as_str().unwrap_or_default().to_owned(),
            role["id"].as_str().unwrap_or_default().to_owned(),
        );
    }
    if !roles.contains_key("service") {
        let made = call(reqwest::Method::POST, "/roles".into(), Some(json!({"role": {"name": "service"}}))).await?;
        roles.insert("service".into(), made["role"]["id"].as_str().ok_or("role id")?.to_owned());
    }
    let mut users = HashMap::new();
    let admin_user = call(reqwest::Method::GET, "/users?name=admin".into(), None).await?;
    users.insert(User::Admin, admin_user["users"][0]["id"].as_str().ok_or("admin user")?.to_owned());
    let on_domain = format!("/domains/default/users/{}/roles/{}", users[&User::Admin], roles["admin"]);
    call(reqwest::Method::PUT, on_domain, None).await?;
    let people =
        [(Some(User::Alice), "member"), (Some(User::Rita), "reader"), (Some(User::Bob), "member"), (None, "service")];
    for (user, role) in people {
        let (name, password, project) = match user {
            Some(user) => user.credentials(),
            None => (SERVICE_USER.0, SERVICE_USER.1, "service"),
        };
        let made = call(
            reqwest::Method::POST,
            "/users".into(),
            Some(json!({"user": {"name": name, "password": password, "domain_id": "default"}})),
        )
        .await?;
        let id = made["user"]["id"].as_str().ok_or("user id")?.to_owned();
        let path = format!("/projects/{}/users/{id}/roles/{}", projects[project], roles[role]);
        call(reqwest::Method::PUT, path, None).await?;
        if let Some(user) = user {
            users.insert(user, id);
        }
    }
    Ok((projects, users))
}

async fn password_token(
    http: &reqwest::Client,
    url: &str,
    user: &str,
    password: &str,
    project: &str,
) -> Result<String, String> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}},
    }});
    issue(http, url, &body).await
}

async fn issue(http: &reqwest::Client, url: &str, body: &Value) -> Result<String, String> {
    let response = http
        .post(format!("{url}/auth/tokens?nocatalog"))
        .json(body)
        .send()
        .await
        .map_err(|e| format!("POST /auth/tokens: {e}"))?;
    let status = response.status();
    let token = response.headers().get("x-subject-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    match token {
        Some(token) if status.is_success() => Ok(token),
        _ => Err(format!("POST /auth/tokens: {status} {}", response.text().await.unwrap_or_default())),
    }
}

impl Keystone {
    /// Puts `config` in keystone mode, validating tokens as the `glint` service user.
    pub fn configure(&self, config: &mut Config) {
        config.auth.mode = AuthMode::Keystone;
        let keystone = &mut config.auth.keystone;
        keystone.auth_url = self.url.clone();
        (keystone.username, keystone.password) = (SERVICE_USER.0.into(), SERVICE_USER.1.into());
        keystone.project_name = "service".into();
    }

    /// The `GLINT__...` variables that put a `glint` process in keystone mode.
    pub fn server_env(&self) -> Vec<(String, String)> {
        let mut config = Config::default();
        self.configure(&mut config);
        let k = &config.auth.keystone;
        [
            ("GLINT__AUTH__MODE", "keystone"),
            ("GLINT__AUTH__KEYSTONE__AUTH_URL", k.auth_url.as_str()),
            ("GLINT__AUTH__KEYSTONE__USERNAME", k.username.as_str()),
            ("GLINT__AUTH__KEYSTONE__PASSWORD", k.password.as_str()),
            ("GLINT__AUTH__KEYSTONE__PROJECT_NAME", k.project_name.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// A fresh project-scoped token of `user`.
    pub async fn token(&self, user: User) -> String {
        let (name, password, project) = user.credentials();
        password_token(&reqwest::Client::new(), &self.url, name, password, project).await.expect("token")
    }

    /// A token of Glint's service user (role `service`), as a service such as Nova sends in
    /// `X-Service-Token`.
    pub async fn service_user_token(&self) -> String {
        password_token(&reqwest::Client::new(), &self.url, SERVICE_USER.0, SERVICE_USER.1, "service")
            .await
            .expect("service token")
    }

    /// A token of `user` that Keystone expires `seconds` from now (issued through an
    /// application credential that ends then: Keystone caps the token's expiry at it), and
    /// the instant after which it has expired for sure.
    pub async fn short_lived_token(&self, user: User, seconds: i64) -> (String, tokio::time::Instant) {
        let http = reqwest::Client::new();
        let own = self.token(user).await;
        let expired = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds.unsigned_abs() + 1);
        let expires_at =
            (chrono::Utc::now() + chrono::Duration::seconds(seconds)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let name = format!("short-{}", uuid::Uuid::new_v4().simple());
        let response = http
            .post(format!("{}/users/{}/application_credentials", self.url, self.users[&user]))
            .header("X-Auth-Token", own)
            .json(&json!({"application_credential": {"name": name, "expires_at": expires_at}}))
            .send()
            .await
            .expect("application credential");
        assert_eq!(response.status(), 201, "application credential");
        let made: Value = response.json().await.expect("json");
        let credential = &made["application_credential"];
        let body = json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": credential["id"], "secret": credential["secret"]}}}});
        (issue(&http, &self.url, &body).await.expect("short-lived token"), expired)
    }

    /// A system-scoped token of the admin (bootstrap grants admin on the system), which
    /// Glance's project-scoped rules never admit.
    pub async fn system_token(&self) -> String {
        self.admin_token_for(json!({"system": {"all": true}})).await
    }

    /// A token of the admin scoped to the `Default` domain, which no Glance rule admits either.
    pub async fn domain_token(&self) -> String {
        self.admin_token_for(json!({"domain": {"id": "default"}})).await
    }

    async fn admin_token_for(&self, scope: Value) -> String {
        let (name, password, _) = User::Admin.credentials();
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": name, "domain": {"id": "default"}, "password": password}}},
            "scope": scope,
        }});
        issue(&reqwest::Client::new(), &self.url, &body).await.expect("admin token")
    }

    /// Revokes `token` (its own holder may).
    pub async fn revoke(&self, token: &str) {
        let response = reqwest::Client::new()
            .delete(format!("{}/auth/tokens", self.url))
            .header("X-Auth-Token", token)
            .header("X-Subject-Token", token)
            .send()
            .await
            .expect("revoke");
        assert_eq!(response.status(), 204, "revoke");
    }

    /// The catalog to oneself until the guard drops: tests that register endpoints take turns.
    pub fn catalog(&self) -> MutexGuard<'static, ()> {
        static CATALOG: Mutex<()> = Mutex::new(());
        // A test that failed while holding it left nothing half-done that the next one minds.
        CATALOG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `url` the public endpoint of the `image` service in `region`, in place of any
    /// registered there before; the service and the region are created on first use.
    pub async fn register_image_endpoint(&self, region: &str, url: &str) {
        let http = reqwest::Client::new();
        let admin = self.token(User::Admin).await;
        let call = async |method: reqwest::Method, path: String, body: Option<Value>| -> (u16, Value) {
            let mut request =
                http.request(method.clone(), format!("{}{path}", self.url)).header("X-Auth-Token", &admin);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        };
        let (_, services) = call(reqwest::Method::GET, "/services?type=image".into(), None).await;
        let service = match services["services"][0]["id"].as_str() {
            Some(id) => id.to_owned(),
            None => {
                let made = json!({"service": {"type": "image", "name": "glance"}});
                let (status, made) = call(reqwest::Method::POST, "/services".into(), Some(made)).await;
                assert_eq!(status, 201, "create the image service: {made}");
                made["service"]["id"].as_str().expect("service id").to_owned()
            }
        };
        let (status, _) = call(reqwest::Method::POST, "/regions".into(), Some(json!({"region": {"id": region}}))).await;
        assert!(matches!(status, 201 | 409), "create region {region}: {status}");
        let listed = format!("/endpoints?service_id={service}&region_id={region}&interface=public");
        let (_, endpoints) = call(reqwest::Method::GET, listed, None).await;
        for old in endpoints["endpoints"].as_array().into_iter().flatten() {
            let id = old["id"].as_str().expect("endpoint id");
            let (status, _) = call(reqwest::Method::DELETE, format!("/endpoints/{id}"), None).await;
            assert_eq!(status, 204, "delete endpoint {id}");
        }
        let endpoint =
            json!({"endpoint": {"service_id": service, "region_id": region, "interface": "public", "url": url}});
        let (status, made) = call(reqwest::Method::POST, "/endpoints".into(), Some(endpoint)).await;
        assert_eq!(status, 201, "create the image endpoint of {region}: {made}");
    }

    /// The id of project `name` (`admin`, `one`, `two`).
    pub fn project(&self, name: &str) -> &str {
        &self.projects[name]
    }

    /// The id of `user`'s project.
    pub fn project_of(&self, user: User) -> &str {
        self.project(user.credentials().2)
    }

    /// The `OS_*` variables that log the admin in without a project (a scope option such as
    /// `--os-system-scope all` chooses the scope).
    pub fn unscoped_admin_env(&self) -> Vec<(String, String)> {
        let mut env = self.client_env(User::Admin);
        env.retain(|(name, _)| !name.starts_with("OS_PROJECT_"));
        env
    }

    /// The `OS_*` variables that make `openstack` and `glance` log in as `user`.
    pub fn client_env(&self, user: User) -> Vec<(String, String)> {
        let (name, password, project) = user.credentials();
        [
            ("OS_AUTH_URL", self.url.as_str()),
            ("OS_IDENTITY_API_VERSION", "3"),
            ("OS_AUTH_TYPE", "password"),
            ("OS_USERNAME", name),
            ("OS_PASSWORD", password),
            ("OS_PROJECT_NAME", project),
            ("OS_USER_DOMAIN_ID", "default"),
            ("OS_PROJECT_DOMAIN_ID", "default"),
            ("OS_INTERFACE", "public"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}
