//! The outbox: e-mails to workspace owners, kept until the SMTP server has taken them.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{DeliveryId, WebhookId, WorkspaceId};

/// An e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// Why and when a webhook was switched off automatically, for the owner's e-mail.
#[derive(Debug, Clone)]
pub struct DisableNotice {
    pub workspace_id: WorkspaceId,
    pub workspace_name: String,
    pub owner_email: String,
    /// The workspace's language, which the e-mail is written in.
    pub locale: crate::domain::Locale,
    pub webhook_id: WebhookId,
    pub webhook_url: String,
    pub reason: String,
    pub last_error: Option<String>,
    pub at: DateTime<Utc>,
}

/// A delivery given up after its endpoint rejected it, for the owner's e-mail.
#[derive(Debug, Clone)]
pub struct GaveUpNotice {
    pub workspace_id: WorkspaceId,
    pub workspace_name: String,
    pub owner_email: String,
    /// The workspace's language, which the e-mail is written in.
    pub locale: crate::domain::Locale,
    pub webhook_id: WebhookId,
    pub webhook_url: String,
    pub delivery_id: DeliveryId,
    /// The chat's own id and name, where the delivery belongs to a chat.
    pub chat: Option<String>,
    pub status: Option<u16>,
    pub response_excerpt: Option<String>,
    pub rejections: u32,
    pub at: DateTime<Utc>,
}

/// When a failing webhook is switched off, and what its owner is told then and when a delivery
/// is given up (rendered outside the store, queued inside the same transaction).
#[derive(Clone)]
pub struct FailurePolicy {
    /// Consecutive failed attempts that disable a webhook (a 410 Gone disables at once).
    pub disable_after: u32,
    pub disabled: Arc<dyn Fn(&DisableNotice) -> Email + Send + Sync>,
    pub gave_up: Arc<dyn Fn(&GaveUpNotice) -> Email + Send + Sync>,
}

impl std::fmt::Debug for FailurePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailurePolicy").field("disable_after", &self.disable_after).finish_non_exhaustive()
    }
}

/// An e-mail claimed from the outbox for sending.
#[derive(Debug, Clone)]
pub struct OutboxEmail {
    pub id: i64,
    pub email: Email,
    pub attempts: u32,
}

/// What became of an attempt to send an e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailOutcome {
    Sent,
    /// A transient failure: try again at the given time.
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    /// The server refused it for good (a 5xx, an address it cannot take): given up, with an
    /// activity row in the log of the webhook it was about.
    GaveUp {
        error: String,
    },
}

/// The mailer's outbox.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Claims the next e-mail due by the store's clock, leasing it for `lease`: one claimer at a
    /// time gets it, also across daemons; an e-mail that was sent or given up is never claimed
    /// again.
    async fn claim_email(&self, lease: std::time::Duration) -> StoreResult<Option<OutboxEmail>>;
    /// Marks an e-mail sent, schedules another try, or gives it up.
    async fn email_result(&self, id: i64, outcome: EmailOutcome) -> StoreResult<()>;
    /// Puts an e-mail about a workspace in the outbox, due at once.
    async fn queue_email(&self, email: &Email, workspace_id: &WorkspaceId) -> StoreResult<()>;
}
