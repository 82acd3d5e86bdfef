//! The inbound URLs of sources, `/hooks/{kind}/{source_id}`: find the source (unknown or switched
//! off: 404, nothing read), let the channel's adapter check and parse the request, store what it
//! found, and answer the way the channel expects. Adapters are pure functions of the request, so
//! they can be tested and fuzzed alone.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tracing::{instrument, warn};

use super::error::IngestError;
use super::json::MAX_MESSAGES_PER_REQUEST;
use super::{accept, canonical, chatwoot, twilio, wechat, whatsapp, zoho_desk};
use crate::domain::{SessionStatus, SourceId, SourceKind};
use crate::http::ApiError;
use crate::service::AppState;
use crate::store::{ChatInfo, NewMessage, ReportedSession, SessionChange, Source};

/// An inbound request, as adapters see it.
pub struct HookRequest<'a> {
    pub headers: &'a HeaderMap,
    /// The public URL the channel called (`public_url` + path + query): what signatures cover.
    pub url: String,
    pub query: Vec<(String, String)>,
    pub body: &'a [u8],
    pub received_at: DateTime<Utc>,
}

impl HookRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What an adapter found in a request.
#[derive(Debug, Default)]
pub struct Inbound {
    pub messages: Vec<NewMessage>,
    /// Receipts, reactions and system events, by id where they have one: counted, not stored.
    pub skipped: Vec<Option<String>>,
    pub sessions: Vec<SessionUpdate>,
}

/// A chat's session as a channel reports it.
#[derive(Debug, Clone)]
pub struct SessionUpdate {
    pub chat: ChatInfo,
    pub session_id: Option<String>,
    pub status: Option<SessionStatus>,
    pub assignee_type: Option<String>,
    pub channel: Option<String>,
    /// What the channel said in its own words, passed through to the session event.
    pub reported: ReportedSession,
}

/// The answer the channel expects, sent once what it brought is stored.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn text(body: impl Into<String>) -> Answer {
        Answer { status: StatusCode::OK, content_type: "text/plain; charset=utf-8", body: body.into() }
    }

    pub fn json(value: serde_json::Value) -> Answer {
        Answer { status: StatusCode::OK, content_type: "application/json", body: value.to_string() }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.status, [(axum::http::header::CONTENT_TYPE, self.content_type)], self.body).into_response()
    }
}

/// A body the adapter cannot read.
pub fn malformed(detail: impl Into<String>) -> IngestError {
    IngestError::malformed(detail)
}

async fn source_for(state: &AppState, segment: &str, id: &str) -> Result<Source, ApiError> {
    let kind = SourceKind::from_path(segment).ok_or_else(|| ApiError::not_found("source"))?;
    match state.store.get_source(&SourceId::from(id)).await? {
        Some(source) if source.kind == kind && source.enabled => Ok(source),
        // Unknown, of another kind, or switched off: indistinguishable from outside.
        _ => Err(ApiError::not_found("source")),
    }
}

fn request<'a>(state: &AppState, uri: &Uri, headers: &'a HeaderMap, body: &'a [u8]) -> HookRequest<'a> {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let query = uri
        .query()
        .map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default();
    HookRequest {
        headers,
        url: format!("{}{path_and_query}", state.public_url),
        query,
        body,
        received_at: state.clock.now(),
    }
}

#[utoipa::path(
    get,
    operation_id = "hooks_get",
    path = "/hooks/{kind}/{source_id}",
    tag = "ingest",
    params(
        ("kind" = String, Path, description = "twilio, whatsapp, wechat, chatwoot or zoho-desk"),
        ("source_id" = String, Path, description = "Source id")
    ),
    responses(
        (status = 200, description = "The channel's verification handshake answered"),
        (status = 403, description = "Meta's check with a verify token other than the source's (`bad_verify_token`)", body = crate::http::ErrorBody),
        (status = 405, description = "This kind of channel makes no GET requests", body = crate::http::ErrorBody),
        crate::http::Errors
    )
)]
/// `GET /hooks/{kind}/{source_id}`: the channels' URL checks (Meta's and WeChat's handshakes,
/// Zoho Desk's validation).
#[instrument(skip_all, fields(source = %crate::telemetry::redact(&id)))]
pub async fn get(
    State(state): State<AppState>,
    Path((segment, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Answer, ApiError> {
    let source = source_for(&state, &segment, &id).await?;
    let request = request(&state, &uri, &headers, &[]);
    match source.kind {
        SourceKind::Whatsapp => Ok(whatsapp::handshake(&source.credentials, &request)?),
        SourceKind::Wechat => Ok(wechat::handshake(&source.credentials, &request)?),
        SourceKind::ZohoDesk => Ok(zoho_desk::validation()),
        SourceKind::Twilio | SourceKind::Chatwoot => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this inbound URL takes POST",
        )),
    }
}

#[utoipa::path(
    post,
    operation_id = "hooks_post",
    path = "/hooks/{kind}/{source_id}",
    tag = "ingest",
    params(
        ("kind" = String, Path, description = "twilio, whatsapp, wechat, chatwoot or zoho-desk"),
        ("source_id" = String, Path, description = "Source id")
    ),
    request_body(description = "The vendor's own webhook body, signed as the vendor signs it", content((String = "application/json"), (String = "application/x-www-form-urlencoded"), (String = "text/xml"))),
    responses(
        (status = 200, description = "Stored durably, answered as the vendor expects"),
        (status = 403, description = "Signed, but for another account than the source's `account_sid` (Twilio) or `original_id` (WeChat): `wrong_account`, nothing stored", body = crate::http::ErrorBody),
        crate::http::Errors
    )
)]
/// `POST /hooks/{kind}/{source_id}`: messages and session news from a channel.
#[instrument(skip_all, fields(source = %crate::telemetry::redact(&id)))]
pub async fn post(
    State(state): State<AppState>,
    Path((segment, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Answer, ApiError> {
    let source = source_for(&state, &segment, &id).await?;
    let body =
        body.map_err(|r| ApiError::new(r.status(), "invalid_body", format!("body: {}", r.body_text())))?;
    let request = request(&state, &uri, &headers, &body);
    let credentials = &source.credentials;
    let (mut inbound, answer) = match source.kind {
        SourceKind::Twilio => twilio::parse(credentials, &request)?,
        SourceKind::Whatsapp => whatsapp::parse(credentials, &request)?,
        SourceKind::Wechat => {
            let parsed = wechat::parse(credentials, &request)?;
            // The signature checked out; it must not carry a body other than its first.
            let (timestamp, nonce) = (request.param("timestamp"), request.param("nonce"));
            let (timestamp, nonce) = (timestamp.unwrap_or_default(), nonce.unwrap_or_default());
            if !state.replays.admit(source.id.as_str(), timestamp, nonce, request.body, request.received_at) {
                return Err(refuse(
                    SourceKind::Wechat,
                    "a signature seen before, with another body (a replay)",
                )
                .into());
            }
            parsed
        }
        SourceKind::Chatwoot => chatwoot::parse(credentials, &request)?,
        SourceKind::ZohoDesk => zoho_desk::parse(&request)?,
    };
    // Media are as the channel described them, within the limits (never a reason to refuse).
    for message in &mut inbound.messages {
        message.attachments = canonical::tidy(std::mem::take(&mut message.attachments));
    }
    within_limits(&inbound)?;
    store(&state, &source, inbound).await?;
    Ok(answer)
}

/// What a channel brought obeys the same limits as the JSON API: at most 1,000 messages a request,
/// and each message and chat within the canonical sizes, without control characters.
fn within_limits(inbound: &Inbound) -> Result<(), IngestError> {
    let count = inbound.messages.len() + inbound.skipped.len();
    if count > MAX_MESSAGES_PER_REQUEST {
        return Err(IngestError::too_large(
            "body",
            format!("holds {count} messages; the limit is {MAX_MESSAGES_PER_REQUEST}"),
        ));
    }
    for (i, message) in inbound.messages.iter().enumerate() {
        canonical::check(message, &format!("messages[{i}]"))?;
    }
    for (i, session) in inbound.sessions.iter().enumerate() {
        canonical::check_chat(&session.chat, &format!("sessions[{i}]"))?;
    }
    Ok(())
}

/// Stores what a channel brought, through the same path as the JSON API (its messages as the
/// source's business account), session news included: one transaction for the whole request.
async fn store(state: &AppState, source: &Source, inbound: Inbound) -> Result<(), ApiError> {
    let workspace = state
        .workspaces
        .get(&state.store, &source.workspace_id)
        .await?
        .ok_or_else(|| ApiError::not_found("source"))?;
    let messages = super::as_source(source, inbound.messages);
    let sessions = inbound
        .sessions
        .into_iter()
        .map(|update| SessionChange {
            workspace_id: workspace.id.clone(),
            source_key: source.id.to_string(),
            chat: update.chat,
            session_id: update.session_id,
            status: update.status,
            assignee_type: update.assignee_type,
            channel: update.channel,
            reported: update.reported,
        })
        .collect();
    accept(state, &workspace, source.id.as_str(), messages, sessions, inbound.skipped).await?;
    Ok(())
}

/// Logs and refuses a request whose signature does not match.
pub fn refuse(kind: SourceKind, why: &str) -> IngestError {
    warn!(kind = kind.as_str(), why, "refused an inbound request");
    IngestError::forged(why)
}
