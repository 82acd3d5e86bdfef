//! Who may use the API besides the operator: a workspace's scoped API tokens.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{Name, Role, TokenId, WorkspaceId};

/// A workspace's API token as stored: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: TokenId,
    pub workspace_id: WorkspaceId,
    pub name: Name,
    pub role: Role,
    /// Who made it, as the activity log names people (`operator`, `token:<name>`).
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// When it was last used, to the minute (`None`: never).
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub workspace_id: WorkspaceId,
    pub name: Name,
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    pub created_by: String,
}

/// Scoped API tokens.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Keeps a new token (its hash); `token_hash` is unique.
    async fn create_api_token(&self, new: NewApiToken) -> StoreResult<ApiToken>;
    /// A workspace's tokens, oldest first.
    async fn list_api_tokens(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<ApiToken>>;
    /// Revokes a token of `workspace_id`; from the commit on, [`AccessStore::api_token_by_hash`]
    /// finds it no more, on every daemon. `false`: no such token in that workspace.
    async fn revoke_api_token(&self, workspace_id: &WorkspaceId, id: &TokenId) -> StoreResult<bool>;
    /// The token whose SHA-256 is `token_hash`, if it exists (a revoked one does not).
    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiToken>>;
    /// Notes a use of the token at `at`; written at most once a minute per token, so a busy
    /// integration does not write on every request.
    async fn note_api_token_use(&self, id: &TokenId, at: DateTime<Utc>) -> StoreResult<()>;
}
