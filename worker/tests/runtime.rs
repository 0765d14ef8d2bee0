//! The worker runtime over a real database and the in-process transport.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use glint_core::config::DatabaseConfig;
use glint_core::queue::{MemoryQueue, TaskQueue};
use glint_core::task::repo as tasks;
use glint_core::task::{Task, TaskStatus, TaskType};
use glint_worker::{Flow, FlowContext, FlowError, Registry, Settings};
use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

/// What the test flow does when run.
#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    Abort,
    Retry,
    /// Runs until `release` (then succeeds) or the worker's hand-over (then fails, as a flow
    /// whose data the hand-over cut does).
    Hold,
}

struct TestFlow {
    runs: AtomicUsize,
    behaviour: Behaviour,
    started: Notify,
    release: Notify,
}

async fn succeed(ctx: &FlowContext, task: &Task) -> Result<(), FlowError> {
    let result = serde_json::json!({"image_id": task.image_id});
    tasks::succeed(&ctx.db, &ctx.claim(task), result).await.map_err(|e| FlowError::Retry(e.to_string()))?;
    Ok(())
}

#[async_trait::async_trait]
impl Flow for TestFlow {
    async fn run(&self, ctx: &FlowContext, task: &Task) -> Result<(), FlowError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        match self.behaviour {
            Behaviour::Succeed => succeed(ctx, task).await,
            Behaviour::Abort => Err(FlowError::Abort("Image disk_format qcow2 does not match stream data raw".into())),
            Behaviour::Retry => Err(FlowError::Retry("connection reset".into())),
            Behaviour::Hold => {
                self.started.notify_one();
                tokio::select! {
                    () = self.release.notified() => succeed(ctx, task).await,
                    () = ctx.hand_over.cancelled() => Err(FlowError::Retry("the worker is stopping".into())),
                }
            }
        }
    }
}

struct Harness {
    db: DatabaseConnection,
    queue: Arc<MemoryQueue>,
    flow: Arc<TestFlow>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    worker: Option<tokio::task::JoinHandle<Result<(), glint_worker::Error>>>,
    _dir: tempfile::TempDir,
}

async fn start(behaviour: Behaviour) -> Harness {
    start_with(behaviour, Duration::from_secs(30)).await
}

/// A worker whose shutdown deadline is `shutdown_timeout`.
async fn start_with(behaviour: Behaviour, shutdown_timeout: Duration) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("glint.db").display());
    let db =
        glint_core::db::connect(&DatabaseConfig { url, max_connections: 4, migrate_on_start: true }).await.unwrap();
    glint_core::db::migrate(&db).await.unwrap();
    let queue = Arc::new(MemoryQueue::new());
    let flow =
        Arc::new(TestFlow { runs: AtomicUsize::new(0), behaviour, started: Notify::new(), release: Notify::new() });
    let settings = Settings {
        worker_id: "worker-1".into(),
        lease: Duration::from_secs(30),
        prefetch: 4,
        task_ttl: Duration::from_secs(3600),
        max_attempts: 2,
        max_running_per_project: 0,
        shutdown_timeout,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let registry = Registry::default().with(TaskType::ApiImageImport, flow.clone());
    let worker = tokio::spawn(glint_worker::run(db.clone(), queue.clone(), registry, settings, async {
        let _ = stopped.await;
    }));
    Harness { db, queue, flow, stop: Some(stop), worker: Some(worker), _dir: dir }
}

impl Harness {
    async fn pending_task(&self, id: &str) {
        let at = glint_core::db::now();
        let task = Task {
            id: id.into(),
            task_type: TaskType::ApiImageImport,
            status: TaskStatus::Pending,
            owner: "p1".into(),
            expires_at: None,
            image_id: Some("8b1a0000-0000-4000-8000-000000000001".into()),
            request_id: None,
            user_id: None,
            created_at: at,
            updated_at: at,
            input: None,
            result: None,
            message: String::new(),
        };
        tasks::insert(&self.db, &task).await.unwrap();
    }

    /// Waits (bounded) until task `id` reaches a final status, and returns it with its message.
    async fn outcome(&self, id: &str) -> (TaskStatus, String) {
        let admin = glint_core::context::RequestContext::anonymous_admin("req-test".into());
        for _ in 0..200 {
            let task = tasks::find_visible(&self.db, &admin, id).await.unwrap();
            if task.status.is_final() {
                return (task.status, task.message);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("task {id} did not finish");
    }

    /// Stops the worker; the database (and its directory) live on with the harness.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(worker) = self.worker.take() {
            worker.await.unwrap().unwrap();
        }
    }
}

const ID: &str = "aaaaaaaa-0000-4000-8000-000000000001";

#[tokio::test]
async fn a_published_task_runs_once_even_when_woken_several_times() {
    let mut h = start(Behaviour::Succeed).await;
    h.pending_task(ID).await;
    assert_eq!(glint_worker::relay_once(&h.db, h.queue.as_ref(), Duration::from_secs(60)).await.unwrap(), 1);
    h.queue.publish(ID).await.unwrap();
    h.queue.publish(ID).await.unwrap();
    assert_eq!(h.outcome(ID).await.0, TaskStatus::Success);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.flow.runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        glint_worker::relay_once(&h.db, h.queue.as_ref(), Duration::ZERO).await.unwrap(),
        0,
        "nothing left to publish"
    );
    h.stop().await;
}

#[tokio::test]
async fn an_aborted_flow_fails_the_task_with_its_message() {
    let mut h = start(Behaviour::Abort).await;
    h.pending_task(ID).await;
    glint_worker::relay_once(&h.db, h.queue.as_ref(), Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        h.outcome(ID).await,
        (TaskStatus::Failure, "Image disk_format qcow2 does not match stream data raw".into())
    );
    h.stop().await;
}

#[tokio::test]
async fn a_transient_failure_is_retried_then_given_up() {
    let mut h = start(Behaviour::Retry).await;
    h.pending_task(ID).await;
    glint_worker::relay_once(&h.db, h.queue.as_ref(), Duration::from_secs(60)).await.unwrap();
    let (status, message) = h.outcome(ID).await;
    assert_eq!(status, TaskStatus::Failure);
    assert_eq!(message, "connection reset (gave up after 2 attempts)");
    assert_eq!(h.flow.runs.load(Ordering::SeqCst), 2);
    h.stop().await;
}

#[tokio::test]
async fn a_task_whose_worker_died_is_taken_over() {
    let mut h = start(Behaviour::Succeed).await;
    h.pending_task(ID).await;
    // Another worker claimed it, then died: its lease runs out without renewal.
    tasks::claim(&h.db, ID, "dead-worker", Duration::ZERO).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(glint_worker::relay_once(&h.db, h.queue.as_ref(), Duration::from_secs(60)).await.unwrap(), 1);
    assert_eq!(h.outcome(ID).await.0, TaskStatus::Success);
    h.stop().await;
}

#[tokio::test]
async fn a_stopping_worker_takes_no_new_task_and_finishes_the_running_one_within_the_deadline() {
    let mut h = start(Behaviour::Hold).await;
    h.pending_task(ID).await;
    glint_worker::relay_once(&h.db, h.queue.as_ref(), Duration::from_secs(60)).await.unwrap();
    h.flow.started.notified().await;
    let _ = h.stop.take().unwrap().send(());
    let mut worker = h.worker.take().unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut worker).await.is_err(),
        "the worker stopped without waiting for its running task"
    );
    // A task published now is left for other workers.
    let other = "aaaaaaaa-0000-4000-8000-000000000002";
    h.pending_task(other).await;
    h.queue.publish(other).await.unwrap();
    h.flow.release.notify_one();
    worker.await.unwrap().unwrap();
    assert_eq!(h.outcome(ID).await.0, TaskStatus::Success);
    assert_eq!(h.flow.runs.load(Ordering::SeqCst), 1, "the new task was not taken");
    assert_eq!(tasks::get(&h.db, other).await.unwrap().unwrap().status, TaskStatus::Pending);
}

#[tokio::test]
async fn a_task_still_running_at_the_shutdown_deadline_is_handed_back_for_another_worker_at_once() {
    let mut h = start_with(Behaviour::Hold, Duration::from_millis(200)).await;
    h.pending_task(ID).await;
    glint_worker::relay_once(&h.db, h.queue.as_ref(), Duration::from_secs(60)).await.unwrap();
    h.flow.started.notified().await;
    let (db, queue) = (h.db.clone(), h.queue.clone());
    let stopping = std::time::Instant::now();
    h.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(2), "stopped after {:?}", stopping.elapsed());
    assert_eq!(tasks::get(&db, ID).await.unwrap().unwrap().status, TaskStatus::Pending);
    assert_eq!(tasks::attempts(&db, ID).await.unwrap(), 0, "a hand-over is not an attempt");
    // Unannounced for the outbox relay of every process, and woken at once all the same.
    assert_eq!(tasks::unpublished(&db, Duration::from_secs(3600), 10).await.unwrap(), vec![ID.to_owned()]);
    let mut next_worker = queue.subscribe(1).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(1), next_worker.next()).await.expect("a wake-up");
    assert_eq!(woken.map(|m| m.task_id).as_deref(), Some(ID));
    assert!(tasks::claim(&db, ID, "worker-2", Duration::from_secs(30)).await.unwrap().is_some());
}

#[tokio::test]
async fn a_worker_without_flows_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("glint.db").display());
    let db =
        glint_core::db::connect(&DatabaseConfig { url, max_connections: 1, migrate_on_start: true }).await.unwrap();
    let settings = Settings {
        worker_id: "w".into(),
        lease: Duration::from_secs(1),
        prefetch: 1,
        task_ttl: Duration::from_secs(1),
        max_attempts: 1,
        max_running_per_project: 0,
        shutdown_timeout: Duration::from_secs(30),
    };
    let outcome =
        glint_worker::run(db, Arc::new(MemoryQueue::new()), Registry::default(), settings, std::future::pending())
            .await;
    assert!(matches!(outcome, Err(glint_worker::Error::NoFlows)));
}
