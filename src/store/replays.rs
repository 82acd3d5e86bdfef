//! Replays: a webhook's history sent again, as its granularity would have bundled it, marked
//! `"replay": true`, with delivery ids of their own, in lanes of their own behind nothing live.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Chat, FirstMessages, PlannedDelivery, StoreResult, StoredMessage};
use crate::domain::{ChatId, WebhookId, WorkspaceId};

/// A replay as asked.
#[derive(Debug, Clone)]
pub struct NewReplay {
    pub webhook_id: WebhookId,
    /// One chat, or every chat of the webhook's workspace.
    pub chat: Option<ChatId>,
    /// The messages received in `[from, to)`; `to` is brought back to the moment the replay is
    /// made (what is received later goes out live).
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Who asked (as the activity log names them).
    pub actor: String,
}

/// Where a replay stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayStatus {
    /// Its deliveries are being made, a batch of chats at a time.
    Planning,
    /// All of them are made; they go out as the queue sends them.
    Sending,
    /// Cancelled: what had not gone out never will.
    Cancelled,
}

impl ReplayStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayStatus::Planning => "planning",
            ReplayStatus::Sending => "sending",
            ReplayStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<ReplayStatus> {
        [ReplayStatus::Planning, ReplayStatus::Sending, ReplayStatus::Cancelled]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// What a replay holds: chats, bundles and messages, and the calls they make (a bundle in parts
/// makes several; a webhook that takes each message at once makes one per message).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    pub chats: u64,
    pub bundles: u64,
    pub messages: u64,
    pub calls: u64,
}

impl std::ops::AddAssign for ReplayCounts {
    fn add_assign(&mut self, other: ReplayCounts) {
        self.chats += other.chats;
        self.bundles += other.bundles;
        self.messages += other.messages;
        self.calls += other.calls;
    }
}

/// A replay as stored, with its deliveries' progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub id: String,
    pub webhook_id: WebhookId,
    pub workspace_id: WorkspaceId,
    pub chat: Option<ChatId>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub status: ReplayStatus,
    /// What has been planned so far (all of it once `Sending`).
    pub planned: ReplayCounts,
    /// Its deliveries by status: delivered, waiting, failed (given up or expired), cancelled.
    pub delivered: u64,
    pub waiting: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub actor: String,
    pub created_at: DateTime<Utc>,
}

/// Turns one chat's messages of a replay's range (in the order received) into the deliveries its
/// webhook would have been sent, and says what they hold.
pub type PlanReplay =
    Arc<dyn Fn(&Chat, FirstMessages, &[StoredMessage]) -> (Vec<PlannedDelivery>, ReplayCounts) + Send + Sync>;

/// What a replay step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayProgress {
    /// Chats remain; call again.
    More,
    /// Every chat is planned: the replay is sending.
    Done,
    /// It is not planning (cancelled, done, or gone).
    Stopped,
}

/// Replays, for the replay endpoint and the closer (which plans them).
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records a replay, planning; `None` when the webhook does not exist. `to` becomes the
    /// earlier of `to` and the store's time, so no message acknowledged later is in its range.
    async fn create_replay(&self, new: NewReplay) -> StoreResult<Option<Replay>>;

    /// A replay with its progress.
    async fn get_replay(&self, id: &str) -> StoreResult<Option<Replay>>;

    /// The replays still planning (a crash in the middle leaves one so: the next daemon goes on).
    async fn planning_replays(&self) -> StoreResult<Vec<Replay>>;

    /// The next `limit` chats after the chat id `after` (in id order) that may have messages
    /// received in a range, each with those messages in the order received (empty when it has
    /// none there): what a dry run counts. Fewer than `limit` means the scan is done.
    async fn replay_chats(
        &self,
        workspace: &WorkspaceId,
        chat: Option<ChatId>,
        range: (DateTime<Utc>, DateTime<Utc>),
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<(Chat, FirstMessages, Vec<StoredMessage>)>>;

    /// Plans the next `limit` chats of a planning replay in one transaction: their deliveries,
    /// queued in lanes of the replay's own (each chat's in order, none behind or ahead of a live
    /// delivery), marked with the replay, and the replay's cursor and counts move with them.
    ///
    /// - **Once**: a step that finds the replay no longer planning does nothing; the cursor
    ///   commits with the deliveries, so a crash or a racing daemon never plans a chat twice.
    async fn replay_step(&self, id: &str, limit: usize, plan: PlanReplay) -> StoreResult<ReplayProgress>;

    /// Cancels a replay: it stops planning, and its deliveries that have not gone out are never
    /// sent (`discarded`). `None` when there is no such replay.
    async fn cancel_replay(&self, id: &str) -> StoreResult<Option<Replay>>;
}
