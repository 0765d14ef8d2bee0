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

/// What the test flow does when run.
#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    Abort,
    Retry,
}

struct TestFlow {
    runs: AtomicUsize,
    behaviour: Behaviour,
}

#[async_trait::async_trait]
impl Flow for TestFlow {
    async fn run(&self, ctx: &FlowContext, task: &Task) -> Result<(), FlowError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        match self.behaviour {
            Behaviour::Succeed => {
                let result = serde_json::json!({"image_id": task.image_id});
                tasks::succeed(&ctx.db, &ctx.claim(task), result).await.map_err(|e| FlowError::Retry(e.to_string()))?;
                Ok(())
            }
            Behaviour::Abort => Err(FlowError::Abort("Image disk_format qcow2 does not match stream data raw".into())),
            Behaviour::Retry => Err(FlowError::Retry("connection reset".into())),
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
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("glint.db").display());
    let db =
        glint_core::db::connect(&DatabaseConfig { url, max_connections: 4, migrate_on_start: true }).await.unwrap();
    glint_core::db::migrate(&db).await.unwrap();
    let queue = Arc::new(MemoryQueue::new());
    let flow = Arc::new(TestFlow { runs: AtomicUsize::new(0), behaviour });
    let settings = Settings {
        worker_id: "worker-1".into(),
        lease: Duration::from_secs(30),
        prefetch: 4,
        task_ttl: Duration::from_secs(3600),
        max_attempts: 2,
        max_running_per_project: 0,
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

    async fn stop(mut self) {
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
    let h = start(Behaviour::Succeed).await;
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
    let h = start(Behaviour::Abort).await;
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
    let h = start(Behaviour::Retry).await;
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
    let h = start(Behaviour::Succeed).await;
    h.pending_task(ID).await;
    // Another worker claimed it, then died: its lease runs out without renewal.
    tasks::claim(&h.db, ID, "dead-worker", Duration::ZERO).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(glint_worker::relay_once(&h.db, h.queue.as_ref(), Duration::from_secs(60)).await.unwrap(), 1);
    assert_eq!(h.outcome(ID).await.0, TaskStatus::Success);
    h.stop().await;
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
    };
    let outcome =
        glint_worker::run(db, Arc::new(MemoryQueue::new()), Registry::default(), settings, std::future::pending())
            .await;
    assert!(matches!(outcome, Err(glint_worker::Error::NoFlows)));
}
