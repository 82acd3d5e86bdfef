//! Replaying a webhook's history: what a replay would send (a dry run, counted with the very plan
//! a replay follows), starting one, and cancelling it. The closer plans a started replay a batch of
//! chats at a time; the delivery worker sends its deliveries behind nothing live.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::domain::ChatId;
use crate::service::{AppState, Failure};
use crate::store::{BundlingWebhook, NewReplay, Replay, ReplayCounts, Webhook};
use crate::window::replay;

/// Chats read per batch by a dry run.
const CHATS_PER_BATCH: usize = 1000;

/// What is asked of a replay.
pub struct Asked {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub chat: Option<ChatId>,
}

/// The webhook as the closer renders for it.
async fn rendering(state: &AppState, webhook: &Webhook) -> Result<BundlingWebhook, Failure> {
    let all = state.store.closing_webhooks(&webhook.workspace_id).await?;
    all.into_iter().find(|w| w.id == webhook.id).ok_or(Failure::NotFound("webhook"))
}

/// Whether `chat` is one of the webhook's workspace.
async fn check_chat(state: &AppState, webhook: &Webhook, chat: Option<ChatId>) -> Result<(), Failure> {
    if let Some(chat) = chat {
        match state.store.get_chat(chat).await? {
            Some((workspace, _)) if workspace == webhook.workspace_id => {}
            _ => return Err(Failure::NotFound("chat")),
        }
    }
    Ok(())
}

/// What replaying `asked` to `webhook` would send now, sending nothing.
pub async fn dry_run(state: &AppState, webhook: &Webhook, asked: &Asked) -> Result<ReplayCounts, Failure> {
    check_chat(state, webhook, asked.chat).await?;
    let plan = replay::plan(&rendering(state, webhook).await?, state.public_url.clone());
    let to = asked.to.min(state.clock.now());
    let mut counts = ReplayCounts::default();
    let mut after = 0;
    loop {
        let batch = state
            .store
            .replay_chats(&webhook.workspace_id, asked.chat, (asked.from, to), after, CHATS_PER_BATCH)
            .await?;
        for (chat, firsts, messages) in &batch {
            if !messages.is_empty() {
                counts += plan(chat, *firsts, messages).1;
            }
            after = chat.id.0;
        }
        if batch.len() < CHATS_PER_BATCH {
            return Ok(counts);
        }
    }
}

/// Starts replaying `asked` to `webhook` for `actor`: recorded, noted in the activity log, and
/// handed to the closer, which plans it.
pub async fn start(
    state: &AppState,
    webhook: &Webhook,
    asked: Asked,
    actor: &str,
) -> Result<Replay, Failure> {
    check_chat(state, webhook, asked.chat).await?;
    let new = NewReplay {
        webhook_id: webhook.id.clone(),
        chat: asked.chat,
        from: asked.from,
        to: asked.to,
        actor: actor.to_string(),
    };
    let replay = state.store.create_replay(new).await?.ok_or(Failure::NotFound("webhook"))?;
    let detail = json!({"replay_id": replay.id, "from": replay.from, "to": replay.to, "chat": replay.chat.map(|c| c.0)});
    super::activity::note(state, &webhook.workspace_id, Some(&webhook.id), ("replay_started", actor), detail)
        .await;
    state.closer.kick();
    Ok(replay)
}

/// Cancels a replay of `webhook`: what has not gone out never will.
pub async fn cancel(state: &AppState, webhook: &Webhook, id: &str, actor: &str) -> Result<Replay, Failure> {
    let found = state.store.get_replay(id).await?.filter(|r| r.webhook_id == webhook.id);
    if found.is_none() {
        return Err(Failure::NotFound("replay"));
    }
    let replay = state.store.cancel_replay(id).await?.ok_or(Failure::NotFound("replay"))?;
    let detail = json!({"replay_id": replay.id, "cancelled": replay.cancelled});
    super::activity::note(
        state,
        &webhook.workspace_id,
        Some(&webhook.id),
        ("replay_cancelled", actor),
        detail,
    )
    .await;
    Ok(replay)
}
