//! Chats and their messages: lists, transcripts, transcript links.

use std::borrow::Cow;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{
    Account, AccountType, Attachment, ChatId, Direction, Media, Party, SessionStatus, WorkspaceId,
};

/// The chat as the sender describes it in a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatInfo {
    pub external_id: String,
    pub full_name: Option<String>,
    pub phone: Option<String>,
    pub is_group: Option<bool>,
    pub responsible_name: Option<String>,
    pub responsible_email: Option<String>,
    /// The channel's id of whoever owns the chat (Zoho Desk's assignee id), never shown as a name.
    pub responsible_id: Option<String>,
    /// The WeChat account type the chat's source speaks as (set for WeChat sources).
    pub account_type: Option<AccountType>,
}

/// A stored chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub id: ChatId,
    pub external_id: String,
    pub full_name: Option<String>,
    pub phone: Option<String>,
    pub is_group: bool,
    pub responsible_name: Option<String>,
    pub responsible_email: Option<String>,
    pub responsible_id: Option<String>,
    /// The unguessable part of the transcript link `{public_url}/c/{token}`.
    pub token: String,
    pub first_seen_at: DateTime<Utc>,
    pub session_status: Option<SessionStatus>,
    /// When the channel stops allowing free-form replies (WhatsApp 24 h, WeChat 48 h after the
    /// customer's last message); `None` where the channel sets no window.
    pub reply_window_expires_at: Option<DateTime<Utc>>,
    /// The WeChat account type, which decides what may still be sent after the reply window.
    pub account_type: Option<AccountType>,
    /// Messages the business sent after the reply window lapsed, counted in the allowance
    /// period starting at `.0` (ms; see [`AccountType::period_of`]).
    pub replies_used: Option<(i64, u32)>,
}

/// A message as stored, read back for a bundle or a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Position in the store; later messages of a chat have larger ones. `is_new_chat` compares
    /// it with the chat's first message.
    pub seq: i64,
    pub message_id: String,
    pub direction: Direction,
    pub timestamp: DateTime<Utc>,
    /// When the daemon received it: this decides its window.
    pub received_at: DateTime<Utc>,
    pub sender: Party,
    pub recipient: Party,
    pub text: String,
    pub account: Option<Account>,
    pub channel: String,
    pub attachments: Vec<Attachment>,
}

impl StoredMessage {
    /// The message as a webhook with `media` sees it, or `None` when it does not take it
    /// ([`Media::view`]).
    pub fn seen_with(&self, media: Media) -> Option<Cow<'_, StoredMessage>> {
        media.view(self, &self.text, &self.attachments, |m| StoredMessage {
            attachments: Vec::new(),
            ..m.clone()
        })
    }
}

/// Where a chat's first messages are (their `seq`), which decides `is_new_chat`: its first
/// message ever, and its first with words, which is the first a webhook that skips media sees
/// (a chat may open with a photo).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirstMessages {
    pub any: Option<i64>,
    pub text: Option<i64>,
}

impl FirstMessages {
    /// The first message a webhook with `media` sees.
    pub fn seen_with(self, media: Media) -> Option<i64> {
        match media {
            Media::Placeholder => self.any,
            Media::Skip => self.text,
        }
    }
}

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
    /// Gives a chat a new transcript token; the old one finds nothing from then on.
    async fn rotate_chat_token(&self, chat: ChatId) -> StoreResult<Option<String>>;
    /// Sets who owns a chat, as an admin says: each of `owner`'s fields that is `Some` replaces
    /// the stored value (`Some(None)` clears it), the others stay. A later message or session
    /// update that names an owner replaces it again. The chat as it is then, or `None` for an
    /// unknown chat.
    async fn set_chat_owner(&self, chat: ChatId, owner: ChatOwner) -> StoreResult<Option<Chat>>;
}

/// Who owns a chat, as an admin sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatOwner {
    pub name: Option<Option<String>>,
    pub email: Option<Option<String>>,
}
