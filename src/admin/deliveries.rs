//! A webhook's deliveries: `GET /api/v1/webhooks/{id}/deliveries?status=…` lists them, newest
//! first, and `POST /api/v1/webhooks/{id}/deliveries/{delivery_id}/resend` sends a failed or
//! expired one again, with the same `webhook-id` and the same bytes.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};

use crate::domain::Need;
use crate::domain::{ChatId, DeliveryId, DeliveryKind, DeliveryStatus, WebhookId};
use crate::http::ApiError;
use crate::http::Ids;
use crate::http::auth::Access;
use crate::service::AppState;
use crate::store::DeliveryInfo;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;
const MAX_OFFSET: u32 = 1_000_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state.
    status: Option<DeliveryStatus>,
    /// How many, 1 to 500 (50 by default), newest first.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// How many to skip.
    #[param(minimum = 0, maximum = 1000000)]
    offset: Option<u32>,
}

/// One delivery: a message, a bundle part or a session event for this webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The `webhook-id` it is sent under, the same on every attempt.
    id: DeliveryId,
    kind: DeliveryKind,
    /// The chat it belongs to (`GET /api/v1/chats/{id}`).
    chat_id: Option<ChatId>,
    status: DeliveryStatus,
    attempts: u32,
    /// The HTTP status of the last attempt, if it got one.
    last_status: Option<u16>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<DeliveryInfo> for DeliveryView {
    fn from(d: DeliveryInfo) -> Self {
        DeliveryView {
            id: d.id,
            kind: d.kind,
            chat_id: d.chat_id,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            finished_at: d.finished_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    deliveries: Vec<DeliveryView>,
}

#[utoipa::path(
    get,
    operation_id = "webhook_deliveries",
    path = "/api/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id"), DeliveriesQuery),
    responses(
        (status = 200, description = "The webhook's deliveries, newest first", body = DeliveryList),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn list(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::field("limit", format!("must be between 1 and {MAX_LIMIT}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::field("offset", format!("must be at most {MAX_OFFSET}")));
    }
    super::webhook(&state, &access, &id, Need::Read).await?;
    let deliveries = state.store.list_deliveries(&id, query.status, limit, offset).await?;
    Ok(Json(DeliveryList { deliveries: deliveries.into_iter().map(DeliveryView::from).collect() }))
}

/// What a resend answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resent {
    /// The `webhook-id` it goes out under again.
    id: DeliveryId,
    status: DeliveryStatus,
}

#[utoipa::path(
    post,
    operation_id = "webhook_delivery_resend",
    path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/resend",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(
        ("id" = String, Path, description = "Webhook id"),
        ("delivery_id" = String, Path, description = "The delivery's id (its webhook-id)")
    ),
    responses(
        (status = 202, description = "Queued again, due at once, with the same webhook-id and bytes", body = Resent),
        (status = 409, description = "The delivery is pending or delivered: only failed and expired ones are sent again", body = crate::http::ErrorBody),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(webhook_id = %id, delivery_id = %delivery_id))]
pub async fn resend(
    Access(access): Access,
    State(state): State<AppState>,
    Ids((id, delivery_id)): Ids<(WebhookId, DeliveryId)>,
) -> Result<(StatusCode, Json<Resent>), ApiError> {
    super::webhook(&state, &access, &id, Need::Change).await?;
    crate::service::deliveries::resend(&state, &id, &delivery_id, &access.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(Resent { id: delivery_id, status: DeliveryStatus::Pending })))
}
