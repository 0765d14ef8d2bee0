//! The import flows, and what they share: their dependencies and progress reports.

mod decompress;
mod glance_download;
mod import;
mod legacy;
mod location;
mod verify;

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use glint_core::config::Config;
use glint_core::fetch::Fetcher;
use glint_core::heartbeat::while_ticking;
use glint_core::policy::Policy;
use glint_core::store::{ByteStream, Staging, Stores};
use glint_core::task::repo as tasks;
use glint_core::task::{Task, TaskType};
use tokio_util::sync::CancellationToken;

use crate::{FlowContext, Registry};

pub use import::ImportFlow;
pub use legacy::LegacyImportFlow;
pub use location::LocationFlow;

/// What the flows need besides the database.
#[derive(Clone)]
pub struct Deps {
    /// Where image data goes.
    pub stores: Stores,
    /// Staged data.
    pub staging: Staging,
    /// Fetches web-download URLs.
    pub fetcher: Arc<Fetcher>,
    /// The image size cap.
    pub cap: u64,
    /// The disk format imports are converted to, if any.
    pub conversion: Option<glint_formats::Format>,
    /// The image schema and limits, for images created by legacy import tasks and the
    /// properties glance-download copies.
    pub config: Arc<Config>,
    /// The rules and property protections the copied properties are judged by.
    pub policy: Arc<Policy>,
}

impl Deps {
    /// The flows' dependencies as configured.
    pub fn from_config(config: &Config, stores: Stores) -> glint_core::Result<Deps> {
        let config_error = |e: String| glint_core::Error::Config(e);
        let staging = Staging::from_config(&config.import)?;
        let fetcher = Arc::new(Fetcher::new(&config.import.filtering).map_err(|e| config_error(e.to_string()))?);
        let conversion = match config.import.conversion_output_format.as_deref() {
            None => None,
            Some(name @ ("raw" | "qcow2")) => glint_formats::Format::from_name(name),
            Some(other) => {
                return Err(config_error(format!(
                    "import.conversion_output_format = \"{other}\": Glint converts to \"raw\" or \"qcow2\""
                )));
            }
        };
        let protections = config.images.property_protection_file.as_deref();
        let policy = Policy::load(
            config.auth.policy_file.as_deref(),
            protections.map(|file| (file, config.images.property_protection_rule_format)),
        )?;
        Ok(Deps {
            policy: Arc::new(policy),
            stores,
            staging,
            fetcher,
            cap: config.images.image_size_cap,
            conversion,
            config: Arc::new(config.clone()),
        })
    }
}

/// Every flow Glint runs, by task type.
pub fn registry(deps: Deps) -> Registry {
    Registry::default()
        .with(TaskType::ApiImageImport, Arc::new(ImportFlow::new(deps.clone())))
        .with(TaskType::Import, Arc::new(LegacyImportFlow::new(deps.clone())))
        .with(TaskType::LocationImport, Arc::new(LocationFlow::new(deps)))
}

/// How often a running task's message shows the bytes copied so far.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Bytes a task has moved, shown in its message while it runs. Every byte a flow reads passes
/// through here, which is also where the worker's hand-over cuts it.
#[derive(Clone)]
struct Progress {
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    hand_over: CancellationToken,
}

impl Progress {
    /// Nothing moved yet, for a task run with `ctx`.
    fn new(ctx: &FlowContext) -> Progress {
        Progress { done: Arc::default(), total: Arc::default(), hand_over: ctx.hand_over.clone() }
    }

    /// `body`, counted, and failing once the worker hands its tasks over: the flow then unwinds
    /// as for a source that broke off, removing what it wrote (an early clean end would not).
    fn count(&self, body: ByteStream, total: Option<u64>) -> ByteStream {
        self.total.store(total.unwrap_or(0), Ordering::Relaxed);
        let done = self.done.clone();
        let counted = body.inspect_ok(move |chunk| {
            done.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        });
        Box::pin(futures_util::stream::unfold(Some((counted, self.hand_over.clone())), |state| async move {
            let (mut body, hand_over) = state?;
            tokio::select! {
                biased;
                () = hand_over.cancelled() => {
                    Some((Err(std::io::Error::other("the worker is stopping and hands the task over")), None))
                }
                item = body.next() => item.map(|item| (item, Some((body, hand_over)))),
            }
        }))
    }

    fn message(&self) -> String {
        const MIB: u64 = 1 << 20;
        let (done, total) = (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed));
        if total > 0 {
            format!("Copied {} MiB of {} MiB", done / MIB, total.div_ceil(MIB))
        } else {
            format!("Copied {} MiB", done / MIB)
        }
    }

    /// Runs `work` while showing its progress every few seconds, when it changed.
    async fn around<T>(&self, ctx: &FlowContext, task: &Task, work: impl Future<Output = T>) -> T {
        let mut shown = String::new();
        let report = || {
            let message = self.message();
            let changed = message != shown;
            if changed {
                shown.clone_from(&message);
            }
            async move {
                if changed && let Err(err) = tasks::report_progress(&ctx.db, &task.id, &ctx.worker_id, &message).await {
                    tracing::debug!(task = %task.id, error = %err, "progress report failed");
                }
                ControlFlow::<Infallible>::Continue(())
            }
        };
        let Ok(out) = while_ticking(work, PROGRESS_EVERY, report).await;
        out
    }
}
