//! What PostgreSQL does its own way in the delivery queue (the rest is
//! [`crate::store::sql::queue`]): which due deliveries head their lanes, locked with `SKIP
//! LOCKED` so that daemons claiming at once pass each other's, and planned afresh; and the
//! results of delivered attempts, each one statement, recorded together in a shared transaction.

use std::collections::HashSet;

use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::rows::ms;
use crate::domain::DeliveryStatus;
use crate::store::{AttemptRecord, Recorded, StoreResult};

/// Due lane heads of enabled webhooks, oldest due first, locked for this transaction; rows
/// another claim holds are skipped, not waited for. A later delivery of a lane is never a head
/// while an earlier one is pending: lanes are numbered in commit order, so an earlier delivery is
/// visible to any claim that sees a later one. (The lane test is split in two so that each half
/// is an index lookup in `deliveries_lane`.)
///
/// Live lanes and replays' lanes (`{replay}`) are read apart, each from an index of its own.
const HEADS: &str = "SELECT d.seq, d.webhook_id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
     WHERE d.status = 'pending' AND d.replay_id IS {replay} AND d.next_attempt_at <= $1
       AND (d.lease_until IS NULL OR d.lease_until <= $1) AND w.enabled
       AND NOT EXISTS (
         SELECT 1 FROM deliveries e
         WHERE e.webhook_id = d.webhook_id AND e.chat_id = d.chat_id AND e.status = 'pending' AND e.seq < d.seq
           AND e.replay_id IS NOT DISTINCT FROM d.replay_id)
       AND (d.chat_id IS NOT NULL OR NOT EXISTS (
         SELECT 1 FROM deliveries e
         WHERE e.webhook_id = d.webhook_id AND e.chat_id IS NULL AND e.status = 'pending' AND e.seq < d.seq
           AND e.replay_id IS NOT DISTINCT FROM d.replay_id))
       AND NOT (d.webhook_id = ANY($2))
     ORDER BY d.next_attempt_at, d.seq LIMIT $3
     FOR UPDATE OF d SKIP LOCKED";

/// Due lane heads of enabled webhooks, oldest due first, leaving out `exclude`: their (`seq`,
/// webhook id), locked until the claim commits; live ones, or (`replays`) those of replays.
pub(super) async fn lane_heads(
    conn: &mut PgConnection,
    now: i64,
    limit: usize,
    exclude: &HashSet<String>,
    replays: bool,
) -> StoreResult<Vec<(i64, String)>> {
    let skip: Vec<&String> = exclude.iter().collect();
    // Not a prepared statement: planned for the queue as it is now. A plan cached while the
    // queue was short probes the lanes by a scan, which costs a full pass per candidate once it
    // is long (measured: half a second a claim at 40,000 pending).
    let sql = HEADS.replace("{replay}", if replays { "NOT NULL" } else { "NULL" });
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(now)
        .bind(&skip)
        .bind(limit as i64)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok((r.try_get("seq")?, r.try_get("webhook_id")?))).collect()
}

/// Transactions recording delivered attempts in flight at once from one daemon.
pub(super) const TRANSACTIONS_IN_FLIGHT: usize = 4;

/// Delivered attempts recorded in one transaction at most.
pub(super) const DELIVERED_PER_TRANSACTION: usize = 200;

/// Records delivered attempts in one transaction, in (webhook, delivery) order, so that two such
/// transactions touching the same webhooks lock them in the same order; one result per attempt.
pub(super) async fn record_delivered_group(
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
    .bind(attempt.error.as_ref().map(ToString::to_string))
    .bind(&attempt.request_headers)
    // The body is the delivery's payload, kept there once (see `insert_attempt`).
    .bind(&[] as &[u8])
    .fetch_one(conn)
    .await?;
    Ok(Recorded { stale: !row.try_get::<bool, _>("moved")?, ..Recorded::default() })
}
