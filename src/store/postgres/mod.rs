//! The PostgreSQL store: any number of daemons share one database, with no leader and no other
//! coordination service. Each keeps every guarantee of the store's traits together with the
//! others; this is how, in one place:
//!
//! - **One clock.** Times of receipt, close boundaries, leases and due times are the database's
//!   clock (`clock_timestamp()`), never a daemon's, so daemons whose clocks disagree still agree
//!   on what is due and on which window a message belongs to. (The injected clock only shifts it,
//!   by its difference from the system clock: zero in production, the test's in tests. A daemon's
//!   readings never go back, so a reading a millisecond early cannot reorder its own writes.)
//! - **Windows: a per-workspace lock shared by ingest and close.** Every transaction that stores
//!   messages of a workspace holds that workspace's advisory lock in shared mode, and reads the
//!   time of receipt only once it holds it; a close step holds it exclusively, and closes only up
//!   to a boundary that the store's time has reached while it holds the lock (the database's
//!   clock, the workspace's `closed_through`, or its newest message, whichever is latest). So every
//!   ingest either committed before the close step looked (and is in it), or reads its time after
//!   the step committed, which is at or past the boundary (and belongs to a later range). The step
//!   also raises the workspace's `closed_through`, and ingest never receives a message before it,
//!   so even a clock that steps back cannot put a message behind a closed boundary. Changes of
//!   windowing (a webhook created or changed, a workspace's granularity or zone) take the same
//!   exclusive lock and raise `closed_through` past their instant, so they take effect at one
//!   instant for every daemon.
//! - **Exactly one bundle per (webhook, chat, window)**: a close step locks its webhook's row and
//!   proceeds only from the `bundled_before` its caller read; bundles are unique by (webhook, chat,
//!   window end, part).
//! - **Per-chat order**: every transaction that adds to a (webhook, chat) lane holds the chat's
//!   row lock (ingest upserts its chats first, in key order, so two daemons never deadlock on
//!   them; expiry announcements lock the chats after their workspace's shared lock) or the
//!   workspace's exclusive lock (closing), so a lane's deliveries are numbered in commit order.
//!   Claims take lane heads with `FOR UPDATE SKIP LOCKED`; a later delivery is never a head while
//!   an earlier one is pending.
//! - **Leases and fencing** as in every store: a random token per claim, results recorded only
//!   under it, leases judged by the database's clock. A daemon killed mid-send leaves a lease that
//!   runs out (its webhook's timeout plus a margin), and another daemon sends the delivery again
//!   under the same `webhook-id`.
//! - **Rate**: the token bucket is on the webhook row, locked by each claim that takes from it.
//! - **Once, not once per daemon**: expiry announcements lock the chats they announce (`SKIP
//!   LOCKED`); e-mails are claimed with a lease (`SKIP LOCKED`); pruning runs where it gets a
//!   transaction-level advisory lock, and is skipped where another daemon holds it.
//!
//! Statements whose best plan depends on how large the tables are (the claim's lane heads, a
//! close step's chats and messages) are planned afresh each time: a plan cached while the queue
//! was short would scan it once it is long.

mod claims;
mod combine;
mod intake;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::clock::SharedClock;
use crate::config::MIN_DATABASE_CONNECTIONS as MIN_CONNECTIONS;
use crate::domain::WorkspaceId;
use crate::store::sql::{Placeholders, Windowing};
use crate::store::{Lifecycle, StoreError, StoreResult};

/// The shared store.
pub struct PgStore {
    pool: PgPool,
    /// The connections of merged write transactions (ingest requests and delivered attempts):
    /// one per transaction in flight, kept for them alone (see [`PgStore::open`]).
    write_pool: PgPool,
    time: Arc<StoreTime>,
    /// Ingest requests and delivered attempts waiting to share a transaction.
    writes: combine::Combiner<intake::Write, intake::Written>,
    /// Where ingest hands the deliveries it leases (its transactions read it).
    handoff: crate::store::queue::HandoffSlot,
}

/// Statements kept prepared on the connections of ingest and of recording: a shape per row count
/// of each of their multi-row statements.
const OWN_STATEMENTS: usize = 512;

/// How this daemon reads the store's time.
struct StoreTime {
    /// Shifts the database's clock (see the module's notes).
    clock: SharedClock,
    /// The latest time this daemon read: its readings never go back, even when the database's
    /// clock steps back or a shifted reading lands a millisecond early.
    latest: AtomicI64,
}

impl StoreTime {
    /// The injected clock's difference from the system clock, in milliseconds.
    fn skew(&self) -> i64 {
        (self.clock.now() - Utc::now()).num_milliseconds()
    }

    /// `at`, or the latest time read before if that is later; remembers the result.
    fn not_before_latest(&self, at: i64) -> i64 {
        self.latest.fetch_max(at, Ordering::SeqCst).max(at)
    }
}

impl PgStore {
    /// The connections (for copying a store).
    pub(in crate::store) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Connects with up to `max_connections` connections (at least [`MIN_CONNECTIONS`]) and
    /// applies the migrations (several daemons starting together take turns: the migrator holds
    /// an advisory lock).
    ///
    /// Merged write transactions (ingest requests and delivered attempts, together) have
    /// connections of their own, one per transaction that may be in flight (most of the time one
    /// is), up to half of the others'. Their statements come in a shape per row count; on a
    /// connection of their own each shape is prepared once and PostgreSQL settles on its plan
    /// after a few runs, where spread over the shared connections nearly every run was planned
    /// anew (measured: 1,174 plans in 1,238 runs of each of ingest's inserts).
    pub async fn open(url: &str, max_connections: u32, clock: SharedClock) -> StoreResult<PgStore> {
        let options: PgConnectOptions = url.parse()?;
        let max_connections = max_connections.max(MIN_CONNECTIONS);
        let half = ((max_connections - 1) / 2) as usize;
        let write_slots = intake::TRANSACTIONS_IN_FLIGHT.min(half);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections - write_slots as u32)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        let dedicated = |connections: usize| {
            PgPoolOptions::new()
                .max_connections(connections as u32)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.clone().statement_cache_capacity(OWN_STATEMENTS))
        };
        sqlx::migrate!("./migrations-postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(Arc::new(e)))?;
        let time = Arc::new(StoreTime { clock, latest: AtomicI64::new(0) });
        // Opened now, not at the first request: a first delivery's result should not wait for a
        // connection to be set up.
        let write_pool = dedicated(write_slots).await?;
        let handoff = crate::store::queue::HandoffSlot::default();
        let writes = {
            let (pool, time, handoff) = (write_pool.clone(), time.clone(), handoff.clone());
            combine::Combiner::new(
                write_slots,
                intake::weight,
                intake::WEIGHT_PER_TRANSACTION,
                move |writes| {
                    let (pool, time, handoff) = (pool.clone(), time.clone(), handoff.clone());
                    async move { intake::write_group(&pool, &time, handoff.get(), writes).await }
                },
            )
        };
        Ok(PgStore { pool, write_pool, time, writes, handoff })
    }

    /// The store's time now, in milliseconds: the database's clock (shifted by the injected
    /// clock's skew).
    async fn now(&self, conn: &mut PgConnection) -> StoreResult<i64> {
        // The skew is read before the database's clock, so the sum is never behind the
        // injected clock.
        let skew = self.time.skew();
        let db: i64 = sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT")
            .fetch_one(conn)
            .await?;
        Ok(self.time.not_before_latest(db + skew))
    }

    /// The store's time for a transaction that holds `workspace`'s exclusive lock: not before
    /// any message of the workspace already received, nor before its `closed_through`.
    async fn now_exclusive(&self, conn: &mut PgConnection, workspace: &WorkspaceId) -> StoreResult<i64> {
        let now = self.now(conn).await?;
        let floor: i64 = sqlx::query_scalar(
            "SELECT GREATEST(closed_through,
                             COALESCE((SELECT MAX(received_at) FROM messages WHERE workspace_id = $1), 0))
             FROM workspaces WHERE id = $1",
        )
        .bind(workspace.as_str())
        .fetch_optional(conn)
        .await?
        .unwrap_or(0);
        Ok(now.max(floor))
    }

    /// A transaction, and the store's time at its start.
    async fn begin(&self) -> StoreResult<(Transaction<'static, Postgres>, i64)> {
        let mut tx = self.pool.begin().await?;
        let now = self.now(&mut tx).await?;
        Ok((tx, now))
    }

    /// The shared SQL's write transaction ([`crate::store::sql`]): `f` runs in a transaction of
    /// its own with the store's time at its start (ms), committed before its result is returned.
    async fn transact<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection, i64) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let (mut tx, now) = self.begin().await?;
        let out = f(&mut tx, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The shared SQL's windowing transaction ([`crate::store::sql`]): under the workspace's
    /// exclusive lock, so no message of it commits meanwhile; its time is not before anything the
    /// workspace received, and the workspace's `closed_through` is raised past it, so the change
    /// takes effect at one instant for every daemon (see the module's notes). `None` when the
    /// workspace is that of a webhook that does not exist.
    async fn transact_windowing<T, F>(&self, of: Windowing, f: F) -> StoreResult<Option<T>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection, WorkspaceId, i64) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        let mut tx = self.pool.begin().await?;
        let workspace = match of {
            Windowing::Workspace(id) => id,
            Windowing::OfWebhook(webhook) => {
                let found: Option<String> =
                    sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = $1")
                        .bind(webhook.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(found) = found else { return Ok(None) };
                WorkspaceId::stored(found)
            }
        };
        lock_workspace(&mut tx, &workspace, true).await?;
        let now = self.now_exclusive(&mut tx, &workspace).await?;
        let out = f(&mut tx, workspace.clone(), now).await?;
        raise_closed_through(&mut tx, &workspace, now + 1).await?;
        tx.commit().await?;
        Ok(Some(out))
    }

    /// Records a delivered attempt in a transaction shared with the other writes waiting
    /// ([`intake::write_group`]).
    async fn record_delivered(
        &self,
        attempt: crate::store::AttemptRecord,
    ) -> StoreResult<crate::store::Recorded> {
        self.record_delivered_attempt(attempt).await
    }

    /// The shared SQL's reads ([`crate::store::sql`]).
    fn reads(&self) -> &PgPool {
        &self.pool
    }
}

crate::store::sql::rows!(sqlx::postgres::PgRow, sqlx::postgres::PgConnection);
crate::store::sql::sources!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::access!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::people!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::settings!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::log!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::chats!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::sessions!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::queue!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::windows!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::conversations!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::ingest!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::replies!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::replays!(PgStore, sqlx::postgres::PgConnection);
crate::store::sql::health!(PgStore, sqlx::postgres::PgConnection);

/// Raises a workspace's `closed_through` to `at`: no message of it committed later is received
/// before `at`. Called under the workspace's exclusive lock.
async fn raise_closed_through(conn: &mut PgConnection, id: &WorkspaceId, at: i64) -> StoreResult<()> {
    sqlx::query("UPDATE workspaces SET closed_through = GREATEST(closed_through, $1) WHERE id = $2")
        .bind(at)
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// How a claim passes rows that another transaction holds: it leaves them to their holder.
macro_rules! skip_locked {
    () => {
        " FOR UPDATE SKIP LOCKED"
    };
}
use skip_locked;

/// How a read locks the rows it will change, until its transaction ends.
macro_rules! for_update {
    () => {
        " FOR UPDATE"
    };
}
use for_update;

/// How a read locks a webhook's row for the rest of its transaction (its key stays free, so
/// deliveries can still be added for it).
macro_rules! lock_row {
    () => {
        " FOR NO KEY UPDATE"
    };
}
use lock_row;

use self::claims::lane_heads;
use self::intake::mark_first_messages;

/// Whether chats are written in key order: yes, so that two transactions writing the same chats
/// lock them in the same order and never wait on each other in a circle.
const CHATS_IN_KEY_ORDER: bool = true;

/// Placeholders are numbered (`$n`), as PostgreSQL takes them.
const PLACEHOLDERS: Placeholders = Placeholders::Numbered;

/// Whether an upserted chat row was inserted, as SQL over the row written.
macro_rules! created {
    () => {
        "(xmax = 0)"
    };
}
use created;

/// The larger of two values, in SQL.
macro_rules! greatest {
    () => {
        "GREATEST"
    };
}
use greatest;

/// The smaller of two values, in SQL.
macro_rules! least {
    () => {
        "LEAST"
    };
}
use least;

/// Prepares the transaction for statements whose best plan depends on how large the tables are:
/// planned for the tables as they are now, not from a plan cached when they were small.
async fn plan_afresh(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan").execute(conn).await?;
    Ok(())
}

/// Holds the workspaces' locks shared, in the order given (keep it sorted: every transaction
/// that takes several takes them in the same order, so none waits for another in a circle).
async fn lock_workspaces_shared(conn: &mut PgConnection, workspaces: &[String]) -> StoreResult<()> {
    for workspace in workspaces {
        lock_workspace(conn, &WorkspaceId::stored(workspace.as_str()), false).await?;
    }
    Ok(())
}

/// The advisory-lock key of the retention job: one daemon prunes at a time, the others skip.
const PRUNE_KEY: &str = "chatbundle:prune";

/// Whether this transaction may prune the logs now: when no other daemon is pruning.
async fn one_pruner(conn: &mut PgConnection) -> StoreResult<bool> {
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(PRUNE_KEY)
        .fetch_one(conn)
        .await?;
    Ok(ours)
}

/// The advisory-lock key of a workspace.
fn workspace_key(id: &WorkspaceId) -> String {
    format!("chatbundle:workspace:{id}")
}

/// Holds a workspace's lock until the transaction ends: shared for storing its messages,
/// exclusive for closing its windows.
async fn lock_workspace(conn: &mut PgConnection, id: &WorkspaceId, exclusive: bool) -> StoreResult<()> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
    } else {
        "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))"
    };
    sqlx::query(sql).bind(workspace_key(id)).execute(conn).await?;
    Ok(())
}

#[async_trait]
impl Lifecycle for PgStore {
    async fn recover_after_restart(&self) -> StoreResult<u64> {
        // Other daemons may be sending right now: their leases run out by themselves.
        Ok(0)
    }

    fn died(&self) -> BoxFuture<'static, String> {
        // No writer thread: a lost database shows as failing writes, which readiness reports.
        Box::pin(std::future::pending())
    }

    async fn close(&self) {
        self.write_pool.close().await;
        self.pool.close().await;
    }
}
