//! Replays ([`crate::store::ReplayStore`]), for both engines: a replay row records the range,
//! the cursor of chats planned so far and what they held; each step plans a batch of chats and
//! queues their deliveries (marked with the replay, in lanes of their own) in the same commit as
//! the cursor.

/// See the module's documentation. The engine names `transact`, `transact_windowing`, `reads`,
/// `super::PLACEHOLDERS` and `super::for_update!()`.
macro_rules! replays {
    ($store:ident, $conn:ty) => {
        mod replays {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use sqlx::Row;
            use tracing::instrument;

            use super::queue::enqueue;
            use super::rows::{chats_with_messages, from_ms, ms};
            use crate::domain::{ChatId, DeliveryKind, DeliveryStatus, WebhookId, WorkspaceId, new_id};
            use crate::store::queue::Enqueue;
            use crate::store::sql::Windowing;
            use crate::store::{
                Chat, FirstMessages, NewReplay, PlanReplay, Replay, ReplayCounts, ReplayProgress, ReplayStatus,
                ReplayStore, StoreResult, StoredMessage,
            };

            const REPLAY_COLUMNS: &str = "r.id, r.webhook_id, r.workspace_id, r.chat_id, r.from_at, r.to_at, r.status,
                r.cursor, r.chats, r.bundles, r.messages, r.calls, r.actor, r.created_at";

            /// A replay's row with its deliveries counted by status.
            async fn fetch(conn: &mut $conn, id: &str) -> StoreResult<Option<Replay>> {
                let sql = format!(
                    "SELECT {REPLAY_COLUMNS},
                        (SELECT COUNT(*) FROM deliveries d WHERE d.replay_id = r.id AND d.status = $2) AS delivered,
                        (SELECT COUNT(*) FROM deliveries d WHERE d.replay_id = r.id AND d.status = $3) AS waiting,
                        (SELECT COUNT(*) FROM deliveries d WHERE d.replay_id = r.id AND d.status IN ($4, $5)) AS failed,
                        (SELECT COUNT(*) FROM deliveries d WHERE d.replay_id = r.id AND d.status = $6) AS cancelled
                     FROM webhook_replays r WHERE r.id = $1"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(DeliveryStatus::Delivered.as_str())
                    .bind(DeliveryStatus::Pending.as_str())
                    .bind(DeliveryStatus::Failed.as_str())
                    .bind(DeliveryStatus::Expired.as_str())
                    .bind(DeliveryStatus::Discarded.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                row.map(|row| {
                    let mut replay = replay(&row)?;
                    let count = |name: &str| -> StoreResult<u64> { Ok(row.try_get::<i64, _>(name)? as u64) };
                    replay.delivered = count("delivered")?;
                    replay.waiting = count("waiting")?;
                    replay.failed = count("failed")?;
                    replay.cancelled = count("cancelled")?;
                    Ok(replay)
                })
                .transpose()
            }

            fn replay(row: &<<$conn as sqlx::Connection>::Database as sqlx::Database>::Row) -> StoreResult<Replay> {
                let count = |name: &str| -> StoreResult<u64> { Ok(row.try_get::<i64, _>(name)? as u64) };
                Ok(Replay {
                    id: row.try_get("id")?,
                    webhook_id: WebhookId::stored(row.try_get::<String, _>("webhook_id")?),
                    workspace_id: WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?),
                    chat: row.try_get::<Option<i64>, _>("chat_id")?.map(ChatId),
                    from: from_ms(row.try_get("from_at")?),
                    to: from_ms(row.try_get("to_at")?),
                    status: ReplayStatus::parse(&row.try_get::<String, _>("status")?).unwrap_or(ReplayStatus::Cancelled),
                    planned: ReplayCounts {
                        chats: count("chats")?,
                        bundles: count("bundles")?,
                        messages: count("messages")?,
                        calls: count("calls")?,
                    },
                    delivered: 0,
                    waiting: 0,
                    failed: 0,
                    cancelled: 0,
                    actor: row.try_get("actor")?,
                    created_at: from_ms(row.try_get("created_at")?),
                })
            }

            /// The next `limit` chats of `workspace` (or the one chat) after the chat id `after`
            /// that may have messages received in `[from, to)` (found by the chats' activity
            /// index: their latest message came at `from` or later), each with those messages in
            /// the order received (empty when it has none there); and whether `limit` stopped the
            /// scan.
            async fn chats_in_range(
                conn: &mut $conn,
                workspace: &str,
                only: Option<i64>,
                (from, to): (i64, i64),
                after: i64,
                limit: usize,
            ) -> StoreResult<(Vec<(Chat, FirstMessages, Vec<StoredMessage>)>, Option<i64>)> {
                // The limit is a literal (SQLite plans a bound one for the value bound).
                let sql = format!(
                    "SELECT id FROM chats
                     WHERE workspace_id = $1 AND last_received_at >= $2 AND id > $3
                       AND (CAST($4 AS BIGINT) IS NULL OR id = $4)
                     ORDER BY id LIMIT {limit}"
                );
                let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(workspace)
                    .bind(from)
                    .bind(after)
                    .bind(only)
                    .fetch_all(&mut *conn)
                    .await?;
                let next = (ids.len() == limit).then(|| ids.last().copied()).flatten();
                let mut found = Vec::with_capacity(ids.len());
                for ((chat, firsts), mut list) in chats_with_messages(conn, &ids, (from, to)).await? {
                    // A replay groups them as they were received.
                    list.sort_by_key(|m| (m.received_at, m.seq));
                    found.push((chat, firsts, list));
                }
                Ok((found, next))
            }

            #[async_trait]
            impl ReplayStore for super::$store {
                #[instrument(skip_all, fields(webhook_id = %new.webhook_id))]
                async fn create_replay(&self, new: NewReplay) -> StoreResult<Option<Replay>> {
                    // A windowing transaction: nothing committed after it is received before its
                    // time, so the range is whole when it ends there.
                    let created = self
                        .transact_windowing(Windowing::OfWebhook(new.webhook_id.clone()), move |conn, workspace, now| {
                            Box::pin(async move {
                                let id = new_id("rp");
                                let to = ms(new.to).min(now + 1);
                                sqlx::query(
                                    "INSERT INTO webhook_replays (id, webhook_id, workspace_id, chat_id, from_at, to_at, status,
                                                          cursor, chats, bundles, messages, calls, actor, created_at)
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, 0, 0, $8, $9)",
                                )
                                .bind(&id)
                                .bind(new.webhook_id.as_str())
                                .bind(workspace.as_str())
                                .bind(new.chat.map(|c| c.0))
                                .bind(ms(new.from))
                                .bind(to)
                                .bind(ReplayStatus::Planning.as_str())
                                .bind(&new.actor)
                                .bind(now)
                                .execute(&mut *conn)
                                .await?;
                                fetch(conn, &id).await
                            })
                        })
                        .await?;
                    Ok(created.flatten())
                }

                async fn get_replay(&self, id: &str) -> StoreResult<Option<Replay>> {
                    fetch(&mut *self.reads().acquire().await?, id).await
                }

                async fn planning_replays(&self) -> StoreResult<Vec<Replay>> {
                    let sql = format!("SELECT {REPLAY_COLUMNS} FROM webhook_replays r WHERE r.status = $1 ORDER BY r.created_at, r.id");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(ReplayStatus::Planning.as_str())
                        .fetch_all(self.reads())
                        .await?;
                    rows.iter().map(replay).collect()
                }

                async fn replay_chats(
                    &self,
                    workspace: &WorkspaceId,
                    chat: Option<ChatId>,
                    (from, to): (DateTime<Utc>, DateTime<Utc>),
                    after: i64,
                    limit: usize,
                ) -> StoreResult<Vec<(Chat, FirstMessages, Vec<StoredMessage>)>> {
                    let mut conn = self.reads().acquire().await?;
                    let (found, _) =
                        chats_in_range(&mut conn, workspace.as_str(), chat.map(|c| c.0), (ms(from), ms(to)), after, limit)
                            .await?;
                    Ok(found)
                }

                #[instrument(skip_all, fields(replay_id = %id))]
                async fn replay_step(&self, id: &str, limit: usize, plan: PlanReplay) -> StoreResult<ReplayProgress> {
                    let id = id.to_string();
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let sql = format!(
                                "SELECT {REPLAY_COLUMNS} FROM webhook_replays r WHERE r.id = $1 AND r.status = $2{}",
                                super::for_update!()
                            );
                            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                                .bind(&id)
                                .bind(ReplayStatus::Planning.as_str())
                                .fetch_optional(&mut *conn)
                                .await?;
                            let Some(row) = row else { return Ok(ReplayProgress::Stopped) };
                            let replay = replay(&row)?;
                            let cursor: i64 = row.try_get("cursor")?;
                            let range = (ms(replay.from), ms(replay.to));
                            let (chats, next) = chats_in_range(
                                conn,
                                replay.workspace_id.as_str(),
                                replay.chat.map(|c| c.0),
                                range,
                                cursor,
                                limit,
                            )
                            .await?;
                            let mut counts = ReplayCounts::default();
                            let mut deliveries = Vec::new();
                            for (chat, firsts, messages) in &chats {
                                let (planned, held) = plan(chat, *firsts, messages);
                                counts += held;
                                for p in planned {
                                    deliveries.push(Enqueue {
                                        id: p.id,
                                        kind: if p.bundle.is_some() { DeliveryKind::Bundle } else { DeliveryKind::Message },
                                        webhook: replay.webhook_id.clone(),
                                        chat: Some(chat.id),
                                        payload: p.payload,
                                        // Its own bundles: none of them is a live window's.
                                        bundle: None,
                                        replay: Some(replay.id.clone()),
                                        trace_parent: None,
                                        trace_links: Vec::new(),
                                    });
                                }
                            }
                            enqueue(conn, &deliveries, now).await?;
                            // Done when the scan ran out (not when fewer chats came back: one may
                            // have been erased meanwhile).
                            let done = next.is_none();
                            let last = next.unwrap_or(cursor);
                            sqlx::query(
                                "UPDATE webhook_replays SET cursor = $1, chats = chats + $2, bundles = bundles + $3,
                                    messages = messages + $4, calls = calls + $5,
                                    status = CASE WHEN $6 THEN $7 ELSE status END
                                 WHERE id = $8",
                            )
                            .bind(last)
                            .bind(counts.chats as i64)
                            .bind(counts.bundles as i64)
                            .bind(counts.messages as i64)
                            .bind(counts.calls as i64)
                            .bind(done)
                            .bind(ReplayStatus::Sending.as_str())
                            .bind(&id)
                            .execute(&mut *conn)
                            .await?;
                            Ok(if done { ReplayProgress::Done } else { ReplayProgress::More })
                        })
                    })
                    .await
                }

                #[instrument(skip_all, fields(replay_id = %id))]
                async fn cancel_replay(&self, id: &str) -> StoreResult<Option<Replay>> {
                    let id = id.to_string();
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let done = sqlx::query("UPDATE webhook_replays SET status = $1 WHERE id = $2")
                                .bind(ReplayStatus::Cancelled.as_str())
                                .bind(&id)
                                .execute(&mut *conn)
                                .await?;
                            if done.rows_affected() == 0 {
                                return Ok(None);
                            }
                            // What has not gone out never will: a send in flight may still land,
                            // and its result is then not recorded against a discarded delivery.
                            sqlx::query(concat!(
                                "UPDATE deliveries SET status = $1, finished_at = $2, lease_until = NULL, lease_token = NULL
                                 WHERE replay_id = $3 AND status = ",
                                crate::store::sql::pending!()
                            ))
                            .bind(DeliveryStatus::Discarded.as_str())
                            .bind(now)
                            .bind(&id)
                            .execute(&mut *conn)
                            .await?;
                            fetch(conn, &id).await
                        })
                    })
                    .await
                }
            }
        }
    };
}

pub(in crate::store) use replays;
