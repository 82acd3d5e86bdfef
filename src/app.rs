//! The assembled daemon: [`Application::build`] opens the store (running migrations) and binds
//! the port; [`Application::run_until`] serves and delivers until its shutdown future resolves,
//! then drains in order: stop accepting, finish in-flight requests and deliveries within the
//! grace period, close the store.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::deliver::{AddressPolicy, Deliverer, DeliverySettings, RetrySchedule};
use crate::domain::random_token;
use crate::fault::Fault;
use crate::http::health::Readiness;
use crate::http::{self, HttpState};
use crate::notify::{self, mailer::Mailer};
use crate::service::AppState;
use crate::store::{FailurePolicy, SharedStore, StoreError};
use crate::supervise::{Fatal, Workers};
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
    /// A part of the running daemon failed for good (a dead writer, a worker that panicked, an
    /// HTTP server that stopped on its own): exit non-zero so the supervisor restarts it.
    #[error("stopped because {0}")]
    Failed(String),
}

/// Brings the store's schema up to date (the `migrate` command; `serve` does it at start too).
pub async fn migrate(config: &Config) -> Result<(), AppError> {
    crate::files::private_dir(&config.data_dir).map_err(|source| AppError::Io {
        what: format!("creating data_dir {}", config.data_dir.display()),
        source,
    })?;
    let store =
        crate::store::open(&crate::store::StoreOptions::of(config), Arc::new(crate::clock::SystemClock))
            .await?;
    store.close().await;
    Ok(())
}

/// A daemon that is ready to serve: migrated and bound.
pub struct Application {
    config: Config,
    listener: TcpListener,
    state: AppState,
    deliverer: Arc<Deliverer>,
    replier: Arc<crate::reply::Replier>,
    closer: Closer,
    mailer: Mailer,
    /// Where parts report failures they cannot recover from.
    fatal: Fatal,
}

impl Application {
    /// Opens the store, applies migrations, resolves the admin token and binds the listener.
    pub async fn build(config: Config, clock: SharedClock) -> Result<Application, AppError> {
        crate::files::private_dir(&config.data_dir).map_err(|source| AppError::Io {
            what: format!("creating data_dir {}", config.data_dir.display()),
            source,
        })?;
        let admin_token = match &config.admin_token {
            Some(token) => token.clone(),
            None => generated_admin_token(&config.data_dir)?,
        };
        let store: SharedStore =
            crate::store::open(&crate::store::StoreOptions::of(&config), clock.clone()).await?;
        let config = with_room_for_connections(config);
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
            reject_after: d.reject_after,
            failure: FailurePolicy {
                disable_after: d.disable_after,
                disabled: Arc::new({
                    let url = notice_url.clone();
                    move |n| notify::disabled_email(&url, n)
                }),
                gave_up: Arc::new(move |n| notify::gave_up_email(&notice_url, n)),
            },
            mail_waiting: mail_waiting.clone(),
            addresses: addresses.clone(),
        };
        let mail_waiting_for_people = mail_waiting.clone();
        let mailer = Mailer::new(
            store.clone(),
            clock.clone(),
            config.smtp.url.as_deref(),
            &config.smtp.from,
            mail_waiting,
        )
        .map_err(|e| AppError::Config(e.to_string()))?;
        let fatal = Fatal::default();
        let deliverer =
            Arc::new(Deliverer::new(store.clone(), clock.clone(), settings, wake.clone(), fatal.clone()));
        let public_url: Arc<str> = public_url.into();
        let link_key = crate::domain::LinkKey::derive(&admin_token);
        let (closer, closer_handle) = Closer::new(&store, clock.clone(), public_url.clone(), wake.clone());
        let closer = closer.with_media_links(link_key.clone());
        let vendors = Arc::new(crate::vendors::Vendors::new(config.vendors.clone(), addresses.clone()));
        let replies_waiting = Arc::new(Notify::new());
        let replier = Arc::new(crate::reply::Replier::new(
            store.clone(),
            vendors.clone(),
            clock.clone(),
            public_url.clone(),
            replies_waiting.clone(),
            fatal.clone(),
        ));
        let sso = match &config.oidc {
            Some(oidc) => Some(Arc::new(crate::sso::Sso::new(oidc, &public_url).map_err(AppError::Config)?)),
            None => None,
        };
        let throttle_clock = clock.clone();
        let base = HttpState {
            store,
            clock,
            public_url,
            admin_token: admin_token.into(),
            deliveries_waiting: wake,
            default_timeout: d.timeout.0,
            workspaces: Default::default(),
            workers: Default::default(),
            http: Arc::new(config.http.clone()),
            throttle: Arc::new(crate::http::throttle::Throttle::new(throttle_clock)),
            bodies: Arc::new(crate::http::body::BodyBudget::new(config.http.max_buffered_mib * 1024 * 1024)),
            traffic: Default::default(),
        };
        let state = AppState {
            base,
            closer: closer_handle,
            deliverer: deliverer.clone(),
            addresses,
            vendors,
            replies_waiting,
            link_key,
            mail: config.smtp.url.is_some().then_some(mail_waiting_for_people),
            sso,
        };
        crate::telemetry::prometheus();
        Ok(Application { config, listener, state, deliverer, replier, closer, mailer, fatal })
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

    /// Serves and delivers until `shutdown` resolves, then shuts down in order. Every part runs
    /// under supervision: if one ends before `shutdown` (a worker panicked, the HTTP server
    /// stopped on its own) or the store dies, the daemon shuts down the same way and returns
    /// [`AppError::Failed`], so the process exits non-zero and systemd restarts it.
    pub async fn run_until<F>(self, shutdown: F) -> Result<(), AppError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Application { config, listener, state, deliverer, replier, closer, mailer, fatal } = self;
        let store = state.store.clone();
        let released = store.recover_after_restart().await?;
        if released > 0 {
            info!(deliveries = released, "resuming deliveries interrupted by the last stop");
        }
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let workers = state.workers.clone();
        let mut parts: JoinSet<()> = JoinSet::new();
        let mut names: HashMap<tokio::task::Id, &'static str> = HashMap::new();
        let mut spawn = |name: &'static str, part: futures::future::BoxFuture<'static, ()>| {
            names.insert(parts.spawn(part).id(), name);
        };

        spawn("the delivery worker", {
            let (workers, cancel, tracker) = (workers.clone(), cancel.clone(), tracker.clone());
            Box::pin(async move { workers.delivery.run(deliverer.run(cancel, tracker)).await })
        });
        spawn("the reply worker", {
            let (cancel, tracker) = (cancel.clone(), tracker.clone());
            Box::pin(async move { replier.run(cancel, tracker).await })
        });
        // Windows that ended while the daemon was down are closed first thing.
        spawn("the window closer", {
            let (workers, cancel) = (workers.clone(), cancel.clone());
            Box::pin(async move { workers.closer.run(closer.run(cancel)).await })
        });
        spawn("the mailer", {
            let (workers, cancel) = (workers.clone(), cancel.clone());
            Box::pin(async move { workers.mailer.run(mailer.run(cancel)).await })
        });
        spawn(
            "the retention job",
            Box::pin(crate::retention::retention_job(
                store.clone(),
                state.clock.clone(),
                config.delivery.retention.0,
                cancel.clone(),
            )),
        );

        spawn("the metrics upkeep", Box::pin(crate::telemetry::metrics_upkeep(cancel.clone())));
        spawn(
            "the source traffic counter",
            Box::pin(crate::http::traffic::hand_over(store.clone(), state.traffic.clone(), cancel.clone())),
        );

        let addr = listener.local_addr().ok();
        let listen = addr.map(|a| a.to_string()).unwrap_or_default();
        info!(%listen, public_url = %state.public_url, "chatbundle is serving");
        let mut router = crate::routes::router(state.clone());
        // Test-only: the server stops on its own after its first answer.
        let stop_on_its_own = Arc::new(Notify::new());
        if Fault::Http.armed() {
            let stop = stop_on_its_own.clone();
            router =
                router.layer(axum::middleware::map_response(move |response: axum::response::Response| {
                    stop.notify_one();
                    async move { response }
                }));
        }
        let server_cancel = cancel.clone();
        let limits = config.http.clone();
        spawn(
            "the HTTP server",
            Box::pin(async move {
                let stopped = async move {
                    tokio::select! {
                        _ = server_cancel.cancelled() => {}
                        _ = stop_on_its_own.notified() => {}
                    }
                };
                if let Err(e) = http::server::serve(listener, router, limits, stopped).await {
                    error!(error = %e, "the HTTP server failed");
                }
            }),
        );
        // Migrations have run and the port is bound: tell systemd (Type=notify), and keep its
        // watchdog fed while the daemon is ready (the store commits, the workers run).
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
        if let Some(every) = sd_notify::watchdog_enabled() {
            spawn(
                "the watchdog feeder",
                Box::pin(feed_watchdog(store.clone(), workers.clone(), every / 2, cancel.clone())),
            );
        }

        let failure = tokio::select! {
            _ = shutdown => {
                info!("shutting down");
                None
            }
            cause = fatal.wait() => Some(cause),
            cause = store.died() => Some(cause),
            Some(ended) = parts.join_next_with_id() => Some(match ended {
                Ok((id, ())) => format!("{} stopped on its own", names.get(&id).copied().unwrap_or("a part")),
                Err(e) => format!(
                    "{} {}",
                    names.get(&e.id()).copied().unwrap_or("a part"),
                    if e.is_panic() {
                        format!("panicked: {}", crate::supervise::panic_message(&*e.into_panic()))
                    } else {
                        "was cancelled".to_string()
                    }
                ),
            }),
        };
        if let Some(cause) = &failure {
            error!(%cause, "stopping: a part of the daemon failed");
        }
        cancel.cancel();
        let _ = sd_notify::notify(&[
            NotifyState::Stopping,
            NotifyState::Status("finishing deliveries in flight"),
        ]);

        let grace = config.shutdown.grace.0;
        let drained = tokio::time::timeout(grace, async {
            while parts.join_next().await.is_some() {}
            tracker.close();
            tracker.wait().await;
        })
        .await;
        if drained.is_err() {
            warn!(?grace, "in-flight work did not finish within the grace period; it resumes at next start");
            parts.abort_all();
        }
        store.close().await;
        match failure {
            Some(cause) => Err(AppError::Failed(cause)),
            None => {
                info!("stopped");
                Ok(())
            }
        }
    }
}

/// Raises the soft limit on open files to the hard one (every connection is a file), and keeps
/// `http.max_connections` under what is left once the store and the deliveries have theirs.
fn with_room_for_connections(mut config: Config) -> Config {
    /// Files kept for the store, outgoing deliveries and everything else.
    const RESERVE: u64 = 256;
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!(error = %e, "cannot read or raise the limit on open files");
            return config;
        }
    };
    let room = limit.saturating_sub(RESERVE + config.delivery.concurrency as u64).max(16) as usize;
    if config.http.max_connections > room {
        warn!(
            limit,
            max_connections = room,
            "the limit on open files is low; serving fewer connections at once (set LimitNOFILE)"
        );
        config.http.max_connections = room;
    }
    config
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
            crate::config::strong_enough(&token)
                .map_err(|detail| AppError::Config(format!("{}: {detail}", path.display())))?;
            crate::files::make_private(&path).map_err(io("protecting"))?;
            info!(path = %path.display(), "admin token read from file");
            return Ok(token.trim().to_string());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading")(e)),
    }
    let token = format!("cb_{}", random_token(40));
    // Private whatever the umask, and even if an empty file was there before with looser bits.
    let mut file = crate::files::private_file(&path, true).map_err(io("creating"))?;
    writeln!(file, "{token}").map_err(io("writing"))?;
    info!(path = %path.display(), "generated an admin token; read it from this file");
    Ok(token)
}

/// Pings systemd's watchdog every `every` while the daemon is ready (the store commits, the
/// workers run); a wedged daemon stops pinging and systemd restarts it.
async fn feed_watchdog(
    store: SharedStore,
    workers: Arc<Workers>,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let readiness = Readiness::check(&store, &workers).await;
        if readiness.ready() {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        } else {
            warn!(store = readiness.store.as_deref(), down = ?readiness.down, "not ready; withholding the watchdog ping");
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives while the daemon is starting (or
/// just after it says it is serving) still means an orderly stop rather than sudden death.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        let mut interrupt = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
