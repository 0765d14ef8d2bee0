//! The RabbitMQ broker on 127.0.0.1:5672 (guest/guest), as the multi-process tests use it.
//!
//! # One RabbitMQ test at a time
//!
//! Some tests stop the broker application (`rabbitmqctl stop_app`), which breaks every other
//! connection to it. So every test in this binary that talks to RabbitMQ runs under
//! [`exclusive`], one process-wide lock held for the whole test: they run one after the other
//! while the rest of the suite runs in parallel. A new RabbitMQ-using test must take it too.
//! The lock also holds an advisory file lock (`$TMPDIR/glint-rabbitmq-tests.lock`), so two
//! runs of this binary at once (two developers' `cargo test` on one machine) take turns as
//! well. (Other test binaries, such as `core/tests/rabbitmq.rs`, never run at the same time
//! as this one within a `cargo test`: cargo runs test binaries one after another.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use glint_core::queue::{RabbitQueue, TaskQueue};
use tokio::sync::{Mutex, MutexGuard};

/// The broker's AMQP URL.
pub const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const ADDRESS: &str = "127.0.0.1:5672";

/// How long the broker may take to take connections again after `start_app`.
const RESTART_DEADLINE: Duration = Duration::from_secs(60);

/// Held for the whole of every RabbitMQ-using test of this binary (see the module docs).
static BROKER: Mutex<()> = Mutex::const_new(());

/// The broker to oneself: the process-wide lock and the file lock (see the module docs).
pub struct Exclusive {
    // The file lock is released when the file is closed.
    _file: std::fs::File,
    _guard: MutexGuard<'static, ()>,
}

/// Waits for the broker lock, then checks the broker is reachable.
///
/// `None` (after printing "skipped: RabbitMQ unreachable ...") when it is not, outside CI;
/// with `CI=true` that panics instead, so CI cannot pass by skipping.
pub async fn exclusive() -> Option<Exclusive> {
    // Taken first: a test that stopped the broker has started it again by the time we get it.
    let guard = BROKER.lock().await;
    let file = tokio::task::spawn_blocking(|| {
        let path = std::env::temp_dir().join("glint-rabbitmq-tests.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        file.lock().unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
        file
    })
    .await
    .expect("take the file lock");
    let connected = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(ADDRESS)).await;
    if matches!(connected, Ok(Ok(_))) {
        return Some(Exclusive { _file: file, _guard: guard });
    }
    let why = format!("RabbitMQ unreachable on {ADDRESS}");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why} (CI=true: the broker is required)");
    }
    eprintln!("skipped: {why}");
    None
}

/// The broker application stopped (`rabbitmqctl stop_app`; the Erlang node stays up). It is
/// started again by [`Outage::end`], or on drop whatever happened (a failed assertion too).
pub struct Outage {
    probe_queue: String,
    ended: bool,
}

impl Outage {
    /// Stops the broker application. `probe_queue` is the queue the readiness check publishes
    /// to once it is back (the caller deletes it).
    pub fn begin(probe_queue: &str) -> Outage {
        let outage = Outage { probe_queue: probe_queue.to_owned(), ended: false };
        rabbitmqctl(&["stop_app"]);
        outage
    }

    /// Starts the broker application again and waits until a publish is confirmed; returns
    /// how long that took. Panics if the broker is not back within a minute.
    pub fn end(mut self) -> Duration {
        self.ended = true;
        let started = Instant::now();
        assert!(
            restart(&self.probe_queue),
            "RabbitMQ did not take connections within {RESTART_DEADLINE:?} of start_app"
        );
        started.elapsed()
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.ended && !restart(&self.probe_queue) {
            eprintln!("RabbitMQ did not come back after start_app");
        }
    }
}

/// `start_app`, then wait for a confirmed publish: `start_app` returns before the listener
/// always takes connections.
fn restart(probe_queue: &str) -> bool {
    rabbitmqctl(&["start_app"]);
    let queue = probe_queue.to_owned();
    // Possibly called while the test's runtime unwinds: a runtime of our own on a thread of
    // our own.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let deadline = Instant::now() + RESTART_DEADLINE;
            while Instant::now() < deadline {
                // A fresh client each time: a failed one waits out a backoff before retrying.
                let probe = RabbitQueue::new(URL, &queue).expect("probe queue");
                if probe.publish("probe").await.is_ok() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            false
        })
    })
    .join()
    .unwrap_or(false)
}

/// Deletes `queue` from the broker (nothing happens if it does not exist).
pub fn delete_queue(queue: &str) {
    let _ =
        Command::new("rabbitmqctl").args(["delete_queue", queue]).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

fn rabbitmqctl(arguments: &[&str]) {
    let status = Command::new("rabbitmqctl").args(arguments).stdout(Stdio::null()).stderr(Stdio::null()).status();
    match status {
        Ok(status) if status.success() => {}
        other => eprintln!("rabbitmqctl {arguments:?} failed: {other:?}"),
    }
}
