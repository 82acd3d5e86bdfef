//! A workspace's members: `POST/GET /api/v1/workspaces/{id}/members`,
//! `PATCH/DELETE /api/v1/workspaces/{id}/members/{user_id}`. Adding someone invites them: the
//! answer carries a single-use link, good for 7 days, where they choose a password and sign in.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::domain::{EmailAddress, Need, Role, UserId, WorkspaceId};
use crate::http::auth::Access;
use crate::http::{ApiError, Body, Ids};
use crate::service::{self, AppState};
use crate::store::Member;

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    #[schema(max_length = 320)]
    pub email: String,
    /// `admin` (everything in the workspace) or `viewer` (reads; no secret, no change).
    pub role: Role,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: Role,
}

/// A member as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    user_id: UserId,
    email: String,
    role: Role,
    /// Whether they have chosen a password yet (accepted an invitation).
    active: bool,
    last_sign_in_at: Option<DateTime<Utc>>,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        MemberView {
            user_id: m.user.id,
            email: m.user.email,
            role: m.role,
            active: m.user.password_hash.is_some(),
            last_sign_in_at: m.user.last_sign_in_at,
        }
    }
}

/// A member just invited, with the link that lets them in (shown to whoever invited them).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Invited {
    #[serde(flatten)]
    member: MemberView,
    /// Single-use, good for 7 days: where they choose a password and sign in.
    invitation_url: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberList {
    members: Vec<MemberView>,
}

#[utoipa::path(
    post,
    operation_id = "members_add",
    path = "/api/v1/workspaces/{id}/members",
    tag = "members",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    request_body = AddMember,
    responses(
        (status = 201, description = "Invited: `invitation_url` lets them choose a password", body = Invited),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn add(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(workspace_id): Ids<WorkspaceId>,
    Body(body): Body<AddMember>,
) -> Result<(StatusCode, Json<Invited>), ApiError> {
    super::workspace(&state, &access, &workspace_id, Need::Change).await?;
    let email: EmailAddress = super::email("email", &body.email)?;
    let (member, invitation_url) =
        service::members::invite(&state, &workspace_id, email, body.role, &access.actor()).await?;
    Ok((StatusCode::CREATED, Json(Invited { member: member.into(), invitation_url })))
}

#[utoipa::path(
    get,
    operation_id = "members_list",
    path = "/api/v1/workspaces/{id}/members",
    tag = "members",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id")),
    responses((status = 200, description = "Its members, oldest first", body = MemberList), crate::http::Errors)
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn list(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(workspace_id): Ids<WorkspaceId>,
) -> Result<Json<MemberList>, ApiError> {
    super::workspace(&state, &access, &workspace_id, Need::Change).await?;
    let members = state.store.list_members(&workspace_id).await?;
    Ok(Json(MemberList { members: members.into_iter().map(MemberView::from).collect() }))
}

#[utoipa::path(
    patch,
    operation_id = "members_update",
    path = "/api/v1/workspaces/{id}/members/{user_id}",
    tag = "members",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id"), ("user_id" = String, Path, description = "User id")),
    request_body = UpdateMember,
    responses((status = 200, description = "The member with their new role", body = MemberView), crate::http::Errors)
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id, user_id = %user))]
pub async fn update(
    Access(access): Access,
    State(state): State<AppState>,
    Ids((workspace_id, user)): Ids<(WorkspaceId, UserId)>,
    Body(body): Body<UpdateMember>,
) -> Result<Json<MemberView>, ApiError> {
    super::workspace(&state, &access, &workspace_id, Need::Change).await?;
    let member = service::members::set_role(&state, &workspace_id, &user, body.role, &access.actor())
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    Ok(Json(member.into()))
}

#[utoipa::path(
    delete,
    operation_id = "members_remove",
    path = "/api/v1/workspaces/{id}/members/{user_id}",
    tag = "members",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Workspace id"), ("user_id" = String, Path, description = "User id")),
    responses((status = 204, description = "Removed: out of the workspace at their next request"), crate::http::Errors)
)]
#[instrument(skip_all, fields(workspace_id = %workspace_id, user_id = %user))]
pub async fn remove(
    Access(access): Access,
    State(state): State<AppState>,
    Ids((workspace_id, user)): Ids<(WorkspaceId, UserId)>,
) -> Result<StatusCode, ApiError> {
    super::workspace(&state, &access, &workspace_id, Need::Change).await?;
    if !service::members::remove(&state, &workspace_id, &user, &access.actor()).await? {
        return Err(ApiError::not_found("member"));
    }
    Ok(StatusCode::NO_CONTENT)
}
