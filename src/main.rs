//! The `glint` command: parse arguments, load the configuration, hand over to the crates.

mod cache_manage;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use glint_core::config::{Config, LogConfig, LogFormat, TasksConfig, Transport};
use glint_core::queue::{MemoryQueue, RabbitQueue, TaskQueue};
use glint_core::store::{Staging, Stores, SweepLimits, scrub};
use glint_worker::flows::Deps;
use tracing_subscriber::EnvFilter;

/// Glint: an OpenStack Image (Glance v2) compatible image service.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see etc/glint.toml); GLINT__SECTION__KEY variables override it.
    #[arg(long, global = true, env = "GLINT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// API and task workers in one process (the default): SQLite under ./data, no-auth on 127.0.0.1:9292.
    Serve,
    /// The API alone, for deployments that run workers separately (tasks.transport = "rabbitmq").
    Api,
    /// A task worker: runs imports woken through RabbitMQ (needs the shared database and stores).
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// The metadata definitions catalog: load or export Glance-format definition files.
    Metadefs {
        #[command(subcommand)]
        action: MetadefsAction,
    },
    /// The authorization policy: Glance's defaults with `[auth] policy_file` on top.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// One API node's image cache, through its cache API (as glance-cache-manage; admin only by default).
    Cache {
        /// The API node (each node has its own cache: not a load balancer).
        #[arg(long, env = "OS_IMAGE_URL", default_value = "http://127.0.0.1:9292")]
        url: String,
        /// A Keystone token for the API (not needed in no-auth mode).
        #[arg(long, env = "OS_AUTH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        action: cache_manage::CacheAction,
    },
    /// Inspect a disk image: format, virtual size, safety verdict (exit 1 if unsafe, 2 if unreadable).
    Inspect {
        /// The image file.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert a disk image (raw, qcow2, vmdk, vhd, vhdx, vdi) to raw or qcow2, in process; the source
    /// is inspected first and refused as an import would refuse it (exit 1 if refused, 2 if unreadable).
    Convert {
        /// The image to convert.
        source: PathBuf,
        /// Where to write the converted image; it must not exist yet.
        dest: PathBuf,
        /// The format to write.
        #[arg(long, value_parser = ["raw", "qcow2"])]
        output_format: String,
        /// The source's disk_format, as an import would declare it; detected when omitted.
        #[arg(long)]
        source_format: Option<String>,
    },
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Print every effective rule in the policy file format, overridden ones marked (checks the
    /// policy and property protection files as start-up does).
    Show,
}

#[derive(Subcommand)]
enum MetadefsAction {
    /// Load every *.json definition file of DIR (or the file DIR); re-loading updates, never duplicates.
    Load {
        /// A directory of definition files (Glance's etc/metadefs format), or one file.
        dir: PathBuf,
    },
    /// Write the catalog into DIR, one definition file per namespace.
    Export {
        /// The directory to write to (created if missing).
        dir: PathBuf,
    },
}

/// The process log on standard output, as `[log]` and `RUST_LOG` say.
fn init_logging(log: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) => EnvFilter::try_new(&from_env).map_err(|e| format!("RUST_LOG '{from_env}': {e}"))?,
        Err(_) => EnvFilter::try_new(&log.level).map_err(|e| format!("log.level '{}': {e}", log.level))?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log.format {
        // Colour codes are noise in a file or a collector; NO_COLOR is the usual way to ask for none.
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
            .init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Operators inspect files anywhere: no configuration, database or runtime needed.
    if let Some(Command::Inspect { file, json }) = &cli.command {
        return inspect(file, *json);
    }
    if let Some(Command::Convert { source, dest, output_format, source_format }) = &cli.command {
        return convert(source, dest, output_format, source_format.as_deref());
    }
    // A client of the API: no configuration or database of its own.
    if let Some(Command::Cache { url, token, action }) = &cli.command {
        return match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(cache_manage::run(url, token.clone(), action)),
            Err(err) => {
                eprintln!("glint: cannot start the runtime: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("glint: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Policy { action: PolicyAction::Show }) = &cli.command {
        return show_policy(&config);
    }
    if let Err(err) = init_logging(&config.log) {
        eprintln!("glint: {err}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("glint: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("glint: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// How often data of deleted images that a store failed to remove is retried.
const SCRUB_INTERVAL: Duration = Duration::from_secs(60);

/// How long a stopping process waits for its worker beyond `[server] shutdown_timeout`: the
/// worker hands its tasks back by then, this only bounds a database that stopped answering.
const WORKER_STOP_MARGIN: Duration = Duration::from_secs(15);

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let db = glint_core::db::connect(&config.database).await?;
    if matches!(command, Command::Migrate) {
        glint_core::db::migrate(&db).await?;
        tracing::info!("migrations applied");
        return load_default_metadefs(glint_core::metadefs::catalog::load_defaults_if_empty(&db).await?);
    }
    if config.database.migrate_on_start {
        glint_core::db::migrate(&db).await?;
    }
    match &command {
        Command::Metadefs { action: MetadefsAction::Load { dir } } => {
            let report = glint_core::metadefs::catalog::load_dir(&db, dir).await?;
            println!("loaded {} files: {} rows added, {} updated", report.files, report.inserted, report.updated);
            return Ok(());
        }
        Command::Metadefs { action: MetadefsAction::Export { dir } } => {
            let count = glint_core::metadefs::catalog::export_dir(&db, dir).await?;
            println!("exported {count} namespaces to {}", dir.display());
            return Ok(());
        }
        Command::Serve => load_default_metadefs(glint_core::metadefs::catalog::load_defaults_if_empty(&db).await?)?,
        _ => {}
    }
    let queue = task_queue(&command, &config.tasks)?;
    let lease = Duration::from_secs(config.tasks.lease);
    let stores = Stores::from_config(&config.storage, lease)?;
    let stopping = Stopping::on_signal();
    if matches!(command, Command::Serve | Command::Api | Command::Worker) {
        // At start-up too: a crash-looping process must not leave its partial writes behind.
        let staging = Staging::from_config(&config.import)?;
        let limits = SweepLimits::new(&config.storage, lease, scrub::UPLOAD_STALE_AFTER);
        let every = Duration::from_secs(config.storage.sweep_interval);
        tokio::spawn(scrub::sweep(db.clone(), stores.clone(), staging, limits, every));
        tokio::spawn(stores.clone().report_health());
    }
    if let Some(bind) = config.metrics.bind.filter(|_| config.metrics.enabled) {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        tracing::info!(address = %listener.local_addr()?, "metrics listening");
        tokio::spawn(glint_api::metrics::serve(db.clone(), listener, stopping.wait()));
    }
    let relay = tokio::spawn(glint_worker::relay(
        db.clone(),
        queue.clone(),
        Duration::from_secs(config.tasks.relay_interval),
        Duration::from_secs(config.tasks.republish_after),
        stopping.wait(),
    ));
    let worker_deadline = Duration::from_secs(config.server.shutdown_timeout) + WORKER_STOP_MARGIN;
    let worker = match command {
        Command::Serve | Command::Worker => {
            let flows = glint_worker::flows::registry(Deps::from_config(&config, stores.clone())?);
            let settings = glint_worker::Settings::from_config(&config);
            tracing::info!(worker = %settings.worker_id, concurrency = settings.prefetch, "task worker started");
            Some(tokio::spawn(glint_worker::run(db.clone(), queue.clone(), flows, settings, stopping.wait())))
        }
        _ => None,
    };
    if matches!(command, Command::Serve | Command::Api) {
        let staging = Staging::from_config(&config.import)?;
        tokio::spawn(scrub::scrub(db.clone(), stores.clone(), staging, SCRUB_INTERVAL));
        let listener = tokio::net::TcpListener::bind(config.server.bind).await?;
        tracing::info!(address = %listener.local_addr()?, "glint API listening");
        if config.metrics.enabled && !config.metrics.on_api_port(config.server.bind) {
            tracing::info!("GET /metrics is not served on a non-loopback API port (see metrics.bind)");
        }
        let state = glint_api::AppState::new(config, db, stores, queue)?;
        glint_api::serve(state, listener, stopping.wait()).await?;
    } else {
        stopping.wait().await;
    }
    // The worker has been stopping since the signal, alongside the API's drain.
    if let Some(worker) = worker {
        match tokio::time::timeout(worker_deadline, worker).await {
            Ok(joined) => joined??,
            Err(_) => tracing::error!("the worker did not stop; its tasks are taken over when their leases expire"),
        }
    }
    relay.await?;
    Ok(())
}

/// Reports the loading of Glint's default metadefs catalog into a fresh installation (a
/// catalog that has anything in it is left alone, so an operator's deletions stay deleted).
fn load_default_metadefs(report: Option<glint_core::metadefs::catalog::LoadReport>) -> anyhow::Result<()> {
    if let Some(report) = report {
        tracing::info!(namespaces = report.files, rows = report.inserted, "default metadefs catalog loaded");
    }
    Ok(())
}

/// The task transport the configuration names, checked against what `command` runs.
fn task_queue(command: &Command, cfg: &TasksConfig) -> anyhow::Result<Arc<dyn TaskQueue>> {
    match (cfg.transport, command) {
        (Transport::Memory, Command::Serve) => Ok(Arc::new(MemoryQueue::new())),
        (Transport::Memory, _) => anyhow::bail!(
            "tasks.transport = \"memory\" only reaches workers inside `glint serve`; \
             separate api and worker processes need tasks.transport = \"rabbitmq\""
        ),
        (Transport::Rabbitmq, _) => {
            Ok(Arc::new(RabbitQueue::new(&cfg.broker_url, &cfg.queue_name).map_err(anyhow::Error::msg)?))
        }
    }
}

/// Tells every part of the process that it is time to stop.
#[derive(Clone)]
struct Stopping(tokio::sync::watch::Receiver<bool>);

impl Stopping {
    /// Fires on Ctrl-C or SIGTERM, so both an operator and a service manager stop us cleanly.
    fn on_signal() -> Stopping {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        Stopping(rx)
    }

    /// Resolves once stopping has begun.
    fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }
}

fn show_policy(config: &Config) -> ExitCode {
    let protections = config.images.property_protection_file.as_deref();
    let loaded = glint_core::policy::Policy::load(
        config.auth.policy_file.as_deref(),
        protections.map(|file| (file, config.images.property_protection_rule_format)),
    );
    match loaded {
        Ok(policy) => {
            print!("{}", policy.show());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("glint: {err}");
            ExitCode::from(2)
        }
    }
}

fn inspect(file: &Path, json: bool) -> ExitCode {
    match glint_formats::inspect_file(file) {
        Ok(report) => {
            if json {
                println!("{:#}", report.to_json());
            } else {
                print!("{report}");
            }
            if report.is_safe() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(err) => {
            eprintln!("glint: {err}");
            ExitCode::from(2)
        }
    }
}

/// `glint convert`: the import flow's conversion, on files. A source whose format is not given
/// is converted as what it is (a disk with a partition table as raw).
fn convert(source: &Path, dest: &Path, output_format: &str, source_format: Option<&str>) -> ExitCode {
    use glint_formats::{Format, FormatError};
    let declared = match source_format {
        Some(name) => Format::from_name(name).ok_or_else(|| format!("unknown disk format {name}")),
        None => match glint_formats::inspect_file(source) {
            Ok(report) => match report.format {
                Some(Format::Gpt) => Ok(Format::Raw),
                Some(format) => Ok(format),
                None => Err(FormatError::MultipleFormats { formats: report.matched }.to_string()),
            },
            Err(err) => {
                eprintln!("glint: {err}");
                return ExitCode::from(2);
            }
        },
    };
    let output = Format::from_name(output_format);
    let (declared, output) = match (declared, output) {
        (Ok(declared), Some(output)) => (declared, output),
        (Err(message), _) => {
            eprintln!("glint: {}: {message}", source.display());
            return ExitCode::FAILURE;
        }
        (_, None) => {
            eprintln!("glint: unknown output format {output_format}");
            return ExitCode::from(2);
        }
    };
    if dest.exists() {
        eprintln!("glint: {} exists already", dest.display());
        return ExitCode::from(2);
    }
    match glint_formats::convert(source, declared, dest, output) {
        Ok(report) => {
            println!(
                "{} ({declared}) -> {} ({output}): virtual size {} bytes, {} bytes written",
                source.display(),
                dest.display(),
                report.virtual_size,
                report.size
            );
            ExitCode::SUCCESS
        }
        Err(err @ FormatError::Io { .. }) => {
            eprintln!("glint: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("glint: {}: {err}", source.display());
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
