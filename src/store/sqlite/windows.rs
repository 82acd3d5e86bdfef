//! Windows: the webhooks that bundle, and closing a range of a webhook's messages into
//! deliveries, one batch of chats per transaction. Progress (`closing_boundary`,
//! `closing_cursor`, `closing_flush`) commits with each batch's deliveries, so a close interrupted
//! by a crash resumes where it stopped, as what it was, and never makes a bundle twice.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite};
use tracing::instrument;

use super::SqliteStore;
use super::queue::enqueue;
use super::rows::{CHAT_COLUMNS, MESSAGE_COLUMNS, bundling_webhook, chat, ms, stored_message};
use super::writer::BatchClock;
use crate::domain::{ChatId, DeliveryKind, WorkspaceId};
use crate::store::queue::Enqueue;
use crate::store::{BundlingWebhook, CloseProgress, CloseStep, StoreResult, StoredMessage, WindowStore};

#[async_trait]
impl WindowStore for SqliteStore {
    async fn bundling_webhooks(
        &self,
        workspace_id: Option<&WorkspaceId>,
    ) -> StoreResult<Vec<BundlingWebhook>> {
        let rows = sqlx::query(
            "SELECT w.id, w.workspace_id, COALESCE(w.granularity, s.granularity) AS granularity,
                    s.timezone, s.account_full_name, s.account_email, s.account_phone,
                    w.bundled_before, w.granularity_changed_at, w.closing_boundary, w.flushed_at,
                    w.closing_flush, w.note_max_chars, w.media, s.locale
             FROM webhooks w JOIN workspaces s ON s.id = w.workspace_id
             WHERE w.sub_messages = 1 AND (?1 IS NULL OR w.workspace_id = ?1)
             ORDER BY w.created_at, w.id",
        )
        .bind(workspace_id.map(WorkspaceId::as_str))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(bundling_webhook).collect()
    }

    #[instrument(skip_all, fields(webhook_id = %step.webhook_id, boundary = %step.boundary))]
    async fn close_step(&self, step: CloseStep) -> StoreResult<CloseProgress> {
        let clock = self.writer.clock();
        self.write(move |conn| Box::pin(close_step(conn, clock, step))).await
    }
}

/// See [`WindowStore::close_step`].
async fn close_step(
    conn: &mut SqliteConnection,
    clock: BatchClock,
    step: CloseStep,
) -> StoreResult<CloseProgress> {
    let boundary = ms(step.boundary);
    // Messages committed from now on carry this time or later; the boundary must not be ahead of
    // it, or a message could still arrive behind a closed boundary.
    if ms(clock.now()) < boundary {
        return Ok(CloseProgress::NotYet);
    }
    let row = sqlx::query(
        "SELECT workspace_id, bundled_before, closing_boundary, closing_cursor FROM webhooks WHERE id = ?",
    )
    .bind(step.webhook_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(CloseProgress::Superseded);
    };
    let workspace_id: String = row.try_get("workspace_id")?;
    let bundled_before: i64 = row.try_get("bundled_before")?;
    let closing: Option<i64> = row.try_get("closing_boundary")?;
    if bundled_before != ms(step.bundled_before) || closing.is_some_and(|b| b != boundary) {
        return Ok(CloseProgress::Superseded);
    }
    let cursor: i64 = row.try_get::<Option<i64>, _>("closing_cursor")?.unwrap_or(0);

    // The step's chats by id alone first: the activity index holds the id, so finding and
    // ordering them reads no table row. Selecting the whole rows here would read every active
    // chat's row into the sort at every step (a day of 100,000 active chats: ten million reads
    // over its hundred steps), to keep a thousand.
    //
    // The limit is a literal: a bound one would have the statement planned anew at each step
    // (see `queue::candidates`).
    let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM chats
         WHERE workspace_id = ? AND last_received_at >= ? AND id > ?
         ORDER BY id LIMIT {}",
        step.chats
    )))
    .bind(&workspace_id)
    .bind(bundled_before)
    .bind(cursor)
    .fetch_all(&mut *conn)
    .await?;
    let mut chats = Vec::with_capacity(ids.len());
    if !ids.is_empty() {
        // A step is a thousand chats or so: one statement, as for their messages below.
        let mut query =
            QueryBuilder::<Sqlite>::new(format!("SELECT {CHAT_COLUMNS} FROM chats WHERE id IN ("));
        let mut separated = query.separated(", ");
        for id in &ids {
            separated.push_bind(*id);
        }
        query.push(") ORDER BY id");
        for row in query.build().fetch_all(&mut *conn).await? {
            chats.push(chat(&row)?);
        }
    }

    let mut messages: HashMap<i64, Vec<StoredMessage>> = HashMap::new();
    if !chats.is_empty() {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT chat_id, {MESSAGE_COLUMNS} FROM messages WHERE received_at >= "
        ));
        query.push_bind(bundled_before).push(" AND received_at < ").push_bind(boundary);
        query.push(" AND chat_id IN (");
        let mut ids = query.separated(", ");
        for (found, _) in &chats {
            ids.push_bind(found.id.0);
        }
        query.push(") ORDER BY chat_id, ts, message_id");
        for row in query.build().fetch_all(&mut *conn).await? {
            messages.entry(row.try_get("chat_id")?).or_default().push(stored_message(&row)?);
        }
    }

    let mut deliveries = Vec::new();
    for (found, first_message_seq) in &chats {
        if let Some(list) = messages.get(&found.id.0) {
            for planned in (step.plan)(found, *first_message_seq, list) {
                deliveries.push(Enqueue {
                    id: planned.id,
                    kind: if planned.bundle.is_some() { DeliveryKind::Bundle } else { DeliveryKind::Message },
                    webhook: step.webhook_id.clone(),
                    chat: Some(ChatId(found.id.0)),
                    payload: planned.payload,
                    bundle: planned.bundle.map(|(end, part)| (ms(end), part)),
                });
            }
        }
    }
    enqueue(conn, &deliveries, ms(clock.now())).await?;

    let count = deliveries.len() as u64;
    if chats.len() < step.chats {
        sqlx::query(
            "UPDATE webhooks SET bundled_before = ?1, closing_boundary = NULL, closing_cursor = NULL,
                closing_flush = 0, flushed_at = CASE WHEN ?2 THEN ?1 ELSE flushed_at END
             WHERE id = ?3",
        )
        .bind(boundary)
        .bind(step.flush)
        .bind(step.webhook_id.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(CloseProgress::Done { deliveries: count })
    } else {
        let last = chats.last().map(|(c, _)| c.id.0).unwrap_or(cursor);
        // A flush cut off here resumes as a flush, with the labels it would have had.
        sqlx::query(
            "UPDATE webhooks SET closing_boundary = ?, closing_cursor = ?, closing_flush = ? WHERE id = ?",
        )
        .bind(boundary)
        .bind(last)
        .bind(step.flush)
        .bind(step.webhook_id.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(CloseProgress::More { deliveries: count })
    }
}
