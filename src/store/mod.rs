//! The store seam. Every byte of SQL lives behind the traits of this module, each shaped by the
//! part of the daemon that calls it:
//!
//! | trait | who calls it |
//! |---|---|
//! | [`WorkspaceStore`] | the admin API and page: workspaces, their settings and counts |
//! | [`WebhookStore`] | the admin API and page: webhooks |
//! | [`SourceStore`] | the admin API (sources) and the inbound routes (finding a source) |
//! | [`IngestStore`] | ingest: one inbound request, stored whole |
//! | [`WindowStore`] | the window closer: which webhooks bundle, and closing their windows |
//! | [`ConversationStore`] | the window closer: open conversations, and closing them |
//! | [`DeliveryQueue`] | the delivery worker: claims, attempts, test sends |
//! | [`DeliveryLog`] | the admin API and page: a webhook's deliveries, resends |
//! | [`Outbox`] | the mailer |
//! | [`ActivityLog`] | the admin API and page (the log), and the retention job |
//! | [`ChatStore`] | the admin API and page (chats), transcripts, test sends |
//! | [`ReplayStore`] | the replay endpoint, and the closer (which plans replays) |
//! | [`ReplyStore`] | the reply endpoint (status, idempotency) and the reply worker |
//! | [`SessionStore`] | the closer (lapsed reply windows) and test sends (a chat's session) |
//! | [`WebSessions`] | the web page's sign-in |
//! | [`Health`] | `/readyz`, the watchdog, `/metrics` |
//! | [`Lifecycle`] | the application: start, supervision, shutdown |
//!
//! One struct may implement them all ([`sqlite::SqliteStore`] and [`postgres::PgStore`] do);
//! [`Store`] is that whole, and [`connect`] picks the implementation from `database_url`. The SQL
//! they share lives in `rows` (row mapping), `rewindow` (what a settings change does to
//! windows) and `merge` (ingest requests merged and turned into deliveries). The guarantees an implementation
//! must keep are written on the traits, and `tests/spine/conformance.rs` checks each of them
//! against every implementation.

mod access;
mod activity;
mod chats;
mod conversations;
pub mod copy;
mod ingest;
mod merge;
mod outbox;
pub mod payload;
mod people;
pub mod postgres;
mod queue;
mod replays;
mod replies;
mod rewindow;
mod sessions;
mod sources;
mod sql;
pub mod sqlite;
mod webhooks;
mod windows;
mod workspaces;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

pub use access::*;
pub use activity::*;
pub use chats::*;
pub use conversations::*;
pub use ingest::*;
pub use outbox::*;
pub use people::*;
pub use queue::*;
pub use replays::*;
pub use replies::*;
pub use sessions::*;
pub use sources::*;
pub use webhooks::*;
pub use windows::*;
pub use workspaces::*;

use crate::clock::SharedClock;

/// Why the store could not do what was asked. Callers answer 503 for [`StoreError::Unavailable`]
/// and [`StoreError::Closed`]: the request may be retried, and nothing of it was committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed (a full disk, a lost connection, a broken file); the
    /// message is the database's own.
    #[error("the store cannot do this now: {0}")]
    Unavailable(Arc<dyn std::error::Error + Send + Sync>),
    /// The schema could not be brought up to this version.
    #[error("the store's schema could not be migrated: {0}")]
    Migrate(Arc<dyn std::error::Error + Send + Sync>),
    #[error("the store is shutting down")]
    Closed,
    /// Another daemon holds a store that only one may use at a time.
    #[error("{0} is in use by another chatbundle process")]
    InUse(String),
    /// `database_url` names nothing this build can open.
    #[error("database_url: {0}")]
    Unsupported(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Readiness: whether the store can commit now, and what `/metrics` reads from it.
#[async_trait]
pub trait Health: Send + Sync {
    /// Commits a small write through the same path as every other write. `Ok` means a write
    /// committed now would be durable; an `Err` says why not (a full disk, a lost database).
    async fn probe_write(&self) -> StoreResult<()>;
    /// The stored state behind the gauges of `/metrics`.
    async fn gauges(&self) -> StoreResult<Gauges>;
}

/// Stored state the metrics report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub deliveries_pending: u64,
    /// When the oldest waiting delivery was created.
    pub oldest_pending: Option<DateTime<Utc>>,
    pub webhooks_disabled: u64,
    pub emails_pending: u64,
}

/// Start and stop.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Called once at start, before any claim: makes deliveries that were in flight when this
    /// daemon last stopped claimable again, where the store can know that safely (a store shared
    /// by several daemons cannot, and lets their leases run out). Returns how many.
    async fn recover_after_restart(&self) -> StoreResult<u64>;
    /// Resolves, with the cause, if the store stops being able to work at all (its writer died):
    /// the daemon must then exit so that its supervisor restarts it. Never resolves otherwise.
    fn died(&self) -> BoxFuture<'static, String>;
    /// Finishes pending writes and closes connections.
    async fn close(&self);
}

/// The signed-in sessions of the web page.
#[async_trait]
pub trait WebSessions: Send + Sync {
    /// Records a session of `user` (`None`: signed in with the admin token) until `expires_at`.
    async fn start_web_session(
        &self,
        id: &str,
        expires_at: DateTime<Utc>,
        user: Option<&crate::domain::UserId>,
    ) -> StoreResult<()>;
    /// Whose session it is, if it exists and has not expired by `now`: `Some(None)` for the
    /// admin token's, `Some(Some(user))` for a user's. A session that was ended is never alive
    /// again.
    async fn web_session_alive(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Option<crate::domain::UserId>>>;
    /// Ends a session (sign-out).
    async fn end_web_session(&self, id: &str) -> StoreResult<()>;
}

/// Everything a store provides: what the application holds and hands to each part, which sees
/// it through the narrow trait it needs.
pub trait Store:
    AccessStore
    + PeopleStore
    + WorkspaceStore
    + WebhookStore
    + SourceStore
    + IngestStore
    + WindowStore
    + ConversationStore
    + ReplayStore
    + DeliveryQueue
    + DeliveryLog
    + Outbox
    + ActivityLog
    + ChatStore
    + ReplyStore
    + SessionStore
    + WebSessions
    + Health
    + Lifecycle
    + 'static
{
}

impl Store for sqlite::SqliteStore {}
impl Store for postgres::PgStore {}

/// The handle the application holds.
pub type SharedStore = Arc<dyn Store>;

/// How to reach the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// `sqlite://…` (the embedded default) or `postgres://…`.
    pub url: String,
    /// Connections to PostgreSQL per daemon.
    pub max_connections: u32,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> StoreOptions {
        StoreOptions { url: url.into(), max_connections: crate::config::DEFAULT_MAX_CONNECTIONS }
    }

    /// Where the configuration says the store is, and how to use it.
    pub fn of(config: &crate::config::Config) -> StoreOptions {
        StoreOptions { url: config.database_url(), max_connections: config.database.max_connections }
    }
}

/// Opens the store `database_url` names (creating an SQLite file if needed), applies its
/// migrations, and starts it. `sqlite://…` is the embedded default; `postgres://…` (or
/// `postgresql://…`) is the store several daemons share.
pub async fn connect(database_url: &str, clock: SharedClock) -> StoreResult<SharedStore> {
    open(&StoreOptions::new(database_url), clock).await
}

/// [`connect`], with the options of `[database]`.
pub async fn open(options: &StoreOptions, clock: SharedClock) -> StoreResult<SharedStore> {
    let url = options.url.as_str();
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(sqlite::SqliteStore::open(url, clock).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PgStore::open(url, options.max_connections, clock).await?));
    }
    Err(StoreError::Unsupported(format!(
        "{}: chatbundle opens sqlite:// and postgres:// URLs",
        crate::domain::masked_url(url)
    )))
}
