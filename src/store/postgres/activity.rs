//! The activity log: attempts and events, the merged view of a webhook's log, and pruning.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;

use super::PgStore;
use super::rows::{activity_row, attempt, ms};
use crate::domain::{WebhookId, WorkspaceId};
use crate::store::{ActivityCursor, ActivityLog, ActivityRow, Attempt, AttemptRecord, Pruned, StoreResult};

pub(super) async fn insert_attempt(
    conn: &mut PgConnection,
    attempt: &AttemptRecord,
    test: bool,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO attempts (delivery_seq, delivery_id, webhook_id, attempted_at, duration_ms, status,
            response_excerpt, error, request_headers, request_body, test)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(attempt.delivery_seq)
    .bind(attempt.delivery_id.as_str())
    .bind(attempt.webhook_id.as_str())
    .bind(ms(attempt.attempted_at))
    .bind(attempt.duration.as_millis() as i64)
    .bind(attempt.status.map(i64::from))
    .bind(&attempt.response_excerpt)
    .bind(&attempt.error)
    .bind(&attempt.request_headers)
    .bind(&attempt.request_body)
    .bind(test)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn insert_event(
    conn: &mut PgConnection,
    workspace_id: &WorkspaceId,
    webhook_id: Option<&WebhookId>,
    at: i64,
    kind: &str,
    detail: &serde_json::Value,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO events (workspace_id, webhook_id, at, kind, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(workspace_id.as_str())
    .bind(webhook_id.map(WebhookId::as_str))
    .bind(at)
    .bind(kind)
    .bind(detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// The advisory-lock key of the retention job: one daemon prunes at a time, the others skip.
const PRUNE_KEY: &str = "chatbundle:prune";

#[async_trait]
impl ActivityLog for PgStore {
    async fn list_attempts(&self, webhook: &WebhookId, limit: u32) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT id, delivery_id, webhook_id, attempted_at, duration_ms, status,
                    response_excerpt, error, request_headers, request_body
             FROM attempts WHERE webhook_id = $1 ORDER BY attempted_at DESC, id DESC LIMIT $2",
        )
        .bind(webhook.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt).collect()
    }

    async fn activity(
        &self,
        webhook: &WebhookId,
        after: Option<ActivityCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ActivityRow>> {
        let cursor = after.unwrap_or(ActivityCursor { at: i64::MAX, source: i64::MAX, id: i64::MAX });
        let rows = sqlx::query(
            "WITH hook AS (SELECT workspace_id FROM webhooks WHERE id = $1)
             SELECT * FROM (
                SELECT attempted_at AS at, 1::BIGINT AS source, id,
                       CASE WHEN test THEN 'test' ELSE 'attempt' END AS kind, delivery_id, status,
                       duration_ms, error, response_excerpt, request_headers, request_body,
                       NULL::TEXT AS detail
                FROM attempts WHERE webhook_id = $1
                UNION ALL
                SELECT at, 0::BIGINT AS source, id, kind, NULL::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::TEXT,
                       NULL::TEXT, NULL::TEXT, NULL::BYTEA, detail
                FROM events
                WHERE webhook_id = $1 OR (webhook_id IS NULL AND workspace_id = (SELECT workspace_id FROM hook))
             ) AS log
             WHERE EXISTS (SELECT 1 FROM hook)
               AND (at < $2 OR (at = $2 AND (source < $3 OR (source = $3 AND id < $4))))
             ORDER BY at DESC, source DESC, id DESC
             LIMIT $5",
        )
        .bind(webhook.as_str())
        .bind(cursor.at)
        .bind(cursor.source)
        .bind(cursor.id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(activity_row).collect()
    }

    async fn record_event(
        &self,
        workspace: &WorkspaceId,
        webhook: Option<&WebhookId>,
        kind: &str,
        detail: serde_json::Value,
    ) -> StoreResult<()> {
        let (mut tx, now) = self.begin().await?;
        insert_event(&mut tx, workspace, webhook, now, kind, &detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Where another daemon is pruning right now, this one does nothing (its rows go next time).
    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<Pruned> {
        let mut tx = self.pool.begin().await?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(PRUNE_KEY)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(Pruned::default());
        }
        let mut rows = 0;
        for sql in [
            "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE attempted_at < $1 LIMIT $2)",
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < $1 LIMIT $2)",
            "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries
                WHERE finished_at IS NOT NULL AND finished_at < $1 LIMIT $2)",
            "DELETE FROM web_sessions WHERE id IN (SELECT id FROM web_sessions WHERE expires_at < $1 LIMIT $2)",
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
                WHERE COALESCE(sent_at, failed_at) IS NOT NULL AND COALESCE(sent_at, failed_at) < $1 LIMIT $2)",
        ] {
            rows += sqlx::query(sql).bind(ms(before)).bind(i64::from(limit)).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(Pruned { rows })
    }
}
