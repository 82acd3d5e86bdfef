//! Chats and their messages, as every stage speaks of them: a chat as a channel describes it and
//! as it is kept, a new message and a stored one.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::{Account, AccountType, Attachment, ChatId, Direction, Media, Party, SessionStatus};

/// Who a message is from, as payloads, notes and transcripts name them. A `sent` message speaks
/// for the business, so what its channel left out of its sender (a JSON API reply names nobody, a
/// Meta echo only the business's number) is its account's: the message's own (its source's), else
/// the workspace's. A received message's sender is the customer, as the channel named them.
pub fn named_sender<'a>(
    direction: Direction,
    sender: &'a Party,
    own: Option<&Account>,
    workspace: &Account,
) -> Cow<'a, Party> {
    let account = own.unwrap_or(workspace);
    let missing = |field: &Option<String>| field.as_deref().is_none_or(|v| v.trim().is_empty());
    if direction != Direction::Sent || !(missing(&sender.full_name) || missing(&sender.phone)) {
        return Cow::Borrowed(sender);
    }
    let or_account = |field: &Option<String>, of_account: &Option<String>| {
        if missing(field) { of_account.clone().or_else(|| field.clone()) } else { field.clone() }
    };
    Cow::Owned(Party {
        full_name: or_account(&sender.full_name, &account.full_name),
        phone: or_account(&sender.phone, &account.phone),
    })
}

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
    /// A customer's answer by button or list row (its title is the text): the button's or row's
    /// payload id, which says which of the business's choices it was.
    pub reply_to_button: Option<String>,
}

/// A channel's edit of a message it sent before (Chatwoot's `message_updated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEdit {
    /// The channel's id of the edited message.
    pub message_id: String,
    /// The message's words after the edit.
    pub text: String,
    /// When it was edited.
    pub at: DateTime<Utc>,
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
    /// Whether the channel itself says the chat can be answered now (Chatwoot's `can_reply`).
    pub can_reply: Option<bool>,
}

/// A stored chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub id: ChatId,
    /// What it came through: `api`, or its source's id.
    pub source_key: String,
    pub external_id: String,
    pub full_name: Option<String>,
    pub phone: Option<String>,
    pub is_group: bool,
    pub responsible_name: Option<String>,
    pub responsible_email: Option<String>,
    pub responsible_id: Option<String>,
    /// The unguessable part of the transcript link `{public_url}/c/{token}`.
    pub token: String,
    /// When its transcript link was made (or last rotated): its workspace's
    /// `transcript_link_ttl` counts from here.
    pub token_issued_at: DateTime<Utc>,
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
    /// What the channel last said of whether the chat can be answered (Chatwoot's `can_reply`);
    /// `None` where it never says, and chatbundle reckons it ([`crate::domain::session::ReplyState`]).
    pub channel_can_reply: Option<bool>,
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
    /// See [`NewMessage::reply_to_button`].
    pub reply_to_button: Option<String>,
    /// When the channel last edited the message (its text is the edited one).
    pub edited_at: Option<DateTime<Utc>>,
    /// The W3C `traceparent` of the request that brought it, when traces were exported: a
    /// bundle's delivery links to its messages' traces.
    pub trace_parent: Option<String>,
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
            Media::Placeholder | Media::Link => self.any,
            Media::Skip => self.text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(name: Option<&str>, phone: Option<&str>) -> Party {
        Party { full_name: name.map(str::to_string), phone: phone.map(str::to_string) }
    }

    #[test]
    fn a_sent_message_without_a_sender_is_from_its_account() {
        let source =
            Account { full_name: Some("Acme Support".into()), email: None, phone: Some("+4930".into()) };
        let workspace = Account { full_name: Some("Acme".into()), email: None, phone: Some("+4940".into()) };
        let nobody = Party::default();
        // The source's account first, else the workspace's.
        assert_eq!(
            *named_sender(Direction::Sent, &nobody, Some(&source), &workspace),
            party(Some("Acme Support"), Some("+4930"))
        );
        assert_eq!(
            *named_sender(Direction::Sent, &nobody, None, &workspace),
            party(Some("Acme"), Some("+4940"))
        );
        // A Meta echo names the business's number only: the name is the account's, the number kept.
        let echo = party(None, Some("+15550001"));
        assert_eq!(
            *named_sender(Direction::Sent, &echo, None, &workspace),
            party(Some("Acme"), Some("+15550001"))
        );
        // An agent's own name stays; a blank one counts as none.
        let agent = party(Some("Mia"), None);
        assert_eq!(
            *named_sender(Direction::Sent, &agent, None, &workspace),
            party(Some("Mia"), Some("+4940"))
        );
        let blank = party(Some("  "), None);
        assert_eq!(
            named_sender(Direction::Sent, &blank, None, &workspace).full_name.as_deref(),
            Some("Acme")
        );
        // A customer is who the channel says, even nameless.
        assert!(
            matches!(named_sender(Direction::Received, &nobody, None, &workspace), Cow::Borrowed(p) if *p == nobody)
        );
        // Nothing to fill from: the sender as it was.
        let empty = Account::default();
        assert_eq!(*named_sender(Direction::Sent, &nobody, None, &empty), nobody);
    }
}
