//! Chat sessions ([`crate::store::SessionStore`]): status changes and reply windows, and the
//! `session_status` events they put in the delivery queue, for both engines. Ingest calls the
//! functions here inside its transaction; a lapse is announced by whichever transaction takes its
//! chat first (on PostgreSQL the others skip the locked row, and find it announced once it
//! commits).

/// See the module's documentation. Besides `transact` and `reads`, the engine names
/// `super::queue::enqueue` (the one place deliveries are written), `super::lock_workspaces_shared`
/// (held by whatever stores a workspace's messages), `super::for_update!()` and
/// `super::skip_locked!()`.
macro_rules! sessions {
    ($store:ident, $conn:ty) => {
        mod sessions {
            use std::collections::HashMap;

            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use sqlx::Row;

            use super::queue::enqueue;
            use super::rows::{CHAT_COLUMNS, chat, from_ms, ms};
            use crate::domain::{
                ChatId, DeliveryId, DeliveryKind, SessionStatus, WebhookId, WorkspaceId, new_id, random_token,
            };
            use crate::store::merge::{self, ChatKey, Merged, SessionMove};
            use crate::store::queue::Enqueue;
            use crate::domain::session::{
                Owned, ReplyState, ReplyStatus, ReportedSession, expired, reported_status, worth_an_event,
            };
            use crate::store::sql::{CHAT_DETAILS, params};
            use crate::store::{
                Chat, FirstMessages, IngestBatch, RenderSession, SessionCause, SessionChange, SessionEvent, SessionStore,
                SessionTransition, StoreResult,
            };

            /// What a session event says happened: the status the chat had before, and what the
            /// channel reported with it.
            pub(in super::super) type News<'a> = (Option<SessionStatus>, &'a ReportedSession);

            /// Queues `payload` for every webhook of the workspace subscribed to session events, in
            /// the chat's lane (so they interleave in order with its messages and bundles).
            async fn queue(
                conn: &mut $conn,
                workspace_id: &WorkspaceId,
                chat_id: ChatId,
                payload: &[u8],
                now: i64,
            ) -> StoreResult<()> {
                let webhooks: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM webhooks WHERE workspace_id = $1 AND sub_session_status AND NOT stopped ORDER BY created_at, id",
                )
                .bind(workspace_id.as_str())
                .fetch_all(&mut *conn)
                .await?;
                let deliveries: Vec<Enqueue> = webhooks
                    .into_iter()
                    .map(|webhook| Enqueue {
                        id: DeliveryId::stored(new_id("ses")),
                        kind: DeliveryKind::SessionStatus,
                        webhook: WebhookId::stored(webhook),
                        chat: Some(chat_id),
                        payload: payload.to_vec(),
                        bundle: None,
                        replay: None,
                        trace_parent: None,
                        trace_links: Vec::new(),
                    })
                    .collect();
                enqueue(conn, &deliveries, now).await
            }

            /// Whether anyone in the workspace listens to session events (so nothing is rendered
            /// in vain).
            pub(in super::super) async fn has_listeners(
                conn: &mut $conn,
                workspace_id: &WorkspaceId,
            ) -> StoreResult<bool> {
                let listens: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM webhooks WHERE workspace_id = $1 AND sub_session_status AND NOT stopped)",
                )
                .bind(workspace_id.as_str())
                .fetch_one(conn)
                .await?;
                Ok(listens)
            }

            /// Whether each workspace listens to session events, asked once per commit.
            #[derive(Default)]
            pub(in super::super) struct Listeners<'a>(HashMap<&'a str, bool>);

            impl<'a> Listeners<'a> {
                pub(in super::super) async fn of(&mut self, conn: &mut $conn, workspace: &'a str) -> StoreResult<bool> {
                    if let Some(listens) = self.0.get(workspace) {
                        return Ok(*listens);
                    }
                    let listens = has_listeners(conn, &WorkspaceId::stored(workspace)).await?;
                    self.0.insert(workspace, listens);
                    Ok(listens)
                }
            }

            /// Records that a chat's session moved to `to`. Its `from` is the status the chat's
            /// history last recorded, so the chain holds whoever wrote before; nothing is recorded
            /// when that already is `to`.
            pub(in super::super) async fn record(
                conn: &mut $conn,
                chat_id: ChatId,
                to: &str,
                cause: SessionCause,
                source_key: &str,
                reply_status: Option<&str>,
                now: i64,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO session_history (chat_id, at, from_status, to_status, cause, source_key, reply_status)
                     SELECT $1, $2, last.status, $3, $4, $5, $6
                     FROM (SELECT (SELECT to_status FROM session_history WHERE chat_id = $1 ORDER BY id DESC LIMIT 1)
                           AS status) AS last
                     WHERE last.status IS DISTINCT FROM $3",
                )
                .bind(chat_id.0)
                .bind(now)
                .bind(to)
                .bind(cause.as_str())
                .bind(source_key)
                .bind(reply_status)
                .execute(conn)
                .await?;
                Ok(())
            }

            /// Records the first session of chats a message created (they have no history yet).
            pub(in super::super) async fn record_started(
                conn: &mut $conn,
                chats: &[(ChatId, &str)],
                now: i64,
            ) -> StoreResult<()> {
                for chunk in chats.chunks(crate::store::sql::ROWS_PER_STATEMENT) {
                    let sql = format!(
                        "INSERT INTO session_history (chat_id, at, to_status, cause, source_key) VALUES {}",
                        super::PLACEHOLDERS.rows(chunk.len(), 5)
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (chat, source_key) in chunk {
                        query = query
                            .bind(chat.0)
                            .bind(now)
                            .bind(SessionStatus::Created.as_str())
                            .bind(SessionCause::Message.as_str())
                            .bind(source_key.to_string());
                    }
                    query.execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// Applies the moves messages make to sessions: the chat's status changes if it still
            /// is what the merge saw, each step is recorded and announced to session_status
            /// webhooks, and the stored chat says its new status (the message payloads show it).
            pub(in super::super) async fn apply_moves<'a>(
                conn: &mut $conn,
                moves: &[SessionMove<'a>],
                stored: &mut HashMap<ChatKey<'a>, (Chat, FirstMessages)>,
                listeners: &mut Listeners<'a>,
                batches: &[IngestBatch],
                merged: &mut Merged<'a>,
                now: i64,
            ) -> StoreResult<()> {
                for moved in moves {
                    let Some(&(_, last)) = moved.steps.last() else { continue };
                    let chat_id = stored[&moved.chat].0.id;
                    let done =
                        sqlx::query("UPDATE chats SET session_status = $1 WHERE id = $2 AND session_status = $3")
                            .bind(last.as_str())
                            .bind(chat_id.0)
                            .bind(moved.from.as_str())
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                    if done == 0 {
                        continue;
                    }
                    let (workspace, source_key, _) = moved.chat;
                    for &(from, to) in &moved.steps {
                        record(conn, chat_id, to.as_str(), SessionCause::of_message(to), source_key, None, now).await?;
                        if listeners.of(conn, workspace).await? {
                            let mut at_step = stored[&moved.chat].0.clone();
                            at_step.session_status = Some(to);
                            let render = merge::render_session(batches, workspace);
                            let id = WorkspaceId::stored(workspace);
                            announce(conn, &id, &at_step, (Some(from), &ReportedSession::default()), now, render).await?;
                            merge::session_started(batches, merged, workspace);
                        }
                    }
                    if let Some((chat, _)) = stored.get_mut(&moved.chat) {
                        chat.session_status = Some(last);
                    }
                }
                Ok(())
            }

            /// See [`SessionStore::session_history`].
            async fn history(conn: &mut $conn, chat_id: ChatId) -> StoreResult<Option<Vec<SessionTransition>>> {
                let found: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chats WHERE id = $1)")
                    .bind(chat_id.0)
                    .fetch_one(&mut *conn)
                    .await?;
                if !found {
                    return Ok(None);
                }
                let rows = sqlx::query(
                    "SELECT at, from_status, to_status, cause, source_key, reply_status FROM session_history
                     WHERE chat_id = $1 ORDER BY id",
                )
                .bind(chat_id.0)
                .fetch_all(conn)
                .await?;
                let transitions = rows
                    .iter()
                    .map(|row| {
                        Ok(SessionTransition {
                            at: from_ms(row.try_get("at")?),
                            from: row.try_get("from_status")?,
                            to: row.try_get("to_status")?,
                            cause: SessionCause::parse(row.try_get("cause")?),
                            source_key: row.try_get("source_key")?,
                            reply_status: row
                                .try_get::<Option<String>, _>("reply_status")?
                                .map(|r| ReplyStatus::parse(&r)),
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                Ok(Some(transitions))
            }

            /// The event for a chat's session as it stands; `news`: the status it had before, and
            /// what the channel reported.
            async fn event(
                conn: &mut $conn,
                workspace_id: &WorkspaceId,
                chat: &Chat,
                (old_status, reported): News<'_>,
                now: i64,
            ) -> StoreResult<SessionEvent> {
                let row = sqlx::query(
                    "SELECT source_key, session_id, assignee_type,
                            (SELECT COUNT(*) FROM messages WHERE chat_id = $1) AS messages
                     FROM chats WHERE id = $1",
                )
                .bind(chat.id.0)
                .fetch_one(conn)
                .await?;
                Ok(SessionEvent {
                    workspace_id: workspace_id.clone(),
                    chat: chat.clone(),
                    source_key: row.try_get("source_key")?,
                    session_id: row.try_get("session_id")?,
                    status: chat.session_status,
                    old_status,
                    reply_status: reported
                        .reply_status
                        .clone()
                        .unwrap_or_else(|| ReplyState::of(chat, from_ms(now)).status.into()),
                    assignee_type: row.try_get("assignee_type")?,
                    messages_count: row.try_get::<i64, _>("messages")? as u64,
                    at: from_ms(now),
                    reported: reported.clone(),
                })
            }

            /// Queues the event for a chat whose session changed (or whose reply window lapsed).
            pub(in super::super) async fn announce(
                conn: &mut $conn,
                workspace_id: &WorkspaceId,
                chat: &Chat,
                news: News<'_>,
                now: i64,
                render: &RenderSession,
            ) -> StoreResult<()> {
                let event = event(conn, workspace_id, chat, news, now).await?;
                let payload = render(&event);
                queue(conn, workspace_id, chat.id, &payload, now).await
            }

            /// Applies a session change a channel reported, and queues a `session_status` event for
            /// subscribed webhooks when the status changed. The chat's row (locked where the engine
            /// locks rows) stays so until the ingest transaction ends. Returns the chat, and
            /// whether this ended its session.
            pub(in super::super) async fn change(
                conn: &mut $conn,
                change: &SessionChange,
                render: &RenderSession,
                now: i64,
            ) -> StoreResult<Changed> {
                // The old status is read under the row's lock: two daemons reporting the same
                // change announce it once.
                let before: Option<Owned> = sqlx::query_as(concat!(
                    "SELECT session_status, responsible_id, responsible_name, responsible_email FROM chats
                     WHERE workspace_id = $1 AND source_key = $2 AND external_id = $3",
                    super::for_update!()
                ))
                .bind(change.workspace_id.as_str())
                .bind(&change.source_key)
                .bind(&change.chat.external_id)
                .fetch_optional(&mut *conn)
                .await?;
                let old = before.as_ref().and_then(|b| b.0.as_deref()).and_then(SessionStatus::parse);
                let c = &change.chat;
                let sql = format!(
                    "INSERT INTO chats (workspace_id, source_key, external_id, full_name, phone, is_group,
                                        responsible_name, responsible_email, token, first_seen_at, last_received_at,
                                        channel, session_status, session_id, assignee_type, responsible_id,
                                        channel_can_reply)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15, $16)
                     ON CONFLICT (workspace_id, source_key, external_id) DO UPDATE SET {CHAT_DETAILS},
                        channel = COALESCE(excluded.channel, chats.channel),
                        session_status = COALESCE(excluded.session_status, chats.session_status),
                        session_id = COALESCE(excluded.session_id, chats.session_id),
                        assignee_type = COALESCE(excluded.assignee_type, chats.assignee_type)
                     RETURNING {CHAT_COLUMNS}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(change.workspace_id.as_str())
                    .bind(&change.source_key)
                    .bind(&c.external_id)
                    .bind(&c.full_name)
                    .bind(&c.phone)
                    .bind(c.is_group)
                    .bind(&c.responsible_name)
                    .bind(&c.responsible_email)
                    .bind(random_token(32))
                    .bind(now)
                    .bind(&change.channel)
                    .bind(reported_status(change))
                    .bind(&change.session_id)
                    .bind(&change.assignee_type)
                    .bind(&c.responsible_id)
                    .bind(c.can_reply)
                    .fetch_one(&mut *conn)
                    .await?;
                let (changed_chat, _) = chat(&row)?;
                if let Some(status) = reported_status(change) {
                    let reply = change.reported.reply_status.as_ref().map(ReplyStatus::as_str);
                    let cause = SessionCause::Reported;
                    record(conn, changed_chat.id, status, cause, &change.source_key, reply, now).await?;
                }
                let changed = worth_an_event(change, before.as_ref(), &changed_chat);
                if changed {
                    announce(conn, &change.workspace_id, &changed_chat, (old, &change.reported), now, render).await?;
                }
                let ended = reported_status(change) == Some(SessionStatus::Ended.as_str()) && old != Some(SessionStatus::Ended);
                Ok(Changed { chat: changed_chat.id, ended })
            }

            /// What a reported session change did.
            pub(in super::super) struct Changed {
                pub chat: crate::domain::ChatId,
                pub ended: bool,
            }

            #[async_trait]
            impl SessionStore for super::$store {
                async fn announce_expiries(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    render: RenderSession,
                ) -> StoreResult<u64> {
                    let now = ms(now);
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            // The workspaces first (shared, in a fixed order: a close of one of
                            // them waits, so the events take their place in the chats' lanes), then
                            // the chats, passing those another daemon is announcing (or ingest is
                            // writing) right now.
                            let workspaces: Vec<String> = sqlx::query_scalar(
                                "SELECT DISTINCT workspace_id FROM (
                                    SELECT workspace_id FROM chats
                                    WHERE NOT expiry_announced AND reply_window_expires_at <= $1
                                    ORDER BY reply_window_expires_at LIMIT $2) AS due
                                 ORDER BY workspace_id",
                            )
                            .bind(now)
                            .bind(i64::from(limit))
                            .fetch_all(&mut *conn)
                            .await?;
                            if workspaces.is_empty() {
                                return Ok(0);
                            }
                            super::lock_workspaces_shared(&mut *conn, &workspaces).await?;
                            let sql = format!(
                                "SELECT workspace_id, {CHAT_COLUMNS} FROM chats
                                 WHERE NOT expiry_announced AND reply_window_expires_at <= $1
                                   AND workspace_id IN ({})
                                 ORDER BY reply_window_expires_at LIMIT $2{}",
                                params(3, workspaces.len()),
                                super::skip_locked!(),
                            );
                            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(i64::from(limit));
                            for workspace in &workspaces {
                                query = query.bind(workspace);
                            }
                            let rows = query.fetch_all(&mut *conn).await?;
                            for row in &rows {
                                let workspace_id = WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?);
                                let (lapsed, _) = chat(row)?;
                                sqlx::query("UPDATE chats SET expiry_announced = TRUE WHERE id = $1")
                                    .bind(lapsed.id.0)
                                    .execute(&mut *conn)
                                    .await?;
                                let status = lapsed.session_status;
                                announce(conn, &workspace_id, &lapsed, (status, &expired()), now, &render).await?;
                            }
                            Ok(rows.len() as u64)
                        })
                    })
                    .await
                }

                async fn next_expiry(&self) -> StoreResult<Option<DateTime<Utc>>> {
                    let next: Option<i64> =
                        sqlx::query_scalar("SELECT MIN(reply_window_expires_at) FROM chats WHERE NOT expiry_announced")
                            .fetch_one(self.reads())
                            .await?;
                    Ok(next.map(from_ms))
                }

                async fn session_snapshot(&self, chat_id: ChatId, now: DateTime<Utc>) -> StoreResult<Option<SessionEvent>> {
                    let mut conn = self.reads().acquire().await?;
                    let sql = format!("SELECT workspace_id, {CHAT_COLUMNS} FROM chats WHERE id = $1");
                    let Some(row) =
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(chat_id.0).fetch_optional(&mut *conn).await?
                    else {
                        return Ok(None);
                    };
                    let workspace_id = WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?);
                    let (found, _) = chat(&row)?;
                    let status = found.session_status;
                    Ok(Some(event(&mut conn, &workspace_id, &found, (status, &ReportedSession::default()), ms(now)).await?))
                }

                async fn session_history(&self, chat: ChatId) -> StoreResult<Option<Vec<SessionTransition>>> {
                    let mut conn = self.reads().acquire().await?;
                    history(&mut conn, chat).await
                }
            }
        }
    };
}

pub(in crate::store) use sessions;
