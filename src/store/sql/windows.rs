//! Windows ([`crate::store::WindowStore`]), for both engines: the webhooks that bundle, and
//! closing a range of a webhook's messages into deliveries, one batch of chats per transaction.
//! Each step is a windowing transaction (`transact_windowing`: on PostgreSQL under the
//! workspace's exclusive lock, so no message can then land behind a closed boundary). Progress
//! (`closing_boundary`, `closing_cursor`, `closing_flush`) commits with each batch's deliveries,
//! so a close interrupted by a crash resumes where it stopped, as what it was, and never makes a
//! bundle twice.

/// See the module's documentation. Besides `transact_windowing` and `reads`, the engine names
/// `super::plan_afresh(conn)` (statements whose best plan depends on how large the tables are)
/// and `super::lock_row!()`.
macro_rules! windows {
    ($store:ident, $conn:ty) => {
        mod windows {

            use async_trait::async_trait;
            use sqlx::Row;
            use tracing::instrument;

            use super::queue::enqueue;
            use super::rows::{bundling_webhook, chats_with_messages, ms};
            use crate::domain::{ChatId, DeliveryKind, WorkspaceId};
            use crate::store::queue::Enqueue;
            use crate::store::sql::Windowing;
            use crate::store::{BundlingWebhook, CloseProgress, CloseStep, StoreResult, WindowStore};

            /// A webhook with what closing its windows or conversations needs, from its workspace too.
            pub(super) const BUNDLING: &str =
                "SELECT w.id, w.workspace_id, COALESCE(w.granularity, s.granularity) AS granularity,
                        s.timezone, s.account_full_name, s.account_email, s.account_phone,
                        w.bundled_before, w.granularity_changed_at, w.closing_boundary, w.flushed_at,
                        w.closing_flush, w.note_max_chars, w.media_choice, s.locale, s.media_link_ttl_ms,
                        COALESCE(w.conversation_silence_ms, s.conversation_silence_ms) AS silence_ms,
                        COALESCE(w.conversation_max_ms, s.conversation_max_ms) AS max_ms
                 FROM webhooks w JOIN workspaces s ON s.id = w.workspace_id";

            #[async_trait]
            impl WindowStore for super::$store {
                async fn bundling_webhooks(
                    &self,
                    workspace_id: Option<&WorkspaceId>,
                ) -> StoreResult<Vec<BundlingWebhook>> {
                    let sql = format!(
                        "{BUNDLING} WHERE w.sub_messages AND NOT w.stopped
                                      AND (CAST($1 AS TEXT) IS NULL OR w.workspace_id = $1)
                         ORDER BY w.created_at, w.id"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace_id.map(WorkspaceId::as_str))
                    .fetch_all(self.reads())
                    .await?;
                    rows.iter().map(bundling_webhook).collect()
                }

                #[instrument(skip_all, fields(webhook_id = %step.webhook_id, boundary = %step.boundary))]
                async fn close_step(&self, step: CloseStep) -> StoreResult<CloseProgress> {
                    let webhook = Windowing::OfWebhook(step.webhook_id.clone());
                    let progress = self
                        .transact_windowing(webhook, move |conn, workspace, now| {
                            Box::pin(async move { close_step(conn, workspace, now, step).await })
                        })
                        .await?;
                    Ok(progress.unwrap_or(CloseProgress::Superseded))
                }
            }

            /// See [`WindowStore::close_step`].
            async fn close_step(
                conn: &mut $conn,
                workspace: WorkspaceId,
                now: i64,
                step: CloseStep,
            ) -> StoreResult<CloseProgress> {
                let boundary = ms(step.boundary);
                // Messages committed from now on carry this time or later; the boundary must not
                // be ahead of it, or a message could still arrive behind a closed boundary.
                if now < boundary {
                    return Ok(CloseProgress::NotYet);
                }
                super::plan_afresh(&mut *conn).await?;
                let row = sqlx::query(concat!(
                    "SELECT bundled_before, closing_boundary, closing_cursor FROM webhooks WHERE id = $1",
                    super::lock_row!()
                ))
                .bind(step.webhook_id.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                let Some(row) = row else {
                    return Ok(CloseProgress::Superseded);
                };
                let bundled_before: i64 = row.try_get("bundled_before")?;
                let closing: Option<i64> = row.try_get("closing_boundary")?;
                if bundled_before != ms(step.bundled_before) || closing.is_some_and(|b| b != boundary) {
                    return Ok(CloseProgress::Superseded);
                }
                let cursor: i64 = row.try_get::<Option<i64>, _>("closing_cursor")?.unwrap_or(0);

                // The step's chats by id alone first: the activity index holds the id, so finding
                // and ordering them reads no table row. Selecting the whole rows here would read
                // every active chat's row into the sort at every step (a day of 100,000 active
                // chats: ten million reads over its hundred steps), to keep a thousand.
                //
                // The limit is a literal: SQLite plans a bound one for the value bound, so the
                // statement would be planned anew at each step.
                let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT id FROM chats
                     WHERE workspace_id = $1 AND last_received_at >= $2 AND id > $3
                     ORDER BY id LIMIT {}",
                    step.chats
                )))
                .bind(workspace.as_str())
                .bind(bundled_before)
                .bind(cursor)
                .fetch_all(&mut *conn)
                .await?;
                // A step is a thousand chats or so: one statement for their rows, one for their
                // messages.
                let chats = chats_with_messages(conn, &ids, (bundled_before, boundary)).await?;
                let mut deliveries = Vec::new();
                for ((found, first_messages), list) in &chats {
                    if !list.is_empty() {
                        for planned in (step.plan)(found, *first_messages, list) {
                            deliveries.push(Enqueue {
                                id: planned.id,
                                kind: if planned.bundle.is_some() { DeliveryKind::Bundle } else { DeliveryKind::Message },
                                webhook: step.webhook_id.clone(),
                                chat: Some(ChatId(found.id.0)),
                                payload: planned.payload,
                                bundle: planned.bundle.map(|(end, part)| (ms(end), part)),
                                replay: None,
                                trace_parent: None,
                                trace_links: crate::store::trace_links(list),
                            });
                        }
                    }
                }
                enqueue(conn, &deliveries, now).await?;

                let count = deliveries.len() as u64;
                if chats.len() < step.chats {
                    sqlx::query(
                        "UPDATE webhooks SET bundled_before = CASE WHEN windows_from > $1 THEN windows_from ELSE $1 END,
                            closing_boundary = NULL, closing_cursor = NULL,
                            closing_flush = FALSE, flushed_at = CASE WHEN $2 THEN $1 ELSE flushed_at END
                         WHERE id = $3",
                    )
                    .bind(boundary)
                    .bind(step.flush)
                    .bind(step.webhook_id.as_str())
                    .execute(&mut *conn)
                    .await?;
                    Ok(CloseProgress::Done { deliveries: count })
                } else {
                    let last = chats.last().map(|((c, _), _)| c.id.0).unwrap_or(cursor);
                    // A flush cut off here resumes as a flush, with the labels it would have had.
                    sqlx::query(
                        "UPDATE webhooks SET closing_boundary = $1, closing_cursor = $2, closing_flush = $3
                         WHERE id = $4",
                    )
                    .bind(boundary)
                    .bind(last)
                    .bind(step.flush)
                    .bind(step.webhook_id.as_str())
                    .execute(&mut *conn)
                    .await?;
                    Ok(CloseProgress::More { deliveries: count })
                }
            }
        }
    };
}

pub(in crate::store) use windows;
