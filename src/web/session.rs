//! Signing in and out: a session kept in the store, its cookie the session's id signed with the
//! admin token, and the CSRF token every form carries, derived from the session.

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tracing::instrument;

use super::{PageError, page, see_other};
use crate::http::auth::same_secret;
use crate::http::server::Client;
use crate::service::AppState;
use crate::words::{PageWords, default_page_words as default_words};

/// How long a sign-in lasts.
const SESSION_HOURS: i64 = 12;
const COOKIE_NAME: &str = "chatbundle_session";

fn mac(key: &str, parts: &[&str]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(b"\0");
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A signed-in admin, with the CSRF token their forms must carry.
pub struct Session {
    /// The session's id in the store.
    id: String,
    pub csrf: String,
}

impl Session {
    /// Whether a submitted form carries this session's CSRF token.
    pub fn check(&self, submitted: &str) -> Result<(), PageError> {
        if same_secret(submitted, &self.csrf) { Ok(()) } else { Err(PageError::expired_form()) }
    }
}

/// The cookie value for session `id`: the id, signed with the admin token.
fn session_value(admin_token: &str, id: &str) -> String {
    format!("{id}.{}", mac(admin_token, &["session", id]))
}

fn cookie_from(parts: &Parts) -> Option<String> {
    parts.headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
        |c| {
            let (name, value) = c.trim().split_once('=')?;
            (name == COOKIE_NAME).then(|| value.to_string())
        },
    )
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui");
            let target = format!("/login?next={}", urlencode(next));
            (StatusCode::SEE_OTHER, [(LOCATION, target)]).into_response()
        };
        let Some(value) = cookie_from(parts) else { return Err(to_login()) };
        let Some((id, _)) = value.split_once('.') else { return Err(to_login()) };
        if !same_secret(&value, &session_value(&state.admin_token, id)) {
            return Err(to_login());
        }
        // Signed by us, but perhaps signed out or expired since.
        match state.store.web_session_alive(id, state.clock.now()).await {
            Ok(true) => {}
            Ok(false) => return Err(to_login()),
            Err(e) => return Err(PageError::from(e).into_response()),
        }
        Ok(Session { id: id.to_string(), csrf: mac(&state.admin_token, &["csrf", &value]) })
    }
}

/// The `Set-Cookie` header that signs in (or, with `None`, out).
fn set_cookie(state: &AppState, value: Option<&str>) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") { "; Secure" } else { "" };
    let text = match value {
        Some(value) => format!(
            "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            SESSION_HOURS * 3600
        ),
        None => format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).expect("cookie text is ASCII")
}

/// Signs in: starts a session in the store, and redirects with its cookie.
async fn sign_in(state: &AppState, next: &str) -> Result<Response, PageError> {
    let id = crate::domain::random_token(32);
    let expires = state.clock.now() + chrono::Duration::hours(SESSION_HOURS);
    state.store.start_web_session(&id, expires).await?;
    let value = session_value(&state.admin_token, &id);
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
    // A client shut out for guessing is not even checked.
    if let Some(wait) = state.throttle.wait(client.0) {
        metrics::counter!(crate::telemetry::metric::AUTH_THROTTLED).increment(1);
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let error = format!("Too many wrong tokens from this address. Try again in {seconds} s.");
        let mut response = page(LoginPage { w: default_words(), next, error: Some(error) });
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        return Ok(response);
    }
    if same_secret(form.token.trim(), &state.admin_token) {
        return sign_in(&state, &next).await;
    }
    state.throttle.failed(client.0, "sign-in");
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
