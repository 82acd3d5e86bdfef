//! Replies to chats, queued durably and sent once: the reply endpoint stores each with its
//! message ([`super::IngestBatch::reply`]), the reply worker claims and sends them.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
pub use crate::domain::reply::{OutgoingStatus, ReplyBody, VendorError};
use crate::domain::{ChatId, WorkspaceId};

/// A reply to queue, in the commit that stores its message.
#[derive(Debug, Clone)]
pub struct NewReply {
    pub chat: ChatId,
    /// The id of its message (a `sent` message of the chat, in the same request).
    pub message_id: String,
    pub body: ReplyBody,
    pub idempotency_key: Option<String>,
    /// Who sent it (a person's address, `token:NAME`, `operator`), for the activity log.
    pub actor: String,
}

/// A reply and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub workspace_id: WorkspaceId,
    pub chat: ChatId,
    pub message_id: String,
    pub status: OutgoingStatus,
    /// The channel's id of the message, once it accepted it.
    pub vendor_id: Option<String>,
    /// The channel's last refusal or failure: why it failed, or why the last try did.
    pub error: Option<VendorError>,
    pub attempts: u32,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it was sent or given up.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A reply claimed for sending.
#[derive(Debug, Clone)]
pub struct ClaimedReply {
    pub reply: Reply,
    pub body: ReplyBody,
    /// The source it goes out through (`api`: the workspace's `reply_url`).
    pub source_key: String,
    /// The claim's fencing token: only a result carrying it is recorded.
    pub lease_token: i64,
    /// Who sent it.
    pub actor: String,
}

/// How a send ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyOutcome {
    Sent {
        vendor_id: Option<String>,
    },
    /// It failed for now: tried again at `at`.
    RetryAt {
        at: DateTime<Utc>,
        error: VendorError,
    },
    /// Refused, or out of retries: never sent.
    Failed {
        error: VendorError,
    },
}

/// The reply queue, for the reply endpoint (status, idempotency) and the reply worker.
#[async_trait]
pub trait ReplyStore: Send + Sync {
    /// A chat's reply by its message id.
    async fn reply(&self, chat: ChatId, message_id: &str) -> StoreResult<Option<Reply>>;
    /// The chat's latest reply made with this idempotency key, if any.
    async fn reply_by_key(&self, chat: ChatId, key: &str) -> StoreResult<Option<Reply>>;
    /// Leases up to `limit` queued replies that are due by the store's clock, each for `lease`,
    /// under a fresh fencing token, and counts the attempt.
    ///
    /// - **Chat order**: a reply is claimed only when no earlier reply of its chat is still
    ///   queued (leased or waiting for a retry), so a chat's replies are sent in the order they
    ///   were made. Different chats go in parallel.
    /// - **One holder**: a reply is leased to one claim at a time, also when claims of several
    ///   daemons race; a lease that ran out may be taken by the next claim (the daemon that held
    ///   it stopped without an answer: the reply is sent again, as it cannot be known whether the
    ///   channel had it).
    /// - **Sent once**: a reply whose result was recorded is never claimed again, across restarts.
    async fn claim_replies(&self, lease: Duration, limit: u32) -> StoreResult<Vec<ClaimedReply>>;
    /// Records how a claimed send ended, with an activity row (`reply_sent`, `reply_retrying`,
    /// `reply_failed`: the chat, the message id, the channel's id or its error; never the text)
    /// in the same commit. A finished reply keeps its status and the channel's answer, not its
    /// body (its message holds what was sent).
    ///
    /// - **Fencing**: only the holder of the reply's current lease records; a stale token
    ///   changes nothing and `false` comes back.
    async fn record_reply(
        &self,
        message_id: &str,
        chat: ChatId,
        lease_token: i64,
        outcome: ReplyOutcome,
    ) -> StoreResult<bool>;
    /// When the next queued reply is due (to sleep until then), if any is queued.
    async fn next_reply_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
}
