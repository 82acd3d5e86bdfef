//! Chat sessions: reply windows that lapse, and a chat's session as an event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Chat, RenderSession, SessionChange, StoreResult};
use crate::domain::{ChatId, SessionStatus, WorkspaceId};

/// What a channel itself said about a session, as it said it: passed through to the event
/// unchanged where chatbundle would otherwise derive the value (Zoho Desk sends all of these;
/// Chatwoot and message activity none, so there chatbundle's own values stand).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportedSession {
    /// `replyStatus`, one of [`REPLY_STATUSES`] or a newer one, kept as sent.
    pub reply_status: Option<String>,
    /// `sessionStatus` as sent, when chatbundle does not know it (known ones are parsed).
    pub session_status: Option<String>,
    pub old_status: Option<String>,
    pub messages_count: Option<String>,
    pub channel_id: Option<String>,
    pub org_id: Option<String>,
    pub event_time: Option<String>,
    pub assignee_id: Option<String>,
}

/// Zoho Desk's `replyStatus` vocabulary: whether, and if not why not, the business can reply.
pub const REPLY_STATUSES: [&str; 19] = [
    "ACCEPTED",
    "SESSION_ENDED",
    "SESSION_BLOCKED",
    "SESSION_EXPIRED",
    "CHANNEL_INACTIVE",
    "CHANNEL_REVOKED",
    "UNASSIGNED",
    "NOT_AN_ASSIGNEE",
    "CREDIT_EXHAUSTED",
    "ACCESSTOKEN_EXPIRED",
    "PERMISSION_REVOKED",
    "UNEXPECTED_ERROR",
    "PAGE_REMOVED",
    "SANDBOX_LIMIT_REACHED",
    "CHANNEL_DELETED",
    "ENDUSER_OFFLINE",
    "CONFIG_SKIPPED_CHANNEL",
    "OUTGOING_LIMIT_REACHED",
    "ASSIGNED_TO_OTHER_SERVICE",
];

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
    /// What the channel said itself, passed through over the derived values above.
    pub reported: ReportedSession,
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

/// A chat's session status and owner before a change: (status, id, name, e-mail).
pub(super) type Owned = (Option<String>, Option<String>, Option<String>, Option<String>);

/// The status a change stores: a known one by its name, one chatbundle does not know as the
/// channel sent it (a chat in it reads back as having no known status).
pub(super) fn reported_status(change: &SessionChange) -> Option<&str> {
    change.status.map(SessionStatus::as_str).or(change.reported.session_status.as_deref())
}

/// Whether a session change a channel reported is news for `session_status` webhooks: the
/// status moved (an unknown one compared as sent), the owner changed, or the channel reports a
/// reply status other than `ACCEPTED` (what the seed says to alert on, such as
/// `CREDIT_EXHAUSTED`). A repeat of the same change is not news, so two daemons (or a channel's
/// retry) reporting it announce it once.
pub(super) fn worth_an_event(change: &SessionChange, before: Option<&Owned>, after: &Chat) -> bool {
    let old_status = before.and_then(|b| b.0.as_deref());
    let moved = reported_status(change).is_some_and(|status| Some(status) != old_status);
    let owner =
        |c: &Chat| (c.responsible_id.clone(), c.responsible_name.clone(), c.responsible_email.clone());
    let owner_before = before.map(|b| (b.1.clone(), b.2.clone(), b.3.clone())).unwrap_or_default();
    let reassigned = before.is_some() && owner(after) != owner_before;
    let alert = change.reported.reply_status.as_deref().is_some_and(|r| r != "ACCEPTED");
    moved || reassigned || alert
}

/// What a lapsed reply window reports.
pub(super) fn expired() -> ReportedSession {
    ReportedSession { reply_status: Some("SESSION_EXPIRED".into()), ..ReportedSession::default() }
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
