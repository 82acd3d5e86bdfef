//! The activity log: every delivery attempt and every event of a webhook, and its retention.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{DeliveryId, WebhookId, WorkspaceId};

/// An attempt as read back from the activity log.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: i64,
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub status: Option<u16>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub request_headers: serde_json::Value,
    pub request_body: String,
}

/// One row of a webhook's activity log: a delivery attempt, or an event.
#[derive(Debug, Clone)]
pub struct ActivityRow {
    pub at: DateTime<Utc>,
    /// `attempt`, `test`, `failed`, `resent`, `disabled`, `enabled`, `config_changed`,
    /// `skipped` or `email_failed`.
    pub kind: String,
    pub delivery_id: Option<DeliveryId>,
    pub status: Option<u16>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    pub request_headers: Option<serde_json::Value>,
    /// The request body as sent.
    pub request_body: Option<String>,
    /// What an event says (JSON).
    pub detail: Option<serde_json::Value>,
    /// Who caused an event: `operator`, `token:<name>`; `None` for the daemon's own and attempts.
    pub actor: Option<String>,
    /// Where to continue reading older rows.
    pub cursor: ActivityCursor,
}

/// A position in the activity log, newest first: (time, events before attempts, id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActivityCursor {
    pub at: i64,
    pub source: i64,
    pub id: i64,
}

/// What the retention job removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub rows: u64,
}

/// The activity log, for the admin API and page, and the retention job.
///
/// An attempt reads back, in [`list_attempts`](Self::list_attempts) and
/// [`activity`](Self::activity) alike, with the request body and headers exactly as its
/// [`AttemptRecord`](super::AttemptRecord) said they were sent, however the store keeps them.
#[async_trait]
pub trait ActivityLog: Send + Sync {
    /// A webhook's latest attempts, the most recently attempted first.
    async fn list_attempts(&self, webhook: &WebhookId, limit: u32) -> StoreResult<Vec<Attempt>>;
    /// A webhook's activity log, newest first, starting after `after` (or at the newest): its
    /// attempts and events, and its workspace's events that concern every webhook. Reading page
    /// after page with each last row's cursor visits every row once.
    async fn activity(
        &self,
        webhook: &WebhookId,
        after: Option<ActivityCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ActivityRow>>;
    /// Records an event in a workspace's log (for one webhook, or for all when `webhook` is None),
    /// with who caused it (`None`: the daemon itself).
    async fn record_event(
        &self,
        workspace: &WorkspaceId,
        webhook: Option<&WebhookId>,
        kind_and_actor: (&str, Option<&str>),
        detail: serde_json::Value,
    ) -> StoreResult<()>;
    /// Deletes up to `limit` log rows, finished deliveries, sent or given-up e-mails and web
    /// sessions older than `before`, a few at a time so that it never holds up ingest. Pending
    /// deliveries and unsent e-mails are never deleted. Where several daemons share the store,
    /// one prunes at a time; a call that finds another pruning deletes nothing.
    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<Pruned>;
}
