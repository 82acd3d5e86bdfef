//! The admin pages: sign in and out, the workspace list, a workspace's settings, webhooks,
//! sources and chats, a chat's transcript link. Every change goes through the same store calls and
//! checks as the admin API; input errors are shown next to their field with the values kept.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::{Session, see_other, sign_in, sign_out};
use crate::admin::activity::{Format, TestResult, download, send_test};
use crate::admin::deliveries::resend_now;
use crate::admin::sources::inbound_url;
use crate::admin::webhooks::{updated, url as checked_url};
use crate::admin::workspaces::timezone;
use crate::admin::{email, required_text};
use crate::api::auth::same_secret;
use crate::api::server::Client;
use crate::api::{ApiError, AppState};
use crate::deliver::SigningSecret;
use crate::domain::{
    Account, ChatId, DeliveryId, DeliveryStatus, Event, Granularity, WebhookId, WorkspaceId, masked_url,
    unmasked_url,
};
use crate::render::chat_url;
use crate::store::{
    ActivityRow, ChatSummary, DeliveryInfo, NewWebhook, NewWorkspace, Webhook, WebhookPatch, Workspace,
    WorkspacePatch,
};

/// The granularity select, with exactly these labels.
pub const GRANULARITIES: [(&str, &str); 5] = [
    ("none", "Don't aggregate"),
    ("1h", "Every 1 hour"),
    ("6h", "Every 6 hours"),
    ("12h", "Every 12 hours"),
    ("24h", "Every 24 hours"),
];

type Errors = HashMap<&'static str, String>;

/// An API error as a sentence for the field it belongs to (without the field's name in front).
fn plain(error: ApiError) -> String {
    match &error.field {
        Some(field) => error.detail.strip_prefix(&format!("{field}: ")).unwrap_or(&error.detail).to_string(),
        None => error.detail,
    }
}

fn page<T: Template>(template: T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "This page could not be rendered.").into_response()
        }
    }
}

/// The page for a store that cannot answer now.
pub fn unavailable() -> Response {
    failure(ApiError::unavailable())
}

fn failure(error: ApiError) -> Response {
    let status = error.status;
    (
        status,
        Html(format!(
            "<!doctype html><title>{}</title><p>{}</p><p><a href=\"/ui\">Back</a></p>",
            status,
            askama_escape(&error.detail)
        )),
    )
        .into_response()
}

fn askama_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

// ----- sign in and out -----

#[derive(Template)]
#[template(path = "web/login.html")]
struct LoginPage {
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn root() -> Response {
    see_other("/ui")
}

pub async fn login_page(Query(query): Query<NextQuery>) -> Response {
    page(LoginPage { next: query.next.unwrap_or_else(|| "/ui".into()), error: None })
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login(State(state): State<AppState>, client: Client, Form(form): Form<LoginForm>) -> Response {
    let next = form.next.unwrap_or_else(|| "/ui".into());
    // A client shut out for guessing is not even checked.
    if let Some(wait) = state.throttle.wait(client.0) {
        metrics::counter!(crate::telemetry::metric::AUTH_THROTTLED).increment(1);
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let error = format!("Too many wrong tokens from this address. Try again in {seconds} s.");
        let mut response = page(LoginPage { next, error: Some(error) });
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        return response;
    }
    if same_secret(form.token.trim(), &state.admin_token) {
        return sign_in(&state, &next).await;
    }
    state.throttle.failed(client.0, "sign-in");
    let mut response = page(LoginPage { next, error: Some("That is not the admin token.".into()) });
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(State(state): State<AppState>, session: Session, Form(form): Form<CsrfForm>) -> Response {
    if let Some(refused) = session.refusal(&form.csrf) {
        return refused;
    }
    sign_out(&state, &session).await
}

// ----- the workspace list -----

#[derive(Template)]
#[template(path = "web/home.html")]
struct HomePage {
    csrf: String,
    workspaces: Vec<Workspace>,
    form: WorkspaceForm,
    granularities: [(&'static str, &'static str); 5],
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
    #[serde(skip)]
    errors: Errors,
}

impl WorkspaceForm {
    fn from(ws: &Workspace) -> Self {
        WorkspaceForm {
            name: ws.name.clone(),
            owner_email: ws.owner_email.clone(),
            timezone: ws.timezone.clone(),
            granularity: ws.granularity.as_str().into(),
            account_full_name: ws.account.full_name.clone().unwrap_or_default(),
            account_email: ws.account.email.clone().unwrap_or_default(),
            account_phone: ws.account.phone.clone().unwrap_or_default(),
            ..WorkspaceForm::default()
        }
    }

    /// Checks every field, collecting each field's error rather than stopping at the first.
    fn check(&mut self) -> Option<(String, String, String, Granularity, Account)> {
        let name =
            required_text("name", &self.name, 200).map_err(|e| self.errors.insert("name", plain(e))).ok();
        let owner = email("owner_email", &self.owner_email)
            .map_err(|e| self.errors.insert("owner_email", plain(e)))
            .ok();
        let zone = if self.timezone.trim().is_empty() {
            "UTC".to_string()
        } else {
            self.timezone.trim().to_string()
        };
        let zone = timezone(&zone).map_err(|e| self.errors.insert("timezone", plain(e))).ok();
        let granularity =
            self.granularity.parse::<Granularity>().map_err(|e| self.errors.insert("granularity", e)).ok();
        let optional = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        let account = Account {
            full_name: optional(&self.account_full_name),
            email: optional(&self.account_email),
            phone: optional(&self.account_phone),
        };
        Some((name?, owner?, zone?, granularity?, account))
    }
}

pub async fn home(State(state): State<AppState>, session: Session) -> Response {
    let form =
        WorkspaceForm { granularity: "none".into(), timezone: "UTC".into(), ..WorkspaceForm::default() };
    home_page(&state, session, form).await
}

async fn home_page(state: &AppState, session: Session, form: WorkspaceForm) -> Response {
    match state.store.list_workspaces().await {
        Ok(workspaces) => {
            page(HomePage { csrf: session.csrf, workspaces, form, granularities: GRANULARITIES })
        }
        Err(e) => failure(e.into()),
    }
}

pub async fn create_workspace(
    State(state): State<AppState>,
    session: Session,
    Form(mut form): Form<WorkspaceForm>,
) -> Response {
    if let Some(refused) = session.refusal(&form.csrf) {
        return refused;
    }
    let Some((name, owner_email, timezone, granularity, account)) = form.check() else {
        let mut response = home_page(&state, session, form).await;
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return response;
    };
    match state
        .store
        .create_workspace(NewWorkspace { name, owner_email, timezone, granularity, account })
        .await
    {
        Ok(ws) => see_other(&format!("/ui/workspaces/{}", ws.id)),
        Err(e) => failure(e.into()),
    }
}

// ----- a workspace -----

#[derive(Debug, Default, Deserialize, Clone)]
pub struct WebhookForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    granularity: String,
    /// A checkbox: present ("on") when ticked.
    enabled: Option<String>,
    /// Which button: "save" or "test".
    action: Option<String>,
    #[serde(skip)]
    errors: Errors,
}

/// A webhook on the page: its state, its form, what it last did.
struct WebhookCard {
    id: String,
    effective: String,
    /// The granularity choices: the workspace's default first, then each one by name.
    choices: Vec<(&'static str, String)>,
    /// Deliveries given up or expired, which can be sent again.
    failed: Vec<FailedLine>,
    enabled: bool,
    disabled_reason: Option<String>,
    has_secret: bool,
    consecutive_failures: u32,
    form: WebhookForm,
    activity: Vec<ActivityLine>,
    test: Option<TestResult>,
    new_secret: Option<String>,
    saved: bool,
}

struct FailedLine {
    id: String,
    status: &'static str,
    answer: String,
    finished: String,
}

impl FailedLine {
    fn from(d: &DeliveryInfo) -> Self {
        let answer = match (d.last_status, &d.last_error) {
            (Some(status), _) => format!("HTTP {status}"),
            (None, Some(error)) => error.chars().take(120).collect(),
            (None, None) => String::new(),
        };
        FailedLine {
            id: d.id.to_string(),
            status: d.status.as_str(),
            answer,
            finished: d.finished_at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default(),
        }
    }
}

/// The value of the granularity choice that follows the workspace.
const FOLLOW_WORKSPACE: &str = "default";

/// The granularity choices of a webhook form, the workspace's default first.
fn choices(ws: &Workspace) -> Vec<(&'static str, String)> {
    let default =
        GRANULARITIES.iter().find(|(v, _)| *v == ws.granularity.as_str()).map(|(_, l)| *l).unwrap_or("");
    std::iter::once((FOLLOW_WORKSPACE, format!("Workspace default ({default})")))
        .chain(GRANULARITIES.iter().map(|(v, l)| (*v, l.to_string())))
        .collect()
}

/// A granularity choice: `None` follows the workspace.
fn chosen_granularity(value: &str) -> Result<Option<Granularity>, String> {
    match value {
        FOLLOW_WORKSPACE | "" => Ok(None),
        other => other.parse().map(Some),
    }
}

struct ActivityLine {
    at: String,
    kind: String,
    status: String,
    duration: String,
    note: String,
}

impl ActivityLine {
    fn from(row: &ActivityRow) -> Self {
        let note = row
            .error
            .clone()
            .or_else(|| row.response_excerpt.clone())
            .or_else(|| row.detail.as_ref().map(|d| d.to_string()))
            .unwrap_or_default();
        ActivityLine {
            at: row.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            kind: row.kind.clone(),
            status: row.status.map(|s| s.to_string()).unwrap_or_default(),
            duration: row.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
            note: note.chars().take(200).collect(),
        }
    }
}

struct SourceLine {
    name: String,
    kind: String,
    enabled: bool,
    inbound_url: String,
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
    fn from(chat: &ChatSummary) -> Self {
        ChatLine {
            id: chat.id.0,
            name: chat.full_name.clone().or(chat.phone.clone()).unwrap_or_else(|| chat.external_id.clone()),
            external_id: chat.external_id.clone(),
            messages: chat.messages,
            session: chat.session_status.map(|s| s.as_str().to_string()).unwrap_or_default(),
            last: chat.last_received_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "web/workspace.html")]
struct WorkspacePage {
    csrf: String,
    ws: Workspace,
    settings: WorkspaceForm,
    notice: Option<(String, String)>,
    webhooks: Vec<WebhookCard>,
    new_webhook: WebhookForm,
    sources: Vec<SourceLine>,
    /// Where the plain JSON API takes this workspace's messages.
    ingest_url: String,
    chats: Vec<ChatLine>,
    /// The granularity choices of the new-webhook form.
    choices: Vec<(&'static str, String)>,
    /// The workspace settings' granularity choices.
    granularities: [(&'static str, &'static str); 5],
}

/// What one render of the workspace page shows beyond the stored state.
#[derive(Default)]
struct Overlay {
    settings: Option<WorkspaceForm>,
    notice: Option<(String, String)>,
    new_webhook: Option<WebhookForm>,
    /// A webhook's form as submitted, with its errors, test result or new secret.
    webhook: Option<(WebhookId, WebhookForm, Option<TestResult>, Option<String>)>,
    saved: Option<WebhookId>,
}

#[derive(Deserialize, Default)]
pub struct WorkspaceQuery {
    released: Option<u64>,
    saved: Option<WebhookId>,
    settings: Option<String>,
    resent: Option<String>,
}

pub async fn workspace(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<WorkspaceId>,
    Query(query): Query<WorkspaceQuery>,
) -> Response {
    let mut overlay = Overlay::default();
    if let Some(n) = query.released {
        overlay.notice =
            Some(("good".into(), format!("Released every open window now: {n} deliveries queued.")));
    }
    if query.settings.is_some() {
        overlay.notice = Some(("good".into(), "Workspace settings saved.".into()));
    }
    if let Some(id) = query.resent {
        overlay.notice = Some(("good".into(), format!("Delivery {id} is being sent again.")));
    }
    overlay.saved = query.saved;
    workspace_page(&state, session, &id, overlay, StatusCode::OK).await
}

async fn workspace_page(
    state: &AppState,
    session: Session,
    id: &WorkspaceId,
    overlay: Overlay,
    status: StatusCode,
) -> Response {
    let result: Result<WorkspacePage, ApiError> = async {
        let ws = state.store.get_workspace(id).await?.ok_or_else(|| ApiError::not_found("workspace"))?;
        let mut webhooks = Vec::new();
        for webhook in state.store.list_webhooks(id).await? {
            let activity = state.store.activity(&webhook.id, None, 10).await?;
            let mut card = card(&ws, &webhook, activity.iter().map(ActivityLine::from).collect());
            for status in [DeliveryStatus::Failed, DeliveryStatus::Expired] {
                let given_up = state.store.list_deliveries(&webhook.id, Some(status), 10, 0).await?;
                card.failed.extend(given_up.iter().map(FailedLine::from));
            }
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
        let sources = state
            .store
            .list_sources(id)
            .await?
            .into_iter()
            .map(|s| SourceLine {
                inbound_url: inbound_url(&state.public_url, &s),
                name: s.name,
                kind: s.kind.as_str().into(),
                enabled: s.enabled,
            })
            .collect();
        let chats = state.store.list_chats(id, 50, 0).await?.iter().map(ChatLine::from).collect();
        Ok(WorkspacePage {
            ingest_url: format!("{}/api/v1/workspaces/{}/messages", state.public_url, ws.id),
            csrf: session.csrf,
            settings: overlay.settings.unwrap_or_else(|| WorkspaceForm::from(&ws)),
            ws,
            notice: overlay.notice,
            webhooks,
            new_webhook: overlay.new_webhook.unwrap_or(WebhookForm {
                enabled: Some("on".into()),
                granularity: FOLLOW_WORKSPACE.into(),
                ..WebhookForm::default()
            }),
            choices: Vec::new(),
            sources,
            chats,
            granularities: GRANULARITIES,
        })
    }
    .await;
    match result {
        Ok(mut content) => {
            content.choices = choices(&content.ws);
            let mut response = page(content);
            *response.status_mut() = status;
            response
        }
        Err(e) => failure(e),
    }
}

fn card(ws: &Workspace, webhook: &Webhook, activity: Vec<ActivityLine>) -> WebhookCard {
    let effective = webhook.granularity.unwrap_or(ws.granularity);
    let label = GRANULARITIES.iter().find(|(v, _)| *v == effective.as_str()).map(|(_, l)| *l).unwrap_or("");
    WebhookCard {
        id: webhook.id.to_string(),
        effective: if webhook.granularity.is_none() {
            format!("{label}, the workspace's default")
        } else {
            label.to_string()
        },
        choices: choices(ws),
        failed: Vec::new(),
        enabled: webhook.enabled,
        disabled_reason: webhook.disabled_reason.clone(),
        has_secret: webhook.secret.is_some(),
        consecutive_failures: webhook.consecutive_failures,
        form: WebhookForm {
            url: masked_url(&webhook.url),
            granularity: webhook.granularity.map(|g| g.as_str()).unwrap_or(FOLLOW_WORKSPACE).into(),
            enabled: webhook.enabled.then(|| "on".into()),
            ..WebhookForm::default()
        },
        activity,
        test: None,
        new_secret: None,
        saved: false,
    }
}

pub async fn save_workspace(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<WorkspaceId>,
    Form(mut form): Form<WorkspaceForm>,
) -> Response {
    if let Some(refused) = session.refusal(&form.csrf) {
        return refused;
    }
    let Some((name, owner_email, timezone, granularity, account)) = form.check() else {
        let overlay = Overlay { settings: Some(form), ..Overlay::default() };
        return workspace_page(&state, session, &id, overlay, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let patch = WorkspacePatch {
        name: Some(name),
        owner_email: Some(owner_email),
        timezone: Some(timezone),
        granularity: Some(granularity),
        account: Some(account),
    };
    match state.store.update_workspace(&id, patch).await {
        Ok(Some(_)) => {
            crate::admin::workspaces::updated(&state, &id);
            see_other(&format!("/ui/workspaces/{id}?settings=saved"))
        }
        Ok(None) => failure(ApiError::not_found("workspace")),
        Err(e) => failure(e.into()),
    }
}

pub async fn flush(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<WorkspaceId>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = session.refusal(&form.csrf) {
        return refused;
    }
    match state.closer.flush(&id).await {
        Ok(n) => see_other(&format!("/ui/workspaces/{id}?released={n}")),
        Err(e) => failure(e.into()),
    }
}

/// Checks a webhook form: the URL (with the SSRF guard) and the granularity (`None`: follow the
/// workspace).
async fn check_webhook(state: &AppState, form: &mut WebhookForm) -> Option<(String, Option<Granularity>)> {
    let url = checked_url(state, &form.url).await.map_err(|e| form.errors.insert("url", plain(e))).ok();
    let granularity =
        chosen_granularity(&form.granularity).map_err(|e| form.errors.insert("granularity", e)).ok();
    Some((url?, granularity?))
}

pub async fn create_webhook(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<WorkspaceId>,
    Form(mut form): Form<WebhookForm>,
) -> Response {
    if let Some(refused) = session.refusal(&form.csrf) {
        return refused;
    }
    let Some((url, granularity)) = check_webhook(&state, &mut form).await else {
        let overlay = Overlay { new_webhook: Some(form), ..Overlay::default() };
        return workspace_page(&state, session, &id, overlay, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let new = NewWebhook {
        workspace_id: id.clone(),
        url,
        granularity,
        enabled: form.enabled.is_some(),
        secret: None,
        events: vec![Event::Messages],
        timeout: None,
    };
    match state.store.create_webhook(new).await {
        Ok(webhook) => {
            state.closer.kick();
            see_other(&format!("/ui/workspaces/{id}?saved={}#{}", webhook.id, webhook.id))
        }
        Err(e) => failure(e.into()),
    }
}

/// Save, or Save and test: saves the form, and for a test sends the webhook a real sample at once
/// and shows the result on the page.
pub async fn save_webhook(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<WebhookId>,
    Form(mut form): Form<WebhookForm>,
) -> Response {
    if let Some(refused) = session.refusal(&form.csrf) {
        return refused;
    }
    let before = match state.store.get_webhook(&id).await {
        Ok(Some(webhook)) => webhook,
        Ok(None) => return failure(ApiError::not_found("webhook")),
        Err(e) => return failure(e.into()),
    };
    let workspace_id = before.workspace_id.clone();
    // The URL as the page shows it (password masked) means "unchanged".
    form.url = unmasked_url(&form.url, &before.url).to_string();
    let checked = check_webhook(&state, &mut form).await;
    form.url = masked_url(&form.url);
    let Some((url, granularity)) = checked else {
        let overlay = Overlay { webhook: Some((id.clone(), form, None, None)), ..Overlay::default() };
        return workspace_page(&state, session, &workspace_id, overlay, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    };
    let patch = WebhookPatch {
        url: Some(url),
        granularity: Some(granularity),
        enabled: Some(form.enabled.is_some()),
        ..WebhookPatch::default()
    };
    let after = match state.store.update_webhook(&id, patch).await {
        Ok(Some(webhook)) => webhook,
        Ok(None) => return failure(ApiError::not_found("webhook")),
        Err(e) => return failure(e.into()),
    };
    updated(&state, &before, &after).await;
    if form.action.as_deref() != Some("test") {
        return see_other(&format!("/ui/workspaces/{workspace_id}?saved={id}#{id}"));
    }
    match send_test(&state, &after).await {
        Ok(result) => {
            let form = WebhookForm { errors: Errors::new(), ..form };
            let overlay = Overlay {
                webhook: Some((id.clone(), form, Some(result), None)),
                saved: Some(id),
                ..Overlay::default()
            };
            workspace_page(&state, session, &workspace_id, overlay, StatusCode::OK).await
        }
        Err(e) => failure(e),
    }
}

/// Generates (or rotates) a webhook's signing secret and shows it once.
pub async fn new_secret(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<WebhookId>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = session.refusal(&form.csrf) {
        return refused;
    }
    let before = match state.store.get_webhook(&id).await {
        Ok(Some(webhook)) => webhook,
        Ok(None) => return failure(ApiError::not_found("webhook")),
        Err(e) => return failure(e.into()),
    };
    let secret = SigningSecret::generate();
    let patch = WebhookPatch { secret: Some(Some(secret.clone())), ..WebhookPatch::default() };
    match state.store.update_webhook(&id, patch).await {
        Ok(Some(after)) => {
            updated(&state, &before, &after).await;
            let workspace_id = after.workspace_id.clone();
            let ws = state.store.get_workspace(&workspace_id).await.ok().flatten();
            let form = ws.map(|ws| card(&ws, &after, Vec::new()).form).unwrap_or_default();
            let overlay = Overlay { webhook: Some((id, form, None, Some(secret))), ..Overlay::default() };
            workspace_page(&state, session, &workspace_id, overlay, StatusCode::OK).await
        }
        Ok(None) => failure(ApiError::not_found("webhook")),
        Err(e) => failure(e.into()),
    }
}

#[derive(Deserialize)]
pub struct LogQuery {
    format: Option<String>,
}

/// The activity log as a download, for the signed-in admin.
pub async fn download_log(
    State(state): State<AppState>,
    _session: Session,
    Path(id): Path<WebhookId>,
    Query(query): Query<LogQuery>,
) -> Response {
    match state.store.get_webhook(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return failure(ApiError::not_found("webhook")),
        Err(e) => return failure(e.into()),
    }
    let format = if query.format.as_deref() == Some("jsonl") { Format::Jsonl } else { Format::Csv };
    download(state.store.clone(), id, format)
}

/// Sends a failed or expired delivery again.
pub async fn resend(
    State(state): State<AppState>,
    session: Session,
    Path((id, delivery_id)): Path<(WebhookId, DeliveryId)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = session.refusal(&form.csrf) {
        return refused;
    }
    let webhook = match state.store.get_webhook(&id).await {
        Ok(Some(webhook)) => webhook,
        Ok(None) => return failure(ApiError::not_found("webhook")),
        Err(e) => return failure(e.into()),
    };
    match resend_now(&state, &id, &delivery_id).await {
        Ok(()) => see_other(&format!("/ui/workspaces/{}?resent={delivery_id}#{id}", webhook.workspace_id)),
        Err(e) => failure(e),
    }
}

// ----- a chat -----

#[derive(Template)]
#[template(path = "web/chat.html")]
struct ChatPage {
    csrf: String,
    workspace_id: String,
    chat_id: i64,
    name: String,
    external_id: String,
    transcript: String,
    notice: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ChatQuery {
    rotated: Option<String>,
}

pub async fn chat(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<ChatId>,
    Query(query): Query<ChatQuery>,
) -> Response {
    match state.store.get_chat(id).await {
        Ok(Some((workspace_id, chat))) => page(ChatPage {
            csrf: session.csrf,
            workspace_id: workspace_id.to_string(),
            chat_id: chat.id.0,
            name: chat.full_name.clone().or(chat.phone.clone()).unwrap_or_else(|| chat.external_id.clone()),
            external_id: chat.external_id.clone(),
            transcript: chat_url(&state.public_url, &chat.token),
            notice: query
                .rotated
                .map(|_| "A new link was made; the old one no longer opens this transcript.".into()),
        }),
        Ok(None) => failure(ApiError::not_found("chat")),
        Err(e) => failure(e.into()),
    }
}

pub async fn rotate_token(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<ChatId>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = session.refusal(&form.csrf) {
        return refused;
    }
    match state.store.rotate_chat_token(id).await {
        Ok(Some(_)) => see_other(&format!("/ui/chats/{id}?rotated=1")),
        Ok(None) => failure(ApiError::not_found("chat")),
        Err(e) => failure(e.into()),
    }
}
