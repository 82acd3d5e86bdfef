//! The one error type of every HTTP route: `{"error": {"code", "detail"}}`, plus `field` when a
//! single input is at fault. Internal causes are logged, never shown.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

use crate::store::StoreError;

/// An HTTP error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable, machine-readable code, e.g. `invalid_field`.
    pub code: &'static str,
    /// A sentence for the human reading it.
    pub detail: String,
    /// The input at fault, as a path like `[2].chat.id`.
    pub field: Option<String>,
    /// Seconds to wait before trying again (`Retry-After`); 503s say 5 when nothing else is set.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, detail: detail.into(), field: None, retry_after: None }
    }

    /// A 400 naming the field at fault; the detail starts with the field, so it reads alone.
    pub fn field(field: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        let field = field.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            detail: format!("{field}: {detail}"),
            field: Some(field),
            retry_after: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// Too many wrong credentials from this client: it must wait `wait` first.
    pub fn throttled(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many wrong credentials from this address; try again in {seconds} s"),
        );
        error.retry_after = Some(seconds);
        error
    }

    pub fn unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "storage is unavailable; nothing was stored, try again",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        error!(error = %e, "store failure");
        ApiError::unavailable()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let (status, code) = match rejection {
            JsonRejection::MissingJsonContentType(_) => (rejection.status(), "unsupported_media_type"),
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            // A well-formed body with a wrong field is a 400 like every other field error here.
            JsonRejection::JsonDataError(_) => (StatusCode::BAD_REQUEST, "invalid_field"),
            _ => (rejection.status(), "invalid_body"),
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

/// What a 503 asks the client to wait before trying again, in seconds.
pub const RETRY_AFTER_SECONDS: u32 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "detail": self.detail});
        if let Some(field) = self.field {
            error["field"] = field.into();
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        let retry_after = match self.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                Some(self.retry_after.unwrap_or(u64::from(RETRY_AFTER_SECONDS)))
            }
            _ => self.retry_after,
        };
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The answer to a route that does not exist.
pub async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The answer to a method a route does not have.
pub async fn no_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The error answer of every route.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `invalid_field`, `not_found`, `unauthorized`.
    pub code: String,
    /// A sentence for the human reading it.
    pub detail: String,
    /// The input at fault, as a path like `[2].chat.id`, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The error answers every API route may give, in the [`ErrorBody`] shape.
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub enum Errors {
    /// The request is malformed or a field is invalid; `field` names it.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// No bearer token, or not the right one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No such workspace, webhook, source or chat.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The body is over 1 MiB (or an array over 1,000 messages, or a text over 64 KiB).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Storage is unavailable; nothing was stored. Try again.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
