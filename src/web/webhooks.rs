//! A webhook on the workspace's page: its card (state, form, latest activity, deliveries given
//! up), a new webhook, Save and Save-and-test, a new signing secret, the log download and resends.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tracing::instrument;

use super::session::CsrfForm;
use super::workspaces::{Overlay, workspace_page};
use super::{FormErrors, PageError, Session, keep, page, see_other};
use crate::deliver::SigningSecret;
use crate::domain::{
    DeliveryId, DeliveryStatus, Event, Granularity, Media, NoteMaxChars, WebhookId, WorkspaceId, masked_url,
    unmasked_url,
};
use crate::service;
use crate::service::AppState;
use crate::service::activity::{Format, TestResult};
use crate::store::{ActivityRow, DeliveryInfo, NewWebhook, StoreResult, Webhook, WebhookPatch, Workspace};
use crate::words::{PageWords, page_words};

#[derive(Debug, Default, Deserialize, Clone)]
pub struct WebhookForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub granularity: String,
    /// A checkbox: present ("on") when ticked.
    pub enabled: Option<String>,
    /// Characters of note per bundle part; empty leaves it as it is.
    #[serde(default)]
    pub note_max_chars: String,
    /// `skip` or `placeholder`; empty leaves it as it is.
    #[serde(default)]
    pub media: String,
    /// Which button: "save" or "test".
    pub(super) action: Option<String>,
    #[serde(skip)]
    pub(super) errors: FormErrors,
}

/// A webhook on the page: its state, its form, what it last did.
pub struct WebhookCard {
    pub(super) id: String,
    /// The granularity in force, as a sentence.
    pub(super) effective: String,
    /// The granularity choices: the workspace's default first, then each one by name.
    pub(super) choices: Vec<(&'static str, String)>,
    /// Deliveries given up or expired, which can be sent again.
    pub(super) failed: Vec<FailedLine>,
    pub(super) enabled: bool,
    pub(super) disabled_reason: Option<String>,
    pub(super) has_secret: bool,
    pub(super) consecutive_failures: u32,
    pub form: WebhookForm,
    pub(super) activity: Vec<ActivityLine>,
    pub test: Option<TestResult>,
    pub new_secret: Option<String>,
    pub saved: bool,
}

pub struct FailedLine {
    pub(super) id: String,
    pub(super) status: &'static str,
    pub(super) answer: String,
    pub(super) finished: String,
}

impl FailedLine {
    fn from(d: &DeliveryInfo, w: &PageWords) -> Self {
        let answer = match (d.last_status, &d.last_error) {
            (Some(status), _) => format!("HTTP {status}"),
            (None, Some(error)) => error.chars().take(120).collect(),
            (None, None) => String::new(),
        };
        FailedLine {
            id: d.id.to_string(),
            status: w.delivery_status(d.status),
            answer,
            finished: d.finished_at.map(|t| t.format(w.time).to_string()).unwrap_or_default(),
        }
    }
}

pub struct ActivityLine {
    pub(super) at: String,
    pub(super) kind: String,
    pub(super) status: String,
    pub(super) duration: String,
    pub(super) note: String,
}

impl ActivityLine {
    fn from(row: &ActivityRow, w: &PageWords) -> Self {
        let note = row
            .error
            .clone()
            .or_else(|| row.response_excerpt.clone())
            .or_else(|| row.detail.as_ref().map(|d| d.to_string()))
            .unwrap_or_default();
        ActivityLine {
            at: row.at.format(w.time_seconds).to_string(),
            kind: row.kind.clone(),
            status: row.status.map(|s| s.to_string()).unwrap_or_default(),
            duration: row.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
            note: note.chars().take(200).collect(),
        }
    }
}

/// The value of the granularity choice that follows the workspace.
pub const FOLLOW_WORKSPACE: &str = "default";

/// The granularity choices of a webhook form, the workspace's default first, in its language.
pub fn choices(ws: &Workspace) -> Vec<(&'static str, String)> {
    let w = page_words(ws.locale);
    let default = w.granularity(ws.granularity);
    let follow = format!("{}{default}{}", w.workspace_default_before, w.workspace_default_after);
    std::iter::once((FOLLOW_WORKSPACE, follow))
        .chain(w.granularities().map(|(value, label)| (value, label.to_string())))
        .collect()
}

/// A granularity choice: `None` follows the workspace.
fn chosen_granularity(value: &str) -> Result<Option<Granularity>, String> {
    match value {
        FOLLOW_WORKSPACE | "" => Ok(None),
        other => other.parse().map(Some),
    }
}

impl WebhookCard {
    /// The card as stored: the webhook, its latest activity and the deliveries it gave up.
    pub async fn load(state: &AppState, ws: &Workspace, webhook: &Webhook) -> StoreResult<WebhookCard> {
        let w = page_words(ws.locale);
        let activity = state.store.activity(&webhook.id, None, 10).await?;
        let activity = activity.iter().map(|row| ActivityLine::from(row, w)).collect();
        let mut card = WebhookCard::new(ws, webhook, activity);
        for status in [DeliveryStatus::Failed, DeliveryStatus::Expired] {
            let given_up = state.store.list_deliveries(&webhook.id, Some(status), 10, 0).await?;
            card.failed.extend(given_up.iter().map(|d| FailedLine::from(d, w)));
        }
        Ok(card)
    }

    fn new(ws: &Workspace, webhook: &Webhook, activity: Vec<ActivityLine>) -> WebhookCard {
        let w = page_words(ws.locale);
        let label = w.granularity(webhook.granularity.unwrap_or(ws.granularity));
        let after =
            if webhook.granularity.is_none() { w.effective_follows_after } else { w.effective_own_after };
        WebhookCard {
            id: webhook.id.to_string(),
            effective: format!("{label}{after}"),
            choices: choices(ws),
            failed: Vec::new(),
            enabled: webhook.enabled,
            disabled_reason: webhook.disabled_reason.clone(),
            has_secret: webhook.secret.is_some(),
            consecutive_failures: webhook.consecutive_failures,
            form: WebhookForm::from(webhook),
            activity,
            test: None,
            new_secret: None,
            saved: false,
        }
    }
}

impl WebhookForm {
    /// The form as the page shows a stored webhook (its URL's password masked).
    fn from(webhook: &Webhook) -> WebhookForm {
        WebhookForm {
            url: masked_url(&webhook.url),
            granularity: webhook.granularity.map(|g| g.as_str()).unwrap_or(FOLLOW_WORKSPACE).into(),
            enabled: webhook.enabled.then(|| "on".into()),
            note_max_chars: webhook.note_max_chars.to_string(),
            media: webhook.media.as_str().into(),
            ..WebhookForm::default()
        }
    }

    /// Checks the URL (with the SSRF guard), the granularity (`None`: follow the workspace), the
    /// note length and the media choice (`None`: as they are).
    async fn check(&mut self, state: &AppState) -> Option<Checked> {
        let url = service::webhooks::checked_url(state, &self.url).await;
        let url = keep(&mut self.errors, "url", url);
        let granularity = keep(&mut self.errors, "granularity", chosen_granularity(&self.granularity));
        let note = match self.note_max_chars.trim() {
            "" => Some(None),
            given => {
                keep(&mut self.errors, "note_max_chars", given.parse::<NoteMaxChars>()).map(|n| Some(n.get()))
            }
        };
        let media = match self.media.trim() {
            "" => Some(None),
            given => keep(&mut self.errors, "media", given.parse::<Media>()).map(Some),
        };
        Some(Checked { url: url?, granularity: granularity?, note_max_chars: note?, media: media? })
    }
}

/// A webhook form that passed its checks.
struct Checked {
    url: String,
    granularity: Option<Granularity>,
    note_max_chars: Option<u32>,
    media: Option<Media>,
}

#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<WorkspaceId>,
    Form(mut form): Form<WebhookForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let Some(Checked { url, granularity, note_max_chars, media }) = form.check(&state).await else {
        let overlay = Overlay { new_webhook: Some(form), ..Overlay::default() };
        return workspace_page(&state, session, &id, overlay, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let new = NewWebhook {
        workspace_id: id.clone(),
        url,
        granularity,
        enabled: form.enabled.is_some(),
        secret: None,
        events: vec![Event::Messages],
        timeout: None,
        note_max_chars,
        media: media.unwrap_or_default(),
    };
    let webhook = service::webhooks::create(&state, new).await?;
    Ok(see_other(&format!("/ui/workspaces/{id}?saved={}#{}", webhook.id, webhook.id)))
}

async fn stored(state: &AppState, id: &WebhookId) -> Result<Webhook, PageError> {
    state.store.get_webhook(id).await?.ok_or_else(|| PageError::not_found("webhook"))
}

/// Save, or Save and test: saves the form, and for a test sends the webhook a real sample at once
/// and shows the result on the page.
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn save(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<WebhookId>,
    Form(mut form): Form<WebhookForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let before = stored(&state, &id).await?;
    let workspace_id = before.workspace_id.clone();
    // A password sent back masked, as the page shows it, means the stored one.
    let checked = match unmasked_url(&form.url, &before.url) {
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
    let Some(Checked { url, granularity, note_max_chars, media }) = checked else {
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
        ..WebhookPatch::default()
    };
    let after =
        state.store.update_webhook(&id, patch).await?.ok_or_else(|| PageError::not_found("webhook"))?;
    service::webhooks::changed(&state, &before, &after).await;
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
    Path(id): Path<WebhookId>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let before = stored(&state, &id).await?;
    let secret = SigningSecret::generate();
    let patch = WebhookPatch { secret: Some(Some(secret.clone())), ..WebhookPatch::default() };
    let after =
        state.store.update_webhook(&id, patch).await?.ok_or_else(|| PageError::not_found("webhook"))?;
    service::webhooks::changed(&state, &before, &after).await;
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
    _session: Session,
    Path(id): Path<WebhookId>,
    Query(query): Query<LogQuery>,
) -> Result<Response, PageError> {
    stored(&state, &id).await?;
    let format = if query.format.as_deref() == Some("jsonl") { Format::Jsonl } else { Format::Csv };
    Ok(service::activity::download(state.store.clone(), id, format))
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
    Path(id): Path<WebhookId>,
) -> Result<Response, PageError> {
    let webhook = stored(&state, &id).await?;
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
        url: masked_url(&webhook.url),
        at: now.format(w.time_seconds).to_string(),
        chats,
    }))
}

/// Sends a failed or expired delivery again.
#[instrument(skip_all, fields(webhook_id = %id, delivery_id = %delivery_id))]
pub async fn resend(
    State(state): State<AppState>,
    session: Session,
    Path((id, delivery_id)): Path<(WebhookId, DeliveryId)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let webhook = stored(&state, &id).await?;
    service::deliveries::resend(&state, &id, &delivery_id).await?;
    Ok(see_other(&format!("/ui/workspaces/{}?resent={delivery_id}#{id}", webhook.workspace_id)))
}
