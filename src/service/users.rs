//! The instance's users as the operator manages them: operators (who do what the admin token
//! does, named), and the link a new one chooses a password with.

use crate::domain::{EmailAddress, UserId, random_token};
use crate::http::auth::api_token_hash;
use crate::service::AppState;
use crate::store::{StoreResult, User};

/// How long the link that lets a new operator choose a password works.
pub const PASSWORD_LINK_DAYS: i64 = 7;

/// Makes `email` an operator (the user made if new): the user, and, when they have no password
/// yet, a single-use link (good for [`PASSWORD_LINK_DAYS`]; the reset form) where they choose
/// one. A link handed out earlier stops working.
pub async fn add_operator(
    state: &AppState,
    email: &EmailAddress,
    actor: &str,
) -> StoreResult<(User, Option<String>)> {
    let user = state.store.add_operator(email).await?;
    tracing::info!(user_id = %user.id, actor, "operator added");
    if user.password_hash.is_some() {
        return Ok((user, None));
    }
    let link = password_link(state, &user.id).await?;
    Ok((user, Some(link)))
}

/// A fresh link for `user` to choose a password, replacing any still open.
async fn password_link(state: &AppState, user: &UserId) -> StoreResult<String> {
    let token = format!("rst_{}", random_token(40));
    let now = state.clock.now();
    let expires = now + chrono::Duration::days(PASSWORD_LINK_DAYS);
    state.store.replace_password_link(user, &api_token_hash(&token), now, expires).await?;
    Ok(format!("{}/reset/{token}", state.public_url))
}
