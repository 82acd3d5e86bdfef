//! Sources: the inbound channels connected to a workspace.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{Account, InboundKey, Name, SourceId, SourceKind, WorkspaceId};

/// A connected inbound channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub id: SourceId,
    /// The secret part of its inbound URL; see [`InboundKey`] for where it may go.
    pub inbound_key: InboundKey,
    pub workspace_id: WorkspaceId,
    pub kind: SourceKind,
    pub name: Name,
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
    pub name: Name,
    pub account: Account,
    pub credentials: serde_json::Value,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SourcePatch {
    pub name: Option<Name>,
    pub account: Option<Account>,
    pub credentials: Option<serde_json::Value>,
    pub enabled: Option<bool>,
    /// Give its inbound URL a new key ([`SourceStore::rotate_inbound_key`]).
    pub new_inbound_key: bool,
}

/// What one daemon saw at a source's inbound URL since it last told the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTraffic {
    pub source: SourceId,
    /// Requests per ten minutes: each span's number ([`SourceTraffic::bucket_of`]) and count.
    pub buckets: Vec<(i64, u64)>,
    pub last_request_at: DateTime<Utc>,
    pub last_refusal: Option<SourceRefusal>,
}

impl SourceTraffic {
    /// The span requests are counted in.
    pub const BUCKET_MS: i64 = 600_000;

    /// The ten minutes `at` falls in.
    pub fn bucket_of(at: DateTime<Utc>) -> i64 {
        at.timestamp_millis().div_euclid(Self::BUCKET_MS)
    }
}

/// A request to a source's inbound URL that was refused: when, the answer's status, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SourceRefusal {
    pub at: DateTime<Utc>,
    pub status: u16,
    /// The refusal's code and sentence (which never holds a credential).
    pub reason: String,
}

/// Whether a source's vendor reaches us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceHealth {
    pub last_request_at: Option<DateTime<Utc>>,
    /// Requests in the last 24 hours (counted in ten-minute spans, so up to ten minutes more).
    pub requests_24h: u64,
    pub last_refusal: Option<SourceRefusal>,
}

/// Sources, for the admin API and the inbound routes.
#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Creates a source with a fresh id and a fresh, unguessable inbound key.
    async fn create_source(&self, new: NewSource) -> StoreResult<Source>;
    /// A workspace's sources, oldest first.
    async fn list_sources(&self, workspace_id: &WorkspaceId) -> StoreResult<Vec<Source>>;
    /// `None` when there is none.
    async fn get_source(&self, id: &SourceId) -> StoreResult<Option<Source>>;
    async fn update_source(&self, id: &SourceId, patch: SourcePatch) -> StoreResult<Option<Source>>;
    /// Deletes a source; its chats and messages stay.
    async fn delete_source(&self, id: &SourceId) -> StoreResult<bool>;
    /// The source whose inbound URL carries `key`, whatever its state. A key is one source's
    /// only, and a rotated key finds nothing, on every daemon, from the moment the rotation
    /// returns.
    async fn source_by_inbound_key(&self, key: &InboundKey) -> StoreResult<Option<Source>>;
    /// Gives the source's inbound URL a new key (its id, chats and messages stay): from the
    /// moment this returns, the old key finds nothing. `None` when there is no such source.
    async fn rotate_inbound_key(&self, id: &SourceId) -> StoreResult<Option<Source>>;
    /// The replay memory of signed requests whose signature does not cover the body (WeChat's
    /// plaintext pushes and URL checks): whether `signed` (their timestamp and nonce) may come
    /// with a body of this `digest` at `now`. It may when it is new, or came before with the
    /// same digest (a channel's redelivery); with another digest it may not, on any daemon
    /// sharing the store, for [`REPLAY_MEMORY`] after it was first seen. Older entries are
    /// forgotten (the callers refuse signatures that old by their timestamp).
    /// Adds what a daemon saw at sources' inbound URLs: each span's requests are added to what
    /// every daemon saw, and the last request and the last refusal only move forward, so daemons
    /// may tell in any order; counts older than two days are forgotten. A source deleted
    /// meanwhile is skipped.
    async fn note_traffic(&self, traffic: Vec<SourceTraffic>) -> StoreResult<()>;
    /// Whether the source's vendor reaches us, as of `now`.
    async fn source_health(&self, id: &SourceId, now: DateTime<Utc>) -> StoreResult<SourceHealth>;
    async fn admit_signed(
        &self,
        source: &SourceId,
        signed: &str,
        digest: [u8; 32],
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
}

/// How long [`SourceStore::admit_signed`] remembers a signed request: twice the five minutes a
/// signed timestamp may be off, either way.
pub const REPLAY_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);
