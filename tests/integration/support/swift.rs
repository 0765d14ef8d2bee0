//! A real Swift all-in-one shared by the tests of one process: `swift.sh` (proxy with
//! tempauth, account, container and object servers, memcached) on free loopback ports, started
//! by the first test that asks and stopped when the test process exits (the script ends when
//! its standard input closes).
//!
//! Each test works in containers of its own ([`Swift::container`]), and looks at them through
//! the Swift API with [`Account`], independently of the store under test.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use glint_core::config::{Config, SwiftConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::keystone::{Keystone, User};

/// The running all-in-one.
pub struct Swift {
    /// The tempauth login URL, `http://127.0.0.1:PORT/auth/v1.0`.
    pub auth_url: String,
    /// `account:user` and key of the test user (an account admin).
    pub user: String,
    pub key: String,
    /// Configuration, rings and data (removed by the script when it stops).
    dir: PathBuf,
    _child: Child,
    // Held open for the life of the process: its EOF stops the servers.
    _stdin: ChildStdin,
}

/// The process-wide Swift, started on first use. `None` (after "skipped: swift unreachable")
/// when it cannot start outside CI; under `CI=true` that panics.
pub fn swift() -> Option<&'static Swift> {
    static SWIFT: OnceLock<Result<Swift, String>> = OnceLock::new();
    started(SWIFT.get_or_init(start))
}

/// A second proxy of the all-in-one that takes tokens of the test Keystone, registered in its
/// catalog as the `object-store` endpoint (`http://127.0.0.1:PORT/v1/AUTH_$(project_id)s`).
pub struct KeystoneProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _child: Child,
    _stdin: ChildStdin,
}

/// The process-wide [`KeystoneProxy`], started on first use (like [`swift`]).
pub fn keystone_proxy(swift: &'static Swift, keystone: &'static Keystone) -> Option<&'static KeystoneProxy> {
    static PROXY: OnceLock<Result<KeystoneProxy, String>> = OnceLock::new();
    // Registering the endpoint talks HTTP: on a thread of its own, as callers run inside a
    // test's runtime.
    started(PROXY.get_or_init(|| {
        std::thread::spawn(move || start_keystone_proxy(swift, keystone))
            .join()
            .unwrap_or_else(|_| Err("setup panicked".into()))
    }))
}

fn start_keystone_proxy(swift: &Swift, keystone: &Keystone) -> Result<KeystoneProxy, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/support/swift.sh");
    let port = free_port();
    // The proxy validates tokens as Glint's own service user.
    let mut service = Config::default();
    keystone.configure(&mut service);
    let service = &service.auth.keystone;
    let mut child = Command::new("bash")
        .arg(script)
        .arg("keystone-proxy")
        .arg(&swift.dir)
        .arg(port.to_string())
        .args([&keystone.url, &service.username, &service.password, &service.project_name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
    if line.trim() != "ready" {
        drop(stdin);
        let _ = child.wait();
        let mut output = String::new();
        let mut stderr = BufReader::new(stderr);
        while stderr.read_line(&mut output).is_ok_and(|n| n > 0) {}
        return Err(format!("the Keystone proxy did not start: {output}"));
    }
    std::thread::spawn(move || std::io::copy(&mut BufReader::new(stderr), &mut std::io::sink()));
    let url = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(register(keystone, &url))?;
    Ok(KeystoneProxy { url, _child: child, _stdin: stdin })
}

/// Puts `url` in the Keystone catalog as the public object-store endpoint.
async fn register(keystone: &Keystone, url: &str) -> Result<(), String> {
    let (http, admin) = (reqwest::Client::new(), keystone.token(User::Admin).await);
    let post = |path: &str, body: Value| {
        let request = http.post(format!("{}{path}", keystone.url)).header("X-Auth-Token", &admin).json(&body);
        async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body: Value = response.json().await.map_err(|e| e.to_string())?;
            if status.is_success() { Ok(body) } else { Err(format!("{status}: {body}")) }
        }
    };
    let service = post("/services", json!({"service": {"type": "object-store", "name": "swift"}})).await?;
    let service_id = service["service"]["id"].as_str().ok_or("no service id")?;
    let endpoint = format!("{url}/v1/AUTH_$(project_id)s");
    let body = json!({"endpoint": {"service_id": service_id, "interface": "public", "url": endpoint}});
    post("/endpoints", body).await.map(drop)
}

/// Says why a server could not start: a panic under `CI=true`, else "skipped" and `None`.
fn started<T>(result: &Result<T, String>) -> Option<&T> {
    match result {
        Ok(server) => Some(server),
        Err(why) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("swift could not be started (required when CI=true): {why}");
            }
            eprintln!("skipped: swift unreachable: {why}");
            None
        }
    }
}

fn start() -> Result<Swift, String> {
    let mut last = String::new();
    // Another process may take one of the ports between our probe and the servers' bind.
    for _ in 0..3 {
        match start_once() {
            Ok(swift) => return Ok(swift),
            Err(why) if why.contains("in use") => last = why,
            Err(why) => return Err(why),
        }
    }
    Err(format!("three tries found no free ports: {last}"))
}

fn start_once() -> Result<Swift, String> {
    let started = Instant::now();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/support/swift.sh");
    // The script removes its directory when it stops.
    let dir =
        tempfile::Builder::new().prefix("glint-swift-").tempdir_in(xattr_dir()?).map_err(|e| e.to_string())?.keep();
    let ports: Vec<String> = (0..5).map(|_| free_port().to_string()).collect();
    let mut child = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .args(&ports)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            format!("cannot run {script}: {e}")
        })?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let ["ready", auth_url, user, key] = words[..] else {
        drop(stdin);
        let _ = child.wait();
        // The script removes its directory only once it got going.
        let _ = std::fs::remove_dir_all(&dir);
        let mut output = String::new();
        let mut stderr = BufReader::new(stderr);
        while stderr.read_line(&mut output).is_ok_and(|n| n > 0) {}
        return Err(format!("swift.sh did not start: {output}"));
    };
    // Keep draining stderr so that late messages never block the script.
    std::thread::spawn(move || std::io::copy(&mut BufReader::new(stderr), &mut std::io::sink()));
    // Configuration, rings, servers and a first login: the figure the closing notes report.
    eprintln!("swift all-in-one ready in {:?}", started.elapsed());
    Ok(Swift {
        auth_url: auth_url.to_owned(),
        user: user.to_owned(),
        key: key.to_owned(),
        dir,
        _child: child,
        _stdin: stdin,
    })
}

/// A temporary directory whose filesystem keeps user extended attributes, which the object
/// server stores its metadata in: the system's (a tmpfs before Linux 6.6 has none), else
/// /var/tmp.
fn xattr_dir() -> Result<PathBuf, String> {
    let candidates = [std::env::temp_dir(), PathBuf::from("/var/tmp")];
    for base in &candidates {
        let Ok(probe) = tempfile::NamedTempFile::new_in(base) else { continue };
        let kept = Command::new("/usr/bin/python3")
            .args(["-c", "import os, sys; os.setxattr(sys.argv[1], 'user.glint', b'1')"])
            .arg(probe.path())
            .stderr(Stdio::null())
            .status();
        match kept {
            Ok(status) if status.success() => return Ok(base.clone()),
            Ok(_) => {}
            // No Debian Python, so no Swift either: swift.sh says what is missing.
            Err(_) => return Ok(base.clone()),
        }
    }
    Err(format!("none of {candidates:?} keeps user extended attributes, which the object server needs"))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl Swift {
    /// The last lines of server `name`'s log (`proxy`, `object`, `proxy-keystone`, ...), to
    /// show with a failure.
    pub fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join("log").join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A container name no other test uses.
    pub fn container() -> String {
        format!("glint-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
    }

    /// A tempauth store configuration for `container`, segmenting images over 1 MiB into
    /// 1 MiB segments and creating its containers.
    pub fn config(&self, container: &str) -> SwiftConfig {
        SwiftConfig {
            auth_url: self.auth_url.clone(),
            auth_version: 1,
            user: self.user.clone(),
            key: self.key.clone(),
            project_name: None,
            user_domain_name: "Default".into(),
            project_domain_name: "Default".into(),
            region: None,
            interface: "public".into(),
            endpoint: None,
            container: container.to_owned(),
            large_object_size: 1,
            large_object_chunk_size: 1,
            segment_timeout: 600,
            create_container_on_put: true,
            description: Some("Swift".into()),
        }
    }

    /// Logs in as the test user.
    pub async fn account(&self) -> Account {
        let http = reqwest::Client::new();
        let login = http
            .get(&self.auth_url)
            .header("X-Auth-User", &self.user)
            .header("X-Auth-Key", &self.key)
            .send()
            .await
            .expect("tempauth login");
        assert_eq!(login.status(), 200, "tempauth login");
        let header = |name: &str| login.headers()[name].to_str().expect(name).to_owned();
        Account { token: header("X-Auth-Token"), storage_url: header("X-Storage-Url"), http }
    }
}

/// The test user's Swift account, seen through the plain Swift API.
pub struct Account {
    token: String,
    /// `http://127.0.0.1:PORT/v1/AUTH_glint`.
    pub storage_url: String,
    http: reqwest::Client,
}

impl Account {
    /// The account at `storage_url`, reached with `token`.
    pub fn at(storage_url: String, token: String) -> Account {
        Account { token, storage_url, http: reqwest::Client::new() }
    }

    /// A request to `path` under the account, with the token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.storage_url)).header("X-Auth-Token", &self.token)
    }

    /// Whether `container` exists.
    pub async fn has_container(&self, container: &str) -> bool {
        let response = self.request(Method::HEAD, &format!("/{container}")).send().await.expect("HEAD container");
        match response.status() {
            StatusCode::NOT_FOUND => false,
            status => {
                assert!(status.is_success(), "HEAD /{container}: {status}");
                true
            }
        }
    }

    /// Creates `container`.
    pub async fn create_container(&self, container: &str) {
        let response = self.request(Method::PUT, &format!("/{container}")).send().await.expect("PUT container");
        assert!(response.status().is_success(), "PUT /{container}: {}", response.status());
    }

    /// The objects of `container` as listed (name, bytes, last_modified), sorted; none when it
    /// does not exist.
    pub async fn listing(&self, container: &str) -> Vec<Value> {
        let response =
            self.request(Method::GET, &format!("/{container}?format=json")).send().await.expect("list container");
        if response.status() == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        assert_eq!(response.status(), 200, "GET /{container}");
        response.json().await.expect("listing")
    }

    /// The object names in `container`, sorted.
    pub async fn names(&self, container: &str) -> Vec<String> {
        let listing = self.listing(container).await;
        listing.iter().map(|o| o["name"].as_str().expect("name").to_owned()).collect()
    }

    /// The object `name` of `container`, as a client of the account reads it.
    pub async fn object(&self, container: &str, name: &str) -> Vec<u8> {
        let response = self.request(Method::GET, &format!("/{container}/{name}")).send().await.expect("GET object");
        assert_eq!(response.status(), 200, "GET /{container}/{name}");
        response.bytes().await.expect("object body").to_vec()
    }

    /// The headers of object `name`, or `None` if it does not exist.
    pub async fn head(&self, container: &str, name: &str) -> Option<reqwest::header::HeaderMap> {
        let response = self.request(Method::HEAD, &format!("/{container}/{name}")).send().await.expect("HEAD object");
        if response.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert!(response.status().is_success(), "HEAD /{container}/{name}: {}", response.status());
        Some(response.headers().clone())
    }

    /// The segments of the static large object `name` (`?multipart-manifest=get`): their paths
    /// (`/<container>/<segment>`) and sizes.
    pub async fn manifest(&self, container: &str, name: &str) -> Vec<(String, u64)> {
        let response = self
            .request(Method::GET, &format!("/{container}/{name}?multipart-manifest=get"))
            .send()
            .await
            .expect("GET manifest");
        assert_eq!(response.status(), 200, "GET manifest of /{container}/{name}");
        assert_eq!(response.headers()["X-Static-Large-Object"], "True", "/{container}/{name} is a static large object");
        let segments: Vec<Value> = response.json().await.expect("manifest");
        segments
            .iter()
            .map(|s| (s["name"].as_str().expect("name").to_owned(), s["bytes"].as_u64().expect("bytes")))
            .collect()
    }

    /// Writes object `name` of `container`, with extra `headers`.
    pub async fn put(&self, container: &str, name: &str, data: Vec<u8>, headers: &[(&str, String)]) {
        let length = data.len();
        let mut request =
            self.request(Method::PUT, &format!("/{container}/{name}")).header("Content-Length", length).body(data);
        for (header, value) in headers {
            request = request.header(*header, value);
        }
        let response = request.send().await.expect("PUT object");
        assert_eq!(response.status(), 201, "PUT /{container}/{name}");
    }
}
