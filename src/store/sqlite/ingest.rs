//! Ingest, merged: every ingest request waiting for a commit is stored with a few multi-row
//! statements instead of a few statements per message ([`crate::store::merge`]). Each statement
//! costs a round trip to SQLite's worker thread, so this is what lets one writer keep up with
//! many connections.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite};
use tracing::instrument;

use super::SqliteStore;
use super::log::insert_event;
use super::queue::enqueue;
use super::rows::{CHAT_COLUMNS, chat, ms};
use super::sessions;
use crate::domain::{Account, AccountType, ChatId, SessionStatus, WebhookId, WorkspaceId, random_token};
use crate::store::merge::{self, Candidate, ChatKey, ChatUpdate, LATER, MessageKey, WorkspaceInfo, merge};
use crate::store::{Chat, FirstMessages, IngestBatch, IngestOutcome, IngestStore, StoreResult};

#[async_trait]
impl IngestStore for SqliteStore {
    #[instrument(skip_all, fields(workspace_id = %batch.workspace_id, messages = batch.messages.len()))]
    async fn ingest(&self, batch: IngestBatch) -> StoreResult<IngestOutcome> {
        self.writer.ingest(batch).await
    }
}

/// Rows per multi-row statement: far below SQLite's limit of 32,766 bound values.
const ROWS_PER_STATEMENT: usize = 500;

/// Stores the requests as received at `now` (the transaction's time).
pub(super) async fn ingest_many(
    conn: &mut SqliteConnection,
    batches: &[IngestBatch],
    now: DateTime<Utc>,
) -> StoreResult<Vec<IngestOutcome>> {
    let now = ms(now);
    let mut workspaces: HashMap<&str, WorkspaceInfo> = HashMap::new();
    for batch in batches {
        if !workspaces.contains_key(batch.workspace_id.as_str()) {
            let info = workspace_info(conn, &batch.workspace_id).await?;
            workspaces.insert(batch.workspace_id.as_str(), info);
        }
    }

    let mut merged = merge(batches);
    let mut stored_chats = upsert_chats(conn, &merged.chat_order, &merged.chats, now).await?;
    let inserted = insert_messages(conn, &merged.candidates, &stored_chats, now).await?;

    // Chats created by this merge start their session: recorded, and told to session_status
    // webhooks. Then the new messages move sessions on (a new session after ENDED, a reply).
    let created: Vec<ChatKey> = merged
        .chat_order
        .iter()
        .filter(|key| ms(stored_chats[*key].0.first_seen_at) == now)
        .copied()
        .collect();
    let started: Vec<(ChatId, &str)> = created.iter().map(|key| (stored_chats[key].0.id, key.1)).collect();
    sessions::record_started(conn, &started, now).await?;
    let mut listeners = sessions::Listeners::default();
    for key in &created {
        if listeners.of(conn, key.0).await? {
            let workspace = WorkspaceId::from(key.0);
            let render = merge::render_session(batches, key.0);
            let chat = &stored_chats[key].0;
            sessions::announce(conn, &workspace, chat, None, &Default::default(), now, render).await?;
            merge::session_started(batches, &mut merged, key.0);
        }
    }
    let moves = merge::session_moves(&merged, &stored_chats, &inserted);
    sessions::apply_moves(conn, &moves, &mut stored_chats, &mut listeners, batches, &mut merged, now).await?;
    let replies = merge::replies_after_window(&merged, &stored_chats, &inserted);
    for key in count_replies(conn, &replies, &mut stored_chats).await? {
        // The business can no longer write to the chat: news for session_status webhooks.
        if listeners.of(conn, key.0).await? {
            let workspace = WorkspaceId::from(key.0);
            let render = merge::render_session(batches, key.0);
            let chat = &stored_chats[&key].0;
            let status = chat.session_status;
            sessions::announce(conn, &workspace, chat, status, &merge::limit_reached(), now, render).await?;
            merge::session_started(batches, &mut merged, key.0);
        }
    }
    let (deliveries, first_of_chat) =
        merge::deliveries(batches, &mut merged, &stored_chats, &inserted, &workspaces);
    mark_first_messages(conn, &first_of_chat).await?;
    enqueue(conn, &deliveries, now).await?;

    // What else each request brought commits with its messages: session news, then the note of
    // what it skipped.
    for batch in batches {
        for change in &batch.sessions {
            sessions::change(conn, change, &batch.render_session, now).await?;
        }
        if !batch.skipped.is_empty() {
            let detail = serde_json::json!({
                "count": batch.skipped.len(), "source": batch.source_name, "message_ids": batch.skipped,
            });
            insert_event(conn, &batch.workspace_id, None, now, "skipped", &detail).await?;
        }
    }
    Ok(merged.outcomes)
}

async fn workspace_info(
    conn: &mut SqliteConnection,
    workspace_id: &WorkspaceId,
) -> StoreResult<WorkspaceInfo> {
    // One statement: the account, and the webhooks that get each message at once as a JSON list
    // of [id, media].
    let row = sqlx::query(
        "SELECT s.account_full_name, s.account_email, s.account_phone, s.locale,
                (SELECT json_group_array(json_array(id, media)) FROM (
                    SELECT w.id, w.media FROM webhooks w
                    WHERE w.workspace_id = s.id AND w.sub_messages = 1
                      AND COALESCE(w.granularity, s.granularity) = 'none'
                    ORDER BY w.created_at, w.id)) AS immediate
         FROM workspaces s WHERE s.id = ?",
    )
    .bind(workspace_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let account = Account {
        full_name: row.try_get("account_full_name")?,
        email: row.try_get("account_email")?,
        phone: row.try_get("account_phone")?,
    };
    let immediate: String = row.try_get("immediate")?;
    let immediate: Vec<(String, String)> = serde_json::from_str(&immediate).unwrap_or_default();
    let immediate = immediate
        .into_iter()
        .map(|(id, media)| (WebhookId::from(id), media.parse().unwrap_or_default()))
        .collect();
    let locale = row.try_get::<String, _>("locale")?.parse().unwrap_or_default();
    Ok(WorkspaceInfo { account, locale, immediate })
}

/// Inserts or updates each chat once; returns the stored chat and whether it already had a
/// first message (before this merge), by key.
async fn upsert_chats<'a>(
    conn: &mut SqliteConnection,
    order: &[ChatKey<'a>],
    chats: &HashMap<ChatKey<'a>, ChatUpdate>,
    now: i64,
) -> StoreResult<HashMap<ChatKey<'a>, (Chat, FirstMessages)>> {
    let mut stored = HashMap::with_capacity(order.len());
    for keys in order.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO chats (workspace_id, source_key, external_id, full_name, phone, is_group,
                                responsible_name, responsible_email, token, first_seen_at,
                                last_received_at, channel, session_status, last_customer_message_at,
                                reply_window_expires_at, expiry_announced, responsible_id, account_type) ",
        );
        query.push_values(keys, |mut row, key| {
            let update = &chats[key];
            let info = &update.info;
            row.push_bind(key.0.to_string())
                .push_bind(key.1.to_string())
                .push_bind(key.2.to_string())
                .push_bind(info.full_name.clone())
                .push_bind(info.phone.clone())
                .push_bind(info.is_group)
                .push_bind(info.responsible_name.clone())
                .push_bind(info.responsible_email.clone())
                .push_bind(random_token(32))
                .push_bind(now)
                .push_bind(now)
                .push_bind(update.channel.clone())
                // A chat that starts with a message starts a session.
                .push_bind(SessionStatus::Created.as_str())
                .push_bind(update.customer_at)
                .push_bind(update.window)
                .push_bind(update.window.is_none())
                .push_bind(info.responsible_id.clone())
                .push_bind(info.account_type.map(AccountType::as_str));
        });
        // A later customer message moves the reply window, and a lapse of it is due again.
        query.push(format!(
            " ON CONFLICT (workspace_id, source_key, external_id) DO UPDATE SET
                full_name = COALESCE(excluded.full_name, chats.full_name),
                phone = COALESCE(excluded.phone, chats.phone),
                is_group = COALESCE(excluded.is_group, chats.is_group),
                responsible_name = COALESCE(excluded.responsible_name, chats.responsible_name),
                responsible_email = COALESCE(excluded.responsible_email, chats.responsible_email),
                responsible_id = COALESCE(excluded.responsible_id, chats.responsible_id),
                account_type = COALESCE(excluded.account_type, chats.account_type),
                last_received_at = excluded.last_received_at,
                channel = excluded.channel,
                last_customer_message_at = CASE WHEN {LATER} THEN excluded.last_customer_message_at
                                                ELSE chats.last_customer_message_at END,
                reply_window_expires_at = CASE WHEN {LATER} THEN excluded.reply_window_expires_at
                                               ELSE chats.reply_window_expires_at END,
                expiry_announced = CASE WHEN {LATER} THEN excluded.expiry_announced
                                        ELSE chats.expiry_announced END
             RETURNING workspace_id, source_key, {CHAT_COLUMNS}"
        ));
        let rows = query.build().fetch_all(&mut *conn).await?;
        // RETURNING promises no order: match rows to keys by their values.
        let by_value: HashMap<(String, String, String), &ChatKey> =
            keys.iter().map(|k| ((k.0.to_string(), k.1.to_string(), k.2.to_string()), k)).collect();
        for row in rows {
            let value: (String, String, String) =
                (row.try_get("workspace_id")?, row.try_get("source_key")?, row.try_get("external_id")?);
            let key = **by_value.get(&value).expect("RETURNING gives back the rows inserted");
            stored.insert(key, chat(&row)?);
        }
    }
    Ok(stored)
}

/// Inserts the candidates; returns the queue position of each one that was new, by
/// (workspace, source, message id). The others were already stored: duplicates.
async fn insert_messages<'a>(
    conn: &mut SqliteConnection,
    candidates: &[Candidate<'a>],
    chats: &HashMap<ChatKey<'a>, (Chat, FirstMessages)>,
    now: i64,
) -> StoreResult<HashMap<MessageKey<'a>, i64>> {
    let mut inserted = HashMap::with_capacity(candidates.len());
    for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (workspace_id, chat_id, source_key, message_id, direction, ts,
                                   received_at, sender_name, sender_phone, recipient_name,
                                   recipient_phone, text, account, channel, attachments) ",
        );
        query.push_values(chunk, |mut row, c| {
            let m = c.message;
            let account = m.account.as_ref().map(|a| serde_json::to_string(a).expect("accounts serialise"));
            let attachments = (!m.attachments.is_empty())
                .then(|| serde_json::to_string(&m.attachments).expect("attachments serialise"));
            row.push_bind(c.chat.0.to_string())
                .push_bind(chats[&c.chat].0.id.0)
                .push_bind(c.chat.1.to_string())
                .push_bind(m.message_id.clone())
                .push_bind(m.direction.as_str())
                .push_bind(ms(m.timestamp))
                .push_bind(now)
                .push_bind(m.sender.full_name.clone())
                .push_bind(m.sender.phone.clone())
                .push_bind(m.recipient.full_name.clone())
                .push_bind(m.recipient.phone.clone())
                .push_bind(m.text.clone())
                .push_bind(account)
                .push_bind(m.channel.clone())
                .push_bind(attachments);
        });
        query.push(
            " ON CONFLICT (workspace_id, source_key, message_id) DO NOTHING
             RETURNING seq, workspace_id, source_key, message_id",
        );
        let rows = query.build().fetch_all(&mut *conn).await?;
        let by_value: HashMap<(&str, &str, &str), &Candidate> =
            chunk.iter().map(|c| ((c.chat.0, c.chat.1, c.message.message_id.as_str()), c)).collect();
        for row in rows {
            let ws: String = row.try_get("workspace_id")?;
            let source: String = row.try_get("source_key")?;
            let id: String = row.try_get("message_id")?;
            let c = by_value[&(ws.as_str(), source.as_str(), id.as_str())];
            inserted.insert(c.key(), row.try_get("seq")?);
        }
    }
    Ok(inserted)
}

/// Counts what the business sent after chats' reply windows into their allowance periods
/// ([`merge::replies_after_window`]); the stored chats say the new count (the payloads show it).
/// Returns the chats whose allowance these messages used up.
async fn count_replies<'a>(
    conn: &mut SqliteConnection,
    counts: &[(ChatKey<'a>, i64, u32)],
    stored: &mut HashMap<ChatKey<'a>, (Chat, FirstMessages)>,
) -> StoreResult<Vec<ChatKey<'a>>> {
    let mut used_up = Vec::new();
    for (key, period, sent) in counts {
        let Some((chat, _)) = stored.get_mut(key) else { continue };
        let (now_period, used): (i64, i64) = sqlx::query_as(
            "UPDATE chats SET
                replies_used = CASE WHEN replies_period = ?1 THEN replies_used + ?2
                                    WHEN replies_period > ?1 THEN replies_used ELSE ?2 END,
                replies_period = MAX(COALESCE(replies_period, ?1), ?1)
             WHERE id = ?3 RETURNING replies_period, replies_used",
        )
        .bind(period)
        .bind(i64::from(*sent))
        .bind(chat.id.0)
        .fetch_one(&mut *conn)
        .await?;
        chat.replies_used = Some((now_period, used as u32));
        if now_period == *period && merge::used_up(chat, used as u32, *sent) {
            used_up.push(*key);
        }
    }
    Ok(used_up)
}

/// Records the first messages (ever, with words) of chats that had none, which decide
/// `is_new_chat` later.
async fn mark_first_messages(
    conn: &mut SqliteConnection,
    firsts: &HashMap<ChatId, FirstMessages>,
) -> StoreResult<()> {
    let rows: Vec<(i64, FirstMessages)> = firsts.iter().map(|(c, f)| (c.0, *f)).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new("WITH firsts (chat_id, any_seq, text_seq) AS (");
        query.push_values(chunk, |mut row, (chat, first)| {
            row.push_bind(*chat).push_bind(first.any).push_bind(first.text);
        });
        query.push(
            ") UPDATE chats SET
                 first_message_seq = COALESCE(first_message_seq,
                     (SELECT any_seq FROM firsts WHERE chat_id = chats.id)),
                 first_text_seq = COALESCE(first_text_seq,
                     (SELECT text_seq FROM firsts WHERE chat_id = chats.id))
               WHERE id IN (SELECT chat_id FROM firsts)",
        );
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}
