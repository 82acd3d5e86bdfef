//! Webhooks: `POST/GET /api/v1/workspaces/{id}/webhooks`, `GET/PATCH/DELETE /api/v1/webhooks/{id}`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, instrument};

use super::{Body, nullable};
use crate::api::auth::Admin;
use crate::api::{ApiError, AppState};
use crate::deliver::SigningSecret;
use crate::domain::{Event, Granularity, WebhookId, WebhookUrl, WorkspaceId, masked_url, unmasked_url};
use crate::store::{NewWebhook, Webhook, WebhookPatch};

/// The shortest and longest per-webhook timeout accepted.
const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(120));

/// `secret` in a request: `true` to generate one, a `whsec_…` string to set it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SecretInput {
    Generate(bool),
    Given(String),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    url: String,
    granularity: Option<Granularity>,
    enabled: Option<bool>,
    secret: Option<SecretInput>,
    events: Option<Vec<Event>>,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    url: Option<String>,
    /// `null` follows the workspace's granularity again.
    #[serde(default, deserialize_with = "nullable")]
    granularity: Option<Option<Granularity>>,
    enabled: Option<bool>,
    /// `null` or `false` removes the secret.
    #[serde(default, deserialize_with = "nullable")]
    secret: Option<Option<SecretInput>>,
    events: Option<Vec<Event>>,
    /// `null` goes back to the configured timeout.
    #[serde(default, deserialize_with = "nullable")]
    timeout: Option<Option<String>>,
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
    has_secret: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    consecutive_failures: u32,
    disabled_reason: Option<String>,
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
            secret: None,
            id: webhook.id,
            workspace_id: webhook.workspace_id,
            url: masked_url(&webhook.url),
            enabled: webhook.enabled,
            events: webhook.events,
            consecutive_failures: webhook.consecutive_failures,
            disabled_reason: webhook.disabled_reason,
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
    Ok(WebhookView::new(webhook, workspace.granularity, state.default_timeout))
}

/// A webhook URL: well-formed, and (the SSRF guard) leading only to public addresses.
pub async fn url(state: &AppState, value: &str) -> Result<String, ApiError> {
    let url = value.trim().parse::<WebhookUrl>().map_err(|e| ApiError::field("url", e))?;
    state.addresses.check_url(url.url()).await.map_err(|e| ApiError::field("url", e))?;
    Ok(url.as_str().to_string())
}

fn secret(input: SecretInput) -> Result<Option<String>, ApiError> {
    match input {
        SecretInput::Generate(false) => Ok(None),
        SecretInput::Generate(true) => Ok(Some(SigningSecret::generate())),
        SecretInput::Given(s) => {
            SigningSecret::parse(&s).map_err(|e| ApiError::field("secret", e))?;
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

pub fn timeout(value: &str) -> Result<Duration, ApiError> {
    let t = humantime::parse_duration(value.trim())
        .map_err(|e| ApiError::field("timeout", format!("{value:?} is not a duration like \"10s\": {e}")))?;
    let (min, max) = TIMEOUT_RANGE;
    if t < min || t > max {
        return Err(ApiError::field("timeout", "must be between 1s and 2m"));
    }
    Ok(t)
}

#[utoipa::path(post, operation_id = "webhooks_create", path = "/api/v1/workspaces/{id}/webhooks", tag = "webhooks", security(("admin_token" = [])), params(("id" = String, Path, description = "Workspace id")), request_body = CreateWebhook, responses((status = 201, description = "Created; a generated `secret` is shown this once", body = WebhookView), crate::api::openapi::Errors))]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    Path(workspace_id): Path<WorkspaceId>,
    Body(body): Body<CreateWebhook>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    if state.store.get_workspace(&workspace_id).await?.is_none() {
        return Err(ApiError::not_found("workspace"));
    }
    let secret = body.secret.map(secret).transpose()?.flatten();
    let new = NewWebhook {
        workspace_id,
        url: url(&state, &body.url).await?,
        granularity: body.granularity,
        enabled: body.enabled.unwrap_or(true),
        secret: secret.clone(),
        events: events(body.events.unwrap_or_else(|| vec![Event::Messages]))?,
        timeout: body.timeout.as_deref().map(timeout).transpose()?,
    };
    let webhook = state.store.create_webhook(new).await?;
    state.closer.kick();
    info!(webhook_id = %webhook.id, "webhook created");
    let mut view = view(&state, webhook).await?;
    view.secret = secret;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, operation_id = "webhooks_list", path = "/api/v1/workspaces/{id}/webhooks", tag = "webhooks", security(("admin_token" = [])), params(("id" = String, Path, description = "Workspace id")), responses((status = 200, description = "The workspace's webhooks", body = crate::api::openapi::WebhookList), crate::api::openapi::Errors))]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
    Path(workspace_id): Path<WorkspaceId>,
) -> Result<Json<Value>, ApiError> {
    let workspace =
        state.store.get_workspace(&workspace_id).await?.ok_or_else(|| ApiError::not_found("workspace"))?;
    let webhooks: Vec<WebhookView> = state
        .store
        .list_webhooks(&workspace_id)
        .await?
        .into_iter()
        .map(|w| WebhookView::new(w, workspace.granularity, state.default_timeout))
        .collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

#[utoipa::path(get, operation_id = "webhooks_show", path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("admin_token" = [])), params(("id" = String, Path, description = "Webhook id")), responses((status = 200, description = "The webhook", body = WebhookView), crate::api::openapi::Errors))]
pub async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<WebhookId>,
) -> Result<Json<WebhookView>, ApiError> {
    let webhook = state.store.get_webhook(&id).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(Json(view(&state, webhook).await?))
}

#[utoipa::path(patch, operation_id = "webhooks_update", path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("admin_token" = [])), params(("id" = String, Path, description = "Webhook id")), request_body = UpdateWebhook, responses((status = 200, description = "The updated webhook", body = WebhookView), crate::api::openapi::Errors))]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn update(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<WebhookId>,
    Body(body): Body<UpdateWebhook>,
) -> Result<Json<WebhookView>, ApiError> {
    let before = state.store.get_webhook(&id).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    let secret = body.secret.map(|s| s.map(secret).transpose().map(Option::flatten)).transpose()?;
    let patch = WebhookPatch {
        url: match body.url.as_deref() {
            // The URL as the API shows it (password masked) means "unchanged".
            Some(value) if unmasked_url(value, &before.url) == before.url => None,
            Some(value) => Some(url(&state, value).await?),
            None => None,
        },
        granularity: body.granularity,
        enabled: body.enabled,
        secret: secret.clone(),
        events: body.events.map(events).transpose()?,
        timeout: body.timeout.map(|t| t.as_deref().map(timeout).transpose()).transpose()?,
    };
    let webhook =
        state.store.update_webhook(&id, patch).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    updated(&state, &before, &webhook).await;
    info!("webhook updated");
    let mut view = view(&state, webhook).await?;
    view.secret = secret.flatten();
    Ok(Json(view))
}

#[utoipa::path(delete, operation_id = "webhooks_delete", path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("admin_token" = [])), params(("id" = String, Path, description = "Webhook id")), responses((status = 204, description = "Deleted, with its queue"), crate::api::openapi::Errors))]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<WebhookId>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_webhook(&id).await? {
        info!("webhook deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

/// Notes a change in the webhook's activity log: switched on, switched off, or what else changed
/// (a secret only as changed or removed, never its value).
/// What follows every change to a webhook, from the API or the web page: the activity log notes
/// it, and the workers look again (re-enabling or a new granularity may have made deliveries due,
/// or moved windows).
pub async fn updated(state: &AppState, before: &Webhook, after: &Webhook) {
    record_changes(state, before, after).await;
    state.deliveries_waiting.notify_one();
    state.closer.kick();
}

async fn record_changes(state: &AppState, before: &Webhook, after: &Webhook) {
    let mut events = Vec::new();
    if !before.enabled && after.enabled {
        events.push(("enabled", json!({"was_disabled_because": before.disabled_reason})));
    }
    if before.enabled && !after.enabled {
        events.push(("disabled", json!({"reason": after.disabled_reason, "automatic": false})));
    }
    let mut changed = serde_json::Map::new();
    if before.url != after.url {
        changed.insert("url".into(), json!(masked_url(&after.url)));
    }
    if before.granularity != after.granularity {
        changed.insert(
            "granularity".into(),
            json!(after.granularity.map(|g| g.as_str()).unwrap_or("workspace default")),
        );
    }
    if before.events != after.events {
        changed.insert("events".into(), json!(after.events));
    }
    if before.timeout != after.timeout {
        changed.insert(
            "timeout".into(),
            json!(after.timeout.map(|t| humantime::format_duration(t).to_string())),
        );
    }
    if before.secret != after.secret {
        changed.insert("secret".into(), json!(if after.secret.is_some() { "changed" } else { "removed" }));
    }
    if !changed.is_empty() {
        events.push(("config_changed", Value::Object(changed)));
    }
    for (kind, detail) in events {
        if let Err(e) = state.store.record_event(&after.workspace_id, Some(&after.id), kind, detail).await {
            tracing::warn!(error = %e, "recording a configuration change failed");
        }
    }
}
