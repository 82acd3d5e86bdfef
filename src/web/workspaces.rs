//! The workspace list, a new workspace, and a workspace's page: its settings, webhooks, sources
//! and chats, with "release now".

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tracing::instrument;

use super::session::CsrfForm;
use super::webhook_card::{FOLLOW_WORKSPACE, WebhookCard, WebhookForm, choices};
use super::{FormErrors, PageError, PageIds, Session, keep, page, see_other};
use crate::domain::{
    Account, ConversationMax, ConversationSilence, EmailAddress, Granularity, Locale, MediaLinkTtl,
    MessageRetention, Name, SessionStatus, SourceId, SourceKind, Timezone, WebhookId, WorkspaceId,
};
use crate::domain::{Need, Role};
use crate::service;
use crate::service::AppState;
use crate::store::{ChatSummary, NewWorkspace, Workspace, WorkspacePatch};
use crate::words::{PageWords, default_page_words as default_words, page_words};

#[derive(Template)]
#[template(path = "web/home.html")]
struct HomePage {
    w: &'static PageWords,
    csrf: String,
    /// Whether the new-workspace form is shown: the operator's alone.
    operator: bool,
    workspaces: Vec<Workspace>,
    /// For the operator, each workspace's id with its webhooks switched off, deliveries waiting,
    /// the oldest's wait, and sources no request reached in a day.
    health: HashMap<String, (u64, u64, String, u64)>,
    form: WorkspaceForm,
    granularities: [(&'static str, &'static str); 6],
}

#[derive(Debug, Default, Deserialize, Clone)]
pub struct WorkspaceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    owner_email: String,
    #[serde(default)]
    timezone: String,
    #[serde(default)]
    granularity: String,
    #[serde(default)]
    account_full_name: String,
    #[serde(default)]
    account_email: String,
    #[serde(default)]
    account_phone: String,
    /// `en` or `ja`; empty is English.
    #[serde(default)]
    locale: String,
    /// How long media links work, e.g. `24h`; empty keeps it (a new workspace: 24 hours).
    #[serde(default)]
    media_link_ttl: String,
    /// How long messages are kept: `keep` or a duration; empty keeps the setting.
    #[serde(default)]
    message_retention: String,
    /// How long transcript links work: `never` or a duration; empty keeps the setting.
    #[serde(default)]
    transcript_link_ttl: String,
    /// For conversation bundles, e.g. `30m` and `24h`; empty keeps the setting.
    #[serde(default)]
    conversation_silence: String,
    #[serde(default)]
    conversation_max: String,
    #[serde(skip)]
    errors: FormErrors,
}

/// A workspace form's values, each checked.
struct CheckedWorkspace {
    name: Name,
    owner_email: EmailAddress,
    timezone: Timezone,
    granularity: Granularity,
    account: Account,
    /// `None`: not given (a new workspace writes English; a saved one keeps its language).
    locale: Option<Locale>,
    /// `None`: not given (a new workspace's links last a day; a saved one keeps its setting).
    media_link_ttl: Option<MediaLinkTtl>,
    /// `None`: not given (a new workspace keeps its messages; a saved one keeps its setting).
    message_retention: Option<MessageRetention>,
    transcript_link_ttl: Option<crate::domain::TranscriptLinkTtl>,
    conversation_silence: Option<ConversationSilence>,
    conversation_max: Option<ConversationMax>,
}

impl WorkspaceForm {
    fn from(ws: &Workspace) -> Self {
        WorkspaceForm {
            name: ws.name.to_string(),
            owner_email: ws.owner_email.to_string(),
            timezone: ws.timezone.name().to_string(),
            granularity: ws.granularity.as_str().into(),
            account_full_name: ws.account.full_name.clone().unwrap_or_default(),
            account_email: ws.account.email.clone().unwrap_or_default(),
            account_phone: ws.account.phone.clone().unwrap_or_default(),
            locale: ws.locale.as_str().into(),
            media_link_ttl: ws.media_link_ttl.to_string(),
            message_retention: ws.message_retention.to_string(),
            transcript_link_ttl: ws.transcript_link_ttl.to_string(),
            conversation_silence: ws.conversation_silence.to_string(),
            conversation_max: ws.conversation_max.to_string(),
            ..WorkspaceForm::default()
        }
    }

    /// Checks every field with the domain's rules (the admin API's), collecting each field's
    /// error rather than stopping at the first.
    fn check(&mut self) -> Option<CheckedWorkspace> {
        let errors = &mut self.errors;
        let name = keep(errors, "name", Name::parse(&self.name));
        let owner = keep(errors, "owner_email", self.owner_email.parse::<EmailAddress>());
        let zone = match self.timezone.trim() {
            "" => "UTC",
            zone => zone,
        };
        let zone = keep(errors, "timezone", zone.parse::<Timezone>());
        let granularity = keep(errors, "granularity", self.granularity.parse::<Granularity>());
        let locale = match self.locale.trim() {
            "" => Some(None),
            given => keep(errors, "locale", given.parse::<Locale>()).map(Some),
        };
        let media_link_ttl = match self.media_link_ttl.trim() {
            "" => Some(None),
            given => keep(errors, "media_link_ttl", given.parse::<MediaLinkTtl>()).map(Some),
        };
        let message_retention = match self.message_retention.trim() {
            "" => Some(None),
            given => keep(errors, "message_retention", given.parse::<MessageRetention>()).map(Some),
        };
        let transcript_link_ttl = match self.transcript_link_ttl.trim() {
            "" => Some(None),
            given => keep(errors, "transcript_link_ttl", given.parse::<crate::domain::TranscriptLinkTtl>())
                .map(Some),
        };
        let conversation_silence = match self.conversation_silence.trim() {
            "" => Some(None),
            given => keep(errors, "conversation_silence", given.parse::<ConversationSilence>()).map(Some),
        };
        let conversation_max = match self.conversation_max.trim() {
            "" => Some(None),
            given => keep(errors, "conversation_max", given.parse::<ConversationMax>()).map(Some),
        };
        let optional = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        let account = Account {
            full_name: optional(&self.account_full_name),
            email: optional(&self.account_email),
            phone: optional(&self.account_phone),
        };
        let account = match account.checked() {
            Ok(account) => Some(account),
            Err((key, e)) => {
                let field = match key {
                    "full_name" => "account_full_name",
                    "email" => "account_email",
                    _ => "account_phone",
                };
                errors.insert(field, e.to_string());
                None
            }
        };
        Some(CheckedWorkspace {
            name: name?,
            owner_email: owner?,
            timezone: zone?,
            granularity: granularity?,
            account: account?,
            locale: locale?,
            media_link_ttl: media_link_ttl?,
            message_retention: message_retention?,
            transcript_link_ttl: transcript_link_ttl?,
            conversation_silence: conversation_silence?,
            conversation_max: conversation_max?,
        })
    }
}

#[instrument(skip_all)]
pub async fn home(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    let form =
        WorkspaceForm { granularity: "none".into(), timezone: "UTC".into(), ..WorkspaceForm::default() };
    home_page(&state, session, form).await
}

/// How long something has waited, roughly: `45 s`, `12 min`, `3 h`, `2 d`.
fn age(waited: chrono::Duration) -> String {
    let s = waited.num_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

async fn home_page(state: &AppState, session: Session, form: WorkspaceForm) -> Result<Response, PageError> {
    let workspaces = state.store.list_workspaces().await?;
    // A member sees the workspaces they belong to, and no other.
    let workspaces =
        workspaces.into_iter().filter(|ws| session.principal.may(&ws.id, Need::Read).is_ok()).collect();
    let w = default_words();
    let operator = session.principal.is_operator();
    // The operator sees every workspace at a glance: what needs looking at.
    let health = if operator {
        let now = state.clock.now();
        state
            .store
            .workspaces_health(now)
            .await?
            .into_iter()
            .map(|h| {
                let oldest = h.oldest_waiting_since.map(|since| age(now - since)).unwrap_or_default();
                (h.id.to_string(), (h.webhooks_off, h.waiting, oldest, h.silent_sources))
            })
            .collect()
    } else {
        HashMap::new()
    };
    Ok(page(HomePage {
        w,
        csrf: session.csrf,
        operator,
        workspaces,
        health,
        form,
        granularities: w.granularities(),
    }))
}

#[instrument(skip_all)]
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Form(mut form): Form<WorkspaceForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    if !session.principal.is_operator() {
        return Err(PageError::forbidden("Only the operator (the admin token) makes workspaces."));
    }
    let Some(checked) = form.check() else {
        let mut response = home_page(&state, session, form).await?;
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(response);
    };
    let new = NewWorkspace {
        name: checked.name,
        owner_email: checked.owner_email,
        timezone: checked.timezone,
        granularity: checked.granularity,
        account: checked.account,
        locale: checked.locale.unwrap_or_default(),
        media_link_ttl: checked.media_link_ttl.unwrap_or(MediaLinkTtl::DEFAULT),
        message_retention: checked.message_retention.unwrap_or_default(),
        transcript_link_ttl: checked.transcript_link_ttl.unwrap_or_default(),
        conversation_silence: checked.conversation_silence.unwrap_or(ConversationSilence::DEFAULT),
        conversation_max: checked.conversation_max.unwrap_or(ConversationMax::DEFAULT),
    };
    let ws = state.store.create_workspace(new).await?;
    Ok(see_other(&format!("/ui/workspaces/{}", ws.id)))
}

struct SourceLine {
    id: String,
    name: String,
    /// Its channel's name, in the workspace's language.
    channel: &'static str,
    /// Where to paste its inbound URL in the vendor's console, step by step.
    steps: &'static [&'static str],
    /// Its credentials: which are set (never their values).
    fields: Vec<super::sources::CredentialField>,
    /// Whether the vendor reaches us: the last request and the count of a day, as a sentence.
    traffic: String,
    /// The last refused request: when, its status, why.
    refusal: Option<String>,
    enabled: bool,
    inbound_url: String,
    /// Whether its files can be fetched for media links: `Ok`, or the credential it lacks
    /// (`None`: its channel's files are not fetched).
    media_links: Result<(), Option<&'static str>>,
}

struct ChatLine {
    id: i64,
    name: String,
    external_id: String,
    messages: u64,
    session: String,
    last: String,
}

impl ChatLine {
    fn from(chat: &ChatSummary, w: &PageWords) -> Self {
        ChatLine {
            id: chat.id.0,
            name: chat.full_name.clone().or(chat.phone.clone()).unwrap_or_else(|| chat.external_id.clone()),
            external_id: chat.external_id.clone(),
            messages: chat.messages,
            session: chat.session_status.map(SessionStatus::as_str).unwrap_or_default().to_string(),
            last: chat.last_received_at.format(w.time).to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "web/workspace.html")]
struct WorkspacePage {
    /// The workspace's language.
    w: &'static PageWords,
    csrf: String,
    /// Whether its forms (and secrets) are shown: a viewer's page has none.
    can_change: bool,
    ws: Workspace,
    settings: WorkspaceForm,
    notice: Option<String>,
    webhooks: Vec<WebhookCard>,
    new_webhook: WebhookForm,
    sources: Vec<SourceLine>,
    /// Where the plain JSON API takes this workspace's messages.
    ingest_url: String,
    chats: Vec<ChatLine>,
    /// The granularity choices of the new-webhook form.
    choices: Vec<(&'static str, String)>,
    /// The workspace settings' granularity choices.
    granularities: [(&'static str, &'static str); 6],
    /// Its members (for who may change the workspace).
    members: Vec<MemberLine>,
    /// Someone just invited: their address and the link, shown this once.
    invited: Option<(String, String)>,
    /// The channels one can connect: each path segment with its name.
    channels: Vec<(&'static str, &'static str)>,
}

struct MemberLine {
    user_id: String,
    email: String,
    admin: bool,
    active: bool,
    last_sign_in: String,
}

/// What was just done, said at the top of the workspace's page.
pub enum Notice {
    /// "Release now", with the number of deliveries it queued.
    Released(u64),
    SettingsSaved,
    /// A delivery sent again, by its id.
    Resent(String),
    /// A source's inbound URL rotated, by its name.
    InboundRotated(String),
    /// A chat erased, with the number of its messages.
    Erased(u64),
    /// A source connected from the page, by its name.
    Connected(String),
    SourceSaved,
    SourceDeleted,
    WebhookDeleted,
}

impl Notice {
    fn text(&self, w: &PageWords) -> String {
        match self {
            Notice::Released(n) => format!("{}{n}{}", w.notice_released_before, w.notice_released_after),
            Notice::SettingsSaved => w.notice_settings_saved.to_string(),
            Notice::Resent(id) => format!("{}{id}{}", w.notice_resent_before, w.notice_resent_after),
            Notice::InboundRotated(name) => {
                format!("{}{name}{}", w.notice_inbound_rotated_before, w.notice_inbound_rotated_after)
            }
            Notice::Erased(n) => format!("{}{n}{}", w.notice_erased_before, w.notice_erased_after),
            Notice::Connected(name) => {
                format!("{}{name}{}", w.notice_connected_before, w.notice_connected_after)
            }
            Notice::SourceSaved => w.notice_source_saved.to_string(),
            Notice::SourceDeleted => w.notice_source_deleted.to_string(),
            Notice::WebhookDeleted => w.notice_webhook_deleted.to_string(),
        }
    }
}

/// What one render of the workspace page shows beyond the stored state.
#[derive(Default)]
pub struct Overlay {
    pub settings: Option<WorkspaceForm>,
    pub notice: Option<Notice>,
    pub new_webhook: Option<WebhookForm>,
    /// A webhook's form as submitted, with its errors, test result or new secret.
    pub webhook: Option<(WebhookId, WebhookForm, Option<service::activity::TestResult>, Option<String>)>,
    pub saved: Option<WebhookId>,
    /// Someone just invited: their address and the link.
    pub invited: Option<(String, String)>,
}

#[derive(Deserialize, Default)]
pub struct WorkspaceQuery {
    released: Option<u64>,
    saved: Option<WebhookId>,
    settings: Option<String>,
    resent: Option<String>,
    /// The source whose inbound URL was just rotated.
    rotated: Option<SourceId>,
    /// A chat just erased, with this many messages.
    erased: Option<u64>,
    /// A source just connected, saved, or deleted.
    connected: Option<SourceId>,
    source_saved: Option<String>,
    source_deleted: Option<String>,
    webhook_deleted: Option<String>,
}

#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WorkspaceId>,
    Query(query): Query<WorkspaceQuery>,
) -> Result<Response, PageError> {
    let mut overlay = Overlay::default();
    if let Some(n) = query.released {
        overlay.notice = Some(Notice::Released(n));
    }
    if query.settings.is_some() {
        overlay.notice = Some(Notice::SettingsSaved);
    }
    if let Some(id) = query.resent {
        overlay.notice = Some(Notice::Resent(id));
    }
    if let Some(source) = query.rotated
        && let Some(source) = state.store.get_source(&source).await?.filter(|s| s.workspace_id == id)
    {
        overlay.notice = Some(Notice::InboundRotated(source.name.into_string()));
    }
    if let Some(n) = query.erased {
        overlay.notice = Some(Notice::Erased(n));
    }
    if let Some(source) = query.connected
        && let Some(source) = state.store.get_source(&source).await?.filter(|s| s.workspace_id == id)
    {
        overlay.notice = Some(Notice::Connected(source.name.into_string()));
    }
    if query.source_saved.is_some() {
        overlay.notice = Some(Notice::SourceSaved);
    }
    if query.source_deleted.is_some() {
        overlay.notice = Some(Notice::SourceDeleted);
    }
    if query.webhook_deleted.is_some() {
        overlay.notice = Some(Notice::WebhookDeleted);
    }
    overlay.saved = query.saved;
    workspace_page(&state, session, &id, overlay, StatusCode::OK).await
}

/// The workspace's page as stored, with `overlay` over it, answered with `status`.
pub async fn workspace_page(
    state: &AppState,
    session: Session,
    id: &WorkspaceId,
    overlay: Overlay,
    status: StatusCode,
) -> Result<Response, PageError> {
    session.may(id, Need::Read, "workspace")?;
    let ws = state.store.get_workspace(id).await?.ok_or_else(|| PageError::not_found("workspace"))?;
    let w = page_words(ws.locale);
    let mut webhooks = Vec::new();
    for webhook in state.store.list_webhooks(id).await? {
        let mut card = WebhookCard::load(state, &ws, &webhook).await?;
        if let Some((webhook_id, form, test, secret)) = &overlay.webhook
            && *webhook_id == webhook.id
        {
            card.form = form.clone();
            card.test = test.clone();
            card.new_secret = secret.clone();
        }
        card.saved = overlay.saved.as_ref() == Some(&webhook.id);
        webhooks.push(card);
    }
    let mut sources = Vec::new();
    for s in state.store.list_sources(id).await? {
        let health = state.store.source_health(&s.id, state.clock.now()).await?;
        let traffic = match health.last_request_at {
            Some(at) => format!(
                "{}{}{}{}{}",
                w.last_request_before,
                at.format(w.time_seconds),
                w.requests_24h_before,
                health.requests_24h,
                w.requests_24h_after
            ),
            None => w.no_request_yet.to_string(),
        };
        let refusal = health.last_refusal.map(|r| {
            format!(
                "{}{} · HTTP {} · {}",
                w.last_refusal_before,
                r.at.format(w.time_seconds),
                r.status,
                r.reason
            )
        });
        sources.push(SourceLine {
            traffic,
            refusal,
            inbound_url: service::sources::inbound_url(&state.public_url, &s),
            channel: w.channels.of(s.kind).name,
            steps: w.channels.of(s.kind).steps,
            fields: super::sources::CredentialField::all(w, s.kind, Some(&s.credentials)),
            id: s.id.to_string(),
            name: s.name.into_string(),
            enabled: s.enabled,
            media_links: crate::domain::links_media(s.kind, &s.credentials),
        });
    }
    let chats = state.store.list_chats(id, 50, 0).await?.iter().map(|c| ChatLine::from(c, w)).collect();
    let can_change = session.can_change(id);
    let members = if can_change {
        let members = state.store.list_members(id).await?;
        members
            .into_iter()
            .map(|m| MemberLine {
                user_id: m.user.id.to_string(),
                admin: m.role == Role::Admin,
                active: m.user.password_hash.is_some(),
                last_sign_in: m
                    .user
                    .last_sign_in_at
                    .map(|t| t.format(w.time).to_string())
                    .unwrap_or_default(),
                email: m.user.email,
            })
            .collect()
    } else {
        Vec::new()
    };
    let content = WorkspacePage {
        can_change,
        members,
        invited: overlay.invited,
        channels: SourceKind::ALL.iter().map(|k| (k.path(), w.channels.of(*k).name)).collect(),
        w,
        ingest_url: format!("{}/api/v1/workspaces/{}/messages", state.public_url, ws.id),
        csrf: session.csrf,
        settings: overlay.settings.unwrap_or_else(|| WorkspaceForm::from(&ws)),
        choices: choices(&ws),
        ws,
        notice: overlay.notice.map(|n| n.text(w)),
        webhooks,
        new_webhook: overlay.new_webhook.unwrap_or(WebhookForm {
            enabled: Some("on".into()),
            granularity: FOLLOW_WORKSPACE.into(),
            event_messages: Some("on".into()),
            ..WebhookForm::default()
        }),
        sources,
        chats,
        granularities: w.granularities(),
    };
    let mut response = page(content);
    *response.status_mut() = status;
    Ok(response)
}

#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn save(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WorkspaceId>,
    Form(mut form): Form<WorkspaceForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    session.may(&id, Need::Change, "workspace")?;
    let Some(checked) = form.check() else {
        let overlay = Overlay { settings: Some(form), ..Overlay::default() };
        return workspace_page(&state, session, &id, overlay, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let patch = WorkspacePatch {
        name: Some(checked.name),
        owner_email: Some(checked.owner_email),
        timezone: Some(checked.timezone),
        granularity: Some(checked.granularity),
        account: Some(checked.account),
        locale: checked.locale,
        media_link_ttl: checked.media_link_ttl,
        message_retention: checked.message_retention,
        transcript_link_ttl: checked.transcript_link_ttl,
        conversation_silence: checked.conversation_silence,
        conversation_max: checked.conversation_max,
        ..WorkspacePatch::default()
    };
    let before = state.store.get_workspace(&id).await?.ok_or_else(|| PageError::not_found("workspace"))?;
    let after =
        state.store.update_workspace(&id, patch).await?.ok_or_else(|| PageError::not_found("workspace"))?;
    service::workspaces::changed(&state, &before, &after, &session.actor()).await;
    Ok(see_other(&format!("/ui/workspaces/{id}?settings=saved")))
}

#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn flush(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WorkspaceId>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    session.may(&id, Need::Change, "workspace")?;
    let n = state.closer.flush(&id).await?;
    service::workspaces::flushed(&state, &id, n, &session.actor()).await;
    Ok(see_other(&format!("/ui/workspaces/{id}?released={n}")))
}

/// "New inbound URL": rotates a source's inbound key, as `POST /api/v1/sources/{id}/rotate` does.
#[instrument(skip_all, fields(source = %crate::telemetry::redact(id.as_str())))]
pub async fn rotate_source(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<SourceId>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let found = state.store.get_source(&id).await?.ok_or_else(|| PageError::not_found("source"))?;
    session.may(&found.workspace_id, Need::Change, "source")?;
    let source = state.store.rotate_inbound_key(&id).await?.ok_or_else(|| PageError::not_found("source"))?;
    service::workspaces::source_noted(&state, &source, "source_rotated", &session.actor()).await;
    tracing::info!(kind = source.kind.as_str(), "inbound URL rotated; the old one answers 404");
    Ok(see_other(&format!("/ui/workspaces/{}?rotated={id}#{id}", source.workspace_id)))
}

#[derive(Deserialize)]
pub struct InviteForm {
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// Invites someone from the Members section; the page shows the link this once.
#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn invite(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WorkspaceId>,
    Form(form): Form<InviteForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    session.may(&id, Need::Change, "workspace")?;
    let email = form.email.parse::<crate::domain::EmailAddress>();
    let role = form.role.parse::<Role>();
    let (Ok(email), Ok(role)) = (email, role) else {
        return Err(PageError::from(crate::http::ApiError::field(
            "email",
            "not an e-mail address, or no role",
        )));
    };
    let actor = session.actor();
    let (member, link) = service::members::invite(&state, &id, email, role, &actor).await?;
    let overlay = Overlay { invited: Some((member.user.email, link)), ..Overlay::default() };
    workspace_page(&state, session, &id, overlay, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct MemberForm {
    csrf: String,
    #[serde(default)]
    role: String,
    /// `remove`, or a role change.
    #[serde(default)]
    action: String,
}

/// Changes a member's role, or removes them, from the Members section.
#[instrument(skip_all, fields(workspace_id = %id, user_id = %user))]
pub async fn member(
    State(state): State<AppState>,
    session: Session,
    PageIds((id, user)): PageIds<(WorkspaceId, crate::domain::UserId)>,
    Form(form): Form<MemberForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    session.may(&id, Need::Change, "workspace")?;
    let actor = session.actor();
    let done = if form.action == "remove" {
        service::members::remove(&state, &id, &user, &actor).await?
    } else {
        let role = form
            .role
            .parse::<Role>()
            .map_err(|e| PageError::from(crate::http::ApiError::field("role", e)))?;
        service::members::set_role(&state, &id, &user, role, &actor).await?.is_some()
    };
    if !done {
        return Err(PageError::not_found("member"));
    }
    Ok(see_other(&format!("/ui/workspaces/{id}#members-heading")))
}
