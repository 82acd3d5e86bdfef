//! The canonical message: the JSON API's input, and what every channel adapter produces.
//! Parsing walks the JSON by hand so every error names the exact field at fault, with the
//! element's index inside an array (`[2].chat.id`).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::error::IngestError;
use super::inbound::SessionUpdate;
use crate::domain::{Account, Attachment, AttachmentKind, Direction, Party};
use crate::store::{ChatInfo, NewMessage};

/// The channel of a message that names none.
pub const DEFAULT_CHANNEL: &str = "api";

/// The longest message text accepted, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// The longest id (message or chat) accepted.
const MAX_ID_BYTES: usize = 256;
/// The longest name, phone, e-mail or channel accepted.
const MAX_SHORT_BYTES: usize = 512;

/// The most attachments one message may carry (Twilio's limit is 10).
pub const MAX_ATTACHMENTS: usize = 20;
/// The longest attachment URL accepted.
const MAX_URL_BYTES: usize = 2048;

/// What one element of an ingest request turned out to be.
#[derive(Debug)]
pub enum Parsed {
    /// A message to be stored: text, or media with their caption.
    Text(Box<NewMessage>),
    /// A reaction, receipt, system event or other message with neither text nor media: counted
    /// and logged (with its id, when it has one), not stored.
    Skipped(Option<String>),
}

/// A JSON path under construction: `prefix` is `""` for a lone object or `"[3]"` in an array.
#[derive(Clone, Copy)]
struct At<'a> {
    prefix: &'a str,
    object: &'a str,
}

impl At<'_> {
    fn name(&self, key: &str) -> String {
        let mut path = String::from(self.prefix);
        for part in [self.object, key] {
            if part.is_empty() {
                continue;
            }
            if !path.is_empty() && !part.starts_with('[') {
                path.push('.');
            }
            path.push_str(part);
        }
        path
    }
}

/// Parses one message object; `prefix` locates it in the request (`""` or `"[i]"`).
pub fn parse_message(value: &Value, prefix: &str, received_at: DateTime<Utc>) -> Result<Parsed, IngestError> {
    let top = At { prefix, object: "" };
    let Some(map) = value.as_object() else {
        let field = if prefix.is_empty() { "body".to_string() } else { prefix.to_string() };
        return Err(IngestError::field(field, "must be a message object"));
    };

    let skipped = || Parsed::Skipped(map.get("message_id").and_then(|v| v.as_str().map(str::to_string)));
    let attachments = attachments(map, prefix)?;
    // A message of another type with no media (a reaction, a receipt) is not one to store.
    if let Some(kind) = optional_string(map, "type", top, MAX_SHORT_BYTES)?
        && kind != "text"
        && attachments.is_empty()
    {
        return Ok(skipped());
    }
    let text = match map.get("text") {
        // Media need no text: it is their caption.
        None | Some(Value::Null) if !attachments.is_empty() => String::new(),
        None | Some(Value::Null) => {
            if map.get("attachments").is_some_and(Value::is_array) {
                return Ok(skipped());
            }
            return Err(IngestError::field(top.name("text"), "missing"));
        }
        Some(Value::String(text)) => text.clone(),
        Some(_) => return Err(IngestError::field(top.name("text"), "must be a string")),
    };
    if text.trim().is_empty() && attachments.is_empty() {
        return Err(IngestError::field(top.name("text"), "must not be empty"));
    }
    let message_id = required_id(map, "message_id", top)?;
    let direction = match map.get("direction") {
        None | Some(Value::Null) => return Err(IngestError::field(top.name("direction"), "missing")),
        Some(Value::String(s)) => {
            s.parse::<Direction>().map_err(|e| IngestError::field(top.name("direction"), e))?
        }
        Some(_) => {
            return Err(IngestError::field(top.name("direction"), "must be \"received\" or \"sent\""));
        }
    };
    let timestamp = match optional_string(map, "timestamp", top, MAX_SHORT_BYTES)? {
        None => received_at,
        Some(s) => parse_timestamp(&s).ok_or_else(|| {
            IngestError::field(
                top.name("timestamp"),
                format!("{s:?} is not an RFC 3339 time such as \"2021-02-24T16:25:29Z\""),
            )
        })?,
    };

    let chat_map = match map.get("chat") {
        None | Some(Value::Null) => return Err(IngestError::field(top.name("chat"), "missing")),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(IngestError::field(top.name("chat"), "must be an object")),
    };
    let at_chat = At { prefix, object: "chat" };
    let chat = ChatInfo {
        external_id: required_id(chat_map, "id", at_chat)?,
        full_name: optional_string(chat_map, "full_name", at_chat, MAX_SHORT_BYTES)?,
        phone: optional_string(chat_map, "phone", at_chat, MAX_SHORT_BYTES)?,
        is_group: optional_bool(chat_map, "is_group", at_chat)?,
        responsible_name: optional_string(chat_map, "responsible_name", at_chat, MAX_SHORT_BYTES)?,
        responsible_email: optional_string(chat_map, "responsible_email", at_chat, MAX_SHORT_BYTES)?,
        responsible_id: optional_string(chat_map, "responsible_id", at_chat, MAX_SHORT_BYTES)?,
        // A source's, never the request's: see `ingest::as_source`.
        account_type: None,
        can_reply: None,
    };

    let sender = optional_party(map, "sender", prefix)?;
    let recipient = optional_party(map, "recipient", prefix)?;
    let account = match map.get("account") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            let at = At { prefix, object: "account" };
            Some(Account {
                full_name: optional_string(m, "full_name", at, MAX_SHORT_BYTES)?,
                email: optional_string(m, "email", at, MAX_SHORT_BYTES)?,
                phone: optional_string(m, "phone", at, MAX_SHORT_BYTES)?,
            })
        }
        Some(_) => return Err(IngestError::field(top.name("account"), "must be an object")),
    };
    let channel = optional_string(map, "channel", top, 64)?.unwrap_or_else(|| DEFAULT_CHANNEL.to_string());

    let message = NewMessage {
        message_id,
        direction,
        timestamp,
        chat,
        sender,
        recipient,
        text,
        account,
        channel,
        attachments,
        reply_to_button: None,
    };
    check(&message, prefix)?;
    Ok(Parsed::Text(Box::new(message)))
}

/// The limits every stored message obeys, whichever route brought it (the JSON API, or a channel
/// adapter): sizes, and no control characters but tab, line feed and carriage return in the text
/// and none at all elsewhere (they would forge log lines and break pages). A message that breaks
/// one is refused whole, naming the field under `prefix`: nothing is stored, nothing is altered.
pub fn check(message: &NewMessage, prefix: &str) -> Result<(), IngestError> {
    check_text(&message.text, &path(prefix, "text"))?;
    check_chat(&message.chat, prefix)?;
    check_attachments(&message.attachments, prefix)?;
    let account = message.account.as_ref();
    fields(
        prefix,
        [
            ("message_id", Some(&message.message_id), MAX_ID_BYTES),
            ("sender.full_name", message.sender.full_name.as_ref(), MAX_SHORT_BYTES),
            ("sender.phone", message.sender.phone.as_ref(), MAX_SHORT_BYTES),
            ("recipient.full_name", message.recipient.full_name.as_ref(), MAX_SHORT_BYTES),
            ("recipient.phone", message.recipient.phone.as_ref(), MAX_SHORT_BYTES),
            ("account.full_name", account.and_then(|a| a.full_name.as_ref()), MAX_SHORT_BYTES),
            ("account.email", account.and_then(|a| a.email.as_ref()), MAX_SHORT_BYTES),
            ("account.phone", account.and_then(|a| a.phone.as_ref()), MAX_SHORT_BYTES),
            ("channel", Some(&message.channel), 64),
            ("reply_to_button", message.reply_to_button.as_ref(), MAX_SHORT_BYTES),
        ],
    )
}

/// An edit obeys the limits of the message it edits.
pub fn check_edit(edit: &crate::domain::MessageEdit, prefix: &str) -> Result<(), IngestError> {
    check_text(&edit.text, &path(prefix, "text"))?;
    fields(prefix, [("message_id", Some(&edit.message_id), MAX_ID_BYTES)])
}

/// A message's words, new or edited: at most 64 KiB, no control characters but tab, line feed
/// and carriage return. `field` names it in the refusal.
pub fn check_text(text: &str, field: &str) -> Result<(), IngestError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(IngestError::too_large(
            field,
            format!("is {} bytes; the limit is {MAX_TEXT_BYTES} (64 KiB)", text.len()),
        ));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(IngestError::field(field, format!("contains the control character U+{:04X}", c as u32)));
    }
    Ok(())
}

/// The limits of a message's media: how many, short fields, an `http(s)` URL (the transcript
/// links it), coordinates on the globe.
fn check_attachments(attachments: &[Attachment], prefix: &str) -> Result<(), IngestError> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(IngestError::field(
            path(prefix, "attachments"),
            format!("must hold at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    for (i, a) in attachments.iter().enumerate() {
        let at = |key: &str| format!("attachments[{i}].{key}");
        if let Some(url) = &a.url {
            let web =
                url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if url.len() > MAX_URL_BYTES || !web {
                return Err(IngestError::field(
                    path(prefix, &at("url")),
                    format!("must be an http or https URL of at most {MAX_URL_BYTES} bytes"),
                ));
            }
        }
        if a.latitude.is_some_and(|v| !(-90.0..=90.0).contains(&v)) {
            return Err(IngestError::field(path(prefix, &at("latitude")), "must be between -90 and 90"));
        }
        if a.longitude.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
            return Err(IngestError::field(path(prefix, &at("longitude")), "must be between -180 and 180"));
        }
        for (key, value, max) in [
            ("url", &a.url, MAX_URL_BYTES),
            ("mime_type", &a.mime_type, 255),
            ("media_id", &a.media_id, MAX_ID_BYTES),
            ("filename", &a.filename, MAX_SHORT_BYTES),
            ("caption", &a.caption, MAX_TEXT_BYTES),
            ("name", &a.name, MAX_SHORT_BYTES),
        ] {
            let Some(value) = value else { continue };
            if value.len() > max {
                return Err(IngestError::field(
                    path(prefix, &at(key)),
                    format!("must be at most {max} bytes"),
                ));
            }
            let allowed = |c: char| key == "caption" && matches!(c, '\t' | '\n' | '\r');
            if let Some(c) = value.chars().find(|c| c.is_control() && !allowed(*c)) {
                return Err(IngestError::field(
                    path(prefix, &at(key)),
                    format!("contains the control character U+{:04X}", c as u32),
                ));
            }
        }
    }
    Ok(())
}

/// A channel's media brought within [`check`]'s limits instead of refusing the request (a
/// channel cannot correct what it sent, and would retry or drop the whole request): at most
/// [`MAX_ATTACHMENTS`], control characters made spaces, a field too long or a URL that is not
/// http(s) dropped, coordinates off the globe dropped.
pub fn tidy(mut attachments: Vec<Attachment>) -> Vec<Attachment> {
    attachments.truncate(MAX_ATTACHMENTS);
    let web = |u: &String| {
        u.len() <= MAX_URL_BYTES
            && !u.chars().any(char::is_control)
            && url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
    };
    for a in &mut attachments {
        a.url = a.url.take().filter(web);
        a.latitude = a.latitude.filter(|v| (-90.0..=90.0).contains(v));
        a.longitude = a.longitude.filter(|v| (-180.0..=180.0).contains(v));
        for (field, max, caption) in [
            (&mut a.mime_type, 255, false),
            (&mut a.media_id, MAX_ID_BYTES, false),
            (&mut a.filename, MAX_SHORT_BYTES, false),
            (&mut a.caption, MAX_TEXT_BYTES, true),
            (&mut a.name, MAX_SHORT_BYTES, false),
        ] {
            *field = field.take().filter(|v| v.len() <= max).map(|v| {
                let allowed = |c: char| caption && matches!(c, '\t' | '\n' | '\r');
                v.chars().map(|c| if c.is_control() && !allowed(c) { ' ' } else { c }).collect()
            });
        }
    }
    attachments
}

/// The JSON API's `attachments`: a list of `{type, mime_type?, url?, media_id?, filename?,
/// caption?, latitude?, longitude?, name?}`; limits are checked with the rest ([`check`]).
fn attachments(map: &Map<String, Value>, prefix: &str) -> Result<Vec<Attachment>, IngestError> {
    let list = match map.get("attachments") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(IngestError::field(path(prefix, "attachments"), "must be a list")),
    };
    let mut attachments = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let object = format!("attachments[{i}]");
        let at = At { prefix, object: &object };
        let Some(m) = item.as_object() else {
            return Err(IngestError::field(at.name(""), "must be an attachment object"));
        };
        let text = |key: &str| optional_string(m, key, at, usize::MAX);
        let mime_type = text("mime_type")?;
        // Without a type, the MIME type's (or a file's), as a sender that names neither means.
        let kind = match m.get("type") {
            None | Some(Value::Null) => {
                mime_type.as_deref().map(AttachmentKind::of_mime).unwrap_or(AttachmentKind::File)
            }
            Some(Value::String(s)) => {
                s.parse::<AttachmentKind>().map_err(|e| IngestError::field(at.name("type"), e))?
            }
            Some(_) => return Err(IngestError::field(at.name("type"), "must be a string")),
        };
        let mut attachment = Attachment::new(kind);
        attachment.mime_type = mime_type;
        attachment.url = text("url")?;
        attachment.media_id = text("media_id")?;
        attachment.filename = text("filename")?;
        attachment.caption = text("caption")?;
        attachment.name = text("name")?;
        attachment.latitude = optional_number(m, "latitude", at)?;
        attachment.longitude = optional_number(m, "longitude", at)?;
        attachments.push(attachment);
    }
    Ok(attachments)
}

fn optional_number(map: &Map<String, Value>, key: &str, at: At) -> Result<Option<f64>, IngestError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(IngestError::field(at.name(key), "must be a number")),
    }
}

/// The limits of a chat's details (see [`check`]), which session news carries too.
pub fn check_chat(chat: &ChatInfo, prefix: &str) -> Result<(), IngestError> {
    fields(
        prefix,
        [
            ("chat.id", Some(&chat.external_id), MAX_ID_BYTES),
            ("chat.full_name", chat.full_name.as_ref(), MAX_SHORT_BYTES),
            ("chat.phone", chat.phone.as_ref(), MAX_SHORT_BYTES),
            ("chat.responsible_name", chat.responsible_name.as_ref(), MAX_SHORT_BYTES),
            ("chat.responsible_email", chat.responsible_email.as_ref(), MAX_SHORT_BYTES),
            ("chat.responsible_id", chat.responsible_id.as_ref(), MAX_SHORT_BYTES),
        ],
    )
}

/// The limits of a channel's session news (see [`check`]): its chat, and every value the channel
/// reports of the session in its own words (Zoho Desk's `sessionStatus`, `replyStatus`, …), which
/// go out again in `session_status` events, named by the channel's key.
pub fn check_session(session: &SessionUpdate, prefix: &str) -> Result<(), IngestError> {
    check_chat(&session.chat, prefix)?;
    let r = &session.reported;
    let reply_status = r.reply_status.as_ref().map(|s| s.as_str().to_string());
    fields(
        prefix,
        [
            ("sessionId", session.session_id.as_ref(), MAX_ID_BYTES),
            ("assigneeType", session.assignee_type.as_ref(), MAX_SHORT_BYTES),
            ("channel", session.channel.as_ref(), 64),
            ("sessionStatus", r.session_status.as_ref(), MAX_SHORT_BYTES),
            ("replyStatus", reply_status.as_ref(), MAX_SHORT_BYTES),
            ("sessionOldStatus", r.old_status.as_ref(), MAX_SHORT_BYTES),
            ("messagesCount", r.messages_count.as_ref(), MAX_SHORT_BYTES),
            ("channelId", r.channel_id.as_ref(), MAX_ID_BYTES),
            ("orgId", r.org_id.as_ref(), MAX_ID_BYTES),
            ("eventTime", r.event_time.as_ref(), MAX_SHORT_BYTES),
            ("currentAssigneeId", r.assignee_id.as_ref(), MAX_ID_BYTES),
        ],
    )
}

/// Characters that reorder the text around them (embeddings, overrides and isolates): in a name
/// or a file name, U+202E before `fdp.exe` makes `invoice…fdp.exe` read as `invoiceexe.pdf`.
fn reorders(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `value` without [`reorders`] characters.
fn without_reordering(value: &mut Option<String>) {
    if let Some(v) = value
        && v.chars().any(reorders)
    {
        v.retain(|c| !reorders(c));
    }
}

/// Removes the characters that reorder text from the names, file names and captions a message
/// carries, whichever route brought it; its text stays as the customer wrote it.
pub fn tidy_names(message: &mut NewMessage) {
    tidy_chat_names(&mut message.chat);
    for value in [&mut message.sender.full_name, &mut message.recipient.full_name] {
        without_reordering(value);
    }
    if let Some(account) = &mut message.account {
        without_reordering(&mut account.full_name);
    }
    for a in &mut message.attachments {
        for value in [&mut a.filename, &mut a.caption, &mut a.name] {
            without_reordering(value);
        }
    }
}

/// [`tidy_names`] for a chat's details.
pub fn tidy_chat_names(chat: &mut ChatInfo) {
    for value in [&mut chat.full_name, &mut chat.responsible_name] {
        without_reordering(value);
    }
}

/// Checks short fields: at most so many bytes, no control characters.
fn fields<const N: usize>(
    prefix: &str,
    fields: [(&str, Option<&String>, usize); N],
) -> Result<(), IngestError> {
    for (key, value, max) in fields {
        let Some(value) = value else { continue };
        if value.len() > max {
            return Err(IngestError::field(path(prefix, key), format!("must be at most {max} bytes")));
        }
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(IngestError::field(
                path(prefix, key),
                format!("contains the control character U+{:04X}", c as u32),
            ));
        }
    }
    Ok(())
}

/// `prefix.key`, or `key` alone.
fn path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}

/// RFC 3339, or the payloads' own `2021-02-24T16:25:29+0000` form (so a payload can be replayed).
fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%z"))
        .ok()
        .map(|t| t.to_utc())
}

/// An id: a non-empty string, or an integer (chat ids are often numeric), as text.
fn required_id(map: &Map<String, Value>, key: &str, at: At) -> Result<String, IngestError> {
    let id = match map.get(key) {
        None | Some(Value::Null) => return Err(IngestError::field(at.name(key), "missing")),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(IngestError::field(at.name(key), "must be a string")),
    };
    if id.is_empty() {
        return Err(IngestError::field(at.name(key), "must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(IngestError::field(at.name(key), format!("must be at most {MAX_ID_BYTES} bytes")));
    }
    Ok(id)
}

fn optional_string(
    map: &Map<String, Value>,
    key: &str,
    at: At,
    max: usize,
) -> Result<Option<String>, IngestError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > max => {
            Err(IngestError::field(at.name(key), format!("must be at most {max} bytes")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(IngestError::field(at.name(key), "must be a string")),
    }
}

fn optional_bool(map: &Map<String, Value>, key: &str, at: At) -> Result<Option<bool>, IngestError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(IngestError::field(at.name(key), "must be true or false")),
    }
}

fn optional_party(map: &Map<String, Value>, key: &str, prefix: &str) -> Result<Party, IngestError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(Party::default()),
        Some(Value::Object(m)) => {
            let at = At { prefix, object: key };
            Ok(Party {
                full_name: optional_string(m, "full_name", at, MAX_SHORT_BYTES)?,
                phone: optional_string(m, "phone", at, MAX_SHORT_BYTES)?,
            })
        }
        Some(_) => Err(IngestError::field(At { prefix, object: "" }.name(key), "must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z").unwrap().to_utc()
    }

    fn valid() -> Value {
        json!({"message_id": "m-1", "direction": "received", "timestamp": "2021-02-24T16:25:29Z",
               "chat": {"id": "c-1", "full_name": "John Doe", "is_group": false},
               "sender": {"full_name": "John Doe", "phone": "+97254000000"},
               "text": "Hi!"})
    }

    fn field_of(value: Value, prefix: &str) -> String {
        parse_message(&value, prefix, now()).unwrap_err().field.unwrap()
    }

    #[test]
    fn a_full_message_parses() {
        let Parsed::Text(m) = parse_message(&valid(), "", now()).unwrap() else { panic!("skipped") };
        assert_eq!(m.message_id, "m-1");
        assert_eq!(m.chat.external_id, "c-1");
        assert_eq!(m.chat.is_group, Some(false));
        assert_eq!(m.timestamp.to_rfc3339(), "2021-02-24T16:25:29+00:00");
        assert_eq!(m.channel, "api");
    }

    #[test]
    fn timestamp_defaults_to_receipt_and_accepts_the_payload_form() {
        let mut v = valid();
        v.as_object_mut().unwrap().remove("timestamp");
        let Parsed::Text(m) = parse_message(&v, "", now()).unwrap() else { panic!() };
        assert_eq!(m.timestamp, now());
        v["timestamp"] = json!("2021-02-24T16:25:29+0000");
        let Parsed::Text(m) = parse_message(&v, "", now()).unwrap() else { panic!() };
        assert_eq!(m.timestamp.to_rfc3339(), "2021-02-24T16:25:29+00:00");
    }

    #[test]
    fn errors_name_the_field_with_its_index() {
        let mut v = valid();
        v["chat"].as_object_mut().unwrap().remove("id");
        assert_eq!(field_of(v, "[2]"), "[2].chat.id");
        let mut v = valid();
        v["direction"] = json!("inbound");
        assert_eq!(field_of(v, ""), "direction");
        let mut v = valid();
        v["timestamp"] = json!("yesterday");
        assert_eq!(field_of(v, "[0]"), "[0].timestamp");
        let mut v = valid();
        v["sender"] = json!({"phone": 5});
        assert_eq!(field_of(v, ""), "sender.phone");
        let mut v = valid();
        v["text"] = json!("   ");
        assert_eq!(field_of(v, ""), "text");
        assert_eq!(field_of(json!([1]), "[4]"), "[4]");
    }

    #[test]
    fn text_over_64_kib_is_too_large() {
        let mut v = valid();
        v["text"] = json!("x".repeat(MAX_TEXT_BYTES + 1));
        let err = parse_message(&v, "", now()).unwrap_err();
        assert_eq!(err.refusal, super::super::error::Refusal::TooLarge);
        assert_eq!(err.field.as_deref(), Some("text"));
        v["text"] = json!("x".repeat(MAX_TEXT_BYTES));
        assert!(parse_message(&v, "", now()).is_ok());
    }

    #[test]
    fn control_characters_are_refused_where_they_do_not_belong() {
        let mut v = valid();
        v["text"] = json!("line one\nline two\tand a tab\r\n");
        assert!(parse_message(&v, "", now()).is_ok(), "text keeps its line breaks and tabs");
        v["text"] = json!("nul \u{0} here");
        let err = parse_message(&v, "[1]", now()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("[1].text"));
        assert!(err.detail.contains("U+0000"), "{}", err.detail);
        let mut v = valid();
        v["chat"]["full_name"] = json!("Mallory\r\nINFO forged log line");
        assert_eq!(field_of(v, ""), "chat.full_name");
        let mut v = valid();
        v["message_id"] = json!("m\u{7}1");
        assert_eq!(field_of(v, ""), "message_id");
    }

    #[test]
    fn messages_with_neither_words_nor_media_are_skipped() {
        let mut v = valid();
        v["type"] = json!("reaction");
        assert!(matches!(parse_message(&v, "", now()).unwrap(), Parsed::Skipped(_)));
        let mut v = valid();
        v.as_object_mut().unwrap().remove("text");
        v["attachments"] = json!([]);
        assert!(matches!(parse_message(&v, "", now()).unwrap(), Parsed::Skipped(_)));
    }

    #[test]
    fn media_are_read_with_their_caption_as_text() {
        let mut v = valid();
        v.as_object_mut().unwrap().remove("text");
        v["type"] = json!("image");
        v["attachments"] = json!([
            {"type": "image", "mime_type": "image/jpeg", "url": "https://x.example/y.jpg"},
            {"type": "location", "latitude": 35.68, "longitude": 139.76, "name": "Tokyo"},
        ]);
        let Parsed::Text(m) = parse_message(&v, "", now()).unwrap() else { panic!("skipped") };
        assert_eq!(m.text, "");
        assert_eq!(m.attachments.len(), 2);
        assert_eq!(m.attachments[0].url.as_deref(), Some("https://x.example/y.jpg"));
        assert_eq!((m.attachments[1].latitude, m.attachments[1].longitude), (Some(35.68), Some(139.76)));
        v["text"] = json!("caption");
        let Parsed::Text(m) = parse_message(&v, "", now()).unwrap() else { panic!("skipped") };
        assert_eq!(m.text, "caption");
    }

    #[test]
    fn an_attachment_without_a_type_is_its_mime_types_or_a_file() {
        let mut v = valid();
        v["attachments"] = json!([{"url": "https://x.example/y.jpg", "mime_type": "image/jpeg"}, {"url": "https://x.example/z"}]);
        let Parsed::Text(m) = parse_message(&v, "", now()).unwrap() else { panic!("skipped") };
        let kinds: Vec<AttachmentKind> = m.attachments.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AttachmentKind::Image, AttachmentKind::File]);
    }

    #[test]
    fn a_channels_media_are_tidied_within_the_limits() {
        let mut a = Attachment::new(AttachmentKind::Location);
        a.url = Some("javascript:alert(1)".into());
        a.latitude = Some(f64::NAN);
        a.longitude = Some(139.7);
        a.name = Some("two\nlines".into());
        a.caption = Some("keeps\nits line".into());
        a.filename = Some("x".repeat(MAX_SHORT_BYTES + 1));
        let many = vec![a; MAX_ATTACHMENTS + 3];
        let tidy = tidy(many);
        assert_eq!(tidy.len(), MAX_ATTACHMENTS);
        let a = &tidy[0];
        assert_eq!((a.url.as_deref(), a.latitude, a.longitude), (None, None, Some(139.7)));
        assert_eq!((a.name.as_deref(), a.caption.as_deref()), (Some("two lines"), Some("keeps\nits line")));
        assert_eq!(a.filename, None);
        assert!(check_attachments(&tidy, "").is_ok(), "what is tidied passes the checks");
    }

    #[test]
    fn bad_attachments_are_refused_naming_the_field() {
        let with = |attachments: Value| {
            let mut v = valid();
            v["attachments"] = attachments;
            v
        };
        assert_eq!(field_of(with(json!({"type": "image"})), ""), "attachments");
        assert_eq!(field_of(with(json!([{"type": 5}])), "[1]"), "[1].attachments[0].type");
        assert_eq!(field_of(with(json!([{"type": "hologram"}])), ""), "attachments[0].type");
        assert_eq!(
            field_of(with(json!([{"type": "image"}, {"type": "image", "url": "javascript:alert(1)"}])), ""),
            "attachments[1].url"
        );
        assert_eq!(
            field_of(with(json!([{"type": "location", "latitude": 91}])), ""),
            "attachments[0].latitude"
        );
        assert_eq!(
            field_of(with(json!([{"type": "location", "longitude": "east"}])), ""),
            "attachments[0].longitude"
        );
        assert_eq!(
            field_of(with(json!([{"type": "document", "filename": "a\u{0}b"}])), ""),
            "attachments[0].filename"
        );
        let many: Vec<Value> = (0..=MAX_ATTACHMENTS).map(|_| json!({"type": "image"})).collect();
        assert_eq!(field_of(with(Value::Array(many)), ""), "attachments");
    }

    #[test]
    fn numeric_ids_are_read_as_text() {
        let mut v = valid();
        v["chat"]["id"] = json!(4915112345678_i64);
        let Parsed::Text(m) = parse_message(&v, "", now()).unwrap() else { panic!() };
        assert_eq!(m.chat.external_id, "4915112345678");
    }

    #[test]
    fn characters_that_reorder_text_leave_names_file_names_and_captions_only() {
        let mut message = match parse_message(&valid(), "", now()).unwrap() {
            Parsed::Text(m) => *m,
            Parsed::Skipped(_) => unreachable!(),
        };
        message.sender.full_name = Some("Eve\u{202E}gnp.exe".into());
        message.chat.full_name = Some("\u{2066}John\u{2069}".into());
        message.text = "\u{202B}שלום\u{202C}".into();
        let mut file = Attachment::new(AttachmentKind::Document);
        file.filename = Some("invoice\u{202E}fdp.exe".into());
        file.caption = Some("see \u{202D}this".into());
        message.attachments = vec![file];
        tidy_names(&mut message);
        assert_eq!(message.sender.full_name.as_deref(), Some("Evegnp.exe"));
        assert_eq!(message.chat.full_name.as_deref(), Some("John"));
        assert_eq!(message.attachments[0].filename.as_deref(), Some("invoicefdp.exe"));
        assert_eq!(message.attachments[0].caption.as_deref(), Some("see this"));
        assert_eq!(message.text, "\u{202B}שלום\u{202C}", "the text is the customer's own");
    }
}
