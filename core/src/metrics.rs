//! Prometheus metrics: the process's one registry, the families Glint records, and their text
//! exposition for `GET /metrics`.
//!
//! Recording is a hash lookup and an atomic add, cheap enough for every request. Counters live
//! for the process; what the database knows (tasks by state, the outbox) and the pool's state
//! are read when scraped, so every process that serves `/metrics` reports them and none has to
//! keep them in sync.
//! Label values come from small fixed sets (route templates, store ids, reasons), never from
//! ids or raw paths, so the number of series stays bounded.
//!
//! The Prometheus text format (0.0.4), not OpenMetrics: `promtool check metrics` and every
//! Prometheus version read it, while OpenMetrics counters (`TYPE x` + `x_total`) fail promtool's
//! lint. Hence the `prometheus` crate rather than `prometheus-client`.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};
use sea_orm::DatabaseConnection;

use crate::Result;

mod scrape;

/// The media type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Image data moving through the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFlow {
    /// `PUT /v2/images/{id}/file` request bodies.
    Uploaded,
    /// `GET /v2/images/{id}/file` response bodies.
    Downloaded,
    /// `PUT /v2/images/{id}/stage` request bodies.
    Staged,
}

/// What a task worker does to its claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerEvent {
    /// A task claimed (pending -> processing).
    Claim,
    /// A running task's lease extended.
    LeaseRenewal,
    /// A task whose worker stopped renewing its lease, put back for another worker.
    Takeover,
    /// A task given back after a transient failure, to be tried again.
    Retry,
}

/// How an import task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The image is active (or the copies made).
    Succeeded,
    /// Failed for good, for this reason (a short fixed word, e.g. `aborted`).
    Failed(&'static str),
}

struct Families {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    data_bytes: IntCounterVec,
    imports_started: IntCounterVec,
    imports_succeeded: IntCounterVec,
    imports_failed: IntCounterVec,
    import_duration: HistogramVec,
    worker_events: [IntCounter; 4],
    store_errors: IntCounterVec,
    keystone_validations: IntCounterVec,
    token_cache_hits: IntCounter,
    token_cache_misses: IntCounter,
    inspection_refusals: IntCounterVec,
    partial_bytes_swept: IntCounterVec,
}

/// Seconds, from 5 ms (a cached metadata read) to 10 s.
const HTTP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Seconds, from half a second (a small copy) to an hour (a large web-download).
const IMPORT_BUCKETS: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

static FAMILIES: LazyLock<Families> = LazyLock::new(Families::new);

impl Families {
    fn new() -> Families {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let family = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry.register(Box::new(family.clone())).expect("unique counter");
            family
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let family = HistogramVec::new(opts, labels).expect("valid histogram");
            registry.register(Box::new(family.clone())).expect("unique histogram");
            family
        };
        let plain = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid counter");
            registry.register(Box::new(counter.clone())).expect("unique counter");
            counter
        };
        Families {
            http_requests: counter(
                "glint_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
                &["route", "method", "status"],
            ),
            http_duration: histogram(
                "glint_http_request_duration_seconds",
                "Time from a request's arrival to its response head, by route template and method.",
                &["route", "method"],
                HTTP_BUCKETS,
            ),
            data_bytes: counter(
                "glint_image_data_bytes_total",
                "Image data bytes through the API: uploaded, downloaded or staged.",
                &["flow"],
            ),
            imports_started: counter(
                "glint_import_tasks_started_total",
                "Import tasks a worker started (first claim), by import method.",
                &["method"],
            ),
            imports_succeeded: counter(
                "glint_import_tasks_succeeded_total",
                "Import tasks that succeeded, by import method.",
                &["method"],
            ),
            imports_failed: counter(
                "glint_import_tasks_failed_total",
                "Import tasks that failed for good, by import method and reason.",
                &["method", "reason"],
            ),
            import_duration: histogram(
                "glint_import_task_duration_seconds",
                "Time a worker spent on the attempt that ended an import task, by method and outcome.",
                &["method", "outcome"],
                IMPORT_BUCKETS,
            ),
            worker_events: [
                plain("glint_worker_claims_total", "Tasks claimed by this process's workers."),
                plain("glint_worker_lease_renewals_total", "Task leases renewed by this process's workers."),
                plain(
                    "glint_worker_takeovers_total",
                    "Tasks whose worker stopped renewing its lease, released by this process for another worker.",
                ),
                plain("glint_worker_retries_total", "Task attempts given back after a transient failure."),
            ],
            store_errors: counter(
                "glint_store_errors_total",
                "Failed store operations, by store id and operation.",
                &["store", "operation"],
            ),
            keystone_validations: counter(
                "glint_keystone_validations_total",
                "Tokens validated with Keystone, by result (valid, invalid, error).",
                &["result"],
            ),
            token_cache_hits: plain(
                "glint_keystone_token_cache_hits_total",
                "Token validations answered from the cache.",
            ),
            token_cache_misses: plain(
                "glint_keystone_token_cache_misses_total",
                "Token validations that had to ask Keystone.",
            ),
            inspection_refusals: counter(
                "glint_format_inspection_refusals_total",
                "Image data refused by format inspection, by reason.",
                &["reason"],
            ),
            partial_bytes_swept: counter(
                "glint_partial_bytes_swept_total",
                "Bytes that dead processes left (partial writes, unneeded staged data) removed, by store id (or staging).",
                &["store"],
            ),
            registry,
        }
    }
}

fn families() -> &'static Families {
    &FAMILIES
}

/// Records one answered request: `route` is its template (`/v2/images/{id}`), never the path.
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let f = families();
    let status = status.to_string();
    f.http_requests.with_label_values(&[route, method, status.as_str()]).inc();
    f.http_duration.with_label_values(&[route, method]).observe(elapsed.as_secs_f64());
}

/// Counts `bytes` of image data moving through the API.
pub fn data_bytes(flow: DataFlow, bytes: u64) {
    let flow = match flow {
        DataFlow::Uploaded => "uploaded",
        DataFlow::Downloaded => "downloaded",
        DataFlow::Staged => "staged",
    };
    families().data_bytes.with_label_values(&[flow]).inc_by(bytes);
}

/// Records the start of an import task by `method` (`glance-direct`, `web-download`, ...).
pub fn import_started(method: &str) {
    families().imports_started.with_label_values(&[method]).inc();
}

/// Records the end of an import task by `method`, whose last attempt took `elapsed`.
pub fn import_finished(method: &str, outcome: ImportOutcome, elapsed: Duration) {
    let f = families();
    let label = match outcome {
        ImportOutcome::Succeeded => {
            f.imports_succeeded.with_label_values(&[method]).inc();
            "succeeded"
        }
        ImportOutcome::Failed(reason) => {
            f.imports_failed.with_label_values(&[method, reason]).inc();
            "failed"
        }
    };
    f.import_duration.with_label_values(&[method, label]).observe(elapsed.as_secs_f64());
}

/// Counts `n` worker `event`s.
pub fn worker(event: WorkerEvent, n: u64) {
    let index = match event {
        WorkerEvent::Claim => 0,
        WorkerEvent::LeaseRenewal => 1,
        WorkerEvent::Takeover => 2,
        WorkerEvent::Retry => 3,
    };
    families().worker_events[index].inc_by(n);
}

/// Counts a failed `operation` (`put`, `get`, ...) of store `store`.
pub fn store_error(store: &str, operation: &str) {
    families().store_errors.with_label_values(&[store, operation]).inc();
}

/// Counts one answer of Keystone about a token: `valid`, `invalid` or `error`.
pub fn keystone_validation(result: &str) {
    families().keystone_validations.with_label_values(&[result]).inc();
}

/// Counts a token validation answered from the cache (`hit`) or not.
pub fn token_cache(hit: bool) {
    let f = families();
    if hit { &f.token_cache_hits } else { &f.token_cache_misses }.inc();
}

/// Counts image data refused by format inspection for `reason` (`mismatch`, `unsafe`, ...).
pub fn inspection_refused(reason: &str) {
    families().inspection_refusals.with_label_values(&[reason]).inc();
}

/// Counts `bytes` of abandoned partial writes removed from `store` (a store id, or `staging`).
pub fn partial_bytes_swept(store: &str, bytes: u64) {
    families().partial_bytes_swept.with_label_values(&[store]).inc_by(bytes);
}

/// Every family in the Prometheus text format, with what the database knows read now.
pub async fn render(db: &DatabaseConnection) -> Result<String> {
    let encoding = |e: prometheus::Error| crate::Error::Internal(format!("encoding metrics: {e}"));
    // The database's values go into a registry of this scrape's own, so that concurrent
    // scrapes (of different databases, in tests) never see each other's.
    let from_database = scrape::read(db).await?.registry().map_err(encoding)?;
    let mut gathered = families().registry.gather();
    gathered.extend(from_database.gather());
    gathered.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    TextEncoder::new().encode(&gathered, &mut out).map_err(encoding)?;
    String::from_utf8(out).map_err(|e| crate::Error::Internal(format!("encoding metrics: {e}")))
}
