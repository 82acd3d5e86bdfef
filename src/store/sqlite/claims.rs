//! What SQLite does its own way in the delivery queue (the rest is [`crate::store::sql::queue`]):
//! which due deliveries head their lanes, planned with a literal limit, and the results of
//! delivered attempts, merged by the writer into a few statements for all of them.

use std::collections::{HashMap, HashSet};

use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::rows::ms;
use crate::domain::DeliveryStatus;
use crate::store::sql::pending;
use crate::store::{AttemptRecord, Recorded, StoreResult};

/// Due lane heads (in pieces around the two bindings of `now`): pending, live or a replay's
/// (each from an index of its own), due, not leased, of an enabled webhook, and no earlier pending
/// delivery in the same (webhook, chat, replay).
const DUE: &str = concat!(
    "SELECT d.seq, d.webhook_id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
     WHERE d.status = ",
    pending!(),
    " AND d.replay_id IS NULL AND d.next_attempt_at <= "
);
const DUE_REPLAYED: &str = concat!(
    "SELECT d.seq, d.webhook_id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
     WHERE d.status = ",
    pending!(),
    " AND d.replay_id IS NOT NULL AND d.next_attempt_at <= "
);
const NOT_LEASED: &str = " AND (d.lease_until IS NULL OR d.lease_until <= ";
const LANE_HEAD: &str = concat!(
    ") AND w.enabled
       AND NOT EXISTS (
         SELECT 1 FROM deliveries e
         WHERE e.webhook_id = d.webhook_id AND e.chat_id IS d.chat_id AND e.replay_id IS d.replay_id
           AND e.status = ",
    pending!(),
    " AND e.seq < d.seq)"
);

/// Due lane heads of enabled webhooks, oldest due first, leaving out `exclude`: their (`seq`,
/// webhook id); live ones, or (`replays`) those of replays.
pub(super) async fn lane_heads(
    conn: &mut SqliteConnection,
    now: i64,
    limit: usize,
    exclude: &HashSet<String>,
    replays: bool,
) -> StoreResult<Vec<(i64, String)>> {
    let mut query = QueryBuilder::<Sqlite>::new(if replays { DUE_REPLAYED } else { DUE });
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
    rows.iter().take(limit).map(|r| Ok((r.try_get("seq")?, r.try_get("webhook_id")?))).collect()
}

use crate::store::sql::ROWS_PER_STATEMENT as DELIVERED_PER_STATEMENT;

/// Records delivered attempts, many at once: what [`record_attempt`] does for each, in three
/// statements for all. Each delivery moves on only under its lease (fencing); a run of failures
/// ends for each webhook that had a delivery move; every attempt of a webhook that still exists
/// is logged (a stale one too: its request was sent).
pub(super) async fn record_delivered_many(
    conn: &mut SqliteConnection,
    attempts: &[AttemptRecord],
) -> StoreResult<Vec<Recorded>> {
    // Which attempts hold their delivery's lease now, and whether another delivery of its lane
    // is pending: the writer is alone, so what this reads stays true until the update below.
    let mut moved: HashMap<(i64, i64), bool> = HashMap::new();
    for chunk in attempts.chunks(DELIVERED_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT seq, lease_token,
                    chat_id IS NULL OR EXISTS (SELECT 1 FROM deliveries e
                                               WHERE e.webhook_id = d.webhook_id AND e.chat_id = d.chat_id
                                                 AND e.status = ",
            pending!(),
            " AND e.seq <> d.seq) AS next
             FROM deliveries d WHERE status = "
        ));
        query.push(pending!()).push(" AND seq IN (");
        let mut seqs = query.separated(", ");
        for a in chunk {
            seqs.push_bind(a.delivery_seq);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *conn).await? {
            if let Some(token) = row.try_get::<Option<i64>, _>("lease_token")? {
                moved.insert((row.try_get("seq")?, token), row.try_get("next")?);
            }
        }
    }
    // A lease moves its delivery on once: a second result under the same claim is stale.
    let holds: Vec<Option<bool>> =
        attempts.iter().map(|a| moved.remove(&(a.delivery_seq, a.lease_token))).collect();
    let holders: Vec<&AttemptRecord> =
        attempts.iter().zip(&holds).filter(|(_, h)| h.is_some()).map(|(a, _)| a).collect();
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
                .push_bind(a.error.as_ref().map(ToString::to_string))
                .push_bind(crate::store::payload::stored_headers(a))
                // The body is the delivery's payload, kept there once (see `insert_attempt`).
                .push_bind(Vec::<u8>::new());
        });
        query.push(") WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = column3)");
        query.build().execute(&mut *conn).await?;
    }
    Ok(holds
        .into_iter()
        .map(|next| Recorded {
            stale: next.is_none(),
            next_waiting: next.unwrap_or(false),
            ..Recorded::default()
        })
        .collect())
}
