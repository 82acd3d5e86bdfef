//! Webhooks as both front ends change them: the URL check, and what follows a creation or a
//! change.

use serde_json::{Value, json};

use crate::domain::{Backlog, Invalid, OffMode, Switch, WebhookUrl};
use crate::service::AppState;
use crate::store::{NewWebhook, StoreResult, Webhook};

/// A webhook URL: well-formed, and (the SSRF guard) leading only to public addresses.
pub async fn checked_url(state: &AppState, value: &str) -> Result<WebhookUrl, Invalid> {
    let url = value.trim().parse::<WebhookUrl>()?;
    state.addresses.check_url(url.url()).await.map_err(|e| Invalid(e.to_string()))?;
    Ok(url)
}

/// Creates a webhook, noted in its log as `actor`'s doing; the window closer looks at it at once
/// (a bundling webhook has a window to open).
pub async fn create(state: &AppState, new: NewWebhook, actor: &str) -> StoreResult<Webhook> {
    let webhook = state.store.create_webhook(new).await?;
    let detail = json!({"url": webhook.url.masked(), "events": webhook.events, "media": webhook.media});
    super::activity::note(state, &webhook.workspace_id, Some(&webhook.id), ("created", actor), detail).await;
    state.closer.kick();
    Ok(webhook)
}

/// Deletes a webhook with its queue and log; the workspace's log keeps that `actor` did it.
pub async fn delete(state: &AppState, webhook: &Webhook, actor: &str) -> StoreResult<bool> {
    let deleted = state.store.delete_webhook(&webhook.id).await?;
    if deleted {
        let detail = json!({"webhook_id": webhook.id, "url": webhook.url.masked()});
        super::activity::note(state, &webhook.workspace_id, None, ("webhook_deleted", actor), detail).await;
    }
    Ok(deleted)
}

/// Before a webhook is switched on as `switch` asks: its waiting deliveries discarded, when its
/// owner chose that (the log says who, and how many). How many were discarded.
pub async fn before_switch(
    state: &AppState,
    before: &Webhook,
    switch: Option<Switch>,
    actor: &str,
) -> StoreResult<u64> {
    match switch {
        Some(Switch::On(Backlog::Discard)) if !before.enabled => {
            let n = state.store.discard_pending(&before.id, actor).await?;
            tracing::info!(webhook_id = %before.id, discarded = n, "waiting deliveries discarded");
            Ok(n)
        }
        _ => Ok(0),
    }
}

/// What follows every change to a webhook, from the API or the web page: the activity log notes
/// it, and the workers look again (re-enabling or a new granularity may have made deliveries due,
/// or moved windows).
pub async fn changed(state: &AppState, before: &Webhook, after: &Webhook, actor: &str) {
    record_changes(state, before, after, actor).await;
    state.deliveries_waiting.notify_one();
    state.closer.kick();
}

/// Notes a change in the webhook's activity log: switched on, switched off, or what else changed
/// (a secret only as changed or removed, never its value).
async fn record_changes(state: &AppState, before: &Webhook, after: &Webhook, actor: &str) {
    let mut events = Vec::new();
    if !before.enabled && after.enabled {
        events.push(("enabled", json!({"was_disabled_because": before.disabled_reason})));
    }
    if before.enabled && !after.enabled {
        let mode = if after.stopped { OffMode::Stop } else { OffMode::Pause };
        events.push(("disabled", json!({"reason": after.disabled_reason, "automatic": false, "mode": mode})));
    }
    let mut changed = serde_json::Map::new();
    if before.url != after.url {
        changed.insert("url".into(), json!(after.url.masked()));
    }
    if before.granularity != after.granularity {
        changed.insert(
            "granularity".into(),
            json!(after.granularity.map(|g| g.as_str()).unwrap_or("workspace default")),
        );
    }
    if before.events != after.events {
        changed.insert("events".into(), json!(after.events));
    }
    if before.timeout != after.timeout {
        changed.insert(
            "timeout".into(),
            json!(after.timeout.map(|t| humantime::format_duration(t).to_string())),
        );
    }
    if before.note_max_chars != after.note_max_chars {
        changed.insert("note_max_chars".into(), json!(after.note_max_chars.get()));
    }
    if before.media != after.media {
        changed.insert("media".into(), json!(after.media));
    }
    if before.conversation_silence != after.conversation_silence {
        changed
            .insert("conversation_silence".into(), json!(after.conversation_silence.map(|d| d.to_string())));
    }
    if before.conversation_max != after.conversation_max {
        changed.insert("conversation_max".into(), json!(after.conversation_max.map(|d| d.to_string())));
    }
    if before.secret != after.secret {
        changed.insert("secret".into(), json!(if after.secret.is_some() { "changed" } else { "removed" }));
    }
    if !changed.is_empty() {
        events.push(("config_changed", Value::Object(changed)));
    }
    for (kind, detail) in events {
        super::activity::note(state, &after.workspace_id, Some(&after.id), (kind, actor), detail).await;
    }
}
