//! How PostgreSQL takes ingest requests in (the storing itself is [`crate::store::sql::ingest`]):
//! requests waiting at the same moment share one transaction (as the SQLite writer merges them;
//! see [`crate::store::merge`]), under the shared lock of each of their workspaces, taken in key
//! order (so a close of a workspace's windows waits for it, or it for the close), with the chats
//! they write locked in key order (so the lanes they add to are numbered in commit order, and two
//! daemons writing the same chats never deadlock).
//!
//! Each request is a transaction's worth of round trips to the database and a WAL flush at
//! commit; merged, thirty requests cost about what one did. The results of delivered attempts
//! waiting at the same moment go into the same transaction (as they go into the SQLite writer's
//! commits): one commit for both kinds.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};
use tracing::instrument;

use super::{PgStore, StoreTime, lock_workspace};
use crate::domain::{Account, ChatId, WebhookId, WorkspaceId};
use crate::store::merge::WorkspaceInfo;
use crate::store::queue::HandOver;
use crate::store::{
    AttemptRecord, FirstMessages, Handoff, IngestBatch, IngestOutcome, IngestStore, Recorded, StoreError,
    StoreResult,
};

/// Merged transactions in flight at once from one daemon, at most: a second starts beside the
/// first only for a bulk of messages or attempts waiting (see [`super::combine`]).
pub(super) const TRANSACTIONS_IN_FLIGHT: usize = 4;

/// Messages and delivered attempts merged into one transaction, roughly: writes are taken until
/// they reach it (at least one). Larger transactions hold their chats' row locks longer, and the
/// transactions in flight then wait on each other.
pub(super) const WEIGHT_PER_TRANSACTION: usize = 500;

/// A write that shares a transaction with the others waiting at the same moment: an ingest
/// request, or the result of a delivered attempt (as the SQLite writer merges both kinds into
/// its commits).
pub(super) enum Write {
    Ingest(IngestBatch),
    Delivered(AttemptRecord),
}

/// What a [`Write`] did.
pub(super) enum Written {
    Ingested(IngestOutcome),
    Recorded(Recorded),
}

/// What a write weighs when writes are merged: a request its messages, an attempt one.
pub(super) fn weight(write: &Write) -> usize {
    match write {
        Write::Ingest(batch) => batch.messages.len(),
        Write::Delivered(_) => 1,
    }
}

/// An answer of the wrong kind: never given (each write is answered with its own kind), but a
/// caller says so rather than panic.
fn mismatched() -> StoreError {
    StoreError::Unavailable(Arc::new(std::io::Error::other("a merged write was answered with another kind")))
}

#[async_trait]
impl IngestStore for PgStore {
    #[instrument(skip_all, fields(workspace_id = %batch.workspace_id, messages = batch.messages.len()))]
    async fn ingest(&self, batch: IngestBatch) -> StoreResult<IngestOutcome> {
        match self.writes.submit(Write::Ingest(batch)).await? {
            Written::Ingested(outcome) => Ok(outcome),
            Written::Recorded(_) => Err(mismatched()),
        }
    }
}

impl PgStore {
    /// Records a delivered attempt in a transaction shared with the other writes waiting
    /// ([`write_group`]).
    pub(super) async fn record_delivered_attempt(&self, attempt: AttemptRecord) -> StoreResult<Recorded> {
        match self.writes.submit(Write::Delivered(attempt)).await? {
            Written::Recorded(recorded) => Ok(recorded),
            Written::Ingested(_) => Err(mismatched()),
        }
    }
}

/// Stores writes in one transaction; one result per write, in order: the ingest requests first
/// (under their workspaces' shared locks, their chats locked in key order), then the delivered
/// attempts in one statement ([`super::claims::record_together`]: deliveries locked in `seq`
/// order, then webhooks in id order), so that merged transactions side by side, of this daemon
/// or another, take their row locks in the same order. A request whose workspace is gone fails
/// alone (as it did on its own: the workspace is not found); a deadlock with a transaction that
/// locks otherwise (PostgreSQL ends one of the two) is tried again, nothing of the group having
/// been kept; any other failure fails them all. With a `handoff`, the deliveries the requests
/// lease for the worker are handed over once the transaction has committed.
pub(super) async fn write_group(
    pool: &PgPool,
    time: &StoreTime,
    handoff: Option<&Handoff>,
    writes: Vec<Write>,
) -> Vec<StoreResult<Written>> {
    let not_found = || Err(StoreError::Unavailable(Arc::new(sqlx::Error::RowNotFound)));
    let mut results: Vec<StoreResult<Written>> = writes.iter().map(|_| not_found()).collect();
    // Where each remaining request's and attempt's result goes.
    let (mut batches, mut places, mut attempts, mut attempt_places) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (place, write) in writes.into_iter().enumerate() {
        match write {
            Write::Ingest(batch) => {
                batches.push(batch);
                places.push(place);
            }
            Write::Delivered(attempt) => {
                attempts.push(attempt);
                attempt_places.push(place);
            }
        }
    }
    let mut deadlocks = 0;
    loop {
        match write_together(pool, time, handoff, &batches, &attempts).await {
            Ok(Together::Stored(outcomes, moved)) => {
                for (place, outcome) in places.iter().zip(outcomes) {
                    results[*place] = Ok(Written::Ingested(outcome));
                }
                let recorded = super::claims::recorded(&attempts, moved);
                for (place, recorded) in attempt_places.iter().zip(recorded) {
                    results[*place] = Ok(Written::Recorded(recorded));
                }
                break;
            }
            // Rare (a workspace deleted while its requests waited): again without them.
            Ok(Together::Gone(gone)) => {
                let keep: Vec<bool> =
                    batches.iter().map(|b| !gone.contains(b.workspace_id.as_str())).collect();
                let mut flags = keep.iter();
                batches.retain(|_| *flags.next().expect("a flag per request"));
                let mut flags = keep.iter();
                places.retain(|_| *flags.next().expect("a flag per request"));
            }
            Err(StoreError::Unavailable(e)) if deadlocks < 2 && super::claims::is_deadlock(e.as_ref()) => {
                deadlocks += 1;
                tracing::warn!(
                    requests = batches.len(),
                    attempts = attempts.len(),
                    "a merged write met a deadlock; trying again"
                );
            }
            Err(e) => {
                for place in places.iter().chain(&attempt_places) {
                    results[*place] = Err(e.clone());
                }
                break;
            }
        }
    }
    results
}

/// What one try at storing writes together did.
enum Together {
    /// Committed: the outcome of each request, in order, and the deliveries the attempts moved
    /// on ([`super::claims::record_together`]).
    Stored(Vec<IngestOutcome>, HashMap<(i64, i64), bool>),
    /// Nothing stored: these workspaces no longer exist.
    Gone(std::collections::HashSet<String>),
}

/// What storing a workspace's messages needs to know of it, and the database's clock.
const FACTS: &str =
    "SELECT s.id, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS db_now, closed_through,
            account_full_name, account_email, account_phone, locale,
            ARRAY(SELECT w.id FROM webhooks w
                  WHERE w.workspace_id = s.id AND w.sub_messages AND NOT w.stopped
                    AND COALESCE(w.granularity, s.granularity) = 'none'
                  ORDER BY w.created_at, w.id) AS immediate,
            ARRAY(SELECT w.media_choice FROM webhooks w
                  WHERE w.workspace_id = s.id AND w.sub_messages AND NOT w.stopped
                    AND COALESCE(w.granularity, s.granularity) = 'none'
                  ORDER BY w.created_at, w.id) AS immediate_media,
            EXISTS (SELECT 1 FROM webhooks w
                    WHERE w.workspace_id = s.id AND w.sub_messages AND NOT w.stopped
                      AND COALESCE(w.granularity, s.granularity) = 'conversation') AS conversations
     FROM workspaces s WHERE s.id = $1";

async fn write_together(
    pool: &PgPool,
    time: &StoreTime,
    handoff: Option<&Handoff>,
    batches: &[IngestBatch],
    attempts: &[AttemptRecord],
) -> StoreResult<Together> {
    let mut tx = pool.begin().await?;
    let (outcomes, handed) = if batches.is_empty() {
        (Vec::new(), None)
    } else {
        match ingest(&mut tx, time, handoff, batches).await? {
            Ok(ingested) => ingested,
            Err(gone) => return Ok(Together::Gone(gone)),
        }
    };
    let moved = if attempts.is_empty() {
        HashMap::new()
    } else {
        super::claims::record_together(&mut tx, attempts).await?
    };
    tx.commit().await?;
    if let Some(handed) = handed {
        handed.send();
    }
    Ok(Together::Stored(outcomes, moved))
}

/// The ingest part of a merged transaction: its outcomes and what it leased for the worker, or
/// (storing nothing) the workspaces that no longer exist.
async fn ingest(
    tx: &mut PgConnection,
    time: &StoreTime,
    handoff: Option<&Handoff>,
    batches: &[IngestBatch],
) -> StoreResult<Result<(Vec<IngestOutcome>, Option<HandOver>), std::collections::HashSet<String>>> {
    // Shared: requests of one workspace run side by side; a close of its windows waits. In key
    // order, so two transactions never wait on each other's workspaces.
    let mut workspace_ids: Vec<&str> = batches.iter().map(|b| b.workspace_id.as_str()).collect();
    workspace_ids.sort_unstable();
    workspace_ids.dedup();
    for id in &workspace_ids {
        lock_workspace(&mut *tx, &WorkspaceId::stored(*id), false).await?;
    }
    // The time of receipt is read only now, holding the locks; it is never before any of the
    // workspaces' last closed boundary, whatever the clock did.
    let skew = time.skew();
    // One workspace at a time (there is usually one): `id = $1` keeps the statement's cached
    // plan, where `id = ANY($1)` was planned afresh at every call, at four times the cost of
    // running it.
    let mut rows = Vec::with_capacity(workspace_ids.len());
    for id in &workspace_ids {
        rows.extend(sqlx::query(FACTS).bind(*id).fetch_optional(&mut *tx).await?);
    }
    let mut now = i64::MIN;
    let mut workspaces = HashMap::with_capacity(rows.len());
    for row in &rows {
        let db_now: i64 = row.try_get("db_now")?;
        now = now.max(db_now + skew).max(row.try_get("closed_through")?);
        let info = WorkspaceInfo {
            account: Account {
                full_name: row.try_get("account_full_name")?,
                email: row.try_get("account_email")?,
                phone: row.try_get("account_phone")?,
            },
            locale: row.try_get::<String, _>("locale")?.parse().unwrap_or_default(),
            immediate: row
                .try_get::<Vec<String>, _>("immediate")?
                .into_iter()
                .zip(row.try_get::<Vec<String>, _>("immediate_media")?)
                .map(|(id, media)| (WebhookId::stored(id), media.parse().unwrap_or_default()))
                .collect(),
            conversations: row.try_get("conversations")?,
        };
        let id: String = row.try_get("id")?;
        if let Some(id) = workspace_ids.iter().find(|w| **w == id) {
            workspaces.insert(*id, info);
        }
    }
    if workspaces.len() < workspace_ids.len() {
        let gone = workspace_ids.iter().filter(|id| !workspaces.contains_key(**id)).map(|id| id.to_string());
        return Ok(Err(gone.collect()));
    }
    let now = time.not_before_latest(now);
    Ok(Ok(super::ingest::store_merged(tx, batches, &workspaces, now, handoff).await?))
}

/// Records the first messages (ever, with words) of chats that had none, which decide
/// `is_new_chat` later.
pub(super) async fn mark_first_messages(
    conn: &mut PgConnection,
    firsts: &HashMap<ChatId, FirstMessages>,
) -> StoreResult<()> {
    if firsts.is_empty() {
        return Ok(());
    }
    let chats: Vec<i64> = firsts.keys().map(|c| c.0).collect();
    let any: Vec<Option<i64>> = firsts.values().map(|f| f.any).collect();
    let text: Vec<Option<i64>> = firsts.values().map(|f| f.text).collect();
    // `id = ANY(…)` finds the rows by the primary key (a join with UNNEST would be planned for
    // a hundred rows, as a scan of every chat).
    sqlx::query(
        "UPDATE chats SET
             first_message_seq = COALESCE(first_message_seq, ($2::BIGINT[])[array_position($1, id)]),
             first_text_seq = COALESCE(first_text_seq, ($3::BIGINT[])[array_position($1, id)])
         WHERE id = ANY($1)",
    )
    .bind(&chats)
    .bind(&any)
    .bind(&text)
    .execute(conn)
    .await?;
    Ok(())
}
