//! Attempts, auto-disable, events, the activity log, and retention.

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use super::ingest::DUE_AT_ONCE;
use super::writer::BatchClock;
use super::{from_ms, ms};
use crate::store::{
    ActivityCursor, ActivityRow, AttemptOutcome, AttemptRecord, DisableNotice, DisablePolicy, Pruned,
    StoreResult,
};

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

/// See [`crate::store::Store::record_attempt`].
pub(super) async fn record_attempt(
    conn: &mut SqliteConnection,
    clock: BatchClock,
    attempt: AttemptRecord,
    outcome: AttemptOutcome,
    policy: DisablePolicy,
) -> StoreResult<Option<String>> {
    let at = ms(attempt.attempted_at);
    let delivered = outcome == AttemptOutcome::Delivered;
    let (status, next, finished) = match outcome {
        AttemptOutcome::Delivered => ("delivered", None, Some(at)),
        AttemptOutcome::RetryAt(t) => ("pending", Some(ms(t)), None),
        AttemptOutcome::Expired => ("expired", None, Some(at)),
    };
    let failure = (!delivered).then(|| {
        attempt
            .error
            .clone()
            .or_else(|| attempt.status.map(|s| format!("HTTP {s}")))
            .unwrap_or_else(|| "failed".into())
    });
    let updated = sqlx::query(
        "UPDATE deliveries SET status = ?, attempts = attempts + 1, lease_until = NULL,
            next_attempt_at = COALESCE(?, next_attempt_at), last_error = ?, finished_at = ?
         WHERE seq = ?",
    )
    .bind(status)
    .bind(next)
    .bind(&failure)
    .bind(finished)
    .bind(attempt.delivery_seq)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        // The webhook (and with it the delivery) was deleted while this was in flight.
        return Ok(None);
    }
    let row = sqlx::query(
        "UPDATE webhooks SET consecutive_failures = CASE WHEN ?1 THEN 0 ELSE consecutive_failures + 1 END
         WHERE id = ?2
         RETURNING enabled, consecutive_failures, url, workspace_id",
    )
    .bind(delivered)
    .bind(&attempt.webhook_id)
    .fetch_one(&mut *conn)
    .await?;
    let (enabled, failures): (bool, i64) = (row.try_get("enabled")?, row.try_get("consecutive_failures")?);
    let (url, workspace_id): (String, String) = (row.try_get("url")?, row.try_get("workspace_id")?);
    insert_attempt(conn, attempt.clone(), false).await?;

    let reason = match (delivered, attempt.status) {
        (true, _) => None,
        (false, Some(410)) => Some("the endpoint answered 410 Gone".to_string()),
        (false, _) if failures >= i64::from(policy.disable_after) => {
            Some(format!("{failures} consecutive failed attempts"))
        }
        _ => None,
    };
    let Some(reason) = reason.filter(|_| enabled) else {
        return Ok(None);
    };
    let now = ms(clock.now());
    sqlx::query("UPDATE webhooks SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ?")
        .bind(&reason)
        .bind(now)
        .bind(&attempt.webhook_id)
        .execute(&mut *conn)
        .await?;
    let detail = serde_json::json!({"reason": reason, "last_error": failure, "automatic": true});
    insert_event(conn, &workspace_id, Some(&attempt.webhook_id), now, "disabled", &detail).await?;
    let workspace = sqlx::query("SELECT name, owner_email FROM workspaces WHERE id = ?")
        .bind(&workspace_id)
        .fetch_one(&mut *conn)
        .await?;
    let notice = DisableNotice {
        workspace_id: workspace_id.clone(),
        workspace_name: workspace.try_get("name")?,
        owner_email: workspace.try_get("owner_email")?,
        webhook_id: attempt.webhook_id.clone(),
        webhook_url: url,
        reason: reason.clone(),
        last_error: failure,
        at: from_ms(now),
    };
    let email = (policy.notice)(&notice);
    sqlx::query(
        "INSERT INTO outbox (recipient, subject, body, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&email.recipient)
    .bind(&email.subject)
    .bind(&email.body)
    .bind(now)
    .bind(DUE_AT_ONCE)
    .execute(&mut *conn)
    .await?;
    Ok(Some(reason))
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
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?1 LIMIT ?2)",
    ] {
        rows +=
            sqlx::query(sql).bind(before).bind(i64::from(limit)).execute(&mut *conn).await?.rows_affected();
    }
    Ok(Pruned { rows })
}
