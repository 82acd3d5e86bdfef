//! What PostgreSQL does its own way in the delivery queue (the rest is
//! [`crate::store::sql::queue`]): which due deliveries head their lanes, locked with `SKIP
//! LOCKED` so that daemons claiming at once pass each other's, and planned afresh; and the
//! results of delivered attempts, recorded together in one statement (inside the merged write
//! transaction of [`super::intake`]).

use std::collections::{HashMap, HashSet};

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
    // Replays are rare: a prepared probe of their (usually empty) index costs far less than
    // planning the lane query that would find nothing.
    if replays {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM deliveries
                            WHERE status = 'pending' AND replay_id IS NOT NULL AND next_attempt_at <= $1)",
        )
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        if !waiting {
            return Ok(Vec::new());
        }
    }
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

/// What recording delivered attempts together ([`record_together`]) said of each, in order. Two
/// results of one delivery in a group move it once: the first under the token that moved it is
/// the one that did; the others (a repeat, a stale claim's) find it moved on, as they would have
/// after it.
pub(super) fn recorded(attempts: &[AttemptRecord], mut moved: HashMap<(i64, i64), bool>) -> Vec<Recorded> {
    attempts
        .iter()
        .map(|a| {
            let next = moved.remove(&(a.delivery_seq, a.lease_token));
            Recorded { stale: next.is_none(), next_waiting: next.unwrap_or(false), ..Recorded::default() }
        })
        .collect()
}

/// Whether PostgreSQL ended the transaction to break a deadlock.
pub(super) fn is_deadlock(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.downcast_ref::<sqlx::Error>()
        .and_then(sqlx::Error::as_database_error)
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40P01")
}

/// [`record_attempt`] for delivered attempts, the common case: each delivery moved on under its
/// lease, a run of failures of its webhook ended, the attempt logged; for a stale lease, only the
/// attempt logged. The deliveries moved on, by `seq` and the lease token that moved each (a
/// group may hold a stale claim's result and the current one's for the same delivery), each with
/// whether another delivery of its lane was pending ([`Recorded::next_waiting`]). The deliveries
/// are locked in `seq` order before any is changed, and then their webhooks in id order, so two
/// such groups (from this daemon or another) take their row locks in the same order.
pub(super) async fn record_together(
    conn: &mut PgConnection,
    attempts: &[AttemptRecord],
) -> StoreResult<HashMap<(i64, i64), bool>> {
    let column = |f: fn(&AttemptRecord) -> i64| attempts.iter().map(f).collect::<Vec<i64>>();
    let text =
        |f: fn(&AttemptRecord) -> Option<String>| attempts.iter().map(f).collect::<Vec<Option<String>>>();
    let moved: Vec<(i64, i64, bool)> = sqlx::query_as(
        "WITH input AS (
            SELECT * FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BIGINT[],
                                 $8::BIGINT[], $9::TEXT[], $10::TEXT[], $11::TEXT[])
                AS i(seq, token, delivery_id, webhook_id, attempted_at, duration_ms, status, excerpt, error, headers)
         ), locked AS (
            SELECT d.seq FROM deliveries d
            WHERE d.seq = ANY($2) AND d.status = 'pending'
            ORDER BY d.seq FOR UPDATE
         ), done AS (
            UPDATE deliveries d SET status = $1, attempts = d.attempts + 1, lease_until = NULL, lease_token = NULL,
                last_error = NULL, last_status = i.status, finished_at = i.attempted_at
            FROM input i
            WHERE d.seq = i.seq AND d.lease_token = i.token AND d.status = 'pending'
              AND d.seq IN (SELECT seq FROM locked)
            RETURNING d.seq, i.token, d.webhook_id, d.chat_id
         ), reset AS (
            UPDATE webhooks SET consecutive_failures = 0
            WHERE id IN (SELECT w.id FROM webhooks w
                         WHERE w.id IN (SELECT webhook_id FROM done) AND w.consecutive_failures <> 0
                         ORDER BY w.id FOR UPDATE)
         ), logged AS (
            INSERT INTO attempts (delivery_seq, delivery_id, webhook_id, attempted_at, duration_ms, status,
                response_excerpt, error, request_headers, request_body, test)
            SELECT i.seq, i.delivery_id, i.webhook_id, i.attempted_at, i.duration_ms, i.status, i.excerpt, i.error,
                   i.headers, '', FALSE
            FROM input i WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = i.webhook_id)
         )
         SELECT seq, token,
                chat_id IS NULL OR EXISTS (SELECT 1 FROM deliveries e
                                           WHERE e.webhook_id = done.webhook_id AND e.chat_id = done.chat_id
                                             AND e.status = 'pending' AND e.seq <> done.seq) AS next
         FROM done",
    )
    .bind(DeliveryStatus::Delivered.as_str())
    .bind(column(|a| a.delivery_seq))
    .bind(column(|a| a.lease_token))
    .bind(attempts.iter().map(|a| a.delivery_id.as_str()).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.webhook_id.as_str()).collect::<Vec<_>>())
    .bind(column(|a| ms(a.attempted_at)))
    .bind(column(|a| a.duration.as_millis() as i64))
    .bind(attempts.iter().map(|a| a.status.map(i64::from)).collect::<Vec<_>>())
    .bind(text(|a| a.response_excerpt.clone()))
    .bind(text(|a| a.error.as_ref().map(ToString::to_string)))
    .bind(attempts.iter().map(crate::store::payload::stored_headers).collect::<Vec<_>>())
    // The body is the delivery's payload, kept there once (see `insert_attempt`).
    .fetch_all(conn)
    .await?;
    Ok(moved.into_iter().map(|(seq, token, next)| ((seq, token), next)).collect())
}
