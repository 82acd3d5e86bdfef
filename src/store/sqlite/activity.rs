//! The activity log: attempts and events, reading them back page by page, and retention.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;

use super::SqliteStore;
use super::rows::{activity_row, attempt, ms};
use crate::domain::{WebhookId, WorkspaceId};
use crate::store::{ActivityCursor, ActivityLog, ActivityRow, Attempt, AttemptRecord, Pruned, StoreResult};

pub(super) async fn insert_attempt(
    conn: &mut SqliteConnection,
    attempt: AttemptRecord,
    test: bool,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO attempts (delivery_seq, delivery_id, webhook_id, attempted_at, duration_ms, status,
            response_excerpt, error, request_headers, request_body, test)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    conn: &mut SqliteConnection,
    workspace_id: &WorkspaceId,
    webhook_id: Option<&WebhookId>,
    at: i64,
    kind: &str,
    detail: &serde_json::Value,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO events (workspace_id, webhook_id, at, kind, detail) VALUES (?, ?, ?, ?, ?)")
        .bind(workspace_id.as_str())
        .bind(webhook_id.map(WebhookId::as_str))
        .bind(at)
        .bind(kind)
        .bind(detail.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

async fn activity(
    conn: &mut SqliteConnection,
    webhook_id: &WebhookId,
    after: Option<ActivityCursor>,
    limit: u32,
) -> StoreResult<Vec<ActivityRow>> {
    let workspace: Option<String> = sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = ?")
        .bind(webhook_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(workspace) = workspace else {
        return Ok(Vec::new());
    };
    let cursor = after.unwrap_or(ActivityCursor { at: i64::MAX, source: i64::MAX, id: i64::MAX });
    let rows = sqlx::query(
        "SELECT * FROM (
            SELECT attempted_at AS at, 1 AS source, id,
                   CASE WHEN test THEN 'test' ELSE 'attempt' END AS kind, delivery_id, status,
                   duration_ms, error, response_excerpt, request_headers, request_body, NULL AS detail
            FROM attempts WHERE webhook_id = ?1
            UNION ALL
            SELECT at, 0 AS source, id, kind, NULL, NULL, NULL, NULL, NULL, NULL, NULL, detail
            FROM events WHERE webhook_id = ?1 OR (webhook_id IS NULL AND workspace_id = ?2)
         )
         WHERE at < ?3 OR (at = ?3 AND (source < ?4 OR (source = ?4 AND id < ?5)))
         ORDER BY at DESC, source DESC, id DESC
         LIMIT ?6",
    )
    .bind(webhook_id.as_str())
    .bind(&workspace)
    .bind(cursor.at)
    .bind(cursor.source)
    .bind(cursor.id)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(activity_row).collect()
}

/// Deletes, in one small transaction, up to `limit` rows of each kind older than `before`.
async fn prune(conn: &mut SqliteConnection, before: i64, limit: u32) -> StoreResult<Pruned> {
    let mut rows = 0;
    for sql in [
        "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE attempted_at < ?1 LIMIT ?2)",
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ?1 LIMIT ?2)",
        "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries
            WHERE finished_at IS NOT NULL AND finished_at < ?1 LIMIT ?2)",
        "DELETE FROM web_sessions WHERE id IN (SELECT id FROM web_sessions WHERE expires_at < ?1 LIMIT ?2)",
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
            WHERE COALESCE(sent_at, failed_at) IS NOT NULL AND COALESCE(sent_at, failed_at) < ?1 LIMIT ?2)",
    ] {
        rows +=
            sqlx::query(sql).bind(before).bind(i64::from(limit)).execute(&mut *conn).await?.rows_affected();
    }
    Ok(Pruned { rows })
}

#[async_trait]
impl ActivityLog for SqliteStore {
    async fn list_attempts(&self, webhook: &WebhookId, limit: u32) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT id, delivery_id, webhook_id, attempted_at, duration_ms, status,
                    response_excerpt, error, request_headers, request_body
             FROM attempts WHERE webhook_id = ? ORDER BY attempted_at DESC, id DESC LIMIT ?",
        )
        .bind(webhook.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(attempt).collect()
    }

    async fn activity(
        &self,
        webhook: &WebhookId,
        after: Option<ActivityCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ActivityRow>> {
        let mut conn = self.readers.acquire().await?;
        activity(&mut conn, webhook, after, limit).await
    }

    async fn record_event(
        &self,
        workspace: &WorkspaceId,
        webhook: Option<&WebhookId>,
        kind: &str,
        detail: serde_json::Value,
    ) -> StoreResult<()> {
        let (workspace, webhook, kind) = (workspace.clone(), webhook.cloned(), kind.to_string());
        let clock = self.writer.clock();
        self.write(move |conn| {
            Box::pin(async move {
                insert_event(conn, &workspace, webhook.as_ref(), ms(clock.now()), &kind, &detail).await
            })
        })
        .await
    }

    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<Pruned> {
        let before = ms(before);
        self.write(move |conn| Box::pin(prune(conn, before, limit))).await
    }
}
