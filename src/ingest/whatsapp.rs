//! WhatsApp through Meta's Cloud API. The URL is checked once with a `GET` handshake
//! (`hub.verify_token` must match, `hub.challenge` is echoed); notifications are `POST`ed as JSON
//! signed with `X-Hub-Signature-256` (`sha256=` + hex HMAC-SHA256 of the raw body, keyed with
//! the app secret). One notification can carry many messages and receipts.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::error::IngestError;
use super::inbound::{Answer, HookRequest, Inbound, malformed, refuse};
use crate::domain::{Attachment, AttachmentKind, Direction, Party, SourceKind};
use crate::store::{ChatInfo, NewMessage};

use crate::domain::credentials::whatsapp::{APP_SECRET, VERIFY_TOKEN};

/// `GET`: Meta's subscription check.
pub fn handshake(credentials: &Value, request: &HookRequest) -> Result<Answer, IngestError> {
    let expected = VERIFY_TOKEN.read(credentials).unwrap_or_default();
    let mode = request.param("hub.mode");
    let token = request.param("hub.verify_token").unwrap_or_default();
    let challenge = request.param("hub.challenge");
    let matches: bool = subtle::ConstantTimeEq::ct_eq(token.as_bytes(), expected.as_bytes()).into();
    match (mode, challenge) {
        (Some("subscribe"), Some(challenge)) if matches && !expected.is_empty() => {
            Ok(Answer::text(challenge))
        }
        _ => Err(IngestError::bad_verify_token()),
    }
}

/// Whether `header` is `sha256=` + the hex HMAC-SHA256 of `body` under `secret`.
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else { return false };
    let Some(given) = decode_hex(hex) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

pub(crate) fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

fn string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn unix_seconds(value: &Value) -> Option<DateTime<Utc>> {
    let seconds = match value {
        Value::String(s) => s.parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    DateTime::from_timestamp(seconds, 0)
}

/// `POST`: messages, the business app's echoes of what it sent, and receipts.
pub fn parse(credentials: &Value, request: &HookRequest) -> Result<(Inbound, Answer), IngestError> {
    let secret = APP_SECRET.read(credentials).unwrap_or_default();
    let header = request
        .header("x-hub-signature-256")
        .ok_or_else(|| refuse(SourceKind::Whatsapp, "missing X-Hub-Signature-256"))?;
    if !verify(secret, request.body, header) {
        return Err(refuse(SourceKind::Whatsapp, "X-Hub-Signature-256 does not match"));
    }
    let body: Value =
        serde_json::from_slice(request.body).map_err(|e| malformed(format!("body: not valid JSON: {e}")))?;
    let entries = body["entry"].as_array().ok_or_else(|| malformed("entry: missing"))?;
    let mut inbound = Inbound::default();
    for change in entries.iter().filter_map(|e| e["changes"].as_array()).flatten() {
        // `messages`: what customers send; `smb_message_echoes`: what the business sends from the
        // WhatsApp Business app on the same number (coexistence), echoed so both sides are kept.
        if change["field"] != "messages" && change["field"] != "smb_message_echoes" {
            continue;
        }
        let value = &change["value"];
        let business_phone = value["metadata"]["display_phone_number"].as_str().map(str::to_string);
        // Contacts name the customers of this notification, by phone (wa_id) or, where the customer
        // shares no phone number, by a business-scoped user id.
        let contacts: Vec<&Value> =
            value["contacts"].as_array().map(|c| c.iter().collect()).unwrap_or_default();
        let name_of = |id: &str| {
            contacts
                .iter()
                .find(|c| {
                    string(&c["wa_id"]).as_deref() == Some(id) || string(&c["user_id"]).as_deref() == Some(id)
                })
                .and_then(|c| c["profile"]["name"].as_str())
                .map(str::to_string)
        };
        // Delivery receipts (sent, delivered, read, failed) are not messages.
        for status in value["statuses"].as_array().into_iter().flatten() {
            inbound.skipped.push(string(&status["id"]));
        }
        for message in value["messages"].as_array().into_iter().flatten() {
            let id = string(&message["id"])
                .ok_or_else(|| malformed("entry[].changes[].value.messages[].id: missing"))?;
            // The customer: a phone number (wa_id) if shared, else the business-scoped user id.
            let customer = string(&message["from"])
                .or_else(|| string(&message["from_user_id"]))
                .or_else(|| string(&message["user_id"]))
                .ok_or_else(|| malformed("entry[].changes[].value.messages[].from: missing"))?;
            let has_phone = string(&message["from"]).is_some();
            let Some((text, attachments, reply_to_button)) = content(message) else {
                inbound.skipped.push(Some(id));
                continue;
            };
            let phone = has_phone.then(|| format!("+{}", customer.trim_start_matches('+')));
            let name = name_of(&customer);
            inbound.messages.push(NewMessage {
                message_id: id,
                direction: Direction::Received,
                timestamp: unix_seconds(&message["timestamp"]).unwrap_or(request.received_at),
                chat: ChatInfo {
                    external_id: customer,
                    full_name: name.clone(),
                    phone: phone.clone(),
                    is_group: Some(false),
                    ..ChatInfo::default()
                },
                sender: Party { full_name: name, phone },
                recipient: Party {
                    full_name: None,
                    phone: business_phone.clone().map(|p| format!("+{}", p.trim_start_matches('+'))),
                },
                text,
                account: None,
                channel: "whatsapp".into(),
                attachments,
                reply_to_button,
            });
        }
        for echo in value["message_echoes"].as_array().into_iter().flatten() {
            let id = string(&echo["id"])
                .ok_or_else(|| malformed("entry[].changes[].value.message_echoes[].id: missing"))?;
            let customer = string(&echo["to"])
                .ok_or_else(|| malformed("entry[].changes[].value.message_echoes[].to: missing"))?;
            let Some((text, attachments, _)) = content(echo) else {
                inbound.skipped.push(Some(id));
                continue;
            };
            let phone = Some(format!("+{}", customer.trim_start_matches('+')));
            let business = string(&echo["from"]).or(business_phone.clone());
            inbound.messages.push(NewMessage {
                message_id: id,
                direction: Direction::Sent,
                timestamp: unix_seconds(&echo["timestamp"]).unwrap_or(request.received_at),
                chat: ChatInfo {
                    external_id: customer,
                    phone: phone.clone(),
                    is_group: Some(false),
                    ..ChatInfo::default()
                },
                sender: Party {
                    full_name: None,
                    phone: business.map(|p| format!("+{}", p.trim_start_matches('+'))),
                },
                recipient: Party { full_name: None, phone },
                text,
                account: None,
                channel: "whatsapp".into(),
                attachments,
                reply_to_button: None,
            });
        }
    }
    Ok((inbound, Answer::text("EVENT_RECEIVED")))
}

/// What a message says: its text, or its media (image, video, audio, document, sticker, location,
/// contacts) with their caption as its text, or a customer's answer by a template's quick-reply
/// button (`button`) or an interactive message's button or list row (`interactive`:
/// `button_reply`, `list_reply`) as the choice's title, with its payload id. `None` for what is
/// not kept: reactions, system notices, unsupported types, and text without words.
fn content(message: &Value) -> Option<(String, Vec<Attachment>, Option<String>)> {
    let kind = message["type"].as_str()?;
    let object = &message[kind];
    let mut attachments = Vec::new();
    match kind {
        "text" => {
            let body = object["body"].as_str().filter(|t| !t.trim().is_empty())?;
            return Some((body.to_string(), attachments, None));
        }
        "button" => {
            let title = object["text"].as_str().filter(|t| !t.trim().is_empty())?;
            return Some((title.to_string(), attachments, string(&object["payload"])));
        }
        "interactive" => {
            let choice = match object["type"].as_str()? {
                answer @ ("button_reply" | "list_reply") => &object[answer],
                _ => return None,
            };
            let title = choice["title"].as_str().filter(|t| !t.trim().is_empty())?;
            return Some((title.to_string(), attachments, string(&choice["id"])));
        }
        "image" | "video" | "audio" | "document" | "sticker" => {
            let kind = match kind {
                "image" => AttachmentKind::Image,
                "video" => AttachmentKind::Video,
                "audio" if object["voice"].as_bool() == Some(true) => AttachmentKind::Voice,
                "audio" => AttachmentKind::Audio,
                "document" => AttachmentKind::Document,
                _ => AttachmentKind::Sticker,
            };
            let mut a = Attachment::new(kind);
            a.mime_type = string(&object["mime_type"]);
            a.media_id = string(&object["id"]);
            a.url = string(&object["url"]);
            a.filename = string(&object["filename"]);
            a.caption = string(&object["caption"]);
            attachments.push(a);
        }
        "location" => {
            let mut a = Attachment::new(AttachmentKind::Location);
            a.latitude = object["latitude"].as_f64();
            a.longitude = object["longitude"].as_f64();
            a.name = string(&object["name"]).or_else(|| string(&object["address"]));
            a.url = string(&object["url"]);
            attachments.push(a);
        }
        "contacts" => {
            for contact in message["contacts"].as_array().into_iter().flatten() {
                let mut a = Attachment::new(AttachmentKind::Contact);
                a.name = string(&contact["name"]["formatted_name"])
                    .or_else(|| string(&contact["phones"][0]["phone"]));
                attachments.push(a);
            }
        }
        _ => return None,
    }
    if attachments.is_empty() {
        return None;
    }
    let caption = attachments.iter().find_map(|a| a.caption.clone()).unwrap_or_default();
    Some((caption, attachments, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_published_hmac_vector() {
        let header = "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914";
        assert!(verify("secret", b"test", header));
        assert!(!verify("secret", b"test ", header), "a changed body fails");
        assert!(!verify("other", b"test", header), "a wrong secret fails");
        assert!(!verify(
            "secret",
            b"test",
            "0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
        ));
        assert!(!verify("secret", b"test", "sha256=zz"));
    }
}
