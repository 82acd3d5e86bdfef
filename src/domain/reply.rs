//! Replies: what the business answers a customer, sent through the chat's own channel. The rules
//! here decide whether a chat can be answered now and how, what a reply shows as in the chat, and
//! how a send that failed is tried again; the store queues replies, `vendors::reply` speaks to
//! each channel, the reply worker sends.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::session::{ReplyState, ReplyStatus};
use super::{Chat, ChatId, Direction, SourceKind, StoredMessage};

/// The longest reply text accepted, in characters: WhatsApp's limit for a text message (Twilio
/// splits longer ones, Meta refuses them); WeChat and Chatwoot take as much.
pub const MAX_REPLY_CHARS: usize = 4096;

/// The longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// How long an idempotency key answers with the reply it first made.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How long one claim of a reply may take (the vendor's answer, then recording it): longer than
/// the vendors' timeout, so a reply is not sent twice by two daemons while the first still waits.
pub const REPLY_LEASE: Duration = Duration::from_secs(90);

/// What a reply says: words, or (WhatsApp) an approved template with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyBody {
    Text(String),
    Template(Template),
}

/// An approved WhatsApp message template: what may be sent after the 24-hour window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// Meta: the template's name. Twilio: its Content SID (`HX…`).
    pub name: String,
    /// Meta: the language code the template was approved in (`en_US`, `ja`). Twilio: unused.
    pub language: String,
    /// The body's `{{1}}`, `{{2}}`, … in order.
    pub parameters: Vec<String>,
}

impl ReplyBody {
    /// What the chat shows of it: the words, or the template's name and parameters.
    pub fn shown(&self) -> String {
        match self {
            ReplyBody::Text(text) => text.clone(),
            ReplyBody::Template(t) if t.parameters.is_empty() => format!("[template {}]", t.name),
            ReplyBody::Template(t) => format!("[template {}] {}", t.name, t.parameters.join(" · ")),
        }
    }

    pub fn template(&self) -> Option<&Template> {
        match self {
            ReplyBody::Template(t) => Some(t),
            ReplyBody::Text(_) => None,
        }
    }
}

/// How a chat is answered: through which channel's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyRoute {
    /// WhatsApp through Twilio's Messages API.
    Twilio,
    /// WhatsApp through Meta's Cloud API.
    Meta,
    /// WeChat's customer-service message API.
    Wechat,
    /// Chatwoot's messages API.
    Chatwoot,
    /// A JSON API chat: the workspace's `reply_url`, as a signed webhook.
    ReplyUrl,
}

impl ReplyRoute {
    /// The route of a chat that came through a source of `kind` (`None`: the JSON API), or why
    /// such a chat cannot be answered from here.
    pub fn of(kind: Option<SourceKind>) -> Result<ReplyRoute, &'static str> {
        match kind {
            None => Ok(ReplyRoute::ReplyUrl),
            Some(SourceKind::Twilio) => Ok(ReplyRoute::Twilio),
            Some(SourceKind::Whatsapp) => Ok(ReplyRoute::Meta),
            Some(SourceKind::Wechat) => Ok(ReplyRoute::Wechat),
            Some(SourceKind::Chatwoot) => Ok(ReplyRoute::Chatwoot),
            Some(SourceKind::ZohoDesk) => Err(
                "Zoho Desk chats are answered by agents in Zoho Desk: its API has no way for another system \
                 to send into an instant-messaging session",
            ),
        }
    }

    /// Whether the channel sends templates (WhatsApp's).
    pub fn takes_templates(self) -> bool {
        matches!(self, ReplyRoute::Twilio | ReplyRoute::Meta)
    }
}

/// Why a chat cannot be answered now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowClosed {
    /// The chat's reply status (`SESSION_EXPIRED`, `OUTGOING_LIMIT_REACHED`, …).
    pub status: ReplyStatus,
    /// Why, in a sentence that names the channel's rule.
    pub reason: String,
}

/// Whether `body` may be sent to `chat` at `at` through `route`: freely while the channel's
/// window is open (and, on WeChat, while the allowance after it lasts); after WhatsApp's 24 hours,
/// only an approved template; never into a blocked or ended session.
pub fn admissible(
    chat: &Chat,
    route: ReplyRoute,
    body: &ReplyBody,
    at: DateTime<Utc>,
) -> Result<(), WindowClosed> {
    let state = ReplyState::of(chat, at);
    if state.can_reply {
        return Ok(());
    }
    let whatsapp = route.takes_templates();
    if whatsapp && state.status == ReplyStatus::SessionExpired && body.template().is_some() {
        return Ok(());
    }
    let lapsed = chat.reply_window_expires_at.map(|w| w.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let reason = match (&state.status, route) {
        (ReplyStatus::SessionBlocked, _) => "the customer blocked this chat".to_string(),
        (ReplyStatus::SessionEnded, _) => "the chat's session has ended".to_string(),
        (ReplyStatus::OutgoingLimitReached, _) => format!(
            "WeChat allows replies for 48 hours after the follower's last message{}, then only a few a \
             month, and this month's are used up",
            lapsed.map(|at| format!(" (that ended at {at})")).unwrap_or_default()
        ),
        (_, ReplyRoute::Twilio | ReplyRoute::Meta) => format!(
            "WhatsApp allows free-form replies for 24 hours after the customer's last message{}; send an \
             approved template instead",
            lapsed.map(|at| format!(" (they ended at {at})")).unwrap_or_default()
        ),
        (_, ReplyRoute::Wechat) => "WeChat's 48-hour reply window has lapsed".to_string(),
        (_, ReplyRoute::Chatwoot) => "Chatwoot says the conversation cannot be answered now".to_string(),
        (_, ReplyRoute::ReplyUrl) => "the chat's reply window has lapsed".to_string(),
    };
    Err(WindowClosed { status: state.status, reason })
}

/// The message id of a reply. With an idempotency key it is derived from the chat and the key
/// (and the earlier reply the key made, when that one is older than [`IDEMPOTENCY_WINDOW`]), so
/// two requests with one key at the same moment name the same message and the store keeps one;
/// without, it is fresh.
pub fn message_id(chat: ChatId, key: Option<&str>, expired: Option<&str>) -> String {
    let Some(key) = key else { return format!("cb-{}", super::random_token(24)) };
    let mut hash = Sha256::new();
    hash.update(chat.0.to_be_bytes());
    hash.update(key.as_bytes());
    if let Some(earlier) = expired {
        hash.update([0]);
        hash.update(earlier.as_bytes());
    }
    let digest = hash.finalize();
    format!("cb-{}", digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// How many of a chat's latest messages are looked through for [`business_number`].
pub const LOOK_BACK: u32 = 50;

/// The business's number the customer last wrote to, among a chat's latest messages (newest
/// first): Twilio answers from it.
pub fn business_number(messages: &[StoredMessage]) -> Option<String> {
    messages
        .iter()
        .find(|m| m.direction == Direction::Received && m.recipient.phone.is_some())
        .and_then(|m| m.recipient.phone.clone())
}

/// Where a reply stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingStatus {
    /// Stored and waiting to be sent (or being sent, or waiting for a retry).
    Queued,
    /// The channel accepted it.
    Sent,
    /// The channel refused it, or every retry failed: it will not be sent.
    Failed,
}

impl OutgoingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutgoingStatus::Queued => "queued",
            OutgoingStatus::Sent => "sent",
            OutgoingStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<OutgoingStatus> {
        match s {
            "queued" => Some(OutgoingStatus::Queued),
            "sent" => Some(OutgoingStatus::Sent),
            "failed" => Some(OutgoingStatus::Failed),
            _ => None,
        }
    }
}

/// What a channel said when a send did not go through: its own code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VendorError {
    /// The channel's error code (Twilio's `21211`, Meta's `131047`, WeChat's `45015`), or the
    /// HTTP status, or `timeout`/`connection` when no answer came.
    pub code: String,
    pub message: String,
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// Accepted, with the channel's id of the message when it gives one.
    Sent(Option<String>),
    /// Worth trying again (a server error, a timeout, a rate limit).
    Transient(VendorError),
    /// Refused for good (the channel's 4xx): recorded, not retried.
    Refused(VendorError),
}

/// When a reply that failed for the `attempts`-th time is tried again, or `None` when it is given
/// up: after 10 s, 30 s, 2, 10 and 30 minutes, then 1 and 2 hours; a customer waiting longer than
/// that for an answer is better told by a person.
pub fn retry_after(attempts: u32) -> Option<Duration> {
    const SCHEDULE: [u64; 7] = [10, 30, 120, 600, 1800, 3600, 7200];
    SCHEDULE.get(attempts.saturating_sub(1) as usize).map(|s| Duration::from_secs(*s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountType, SessionStatus};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn chat(window: Option<&str>) -> Chat {
        Chat {
            id: ChatId(7),
            source_key: "src".into(),
            external_id: "+4915".into(),
            full_name: None,
            phone: None,
            is_group: false,
            responsible_name: None,
            responsible_email: None,
            responsible_id: None,
            token: "t".into(),
            token_issued_at: at("2026-01-01T00:00:00Z"),
            first_seen_at: at("2026-01-01T00:00:00Z"),
            session_status: Some(SessionStatus::OnProgress),
            reply_window_expires_at: window.map(at),
            account_type: None,
            replies_used: None,
            channel_can_reply: None,
        }
    }

    fn text() -> ReplyBody {
        ReplyBody::Text("Hello".into())
    }

    fn template() -> ReplyBody {
        ReplyBody::Template(Template {
            name: "order_update".into(),
            language: "en".into(),
            parameters: vec![],
        })
    }

    #[test]
    fn whatsapp_takes_words_within_24_hours_and_only_a_template_after() {
        let open = chat(Some("2026-03-02T10:00:00Z"));
        assert_eq!(admissible(&open, ReplyRoute::Meta, &text(), at("2026-03-02T09:59:59Z")), Ok(()));
        let closed = admissible(&open, ReplyRoute::Twilio, &text(), at("2026-03-02T10:00:01Z")).unwrap_err();
        assert_eq!(closed.status, ReplyStatus::SessionExpired);
        assert!(
            closed.reason.contains("24 hours") && closed.reason.contains("2026-03-02T10:00:00Z"),
            "{closed:?}"
        );
        assert_eq!(admissible(&open, ReplyRoute::Twilio, &template(), at("2026-03-02T10:00:01Z")), Ok(()));
        // A template is WhatsApp's way alone.
        let wechat = admissible(&open, ReplyRoute::Wechat, &template(), at("2026-03-02T10:00:01Z"));
        assert!(wechat.is_err());
    }

    #[test]
    fn a_blocked_or_ended_session_takes_nothing_not_even_a_template() {
        let mut blocked = chat(None);
        blocked.session_status = Some(SessionStatus::Blocked);
        let refused =
            admissible(&blocked, ReplyRoute::Meta, &template(), at("2026-03-02T10:00:00Z")).unwrap_err();
        assert_eq!(refused.status, ReplyStatus::SessionBlocked);
        blocked.session_status = Some(SessionStatus::Ended);
        assert!(admissible(&blocked, ReplyRoute::Chatwoot, &text(), at("2026-03-02T10:00:00Z")).is_err());
    }

    #[test]
    fn wechat_after_48_hours_takes_replies_while_the_allowance_lasts() {
        let mut follower = chat(Some("2026-03-02T10:00:00Z"));
        follower.account_type = Some(AccountType::Service);
        let later = at("2026-03-05T10:00:00Z");
        assert_eq!(admissible(&follower, ReplyRoute::Wechat, &text(), later), Ok(()));
        let (allowed, _) = AccountType::Service.allowance();
        follower.replies_used = Some((AccountType::Service.period_of(later), allowed));
        let refused = admissible(&follower, ReplyRoute::Wechat, &text(), later).unwrap_err();
        assert_eq!(refused.status, ReplyStatus::OutgoingLimitReached);
        assert!(refused.reason.contains("48 hours"), "{refused:?}");
    }

    #[test]
    fn zoho_desk_chats_are_answered_in_zoho_desk() {
        assert!(ReplyRoute::of(Some(SourceKind::ZohoDesk)).unwrap_err().contains("Zoho Desk"));
        assert_eq!(ReplyRoute::of(None), Ok(ReplyRoute::ReplyUrl));
        assert_eq!(ReplyRoute::of(Some(SourceKind::Whatsapp)), Ok(ReplyRoute::Meta));
    }

    #[test]
    fn an_idempotency_key_names_one_message_per_chat_and_a_new_one_after_it_expired() {
        let first = message_id(ChatId(1), Some("k-1"), None);
        assert_eq!(first, message_id(ChatId(1), Some("k-1"), None));
        assert_ne!(first, message_id(ChatId(2), Some("k-1"), None));
        assert_ne!(first, message_id(ChatId(1), Some("k-2"), None));
        let after = message_id(ChatId(1), Some("k-1"), Some(&first));
        assert_ne!(first, after);
        assert_ne!(message_id(ChatId(1), None, None), message_id(ChatId(1), None, None));
    }

    #[test]
    fn a_failed_send_is_retried_for_about_three_hours_then_given_up() {
        assert_eq!(retry_after(1), Some(Duration::from_secs(10)));
        assert_eq!(retry_after(7), Some(Duration::from_secs(7200)));
        assert_eq!(retry_after(8), None);
        let total: u64 = (1..8).filter_map(retry_after).map(|d| d.as_secs()).sum();
        assert!((3 * 3600..4 * 3600).contains(&total), "{total}");
    }

    #[test]
    fn a_template_shows_as_its_name_and_parameters() {
        let body = ReplyBody::Template(Template {
            name: "order_update".into(),
            language: "en".into(),
            parameters: vec!["#1234".into(), "Friday".into()],
        });
        assert_eq!(body.shown(), "[template order_update] #1234 · Friday");
        assert_eq!(text().shown(), "Hello");
    }
}
