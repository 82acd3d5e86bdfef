//! `GET /api/v1/webhooks/{id}/preview`: what each chat's next bundle would look like now, the note
//! and the whole payload, without sending or changing anything.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};

use crate::domain::Need;
use crate::domain::{ChatId, WebhookId};
use crate::http::ApiError;
use crate::http::Ids;
use crate::http::auth::Access;
use crate::service::AppState;
use crate::service::preview::{self, ChatPreview};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// One chat (its id, as in `/api/v1/chats/{id}`); without it, the chats with buffered
    /// messages, most recently active first, up to 50.
    chat_id: Option<i64>,
}

/// One part of a chat's next bundle.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartPreview {
    /// The note (`aggregation`), as a CRM would get it.
    note: String,
    /// The whole request body the webhook would receive.
    #[schema(value_type = Object)]
    payload: Value,
}

/// A chat's next bundle.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatBundlePreview {
    id: i64,
    /// The chat's id in its channel.
    chat_id: String,
    full_name: Option<String>,
    /// Messages buffered for the webhook.
    messages: usize,
    /// Empty when nothing is buffered for the chat.
    parts: Vec<PartPreview>,
}

impl From<ChatPreview> for ChatBundlePreview {
    fn from(p: ChatPreview) -> Self {
        let parts = p
            .parts
            .into_iter()
            .map(|body| {
                let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let note = payload["aggregation"].as_str().unwrap_or_default().to_string();
                PartPreview { note, payload }
            })
            .collect();
        ChatBundlePreview {
            id: p.chat.id.0,
            chat_id: p.chat.external_id,
            full_name: p.chat.full_name,
            messages: p.messages,
            parts,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookPreview {
    webhook_id: WebhookId,
    /// The moment previewed: a window ending now would hold these bundles.
    at: DateTime<Utc>,
    chats: Vec<ChatBundlePreview>,
}

#[utoipa::path(get, operation_id = "webhooks_preview", path = "/api/v1/webhooks/{id}/preview", tag = "webhooks", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id"), PreviewQuery),
    responses((status = 200, description = "Each chat's next bundle as of now; nothing is sent or changed", body = WebhookPreview),
        crate::http::Errors))]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn preview(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
    query: Result<Query<PreviewQuery>, QueryRejection>,
) -> Result<Json<WebhookPreview>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::field("chat_id", e.body_text()))?;
    let webhook = super::webhook(&state, &access, &id, Need::Read).await?;
    let only = match query.chat_id {
        Some(id) if id > 0 => Some(ChatId(id)),
        Some(_) => return Err(ApiError::not_found("chat")),
        None => None,
    };
    let at = state.clock.now();
    let chats = preview::preview(&state, &webhook, only, at).await?;
    Ok(Json(WebhookPreview {
        webhook_id: webhook.id,
        at,
        chats: chats.into_iter().map(ChatBundlePreview::from).collect(),
    }))
}
