//! `/api/v1/workspaces`: create, list, show, update, and where a workspace's messages are.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, instrument};

use super::{account, email, name, timezone};
use crate::domain::{
    Account, ConversationMax, ConversationSilence, Granularity, Locale, MediaLinkTtl, WorkspaceId,
};
use crate::domain::{Need, Principal};
use crate::http::ApiError;
use crate::http::Ids;
use crate::http::auth::{Access, Admin};
use crate::http::{Body, nullable};
use crate::service;
use crate::service::AppState;
use crate::store::{NewWorkspace, Workspace, WorkspacePatch, WorkspaceStats};

/// A workspace as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Workspace)]
pub struct WorkspaceView {
    id: WorkspaceId,
    name: String,
    owner_email: String,
    /// An IANA time zone name; windows follow its wall clock.
    timezone: String,
    /// The granularity of webhooks that have none of their own.
    granularity: Granularity,
    /// The business account used when a message names none.
    account: Account,
    /// The language of its notes: `en` or `ja`.
    locale: Locale,
    /// How long its media links (`download_url`) work after their payload is made, e.g. `1day`.
    media_link_ttl: String,
    /// How long it keeps its messages: `keep` (for good) or a duration like `90days`.
    message_retention: String,
    /// How long its transcript links work after they are made or rotated: `never` (they do
    /// not expire) or a duration like `30days`; an expired one answers 410.
    transcript_link_ttl: String,
    /// For webhooks that bundle by `conversation`: how long a chat may stay silent before its
    /// conversation's bundle goes out, e.g. `30m`.
    conversation_silence: String,
    /// ... and how long a conversation may run before its bundle goes out anyway, e.g. `1day`.
    conversation_max: String,
    /// The bearer key that authorises ingest into this workspace alone (not shown to a viewer).
    #[serde(skip_serializing_if = "Option::is_none")]
    ingest_key: Option<String>,
    /// Where replies to its JSON API chats are posted, signed as deliveries are (`null`: those
    /// chats cannot be answered here).
    reply_url: Option<String>,
    /// Whether replies posted there are signed.
    has_reply_secret: bool,
    /// The reply URL's signing secret: only in the answer that set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_secret: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl WorkspaceView {
    /// The workspace as `access` may see it (the ingest key only for who may change it).
    pub fn new(w: Workspace, access: &Principal) -> Self {
        let ingest_key = access.sees_secrets(&w.id).then_some(w.ingest_key);
        WorkspaceView {
            id: w.id,
            name: w.name.into_string(),
            owner_email: w.owner_email.into_string(),
            timezone: w.timezone.name().to_string(),
            granularity: w.granularity,
            account: w.account,
            locale: w.locale,
            media_link_ttl: w.media_link_ttl.to_string(),
            message_retention: w.message_retention.to_string(),
            transcript_link_ttl: w.transcript_link_ttl.to_string(),
            conversation_silence: w.conversation_silence.to_string(),
            conversation_max: w.conversation_max.to_string(),
            ingest_key,
            reply_url: w.reply_url,
            has_reply_secret: w.reply_secret.is_some(),
            reply_secret: None,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// Where a workspace's messages are.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WorkspaceStats)]
pub struct StatsView {
    chats: u64,
    messages: u64,
    deliveries_pending: u64,
    deliveries_delivered: u64,
    deliveries_expired: u64,
    deliveries_failed: u64,
}

impl From<WorkspaceStats> for StatsView {
    fn from(s: WorkspaceStats) -> Self {
        StatsView {
            chats: s.chats,
            messages: s.messages,
            deliveries_pending: s.deliveries_pending,
            deliveries_delivered: s.deliveries_delivered,
            deliveries_expired: s.deliveries_expired,
            deliveries_failed: s.deliveries_failed,
        }
    }
}

/// Every workspace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceList {
    workspaces: Vec<WorkspaceView>,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    #[schema(pattern = "\\S", max_length = 200)]
    pub name: String,
    #[schema(pattern = r"^\s*[^@\s]+@[^@\s]*\.[^@\s]*\s*$", max_length = 320)]
    pub owner_email: String,
    /// An IANA time zone name (UTC by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<Granularity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// The language of its notes: `en` (the default) or `ja`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<Locale>,
    /// How long its media links work after their payload is made: a duration from `5m` to
    /// `30days` (`24h` by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_link_ttl: Option<String>,
    /// How long it keeps its messages: `keep` (for good, the default) or a duration from `1day`
    /// to `10years`; older messages no open window needs are deleted in the background.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_retention: Option<String>,
    /// How long its transcript links work after they are made or rotated: `never` (the default)
    /// or a duration from `1h` to `10years`, after which a link answers 410.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript_link_ttl: Option<String>,
    /// For webhooks that bundle by `conversation`: how long a chat may stay silent (no message
    /// either way) before its conversation's bundle goes out, from `1m` to `24h` (`30m` by
    /// default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_silence: Option<String>,
    /// How long a conversation may run from its first message before its bundle goes out anyway,
    /// from `1h` to `7days` (`24h` by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_max: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspace {
    #[schema(pattern = "\\S", max_length = 200)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[schema(pattern = r"^\s*[^@\s]+@[^@\s]*\.[^@\s]*\s*$", max_length = 320)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_email: Option<String>,
    /// An IANA time zone name (UTC by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<Granularity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// The language of its notes: `en` (the default) or `ja`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<Locale>,
    /// How long its media links work after their payload is made: a duration from `5m` to
    /// `30days` (`24h` by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_link_ttl: Option<String>,
    /// How long it keeps its messages: `keep` (for good, the default) or a duration from `1day`
    /// to `10years`; older messages no open window needs are deleted in the background.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_retention: Option<String>,
    /// How long its transcript links work after they are made or rotated: `never` (the default)
    /// or a duration from `1h` to `10years`, after which a link answers 410.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript_link_ttl: Option<String>,
    /// For webhooks that bundle by `conversation`: how long a chat may stay silent (no message
    /// either way) before its conversation's bundle goes out, from `1m` to `24h` (`30m` by
    /// default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_silence: Option<String>,
    /// How long a conversation may run from its first message before its bundle goes out anyway,
    /// from `1h` to `7days` (`24h` by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_max: Option<String>,
    /// Where replies to its JSON API chats are posted (`POST /api/v1/chats/{id}/messages` on such
    /// a chat), signed as deliveries are; `null` removes it. Setting it the first time generates
    /// its signing secret unless `reply_secret` says otherwise.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reply_url: Option<Option<String>>,
    /// `true` to generate the reply URL's signing secret, a `whsec_…` to set it, `false` or `null`
    /// to remove it (replies then go unsigned). A new secret is shown in this answer only.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub reply_secret: Option<Option<super::webhooks::SecretInput>>,
}

#[utoipa::path(
    post,
    operation_id = "workspaces_create",
    path = "/api/v1/workspaces",
    tag = "workspaces",
    security(("admin_token" = [])),
    request_body = CreateWorkspace,
    responses(
        (status = 201, description = "Created; `ingest_key` authorises ingest into it", body = WorkspaceView),
        crate::http::Errors
    )
)]
#[instrument(skip_all)]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    Body(body): Body<CreateWorkspace>,
) -> Result<(StatusCode, Json<WorkspaceView>), ApiError> {
    let new = NewWorkspace {
        name: name("name", &body.name)?,
        owner_email: email("owner_email", &body.owner_email)?,
        timezone: timezone(body.timezone.as_deref().unwrap_or("UTC"))?,
        granularity: body.granularity.unwrap_or(Granularity::None),
        account: account("account", body.account.unwrap_or_default())?,
        locale: body.locale.unwrap_or_default(),
        media_link_ttl: body
            .media_link_ttl
            .as_deref()
            .map(media_link_ttl)
            .transpose()?
            .unwrap_or(MediaLinkTtl::DEFAULT),
        message_retention: body
            .message_retention
            .as_deref()
            .map(message_retention)
            .transpose()?
            .unwrap_or_default(),
        conversation_silence: body
            .conversation_silence
            .as_deref()
            .map(super::webhooks::conversation_silence)
            .transpose()?
            .unwrap_or(ConversationSilence::DEFAULT),
        conversation_max: body
            .conversation_max
            .as_deref()
            .map(super::webhooks::conversation_max)
            .transpose()?
            .unwrap_or(ConversationMax::DEFAULT),
        transcript_link_ttl: body
            .transcript_link_ttl
            .as_deref()
            .map(transcript_link_ttl)
            .transpose()?
            .unwrap_or_default(),
    };
    let workspace = state.store.create_workspace(new).await?;
    info!(workspace_id = %workspace.id, "workspace created");
    Ok((StatusCode::CREATED, Json(WorkspaceView::new(workspace, &Principal::Operator))))
}

#[utoipa::path(
    get,
    operation_id = "workspaces_list",
    path = "/api/v1/workspaces",
    tag = "workspaces",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every workspace", body = WorkspaceList),
        crate::http::Errors
    )
)]
#[instrument(skip_all)]
pub async fn list(
    Access(access): Access,
    State(state): State<AppState>,
) -> Result<Json<WorkspaceList>, ApiError> {
    // A workspace's token lists its own workspace alone.
    let workspaces = match access.only_workspaces() {
        None => state.store.list_workspaces().await?,
        Some(own) => {
            let mut found = Vec::with_capacity(own.len());
            for id in own {
                found.extend(state.store.get_workspace(id).await?);
            }
            found
        }
    };
    let workspaces = workspaces.into_iter().map(|w| WorkspaceView::new(w, &access)).collect();
    Ok(Json(WorkspaceList { workspaces }))
}

#[utoipa::path(
    get,
    operation_id = "workspaces_show",
    path = "/api/v1/workspaces/{id}",
    tag = "workspaces",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn show(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WorkspaceId>,
) -> Result<Json<WorkspaceView>, ApiError> {
    let workspace = super::workspace(&state, &access, &id, Need::Read).await?;
    Ok(Json(WorkspaceView::new(workspace, &access)))
}

#[utoipa::path(
    patch,
    operation_id = "workspaces_update",
    path = "/api/v1/workspaces/{id}",
    tag = "workspaces",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    request_body = UpdateWorkspace,
    responses(
        (status = 200, description = "The updated workspace", body = WorkspaceView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn update(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WorkspaceId>,
    Body(body): Body<UpdateWorkspace>,
) -> Result<Json<WorkspaceView>, ApiError> {
    let before = super::workspace(&state, &access, &id, Need::Change).await?;
    let patch = WorkspacePatch {
        name: body.name.as_deref().map(|n| name("name", n)).transpose()?,
        owner_email: body.owner_email.as_deref().map(|e| email("owner_email", e)).transpose()?,
        timezone: body.timezone.as_deref().map(timezone).transpose()?,
        granularity: body.granularity,
        account: body.account.map(|a| account("account", a)).transpose()?,
        locale: body.locale,
        media_link_ttl: body.media_link_ttl.as_deref().map(media_link_ttl).transpose()?,
        message_retention: body.message_retention.as_deref().map(message_retention).transpose()?,
        transcript_link_ttl: body.transcript_link_ttl.as_deref().map(transcript_link_ttl).transpose()?,
        conversation_silence: body
            .conversation_silence
            .as_deref()
            .map(super::webhooks::conversation_silence)
            .transpose()?,
        conversation_max: body
            .conversation_max
            .as_deref()
            .map(super::webhooks::conversation_max)
            .transpose()?,
        reply_url: match body.reply_url {
            None => None,
            Some(None) => Some(None),
            Some(Some(url)) => Some(Some(reply_url(&state, &url).await?)),
        },
        reply_secret: body
            .reply_secret
            .map(|s| {
                s.map(|s| super::webhooks::secret_as("reply_secret", s)).transpose().map(Option::flatten)
            })
            .transpose()?,
    };
    // A reply URL set for the first time is signed, unless the request says how.
    let mut patch = patch;
    if matches!(patch.reply_url, Some(Some(_)))
        && patch.reply_secret.is_none()
        && before.reply_secret.is_none()
    {
        patch.reply_secret = Some(Some(crate::deliver::signature::SigningSecret::generate()));
    }
    let shown = patch.reply_secret.clone().flatten();
    let workspace =
        state.store.update_workspace(&id, patch).await?.ok_or_else(|| ApiError::not_found("workspace"))?;
    service::workspaces::changed(&state, &before, &workspace, &access.actor()).await;
    info!("workspace updated");
    Ok(Json(WorkspaceView { reply_secret: shown, ..WorkspaceView::new(workspace, &access) }))
}

#[utoipa::path(
    get,
    operation_id = "workspaces_stats",
    path = "/api/v1/workspaces/{id}/stats",
    tag = "workspaces",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "Where its messages are", body = StatsView),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn stats(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WorkspaceId>,
) -> Result<Json<StatsView>, ApiError> {
    super::workspace(&state, &access, &id, Need::Read).await?;
    Ok(Json(state.store.workspace_stats(&id).await?.into()))
}

#[utoipa::path(
    post,
    operation_id = "workspaces_flush",
    path = "/api/v1/workspaces/{id}/flush",
    tag = "workspaces",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "Every open window released now", body = Flushed),
        crate::http::Errors
    )
)]
/// `POST /api/v1/workspaces/{id}/flush`: releases every open window of the workspace now.
#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn flush(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WorkspaceId>,
) -> Result<Json<Value>, ApiError> {
    super::workspace(&state, &access, &id, Need::Change).await?;
    let deliveries = state.closer.flush(&id).await?;
    service::workspaces::flushed(&state, &id, deliveries, &access.actor()).await;
    Ok(Json(json!({ "deliveries": deliveries })))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Flushed {
    /// How many deliveries the flush queued.
    pub deliveries: u64,
}

/// A reply URL, checked as webhook URLs are (`https`, an address deliveries may reach).
async fn reply_url(state: &AppState, value: &str) -> Result<String, ApiError> {
    let url =
        service::webhooks::checked_url(state, value).await.map_err(|e| ApiError::field("reply_url", e))?;
    Ok(url.as_str().to_string())
}

fn transcript_link_ttl(value: &str) -> Result<crate::domain::TranscriptLinkTtl, ApiError> {
    value.parse().map_err(|e| ApiError::field("transcript_link_ttl", e))
}

fn message_retention(value: &str) -> Result<crate::domain::MessageRetention, ApiError> {
    value.parse().map_err(|e| ApiError::field("message_retention", e))
}

fn media_link_ttl(value: &str) -> Result<MediaLinkTtl, ApiError> {
    value.parse().map_err(|e| ApiError::field("media_link_ttl", e))
}
