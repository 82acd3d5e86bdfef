//! Signing in and out: a session kept in the store, its cookie the session's id signed with the
//! admin token, and the CSRF token every form carries, derived from the session.

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::instrument;

use super::{PageError, page, see_other};
use crate::http::auth::{SESSION_COOKIE, mac, same_secret, session_cookie, signed_session};
use crate::http::server::Client;
use crate::http::throttle::Guessed;
use crate::service::AppState;
use crate::words::{PageWords, default_page_words as default_words};

/// How long a sign-in lasts.
const SESSION_HOURS: i64 = 12;

/// A signed-in admin, with the CSRF token their forms must carry.
pub struct Session {
    /// The session's id in the store.
    id: String,
    pub csrf: String,
}

impl Session {
    /// Who the activity log says did what this session does: the page is signed in to with the
    /// admin token, so the operator.
    pub fn actor(&self) -> String {
        crate::domain::Principal::Operator.actor()
    }

    /// Whether a submitted form carries this session's CSRF token.
    pub fn check(&self, submitted: &str) -> Result<(), PageError> {
        if same_secret(submitted, &self.csrf) { Ok(()) } else { Err(PageError::expired_form()) }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui");
            let target = format!("/login?next={}", urlencode(next));
            (StatusCode::SEE_OTHER, [(LOCATION, target)]).into_response()
        };
        let Some((id, value)) = signed_session(parts, &state.admin_token) else { return Err(to_login()) };
        // Signed by us, but perhaps signed out or expired since.
        match state.store.web_session_alive(&id, state.clock.now()).await {
            Ok(true) => {}
            Ok(false) => return Err(to_login()),
            Err(e) => return Err(PageError::from(e).into_response()),
        }
        let csrf = mac(&state.admin_token, &["csrf", &value]);
        Ok(Session { id, csrf })
    }
}

/// The `Set-Cookie` header that signs in (or, with `None`, out).
fn set_cookie(state: &AppState, value: Option<&str>) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") { "; Secure" } else { "" };
    let text = match value {
        Some(value) => format!(
            "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            SESSION_HOURS * 3600
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).expect("cookie text is ASCII")
}

/// Signs in: starts a session in the store, and redirects with its cookie.
async fn sign_in(state: &AppState, next: &str) -> Result<Response, PageError> {
    let id = crate::domain::random_token(32);
    let expires = state.clock.now() + chrono::Duration::hours(SESSION_HOURS);
    state.store.start_web_session(&id, expires).await?;
    let value = session_cookie(&state.admin_token, &id);
    let target = if next.starts_with("/ui") || next.starts_with("/c/") { next } else { "/ui" };
    Ok((
        StatusCode::SEE_OTHER,
        [
            (SET_COOKIE, set_cookie(state, Some(&value))),
            (LOCATION, HeaderValue::from_str(target).unwrap_or(HeaderValue::from_static("/ui"))),
        ],
    )
        .into_response())
}

/// Signs out: ends the session in the store, so a copy of its cookie opens nothing either.
async fn sign_out(state: &AppState, session: &Session) -> Result<Response, PageError> {
    state.store.end_web_session(&session.id).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [(SET_COOKIE, set_cookie(state, None)), (LOCATION, HeaderValue::from_static("/login"))],
    )
        .into_response())
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[derive(Template)]
#[template(path = "web/login.html")]
struct LoginPage {
    w: &'static PageWords,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[instrument(skip_all)]
pub async fn root() -> Response {
    see_other("/ui")
}

#[instrument(skip_all)]
pub async fn login_page(Query(query): Query<NextQuery>) -> Response {
    page(LoginPage { w: default_words(), next: query.next.unwrap_or_else(|| "/ui".into()), error: None })
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

#[instrument(skip_all)]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let next = form.next.unwrap_or_else(|| "/ui".into());
    // The right token always signs in; only wrong ones are counted, and shut out.
    if same_secret(form.token.trim(), &state.admin_token) {
        return sign_in(&state, &next).await;
    }
    if let Some(wait) = state.throttle.refuse(client.net(), Guessed::AdminToken) {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let error = format!("Too many wrong tokens from this address. Try again in {seconds} s.");
        let mut response = page(LoginPage { w: default_words(), next, error: Some(error) });
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        return Ok(response);
    }
    let mut response =
        page(LoginPage { w: default_words(), next, error: Some("That is not the admin token.".into()) });
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    Ok(response)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

#[instrument(skip_all)]
pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    sign_out(&state, &session).await
}
