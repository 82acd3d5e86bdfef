//! Chat sessions, in Zoho Desk's words: what a channel reports of a session, the events
//! `session_status` webhooks receive and why, a chat's session history, whether the business can
//! reply (the channel's window, then the account's allowance). The store keeps them; the rules
//! are here.

use chrono::{DateTime, Utc};

use super::{Chat, ChatInfo, SessionStatus, WorkspaceId};

/// What a channel itself said about a session, as it said it: passed through to the event
/// unchanged where chatbundle would otherwise derive the value (Zoho Desk sends all of these;
/// Chatwoot and message activity none, so there chatbundle's own values stand).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportedSession {
    /// `replyStatus`, as sent (one chatbundle does not know too).
    pub reply_status: Option<ReplyStatus>,
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
/// A status chatbundle does not know is kept as the channel sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReplyStatus {
    Accepted,
    SessionEnded,
    SessionBlocked,
    /// The channel's reply window lapsed.
    SessionExpired,
    ChannelInactive,
    ChannelRevoked,
    Unassigned,
    NotAnAssignee,
    CreditExhausted,
    AccesstokenExpired,
    PermissionRevoked,
    UnexpectedError,
    PageRemoved,
    SandboxLimitReached,
    ChannelDeleted,
    EnduserOffline,
    ConfigSkippedChannel,
    /// The allowance after the reply window is used up (WeChat).
    OutgoingLimitReached,
    AssignedToOtherService,
    /// One chatbundle does not know, as the channel sent it.
    Other(String),
}

impl ReplyStatus {
    /// The known ones, in Zoho Desk's order.
    pub const KNOWN: [ReplyStatus; 19] = [
        ReplyStatus::Accepted,
        ReplyStatus::SessionEnded,
        ReplyStatus::SessionBlocked,
        ReplyStatus::SessionExpired,
        ReplyStatus::ChannelInactive,
        ReplyStatus::ChannelRevoked,
        ReplyStatus::Unassigned,
        ReplyStatus::NotAnAssignee,
        ReplyStatus::CreditExhausted,
        ReplyStatus::AccesstokenExpired,
        ReplyStatus::PermissionRevoked,
        ReplyStatus::UnexpectedError,
        ReplyStatus::PageRemoved,
        ReplyStatus::SandboxLimitReached,
        ReplyStatus::ChannelDeleted,
        ReplyStatus::EnduserOffline,
        ReplyStatus::ConfigSkippedChannel,
        ReplyStatus::OutgoingLimitReached,
        ReplyStatus::AssignedToOtherService,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            ReplyStatus::Accepted => "ACCEPTED",
            ReplyStatus::SessionEnded => "SESSION_ENDED",
            ReplyStatus::SessionBlocked => "SESSION_BLOCKED",
            ReplyStatus::SessionExpired => "SESSION_EXPIRED",
            ReplyStatus::ChannelInactive => "CHANNEL_INACTIVE",
            ReplyStatus::ChannelRevoked => "CHANNEL_REVOKED",
            ReplyStatus::Unassigned => "UNASSIGNED",
            ReplyStatus::NotAnAssignee => "NOT_AN_ASSIGNEE",
            ReplyStatus::CreditExhausted => "CREDIT_EXHAUSTED",
            ReplyStatus::AccesstokenExpired => "ACCESSTOKEN_EXPIRED",
            ReplyStatus::PermissionRevoked => "PERMISSION_REVOKED",
            ReplyStatus::UnexpectedError => "UNEXPECTED_ERROR",
            ReplyStatus::PageRemoved => "PAGE_REMOVED",
            ReplyStatus::SandboxLimitReached => "SANDBOX_LIMIT_REACHED",
            ReplyStatus::ChannelDeleted => "CHANNEL_DELETED",
            ReplyStatus::EnduserOffline => "ENDUSER_OFFLINE",
            ReplyStatus::ConfigSkippedChannel => "CONFIG_SKIPPED_CHANNEL",
            ReplyStatus::OutgoingLimitReached => "OUTGOING_LIMIT_REACHED",
            ReplyStatus::AssignedToOtherService => "ASSIGNED_TO_OTHER_SERVICE",
            ReplyStatus::Other(status) => status,
        }
    }

    /// A status as a channel sent it: a known one, or [`ReplyStatus::Other`].
    pub fn parse(s: &str) -> ReplyStatus {
        ReplyStatus::KNOWN
            .into_iter()
            .find(|known| known.as_str() == s)
            .unwrap_or_else(|| ReplyStatus::Other(s.into()))
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, ReplyStatus::Other(_))
    }
}

impl std::fmt::Display for ReplyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ReplyStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A change of a chat's session, as a channel reports it.
#[derive(Debug, Clone)]
pub struct SessionChange {
    pub workspace_id: WorkspaceId,
    pub source_key: String,
    pub chat: ChatInfo,
    /// The channel's own id for the conversation.
    pub session_id: Option<String>,
    pub status: Option<SessionStatus>,
    /// `AGENT` or `BOT`, when the channel says.
    pub assignee_type: Option<String>,
    pub channel: Option<String>,
    /// What the channel said of the session in its own words, passed through to the event.
    pub reported: ReportedSession,
}

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
    /// Why the business can or cannot reply: the channel's word, else chatbundle's.
    pub reply_status: ReplyStatus,
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
    pub reply_status: Option<ReplyStatus>,
}

/// A chat's session status and owner before a change: (status, id, name, e-mail).
pub type Owned = (Option<String>, Option<String>, Option<String>, Option<String>);

/// The status a change stores: a known one by its name, one chatbundle does not know as the
/// channel sent it (a chat in it reads back as having no known status).
pub fn reported_status(change: &SessionChange) -> Option<&str> {
    change.status.map(SessionStatus::as_str).or(change.reported.session_status.as_deref())
}

/// Whether a session change a channel reported is news for `session_status` webhooks: the
/// status moved (an unknown one compared as sent), the owner changed, or the channel reports a
/// reply status other than `ACCEPTED` (what the seed says to alert on, such as
/// `CREDIT_EXHAUSTED`). A repeat of the same change is not news, so two daemons (or a channel's
/// retry) reporting it announce it once.
pub fn worth_an_event(change: &SessionChange, before: Option<&Owned>, after: &Chat) -> bool {
    let old_status = before.and_then(|b| b.0.as_deref());
    let moved = reported_status(change).is_some_and(|status| Some(status) != old_status);
    let owner =
        |c: &Chat| (c.responsible_id.clone(), c.responsible_name.clone(), c.responsible_email.clone());
    let owner_before = before.map(|b| (b.1.clone(), b.2.clone(), b.3.clone())).unwrap_or_default();
    let reassigned = before.is_some() && owner(after) != owner_before;
    let alert = change.reported.reply_status.as_ref().is_some_and(|r| *r != ReplyStatus::Accepted);
    moved || reassigned || alert
}

/// What a lapsed reply window reports: the channel's free window is over (on WeChat the chat
/// object still says what may be sent after it).
pub fn expired() -> ReportedSession {
    ReportedSession { reply_status: Some(ReplyStatus::SessionExpired), ..ReportedSession::default() }
}

/// Whether the business can reply to a chat at some moment, and if not why not, in the words of
/// [`ReplyStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyState {
    /// `ACCEPTED`, `SESSION_BLOCKED`, `SESSION_ENDED`, `SESSION_EXPIRED` (the channel's reply
    /// window lapsed) or `OUTGOING_LIMIT_REACHED` (so did the allowance after it).
    pub status: ReplyStatus,
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
            Some(SessionStatus::Blocked) => return refused(ReplyStatus::SessionBlocked),
            Some(SessionStatus::Ended) => return refused(ReplyStatus::SessionEnded),
            _ => {}
        }
        // A channel that says it itself (Chatwoot's `can_reply`) knows its own window.
        match chat.channel_can_reply {
            Some(true) => {
                return ReplyState { status: ReplyStatus::Accepted, can_reply: true, replies_left: None };
            }
            Some(false) => return refused(ReplyStatus::SessionExpired),
            None => {}
        }
        if chat.reply_window_expires_at.is_none_or(|window| window > at) {
            return ReplyState { status: ReplyStatus::Accepted, can_reply: true, replies_left: None };
        }
        let Some(account) = chat.account_type else { return refused(ReplyStatus::SessionExpired) };
        let (allowed, _) = account.allowance();
        let period = account.period_of(at);
        let used = chat.replies_used.filter(|(p, _)| *p == period).map_or(0, |(_, n)| n);
        let left = allowed.saturating_sub(used);
        let status = if left > 0 { ReplyStatus::Accepted } else { ReplyStatus::OutgoingLimitReached };
        ReplyState { status, can_reply: left > 0, replies_left: Some(left) }
    }
}

/// Whether `sent` messages that brought a chat's count in its allowance period to `used` are
/// the ones that used the allowance up.
pub fn used_up(chat: &Chat, used: u32, sent: u32) -> bool {
    chat.account_type.is_some_and(|account| {
        let (allowed, _) = account.allowance();
        used >= allowed && used.saturating_sub(sent) < allowed
    })
}

/// What a session event says when the allowance after the reply window is used up.
pub fn limit_reached() -> ReportedSession {
    ReportedSession { reply_status: Some(ReplyStatus::OutgoingLimitReached), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::{AccountType, ChatId};

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
            token_issued_at: at("2024-03-01T00:00:00Z"),
            session_status: Some(SessionStatus::Created),
            reply_window_expires_at: Some(at("2024-03-03T00:00:00Z")),
            account_type,
            replies_used,
            channel_can_reply: None,
            source_key: "api".into(),
        }
    }

    #[test]
    fn after_the_window_only_an_allowance_lets_the_business_reply() {
        let inside = at("2024-03-02T00:00:00Z");
        let after = at("2024-03-04T10:00:00Z");
        let whatsapp = chat(None, None);
        assert_eq!(ReplyState::of(&whatsapp, inside).status, ReplyStatus::Accepted);
        assert_eq!(
            ReplyState::of(&whatsapp, after),
            ReplyState { status: ReplyStatus::SessionExpired, can_reply: false, replies_left: None }
        );
        // A subscription account: one a day, by China's day (which began at 16:00 UTC).
        let day = AccountType::Subscription.period_of(after);
        assert_eq!(day, Utc.with_ymd_and_hms(2024, 3, 3, 16, 0, 0).unwrap().timestamp_millis());
        let used = chat(Some(AccountType::Subscription), Some((day, 1)));
        assert_eq!(
            ReplyState::of(&used, after),
            ReplyState { status: ReplyStatus::OutgoingLimitReached, can_reply: false, replies_left: Some(0) }
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
        assert_eq!(ReplyState::of(&ended, inside).status, ReplyStatus::SessionEnded);
        ended.session_status = Some(SessionStatus::Blocked);
        assert_eq!(ReplyState::of(&ended, inside).status, ReplyStatus::SessionBlocked);
    }
}
