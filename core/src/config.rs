//! One typed configuration: defaults, then a TOML file, then `GLINT__SECTION__KEY` variables.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The whole configuration of a Glint process. Every field documents itself in etc/glint.toml.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP listener and how the service names itself.
    pub server: ServerConfig,
    /// Where metadata lives.
    pub database: DatabaseConfig,
    /// How callers are identified.
    pub auth: AuthConfig,
    /// Image API limits, quotas and allowed formats.
    pub images: ImagesConfig,
    /// Where image data is kept.
    pub storage: StorageConfig,
    /// The image cache on this API node's disk.
    pub cache: CacheConfig,
    /// Interoperable image import: methods, staging, web-download filtering, conversion.
    pub import: ImportConfig,
    /// Task transport, workers and task expiry.
    pub tasks: TasksConfig,
    /// Per-project limits (Glance's unified-limits names).
    pub quotas: QuotasConfig,
    /// What the process logs and how.
    pub log: LogConfig,
    /// Prometheus metrics: whether and where `GET /metrics` is served.
    pub metrics: MetricsConfig,
    /// The web console at `/console`.
    pub console: ConsoleConfig,
}

/// `[console]`: the web console served at `/console` next to the API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console (its page, its sign-in and its same-origin view of `/v2`).
    pub enabled: bool,
    /// Seconds a signed-in console session lives without a request; never past its token.
    pub session_idle_timeout: u64,
    /// Most console sessions kept at once; beyond it the least recently used is forgotten.
    pub max_sessions: usize,
    /// No-auth mode: the project the console acts as (`X-Project-Id`); unset, it acts as
    /// Glance's unauthenticated admin, as a request without identity headers does.
    pub noauth_project_id: Option<String>,
    /// No-auth mode: the user the console acts as (`X-User-Id`), with `noauth_project_id`.
    pub noauth_user_id: Option<String>,
    /// No-auth mode: the roles the console acts with (`X-Roles`), with `noauth_project_id`.
    pub noauth_roles: Vec<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_idle_timeout: 3600,
            max_sessions: 10_000,
            noauth_project_id: None,
            noauth_user_id: None,
            noauth_roles: vec!["member".into(), "reader".into()],
        }
    }
}

/// `[metrics]`: the Prometheus scrape endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Count requests and serve `GET /metrics` (on the API port when it is loopback, and on
    /// `bind` when set).
    pub enabled: bool,
    /// A listener of its own for `GET /metrics`; the only one of `glint worker`, which has no
    /// API port. Unset: none.
    pub bind: Option<SocketAddr>,
    /// Serve metrics on a non-loopback address: on the API port when it is one, and allow
    /// `bind` to be one. Metrics name routes, stores and volumes, and the endpoint has no auth.
    pub allow_non_loopback: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, bind: None, allow_non_loopback: false }
    }
}

impl MetricsConfig {
    /// Whether `GET /metrics` is served next to the API listening on `api_bind`.
    pub fn on_api_port(&self, api_bind: SocketAddr) -> bool {
        self.enabled && (api_bind.ip().is_loopback() || self.allow_non_loopback)
    }
}

/// `[cache]`: image data kept on this API node's local disk and served from there (Glance's
/// image cache with its `centralized_db` driver: the bookkeeping is in the shared database).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Keep downloaded images on local disk, serve them from there, and offer the cache API
    /// (`/v2/cache`) and versions 2.14-2.18.
    pub enabled: bool,
    /// The directory of the cached image files (created if missing).
    pub dir: PathBuf,
    /// Bytes the cache may hold; least recently used images go first when the cache job or
    /// `POST /v2/cache/prune` finds it larger. An image larger than this is never cached.
    pub max_size: u64,
    /// Seconds after which a partial cache file is taken for abandoned where the filesystem
    /// cannot tell a live writer (no `flock`); elsewhere a dead writer's is removed at once.
    pub stall_time: u64,
    /// This node's name in the shared bookkeeping, as `GET /v2/cache/nodes/{image_id}` lists
    /// it (Glance's `worker_self_reference_url`). Unset: `http://` and `[server] bind`, the
    /// host name standing in for an unspecified address.
    pub node_reference_url: Option<String>,
    /// Seconds between two passes of the node's cache job: prefetch the queued images, drop
    /// entries of images that are no longer active, prune down to `max_size`.
    pub interval: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: "data/cache".into(),
            max_size: 10 * 1024 * 1024 * 1024,
            stall_time: 86400,
            node_reference_url: None,
            interval: 300,
        }
    }
}

impl CacheConfig {
    /// This node's URL: `node_reference_url`, else derived from the API's `bind` address.
    pub fn node_url(&self, server: &ServerConfig) -> String {
        if let Some(url) = &self.node_reference_url {
            return url.clone();
        }
        let bind = server.bind;
        if !bind.ip().is_unspecified() {
            return format!("http://{bind}");
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("http://{host}:{}", bind.port())
    }
}

/// `[log]`: the process log (standard output).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` (one object a line) for log collectors.
    pub format: LogFormat,
    /// Level filter in `RUST_LOG`'s syntax (`info`, `glint_api=debug,info`); `RUST_LOG`, when
    /// set, wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text an event, coloured only when written to a terminal.
    #[default]
    Text,
    /// One JSON object an event, with the request or task span's fields.
    Json,
}

/// `[server]`: the HTTP listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub bind: SocketAddr,
    /// Base URL clients reach the service at (used in the version document and Location
    /// headers); when unset, taken from the request's Host, or from X-Forwarded-Proto/-Host
    /// when a trusted proxy sent them.
    pub public_endpoint: Option<String>,
    /// When this file exists, /healthcheck answers 503 "DISABLED BY FILE" (for draining).
    pub healthcheck_disable_file: Option<PathBuf>,
    /// Seconds a client has to send a request's line and headers, from the moment the
    /// connection is ready for it; then the connection is closed.
    pub header_read_timeout: u64,
    /// Largest request line plus headers, in bytes (at least 8192); larger ones get 431.
    pub max_header_size: usize,
    /// Seconds an idle keep-alive connection (no bytes either way) is kept.
    pub keepalive_timeout: u64,
    /// Most connections open at once; further clients wait to be accepted. Keep it below the
    /// process's open-file limit, less what the database pool and the stores need.
    pub max_connections: usize,
    /// Seconds an upload or stage body may send nothing before the request fails with 408 and
    /// the image goes back to `queued`. A body that keeps sending, however slowly, is not cut.
    pub body_idle_timeout: u64,
    /// Seconds a stopping process (SIGTERM or SIGINT) gives the work it has started: the API
    /// its requests in flight (it accepts no connection meanwhile and /healthcheck answers
    /// 503), a worker its running tasks (it takes no new one). Then requests still running are
    /// cut, an upload's image going back to `queued`, and tasks still running are handed back
    /// so that another worker takes them at once. 0 cuts and hands back at once.
    pub shutdown_timeout: u64,
    /// Addresses or networks (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`) of the reverse proxies
    /// whose X-Forwarded-Proto/-Host are believed; from any other peer they are ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 9292)),
            public_endpoint: None,
            healthcheck_disable_file: None,
            header_read_timeout: 20,
            max_header_size: 16 * 1024,
            keepalive_timeout: 15,
            max_connections: 4096,
            body_idle_timeout: 60,
            shutdown_timeout: 30,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// `trusted_proxies`, parsed; an entry that is not an address or network is an error.
    pub fn trusted_proxy_networks(&self) -> Result<Vec<Network>> {
        self.trusted_proxies.iter().map(|entry| Network::parse(entry)).collect()
    }
}

/// An address and a prefix length: one entry of `[server] trusted_proxies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a lone address (all of its bits).
    pub fn parse(text: &str) -> Result<Network> {
        let invalid = || Error::Config(format!("server.trusted_proxies: '{text}' is not an address or a network"));
        let (address, prefix) = text.trim().split_once('/').map_or((text.trim(), None), |(a, p)| (a, Some(p)));
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let address = address.to_canonical();
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(invalid)?,
        };
        Ok(Network { address, prefix })
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counting as its IPv4 one) is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let mask = |bits: u32| u128::MAX.checked_shl(bits - u32::from(self.prefix)).unwrap_or(0);
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask(32) as u32;
                net.to_bits() & mask == ip.to_bits() & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => net.to_bits() & mask(128) == ip.to_bits() & mask(128),
            _ => false,
        }
    }
}

/// `[database]`: the metadata database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc`, `postgres://user@host/db` or `mysql://user@host/db`.
    pub url: String,
    /// Upper bound of the connection pool.
    pub max_connections: u32,
    /// Apply pending migrations when `serve`, `api` or `worker` starts.
    pub migrate_on_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: "sqlite://data/glint.db?mode=rwc".into(), max_connections: 16, migrate_on_start: true }
    }
}

/// `[auth]`: how requests are authenticated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `noauth`: trust X-Project-Id/X-User-Id/X-Roles headers; without them every request is
    /// an anonymous admin, as in Glance's unauthenticated mode.
    pub mode: AuthMode,
    /// Allow `noauth` on a non-loopback address. Anyone who can reach the port is admin then.
    pub allow_noauth_on_non_loopback: bool,
    /// `[auth.keystone]`: the identity service that validates tokens in `keystone` mode.
    pub keystone: KeystoneConfig,
    /// Rules overriding Glance's default policy, in oslo.policy's YAML (or JSON) format; a
    /// rule that does not parse fails start-up. `glint policy show` prints the result.
    pub policy_file: Option<PathBuf>,
}

/// `[auth.keystone]`: Keystone as keystonemiddleware's `[keystone_authtoken]` configures it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeystoneConfig {
    /// Identity v3 endpoint the service user authenticates and validates tokens at
    /// (`auth_url`), e.g. `http://keystone:5000/v3` or `http://keystone:5000`.
    pub auth_url: String,
    /// Identity endpoint named in `WWW-Authenticate` of 401s (clients authenticate there);
    /// defaults to `auth_url`.
    pub www_authenticate_uri: Option<String>,
    /// The service user Glint validates tokens as (needs the `service` or `admin` role).
    pub username: String,
    /// Its password.
    pub password: String,
    /// The project its token is scoped to.
    pub project_name: String,
    /// Domain of the service user.
    pub user_domain_name: String,
    /// Domain of the service project.
    pub project_domain_name: String,
    /// Seconds a validated token is trusted without asking Keystone again (also how long a
    /// revoked token keeps working at most); never past the token's own expiry.
    pub cache_ttl: u64,
    /// Most tokens kept in the cache; the oldest go first.
    pub cache_size: usize,
    /// Seconds to wait for Keystone before answering 503.
    pub timeout: u64,
}

impl Default for KeystoneConfig {
    fn default() -> Self {
        Self {
            auth_url: String::new(),
            www_authenticate_uri: None,
            username: "glint".into(),
            password: String::new(),
            project_name: "service".into(),
            user_domain_name: "Default".into(),
            project_domain_name: "Default".into(),
            cache_ttl: 300,
            cache_size: 10_000,
            timeout: 10,
        }
    }
}

impl std::fmt::Debug for KeystoneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoneConfig")
            .field("auth_url", &self.auth_url)
            .field("www_authenticate_uri", &self.www_authenticate_uri)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("project_name", &self.project_name)
            .field("user_domain_name", &self.user_domain_name)
            .field("project_domain_name", &self.project_domain_name)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_size", &self.cache_size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The authentication strategies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Trusted identity headers, for the embedded default and behind a trusted proxy.
    #[default]
    Noauth,
    /// `X-Auth-Token` validated against Keystone (`[auth.keystone]`), as keystonemiddleware does.
    Keystone,
}

/// `[images]`: limits and formats of the images API (Glance's option names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Page size when a list request gives no `limit`.
    pub limit_param_default: u64,
    /// Largest page; bigger `limit`s are clamped to it.
    pub api_limit_max: u64,
    /// Most extra properties per image (keys starting `os_glance` excluded); negative = no limit.
    pub image_property_quota: i64,
    /// Most bytes of extra properties per image, names and values together (keys starting
    /// `os_glance` excluded); negative = no limit. Every image of a list page is held in memory.
    pub image_property_size_quota: i64,
    /// Most tags per image; negative = no limit.
    pub image_tag_quota: i64,
    /// Most members (projects shared with) per image; negative = no limit.
    pub image_member_quota: i64,
    /// Accepted `disk_format` values.
    pub disk_formats: Vec<String>,
    /// Accepted `container_format` values.
    pub container_formats: Vec<String>,
    /// Largest image in bytes (uploads beyond it are refused with 413).
    pub image_size_cap: u64,
    /// Refuse data of `bare` images that is not the declared `disk_format` (Glance's
    /// `[image_format] require_image_format_match`). When false such data is stored without a
    /// `virtual_size`; images failing a safety check are refused either way.
    pub require_image_format_match: bool,
    /// Show each image's live locations (`locations`: url and metadata) in image responses
    /// (Glance's `show_multiple_locations`). They name the store's paths and buckets, so
    /// Glance and Glint keep them hidden by default.
    pub show_multiple_locations: bool,
    /// Show the URL of an image's first live location as `direct_url` (Glance's
    /// `show_image_direct_url`); hidden by default for the same reason.
    pub show_image_direct_url: bool,
    /// Most locations per image; negative = no limit (Glance's `image_location_quota`).
    pub image_location_quota: i64,
    /// Compute the checksum and hash of the data behind a location added with
    /// `POST /v2/images/{id}/locations`, in a task run by the workers, and check them against
    /// the request's `validation_data` (Glance's `do_secure_hash`). When false the
    /// `validation_data` given is recorded as is.
    pub do_secure_hash: bool,
    /// Attempts at reading a location's data to hash it before the task gives up (Glance's
    /// `http_retries`).
    pub http_retries: u32,
    /// Glance's property protection file: which roles (or policy rules) may create, read,
    /// update and delete which extra properties. None: no protections.
    pub property_protection_file: Option<PathBuf>,
    /// Whether that file names `roles` or policy rules (`policies`).
    pub property_protection_rule_format: crate::policy::RuleFormat,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Self {
            limit_param_default: 25,
            api_limit_max: 1000,
            image_property_quota: 128,
            image_property_size_quota: 128 * 1024,
            image_tag_quota: 128,
            image_member_quota: 128,
            disk_formats: strings(&["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"]),
            container_formats: strings(&["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]),
            image_size_cap: 1 << 40,
            require_image_format_match: true,
            show_multiple_locations: false,
            show_image_direct_url: false,
            image_location_quota: 10,
            do_secure_hash: true,
            http_retries: 3,
            property_protection_file: None,
            property_protection_rule_format: crate::policy::RuleFormat::Roles,
        }
    }
}

/// `[storage]`: the image data stores (Glance's `enabled_backends`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Id of the store uploads go to when the request names none.
    pub default: String,
    /// Stores by id. Empty means one filesystem store `local` at `data/images`.
    pub backends: BTreeMap<String, BackendConfig>,
    /// Seconds between sweeps of what writers that died left in the stores and the staging
    /// area (partial files, unfinished multipart uploads); every api, worker and serve
    /// process sweeps at start-up, then this often.
    pub sweep_interval: u64,
    /// Seconds one sweep of one store may take; what is left waits for the next sweep.
    pub sweep_max_seconds: u64,
    /// Most leftovers one sweep of one store removes; the rest waits for the next sweep.
    pub sweep_max_removals: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            default: "local".into(),
            backends: BTreeMap::new(),
            sweep_interval: 60,
            sweep_max_seconds: 10,
            sweep_max_removals: 1000,
        }
    }
}

/// One store backend, chosen by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// A directory (local, or shared storage mounted on every node).
    Filesystem {
        /// Directory holding one file per image, named by image id.
        path: PathBuf,
        /// Shown in /v2/info/stores.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// A bucket of Amazon S3 or an S3-compatible service (Ceph RGW, MinIO, SeaweedFS).
    S3(S3Config),
    /// A pool of a Ceph cluster: one RBD image per image, with the protected snapshot `snap`
    /// that Nova and Cinder clone from (Glance's rbd driver layout).
    Rbd(RbdConfig),
    /// A container of OpenStack Swift; large images as static large objects.
    Swift(SwiftConfig),
    /// Read-only: image data that stays on a web server, added as an http(s) location and
    /// streamed from there on download (Glance's `http` store). Never written, and removing
    /// a location only forgets it.
    Http {
        /// Shown in /v2/info/stores.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Which location URLs are accepted and followed: the filter of `[import.filtering]`,
        /// with its defaults (public addresses, ports 80 and 443, redirects checked again).
        #[serde(default)]
        filtering: FilteringConfig,
    },
}

/// `type = "s3"`: one object per image, `<prefix>/<image id>`, in one bucket.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket; it must exist, Glint does not create it.
    pub bucket: String,
    /// URL of an S3-compatible service (`https://rgw.example.org`); unset means Amazon S3
    /// in `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region the requests are signed for.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id of the credentials.
    pub access_key_id: String,
    /// Secret access key of the credentials (never logged, never in location URLs).
    pub secret_access_key: String,
    /// Key prefix the image objects are put under (`glance` gives `glance/<image id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Allow an `http://` endpoint (unencrypted: only for a service on the same host or network).
    #[serde(default)]
    pub allow_http: bool,
    /// Shown in /v2/info/stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `type = "rbd"`: one RBD image per image, named by its id, in one pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RbdConfig {
    /// The pool holding the images; it must exist (`ceph osd pool create`, `rbd pool init`).
    #[serde(default = "default_rbd_pool")]
    pub pool: String,
    /// The cephx user, without `client.` (Glance's `rbd_store_user`).
    #[serde(default = "default_rbd_user")]
    pub user: String,
    /// The ceph.conf naming the monitors; unset means Ceph's default search path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf_file: Option<PathBuf>,
    /// The keyring holding the user's key, if ceph.conf does not name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<PathBuf>,
    /// Size in MiB of the RADOS objects an image is striped over, a power of two (Glance's
    /// `rbd_store_chunk_size`); also the size of each write.
    #[serde(default = "default_rbd_chunk_size")]
    pub chunk_size: u32,
    /// Leave all-zero chunks unwritten, so that sparse images stay sparse in the pool.
    #[serde(default)]
    pub thin_provisioning: bool,
    /// Seconds that connecting and each cluster operation may take before failing.
    #[serde(default = "default_rbd_timeout")]
    pub connect_timeout: u64,
    /// Shown in /v2/info/stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_rbd_pool() -> String {
    "images".into()
}

fn default_rbd_user() -> String {
    "glance".into()
}

fn default_rbd_chunk_size() -> u32 {
    8
}

fn default_rbd_timeout() -> u64 {
    10
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Written by hand so that the secret key stays out of logs and error messages.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .field("description", &self.description)
            .finish()
    }
}

/// `type = "swift"`: one object per image, `<container>/<image id>`, in one Swift account;
/// images over `large_object_size` as static large objects whose segments live in
/// `<container>_segments`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwiftConfig {
    /// Where to log in: a Keystone v3 endpoint (`https://keystone.example.org:5000/v3`) or,
    /// with `auth_version = 1`, a tempauth/swauth URL (`http://swift.example.org:8080/auth/v1.0`).
    pub auth_url: String,
    /// `3` for Keystone v3, `1` for the v1.0 protocol of tempauth and swauth.
    #[serde(default = "default_swift_auth_version")]
    pub auth_version: u8,
    /// The user: a Keystone user name, or tempauth's `account:user`.
    pub user: String,
    /// The user's password (Keystone) or key (tempauth); never logged, never in location URLs.
    pub key: String,
    /// Keystone: the project the token is scoped to, whose Swift account holds the images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
    /// Keystone: the domain of `user`.
    #[serde(default = "default_domain")]
    pub user_domain_name: String,
    /// Keystone: the domain of `project_name`.
    #[serde(default = "default_domain")]
    pub project_domain_name: String,
    /// Keystone: the region of the object-store endpoint to use, when the catalog has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Keystone: which of the catalog's object-store endpoints to use (`public`, `internal`, `admin`).
    #[serde(default = "default_interface")]
    pub interface: String,
    /// The storage URL to use instead of the one the login returns
    /// (`https://swift.example.org:8080/v1/AUTH_<project id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The container of the image objects.
    #[serde(default = "default_container")]
    pub container: String,
    /// Images larger than this many MiB are stored as static large objects (Glance's
    /// `swift_store_large_object_size`); at most Swift's largest object, 5 GiB by default.
    #[serde(default = "default_large_object_size")]
    pub large_object_size: u64,
    /// MiB per segment of a static large object (Glance's `swift_store_large_object_chunk_size`).
    #[serde(default = "default_large_object_chunk_size")]
    pub large_object_chunk_size: u64,
    /// Seconds one segment's PUT may take in all, from its first byte to Swift's answer
    /// (waiting for the uploader's data included): a stalled proxy fails the upload, whose
    /// segments are then removed.
    #[serde(default = "default_segment_timeout")]
    pub segment_timeout: u64,
    /// Create the containers on the first upload if they do not exist; otherwise an upload to a
    /// missing container fails.
    #[serde(default)]
    pub create_container_on_put: bool,
    /// Shown in /v2/info/stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_swift_auth_version() -> u8 {
    3
}

fn default_domain() -> String {
    "Default".into()
}

fn default_interface() -> String {
    "public".into()
}

fn default_container() -> String {
    "glance".into()
}

fn default_large_object_size() -> u64 {
    5 * 1024
}

fn default_large_object_chunk_size() -> u64 {
    200
}

fn default_segment_timeout() -> u64 {
    600
}

/// Written by hand so that the key stays out of logs and error messages.
impl std::fmt::Debug for SwiftConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwiftConfig")
            .field("auth_url", &self.auth_url)
            .field("auth_version", &self.auth_version)
            .field("user", &self.user)
            .field("key", &"<redacted>")
            .field("project_name", &self.project_name)
            .field("user_domain_name", &self.user_domain_name)
            .field("project_domain_name", &self.project_domain_name)
            .field("region", &self.region)
            .field("interface", &self.interface)
            .field("endpoint", &self.endpoint)
            .field("container", &self.container)
            .field("large_object_size", &self.large_object_size)
            .field("large_object_chunk_size", &self.large_object_chunk_size)
            .field("segment_timeout", &self.segment_timeout)
            .field("create_container_on_put", &self.create_container_on_put)
            .field("description", &self.description)
            .finish()
    }
}

/// `[import]`: interoperable image import (Glance's `enabled_import_methods`,
/// `node_staging_uri`, `[image_conversion]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// Import methods offered in /v2/info/import and accepted by POST /v2/images/{id}/import.
    pub enabled_import_methods: Vec<String>,
    /// Directory of staged data (`PUT /v2/images/{id}/stage`, downloads awaiting conversion);
    /// shared by every API and worker node.
    pub staging_dir: PathBuf,
    /// When set (`raw` or `qcow2`), imported images are converted to this disk format.
    pub conversion_output_format: Option<String>,
    /// Decompress web-download and glance-direct data that is gzip, xz, zstd, bzip2 or a
    /// single-file zip (told by its magic bytes) before inspection, conversion and storage,
    /// as Glance's `image_decompression` plugin does; off by default, as that plugin is.
    pub decompress: bool,
    /// Prefixes of the remote image's properties a glance-download copies to the new image
    /// (Glance's `[glance_download_properties] extra_properties`); `os_glance_*` and base
    /// fields are never copied.
    pub glance_download_properties: Vec<String>,
    /// Which URLs web-download, glance-download and `POST /v2/tasks` may fetch.
    pub filtering: FilteringConfig,
}

impl Default for ImportConfig {
    fn default() -> Self {
        Self {
            enabled_import_methods: ["glance-direct", "web-download", "copy-image"].map(String::from).to_vec(),
            staging_dir: "data/staging".into(),
            conversion_output_format: None,
            decompress: false,
            glance_download_properties: ["hw_", "trait:", "os_distro", "os_secure_boot", "os_type"]
                .map(String::from)
                .to_vec(),
            filtering: FilteringConfig::default(),
        }
    }
}

/// `[import.filtering]`: Glance's `[import_filtering_opts]`, plus refusal of private
/// addresses, timeouts and a redirect limit. When both an allow and a deny list of a kind are
/// set, only the allow list counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilteringConfig {
    /// URL schemes that may be fetched.
    pub allowed_schemes: Vec<String>,
    /// URL schemes that may not be fetched.
    pub disallowed_schemes: Vec<String>,
    /// If not empty, the only hosts (names or addresses) that may be fetched.
    pub allowed_hosts: Vec<String>,
    /// Hosts (names or addresses) that may not be fetched.
    pub disallowed_hosts: Vec<String>,
    /// Ports a URL may name explicitly (a URL without a port is always fine).
    pub allowed_ports: Vec<u16>,
    /// Ports a URL may not name.
    pub disallowed_ports: Vec<u16>,
    /// Allow connecting to loopback, private, link-local and other non-public addresses.
    /// Checked on the address actually connected to, after DNS resolution.
    pub allow_private_addresses: bool,
    /// Seconds to wait for a TCP/TLS connection.
    pub connect_timeout: u64,
    /// Seconds without a byte from the server before the download fails.
    pub read_timeout: u64,
    /// Bytes per second a download must average over every `min_transfer_rate_window`, else
    /// it fails (and is retried): a server trickling bytes cannot hold a worker for long.
    pub min_transfer_rate: u64,
    /// Seconds over which `min_transfer_rate` is measured.
    pub min_transfer_rate_window: u64,
    /// Seconds one download may take in all, from the request to the last byte.
    pub total_timeout: u64,
    /// Most redirects followed (each one filtered like the original URL).
    pub max_redirects: usize,
}

impl Default for FilteringConfig {
    fn default() -> Self {
        Self {
            allowed_schemes: vec!["http".into(), "https".into()],
            disallowed_schemes: Vec::new(),
            allowed_hosts: Vec::new(),
            disallowed_hosts: Vec::new(),
            allowed_ports: vec![80, 443],
            disallowed_ports: Vec::new(),
            allow_private_addresses: false,
            connect_timeout: 10,
            read_timeout: 60,
            min_transfer_rate: 10 * 1024,
            min_transfer_rate_window: 120,
            total_timeout: 48 * 3600,
            max_redirects: 5,
        }
    }
}

/// `[tasks]`: how task wake-ups travel and how workers run tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// `memory`: in-process (only `glint serve`, workers inside the API process);
    /// `rabbitmq`: through the broker at `broker_url` (`glint api` + `glint worker`).
    pub transport: Transport,
    /// AMQP URL of RabbitMQ.
    pub broker_url: String,
    /// Durable queue the wake-ups go to.
    pub queue_name: String,
    /// Most tasks one worker process runs at once (the broker's prefetch).
    pub worker_concurrency: u16,
    /// Most tasks of one project running at once across all workers (fair share: a
    /// project's further tasks wait behind its own, not everyone's); 0 = no limit.
    pub max_running_per_project: u16,
    /// Seconds a worker's claim on a task lasts unless renewed (renewed every third of it);
    /// a task whose worker died is taken over this long after.
    pub lease: u64,
    /// A task whose attempts (transient failures, dead workers) reach this fails for good.
    pub max_attempts: i32,
    /// Seconds between passes of the outbox relay (republish, release expired leases).
    pub relay_interval: u64,
    /// Seconds after which a pending task's wake-up is published again.
    pub republish_after: u64,
    /// Hours a finished task is kept (Glance's `task_time_to_live`).
    pub time_to_live: u64,
}

impl TasksConfig {
    /// How long a finished task is kept, as a duration.
    pub fn task_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.time_to_live.saturating_mul(3600))
    }
}

/// Task transports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// In-process channel; workers run inside `glint serve`.
    #[default]
    Memory,
    /// RabbitMQ.
    Rabbitmq,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            transport: Transport::Memory,
            broker_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            queue_name: "glint.tasks".into(),
            worker_concurrency: 4,
            max_running_per_project: 2,
            lease: 60,
            max_attempts: 5,
            relay_interval: 5,
            republish_after: 60,
            time_to_live: 48,
        }
    }
}

/// `[quotas]`: per-project limits under Glance's unified-limits names. Sizes in MiB; a
/// negative limit means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    /// Enforce the limits and report them in /v2/info/usage (Glance's `use_keystone_limits`).
    pub enabled: bool,
    /// The limits of every project without an override.
    pub default: Limits,
    /// Overrides by project id; a limit left out is the `default` one.
    pub projects: BTreeMap<String, LimitOverrides>,
}

/// A project's overrides of the default limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct LimitOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size_total: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_stage_total: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_count_total: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_count_uploading: Option<i64>,
}

impl QuotasConfig {
    /// The limits of `project`: its overrides over the defaults.
    pub fn limits(&self, project: &str) -> Limits {
        let d = self.default;
        match self.projects.get(project) {
            None => d,
            Some(o) => Limits {
                image_size_total: o.image_size_total.unwrap_or(d.image_size_total),
                image_stage_total: o.image_stage_total.unwrap_or(d.image_stage_total),
                image_count_total: o.image_count_total.unwrap_or(d.image_count_total),
                image_count_uploading: o.image_count_uploading.unwrap_or(d.image_count_uploading),
            },
        }
    }
}

/// One project's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// MiB of image data stored (each copy counts).
    pub image_size_total: i64,
    /// MiB of data staged or being imported.
    pub image_stage_total: i64,
    /// Images (not deleted).
    pub image_count_total: i64,
    /// Images being uploaded, staged, imported or copied.
    pub image_count_uploading: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            image_size_total: 1024 * 1024,
            image_stage_total: 1024 * 1024,
            image_count_total: 1000,
            image_count_uploading: 10,
        }
    }
}

impl StorageConfig {
    /// The configured stores, or the implicit `local` filesystem store when none is.
    pub fn effective_backends(&self) -> BTreeMap<String, BackendConfig> {
        if self.backends.is_empty() {
            let local = BackendConfig::Filesystem { path: "data/images".into(), description: None };
            BTreeMap::from([(self.default.clone(), local)])
        } else {
            self.backends.clone()
        }
    }
}

impl Config {
    /// Defaults, then `file` if given, then `GLINT__SECTION__KEY` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Error::Config(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("GLINT__").split("__"));
        let config: Config = figment.extract().map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        self.server.trusted_proxy_networks()?;
        if self.images.api_limit_max == 0 {
            return Err(Error::Config("images.api_limit_max must be at least 1".into()));
        }
        if !self.storage.effective_backends().contains_key(&self.storage.default) {
            return Err(Error::Config(format!(
                "storage.default = \"{}\" names no store in storage.backends",
                self.storage.default
            )));
        }
        if matches!(self.storage.backends.get(&self.storage.default), Some(BackendConfig::Http { .. })) {
            return Err(Error::Config(format!(
                "storage.default = \"{}\" is an http store, which is read-only",
                self.storage.default
            )));
        }
        if self.auth.mode == AuthMode::Noauth
            && !self.server.bind.ip().is_loopback()
            && !self.auth.allow_noauth_on_non_loopback
        {
            return Err(Error::Config(format!(
                "auth.mode = \"noauth\" makes every caller an admin; refusing to listen on {} \
                 (set auth.allow_noauth_on_non_loopback = true to do it anyway)",
                self.server.bind
            )));
        }
        if let Some(bind) = self.metrics.bind.filter(|b| !b.ip().is_loopback())
            && self.metrics.enabled
            && !self.metrics.allow_non_loopback
        {
            return Err(Error::Config(format!(
                "metrics.bind = \"{bind}\" would serve metrics, which have no auth, beyond this host \
                 (set metrics.allow_non_loopback = true to do it anyway)"
            )));
        }
        for (key, value) in [
            ("sweep_interval", self.storage.sweep_interval),
            ("sweep_max_seconds", self.storage.sweep_max_seconds),
            ("sweep_max_removals", self.storage.sweep_max_removals as u64),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("storage.{key} must be at least 1")));
            }
        }
        if self.cache.enabled && self.cache.interval == 0 {
            return Err(Error::Config("cache.interval must be at least 1".into()));
        }
        let server = &self.server;
        if server.max_header_size < 8192 {
            return Err(Error::Config("server.max_header_size must be at least 8192".into()));
        }
        for (key, value) in [
            ("header_read_timeout", server.header_read_timeout),
            ("keepalive_timeout", server.keepalive_timeout),
            ("body_idle_timeout", server.body_idle_timeout),
            ("max_connections", server.max_connections as u64),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("server.{key} must be at least 1")));
            }
        }
        for (key, value) in [
            ("session_idle_timeout", self.console.session_idle_timeout),
            ("max_sessions", self.console.max_sessions as u64),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("console.{key} must be at least 1")));
            }
        }
        if self.auth.mode == AuthMode::Keystone {
            let keystone = &self.auth.keystone;
            for (key, value) in
                [("auth_url", &keystone.auth_url), ("username", &keystone.username), ("password", &keystone.password)]
            {
                if value.trim().is_empty() {
                    return Err(Error::Config(format!("auth.mode = \"keystone\" needs auth.keystone.{key}")));
                }
            }
            if keystone.cache_size == 0 {
                return Err(Error::Config("auth.keystone.cache_size must be at least 1".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/glint.toml")
    }

    #[test]
    fn sample_config_equals_the_defaults() {
        let text = std::fs::read_to_string(sample()).expect("etc/glint.toml");
        let parsed: Config = Figment::from(Toml::string(&text)).extract().expect("sample parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn compose_config_loads_and_selects_the_production_shape() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/compose/glint.toml");
        let config = Config::load(Some(&path)).expect("etc/compose/glint.toml loads");
        assert_eq!(config.tasks.transport, Transport::Rabbitmq);
        assert!(!config.server.bind.ip().is_loopback());
        assert!(config.storage.backends.contains_key(&config.storage.default));
    }

    #[test]
    fn unknown_key_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("glint.toml");
        std::fs::write(&path, "[server]\nbindd = \"127.0.0.1:1\"\n").expect("write");
        let err = Config::load(Some(&path)).expect_err("unknown key must fail");
        assert!(err.to_string().contains("bindd"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("glint.toml", "[database]\nurl = \"sqlite://file.db\"\nmax_connections = 3\n")?;
            jail.set_env("GLINT__DATABASE__URL", "postgres://127.0.0.1/test");
            let config = Config::load(Some(Path::new("glint.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.database.url, "postgres://127.0.0.1/test");
            assert_eq!(config.database.max_connections, 3);
            Ok(())
        });
    }

    #[test]
    fn s3_backend_parses_with_defaults_and_hides_its_secret() {
        let text = "[storage]\ndefault = \"s3\"\n[storage.backends.s3]\ntype = \"s3\"\nbucket = \"images\"\n\
                    access_key_id = \"AKID\"\nsecret_access_key = \"s3cr3t\"\n";
        let parsed: Config = Figment::from(Toml::string(text)).extract().expect("parses");
        let Some(BackendConfig::S3(s3)) = parsed.storage.backends.get("s3") else { panic!("{parsed:?}") };
        assert_eq!(
            (s3.region.as_str(), s3.endpoint.as_deref(), s3.prefix.as_deref(), s3.allow_http),
            ("us-east-1", None, None, false)
        );
        assert!(!format!("{parsed:?}").contains("s3cr3t"));
        let typo = text.replace("bucket =", "buckett =");
        let err = Figment::from(Toml::string(&typo)).extract::<Config>().expect_err("unknown key");
        assert!(err.to_string().contains("buckett"), "{err}");
    }

    #[test]
    fn keystone_mode_needs_its_service_user_and_hides_the_password() {
        let mut config = Config::default();
        config.auth.mode = AuthMode::Keystone;
        let err = config.validate().expect_err("no auth_url");
        assert!(err.to_string().contains("auth.keystone.auth_url"), "{err}");
        config.auth.keystone.auth_url = "http://keystone:5000/v3".into();
        config.auth.keystone.password = "pa55word".into();
        config.server.bind = SocketAddr::from(([0, 0, 0, 0], 9292));
        config.validate().expect("keystone may listen anywhere");
        assert!(!format!("{config:?}").contains("pa55word"));
    }

    #[test]
    fn metrics_stay_on_loopback_unless_allowed() {
        let mut config = Config::default();
        assert!(config.metrics.on_api_port(config.server.bind));
        assert!(!config.metrics.on_api_port("10.0.0.1:9292".parse().expect("addr")));
        config.metrics.bind = Some("0.0.0.0:9100".parse().expect("addr"));
        let err = config.validate().expect_err("public metrics listener");
        assert!(err.to_string().contains("metrics.allow_non_loopback"), "{err}");
        config.metrics.allow_non_loopback = true;
        assert!(config.validate().is_ok());
        assert!(config.metrics.on_api_port("10.0.0.1:9292".parse().expect("addr")));
    }

    #[test]
    fn an_http_store_cannot_be_the_default() {
        let mut config = Config::default();
        config
            .storage
            .backends
            .insert("local".into(), BackendConfig::Http { description: None, filtering: FilteringConfig::default() });
        let err = config.validate().expect_err("read-only default");
        assert!(err.to_string().contains("read-only"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let net = |text: &str| Network::parse(text).expect(text);
        let ip = |text: &str| text.parse::<IpAddr>().expect(text);
        assert!(net("10.0.0.0/8").contains(ip("10.200.0.1")) && !net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("10.0.0.5").contains(ip("::ffff:10.0.0.5")) && !net("10.0.0.5").contains(ip("10.0.0.6")));
        assert!(net("fd00::/8").contains(ip("fd12::1")) && !net("fd00::/8").contains(ip("fe80::1")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")) && !net("0.0.0.0/0").contains(ip("::1")));
        for bad in ["proxy.example", "10.0.0.0/33", "10.0.0.0/x", "::1/129", ""] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
        let mut config = Config::default();
        config.server.trusted_proxies = vec!["10.0.0.0/8".into(), "nonsense".into()];
        assert!(config.validate().expect_err("nonsense").to_string().contains("'nonsense'"));
    }

    #[test]
    fn noauth_refuses_a_public_address() {
        let mut config = Config::default();
        config.server.bind = "0.0.0.0:9292".parse().expect("addr");
        assert!(config.validate().is_err());
        config.auth.allow_noauth_on_non_loopback = true;
        assert!(config.validate().is_ok());
    }
}
