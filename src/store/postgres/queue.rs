//! The delivery queue on PostgreSQL: the one place deliveries are written ([`enqueue`]), claims
//! shared by every daemon (`FOR UPDATE SKIP LOCKED`, leases by the database's clock, a fencing
//! token per claim, the rate bucket on the locked webhook row), the result of each attempt, the
//! deliveries list and resends.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use sqlx::{Postgres, QueryBuilder, Row};
use tracing::instrument;

use super::PgStore;
use super::log::queue_email;
use super::log::{insert_attempt, insert_event};
use super::rows::{delivery, from_ms, ms};
use crate::domain::{DeliveryId, DeliveryStatus, WebhookId, WorkspaceId};
use crate::store::queue::{AttemptEffect, Enqueue, chat_label, disable_reason, tokens_at};
use crate::store::{
    AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryInfo, DeliveryLog, DeliveryQueue, DisableNotice,
    FailurePolicy, GaveUpNotice, Lease, Recorded, Resend, StoreResult,
};

/// `next_attempt_at` of a delivery never tried: due whatever any clock says.
const DUE_AT_ONCE: i64 = 0;

/// Rows per multi-row statement: 11 values each, far below PostgreSQL's 65,535 parameters.
const ROWS_PER_STATEMENT: usize = 1000;

/// The one place that writes deliveries: pending, due at once, queued at `now` in the lanes of
/// their (webhook, chat), in the order given. The caller holds what orders the lanes it adds to
/// (the chat's row, or its workspace's exclusive lock), so `seq` follows commit order in a lane.
pub(super) async fn enqueue(conn: &mut PgConnection, deliveries: &[Enqueue], now: i64) -> StoreResult<()> {
    for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Postgres>::new(
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

/// Due lane heads of enabled webhooks, oldest due first, locked for this transaction; rows
/// another claim holds are skipped, not waited for. A later delivery of a lane is never a head
/// while an earlier one is pending: lanes are numbered in commit order, so an earlier delivery is
/// visible to any claim that sees a later one. (The lane test is split in two so that each half
/// is an index lookup in `deliveries_lane`.)
const HEADS: &str = "SELECT d.seq, d.webhook_id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
     WHERE d.status = 'pending' AND d.next_attempt_at <= $1
       AND (d.lease_until IS NULL OR d.lease_until <= $1) AND w.enabled
       AND NOT EXISTS (
         SELECT 1 FROM deliveries e
         WHERE e.webhook_id = d.webhook_id AND e.chat_id = d.chat_id AND e.status = 'pending' AND e.seq < d.seq)
       AND (d.chat_id IS NOT NULL OR NOT EXISTS (
         SELECT 1 FROM deliveries e
         WHERE e.webhook_id = d.webhook_id AND e.chat_id IS NULL AND e.status = 'pending' AND e.seq < d.seq))
       AND NOT (d.webhook_id = ANY($2))
     ORDER BY d.next_attempt_at, d.seq LIMIT $3
     FOR UPDATE OF d SKIP LOCKED";

/// Rounds of claiming per call: a round that found only webhooks out of tokens looks again
/// without them, so one throttled webhook cannot starve the others.
const CLAIM_ROUNDS: usize = 3;

/// See [`DeliveryQueue::claim_deliveries`].
async fn claim(
    conn: &mut PgConnection,
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
        let skip: Vec<String> = exhausted.iter().cloned().collect();
        // Not a prepared statement: planned for the queue as it is now. A plan cached while the
        // queue was short probes the lanes by a scan, which costs a full pass per candidate once
        // it is long (measured: half a second a claim at 40,000 pending).
        let found = sqlx::query(HEADS)
            .persistent(false)
            .bind(now)
            .bind(&skip)
            .bind(look as i64)
            .fetch_all(&mut *conn)
            .await?;
        let complete = found.len() < look;
        if let Some(rate) = rate {
            // The bucket is the webhook's, shared by every daemon: its row stays locked until
            // this claim commits. Locked in id order, so two claims never wait on each other.
            let mut unknown: Vec<String> = found
                .iter()
                .map(|r| r.try_get::<String, _>("webhook_id"))
                .collect::<Result<HashSet<_>, _>>()?
                .into_iter()
                .filter(|id| !buckets.contains_key(id))
                .collect();
            unknown.sort();
            let rows = sqlx::query(
                "SELECT id, rate_tokens, rate_at FROM webhooks WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
            )
            .bind(&unknown)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let tokens = tokens_at(
                    row.try_get("rate_tokens")?,
                    row.try_get("rate_at")?,
                    now,
                    f64::from(rate.get()),
                );
                buckets.insert(row.try_get("id")?, (tokens, 0));
            }
        }
        for row in found {
            if chosen.len() == limit {
                break;
            }
            let webhook: String = row.try_get("webhook_id")?;
            if let Some(bucket) = buckets.get_mut(&webhook) {
                if bucket.0 < 1.0 {
                    exhausted.insert(webhook);
                    continue;
                }
                bucket.0 -= 1.0;
                bucket.1 += 1;
            }
            chosen.push(row.try_get("seq")?);
        }
        if chosen.len() == limit || complete || rate.is_none() {
            break;
        }
    }
    for (id, (tokens, taken)) in &buckets {
        if *taken > 0 {
            sqlx::query("UPDATE webhooks SET rate_tokens = $1, rate_at = $2 WHERE id = $3")
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
    // Each delivery is held for its webhook's timeout and the margin, by the database's clock.
    let rows = sqlx::query(
        "UPDATE deliveries d SET lease_until = $1 + COALESCE(w.timeout_ms, $2), lease_token = $3
         FROM webhooks w
         WHERE w.id = d.webhook_id AND d.seq = ANY($4)
         RETURNING d.seq, d.id, d.webhook_id, d.payload, d.attempts, d.rejections,
                   COALESCE(d.retry_since, d.created_at) AS retry_since, w.url, w.secret, w.timeout_ms",
    )
    .bind(now + lease.margin.as_millis() as i64)
    .bind(lease.default_timeout.as_millis() as i64)
    .bind(token)
    .bind(&chosen)
    .fetch_all(&mut *conn)
    .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok(ClaimedDelivery {
                seq: row.try_get("seq")?,
                lease_token: token,
                id: DeliveryId::from(row.try_get::<String, _>("id")?),
                webhook_id: WebhookId::from(row.try_get::<String, _>("webhook_id")?),
                url: row.try_get("url")?,
                secret: row.try_get("secret")?,
                timeout: row
                    .try_get::<Option<i64>, _>("timeout_ms")?
                    .map(|v| std::time::Duration::from_millis(v as u64)),
                payload: row.try_get("payload")?,
                attempts: row.try_get::<i64, _>("attempts")? as u32,
                rejections: row.try_get::<i64, _>("rejections")? as u32,
                retry_since: from_ms(row.try_get("retry_since")?),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    claimed.sort_by_key(|d| d.seq);
    Ok(claimed)
}

/// See [`DeliveryQueue::record_attempt`].
async fn record_attempt(
    conn: &mut PgConnection,
    now: i64,
    attempt: AttemptRecord,
    outcome: AttemptOutcome,
    policy: &FailurePolicy,
) -> StoreResult<Recorded> {
    let at = ms(attempt.attempted_at);
    let delivered = outcome == AttemptOutcome::Delivered;
    let AttemptEffect { status, next_attempt_at: next, finished_at: finished, failure } =
        AttemptEffect::of(&attempt, outcome);
    // Fencing: only the claim that holds the lease moves the delivery on.
    let updated = sqlx::query(
        "UPDATE deliveries SET status = $1, attempts = attempts + 1, lease_until = NULL, lease_token = NULL,
            next_attempt_at = COALESCE($2, next_attempt_at), last_error = $3, last_status = $4,
            rejections = rejections + $5, finished_at = $6
         WHERE seq = $7 AND lease_token = $8 AND status = 'pending'
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
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM webhooks WHERE id = $1")
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
    // (A delivered attempt takes `record_delivered`.)
    let row = sqlx::query(
        "UPDATE webhooks SET consecutive_failures = CASE WHEN $1 THEN 0 ELSE consecutive_failures + 1 END
         WHERE id = $2
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
    // What the attempt causes is logged after it.
    let now = now.max(at + 1);
    let mut recorded = Recorded::default();

    if outcome == AttemptOutcome::GivenUp {
        let detail = serde_json::json!({
            "delivery_id": attempt.delivery_id.as_str(), "chat_id": chat_id, "status": attempt.status,
            "response_excerpt": attempt.response_excerpt, "error": attempt.error, "rejections": rejections,
        });
        insert_event(conn, &workspace_id, Some(&attempt.webhook_id), now, "failed", &detail).await?;
        // The owner hears of the first one, and then at most once a day (the webhook row is
        // locked by the update above, so two daemons cannot both decide to write).
        const DAY_MS: i64 = 24 * 3600 * 1000;
        if notified_at.is_none_or(|t| now - t >= DAY_MS) {
            let (name, owner, locale) = owner(conn, &workspace_id).await?;
            let chat = match chat_id {
                Some(id) => sqlx::query("SELECT external_id, full_name FROM chats WHERE id = $1")
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
            sqlx::query("UPDATE webhooks SET gave_up_notice_at = $1 WHERE id = $2")
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
    sqlx::query("UPDATE webhooks SET enabled = FALSE, disabled_reason = $1, updated_at = $2 WHERE id = $3")
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

/// Transactions recording delivered attempts in flight at once from one daemon.
pub(super) const TRANSACTIONS_IN_FLIGHT: usize = 4;

/// Delivered attempts recorded in one transaction at most.
pub(super) const DELIVERED_PER_TRANSACTION: usize = 200;

/// Records delivered attempts in one transaction, in (webhook, delivery) order, so that two such
/// transactions touching the same webhooks lock them in the same order; one result per attempt.
async fn record_delivered_group(
    pool: &sqlx::PgPool,
    attempts: Vec<AttemptRecord>,
) -> Vec<StoreResult<Recorded>> {
    let mut order: Vec<usize> = (0..attempts.len()).collect();
    order.sort_by(|a, b| {
        let (a, b) = (&attempts[*a], &attempts[*b]);
        (a.webhook_id.as_str(), a.delivery_seq).cmp(&(b.webhook_id.as_str(), b.delivery_seq))
    });
    let recorded: StoreResult<Vec<(usize, Recorded)>> = async {
        let mut tx = pool.begin().await?;
        let mut recorded = Vec::with_capacity(attempts.len());
        for i in order {
            recorded.push((i, record_delivered(&mut tx, &attempts[i]).await?));
        }
        tx.commit().await?;
        Ok(recorded)
    }
    .await;
    match recorded {
        Ok(recorded) => {
            let mut results: Vec<Option<Recorded>> = attempts.iter().map(|_| None).collect();
            for (i, one) in recorded {
                results[i] = Some(one);
            }
            results.into_iter().map(|one| Ok(one.expect("every attempt recorded"))).collect()
        }
        Err(e) => attempts.iter().map(|_| Err(e.clone())).collect(),
    }
}

/// [`record_attempt`] for a delivered attempt, the common case, in one statement (one round trip,
/// in the caller's transaction, which others share): the delivery moved on under its lease, a run
/// of failures ended, the attempt logged; or, for a stale lease, only the attempt logged.
async fn record_delivered(conn: &mut PgConnection, attempt: &AttemptRecord) -> StoreResult<Recorded> {
    let row = sqlx::query(
        "WITH done AS (
            UPDATE deliveries SET status = $1, attempts = attempts + 1, lease_until = NULL, lease_token = NULL,
                last_error = NULL, last_status = $2, finished_at = $3
            WHERE seq = $4 AND lease_token = $5 AND status = 'pending'
            RETURNING seq
         ), reset AS (
            UPDATE webhooks SET consecutive_failures = 0
            WHERE id = $6 AND consecutive_failures <> 0 AND EXISTS (SELECT 1 FROM done)
         ), logged AS (
            INSERT INTO attempts (delivery_seq, delivery_id, webhook_id, attempted_at, duration_ms, status,
                response_excerpt, error, request_headers, request_body, test)
            SELECT $4, $7, $6, $3, $8, $2, $9, $10, $11, $12, FALSE
            WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $6)
         )
         SELECT EXISTS (SELECT 1 FROM done) AS moved",
    )
    .bind(DeliveryStatus::Delivered.as_str())
    .bind(attempt.status.map(i64::from))
    .bind(ms(attempt.attempted_at))
    .bind(attempt.delivery_seq)
    .bind(attempt.lease_token)
    .bind(attempt.webhook_id.as_str())
    .bind(attempt.delivery_id.as_str())
    .bind(attempt.duration.as_millis() as i64)
    .bind(&attempt.response_excerpt)
    .bind(&attempt.error)
    .bind(&attempt.request_headers)
    .bind(&attempt.request_body)
    .fetch_one(conn)
    .await?;
    Ok(Recorded { stale: !row.try_get::<bool, _>("moved")?, ..Recorded::default() })
}

/// A workspace's name and owner's address.
/// The workspace's name, owner and language, for the owner's e-mails.
async fn owner(
    conn: &mut PgConnection,
    workspace_id: &WorkspaceId,
) -> StoreResult<(String, String, crate::domain::Locale)> {
    let row = sqlx::query("SELECT name, owner_email, locale FROM workspaces WHERE id = $1")
        .bind(workspace_id.as_str())
        .fetch_one(&mut *conn)
        .await?;
    let locale = row.try_get::<String, _>("locale")?.parse().unwrap_or_default();
    Ok((row.try_get("name")?, row.try_get("owner_email")?, locale))
}

#[async_trait]
impl DeliveryQueue for PgStore {
    async fn claim_deliveries(
        &self,
        lease: Lease,
        limit: usize,
        rate: Option<NonZeroU32>,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // Tokens are random: a claim can never guess another's.
        let token = rand::random::<i64>() & i64::MAX;
        let (mut tx, now) = self.begin().await?;
        let claimed = claim(&mut tx, now, lease, limit, rate, token).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    #[instrument(skip_all, fields(delivery_id = %attempt.delivery_id, webhook_id = %attempt.webhook_id))]
    async fn record_attempt(
        &self,
        attempt: AttemptRecord,
        outcome: AttemptOutcome,
        policy: &FailurePolicy,
    ) -> StoreResult<Recorded> {
        if outcome == AttemptOutcome::Delivered {
            let pool = self.pool.clone();
            return self
                .delivered
                .submit(attempt, move |attempts| async move { record_delivered_group(&pool, attempts).await })
                .await;
        }
        let (mut tx, now) = self.begin().await?;
        let recorded = record_attempt(&mut tx, now, attempt, outcome, policy).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn record_test(&self, attempt: AttemptRecord) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_attempt(&mut conn, &attempt, true).await
    }
}

#[async_trait]
impl DeliveryLog for PgStore {
    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        status: Option<DeliveryStatus>,
        limit: u32,
        offset: u32,
    ) -> StoreResult<Vec<DeliveryInfo>> {
        let rows = sqlx::query(
            "SELECT id, kind, chat_id, status, attempts, last_status, last_error, created_at, finished_at
             FROM deliveries WHERE webhook_id = $1 AND ($2::TEXT IS NULL OR status = $2)
             ORDER BY seq DESC LIMIT $3 OFFSET $4",
        )
        .bind(webhook.as_str())
        .bind(status.map(DeliveryStatus::as_str))
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT d.status, w.workspace_id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.webhook_id = $1 AND d.id = $2 FOR UPDATE OF d",
        )
        .bind(webhook.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(Resend::NotFound) };
        let status: String = row.try_get("status")?;
        let status = DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending);
        if !matches!(status, DeliveryStatus::Failed | DeliveryStatus::Expired) {
            return Ok(Resend::NotFinished(status));
        }
        let now = ms(now);
        sqlx::query(
            "UPDATE deliveries SET status = $1, next_attempt_at = $2, rejections = 0, retry_since = $3,
                finished_at = NULL, lease_until = NULL, lease_token = NULL
             WHERE webhook_id = $4 AND id = $5",
        )
        .bind(DeliveryStatus::Pending.as_str())
        .bind(DUE_AT_ONCE)
        .bind(now)
        .bind(webhook.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let workspace_id = WorkspaceId::from(row.try_get::<String, _>("workspace_id")?);
        let detail = serde_json::json!({"delivery_id": id.as_str(), "was": status.as_str()});
        insert_event(&mut tx, &workspace_id, Some(webhook), now, "resent", &detail).await?;
        tx.commit().await?;
        Ok(Resend::Queued)
    }
}
