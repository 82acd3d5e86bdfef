//! The delivery queue: claims under a fencing token and a per-webhook token bucket, the result of
//! each attempt (delivered, retry, given up, expired, and the switch-off a run of failures
//! causes), the deliveries list and resends.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;

use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::ingest::DUE_AT_ONCE;
use super::operations::{insert_attempt, insert_event, queue_email};
use super::writer::BatchClock;
use super::{fetch_webhook, from_ms, ms};
use crate::store::{
    AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryInfo, DeliveryStatus, DisableNotice,
    FailurePolicy, GaveUpNotice, Recorded, Resend, StoreResult, Webhook,
};

/// Rounds of claiming per call: a round that found only webhooks out of tokens looks again
/// without them, so one throttled webhook cannot starve the others.
const CLAIM_ROUNDS: usize = 3;

/// A due delivery at the head of its lane.
struct Candidate {
    seq: i64,
    webhook_id: String,
}

/// Due lane heads of enabled webhooks, oldest due first, leaving out `exclude`.
async fn candidates(
    conn: &mut SqliteConnection,
    now: i64,
    limit: usize,
    exclude: &HashSet<String>,
) -> StoreResult<Vec<Candidate>> {
    let mut query = QueryBuilder::<Sqlite>::new(
        "SELECT d.seq, d.webhook_id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE d.status = 'pending' AND d.next_attempt_at <= ",
    );
    query.push_bind(now).push(" AND (d.lease_until IS NULL OR d.lease_until <= ").push_bind(now).push(
        ") AND w.enabled = 1
           AND NOT EXISTS (
             SELECT 1 FROM deliveries e
             WHERE e.webhook_id = d.webhook_id AND e.chat_id IS d.chat_id
               AND e.status = 'pending' AND e.seq < d.seq)",
    );
    if !exclude.is_empty() {
        query.push(" AND d.webhook_id NOT IN (");
        let mut ids = query.separated(", ");
        for id in exclude {
            ids.push_bind(id.clone());
        }
        query.push(")");
    }
    query.push(" ORDER BY d.next_attempt_at, d.seq LIMIT ").push_bind(limit as i64);
    let rows = query.build().fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| Ok(Candidate { seq: r.try_get("seq")?, webhook_id: r.try_get("webhook_id")? }))
        .collect()
}

/// Whole tokens in a webhook's bucket at `now`, and the exact fill (bursts of `rate`).
fn tokens_at(stored: Option<f64>, at: Option<i64>, now: i64, rate: f64) -> f64 {
    match (stored, at) {
        (Some(tokens), Some(at)) => (tokens + (now - at).max(0) as f64 * rate / 1000.0).min(rate),
        _ => rate,
    }
}

/// See [`crate::store::Store::claim_deliveries`].
pub(super) async fn claim(
    conn: &mut SqliteConnection,
    now: i64,
    lease_until: i64,
    limit: usize,
    rate: Option<NonZeroU32>,
    token: i64,
) -> StoreResult<Vec<ClaimedDelivery>> {
    let mut chosen: Vec<i64> = Vec::new();
    // Per webhook: tokens left after this claim, and how many it took.
    let mut buckets: HashMap<String, (f64, u32)> = HashMap::new();
    let mut exhausted: HashSet<String> = HashSet::new();
    for _ in 0..CLAIM_ROUNDS {
        let wanted = limit - chosen.len();
        // With a rate, look further than the free slots: some candidates may be out of tokens.
        let look = if rate.is_some() { wanted * 4 } else { wanted };
        let found = candidates(conn, now, look, &exhausted).await?;
        let complete = found.len() < look;
        if let Some(rate) = rate {
            let rate = f64::from(rate.get());
            let unknown: Vec<&str> = found
                .iter()
                .map(|c| c.webhook_id.as_str())
                .filter(|id| !buckets.contains_key(*id))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            for id in unknown {
                let row = sqlx::query("SELECT rate_tokens, rate_at FROM webhooks WHERE id = ?")
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await?;
                let tokens = tokens_at(row.try_get("rate_tokens")?, row.try_get("rate_at")?, now, rate);
                buckets.insert(id.to_string(), (tokens, 0));
            }
        }
        for candidate in found {
            if chosen.len() == limit {
                break;
            }
            if let Some(bucket) = buckets.get_mut(&candidate.webhook_id) {
                if bucket.0 < 1.0 {
                    exhausted.insert(candidate.webhook_id);
                    continue;
                }
                bucket.0 -= 1.0;
                bucket.1 += 1;
            }
            chosen.push(candidate.seq);
        }
        if chosen.len() == limit || complete || rate.is_none() {
            break;
        }
    }
    for (id, (tokens, taken)) in &buckets {
        if *taken > 0 {
            sqlx::query("UPDATE webhooks SET rate_tokens = ?, rate_at = ? WHERE id = ?")
                .bind(tokens)
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
    }
    if chosen.is_empty() {
        return Ok(Vec::new());
    }

    let mut query = QueryBuilder::<Sqlite>::new("UPDATE deliveries SET lease_until = ");
    query.push_bind(lease_until).push(", lease_token = ").push_bind(token).push(" WHERE seq IN (");
    let mut seqs = query.separated(", ");
    for seq in &chosen {
        seqs.push_bind(*seq);
    }
    query.push(") RETURNING seq, id, webhook_id, payload, attempts, rejections, retry_since, created_at");
    let rows = query.build().fetch_all(&mut *conn).await?;
    let mut claimed = Vec::with_capacity(rows.len());
    let mut targets: HashMap<String, Webhook> = HashMap::new();
    for row in rows {
        let webhook_id: String = row.try_get("webhook_id")?;
        if !targets.contains_key(&webhook_id)
            && let Some(w) = fetch_webhook(&mut *conn, &webhook_id).await?
        {
            targets.insert(webhook_id.clone(), w);
        }
        let Some(target) = targets.get(&webhook_id) else {
            continue;
        };
        let retry_since: Option<i64> = row.try_get("retry_since")?;
        claimed.push(ClaimedDelivery {
            seq: row.try_get("seq")?,
            lease_token: token,
            id: row.try_get("id")?,
            webhook_id,
            url: target.url.clone(),
            secret: target.secret.clone(),
            timeout: target.timeout,
            payload: row.try_get("payload")?,
            attempts: row.try_get::<i64, _>("attempts")? as u32,
            rejections: row.try_get::<i64, _>("rejections")? as u32,
            retry_since: from_ms(retry_since.unwrap_or(row.try_get("created_at")?)),
        });
    }
    // RETURNING gives no order guarantee; hand them out oldest first.
    claimed.sort_by_key(|d| d.seq);
    Ok(claimed)
}

/// See [`crate::store::Store::record_attempt`].
pub(super) async fn record_attempt(
    conn: &mut SqliteConnection,
    clock: BatchClock,
    attempt: AttemptRecord,
    outcome: AttemptOutcome,
    policy: FailurePolicy,
) -> StoreResult<Recorded> {
    let at = ms(attempt.attempted_at);
    let delivered = outcome == AttemptOutcome::Delivered;
    let (status, next, finished) = match outcome {
        AttemptOutcome::Delivered => (DeliveryStatus::Delivered, None, Some(at)),
        AttemptOutcome::RetryAt(t) => (DeliveryStatus::Pending, Some(ms(t)), None),
        AttemptOutcome::GivenUp => (DeliveryStatus::Failed, None, Some(at)),
        AttemptOutcome::Expired => (DeliveryStatus::Expired, None, Some(at)),
    };
    let failure = (!delivered).then(|| {
        attempt
            .error
            .clone()
            .or_else(|| attempt.status.map(|s| format!("HTTP {s}")))
            .unwrap_or_else(|| "failed".into())
    });
    // Fencing: only the claim that holds the lease moves the delivery on.
    let updated = sqlx::query(
        "UPDATE deliveries SET status = ?, attempts = attempts + 1, lease_until = NULL, lease_token = NULL,
            next_attempt_at = COALESCE(?, next_attempt_at), last_error = ?, last_status = ?,
            rejections = rejections + ?, finished_at = ?
         WHERE seq = ? AND lease_token = ? AND status = 'pending'
         RETURNING chat_id, rejections",
    )
    .bind(status.as_str())
    .bind(next)
    .bind(&failure)
    .bind(attempt.status.map(i64::from))
    .bind(i64::from(attempt.rejected()))
    .bind(finished)
    .bind(attempt.delivery_seq)
    .bind(attempt.lease_token)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(updated) = updated else {
        // Deleted with its webhook, or its lease ran out and another claim took it over. The
        // request was sent all the same, so the log says so.
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM webhooks WHERE id = ?")
            .bind(&attempt.webhook_id)
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_some() {
            insert_attempt(conn, attempt, false).await?;
        }
        return Ok(Recorded { stale: true, ..Recorded::default() });
    };
    let chat_id: Option<i64> = updated.try_get("chat_id")?;
    let rejections = updated.try_get::<i64, _>("rejections")? as u32;
    let row = sqlx::query(
        "UPDATE webhooks SET consecutive_failures = CASE WHEN ?1 THEN 0 ELSE consecutive_failures + 1 END
         WHERE id = ?2
         RETURNING enabled, consecutive_failures, url, workspace_id, gave_up_notice_at",
    )
    .bind(delivered)
    .bind(&attempt.webhook_id)
    .fetch_one(&mut *conn)
    .await?;
    let (enabled, failures): (bool, i64) = (row.try_get("enabled")?, row.try_get("consecutive_failures")?);
    let (url, workspace_id): (String, String) = (row.try_get("url")?, row.try_get("workspace_id")?);
    let notified_at: Option<i64> = row.try_get("gave_up_notice_at")?;
    insert_attempt(conn, attempt.clone(), false).await?;
    let now = ms(clock.now());
    let mut recorded = Recorded::default();

    if outcome == AttemptOutcome::GivenUp {
        let detail = serde_json::json!({
            "delivery_id": attempt.delivery_id, "chat_id": chat_id, "status": attempt.status,
            "response_excerpt": attempt.response_excerpt, "error": attempt.error, "rejections": rejections,
        });
        insert_event(conn, &workspace_id, Some(&attempt.webhook_id), now, "failed", &detail).await?;
        // The owner hears of the first one, and then at most once a day.
        const DAY_MS: i64 = 24 * 3600 * 1000;
        if notified_at.is_none_or(|t| now - t >= DAY_MS) {
            let (name, owner) = owner(conn, &workspace_id).await?;
            let chat = match chat_id {
                Some(id) => sqlx::query("SELECT external_id, full_name FROM chats WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|r| -> StoreResult<String> {
                        let external: String = r.try_get("external_id")?;
                        let name: Option<String> = r.try_get("full_name")?;
                        Ok(match name {
                            Some(name) => format!("{name} ({external})"),
                            None => external,
                        })
                    })
                    .transpose()?,
                None => None,
            };
            let notice = GaveUpNotice {
                workspace_id: workspace_id.clone(),
                workspace_name: name,
                owner_email: owner,
                webhook_id: attempt.webhook_id.clone(),
                webhook_url: url.clone(),
                delivery_id: attempt.delivery_id.clone(),
                chat,
                status: attempt.status,
                response_excerpt: attempt.response_excerpt.clone(),
                rejections,
                at: from_ms(now),
            };
            let email = (policy.gave_up)(&notice);
            queue_email(conn, &email, &workspace_id, Some(&attempt.webhook_id), now).await?;
            sqlx::query("UPDATE webhooks SET gave_up_notice_at = ? WHERE id = ?")
                .bind(now)
                .bind(&attempt.webhook_id)
                .execute(&mut *conn)
                .await?;
            recorded.emailed = true;
        }
    }

    let reason = match (delivered, attempt.status) {
        (true, _) => None,
        (false, Some(410)) => Some("the endpoint answered 410 Gone".to_string()),
        (false, _) if failures >= i64::from(policy.disable_after) => {
            Some(format!("{failures} consecutive failed attempts"))
        }
        _ => None,
    };
    let Some(reason) = reason.filter(|_| enabled) else {
        return Ok(recorded);
    };
    sqlx::query("UPDATE webhooks SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ?")
        .bind(&reason)
        .bind(now)
        .bind(&attempt.webhook_id)
        .execute(&mut *conn)
        .await?;
    let detail = serde_json::json!({"reason": reason, "last_error": failure, "automatic": true});
    insert_event(conn, &workspace_id, Some(&attempt.webhook_id), now, "disabled", &detail).await?;
    let (name, owner) = owner(conn, &workspace_id).await?;
    let notice = DisableNotice {
        workspace_id: workspace_id.clone(),
        workspace_name: name,
        owner_email: owner,
        webhook_id: attempt.webhook_id.clone(),
        webhook_url: url,
        reason: reason.clone(),
        last_error: failure,
        at: from_ms(now),
    };
    let email = (policy.disabled)(&notice);
    queue_email(conn, &email, &workspace_id, Some(&attempt.webhook_id), now).await?;
    recorded.disabled = Some(reason);
    recorded.emailed = true;
    Ok(recorded)
}

/// A workspace's name and owner's address.
async fn owner(conn: &mut SqliteConnection, workspace_id: &str) -> StoreResult<(String, String)> {
    let row = sqlx::query("SELECT name, owner_email FROM workspaces WHERE id = ?")
        .bind(workspace_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok((row.try_get("name")?, row.try_get("owner_email")?))
}

fn delivery_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<DeliveryInfo> {
    let status: String = row.try_get("status")?;
    Ok(DeliveryInfo {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        chat_id: row.try_get("chat_id")?,
        // Only ever written from a `DeliveryStatus`.
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        last_status: row.try_get::<Option<i64>, _>("last_status")?.map(|s| s as u16),
        last_error: row.try_get("last_error")?,
        created_at: from_ms(row.try_get("created_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(from_ms),
    })
}

/// See [`crate::store::Store::list_deliveries`].
pub(super) async fn list(
    conn: &mut SqliteConnection,
    webhook_id: &str,
    status: Option<DeliveryStatus>,
    limit: u32,
    offset: u32,
) -> StoreResult<Vec<DeliveryInfo>> {
    let rows = sqlx::query(
        "SELECT id, kind, chat_id, status, attempts, last_status, last_error, created_at, finished_at
         FROM deliveries WHERE webhook_id = ?1 AND (?2 IS NULL OR status = ?2)
         ORDER BY seq DESC LIMIT ?3 OFFSET ?4",
    )
    .bind(webhook_id)
    .bind(status.map(DeliveryStatus::as_str))
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(conn)
    .await?;
    rows.iter().map(delivery_from_row).collect()
}

/// See [`crate::store::Store::resend_delivery`].
pub(super) async fn resend(
    conn: &mut SqliteConnection,
    webhook_id: &str,
    delivery_id: &str,
    now: i64,
) -> StoreResult<Resend> {
    let row = sqlx::query("SELECT status FROM deliveries WHERE webhook_id = ? AND id = ?")
        .bind(webhook_id)
        .bind(delivery_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(Resend::NotFound) };
    let status: String = row.try_get("status")?;
    let status = DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending);
    if !matches!(status, DeliveryStatus::Failed | DeliveryStatus::Expired) {
        return Ok(Resend::NotFinished(status));
    }
    sqlx::query(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, rejections = 0, retry_since = ?,
            finished_at = NULL, lease_until = NULL, lease_token = NULL
         WHERE webhook_id = ? AND id = ?",
    )
    .bind(DUE_AT_ONCE)
    .bind(now)
    .bind(webhook_id)
    .bind(delivery_id)
    .execute(&mut *conn)
    .await?;
    let workspace_id: String = sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = ?")
        .bind(webhook_id)
        .fetch_one(&mut *conn)
        .await?;
    let detail = serde_json::json!({"delivery_id": delivery_id, "was": status.as_str()});
    insert_event(conn, &workspace_id, Some(webhook_id), now, "resent", &detail).await?;
    Ok(Resend::Queued)
}
