//! The command line: `serve`, `migrate`, `copy-store`, `check-config`, `print-default-config`, and
//! `workspace …` / `webhook …`, which mirror the admin API against the running daemon ([`remote`]).
//! Exit codes: 0 success, 2 bad usage, bad configuration or input the API refused, 1 failure at
//! run time.

pub mod remote;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::{Application, shutdown_signal};
use crate::clock::SystemClock;
use crate::config::{Config, Sources};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "chatbundle",
    version,
    about = "Buffers chat messages per chat and delivers them to CRMs and Zapier"
)]
pub struct Cli {
    /// TOML configuration file (as a service: /etc/chatbundle/config.toml).
    #[arg(long, global = true, env = "CHATBUNDLE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Address to listen on, overriding the configuration.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Copy a stopped daemon's SQLite store, everything in it, into an empty PostgreSQL database.
    CopyStore {
        /// The SQLite store, e.g. sqlite:///var/lib/chatbundle/chatbundle.db (its daemon stopped).
        #[arg(long, value_name = "URL")]
        from: String,
        /// The PostgreSQL database, e.g. postgres://chatbundle@db.internal/chatbundle (empty).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Validate the configuration and print it with every default filled in.
    CheckConfig,
    /// Print the built-in defaults as a configuration file.
    PrintDefaultConfig,
    /// Workspaces, through the running daemon's admin API.
    Workspace {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::WorkspaceCommand,
    },
    /// Webhooks, through the running daemon's admin API.
    Webhook {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::WebhookCommand,
    },
    /// Sources (connected channels), through the running daemon's admin API.
    Source {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::SourceCommand,
    },
    /// Chats and their transcript links, through the running daemon's admin API.
    Chat {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::ChatCommand,
    },
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

/// Parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let listen = match &cli.command {
        Command::Serve { listen } => *listen,
        _ => None,
    };
    if let Command::PrintDefaultConfig = cli.command {
        print!("{}", Config::default().to_toml());
        return ExitCode::SUCCESS;
    }
    let sources = Sources { file: cli.config.clone(), listen };
    let config = match Config::load(&sources) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("chatbundle: bad configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::CheckConfig = cli.command {
        println!("# configuration is valid; effective values:");
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Command::Workspace { .. }
    | Command::Webhook { .. }
    | Command::Source { .. }
    | Command::Chat { .. } = cli.command
    {
        return remote_command(config, cli.command);
    }
    telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chatbundle: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { .. } => serve(config).await,
            Command::Migrate => migrate(config).await,
            Command::CopyStore { from, to } => copy_store(config, from, to).await,
            Command::CheckConfig
            | Command::PrintDefaultConfig
            | Command::Workspace { .. }
            | Command::Webhook { .. }
            | Command::Source { .. }
            | Command::Chat { .. } => unreachable!("handled above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if matches!(e.downcast_ref::<crate::app::AppError>(), Some(crate::app::AppError::Config(_)))
                || matches!(
                    e.downcast_ref::<crate::store::copy::CopyError>(),
                    Some(crate::store::copy::CopyError::Refused(_))
                ) =>
        {
            eprintln!("chatbundle: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("chatbundle: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn remote_command(config: Config, command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chatbundle: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let outcome = runtime.block_on(async {
        match command {
            Command::Workspace { remote, command } => remote::workspace(&config, &remote, command).await,
            Command::Webhook { remote, command } => remote::webhook(&config, &remote, command).await,
            Command::Source { remote, command } => remote::source(&config, &remote, command).await,
            Command::Chat { remote, command } => remote::chat(&config, &remote, command).await,
            _ => unreachable!("only remote commands come here"),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("chatbundle: {}", failure.message);
            ExitCode::from(if failure.bad_input { EXIT_CONFIG } else { EXIT_RUNTIME })
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let app = Application::build(config, Arc::new(SystemClock)).await?;
    app.run_until(shutdown).await?;
    Ok(())
}

async fn copy_store(config: Config, from: String, to: String) -> anyhow::Result<()> {
    use crate::store::copy::copy_store;
    let options = crate::store::StoreOptions { url: to, max_connections: config.database.max_connections };
    match copy_store(&from, &options, Arc::new(SystemClock)).await {
        Ok(copied) => {
            for (table, rows) in &copied.tables {
                println!("{table:<12} {rows:>10} rows");
            }
            println!(
                "copied into {}; start the daemons with that database_url",
                crate::domain::masked_url(&options.url)
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let store = crate::store::open(&config.store_options(), Arc::new(SystemClock)).await?;
    store.close().await;
    println!("migrations applied to {}", crate::domain::masked_url(&config.database_url()));
    Ok(())
}
