//! The `glint` command: parse arguments, load the configuration, hand over to the crates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use glint_core::config::Config;

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
    /// API and workers in one process (the default): SQLite under ./data, no-auth on 127.0.0.1:9292.
    Serve,
    /// The API alone, for deployments that run workers separately.
    Api,
    /// A task worker (needs a shared database and a broker).
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Inspect a disk image: format, virtual size, safety verdict (exit 1 if unsafe, 2 if unreadable).
    Inspect {
        /// The image file.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Operators inspect files anywhere: no configuration, database or runtime needed.
    if let Some(Command::Inspect { file, json }) = &cli.command {
        return inspect(file, *json);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("glint: {err}");
            return ExitCode::from(2);
        }
    };
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
const SCRUB_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let db = glint_core::db::connect(&config.database).await?;
    match command {
        Command::Migrate => {
            glint_core::db::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve | Command::Api => {
            if config.database.migrate_on_start {
                glint_core::db::migrate(&db).await?;
            }
            let stores = glint_core::store::Stores::from_config(&config.storage)?;
            tokio::spawn(glint_core::data::scrub(db.clone(), stores.clone(), SCRUB_INTERVAL));
            let listener = tokio::net::TcpListener::bind(config.server.bind).await?;
            tracing::info!(address = %listener.local_addr()?, "glint API listening");
            glint_api::serve(glint_api::AppState::new(config, db, stores), listener, shutdown_signal()).await?;
            Ok(())
        }
        Command::Worker => {
            if config.database.migrate_on_start {
                glint_core::db::migrate(&db).await?;
            }
            // The runtime is ready; the import flows it would run, and the broker transport a
            // separate worker process needs, are not built yet.
            Err(glint_worker::Error::NoFlows.into())
        }
        Command::Inspect { .. } => {
            unreachable!("inspect is handled in main, before the configuration loads")
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
            if report.is_safe() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("glint: {err}");
            ExitCode::from(2)
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM, so both an operator and a service manager stop us cleanly.
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
