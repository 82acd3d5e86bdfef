//! Windows on PostgreSQL: the webhooks that bundle, and closing a range of a webhook's messages,
//! one batch of chats per transaction, under the workspace's exclusive lock (see the module's
//! notes on why no message can then land behind a closed boundary). Progress commits with each
//! batch's deliveries, as in every store.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row;
use tracing::instrument;

use super::queue::enqueue;
use super::rows::{CHAT_COLUMNS, MESSAGE_COLUMNS, bundling_webhook, chat, ms, stored_message};
use super::{PgStore, lock_workspace, raise_closed_through};
use crate::domain::{ChatId, DeliveryKind, WorkspaceId};
use crate::store::queue::Enqueue;
use crate::store::{BundlingWebhook, CloseProgress, CloseStep, StoreResult, StoredMessage, WindowStore};

#[async_trait]
impl WindowStore for PgStore {
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
             WHERE w.sub_messages AND ($1::TEXT IS NULL OR w.workspace_id = $1)
             ORDER BY w.created_at, w.id",
        )
        .bind(workspace_id.map(WorkspaceId::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(bundling_webhook).collect()
    }

    #[instrument(skip_all, fields(webhook_id = %step.webhook_id, boundary = %step.boundary))]
    async fn close_step(&self, step: CloseStep) -> StoreResult<CloseProgress> {
        let boundary = ms(step.boundary);
        let mut tx = self.pool.begin().await?;
        let workspace: Option<String> = sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = $1")
            .bind(step.webhook_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(workspace) = workspace.map(WorkspaceId::from) else {
            return Ok(CloseProgress::Superseded);
        };
        // No message of the workspace commits while this step runs; every one that committed
        // before it is visible to it, and every later one is received at or after the boundary.
        lock_workspace(&mut tx, &workspace, true).await?;
        // Planned for the tables as they are now (see the module's notes).
        sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan").execute(&mut *tx).await?;
        let now = self.now_exclusive(&mut tx, &workspace).await?;
        if now < boundary {
            return Ok(CloseProgress::NotYet);
        }
        let row = sqlx::query(
            "SELECT bundled_before, closing_boundary, closing_cursor FROM webhooks WHERE id = $1 FOR NO KEY UPDATE",
        )
        .bind(step.webhook_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(CloseProgress::Superseded);
        };
        let bundled_before: i64 = row.try_get("bundled_before")?;
        let closing: Option<i64> = row.try_get("closing_boundary")?;
        if bundled_before != ms(step.bundled_before) || closing.is_some_and(|b| b != boundary) {
            return Ok(CloseProgress::Superseded);
        }
        let cursor: i64 = row.try_get::<Option<i64>, _>("closing_cursor")?.unwrap_or(0);

        let sql = format!(
            "SELECT {CHAT_COLUMNS} FROM chats
             WHERE workspace_id = $1 AND last_received_at >= $2 AND id > $3
             ORDER BY id LIMIT $4"
        );
        let chat_rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace.as_str())
            .bind(bundled_before)
            .bind(cursor)
            .bind(step.chats as i64)
            .fetch_all(&mut *tx)
            .await?;
        let chats = chat_rows.iter().map(chat).collect::<StoreResult<Vec<_>>>()?;

        let mut messages: HashMap<i64, Vec<StoredMessage>> = HashMap::new();
        if !chats.is_empty() {
            let ids: Vec<i64> = chats.iter().map(|(c, _)| c.id.0).collect();
            let sql = format!(
                "SELECT chat_id, {MESSAGE_COLUMNS} FROM messages
                 WHERE chat_id = ANY($1) AND received_at >= $2 AND received_at < $3
                 ORDER BY chat_id, ts, message_id"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&ids)
                .bind(bundled_before)
                .bind(boundary)
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                messages.entry(row.try_get("chat_id")?).or_default().push(stored_message(&row)?);
            }
        }

        let mut deliveries = Vec::new();
        for (found, first_message_seq) in &chats {
            if let Some(list) = messages.get(&found.id.0) {
                for planned in (step.plan)(found, *first_message_seq, list) {
                    deliveries.push(Enqueue {
                        id: planned.id,
                        kind: if planned.bundle.is_some() {
                            DeliveryKind::Bundle
                        } else {
                            DeliveryKind::Message
                        },
                        webhook: step.webhook_id.clone(),
                        chat: Some(ChatId(found.id.0)),
                        payload: planned.payload,
                        bundle: planned.bundle.map(|(end, part)| (ms(end), part)),
                    });
                }
            }
        }
        enqueue(&mut tx, &deliveries, now).await?;
        raise_closed_through(&mut tx, &workspace, boundary).await?;

        let count = deliveries.len() as u64;
        let progress = if chats.len() < step.chats {
            sqlx::query(
                "UPDATE webhooks SET bundled_before = $1, closing_boundary = NULL, closing_cursor = NULL,
                    closing_flush = FALSE, flushed_at = CASE WHEN $2 THEN $1 ELSE flushed_at END
                 WHERE id = $3",
            )
            .bind(boundary)
            .bind(step.flush)
            .bind(step.webhook_id.as_str())
            .execute(&mut *tx)
            .await?;
            CloseProgress::Done { deliveries: count }
        } else {
            let last = chats.last().map(|(c, _)| c.id.0).unwrap_or(cursor);
            // A flush cut off here resumes as a flush, with the labels it would have had.
            sqlx::query(
                "UPDATE webhooks SET closing_boundary = $1, closing_cursor = $2, closing_flush = $3 WHERE id = $4",
            )
            .bind(boundary)
            .bind(last)
            .bind(step.flush)
            .bind(step.webhook_id.as_str())
            .execute(&mut *tx)
            .await?;
            CloseProgress::More { deliveries: count }
        };
        tx.commit().await?;
        Ok(progress)
    }
}
