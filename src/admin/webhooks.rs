//! Webhooks: `POST/GET /api/v1/workspaces/{id}/webhooks`, `GET/PATCH/DELETE /api/v1/webhooks/{id}`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, instrument};

use crate::deliver::SigningSecret;
use crate::domain::{Backlog, Need, OffMode, Switch};
use crate::domain::{
    DeliveryTimeout, Event, Granularity, Media, NoteMaxChars, WebhookId, WebhookUrl, WorkspaceId,
    unmasked_url,
};
use crate::http::ApiError;
use crate::http::Ids;
use crate::http::auth::Access;
use crate::http::{Body, nullable};
use crate::service;
use crate::service::AppState;
use crate::store::{NewWebhook, Webhook, WebhookPatch};

/// `secret` in a request: `true` to generate one, a `whsec_…` string to set it.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SecretInput {
    Generate(bool),
    Given(String),
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<Granularity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Characters of note per bundle part, 500 to 1,000,000 (60,000 when left out): bundles
    /// longer than that go out in parts marked "(1/3)".
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 500, maximum = 1000000)]
    pub note_max_chars: Option<u64>,
    /// What it does with a message that carries media: `skip` it (the default) or keep it with a
    /// `placeholder` ("[image]", or its caption) and its `attachments`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// For `conversation` bundles: its own silence before a conversation's bundle goes out,
    /// from `1m` to `24h` (the workspace's when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_silence: Option<String>,
    /// For `conversation` bundles: its own longest conversation, from `1h` to `7days` (the
    /// workspace's when left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_max: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `null` follows the workspace's granularity again.
    #[serde(default, deserialize_with = "nullable")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<Option<Granularity>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `null` or `false` removes the secret.
    #[serde(default, deserialize_with = "nullable")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Option<SecretInput>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
    /// `null` goes back to the configured timeout.
    #[serde(default, deserialize_with = "nullable")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Option<String>>,
    /// Characters of note per bundle part, 500 to 1,000,000.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 500, maximum = 1000000)]
    pub note_max_chars: Option<u64>,
    /// What it does with a message that carries media: `skip` it (the default) or keep it with a
    /// `placeholder` ("[image]", or its caption) and its `attachments`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// With `"enabled": false`: `pause` (the default: keep collecting, everything waits and goes
    /// out when it is on again) or `stop` (take nothing until it is on again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<OffMode>,
    /// With `"enabled": true`, for a webhook that was off: `send` what waited (the default) or
    /// `discard` it (each marked `discarded`, never sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<Backlog>,
    /// For `conversation` bundles: its own silence (`1m` to `24h`); `null` follows the
    /// workspace's again.
    #[serde(default, deserialize_with = "nullable")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_silence: Option<Option<String>>,
    /// For `conversation` bundles: its own longest conversation (`1h` to `7days`); `null`
    /// follows the workspace's again.
    #[serde(default, deserialize_with = "nullable")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_max: Option<Option<String>>,
}

/// A webhook as the API shows it. The secret appears only in the answer that set it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    id: WebhookId,
    workspace_id: WorkspaceId,
    url: String,
    /// The granularity in effect.
    granularity: Granularity,
    /// Whether that granularity is the workspace's default rather than the webhook's own.
    inherits_granularity: bool,
    enabled: bool,
    events: Vec<Event>,
    timeout: String,
    /// Characters of note per bundle part.
    note_max_chars: u32,
    /// What it does with messages that carry media.
    media: Media,
    /// Its own conversation silence and maximum (`null`: the workspace's).
    conversation_silence: Option<String>,
    conversation_max: Option<String>,
    has_secret: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    consecutive_failures: u32,
    disabled_reason: Option<String>,
    /// While it is off: `pause` (collecting) or `stop` (taking nothing); `null` while it is on.
    off_mode: Option<OffMode>,
    /// Deliveries waiting to be sent (while it is off: what switching it on sends, or discards).
    waiting: u64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl WebhookView {
    pub fn new(webhook: Webhook, workspace_granularity: Granularity, default_timeout: Duration) -> Self {
        WebhookView {
            granularity: webhook.granularity.unwrap_or(workspace_granularity),
            inherits_granularity: webhook.granularity.is_none(),
            timeout: humantime::format_duration(webhook.timeout.unwrap_or(default_timeout)).to_string(),
            has_secret: webhook.secret.is_some(),
            note_max_chars: webhook.note_max_chars.get(),
            media: webhook.media,
            conversation_silence: webhook.conversation_silence.map(|d| d.to_string()),
            conversation_max: webhook.conversation_max.map(|d| d.to_string()),
            secret: None,
            id: webhook.id,
            workspace_id: webhook.workspace_id,
            url: webhook.url.masked(),
            enabled: webhook.enabled,
            events: webhook.events,
            consecutive_failures: webhook.consecutive_failures,
            disabled_reason: webhook.disabled_reason,
            off_mode: match (webhook.enabled, webhook.stopped) {
                (true, _) => None,
                (false, true) => Some(OffMode::Stop),
                (false, false) => Some(OffMode::Pause),
            },
            waiting: 0,
            created_at: webhook.created_at,
            updated_at: webhook.updated_at,
        }
    }
}

async fn view(state: &AppState, webhook: Webhook) -> Result<WebhookView, ApiError> {
    let workspace = state
        .store
        .get_workspace(&webhook.workspace_id)
        .await?
        .ok_or_else(|| ApiError::not_found("workspace"))?;
    let waiting = state.store.pending_count(&webhook.id).await?;
    Ok(WebhookView { waiting, ..WebhookView::new(webhook, workspace.granularity, state.default_timeout) })
}

/// A webhook URL as [`service::webhooks::checked_url`] takes it, answered as a field error.
async fn url(state: &AppState, value: &str) -> Result<WebhookUrl, ApiError> {
    service::webhooks::checked_url(state, value).await.map_err(|e| ApiError::field("url", e))
}

/// A secret as asked for: generated, checked, or none; a refusal names `field`.
pub(super) fn secret_as(field: &str, input: SecretInput) -> Result<Option<String>, ApiError> {
    match input {
        SecretInput::Generate(false) => Ok(None),
        SecretInput::Generate(true) => Ok(Some(SigningSecret::generate())),
        SecretInput::Given(s) => {
            SigningSecret::parse(&s).map_err(|e| ApiError::field(field, e))?;
            Ok(Some(s))
        }
    }
}

fn events(list: Vec<Event>) -> Result<Vec<Event>, ApiError> {
    if list.is_empty() {
        return Err(ApiError::field("events", "must list at least one of \"messages\", \"session_status\""));
    }
    Ok(list)
}

fn note_max_chars(value: u64) -> Result<NoteMaxChars, ApiError> {
    NoteMaxChars::checked(value).map_err(|e| ApiError::field("note_max_chars", e))
}

fn timeout(value: &str) -> Result<Duration, ApiError> {
    value.parse::<DeliveryTimeout>().map(DeliveryTimeout::duration).map_err(|e| ApiError::field("timeout", e))
}

#[utoipa::path(
    post,
    operation_id = "webhooks_create",
    path = "/api/v1/workspaces/{id}/webhooks",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; a generated `secret` is shown this once", body = WebhookView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn create(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(workspace_id): Ids<WorkspaceId>,
    Body(body): Body<CreateWebhook>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    super::workspace(&state, &access, &workspace_id, Need::Change).await?;
    let secret = body.secret.map(|s| secret_as("secret", s)).transpose()?.flatten();
    let new = NewWebhook {
        workspace_id,
        url: url(&state, &body.url).await?,
        granularity: body.granularity,
        enabled: body.enabled.unwrap_or(true),
        secret: secret.clone(),
        events: events(body.events.unwrap_or_else(|| vec![Event::Messages]))?,
        timeout: body.timeout.as_deref().map(timeout).transpose()?,
        note_max_chars: body.note_max_chars.map(note_max_chars).transpose()?,
        media: body.media.unwrap_or_default(),
        conversation_silence: body.conversation_silence.as_deref().map(conversation_silence).transpose()?,
        conversation_max: body.conversation_max.as_deref().map(conversation_max).transpose()?,
    };
    let webhook = service::webhooks::create(&state, new, &access.actor()).await?;
    info!(webhook_id = %webhook.id, "webhook created");
    let mut view = view(&state, webhook).await?;
    view.secret = secret;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    get,
    operation_id = "webhooks_list",
    path = "/api/v1/workspaces/{id}/webhooks",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The workspace's webhooks", body = WebhookList),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn list(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(workspace_id): Ids<WorkspaceId>,
) -> Result<Json<Value>, ApiError> {
    let workspace = super::workspace(&state, &access, &workspace_id, Need::Read).await?;
    let webhooks: Vec<WebhookView> = state
        .store
        .list_webhooks(&workspace_id)
        .await?
        .into_iter()
        .map(|w| WebhookView::new(w, workspace.granularity, state.default_timeout))
        .collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

#[utoipa::path(
    get,
    operation_id = "webhooks_show",
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn show(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
) -> Result<Json<WebhookView>, ApiError> {
    let webhook = super::webhook(&state, &access, &id, Need::Read).await?;
    Ok(Json(view(&state, webhook).await?))
}

#[utoipa::path(
    patch,
    operation_id = "webhooks_update",
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, description = "The updated webhook", body = WebhookView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn update(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
    Body(body): Body<UpdateWebhook>,
) -> Result<Json<WebhookView>, ApiError> {
    let before = super::webhook(&state, &access, &id, Need::Change).await?;
    let switch =
        Switch::asked(body.enabled, body.mode, body.backlog).map_err(|(f, e)| ApiError::field(f, e))?;
    let secret = body
        .secret
        .map(|s| s.map(|s| secret_as("secret", s)).transpose().map(Option::flatten))
        .transpose()?;
    let patch = WebhookPatch {
        url: match body.url.as_deref() {
            // A password sent back masked, as the API shows it, means the stored one.
            Some(value) => {
                match unmasked_url(value, before.url.as_str()).map_err(|e| ApiError::field("url", e))? {
                    meant if meant == before.url.as_str() => None,
                    meant => Some(url(&state, &meant).await?),
                }
            }
            None => None,
        },
        granularity: body.granularity,
        enabled: body.enabled,
        secret: secret.clone(),
        events: body.events.map(events).transpose()?,
        timeout: body.timeout.map(|t| t.as_deref().map(timeout).transpose()).transpose()?,
        note_max_chars: body.note_max_chars.map(note_max_chars).transpose()?,
        media: body.media,
        stop: switch == Some(Switch::Off(OffMode::Stop)),
        conversation_silence: body
            .conversation_silence
            .map(|d| d.as_deref().map(conversation_silence).transpose())
            .transpose()?,
        conversation_max: body
            .conversation_max
            .map(|d| d.as_deref().map(conversation_max).transpose())
            .transpose()?,
    };
    service::webhooks::before_switch(&state, &before, switch, &access.actor()).await?;
    let webhook =
        state.store.update_webhook(&id, patch).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    service::webhooks::changed(&state, &before, &webhook, &access.actor()).await;
    info!("webhook updated");
    let mut view = view(&state, webhook).await?;
    view.secret = secret.flatten();
    Ok(Json(view))
}

#[utoipa::path(
    delete,
    operation_id = "webhooks_delete",
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted, with its queue"),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn delete(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
) -> Result<StatusCode, ApiError> {
    let webhook = super::webhook(&state, &access, &id, Need::Change).await?;
    if service::webhooks::delete(&state, &webhook, &access.actor()).await? {
        info!("webhook deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// A conversation silence as a request gives it; a refusal names the field.
pub(super) fn conversation_silence(value: &str) -> Result<crate::domain::ConversationSilence, ApiError> {
    value.parse().map_err(|e| ApiError::field("conversation_silence", e))
}

/// A longest conversation as a request gives it; a refusal names the field.
pub(super) fn conversation_max(value: &str) -> Result<crate::domain::ConversationMax, ApiError> {
    value.parse().map_err(|e| ApiError::field("conversation_max", e))
}
