//! Conversations ([`crate::store::ConversationStore`]), for both engines: messages join their
//! chat's open conversation at ingest (one statement per commit, only for workspaces with a
//! conversation webhook), a session's end makes it due at once, a settings change ends it at the
//! change's instant, and the closer closes what is due, a batch per windowing transaction.
//!
//! The deadline is a column, `MIN(first_at + max_ms, last_at + silence_ms)`
//! ([`crate::domain::conversation::deadline`]), or 0 (due at once) when something ended it, kept by every
//! statement that moves it; finding what is due reads the deadline index, never every open one.

/// See the module's documentation. The engine names `transact_windowing`, `reads`,
/// `super::least!()` and `super::PLACEHOLDERS`.
macro_rules! conversations {
    ($store:ident, $conn:ty) => {
        mod conversations {
            use std::collections::HashMap;

            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use sqlx::Row;
            use tracing::instrument;

            use super::queue::enqueue;
            use super::rows::{bundling_webhook, chats_with_messages, from_ms, ms};
            use super::windows::BUNDLING;
            use crate::domain::conversation::{self, ClosedBy, Open};
            use crate::domain::{ChatId, DeliveryKind, WebhookId, WorkspaceId};
            use crate::store::queue::Enqueue;
            use crate::store::sql::Windowing;
            use crate::store::{
                BundlingWebhook, ConversationClose, ConversationStore, ConversationsClosed, StoreResult, StoredMessage,
            };

            /// Messages received at `now` in these chats join the open conversation of each of
            /// their workspace's conversation webhooks, or open one. Returns whether one opened
            /// (its deadline may be sooner than any the closer knows).
            pub(in super::super) async fn join(conn: &mut $conn, chats: &[i64], now: i64) -> StoreResult<bool> {
                let mut opened = false;
                for chunk in chats.chunks(crate::store::sql::ROWS_PER_STATEMENT) {
                    let p = super::PLACEHOLDERS;
                    let silence = "COALESCE(w.conversation_silence_ms, s.conversation_silence_ms)";
                    let max = "COALESCE(w.conversation_max_ms, s.conversation_max_ms)";
                    let sql = format!(
                        "INSERT INTO conversations (webhook_id, workspace_id, chat_id, first_at, last_at, silence_ms,
                                                    max_ms, deadline)
                         SELECT w.id, w.workspace_id, c.id, t.at, t.at, {silence}, {max}, t.at + {least}({silence}, {max})
                         FROM (SELECT {at} AS at) t, chats c JOIN workspaces s ON s.id = c.workspace_id
                              JOIN webhooks w ON w.workspace_id = c.workspace_id
                         WHERE c.id IN ({ids}) AND w.sub_messages AND NOT w.stopped
                           AND COALESCE(w.granularity, s.granularity) = 'conversation'
                         ON CONFLICT (webhook_id, chat_id) WHERE until IS NULL DO UPDATE SET
                            first_at = {least}(conversations.first_at, excluded.first_at),
                            last_at = {greatest}(conversations.last_at, excluded.last_at),
                            silence_ms = excluded.silence_ms, max_ms = excluded.max_ms,
                            deadline = CASE WHEN conversations.ended_by IS NULL
                                            THEN {least}({least}(conversations.first_at, excluded.first_at) + excluded.max_ms,
                                                         {greatest}(conversations.last_at, excluded.last_at) + excluded.silence_ms)
                                            ELSE conversations.deadline END
                         RETURNING first_at",
                        at = p.one(1),
                        least = super::least!(),
                        greatest = super::greatest!(),
                        ids = p.list(2, chunk.len()),
                    );
                    let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(now);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    opened |= query.fetch_all(&mut *conn).await?.into_iter().any(|first| first == now);
                }
                Ok(opened)
            }

            /// The channel ended a chat's session: its open conversations are due at once (a
            /// deadline of 0 is past whatever clock reads it), closed by `session_end`. Returns
            /// whether there was one.
            pub(in super::super) async fn end_session(conn: &mut $conn, chat: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE conversations SET ended_by = $1, deadline = 0
                     WHERE chat_id = $2 AND until IS NULL AND ended_by IS NULL",
                )
                .bind(ClosedBy::SessionEnd.as_str())
                .bind(chat)
                .execute(conn)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            /// A webhook stopped bundling by conversation at `at` (a settings change, in its
            /// windowing transaction): its open conversations end there, due now, as a flush; and
            /// its windows, if it has any now, start there.
            pub(in super::super) async fn end_for_settings(conn: &mut $conn, webhook: &str, at: i64) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE conversations SET until = $1, deadline = 0, ended_by = COALESCE(ended_by, $2)
                     WHERE webhook_id = $3 AND until IS NULL",
                )
                .bind(at)
                .bind(ClosedBy::Flush.as_str())
                .bind(webhook)
                .execute(&mut *conn)
                .await?;
                windows_done_at(conn, webhook, at).await
            }

            /// A webhook started bundling by conversation at `at` (a settings change, in its
            /// windowing transaction): what it held buffered — received from where its windows
            /// stood (or a close in progress stops) until `at`, or, coming from `none`, until the
            /// change to `none` — becomes one ended conversation per chat, due at once, as a flush;
            /// its windows are done with at `at`, so nothing is bundled twice or left behind,
            /// however soon the next change comes.
            pub(in super::super) async fn start_for_settings(
                conn: &mut $conn,
                webhook: &str,
                at: i64,
                from_none: bool,
            ) -> StoreResult<()> {
                let row = sqlx::query(concat!(
                    "SELECT workspace_id, bundled_before, closing_boundary, granularity_changed_at FROM webhooks WHERE id = $1",
                    super::lock_row!()
                ))
                .bind(webhook)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(row) = row else { return Ok(()) };
                let workspace: String = row.try_get("workspace_id")?;
                let bundled_before: i64 = row.try_get("bundled_before")?;
                let closing: Option<i64> = row.try_get("closing_boundary")?;
                let lower = closing.unwrap_or(bundled_before);
                let upper = if from_none { row.try_get("granularity_changed_at")? } else { at };
                if lower < upper {
                    sqlx::query(
                        "INSERT INTO conversations (webhook_id, workspace_id, chat_id, first_at, last_at, until, silence_ms,
                                                    max_ms, deadline, ended_by)
                         SELECT $1, c.workspace_id, m.chat_id, MIN(m.received_at), MAX(m.received_at), $2, 0, 0, 0, $3
                         FROM chats c JOIN messages m ON m.chat_id = c.id
                         WHERE c.workspace_id = $4 AND c.last_received_at >= $5 AND m.received_at >= $5 AND m.received_at < $2
                         GROUP BY c.workspace_id, m.chat_id",
                    )
                    .bind(webhook)
                    .bind(upper)
                    .bind(ClosedBy::Flush.as_str())
                    .bind(&workspace)
                    .bind(lower)
                    .execute(&mut *conn)
                    .await?;
                }
                windows_done_at(conn, webhook, at).await
            }

            /// No window close of `webhook` takes a message received before `at` (its messages
            /// until then are, or were, its conversations'): its windows start there, and a close in
            /// progress resumes from where it stood and ends there.
            async fn windows_done_at(conn: &mut $conn, webhook: &str, at: i64) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE webhooks SET windows_from = $1,
                        bundled_before = CASE WHEN closing_boundary IS NULL THEN $1 ELSE bundled_before END
                     WHERE id = $2",
                )
                .bind(at)
                .bind(webhook)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// A change of the silence or maximum of a workspace's conversation webhooks takes
            /// effect at once: their open conversations' deadlines are computed anew.
            pub(in super::super) async fn retime(conn: &mut $conn, workspace: &str) -> StoreResult<()> {
                let sql = format!(
                    "UPDATE conversations SET
                        silence_ms = (SELECT COALESCE(w.conversation_silence_ms, s.conversation_silence_ms)
                                      FROM webhooks w JOIN workspaces s ON s.id = w.workspace_id
                                      WHERE w.id = conversations.webhook_id),
                        max_ms = (SELECT COALESCE(w.conversation_max_ms, s.conversation_max_ms)
                                  FROM webhooks w JOIN workspaces s ON s.id = w.workspace_id
                                  WHERE w.id = conversations.webhook_id)
                     WHERE workspace_id = $1 AND until IS NULL"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(workspace).execute(&mut *conn).await?;
                let sql = format!(
                    "UPDATE conversations SET deadline = {}(first_at + max_ms, last_at + silence_ms)
                     WHERE workspace_id = $1 AND until IS NULL AND ended_by IS NULL",
                    super::least!()
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(workspace).execute(&mut *conn).await?;
                Ok(())
            }

            /// An open conversation as read for closing.
            struct Closing {
                id: i64,
                webhook: WebhookId,
                chat: i64,
                until: Option<i64>,
                open: Open,
            }

            #[async_trait]
            impl ConversationStore for super::$store {
                async fn due_conversations(&self, now: DateTime<Utc>) -> StoreResult<Option<WorkspaceId>> {
                    let found: Option<String> = sqlx::query_scalar(
                        "SELECT workspace_id FROM conversations WHERE deadline <= $1 ORDER BY deadline LIMIT 1",
                    )
                    .bind(ms(now))
                    .fetch_optional(self.reads())
                    .await?;
                    Ok(found.map(WorkspaceId::stored))
                }

                async fn closing_webhooks(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<BundlingWebhook>> {
                    let sql = format!("{BUNDLING} WHERE w.workspace_id = $1 ORDER BY w.created_at, w.id");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(workspace_id.as_str()).fetch_all(self.reads()).await?;
                    rows.iter().map(bundling_webhook).collect()
                }

                async fn conversation_since(&self, webhook: &WebhookId, chat: ChatId) -> StoreResult<Option<DateTime<Utc>>> {
                    let since: Option<i64> = sqlx::query_scalar(
                        "SELECT first_at FROM conversations WHERE webhook_id = $1 AND chat_id = $2 AND until IS NULL",
                    )
                    .bind(webhook.as_str())
                    .bind(chat.0)
                    .fetch_optional(self.reads())
                    .await?;
                    Ok(since.map(from_ms))
                }

                async fn next_conversation_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
                    let next: Option<i64> =
                        sqlx::query_scalar("SELECT deadline FROM conversations ORDER BY deadline LIMIT 1")
                            .fetch_optional(self.reads())
                            .await?;
                    Ok(next.map(from_ms))
                }

                #[instrument(skip_all, fields(workspace_id = %close.workspace_id, flush = close.flush))]
                async fn close_conversations(&self, close: ConversationClose) -> StoreResult<ConversationsClosed> {
                    if close.webhooks.is_empty() {
                        return Ok(ConversationsClosed::default());
                    }
                    let workspace = Windowing::Workspace(close.workspace_id.clone());
                    let done = self
                        .transact_windowing(workspace, move |conn, workspace, now| {
                            Box::pin(async move { close_conversations(conn, workspace, now, close).await })
                        })
                        .await?;
                    Ok(done.unwrap_or_default())
                }
            }

            /// See [`ConversationStore::close_conversations`].
            async fn close_conversations(
                conn: &mut $conn,
                workspace: WorkspaceId,
                now: i64,
                close: ConversationClose,
            ) -> StoreResult<ConversationsClosed> {
                // The limit is a literal: SQLite plans a bound one for the value bound.
                let sql = format!(
                    "SELECT id, webhook_id, chat_id, first_at, last_at, until, silence_ms, max_ms, ended_by
                     FROM conversations
                     WHERE workspace_id = $1 AND deadline <= $2 AND webhook_id IN ({})
                     ORDER BY deadline, id LIMIT {}",
                    crate::store::sql::params(3, close.webhooks.len()),
                    close.limit
                );
                // A flush takes every open one.
                let due_by = if close.flush { i64::MAX } else { now };
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(workspace.as_str()).bind(due_by);
                for webhook in &close.webhooks {
                    query = query.bind(webhook.as_str());
                }
                let mut closing = Vec::new();
                for row in query.fetch_all(&mut *conn).await? {
                    let ended: Option<String> = row.try_get("ended_by")?;
                    let ended = if close.flush { Some(ClosedBy::Flush) } else { ended.as_deref().and_then(ClosedBy::parse) };
                    closing.push(Closing {
                        id: row.try_get("id")?,
                        webhook: WebhookId::stored(row.try_get::<String, _>("webhook_id")?),
                        chat: row.try_get("chat_id")?,
                        until: row.try_get("until")?,
                        open: Open {
                            first_at: row.try_get("first_at")?,
                            last_at: row.try_get("last_at")?,
                            silence_ms: row.try_get("silence_ms")?,
                            max_ms: row.try_get("max_ms")?,
                            ended,
                        },
                    });
                }
                let more = closing.len() == close.limit;
                if closing.is_empty() {
                    return Ok(ConversationsClosed::default());
                }

                // The chats' rows, and their messages from the earliest first message on.
                let mut ids: Vec<i64> = closing.iter().map(|c| c.chat).collect();
                ids.sort_unstable();
                ids.dedup();
                let from = closing.iter().map(|c| c.open.first_at).min().unwrap_or(now);
                let chats: HashMap<i64, _> = chats_with_messages(conn, &ids, (from, now + 1))
                    .await?
                    .into_iter()
                    .map(|(found, list)| (found.0.id.0, (found, list)))
                    .collect();

                let mut deliveries = Vec::new();
                for c in &closing {
                    let Some(((found, firsts), list)) = chats.get(&c.chat) else { continue };
                    // Its messages: from its first on, up to the close (or to the instant a
                    // settings change ended it).
                    let end = c.until.unwrap_or(now + 1);
                    let held: Vec<StoredMessage> =
                        list.iter().filter(|m| (c.open.first_at..end).contains(&ms(m.received_at))).cloned().collect();
                    let Some(last) = held.iter().map(|m| ms(m.received_at)).max() else { continue };
                    let closed_by = conversation::closed_by(&c.open);
                    for planned in (close.plan)(&c.webhook, closed_by, found, *firsts, &held) {
                        let part = planned.bundle.map_or(1, |(_, part)| part);
                        deliveries.push(Enqueue {
                            id: planned.id,
                            kind: DeliveryKind::Bundle,
                            webhook: c.webhook.clone(),
                            chat: Some(ChatId(found.id.0)),
                            payload: planned.payload,
                            // A webhook's conversations of one chat never overlap: the instant
                            // after the last message names this one among them (and among the
                            // windows' bundles, which end at a boundary).
                            bundle: Some((last + 1, part)),
                            replay: None,
                            trace_parent: None,
                            trace_links: crate::store::trace_links(&held),
                        });
                    }
                }
                enqueue(conn, &deliveries, now).await?;
                let sql = format!("DELETE FROM conversations WHERE id IN ({})", super::PLACEHOLDERS.list(1, closing.len()));
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for c in &closing {
                    query = query.bind(c.id);
                }
                query.execute(&mut *conn).await?;
                Ok(ConversationsClosed {
                    conversations: closing.len() as u64,
                    deliveries: deliveries.len() as u64,
                    more,
                })
            }
        }
    };
}

pub(in crate::store) use conversations;
