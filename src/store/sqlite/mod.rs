//! The SQLite store: one writer connection behind a group-commit task ([`writer`]), and a pool of
//! readers; WAL mode lets the readers run while the writer commits. One file per trait, plus
//! connection setup here, row mapping in [`rows`] and the windowing rule in [`rewindow`].
//!
//! What keeps its guarantees: every write goes through the one writer, which stamps each
//! transaction with a strictly increasing time ([`writer::BatchClock`]). So a message's time of
//! receipt is its commit's, `seq` order is commit order, a close step that has seen the clock
//! pass its boundary knows no message can still be received before it, and a lane's deliveries
//! are claimed and recorded one transaction at a time. A second daemon on the same file is
//! refused (a lock file), so every lease found at start belonged to a dead process.

mod claims;
mod intake;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use self::rows::ms;
use self::writer::Writer;
use crate::clock::SharedClock;
use crate::domain::WorkspaceId;
use crate::store::sql::{Placeholders, Windowing, pending};
use crate::store::{Lifecycle, StoreError, StoreResult};

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(Arc::new(e))
    }
}

/// An I/O failure around the database files.
fn io(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(Arc::new(e))
}

/// Prepared statements the writer keeps.
const WRITER_STATEMENTS: usize = 512;

/// The embedded store.
pub struct SqliteStore {
    /// The one connection that writes, behind its group-commit task.
    writer: Writer,
    readers: SqlitePool,
    /// An exclusive lock on `<database>.lock`: a second daemon on the same file would deliver
    /// everything twice, so it is refused at start. Released on close.
    lock: std::sync::Mutex<Option<std::fs::File>>,
    /// Where ingest hands the deliveries it leases (the writer reads it).
    handoff: crate::store::queue::HandoffSlot,
}

impl SqliteStore {
    /// The read connections (for copying a store).
    pub(in crate::store) fn readers(&self) -> &SqlitePool {
        &self.readers
    }

    /// Opens (creating if needed) the database at `url`, applies the migrations, and starts the
    /// writer. The database and its companion files are private (0600) whatever the umask.
    pub async fn open(url: &str, clock: SharedClock) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL makes every commit durable on its own; group commit keeps that affordable.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // 32 MiB of page cache: the hot index pages stay in memory, and the rest is a read
            // from the kernel's cache away. 64 MiB closed a day of a million messages no faster
            // and held 37 MiB more while doing it.
            .pragma("cache_size", "-32768")
            .pragma("temp_store", "memory");
        let file = Path::new(options.get_filename());
        if let Some(dir) = file.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            crate::files::private_dir(dir).map_err(io)?;
        }
        let lock = lock_database(file)?;
        // The database is created 0600 before SQLite opens it: SQLite gives its WAL and shared
        // memory files the database's own mode. Files an older version left are tightened too.
        if !file.as_os_str().is_empty() && !file.to_string_lossy().starts_with(':') {
            crate::files::private_file(file, false).map_err(io)?;
            for suffix in ["-wal", "-shm"] {
                let mut companion = file.as_os_str().to_owned();
                companion.push(suffix);
                crate::files::make_private(Path::new(&companion)).map_err(io)?;
            }
        }
        // The writer's multi-row statements differ by their row count, so they come in hundreds
        // of shapes: keep them all prepared rather than parse them again and again.
        let mut writer =
            SqliteConnection::connect_with(&options.clone().statement_cache_capacity(WRITER_STATEMENTS))
                .await?;
        // `run_direct` rather than `run`: its future is Send however it is boxed.
        sqlx::migrate!("./migrations")
            .run_direct(None, &mut writer, false)
            .await
            .map_err(|e| StoreError::Migrate(Arc::new(e)))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            // Readers answer admin pages and lookups: a smaller cache each is plenty.
            .connect_with(options.pragma("query_only", "ON").pragma("cache_size", "-8192"))
            .await?;
        let handoff = crate::store::queue::HandoffSlot::default();
        Ok(SqliteStore {
            writer: Writer::start(writer, clock, handoff.clone()).map_err(io)?,
            readers,
            lock: std::sync::Mutex::new(lock),
            handoff,
        })
    }

    /// Runs `f` inside the next group commit and returns its result once that commit is durable.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        self.writer.run(f).await
    }

    /// The shared SQL's write transaction ([`crate::store::sql`]): `f` runs inside the next group
    /// commit with the commit's time (ms), and its result is returned once the commit is durable.
    async fn transact<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection, i64) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let clock = self.writer.clock();
        self.writer.run(move |conn| f(conn, ms(clock.now()))).await
    }

    /// The shared SQL's windowing transaction ([`crate::store::sql`]): an ordinary write, since
    /// the writer is alone: whatever commits after it carries a later time. `None` when the
    /// workspace is that of a webhook that does not exist.
    async fn transact_windowing<T, F>(&self, of: Windowing, f: F) -> StoreResult<Option<T>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection, WorkspaceId, i64) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        self.transact(move |conn, now| {
            Box::pin(async move {
                let Some(workspace) = windowing_workspace(conn, of).await? else { return Ok(None) };
                Ok(Some(f(conn, workspace, now).await?))
            })
        })
        .await
    }

    /// Records a delivered attempt in the writer's next commit, merged with the others waiting
    /// ([`claims::record_delivered_many`]).
    async fn record_delivered(
        &self,
        attempt: crate::store::AttemptRecord,
    ) -> StoreResult<crate::store::Recorded> {
        self.writer.delivered(attempt).await
    }

    /// The shared SQL's reads ([`crate::store::sql`]).
    fn reads(&self) -> &SqlitePool {
        &self.readers
    }
}

/// How a claim passes rows that another transaction holds: SQLite has one writer, so it never
/// meets one.
macro_rules! skip_locked {
    () => {
        ""
    };
}
use skip_locked;

/// How a read locks the rows it will change: not at all, the writer being alone.
macro_rules! for_update {
    () => {
        ""
    };
}
use for_update;

/// How a read locks a webhook's row for the rest of its transaction: not at all, the writer
/// being alone.
macro_rules! lock_row {
    () => {
        ""
    };
}
use lock_row;

use self::claims::lane_heads;
use self::intake::mark_first_messages;

/// Whether chats are written in key order: no need, the writer being alone.
const CHATS_IN_KEY_ORDER: bool = false;

/// Long lists of values are bound by position (`?`): see [`Placeholders`].
const PLACEHOLDERS: Placeholders = Placeholders::Anonymous;

/// Whether an upserted chat row was inserted, as SQL over the row written: it was first seen at
/// its latest arrival, which is this transaction's time (every commit's time is later than the
/// one before, and a commit's requests are all stored in one go).
macro_rules! created {
    () => {
        "(first_seen_at = last_received_at)"
    };
}
use created;

/// The larger of two values, in SQL.
macro_rules! greatest {
    () => {
        "MAX"
    };
}
use greatest;

/// The smaller of two values, in SQL.
macro_rules! least {
    () => {
        "MIN"
    };
}
use least;

/// Prepares the transaction for statements whose best plan depends on how large the tables are:
/// nothing to do, SQLite plans each run of them (their limits are literals).
async fn plan_afresh(_: &mut SqliteConnection) -> StoreResult<()> {
    Ok(())
}

/// Holds the workspaces' locks shared, as whatever stores their messages does: there are none
/// to hold, the writer being alone.
async fn lock_workspaces_shared(_: &mut SqliteConnection, _: &[String]) -> StoreResult<()> {
    Ok(())
}

/// Whether this transaction may prune the logs now: always, the writer being alone.
async fn one_pruner(_: &mut SqliteConnection) -> StoreResult<bool> {
    Ok(true)
}

/// The workspace a windowing transaction is for.
async fn windowing_workspace(conn: &mut SqliteConnection, of: Windowing) -> StoreResult<Option<WorkspaceId>> {
    match of {
        Windowing::Workspace(id) => Ok(Some(id)),
        Windowing::OfWebhook(webhook) => {
            let found: Option<String> = sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = $1")
                .bind(webhook.as_str())
                .fetch_optional(conn)
                .await?;
            Ok(found.map(WorkspaceId::stored))
        }
    }
}

crate::store::sql::rows!(sqlx::sqlite::SqliteRow, sqlx::sqlite::SqliteConnection);
crate::store::sql::sources!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::access!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::people!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::settings!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::log!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::chats!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::sessions!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::queue!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::windows!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::conversations!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::ingest!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::replies!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::replays!(SqliteStore, sqlx::sqlite::SqliteConnection);
crate::store::sql::health!(SqliteStore, sqlx::sqlite::SqliteConnection);

/// Takes the database's lock file; `None` for an in-memory database, which nobody can share.
fn lock_database(file: &Path) -> StoreResult<Option<std::fs::File>> {
    if file.as_os_str().is_empty() || file.to_string_lossy().starts_with(':') {
        return Ok(None);
    }
    let mut path = file.as_os_str().to_owned();
    path.push(".lock");
    let lock = crate::files::private_file(Path::new(&path), false).map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(file.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

#[async_trait]
impl Lifecycle for SqliteStore {
    async fn recover_after_restart(&self) -> StoreResult<u64> {
        // One process holds the database (see the lock file), so every lease is a dead one.
        self.write(|conn| {
            Box::pin(async move {
                let done = sqlx::query(concat!(
                    "UPDATE deliveries SET lease_until = NULL, lease_token = NULL
                     WHERE status = ",
                    pending!(),
                    " AND lease_until IS NOT NULL"
                ))
                .execute(conn)
                .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    fn died(&self) -> BoxFuture<'static, String> {
        self.writer.died()
    }

    async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
        self.lock.lock().expect("lock mutex").take();
    }
}
