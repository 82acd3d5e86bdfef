//! Ingest, merged: every ingest request waiting for a commit is stored with a few multi-row
//! statements instead of a few statements per message. Each statement costs a round trip to
//! SQLite's worker thread, so this is what lets one writer keep up with many connections.
//!
//! The merge keeps the meaning of storing the requests one after another: a message id seen
//! earlier (in the database or earlier in the merge) is a duplicate, chat details given later
//! override earlier ones, and deliveries are queued in message order.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite};
use tracing::instrument;

use super::SqliteStore;
use super::activity::insert_event;
use super::queue::{Enqueue, enqueue};
use super::rows::{CHAT_COLUMNS, chat, ms};
use super::sessions;
use crate::domain::{
    Account, ChatId, DeliveryId, DeliveryKind, Direction, SessionStatus, WebhookId, WorkspaceId,
    random_token, reply_window,
};
use crate::store::{Chat, ChatInfo, IngestBatch, IngestOutcome, IngestStore, NewMessage, StoreResult};

#[async_trait]
impl IngestStore for SqliteStore {
    #[instrument(skip_all, fields(workspace_id = %batch.workspace_id, messages = batch.messages.len()))]
    async fn ingest(&self, batch: IngestBatch) -> StoreResult<IngestOutcome> {
        self.writer.ingest(batch).await
    }
}

/// Rows per multi-row statement: far below SQLite's limit of 32,766 bound values.
const ROWS_PER_STATEMENT: usize = 500;

type ChatKey<'a> = (&'a str, &'a str, &'a str);

/// A message that is new to this merge (it may still be a duplicate of a stored one).
struct Candidate<'a> {
    batch: usize,
    message: &'a NewMessage,
    chat: ChatKey<'a>,
}

/// What the merge knows of a workspace.
struct WorkspaceInfo {
    account: Account,
    /// Webhooks that get each message at once, oldest first.
    immediate: Vec<WebhookId>,
}

/// Stores the requests as received at `now` (the transaction's time).
pub(super) async fn ingest_many(
    conn: &mut SqliteConnection,
    batches: &[IngestBatch],
    now: DateTime<Utc>,
) -> StoreResult<Vec<IngestOutcome>> {
    let now = ms(now);
    let mut outcomes = vec![IngestOutcome::default(); batches.len()];

    let mut workspaces: HashMap<&str, WorkspaceInfo> = HashMap::new();
    for batch in batches {
        if !workspaces.contains_key(batch.workspace_id.as_str()) {
            let info = workspace_info(conn, &batch.workspace_id).await?;
            workspaces.insert(batch.workspace_id.as_str(), info);
        }
    }

    // Later copies of a message id within the merge are duplicates of the first.
    let mut seen: HashSet<(&str, &str, &str)> = HashSet::new();
    let mut candidates = Vec::new();
    // Chat details, merged in arrival order so later details win, as sequential updates would.
    let mut chats: HashMap<ChatKey, ChatUpdate> = HashMap::new();
    let mut chat_order: Vec<ChatKey> = Vec::new();
    for (index, batch) in batches.iter().enumerate() {
        for message in &batch.messages {
            let key = (batch.workspace_id.as_str(), batch.source_key.as_str(), message.message_id.as_str());
            if !seen.insert(key) {
                outcomes[index].duplicates += 1;
                continue;
            }
            let chat =
                (batch.workspace_id.as_str(), batch.source_key.as_str(), message.chat.external_id.as_str());
            let update = chats.entry(chat).or_insert_with(|| {
                chat_order.push(chat);
                ChatUpdate {
                    info: message.chat.clone(),
                    channel: message.channel.clone(),
                    customer_at: None,
                    window: None,
                }
            });
            merge_chat(&mut update.info, &message.chat);
            update.channel.clone_from(&message.channel);
            if message.direction == Direction::Received {
                // The reply window runs from the customer's latest message.
                let at = ms(message.timestamp);
                if update.customer_at.is_none_or(|c| at > c) {
                    update.customer_at = Some(at);
                    update.window = reply_window(&message.channel).map(|w| at + w.as_millis() as i64);
                }
            }
            candidates.push(Candidate { batch: index, message, chat });
        }
    }

    let stored_chats = upsert_chats(conn, &chat_order, &chats, now).await?;
    let inserted = insert_messages(conn, &candidates, &stored_chats, now).await?;

    // A chat is new when no message of it was stored before; its first message here says so.
    let mut first_of_chat: HashMap<ChatId, i64> = HashMap::new();

    let mut deliveries: Vec<Enqueue> = Vec::new();
    let mut accepted: Vec<(&Candidate, i64)> = candidates
        .iter()
        .filter_map(|c| {
            let key = (c.chat.0, c.chat.1, c.message.message_id.as_str());
            inserted.get(&key).map(|seq| (c, *seq))
        })
        .collect();
    accepted.sort_by_key(|(_, seq)| *seq);
    for (candidate, seq) in &accepted {
        let (chat, first_message_seq) = &stored_chats[&candidate.chat];
        let is_new_chat = first_message_seq.is_none() && !first_of_chat.contains_key(&chat.id);
        if is_new_chat {
            first_of_chat.insert(chat.id, *seq);
        }
        outcomes[candidate.batch].accepted += 1;
        let batch = &batches[candidate.batch];
        let workspace = &workspaces[batch.workspace_id.as_str()];
        if workspace.immediate.is_empty() {
            continue;
        }
        let payload = (batch.render_immediate)(&workspace.account, chat, candidate.message, is_new_chat);
        for webhook in &workspace.immediate {
            deliveries.push(Enqueue {
                id: DeliveryId::generate(),
                kind: DeliveryKind::Message,
                webhook: webhook.clone(),
                chat: Some(chat.id),
                payload: payload.clone(),
                bundle: None,
            });
        }
    }
    for candidate in &candidates {
        let key = (candidate.chat.0, candidate.chat.1, candidate.message.message_id.as_str());
        if !inserted.contains_key(&key) {
            outcomes[candidate.batch].duplicates += 1;
        }
    }

    // Chats created by this merge start their session: tell session_status webhooks.
    for (key, (created, _)) in &stored_chats {
        let workspace = WorkspaceId::from(key.0);
        if ms(created.first_seen_at) == now && sessions::has_listeners(conn, &workspace).await? {
            let render = &batches
                .iter()
                .find(|b| b.workspace_id.as_str() == key.0)
                .expect("a batch of the chat")
                .render_session;
            sessions::announce(conn, &workspace, created, None, None, now, render).await?;
        }
    }
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
                "count": batch.skipped.len(), "source": batch.source_key, "message_ids": batch.skipped,
            });
            insert_event(conn, &batch.workspace_id, None, now, "skipped", &detail).await?;
        }
    }
    Ok(outcomes)
}

async fn workspace_info(
    conn: &mut SqliteConnection,
    workspace_id: &WorkspaceId,
) -> StoreResult<WorkspaceInfo> {
    // One statement: the account, and the webhooks that get each message at once as a JSON list.
    let row = sqlx::query(
        "SELECT s.account_full_name, s.account_email, s.account_phone,
                (SELECT json_group_array(id) FROM (
                    SELECT w.id FROM webhooks w
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
    let immediate: Vec<String> = serde_json::from_str(&immediate).unwrap_or_default();
    let immediate = immediate.into_iter().map(WebhookId::from).collect();
    Ok(WorkspaceInfo { account, immediate })
}

fn merge_chat(into: &mut ChatInfo, later: &ChatInfo) {
    fn take(into: &mut Option<String>, later: &Option<String>) {
        if later.is_some() {
            into.clone_from(later);
        }
    }
    take(&mut into.full_name, &later.full_name);
    take(&mut into.phone, &later.phone);
    take(&mut into.responsible_name, &later.responsible_name);
    take(&mut into.responsible_email, &later.responsible_email);
    if later.is_group.is_some() {
        into.is_group = later.is_group;
    }
}

/// Inserts or updates each chat once; returns the stored chat and whether it already had a
/// first message (before this merge), by key.
async fn upsert_chats<'a>(
    conn: &mut SqliteConnection,
    order: &[ChatKey<'a>],
    chats: &HashMap<ChatKey<'a>, ChatUpdate>,
    now: i64,
) -> StoreResult<HashMap<ChatKey<'a>, (Chat, Option<i64>)>> {
    let mut stored = HashMap::with_capacity(order.len());
    for keys in order.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO chats (workspace_id, source_key, external_id, full_name, phone, is_group,
                                responsible_name, responsible_email, token, first_seen_at,
                                last_received_at, channel, session_status, last_customer_message_at,
                                reply_window_expires_at, expiry_announced) ",
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
                .push_bind(update.window.is_none());
        });
        // A later customer message moves the reply window, and a lapse of it is due again.
        query.push(format!(
            " ON CONFLICT (workspace_id, source_key, external_id) DO UPDATE SET
                full_name = COALESCE(excluded.full_name, chats.full_name),
                phone = COALESCE(excluded.phone, chats.phone),
                is_group = COALESCE(excluded.is_group, chats.is_group),
                responsible_name = COALESCE(excluded.responsible_name, chats.responsible_name),
                responsible_email = COALESCE(excluded.responsible_email, chats.responsible_email),
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

/// The condition, in a chat upsert, that this batch carries a later customer message.
const LATER: &str = "excluded.last_customer_message_at > COALESCE(chats.last_customer_message_at, -1)";

/// What one merge says of a chat.
struct ChatUpdate {
    info: ChatInfo,
    /// The channel of its latest message (it decides the reply window).
    channel: String,
    /// The latest customer message's time, and the reply window it opens.
    customer_at: Option<i64>,
    window: Option<i64>,
}

/// Inserts the candidates; returns the queue position of each one that was new, by
/// (workspace, source, message id). The others were already stored: duplicates.
async fn insert_messages<'a>(
    conn: &mut SqliteConnection,
    candidates: &[Candidate<'a>],
    chats: &HashMap<ChatKey<'a>, (Chat, Option<i64>)>,
    now: i64,
) -> StoreResult<HashMap<(&'a str, &'a str, &'a str), i64>> {
    let mut inserted = HashMap::with_capacity(candidates.len());
    for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (workspace_id, chat_id, source_key, message_id, direction, ts,
                                   received_at, sender_name, sender_phone, recipient_name,
                                   recipient_phone, text, account, channel) ",
        );
        query.push_values(chunk, |mut row, c| {
            let m = c.message;
            let account = m.account.as_ref().map(|a| serde_json::to_string(a).expect("accounts serialise"));
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
                .push_bind(m.channel.clone());
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
            inserted.insert((c.chat.0, c.chat.1, c.message.message_id.as_str()), row.try_get("seq")?);
        }
    }
    Ok(inserted)
}

/// Records the first message of chats that had none, which decides `is_new_chat` later.
async fn mark_first_messages(
    conn: &mut SqliteConnection,
    first_of_chat: &HashMap<ChatId, i64>,
) -> StoreResult<()> {
    let pairs: Vec<(i64, i64)> = first_of_chat.iter().map(|(c, s)| (c.0, *s)).collect();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new("WITH firsts (chat_id, seq) AS (");
        query.push_values(chunk, |mut row, (chat, seq)| {
            row.push_bind(*chat).push_bind(*seq);
        });
        query.push(
            ") UPDATE chats SET first_message_seq = (SELECT seq FROM firsts WHERE chat_id = chats.id)
               WHERE id IN (SELECT chat_id FROM firsts) AND first_message_seq IS NULL",
        );
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}
