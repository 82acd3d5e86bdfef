//! The admin API under `/api/v1`, behind the admin token: workspaces, webhooks, sources, chats.

pub mod activity;
pub mod chats;
pub mod deliveries;
pub mod members;
pub mod preview;
pub mod replays;
pub mod sources;
pub mod tokens;
pub mod users;
pub mod webhooks;
pub mod workspaces;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::{
    Account, EmailAddress, Name, Need, Principal, Refusal, Timezone, WebhookId, WorkspaceId,
};
use crate::http::{ApiError, ErrorCode};
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
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::delete))
        .routes(routes!(members::add, members::list))
        .routes(routes!(members::update, members::remove))
        .routes(routes!(users::add, users::list))
        .routes(routes!(users::update, users::delete))
        .routes(routes!(activity::latest))
        .routes(routes!(activity::log))
        .routes(routes!(activity::test))
        .routes(routes!(activity::sample))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::resend))
        .routes(routes!(webhooks::show, webhooks::update, webhooks::delete))
        .routes(routes!(preview::preview))
        .routes(routes!(replays::replay))
        .routes(routes!(replays::show, replays::cancel))
        .routes(routes!(chats::list))
        .routes(routes!(chats::show, chats::update, chats::erase))
        .routes(routes!(chats::rotate_token))
        .routes(routes!(chats::sessions))
        .routes(routes!(chats::reply))
        .routes(routes!(chats::reply_status))
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

/// Whether `access` may do `need` in `workspace`, answered as the API answers: `404` naming
/// `what` when the caller may not see the workspace (as if it did not exist), `403` when it may
/// see it but not do this.
pub fn allowed(access: &Principal, workspace: &WorkspaceId, need: Need, what: &str) -> Result<(), ApiError> {
    match access.may(workspace, need) {
        Ok(()) => Ok(()),
        Err(Refusal::Hidden) => Err(ApiError::not_found(what)),
        Err(Refusal::Forbidden) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "this API token is a viewer's: it may read this workspace, not change it",
        )),
    }
}

/// The workspace, if `access` may do `need` in it; a 404 saying there is none otherwise.
pub async fn workspace(
    state: &AppState,
    access: &Principal,
    id: &WorkspaceId,
    need: Need,
) -> Result<Workspace, ApiError> {
    allowed(access, id, need, "workspace")?;
    state.store.get_workspace(id).await?.ok_or_else(|| ApiError::not_found("workspace"))
}

/// The webhook, if `access` may do `need` in its workspace; a 404 saying there is none otherwise.
pub async fn webhook(
    state: &AppState,
    access: &Principal,
    id: &WebhookId,
    need: Need,
) -> Result<Webhook, ApiError> {
    let webhook = state.store.get_webhook(id).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    allowed(access, &webhook.workspace_id, need, "webhook")?;
    Ok(webhook)
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
