//! The delivery queue: the one place deliveries are written ([`enqueue`]), claims under a fencing
//! token and a per-webhook token bucket, the result of each attempt (delivered, retry, given up,
//! expired, and the switch-off a run of failures causes), the deliveries list and resends.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite};
use tracing::instrument;

use super::SqliteStore;
use super::log::queue_email;
use super::log::{insert_attempt, insert_event};
use super::rows::{delivery, fetch_webhook, from_ms, ms};
use super::writer::BatchClock;
use crate::domain::{DeliveryId, DeliveryStatus, WebhookId, WorkspaceId};
use crate::store::queue::{AttemptEffect, Enqueue, chat_label, disable_reason, tokens_at};
use crate::store::sql::pending;
use crate::store::{
    AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryInfo, DeliveryLog, DeliveryQueue, DisableNotice,
    FailurePolicy, GaveUpNotice, Lease, Recorded, Resend, StoreResult, Webhook,
};

/// `next_attempt_at` of a delivery never tried: due whatever any clock says. (The transaction's
/// time can run a little ahead of the clock the delivery worker reads.)
const DUE_AT_ONCE: i64 = 0;

/// Rows per multi-row statement: far below SQLite's limit of 32,766 bound values.
const ROWS_PER_STATEMENT: usize = 400;

/// The one place that writes deliveries: pending, due at once, queued at `now` in the lanes of
/// their (webhook, chat), in the order given.
pub(super) async fn enqueue(
    conn: &mut SqliteConnection,
    deliveries: &[Enqueue],
    now: i64,
) -> StoreResult<()> {
    for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries (id, kind, webhook_id, chat_id, payload, status, next_attempt_at,
                                     created_at, retry_since, window_end, part) ",
        );
        query.push_values(chunk, |mut row, d| {
            row.push_bind(d.id.as_str().to_string())
                .push_bind(d.kind.as_str())
                .push_bind(d.webhook.as_str().to_string())
                .push_bind(d.chat.map(|c| c.0))
                .push_bind(d.payload.clone())
                .push_bind(DeliveryStatus::Pending.as_str())
                .push_bind(DUE_AT_ONCE)
                .push_bind(now)
                .push_bind(now)
                .push_bind(d.bundle.map(|(end, _)| end))
                .push_bind(d.bundle.map(|(_, part)| i64::from(part)));
        });
        query.push(" ON CONFLICT DO NOTHING");
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rounds of claiming per call: a round that found only webhooks out of tokens looks again
/// without them, so one throttled webhook cannot starve the others.
const CLAIM_ROUNDS: usize = 3;

/// A due delivery at the head of its lane.
struct Candidate {
    seq: i64,
    webhook_id: String,
}

/// Due lane heads (in three pieces around the two bindings of `now`): pending, due, not leased,
/// of an enabled webhook, and no earlier pending delivery in the same (webhook, chat).
const DUE: &str = concat!(
    "SELECT d.seq, d.webhook_id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
     WHERE d.status = ",
    pending!(),
    " AND d.next_attempt_at <= "
);
const NOT_LEASED: &str = " AND (d.lease_until IS NULL OR d.lease_until <= ";
const LANE_HEAD: &str = concat!(
    ") AND w.enabled = 1
       AND NOT EXISTS (
         SELECT 1 FROM deliveries e
         WHERE e.webhook_id = d.webhook_id AND e.chat_id IS d.chat_id
           AND e.status = ",
    pending!(),
    " AND e.seq < d.seq)"
);

/// Due lane heads of enabled webhooks, oldest due first, leaving out `exclude`.
async fn candidates(
    conn: &mut SqliteConnection,
    now: i64,
    limit: usize,
    exclude: &HashSet<String>,
) -> StoreResult<Vec<Candidate>> {
    let mut query = QueryBuilder::<Sqlite>::new(DUE);
    query.push_bind(now).push(NOT_LEASED).push_bind(now).push(LANE_HEAD);
    if !exclude.is_empty() {
        query.push(" AND d.webhook_id NOT IN (");
        let mut ids = query.separated(", ");
        for id in exclude {
            ids.push_bind(id.clone());
        }
        query.push(")");
    }
    // The limit is written into the statement, rounded up to a power of two: SQLite plans a
    // bound LIMIT for the value bound, so a statement with `LIMIT ?` is parsed and planned anew
    // at every run, while a handful of literal limits each stay prepared.
    query.push(format!(" ORDER BY d.next_attempt_at, d.seq LIMIT {}", limit.max(1).next_power_of_two()));
    let rows = query.build().fetch_all(&mut *conn).await?;
    rows.iter()
        .take(limit)
        .map(|r| Ok(Candidate { seq: r.try_get("seq")?, webhook_id: r.try_get("webhook_id")? }))
        .collect()
}

/// See [`DeliveryQueue::claim_deliveries`].
async fn claim(
    conn: &mut SqliteConnection,
    now: i64,
    lease: Lease,
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

    // Each delivery is held for its webhook's timeout and the margin.
    let mut query = QueryBuilder::<Sqlite>::new("UPDATE deliveries SET lease_until = ");
    query
        .push_bind(now + lease.margin.as_millis() as i64)
        .push(" + COALESCE((SELECT timeout_ms FROM webhooks WHERE id = deliveries.webhook_id), ")
        .push_bind(lease.default_timeout.as_millis() as i64)
        .push("), lease_token = ")
        .push_bind(token)
        .push(" WHERE seq IN (");
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
            && let Some(w) = fetch_webhook(&mut *conn, &WebhookId::from(webhook_id.as_str())).await?
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
            id: DeliveryId::from(row.try_get::<String, _>("id")?),
            webhook_id: target.id.clone(),
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

/// See [`DeliveryQueue::record_attempt`].
async fn record_attempt(
    conn: &mut SqliteConnection,
    clock: BatchClock,
    attempt: AttemptRecord,
    outcome: AttemptOutcome,
    policy: FailurePolicy,
) -> StoreResult<Recorded> {
    let delivered = outcome == AttemptOutcome::Delivered;
    let AttemptEffect { status, next_attempt_at: next, finished_at: finished, failure } =
        AttemptEffect::of(&attempt, outcome);
    // Fencing: only the claim that holds the lease moves the delivery on.
    let updated = sqlx::query(concat!(
        "UPDATE deliveries SET status = ?, attempts = attempts + 1, lease_until = NULL, lease_token = NULL,
            next_attempt_at = COALESCE(?, next_attempt_at), last_error = ?, last_status = ?,
            rejections = rejections + ?, finished_at = ?
         WHERE seq = ? AND lease_token = ? AND status = ",
        pending!(),
        " RETURNING chat_id, rejections"
    ))
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
            .bind(attempt.webhook_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_some() {
            insert_attempt(conn, &attempt, false).await?;
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
    .bind(attempt.webhook_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let (enabled, failures): (bool, i64) = (row.try_get("enabled")?, row.try_get("consecutive_failures")?);
    let url: String = row.try_get("url")?;
    let workspace_id = WorkspaceId::from(row.try_get::<String, _>("workspace_id")?);
    let notified_at: Option<i64> = row.try_get("gave_up_notice_at")?;
    insert_attempt(conn, &attempt, false).await?;
    let now = ms(clock.now());
    let mut recorded = Recorded::default();

    if outcome == AttemptOutcome::GivenUp {
        let detail = serde_json::json!({
            "delivery_id": attempt.delivery_id.as_str(), "chat_id": chat_id, "status": attempt.status,
            "response_excerpt": attempt.response_excerpt, "error": attempt.error, "rejections": rejections,
        });
        insert_event(conn, &workspace_id, Some(&attempt.webhook_id), now, "failed", &detail).await?;
        // The owner hears of the first one, and then at most once a day.
        const DAY_MS: i64 = 24 * 3600 * 1000;
        if notified_at.is_none_or(|t| now - t >= DAY_MS) {
            let (name, owner, locale) = owner(conn, &workspace_id).await?;
            let chat = match chat_id {
                Some(id) => sqlx::query("SELECT external_id, full_name FROM chats WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|r| -> StoreResult<String> {
                        Ok(chat_label(r.try_get("external_id")?, r.try_get("full_name")?))
                    })
                    .transpose()?,
                None => None,
            };
            let notice = GaveUpNotice {
                workspace_id: workspace_id.clone(),
                workspace_name: name,
                owner_email: owner,
                locale,
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
                .bind(attempt.webhook_id.as_str())
                .execute(&mut *conn)
                .await?;
            recorded.emailed = true;
        }
    }

    let reason =
        (!delivered).then(|| disable_reason(attempt.status, failures, policy.disable_after)).flatten();
    let Some(reason) = reason.filter(|_| enabled) else {
        return Ok(recorded);
    };
    sqlx::query("UPDATE webhooks SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ?")
        .bind(&reason)
        .bind(now)
        .bind(attempt.webhook_id.as_str())
        .execute(&mut *conn)
        .await?;
    let detail = serde_json::json!({"reason": reason, "last_error": failure, "automatic": true});
    insert_event(conn, &workspace_id, Some(&attempt.webhook_id), now, "disabled", &detail).await?;
    let (name, owner, locale) = owner(conn, &workspace_id).await?;
    let notice = DisableNotice {
        workspace_id: workspace_id.clone(),
        workspace_name: name,
        owner_email: owner,
        locale,
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

/// Rows per merged statement of delivered attempts (11 values each).
const DELIVERED_PER_STATEMENT: usize = 500;

/// Records delivered attempts, many at once: what [`record_attempt`] does for each, in three
/// statements for all. Each delivery moves on only under its lease (fencing); a run of failures
/// ends for each webhook that had a delivery move; every attempt of a webhook that still exists
/// is logged (a stale one too: its request was sent).
pub(super) async fn record_delivered_many(
    conn: &mut SqliteConnection,
    attempts: &[AttemptRecord],
) -> StoreResult<Vec<Recorded>> {
    // Which attempts hold their delivery's lease now: the writer is alone, so what this reads
    // stays true until the update below.
    let mut moved: HashSet<(i64, i64)> = HashSet::new();
    for chunk in attempts.chunks(DELIVERED_PER_STATEMENT) {
        let mut query =
            QueryBuilder::<Sqlite>::new("SELECT seq, lease_token FROM deliveries WHERE status = ");
        query.push(pending!()).push(" AND seq IN (");
        let mut seqs = query.separated(", ");
        for a in chunk {
            seqs.push_bind(a.delivery_seq);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *conn).await? {
            if let Some(token) = row.try_get::<Option<i64>, _>("lease_token")? {
                moved.insert((row.try_get("seq")?, token));
            }
        }
    }
    // A lease moves its delivery on once: a second result under the same claim is stale.
    let holds: Vec<bool> = attempts.iter().map(|a| moved.remove(&(a.delivery_seq, a.lease_token))).collect();
    let holders: Vec<&AttemptRecord> =
        attempts.iter().zip(&holds).filter(|(_, h)| **h).map(|(a, _)| a).collect();
    for chunk in holders.chunks(DELIVERED_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new("UPDATE deliveries SET status = ");
        query.push_bind(DeliveryStatus::Delivered.as_str());
        query.push(
            ", attempts = attempts + 1, lease_until = NULL, lease_token = NULL, last_error = NULL,
               last_status = v.column2, finished_at = v.column3
             FROM (",
        );
        query.push_values(chunk, |mut row, a| {
            row.push_bind(a.delivery_seq).push_bind(a.status.map(i64::from)).push_bind(ms(a.attempted_at));
        });
        query.push(") AS v WHERE deliveries.seq = v.column1");
        query.build().execute(&mut *conn).await?;
    }
    let webhooks: HashSet<&str> = holders.iter().map(|a| a.webhook_id.as_str()).collect();
    if !webhooks.is_empty() {
        let mut query = QueryBuilder::<Sqlite>::new(
            "UPDATE webhooks SET consecutive_failures = 0 WHERE consecutive_failures <> 0 AND id IN (",
        );
        let mut ids = query.separated(", ");
        for id in &webhooks {
            ids.push_bind(*id);
        }
        query.push(")");
        query.build().execute(&mut *conn).await?;
    }
    for chunk in attempts.chunks(DELIVERED_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO attempts (delivery_seq, delivery_id, webhook_id, attempted_at, duration_ms, status,
                response_excerpt, error, request_headers, request_body, test)
             SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9,
                    column10, 0
             FROM (",
        );
        query.push_values(chunk, |mut row, a| {
            row.push_bind(a.delivery_seq)
                .push_bind(a.delivery_id.as_str().to_string())
                .push_bind(a.webhook_id.as_str().to_string())
                .push_bind(ms(a.attempted_at))
                .push_bind(a.duration.as_millis() as i64)
                .push_bind(a.status.map(i64::from))
                .push_bind(a.response_excerpt.clone())
                .push_bind(a.error.clone())
                .push_bind(a.request_headers.clone())
                .push_bind(a.request_body.clone());
        });
        query.push(") WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = column3)");
        query.build().execute(&mut *conn).await?;
    }
    Ok(holds.into_iter().map(|held| Recorded { stale: !held, ..Recorded::default() }).collect())
}

/// A workspace's name and owner's address.
/// The workspace's name, owner and language, for the owner's e-mails.
async fn owner(
    conn: &mut SqliteConnection,
    workspace_id: &WorkspaceId,
) -> StoreResult<(String, String, crate::domain::Locale)> {
    let row = sqlx::query("SELECT name, owner_email, locale FROM workspaces WHERE id = ?")
        .bind(workspace_id.as_str())
        .fetch_one(&mut *conn)
        .await?;
    let locale = row.try_get::<String, _>("locale")?.parse().unwrap_or_default();
    Ok((row.try_get("name")?, row.try_get("owner_email")?, locale))
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn claim_deliveries(
        &self,
        lease: Lease,
        limit: usize,
        rate: Option<NonZeroU32>,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // Tokens are random: a claim can never guess another's.
        let token = rand::random::<i64>() & i64::MAX;
        let clock = self.writer.clock();
        self.write(move |conn| Box::pin(claim(conn, ms(clock.now()), lease, limit, rate, token))).await
    }

    #[instrument(skip_all, fields(delivery_id = %attempt.delivery_id, webhook_id = %attempt.webhook_id))]
    async fn record_attempt(
        &self,
        attempt: AttemptRecord,
        outcome: AttemptOutcome,
        policy: &FailurePolicy,
    ) -> StoreResult<Recorded> {
        if outcome == AttemptOutcome::Delivered {
            return self.writer.delivered(attempt).await;
        }
        let policy = policy.clone();
        let clock = self.writer.clock();
        self.write(move |conn| Box::pin(record_attempt(conn, clock, attempt, outcome, policy))).await
    }

    async fn record_test(&self, attempt: AttemptRecord) -> StoreResult<()> {
        self.write(move |conn| Box::pin(async move { insert_attempt(conn, &attempt, true).await })).await
    }
}

#[async_trait]
impl DeliveryLog for SqliteStore {
    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        status: Option<DeliveryStatus>,
        limit: u32,
        offset: u32,
    ) -> StoreResult<Vec<DeliveryInfo>> {
        let rows = sqlx::query(
            "SELECT id, kind, chat_id, status, attempts, last_status, last_error, created_at, finished_at
             FROM deliveries WHERE webhook_id = ?1 AND (?2 IS NULL OR status = ?2)
             ORDER BY seq DESC LIMIT ?3 OFFSET ?4",
        )
        .bind(webhook.as_str())
        .bind(status.map(DeliveryStatus::as_str))
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(delivery).collect()
    }

    #[instrument(skip_all, fields(webhook_id = %webhook, delivery_id = %id))]
    async fn resend_delivery(
        &self,
        webhook: &WebhookId,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> StoreResult<Resend> {
        let (webhook, id, now) = (webhook.clone(), id.clone(), ms(now));
        self.write(move |conn| Box::pin(async move { resend(conn, &webhook, &id, now).await })).await
    }
}

/// See [`DeliveryLog::resend_delivery`].
async fn resend(
    conn: &mut SqliteConnection,
    webhook: &WebhookId,
    id: &DeliveryId,
    now: i64,
) -> StoreResult<Resend> {
    let row = sqlx::query("SELECT status FROM deliveries WHERE webhook_id = ? AND id = ?")
        .bind(webhook.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(Resend::NotFound) };
    let status: String = row.try_get("status")?;
    let status = DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending);
    if !matches!(status, DeliveryStatus::Failed | DeliveryStatus::Expired) {
        return Ok(Resend::NotFinished(status));
    }
    sqlx::query(
        "UPDATE deliveries SET status = ?, next_attempt_at = ?, rejections = 0, retry_since = ?,
            finished_at = NULL, lease_until = NULL, lease_token = NULL
         WHERE webhook_id = ? AND id = ?",
    )
    .bind(DeliveryStatus::Pending.as_str())
    .bind(DUE_AT_ONCE)
    .bind(now)
    .bind(webhook.as_str())
    .bind(id.as_str())
    .execute(&mut *conn)
    .await?;
    let workspace_id: String = sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = ?")
        .bind(webhook.as_str())
        .fetch_one(&mut *conn)
        .await?;
    let detail = serde_json::json!({"delivery_id": id.as_str(), "was": status.as_str()});
    insert_event(conn, &WorkspaceId::from(workspace_id), Some(webhook), now, "resent", &detail).await?;
    Ok(Resend::Queued)
}
