//! Row mapping: the same columns hold the same things in SQLite and in PostgreSQL, so one set of
//! functions reads both; [`rows!`] instantiates them for an engine's row and connection types.
//! Instants are stored as milliseconds since the Unix epoch, so that they compare as numbers.

/// The row-mapping functions (and the column lists they read) for one engine, as its `rows`
/// module.
macro_rules! rows {
    ($row:ty, $conn:ty) => {
        mod rows {
        use std::time::Duration;

        use chrono::{DateTime, TimeZone, Utc};
        use sqlx::Row;

        use crate::domain::{
            Account, AccountType, Attachment, ChatId, DeliveryId, DeliveryKind, DeliveryStatus, Direction, Event, Granularity, Party,
            SessionStatus, SourceKind,
        };
        use crate::store::{Chat, DeliveryInfo, Source, StoreResult, StoredMessage, Webhook, Workspace};

        pub(super) fn ms(t: DateTime<Utc>) -> i64 {
            t.timestamp_millis()
        }

        pub(super) fn from_ms(v: i64) -> DateTime<Utc> {
            Utc.timestamp_millis_opt(v).single().unwrap_or_default()
        }

        fn account(row: &$row) -> StoreResult<Account> {
            Ok(Account {
                full_name: row.try_get("account_full_name")?,
                email: row.try_get("account_email")?,
                phone: row.try_get("account_phone")?,
            })
        }

        /// A stored time zone; only ever written from a [`crate::domain::Timezone`], so one this
        /// build does not know (a row edited by hand, a zone a newer tz database renamed) is read
        /// as UTC, and said so, the same way everywhere it is used.
        fn timezone(name: String) -> crate::domain::Timezone {
            name.parse().unwrap_or_else(|_| {
                tracing::error!(timezone = %name, "a stored time zone is unknown to this build; read as UTC");
                crate::domain::Timezone::default()
            })
        }

        fn granularity(s: &str) -> Granularity {
            // Only ever written from a `Granularity`, so anything else is a corrupted row.
            s.parse().unwrap_or(Granularity::None)
        }

        pub(super) const WORKSPACE_COLUMNS: &str = "id, name, owner_email, timezone, granularity, account_full_name, \
             account_email, account_phone, ingest_key, created_at, updated_at, locale, media_link_ttl_ms, \
             message_retention_ms, transcript_link_ttl_ms, reply_url, reply_secret, conversation_silence_ms, \
             conversation_max_ms";

        pub(super) fn workspace(row: &$row) -> StoreResult<Workspace> {
            Ok(Workspace {
                id: crate::domain::WorkspaceId::stored(row.try_get::<String, _>("id")?),
                name: crate::domain::Name::stored(row.try_get("name")?),
                owner_email: crate::domain::EmailAddress::stored(row.try_get("owner_email")?),
                timezone: timezone(row.try_get("timezone")?),
                granularity: granularity(row.try_get("granularity")?),
                account: account(row)?,
                locale: row.try_get::<String, _>("locale")?.parse().unwrap_or_default(),
                media_link_ttl: crate::domain::MediaLinkTtl::stored(row.try_get("media_link_ttl_ms")?),
                message_retention: crate::domain::MessageRetention::stored(row.try_get("message_retention_ms")?),
                transcript_link_ttl: crate::domain::TranscriptLinkTtl::stored(row.try_get("transcript_link_ttl_ms")?),
                conversation_silence: crate::domain::ConversationSilence::stored(row.try_get("conversation_silence_ms")?),
                conversation_max: crate::domain::ConversationMax::stored(row.try_get("conversation_max_ms")?),
                ingest_key: row.try_get("ingest_key")?,
                reply_url: row.try_get("reply_url")?,
                reply_secret: row.try_get("reply_secret")?,
                created_at: from_ms(row.try_get("created_at")?),
                updated_at: from_ms(row.try_get("updated_at")?),
            })
        }

        pub(super) const WEBHOOK_COLUMNS: &str = "id, workspace_id, url, granularity, enabled, secret, sub_messages, \
             sub_session_status, timeout_ms, note_max_chars, media_choice, consecutive_failures, disabled_reason, created_at, updated_at, stopped, \
             conversation_silence_ms, conversation_max_ms";

        pub(super) fn webhook(row: &$row) -> StoreResult<Webhook> {
            let mut events = Vec::new();
            if row.try_get::<bool, _>("sub_messages")? {
                events.push(Event::Messages);
            }
            if row.try_get::<bool, _>("sub_session_status")? {
                events.push(Event::SessionStatus);
            }
            Ok(Webhook {
                id: crate::domain::WebhookId::stored(row.try_get::<String, _>("id")?),
                workspace_id: crate::domain::WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?),
                url: webhook_url(row)?,
                granularity: row.try_get::<Option<String>, _>("granularity")?.map(|g| granularity(&g)),
                enabled: row.try_get("enabled")?,
                secret: row.try_get("secret")?,
                events,
                timeout: row.try_get::<Option<i64>, _>("timeout_ms")?.map(|v| Duration::from_millis(v as u64)),
                note_max_chars: crate::domain::NoteMaxChars::stored(row.try_get("note_max_chars")?),
                media: row.try_get::<String, _>("media_choice")?.parse().unwrap_or_default(),
                conversation_silence: row
                    .try_get::<Option<i64>, _>("conversation_silence_ms")?
                    .map(crate::domain::ConversationSilence::stored),
                conversation_max: row.try_get::<Option<i64>, _>("conversation_max_ms")?.map(crate::domain::ConversationMax::stored),
                consecutive_failures: row.try_get::<i64, _>("consecutive_failures")? as u32,
                disabled_reason: row.try_get("disabled_reason")?,
                stopped: row.try_get("stopped")?,
                created_at: from_ms(row.try_get("created_at")?),
                updated_at: from_ms(row.try_get("updated_at")?),
            })
        }

        /// Chats by id (in id order), each with where its first messages are and its messages
        /// received in `[from, until)` ordered by (timestamp, message id): one statement for the
        /// rows and one for the messages, however many chats (a close or replay step's thousand or
        /// so). Closing windows and conversations and planning replays all read this way.
        pub(super) async fn chats_with_messages(
            conn: &mut $conn,
            ids: &[i64],
            (from, until): (i64, i64),
        ) -> StoreResult<Vec<((Chat, crate::store::FirstMessages), Vec<StoredMessage>)>> {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let p = super::PLACEHOLDERS;
            let sql = format!("SELECT {CHAT_COLUMNS} FROM chats WHERE id IN ({}) ORDER BY id", p.list(1, ids.len()));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(*id);
            }
            let chats = query.fetch_all(&mut *conn).await?;
            let sql = format!(
                "SELECT chat_id, {MESSAGE_COLUMNS} FROM messages
                 WHERE received_at >= {} AND received_at < {} AND chat_id IN ({})
                 ORDER BY chat_id, ts, message_id",
                p.one(1),
                p.one(2),
                p.list(3, ids.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from).bind(until);
            for id in ids {
                query = query.bind(*id);
            }
            let mut messages: std::collections::HashMap<i64, Vec<StoredMessage>> = std::collections::HashMap::new();
            for row in query.fetch_all(&mut *conn).await? {
                messages.entry(row.try_get("chat_id")?).or_default().push(stored_message(&row)?);
            }
            chats
                .iter()
                .map(|row| {
                    let found = chat(row)?;
                    let list = messages.remove(&found.0.id.0).unwrap_or_default();
                    Ok((found, list))
                })
                .collect()
        }

        /// The columns [`chat`] reads.
        pub(super) const CHAT_COLUMNS: &str = "id, source_key, external_id, full_name, phone, is_group, responsible_name, \
             responsible_email, responsible_id, token, first_seen_at, first_message_seq, first_text_seq, session_status, reply_window_expires_at, \
             account_type, replies_period, replies_used, channel_can_reply, token_issued_at";

        /// A chat and where its first messages are.
        pub(super) fn chat(row: &$row) -> StoreResult<(Chat, crate::store::FirstMessages)> {
            let chat = Chat {
                id: ChatId(row.try_get("id")?),
                source_key: row.try_get("source_key")?,
                external_id: row.try_get("external_id")?,
                full_name: row.try_get("full_name")?,
                phone: row.try_get("phone")?,
                is_group: row.try_get::<Option<bool>, _>("is_group")?.unwrap_or(false),
                responsible_name: row.try_get("responsible_name")?,
                responsible_email: row.try_get("responsible_email")?,
                responsible_id: row.try_get("responsible_id")?,
                token: row.try_get("token")?,
                first_seen_at: from_ms(row.try_get("first_seen_at")?),
                token_issued_at: from_ms(
                    row.try_get::<Option<i64>, _>("token_issued_at")?.unwrap_or(row.try_get("first_seen_at")?),
                ),
                session_status: row
                    .try_get::<Option<String>, _>("session_status")?
                    .and_then(|s| SessionStatus::parse(&s)),
                reply_window_expires_at: row.try_get::<Option<i64>, _>("reply_window_expires_at")?.map(from_ms),
                account_type: row.try_get::<Option<String>, _>("account_type")?.and_then(|t| AccountType::parse(&t)),
                replies_used: row
                    .try_get::<Option<i64>, _>("replies_period")?
                    .map(|period| Ok::<_, sqlx::Error>((period, row.try_get::<i64, _>("replies_used")? as u32)))
                    .transpose()?,
                channel_can_reply: row.try_get("channel_can_reply")?,
            };
            let firsts = crate::store::FirstMessages {
                any: row.try_get("first_message_seq")?,
                text: row.try_get("first_text_seq")?,
            };
            Ok((chat, firsts))
        }

        /// The columns [`stored_message`] reads.
        pub(super) const MESSAGE_COLUMNS: &str = "seq, message_id, direction, ts, received_at, sender_name, sender_phone, \
             recipient_name, recipient_phone, text, account, channel, attachments, reply_to_button, edited_at, \
             trace_parent";

        pub(super) fn stored_message(row: &$row) -> StoreResult<StoredMessage> {
            let direction: String = row.try_get("direction")?;
            let account: Option<String> = row.try_get("account")?;
            let attachments: Option<String> = row.try_get("attachments")?;
            Ok(StoredMessage {
                seq: row.try_get("seq")?,
                message_id: row.try_get("message_id")?,
                direction: if direction == Direction::Sent.as_str() { Direction::Sent } else { Direction::Received },
                timestamp: from_ms(row.try_get("ts")?),
                received_at: from_ms(row.try_get("received_at")?),
                sender: Party { full_name: row.try_get("sender_name")?, phone: row.try_get("sender_phone")? },
                recipient: Party {
                    full_name: row.try_get("recipient_name")?,
                    phone: row.try_get("recipient_phone")?,
                },
                text: row.try_get("text")?,
                account: account.and_then(|a| serde_json::from_str::<Account>(&a).ok()),
                channel: row.try_get("channel")?,
                // A list that cannot be read (edited by hand) still marks a media message.
                attachments: attachments
                    .map(|a| {
                        serde_json::from_str::<Vec<Attachment>>(&a)
                            .unwrap_or_else(|_| vec![Attachment::new(crate::domain::AttachmentKind::File)])
                    })
                    .unwrap_or_default(),
                reply_to_button: row.try_get("reply_to_button")?,
                edited_at: row.try_get::<Option<i64>, _>("edited_at")?.map(from_ms),
                trace_parent: row.try_get("trace_parent")?,
            })
        }

        pub(super) const SOURCE_COLUMNS: &str = "id, inbound_key, workspace_id, kind, name, account_full_name, \
             account_email, account_phone, credentials, enabled, created_at, updated_at";

        /// A webhook's `url` column. Every stored one passed the same check when it was set, so
        /// one that does not parse is a damaged row, which the store reports rather than uses.
        pub(super) fn webhook_url(row: &$row) -> StoreResult<crate::domain::WebhookUrl> {
            row.try_get::<String, _>("url")?
                .parse()
                .map_err(|e: crate::domain::Invalid| crate::store::StoreError::Unavailable(std::sync::Arc::new(e)))
        }

        pub(super) fn source(row: &$row) -> StoreResult<Source> {
            let kind: String = row.try_get("kind")?;
            let credentials: String = row.try_get("credentials")?;
            Ok(Source {
                id: crate::domain::SourceId::stored(row.try_get::<String, _>("id")?),
                inbound_key: crate::domain::InboundKey::stored(row.try_get("inbound_key")?),
                workspace_id: crate::domain::WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?),
                kind: kind.parse().unwrap_or(SourceKind::Chatwoot),
                name: crate::domain::Name::stored(row.try_get("name")?),
                account: account(row)?,
                credentials: serde_json::from_str(&credentials).unwrap_or_default(),
                enabled: row.try_get("enabled")?,
                created_at: from_ms(row.try_get("created_at")?),
                updated_at: from_ms(row.try_get("updated_at")?),
            })
        }

        /// A bundling webhook with its closing state (`granularity` is the one in effect).
        pub(super) fn bundling_webhook(row: &$row) -> StoreResult<crate::store::BundlingWebhook> {
            let granularity: String = row.try_get("granularity")?;
            Ok(crate::store::BundlingWebhook {
                id: crate::domain::WebhookId::stored(row.try_get::<String, _>("id")?),
                workspace_id: crate::domain::WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?),
                granularity: granularity.parse().unwrap_or(Granularity::None),
                timezone: timezone(row.try_get("timezone")?),
                account: account(row)?,
                bundled_before: from_ms(row.try_get("bundled_before")?),
                granularity_changed_at: from_ms(row.try_get("granularity_changed_at")?),
                closing_boundary: row.try_get::<Option<i64>, _>("closing_boundary")?.map(from_ms),
                closing_flush: row.try_get("closing_flush")?,
                note_max_chars: crate::domain::NoteMaxChars::stored(row.try_get("note_max_chars")?),
                locale: row.try_get::<String, _>("locale")?.parse().unwrap_or_default(),
                media: row.try_get::<String, _>("media_choice")?.parse().unwrap_or_default(),
                media_link_ttl: crate::domain::MediaLinkTtl::stored(row.try_get("media_link_ttl_ms")?),
                flushed_at: from_ms(row.try_get("flushed_at")?),
                conversation: (row.try_get("silence_ms")?, row.try_get("max_ms")?),
            })
        }

        /// A chat in a workspace's list (with its message count as `messages`).
        pub(super) fn chat_summary(row: &$row) -> StoreResult<crate::store::ChatSummary> {
            Ok(crate::store::ChatSummary {
                id: ChatId(row.try_get("id")?),
                source_key: row.try_get("source_key")?,
                external_id: row.try_get("external_id")?,
                full_name: row.try_get("full_name")?,
                phone: row.try_get("phone")?,
                session_status: row
                    .try_get::<Option<String>, _>("session_status")?
                    .and_then(|s| SessionStatus::parse(&s)),
                messages: row.try_get::<i64, _>("messages")? as u64,
                last_received_at: from_ms(row.try_get("last_received_at")?),
            })
        }

        /// A workspace's counts, one column each.
        pub(super) fn workspace_stats(row: &$row) -> StoreResult<crate::store::WorkspaceStats> {
            let count = |name: &str| -> StoreResult<u64> { Ok(row.try_get::<i64, _>(name)? as u64) };
            Ok(crate::store::WorkspaceStats {
                chats: count("chats")?,
                messages: count("messages")?,
                deliveries_pending: count("pending")?,
                deliveries_delivered: count("delivered")?,
                deliveries_expired: count("expired")?,
                deliveries_failed: count("failed")?,
            })
        }

        /// What decides how a webhook's messages are windowed.
        pub(super) fn subscription(row: &$row) -> StoreResult<crate::store::rewindow::Subscription> {
            Ok(crate::store::rewindow::Subscription {
                id: row.try_get("id")?,
                granularity: row.try_get("granularity")?,
                subscribed: row.try_get("sub_messages")?,
                timezone: row.try_get("timezone")?,
            })
        }

        /// A row of the activity log: an attempt (source 1) or an event (source 0).
        pub(super) fn activity_row(row: &$row) -> StoreResult<crate::store::ActivityRow> {
            let json = |name: &str| -> StoreResult<Option<serde_json::Value>> {
                Ok(row
                    .try_get::<Option<String>, _>(name)?
                    .map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))))
            };
            let at: i64 = row.try_get("at")?;
            let delivery_id = row.try_get::<Option<String>, _>("delivery_id")?.map(DeliveryId::stored);
            Ok(crate::store::ActivityRow {
                at: from_ms(at),
                kind: row.try_get("kind")?,
                status: row.try_get::<Option<i64>, _>("status")?.map(|s| s as u16),
                duration_ms: row.try_get::<Option<i64>, _>("duration_ms")?.map(|d| d as u64),
                error: row.try_get("error")?,
                response_excerpt: row.try_get("response_excerpt")?,
                request_headers: json("request_headers")?.map(|stored| {
                    let id = delivery_id.as_ref().map_or("", |id| id.as_str());
                    crate::store::payload::sent_headers(stored, id, at)
                }),
                request_body: match row.try_get::<Option<Vec<u8>>, _>("request_body")? {
                    Some(body) => Some(String::from_utf8_lossy(&crate::store::payload::unpack(body)?).into_owned()),
                    None => None,
                },
                detail: json("detail")?,
                actor: row.try_get("actor")?,
                delivery_id,
                cursor: crate::store::ActivityCursor { at, source: row.try_get("source")?, id: row.try_get("id")? },
            })
        }

        /// An attempt, as a webhook's latest attempts list it.
        pub(super) fn attempt(row: &$row) -> StoreResult<crate::store::Attempt> {
            let headers: String = row.try_get("request_headers")?;
            let body = crate::store::payload::unpack(row.try_get("request_body")?)?;
            let delivery_id = DeliveryId::stored(row.try_get::<String, _>("delivery_id")?);
            let attempted_at: i64 = row.try_get("attempted_at")?;
            let headers = serde_json::from_str(&headers).unwrap_or_default();
            Ok(crate::store::Attempt {
                id: row.try_get("id")?,
                request_headers: crate::store::payload::sent_headers(headers, delivery_id.as_str(), attempted_at),
                delivery_id,
                webhook_id: crate::domain::WebhookId::stored(row.try_get::<String, _>("webhook_id")?),
                attempted_at: from_ms(attempted_at),
                duration_ms: row.try_get::<i64, _>("duration_ms")? as u64,
                status: row.try_get::<Option<i64>, _>("status")?.map(|s| s as u16),
                response_excerpt: row.try_get("response_excerpt")?,
                error: row.try_get("error")?,
                request_body: String::from_utf8_lossy(&body).into_owned(),
            })
        }

        pub(super) fn delivery(row: &$row) -> StoreResult<DeliveryInfo> {
            let status: String = row.try_get("status")?;
            let kind: String = row.try_get("kind")?;
            Ok(DeliveryInfo {
                id: DeliveryId::stored(row.try_get::<String, _>("id")?),
                // Only ever written from the enums.
                kind: DeliveryKind::parse(&kind).unwrap_or(DeliveryKind::Message),
                chat_id: row.try_get::<Option<i64>, _>("chat_id")?.map(ChatId),
                status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
                attempts: row.try_get::<i64, _>("attempts")? as u32,
                last_status: row.try_get::<Option<i64>, _>("last_status")?.map(|s| s as u16),
                last_error: row.try_get("last_error")?,
                created_at: from_ms(row.try_get("created_at")?),
                finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(from_ms),
            })
        }

        /// The row of `table` whose `column` is `value`, read by `map` (`columns`: what it reads).
        pub(super) async fn one_of<T>(
            conn: &mut $conn,
            (table, columns, map): (&str, &str, fn(&$row) -> StoreResult<T>),
            column: &str,
            value: &str,
        ) -> StoreResult<Option<T>> {
            let sql = format!("SELECT {columns} FROM {table} WHERE {column} = $1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(conn).await?;
            row.as_ref().map(map).transpose()
        }

        /// A workspace's rows of `table`, oldest first, read by `map`.
        pub(super) async fn of_workspace<T>(
            conn: &mut $conn,
            (table, columns, map): (&str, &str, fn(&$row) -> StoreResult<T>),
            workspace: &crate::domain::WorkspaceId,
        ) -> StoreResult<Vec<T>> {
            let sql = format!("SELECT {columns} FROM {table} WHERE workspace_id = $1 ORDER BY created_at, id");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(workspace.as_str()).fetch_all(conn).await?;
            rows.iter().map(map).collect()
        }

        /// Workspaces, webhooks and sources, as [`one_of`] and [`of_workspace`] read them.
        pub(super) const WORKSPACES: (&str, &str, fn(&$row) -> StoreResult<Workspace>) =
            ("workspaces", WORKSPACE_COLUMNS, workspace);
        pub(super) const WEBHOOKS: (&str, &str, fn(&$row) -> StoreResult<Webhook>) =
            ("webhooks", WEBHOOK_COLUMNS, webhook);
        pub(super) const SOURCES: (&str, &str, fn(&$row) -> StoreResult<Source>) = ("sources", SOURCE_COLUMNS, source);
        pub(super) const API_TOKENS: (&str, &str, fn(&$row) -> StoreResult<crate::store::ApiToken>) = (
            "api_tokens",
            "id, workspace_id, name, role, created_by, created_at, last_used_at",
            api_token,
        );

        /// A user (`users` columns `id, email, password_hash, last_sign_in_at`).
        pub(super) fn user(row: &$row) -> StoreResult<crate::store::User> {
            Ok(crate::store::User {
                id: crate::domain::UserId::stored(row.try_get::<String, _>("id")?),
                email: row.try_get("email")?,
                password_hash: row.try_get("password_hash")?,
                last_sign_in_at: row.try_get::<Option<i64>, _>("last_sign_in_at")?.map(from_ms),
                operator: row.try_get("operator")?,
            })
        }

        /// A member: a user's columns and the membership's `role` and `since`.
        pub(super) fn member(row: &$row) -> StoreResult<crate::store::Member> {
            Ok(crate::store::Member {
                user: user(row)?,
                role: row.try_get::<String, _>("role")?.parse().unwrap_or(crate::domain::Role::Viewer),
                since: from_ms(row.try_get("since")?),
            })
        }

        /// A scoped API token (never the token: it is not kept).
        pub(super) fn api_token(row: &$row) -> StoreResult<crate::store::ApiToken> {
            Ok(crate::store::ApiToken {
                id: crate::domain::TokenId::stored(row.try_get::<String, _>("id")?),
                workspace_id: crate::domain::WorkspaceId::stored(row.try_get::<String, _>("workspace_id")?),
                name: crate::domain::Name::stored(row.try_get("name")?),
                // The column's CHECK allows only these two; anything else reads as the lesser.
                role: row.try_get::<String, _>("role")?.parse().unwrap_or(crate::domain::Role::Viewer),
                created_by: row.try_get("created_by")?,
                created_at: from_ms(row.try_get("created_at")?),
                last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(from_ms),
            })
        }

        /// The webhook, or `None`.
        pub(super) async fn fetch_webhook(
            conn: &mut $conn,
            id: &crate::domain::WebhookId,
        ) -> StoreResult<Option<Webhook>> {
            one_of(conn, WEBHOOKS, "id", id.as_str()).await
        }

        /// The workspace, or `None`.
        pub(super) async fn fetch_workspace(
            conn: &mut $conn,
            id: &crate::domain::WorkspaceId,
        ) -> StoreResult<Option<Workspace>> {
            one_of(conn, WORKSPACES, "id", id.as_str()).await
        }
        }
    };
}

pub(in crate::store) use rows;
