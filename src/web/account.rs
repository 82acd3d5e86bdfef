//! `/ui/account`: the signed-in person's own page, where they change their password (which signs
//! out their other sessions). Whoever signed in with the admin token is told it has none.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tracing::instrument;

use super::session::{chosen_password, guarded_password};
use super::{PageError, Session, page, see_other};
use crate::http::server::Client;
use crate::service::AppState;
use crate::store::User;
use crate::words::{PageWords, default_page_words as default_words};

#[derive(Template)]
#[template(path = "web/account.html")]
struct AccountPage {
    w: &'static PageWords,
    csrf: String,
    /// The person's address; `None` for the admin token.
    email: Option<String>,
    operator: bool,
    has_password: bool,
    /// Whether the password was just changed.
    changed: bool,
    /// What was wrong with the current password, or with the new one.
    current_error: Option<String>,
    error: Option<String>,
}

impl AccountPage {
    fn new(session: &Session, user: Option<&User>) -> AccountPage {
        AccountPage {
            w: default_words(),
            csrf: session.csrf.clone(),
            email: user.map(|u| u.email.clone()),
            operator: session.principal.is_operator(),
            has_password: user.is_some_and(|u| u.password_hash.is_some()),
            changed: false,
            current_error: None,
            error: None,
        }
    }
}

/// The signed-in person, if it is one (not the admin token).
async fn person(state: &AppState, session: &Session) -> Result<Option<User>, PageError> {
    match session.principal.person() {
        Some(id) => Ok(state.store.user(id).await?),
        None => Ok(None),
    }
}

#[derive(Deserialize)]
pub struct ChangedQuery {
    #[serde(default)]
    changed: bool,
}

/// `GET /ui/account`.
#[instrument(skip_all)]
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    axum::extract::Query(query): axum::extract::Query<ChangedQuery>,
) -> Result<Response, PageError> {
    let user = person(&state, &session).await?;
    Ok(page(AccountPage { changed: query.changed, ..AccountPage::new(&session, user.as_ref()) }))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
}

/// `POST /ui/account`: the current password (a wrong one counts towards the guessing throttle,
/// as at sign-in), then the new one under the same rules as a first one; the change ends every
/// other session of theirs at once.
#[instrument(skip_all)]
pub async fn change_password(
    State(state): State<AppState>,
    session: Session,
    client: Client,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let Some(user) = person(&state, &session).await?.filter(|u| u.password_hash.is_some()) else {
        return Err(PageError::forbidden("This session has no password to change."));
    };
    let refused = |status, current_error, error| {
        let mut response =
            page(AccountPage { current_error, error, ..AccountPage::new(&session, Some(&user)) });
        *response.status_mut() = status;
        response
    };
    let wrong = "That is not your current password.";
    if let Err((status, why)) =
        guarded_password(&state, client, &user.email, Some(&user), &form.current, wrong).await
    {
        return Ok(refused(status, Some(why), None));
    }
    match chosen_password(form.password, &user.email).await? {
        Ok(kept) => {
            state.store.change_password(&user.id, &kept, &session.id).await?;
            tracing::info!(user_id = %user.id, "password changed; the user's other sessions ended");
            Ok(see_other("/ui/account?changed=true"))
        }
        Err(why) => Ok(refused(StatusCode::UNPROCESSABLE_ENTITY, None, Some(why))),
    }
}
