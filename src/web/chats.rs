//! A chat's page: its transcript link, and a new link that retires the old one.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use tracing::instrument;

use super::session::CsrfForm;
use super::{PageError, Session, page, see_other};
use crate::domain::ChatId;
use crate::render::chat_url;
use crate::service::AppState;

#[derive(Template)]
#[template(path = "web/chat.html")]
struct ChatPage {
    csrf: String,
    workspace_id: String,
    chat_id: i64,
    name: String,
    external_id: String,
    transcript: String,
    notice: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ChatQuery {
    rotated: Option<String>,
}

#[instrument(skip_all, fields(chat_id = %id))]
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<ChatId>,
    Query(query): Query<ChatQuery>,
) -> Result<Response, PageError> {
    let (workspace_id, chat) = state.store.get_chat(id).await?.ok_or_else(|| PageError::not_found("chat"))?;
    Ok(page(ChatPage {
        csrf: session.csrf,
        workspace_id: workspace_id.to_string(),
        chat_id: chat.id.0,
        name: chat.full_name.clone().or(chat.phone.clone()).unwrap_or_else(|| chat.external_id.clone()),
        external_id: chat.external_id.clone(),
        transcript: chat_url(&state.public_url, &chat.token),
        notice: query
            .rotated
            .map(|_| "A new link was made; the old one no longer opens this transcript.".into()),
    }))
}

#[instrument(skip_all, fields(chat_id = %id))]
pub async fn rotate_token(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<ChatId>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    state.store.rotate_chat_token(id).await?.ok_or_else(|| PageError::not_found("chat"))?;
    Ok(see_other(&format!("/ui/chats/{id}?rotated=1")))
}
