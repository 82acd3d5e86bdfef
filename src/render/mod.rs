//! Outbound payloads. The keys of TimelinesAI's v1 webhooks are kept exactly, so Zaps built for
//! it keep working; payloads are rendered once, when a delivery is created, and frozen.
//! Bundles and their notes are in [`bundle`].

pub mod bundle;
pub mod media;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::session::{ReplyState, ReplyStatus, SessionEvent};
use crate::domain::{
    Account, Chat, Direction, Locale, NewMessage, Party, SessionStatus, StoredMessage, WorkspaceId,
    named_sender,
};

/// Formats an instant the way the payloads carry it: `2021-02-24T16:25:29+0000`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

/// The link to a chat's read-only transcript page.
pub fn chat_url(public_url: &str, token: &str) -> String {
    format!("{public_url}/c/{token}")
}

/// The `chat` object of every payload.
#[derive(Debug, Serialize)]
pub struct ChatObject<'a> {
    pub full_name: Option<&'a str>,
    pub responsible_name: Option<&'a str>,
    pub responsible_email: Option<&'a str>,
    pub chat_url: String,
    pub chat_id: &'a str,
    pub is_new_chat: bool,
    pub is_group: bool,
    pub phone: Option<&'a str>,
    /// Whether a reply is possible: the session is not blocked or ended, and the channel's
    /// reply window (WhatsApp 24 h, WeChat 48 h) has not lapsed or, after it, the account's
    /// allowance (WeChat) is not used up.
    pub can_reply: bool,
    pub reply_window_expires_at: Option<String>,
    /// Why, in Zoho Desk's `replyStatus` words: `ACCEPTED`, `SESSION_BLOCKED`, `SESSION_ENDED`,
    /// `SESSION_EXPIRED`, `OUTGOING_LIMIT_REACHED`.
    pub reply_status: ReplyStatus,
    /// After a WeChat chat's 48-hour window: the messages it may still be sent this period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replies_left: Option<u32>,
    /// chatbundle's id of the chat: the `{id}` of `/api/v1/chats/{id}`, which a CRM or a Zap
    /// answers the chat through (`POST /api/v1/chats/{id}/messages`). After TimelinesAI's keys.
    pub id: i64,
}

impl<'a> ChatObject<'a> {
    /// The chat as of `at` (which decides whether its reply window is still open).
    pub fn new(chat: &'a Chat, public_url: &str, is_new_chat: bool, at: DateTime<Utc>) -> Self {
        let reply = ReplyState::of(chat, at);
        ChatObject {
            id: chat.id.0,
            can_reply: reply.can_reply,
            reply_window_expires_at: chat.reply_window_expires_at.map(timestamp),
            reply_status: reply.status,
            replies_left: reply.replies_left,
            full_name: chat.full_name.as_deref(),
            responsible_name: chat.responsible_name.as_deref(),
            responsible_email: chat.responsible_email.as_deref(),
            chat_url: chat_url(public_url, &chat.token),
            chat_id: &chat.external_id,
            is_new_chat,
            is_group: chat.is_group,
            phone: chat.phone.as_deref(),
        }
    }
}

/// One message inside a payload.
#[derive(Debug, Serialize)]
pub struct MessageObject<'a> {
    pub direction: &'static str,
    pub timestamp: String,
    pub message_id: &'a str,
    /// Named as [`named_sender`] names them.
    pub sender: Cow<'a, Party>,
    pub recipient: &'a Party,
    /// The message's text; for media, the caption or their placeholders ([`media::message_text`]).
    pub text: Cow<'a, str>,
    /// Its media as the channel described them (with `download_url`s for a webhook whose `media`
    /// is `link`); only a message that carries some has the key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<media::AttachmentObject<'a>>,
    /// A customer's answer by button or list row: the payload id of the choice (the text is its
    /// title). Only such an answer has the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to_button: Option<&'a str>,
    /// When the channel edited the message before it went out (the text is the edited one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
}

/// A [`MessageObject`] of a new or a stored message (they share these fields).
macro_rules! message_object {
    ($message:expr, $locale:expr, $workspace_account:expr, $seq:expr, $links:expr) => {{
        let m = $message;
        MessageObject {
            direction: m.direction.as_str(),
            timestamp: timestamp(m.timestamp),
            message_id: &m.message_id,
            sender: named_sender(m.direction, &m.sender, m.account.as_ref(), $workspace_account),
            recipient: &m.recipient,
            text: media::message_text(&m.text, &m.attachments, crate::words::note_words($locale)),
            attachments: media::attachment_objects(&m.attachments, $seq, $links),
            reply_to_button: m.reply_to_button.as_deref(),
            edited_at: None,
        }
    }};
}

impl<'a> MessageObject<'a> {
    /// `account` is the workspace's, which speaks for a `sent` message that names no account;
    /// `seq` is where the message was stored, which its media links name.
    pub fn new(
        message: &'a NewMessage,
        seq: i64,
        locale: Locale,
        account: &Account,
        links: Option<&media::MediaLinks>,
    ) -> Self {
        message_object!(message, locale, account, seq, links)
    }

    pub fn stored(
        message: &'a StoredMessage,
        locale: Locale,
        account: &Account,
        links: Option<&media::MediaLinks>,
    ) -> Self {
        MessageObject {
            edited_at: message.edited_at.map(timestamp),
            ..message_object!(message, locale, account, message.seq, links)
        }
    }
}

/// What a webhook with granularity `none` receives for each message.
#[derive(Debug, Serialize)]
pub struct SingleMessagePayload<'a> {
    pub whatsapp_account: &'a Account,
    pub chat: ChatObject<'a>,
    pub message: MessageObject<'a>,
    pub channel: &'a str,
}

/// Renders the single-message payload; `account` is the message's own or the workspace's,
/// `locale` the workspace's language (a media message's placeholders).
/// `links` are given for a webhook whose `media` is `link`.
pub fn single_message(
    public_url: &str,
    account: &Account,
    locale: Locale,
    chat: &Chat,
    (message, seq): (&NewMessage, i64),
    is_new_chat: bool,
    links: Option<&media::MediaLinks>,
) -> Vec<u8> {
    let payload = SingleMessagePayload {
        whatsapp_account: message.account.as_ref().unwrap_or(account),
        chat: ChatObject::new(chat, public_url, is_new_chat, message.timestamp),
        message: MessageObject::new(message, seq, locale, account, links),
        channel: &message.channel,
    };
    serde_json::to_vec(&payload).expect("payloads always serialise")
}

/// The single-message payload for a message that was buffered and is now sent on its own (its
/// webhook stopped aggregating).
pub fn single_stored_message(
    public_url: &str,
    account: &Account,
    locale: Locale,
    chat: &Chat,
    message: &StoredMessage,
    is_new_chat: bool,
    links: Option<&media::MediaLinks>,
) -> Vec<u8> {
    let payload = SingleMessagePayload {
        whatsapp_account: message.account.as_ref().unwrap_or(account),
        chat: ChatObject::new(chat, public_url, is_new_chat, message.timestamp),
        message: MessageObject::stored(message, locale, account, links),
        channel: &message.channel,
    };
    serde_json::to_vec(&payload).expect("payloads always serialise")
}

/// What a JSON API chat's reply is posted to the workspace's `reply_url` as: the chat (as every
/// payload has it), the reply's message id, its words (or template) and who sent it.
pub fn reply_request(
    public_url: &str,
    chat: &Chat,
    message_id: &str,
    body: &crate::domain::reply::ReplyBody,
    sent_by: &str,
    at: DateTime<Utc>,
) -> Vec<u8> {
    let payload = serde_json::json!({
        "event": "chat.reply",
        "message_id": message_id,
        "text": body.shown(),
        "template": body.template(),
        "sent_by": sent_by,
        "created_at": timestamp(at),
        "chat": ChatObject::new(chat, public_url, false, at),
    });
    serde_json::to_vec(&payload).expect("payloads serialise")
}

/// The `session_status` payload: Zoho Desk's `IM_Session_Status` webhook shape, a JSON array of
/// one event, plus the `chat` object the other payloads carry.
pub fn session_event(public_url: &str, event: &SessionEvent) -> Vec<u8> {
    let chat = &event.chat;
    let reported = &event.reported;
    // What the channel said itself goes out as it said it; chatbundle's own values fill the rest.
    // The assignee: the channel's id (Zoho Desk's), else the e-mail (Chatwoot's), else the name.
    let assignee = reported
        .assignee_id
        .as_deref()
        .or(chat.responsible_email.as_deref())
        .or(chat.responsible_id.as_deref())
        .or(chat.responsible_name.as_deref());
    let assignee_type = event.assignee_type.as_deref().or(assignee.map(|_| "AGENT"));
    let status = reported.session_status.as_deref().or(event.status.map(SessionStatus::as_str));
    let old_status = reported.old_status.as_deref().or(event.old_status.map(SessionStatus::as_str));
    let payload = serde_json::json!([{
        "payload": {
            "currentAssigneeId": assignee,
            "sessionStatus": status,
            "replyStatus": event.reply_status,
            "sessionOldStatus": old_status,
            "sessionId": event.session_id.as_deref().unwrap_or(&event.chat.external_id),
            "messagesCount": reported.messages_count.clone().unwrap_or_else(|| event.messages_count.to_string()),
            "assigneeType": assignee_type,
            // The channel's own id, as it reported it, or nothing: never the source's id, which
            // for a channel that signs nothing (Zoho Desk) is the whole secret of its inbound URL.
            "channelId": reported.channel_id.as_deref(),
        },
        "eventTime": reported.event_time.clone().unwrap_or_else(|| event.at.timestamp_millis().to_string()),
        "eventType": "IM_Session_Status",
        "orgId": reported.org_id.as_deref().unwrap_or(event.workspace_id.as_str()),
        "chat": ChatObject::new(&event.chat, public_url, false, event.at),
    }]);
    serde_json::to_vec(&payload).expect("payloads always serialise")
}

/// What a webhook receives: one message, a bundle, or session events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Message,
    Bundle,
    Session,
}

/// A made-up sample in the shape a webhook receives, for testing a webhook before any chat
/// exists. It carries `"sample": true` beside the test mark.
pub fn sample(public_url: &str, shape: Shape, at: DateTime<Utc>) -> Vec<u8> {
    let chat = Chat {
        id: crate::domain::ChatId(0),
        external_id: "sample-chat".into(),
        full_name: Some("Sample Customer".into()),
        phone: Some("+10000000000".into()),
        is_group: false,
        responsible_name: None,
        responsible_email: None,
        responsible_id: None,
        token: "sample".into(),
        first_seen_at: at,
        token_issued_at: at,
        session_status: Some(SessionStatus::Open),
        reply_window_expires_at: None,
        account_type: None,
        replies_used: None,
        channel_can_reply: None,
        source_key: "api".into(),
    };
    let message = StoredMessage {
        seq: 0,
        message_id: "sample-message".into(),
        direction: Direction::Received,
        timestamp: at,
        received_at: at,
        sender: Party { full_name: Some("Sample Customer".into()), phone: Some("+10000000000".into()) },
        recipient: Party::default(),
        text: "This is a sample delivery from chatbundle to test this webhook; no customer wrote it.".into(),
        account: None,
        channel: "sample".into(),
        attachments: Vec::new(),
        reply_to_button: None,
        edited_at: None,
        trace_parent: None,
    };
    let account = Account { full_name: Some("chatbundle sample".into()), email: None, phone: None };
    let payload = match shape {
        Shape::Bundle => {
            let input = bundle::BundleInput {
                public_url,
                timezone: chrono_tz::UTC,
                locale: crate::domain::Locale::En,
                account: &account,
                chat: &chat,
                first_message_seq: Some(0),
                window_start: at,
                window_end: at,
                messages: std::slice::from_ref(&message),
                links: None,
                closed_by: None,
            };
            bundle::render(&input, bundle::Limits::default()).remove(0).payload
        }
        Shape::Message => {
            single_stored_message(public_url, &account, Locale::En, &chat, &message, true, None)
        }
        Shape::Session => session_event(
            public_url,
            &SessionEvent {
                workspace_id: WorkspaceId::stored("sample"),
                chat: chat.clone(),
                source_key: "sample".into(),
                session_id: Some("sample-session".into()),
                status: Some(SessionStatus::Open),
                old_status: Some(SessionStatus::Created),
                reply_status: ReplyStatus::Accepted,
                assignee_type: None,
                messages_count: 1,
                at,
                reported: Default::default(),
            },
        ),
    };
    mark(&payload, "sample")
}

/// A payload marked as a test: `"test": true` at the top level of each payload object (a
/// session event is an array of them), so receivers and Zaps can tell it from real traffic.
pub fn marked_as_test(payload: &[u8]) -> Vec<u8> {
    mark(payload, "test")
}

/// A payload a replay sends again: the same object, its keys in the same order, with
/// `"replay": true` at its end.
pub fn marked_as_replay(payload: &[u8]) -> Vec<u8> {
    let mut out = payload.to_vec();
    match out.iter().rposition(|b| *b == b'}') {
        Some(end) => {
            let empty = out[..end].iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            let key: &[u8] = if empty { br#""replay":true"# } else { br#","replay":true"# };
            out.splice(end..end, key.iter().copied());
            out
        }
        None => mark(payload, "replay"),
    }
}

fn mark(payload: &[u8], key: &str) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(payload).expect("our own JSON");
    match &mut value {
        serde_json::Value::Array(items) => {
            for item in items {
                item[key] = serde_json::Value::Bool(true);
            }
        }
        other => other[key] = serde_json::Value::Bool(true),
    }
    serde_json::to_vec(&value).expect("payloads always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_replayed_payload_keeps_its_keys_in_order_and_says_so_last() {
        let replayed = marked_as_replay(br#"{"b":1,"a":{"x":2}}"#);
        assert_eq!(String::from_utf8(replayed).unwrap(), r#"{"b":1,"a":{"x":2},"replay":true}"#);
        assert_eq!(marked_as_replay(b"{}"), br#"{"replay":true}"#);
    }

    #[test]
    fn timestamps_carry_a_numeric_utc_offset_without_colon() {
        let t = Utc.with_ymd_and_hms(2021, 2, 24, 16, 25, 29).unwrap();
        assert_eq!(timestamp(t), "2021-02-24T16:25:29+0000");
    }
}
