//! Chats: `GET /api/v1/workspaces/{id}/chats`, `GET /api/v1/chats/{id}` with its transcript link,
//! `PATCH /api/v1/chats/{id}` for who owns it, `GET /api/v1/chats/{id}/sessions` for its session
//! history, `POST /api/v1/chats/{id}/rotate-token`, after which the old link answers 404, and
//! `POST /api/v1/chats/{id}/messages` to answer the chat through its channel, with
//! `GET /api/v1/chats/{id}/messages/{message_id}` for where a reply stands.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, instrument};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{ChatId, EmailAddress, Name, WorkspaceId};
use crate::domain::{Need, Principal};
use crate::http::auth::Access;
use crate::http::{ApiError, Body, Ids, nullable};
use crate::render::chat_url;
use crate::service::AppState;
use crate::store::{Chat, ChatOwner, ChatSummary, ReplyState, SessionTransition};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;
const MAX_OFFSET: u32 = 1_000_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many chats, 1 to 500 (50 by default), most recently active first.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// How many to skip.
    #[param(minimum = 0, maximum = 1000000)]
    offset: Option<u32>,
}

/// A chat in a workspace's list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatLine {
    id: i64,
    /// The chat's id in its channel (the payloads' `chat.chat_id`).
    chat_id: String,
    /// Which source it came through (`api` for the JSON API).
    source: String,
    full_name: Option<String>,
    phone: Option<String>,
    session_status: Option<String>,
    messages: u64,
    last_received_at: DateTime<Utc>,
}

impl From<ChatSummary> for ChatLine {
    fn from(c: ChatSummary) -> Self {
        ChatLine {
            id: c.id.0,
            chat_id: c.external_id,
            source: c.source_key,
            full_name: c.full_name,
            phone: c.phone,
            session_status: c.session_status.map(|s| s.as_str().to_string()),
            messages: c.messages,
            last_received_at: c.last_received_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatList {
    chats: Vec<ChatLine>,
}

/// One chat, with the link to its read-only transcript.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatView {
    id: i64,
    workspace_id: WorkspaceId,
    chat_id: String,
    full_name: Option<String>,
    phone: Option<String>,
    is_group: bool,
    responsible_name: Option<String>,
    responsible_email: Option<String>,
    /// The channel's id of the owner (Zoho Desk's assignee id), when it gave one.
    responsible_id: Option<String>,
    session_status: Option<String>,
    reply_window_expires_at: Option<DateTime<Utc>>,
    /// Whether the business can reply now (the payloads' `chat.can_reply`).
    can_reply: bool,
    /// Why, in Zoho Desk's words: ACCEPTED, SESSION_BLOCKED, SESSION_ENDED, SESSION_EXPIRED,
    /// OUTGOING_LIMIT_REACHED.
    reply_status: String,
    /// After a WeChat chat's 48-hour window: the messages it may still be sent this period.
    replies_left: Option<u32>,
    /// The WeChat account type of its source: service, subscription or enterprise.
    account_type: Option<String>,
    first_seen_at: DateTime<Utc>,
    /// Anyone with this link can read this chat's messages, and nothing else.
    transcript_url: String,
}

impl ChatView {
    fn new(workspace_id: WorkspaceId, chat: Chat, public_url: &str, now: DateTime<Utc>) -> Self {
        let reply = ReplyState::of(&chat, now);
        ChatView {
            can_reply: reply.can_reply,
            reply_status: reply.status.to_string(),
            replies_left: reply.replies_left,
            account_type: chat.account_type.map(|t| t.as_str().to_string()),
            transcript_url: chat_url(public_url, &chat.token),
            id: chat.id.0,
            workspace_id,
            chat_id: chat.external_id,
            full_name: chat.full_name,
            phone: chat.phone,
            is_group: chat.is_group,
            responsible_name: chat.responsible_name,
            responsible_email: chat.responsible_email,
            responsible_id: chat.responsible_id,
            session_status: chat.session_status.map(|s| s.as_str().to_string()),
            reply_window_expires_at: chat.reply_window_expires_at,
            first_seen_at: chat.first_seen_at,
        }
    }
}

/// A chat id from the path: anything that is not one of ours is simply not found.
fn chat_id(id: &str) -> Result<ChatId, ApiError> {
    id.parse::<i64>().ok().filter(|id| *id > 0).map(ChatId).ok_or_else(|| ApiError::not_found("chat"))
}

/// The chat of a path's id with its workspace, if `access` may do `need` there; 404 otherwise.
async fn chat(
    state: &AppState,
    access: &Principal,
    id: &str,
    need: Need,
) -> Result<(ChatId, WorkspaceId, Chat), ApiError> {
    let id = chat_id(id)?;
    let (workspace_id, chat) = state.store.get_chat(id).await?.ok_or_else(|| ApiError::not_found("chat"))?;
    super::allowed(access, &workspace_id, need, "chat")?;
    Ok((id, workspace_id, chat))
}

#[utoipa::path(get, operation_id = "chats_list", path = "/api/v1/workspaces/{id}/chats", tag = "chats", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id"), ListQuery),
    responses((status = 200, description = "The workspace's chats, most recently active first", body = ChatList),
        crate::http::Errors))]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn list(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(workspace_id): Ids<WorkspaceId>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ChatList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::field("limit", format!("must be between 1 and {MAX_LIMIT}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::field("offset", format!("must be at most {MAX_OFFSET}")));
    }
    super::workspace(&state, &access, &workspace_id, Need::Read).await?;
    let chats = state.store.list_chats(&workspace_id, limit, offset).await?;
    Ok(Json(ChatList { chats: chats.into_iter().map(ChatLine::from).collect() }))
}

#[utoipa::path(get, operation_id = "chats_show", path = "/api/v1/chats/{id}", tag = "chats", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Chat id")),
    responses((status = 200, description = "The chat and its transcript link", body = ChatView),
        crate::http::Errors))]
#[instrument(skip_all, fields(chat_id = %id))]
pub async fn show(
    Access(access): Access,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ChatView>, ApiError> {
    let (_, workspace_id, chat) = chat(&state, &access, &id, Need::Read).await?;
    Ok(Json(ChatView::new(workspace_id, chat, &state.public_url, state.clock.now())))
}

/// What erasing a chat removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErasedView {
    /// Its messages, deleted (with their attachments' references).
    messages_erased: u64,
    /// Deliveries still waiting for it, dropped: they will not go out.
    pending_deliveries_dropped: u64,
}

#[utoipa::path(delete, operation_id = "chats_erase", path = "/api/v1/chats/{id}", tag = "chats", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Chat id")),
    responses((status = 200, description = "Erased: its messages, session history, transcript link and every delivery made \
        for it are gone (what was already delivered is the receiver's); the activity log keeps a row that it was \
        erased, and by whom, with no content. A later message with the same channel id starts a new chat.",
        body = ErasedView), crate::http::Errors))]
#[instrument(skip_all, fields(chat_id = %id))]
pub async fn erase(
    Access(access): Access,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ErasedView>, ApiError> {
    let (id, _, _) = chat(&state, &access, &id, Need::Change).await?;
    let erased =
        state.store.erase_chat(id, &access.actor()).await?.ok_or_else(|| ApiError::not_found("chat"))?;
    info!(messages = erased.messages, pending_dropped = erased.pending_dropped, "chat erased");
    Ok(Json(ErasedView {
        messages_erased: erased.messages,
        pending_deliveries_dropped: erased.pending_dropped,
    }))
}

#[utoipa::path(post, operation_id = "chats_rotate_token", path = "/api/v1/chats/{id}/rotate-token", tag = "chats", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Chat id")),
    responses((status = 200, description = "The chat with its new transcript link; the old link answers 404",
        body = ChatView), crate::http::Errors))]
#[instrument(skip_all, fields(chat_id = %id))]
pub async fn rotate_token(
    Access(access): Access,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ChatView>, ApiError> {
    let (id, workspace, _) = chat(&state, &access, &id, Need::Change).await?;
    state.store.rotate_chat_token(id).await?.ok_or_else(|| ApiError::not_found("chat"))?;
    crate::service::workspaces::chat_noted(&state, &workspace, id, "transcript_rotated", &access.actor())
        .await;
    let (workspace_id, chat) = state.store.get_chat(id).await?.ok_or_else(|| ApiError::not_found("chat"))?;
    info!("transcript link rotated");
    Ok(Json(ChatView::new(workspace_id, chat, &state.public_url, state.clock.now())))
}

/// Who owns a chat: each key given replaces the stored value, `null` clears it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChat {
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub responsible_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, max_length = 320)]
    pub responsible_email: Option<Option<String>>,
}

#[utoipa::path(
    patch,
    operation_id = "chats_update",
    path = "/api/v1/chats/{id}",
    tag = "chats",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Chat id")),
    request_body = UpdateChat,
    responses(
        (status = 200, description = "The chat with its owner as set", body = ChatView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(chat_id = %id))]
pub async fn update(
    Access(access): Access,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<UpdateChat>,
) -> Result<Json<ChatView>, ApiError> {
    let (id, workspace, _) = chat(&state, &access, &id, Need::Change).await?;
    let owner = ChatOwner {
        name: body
            .responsible_name
            .map(|n| n.map(|n| super::name("responsible_name", &n).map(Name::into_string)).transpose())
            .transpose()?,
        email: body
            .responsible_email
            .map(|e| {
                e.map(|e| super::email("responsible_email", &e).map(EmailAddress::into_string)).transpose()
            })
            .transpose()?,
    };
    state.store.set_chat_owner(id, owner).await?.ok_or_else(|| ApiError::not_found("chat"))?;
    crate::service::workspaces::chat_noted(&state, &workspace, id, "chat_owner_set", &access.actor()).await;
    let (workspace_id, chat) = state.store.get_chat(id).await?.ok_or_else(|| ApiError::not_found("chat"))?;
    info!("chat owner set");
    Ok(Json(ChatView::new(workspace_id, chat, &state.public_url, state.clock.now())))
}

/// One move of a chat's session.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionView {
    at: DateTime<Utc>,
    /// The status before; null for the chat's first.
    from: Option<String>,
    /// CREATED, OPEN, ON_PROGRESS, ON_HOLD, ENDED, BLOCKED, or a newer status as a source sent it.
    to: String,
    /// What moved it: `message` (the first message, or a customer's message after ENDED),
    /// `reply` (the business answered an open session), `reported` (the source said so), or
    /// `earlier` (the status the chat had when history began to be kept).
    cause: String,
    /// The source the news came through: `api` or a source id.
    source: String,
    /// The reply status the source reported with it (Zoho Desk's `replyStatus`).
    reply_status: Option<String>,
}

impl From<SessionTransition> for TransitionView {
    fn from(t: SessionTransition) -> Self {
        TransitionView {
            at: t.at,
            from: t.from,
            to: t.to,
            cause: t.cause.as_str().to_string(),
            source: t.source_key,
            reply_status: t.reply_status.map(|r| r.to_string()),
        }
    }
}

/// A chat's session history, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionHistory {
    chat_id: i64,
    /// The status the chat is in now (the last transition's `to`).
    session_status: Option<String>,
    transitions: Vec<TransitionView>,
}

#[utoipa::path(get, operation_id = "chats_sessions", path = "/api/v1/chats/{id}/sessions", tag = "chats", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Chat id")),
    responses((status = 200, description = "Each move of the chat's session, oldest first", body = SessionHistory),
        crate::http::Errors))]
#[instrument(skip_all, fields(chat_id = %id))]
pub async fn sessions(
    Access(access): Access,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionHistory>, ApiError> {
    let (id, _, _) = chat(&state, &access, &id, Need::Read).await?;
    let transitions = state.store.session_history(id).await?.ok_or_else(|| ApiError::not_found("chat"))?;
    Ok(Json(SessionHistory {
        chat_id: id.0,
        session_status: transitions.last().map(|t| t.to.clone()),
        transitions: transitions.into_iter().map(TransitionView::from).collect(),
    }))
}

/// A reply to a chat: `text`, or (WhatsApp, e.g. after its 24-hour window) an approved `template`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReplyBody {
    /// The words, up to 4,096 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096)]
    pub text: Option<String>,
    /// An approved WhatsApp template instead of words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateBody>,
    /// The same key again within 24 hours answers with the first reply and sends nothing more.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 255)]
    pub idempotency_key: Option<String>,
}

/// An approved WhatsApp message template.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    /// Meta: the template's name. Twilio: its Content SID (`HX…`).
    pub name: String,
    /// Meta: the language it was approved in (`en_US`); Twilio ignores it.
    #[serde(default)]
    pub language: String,
    /// The values of `{{1}}`, `{{2}}`, … in order.
    #[serde(default)]
    pub parameters: Vec<String>,
}

/// A reply and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplyView {
    /// The reply's message id: the chat's transcript, bundles and webhooks carry it as a `sent`
    /// message, and `GET /api/v1/chats/{id}/messages/{message_id}` follows it.
    message_id: String,
    /// `queued` (waiting, being sent or waiting for a retry), `sent` (the channel accepted it) or
    /// `failed` (refused by the channel, or every retry failed: it will not be sent).
    status: String,
    /// The channel's id of the message once it accepted it (Twilio's `SM…`, Meta's `wamid.…`,
    /// Chatwoot's message id); WeChat gives none.
    vendor_id: Option<String>,
    /// What the channel said when it refused, or why the last try failed: its own code and words.
    error: Option<crate::domain::reply::VendorError>,
    attempts: u32,
    created_at: DateTime<Utc>,
    /// When it was sent or given up.
    finished_at: Option<DateTime<Utc>>,
}

impl From<crate::store::Reply> for ReplyView {
    fn from(r: crate::store::Reply) -> Self {
        ReplyView {
            message_id: r.message_id,
            status: r.status.as_str().to_string(),
            vendor_id: r.vendor_id,
            error: r.error,
            attempts: r.attempts,
            created_at: r.created_at,
            finished_at: r.finished_at,
        }
    }
}

#[utoipa::path(post, operation_id = "chats_reply", path = "/api/v1/chats/{id}/messages", tag = "chats", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Chat id (the `chat.id` of every payload)")),
    request_body = NewReplyBody,
    responses((status = 202, description = "Stored as a `sent` message of the chat and queued: it is sent through the \
        chat's own channel (Twilio, Meta's Cloud API, WeChat, Chatwoot, or the workspace's `reply_url` for JSON API chats), \
        retried on server errors and timeouts. An `idempotency_key` used on this chat within 24 hours answers with that \
        reply instead.", body = ReplyView),
        (status = 409, description = "The chat cannot be answered now: `reply_window_closed` (the channel does not take a \
        reply now), `reply_not_supported` (Zoho Desk chats, JSON API chats without a `reply_url`) or `reply_not_configured` \
        (the source lacks a credential sending needs). Nothing is stored.", body = crate::http::ErrorBody),
        crate::http::Errors))]
#[instrument(skip_all, fields(chat_id = %id))]
pub async fn reply(
    Access(access): Access,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<NewReplyBody>,
) -> Result<(axum::http::StatusCode, Json<ReplyView>), ApiError> {
    let (_, workspace, chat) = chat(&state, &access, &id, Need::Change).await?;
    let body_of = match (body.text, body.template) {
        (Some(_), Some(_)) => return Err(ApiError::field("template", "give text or a template, not both")),
        (None, None) => return Err(ApiError::field("text", "missing (or give a template)")),
        (Some(text), None) => crate::domain::reply::ReplyBody::Text(text),
        (None, Some(t)) => crate::domain::reply::ReplyBody::Template(crate::domain::reply::Template {
            name: t.name,
            language: t.language,
            parameters: t.parameters,
        }),
    };
    let request =
        crate::service::replies::ReplyRequest { body: body_of, idempotency_key: body.idempotency_key };
    let answered = crate::service::replies::answer(&state, &access, (workspace, chat), request).await?;
    info!(message_id = %answered.reply.message_id, new = answered.new, "reply queued");
    Ok((axum::http::StatusCode::ACCEPTED, Json(answered.reply.into())))
}

#[utoipa::path(get, operation_id = "chats_reply_status", path = "/api/v1/chats/{id}/messages/{message_id}", tag = "chats", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Chat id"), ("message_id" = String, Path, description = "The reply's message id")),
    responses((status = 200, description = "Where the reply stands", body = ReplyView), crate::http::Errors))]
#[instrument(skip_all, fields(chat_id = %id))]
pub async fn reply_status(
    Access(access): Access,
    State(state): State<AppState>,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Json<ReplyView>, ApiError> {
    let (id, _, _) = chat(&state, &access, &id, Need::Read).await?;
    let reply = state.store.reply(id, &message_id).await?.ok_or_else(|| ApiError::not_found("reply"))?;
    Ok(Json(reply.into()))
}
