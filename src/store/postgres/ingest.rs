//! Ingest on PostgreSQL: one transaction per request, under its workspace's shared lock (so a
//! close of the workspace's windows waits for it, or it for the close), with the chats it writes
//! locked in key order (so the lanes it adds to are numbered in commit order, and two daemons
//! writing the same chats never deadlock).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use sqlx::{Postgres, QueryBuilder, Row};
use tracing::instrument;

use super::activity::insert_event;
use super::queue::enqueue;
use super::rows::{CHAT_COLUMNS, chat, ms};
use super::{PgStore, lock_workspace, sessions};
use crate::domain::{Account, ChatId, SessionStatus, WebhookId, random_token};
use crate::store::merge::{self, Candidate, ChatKey, ChatUpdate, LATER, MessageKey, WorkspaceInfo, merge};
use crate::store::{Chat, IngestBatch, IngestOutcome, IngestStore, StoreResult};

/// Rows per multi-row statement: 16 values each, far below PostgreSQL's 65,535 parameters.
const ROWS_PER_STATEMENT: usize = 1000;

#[async_trait]
impl IngestStore for PgStore {
    #[instrument(skip_all, fields(workspace_id = %batch.workspace_id, messages = batch.messages.len()))]
    async fn ingest(&self, batch: IngestBatch) -> StoreResult<IngestOutcome> {
        let mut tx = self.pool.begin().await?;
        // Shared: requests of one workspace run side by side; a close of its windows waits.
        lock_workspace(&mut tx, &batch.workspace_id, false).await?;
        // The time of receipt is read only now, holding the lock; it is never before the
        // workspace's last closed boundary, whatever the clock did.
        let skew = self.skew();
        let row = sqlx::query(
            "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS db_now, closed_through,
                    account_full_name, account_email, account_phone,
                    ARRAY(SELECT w.id FROM webhooks w
                          WHERE w.workspace_id = s.id AND w.sub_messages
                            AND COALESCE(w.granularity, s.granularity) = 'none'
                          ORDER BY w.created_at, w.id) AS immediate
             FROM workspaces s WHERE s.id = $1",
        )
        .bind(batch.workspace_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let db_now: i64 = row.try_get("db_now")?;
        let now = self.not_before_latest((db_now + skew).max(row.try_get("closed_through")?));
        let info = WorkspaceInfo {
            account: Account {
                full_name: row.try_get("account_full_name")?,
                email: row.try_get("account_email")?,
                phone: row.try_get("account_phone")?,
            },
            immediate: row.try_get::<Vec<String>, _>("immediate")?.into_iter().map(WebhookId::from).collect(),
        };
        let batches = std::slice::from_ref(&batch);
        let workspaces = HashMap::from([(batch.workspace_id.as_str(), info)]);

        let mut merged = merge(batches);
        let mut order = merged.chat_order.clone();
        order.sort();
        let (stored, created) = upsert_chats(&mut tx, &order, &merged.chats, now).await?;
        let inserted = insert_messages(&mut tx, &merged.candidates, &stored, now).await?;
        let (deliveries, first_of_chat) =
            merge::deliveries(batches, &mut merged, &stored, &inserted, &workspaces);

        // Chats this request created start their session: tell session_status webhooks.
        if !created.is_empty() && sessions::has_listeners(&mut tx, &batch.workspace_id).await? {
            for key in &created {
                let (chat, _) = &stored[key];
                sessions::announce(
                    &mut tx,
                    &batch.workspace_id,
                    chat,
                    None,
                    None,
                    now,
                    &batch.render_session,
                )
                .await?;
            }
        }
        mark_first_messages(&mut tx, &first_of_chat).await?;
        enqueue(&mut tx, &deliveries, now).await?;
        for change in &batch.sessions {
            sessions::change(&mut tx, change, &batch.render_session, now).await?;
        }
        if !batch.skipped.is_empty() {
            let detail = serde_json::json!({
                "count": batch.skipped.len(), "source": batch.source_key, "message_ids": batch.skipped,
            });
            insert_event(&mut tx, &batch.workspace_id, None, now, "skipped", &detail).await?;
        }
        tx.commit().await?;
        Ok(merged.outcomes.remove(0))
    }
}

/// Inserts or updates each chat once, in `order`; returns the stored chat with the position of
/// its first message before this request, by key, and the keys of the chats it created.
async fn upsert_chats<'a>(
    conn: &mut PgConnection,
    order: &[ChatKey<'a>],
    chats: &HashMap<ChatKey<'a>, ChatUpdate>,
    now: i64,
) -> StoreResult<(HashMap<ChatKey<'a>, (Chat, Option<i64>)>, Vec<ChatKey<'a>>)> {
    let mut stored = HashMap::with_capacity(order.len());
    let mut created = Vec::new();
    for keys in order.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(
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
                last_received_at = GREATEST(excluded.last_received_at, chats.last_received_at),
                channel = excluded.channel,
                last_customer_message_at = CASE WHEN {LATER} THEN excluded.last_customer_message_at
                                                ELSE chats.last_customer_message_at END,
                reply_window_expires_at = CASE WHEN {LATER} THEN excluded.reply_window_expires_at
                                               ELSE chats.reply_window_expires_at END,
                expiry_announced = CASE WHEN {LATER} THEN excluded.expiry_announced
                                        ELSE chats.expiry_announced END
             RETURNING workspace_id, source_key, (xmax = 0) AS created, {CHAT_COLUMNS}"
        ));
        let rows = query.build().fetch_all(&mut *conn).await?;
        // RETURNING promises no order: match rows to keys by their values.
        let by_value: HashMap<(String, String, String), &ChatKey> =
            keys.iter().map(|k| ((k.0.to_string(), k.1.to_string(), k.2.to_string()), k)).collect();
        for row in rows {
            let value: (String, String, String) =
                (row.try_get("workspace_id")?, row.try_get("source_key")?, row.try_get("external_id")?);
            let key = **by_value.get(&value).expect("RETURNING gives back the rows written");
            if row.try_get::<bool, _>("created")? {
                created.push(key);
            }
            stored.insert(key, chat(&row)?);
        }
    }
    Ok((stored, created))
}

/// Inserts the candidates in arrival order; returns the queue position of each one that was
/// new. The others were already stored (perhaps by another daemon a moment ago): duplicates.
async fn insert_messages<'a>(
    conn: &mut PgConnection,
    candidates: &[Candidate<'a>],
    chats: &HashMap<ChatKey<'a>, (Chat, Option<i64>)>,
    now: i64,
) -> StoreResult<HashMap<MessageKey<'a>, i64>> {
    let mut inserted = HashMap::with_capacity(candidates.len());
    for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(
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
        query
            .push(" ON CONFLICT (workspace_id, source_key, message_id) DO NOTHING RETURNING seq, message_id");
        let rows = query.build().fetch_all(&mut *conn).await?;
        // One request: workspace and source are the same for every message.
        let by_id: HashMap<&str, &Candidate> =
            chunk.iter().map(|c| (c.message.message_id.as_str(), c)).collect();
        for row in rows {
            let id: String = row.try_get("message_id")?;
            inserted.insert(by_id[id.as_str()].key(), row.try_get("seq")?);
        }
    }
    Ok(inserted)
}

/// Records the first message of chats that had none, which decides `is_new_chat` later.
async fn mark_first_messages(
    conn: &mut PgConnection,
    first_of_chat: &HashMap<ChatId, i64>,
) -> StoreResult<()> {
    if first_of_chat.is_empty() {
        return Ok(());
    }
    let (chats, seqs): (Vec<i64>, Vec<i64>) = first_of_chat.iter().map(|(c, s)| (c.0, *s)).unzip();
    // `id = ANY(…)` finds the rows by the primary key (a join with UNNEST would be planned for
    // a hundred rows, as a scan of every chat).
    sqlx::query(
        "UPDATE chats SET first_message_seq = $2[array_position($1, id)]
         WHERE id = ANY($1) AND first_message_seq IS NULL",
    )
    .bind(&chats)
    .bind(&seqs)
    .execute(conn)
    .await?;
    Ok(())
}
