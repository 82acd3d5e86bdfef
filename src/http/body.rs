//! Request bodies, bounded before they are held. Each route group declares its limit
//! ([`BodyLimit`]: the inbound routes `http.inbound_body_kib`, everything else
//! `http.form_body_kib`); a `Content-Length` over it is answered `413` before a byte of the body
//! is read, and a body that grows past it while it is read (chunked) is cut off the same way.
//! Bodies held at once, across all connections, are bounded too (`http.max_buffered_mib`): a
//! request that would go over is answered `503` before its body is read. And a body must arrive
//! within `http.body_timeout` when the request carries a credential that checks out without the
//! body (the admin token, the ingest key of the workspace it posts to, a signed session cookie,
//! the key of an enabled source's inbound URL), within the shorter `http.anonymous_body_timeout`
//! otherwise.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, RETRY_AFTER};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::auth::{bearer, same_secret, signed_session};
use super::{ApiError, ErrorCode, HttpState};
use crate::domain::{InboundKey, WorkspaceId};

/// Which limit a route's bodies are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// The JSON API's ingest and the channels' inbound URLs: `http.inbound_body_kib`.
    Inbound,
    /// The admin API, the sign-in and the page's forms: `http.form_body_kib`.
    Form,
}

/// Bodies held in memory at once, in bytes, across all connections.
pub struct BodyBudget(Semaphore);

impl BodyBudget {
    pub fn new(max_bytes: usize) -> BodyBudget {
        BodyBudget(Semaphore::new(max_bytes.min(Semaphore::MAX_PERMITS)))
    }
}

impl HttpState {
    fn body_limit(&self, limit: BodyLimit) -> usize {
        match limit {
            BodyLimit::Inbound => self.http.inbound_body_kib * 1024,
            BodyLimit::Form => self.http.form_body_kib * 1024,
        }
    }
}

/// The middleware of the inbound routes' bodies: `route_layer(from_fn(inbound_bodies))`. It
/// finds the daemon's [`HttpState`] in the request's extensions, where the router puts it.
pub async fn inbound_bodies(request: Request, next: Next) -> Response {
    read_body(BodyLimit::Inbound, request, next).await
}

/// The middleware of every other route's bodies (the admin API, the sign-in, the forms).
pub async fn form_bodies(request: Request, next: Next) -> Response {
    read_body(BodyLimit::Form, request, next).await
}

/// Reads a request's whole body, within its limit, the budget and its deadline, before the route
/// sees it: a body that trickles in is answered `408` instead of holding a connection and a task.
async fn read_body(limit: BodyLimit, request: Request, next: Next) -> Response {
    let Some(state) = request.extensions().get::<Arc<HttpState>>().cloned() else {
        tracing::error!("a route holds its bodies to a limit but the router gave it no state");
        return ApiError::new(ErrorCode::Internal, "the body cannot be read").into_response();
    };
    let max = state.body_limit(limit);
    let (parts, body) = request.into_parts();
    let declared =
        parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return too_large(max);
    }
    // A body of unknown length may take the whole limit.
    let reserve = declared.map_or(max, |length| length as usize).max(1);
    let Ok(permit) = state.bodies.0.try_acquire_many(u32::try_from(reserve).unwrap_or(u32::MAX)) else {
        tracing::warn!(bytes = reserve, "request bodies held are at http.max_buffered_mib: answering 503");
        metrics::counter!(crate::telemetry::metric::BODIES_REFUSED).increment(1);
        let mut busy = ApiError::new(
            ErrorCode::Busy,
            "too many request bodies are being received at once: try again shortly",
        )
        .into_response();
        busy.headers_mut().insert(RETRY_AFTER, super::error::RETRY_AFTER_SECONDS.into());
        return busy;
    };
    let timeout = if authenticated(&state, &parts).await {
        state.http.body_timeout.0
    } else {
        state.http.anonymous_body_timeout.0
    };
    let response = match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(e))
            if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) =>
        {
            too_large(max)
        }
        Ok(Err(e)) => ApiError::new(ErrorCode::InvalidBody, format!("body: {e}")).into_response(),
        Err(_) => timed_out(timeout),
    };
    // Held until the route is done with the body.
    drop(permit);
    response
}

fn too_large(max: usize) -> Response {
    let readable = if max.is_multiple_of(1024 * 1024) {
        format!("{} MiB", max / (1024 * 1024))
    } else {
        format!("{} KiB", max.div_ceil(1024))
    };
    ApiError::new(
        ErrorCode::TooLarge,
        format!("body: larger than this route's limit of {readable} ({max} bytes)"),
    )
    .into_response()
}

fn timed_out(timeout: Duration) -> Response {
    ApiError::new(ErrorCode::Timeout, format!("body: not received within {} s", timeout.as_secs()))
        .into_response()
}

/// Whether a request carries a credential that checks out before its body is read. Only the
/// deadline depends on it: every route still checks its own credentials.
async fn authenticated(state: &HttpState, parts: &Parts) -> bool {
    if let Ok(token) = bearer(parts) {
        if same_secret(token, &state.admin_token) {
            return true;
        }
        if token.starts_with(super::auth::API_TOKEN_PREFIX) {
            let hash = super::auth::api_token_hash(token);
            return matches!(state.store.api_token_by_hash(&hash).await, Ok(Some(_)));
        }
        if let Some(workspace) = ingest_workspace(parts.uri.path())
            && let Ok(Some(ws)) = state.workspaces.get(&state.store, &workspace).await
        {
            return same_secret(token, &ws.ingest_key);
        }
    }
    if signed_session(parts, &state.admin_token).is_some() {
        return true;
    }
    match inbound_key(parts.uri.path()) {
        Some(key) => matches!(state.store.source_by_inbound_key(&key).await, Ok(Some(s)) if s.enabled),
        None => false,
    }
}

/// The workspace of `/api/v1/workspaces/{id}/messages`.
fn ingest_workspace(path: &str) -> Option<WorkspaceId> {
    let id = path.strip_prefix("/api/v1/workspaces/")?.strip_suffix("/messages")?;
    id.parse().ok()
}

/// The key of `/hooks/{kind}/{key}`.
fn inbound_key(path: &str) -> Option<InboundKey> {
    let (_kind, key) = path.strip_prefix("/hooks/")?.split_once('/')?;
    InboundKey::parse(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_a_path_names_is_found_without_the_body() {
        assert_eq!(
            ingest_workspace("/api/v1/workspaces/ws_abc/messages"),
            Some(WorkspaceId::stored("ws_abc"))
        );
        assert_eq!(ingest_workspace("/api/v1/workspaces/ws_abc/webhooks"), None);
        assert_eq!(ingest_workspace("/api/v1/workspaces/x%00/messages"), None);
        assert!(inbound_key("/hooks/zoho-desk/in_abc123").is_some());
        assert!(inbound_key("/hooks/zoho-desk/in_abc123/more").is_none());
        assert!(inbound_key("/login").is_none());
    }
}
