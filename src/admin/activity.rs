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

use crate::domain::Need;
use crate::domain::WebhookId;
use crate::http::ApiError;
use crate::http::Ids;
use crate::http::auth::Access;
use crate::service::AppState;
use crate::service::activity::{ActivityView, Format, LogFile, TestResult, download, send_test};

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
