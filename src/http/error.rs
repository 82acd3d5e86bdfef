//! The one error type of every HTTP route: `{"error": {"code", "detail"}}`, plus `field` when a
//! single input is at fault. Internal causes are logged, never shown.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::error;

use crate::store::StoreError;

/// What went wrong, stable and machine-readable: the `code` of every error answer. Each has the
/// status it is usually answered with; the wire name is its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A field is invalid; `field` names it.
    InvalidField,
    /// The body is not valid JSON.
    InvalidJson,
    /// The body could not be read.
    InvalidBody,
    /// A channel's request is not in the shape its vendor documents.
    Malformed,
    /// The body is not of the media type the route takes.
    UnsupportedMediaType,
    /// No credential, or not the right one.
    Unauthorized,
    /// A channel's signature does not match.
    BadSignature,
    /// A channel's verify token does not match.
    BadVerifyToken,
    /// The request is for another business account than the source's.
    WrongAccount,
    /// A credential that may not do this (a viewer changing something, a workspace's token on
    /// an instance route).
    Forbidden,
    /// No such record or route.
    NotFound,
    /// The route does not take this method.
    MethodNotAllowed,
    /// The body did not arrive in time.
    Timeout,
    /// The record is not in a state that allows this.
    Conflict,
    /// The chat cannot be answered now: its channel's reply window has lapsed (WhatsApp's 24
    /// hours, WeChat's 48 hours and allowance) or its session ended; the detail says which.
    ReplyWindowClosed,
    /// The chat's channel takes no replies from here (Zoho Desk; a JSON API chat of a workspace
    /// without a `reply_url`).
    ReplyNotSupported,
    /// The chat's source lacks a credential that sending needs; the detail names it.
    ReplyNotConfigured,
    /// The body, or a part of it, is over its limit.
    TooLarge,
    /// Too many wrong credentials from this client.
    TooManyAttempts,
    /// Something failed inside the daemon; the log says what.
    Internal,
    /// Storage is unavailable; nothing was stored.
    Unavailable,
    /// Too many connections or bodies at once.
    Busy,
}

impl ErrorCode {
    /// The status this code is answered with (a body refused by the HTTP layer keeps that
    /// layer's status instead).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidField
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidBody
            | ErrorCode::Malformed => StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unauthorized | ErrorCode::BadSignature => StatusCode::UNAUTHORIZED,
            ErrorCode::BadVerifyToken | ErrorCode::WrongAccount => StatusCode::FORBIDDEN,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Conflict
            | ErrorCode::ReplyWindowClosed
            | ErrorCode::ReplyNotSupported
            | ErrorCode::ReplyNotConfigured => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable | ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An HTTP error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    /// A sentence for the human reading it.
    pub detail: String,
    /// The input at fault, as a path like `[2].chat.id`.
    pub field: Option<String>,
    /// Seconds to wait before trying again (`Retry-After`); 503s say 5 when nothing else is set.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError { status: code.status(), code, detail: detail.into(), field: None, retry_after: None }
    }

    /// A 400 naming the field at fault; the detail starts with the field, so it reads alone.
    pub fn field(field: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        let field = field.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::InvalidField,
            detail: format!("{field}: {detail}"),
            field: Some(field),
            retry_after: None,
        }
    }

    /// The same error answered with another status (a body the HTTP layer refused keeps its own).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unauthorized, detail)
    }

    /// Too many wrong credentials from this client: it must wait `wait` first.
    pub fn throttled(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut error = ApiError::new(
            ErrorCode::TooManyAttempts,
            format!("too many wrong credentials from this address; try again in {seconds} s"),
        );
        error.retry_after = Some(seconds);
        error
    }

    pub fn unavailable() -> Self {
        ApiError::new(ErrorCode::Unavailable, "storage is unavailable; nothing was stored, try again")
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
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::new(ErrorCode::UnsupportedMediaType, rejection.body_text())
            }
            JsonRejection::JsonSyntaxError(_) => ApiError::new(ErrorCode::InvalidJson, rejection.body_text()),
            // A well-formed body with a wrong field is a 400 like every other field error here.
            JsonRejection::JsonDataError(_) => ApiError::new(ErrorCode::InvalidField, rejection.body_text()),
            _ => ApiError::new(ErrorCode::InvalidBody, rejection.body_text()).with_status(rejection.status()),
        }
    }
}

/// What a 503 asks the client to wait before trying again, in seconds.
pub const RETRY_AFTER_SECONDS: u32 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            ErrorBody { error: ErrorDetail { code: self.code, detail: self.detail, field: self.field } };
        let mut response = (self.status, Json(body)).into_response();
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
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// The answer to a method a route does not have.
pub async fn no_method() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that method")
}

/// The error answer of every route.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
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
    /// A workspace's API token that may not do this: a viewer's change, or an instance route.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such workspace (or one the caller's token does not open), webhook, source or chat.
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn an_answer_carries_its_codes_wire_name_and_status() {
        let (status, body) = answer(ApiError::new(ErrorCode::TooManyAttempts, "wait")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body, serde_json::json!({"error": {"code": "too_many_attempts", "detail": "wait"}}));

        let (status, body) = answer(ApiError::field("[0].chat.id", "must not be empty")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_field");
        assert_eq!(body["error"]["field"], "[0].chat.id");
        assert_eq!(body["error"]["detail"], "[0].chat.id: must not be empty");
    }

    #[tokio::test]
    async fn a_refused_body_keeps_the_http_layers_status() {
        let error =
            ApiError::new(ErrorCode::InvalidBody, "body: cut off").with_status(StatusCode::LENGTH_REQUIRED);
        let (status, body) = answer(error).await;
        assert_eq!(status, StatusCode::LENGTH_REQUIRED);
        assert_eq!(body["error"]["code"], "invalid_body");
    }

    #[test]
    fn the_documents_codes_are_the_ones_the_daemon_answers_with() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(ErrorCode::schema()).unwrap();
        let documented: Vec<&str> =
            schema["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for code in [ErrorCode::InvalidField, ErrorCode::Busy, ErrorCode::BadVerifyToken, ErrorCode::Conflict]
        {
            let wire = serde_json::to_value(code).unwrap();
            assert!(documented.contains(&wire.as_str().unwrap()), "{wire} is not in the document");
        }
        assert_eq!(documented.len(), 22, "every code is documented once: {documented:?}");
    }
}
