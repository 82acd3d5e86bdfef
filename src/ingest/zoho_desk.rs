//! Zoho Desk instant messaging: a JSON array of events per request, each `{payload, eventType,
//! eventTime, orgId}`. `IM_Message_Add` carries a message (direction `IN`: received, `OUT`:
//! sent), `IM_Session_Status` the session's status. Zoho checks the URL with a `GET` when the
//! webhook is saved. Zoho Desk signs nothing the body depends on, so the unguessable source id in
//! the path is what authenticates these requests.

use chrono::DateTime;
use serde_json::Value;

use super::error::IngestError;
use super::inbound::{Answer, HookRequest, Inbound, SessionUpdate, malformed};
use crate::domain::session::{ReplyStatus, ReportedSession};
use crate::domain::{ChatInfo, NewMessage};
use crate::domain::{Direction, Party, SessionStatus};
use tracing::warn;

/// `GET`: Zoho's check that the URL answers.
pub fn validation() -> Answer {
    Answer::text("ok")
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

/// `integration` (WHATSAPP, WECHAT, TELEGRAM, …) in the payloads' words.
fn channel(payload: &Value) -> String {
    match payload["integration"].as_str().map(str::to_ascii_lowercase) {
        Some(name) if !name.is_empty() => name,
        _ => "zoho_desk".into(),
    }
}

pub fn parse(request: &HookRequest) -> Result<(Inbound, Answer), IngestError> {
    let body: Value =
        serde_json::from_slice(request.body).map_err(|e| malformed(format!("body: not valid JSON: {e}")))?;
    let events = match &body {
        Value::Array(events) => events.clone(),
        Value::Object(_) => vec![body.clone()],
        _ => return Err(malformed("body: must be an array of events")),
    };
    let mut inbound = Inbound::default();
    for (i, event) in events.iter().enumerate() {
        let payload = &event["payload"];
        match event["eventType"].as_str() {
            Some("IM_Message_Add") => message(payload, i, request, &mut inbound)?,
            Some("IM_Session_Status") => {
                let session = id(&payload["sessionId"])
                    .ok_or_else(|| malformed(format!("[{i}].payload.sessionId: missing")))?;
                let status = payload["sessionStatus"].as_str();
                inbound.sessions.push(SessionUpdate {
                    chat: ChatInfo {
                        external_id: session.clone(),
                        // An id, not a name: it goes to its own field.
                        responsible_id: id(&payload["currentAssigneeId"]),
                        ..ChatInfo::default()
                    },
                    session_id: Some(session),
                    status: status.and_then(SessionStatus::parse),
                    assignee_type: text(&payload["assigneeType"]),
                    channel: None,
                    reported: reported(event, payload),
                });
            }
            // Delivery receipts and anything newer carry no message.
            _ => {}
        }
    }
    Ok((inbound, Answer::text("ok")))
}

fn message(
    payload: &Value,
    i: usize,
    request: &HookRequest,
    inbound: &mut Inbound,
) -> Result<(), IngestError> {
    let message_id = id(&payload["id"]).ok_or_else(|| malformed(format!("[{i}].payload.id: missing")))?;
    let session =
        id(&payload["sessionId"]).ok_or_else(|| malformed(format!("[{i}].payload.sessionId: missing")))?;
    let direction = match payload["direction"].as_str() {
        Some("IN") => Direction::Received,
        Some("OUT") => Direction::Sent,
        _ => return Err(malformed(format!("[{i}].payload.direction: must be IN or OUT"))),
    };
    let is_text = payload["messageType"].as_str().is_none_or(|t| t.eq_ignore_ascii_case("TEXT"));
    let (true, Some(content)) = (is_text, text(&payload["text"])) else {
        inbound.skipped.push(Some(message_id));
        return Ok(());
    };
    let actor = &payload["actor"];
    let actor = Party {
        full_name: text(&actor["name"]),
        phone: text(&actor["externalId"]).filter(|e| e.starts_with('+')),
    };
    let timestamp = id(&payload["createdTime"])
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(request.received_at);
    let customer = (direction == Direction::Received).then(|| actor.clone());
    inbound.messages.push(NewMessage {
        message_id,
        direction,
        timestamp,
        chat: ChatInfo {
            external_id: session,
            full_name: customer.as_ref().and_then(|c| c.full_name.clone()),
            phone: customer.as_ref().and_then(|c| c.phone.clone()),
            is_group: Some(false),
            ..ChatInfo::default()
        },
        sender: actor,
        recipient: Party::default(),
        text: content,
        account: None,
        channel: channel(payload),
        // Zoho Desk's IM webhooks name an attachment's type but not where it is.
        attachments: Vec::new(),
        reply_to_button: None,
    });
    Ok(())
}

/// What Zoho Desk says of a session, as it says it: passed through to the `session_status` event.
/// A status or reply status chatbundle does not know is kept as sent, and logged.
fn reported(event: &Value, payload: &Value) -> ReportedSession {
    let status = text(&payload["sessionStatus"]);
    let unknown_status = status.filter(|s| SessionStatus::parse(s).is_none());
    let reply_status = text(&payload["replyStatus"]).map(|r| ReplyStatus::parse(&r));
    if let Some(status) = &unknown_status {
        warn!(status, "Zoho Desk sent a session status chatbundle does not know; passed through as sent");
    }
    if let Some(reply) = reply_status.as_ref().filter(|r| !r.is_known()) {
        warn!(
            reply = reply.as_str(),
            "Zoho Desk sent a reply status chatbundle does not know; passed through as sent"
        );
    }
    ReportedSession {
        reply_status,
        session_status: unknown_status,
        old_status: text(&payload["sessionOldStatus"]),
        messages_count: id(&payload["messagesCount"]),
        channel_id: id(&payload["channelId"]),
        org_id: id(&event["orgId"]),
        event_time: id(&event["eventTime"]),
        assignee_id: id(&payload["currentAssigneeId"]),
    }
}
