//! Chatwoot, and MessageHub built on it: JSON webhooks per event. `message_created` carries a
//! message (incoming: received; outgoing or template: sent; private notes and activity lines are
//! skipped), `conversation_status_changed` and `conversation_updated` carry the conversation, whose
//! status and assignee feed the chat's session. When the source has a secret, requests must carry
//! `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256 of "{X-Chatwoot-Timestamp}.{body}">`, at most
//! five minutes old (older Chatwoot releases sign nothing, so without a secret nothing is checked).

use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::error::IngestError;
use super::inbound::{Answer, HookRequest, Inbound, SessionUpdate, malformed, refuse};
use super::whatsapp::decode_hex;
use crate::domain::{Attachment, AttachmentKind, Direction, MessageEdit, Party, SessionStatus, SourceKind};
use crate::store::{ChatInfo, NewMessage, ReportedSession};

use crate::domain::credentials::chatwoot::SECRET;

/// How far a signed request's timestamp may be from now.
const MAX_SKEW_SECONDS: i64 = 300;

/// Whether `header` signs `{timestamp}.{body}` under `secret`.
pub fn verify(secret: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.strip_prefix("sha256=").and_then(decode_hex) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn check(secret: &str, request: &HookRequest) -> Result<(), IngestError> {
    let (Some(header), Some(timestamp)) =
        (request.header("x-chatwoot-signature"), request.header("x-chatwoot-timestamp"))
    else {
        return Err(refuse(SourceKind::Chatwoot, "missing X-Chatwoot-Signature or X-Chatwoot-Timestamp"));
    };
    if !verify(secret, timestamp, request.body, header) {
        return Err(refuse(SourceKind::Chatwoot, "X-Chatwoot-Signature does not match"));
    }
    // A replayed request carries its old timestamp.
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| refuse(SourceKind::Chatwoot, "X-Chatwoot-Timestamp is not a number"))?;
    if (request.received_at.timestamp() - sent).abs() > MAX_SKEW_SECONDS {
        return Err(refuse(SourceKind::Chatwoot, "X-Chatwoot-Timestamp is too old or in the future"));
    }
    Ok(())
}

fn id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// `created_at` comes as ISO 8601 (`2021-07-23T18:02:48.000Z`), as `2020-03-03 13:05:57 UTC` in
/// older releases, or as Unix seconds.
fn time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => DateTime::from_timestamp(n.as_i64()?, 0),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.to_utc())
            .ok()
            .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S UTC").ok().map(|t| t.and_utc())),
        _ => None,
    }
}

/// The channel behind a Chatwoot inbox, in the words of the payloads (it decides reply windows).
fn channel(conversation: &Value) -> String {
    match conversation["channel"].as_str().unwrap_or_default() {
        "Channel::Whatsapp" => "whatsapp".into(),
        "Channel::TwilioSms"
            if conversation["contact_inbox"]["source_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("whatsapp:")) =>
        {
            "whatsapp".into()
        }
        _ => "chatwoot".into(),
    }
}

/// The chat a conversation is: its id, the contact's name and phone, the assignee.
fn chat(conversation: &Value, contact: &Value) -> Result<ChatInfo, IngestError> {
    let assignee = &conversation["meta"]["assignee"];
    Ok(ChatInfo {
        external_id: id(&conversation["id"]).ok_or_else(|| malformed("conversation.id: missing"))?,
        full_name: text(&contact["name"]),
        phone: text(&contact["phone_number"]),
        is_group: Some(false),
        responsible_name: text(&assignee["available_name"]).or_else(|| text(&assignee["name"])),
        responsible_email: text(&assignee["email"]),
        responsible_id: id(&assignee["id"]),
        account_type: None,
        can_reply: conversation["can_reply"].as_bool(),
    })
}

/// Chatwoot's conversation status in session terms.
fn status(conversation: &Value) -> Option<SessionStatus> {
    let assigned = conversation["meta"]["assignee"].is_object();
    match conversation["status"].as_str()? {
        "open" if assigned => Some(SessionStatus::OnProgress),
        "open" | "pending" => Some(SessionStatus::Open),
        "snoozed" => Some(SessionStatus::OnHold),
        "resolved" => Some(SessionStatus::Ended),
        _ => None,
    }
}

pub fn parse(credentials: &Value, request: &HookRequest) -> Result<(Inbound, Answer), IngestError> {
    if let Some(secret) = SECRET.read(credentials) {
        check(secret, request)?;
    }
    let body: Value =
        serde_json::from_slice(request.body).map_err(|e| malformed(format!("body: not valid JSON: {e}")))?;
    let event = body["event"].as_str().ok_or_else(|| malformed("event: missing"))?;
    let mut inbound = Inbound::default();
    match event {
        "message_created" => message(&body, request, &mut inbound)?,
        "conversation_status_changed" | "conversation_updated" | "conversation_created" => {
            let conversation = &body;
            let contact = &conversation["meta"]["sender"];
            inbound.sessions.push(SessionUpdate {
                chat: chat(conversation, contact)?,
                session_id: id(&conversation["id"]),
                status: status(conversation),
                assignee_type: conversation["meta"]["assignee"].is_object().then(|| "AGENT".to_string()),
                channel: Some(channel(conversation)),
                // Chatwoot says nothing in Zoho's words but its inbox, the channel's own id:
                // chatbundle's values stand for the rest.
                reported: ReportedSession { channel_id: id(&conversation["inbox_id"]), ..Default::default() },
            });
        }
        // An edit: a message still buffered goes out edited, one delivered is shown edited.
        "message_updated" => edit(&body, request, &mut inbound)?,
        // Other events carry no message.
        _ => {}
    }
    Ok((inbound, Answer::text("ok")))
}

fn message(body: &Value, request: &HookRequest, inbound: &mut Inbound) -> Result<(), IngestError> {
    let message_id = id(&body["id"]).ok_or_else(|| malformed("id: missing"))?;
    // `message_type` is a word in webhooks, a number in some releases' nested objects.
    let direction = match &body["message_type"] {
        Value::String(t) if t == "incoming" => Some(Direction::Received),
        Value::String(t) if t == "outgoing" || t == "template" => Some(Direction::Sent),
        Value::Number(n) if n.as_i64() == Some(0) => Some(Direction::Received),
        Value::Number(n) if matches!(n.as_i64(), Some(1) | Some(3)) => Some(Direction::Sent),
        _ => None,
    };
    let attachments = attachments(&body["attachments"]);
    let content = text(&body["content"]).or_else(|| (!attachments.is_empty()).then(String::new));
    let private = body["private"].as_bool().unwrap_or(false);
    let (Some(direction), Some(content), false) = (direction, content, private) else {
        // Private notes and activity lines: counted, not stored.
        inbound.skipped.push(Some(message_id));
        return Ok(());
    };
    let conversation = &body["conversation"];
    if !conversation.is_object() {
        return Err(malformed("conversation: missing"));
    }
    let contact = if conversation["meta"]["sender"].is_object() {
        &conversation["meta"]["sender"]
    } else {
        &body["sender"]
    };
    let chat = chat(conversation, contact)?;
    let customer = Party { full_name: chat.full_name.clone(), phone: chat.phone.clone() };
    let agent = Party {
        full_name: text(&body["sender"]["available_name"]).or_else(|| text(&body["sender"]["name"])),
        phone: None,
    };
    let (sender, recipient) = match direction {
        Direction::Received => (customer, Party::default()),
        Direction::Sent => (agent, customer),
    };
    inbound.messages.push(NewMessage {
        message_id,
        direction,
        timestamp: time(&body["created_at"]).unwrap_or(request.received_at),
        chat,
        sender,
        recipient,
        text: content,
        account: None,
        channel: channel(conversation),
        attachments,
        reply_to_button: None,
    });
    Ok(())
}

/// A `message_updated` event: the message's words as they are now. One that has no words (media
/// only) or is a private note changes nothing kept.
fn edit(body: &Value, request: &HookRequest, inbound: &mut Inbound) -> Result<(), IngestError> {
    let message_id = id(&body["id"]).ok_or_else(|| malformed("id: missing"))?;
    let private = body["private"].as_bool().unwrap_or(false);
    match text(&body["content"]) {
        Some(content) if !private => inbound.edits.push(MessageEdit {
            message_id,
            text: content,
            at: time(&body["updated_at"]).unwrap_or(request.received_at),
        }),
        _ => inbound.skipped.push(Some(message_id)),
    }
    Ok(())
}

/// A message's `attachments` as Chatwoot lists them: a `file_type` (image, audio, video, file,
/// location, contact, fallback for a shared link), the file's `data_url`, a location's
/// `coordinates_lat`/`coordinates_long` and `fallback_title`.
fn attachments(list: &Value) -> Vec<Attachment> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|a| a.is_object())
        .map(|item| {
            let kind = match item["file_type"].as_str().unwrap_or_default() {
                "image" => AttachmentKind::Image,
                "audio" => AttachmentKind::Audio,
                "video" => AttachmentKind::Video,
                "file" => AttachmentKind::Document,
                "location" => AttachmentKind::Location,
                "contact" => AttachmentKind::Contact,
                "fallback" | "share" => AttachmentKind::Link,
                _ => AttachmentKind::File,
            };
            let mut a = Attachment::new(kind);
            a.url = text(&item["data_url"]).or_else(|| text(&item["external_url"]));
            a.media_id = id(&item["id"]);
            a.name = text(&item["fallback_title"]);
            a.latitude = item["coordinates_lat"].as_f64().filter(|_| kind == AttachmentKind::Location);
            a.longitude = item["coordinates_long"].as_f64().filter(|_| kind == AttachmentKind::Location);
            if kind == AttachmentKind::Document {
                // The file's name is the last part of its URL's path.
                a.filename = a
                    .url
                    .as_deref()
                    .and_then(|u| url::Url::parse(u).ok())
                    .and_then(|u| {
                        let last = u.path_segments()?.next_back()?.to_string();
                        Some(percent_encoding::percent_decode_str(&last).decode_utf8_lossy().into_owned())
                    })
                    .filter(|name| !name.is_empty());
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"1700000000.{\"event\":\"message_created\"}");
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let header = format!("sha256={hex}");
        assert!(verify("s3cret", "1700000000", b"{\"event\":\"message_created\"}", &header));
        assert!(!verify("s3cret", "1700000001", b"{\"event\":\"message_created\"}", &header));
        assert!(!verify("s3cret", "1700000000", b"{\"event\":\"message_updated\"}", &header));
        assert!(!verify("other", "1700000000", b"{\"event\":\"message_created\"}", &header));
    }

    #[test]
    fn created_at_comes_in_three_forms() {
        let expected = DateTime::parse_from_rfc3339("2021-07-23T18:02:48Z").unwrap().to_utc();
        assert_eq!(time(&Value::from("2021-07-23T18:02:48.000Z")), Some(expected));
        assert_eq!(time(&Value::from("2021-07-23 18:02:48 UTC")), Some(expected));
        assert_eq!(time(&Value::from(expected.timestamp())), Some(expected));
        assert_eq!(time(&Value::from("soon")), None);
    }
}
