//! What the SQL stores share of ingest, apart from the SQL: merging requests into one set of
//! chats and candidate messages, and turning the messages that were new into deliveries.
//!
//! The merge keeps the meaning of storing the requests one after another: a message id seen
//! earlier (in the database or earlier in the merge) is a duplicate, chat details given later
//! override earlier ones, and deliveries are queued in message order.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::queue::Enqueue;
use super::{Chat, ChatInfo, FirstMessages, IngestBatch, IngestOutcome, NewMessage, RenderSession};
use crate::domain::{
    Account, ChatId, DeliveryId, DeliveryKind, Direction, Locale, Media, SessionStatus, WebhookId,
    reply_window,
};

/// A chat by (workspace, source key, external id).
pub(super) type ChatKey<'a> = (&'a str, &'a str, &'a str);

/// A message by (workspace, source key, message id).
pub(super) type MessageKey<'a> = (&'a str, &'a str, &'a str);

/// A message that is new to this merge (it may still be a duplicate of a stored one).
pub(super) struct Candidate<'a> {
    /// Which request it came in.
    pub batch: usize,
    pub message: &'a NewMessage,
    pub chat: ChatKey<'a>,
    /// The request's `traceparent`, kept with the message.
    pub trace_parent: Option<&'a str>,
}

impl<'a> Candidate<'a> {
    pub fn key(&self) -> MessageKey<'a> {
        (self.chat.0, self.chat.1, self.message.message_id.as_str())
    }
}

/// What the merged requests say of a chat.
pub(super) struct ChatUpdate {
    pub info: ChatInfo,
    /// The channel of its latest message (it decides the reply window).
    pub channel: String,
    /// The latest customer message's time (ms), and the reply window it opens.
    pub customer_at: Option<i64>,
    pub window: Option<i64>,
}

/// The condition, in a chat upsert, that this merge carries a later customer message (`excluded`
/// is the proposed row, `chats` the stored one, in SQLite and PostgreSQL alike).
pub(super) const LATER: &str =
    "excluded.last_customer_message_at > COALESCE(chats.last_customer_message_at, -1)";

/// Requests merged, before anything is stored.
pub(super) struct Merged<'a> {
    pub outcomes: Vec<IngestOutcome>,
    pub candidates: Vec<Candidate<'a>>,
    pub chats: HashMap<ChatKey<'a>, ChatUpdate>,
    /// The chats in the order they first appear.
    pub chat_order: Vec<ChatKey<'a>>,
}

/// Merges requests: later copies of a message id are duplicates of the first; chat details are
/// merged in arrival order, so later details win.
pub(super) fn merge(batches: &[IngestBatch]) -> Merged<'_> {
    let mut outcomes = vec![IngestOutcome::default(); batches.len()];
    let mut seen: HashSet<MessageKey> = HashSet::new();
    let mut candidates = Vec::new();
    let mut chats: HashMap<ChatKey, ChatUpdate> = HashMap::new();
    let mut chat_order: Vec<ChatKey> = Vec::new();
    for (index, batch) in batches.iter().enumerate() {
        for message in &batch.messages {
            let key = (batch.workspace_id.as_str(), batch.source_key.as_str(), message.message_id.as_str());
            if !seen.insert(key) {
                outcomes[index].duplicates += 1;
                continue;
            }
            let chat =
                (batch.workspace_id.as_str(), batch.source_key.as_str(), message.chat.external_id.as_str());
            let update = chats.entry(chat).or_insert_with(|| {
                chat_order.push(chat);
                ChatUpdate {
                    info: message.chat.clone(),
                    channel: message.channel.clone(),
                    customer_at: None,
                    window: None,
                }
            });
            merge_chat(&mut update.info, &message.chat);
            update.channel.clone_from(&message.channel);
            if message.direction == Direction::Received {
                // The reply window runs from the customer's latest message.
                let at = message.timestamp.timestamp_millis();
                if update.customer_at.is_none_or(|c| at > c) {
                    update.customer_at = Some(at);
                    update.window = reply_window(&message.channel).map(|w| at + w.as_millis() as i64);
                }
            }
            candidates.push(Candidate {
                batch: index,
                message,
                chat,
                trace_parent: batch.trace_parent.as_deref(),
            });
        }
    }
    Merged { outcomes, candidates, chats, chat_order }
}

fn merge_chat(into: &mut ChatInfo, later: &ChatInfo) {
    fn take(into: &mut Option<String>, later: &Option<String>) {
        if later.is_some() {
            into.clone_from(later);
        }
    }
    take(&mut into.full_name, &later.full_name);
    take(&mut into.phone, &later.phone);
    take(&mut into.responsible_name, &later.responsible_name);
    take(&mut into.responsible_id, &later.responsible_id);
    take(&mut into.responsible_email, &later.responsible_email);
    if later.is_group.is_some() {
        into.is_group = later.is_group;
    }
    if later.account_type.is_some() {
        into.account_type = later.account_type;
    }
    if later.can_reply.is_some() {
        into.can_reply = later.can_reply;
    }
}

/// What ingest needs of a workspace.
pub(super) struct WorkspaceInfo {
    pub account: Account,
    pub locale: Locale,
    /// Webhooks that get each message at once, oldest first, with what they do with media.
    pub immediate: Vec<(WebhookId, Media)>,
    /// Whether a webhook of it bundles by conversation: its chats' messages join conversations.
    pub conversations: bool,
}

/// Notes that a session event was queued for a chat the merge started in `workspace`: the
/// requests of that workspace say they queued deliveries.
pub(super) fn session_started(batches: &[IngestBatch], merged: &mut Merged<'_>, workspace: &str) {
    for (batch, outcome) in batches.iter().zip(merged.outcomes.iter_mut()) {
        if batch.workspace_id.as_str() == workspace {
            outcome.queued = true;
        }
    }
}

/// The candidates that were new, with their queue positions, in message order.
fn accepted<'m, 'a>(
    candidates: &'m [Candidate<'a>],
    inserted: &HashMap<MessageKey<'a>, i64>,
) -> Vec<(&'m Candidate<'a>, i64)> {
    let mut accepted: Vec<(&Candidate, i64)> =
        candidates.iter().filter_map(|c| inserted.get(&c.key()).map(|seq| (c, *seq))).collect();
    accepted.sort_by_key(|(_, seq)| *seq);
    accepted
}

/// How session events of `workspace` are rendered: as its requests say.
pub(super) fn render_session<'b>(batches: &'b [IngestBatch], workspace: &str) -> &'b RenderSession {
    &batches
        .iter()
        .find(|b| b.workspace_id.as_str() == workspace)
        .expect("a request of the workspace")
        .render_session
}

/// How a chat's new messages move its session ([`SessionStatus::after`]), in message order.
pub(super) struct SessionMove<'a> {
    pub chat: ChatKey<'a>,
    /// The status the chat had before these messages.
    pub from: SessionStatus,
    /// Each step, from → to.
    pub steps: Vec<(SessionStatus, SessionStatus)>,
}

/// The session moves the messages that were new make, one per chat whose status they move.
/// Duplicates move nothing; a chat in a status chatbundle does not know is left alone.
pub(super) fn session_moves<'a>(
    merged: &Merged<'a>,
    stored: &HashMap<ChatKey<'a>, (Chat, FirstMessages)>,
    inserted: &HashMap<MessageKey<'a>, i64>,
) -> Vec<SessionMove<'a>> {
    let accepted = accepted(&merged.candidates, inserted);
    let mut moves: Vec<SessionMove> = Vec::new();
    let mut at: HashMap<ChatKey, (usize, SessionStatus)> = HashMap::new();
    for (candidate, _) in accepted {
        let now = match at.get(&candidate.chat) {
            Some((_, status)) => *status,
            None => match stored[&candidate.chat].0.session_status {
                Some(status) => status,
                None => continue,
            },
        };
        let Some(next) = now.after(candidate.message.direction) else { continue };
        let index = match at.get(&candidate.chat) {
            Some((index, _)) => *index,
            None => {
                moves.push(SessionMove { chat: candidate.chat, from: now, steps: Vec::new() });
                moves.len() - 1
            }
        };
        moves[index].steps.push((now, next));
        at.insert(candidate.chat, (index, next));
    }
    moves
}

/// What the business sent after a chat's reply window lapsed, for chats whose account has an
/// allowance there (WeChat): by chat, the allowance period and how many of the new messages fall
/// in it. Only the latest period the messages reach is counted; an earlier one is over.
pub(super) fn replies_after_window<'a>(
    merged: &Merged<'a>,
    stored: &HashMap<ChatKey<'a>, (Chat, FirstMessages)>,
    inserted: &HashMap<MessageKey<'a>, i64>,
) -> Vec<(ChatKey<'a>, i64, u32)> {
    let mut counted: Vec<(ChatKey<'a>, i64, u32)> = Vec::new();
    for candidate in &merged.candidates {
        let message = candidate.message;
        if message.direction != Direction::Sent || !inserted.contains_key(&candidate.key()) {
            continue;
        }
        let (chat, _) = &stored[&candidate.chat];
        let (Some(account), Some(window)) = (chat.account_type, chat.reply_window_expires_at) else {
            continue;
        };
        if message.timestamp <= window {
            continue;
        }
        let period = account.period_of(message.timestamp);
        match counted.iter_mut().find(|(key, _, _)| *key == candidate.chat) {
            Some(entry) if entry.1 == period => entry.2 += 1,
            Some(entry) if entry.1 < period => *entry = (candidate.chat, period, 1),
            Some(_) => {}
            None => counted.push((candidate.chat, period, 1)),
        }
    }
    counted
}

/// A message without its media: what a webhook that skips media gets of a media message with
/// words.
fn without_media(message: &NewMessage) -> NewMessage {
    NewMessage { attachments: Vec::new(), ..message.clone() }
}

/// After the messages were inserted: counts each request's accepted messages and duplicates,
/// and makes the deliveries of webhooks that get each message at once, in `seq` order. `stored`
/// holds each chat with its first messages before this merge; `inserted` the position of each
/// message that was new. Returns the deliveries and, for chats whose first messages (ever, with
/// words) are among the new ones, their positions. Which request each delivery is for is the
/// third: whether a request `queued` is decided once the deliveries are queued (some may be
/// handed to the worker at once).
pub(super) fn deliveries<'a>(
    batches: &[IngestBatch],
    merged: &mut Merged<'a>,
    stored: &HashMap<ChatKey<'a>, (Chat, FirstMessages)>,
    inserted: &HashMap<MessageKey<'a>, i64>,
    workspaces: &HashMap<&str, WorkspaceInfo>,
) -> (Vec<Enqueue>, HashMap<ChatId, FirstMessages>, Vec<usize>) {
    let mut firsts: HashMap<ChatId, FirstMessages> = HashMap::new();
    let mut deliveries = Vec::new();
    let mut requests = Vec::new();
    let accepted = accepted(&merged.candidates, inserted);
    for (candidate, seq) in &accepted {
        let (chat, before) = &stored[&candidate.chat];
        let message = candidate.message;
        // A chat is new to a webhook with the first message it sees: the first ever, or, for one
        // that skips media, the first with words.
        let new = firsts.entry(chat.id).or_default();
        let first_ever = before.any.is_none() && new.any.is_none();
        let first_with_words = before.text.is_none() && new.text.is_none() && !message.text.trim().is_empty();
        if first_ever {
            new.any = Some(*seq);
        }
        if first_with_words {
            new.text = Some(*seq);
        }
        let batch = &batches[candidate.batch];
        let workspace = &workspaces[batch.workspace_id.as_str()];
        // Rendered once per way of seeing it: (whole or without its media, with media links or
        // not, new chat or not).
        let mut payloads: Vec<((bool, bool, bool), Vec<u8>)> = Vec::new();
        for (webhook, media) in &workspace.immediate {
            let Some(seen) = media.view(message, &message.text, &message.attachments, without_media) else {
                continue;
            };
            requests.push(candidate.batch);
            let is_new_chat = if *media == Media::Skip { first_with_words } else { first_ever };
            let way = (matches!(seen, Cow::Borrowed(_)), *media == Media::Link, is_new_chat);
            let payload = match payloads.iter().find(|(w, _)| *w == way) {
                Some((_, payload)) => payload.clone(),
                None => {
                    let payload = (batch.render_immediate)(
                        &workspace.account,
                        workspace.locale,
                        chat,
                        (&seen, *seq),
                        *media,
                        is_new_chat,
                    );
                    payloads.push((way, payload.clone()));
                    payload
                }
            };
            deliveries.push(Enqueue {
                id: DeliveryId::generate(),
                kind: DeliveryKind::Message,
                webhook: webhook.clone(),
                chat: Some(chat.id),
                payload,
                bundle: None,
                replay: None,
                // The request's trace goes on to its immediate deliveries.
                trace_parent: batch.trace_parent.clone(),
                trace_links: Vec::new(),
            });
        }
    }
    for candidate in &merged.candidates {
        if inserted.contains_key(&candidate.key()) {
            merged.outcomes[candidate.batch].accepted += 1;
        } else {
            merged.outcomes[candidate.batch].duplicates += 1;
        }
    }
    firsts.retain(|_, f| f.any.is_some() || f.text.is_some());
    (deliveries, firsts, requests)
}
