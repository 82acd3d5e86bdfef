//! Chats and their messages, as every stage speaks of them: a chat as a channel describes it and
//! as it is kept, a new message and a stored one.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::{Account, AccountType, Attachment, ChatId, Direction, Media, Party, SessionStatus};

/// A validated message, ready to store: text, or media with their caption (if any) as text.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: String,
    pub direction: Direction,
    pub timestamp: DateTime<Utc>,
    pub chat: ChatInfo,
    pub sender: Party,
    pub recipient: Party,
    /// Never empty without attachments; a media message's caption, or empty.
    pub text: String,
    pub account: Option<Account>,
    pub channel: String,
    /// Its media, as the channel described them (none for a text message).
    pub attachments: Vec<Attachment>,
}

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
