//! The plain JSON API: `POST /api/v1/workspaces/{id}/messages` with one message object or an
//! array of up to 1,000.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tracing::instrument;

use super::Accepted;
use super::accept;
use super::canonical::{DEFAULT_CHANNEL, Parsed, parse_message};
use super::error::IngestError;
use crate::domain::{Account, Direction, SourceId, WorkspaceId};
use crate::http::Ids;
use crate::http::auth::{Caller, same_secret};
use crate::http::{ApiError, ErrorCode};
use crate::service::AppState;

/// The most messages one request may carry.
pub const MAX_MESSAGES_PER_REQUEST: usize = 1000;

/// The source key of messages that arrive through the JSON API.
pub const SOURCE_KEY: &str = crate::domain::API_SOURCE_KEY;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// File the messages under this source's chats, by the chat ids its channel uses: how a tool
    /// that sends replies through Twilio or WeChat adds them (`direction: "sent"`) to the
    /// customer's conversation. Messages without a `channel` take the source's.
    #[param(value_type = Option<String>)]
    source_id: Option<SourceId>,
}

#[utoipa::path(
    post,
    operation_id = "messages_post",
    path = "/api/v1/workspaces/{id}/messages",
    tag = "ingest",
    security(("ingest_key" = []), ("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id"), MessagesQuery),
    request_body = MessagesDoc,
    responses(
        (status = 202, description = "Stored durably (all or nothing) before this answer", body = Accepted),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn post_messages(
    State(state): State<AppState>,
    Ids(workspace_id): Ids<WorkspaceId>,
    caller: Caller,
    query: Result<Query<MessagesQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let workspace = state
        .workspaces
        .get(&state.store, &workspace_id)
        .await?
        .ok_or_else(|| ApiError::not_found("workspace"))?;
    if let Caller::Key(key, _) = &caller
        && !same_secret(key, &workspace.ingest_key)
    {
        return Err(caller.wrong_key(&state, &workspace.id));
    }
    if let Some(kind) = headers.get(CONTENT_TYPE)
        && !is_json(kind.to_str().unwrap_or_default())
    {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Content-Type: the body must be application/json",
        ));
    }
    // Its size was held to the inbound limit before it was read (`crate::http::body`).
    let body = body.map_err(|rejection| {
        ApiError::new(ErrorCode::InvalidBody, format!("body: {}", rejection.body_text()))
            .with_status(rejection.status())
    })?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("body: not valid JSON: {e}")))?;

    let received_at = state.clock.now();
    let parsed = match &value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(IngestError::field("body", "the array holds no messages").into());
            }
            if items.len() > MAX_MESSAGES_PER_REQUEST {
                return Err(IngestError::too_large(
                    "body",
                    format!(
                        "the array holds {} messages; the limit is {MAX_MESSAGES_PER_REQUEST}",
                        items.len()
                    ),
                )
                .into());
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_message(item, &format!("[{i}]"), received_at))
                .collect::<Result<Vec<_>, _>>()?
        }
        Value::Object(_) => vec![parse_message(&value, "", received_at)?],
        _ => {
            return Err(IngestError::field("body", "must be a message object or an array of them").into());
        }
    };

    let mut skipped = Vec::new();
    let mut messages = Vec::with_capacity(parsed.len());
    for item in parsed {
        match item {
            Parsed::Text(message) => messages.push(*message),
            Parsed::Skipped(id) => skipped.push(id),
        }
    }
    let Query(query) = query.map_err(|e| IngestError::field("source_id", e.body_text()))?;
    let outcome = match query.source_id {
        None => accept(&state, &workspace, None, messages, Vec::new(), skipped).await?,
        Some(id) => {
            let source = match state.store.get_source(&id).await? {
                Some(source) if source.workspace_id == workspace.id => source,
                _ => return Err(IngestError::field("source_id", "no such source in this workspace").into()),
            };
            if let Some(channel) = source.kind.channel() {
                for m in messages.iter_mut().filter(|m| m.channel == DEFAULT_CHANNEL) {
                    m.channel = channel.to_string();
                }
            }
            let messages = super::as_source(&source, messages);
            accept(&state, &workspace, Some(&source), messages, Vec::new(), skipped).await?
        }
    };
    Ok((StatusCode::ACCEPTED, Json(outcome)))
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5 && essence.to_ascii_lowercase().ends_with("+json"))
}

/// One message for `POST /api/v1/workspaces/{id}/messages` (documentation of the hand-written
/// parser in `ingest::canonical`, which names the field at fault in its errors).
#[allow(dead_code)]
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[schema(as = Message)]
pub struct MessageDoc {
    /// Unique per workspace and chat; a repeat is counted as a duplicate and stored once.
    #[schema(min_length = 1, max_length = 256)]
    message_id: String,
    direction: Direction,
    /// RFC 3339; the time of receipt when absent.
    timestamp: Option<String>,
    chat: ChatDoc,
    sender: Option<PartyDoc>,
    recipient: Option<PartyDoc>,
    /// Plain text, at most 64 KiB; required unless the message carries `attachments`, whose
    /// caption it then is.
    text: Option<String>,
    /// `text` (the default); a message of another type without `attachments` (a reaction, a
    /// receipt) is counted as skipped.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// The message's media (at most 20), passed on as given to webhooks that take media; an
    /// attachment's `url` must be http or https.
    #[schema(max_items = 20)]
    attachments: Option<Vec<crate::domain::Attachment>>,
    account: Option<Account>,
    /// The channel name carried into payloads (`api` by default).
    channel: Option<String>,
}

#[allow(dead_code)]
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[schema(as = MessageChat)]
pub struct ChatDoc {
    #[schema(min_length = 1, max_length = 256)]
    id: String,
    full_name: Option<String>,
    phone: Option<String>,
    is_group: Option<bool>,
    responsible_name: Option<String>,
    responsible_email: Option<String>,
    /// The owner as the sending system identifies them (an agent id): kept apart from the name.
    responsible_id: Option<String>,
}

#[allow(dead_code)]
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[schema(as = Party)]
pub struct PartyDoc {
    full_name: Option<String>,
    phone: Option<String>,
}

/// A message, or an array of up to 1,000 of them (stored all or nothing).
#[allow(dead_code)]
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = Messages)]
pub enum MessagesDoc {
    One(Box<MessageDoc>),
    Many(Vec<MessageDoc>),
}
