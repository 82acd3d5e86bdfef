//! A chat's page: who owns it, its session history, its transcript link, and a new link that
//! retires the old one.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tracing::instrument;

use super::session::CsrfForm;
use super::{FormErrors, PageError, PageIds, Session, keep, page, see_other};
use crate::domain::Need;
use crate::domain::{ChatId, EmailAddress, Name};
use crate::render::chat_url;
use crate::service::AppState;
use crate::store::{Chat, ChatOwner, SessionTransition};
use crate::words::{PageWords, page_words};

#[derive(Template)]
#[template(path = "web/chat.html")]
struct ChatPage {
    /// The chat's workspace's language.
    w: &'static PageWords,
    csrf: String,
    /// Whether its forms are shown: a viewer's page has none.
    can_change: bool,
    workspace_id: String,
    chat_id: i64,
    name: String,
    external_id: String,
    transcript: String,
    notice: Option<&'static str>,
    owner: OwnerForm,
    /// The channel's id of the owner, when it gave one (shown, not editable).
    responsible_id: Option<String>,
    /// Each move of the chat's session, newest first.
    sessions: Vec<TransitionLine>,
    /// Whether an erasure was asked for without its confirmation ticked.
    erase_unconfirmed: bool,
    /// Why the chat cannot be answered now (`None`: it can).
    reply_closed: Option<String>,
    /// The reply typed, kept when sending it was refused, and why.
    reply: ReplyForm,
}

/// The reply box.
#[derive(Debug, Default, Deserialize, Clone)]
pub struct ReplyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(skip)]
    error: Option<String>,
}

/// A row of the chat's session history.
struct TransitionLine {
    at: String,
    from: String,
    to: String,
    cause: &'static str,
    source: String,
    reply_status: String,
}

impl TransitionLine {
    fn from(t: SessionTransition, w: &PageWords) -> Self {
        TransitionLine {
            at: t.at.format(w.time_seconds).to_string(),
            from: t.from.unwrap_or_else(|| "—".into()),
            to: t.to,
            cause: w.session_cause(t.cause),
            source: t.source_key,
            reply_status: t.reply_status.map(|r| r.to_string()).unwrap_or_default(),
        }
    }
}

/// What was just done, said at the top of the chat's page.
#[derive(Clone, Copy)]
enum Notice {
    /// A new transcript link replaced the old one.
    Rotated,
    OwnerSaved,
    ReplyQueued,
}

#[derive(Deserialize, Default)]
pub struct ChatQuery {
    rotated: Option<String>,
    owner: Option<String>,
    replied: Option<String>,
}

/// Who owns the chat, as the page's form holds it; an empty field clears the value.
#[derive(Debug, Default, Deserialize, Clone)]
pub struct OwnerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    responsible_name: String,
    #[serde(default)]
    responsible_email: String,
    #[serde(skip)]
    errors: FormErrors,
}

impl OwnerForm {
    fn from(chat: &Chat) -> OwnerForm {
        OwnerForm {
            responsible_name: chat.responsible_name.clone().unwrap_or_default(),
            responsible_email: chat.responsible_email.clone().unwrap_or_default(),
            ..OwnerForm::default()
        }
    }

    /// Checks both fields with the domain's rules (the admin API's).
    fn check(&mut self) -> Option<ChatOwner> {
        let name = match self.responsible_name.trim() {
            "" => Some(None),
            name => {
                keep(&mut self.errors, "responsible_name", Name::parse(name)).map(|n| Some(n.into_string()))
            }
        };
        let email = match self.responsible_email.trim() {
            "" => Some(None),
            email => keep(&mut self.errors, "responsible_email", email.parse::<EmailAddress>())
                .map(|e| Some(e.into_string())),
        };
        Some(ChatOwner { name: Some(name?), email: Some(email?) })
    }
}

async fn chat_page(
    state: &AppState,
    session: Session,
    id: ChatId,
    notice: Option<Notice>,
    owner: Option<OwnerForm>,
    erase_unconfirmed: bool,
    reply: Option<ReplyForm>,
) -> Result<Response, PageError> {
    let (workspace_id, chat) = state.store.get_chat(id).await?.ok_or_else(|| PageError::not_found("chat"))?;
    session.may(&workspace_id, Need::Read, "chat")?;
    let ws = state.store.get_workspace(&workspace_id).await?.ok_or_else(|| PageError::not_found("chat"))?;
    let w = page_words(ws.locale);
    let failed = owner.as_ref().is_some_and(|o| !o.errors.is_empty())
        || reply.as_ref().is_some_and(|r| r.error.is_some());
    let reply_closed = if session.can_change(&workspace_id) {
        let probe = crate::domain::reply::ReplyBody::Text("-".into());
        crate::service::replies::answerable(state, &ws, &chat, &probe).await.err().map(|e| e.detail)
    } else {
        None
    };
    let history = state.store.session_history(id).await?.unwrap_or_default();
    let mut response = page(ChatPage {
        can_change: session.can_change(&workspace_id),
        w,
        csrf: session.csrf,
        workspace_id: workspace_id.to_string(),
        chat_id: chat.id.0,
        name: chat.full_name.clone().or(chat.phone.clone()).unwrap_or_else(|| chat.external_id.clone()),
        external_id: chat.external_id.clone(),
        transcript: chat_url(&state.public_url, &chat.token),
        notice: notice.map(|notice| match notice {
            Notice::Rotated => w.notice_link_rotated,
            Notice::OwnerSaved => w.notice_owner_saved,
            Notice::ReplyQueued => w.notice_reply_queued,
        }),
        owner: owner.unwrap_or_else(|| OwnerForm::from(&chat)),
        responsible_id: chat.responsible_id.clone(),
        sessions: history.into_iter().rev().map(|t| TransitionLine::from(t, w)).collect(),
        erase_unconfirmed,
        reply_closed,
        reply: reply.unwrap_or_default(),
    });
    if failed || erase_unconfirmed {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

#[instrument(skip_all, fields(chat_id = %id))]
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<ChatId>,
    Query(query): Query<ChatQuery>,
) -> Result<Response, PageError> {
    let notice = match (query.rotated, query.owner, query.replied) {
        (Some(_), _, _) => Some(Notice::Rotated),
        (None, Some(_), _) => Some(Notice::OwnerSaved),
        (None, None, Some(_)) => Some(Notice::ReplyQueued),
        (None, None, None) => None,
    };
    chat_page(&state, session, id, notice, None, false, None).await
}

/// Sets who owns the chat.
#[instrument(skip_all, fields(chat_id = %id))]
pub async fn save_owner(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<ChatId>,
    Form(mut form): Form<OwnerForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let (workspace, _) = state.store.get_chat(id).await?.ok_or_else(|| PageError::not_found("chat"))?;
    session.may(&workspace, Need::Change, "chat")?;
    let Some(owner) = form.check() else {
        return chat_page(&state, session, id, None, Some(form), false, None).await;
    };
    state.store.set_chat_owner(id, owner).await?.ok_or_else(|| PageError::not_found("chat"))?;
    if let Some((workspace, _)) = state.store.get_chat(id).await? {
        crate::service::workspaces::chat_noted(&state, &workspace, id, "chat_owner_set", &session.actor())
            .await;
    }
    Ok(see_other(&format!("/ui/chats/{id}?owner=saved")))
}

#[instrument(skip_all, fields(chat_id = %id))]
pub async fn rotate_token(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<ChatId>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let (workspace, _) = state.store.get_chat(id).await?.ok_or_else(|| PageError::not_found("chat"))?;
    session.may(&workspace, Need::Change, "chat")?;
    state.store.rotate_chat_token(id).await?.ok_or_else(|| PageError::not_found("chat"))?;
    if let Some((workspace, _)) = state.store.get_chat(id).await? {
        crate::service::workspaces::chat_noted(
            &state,
            &workspace,
            id,
            "transcript_rotated",
            &session.actor(),
        )
        .await;
    }
    Ok(see_other(&format!("/ui/chats/{id}?rotated=1")))
}

#[derive(Deserialize)]
pub struct EraseForm {
    csrf: String,
    /// The confirmation's box: present when ticked.
    confirm: Option<String>,
}

/// Erases the chat (its admins only), once its confirmation is ticked; back to the workspace's
/// page, which says how many messages went.
#[instrument(skip_all, fields(chat_id = %id))]
pub async fn erase(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<ChatId>,
    Form(form): Form<EraseForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let (workspace, _) = state.store.get_chat(id).await?.ok_or_else(|| PageError::not_found("chat"))?;
    session.may(&workspace, Need::Change, "chat")?;
    if form.confirm.is_none() {
        return chat_page(&state, session, id, None, None, true, None).await;
    }
    let erased =
        state.store.erase_chat(id, &session.actor()).await?.ok_or_else(|| PageError::not_found("chat"))?;
    tracing::info!(messages = erased.messages, pending_dropped = erased.pending_dropped, "chat erased");
    Ok(see_other(&format!("/ui/workspaces/{workspace}?erased={}", erased.messages)))
}

/// Answers the chat through its channel (its admins only), as the API does; a refusal (the
/// window closed, nothing typed) shows on the page with the words kept.
#[instrument(skip_all, fields(chat_id = %id))]
pub async fn reply(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<ChatId>,
    Form(mut form): Form<ReplyForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let (workspace, chat) = state.store.get_chat(id).await?.ok_or_else(|| PageError::not_found("chat"))?;
    session.may(&workspace, Need::Change, "chat")?;
    let request = crate::service::replies::ReplyRequest {
        body: crate::domain::reply::ReplyBody::Text(form.text.clone()),
        idempotency_key: None,
    };
    match crate::service::replies::answer(&state, &session.principal, (workspace, chat), request).await {
        Ok(_) => Ok(see_other(&format!("/ui/chats/{id}?replied=1"))),
        Err(e) if e.status.is_client_error() => {
            form.error = Some(e.detail);
            chat_page(&state, session, id, None, None, false, Some(form)).await
        }
        Err(e) => Err(e.into()),
    }
}
