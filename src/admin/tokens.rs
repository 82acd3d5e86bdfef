//! A workspace's scoped API tokens: `POST/GET /api/v1/workspaces/{id}/tokens`,
//! `DELETE /api/v1/workspaces/{id}/tokens/{token_id}`. A token acts in its workspace alone, as an
//! admin or a viewer; it is shown once, when made, and kept only as its SHA-256.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, instrument};

use crate::domain::{Need, Role, TokenId, WorkspaceId, random_token};
use crate::http::auth::{API_TOKEN_PREFIX, Access, api_token_hash};
use crate::http::{ApiError, Body, Ids};
use crate::service::AppState;
use crate::store::{ApiToken, NewApiToken};

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What it is for, e.g. "Zapier" (shown in the list and in the activity log).
    #[schema(pattern = "\\S", max_length = 200)]
    pub name: String,
    /// `admin` (everything in the workspace) or `viewer` (reads; no secret, no change).
    pub role: Role,
}

/// A token as listed: never the token itself.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    id: TokenId,
    name: String,
    role: Role,
    /// Who made it: `operator`, or `token:<name>`.
    created_by: String,
    created_at: DateTime<Utc>,
    /// When it was last used, to the minute; null if never.
    last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        TokenView {
            id: t.id,
            name: t.name.into_string(),
            role: t.role,
            created_by: t.created_by,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// A token just made, with the token itself: shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    view: TokenView,
    /// `Authorization: Bearer cbt_…`. Keep it now: it is not shown again.
    token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenView>,
}

#[utoipa::path(
    post,
    operation_id = "tokens_create",
    path = "/api/v1/workspaces/{id}/tokens",
    tag = "tokens",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    request_body = CreateToken,
    responses(
        (status = 201, description = "Made; `token` is shown this once", body = CreatedToken),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn create(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(workspace_id): Ids<WorkspaceId>,
    Body(body): Body<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    super::workspace(&state, &access, &workspace_id, Need::Change).await?;
    let token = format!("{API_TOKEN_PREFIX}{}", random_token(40));
    let new = NewApiToken {
        workspace_id,
        name: super::name("name", &body.name)?,
        role: body.role,
        token_hash: api_token_hash(&token),
        created_by: access.actor(),
    };
    let made = state.store.create_api_token(new).await?;
    let detail = serde_json::json!({"token_id": made.id, "name": made.name.as_str(), "role": made.role});
    crate::service::activity::note(
        &state,
        &made.workspace_id,
        None,
        ("token_created", &access.actor()),
        detail,
    )
    .await;
    info!(token_id = %made.id, role = made.role.as_str(), "API token made");
    Ok((StatusCode::CREATED, Json(CreatedToken { view: made.into(), token })))
}

#[utoipa::path(
    get,
    operation_id = "tokens_list",
    path = "/api/v1/workspaces/{id}/tokens",
    tag = "tokens",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The workspace's tokens, oldest first (never the tokens themselves)", body = TokenList),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn list(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(workspace_id): Ids<WorkspaceId>,
) -> Result<Json<TokenList>, ApiError> {
    super::workspace(&state, &access, &workspace_id, Need::Change).await?;
    let tokens = state.store.list_api_tokens(&workspace_id).await?;
    Ok(Json(TokenList { tokens: tokens.into_iter().map(TokenView::from).collect() }))
}

#[utoipa::path(
    delete,
    operation_id = "tokens_delete",
    path = "/api/v1/workspaces/{id}/tokens/{token_id}",
    tag = "tokens",
    security(("admin_token" = [])),
    params(
        ("id" = String, Path, description = "Workspace id"),
        ("token_id" = String, Path, description = "Token id (`tok_…`)")
    ),
    responses(
        (status = 204, description = "Revoked: refused from now on, on every daemon"),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id, token_id = %id))]
pub async fn delete(
    Access(access): Access,
    State(state): State<AppState>,
    Ids((workspace_id, id)): Ids<(WorkspaceId, TokenId)>,
) -> Result<StatusCode, ApiError> {
    super::workspace(&state, &access, &workspace_id, Need::Change).await?;
    let revoked = state.store.list_api_tokens(&workspace_id).await?.into_iter().find(|t| t.id == id);
    if state.store.revoke_api_token(&workspace_id, &id).await? {
        let detail = serde_json::json!({"token_id": id, "name": revoked.map(|t| t.name.into_string())});
        crate::service::activity::note(
            &state,
            &workspace_id,
            None,
            ("token_revoked", &access.actor()),
            detail,
        )
        .await;
        info!("API token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token"))
    }
}
