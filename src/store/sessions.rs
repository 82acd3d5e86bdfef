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

/// What moved a chat's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCause {
    /// A message started the chat's first session, or a customer's message after it ENDED
    /// started a new one.
    Message,
    /// The business answered: its message moved an open session to ON_PROGRESS.
    Reply,
    /// The source said so (Zoho Desk's session webhook, a Chatwoot conversation event).
    Reported,
    /// The status the chat had when its history began to be kept (chats older than it).
    Earlier,
}

impl SessionCause {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionCause::Message => "message",
            SessionCause::Reply => "reply",
            SessionCause::Reported => "reported",
            SessionCause::Earlier => "earlier",
        }
    }

    /// What a message that moved a session to `to` was.
    pub fn of_message(to: SessionStatus) -> SessionCause {
        if to == SessionStatus::Created { SessionCause::Message } else { SessionCause::Reply }
    }

    pub fn parse(s: &str) -> SessionCause {
        match s {
            "message" => SessionCause::Message,
            "reply" => SessionCause::Reply,
            "reported" => SessionCause::Reported,
            _ => SessionCause::Earlier,
        }
    }
}

/// One step of a chat's session history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTransition {
    pub at: DateTime<Utc>,
    /// None for the chat's first status.
    pub from: Option<String>,
    /// A status of [`SessionStatus`], or one a source sent that chatbundle does not know.
    pub to: String,
    pub cause: SessionCause,
    /// The source the news came through: `api` or a source id.
    pub source_key: String,
    /// The reply status the source reported with it, if any.
    pub reply_status: Option<String>,
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
    /// The chat's session history, oldest first; `None` when there is no such chat.
    ///
    /// - **Every move, once**: each status the chat's session took is one transition, recorded
    ///   in the commit that moved it (the first message, a customer's message after ENDED, the
    ///   business's reply to an open session, a source's report); a report that repeats the
    ///   status, an assignment alone and a lapsed reply window are events but no transition.
    /// - **Chained**: each transition's `from` is the `to` of the one before it (the first has
    ///   none), also when two daemons record moves of one chat at the same moment.
    async fn session_history(&self, chat: ChatId) -> StoreResult<Option<Vec<SessionTransition>>>;
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

/// What a lapsed reply window reports: the channel's free window is over (on WeChat the chat
/// object still says what may be sent after it).
pub(super) fn expired() -> ReportedSession {
    ReportedSession { reply_status: Some("SESSION_EXPIRED".into()), ..ReportedSession::default() }
}

/// Whether the business can reply to a chat at some moment, and if not why not, in the words of
/// [`REPLY_STATUSES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyState {
    /// `ACCEPTED`, `SESSION_BLOCKED`, `SESSION_ENDED`, `SESSION_EXPIRED` (the channel's reply
    /// window lapsed) or `OUTGOING_LIMIT_REACHED` (so did the allowance after it).
    pub status: &'static str,
    pub can_reply: bool,
    /// After the reply window, on an account with an allowance there (WeChat): how many messages
    /// the business may still send in the current period.
    pub replies_left: Option<u32>,
}

impl ReplyState {
    /// The chat's reply as of `at`: not in a blocked or ended session; freely within the
    /// channel's reply window; after it, only within the account's allowance, if it has one.
    pub fn of(chat: &Chat, at: DateTime<Utc>) -> ReplyState {
        let refused = |status| ReplyState { status, can_reply: false, replies_left: None };
        match chat.session_status {
            Some(SessionStatus::Blocked) => return refused("SESSION_BLOCKED"),
            Some(SessionStatus::Ended) => return refused("SESSION_ENDED"),
            _ => {}
        }
        if chat.reply_window_expires_at.is_none_or(|window| window > at) {
            return ReplyState { status: "ACCEPTED", can_reply: true, replies_left: None };
        }
        let Some(account) = chat.account_type else { return refused("SESSION_EXPIRED") };
        let (allowed, _) = account.allowance();
        let period = account.period_of(at);
        let used = chat.replies_used.filter(|(p, _)| *p == period).map_or(0, |(_, n)| n);
        let left = allowed.saturating_sub(used);
        let status = if left > 0 { "ACCEPTED" } else { "OUTGOING_LIMIT_REACHED" };
        ReplyState { status, can_reply: left > 0, replies_left: Some(left) }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::AccountType;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn chat(account_type: Option<AccountType>, replies_used: Option<(i64, u32)>) -> Chat {
        Chat {
            id: ChatId(1),
            external_id: "c".into(),
            full_name: None,
            phone: None,
            is_group: false,
            responsible_name: None,
            responsible_email: None,
            responsible_id: None,
            token: "t".into(),
            first_seen_at: at("2024-03-01T00:00:00Z"),
            session_status: Some(SessionStatus::Created),
            reply_window_expires_at: Some(at("2024-03-03T00:00:00Z")),
            account_type,
            replies_used,
        }
    }

    #[test]
    fn after_the_window_only_an_allowance_lets_the_business_reply() {
        let inside = at("2024-03-02T00:00:00Z");
        let after = at("2024-03-04T10:00:00Z");
        let whatsapp = chat(None, None);
        assert_eq!(ReplyState::of(&whatsapp, inside).status, "ACCEPTED");
        assert_eq!(
            ReplyState::of(&whatsapp, after),
            ReplyState { status: "SESSION_EXPIRED", can_reply: false, replies_left: None }
        );
        // A subscription account: one a day, by China's day (which began at 16:00 UTC).
        let day = AccountType::Subscription.period_of(after);
        assert_eq!(day, Utc.with_ymd_and_hms(2024, 3, 3, 16, 0, 0).unwrap().timestamp_millis());
        let used = chat(Some(AccountType::Subscription), Some((day, 1)));
        assert_eq!(
            ReplyState::of(&used, after),
            ReplyState { status: "OUTGOING_LIMIT_REACHED", can_reply: false, replies_left: Some(0) }
        );
        let next_day = at("2024-03-04T16:00:00Z");
        assert_eq!(ReplyState::of(&used, next_day).replies_left, Some(1));
        // A service account counts by the month.
        let month = AccountType::Service.period_of(after);
        assert_eq!(month, Utc.with_ymd_and_hms(2024, 2, 29, 16, 0, 0).unwrap().timestamp_millis());
        let service = chat(Some(AccountType::Service), Some((month, 3)));
        assert_eq!(ReplyState::of(&service, after).replies_left, Some(1));
        // An ended or blocked session refuses whatever the allowance.
        let mut ended = service.clone();
        ended.session_status = Some(SessionStatus::Ended);
        assert_eq!(ReplyState::of(&ended, inside).status, "SESSION_ENDED");
        ended.session_status = Some(SessionStatus::Blocked);
        assert_eq!(ReplyState::of(&ended, inside).status, "SESSION_BLOCKED");
    }
}
