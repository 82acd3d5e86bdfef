//! Attempts and events (the activity log), the outbox, and retention.

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use super::ingest::DUE_AT_ONCE;
use super::{from_ms, ms};
use crate::store::{ActivityCursor, ActivityRow, AttemptRecord, Email, EmailOutcome, Pruned, StoreResult};

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
    .bind(&attempt.delivery_id)
    .bind(&attempt.webhook_id)
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
    workspace_id: &str,
    webhook_id: Option<&str>,
    at: i64,
    kind: &str,
    detail: &serde_json::Value,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO events (workspace_id, webhook_id, at, kind, detail) VALUES (?, ?, ?, ?, ?)")
        .bind(workspace_id)
        .bind(webhook_id)
        .bind(at)
        .bind(kind)
        .bind(detail.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Puts an e-mail in the outbox, due at once, noting the workspace and webhook it is about.
pub(super) async fn queue_email(
    conn: &mut SqliteConnection,
    email: &Email,
    workspace_id: &str,
    webhook_id: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (recipient, subject, body, created_at, next_attempt_at, workspace_id, webhook_id)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&email.recipient)
    .bind(&email.subject)
    .bind(&email.body)
    .bind(now)
    .bind(DUE_AT_ONCE)
    .bind(workspace_id)
    .bind(webhook_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// See [`crate::store::Store::email_result`].
pub(super) async fn email_result(
    conn: &mut SqliteConnection,
    id: i64,
    outcome: EmailOutcome,
    now: i64,
) -> StoreResult<()> {
    match outcome {
        EmailOutcome::Sent => {
            sqlx::query(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        EmailOutcome::Retry { error, at } => {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
            )
            .bind(error)
            .bind(ms(at))
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        EmailOutcome::GaveUp { error } => {
            let row = sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, failed_at = ? WHERE id = ?
                 RETURNING recipient, subject, workspace_id, webhook_id",
            )
            .bind(&error)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row
                && let Some(workspace_id) = row.try_get::<Option<String>, _>("workspace_id")?
            {
                let webhook_id: Option<String> = row.try_get("webhook_id")?;
                let detail = serde_json::json!({
                    "recipient": row.try_get::<String, _>("recipient")?,
                    "subject": row.try_get::<String, _>("subject")?,
                    "error": error,
                });
                // The webhook may be gone by now; then the row belongs to the workspace.
                let exists: Option<i64> = match &webhook_id {
                    Some(w) => {
                        sqlx::query_scalar("SELECT 1 FROM webhooks WHERE id = ?")
                            .bind(w)
                            .fetch_optional(&mut *conn)
                            .await?
                    }
                    None => None,
                };
                let webhook = webhook_id.filter(|_| exists.is_some());
                insert_event(conn, &workspace_id, webhook.as_deref(), now, "email_failed", &detail).await?;
            }
        }
    }
    Ok(())
}

pub(super) async fn activity(
    conn: &mut SqliteConnection,
    webhook_id: &str,
    after: Option<ActivityCursor>,
    limit: u32,
) -> StoreResult<Vec<ActivityRow>> {
    let workspace: Option<String> = sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = ?")
        .bind(webhook_id)
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
    .bind(webhook_id)
    .bind(&workspace)
    .bind(cursor.at)
    .bind(cursor.source)
    .bind(cursor.id)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let json = |name: &str| -> StoreResult<Option<serde_json::Value>> {
                Ok(row
                    .try_get::<Option<String>, _>(name)?
                    .map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))))
            };
            let at: i64 = row.try_get("at")?;
            Ok(ActivityRow {
                at: from_ms(at),
                kind: row.try_get("kind")?,
                delivery_id: row.try_get("delivery_id")?,
                status: row.try_get::<Option<i64>, _>("status")?.map(|s| s as u16),
                duration_ms: row.try_get::<Option<i64>, _>("duration_ms")?.map(|d| d as u64),
                error: row.try_get("error")?,
                response_excerpt: row.try_get("response_excerpt")?,
                request_headers: json("request_headers")?,
                request_body: row
                    .try_get::<Option<Vec<u8>>, _>("request_body")?
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                detail: json("detail")?,
                cursor: ActivityCursor { at, source: row.try_get("source")?, id: row.try_get("id")? },
            })
        })
        .collect()
}

/// Deletes, in one small transaction, up to `limit` rows of each kind older than `before`.
pub(super) async fn prune(conn: &mut SqliteConnection, before: i64, limit: u32) -> StoreResult<Pruned> {
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
