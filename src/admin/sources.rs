//! Sources: `POST/GET /api/v1/workspaces/{id}/sources`, `GET/PATCH/DELETE /api/v1/sources/{id}`
//! (and the same under `/api/v1/workspaces/{id}/sources/{source_id}`), `POST
//! /api/v1/sources/{id}/rotate`. Credentials go in and are never shown again; each source shows the
//! inbound URL to paste into its channel, whose key can be rotated.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::{info, instrument};

use super::{account, name};
use crate::domain::{Account, SourceId, SourceKind, WorkspaceId};
use crate::domain::{Need, Principal};
use crate::http::ApiError;
use crate::http::Body;
use crate::http::Ids;
use crate::http::auth::Access;
use crate::service::AppState;
use crate::service::sources::inbound_url;
use crate::store::{NewSource, Source, SourceHealth, SourcePatch, SourceRefusal};

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    pub kind: SourceKind,
    #[schema(pattern = "\\S", max_length = 200)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSource {
    #[schema(pattern = "\\S", max_length = 200)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// Replaces the credentials (all of them).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A source as the API shows it: never its secrets, only which are set.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    id: SourceId,
    workspace_id: WorkspaceId,
    kind: SourceKind,
    name: String,
    account: Account,
    enabled: bool,
    /// Paste this into the channel's webhook settings. Its key is a secret: a viewer's token
    /// does not see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    inbound_url: Option<String>,
    credentials_set: Vec<String>,
    /// WeChat: the official account's type (`credentials.account_type`, `service` when unset),
    /// which decides what may be sent after the 48-hour reply window.
    #[serde(skip_serializing_if = "Option::is_none")]
    account_type: Option<&'static str>,
    /// Whether the vendor reaches us: when its last request came (counted every few seconds).
    last_request_at: Option<DateTime<Utc>>,
    /// Requests in the last 24 hours.
    requests_24h: u64,
    /// The last refused request: when, its status, and why (bad signature, wrong account,
    /// replay, too large…): how a mistyped secret shows.
    last_refusal: Option<SourceRefusal>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl SourceView {
    /// With what its inbound URL has seen.
    fn with_health(self, health: SourceHealth) -> Self {
        SourceView {
            last_request_at: health.last_request_at,
            requests_24h: health.requests_24h,
            last_refusal: health.last_refusal,
            ..self
        }
    }

    /// The source as `access` may see it, with its traffic.
    async fn seen(state: &AppState, source: Source, access: &Principal) -> Result<Self, ApiError> {
        let health = state.store.source_health(&source.id, state.clock.now()).await?;
        Ok(SourceView::new(source, &state.public_url, access).with_health(health))
    }

    /// The source as `access` may see it (the inbound URL only for who may change the source).
    pub fn new(source: Source, public_url: &str, access: &Principal) -> Self {
        let credentials_set = match &source.credentials {
            Value::Object(map) => map.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k.clone()).collect(),
            _ => Vec::new(),
        };
        let account_type = (source.kind == SourceKind::Wechat)
            .then(|| crate::domain::credentials::wechat::account_type(&source.credentials).as_str());
        SourceView {
            account_type,
            last_request_at: None,
            requests_24h: 0,
            last_refusal: None,
            inbound_url: access.sees_secrets(&source.workspace_id).then(|| inbound_url(public_url, &source)),
            id: source.id,
            workspace_id: source.workspace_id,
            kind: source.kind,
            name: source.name.into_string(),
            account: source.account,
            enabled: source.enabled,
            credentials_set,
            created_at: source.created_at,
            updated_at: source.updated_at,
        }
    }
}

/// A kind's credentials checked against what its channel takes, answered as an error naming the key.
fn credentials(kind: SourceKind, given: Map<String, Value>) -> Result<Value, ApiError> {
    crate::domain::credentials::check(kind, given).map_err(|(field, why)| ApiError::field(field, why))
}

/// The source of `workspace_id`, if `access` may do `need` there; 404 otherwise.
async fn owned(
    state: &AppState,
    access: &Principal,
    workspace_id: &WorkspaceId,
    id: &SourceId,
    need: Need,
) -> Result<Source, ApiError> {
    match found(state, access, id, need).await? {
        source if source.workspace_id == *workspace_id => Ok(source),
        _ => Err(ApiError::not_found("source")),
    }
}

/// The source, if `access` may do `need` in its workspace; 404 otherwise.
async fn found(state: &AppState, access: &Principal, id: &SourceId, need: Need) -> Result<Source, ApiError> {
    let source = state.store.get_source(id).await?.ok_or_else(|| ApiError::not_found("source"))?;
    super::allowed(access, &source.workspace_id, need, "source")?;
    Ok(source)
}

#[utoipa::path(
    post,
    operation_id = "sources_create",
    path = "/api/v1/workspaces/{id}/sources",
    tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    request_body = CreateSource,
    responses(
        (status = 201, description = "Created; paste `inbound_url` into the channel", body = SourceView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn create(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(workspace_id): Ids<WorkspaceId>,
    Body(body): Body<CreateSource>,
) -> Result<(StatusCode, Json<SourceView>), ApiError> {
    super::workspace(&state, &access, &workspace_id, Need::Change).await?;
    let new = NewSource {
        workspace_id,
        kind: body.kind,
        name: name("name", &body.name)?,
        account: account("account", body.account.unwrap_or_default())?,
        credentials: credentials(body.kind, body.credentials.unwrap_or_default())?,
        enabled: body.enabled.unwrap_or(true),
    };
    let source = state.store.create_source(new).await?;
    crate::service::workspaces::source_noted(&state, &source, "source_created", &access.actor()).await;
    info!(source = %crate::telemetry::redact(source.id.as_str()), kind = source.kind.as_str(), "source created");
    Ok((StatusCode::CREATED, Json(SourceView::new(source, &state.public_url, &access))))
}

#[utoipa::path(
    get,
    operation_id = "sources_list",
    path = "/api/v1/workspaces/{id}/sources",
    tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The workspace's sources", body = SourceList),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn list(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(workspace_id): Ids<WorkspaceId>,
) -> Result<Json<Value>, ApiError> {
    super::workspace(&state, &access, &workspace_id, Need::Read).await?;
    let mut sources = Vec::new();
    for source in state.store.list_sources(&workspace_id).await? {
        sources.push(SourceView::seen(&state, source, &access).await?);
    }
    Ok(Json(json!({ "sources": sources })))
}

#[utoipa::path(
    get,
    operation_id = "sources_show",
    path = "/api/v1/workspaces/{id}/sources/{source_id}",
    tag = "sources",
    security(("admin_token" = [])),
    params(
        ("id" = String, Path, description = "Workspace id"),
        ("source_id" = String, Path, description = "Source id")
    ),
    responses(
        (status = 200, description = "The source, without its secrets", body = SourceView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(source = %crate::telemetry::redact(id.as_str())))]
pub async fn show(
    Access(access): Access,
    State(state): State<AppState>,
    Ids((workspace_id, id)): Ids<(WorkspaceId, SourceId)>,
) -> Result<Json<SourceView>, ApiError> {
    let source = owned(&state, &access, &workspace_id, &id, Need::Read).await?;
    Ok(Json(SourceView::seen(&state, source, &access).await?))
}

#[utoipa::path(
    patch,
    operation_id = "sources_update",
    path = "/api/v1/workspaces/{id}/sources/{source_id}",
    tag = "sources",
    security(("admin_token" = [])),
    params(
        ("id" = String, Path, description = "Workspace id"),
        ("source_id" = String, Path, description = "Source id")
    ),
    request_body = UpdateSource,
    responses(
        (status = 200, description = "The updated source", body = SourceView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(source = %crate::telemetry::redact(id.as_str())))]
pub async fn update(
    Access(access): Access,
    State(state): State<AppState>,
    Ids((workspace_id, id)): Ids<(WorkspaceId, SourceId)>,
    Body(body): Body<UpdateSource>,
) -> Result<Json<SourceView>, ApiError> {
    let source = owned(&state, &access, &workspace_id, &id, Need::Change).await?;
    updated(&state, &access, source, body).await
}

async fn updated(
    state: &AppState,
    access: &Principal,
    source: Source,
    body: UpdateSource,
) -> Result<Json<SourceView>, ApiError> {
    let patch = SourcePatch {
        name: body.name.as_deref().map(|n| name("name", n)).transpose()?,
        account: body.account.map(|a| account("account", a)).transpose()?,
        credentials: body.credentials.map(|c| credentials(source.kind, c)).transpose()?,
        enabled: body.enabled,
        new_inbound_key: false,
    };
    let source =
        state.store.update_source(&source.id, patch).await?.ok_or_else(|| ApiError::not_found("source"))?;
    crate::service::workspaces::source_noted(state, &source, "source_changed", &access.actor()).await;
    info!("source updated");
    Ok(Json(SourceView::new(source, &state.public_url, access)))
}

#[utoipa::path(
    delete,
    operation_id = "sources_delete",
    path = "/api/v1/workspaces/{id}/sources/{source_id}",
    tag = "sources",
    security(("admin_token" = [])),
    params(
        ("id" = String, Path, description = "Workspace id"),
        ("source_id" = String, Path, description = "Source id")
    ),
    responses(
        (status = 204, description = "Deleted"),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(source = %crate::telemetry::redact(id.as_str())))]
pub async fn delete(
    Access(access): Access,
    State(state): State<AppState>,
    Ids((workspace_id, id)): Ids<(WorkspaceId, SourceId)>,
) -> Result<StatusCode, ApiError> {
    let source = owned(&state, &access, &workspace_id, &id, Need::Change).await?;
    deleted(&state, &source, &access.actor()).await
}

async fn deleted(state: &AppState, source: &Source, actor: &str) -> Result<StatusCode, ApiError> {
    state.store.delete_source(&source.id).await?;
    crate::service::workspaces::source_noted(state, source, "source_deleted", actor).await;
    info!("source deleted; its chats and messages stay");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    operation_id = "source_show",
    path = "/api/v1/sources/{id}",
    tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Source id")),
    responses(
        (status = 200, description = "The source, without its secrets", body = SourceView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(source = %crate::telemetry::redact(id.as_str())))]
pub async fn show_one(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<SourceId>,
) -> Result<Json<SourceView>, ApiError> {
    let source = found(&state, &access, &id, Need::Read).await?;
    Ok(Json(SourceView::seen(&state, source, &access).await?))
}

#[utoipa::path(
    patch,
    operation_id = "source_update",
    path = "/api/v1/sources/{id}",
    tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Source id")),
    request_body = UpdateSource,
    responses(
        (status = 200, description = "The updated source", body = SourceView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(source = %crate::telemetry::redact(id.as_str())))]
pub async fn update_one(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<SourceId>,
    Body(body): Body<UpdateSource>,
) -> Result<Json<SourceView>, ApiError> {
    let source = found(&state, &access, &id, Need::Change).await?;
    updated(&state, &access, source, body).await
}

#[utoipa::path(
    delete,
    operation_id = "source_delete",
    path = "/api/v1/sources/{id}",
    tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Source id")),
    responses(
        (status = 204, description = "Deleted"),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(source = %crate::telemetry::redact(id.as_str())))]
pub async fn delete_one(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<SourceId>,
) -> Result<StatusCode, ApiError> {
    let source = found(&state, &access, &id, Need::Change).await?;
    deleted(&state, &source, &access.actor()).await
}

#[utoipa::path(
    post,
    operation_id = "source_rotate",
    path = "/api/v1/sources/{id}/rotate",
    tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Source id")),
    responses(
        (status = 200, description = "The source with its new `inbound_url`; the old one answers 404 from now on. Paste the new one into the channel.", body = SourceView),
        crate::http::Errors
    )
)]
/// `POST /api/v1/sources/{id}/rotate`: a new inbound URL for a source whose URL may have leaked
/// (for a channel that signs nothing, the URL is the whole secret). Its chats and messages stay.
#[instrument(skip_all, fields(source = %crate::telemetry::redact(id.as_str())))]
pub async fn rotate(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<SourceId>,
) -> Result<Json<SourceView>, ApiError> {
    found(&state, &access, &id, Need::Change).await?;
    let source = state.store.rotate_inbound_key(&id).await?.ok_or_else(|| ApiError::not_found("source"))?;
    crate::service::workspaces::source_noted(&state, &source, "source_rotated", &access.actor()).await;
    info!(kind = source.kind.as_str(), "inbound URL rotated; the old one answers 404");
    Ok(Json(SourceView::new(source, &state.public_url, &access)))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SourceList {
    pub sources: Vec<SourceView>,
}
