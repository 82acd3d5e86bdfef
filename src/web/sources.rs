//! Channels on the page: a workspace's admins connect one by choosing it (the form asks for
//! exactly that channel's credentials, each with its help), then edit, switch off, delete or
//! rotate it from its card. Credentials are write-only: the page says which are set, never what
//! they are; a field left empty keeps what is stored.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};
use tracing::instrument;

use super::{FormErrors, PageError, PageIds, Session, page, see_other};
use crate::domain::credentials::{self, Credential};
use crate::domain::{Account, Name, Need, SourceId, SourceKind, WorkspaceId};
use crate::service::{self, AppState};
use crate::store::{NewSource, Source, SourcePatch};
use crate::words::{PageWords, page_words};

/// A credential's field on a form.
pub struct CredentialField {
    pub key: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub required: bool,
    /// Whether the source has it (an edit form says so; the value is never shown).
    pub set: bool,
}

impl CredentialField {
    /// The fields of `kind`'s credentials, in `w`'s language, marked set as `stored` has them.
    pub fn all(w: &PageWords, kind: SourceKind, stored: Option<&Value>) -> Vec<CredentialField> {
        credentials::spec(kind)
            .iter()
            .map(|c: &Credential| {
                let (label, help) = w.channels.credential(kind, c.name);
                CredentialField {
                    key: c.name,
                    label,
                    help,
                    required: c.required,
                    set: stored.is_some_and(|s| c.read(s).is_some()),
                }
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "web/source_new.html")]
struct NewSourcePage {
    w: &'static PageWords,
    csrf: String,
    workspace_id: String,
    workspace_name: String,
    kind: &'static str,
    channel: &'static str,
    fields: Vec<CredentialField>,
    name: String,
    errors: FormErrors,
}

/// The kind a path names, or the 404 page.
fn kind_of(segment: &str) -> Result<SourceKind, PageError> {
    SourceKind::from_path(segment).ok_or_else(|| PageError::not_found("channel"))
}

async fn new_source_page(
    state: &AppState,
    session: Session,
    workspace_id: &WorkspaceId,
    kind: SourceKind,
    name: String,
    errors: FormErrors,
) -> Result<Response, PageError> {
    session.may(workspace_id, Need::Change, "workspace")?;
    let ws =
        state.store.get_workspace(workspace_id).await?.ok_or_else(|| PageError::not_found("workspace"))?;
    let w = page_words(ws.locale);
    let failed = !errors.is_empty();
    // A first form suggests the channel's name, in the workspace's language.
    let name = if name.is_empty() && !failed { w.channels.of(kind).name.to_string() } else { name };
    let mut response = page(NewSourcePage {
        w,
        csrf: session.csrf,
        workspace_id: workspace_id.to_string(),
        workspace_name: ws.name.into_string(),
        kind: kind.path(),
        channel: w.channels.of(kind).name,
        fields: CredentialField::all(w, kind, None),
        name,
        errors,
    });
    if failed {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

/// `GET /ui/workspaces/{id}/sources/new/{kind}`: the form for connecting that channel.
#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn new_form(
    State(state): State<AppState>,
    session: Session,
    PageIds((id, kind)): PageIds<(WorkspaceId, String)>,
) -> Result<Response, PageError> {
    let kind = kind_of(&kind)?;
    new_source_page(&state, session, &id, kind, String::new(), FormErrors::new()).await
}

/// A submitted source form's fields: `csrf`, `kind`, `name`, `enabled`, `confirm`, and each
/// credential as `credential.<key>`.
struct Submitted(Vec<(String, String)>);

impl Submitted {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The credentials typed in (empty ones left out: they keep what is stored).
    fn credentials(&self) -> Map<String, Value> {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("credential.")?, v.trim())))
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }
}

/// `POST /ui/workspaces/{id}/sources`: connects the channel the form was for; back to the
/// workspace's page at the new source's card, with its inbound URL and the vendor's steps.
#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<WorkspaceId>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = Submitted(form);
    session.check(form.get("csrf").unwrap_or_default())?;
    session.may(&id, Need::Change, "workspace")?;
    let kind = kind_of(form.get("kind").unwrap_or_default())?;
    let typed_name = form.get("name").unwrap_or_default().to_string();
    let mut errors = FormErrors::new();
    let name = super::keep(&mut errors, "name", Name::parse(&typed_name));
    let checked =
        credentials::check(kind, form.credentials()).map_err(|(field, why)| (field, why.to_string()));
    let credentials = match checked {
        Ok(value) => Some(value),
        Err((field, why)) => {
            errors.insert(credential_field(&field), why);
            None
        }
    };
    let (Some(name), Some(credentials)) = (name, credentials) else {
        return new_source_page(&state, session, &id, kind, typed_name, errors).await;
    };
    let new = NewSource {
        workspace_id: id.clone(),
        kind,
        name,
        account: Account::default(),
        credentials,
        enabled: true,
    };
    let source = state.store.create_source(new).await?;
    service::workspaces::source_noted(&state, &source, "source_created", &session.actor()).await;
    tracing::info!(kind = source.kind.as_str(), "source connected from the page");
    Ok(see_other(&format!("/ui/workspaces/{id}?connected={}#{}", source.id, source.id)))
}

/// The form's error key of a refusal naming `credentials.<key>`: one of the known credential
/// names (the page shows it beside that field).
fn credential_field(field: &str) -> &'static str {
    let key = field.strip_prefix("credentials.").unwrap_or(field);
    SourceKind::ALL
        .iter()
        .flat_map(|k| credentials::spec(*k))
        .find(|c| c.name == key)
        .map(|c| c.name)
        .unwrap_or("credentials")
}

/// The source a form posted by `session` is about, if the form carries the session's CSRF token
/// and the session may change the source's workspace; the 404 page otherwise.
async fn changeable(
    state: &AppState,
    session: &Session,
    id: &SourceId,
    form: &Submitted,
) -> Result<Source, PageError> {
    session.check(form.get("csrf").unwrap_or_default())?;
    let source = state.store.get_source(id).await?.ok_or_else(|| PageError::not_found("source"))?;
    session.may(&source.workspace_id, Need::Change, "source")?;
    Ok(source)
}

/// `POST /ui/sources/{id}`: its name, whether it is on, and any credential typed in (the others
/// stay as stored); checked as the API checks them.
#[instrument(skip_all)]
pub async fn save(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<SourceId>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = Submitted(form);
    let source = changeable(&state, &session, &id, &form).await?;
    let name = Name::parse(form.get("name").unwrap_or_default())
        .map_err(|e| PageError::bad_request(&format!("The name {e}.")))?;
    let mut merged = source.credentials.as_object().cloned().unwrap_or_default();
    let typed = form.credentials();
    let changed_credentials = !typed.is_empty();
    merged.extend(typed);
    let credentials = credentials::check(source.kind, merged)
        .map_err(|(field, why)| PageError::bad_request(&format!("{field}: {why}")))?;
    let patch = SourcePatch {
        name: Some(name),
        credentials: changed_credentials.then_some(credentials),
        enabled: Some(form.get("enabled").is_some()),
        ..SourcePatch::default()
    };
    let source =
        state.store.update_source(&id, patch).await?.ok_or_else(|| PageError::not_found("source"))?;
    service::workspaces::source_noted(&state, &source, "source_changed", &session.actor()).await;
    Ok(see_other(&format!("/ui/workspaces/{}?source_saved={id}#{id}", source.workspace_id)))
}

/// `POST /ui/sources/{id}/delete`: once its confirmation is ticked, the source goes (its inbound
/// URL answers 404 from then on; its chats and messages stay).
#[instrument(skip_all)]
pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    PageIds(id): PageIds<SourceId>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = Submitted(form);
    let source = changeable(&state, &session, &id, &form).await?;
    let w = page_words(
        state.store.get_workspace(&source.workspace_id).await?.map(|w| w.locale).unwrap_or_default(),
    );
    if form.get("confirm").is_none() {
        return Err(PageError::unprocessable(w.source_delete_unconfirmed));
    }
    state.store.delete_source(&id).await?;
    service::workspaces::source_noted(&state, &source, "source_deleted", &session.actor()).await;
    Ok(see_other(&format!("/ui/workspaces/{}?source_deleted=1#sources-heading", source.workspace_id)))
}
