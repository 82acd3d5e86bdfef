//! `/api/v1/webhooks/{id}/activity`, `…/log` and `…/test`: a webhook's latest activity, its whole
//! log as a download, and a test send (the last two written once in [`crate::service::activity`]).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;

use crate::domain::{Event, Granularity, Media, Need, NoteMaxChars, WebhookId, WorkspaceId};
use crate::http::ApiError;
use crate::http::Ids;
use crate::http::auth::Access;
use crate::service::AppState;
use crate::service::activity::{
    ActivityView, Format, LogFile, Subscription, TestResult, download, send_test, test_send_payload,
};

/// Rows shown by `GET …/activity`.
const LATEST: u32 = 10;
#[utoipa::path(
    get,
    operation_id = "webhook_activity",
    path = "/api/v1/webhooks/{id}/activity",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The latest 10 rows", body = ActivityList),
        crate::http::Errors
    )
)]
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn latest(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
) -> Result<Json<Value>, ApiError> {
    super::webhook(&state, &access, &id, Need::Read).await?;
    let rows = state.store.activity(&id, None, LATEST).await?;
    let rows: Vec<ActivityView> = rows.iter().map(ActivityView::from).collect();
    Ok(Json(json!({ "activity": rows })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// `jsonl` (the default) or `csv`.
    #[param(value_type = Option<LogFormat>)]
    format: Option<String>,
}

#[utoipa::path(
    get,
    operation_id = "webhook_log",
    path = "/api/v1/webhooks/{id}/log",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(
        ("id" = String, Path, description = "Webhook id"),
        LogQuery
    ),
    responses(
        (status = 200, description = "The whole log, newest first, streamed", content((String = "application/x-ndjson"), (String = "text/csv"))),
        crate::http::Errors
    )
)]
/// `GET /api/v1/webhooks/{id}/log?format=jsonl|csv`: everything within the retention period,
/// newest first, streamed page by page so a large log never sits in memory.
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn log(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::field("format", e.body_text()))?;
    let format = match query.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => Format::Jsonl,
        "csv" => Format::Csv,
        other => {
            return Err(ApiError::field("format", format!("must be jsonl or csv (got {other:?})")));
        }
    };
    super::webhook(&state, &access, &id, Need::Read).await?;
    Ok(download(state.store.clone(), id, format).into_response())
}

#[utoipa::path(
    post,
    operation_id = "webhook_test",
    path = "/api/v1/webhooks/{id}/test",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "What the test send did", body = TestResult),
        crate::http::Errors
    )
)]
/// `POST /api/v1/webhooks/{id}/test`: [`send_test`], answered with what happened.
#[instrument(skip_all, fields(webhook_id = %id))]
pub async fn test(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
) -> Result<Json<TestResult>, ApiError> {
    let webhook = super::webhook(&state, &access, &id, Need::Change).await?;
    Ok(Json(send_test(&state, &webhook).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SampleQuery {
    /// What the webhook would subscribe to, comma-separated: `messages` (the default),
    /// `session_status`.
    events: Option<String>,
    /// `none`, `1h`, `6h`, `12h`, `24h` or `conversation`; the workspace's when left out.
    granularity: Option<String>,
    /// `skip` (the default), `placeholder` or `link`.
    media: Option<String>,
}

/// What a webhook with some settings would receive now.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Sample {
    /// Whether it is made up: the workspace has no chat yet.
    sample: bool,
    /// The request body a delivery would carry (an object; session events are an array), marked
    /// `"test": true` as test sends are.
    payload: Value,
}

#[utoipa::path(
    get,
    operation_id = "workspace_sample",
    path = "/api/v1/workspaces/{id}/sample",
    tag = "webhooks",
    security(("admin_token" = [])),
    params(
        ("id" = String, Path, description = "Workspace id"),
        SampleQuery
    ),
    responses(
        (status = 200, description = "What a webhook with these settings would receive now", body = Sample),
        crate::http::Errors
    )
)]
/// `GET /api/v1/workspaces/{id}/sample?events=&granularity=&media=`: what a webhook with these
/// settings would receive now, exactly as a test send would carry it, for an integration to show
/// before it subscribes (a Zapier trigger's sample). Sends, stores and changes nothing.
#[instrument(skip_all, fields(workspace_id = %id))]
pub async fn sample(
    Access(access): Access,
    State(state): State<AppState>,
    Ids(id): Ids<WorkspaceId>,
    query: Result<Query<SampleQuery>, QueryRejection>,
) -> Result<Json<Sample>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::field("events", e.body_text()))?;
    let events = match query.events.as_deref() {
        None => vec![Event::Messages],
        Some(list) => list
            .split(',')
            .map(|name| name.trim().parse::<Event>().map_err(|e| ApiError::field("events", e)))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let granularity = query
        .granularity
        .as_deref()
        .map(|g| g.parse::<Granularity>().map_err(|e| ApiError::field("granularity", e)))
        .transpose()?;
    let media = query
        .media
        .as_deref()
        .map(|m| m.parse::<Media>().map_err(|e| ApiError::field("media", e)))
        .transpose()?
        .unwrap_or_default();
    let workspace = super::workspace(&state, &access, &id, Need::Read).await?;
    let settings =
        Subscription { id: None, events: &events, granularity, media, note_max_chars: NoteMaxChars::DEFAULT };
    let (payload, sample) = test_send_payload(&state, &workspace, &settings).await?;
    let payload = serde_json::from_slice(&payload).expect("payloads are JSON");
    Ok(Json(Sample { sample, payload }))
}

/// The log file as a download, streamed (the web page answers with it too).
impl IntoResponse for LogFile {
    fn into_response(self) -> Response {
        let disposition = format!("attachment; filename=\"{}\"", self.filename);
        let headers = [(CONTENT_TYPE, self.content_type.to_string()), (CONTENT_DISPOSITION, disposition)];
        (headers, axum::body::Body::from_stream(self.chunks)).into_response()
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ActivityList {
    /// The latest 10 rows, newest first.
    pub activity: Vec<ActivityView>,
}

/// The formats of a webhook's log download.
#[allow(dead_code)]
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Jsonl,
    Csv,
}
