//! The activity log, the owner's e-mail outbox and the page's sessions
//! ([`crate::store::ActivityLog`], [`crate::store::Outbox`], [`crate::store::WebSessions`]), for
//! both engines.

/// The SQL of the activity log, the outbox and web sessions for one engine (see [`super`]).
/// Besides `transact` and `reads`, the engine names `super::one_pruner(conn)` (whether this
/// transaction may prune now: several daemons take turns) and `super::skip_locked!()` (how a claim
/// passes rows another transaction holds).
macro_rules! log {
    ($store:ident, $conn:ty) => {
        mod log {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use sqlx::Row;

            use super::rows::{activity_row, attempt, ms};
            use crate::domain::{WebhookId, WorkspaceId};
            use crate::store::{
                ActivityCursor, ActivityLog, ActivityRow, Attempt, AttemptRecord, Email, EmailOutcome, Outbox,
                OutboxEmail, Pruned, StoreResult, WebSessions,
            };

            /// An attempt's request body as read back: its own, or (empty: a delivery's attempt) its
            /// delivery's payload, which is what was sent.
            pub(in super::super) const ATTEMPT_BODY: &str =
                "CASE WHEN LENGTH(a.request_body) = 0 THEN d.payload ELSE a.request_body END";

            /// Logs an attempt (`test`: a test send, outside the queue). The request body of a
            /// delivery's attempt is its delivery's payload, kept once, there: the attempt stores
            /// an empty body, and reading it back takes the delivery's ([`ATTEMPT_BODY`]). A test
            /// send has no delivery and keeps its own.
            pub(in super::super) async fn insert_attempt(
                conn: &mut $conn,
                attempt: &AttemptRecord,
                test: bool,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO attempts (delivery_seq, delivery_id, webhook_id, attempted_at, duration_ms,
                        status, response_excerpt, error, request_headers, request_body, test)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(attempt.delivery_seq)
                .bind(attempt.delivery_id.as_str())
                .bind(attempt.webhook_id.as_str())
                .bind(ms(attempt.attempted_at))
                .bind(attempt.duration.as_millis() as i64)
                .bind(attempt.status.map(i64::from))
                .bind(&attempt.response_excerpt)
                .bind(attempt.error.as_ref().map(ToString::to_string))
                .bind(crate::store::payload::stored_headers(attempt))
                .bind(if test { attempt.request_body.as_slice() } else { &[] })
                .bind(test)
                .execute(conn)
                .await?;
                Ok(())
            }

            /// Logs an event of a workspace, or of one of its webhooks, and who caused it (`None`:
            /// the daemon itself).
            pub(in super::super) async fn insert_event(
                conn: &mut $conn,
                workspace_id: &WorkspaceId,
                webhook_id: Option<&WebhookId>,
                at: i64,
                (kind, actor): (&str, Option<&str>),
                detail: &serde_json::Value,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO events (workspace_id, webhook_id, at, kind, detail, actor)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(workspace_id.as_str())
                .bind(webhook_id.map(WebhookId::as_str))
                .bind(at)
                .bind(kind)
                .bind(detail.to_string())
                .bind(actor)
                .execute(conn)
                .await?;
                Ok(())
            }

            /// Puts an e-mail in the outbox, due at once, noting the workspace and webhook it is
            /// about.
            pub(in super::super) async fn queue_email(
                conn: &mut $conn,
                email: &Email,
                workspace_id: &WorkspaceId,
                webhook_id: Option<&WebhookId>,
                now: i64,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO outbox (recipient, subject, body, created_at, next_attempt_at, workspace_id,
                        webhook_id)
                     VALUES ($1, $2, $3, $4, 0, $5, $6)",
                )
                .bind(&email.recipient)
                .bind(&email.subject)
                .bind(&email.body)
                .bind(now)
                .bind(workspace_id.as_str())
                .bind(webhook_id.map(WebhookId::as_str))
                .execute(conn)
                .await?;
                Ok(())
            }

            #[async_trait]
            impl ActivityLog for super::$store {
                async fn list_attempts(&self, webhook: &WebhookId, limit: u32) -> StoreResult<Vec<Attempt>> {
                    let sql = format!(
                        "SELECT a.id, a.delivery_id, a.webhook_id, a.attempted_at, a.duration_ms, a.status,
                                a.response_excerpt, a.error, a.request_headers, {ATTEMPT_BODY} AS request_body
                         FROM attempts a LEFT JOIN deliveries d ON d.seq = a.delivery_seq
                         WHERE a.webhook_id = $1 ORDER BY a.attempted_at DESC, a.id DESC LIMIT $2"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(webhook.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(self.reads())
                    .await?;
                    rows.iter().map(attempt).collect()
                }

                async fn activity(
                    &self,
                    webhook: &WebhookId,
                    after: Option<ActivityCursor>,
                    limit: u32,
                ) -> StoreResult<Vec<ActivityRow>> {
                    let mut conn = self.reads().acquire().await?;
                    let workspace: Option<String> =
                        sqlx::query_scalar("SELECT workspace_id FROM webhooks WHERE id = $1")
                            .bind(webhook.as_str())
                            .fetch_optional(&mut *conn)
                            .await?;
                    let Some(workspace) = workspace else {
                        return Ok(Vec::new());
                    };
                    let cursor = after.unwrap_or(ActivityCursor { at: i64::MAX, source: i64::MAX, id: i64::MAX });
                    let sql = format!(
                        "SELECT * FROM (
                            SELECT a.attempted_at AS at, CAST(1 AS BIGINT) AS source, a.id,
                                   CASE WHEN a.test THEN 'test' ELSE 'attempt' END AS kind, a.delivery_id, a.status,
                                   a.duration_ms, a.error, a.response_excerpt, a.request_headers,
                                   {ATTEMPT_BODY} AS request_body,
                                   CAST(NULL AS TEXT) AS detail, CAST(NULL AS TEXT) AS actor
                            FROM attempts a LEFT JOIN deliveries d ON d.seq = a.delivery_seq WHERE a.webhook_id = $1
                            UNION ALL
                            SELECT at, CAST(0 AS BIGINT) AS source, id, kind, CAST(NULL AS TEXT),
                                   CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS TEXT),
                                   CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS BYTEA), detail, actor
                            FROM events WHERE webhook_id = $1 OR (webhook_id IS NULL AND workspace_id = $2)
                         ) AS log
                         WHERE at < $3 OR (at = $3 AND (source < $4 OR (source = $4 AND id < $5)))
                         ORDER BY at DESC, source DESC, id DESC
                         LIMIT $6"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(webhook.as_str())
                    .bind(&workspace)
                    .bind(cursor.at)
                    .bind(cursor.source)
                    .bind(cursor.id)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await?;
                    rows.iter().map(activity_row).collect()
                }

                async fn record_event(
                    &self,
                    workspace: &WorkspaceId,
                    webhook: Option<&WebhookId>,
                    (kind, actor): (&str, Option<&str>),
                    detail: serde_json::Value,
                ) -> StoreResult<()> {
                    let (workspace, webhook, kind) = (workspace.clone(), webhook.cloned(), kind.to_string());
                    let actor = actor.map(str::to_string);
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            insert_event(conn, &workspace, webhook.as_ref(), now, (&kind, actor.as_deref()), &detail).await
                        })
                    })
                    .await
                }

                /// Where another daemon is pruning right now, this one does nothing (its rows go
                /// next time).
                async fn prune(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<Pruned> {
                    let before = ms(before);
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            if !super::one_pruner(&mut *conn).await? {
                                return Ok(Pruned::default());
                            }
                            let mut rows = 0;
                            for sql in [
                                "DELETE FROM attempts WHERE id IN
                                    (SELECT id FROM attempts WHERE attempted_at < $1 LIMIT $2)",
                                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < $1 LIMIT $2)",
                                "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries
                                    WHERE finished_at IS NOT NULL AND finished_at < $1 LIMIT $2)",
                                "DELETE FROM web_sessions WHERE id IN
                                    (SELECT id FROM web_sessions WHERE expires_at < $1 LIMIT $2)",
                                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
                                    WHERE COALESCE(sent_at, failed_at) IS NOT NULL
                                      AND COALESCE(sent_at, failed_at) < $1 LIMIT $2)",
                            ] {
                                rows += sqlx::query(sql)
                                    .bind(before)
                                    .bind(i64::from(limit))
                                    .execute(&mut *conn)
                                    .await?
                                    .rows_affected();
                            }
                            Ok(Pruned { rows })
                        })
                    })
                    .await
                }
            }

            #[async_trait]
            impl Outbox for super::$store {
                async fn claim_email(&self, lease: std::time::Duration) -> StoreResult<Option<OutboxEmail>> {
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let row = sqlx::query(concat!(
                                "UPDATE outbox SET next_attempt_at = $1
                                 WHERE id = (SELECT id FROM outbox
                                             WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $2
                                             ORDER BY next_attempt_at, id LIMIT 1",
                                super::skip_locked!(),
                                ") RETURNING id, recipient, subject, body, attempts"
                            ))
                            .bind(now + lease.as_millis() as i64)
                            .bind(now)
                            .fetch_optional(conn)
                            .await?;
                            row.map(|row| {
                                Ok(OutboxEmail {
                                    id: row.try_get("id")?,
                                    email: Email {
                                        recipient: row.try_get("recipient")?,
                                        subject: row.try_get("subject")?,
                                        body: row.try_get("body")?,
                                    },
                                    attempts: row.try_get::<i64, _>("attempts")? as u32,
                                })
                            })
                            .transpose()
                        })
                    })
                    .await
                }

                async fn queue_email(&self, email: &Email, workspace_id: &WorkspaceId) -> StoreResult<()> {
                    let (email, workspace_id) = (email.clone(), workspace_id.clone());
                    self.transact(move |conn, now| {
                        Box::pin(async move { queue_email(conn, &email, &workspace_id, None, now).await })
                    })
                    .await
                }

                async fn email_result(&self, id: i64, outcome: EmailOutcome) -> StoreResult<()> {
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            match outcome {
                                EmailOutcome::Sent => {
                                    sqlx::query(
                                        "UPDATE outbox SET sent_at = $1, attempts = attempts + 1, last_error = NULL
                                         WHERE id = $2",
                                    )
                                    .bind(now)
                                    .bind(id)
                                    .execute(&mut *conn)
                                    .await?;
                                }
                                EmailOutcome::Retry { error, at } => {
                                    sqlx::query(
                                        "UPDATE outbox SET attempts = attempts + 1, last_error = $1,
                                            next_attempt_at = $2
                                         WHERE id = $3",
                                    )
                                    .bind(error)
                                    .bind(ms(at))
                                    .bind(id)
                                    .execute(&mut *conn)
                                    .await?;
                                }
                                EmailOutcome::GaveUp { error } => {
                                    let row = sqlx::query(
                                        "UPDATE outbox SET attempts = attempts + 1, last_error = $1, failed_at = $2
                                         WHERE id = $3
                                         RETURNING recipient, subject, workspace_id,
                                                   (SELECT w.id FROM webhooks w WHERE w.id = outbox.webhook_id)
                                                     AS webhook_id",
                                    )
                                    .bind(&error)
                                    .bind(now)
                                    .bind(id)
                                    .fetch_optional(&mut *conn)
                                    .await?;
                                    if let Some(row) = row
                                        && let Some(workspace_id) = row.try_get::<Option<String>, _>("workspace_id")?
                                    {
                                        let detail = serde_json::json!({
                                            "recipient": row.try_get::<String, _>("recipient")?,
                                            "subject": row.try_get::<String, _>("subject")?,
                                            "error": error,
                                        });
                                        // The webhook it was about, if it still exists; else the
                                        // row belongs to the workspace.
                                        let webhook =
                                            row.try_get::<Option<String>, _>("webhook_id")?.map(WebhookId::stored);
                                        let workspace = WorkspaceId::stored(workspace_id);
                                        insert_event(conn, &workspace, webhook.as_ref(), now, ("email_failed", None), &detail)
                                            .await?;
                                    }
                                }
                            }
                            Ok(())
                        })
                    })
                    .await
                }
            }

            #[async_trait]
            impl WebSessions for super::$store {
                async fn start_web_session(
                    &self,
                    id: &str,
                    expires_at: DateTime<Utc>,
                    user: Option<&crate::domain::UserId>,
                ) -> StoreResult<()> {
                    let (id, expires_at) = (id.to_string(), ms(expires_at));
                    let user = user.map(|u| u.to_string());
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            sqlx::query(
                                "INSERT INTO web_sessions (id, created_at, expires_at, user_id) VALUES ($1, $2, $3, $4)",
                            )
                                .bind(&id)
                                .bind(now)
                                .bind(expires_at)
                                .bind(&user)
                                .execute(conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
                }

                async fn web_session_alive(
                    &self,
                    id: &str,
                    now: DateTime<Utc>,
                ) -> StoreResult<Option<Option<crate::domain::UserId>>> {
                    let found: Option<Option<String>> =
                        sqlx::query_scalar("SELECT user_id FROM web_sessions WHERE id = $1 AND expires_at > $2")
                            .bind(id)
                            .bind(ms(now))
                            .fetch_optional(self.reads())
                            .await?;
                    Ok(found.map(|user| user.map(crate::domain::UserId::stored)))
                }

                async fn end_web_session(&self, id: &str) -> StoreResult<()> {
                    let id = id.to_string();
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            sqlx::query("DELETE FROM web_sessions WHERE id = $1").bind(&id).execute(conn).await?;
                            Ok(())
                        })
                    })
                    .await
                }
            }
        }
    };
}

pub(in crate::store) use log;
