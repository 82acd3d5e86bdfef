//! What follows a change to a workspace, from either front end, and what someone did in it.

use serde_json::{Value, json};

use crate::domain::{ChatId, WorkspaceId};
use crate::service::AppState;
use crate::store::{Source, Workspace};

/// What follows every change to a workspace, from the API or the web page: the log notes which
/// settings `actor` changed (their new values; the ingest key is not a setting), and the workers
/// look again.
pub async fn changed(state: &AppState, before: &Workspace, after: &Workspace, actor: &str) {
    let mut changed = serde_json::Map::new();
    let mut differs = |key: &str, old: Value, new: Value| {
        if old != new {
            changed.insert(key.into(), new);
        }
    };
    differs("name", json!(before.name.as_str()), json!(after.name.as_str()));
    differs("owner_email", json!(before.owner_email.as_str()), json!(after.owner_email.as_str()));
    differs("timezone", json!(before.timezone.name()), json!(after.timezone.name()));
    differs("granularity", json!(before.granularity), json!(after.granularity));
    differs("account", json!(before.account), json!(after.account));
    differs("locale", json!(before.locale), json!(after.locale));
    differs(
        "media_link_ttl",
        json!(before.media_link_ttl.to_string()),
        json!(after.media_link_ttl.to_string()),
    );
    differs(
        "transcript_link_ttl",
        json!(before.transcript_link_ttl.to_string()),
        json!(after.transcript_link_ttl.to_string()),
    );
    differs(
        "conversation_silence",
        json!(before.conversation_silence.to_string()),
        json!(after.conversation_silence.to_string()),
    );
    differs(
        "conversation_max",
        json!(before.conversation_max.to_string()),
        json!(after.conversation_max.to_string()),
    );
    differs("reply_url", json!(before.reply_url), json!(after.reply_url));
    // Whether it is signed, never the secret.
    differs("reply_signed", json!(before.reply_secret.is_some()), json!(after.reply_secret.is_some()));
    differs(
        "message_retention",
        json!(before.message_retention.to_string()),
        json!(after.message_retention.to_string()),
    );
    if !changed.is_empty() {
        let detail = Value::Object(changed);
        super::activity::note(state, &after.id, None, ("workspace_changed", actor), detail).await;
    }
    let id = &after.id;
    state.workspaces.forget(id);
    // A new default granularity or time zone moves the windows of the webhooks that follow it.
    state.closer.kick();
    // Webhooks that follow the workspace's granularity may have changed what is due.
    state.deliveries_waiting.notify_one();
}

/// Notes that `actor` released every open window of the workspace, and how many deliveries that
/// queued.
pub async fn flushed(state: &AppState, id: &WorkspaceId, deliveries: u64, actor: &str) {
    super::activity::note(state, id, None, ("flushed", actor), json!({"deliveries": deliveries})).await;
}

/// Notes what `actor` did to a source (`source_created`, `source_changed`, `source_deleted`,
/// `source_rotated`), by its name and channel: never its credentials or inbound key, nor its id
/// (a source made before inbound keys has its id as its key until rotated).
pub async fn source_noted(state: &AppState, source: &Source, kind: &str, actor: &str) {
    let detail = json!({"name": source.name.as_str(), "kind": source.kind.as_str()});
    super::activity::note(state, &source.workspace_id, None, (kind, actor), detail).await;
}

/// Notes what `actor` did to a chat (`transcript_rotated`, `chat_owner_set`).
pub async fn chat_noted(state: &AppState, workspace: &WorkspaceId, chat: ChatId, kind: &str, actor: &str) {
    super::activity::note(state, workspace, None, (kind, actor), json!({"chat_id": chat.0})).await;
}
