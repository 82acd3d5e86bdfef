//! Answering a chat, for the API and the chat's page alike: the channel's rules first, then the
//! reply is stored as a `sent` message of the chat and queued, in one commit, for the reply
//! worker ([`crate::reply`]) to send through the chat's channel.

use chrono::Duration as ChronoDuration;

use crate::domain::credentials;
use crate::domain::reply::{
    self, IDEMPOTENCY_WINDOW, MAX_IDEMPOTENCY_KEY, MAX_REPLY_CHARS, ReplyBody, ReplyRoute,
};
use crate::domain::{API_SOURCE_KEY, Chat, ChatInfo, Direction, Party, Principal, WorkspaceId};
use crate::http::{ApiError, ErrorCode};
use crate::service::AppState;
use crate::store::{NewMessage, NewReply, Reply, Source, StoredMessage, Workspace};

/// A reply as asked for.
#[derive(Debug, Clone)]
pub struct ReplyRequest {
    pub body: ReplyBody,
    pub idempotency_key: Option<String>,
}

/// What became of a request to answer a chat.
#[derive(Debug, Clone)]
pub struct Answered {
    pub reply: Reply,
    /// False when an idempotency key found an earlier reply (nothing new was sent).
    pub new: bool,
}

/// Checks what can be checked of a reply before its chat is known: the words' length, the
/// template's fields, the idempotency key's.
pub fn check(request: &ReplyRequest) -> Result<(), ApiError> {
    match &request.body {
        ReplyBody::Text(text) => {
            if text.trim().is_empty() {
                return Err(ApiError::field("text", "must not be empty"));
            }
            if text.chars().count() > MAX_REPLY_CHARS {
                return Err(ApiError::field("text", format!("must be at most {MAX_REPLY_CHARS} characters")));
            }
        }
        ReplyBody::Template(t) => {
            if t.name.trim().is_empty() || t.name.len() > 512 {
                return Err(ApiError::field(
                    "template.name",
                    "must be the approved template's name (Twilio: its HX… Content SID)",
                ));
            }
            if t.language.len() > 32 {
                return Err(ApiError::field("template.language", "must be a language code such as en_US"));
            }
            if t.parameters.len() > 100 {
                return Err(ApiError::field("template.parameters", "must be at most 100 values"));
            }
            if t.parameters.iter().any(|p| p.chars().count() > 1024) {
                return Err(ApiError::field(
                    "template.parameters",
                    "each value must be at most 1024 characters",
                ));
            }
        }
    }
    if let Some(key) = &request.idempotency_key
        && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control))
    {
        return Err(ApiError::field(
            "idempotency_key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} bytes of printable text"),
        ));
    }
    Ok(())
}

/// Answers `chat` of `workspace_id` as `actor` (whom the front end let change it): refused (and
/// nothing stored) when the channel takes no reply now; otherwise stored and queued, or, for an
/// idempotency key used on this chat within 24 hours, the reply it made then.
pub async fn answer(
    state: &AppState,
    actor: &Principal,
    (workspace_id, chat): (WorkspaceId, Chat),
    request: ReplyRequest,
) -> Result<Answered, ApiError> {
    check(&request)?;
    let chat_id = chat.id;
    let now = state.clock.now();
    let mut expired = None;
    if let Some(key) = &request.idempotency_key
        && let Some(earlier) = state.store.reply_by_key(chat_id, key).await?
    {
        let window = ChronoDuration::from_std(IDEMPOTENCY_WINDOW).expect("a day fits");
        if earlier.created_at + window > now {
            return Ok(Answered { reply: earlier, new: false });
        }
        expired = Some(earlier.message_id);
    }
    let workspace =
        state.store.get_workspace(&workspace_id).await?.ok_or_else(|| ApiError::not_found("workspace"))?;
    let (source, route) = answerable(state, &workspace, &chat, &request.body).await?;

    let message_id = reply::message_id(chat_id, request.idempotency_key.as_deref(), expired.as_deref());
    let latest = state.store.chat_messages(chat_id, 1, 0).await?;
    let message = NewMessage {
        message_id: message_id.clone(),
        direction: Direction::Sent,
        timestamp: now,
        // Only the id: the chat's stored details stay as they are.
        chat: ChatInfo { external_id: chat.external_id.clone(), ..ChatInfo::default() },
        sender: Party { full_name: sender_name(actor), phone: None },
        recipient: Party { full_name: chat.full_name.clone(), phone: chat.phone.clone() },
        text: request.body.shown(),
        account: None,
        // The chat's channel stays its own (it decides the reply window).
        channel: latest.first().map_or_else(|| default_channel(route), |m: &StoredMessage| m.channel.clone()),
        attachments: Vec::new(),
        reply_to_button: None,
    };
    let messages = match &source {
        Some(source) => super::intake::as_source(source, vec![message]),
        None => vec![message],
    };
    let mut batch =
        super::intake::batch(state, &workspace, source.as_ref(), messages, Vec::new(), Vec::new());
    batch.reply = Some(NewReply {
        chat: chat_id,
        message_id: message_id.clone(),
        body: request.body,
        idempotency_key: request.idempotency_key,
        actor: actor.actor(),
    });
    let outcome = state.store.ingest(batch).await?;
    if outcome.queued {
        state.deliveries_waiting.notify_one();
    }
    if outcome.conversations {
        state.closer.conversations_moved();
    }
    state.replies_waiting.notify_one();
    let reply = state.store.reply(chat_id, &message_id).await?.ok_or_else(|| ApiError::not_found("reply"))?;
    Ok(Answered { reply, new: outcome.accepted > 0 })
}

/// Whether `chat` takes `body` now, and through which source and route: the chat's page asks
/// this to say why a chat cannot be answered before anyone types.
pub async fn answerable(
    state: &AppState,
    workspace: &Workspace,
    chat: &Chat,
    body: &ReplyBody,
) -> Result<(Option<Source>, ReplyRoute), ApiError> {
    let source = route(state, workspace, chat).await?;
    let route = ReplyRoute::of(source.as_ref().map(|s| s.kind))
        .map_err(|why| ApiError::new(ErrorCode::ReplyNotSupported, why))?;
    if body.template().is_some() && !route.takes_templates() {
        return Err(ApiError::field("template", "only WhatsApp chats take templates"));
    }
    reply::admissible(chat, route, body, state.clock.now()).map_err(|closed| {
        ApiError::new(ErrorCode::ReplyWindowClosed, format!("{}: {}", closed.status, closed.reason))
    })?;
    Ok((source, route))
}

/// The source a chat is answered through (`None`: the JSON API's chats, through the workspace's
/// `reply_url`), or why it cannot be answered from here.
async fn route(state: &AppState, workspace: &Workspace, chat: &Chat) -> Result<Option<Source>, ApiError> {
    if chat.source_key == API_SOURCE_KEY {
        if workspace.reply_url.is_none() {
            return Err(ApiError::new(
                ErrorCode::ReplyNotSupported,
                "this chat came through the JSON API: set the workspace's reply_url, where replies are posted, to answer it",
            ));
        }
        return Ok(None);
    }
    let id = crate::domain::SourceId::stored(&chat.source_key);
    let source = state.store.get_source(&id).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::ReplyNotSupported, "the source this chat came through was deleted")
    })?;
    ReplyRoute::of(Some(source.kind)).map_err(|why| ApiError::new(ErrorCode::ReplyNotSupported, why))?;
    let missing = credentials::missing_for_replies(source.kind, &source.credentials);
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|n| format!("credentials.{n}")).collect();
        return Err(ApiError::new(
            ErrorCode::ReplyNotConfigured,
            format!("the source “{}” needs {} to send replies", source.name, names.join(", ")),
        ));
    }
    Ok(Some(source))
}

/// Whom the chat shows the reply from: the person, or the token's name; the admin token names
/// nobody (the business account stands for it).
fn sender_name(actor: &Principal) -> Option<String> {
    match actor {
        Principal::Person { email, .. } => Some(email.clone()),
        Principal::Token { name, .. } => Some(name.clone()),
        Principal::Operator => None,
    }
}

fn default_channel(route: ReplyRoute) -> String {
    match route {
        ReplyRoute::Twilio | ReplyRoute::Meta => "whatsapp",
        ReplyRoute::Wechat => "wechat",
        ReplyRoute::Chatwoot => "chatwoot",
        // The JSON API's default channel.
        ReplyRoute::ReplyUrl => "api",
    }
    .into()
}
