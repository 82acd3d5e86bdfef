//! The web page for workspace admins, and the public chat transcripts.
//!
//! Pages are rendered on the server with askama and work without JavaScript (a little script only
//! adds "copy" buttons). Signing in with the admin token starts a session kept in the store; its
//! cookie is the session's id signed with the admin token (so changing the token signs everyone
//! out, and signing out ends that session for good), `HttpOnly`, `SameSite=Lax`, and `Secure`
//! when `public_url` is https; every form carries a CSRF token derived from the session.
//!
//! Every page defends itself: a Content-Security-Policy that allows only this site's own script
//! and style sheet and no framing, `nosniff`, a referrer policy, and `no-store` on everything
//! behind the sign-in (the ingest key and secrets are shown there).
//!
//! A page that belongs to one workspace speaks that workspace's language, its words from
//! [`crate::words`]; the others (sign-in, the list of workspaces, failures) speak the default one.

mod account;
mod chats;
mod media;
mod session;
mod sources;
mod sso;
mod transcript;
mod webhook_card;
mod webhooks;
mod workspaces;

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::http::ApiError;
use crate::http::error::RETRY_AFTER_SECONDS;
use crate::service::AppState;
use crate::store::StoreError;

use crate::words::{PageWords, default_page_words as default_words};
pub use session::Session;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/static/chatbundle.css", get(stylesheet))
        .route("/static/chatbundle.js", get(script))
        .route("/", get(session::root))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/login/sso", get(sso::start))
        .route("/login/sso/callback", get(sso::callback))
        .route("/invite/{token}", get(session::invite_page).post(session::accept_invite))
        .route("/forgot", get(session::forgot_page).post(session::forgot))
        .route("/reset/{token}", get(session::reset_page).post(session::reset))
        .route("/ui", get(workspaces::home))
        .route("/ui/account", get(account::show).post(account::change_password))
        .route("/ui/workspaces", post(workspaces::create))
        .route("/ui/workspaces/{id}", get(workspaces::show).post(workspaces::save))
        .route("/ui/workspaces/{id}/flush", post(workspaces::flush))
        .route("/ui/workspaces/{id}/webhooks", post(webhooks::create))
        .route("/ui/workspaces/{id}/members", post(workspaces::invite))
        .route("/ui/workspaces/{id}/members/{user_id}", post(workspaces::member))
        .route("/ui/webhooks/{id}", post(webhooks::save))
        .route("/ui/webhooks/{id}/secret", post(webhooks::new_secret))
        .route("/ui/webhooks/{id}/delete", post(webhooks::delete))
        .route("/ui/webhooks/{id}/log", get(webhooks::download_log))
        .route("/ui/webhooks/{id}/preview", get(webhooks::preview))
        .route("/ui/webhooks/{id}/deliveries/{delivery_id}/resend", post(webhooks::resend))
        .route("/ui/sources/{id}/rotate", post(workspaces::rotate_source))
        .route("/ui/workspaces/{id}/sources", post(sources::create))
        .route("/ui/workspaces/{id}/sources/new/{kind}", get(sources::new_form))
        .route("/ui/sources/{id}", post(sources::save))
        .route("/ui/sources/{id}/delete", post(sources::delete))
        .route("/ui/chats/{id}", get(chats::show))
        .route("/ui/chats/{id}/owner", post(chats::save_owner))
        .route("/ui/chats/{id}/rotate", post(chats::rotate_token))
        .route("/ui/chats/{id}/erase", post(chats::erase))
        .route("/ui/chats/{id}/reply", post(chats::reply))
        .route("/c/{token}", get(transcript::page))
        .route("/media/{token}", get(media::file))
        .route_layer(axum::middleware::from_fn(crate::http::body::form_bodies))
        .layer(axum::middleware::map_response(page_headers))
}

/// What the pages may load: their own style sheet and script, nothing inline, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

async fn page_headers(mut response: Response) -> Response {
    use axum::http::header::{CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY_HEADER, REFERRER_POLICY};
    let headers = response.headers_mut();
    headers
        .entry(CONTENT_SECURITY_POLICY_HEADER)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.entry(REFERRER_POLICY).or_insert(HeaderValue::from_static("same-origin"));
    headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("../../templates/web/static/chatbundle.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("../../templates/web/static/chatbundle.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// A redirect after a successful POST, so a reload does not submit again.
pub fn see_other(target: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, HeaderValue::from_str(target).unwrap_or(HeaderValue::from_static("/ui")))],
    )
        .into_response()
}

/// A page rendered from its template (a template that fails to render is logged and answered
/// with a 500).
fn page<T: Template>(template: T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "This page could not be rendered.").into_response()
        }
    }
}

/// The errors of a submitted form, by field, shown next to each input.
type FormErrors = HashMap<&'static str, String>;

/// `result`'s value, or `None` with its refusal noted against `field`: a form is checked whole,
/// every field's error collected rather than stopping at the first.
fn keep<T, E: std::fmt::Display>(
    errors: &mut FormErrors,
    field: &'static str,
    result: Result<T, E>,
) -> Option<T> {
    result.map_err(|e| errors.insert(field, e.to_string())).ok()
}

/// A request the pages cannot answer with the page asked for: answered with a short page that
/// says why (escaped by askama like every page), with the status of the matching API error.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    detail: String,
}

impl PageError {
    fn not_found(what: &str) -> PageError {
        ApiError::not_found(what).into()
    }

    /// A submitted form whose CSRF token is not the session's.
    fn expired_form() -> PageError {
        PageError {
            status: StatusCode::FORBIDDEN,
            detail: "This form has expired or did not come from this page. Go back, reload, try again."
                .into(),
        }
    }
}

impl PageError {
    /// A 403 page saying why.
    pub fn forbidden(detail: &str) -> PageError {
        PageError { status: StatusCode::FORBIDDEN, detail: detail.into() }
    }

    /// A 422 page saying why.
    pub fn unprocessable(detail: &str) -> PageError {
        PageError { status: StatusCode::UNPROCESSABLE_ENTITY, detail: detail.into() }
    }

    /// A 410 page saying why.
    pub fn gone(detail: &str) -> PageError {
        PageError { status: StatusCode::GONE, detail: detail.into() }
    }

    /// A 400 page saying why.
    pub fn bad_request(detail: &str) -> PageError {
        PageError { status: StatusCode::BAD_REQUEST, detail: detail.into() }
    }

    /// A 502 page: something the page needs from elsewhere did not answer.
    pub fn unavailable(detail: &str) -> PageError {
        PageError { status: StatusCode::BAD_GATEWAY, detail: detail.into() }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        PageError { status: error.status, detail: error.detail }
    }
}

impl From<crate::service::Failure> for PageError {
    fn from(failure: crate::service::Failure) -> Self {
        ApiError::from(failure).into()
    }
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        ApiError::from(error).into()
    }
}

/// The ids a page's path names, parsed as the API parses them ([`crate::http::Ids`]): one that
/// cannot be an id answers the 404 page.
pub struct PageIds<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for PageIds<T>
{
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, PageError> {
        let crate::http::Ids(ids) = crate::http::Ids::from_request_parts(parts, state).await?;
        Ok(PageIds(ids))
    }
}

#[derive(Template)]
#[template(path = "web/failure.html")]
struct FailurePage<'a> {
    w: &'static PageWords,
    status: &'a str,
    detail: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status.to_string();
        let mut response = page(FailurePage { w: default_words(), status: &status, detail: &self.detail });
        *response.status_mut() = self.status;
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        }
        response
    }
}
