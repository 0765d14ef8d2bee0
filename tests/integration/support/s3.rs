//! A real S3-compatible server for the S3 store tests: moto's `moto_server` on a free loopback
//! port, with one empty bucket.
//!
//! moto comes from the test virtualenv (`$GLINT_TEST_VENV`, else `$HOME/.cache/glint/venv`;
//! .ci/run installs `moto[server]` there) or `PATH`. It accepts unsigned requests, so the tests
//! look at the bucket with plain HTTP, independently of the store under test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use glint_core::config::S3Config;

/// How long moto may take to import itself and listen.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A running `moto_server` with one bucket; the process is killed on drop.
pub struct S3Server {
    child: Child,
    addr: SocketAddr,
    /// The bucket made for the test.
    pub bucket: String,
    http: reqwest::Client,
}

impl S3Server {
    /// Starts moto and creates an empty bucket. `None` (after printing "skipped: moto_server
    /// unavailable") when moto is not installed; with `CI=true` that panics instead, so CI
    /// cannot pass by skipping.
    pub async fn start() -> Option<S3Server> {
        let Some(exe) = moto_server() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "moto_server unavailable (required when CI=true): install 'moto[server]' into the test venv, as .ci/run does"
                );
            }
            eprintln!("skipped: moto_server unavailable");
            return None;
        };
        // Another process may grab the port between our probe and moto's bind; try anew.
        for _ in 0..3 {
            let addr = free_loopback_port();
            let child = Command::new(&exe)
                .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
            let mut server = S3Server { child, addr, bucket: "glint-test".into(), http: reqwest::Client::new() };
            if server.wait_until_listening().await {
                let created = server.http.put(server.bucket_url("")).send().await.expect("create the bucket");
                assert!(created.status().is_success(), "creating the bucket: {}", created.status());
                return Some(server);
            }
        }
        panic!("moto_server did not come up on a free port three times");
    }

    async fn wait_until_listening(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("poll moto_server").is_some() {
                return false;
            }
            if TcpStream::connect(self.addr).is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not listen on {} within {STARTUP_DEADLINE:?}", self.addr);
    }

    /// The service URL to configure a store with.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn bucket_url(&self, query: &str) -> String {
        format!("{}/{}{query}", self.endpoint(), self.bucket)
    }

    /// A store configuration for the bucket, with keys under `prefix`.
    pub fn config(&self, prefix: Option<&str>) -> S3Config {
        S3Config {
            bucket: self.bucket.clone(),
            endpoint: Some(self.endpoint()),
            region: "us-east-1".into(),
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            prefix: prefix.map(str::to_owned),
            allow_http: true,
            description: Some("Object storage".into()),
        }
    }

    /// The keys in the bucket (ListObjectsV2), sorted.
    pub async fn keys(&self) -> Vec<String> {
        self.listed("?list-type=2", "Key").await
    }

    /// The keys of the multipart uploads started and neither completed nor aborted
    /// (ListMultipartUploads).
    pub async fn pending_uploads(&self) -> Vec<String> {
        self.listed("?uploads", "Key").await
    }

    /// The unfinished multipart uploads as (key, upload id), sorted.
    pub async fn pending_upload_ids(&self) -> Vec<(String, String)> {
        let response = self.http.get(self.bucket_url("?uploads")).send().await.expect("list uploads");
        assert_eq!(response.status(), 200, "GET /{}?uploads", self.bucket);
        let xml = response.text().await.expect("listing");
        assert!(xml.contains("<IsTruncated>false</IsTruncated>"), "{xml}");
        let mut pairs: Vec<(String, String)> =
            xml.split("<Upload>").skip(1).map(|upload| (element(upload, "Key"), element(upload, "UploadId"))).collect();
        pairs.sort();
        pairs
    }

    /// Starts a multipart upload of `key` and sends its first part, as a writer that then
    /// dies would; the upload id.
    pub async fn start_upload(&self, key: &str, part: Vec<u8>) -> String {
        let response = self.signed(self.http.post(self.bucket_url(&format!("/{key}?uploads")))).send().await;
        let xml = response.expect("create multipart upload").text().await.expect("body");
        let id = element(&xml, "UploadId");
        let url = self.bucket_url(&format!("/{key}?partNumber=1&uploadId={}", urlencode(&id)));
        let response = self.signed(self.http.put(url)).body(part).send().await.expect("upload part");
        assert_eq!(response.status(), 200, "upload part: {}", response.text().await.unwrap_or_default());
        id
    }

    /// Puts object `key` with `data`.
    pub async fn put(&self, key: &str, data: Vec<u8>) {
        let response =
            self.signed(self.http.put(self.bucket_url(&format!("/{key}")))).body(data).send().await.expect("put");
        assert_eq!(response.status(), 200, "PUT {key}");
    }

    /// `request` claiming to be signed: moto refuses some anonymous requests (reads of
    /// objects with a private ACL); it checks only that a request claims to be signed.
    fn signed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let claimed =
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
        request.header("Authorization", claimed)
    }

    /// The object `key` as a client of the bucket sees it.
    pub async fn object(&self, key: &str) -> Vec<u8> {
        let response =
            self.signed(self.http.get(self.bucket_url(&format!("/{key}")))).send().await.expect("get object");
        assert_eq!(response.status(), 200, "GET {key}");
        response.bytes().await.expect("object body").to_vec()
    }

    async fn listed(&self, query: &str, element: &str) -> Vec<String> {
        let response = self.http.get(self.bucket_url(query)).send().await.expect("list");
        assert_eq!(response.status(), 200, "GET /{}{query}", self.bucket);
        let xml = response.text().await.expect("listing");
        assert!(xml.contains("<IsTruncated>false</IsTruncated>"), "{xml}");
        let (open, close) = (format!("<{element}>"), format!("</{element}>"));
        let mut found: Vec<String> = xml
            .split(open.as_str())
            .skip(1)
            .filter_map(|rest| rest.split_once(close.as_str()).map(|(value, _)| value.to_owned()))
            .collect();
        found.sort();
        found
    }
}

/// The text of the first `<name>` element in `xml` (XML-escaped as it is).
fn element(xml: &str, name: &str) -> String {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let rest = xml.split_once(open.as_str()).map(|(_, rest)| rest).unwrap_or_else(|| panic!("no {name} in {xml}"));
    rest.split_once(close.as_str()).map(|(value, _)| value.to_owned()).unwrap_or_default()
}

/// `value` percent-encoded for a query string.
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server` from the test virtualenv, else from `PATH`.
fn moto_server() -> Option<PathBuf> {
    let venv = std::env::var_os("GLINT_TEST_VENV").filter(|d| !d.is_empty()).map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache/glint/venv"))
    });
    let in_venv = venv.map(|v| v.join("bin/moto_server")).filter(|p| p.is_file());
    in_venv.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join("moto_server")).find(|p| p.is_file())
    })
}

fn free_loopback_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}
