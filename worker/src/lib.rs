//! Task workers: take wake-ups from the queue, claim the task row, run its flow under a
//! renewed lease, and settle; plus the outbox relay that (re)publishes wake-ups.
//!
//! The row is the truth: a wake-up for a task that is already claimed or finished is simply
//! acknowledged, so duplicates and redeliveries never run a task twice. A worker that dies
//! stops renewing its lease; the relay then puts the task back to `pending` and wakes
//! another worker. A worker that is stopped takes no new task and gives its running ones until
//! the shutdown deadline; those still running then are cut short (their partial writes
//! removed) and handed back, so another worker takes them over at once.

use std::collections::HashMap;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use futures_util::StreamExt;
use glint_core::fetch::FetchError;
use glint_core::heartbeat::while_ticking;
use glint_core::image::import::ImportJob;
use glint_core::metrics::{self, ImportOutcome, WorkerEvent};
use glint_core::queue::{Message, TaskQueue, backoff};
use glint_core::store::StoreError;
use glint_core::task::repo as tasks;
use glint_core::task::{Task, TaskType};
use sea_orm::DatabaseConnection;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub mod flows;

/// How a flow failed: decides between another attempt and a final failure.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// Transient (network, broker, database): the task goes back to `pending` and is tried
    /// again after a backoff, up to [`Settings::max_attempts`].
    #[error("{0}")]
    Retry(String),
    /// Permanent (bad image, 404 URL, mismatch): the task fails with this message, which a
    /// person can act on. The flow has already put things back the way they were.
    #[error("{0}")]
    Abort(String),
}

/// A store may come back (access, I/O, a body that broke off mid-way); a full store, an image
/// over the cap or missing data stay that way.
impl From<StoreError> for FlowError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::TooLarge(_) | StoreError::Full | StoreError::NotFound(_) => {
                FlowError::Abort(format!("Image upload problem: {err}"))
            }
            StoreError::Source(source) => FlowError::of_source(source),
            StoreError::Denied(_) | StoreError::InUse(_) | StoreError::Io(_) => FlowError::Retry(err.to_string()),
        }
    }
}

impl FlowError {
    /// The failure of a stream a flow wrote: the [`FlowError`] an adapter of the flow put
    /// inside (a checksum mismatch, corrupt compressed data: the same bytes fail again), else
    /// a retry (the source broke off).
    fn of_source(source: std::io::Error) -> FlowError {
        let message = StoreError::Source(std::io::Error::new(source.kind(), source.to_string())).to_string();
        match source.into_inner().map(|inner| inner.downcast::<FlowError>()) {
            Some(Ok(flow)) => *flow,
            _ => FlowError::Retry(message),
        }
    }
}

/// Network and server trouble may pass; a refused URL, a final status or an oversized image
/// will not.
impl From<FetchError> for FlowError {
    fn from(err: FetchError) -> Self {
        if err.is_transient() { FlowError::Retry(err.to_string()) } else { FlowError::Abort(err.to_string()) }
    }
}

/// A transaction that could not begin or commit is database trouble: retried.
impl From<sea_orm::TransactionError<FlowError>> for FlowError {
    fn from(err: sea_orm::TransactionError<FlowError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => glint_core::Error::Database(db).into(),
            sea_orm::TransactionError::Transaction(err) => err,
        }
    }
}

/// Database and backend trouble is retried, store and fetch failures as above; a refusal
/// (bad request, conflict, ...) is final.
impl From<glint_core::Error> for FlowError {
    fn from(err: glint_core::Error) -> Self {
        use glint_core::Error;
        match err {
            Error::Store(err) => err.into(),
            Error::Fetch(err) => err.into(),
            Error::Database(_) | Error::Unavailable(_) | Error::Internal(_) => FlowError::Retry(err.to_string()),
            other => FlowError::Abort(other.to_string()),
        }
    }
}

/// What a flow is given besides the task.
pub struct FlowContext {
    /// The metadata database.
    pub db: DatabaseConnection,
    /// This worker's id (the task's `claimed_by`).
    pub worker_id: String,
    /// How long finished tasks are kept.
    pub task_ttl: Duration,
    /// Cancelled once the worker's shutdown deadline has passed: the data a flow reads then
    /// fails (see `flows`), so the flow undoes its writes and returns, and its task is handed
    /// to another worker.
    pub hand_over: CancellationToken,
}

impl FlowContext {
    /// This worker's claim on `task`, for ending it.
    pub fn claim<'a>(&'a self, task: &'a Task) -> tasks::Claim<'a> {
        tasks::Claim { task_id: &task.id, worker: &self.worker_id, ttl: self.task_ttl, input: task.input.as_ref() }
    }
}

/// The work behind one task type.
#[async_trait::async_trait]
pub trait Flow: Send + Sync {
    /// Runs `task`. On success the flow itself ends the task with [`tasks::succeed`] in the
    /// same transaction as its last change (e.g. the image becoming `active`), so the two
    /// cannot disagree; it returns `Ok` whether or not it still held the claim.
    async fn run(&self, ctx: &FlowContext, task: &Task) -> Result<(), FlowError>;

    /// Ends `task` as failed with `reason` and undoes what it did to its image, in one
    /// transaction; called after [`FlowError::Abort`], after the last retry, and for a task
    /// whose workers kept dying. Does nothing if the worker no longer holds the claim.
    async fn fail(&self, ctx: &FlowContext, task: &Task, reason: &str) -> glint_core::Result<()> {
        tasks::fail(&ctx.db, &ctx.claim(task), reason).await?;
        Ok(())
    }
}

/// A task type without a flow: it can only fail.
struct Unknown;

#[async_trait::async_trait]
impl Flow for Unknown {
    async fn run(&self, _ctx: &FlowContext, task: &Task) -> Result<(), FlowError> {
        Err(FlowError::Abort(format!("No worker flow handles tasks of type {}", task.task_type)))
    }
}

/// Flows by task type.
#[derive(Default, Clone)]
pub struct Registry {
    flows: HashMap<&'static str, Arc<dyn Flow>>,
}

impl Registry {
    /// Runs `flow` for tasks of `task_type`.
    pub fn with(mut self, task_type: TaskType, flow: Arc<dyn Flow>) -> Self {
        self.flows.insert(task_type.as_str(), flow);
        self
    }

    fn get(&self, task_type: TaskType) -> Option<&Arc<dyn Flow>> {
        self.flows.get(task_type.as_str())
    }

    /// Whether any flow is registered.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// Worker tuning.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This worker's id, unique among live workers.
    pub worker_id: String,
    /// A claim lasts this long unless renewed (renewed every third of it).
    pub lease: Duration,
    /// Most tasks run at once by this worker (the broker's prefetch window).
    pub prefetch: u16,
    /// How long finished tasks are kept.
    pub task_ttl: Duration,
    /// A task retried this many times fails for good.
    pub max_attempts: i32,
    /// Most tasks of one project running at once across all workers; 0 = no limit.
    pub max_running_per_project: u16,
    /// How long a stopping worker lets its running tasks go on before handing them back.
    pub shutdown_timeout: Duration,
}

impl Settings {
    /// Settings from `[tasks]` (and `[server] shutdown_timeout`), with a worker id unique to
    /// this process.
    pub fn from_config(config: &glint_core::config::Config) -> Settings {
        let cfg = &config.tasks;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Settings {
            worker_id: format!("{host}:{}:{}", std::process::id(), &suffix[..8]),
            lease: Duration::from_secs(cfg.lease.max(3)),
            prefetch: cfg.worker_concurrency.max(1),
            task_ttl: cfg.task_ttl(),
            max_attempts: cfg.max_attempts.max(1),
            max_running_per_project: cfg.max_running_per_project,
            shutdown_timeout: Duration::from_secs(config.server.shutdown_timeout),
        }
    }
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No flows are registered, so the worker could run nothing.
    #[error("no task flows are registered; nothing for a worker to run")]
    NoFlows,
}

/// Runs a worker until `shutdown` resolves; then it takes no new task, lets its running ones go
/// on until [`Settings::shutdown_timeout`], and hands back those still running.
pub async fn run(
    db: DatabaseConnection,
    queue: Arc<dyn TaskQueue>,
    flows: Registry,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    if flows.is_empty() {
        return Err(Error::NoFlows);
    }
    tokio::pin!(shutdown);
    let mut subscription = {
        let mut attempt = 0;
        loop {
            match queue.subscribe(settings.prefetch).await {
                Ok(subscription) => break subscription,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot subscribe to the task queue; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff(attempt)) => attempt += 1,
                        () = &mut shutdown => return Ok(()),
                    }
                }
            }
        }
    };
    let hand_over = CancellationToken::new();
    let ctx = Arc::new(FlowContext {
        db,
        worker_id: settings.worker_id.clone(),
        task_ttl: settings.task_ttl,
        hand_over: hand_over.clone(),
    });
    let (flows, settings) = (Arc::new(flows), Arc::new(settings));
    let queue = queue.clone();
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            message = subscription.next() => match message {
                Some(message) => {
                    // Every line logged while the task runs names it.
                    let span = tracing::info_span!("task", task_id = %message.task_id);
                    let handled = handle(ctx.clone(), queue.clone(), flows.clone(), settings.clone(), message);
                    running.spawn(handled.instrument(span));
                }
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    // The broker takes back what this worker has not started. It also redelivers the wake-ups
    // of the running tasks, which other workers drop while the rows say the tasks are claimed.
    drop(subscription);
    if running.is_empty() {
        return Ok(());
    }
    let deadline = settings.shutdown_timeout;
    tracing::info!(tasks = running.len(), deadline_s = deadline.as_secs(), "finishing running tasks");
    let finished = tokio::time::timeout(deadline, async { while running.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(tasks = running.len(), "tasks still running at the shutdown deadline: handing them over");
        hand_over.cancel();
        while running.join_next().await.is_some() {}
    }
    Ok(())
}

async fn handle(
    ctx: Arc<FlowContext>,
    queue: Arc<dyn TaskQueue>,
    flows: Arc<Registry>,
    settings: Arc<Settings>,
    message: Message,
) {
    let claimed = match tasks::claim_counted(&ctx.db, &message.task_id, &settings.worker_id, settings.lease).await {
        Ok(claimed) => claimed,
        Err(err) => {
            tracing::warn!(task = %message.task_id, error = %err, "cannot claim task; will retry");
            tokio::time::sleep(backoff(3)).await;
            message.requeue().await;
            return;
        }
    };
    // Already claimed, finished or unknown: this wake-up is a duplicate.
    let Some((task, attempts)) = claimed else {
        message.ack().await;
        return;
    };
    metrics::worker(WorkerEvent::Claim, 1);
    if over_share(&ctx, &settings, &task).await {
        // Counted after claiming, so two workers racing for one project's last place both
        // back off rather than both run: the share is never exceeded.
        tracing::debug!(task = %task.id, owner = %task.owner, "the project has its share of running tasks; queued");
        if let Err(err) = tasks::unclaim(&ctx.db, &task.id, &settings.worker_id).await {
            tracing::warn!(task = %task.id, error = %err, "cannot give the task back; its lease will expire");
        }
        message.ack().await;
        return;
    }
    run_task(&ctx, &queue, &flows, &settings, &task, attempts).await;
    message.ack().await;
    // Without a per-project limit this worker defers no task, so none waits for this one's place.
    if settings.max_running_per_project == 0 {
        return;
    }
    // The project's next task may run now that this one holds no place.
    match tasks::next_pending_of(&ctx.db, &task.owner, &task.id).await {
        Ok(Some(next)) => glint_core::queue::announce(&ctx.db, queue.as_ref(), &next).await,
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "cannot find the project's next task; the relay will wake it"),
    }
}

/// Whether `task`'s project runs more than its share of tasks, this one included.
async fn over_share(ctx: &FlowContext, settings: &Settings, task: &Task) -> bool {
    if settings.max_running_per_project == 0 {
        return false;
    }
    match tasks::running_of(&ctx.db, &task.owner).await {
        Ok(running) => running > u64::from(settings.max_running_per_project),
        Err(err) => {
            tracing::warn!(task = %task.id, error = %err, "cannot count the project's running tasks; running it");
            false
        }
    }
}

/// Runs the claimed `task`, on its `attempts`-th claim, to its end: success, failure, or back
/// to `pending` for a retry, whose wake-up comes after the backoff without this worker holding
/// a place meanwhile.
async fn run_task(
    ctx: &FlowContext,
    queue: &Arc<dyn TaskQueue>,
    flows: &Registry,
    settings: &Settings,
    task: &Task,
    attempts: i32,
) {
    let flow: &dyn Flow = flows.get(task.task_type).map_or(&Unknown, |f| f.as_ref());
    let method = import_method(task);
    if attempts == 1 {
        metrics::import_started(method);
    }
    let started = Instant::now();
    let failed = |reason| metrics::import_finished(method, ImportOutcome::Failed(reason), started.elapsed());
    if attempts > settings.max_attempts {
        // Every earlier attempt ended with its worker gone (crash, OOM, kill): this task
        // may be what kills them.
        let reason = format!("Gave up after {} attempts whose workers stopped responding", attempts - 1);
        fail(ctx, flow, task, &reason).await;
        failed("workers_lost");
        return;
    }
    match run_leased(ctx, settings, flow, task).await {
        None => tracing::warn!(task = %task.id, "lost the claim while running; another worker takes over"),
        Some(Ok(())) => metrics::import_finished(method, ImportOutcome::Succeeded, started.elapsed()),
        // Cut short by the hand-over, or failing just as it came: the next worker runs the task
        // afresh and finds out whether a failure stands.
        Some(Err(_)) if ctx.hand_over.is_cancelled() => hand_over(ctx, queue, task).await,
        Some(Err(FlowError::Abort(reason))) => {
            tracing::info!(task = %task.id, reason = %reason, "task failed");
            fail(ctx, flow, task, &reason).await;
            failed("aborted");
        }
        Some(Err(FlowError::Retry(reason))) => {
            if attempts >= settings.max_attempts {
                fail(ctx, flow, task, &format!("{reason} (gave up after {attempts} attempts)")).await;
                failed("retries_exhausted");
            } else {
                metrics::worker(WorkerEvent::Retry, 1);
                tracing::info!(task = %task.id, attempts, reason = %reason, "task will be retried");
                if let Err(err) = tasks::release(&ctx.db, &task.id, &settings.worker_id).await {
                    tracing::warn!(task = %task.id, error = %err, "cannot release the task; its lease will expire");
                }
                let delay = backoff(u32::try_from(attempts).unwrap_or(0).saturating_add(2));
                let (db, queue, id) = (ctx.db.clone(), queue.clone(), task.id.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    glint_core::queue::announce(&db, queue.as_ref(), &id).await;
                });
            }
        }
    }
}

/// Gives `task`, cut short by this worker's shutdown, back to `pending` and wakes another
/// worker for it at once.
async fn hand_over(ctx: &FlowContext, queue: &Arc<dyn TaskQueue>, task: &Task) {
    match tasks::hand_over(&ctx.db, &task.id, &ctx.worker_id).await {
        Ok(true) => tracing::info!(task = %task.id, "task handed over to another worker"),
        Ok(false) => return,
        Err(err) => {
            tracing::warn!(task = %task.id, error = %err, "cannot hand the task over; it is taken over when its lease expires");
            return;
        }
    }
    // Not recorded as published: the in-process transport of `glint serve` dies with this
    // process, so the outbox relay must still see the wake-up as missing. A duplicate is harmless.
    if let Err(err) = queue.publish(&task.id).await {
        tracing::debug!(task = %task.id, error = %err, "cannot publish the handed-over task; the outbox relay will");
    }
}

async fn fail(ctx: &FlowContext, flow: &dyn Flow, task: &Task, reason: &str) {
    if let Err(err) = flow.fail(ctx, task, reason).await {
        // The claim stays ours until the lease expires; then the task runs again.
        tracing::error!(task = %task.id, error = %err, "cannot record the task failure");
    }
}

/// The `method` label of `task`'s import metrics: the import method of an interoperable import,
/// else the task type (`import` for the legacy tasks API).
fn import_method(task: &Task) -> &'static str {
    match task.task_type {
        TaskType::ApiImageImport => ImportJob::of(task).map_or("unknown", |job| job.method.name()),
        other => other.as_str(),
    }
}

/// How long a flow has to return once the hand-over has cut its data: then it is dropped where
/// it is (a conversion, a database call), and its task handed over all the same.
const HAND_OVER_GRACE: Duration = Duration::from_secs(5);

/// Runs `flow`, renewing the claim every third of the lease; `None` if the claim was lost.
async fn run_leased(
    ctx: &FlowContext,
    settings: &Settings,
    flow: &dyn Flow,
    task: &Task,
) -> Option<Result<(), FlowError>> {
    let renew = || async {
        match tasks::renew_lease(&ctx.db, &task.id, &settings.worker_id, settings.lease).await {
            Ok(true) => {
                metrics::worker(WorkerEvent::LeaseRenewal, 1);
                ControlFlow::Continue(())
            }
            Ok(false) => ControlFlow::Break(()),
            Err(err) => {
                tracing::warn!(task = %task.id, error = %err, "lease renewal failed; retrying");
                ControlFlow::Continue(())
            }
        }
    };
    let leased = while_ticking(flow.run(ctx, task), settings.lease / 3, renew);
    let given_up = async {
        ctx.hand_over.cancelled().await;
        tokio::time::sleep(HAND_OVER_GRACE).await;
    };
    tokio::select! {
        ran = leased => ran.ok(),
        () = given_up => {
            tracing::warn!(task = %task.id, "the task did not stop when handed over; dropped");
            Some(Err(FlowError::Retry("the worker stopped".into())))
        }
    }
}

/// Publishes the relay keeps in flight at once.
const RELAY_CONCURRENCY: usize = 64;

/// The outbox relay: every `every`, releases tasks whose worker died and publishes wake-ups
/// for pending tasks not yet confirmed (or confirmed more than `republish_after` ago, in case
/// the message was lost), until `shutdown` resolves.
pub async fn relay(
    db: DatabaseConnection,
    queue: Arc<dyn TaskQueue>,
    every: Duration,
    republish_after: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        if let Err(err) = relay_once(&db, queue.as_ref(), republish_after).await {
            tracing::warn!(error = %err, "outbox relay pass failed");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut shutdown => return,
        }
    }
}

/// One relay pass; returns how many wake-ups were published.
pub async fn relay_once(
    db: &DatabaseConnection,
    queue: &dyn TaskQueue,
    republish_after: Duration,
) -> glint_core::Result<usize> {
    let released = tasks::release_expired_leases(db).await?;
    metrics::worker(WorkerEvent::Takeover, released);
    if released > 0 {
        tracing::warn!(tasks = released, "released tasks whose worker stopped renewing its lease");
    }
    let pending = tasks::unpublished(db, republish_after, 500).await?;
    // Confirmed persistent publishes cost a broker round trip and an fsync each; in flight
    // together they go ~20x faster than one by one.
    let outcomes: Vec<glint_core::Result<bool>> = futures_util::stream::iter(pending)
        .map(|id| async move {
            match queue.publish(&id).await {
                Ok(()) => tasks::mark_published(db, &id).await.map(|()| true),
                Err(err) => {
                    tracing::debug!(task = %id, error = %err, "publishing a wake-up failed; will retry");
                    Ok(false)
                }
            }
        })
        .buffer_unordered(RELAY_CONCURRENCY)
        .collect()
        .await;
    let published = outcomes.iter().filter(|o| matches!(o, Ok(true))).count();
    if published < outcomes.len() {
        tracing::warn!(failed = outcomes.len() - published, "publishing task wake-ups failed; will retry");
    }
    outcomes.into_iter().find_map(Result::err).map_or(Ok(published), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retried(err: impl Into<FlowError>) -> bool {
        matches!(err.into(), FlowError::Retry(_))
    }

    #[test]
    fn infrastructure_failures_are_retried_by_their_type() {
        let broke_off = || StoreError::Source(std::io::Error::other("connection reset"));
        assert!(retried(broke_off()));
        assert!(retried(glint_core::Error::Store(broke_off())));
        assert!(retried(glint_core::Error::Fetch(FetchError::Transient("timed out".into()))));
        assert!(retried(glint_core::Error::Internal("thread panicked".into())));
    }

    #[test]
    fn refusals_are_final() {
        assert!(!retried(StoreError::Full));
        assert!(!retried(glint_core::Error::Fetch(FetchError::Status(404, "GET x returned 404".into()))));
        assert!(!retried(glint_core::Error::BadRequest(
            "Property disk_format must be set prior to saving data.".into()
        )));
        let FlowError::Abort(message) = StoreError::TooLarge(10).into() else { panic!("retried") };
        assert_eq!(message, "Image upload problem: image data exceeds the maximum size of 10 bytes");
    }
}
