//! The reply queue ([`crate::store::ReplyStore`]), for both engines, and what ingest does for a
//! reply: queue it with its message, and know the channel's echo of one already sent.

/// See the module's documentation, and [`super`] for what the engine provides.
macro_rules! replies {
    ($store:ident, $conn:ty) => {
        mod replies {
            use std::time::Duration;

            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use sqlx::Row;

            use super::log::insert_event;
            use super::rows::{from_ms, ms};
            use crate::domain::{ChatId, WorkspaceId};
            use crate::store::{
                ClaimedReply, IngestBatch, OutgoingStatus, Reply, ReplyBody, ReplyOutcome, ReplyStore,
                StoreError, StoreResult, VendorError,
            };

            const COLUMNS: &str = "workspace_id, chat_id, message_id, status, vendor_id, error_code, error_message,
                                   attempts, idempotency_key, created_at, finished_at";

            type DbRow = <<$conn as sqlx::Connection>::Database as sqlx::Database>::Row;

            fn reply(row: &DbRow) -> StoreResult<Reply> {
                let status: String = row.try_get("status")?;
                let code: Option<String> = row.try_get("error_code")?;
                let message: Option<String> = row.try_get("error_message")?;
                Ok(Reply {
                    workspace_id: WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?),
                    chat: ChatId(row.try_get("chat_id")?),
                    message_id: row.try_get("message_id")?,
                    status: OutgoingStatus::parse(&status).unwrap_or(OutgoingStatus::Failed),
                    vendor_id: row.try_get("vendor_id")?,
                    error: code.map(|code| VendorError { code, message: message.unwrap_or_default() }),
                    attempts: row.try_get::<i64, _>("attempts")? as u32,
                    idempotency_key: row.try_get("idempotency_key")?,
                    created_at: from_ms(row.try_get("created_at")?),
                    finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(from_ms),
                })
            }

            /// Queues the replies of `fresh`, requests whose reply message was new, due at once,
            /// each with an activity row `reply_queued`.
            pub(in super::super) async fn queue(
                conn: &mut $conn,
                fresh: Vec<&IngestBatch>,
                now: i64,
            ) -> StoreResult<()> {
                for batch in fresh {
                    let Some(new) = &batch.reply else { continue };
                    let body = serde_json::to_string(&new.body).expect("reply bodies serialise");
                    sqlx::query(
                        "INSERT INTO replies (workspace_id, chat_id, source_key, message_id, body, idempotency_key,
                                              actor, status, attempts, next_attempt_at, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, $8)",
                    )
                    .bind(batch.workspace_id.as_str())
                    .bind(new.chat.0)
                    .bind(batch.source_key.as_str())
                    .bind(new.message_id.as_str())
                    .bind(body)
                    .bind(new.idempotency_key.as_deref())
                    .bind(new.actor.as_str())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    let detail = serde_json::json!({
                        "chat_id": new.chat.0,
                        "message_id": new.message_id,
                        "template": new.body.template().map(|t| t.name.as_str()),
                        "chars": new.body.shown().chars().count(),
                    });
                    insert_event(conn, &batch.workspace_id, None, now, ("reply_queued", Some(&new.actor)), &detail)
                        .await?;
                }
                Ok(())
            }

            /// Of the `sent` messages a channel reports, the ids that are its own ids of replies
            /// sent from here (its echo of them): `(workspace, source key, id)`. One statement per
            /// workspace and source (and per 500 ids), as requests are merged.
            pub(in super::super) async fn echoes(
                conn: &mut $conn,
                sent: &[(&str, &str, &str)],
            ) -> StoreResult<std::collections::HashSet<(String, String, String)>> {
                let mut by_source: std::collections::BTreeMap<(&str, &str), Vec<&str>> = Default::default();
                for (workspace, source, id) in sent {
                    by_source.entry((*workspace, *source)).or_default().push(*id);
                }
                let mut found = std::collections::HashSet::new();
                for ((workspace, source), ids) in by_source {
                    for chunk in ids.chunks(crate::store::sql::ROWS_PER_STATEMENT) {
                        let p = super::PLACEHOLDERS;
                        let sql = format!(
                            "SELECT vendor_id FROM replies WHERE workspace_id = {} AND source_key = {} AND vendor_id IN ({})",
                            p.one(1),
                            p.one(2),
                            p.list(3, chunk.len())
                        );
                        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(workspace).bind(source);
                        for id in chunk {
                            query = query.bind(*id);
                        }
                        for id in query.fetch_all(&mut *conn).await? {
                            found.insert((workspace.to_string(), source.to_string(), id));
                        }
                    }
                }
                Ok(found)
            }

            #[async_trait]
            impl ReplyStore for super::$store {
                async fn reply(&self, chat: ChatId, message_id: &str) -> StoreResult<Option<Reply>> {
                    let sql = format!("SELECT {COLUMNS} FROM replies WHERE chat_id = $1 AND message_id = $2");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(chat.0)
                        .bind(message_id)
                        .fetch_optional(self.reads())
                        .await?;
                    row.as_ref().map(reply).transpose()
                }

                async fn reply_by_key(&self, chat: ChatId, key: &str) -> StoreResult<Option<Reply>> {
                    let sql = format!(
                        "SELECT {COLUMNS} FROM replies WHERE chat_id = $1 AND idempotency_key = $2
                         ORDER BY created_at DESC, id DESC LIMIT 1"
                    );
                    let row =
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(chat.0).bind(key).fetch_optional(self.reads()).await?;
                    row.as_ref().map(reply).transpose()
                }

                async fn claim_replies(&self, lease: Duration, limit: u32) -> StoreResult<Vec<ClaimedReply>> {
                    // Tokens are random: a claim can never guess another's.
                    let token = rand::random::<i64>() & i64::MAX;
                    let lease = lease.as_millis() as i64;
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            // The outer condition is checked again on each row as it is written:
                            // a claim that raced another for a row finds it leased and leaves it.
                            let sql = format!(
                                "UPDATE replies SET next_attempt_at = $1 + $2, lease_token = $3, attempts = attempts + 1
                                 WHERE id IN (SELECT r.id FROM replies r
                                              WHERE r.status = 'queued' AND r.next_attempt_at <= $1
                                                AND NOT EXISTS (SELECT 1 FROM replies e
                                                                WHERE e.chat_id = r.chat_id AND e.status = 'queued'
                                                                  AND e.id < r.id)
                                              ORDER BY r.next_attempt_at, r.id LIMIT $4)
                                   AND status = 'queued' AND next_attempt_at <= $1
                                 RETURNING {COLUMNS}, source_key, body, lease_token, actor"
                            );
                            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                                .bind(now)
                                .bind(lease)
                                .bind(token)
                                .bind(i64::from(limit))
                                .fetch_all(&mut *conn)
                                .await?;
                            let mut claimed = Vec::with_capacity(rows.len());
                            for row in &rows {
                                let body: Option<String> = row.try_get("body")?;
                                let body: ReplyBody = serde_json::from_str(body.as_deref().unwrap_or("null"))
                                    .map_err(|e| StoreError::Unavailable(std::sync::Arc::new(e)))?;
                                claimed.push(ClaimedReply {
                                    reply: reply(row)?,
                                    body,
                                    source_key: row.try_get("source_key")?,
                                    lease_token: row.try_get("lease_token")?,
                                    actor: row.try_get("actor")?,
                                });
                            }
                            Ok(claimed)
                        })
                    })
                    .await
                }

                async fn record_reply(
                    &self,
                    message_id: &str,
                    chat: ChatId,
                    lease_token: i64,
                    outcome: ReplyOutcome,
                ) -> StoreResult<bool> {
                    let message_id = message_id.to_string();
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let (status, vendor_id, error, next, finished) = match &outcome {
                                ReplyOutcome::Sent { vendor_id } => ("sent", vendor_id.clone(), None, None, Some(now)),
                                ReplyOutcome::RetryAt { at, error } => ("queued", None, Some(error.clone()), Some(ms(*at)), None),
                                ReplyOutcome::Failed { error } => ("failed", None, Some(error.clone()), None, Some(now)),
                            };
                            // A finished reply keeps its answer, not its body: its message holds
                            // what was sent.
                            let row = sqlx::query(
                                "UPDATE replies SET status = $1, vendor_id = COALESCE($2, vendor_id), error_code = $3,
                                        error_message = $4, next_attempt_at = COALESCE($5, next_attempt_at),
                                        finished_at = $6, lease_token = NULL,
                                        body = CASE WHEN $6 IS NULL THEN body ELSE NULL END
                                 WHERE chat_id = $7 AND message_id = $8 AND lease_token = $9 AND status = 'queued'
                                 RETURNING workspace_id, attempts, actor",
                            )
                            .bind(status)
                            .bind(vendor_id.clone())
                            .bind(error.as_ref().map(|e| e.code.clone()))
                            .bind(error.as_ref().map(|e| e.message.clone()))
                            .bind(next)
                            .bind(finished)
                            .bind(chat.0)
                            .bind(message_id.as_str())
                            .bind(lease_token)
                            .fetch_optional(&mut *conn)
                            .await?;
                            let Some(row) = row else { return Ok(false) };
                            let workspace = WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?);
                            let attempts: i64 = row.try_get("attempts")?;
                            let actor: String = row.try_get("actor")?;
                            let kind = match &outcome {
                                ReplyOutcome::Sent { .. } => "reply_sent",
                                ReplyOutcome::RetryAt { .. } => "reply_retrying",
                                ReplyOutcome::Failed { .. } => "reply_failed",
                            };
                            let mut detail = serde_json::json!({
                                "chat_id": chat.0, "message_id": message_id, "attempts": attempts, "sent_by": actor,
                            });
                            if let Some(id) = &vendor_id {
                                detail["vendor_id"] = id.clone().into();
                            }
                            if let Some(error) = &error {
                                detail["error"] = serde_json::json!({"code": error.code, "message": error.message});
                            }
                            if let ReplyOutcome::RetryAt { at, .. } = &outcome {
                                detail["retry_at"] = at.to_rfc3339().into();
                            }
                            insert_event(conn, &workspace, None, now, (kind, None), &detail).await?;
                            Ok(true)
                        })
                    })
                    .await
                }

                async fn next_reply_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
                    let due: Option<i64> =
                        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM replies WHERE status = 'queued'")
                            .fetch_one(self.reads())
                            .await?;
                    Ok(due.map(from_ms))
                }
            }
        }
    };
}

pub(in crate::store) use replies;
