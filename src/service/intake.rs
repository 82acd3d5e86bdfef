//! What storing one inbound request takes, for every way messages come in (the channels' URLs,
//! the JSON API, a reply typed here): the request as the store is handed it, rendered as this
//! daemon renders payloads.

use std::sync::Arc;

use crate::domain::Media;
use crate::render;
use crate::render::media::LinkPlan;
use crate::service::AppState;
use crate::store::{IngestBatch, NewMessage, SessionChange, Source, Workspace};

/// What the store is handed for one request of a workspace and source (`None`: the JSON API):
/// its messages, session news and skipped elements, with how this daemon renders their payloads.
pub fn batch(
    state: &AppState,
    workspace: &Workspace,
    source: Option<&Source>,
    messages: Vec<NewMessage>,
    sessions: Vec<SessionChange>,
    skipped: Vec<Option<String>>,
) -> IngestBatch {
    let public_url = state.public_url.clone();
    // A webhook whose media are `link` gets links to this source's files.
    let links = source.map(|s| LinkPlan {
        key: state.link_key.clone(),
        expires: state.clock.now() + workspace.media_link_ttl.duration(),
        sources: [(s.id.to_string(), (s.kind, s.credentials.clone()))].into(),
    });
    IngestBatch {
        workspace_id: workspace.id.clone(),
        source_key: source.map_or(crate::domain::API_SOURCE_KEY, |s| s.id.as_str()).to_string(),
        source_name: source.map_or(crate::domain::API_SOURCE_KEY, |s| s.name.as_str()).to_string(),
        messages,
        sessions,
        skipped,
        render_immediate: Arc::new(move |account, locale, chat, message, media, is_new_chat| {
            let links = match (&links, media) {
                (Some(plan), Media::Link) => plan.for_source(&public_url, &chat.source_key),
                _ => None,
            };
            render::single_message(&public_url, account, locale, chat, message, is_new_chat, links.as_ref())
        }),
        render_session: session_renderer(state),
        reply: None,
        trace_parent: crate::telemetry::traceparent(),
    }
}

/// How `session_status` payloads are rendered for this daemon.
pub fn session_renderer(state: &AppState) -> crate::store::RenderSession {
    let public_url = state.public_url.clone();
    Arc::new(move |event| render::session_event(&public_url, event))
}

/// Messages of a source: those that name no business account speak for the source's, and a
/// WeChat source's chats take its account type.
pub fn as_source(source: &crate::store::Source, messages: Vec<NewMessage>) -> Vec<NewMessage> {
    let speaks_for = source.account != crate::domain::Account::default();
    let account_type = (source.kind == crate::domain::SourceKind::Wechat)
        .then(|| crate::domain::credentials::wechat::account_type(&source.credentials));
    messages
        .into_iter()
        .map(|mut m| {
            if m.account.is_none() && speaks_for {
                m.account = Some(source.account.clone());
            }
            m.chat.account_type = account_type;
            m
        })
        .collect()
}
