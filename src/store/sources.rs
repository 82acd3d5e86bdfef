//! Sources: the inbound channels connected to a workspace.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{Account, SourceId, SourceKind, WorkspaceId};

/// A connected inbound channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub id: SourceId,
    pub workspace_id: WorkspaceId,
    pub kind: SourceKind,
    pub name: String,
    /// The business account it speaks for (the payloads' `whatsapp_account`).
    pub account: Account,
    /// Secrets; never shown by the API.
    pub credentials: serde_json::Value,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewSource {
    pub workspace_id: WorkspaceId,
    pub kind: SourceKind,
    pub name: String,
    pub account: Account,
    pub credentials: serde_json::Value,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SourcePatch {
    pub name: Option<String>,
    pub account: Option<Account>,
    pub credentials: Option<serde_json::Value>,
    pub enabled: Option<bool>,
}

/// Sources, for the admin API and the inbound routes.
#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Creates a source with a fresh, unguessable id (the secret part of its inbound URL).
    async fn create_source(&self, new: NewSource) -> StoreResult<Source>;
    /// A workspace's sources, oldest first.
    async fn list_sources(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Source>>;
    /// `None` when there is none, also for an id that is not well formed (`is_well_formed`).
    async fn get_source(&self, id: &SourceId) -> StoreResult<Option<Source>>;
    async fn update_source(&self, id: &SourceId, patch: SourcePatch) -> StoreResult<Option<Source>>;
    /// Deletes a source; its chats and messages stay.
    async fn delete_source(&self, id: &SourceId) -> StoreResult<bool>;
}
