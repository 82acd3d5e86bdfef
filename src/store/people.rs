//! People: users (an e-mail address and a password), their memberships of workspaces, and the
//! invitations that bring them in.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{EmailAddress, Role, UserId, WorkspaceId};

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// Lower-case.
    pub email: String,
    /// The argon2id hash (PHC string) of their password; `None` until they accept an invitation.
    pub password_hash: Option<String>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    /// Whether they may do what the admin token does: every workspace, and the instance.
    pub operator: bool,
}

/// A member of a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: User,
    pub role: Role,
    pub since: DateTime<Utc>,
}

/// An invitation to keep: a workspace, an address and a role, and the SHA-256 of its link's token.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub workspace_id: WorkspaceId,
    pub email: EmailAddress,
    pub role: Role,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// Users, memberships and invitations.
#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// Makes the address a member of the workspace with `role` (the user made if new, the role
    /// replaced if already a member) and keeps the invitation. Returns the member.
    async fn invite_member(&self, invitation: NewInvitation) -> StoreResult<Member>;
    /// A workspace's members, oldest first.
    async fn list_members(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Member>>;
    /// Changes a member's role; `None`: no such member.
    async fn set_member_role(
        &self,
        workspace_id: &WorkspaceId,
        user: &UserId,
        role: Role,
    ) -> StoreResult<Option<Member>>;
    /// Removes a member from a workspace (and their open invitations to it); from the commit on,
    /// [`PeopleStore::memberships`] no longer lists it, so their sessions lose it at once.
    /// `false`: no such member.
    async fn remove_member(&self, workspace_id: &WorkspaceId, user: &UserId) -> StoreResult<bool>;
    /// Spends the invitation whose token hashes to `token_hash`, if it is unused and unexpired at
    /// `now`: its user's password becomes `password_hash`. Single-use: a second call finds
    /// nothing. Returns the user and the workspace it invites to.
    async fn accept_invitation(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(User, WorkspaceId)>>;
    /// An invitation still good at `now`: its address and workspace (for the page that accepts it).
    async fn open_invitation(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(String, WorkspaceId)>>;
    /// A user by id.
    async fn user(&self, id: &UserId) -> StoreResult<Option<User>>;
    /// The user of an address (any case), if any.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// The workspaces a user belongs to, with their role in each.
    async fn memberships(&self, user: &UserId) -> StoreResult<Vec<(WorkspaceId, Role)>>;
    /// Keeps a password-reset link for `user` (its token's SHA-256), good until `expires_at`;
    /// `false` (nothing kept) when one made for them is still good at `now`, so asking again does
    /// not send another e-mail.
    async fn start_password_reset(
        &self,
        user: &UserId,
        token_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// The address a reset link is for, if it is unused and good at `now`.
    async fn open_password_reset(&self, token_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<String>>;
    /// Spends a reset link, if unused and good at `now`: the user's password becomes
    /// `password_hash` and every session of theirs ends (a new one is started by the caller).
    /// Single-use. Returns the user.
    async fn reset_password(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>>;
    /// Notes a sign-in.
    async fn note_sign_in(&self, user: &UserId, at: DateTime<Utc>) -> StoreResult<()>;
    /// Makes the address an operator (the user made if new). Returns the user.
    async fn add_operator(&self, email: &EmailAddress) -> StoreResult<User>;
    /// Makes a user an operator or not; `None`: no such user.
    async fn set_operator(&self, user: &UserId, operator: bool) -> StoreResult<Option<User>>;
    /// Every user, oldest first.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Deletes a user: their memberships, invitations, reset links and sessions go with them, so
    /// they are signed out at once. `false`: no such user.
    async fn delete_user(&self, user: &UserId) -> StoreResult<bool>;
    /// Keeps a link for `user` to choose a password (the reset form; its token's SHA-256), good
    /// until `expires_at`, replacing any link of theirs still open at `now`: the one handed out
    /// last is the one that works.
    async fn replace_password_link(
        &self,
        user: &UserId,
        token_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Changes a signed-in user's password to `password_hash` and ends every other session of
    /// theirs (`keep`, the session that asked, stays signed in), in one transaction.
    async fn change_password(&self, user: &UserId, password_hash: &str, keep: &str) -> StoreResult<()>;
    /// Spends every open invitation of a user (they signed in another way, single sign-on: a link
    /// still in a mailbox must not set a password after that).
    async fn spend_invitations(&self, user: &UserId, now: DateTime<Utc>) -> StoreResult<()>;
}
