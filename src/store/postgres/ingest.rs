//! Ingest on PostgreSQL: requests waiting at the same moment share one transaction (as the
//! SQLite writer merges them; see [`crate::store::merge`]), under the shared lock of each of
//! their workspaces, taken in key order (so a close of a workspace's windows waits for it, or it
//! for the close), with the chats they write locked in key order (so the lanes they add to are
//! numbered in commit order, and two daemons writing the same chats never deadlock).
//!
//! Each request is a transaction's worth of round trips to the database and a WAL flush at
//! commit; merged, thirty requests cost about what one did.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres, QueryBuilder, Row};
use tracing::instrument;

use super::log::insert_event;
use super::queue::enqueue;
use super::rows::{CHAT_COLUMNS, chat, ms};
use super::{PgStore, StoreTime, lock_workspace, sessions};
use crate::domain::{Account, AccountType, ChatId, SessionStatus, WebhookId, WorkspaceId, random_token};
use crate::store::merge::{self, Candidate, ChatKey, ChatUpdate, LATER, MessageKey, WorkspaceInfo, merge};
use crate::store::{Chat, FirstMessages, IngestBatch, IngestOutcome, IngestStore, StoreError, StoreResult};

/// Rows per multi-row statement: 16 values each, far below PostgreSQL's 65,535 parameters.
const ROWS_PER_STATEMENT: usize = 1000;

/// Merged transactions in flight at once from one daemon: while some commit, the requests
/// arriving meanwhile gather for the next.
pub(super) const TRANSACTIONS_IN_FLIGHT: usize = 4;

/// Messages merged into one transaction, roughly: requests are taken until they reach it (at
/// least one request). Larger transactions hold their chats' row locks longer, and the
/// transactions in flight then wait on each other.
pub(super) const MESSAGES_PER_TRANSACTION: usize = 500;

/// What a request weighs when requests are merged.
pub(super) fn messages(batch: &IngestBatch) -> usize {
    batch.messages.len()
}

#[async_trait]
impl IngestStore for PgStore {
    #[instrument(skip_all, fields(workspace_id = %batch.workspace_id, messages = batch.messages.len()))]
    async fn ingest(&self, batch: IngestBatch) -> StoreResult<IngestOutcome> {
        let (pool, time) = (self.pool.clone(), self.time.clone());
        self.ingest
            .submit(batch, move |batches| async move { ingest_group(&pool, &time, batches).await })
            .await
    }
}

/// Stores requests in one transaction; one result per request, in order. A request whose
/// workspace is gone fails alone (as it did on its own: the workspace is not found); a failing
/// transaction fails them all.
async fn ingest_group(
    pool: &PgPool,
    time: &StoreTime,
    mut batches: Vec<IngestBatch>,
) -> Vec<StoreResult<IngestOutcome>> {
    let not_found = || Err(StoreError::Unavailable(Arc::new(sqlx::Error::RowNotFound)));
    let mut results: Vec<StoreResult<IngestOutcome>> = batches.iter().map(|_| not_found()).collect();
    // Where each remaining request's result goes.
    let mut places: Vec<usize> = (0..batches.len()).collect();
    while !batches.is_empty() {
        match ingest_together(pool, time, &batches).await {
            Ok(Together::Stored(outcomes)) => {
                for (place, outcome) in places.iter().zip(outcomes) {
                    results[*place] = Ok(outcome);
                }
                break;
            }
            // Rare (a workspace deleted while its requests waited): again without them.
            Ok(Together::Gone(gone)) => {
                let keep: Vec<bool> =
                    batches.iter().map(|b| !gone.contains(b.workspace_id.as_str())).collect();
                let mut flags = keep.iter();
                batches.retain(|_| *flags.next().expect("a flag per request"));
                let mut flags = keep.iter();
                places.retain(|_| *flags.next().expect("a flag per request"));
            }
            Err(e) => {
                for place in &places {
                    results[*place] = Err(e.clone());
                }
                break;
            }
        }
    }
    results
}

/// What one try at storing requests together did.
enum Together {
    /// Committed: the outcome of each request, in order.
    Stored(Vec<IngestOutcome>),
    /// Nothing stored: these workspaces no longer exist.
    Gone(std::collections::HashSet<String>),
}

async fn ingest_together(pool: &PgPool, time: &StoreTime, batches: &[IngestBatch]) -> StoreResult<Together> {
    let mut tx = pool.begin().await?;
    // Shared: requests of one workspace run side by side; a close of its windows waits. In key
    // order, so two transactions never wait on each other's workspaces.
    let mut workspace_ids: Vec<&str> = batches.iter().map(|b| b.workspace_id.as_str()).collect();
    workspace_ids.sort_unstable();
    workspace_ids.dedup();
    for id in &workspace_ids {
        lock_workspace(&mut tx, &WorkspaceId::from(*id), false).await?;
    }
    // The time of receipt is read only now, holding the locks; it is never before any of the
    // workspaces' last closed boundary, whatever the clock did.
    let skew = time.skew();
    let rows = sqlx::query(
        "SELECT s.id, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS db_now, closed_through,
                account_full_name, account_email, account_phone, locale,
                ARRAY(SELECT w.id FROM webhooks w
                      WHERE w.workspace_id = s.id AND w.sub_messages
                        AND COALESCE(w.granularity, s.granularity) = 'none'
                      ORDER BY w.created_at, w.id) AS immediate,
                ARRAY(SELECT w.media FROM webhooks w
                      WHERE w.workspace_id = s.id AND w.sub_messages
                        AND COALESCE(w.granularity, s.granularity) = 'none'
                      ORDER BY w.created_at, w.id) AS immediate_media
         FROM workspaces s WHERE s.id = ANY($1)",
    )
    .bind(&workspace_ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut now = i64::MIN;
    let mut workspaces = HashMap::with_capacity(rows.len());
    for row in &rows {
        let db_now: i64 = row.try_get("db_now")?;
        now = now.max(db_now + skew).max(row.try_get("closed_through")?);
        let info = WorkspaceInfo {
            account: Account {
                full_name: row.try_get("account_full_name")?,
                email: row.try_get("account_email")?,
                phone: row.try_get("account_phone")?,
            },
            locale: row.try_get::<String, _>("locale")?.parse().unwrap_or_default(),
            immediate: row
                .try_get::<Vec<String>, _>("immediate")?
                .into_iter()
                .zip(row.try_get::<Vec<String>, _>("immediate_media")?)
                .map(|(id, media)| (WebhookId::from(id), media.parse().unwrap_or_default()))
                .collect(),
        };
        let id: String = row.try_get("id")?;
        if let Some(id) = workspace_ids.iter().find(|w| **w == id) {
            workspaces.insert(*id, info);
        }
    }
    if workspaces.len() < workspace_ids.len() {
        let gone = workspace_ids.iter().filter(|id| !workspaces.contains_key(**id)).map(|id| id.to_string());
        return Ok(Together::Gone(gone.collect()));
    }
    let now = time.not_before_latest(now);
    let outcomes = store_merged(&mut tx, batches, &workspaces, now).await?;
    tx.commit().await?;
    Ok(Together::Stored(outcomes))
}

/// Stores the merged requests at `now`, inside the caller's transaction.
async fn store_merged(
    tx: &mut PgConnection,
    batches: &[IngestBatch],
    workspaces: &HashMap<&str, WorkspaceInfo>,
    now: i64,
) -> StoreResult<Vec<IngestOutcome>> {
    let mut merged = merge(batches);
    let mut order = merged.chat_order.clone();
    order.sort();
    let (mut stored, created) = upsert_chats(tx, &order, &merged.chats, now).await?;
    let inserted = insert_messages(tx, &merged.candidates, &stored, now).await?;

    // Chats created here start their session: recorded, and told to session_status webhooks.
    // Then the new messages move sessions on (a new session after ENDED, a reply).
    let started: Vec<(ChatId, &str)> = created.iter().map(|key| (stored[key].0.id, key.1)).collect();
    sessions::record_started(tx, &started, now).await?;
    let mut listeners = sessions::Listeners::default();
    for key in &created {
        if listeners.of(tx, key.0).await? {
            let workspace = WorkspaceId::from(key.0);
            let render = merge::render_session(batches, key.0);
            let (chat, _) = &stored[key];
            sessions::announce(tx, &workspace, chat, None, &Default::default(), now, render).await?;
            merge::session_started(batches, &mut merged, key.0);
        }
    }
    let moves = merge::session_moves(&merged, &stored, &inserted);
    sessions::apply_moves(tx, &moves, &mut stored, &mut listeners, batches, &mut merged, now).await?;
    let replies = merge::replies_after_window(&merged, &stored, &inserted);
    for key in count_replies(tx, &replies, &mut stored).await? {
        // The business can no longer write to the chat: news for session_status webhooks.
        if listeners.of(tx, key.0).await? {
            let workspace = WorkspaceId::from(key.0);
            let render = merge::render_session(batches, key.0);
            let (chat, _) = &stored[&key];
            let status = chat.session_status;
            sessions::announce(tx, &workspace, chat, status, &merge::limit_reached(), now, render).await?;
            merge::session_started(batches, &mut merged, key.0);
        }
    }
    let (deliveries, first_of_chat) = merge::deliveries(batches, &mut merged, &stored, &inserted, workspaces);
    mark_first_messages(tx, &first_of_chat).await?;
    enqueue(tx, &deliveries, now).await?;
    // What else each request brought commits with its messages: session news, then the note of
    // what it skipped.
    for batch in batches {
        for change in &batch.sessions {
            sessions::change(tx, change, &batch.render_session, now).await?;
        }
        if !batch.skipped.is_empty() {
            let detail = serde_json::json!({
                "count": batch.skipped.len(), "source": batch.source_name, "message_ids": batch.skipped,
            });
            insert_event(tx, &batch.workspace_id, None, now, "skipped", &detail).await?;
        }
    }
    Ok(merged.outcomes)
}

/// Inserts or updates each chat once, in `order`; returns the stored chat with the position of
/// its first message before these requests, by key, and the keys of the chats it created.
async fn upsert_chats<'a>(
    conn: &mut PgConnection,
    order: &[ChatKey<'a>],
    chats: &HashMap<ChatKey<'a>, ChatUpdate>,
    now: i64,
) -> StoreResult<(HashMap<ChatKey<'a>, (Chat, FirstMessages)>, Vec<ChatKey<'a>>)> {
    let mut stored = HashMap::with_capacity(order.len());
    let mut created = Vec::new();
    for keys in order.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(
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
    chats: &HashMap<ChatKey<'a>, (Chat, FirstMessages)>,
    now: i64,
) -> StoreResult<HashMap<MessageKey<'a>, i64>> {
    let mut inserted = HashMap::with_capacity(candidates.len());
    for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(
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
        // Merged requests may be of several workspaces and sources: match rows by the whole key.
        let by_key: HashMap<(&str, &str, &str), MessageKey<'a>> =
            chunk.iter().map(|c| (c.key(), c.key())).collect();
        for row in rows {
            let (workspace, source, id): (String, String, String) =
                (row.try_get("workspace_id")?, row.try_get("source_key")?, row.try_get("message_id")?);
            let key = by_key[&(workspace.as_str(), source.as_str(), id.as_str())];
            inserted.insert(key, row.try_get("seq")?);
        }
    }
    Ok(inserted)
}

/// Counts what the business sent after chats' reply windows into their allowance periods
/// ([`merge::replies_after_window`]); the stored chats say the new count (the payloads show it).
/// Returns the chats whose allowance these messages used up.
async fn count_replies<'a>(
    conn: &mut PgConnection,
    counts: &[(ChatKey<'a>, i64, u32)],
    stored: &mut HashMap<ChatKey<'a>, (Chat, FirstMessages)>,
) -> StoreResult<Vec<ChatKey<'a>>> {
    let mut used_up = Vec::new();
    for (key, period, sent) in counts {
        let Some((chat, _)) = stored.get_mut(key) else { continue };
        let (now_period, used): (i64, i64) = sqlx::query_as(
            "UPDATE chats SET
                replies_used = CASE WHEN replies_period = $1 THEN replies_used + $2
                                    WHEN replies_period > $1 THEN replies_used ELSE $2 END,
                replies_period = GREATEST(replies_period, $1)
             WHERE id = $3 RETURNING replies_period, replies_used",
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
    conn: &mut PgConnection,
    firsts: &HashMap<ChatId, FirstMessages>,
) -> StoreResult<()> {
    if firsts.is_empty() {
        return Ok(());
    }
    let chats: Vec<i64> = firsts.keys().map(|c| c.0).collect();
    let any: Vec<Option<i64>> = firsts.values().map(|f| f.any).collect();
    let text: Vec<Option<i64>> = firsts.values().map(|f| f.text).collect();
    // `id = ANY(…)` finds the rows by the primary key (a join with UNNEST would be planned for
    // a hundred rows, as a scan of every chat).
    sqlx::query(
        "UPDATE chats SET
             first_message_seq = COALESCE(first_message_seq, ($2::BIGINT[])[array_position($1, id)]),
             first_text_seq = COALESCE(first_text_seq, ($3::BIGINT[])[array_position($1, id)])
         WHERE id = ANY($1)",
    )
    .bind(&chats)
    .bind(&any)
    .bind(&text)
    .execute(conn)
    .await?;
    Ok(())
}
