//! Chats and their messages ([`crate::store::ChatStore`]), for both engines.

/// See the module's documentation, and [`super`] for what the engine provides.
macro_rules! chats {
    ($store:ident, $conn:ty) => {
        mod chats {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use sqlx::Row;

            use super::rows::{CHAT_COLUMNS, MESSAGE_COLUMNS, chat, chat_summary, ms, stored_message};
            use crate::domain::{ChatId, MessageEdit, WorkspaceId, random_token};
            use super::log::insert_event;
            use crate::store::sql::Windowing;
            use crate::store::{Chat, ChatOwner, ChatStore, ChatSummary, Erased, FirstMessages, StoreResult, StoredMessage};

            #[async_trait]
            impl ChatStore for super::$store {
                async fn list_chats(
                    &self,
                    workspace_id: &WorkspaceId,
                    limit: u32,
                    offset: u32,
                ) -> StoreResult<Vec<ChatSummary>> {
                    let rows = sqlx::query(
                        "SELECT c.id, c.source_key, c.external_id, c.full_name, c.phone, c.session_status, c.last_received_at,
                                (SELECT COUNT(*) FROM messages m WHERE m.chat_id = c.id) AS messages
                         FROM chats c WHERE c.workspace_id = $1
                         ORDER BY c.last_received_at DESC, c.id DESC LIMIT $2 OFFSET $3",
                    )
                    .bind(workspace_id.as_str())
                    .bind(i64::from(limit))
                    .bind(i64::from(offset))
                    .fetch_all(self.reads())
                    .await?;
                    rows.iter().map(chat_summary).collect()
                }

                async fn get_chat(&self, id: ChatId) -> StoreResult<Option<(WorkspaceId, Chat)>> {
                    let sql = format!("SELECT workspace_id, {CHAT_COLUMNS} FROM chats WHERE id = $1");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).fetch_optional(self.reads()).await?;
                    row.map(|row| Ok((crate::domain::WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?), chat(&row)?.0))).transpose()
                }

                async fn chat_by_token(&self, token: &str) -> StoreResult<Option<(WorkspaceId, Chat)>> {
                    let sql = format!("SELECT workspace_id, {CHAT_COLUMNS} FROM chats WHERE token = $1");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(token).fetch_optional(self.reads()).await?;
                    row.map(|row| Ok((crate::domain::WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?), chat(&row)?.0))).transpose()
                }

                async fn first_messages(&self, id: ChatId) -> StoreResult<FirstMessages> {
                    let row = sqlx::query("SELECT first_message_seq, first_text_seq FROM chats WHERE id = $1")
                        .bind(id.0)
                        .fetch_optional(self.reads())
                        .await?;
                    let Some(row) = row else { return Ok(FirstMessages::default()) };
                    Ok(FirstMessages { any: row.try_get("first_message_seq")?, text: row.try_get("first_text_seq")? })
                }

                async fn chat_messages(&self, id: ChatId, limit: u32, offset: u32) -> StoreResult<Vec<StoredMessage>> {
                    let sql = format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = $1
                         ORDER BY received_at DESC, ts DESC, seq DESC LIMIT $2 OFFSET $3"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(id.0)
                        .bind(i64::from(limit))
                        .bind(i64::from(offset))
                        .fetch_all(self.reads())
                        .await?;
                    rows.iter().map(stored_message).collect()
                }

                async fn message_rank(&self, id: ChatId, seq: i64) -> StoreResult<Option<u32>> {
                    let rank: Option<i64> = sqlx::query_scalar(
                        "SELECT (SELECT COUNT(*) FROM messages m
                                 WHERE m.chat_id = $1 AND (m.received_at, m.ts, m.seq) > (x.received_at, x.ts, x.seq))
                         FROM messages x WHERE x.chat_id = $1 AND x.seq = $2",
                    )
                    .bind(id.0)
                    .bind(seq)
                    .fetch_optional(self.reads())
                    .await?;
                    Ok(rank.map(|r| r as u32))
                }

                async fn messages_since(
                    &self,
                    id: ChatId,
                    since: DateTime<Utc>,
                    limit: u32,
                ) -> StoreResult<Vec<StoredMessage>> {
                    let sql = format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = $1 AND received_at >= $2
                         ORDER BY received_at, seq LIMIT $3"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(id.0)
                        .bind(ms(since))
                        .bind(i64::from(limit))
                        .fetch_all(self.reads())
                        .await?;
                    rows.iter().map(stored_message).collect()
                }

                async fn message_at(&self, seq: i64) -> StoreResult<Option<(WorkspaceId, Chat, StoredMessage)>> {
                    let sql = format!("SELECT chat_id, {MESSAGE_COLUMNS} FROM messages WHERE seq = $1");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(seq).fetch_optional(self.reads()).await?;
                    let Some(row) = row else { return Ok(None) };
                    let message = stored_message(&row)?;
                    let chat_id = ChatId(row.try_get("chat_id")?);
                    Ok(self.get_chat(chat_id).await?.map(|(workspace, chat)| (workspace, chat, message)))
                }

                async fn rotate_chat_token(&self, id: ChatId) -> StoreResult<Option<String>> {
                    self.transact(move |conn, now| {
                        Box::pin(async move {
                            let token = random_token(32);
                            let done = sqlx::query("UPDATE chats SET token = $1, token_issued_at = $3 WHERE id = $2")
                                .bind(&token)
                                .bind(id.0)
                                .bind(now)
                                .execute(conn)
                                .await?;
                            Ok((done.rows_affected() > 0).then_some(token))
                        })
                    })
                    .await
                }

                async fn forget_messages(&self, workspace: &WorkspaceId, before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
                    let (workspace, before) = (workspace.clone(), ms(before));
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            let done = sqlx::query(
                                "DELETE FROM messages WHERE seq IN (
                                     SELECT seq FROM messages
                                     WHERE workspace_id = $1 AND received_at < $2
                                       AND received_at < COALESCE(
                                           -- the webhooks that still bundle by windows: not those
                                           -- that send each message at once or bundle by
                                           -- conversation (unless a switch to that is still under
                                           -- way)
                                           (SELECT MIN(w.bundled_before) FROM webhooks w
                                            JOIN workspaces s ON s.id = w.workspace_id
                                            WHERE w.workspace_id = $1 AND w.sub_messages AND NOT w.stopped
                                              AND (COALESCE(w.granularity, s.granularity) NOT IN ('none', 'conversation')
                                                   OR w.bundled_before < w.granularity_changed_at)), $2)
                                       -- and open conversations hold theirs
                                       AND received_at < COALESCE(
                                           (SELECT MIN(c.first_at) FROM conversations c WHERE c.workspace_id = $1), $2)
                                     ORDER BY received_at LIMIT $3)",
                            )
                            .bind(workspace.as_str())
                            .bind(before)
                            .bind(i64::from(limit))
                            .execute(conn)
                            .await?;
                            Ok(done.rows_affected())
                        })
                    })
                    .await
                }

                async fn erase_chat(&self, id: ChatId, actor: &str) -> StoreResult<Option<Erased>> {
                    let Some((workspace, _)) = self.get_chat(id).await? else { return Ok(None) };
                    let actor = actor.to_string();
                    // A windowing transaction: no window of the workspace closes halfway through,
                    // so no bundle of the chat is made from messages this erases.
                    let erased = self.transact_windowing(Windowing::Workspace(workspace), move |conn, workspace, now| {
                        Box::pin(async move {
                            // The chat's row first (a no-op update): on PostgreSQL its lock waits
                            // for a commit that is storing a message in it, whose rows the
                            // statements below then see, and holds off the next one.
                            let found = sqlx::query("UPDATE chats SET token = token WHERE id = $1 AND workspace_id = $2")
                                .bind(id.0)
                                .bind(workspace.as_str())
                                .execute(&mut *conn)
                                .await?;
                            if found.rows_affected() == 0 {
                                return Ok(None);
                            }
                            let messages = sqlx::query("DELETE FROM messages WHERE chat_id = $1").bind(id.0).execute(&mut *conn).await?;
                            sqlx::query("DELETE FROM session_history WHERE chat_id = $1").bind(id.0).execute(&mut *conn).await?;
                            // Its replies too, sent or not: a queued one is never sent.
                            sqlx::query("DELETE FROM replies WHERE chat_id = $1").bind(id.0).execute(&mut *conn).await?;
                            let pending = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DELETE FROM deliveries WHERE chat_id = $1 AND status = {}",
                                crate::store::sql::pending!()
                            )))
                            .bind(id.0)
                            .execute(&mut *conn)
                            .await?;
                            // Finished ones too: their payloads hold the chat's words.
                            sqlx::query("DELETE FROM deliveries WHERE chat_id = $1").bind(id.0).execute(&mut *conn).await?;
                            sqlx::query("DELETE FROM chats WHERE id = $1").bind(id.0).execute(&mut *conn).await?;
                            let erased = Erased { messages: messages.rows_affected(), pending_dropped: pending.rows_affected() };
                            let detail = serde_json::json!({
                                "chat_id": id.0,
                                "messages": erased.messages,
                                "pending_deliveries_dropped": erased.pending_dropped,
                            });
                            insert_event(conn, &workspace, None, now, ("chat_erased", Some(&actor)), &detail).await?;
                            Ok(Some(erased))
                        })
                    })
                    .await?;
                    Ok(erased.flatten())
                }

                async fn edit_message(
                    &self,
                    workspace_id: &WorkspaceId,
                    source_key: &str,
                    edit: &MessageEdit,
                ) -> StoreResult<bool> {
                    let (workspace_id, source_key, edit) = (workspace_id.clone(), source_key.to_string(), edit.clone());
                    self.transact(move |conn, _| {
                        Box::pin(async move {
                            let done = sqlx::query(
                                "UPDATE messages SET text = $1, edited_at = $2
                                 WHERE workspace_id = $3 AND source_key = $4 AND message_id = $5
                                   AND (edited_at IS NULL OR edited_at <= $2)",
                            )
                            .bind(&edit.text)
                            .bind(ms(edit.at))
                            .bind(workspace_id.as_str())
                            .bind(&source_key)
                            .bind(&edit.message_id)
                            .execute(conn)
                            .await?;
                            Ok(done.rows_affected() > 0)
                        })
                    })
                    .await
                }

                async fn set_chat_owner(&self, id: ChatId, owner: ChatOwner) -> StoreResult<Option<Chat>> {
                    let found = self
                        .transact(move |conn, _| {
                            Box::pin(async move {
                                let done = sqlx::query(
                                    "UPDATE chats SET
                                        responsible_name = CASE WHEN $1 THEN $2 ELSE responsible_name END,
                                        responsible_email = CASE WHEN $3 THEN $4 ELSE responsible_email END
                                     WHERE id = $5",
                                )
                                .bind(owner.name.is_some())
                                .bind(owner.name.clone().flatten())
                                .bind(owner.email.is_some())
                                .bind(owner.email.clone().flatten())
                                .bind(id.0)
                                .execute(conn)
                                .await?;
                                Ok(done.rows_affected() > 0)
                            })
                        })
                        .await?;
                    if !found {
                        return Ok(None);
                    }
                    Ok(self.get_chat(id).await?.map(|(_, chat)| chat))
                }
            }
        }
    };
}

pub(in crate::store) use chats;
