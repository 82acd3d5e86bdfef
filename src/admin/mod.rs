//! The admin API under `/api/v1`, behind the admin token: workspaces, webhooks, sources, chats.

pub mod activity;
pub mod chats;
pub mod deliveries;
pub mod preview;
pub mod sources;
pub mod webhooks;
pub mod workspaces;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::{Account, EmailAddress, Name, Timezone, WebhookId, WorkspaceId};
use crate::http::ApiError;
use crate::service::AppState;
use crate::store::{Webhook, Workspace};

/// The admin routes, each registered with its OpenAPI annotation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(workspaces::create, workspaces::list))
        .routes(routes!(workspaces::show, workspaces::update))
        .routes(routes!(workspaces::stats))
        .routes(routes!(workspaces::flush))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(sources::create, sources::list))
        .routes(routes!(sources::show, sources::update, sources::delete))
        .routes(routes!(sources::show_one, sources::update_one, sources::delete_one))
        .routes(routes!(sources::rotate))
        .routes(routes!(activity::latest))
        .routes(routes!(activity::log))
        .routes(routes!(activity::test))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::resend))
        .routes(routes!(webhooks::show, webhooks::update, webhooks::delete))
        .routes(routes!(preview::preview))
        .routes(routes!(chats::list))
        .routes(routes!(chats::show, chats::update))
        .routes(routes!(chats::rotate_token))
        .routes(routes!(chats::sessions))
        .route_layer(axum::middleware::from_fn(crate::http::body::form_bodies))
        .layer(axum::middleware::map_response(no_store))
}

/// Admin answers hold ingest keys, secrets shown once and customers' messages: no cache, shared or
/// private, may keep them.
async fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header::CACHE_CONTROL};
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The workspace, or a 404 saying there is none.
pub async fn workspace(state: &AppState, id: &WorkspaceId) -> Result<Workspace, ApiError> {
    state.store.get_workspace(id).await?.ok_or_else(|| ApiError::not_found("workspace"))
}

/// The webhook, or a 404 saying there is none.
pub async fn webhook(state: &AppState, id: &WebhookId) -> Result<Webhook, ApiError> {
    state.store.get_webhook(id).await?.ok_or_else(|| ApiError::not_found("webhook"))
}

/// A name as [`Name`] takes it, answered as an error naming `field`.
pub fn name(field: &str, value: &str) -> Result<Name, ApiError> {
    Name::parse(value).map_err(|e| ApiError::field(field, e))
}

/// An address as [`EmailAddress`] takes it, answered as an error naming `field`.
pub fn email(field: &str, value: &str) -> Result<EmailAddress, ApiError> {
    value.parse::<EmailAddress>().map_err(|e| ApiError::field(field, e))
}

/// A business account as [`Account::checked`] takes it, answered as an error naming the detail
/// (`account.email`).
pub fn account(field: &str, account: Account) -> Result<Account, ApiError> {
    account.checked().map_err(|(key, e)| ApiError::field(format!("{field}.{key}"), e))
}

/// A time zone name as [`Timezone`] takes it, answered as an error naming `timezone`.
pub fn timezone(value: &str) -> Result<Timezone, ApiError> {
    value.parse::<Timezone>().map_err(|e| ApiError::field("timezone", e))
}
