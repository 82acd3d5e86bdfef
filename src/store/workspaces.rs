//! Workspaces: the owners of sources, chats and webhooks.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{
    Account, ConversationMax, ConversationSilence, EmailAddress, Granularity, Locale, MediaLinkTtl,
    MessageRetention, Name, Timezone, TranscriptLinkTtl, WorkspaceId,
};

/// A workspace as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: Name,
    pub owner_email: EmailAddress,
    /// Windows follow its wall clock.
    pub timezone: Timezone,
    /// The granularity of webhooks that have none of their own.
    pub granularity: Granularity,
    /// The business account used when a message names none.
    pub account: Account,
    /// The language of its notes.
    pub locale: Locale,
    /// How long its media links work.
    pub media_link_ttl: MediaLinkTtl,
    /// How long it keeps its messages.
    pub message_retention: MessageRetention,
    /// How long its chats' transcript links work.
    pub transcript_link_ttl: TranscriptLinkTtl,
    /// For conversation bundles: how long a chat may stay silent, and a conversation run,
    /// before its bundle goes out (webhooks may set their own).
    pub conversation_silence: ConversationSilence,
    pub conversation_max: ConversationMax,
    /// The bearer key that authorises ingest into this workspace alone.
    pub ingest_key: String,
    /// Where replies to its JSON API chats are posted (`None`: they cannot be answered here).
    pub reply_url: Option<String>,
    /// What signs them (`whsec_…`); never shown but in the answer that set it.
    pub reply_secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewWorkspace {
    pub name: Name,
    pub owner_email: EmailAddress,
    pub timezone: Timezone,
    pub granularity: Granularity,
    pub account: Account,
    pub locale: Locale,
    pub media_link_ttl: MediaLinkTtl,
    pub message_retention: MessageRetention,
    pub transcript_link_ttl: TranscriptLinkTtl,
    pub conversation_silence: ConversationSilence,
    pub conversation_max: ConversationMax,
}

/// Fields to change on a workspace; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WorkspacePatch {
    pub name: Option<Name>,
    pub owner_email: Option<EmailAddress>,
    pub timezone: Option<Timezone>,
    pub granularity: Option<Granularity>,
    pub account: Option<Account>,
    pub locale: Option<Locale>,
    pub media_link_ttl: Option<MediaLinkTtl>,
    pub message_retention: Option<MessageRetention>,
    pub transcript_link_ttl: Option<TranscriptLinkTtl>,
    pub conversation_silence: Option<ConversationSilence>,
    pub conversation_max: Option<ConversationMax>,
    /// `Some(None)` removes it.
    pub reply_url: Option<Option<String>>,
    /// `Some(None)` removes it.
    pub reply_secret: Option<Option<String>>,
}

/// A workspace at a glance, for the operator: what needs looking at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceHealth {
    pub id: WorkspaceId,
    /// Its webhooks switched off.
    pub webhooks_off: u64,
    /// Deliveries waiting to be sent, and since when the oldest has.
    pub waiting: u64,
    pub oldest_waiting_since: Option<DateTime<Utc>>,
    /// Its sources switched on that no request reached in the day before `now`.
    pub silent_sources: u64,
}

/// Counts that show where a workspace's messages are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkspaceStats {
    pub chats: u64,
    pub messages: u64,
    pub deliveries_pending: u64,
    pub deliveries_delivered: u64,
    pub deliveries_expired: u64,
    pub deliveries_failed: u64,
}

/// Workspaces, for the admin API and page.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// Creates a workspace with a fresh id and ingest key.
    async fn create_workspace(&self, new: NewWorkspace) -> StoreResult<Workspace>;
    /// Every workspace, oldest first.
    async fn list_workspaces(&self) -> StoreResult<Vec<Workspace>>;
    /// `None` when there is none.
    async fn get_workspace(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>>;
    /// Changes a workspace. A change of its granularity or time zone takes effect for every
    /// webhook that follows it exactly as [`super::WebhookStore::update_webhook`] describes: what
    /// is buffered stays buffered and belongs to the window open now, or goes out at once under
    /// `none`; nothing buffered is lost or bundled twice.
    async fn update_workspace(
        &self,
        id: &WorkspaceId,
        patch: WorkspacePatch,
    ) -> StoreResult<Option<Workspace>>;
    async fn workspace_stats(&self, id: &WorkspaceId) -> StoreResult<WorkspaceStats>;
    /// Every workspace at a glance, as of `now` (in the order of [`Self::list_workspaces`]).
    async fn workspaces_health(&self, now: DateTime<Utc>) -> StoreResult<Vec<WorkspaceHealth>>;
}
