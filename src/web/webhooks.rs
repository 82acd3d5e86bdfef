//! A webhook on the workspace's page (its card is [`super::webhook_card`]): a new webhook, Save and Save-and-test, a new signing secret, the log download and resends.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::instrument;

use super::session::CsrfForm;
use super::webhook_card::{Checked, WebhookForm};
use super::workspaces::{Overlay, workspace_page};
use super::{FormErrors, PageError, PageIds, Session, page, see_other};
use crate::deliver::SigningSecret;
use crate::domain::{DeliveryId, Event, WebhookId, WorkspaceId, masked_url, unmasked_url};
use crate::domain::{Need, OffMode, Switch};
use crate::service;
use crate::service::AppState;
use crate::service::activity::Format;
use crate::store::{NewWebhook, Webhook, WebhookPatch};
use crate::words::{PageWords, page_words};

#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WorkspaceId>,
    Form(mut form): Form<WebhookForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    session.may(&id, Need::Change, "workspace")?;
    let Some(Checked { url, granularity, note_max_chars, media, events, timeout, .. }) =
        form.check(&state).await
    else {
        let overlay = Overlay { new_webhook: Some(form), ..Overlay::default() };
        return workspace_page(&state, session, &id, overlay, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let new = NewWebhook {
        workspace_id: id.clone(),
        url,
        granularity,
        enabled: form.enabled.is_some(),
        secret: None,
        events: events.unwrap_or_else(|| vec![Event::Messages]),
        timeout: timeout.flatten(),
        note_max_chars,
        media: media.unwrap_or_default(),
        conversation_silence: None,
        conversation_max: None,
    };
    let webhook = service::webhooks::create(&state, new, &session.actor()).await?;
    Ok(see_other(&format!("/ui/workspaces/{id}?saved={}#{}", webhook.id, webhook.id)))
}

/// The webhook, if the session may do `need` in its workspace; the 404 page otherwise.
async fn stored(
    state: &AppState,
    session: &Session,
    id: &WebhookId,
    need: Need,
) -> Result<Webhook, PageError> {
    let webhook = state.store.get_webhook(id).await?.ok_or_else(|| PageError::not_found("webhook"))?;
    session.may(&webhook.workspace_id, need, "webhook")?;
    Ok(webhook)
}

/// Save, or Save and test: saves the form, and for a test sends the webhook a real sample at once
/// and shows the result on the page.
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn save(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WebhookId>,
    Form(mut form): Form<WebhookForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let before = stored(&state, &session, &id, Need::Change).await?;
    let workspace_id = before.workspace_id.clone();
    // A password sent back masked, as the page shows it, means the stored one.
    let checked = match unmasked_url(&form.url, before.url.as_str()) {
        Ok(meant) => {
            form.url = meant;
            form.check(&state).await
        }
        Err(e) => {
            form.check(&state).await;
            form.errors.insert("url", e.to_string());
            None
        }
    };
    form.url = masked_url(&form.url);
    let Some(Checked { url, granularity, note_max_chars, media, switch, events, timeout }) = checked else {
        let overlay = Overlay { webhook: Some((id.clone(), form, None, None)), ..Overlay::default() };
        return workspace_page(&state, session, &workspace_id, overlay, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    };
    let patch = WebhookPatch {
        url: Some(url),
        granularity: Some(granularity),
        enabled: Some(form.enabled.is_some()),
        note_max_chars,
        media,
        stop: switch == Switch::Off(OffMode::Stop),
        events,
        timeout,
        ..WebhookPatch::default()
    };
    service::webhooks::before_switch(&state, &before, Some(switch), &session.actor()).await?;
    let after =
        state.store.update_webhook(&id, patch).await?.ok_or_else(|| PageError::not_found("webhook"))?;
    service::webhooks::changed(&state, &before, &after, &session.actor()).await;
    if form.action.as_deref() != Some("test") {
        return Ok(see_other(&format!("/ui/workspaces/{workspace_id}?saved={id}#{id}")));
    }
    let result = service::activity::send_test(&state, &after).await?;
    let form = WebhookForm { errors: FormErrors::new(), ..form };
    let overlay = Overlay {
        webhook: Some((id.clone(), form, Some(result), None)),
        saved: Some(id),
        ..Overlay::default()
    };
    workspace_page(&state, session, &workspace_id, overlay, StatusCode::OK).await
}

/// Generates (or rotates) a webhook's signing secret and shows it once.
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn new_secret(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WebhookId>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let before = stored(&state, &session, &id, Need::Change).await?;
    let secret = SigningSecret::generate();
    let patch = WebhookPatch { secret: Some(Some(secret.clone())), ..WebhookPatch::default() };
    let after =
        state.store.update_webhook(&id, patch).await?.ok_or_else(|| PageError::not_found("webhook"))?;
    service::webhooks::changed(&state, &before, &after, &session.actor()).await;
    let form = WebhookForm::from(&after);
    let overlay = Overlay { webhook: Some((id, form, None, Some(secret))), ..Overlay::default() };
    workspace_page(&state, session, &after.workspace_id, overlay, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct LogQuery {
    format: Option<String>,
}

/// The activity log as a download (CSV unless JSON lines are asked for), for the signed-in admin.
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn download_log(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WebhookId>,
    Query(query): Query<LogQuery>,
) -> Result<Response, PageError> {
    stored(&state, &session, &id, Need::Read).await?;
    let format = if query.format.as_deref() == Some("jsonl") { Format::Jsonl } else { Format::Csv };
    Ok(service::activity::download(state.store.clone(), id, format).into_response())
}

#[derive(Template)]
#[template(path = "web/preview.html")]
struct PreviewPage {
    /// The webhook's workspace's language.
    w: &'static PageWords,
    csrf: String,
    workspace_id: String,
    webhook_id: String,
    url: String,
    at: String,
    chats: Vec<ChatCard>,
}

/// A chat's next bundle on the preview page.
struct ChatCard {
    id: i64,
    name: String,
    messages: usize,
    /// Each part: its note (markup chatbundle made, the text in it escaped) and its payload.
    parts: Vec<(String, String)>,
}

/// What each chat's next bundle would look like now; nothing is sent or changed.
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn preview(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WebhookId>,
) -> Result<Response, PageError> {
    let webhook = stored(&state, &session, &id, Need::Read).await?;
    let ws = state
        .store
        .get_workspace(&webhook.workspace_id)
        .await?
        .ok_or_else(|| PageError::not_found("workspace"))?;
    let w = page_words(ws.locale);
    let now = state.clock.now();
    let chats = service::preview::preview(&state, &webhook, None, now).await?;
    let chats = chats
        .into_iter()
        .map(|p| ChatCard {
            id: p.chat.id.0,
            name: p.chat.full_name.clone().or(p.chat.phone.clone()).unwrap_or(p.chat.external_id.clone()),
            messages: p.messages,
            parts: p
                .parts
                .iter()
                .map(|body| {
                    let payload: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                    let note = payload["aggregation"].as_str().unwrap_or_default().to_string();
                    (note, serde_json::to_string_pretty(&payload).unwrap_or_default())
                })
                .collect(),
        })
        .collect();
    Ok(page(PreviewPage {
        w,
        csrf: session.csrf,
        workspace_id: webhook.workspace_id.to_string(),
        webhook_id: webhook.id.to_string(),
        url: webhook.url.masked(),
        at: now.format(w.time_seconds).to_string(),
        chats,
    }))
}

/// Sends a failed or expired delivery again.
#[instrument(skip_all, fields(webhook_id = %id, delivery_id = %delivery_id))]
pub async fn resend(
    State(state): State<AppState>,
    session: Session,
    PageIds((id, delivery_id)): PageIds<(WebhookId, DeliveryId)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let webhook = stored(&state, &session, &id, Need::Change).await?;
    service::deliveries::resend(&state, &id, &delivery_id, &session.actor()).await?;
    Ok(see_other(&format!("/ui/workspaces/{}?resent={delivery_id}#{id}", webhook.workspace_id)))
}

#[derive(serde::Deserialize)]
pub struct DeleteForm {
    csrf: String,
    /// The confirmation's box: present when ticked.
    confirm: Option<String>,
}

/// Deletes a webhook, with its queue and log, once its confirmation (which says how many
/// deliveries wait) is ticked.
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WebhookId>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let webhook = stored(&state, &session, &id, Need::Change).await?;
    if form.confirm.is_none() {
        let ws = state.store.get_workspace(&webhook.workspace_id).await?;
        let w = crate::words::page_words(ws.map(|w| w.locale).unwrap_or_default());
        return Err(PageError::unprocessable(w.webhook_delete_unconfirmed));
    }
    service::webhooks::delete(&state, &webhook, &session.actor()).await?;
    Ok(see_other(&format!("/ui/workspaces/{}?webhook_deleted=1#webhooks-heading", webhook.workspace_id)))
}
