//! Chats and their messages: lists, transcripts, transcript links.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
pub use crate::domain::{Chat, ChatInfo, FirstMessages, NewMessage, StoredMessage};
use crate::domain::{ChatId, MessageEdit, SessionStatus, WorkspaceId};

/// A chat in a workspace's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSummary {
    pub id: ChatId,
    /// `api` or the source id it came through.
    pub source_key: String,
    pub external_id: String,
    pub full_name: Option<String>,
    pub phone: Option<String>,
    pub session_status: Option<SessionStatus>,
    pub messages: u64,
    pub last_received_at: DateTime<Utc>,
}

/// Chats, for the admin API and page, transcripts and test sends.
#[async_trait]
pub trait ChatStore: Send + Sync {
    /// A workspace's chats, most recently active first.
    async fn list_chats(
        &self,
        workspace_id: &WorkspaceId,
        limit: u32,
        offset: u32,
    ) -> StoreResult<Vec<ChatSummary>>;
    /// A chat, with its workspace.
    async fn get_chat(&self, id: ChatId) -> StoreResult<Option<(WorkspaceId, Chat)>>;
    /// A chat by its transcript token, with its workspace; an old (rotated) token finds nothing.
    async fn chat_by_token(&self, token: &str) -> StoreResult<Option<(WorkspaceId, Chat)>>;
    /// Where the chat's first messages are; both `None` for a chat without messages (or an
    /// unknown one). Set once, by the commit that stores them ([`super::IngestStore::ingest`]).
    async fn first_messages(&self, chat: ChatId) -> StoreResult<FirstMessages>;
    /// A chat's messages, newest received first: `limit` of them after skipping `offset`.
    async fn chat_messages(&self, chat: ChatId, limit: u32, offset: u32) -> StoreResult<Vec<StoredMessage>>;
    /// Where a message stands in [`ChatStore::chat_messages`]'s order: how many of the chat's
    /// messages come before the one at position `seq` (so `chat_messages(chat, 1, n)` is that
    /// message). `None` when the chat holds no message at `seq`.
    async fn message_rank(&self, chat: ChatId, seq: i64) -> StoreResult<Option<u32>>;
    /// A chat's messages received at or after `since`, oldest received first, at most `limit`:
    /// what a webhook that has bundled everything before `since` holds buffered for it.
    async fn messages_since(
        &self,
        chat: ChatId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// The message stored at `seq`, with its chat and the chat's workspace (what a media link
    /// names), or `None`.
    async fn message_at(&self, seq: i64) -> StoreResult<Option<(WorkspaceId, Chat, StoredMessage)>>;
    /// Gives a chat a new transcript token; the old one finds nothing from then on, and the new
    /// one's lifetime (`Chat::token_issued_at`) starts at the rotation. A chat's first token is
    /// issued when the chat is first seen.
    async fn rotate_chat_token(&self, chat: ChatId) -> StoreResult<Option<String>>;
    /// Sets who owns a chat, as an admin says: each of `owner`'s fields that is `Some` replaces
    /// the stored value (`Some(None)` clears it), the others stay. A later message or session
    /// update that names an owner replaces it again. The chat as it is then, or `None` for an
    /// unknown chat.
    async fn set_chat_owner(&self, chat: ChatId, owner: ChatOwner) -> StoreResult<Option<Chat>>;
    /// Puts a channel's edit of a stored message in place: its text becomes the edit's, and it
    /// is marked edited at the edit's time. A message still buffered goes out in its bundle as
    /// edited; one already delivered is not sent again (the transcript shows it edited). Edits
    /// may arrive out of order: one older than the edit already in place changes nothing.
    /// Returns whether a message changed (`false` also for a message never stored).
    /// Deletes up to `limit` of a workspace's oldest messages received before `before` that no
    /// open window needs: received before every webhook that takes its messages has bundled up
    /// to (a window still open, or a close under way, keeps its messages). What was queued
    /// already keeps its frozen payload. Returns how many went.
    async fn forget_messages(
        &self,
        workspace: &WorkspaceId,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64>;
    /// Erases a chat (a person's request under the GDPR or Japan's APPI): its messages (and so
    /// their attachments' references), its session history, its transcript link and every
    /// delivery and reply made for it, pending or finished (so nothing of it is sent later, and
    /// no payload of it stays), go in one windowing transaction with the chat itself, and an activity row
    /// `chat_erased` naming `actor` and the counts (never content) is written by the same commit.
    /// A message that comes later with the same channel id starts a new chat. `None`: no such
    /// chat.
    async fn erase_chat(&self, chat: ChatId, actor: &str) -> StoreResult<Option<Erased>>;
    async fn edit_message(
        &self,
        workspace_id: &WorkspaceId,
        source_key: &str,
        edit: &MessageEdit,
    ) -> StoreResult<bool>;
}

/// What erasing a chat removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub messages: u64,
    /// Deliveries still waiting that will never go out.
    pub pending_dropped: u64,
}

/// Who owns a chat, as an admin sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatOwner {
    pub name: Option<Option<String>>,
    pub email: Option<Option<String>>,
}
