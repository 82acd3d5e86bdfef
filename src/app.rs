//! The assembled daemon: [`Application::build`] opens the store (running migrations) and binds
//! the port; [`Application::run_until`] serves and delivers until its shutdown future resolves,
//! then drains in order: stop accepting, finish in-flight requests and deliveries within the
//! grace period, close the store.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::api::health::Workers;
use crate::api::{self, AppState};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::deliver::{AddressPolicy, Deliverer, DeliverySettings, RetrySchedule};
use crate::domain::random_token;
use crate::notify::{self, mailer::Mailer};
use crate::store::sqlite::SqliteStore;
use crate::store::{DisablePolicy, SharedStore, StoreError};
use crate::window::closer::Closer;

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A setting that only proved unusable when put to use; exit code 2 like any bad config.
    #[error("bad configuration: {0}")]
    Config(String),
}

/// A daemon that is ready to serve: migrated and bound.
pub struct Application {
    config: Config,
    listener: TcpListener,
    state: AppState,
    deliverer: Arc<Deliverer>,
    closer: Closer,
    mailer: Mailer,
}

impl Application {
    /// Opens the store, applies migrations, resolves the admin token and binds the listener.
    pub async fn build(config: Config, clock: SharedClock) -> Result<Application, AppError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| AppError::Io {
            what: format!("creating data_dir {}", config.data_dir.display()),
            source,
        })?;
        let admin_token = match &config.admin_token {
            Some(token) => token.clone(),
            None => generated_admin_token(&config.data_dir)?,
        };
        let store: SharedStore = Arc::new(SqliteStore::open(&config.database_url(), clock.clone()).await?);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AppError::Bind { addr: config.listen, source })?;
        let local = listener.local_addr().map_err(|source| AppError::Bind { addr: config.listen, source })?;
        // With no public_url configured, links point at the address actually bound (port 0 in tests).
        let public_url = match &config.public_url {
            Some(_) => config.public_url(),
            None => format!("http://{local}"),
        };
        let wake = Arc::new(Notify::new());
        let mail_waiting = Arc::new(Notify::new());
        let notice_url = public_url.clone();
        let addresses = Arc::new(AddressPolicy { allow: config.delivery.allow_private.clone() });
        let d = &config.delivery;
        let settings = DeliverySettings {
            default_timeout: d.timeout.0,
            concurrency: d.concurrency,
            rate_per_webhook: NonZeroU32::new(d.rate_per_webhook),
            schedule: RetrySchedule::new(d.retry_schedule.iter().map(|h| h.0).collect()),
            retention: d.retention.0,
            disable: DisablePolicy {
                disable_after: d.disable_after,
                notice: Arc::new(move |n| notify::disabled_email(&notice_url, n)),
            },
            mail_waiting: mail_waiting.clone(),
            addresses: addresses.clone(),
        };
        let mailer = Mailer::new(
            store.clone(),
            clock.clone(),
            config.smtp.url.as_deref(),
            &config.smtp.from,
            mail_waiting,
        )
        .map_err(|e| AppError::Config(e.to_string()))?;
        let deliverer = Arc::new(Deliverer::new(store.clone(), clock.clone(), settings, wake.clone()));
        let public_url: Arc<str> = public_url.into();
        let (closer, closer_handle) =
            Closer::new(store.clone(), clock.clone(), public_url.clone(), wake.clone());
        let state = AppState {
            store,
            clock,
            public_url,
            admin_token: admin_token.into(),
            deliveries_waiting: wake,
            default_timeout: d.timeout.0,
            workspaces: Default::default(),
            closer: closer_handle,
            deliverer: deliverer.clone(),
            addresses,
            workers: Default::default(),
        };
        crate::telemetry::prometheus();
        Ok(Application { config, listener, state, deliverer, closer, mailer })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn admin_token(&self) -> &str {
        &self.state.admin_token
    }

    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    pub fn store(&self) -> SharedStore {
        self.state.store.clone()
    }

    /// Serves and delivers until `shutdown` resolves, then shuts down in order.
    pub async fn run_until<F>(self, shutdown: F) -> Result<(), AppError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Application { config, listener, state, deliverer, closer, mailer } = self;
        let store = state.store.clone();
        let released = store.recover_after_restart().await?;
        if released > 0 {
            info!(deliveries = released, "resuming deliveries interrupted by the last stop");
        }
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (cancel_for_worker, tracker_for_worker) = (cancel.clone(), tracker.clone());
        let workers = state.workers.clone();
        let worker = tokio::spawn(async move {
            Workers::running(&workers.delivery, deliverer.run(cancel_for_worker, tracker_for_worker)).await
        });
        // Windows that ended while the daemon was down are closed first thing.
        let workers = state.workers.clone();
        let cancel_for_closer = cancel.clone();
        let closing =
            tokio::spawn(
                async move { Workers::running(&workers.closer, closer.run(cancel_for_closer)).await },
            );
        let mailing = tokio::spawn(mailer.run(cancel.clone()));
        let pruning = tokio::spawn(crate::activity::retention_job(
            store.clone(),
            state.clock.clone(),
            config.delivery.retention.0,
            cancel.clone(),
        ));

        let addr = listener.local_addr().ok();
        let listen = addr.map(|a| a.to_string()).unwrap_or_default();
        info!(%listen, public_url = %state.public_url, "chatbundle is serving");
        let server = axum::serve(listener, api::router(state))
            .with_graceful_shutdown(cancel.clone().cancelled_owned());
        let mut server = tokio::spawn(async move { server.await });
        // Migrations have run and the port is bound: tell systemd (Type=notify), and keep its
        // watchdog fed while the database answers.
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
        let watchdog = sd_notify::watchdog_enabled()
            .map(|every| tokio::spawn(feed_watchdog(store.clone(), every / 2, cancel.clone())));
        tokio::select! {
            _ = shutdown => info!("shutting down"),
            result = &mut server => {
                warn!(?result, "the HTTP server stopped on its own; shutting down");
            }
        }
        cancel.cancel();
        let _ = sd_notify::notify(&[
            NotifyState::Stopping,
            NotifyState::Status("finishing deliveries in flight"),
        ]);
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }

        let grace = config.shutdown.grace.0;
        let drained = tokio::time::timeout(grace, async {
            let _ = (&mut server).await;
            let _ = closing.await;
            let _ = mailing.await;
            let _ = pruning.await;
            let _ = worker.await;
            tracker.close();
            tracker.wait().await;
        })
        .await;
        if drained.is_err() {
            warn!(?grace, "in-flight work did not finish within the grace period; it resumes at next start");
            server.abort();
        }
        store.close().await;
        info!("stopped");
        Ok(())
    }
}

/// Reads `<data_dir>/admin-token`, creating it (mode 0600) with a random token on first start.
fn generated_admin_token(data_dir: &Path) -> Result<String, AppError> {
    let path: PathBuf = data_dir.join("admin-token");
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| AppError::Io { what, source }
    };
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => {
            info!(path = %path.display(), "admin token read from file");
            return Ok(token.trim().to_string());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading")(e)),
    }
    let token = format!("cb_{}", random_token(40));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(io("creating"))?;
    writeln!(file, "{token}").map_err(io("writing"))?;
    info!(path = %path.display(), "generated an admin token; read it from this file");
    Ok(token)
}

/// Pings systemd's watchdog every `every` while the database answers; a wedged daemon stops
/// pinging and systemd restarts it.
async fn feed_watchdog(store: SharedStore, every: std::time::Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::time::timeout(every, store.ping()).await {
            Ok(Ok(())) => {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
            _ => warn!("the database did not answer; withholding the watchdog ping"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
