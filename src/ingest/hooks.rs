//! The inbound URLs of sources, `/hooks/{kind}/{key}` (the route's parameter keeps the contract's
//! name, `source_id`; it holds the source's inbound key): find the source (unknown, rotated away or
//! switched off: 404, nothing read), let the channel's adapter check and parse the request, store
//! what it found, and answer the way the channel expects. Adapters are pure functions of the request, so
//! they can be tested and fuzzed alone.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use tracing::instrument;

use super::error::{IngestError, Refusal};
use super::inbound::{Answer, HookRequest, Inbound, refuse};
use super::json::MAX_MESSAGES_PER_REQUEST;
use super::{accept, canonical, chatwoot, twilio, wechat, whatsapp, zoho_desk};
use crate::domain::{InboundKey, SourceKind};
use crate::http::server::Client;
use crate::http::throttle::Guessed;
use crate::http::{ApiError, ErrorCode};
use crate::service::AppState;
use crate::store::{SessionChange, Source};
use sha2::{Digest, Sha256};

async fn source_for(state: &AppState, segment: &str, key: &str) -> Result<Source, ApiError> {
    let kind = SourceKind::from_path(segment).ok_or_else(|| ApiError::not_found("source"))?;
    let key = InboundKey::parse(key).ok_or_else(|| ApiError::not_found("source"))?;
    match state.store.source_by_inbound_key(&key).await? {
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
        ("source_id" = String, Path, description = "The source's inbound key: the last part of its `inbound_url`")
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
    client: Client,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Answer, ApiError> {
    let source = source_for(&state, &segment, &id).await?;
    let outcome = check(&state, client, &source, &uri, &headers).await;
    counted(&state, &source, outcome)
}

/// A channel's URL check, answered.
async fn check(
    state: &AppState,
    client: Client,
    source: &Source,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Answer, ApiError> {
    let request = request(state, uri, headers, &[]);
    match source.kind {
        SourceKind::Whatsapp => {
            signed(state, client, source, whatsapp::handshake(&source.credentials, &request))
        }
        SourceKind::Wechat => {
            let answer = signed(state, client, source, wechat::handshake(&source.credentials, &request))?;
            // A URL check's signature covers no body: remembered with its echo, so that it
            // cannot be posted again with a body.
            let echo = format!("GET {}", request.param("echostr").unwrap_or_default());
            signed(state, client, source, first_use(state, source, &request, echo.as_bytes()).await?)?;
            Ok(answer)
        }
        SourceKind::ZohoDesk => Ok(zoho_desk::validation()),
        SourceKind::Twilio | SourceKind::Chatwoot => {
            Err(ApiError::new(ErrorCode::MethodNotAllowed, "this inbound URL takes POST"))
        }
    }
}

#[utoipa::path(
    post,
    operation_id = "hooks_post",
    path = "/hooks/{kind}/{source_id}",
    tag = "ingest",
    params(
        ("kind" = String, Path, description = "twilio, whatsapp, wechat, chatwoot or zoho-desk"),
        ("source_id" = String, Path, description = "The source's inbound key: the last part of its `inbound_url`")
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
    client: Client,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Answer, ApiError> {
    let source = source_for(&state, &segment, &id).await?;
    let outcome = receive(&state, client, &source, &uri, &headers, body).await;
    counted(&state, &source, outcome)
}

/// Counts a request to `source`'s inbound URL, with why it was refused when it was (what the
/// source's card and API show: an admin finds a mistyped secret this way).
fn counted(state: &AppState, source: &Source, outcome: Result<Answer, ApiError>) -> Result<Answer, ApiError> {
    let refused = outcome.as_ref().err().map(|e| {
        let code = serde_json::to_value(e.code).ok().and_then(|v| v.as_str().map(str::to_string));
        (e.status.as_u16(), format!("{}: {}", code.unwrap_or_default(), e.detail))
    });
    state.traffic.saw(&source.id, state.clock.now(), refused);
    outcome
}

/// A channel's request, checked, parsed and stored.
async fn receive(
    state: &AppState,
    client: Client,
    source: &Source,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Answer, ApiError> {
    let body = body.map_err(|r| {
        ApiError::new(ErrorCode::InvalidBody, format!("body: {}", r.body_text())).with_status(r.status())
    })?;
    let request = request(state, uri, headers, &body);
    let credentials = &source.credentials;
    let (mut inbound, answer) = match source.kind {
        SourceKind::Twilio => signed(state, client, source, twilio::parse(credentials, &request))?,
        SourceKind::Whatsapp => signed(state, client, source, whatsapp::parse(credentials, &request))?,
        SourceKind::Wechat => {
            let parsed = signed(state, client, source, wechat::parse(credentials, &request))?;
            // The signature checked out; it must not carry a body other than its first.
            signed(state, client, source, first_use(state, source, &request, request.body).await?)?;
            parsed
        }
        SourceKind::Chatwoot => signed(state, client, source, chatwoot::parse(credentials, &request))?,
        SourceKind::ZohoDesk => zoho_desk::parse(&request)?,
    };
    // Media are as the channel described them, within the limits (never a reason to refuse).
    for message in &mut inbound.messages {
        message.attachments = canonical::tidy(std::mem::take(&mut message.attachments));
    }
    within_limits(&inbound)?;
    store(state, source, inbound).await?;
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
        canonical::check_session(session, &format!("sessions[{i}]"))?;
    }
    for (i, edit) in inbound.edits.iter().enumerate() {
        canonical::check_edit(edit, &format!("edits[{i}]"))?;
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
    accept(state, &workspace, Some(source), messages, sessions, inbound.skipped).await?;
    for edit in &inbound.edits {
        state.store.edit_message(&workspace.id, source.id.as_str(), edit).await?;
    }
    Ok(())
}

/// The answer to what an adapter made of a request: a signature that does not match counts as a
/// guess at the source's secret, from `client` ([`crate::http::throttle`]), and is answered `429`
/// once that client is shut out of guessing it; a valid signature is never held up.
fn signed<T>(
    state: &AppState,
    client: Client,
    source: &Source,
    result: Result<T, IngestError>,
) -> Result<T, ApiError> {
    match result {
        Err(e) if e.refusal == Refusal::BadSignature => {
            match state.throttle.refuse(client.net(), Guessed::Source(source.id.clone())) {
                Some(wait) => Err(ApiError::throttled(wait)),
                None => Err(e.into()),
            }
        }
        other => other.map_err(ApiError::from),
    }
}

/// Whether a WeChat request's signed timestamp and nonce are used for the first time, or again
/// with the same body (WeChat's redelivery), on any daemon of the store: a signature that does
/// not cover the body must not carry another one.
async fn first_use(
    state: &AppState,
    source: &Source,
    request: &HookRequest<'_>,
    body: &[u8],
) -> Result<Result<(), IngestError>, ApiError> {
    let signed = format!(
        "{}.{}",
        request.param("timestamp").unwrap_or_default(),
        request.param("nonce").unwrap_or_default()
    );
    let digest: [u8; 32] = Sha256::digest(body).into();
    if state.store.admit_signed(&source.id, &signed, digest, request.received_at).await? {
        Ok(Ok(()))
    } else {
        Ok(Err(refuse(SourceKind::Wechat, "a signature seen before, with another body (a replay)")))
    }
}
