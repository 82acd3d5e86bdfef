//! Replaying a webhook's history: `POST /api/v1/webhooks/{id}/replay` (a dry run counts, a real
//! run starts one), `GET` and `DELETE /api/v1/webhooks/{id}/replays/{replay_id}` (its progress,
//! and cancelling what has not gone out).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;

use crate::domain::{ChatId, Need, WebhookId};
use crate::http::auth::Access;
use crate::http::{ApiError, Body, Ids};
use crate::service::AppState;
use crate::service::replay::{self, Asked};
use crate::store::{Replay, ReplayCounts};

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The messages received from this instant on (RFC 3339)…
    pub from: DateTime<Utc>,
    /// …and before this one (brought back to now: what arrives later goes out live anyway).
    pub to: DateTime<Utc>,
    /// One chat only (its id, as in `/api/v1/chats/{id}` and the payloads' `chat.id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_id: Option<i64>,
    /// Count what a replay would send, and send nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// What a replay holds, or would hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayCountsView {
    /// Chats with messages in the range.
    chats: u64,
    /// Bundles (a webhook that takes each message at once makes none).
    bundles: u64,
    messages: u64,
    /// Webhook calls: one per message, or per bundle part.
    calls: u64,
}

impl From<ReplayCounts> for ReplayCountsView {
    fn from(c: ReplayCounts) -> Self {
        ReplayCountsView { chats: c.chats, bundles: c.bundles, messages: c.messages, calls: c.calls }
    }
}

/// A replay and how far it got.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayView {
    replay_id: String,
    webhook_id: WebhookId,
    /// `planning` (its deliveries are being made), `sending` (all made; the queue sends them) or
    /// `cancelled`.
    status: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    chat_id: Option<i64>,
    /// What it holds (so far, while planning).
    planned: ReplayCountsView,
    /// Its calls by outcome: delivered, still to go, failed (given up or expired), cancelled.
    delivered: u64,
    waiting: u64,
    failed: u64,
    cancelled: u64,
    /// Whether nothing of it is left to send.
    finished: bool,
    created_at: DateTime<Utc>,
}

impl From<Replay> for ReplayView {
    fn from(r: Replay) -> Self {
        let finished = r.status != crate::store::ReplayStatus::Planning && r.waiting == 0;
        ReplayView {
            replay_id: r.id,
            webhook_id: r.webhook_id,
            status: r.status.as_str().to_string(),
            from: r.from,
            to: r.to,
            chat_id: r.chat.map(|c| c.0),
            planned: r.planned.into(),
            delivered: r.delivered,
            waiting: r.waiting,
            failed: r.failed,
            cancelled: r.cancelled,
            finished,
            created_at: r.created_at,
        }
    }
}

/// A replay started.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayStarted {
    replay_id: String,
    /// Where to follow it.
    status_url: String,
}

#[utoipa::path(
    post,
    operation_id = "webhooks_replay",
    path = "/api/v1/webhooks/{id}/replay",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "A dry run: what the replay would send; nothing is sent", body = ReplayCountsView),
        (status = 202, description = "Started: the messages received in the range are bundled as the webhook's granularity would have bundled them and delivered, marked `\"replay\": true`, with ids of their own, behind nothing live", body = ReplayStarted),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn replay(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
    Body(body): Body<ReplayRequest>,
) -> Result<Response, ApiError> {
    let webhook = super::webhook(&state, &access, &id, Need::Change).await?;
    if body.from >= body.to {
        return Err(ApiError::field("to", "must be after `from`"));
    }
    let chat = match body.chat_id {
        Some(id) if id > 0 => Some(ChatId(id)),
        Some(_) => return Err(ApiError::not_found("chat")),
        None => None,
    };
    let asked = Asked { from: body.from, to: body.to, chat };
    if body.dry_run == Some(true) {
        let counts = replay::dry_run(&state, &webhook, &asked).await?;
        return Ok(Json(ReplayCountsView::from(counts)).into_response());
    }
    let started = replay::start(&state, &webhook, asked, &access.actor()).await?;
    let status_url = format!("/api/v1/webhooks/{}/replays/{}", webhook.id, started.id);
    Ok((StatusCode::ACCEPTED, Json(ReplayStarted { replay_id: started.id, status_url })).into_response())
}

#[utoipa::path(
    get,
    operation_id = "webhooks_replay_show",
    path = "/api/v1/webhooks/{id}/replays/{replay_id}",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id"), ("replay_id" = String, Path, description = "The replay's id")),
    responses((status = 200, description = "The replay and its progress", body = ReplayView), crate::http::Errors)
)]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn show(
    Access(access): Access,
    State(state): State<AppState>,
    Ids((id, replay_id)): Ids<(WebhookId, String)>,
) -> Result<Json<ReplayView>, ApiError> {
    let webhook = super::webhook(&state, &access, &id, Need::Read).await?;
    let found = state.store.get_replay(&replay_id).await?.filter(|r| r.webhook_id == webhook.id);
    Ok(Json(found.ok_or_else(|| ApiError::not_found("replay"))?.into()))
}

#[utoipa::path(
    delete,
    operation_id = "webhooks_replay_cancel",
    path = "/api/v1/webhooks/{id}/replays/{replay_id}",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id"), ("replay_id" = String, Path, description = "The replay's id")),
    responses((status = 200, description = "Cancelled: what had not gone out never will", body = ReplayView), crate::http::Errors)
)]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn cancel(
    Access(access): Access,
    State(state): State<AppState>,
    Ids((id, replay_id)): Ids<(WebhookId, String)>,
) -> Result<Json<ReplayView>, ApiError> {
    let webhook = super::webhook(&state, &access, &id, Need::Change).await?;
    let cancelled = replay::cancel(&state, &webhook, &replay_id, &access.actor()).await?;
    Ok(Json(cancelled.into()))
}
