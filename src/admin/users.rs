//! The instance's users, for the operator alone: `POST/GET /api/v1/users`,
//! `PATCH/DELETE /api/v1/users/{user_id}`. An operator user does what the admin token does, signed
//! in as themselves on the page, so the activity log names them; workspace members are added
//! through their workspace (`/api/v1/workspaces/{id}/members`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::domain::UserId;
use crate::http::auth::Admin;
use crate::http::{ApiError, Body, Ids};
use crate::service::{self, AppState};
use crate::store::User;

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUser {
    #[schema(max_length = 320)]
    pub email: String,
    /// Must be `true`: the operators are the instance's users; anyone else is added to a
    /// workspace as its member.
    pub operator: bool,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub operator: bool,
}

/// A user as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    user_id: UserId,
    email: String,
    operator: bool,
    /// Whether they have chosen a password yet.
    active: bool,
    last_sign_in_at: Option<DateTime<Utc>>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            user_id: u.id,
            email: u.email,
            operator: u.operator,
            active: u.password_hash.is_some(),
            last_sign_in_at: u.last_sign_in_at,
        }
    }
}

/// An operator just added.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddedUser {
    #[serde(flatten)]
    user: UserView,
    /// When they have no password yet: a single-use link, good for 7 days, where they choose one
    /// (a newer link replaces it). Absent when they already have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    password_url: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserList {
    users: Vec<UserView>,
}

#[utoipa::path(
    post,
    operation_id = "users_add",
    path = "/api/v1/users",
    tag = "users",
    security(("admin_token" = [])),
    request_body = AddUser,
    responses(
        (status = 201, description = "An operator; `password_url` lets them choose a password", body = AddedUser),
        crate::http::Errors
    )
)]
#[instrument(skip_all)]
pub async fn add(
    _: Admin,
    State(state): State<AppState>,
    Body(body): Body<AddUser>,
) -> Result<(StatusCode, Json<AddedUser>), ApiError> {
    if !body.operator {
        return Err(ApiError::field(
            "operator",
            "must be true: add anyone else to a workspace, as its member (/api/v1/workspaces/{id}/members)",
        ));
    }
    let email = super::email("email", &body.email)?;
    let (user, password_url) = service::users::add_operator(&state, &email, "operator").await?;
    Ok((StatusCode::CREATED, Json(AddedUser { user: user.into(), password_url })))
}

#[utoipa::path(
    get,
    operation_id = "users_list",
    path = "/api/v1/users",
    tag = "users",
    security(("admin_token" = [])),
    responses((status = 200, description = "Every user, oldest first", body = UserList), crate::http::Errors)
)]
#[instrument(skip_all)]
pub async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<UserList>, ApiError> {
    let users = state.store.list_users().await?;
    Ok(Json(UserList { users: users.into_iter().map(UserView::from).collect() }))
}

#[utoipa::path(
    patch,
    operation_id = "users_update",
    path = "/api/v1/users/{user_id}",
    tag = "users",
    security(("admin_token" = [])),
    params(("user_id" = String, Path, description = "User id")),
    request_body = UpdateUser,
    responses((status = 200, description = "The user, an operator or not from their next request", body = UserView), crate::http::Errors)
)]
#[instrument(skip_all, fields(user_id = %user))]
pub async fn update(
    _: Admin,
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Body(body): Body<UpdateUser>,
) -> Result<Json<UserView>, ApiError> {
    let user =
        state.store.set_operator(&user, body.operator).await?.ok_or_else(|| ApiError::not_found("user"))?;
    tracing::info!(user_id = %user.id, operator = user.operator, actor = "operator", "user changed");
    Ok(Json(user.into()))
}

#[utoipa::path(
    delete,
    operation_id = "users_delete",
    path = "/api/v1/users/{user_id}",
    tag = "users",
    security(("admin_token" = [])),
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204, description = "Deleted, with their memberships: signed out at once"), crate::http::Errors)
)]
#[instrument(skip_all, fields(user_id = %user))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete_user(&user).await? {
        return Err(ApiError::not_found("user"));
    }
    tracing::info!(user_id = %user, actor = "operator", "user deleted");
    Ok(StatusCode::NO_CONTENT)
}
