//! Sources (connected channels) and chat sessions: status changes and reply windows, and the
//! `session_status` events they put in the delivery queue.

use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use super::ingest::DUE_AT_ONCE;
use super::{CHAT_COLUMNS, chat_from_row, from_ms, ms};
use crate::domain::{Account, SessionStatus, SourceKind, new_id, random_token};
use crate::store::{
    Chat, NewSource, RenderSession, SessionChange, SessionEvent, Source, SourcePatch, StoreResult,
};

pub(super) const SOURCE_COLUMNS: &str = "id, workspace_id, kind, name, account_full_name, account_email, \
     account_phone, credentials, enabled, created_at, updated_at";

pub(super) fn source_from_row(row: &SqliteRow) -> StoreResult<Source> {
    let kind: String = row.try_get("kind")?;
    let credentials: String = row.try_get("credentials")?;
    Ok(Source {
        id: row.try_get("id")?,
        workspace_id: row.try_get("workspace_id")?,
        kind: kind.parse().unwrap_or(SourceKind::Chatwoot),
        name: row.try_get("name")?,
        account: Account {
            full_name: row.try_get("account_full_name")?,
            email: row.try_get("account_email")?,
            phone: row.try_get("account_phone")?,
        },
        credentials: serde_json::from_str(&credentials).unwrap_or_default(),
        enabled: row.try_get("enabled")?,
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}

pub(super) async fn fetch_source(conn: &mut SqliteConnection, id: &str) -> StoreResult<Option<Source>> {
    let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(source_from_row).transpose()
}

pub(super) async fn insert_source(
    conn: &mut SqliteConnection,
    new: NewSource,
    now: i64,
) -> StoreResult<Source> {
    let id = new_id("src");
    sqlx::query(
        "INSERT INTO sources (id, workspace_id, kind, name, account_full_name, account_email, account_phone,
            credentials, enabled, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&new.workspace_id)
    .bind(new.kind.as_str())
    .bind(&new.name)
    .bind(&new.account.full_name)
    .bind(&new.account.email)
    .bind(&new.account.phone)
    .bind(new.credentials.to_string())
    .bind(new.enabled)
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(fetch_source(conn, &id).await?.expect("just inserted"))
}

pub(super) async fn patch_source(
    conn: &mut SqliteConnection,
    id: &str,
    patch: SourcePatch,
    now: i64,
) -> StoreResult<Option<Source>> {
    let account = patch.account.clone();
    let changed = sqlx::query(
        "UPDATE sources SET
            name = COALESCE(?, name),
            account_full_name = CASE WHEN ? THEN ? ELSE account_full_name END,
            account_email = CASE WHEN ? THEN ? ELSE account_email END,
            account_phone = CASE WHEN ? THEN ? ELSE account_phone END,
            credentials = COALESCE(?, credentials),
            enabled = COALESCE(?, enabled),
            updated_at = ?
         WHERE id = ?",
    )
    .bind(&patch.name)
    .bind(account.is_some())
    .bind(account.as_ref().and_then(|a| a.full_name.clone()))
    .bind(account.is_some())
    .bind(account.as_ref().and_then(|a| a.email.clone()))
    .bind(account.is_some())
    .bind(account.as_ref().and_then(|a| a.phone.clone()))
    .bind(patch.credentials.as_ref().map(|c| c.to_string()))
    .bind(patch.enabled)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(None);
    }
    fetch_source(conn, id).await
}

/// What the chat's reply looks like now: can messages be exchanged, and if not, why.
fn reply_status(chat: &Chat, now: i64) -> &'static str {
    match chat.session_status {
        Some(SessionStatus::Blocked) => "SESSION_BLOCKED",
        Some(SessionStatus::Ended) => "SESSION_ENDED",
        _ if chat.reply_window_expires_at.is_some_and(|t| ms(t) <= now) => "SESSION_EXPIRED",
        _ => "ACCEPTED",
    }
}

/// Queues `payload` for every webhook of the workspace subscribed to session events, in the
/// chat's lane (so they interleave in order with its messages and bundles).
async fn queue(
    conn: &mut SqliteConnection,
    workspace_id: &str,
    chat_id: i64,
    payload: &[u8],
    now: i64,
) -> StoreResult<()> {
    let webhooks: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM webhooks WHERE workspace_id = ? AND sub_session_status = 1 ORDER BY created_at, id",
    )
    .bind(workspace_id)
    .fetch_all(&mut *conn)
    .await?;
    for webhook_id in webhooks {
        sqlx::query(
            "INSERT INTO deliveries (id, kind, webhook_id, chat_id, payload, status, next_attempt_at, created_at)
             VALUES (?, 'session_status', ?, ?, ?, 'pending', ?, ?)",
        )
        .bind(new_id("ses"))
        .bind(&webhook_id)
        .bind(chat_id)
        .bind(payload)
        .bind(DUE_AT_ONCE)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Whether anyone in the workspace listens to session events (so nothing is rendered in vain).
pub(super) async fn has_listeners(conn: &mut SqliteConnection, workspace_id: &str) -> StoreResult<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE workspace_id = ? AND sub_session_status = 1")
            .bind(workspace_id)
            .fetch_one(conn)
            .await?;
    Ok(n > 0)
}

/// The detail a session event needs beyond the chat row.
struct SessionRow {
    source_key: String,
    session_id: Option<String>,
    assignee_type: Option<String>,
}

async fn session_row(conn: &mut SqliteConnection, chat_id: i64) -> StoreResult<(SessionRow, u64)> {
    let row = sqlx::query(
        "SELECT source_key, session_id, assignee_type,
                (SELECT COUNT(*) FROM messages WHERE chat_id = ?1) AS messages
         FROM chats WHERE id = ?1",
    )
    .bind(chat_id)
    .fetch_one(conn)
    .await?;
    Ok((
        SessionRow {
            source_key: row.try_get("source_key")?,
            session_id: row.try_get("session_id")?,
            assignee_type: row.try_get("assignee_type")?,
        },
        row.try_get::<i64, _>("messages")? as u64,
    ))
}

/// The event for a chat's session as it stands.
async fn event(
    conn: &mut SqliteConnection,
    workspace_id: &str,
    chat: &Chat,
    old_status: Option<SessionStatus>,
    reply: Option<&str>,
    now: i64,
) -> StoreResult<SessionEvent> {
    let (detail, messages_count) = session_row(conn, chat.id).await?;
    Ok(SessionEvent {
        workspace_id: workspace_id.to_string(),
        chat: chat.clone(),
        source_key: detail.source_key,
        session_id: detail.session_id,
        status: chat.session_status,
        old_status,
        reply_status: reply.unwrap_or_else(|| reply_status(chat, now)).to_string(),
        assignee_type: detail.assignee_type,
        messages_count,
        at: from_ms(now),
    })
}

/// Queues the event for a chat whose session changed (or whose reply window lapsed).
pub(super) async fn announce(
    conn: &mut SqliteConnection,
    workspace_id: &str,
    chat: &Chat,
    old_status: Option<SessionStatus>,
    reply: Option<&str>,
    now: i64,
    render: &RenderSession,
) -> StoreResult<()> {
    let event = event(conn, workspace_id, chat, old_status, reply, now).await?;
    let payload = render(&event);
    queue(conn, workspace_id, chat.id, &payload, now).await
}

/// See [`crate::store::Store::session_snapshot`].
pub(super) async fn snapshot(
    conn: &mut SqliteConnection,
    chat_id: i64,
    now: i64,
) -> StoreResult<Option<SessionEvent>> {
    let sql = format!("SELECT workspace_id, {CHAT_COLUMNS} FROM chats WHERE id = ?");
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(chat_id).fetch_optional(&mut *conn).await?
    else {
        return Ok(None);
    };
    let workspace_id: String = row.try_get("workspace_id")?;
    let (chat, _) = chat_from_row(&row)?;
    let status = chat.session_status;
    Ok(Some(event(conn, &workspace_id, &chat, status, None, now).await?))
}

/// Applies a session change a channel reported, and queues a `session_status` event for
/// subscribed webhooks when the status changed. Returns whether it did.
pub(super) async fn change(
    conn: &mut SqliteConnection,
    change: &SessionChange,
    render: &RenderSession,
    now: i64,
) -> StoreResult<bool> {
    let old: Option<Option<String>> = sqlx::query_scalar(
        "SELECT session_status FROM chats WHERE workspace_id = ? AND source_key = ? AND external_id = ?",
    )
    .bind(&change.workspace_id)
    .bind(&change.source_key)
    .bind(&change.chat.external_id)
    .fetch_optional(&mut *conn)
    .await?;
    let old = old.flatten().and_then(|s| SessionStatus::parse(&s));
    let c = &change.chat;
    let sql = format!(
        "INSERT INTO chats (workspace_id, source_key, external_id, full_name, phone, is_group, responsible_name,
                            responsible_email, token, first_seen_at, last_received_at, channel, session_status,
                            session_id, assignee_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (workspace_id, source_key, external_id) DO UPDATE SET
            full_name = COALESCE(excluded.full_name, chats.full_name),
            phone = COALESCE(excluded.phone, chats.phone),
            responsible_name = COALESCE(excluded.responsible_name, chats.responsible_name),
            responsible_email = COALESCE(excluded.responsible_email, chats.responsible_email),
            channel = COALESCE(excluded.channel, chats.channel),
            session_status = COALESCE(excluded.session_status, chats.session_status),
            session_id = COALESCE(excluded.session_id, chats.session_id),
            assignee_type = COALESCE(excluded.assignee_type, chats.assignee_type)
         RETURNING {CHAT_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&change.workspace_id)
        .bind(&change.source_key)
        .bind(&c.external_id)
        .bind(&c.full_name)
        .bind(&c.phone)
        .bind(c.is_group)
        .bind(&c.responsible_name)
        .bind(&c.responsible_email)
        .bind(random_token(32))
        .bind(now)
        .bind(&change.channel)
        .bind(change.status.map(SessionStatus::as_str))
        .bind(&change.session_id)
        .bind(&change.assignee_type)
        .fetch_one(&mut *conn)
        .await?;
    let (chat, _) = chat_from_row(&row)?;
    let changed = change.status.is_some() && change.status != old;
    if changed {
        announce(conn, &change.workspace_id, &chat, old, None, now, render).await?;
    }
    Ok(changed)
}

/// See [`crate::store::Store::announce_expiries`].
pub(super) async fn expiries(
    conn: &mut SqliteConnection,
    now: i64,
    limit: u32,
    render: RenderSession,
) -> StoreResult<u64> {
    let sql = format!(
        "SELECT workspace_id, {CHAT_COLUMNS} FROM chats
         WHERE expiry_announced = 0 AND reply_window_expires_at <= ?
         ORDER BY reply_window_expires_at LIMIT ?"
    );
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(i64::from(limit)).fetch_all(&mut *conn).await?;
    for row in &rows {
        let workspace_id: String = row.try_get("workspace_id")?;
        let (chat, _) = chat_from_row(row)?;
        sqlx::query("UPDATE chats SET expiry_announced = 1 WHERE id = ?")
            .bind(chat.id)
            .execute(&mut *conn)
            .await?;
        let status = chat.session_status;
        announce(conn, &workspace_id, &chat, status, Some("SESSION_EXPIRED"), now, &render).await?;
    }
    Ok(rows.len() as u64)
}
