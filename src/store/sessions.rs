//! Chat sessions: reply windows that lapse, and a chat's session as an event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Chat, RenderSession, StoreResult};
use crate::domain::{ChatId, SessionStatus, WorkspaceId};

/// A session event, as `session_status` webhooks receive it.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    pub workspace_id: WorkspaceId,
    pub chat: Chat,
    /// The source (channel) the chat belongs to: `api` or a source id.
    pub source_key: String,
    pub session_id: Option<String>,
    pub status: Option<SessionStatus>,
    pub old_status: Option<SessionStatus>,
    /// `ACCEPTED`, `SESSION_EXPIRED`, `SESSION_ENDED`, `SESSION_BLOCKED`, …
    pub reply_status: String,
    pub assignee_type: Option<String>,
    pub messages_count: u64,
    pub at: DateTime<Utc>,
}

/// Sessions, for the closer and test sends.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Queues a `SESSION_EXPIRED` event, for every webhook subscribed to session events, for up
    /// to `limit` chats whose reply window lapsed by `now`; returns how many chats. Each lapse is
    /// announced exactly once, however often this is called and across restarts; a later
    /// customer message opens a new window, whose lapse is announced in its turn.
    async fn announce_expiries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        render: RenderSession,
    ) -> StoreResult<u64>;
    /// When the next reply window lapses, if one is waiting to be announced.
    async fn next_expiry(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// The session event a `session_status` webhook would get for a chat now, if it exists.
    async fn session_snapshot(&self, chat: ChatId, now: DateTime<Utc>) -> StoreResult<Option<SessionEvent>>;
}

/// What the chat's reply looks like now: can messages be exchanged, and if not, why.
pub(super) fn reply_status(chat: &Chat, now: i64) -> &'static str {
    match chat.session_status {
        Some(SessionStatus::Blocked) => "SESSION_BLOCKED",
        Some(SessionStatus::Ended) => "SESSION_ENDED",
        _ if chat.reply_window_expires_at.is_some_and(|t| t.timestamp_millis() <= now) => "SESSION_EXPIRED",
        _ => "ACCEPTED",
    }
}
