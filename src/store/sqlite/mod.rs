//! The SQLite store: one writer connection behind a group-commit task ([`writer`]), and a pool of
//! readers. WAL mode lets the readers run while the writer commits.

mod close;
mod ingest;
mod operations;
mod queue;
mod sessions;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tracing::instrument;

use self::writer::Writer;
use super::*;
use crate::clock::SharedClock;
use crate::domain::{Account, Event, Granularity, new_id, random_token};

/// The embedded store.
pub struct SqliteStore {
    /// The one connection that writes, behind its group-commit task.
    writer: Writer,
    readers: SqlitePool,
    /// An exclusive lock on `<database>.lock`: a second daemon on the same file would deliver
    /// everything twice, so it is refused at start. Released on close.
    lock: std::sync::Mutex<Option<std::fs::File>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`, applies the migrations, and starts the
    /// writer.
    pub async fn open(url: &str, clock: SharedClock) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL makes every commit durable on its own; group commit keeps that affordable.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // 64 MiB of page cache: index pages of a large message table stay in memory.
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        let file = Path::new(options.get_filename());
        let io = |e: std::io::Error| StoreError::Database(Arc::new(e.into()));
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
        let mut writer = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("./migrations")
            .run(&mut writer)
            .await
            .map_err(|e| StoreError::Migrate(Arc::new(e)))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            // Readers answer admin pages and lookups: a smaller cache each is plenty.
            .connect_with(options.pragma("query_only", "ON").pragma("cache_size", "-8192"))
            .await?;
        Ok(SqliteStore {
            writer: Writer::start(writer, clock).map_err(|e| StoreError::Database(Arc::new(e.into())))?,
            readers,
            lock: std::sync::Mutex::new(lock),
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
}

/// Takes the database's lock file; `None` for an in-memory database, which nobody can share.
fn lock_database(file: &Path) -> StoreResult<Option<std::fs::File>> {
    if file.as_os_str().is_empty() || file.to_string_lossy().starts_with(':') {
        return Ok(None);
    }
    let mut path = file.as_os_str().to_owned();
    path.push(".lock");
    let io = |e: std::io::Error| StoreError::Database(Arc::new(e.into()));
    let lock = crate::files::private_file(Path::new(&path), false).map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(file.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// The columns [`chat_from_row`] reads.
pub(crate) const CHAT_COLUMNS: &str = "id, external_id, full_name, phone, is_group, responsible_name, \
     responsible_email, token, first_seen_at, first_message_seq, session_status, reply_window_expires_at";

/// A chat and the sequence number of its first message, if it has one.
fn chat_from_row(row: &SqliteRow) -> StoreResult<(Chat, Option<i64>)> {
    let chat = Chat {
        id: row.try_get("id")?,
        external_id: row.try_get("external_id")?,
        full_name: row.try_get("full_name")?,
        phone: row.try_get("phone")?,
        is_group: row.try_get::<Option<bool>, _>("is_group")?.unwrap_or(false),
        responsible_name: row.try_get("responsible_name")?,
        responsible_email: row.try_get("responsible_email")?,
        token: row.try_get("token")?,
        first_seen_at: from_ms(row.try_get("first_seen_at")?),
        session_status: row
            .try_get::<Option<String>, _>("session_status")?
            .and_then(|s| crate::domain::SessionStatus::parse(&s)),
        reply_window_expires_at: row.try_get::<Option<i64>, _>("reply_window_expires_at")?.map(from_ms),
    };
    Ok((chat, row.try_get("first_message_seq")?))
}

fn parse_granularity(s: &str) -> Granularity {
    // Only ever written from a `Granularity`, so anything else is a corrupted row.
    s.parse().unwrap_or(Granularity::None)
}

const WORKSPACE_COLUMNS: &str = "id, name, owner_email, timezone, granularity, account_full_name, \
     account_email, account_phone, ingest_key, created_at, updated_at";

fn workspace_from_row(row: &SqliteRow) -> StoreResult<Workspace> {
    Ok(Workspace {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner_email: row.try_get("owner_email")?,
        timezone: row.try_get("timezone")?,
        granularity: parse_granularity(row.try_get("granularity")?),
        account: Account {
            full_name: row.try_get("account_full_name")?,
            email: row.try_get("account_email")?,
            phone: row.try_get("account_phone")?,
        },
        ingest_key: row.try_get("ingest_key")?,
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}

const WEBHOOK_COLUMNS: &str = "id, workspace_id, url, granularity, enabled, secret, sub_messages, \
     sub_session_status, timeout_ms, consecutive_failures, disabled_reason, created_at, updated_at";

fn webhook_from_row(row: &SqliteRow) -> StoreResult<Webhook> {
    let mut events = Vec::new();
    if row.try_get::<bool, _>("sub_messages")? {
        events.push(Event::Messages);
    }
    if row.try_get::<bool, _>("sub_session_status")? {
        events.push(Event::SessionStatus);
    }
    Ok(Webhook {
        id: row.try_get("id")?,
        workspace_id: row.try_get("workspace_id")?,
        url: row.try_get("url")?,
        granularity: row.try_get::<Option<String>, _>("granularity")?.map(|g| parse_granularity(&g)),
        enabled: row.try_get("enabled")?,
        secret: row.try_get("secret")?,
        events,
        timeout: row.try_get::<Option<i64>, _>("timeout_ms")?.map(|v| Duration::from_millis(v as u64)),
        consecutive_failures: row.try_get::<i64, _>("consecutive_failures")? as u32,
        disabled_reason: row.try_get("disabled_reason")?,
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}

async fn fetch_webhook(conn: &mut SqliteConnection, id: &str) -> StoreResult<Option<Webhook>> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(webhook_from_row).transpose()
}

async fn fetch_workspace(conn: &mut SqliteConnection, id: &str) -> StoreResult<Option<Workspace>> {
    let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(workspace_from_row).transpose()
}

/// What decides how a webhook's messages are windowed: (webhook id, granularity in effect,
/// subscribed to messages, workspace time zone).
type Subscription = (String, String, bool, String);

async fn subscriptions(conn: &mut SqliteConnection, workspace_id: &str) -> StoreResult<Vec<Subscription>> {
    let rows = sqlx::query(
        "SELECT w.id, COALESCE(w.granularity, s.granularity) AS granularity, w.sub_messages, s.timezone
         FROM webhooks w JOIN workspaces s ON s.id = w.workspace_id WHERE w.workspace_id = ?",
    )
    .bind(workspace_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("granularity")?,
                r.try_get("sub_messages")?,
                r.try_get("timezone")?,
            ))
        })
        .collect()
}

/// After a change to webhooks or their workspace, moves the windowing state of each webhook whose
/// windows changed. Taking messages again starts from now. Otherwise what is buffered stays
/// buffered, and belongs to the window open now (under the new granularity and time zone), or
/// goes out at once when the new granularity is `none`; nothing buffered is dropped.
///
/// The change takes effect just after `now`, the transaction's time: messages committed in this
/// transaction (received at `now`) were handled under the old settings, and every later
/// transaction's time is past `now`.
async fn rewindow(
    conn: &mut SqliteConnection,
    before: &[Subscription],
    after: &[Subscription],
    now: i64,
) -> StoreResult<()> {
    let now = now + 1;
    for (id, granularity, subscribed, timezone) in after {
        let Some((_, old_granularity, was_subscribed, old_timezone)) = before.iter().find(|b| b.0 == *id)
        else {
            continue;
        };
        let fresh = *subscribed && (!was_subscribed || old_granularity == "none");
        let moved = old_granularity != granularity || (old_timezone != timezone && granularity != "none");
        if fresh && granularity != "none" {
            // Buffered messages still waiting to go out one by one (a switch to `none` that the
            // closer has not carried out yet) keep their place: sent twice beats not sent.
            sqlx::query(
                "UPDATE webhooks SET granularity_changed_at = ?1,
                    bundled_before = CASE WHEN bundled_before < granularity_changed_at
                                          THEN bundled_before ELSE ?1 END
                 WHERE id = ?2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        } else if *subscribed && moved {
            sqlx::query("UPDATE webhooks SET granularity_changed_at = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    #[instrument(skip_all)]
    async fn create_workspace(&self, new: NewWorkspace) -> StoreResult<Workspace> {
        let clock = self.writer.clock();
        let id = new_id("ws");
        self.write(move |conn| {
            Box::pin(async move {
                let now = ms(clock.now());
                sqlx::query(
                    "INSERT INTO workspaces (id, name, owner_email, timezone, granularity,
                        account_full_name, account_email, account_phone, ingest_key, created_at,
                        updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&id)
                .bind(&new.name)
                .bind(&new.owner_email)
                .bind(&new.timezone)
                .bind(new.granularity.as_str())
                .bind(&new.account.full_name)
                .bind(&new.account.email)
                .bind(&new.account.phone)
                .bind(format!("ik_{}", random_token(32)))
                .bind(now)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(fetch_workspace(conn, &id).await?.expect("just inserted"))
            })
        })
        .await
    }

    async fn list_workspaces(&self) -> StoreResult<Vec<Workspace>> {
        let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.readers).await?;
        rows.iter().map(workspace_from_row).collect()
    }

    async fn get_workspace(&self, id: &str) -> StoreResult<Option<Workspace>> {
        let mut conn = self.readers.acquire().await?;
        fetch_workspace(&mut conn, id).await
    }

    #[instrument(skip_all, fields(workspace_id = id))]
    async fn update_workspace(&self, id: &str, patch: WorkspacePatch) -> StoreResult<Option<Workspace>> {
        let id = id.to_string();
        let clock = self.writer.clock();
        self.write(move |conn| {
            Box::pin(async move {
                let now = ms(clock.now());
                let before = subscriptions(conn, &id).await?;
                let account = patch.account.clone();
                let changed = sqlx::query(
                    "UPDATE workspaces SET
                        name = COALESCE(?, name),
                        owner_email = COALESCE(?, owner_email),
                        timezone = COALESCE(?, timezone),
                        granularity = COALESCE(?, granularity),
                        account_full_name = CASE WHEN ? THEN ? ELSE account_full_name END,
                        account_email = CASE WHEN ? THEN ? ELSE account_email END,
                        account_phone = CASE WHEN ? THEN ? ELSE account_phone END,
                        updated_at = ?
                     WHERE id = ?",
                )
                .bind(&patch.name)
                .bind(&patch.owner_email)
                .bind(&patch.timezone)
                .bind(patch.granularity.map(Granularity::as_str))
                .bind(account.is_some())
                .bind(account.as_ref().and_then(|a| a.full_name.clone()))
                .bind(account.is_some())
                .bind(account.as_ref().and_then(|a| a.email.clone()))
                .bind(account.is_some())
                .bind(account.as_ref().and_then(|a| a.phone.clone()))
                .bind(now)
                .bind(&id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Ok(None);
                }
                let after = subscriptions(conn, &id).await?;
                rewindow(conn, &before, &after, now).await?;
                fetch_workspace(conn, &id).await
            })
        })
        .await
    }

    async fn workspace_stats(&self, id: &str) -> StoreResult<WorkspaceStats> {
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM chats WHERE workspace_id = ?1) AS chats,
               (SELECT COUNT(*) FROM messages WHERE workspace_id = ?1) AS messages,
               (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                 WHERE w.workspace_id = ?1 AND d.status = 'pending') AS pending,
               (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                 WHERE w.workspace_id = ?1 AND d.status = 'delivered') AS delivered,
               (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                 WHERE w.workspace_id = ?1 AND d.status = 'expired') AS expired,
               (SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                 WHERE w.workspace_id = ?1 AND d.status = 'failed') AS failed",
        )
        .bind(id)
        .fetch_one(&self.readers)
        .await?;
        let count = |name: &str| -> StoreResult<u64> { Ok(row.try_get::<i64, _>(name)? as u64) };
        Ok(WorkspaceStats {
            chats: count("chats")?,
            messages: count("messages")?,
            deliveries_pending: count("pending")?,
            deliveries_delivered: count("delivered")?,
            deliveries_expired: count("expired")?,
            deliveries_failed: count("failed")?,
        })
    }

    #[instrument(skip_all, fields(workspace_id = %new.workspace_id))]
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook> {
        let clock = self.writer.clock();
        let id = new_id("wh");
        self.write(move |conn| {
            Box::pin(async move {
                let now = ms(clock.now());
                // A new webhook starts with the messages that arrive from now on.
                sqlx::query(
                    "INSERT INTO webhooks (id, workspace_id, url, granularity, enabled, secret,
                        sub_messages, sub_session_status, timeout_ms, created_at, updated_at,
                        bundled_before, granularity_changed_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&id)
                .bind(&new.workspace_id)
                .bind(&new.url)
                .bind(new.granularity.map(Granularity::as_str))
                .bind(new.enabled)
                .bind(&new.secret)
                .bind(new.events.contains(&Event::Messages))
                .bind(new.events.contains(&Event::SessionStatus))
                .bind(new.timeout.map(|t| t.as_millis() as i64))
                .bind(now)
                .bind(now)
                .bind(now)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(fetch_webhook(conn, &id).await?.expect("just inserted"))
            })
        })
        .await
    }

    async fn list_webhooks(&self, workspace_id: &str) -> StoreResult<Vec<Webhook>> {
        let sql =
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE workspace_id = ? ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(workspace_id).fetch_all(&self.readers).await?;
        rows.iter().map(webhook_from_row).collect()
    }

    async fn get_webhook(&self, id: &str) -> StoreResult<Option<Webhook>> {
        let mut conn = self.readers.acquire().await?;
        fetch_webhook(&mut conn, id).await
    }

    #[instrument(skip_all, fields(webhook_id = id))]
    async fn update_webhook(&self, id: &str, patch: WebhookPatch) -> StoreResult<Option<Webhook>> {
        let id = id.to_string();
        let clock = self.writer.clock();
        self.write(move |conn| {
            Box::pin(async move {
                let now = ms(clock.now());
                let workspace: Option<String> =
                    sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = ?")
                        .bind(&id)
                        .fetch_optional(&mut *conn)
                        .await?;
                let Some(workspace) = workspace else {
                    return Ok(None);
                };
                let before = subscriptions(conn, &workspace).await?;
                let events = patch.events.clone();
                let changed = sqlx::query(
                    "UPDATE webhooks SET
                        url = COALESCE(?, url),
                        granularity = CASE WHEN ? THEN ? ELSE granularity END,
                        enabled = COALESCE(?, enabled),
                        secret = CASE WHEN ? THEN ? ELSE secret END,
                        sub_messages = COALESCE(?, sub_messages),
                        sub_session_status = COALESCE(?, sub_session_status),
                        timeout_ms = CASE WHEN ? THEN ? ELSE timeout_ms END,
                        -- turning a webhook on again starts its failure count afresh
                        consecutive_failures = CASE WHEN ? THEN 0 ELSE consecutive_failures END,
                        disabled_reason = CASE WHEN ? THEN NULL
                            WHEN ? AND enabled = 1 THEN 'switched off through the admin API'
                            ELSE disabled_reason END,
                        updated_at = ?
                     WHERE id = ?",
                )
                .bind(&patch.url)
                .bind(patch.granularity.is_some())
                .bind(patch.granularity.flatten().map(Granularity::as_str))
                .bind(patch.enabled)
                .bind(patch.secret.is_some())
                .bind(patch.secret.clone().flatten())
                .bind(events.as_ref().map(|e| e.contains(&Event::Messages)))
                .bind(events.as_ref().map(|e| e.contains(&Event::SessionStatus)))
                .bind(patch.timeout.is_some())
                .bind(patch.timeout.flatten().map(|t| t.as_millis() as i64))
                .bind(patch.enabled == Some(true))
                .bind(patch.enabled == Some(true))
                .bind(patch.enabled == Some(false))
                .bind(now)
                .bind(&id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Ok(None);
                }
                let after = subscriptions(conn, &workspace).await?;
                rewindow(conn, &before, &after, now).await?;
                fetch_webhook(conn, &id).await
            })
        })
        .await
    }

    #[instrument(skip_all, fields(webhook_id = id))]
    async fn delete_webhook(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                let done =
                    sqlx::query("DELETE FROM webhooks WHERE id = ?").bind(&id).execute(&mut *conn).await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    #[instrument(skip_all, fields(workspace_id = %batch.workspace_id, messages = batch.messages.len()))]
    async fn ingest(&self, batch: IngestBatch) -> StoreResult<IngestOutcome> {
        self.writer.ingest(batch).await
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
        rate: Option<std::num::NonZeroU32>,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let (now, lease_until) = (ms(now), ms(lease_until));
        // Tokens are random: a claim can never guess another's.
        let token = rand::random::<i64>() & i64::MAX;
        self.write(move |conn| Box::pin(queue::claim(conn, now, lease_until, limit, rate, token))).await
    }

    #[instrument(skip_all, fields(delivery_id = %attempt.delivery_id, webhook_id = %attempt.webhook_id))]
    async fn record_attempt(
        &self,
        attempt: AttemptRecord,
        outcome: AttemptOutcome,
        policy: &FailurePolicy,
    ) -> StoreResult<Recorded> {
        let policy = policy.clone();
        let clock = self.writer.clock();
        self.write(move |conn| Box::pin(queue::record_attempt(conn, clock, attempt, outcome, policy))).await
    }

    async fn record_test(&self, attempt: AttemptRecord) -> StoreResult<()> {
        self.write(move |conn| Box::pin(operations::insert_attempt(conn, attempt, true))).await
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        limit: u32,
        offset: u32,
    ) -> StoreResult<Vec<DeliveryInfo>> {
        let mut conn = self.readers.acquire().await?;
        queue::list(&mut conn, webhook_id, status, limit, offset).await
    }

    #[instrument(skip_all, fields(webhook_id, delivery_id))]
    async fn resend_delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Resend> {
        let (webhook_id, delivery_id, now) = (webhook_id.to_string(), delivery_id.to_string(), ms(now));
        self.write(move |conn| {
            Box::pin(async move { queue::resend(conn, &webhook_id, &delivery_id, now).await })
        })
        .await
    }

    async fn activity(
        &self,
        webhook_id: &str,
        after: Option<ActivityCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ActivityRow>> {
        let mut conn = self.readers.acquire().await?;
        operations::activity(&mut conn, webhook_id, after, limit).await
    }

    async fn record_event(
        &self,
        workspace_id: &str,
        webhook_id: Option<&str>,
        kind: &str,
        detail: serde_json::Value,
    ) -> StoreResult<()> {
        let (workspace_id, webhook_id, kind) =
            (workspace_id.to_string(), webhook_id.map(str::to_string), kind.to_string());
        let clock = self.writer.clock();
        self.write(move |conn| {
            Box::pin(async move {
                operations::insert_event(
                    conn,
                    &workspace_id,
                    webhook_id.as_deref(),
                    ms(clock.now()),
                    &kind,
                    &detail,
                )
                .await
            })
        })
        .await
    }

    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<Pruned> {
        let before = ms(before);
        self.write(move |conn| Box::pin(operations::prune(conn, before, limit))).await
    }

    async fn claim_email(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Option<OutboxEmail>> {
        let (now, lease_until) = (ms(now), ms(lease_until));
        self.write(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(
                    "UPDATE outbox SET next_attempt_at = ?1
                     WHERE id = (SELECT id FROM outbox
                                 WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?2
                                 ORDER BY next_attempt_at, id LIMIT 1)
                     RETURNING id, recipient, subject, body, attempts",
                )
                .bind(lease_until)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                row.map(|row| {
                    Ok(OutboxEmail {
                        id: row.try_get("id")?,
                        email: Email {
                            recipient: row.try_get("recipient")?,
                            subject: row.try_get("subject")?,
                            body: row.try_get("body")?,
                        },
                        attempts: row.try_get::<i64, _>("attempts")? as u32,
                    })
                })
                .transpose()
            })
        })
        .await
    }

    async fn email_result(&self, id: i64, outcome: EmailOutcome) -> StoreResult<()> {
        let clock = self.writer.clock();
        self.write(move |conn| Box::pin(operations::email_result(conn, id, outcome, ms(clock.now())))).await
    }

    async fn recover_after_restart(&self) -> StoreResult<u64> {
        // One process holds the database (see the lock file), so every lease is a dead one.
        self.write(|conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE deliveries SET lease_until = NULL
                     WHERE status = 'pending' AND lease_until IS NOT NULL",
                )
                .execute(conn)
                .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    async fn list_attempts(&self, webhook_id: &str, limit: u32) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT id, delivery_id, webhook_id, attempted_at, duration_ms, status,
                    response_excerpt, error, request_headers, request_body
             FROM attempts WHERE webhook_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(webhook_id)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                let headers: String = row.try_get("request_headers")?;
                let body: Vec<u8> = row.try_get("request_body")?;
                Ok(Attempt {
                    id: row.try_get("id")?,
                    delivery_id: row.try_get("delivery_id")?,
                    webhook_id: row.try_get("webhook_id")?,
                    attempted_at: from_ms(row.try_get("attempted_at")?),
                    duration_ms: row.try_get::<i64, _>("duration_ms")? as u64,
                    status: row.try_get::<Option<i64>, _>("status")?.map(|s| s as u16),
                    response_excerpt: row.try_get("response_excerpt")?,
                    error: row.try_get("error")?,
                    request_headers: serde_json::from_str(&headers).unwrap_or_default(),
                    request_body: String::from_utf8_lossy(&body).into_owned(),
                })
            })
            .collect()
    }

    async fn bundling_webhooks(&self, workspace_id: Option<&str>) -> StoreResult<Vec<BundlingWebhook>> {
        let rows = sqlx::query(
            "SELECT w.id, w.workspace_id, COALESCE(w.granularity, s.granularity) AS granularity,
                    s.timezone, s.account_full_name, s.account_email, s.account_phone,
                    w.bundled_before, w.granularity_changed_at, w.closing_boundary, w.flushed_at,
                    w.closing_flush
             FROM webhooks w JOIN workspaces s ON s.id = w.workspace_id
             WHERE w.sub_messages = 1 AND (?1 IS NULL OR w.workspace_id = ?1)
             ORDER BY w.created_at, w.id",
        )
        .bind(workspace_id)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BundlingWebhook {
                    id: row.try_get("id")?,
                    workspace_id: row.try_get("workspace_id")?,
                    granularity: parse_granularity(row.try_get("granularity")?),
                    timezone: row.try_get("timezone")?,
                    account: Account {
                        full_name: row.try_get("account_full_name")?,
                        email: row.try_get("account_email")?,
                        phone: row.try_get("account_phone")?,
                    },
                    bundled_before: from_ms(row.try_get("bundled_before")?),
                    granularity_changed_at: from_ms(row.try_get("granularity_changed_at")?),
                    closing_boundary: row.try_get::<Option<i64>, _>("closing_boundary")?.map(from_ms),
                    flushed_at: from_ms(row.try_get("flushed_at")?),
                    closing_flush: row.try_get("closing_flush")?,
                })
            })
            .collect()
    }

    #[instrument(skip_all, fields(webhook_id = %step.webhook_id, boundary = %step.boundary))]
    async fn close_step(&self, step: CloseStep) -> StoreResult<CloseProgress> {
        let clock = self.writer.clock();
        self.write(move |conn| Box::pin(close::step(conn, clock, step))).await
    }

    async fn create_source(&self, new: NewSource) -> StoreResult<Source> {
        let clock = self.writer.clock();
        self.write(move |conn| {
            Box::pin(async move { sessions::insert_source(conn, new, ms(clock.now())).await })
        })
        .await
    }

    async fn list_sources(&self, workspace_id: &str) -> StoreResult<Vec<Source>> {
        let sql = format!(
            "SELECT {} FROM sources WHERE workspace_id = ? ORDER BY created_at, id",
            sessions::SOURCE_COLUMNS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(workspace_id).fetch_all(&self.readers).await?;
        rows.iter().map(sessions::source_from_row).collect()
    }

    async fn get_source(&self, id: &str) -> StoreResult<Option<Source>> {
        let mut conn = self.readers.acquire().await?;
        sessions::fetch_source(&mut conn, id).await
    }

    async fn update_source(&self, id: &str, patch: SourcePatch) -> StoreResult<Option<Source>> {
        let (id, clock) = (id.to_string(), self.writer.clock());
        self.write(move |conn| {
            Box::pin(async move { sessions::patch_source(conn, &id, patch, ms(clock.now())).await })
        })
        .await
    }

    async fn delete_source(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM sources WHERE id = ?").bind(&id).execute(conn).await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn announce_expiries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        render: RenderSession,
    ) -> StoreResult<u64> {
        let now = ms(now);
        self.write(move |conn| Box::pin(async move { sessions::expiries(conn, now, limit, render).await }))
            .await
    }

    async fn next_expiry(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(reply_window_expires_at) FROM chats WHERE expiry_announced = 0")
                .fetch_one(&self.readers)
                .await?;
        Ok(next.map(from_ms))
    }

    async fn list_chats(&self, workspace_id: &str, limit: u32, offset: u32) -> StoreResult<Vec<ChatSummary>> {
        let rows = sqlx::query(
            "SELECT c.id, c.source_key, c.external_id, c.full_name, c.phone, c.session_status, c.last_received_at,
                    (SELECT COUNT(*) FROM messages m WHERE m.chat_id = c.id) AS messages
             FROM chats c WHERE c.workspace_id = ?
             ORDER BY c.last_received_at DESC, c.id DESC LIMIT ? OFFSET ?",
        )
        .bind(workspace_id)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ChatSummary {
                    id: row.try_get("id")?,
                    source_key: row.try_get("source_key")?,
                    chat: ChatInfoView {
                        external_id: row.try_get("external_id")?,
                        full_name: row.try_get("full_name")?,
                        phone: row.try_get("phone")?,
                        session_status: row.try_get("session_status")?,
                    },
                    messages: row.try_get::<i64, _>("messages")? as u64,
                    last_received_at: from_ms(row.try_get("last_received_at")?),
                })
            })
            .collect()
    }

    async fn get_chat(&self, id: i64) -> StoreResult<Option<(String, Chat)>> {
        let sql = format!("SELECT workspace_id, {CHAT_COLUMNS} FROM chats WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.readers).await?;
        row.map(|row| Ok((row.try_get("workspace_id")?, chat_from_row(&row)?.0))).transpose()
    }

    async fn chat_by_token(&self, token: &str) -> StoreResult<Option<(String, Chat)>> {
        let sql = format!("SELECT workspace_id, {CHAT_COLUMNS} FROM chats WHERE token = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(token).fetch_optional(&self.readers).await?;
        row.map(|row| Ok((row.try_get("workspace_id")?, chat_from_row(&row)?.0))).transpose()
    }

    async fn chat_messages(&self, chat_id: i64, limit: u32, offset: u32) -> StoreResult<Vec<StoredMessage>> {
        let rows = sqlx::query(
            "SELECT seq, message_id, direction, ts, received_at, sender_name, sender_phone, recipient_name,
                    recipient_phone, text, account, channel
             FROM messages WHERE chat_id = ? ORDER BY received_at DESC, ts DESC, seq DESC LIMIT ? OFFSET ?",
        )
        .bind(chat_id)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(close::stored_message).collect()
    }

    async fn messages_since(
        &self,
        chat_id: i64,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let rows = sqlx::query(
            "SELECT seq, message_id, direction, ts, received_at, sender_name, sender_phone, recipient_name,
                    recipient_phone, text, account, channel
             FROM messages WHERE chat_id = ? AND received_at >= ? ORDER BY received_at, seq LIMIT ?",
        )
        .bind(chat_id)
        .bind(ms(since))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(close::stored_message).collect()
    }

    async fn session_snapshot(&self, chat_id: i64, now: DateTime<Utc>) -> StoreResult<Option<SessionEvent>> {
        let mut conn = self.readers.acquire().await?;
        sessions::snapshot(&mut conn, chat_id, ms(now)).await
    }

    async fn rotate_chat_token(&self, chat_id: i64) -> StoreResult<Option<String>> {
        self.write(move |conn| {
            Box::pin(async move {
                let token = random_token(32);
                let done = sqlx::query("UPDATE chats SET token = ? WHERE id = ?")
                    .bind(&token)
                    .bind(chat_id)
                    .execute(conn)
                    .await?;
                Ok((done.rows_affected() > 0).then_some(token))
            })
        })
        .await
    }

    async fn gauges(&self) -> StoreResult<Gauges> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE status = 'pending') AS pending,
                    (SELECT created_at FROM deliveries WHERE status = 'pending' ORDER BY seq LIMIT 1) AS oldest,
                    (SELECT COUNT(*) FROM webhooks WHERE enabled = 0) AS disabled,
                    (SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL) AS emails",
        )
        .fetch_one(&self.readers)
        .await?;
        Ok(Gauges {
            deliveries_pending: row.try_get::<i64, _>("pending")? as u64,
            oldest_pending: row.try_get::<Option<i64>, _>("oldest")?.map(from_ms),
            webhooks_disabled: row.try_get::<i64, _>("disabled")? as u64,
            emails_pending: row.try_get::<i64, _>("emails")? as u64,
        })
    }

    async fn start_web_session(&self, id: &str, expires_at: DateTime<Utc>) -> StoreResult<()> {
        let (id, expires_at, clock) = (id.to_string(), ms(expires_at), self.writer.clock());
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO web_sessions (id, created_at, expires_at) VALUES (?, ?, ?)")
                    .bind(&id)
                    .bind(ms(clock.now()))
                    .bind(expires_at)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn web_session_alive(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM web_sessions WHERE id = ? AND expires_at > ?")
                .bind(id)
                .bind(ms(now))
                .fetch_optional(&self.readers)
                .await?;
        Ok(found.is_some())
    }

    async fn end_web_session(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM web_sessions WHERE id = ?").bind(&id).execute(conn).await?;
                Ok(())
            })
        })
        .await
    }

    async fn probe_write(&self) -> StoreResult<()> {
        let clock = self.writer.clock();
        self.write(move |conn| {
            Box::pin(async move {
                // A real change, so the commit appends to the WAL like any other: on a full or
                // read-only disk this fails as ingest would.
                sqlx::query("UPDATE health SET probed_at = ? WHERE id = 1")
                    .bind(ms(clock.now()))
                    .execute(conn)
                    .await?;
                Ok(())
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
