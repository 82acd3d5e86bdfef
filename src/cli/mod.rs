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

use crate::app::{AppError, Application, shutdown_signal};
use crate::clock::SystemClock;
use crate::config::{Config, Sources};
use crate::store::copy::CopyError;
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
    /// A workspace's members (people who sign in to the page), through the running daemon's admin
    /// API: `member add` prints the invitation link, the way to start without SMTP.
    Member {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::MemberCommand,
    },
    /// The instance's users (operators), through the running daemon's admin API: `user add EMAIL
    /// --operator` prints a link where they choose a password.
    User {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::UserCommand,
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
const EXIT_USAGE: u8 = 2;

/// Why a command failed, which decides the exit code: bad usage, configuration or input (2), or
/// a failure at run time (1).
#[derive(Debug)]
enum Failure {
    Usage(String),
    Runtime(String),
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Failure {
        match e {
            AppError::Config(_) => Failure::Usage(e.to_string()),
            e => Failure::Runtime(e.to_string()),
        }
    }
}

impl From<CopyError> for Failure {
    fn from(e: CopyError) -> Failure {
        match e {
            CopyError::Refused(_) => Failure::Usage(e.to_string()),
            CopyError::Store(_) => Failure::Runtime(e.to_string()),
        }
    }
}

impl From<remote::Failure> for Failure {
    fn from(e: remote::Failure) -> Failure {
        if e.bad_input { Failure::Usage(e.message) } else { Failure::Runtime(e.message) }
    }
}

/// Parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = cli.config;
    let outcome = match cli.command {
        Command::Serve { listen } => serve(file, listen),
        Command::Migrate => migrate(file),
        Command::CopyStore { from, to } => copy_store(file, from, to),
        Command::CheckConfig => check_config(file),
        Command::PrintDefaultConfig => print_default_config(),
        Command::Workspace { remote, command } => workspace(file, remote, command),
        Command::Webhook { remote, command } => webhook(file, remote, command),
        Command::Source { remote, command } => source(file, remote, command),
        Command::Chat { remote, command } => chat(file, remote, command),
        Command::Member { remote, command } => member(file, remote, command),
        Command::User { remote, command } => user(file, remote, command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("chatbundle: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Runtime(message)) => {
            tracing::error!("{message}");
            eprintln!("chatbundle: {message}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// The configuration from the file, the environment and `listen`.
fn load(file: Option<PathBuf>, listen: Option<SocketAddr>) -> Result<Config, Failure> {
    Config::load(&Sources { file, listen }).map_err(|e| Failure::Usage(format!("bad configuration: {e}")))
}

/// A runtime for the daemon's commands, with logging set up as configured (and traces exported
/// for `serve` alone, as long as the [`telemetry::Tracing`] lives).
fn daemon_runtime(
    config: &Config,
    traced: bool,
) -> Result<(tokio::runtime::Runtime, telemetry::Tracing), Failure> {
    let untraced = crate::config::TelemetryConfig::default();
    let tracing = telemetry::init(config.log_format, if traced { &config.telemetry } else { &untraced });
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))?;
    Ok((runtime, tracing))
}

/// A small runtime for the commands that call the running daemon's API.
fn client_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))
}

fn serve(file: Option<PathBuf>, listen: Option<SocketAddr>) -> Result<(), Failure> {
    let config = load(file, listen)?;
    // Dropped when serving has ended: the spans still buffered are sent then.
    let (runtime, _tracing) = daemon_runtime(&config, true)?;
    runtime.block_on(async {
        let shutdown = shutdown_signal();
        let app = Application::build(config, Arc::new(SystemClock)).await?;
        app.run_until(shutdown).await
    })?;
    Ok(())
}

fn migrate(file: Option<PathBuf>) -> Result<(), Failure> {
    let config = load(file, None)?;
    let (runtime, _tracing) = daemon_runtime(&config, false)?;
    runtime.block_on(crate::app::migrate(&config))?;
    println!("migrations applied to {}", crate::domain::masked_url(&config.database_url()));
    Ok(())
}

fn copy_store(file: Option<PathBuf>, from: String, to: String) -> Result<(), Failure> {
    let config = load(file, None)?;
    let (runtime, _tracing) = daemon_runtime(&config, false)?;
    let options = crate::store::StoreOptions { url: to, max_connections: config.database.max_connections };
    let copied = runtime.block_on(crate::store::copy::copy_store(&from, &options, Arc::new(SystemClock)))?;
    for (table, rows) in &copied.tables {
        println!("{table:<12} {rows:>10} rows");
    }
    println!(
        "copied into {}; start the daemons with that database_url",
        crate::domain::masked_url(&options.url)
    );
    Ok(())
}

fn check_config(file: Option<PathBuf>) -> Result<(), Failure> {
    let config = load(file, None)?;
    println!("# configuration is valid; effective values:");
    print!("{}", config.to_toml());
    Ok(())
}

fn print_default_config() -> Result<(), Failure> {
    print!("{}", Config::default().to_toml());
    Ok(())
}

fn workspace(
    file: Option<PathBuf>,
    remote: remote::Remote,
    command: remote::WorkspaceCommand,
) -> Result<(), Failure> {
    let config = load(file, None)?;
    Ok(client_runtime()?.block_on(remote::workspace(&config, &remote, command))?)
}

fn webhook(
    file: Option<PathBuf>,
    remote: remote::Remote,
    command: remote::WebhookCommand,
) -> Result<(), Failure> {
    let config = load(file, None)?;
    Ok(client_runtime()?.block_on(remote::webhook(&config, &remote, command))?)
}

fn source(
    file: Option<PathBuf>,
    remote: remote::Remote,
    command: remote::SourceCommand,
) -> Result<(), Failure> {
    let config = load(file, None)?;
    Ok(client_runtime()?.block_on(remote::source(&config, &remote, command))?)
}

fn member(
    file: Option<PathBuf>,
    remote: remote::Remote,
    command: remote::MemberCommand,
) -> Result<(), Failure> {
    let config = load(file, None)?;
    Ok(client_runtime()?.block_on(remote::member(&config, &remote, command))?)
}

fn user(file: Option<PathBuf>, remote: remote::Remote, command: remote::UserCommand) -> Result<(), Failure> {
    let config = load(file, None)?;
    Ok(client_runtime()?.block_on(remote::user(&config, &remote, command))?)
}

fn chat(file: Option<PathBuf>, remote: remote::Remote, command: remote::ChatCommand) -> Result<(), Failure> {
    let config = load(file, None)?;
    Ok(client_runtime()?.block_on(remote::chat(&config, &remote, command))?)
}
