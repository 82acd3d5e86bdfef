//! What a webhook's next bundles would look like now: each chat's buffered messages, planned
//! exactly as the window closer plans them when the window ends (or a flush cuts it), rendered,
//! and neither sent nor stored. The API (`GET /api/v1/webhooks/{id}/preview`) and the webhook's
//! page show it.

use chrono::{DateTime, Utc};

use crate::domain::ChatId;
use crate::service::{AppState, Failure};
use crate::store::{Chat, Webhook};
use crate::window::closer;

/// Chats previewed at most, most recently active first.
pub const MAX_CHATS: u32 = 50;

/// Messages of one chat previewed at most (a bundle part holds at most 500).
const MAX_MESSAGES: u32 = 5_000;

/// One chat's next bundle: its parts, as the webhook would receive them.
pub struct ChatPreview {
    pub chat: Chat,
    /// How many of its buffered messages the bundle takes.
    pub messages: usize,
    /// Each part's request body.
    pub parts: Vec<Vec<u8>>,
}

/// The next bundle of each chat with buffered messages (or of `only` that chat), as of `now`.
/// A webhook that does not bundle (granularity `none`, or not subscribed to messages) holds
/// nothing: the list is empty.
pub async fn preview(
    state: &AppState,
    webhook: &Webhook,
    only: Option<ChatId>,
    now: DateTime<Utc>,
) -> Result<Vec<ChatPreview>, Failure> {
    let workspace = &webhook.workspace_id;
    let bundling = state.store.bundling_webhooks(Some(workspace)).await?;
    let Some(bundling) = bundling.into_iter().find(|w| w.id == webhook.id) else { return Ok(Vec::new()) };
    if bundling.granularity == crate::domain::Granularity::None {
        return Ok(Vec::new());
    }
    let chats: Vec<Chat> = match only {
        Some(id) => match state.store.get_chat(id).await? {
            Some((in_workspace, chat)) if &in_workspace == workspace => vec![chat],
            _ => return Err(Failure::NotFound("chat")),
        },
        None => {
            let mut chats = Vec::new();
            for summary in state.store.list_chats(workspace, MAX_CHATS, 0).await? {
                if summary.last_received_at < bundling.bundled_before {
                    break;
                }
                if let Some((_, chat)) = state.store.get_chat(summary.id).await? {
                    chats.push(chat);
                }
            }
            chats
        }
    };
    let tz = bundling.timezone.tz();
    let plan = closer::plan(&bundling, tz, now, state.public_url.clone(), None);
    let mut previews = Vec::with_capacity(chats.len());
    for chat in chats {
        // A conversation webhook holds the chat's open conversation; the others, their window.
        let since = match bundling.granularity {
            crate::domain::Granularity::Conversation => {
                state.store.conversation_since(&webhook.id, chat.id).await?
            }
            _ => Some(bundling.bundled_before),
        };
        let buffered = match since {
            Some(since) => state.store.messages_since(chat.id, since, MAX_MESSAGES).await?,
            None => Vec::new(),
        };
        // What the bundle will take of them (a webhook that skips media leaves some out).
        let taken = buffered.iter().filter(|m| bundling.media.takes(&m.text, &m.attachments)).count();
        if taken == 0 && only.is_none() {
            continue;
        }
        let firsts = state.store.first_messages(chat.id).await?;
        let parts = plan(&chat, firsts, &buffered).into_iter().map(|planned| planned.payload).collect();
        previews.push(ChatPreview { messages: taken, chat, parts });
    }
    Ok(previews)
}
