//! Ingest, merged ([`crate::store::merge`]), for both engines: every request waiting for a commit
//! is stored with a few multi-row statements instead of a few statements per message. The engines
//! gather the requests their own way (SQLite's writer, PostgreSQL's combiner, which also takes
//! the workspaces' shared locks and the time of receipt); from then on, storing them is this.

/// See the module's documentation. The engine names `super::mark_first_messages` (a batch of
/// per-chat values applied its own way), `super::created!()` (whether an upserted chat row was
/// inserted), `super::greatest!()` and `super::CHATS_IN_KEY_ORDER` (whether chats are written in
/// key order, so that transactions writing the same chats lock them in the same order).
macro_rules! ingest {
    ($store:ident, $conn:ty) => {
        mod ingest {
            use std::collections::HashMap;

            use sqlx::Row;

            use super::log::insert_event;
            use super::queue::enqueue;
            use super::rows::{CHAT_COLUMNS, chat, ms};
            use super::sessions;
            use crate::domain::{AccountType, ChatId, SessionStatus, WorkspaceId, random_token};
            use crate::store::merge::{self, Candidate, ChatKey, ChatUpdate, LATER, MessageKey, WorkspaceInfo, merge};
            use crate::store::sql::CHAT_DETAILS;
            use crate::store::queue::HandOver;
            use crate::store::{Chat, FirstMessages, Handoff, IngestBatch, IngestOutcome, StoreResult};

            use crate::store::sql::ROWS_PER_STATEMENT;

            /// Stores the requests as received at `now`, inside the caller's transaction; one
            /// outcome per request, in order. With a `handoff`, the deliveries leased for the
            /// worker, for the caller to hand over once the transaction has committed.
            pub(in super::super) async fn store_merged(
                conn: &mut $conn,
                batches: &[IngestBatch],
                workspaces: &HashMap<&str, WorkspaceInfo>,
                now: i64,
                handoff: Option<&Handoff>,
            ) -> StoreResult<(Vec<IngestOutcome>, Option<HandOver>)> {
                let mut merged = merge(batches);
                let mut order = merged.chat_order.clone();
                if super::CHATS_IN_KEY_ORDER {
                    order.sort();
                }
                let (mut stored, created) = upsert_chats(conn, &order, &merged.chats, now).await?;
                drop_echoes(conn, batches, &mut merged).await?;
                let inserted = insert_messages(conn, &merged.candidates, &stored, now).await?;
                // New messages join their chats' conversations, where a webhook bundles so.
                let mut talking: Vec<i64> = merged
                    .candidates
                    .iter()
                    .filter(|c| workspaces.get(c.chat.0).is_some_and(|w| w.conversations) && inserted.contains_key(&c.key()))
                    .map(|c| stored[&c.chat].0.id.0)
                    .collect();
                talking.sort_unstable();
                talking.dedup();
                if !talking.is_empty() && super::conversations::join(conn, &talking, now).await? {
                    for candidate in merged.candidates.iter().filter(|c| inserted.contains_key(&c.key())) {
                        merged.outcomes[candidate.batch].conversations = true;
                    }
                }
                // A reply is queued with its message, when that was new.
                let fresh: Vec<&IngestBatch> = batches
                    .iter()
                    .filter(|b| {
                        b.reply.as_ref().is_some_and(|r| {
                            inserted.contains_key(&(b.workspace_id.as_str(), b.source_key.as_str(), r.message_id.as_str()))
                        })
                    })
                    .collect();
                super::replies::queue(conn, fresh, now).await?;

                // Chats created here start their session: recorded, and told to session_status
                // webhooks. Then the new messages move sessions on (a new session after ENDED, a
                // reply).
                let started: Vec<(ChatId, &str)> = created.iter().map(|key| (stored[key].0.id, key.1)).collect();
                sessions::record_started(conn, &started, now).await?;
                let mut listeners = sessions::Listeners::default();
                for key in &created {
                    if listeners.of(conn, key.0).await? {
                        let workspace = WorkspaceId::stored(key.0);
                        let render = merge::render_session(batches, key.0);
                        let (chat, _) = &stored[key];
                        sessions::announce(conn, &workspace, chat, (None, &Default::default()), now, render).await?;
                        merge::session_started(batches, &mut merged, key.0);
                    }
                }
                let moves = merge::session_moves(&merged, &stored, &inserted);
                sessions::apply_moves(conn, &moves, &mut stored, &mut listeners, batches, &mut merged, now).await?;
                let replies = merge::replies_after_window(&merged, &stored, &inserted);
                for key in count_replies(conn, &replies, &mut stored).await? {
                    // The business can no longer write to the chat: news for session_status webhooks.
                    if listeners.of(conn, key.0).await? {
                        let workspace = WorkspaceId::stored(key.0);
                        let render = merge::render_session(batches, key.0);
                        let (chat, _) = &stored[&key];
                        let status = chat.session_status;
                        sessions::announce(conn, &workspace, chat, (status, &crate::domain::session::limit_reached()), now, render)
                            .await?;
                        merge::session_started(batches, &mut merged, key.0);
                    }
                }
                let (deliveries, first_of_chat, requests) =
                    merge::deliveries(batches, &mut merged, &stored, &inserted, workspaces);
                super::mark_first_messages(&mut *conn, &first_of_chat).await?;
                // Those at the head of their lanes go to the worker from here, leased as they are
                // queued; the rest wait for a claim: at once when the worker had no room for them,
                // otherwise after their lane's head (see `DeliveryQueue::hand_off_to`).
                let handed = match handoff {
                    Some(handoff) if !deliveries.is_empty() => {
                        super::queue::enqueue_handing_off(conn, &deliveries, now, handoff).await?
                    }
                    _ => {
                        enqueue(conn, &deliveries, now).await?;
                        None
                    }
                };
                if handed.is_none() {
                    for request in requests {
                        merged.outcomes[request].queued = true;
                    }
                }

                // What else each request brought commits with its messages: session news, then the
                // note of what it skipped.
                for (batch, outcome) in batches.iter().zip(merged.outcomes.iter_mut()) {
                    for change in &batch.sessions {
                        let changed = sessions::change(conn, change, &batch.render_session, now).await?;
                        // The channel ended the session: the chat's conversation ends with it.
                        if changed.ended && super::conversations::end_session(conn, changed.chat.0).await? {
                            outcome.conversations = true;
                        }
                    }
                    if !batch.skipped.is_empty() {
                        let detail = serde_json::json!({
                            "count": batch.skipped.len(), "source": batch.source_name, "message_ids": batch.skipped,
                        });
                        insert_event(conn, &batch.workspace_id, None, now, ("skipped", None), &detail).await?;
                    }
                }
                Ok((merged.outcomes, handed))
            }

            /// Drops the `sent` messages that are a channel's echo of a reply sent from here (its
            /// id is the reply's `vendor_id`), counting them as duplicates: the reply's own
            /// message stands for them.
            async fn drop_echoes(conn: &mut $conn, batches: &[IngestBatch], merged: &mut merge::Merged<'_>) -> StoreResult<()> {
                let sent: Vec<MessageKey> = merged
                    .candidates
                    .iter()
                    .filter(|c| c.message.direction == crate::domain::Direction::Sent && batches[c.batch].reply.is_none())
                    .map(Candidate::key)
                    .collect();
                if sent.is_empty() {
                    return Ok(());
                }
                let echoes = super::replies::echoes(conn, &sent).await?;
                if echoes.is_empty() {
                    return Ok(());
                }
                let is_echo = |c: &Candidate| {
                    let (w, s, id) = c.key();
                    echoes.contains(&(w.to_string(), s.to_string(), id.to_string()))
                };
                for candidate in merged.candidates.iter().filter(|c| is_echo(c)) {
                    merged.outcomes[candidate.batch].duplicates += 1;
                }
                merged.candidates.retain(|c| !is_echo(c));
                Ok(())
            }

            /// Inserts or updates each chat once, in `order`; returns the stored chat with where
            /// its first messages were before these requests, by key, and the keys of the chats it
            /// created, in `order`.
            async fn upsert_chats<'a>(
                conn: &mut $conn,
                order: &[ChatKey<'a>],
                chats: &HashMap<ChatKey<'a>, ChatUpdate>,
                now: i64,
            ) -> StoreResult<(HashMap<ChatKey<'a>, (Chat, FirstMessages)>, Vec<ChatKey<'a>>)> {
                let mut stored = HashMap::with_capacity(order.len());
                let mut created = std::collections::HashSet::new();
                for keys in order.chunks(ROWS_PER_STATEMENT) {
                    // A later customer message moves the reply window, and a lapse of it is due
                    // again.
                    let sql = format!(
                        "INSERT INTO chats (workspace_id, source_key, external_id, full_name, phone, is_group,
                                            responsible_name, responsible_email, token, first_seen_at,
                                            last_received_at, channel, session_status, last_customer_message_at,
                                            reply_window_expires_at, expiry_announced, responsible_id, account_type,
                                            channel_can_reply)
                         VALUES {}
                         ON CONFLICT (workspace_id, source_key, external_id) DO UPDATE SET {CHAT_DETAILS},
                            is_group = COALESCE(excluded.is_group, chats.is_group),
                            account_type = COALESCE(excluded.account_type, chats.account_type),
                            last_received_at = {}(excluded.last_received_at, chats.last_received_at),
                            channel = excluded.channel,
                            last_customer_message_at = CASE WHEN {LATER} THEN excluded.last_customer_message_at
                                                            ELSE chats.last_customer_message_at END,
                            reply_window_expires_at = CASE WHEN {LATER} THEN excluded.reply_window_expires_at
                                                           ELSE chats.reply_window_expires_at END,
                            expiry_announced = CASE WHEN {LATER} THEN excluded.expiry_announced
                                                    ELSE chats.expiry_announced END
                         RETURNING workspace_id, source_key, {} AS created, {CHAT_COLUMNS}",
                        super::PLACEHOLDERS.rows(keys.len(), 19),
                        super::greatest!(),
                        super::created!(),
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for key in keys {
                        let update = &chats[key];
                        let info = &update.info;
                        query = query
                            .bind(key.0.to_string())
                            .bind(key.1.to_string())
                            .bind(key.2.to_string())
                            .bind(info.full_name.clone())
                            .bind(info.phone.clone())
                            .bind(info.is_group)
                            .bind(info.responsible_name.clone())
                            .bind(info.responsible_email.clone())
                            .bind(random_token(32))
                            .bind(now)
                            .bind(now)
                            .bind(update.channel.clone())
                            // A chat that starts with a message starts a session.
                            .bind(SessionStatus::Created.as_str())
                            .bind(update.customer_at)
                            .bind(update.window)
                            .bind(update.window.is_none())
                            .bind(info.responsible_id.clone())
                            .bind(info.account_type.map(AccountType::as_str))
                            .bind(info.can_reply);
                    }
                    let rows = query.fetch_all(&mut *conn).await?;
                    // RETURNING promises no order: match rows to keys by their values.
                    let by_value: HashMap<(String, String, String), &ChatKey> =
                        keys.iter().map(|k| ((k.0.to_string(), k.1.to_string(), k.2.to_string()), k)).collect();
                    for row in rows {
                        let value: (String, String, String) =
                            (row.try_get("workspace_id")?, row.try_get("source_key")?, row.try_get("external_id")?);
                        let key = **by_value.get(&value).expect("RETURNING gives back the rows written");
                        if row.try_get::<bool, _>("created")? {
                            created.insert(key);
                        }
                        stored.insert(key, chat(&row)?);
                    }
                }
                let created = order.iter().filter(|key| created.contains(*key)).copied().collect();
                Ok((stored, created))
            }

            /// Inserts the candidates in arrival order; returns the queue position of each one that
            /// was new. The others were already stored (perhaps by another daemon a moment ago):
            /// duplicates.
            async fn insert_messages<'a>(
                conn: &mut $conn,
                candidates: &[Candidate<'a>],
                chats: &HashMap<ChatKey<'a>, (Chat, FirstMessages)>,
                now: i64,
            ) -> StoreResult<HashMap<MessageKey<'a>, i64>> {
                let mut inserted = HashMap::with_capacity(candidates.len());
                for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
                    let sql = format!(
                        "INSERT INTO messages (workspace_id, chat_id, source_key, message_id, direction, ts,
                                               received_at, sender_name, sender_phone, recipient_name,
                                               recipient_phone, text, account, channel, attachments,
                                               reply_to_button, trace_parent)
                         VALUES {}
                         ON CONFLICT (workspace_id, source_key, message_id) DO NOTHING
                         RETURNING seq, workspace_id, source_key, message_id",
                        super::PLACEHOLDERS.rows(chunk.len(), 17)
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for c in chunk {
                        let m = c.message;
                        let account = m.account.as_ref().map(|a| serde_json::to_string(a).expect("accounts serialise"));
                        let attachments = (!m.attachments.is_empty())
                            .then(|| serde_json::to_string(&m.attachments).expect("attachments serialise"));
                        query = query
                            .bind(c.chat.0.to_string())
                            .bind(chats[&c.chat].0.id.0)
                            .bind(c.chat.1.to_string())
                            .bind(m.message_id.clone())
                            .bind(m.direction.as_str())
                            .bind(ms(m.timestamp))
                            .bind(now)
                            .bind(m.sender.full_name.clone())
                            .bind(m.sender.phone.clone())
                            .bind(m.recipient.full_name.clone())
                            .bind(m.recipient.phone.clone())
                            .bind(m.text.clone())
                            .bind(account)
                            .bind(m.channel.clone())
                            .bind(attachments)
                            .bind(m.reply_to_button.clone())
                            .bind(c.trace_parent);
                    }
                    let rows = query.fetch_all(&mut *conn).await?;
                    // Merged requests may be of several workspaces and sources: match rows by the
                    // whole key.
                    let by_key: HashMap<(&str, &str, &str), MessageKey<'a>> =
                        chunk.iter().map(|c| (c.key(), c.key())).collect();
                    for row in rows {
                        let (workspace, source, id): (String, String, String) =
                            (row.try_get("workspace_id")?, row.try_get("source_key")?, row.try_get("message_id")?);
                        let key = by_key[&(workspace.as_str(), source.as_str(), id.as_str())];
                        inserted.insert(key, row.try_get("seq")?);
                    }
                }
                Ok(inserted)
            }

            /// Counts what the business sent after chats' reply windows into their allowance
            /// periods ([`merge::replies_after_window`]); the stored chats say the new count (the
            /// payloads show it). Returns the chats whose allowance these messages used up.
            async fn count_replies<'a>(
                conn: &mut $conn,
                counts: &[(ChatKey<'a>, i64, u32)],
                stored: &mut HashMap<ChatKey<'a>, (Chat, FirstMessages)>,
            ) -> StoreResult<Vec<ChatKey<'a>>> {
                let mut used_up = Vec::new();
                for (key, period, sent) in counts {
                    let Some((chat, _)) = stored.get_mut(key) else { continue };
                    let sql = format!(
                        "UPDATE chats SET
                            replies_used = CASE WHEN replies_period = $1 THEN replies_used + $2
                                                WHEN replies_period > $1 THEN replies_used ELSE $2 END,
                            replies_period = {}(COALESCE(replies_period, $1), $1)
                         WHERE id = $3 RETURNING replies_period, replies_used",
                        super::greatest!()
                    );
                    let (now_period, used): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(period)
                        .bind(i64::from(*sent))
                        .bind(chat.id.0)
                        .fetch_one(&mut *conn)
                        .await?;
                    chat.replies_used = Some((now_period, used as u32));
                    if now_period == *period && crate::domain::session::used_up(chat, used as u32, *sent) {
                        used_up.push(*key);
                    }
                }
                Ok(used_up)
            }
        }
    };
}

pub(in crate::store) use ingest;
