//! The admin API under `/api/v1`, behind the admin token: workspaces, webhooks, sources, chats.

pub mod activity;
pub mod chats;
pub mod deliveries;
pub mod sources;
pub mod webhooks;
pub mod workspaces;

use axum::extract::FromRequest;
use axum::extract::Request;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ApiError, AppState};
use crate::domain::Account;

/// The admin routes, each registered with its OpenAPI annotation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(workspaces::create, workspaces::list))
        .routes(routes!(workspaces::show, workspaces::update))
        .routes(routes!(workspaces::stats))
        .routes(routes!(workspaces::flush))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(sources::create, sources::list))
        .routes(routes!(sources::show, sources::update, sources::delete))
        .routes(routes!(activity::latest))
        .routes(routes!(activity::log))
        .routes(routes!(activity::test))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::resend))
        .routes(routes!(webhooks::show, webhooks::update, webhooks::delete))
        .routes(routes!(chats::list))
        .routes(routes!(chats::show))
        .routes(routes!(chats::rotate_token))
}

/// A JSON request body whose errors answer in the API's error shape, naming the field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Body(value))
    }
}

/// Tells an absent key (`None`) from an explicit `null` (`Some(None)`), for PATCH bodies.
pub fn nullable<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Trims a required text field and checks its length; control characters (line breaks
/// included) are refused, since names end up in log lines, e-mail subjects and pages.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ApiError::field(field, format!("must be at most {max} characters")));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ApiError::field(field, format!("contains the control character U+{:04X}", c as u32)));
    }
    Ok(value.to_string())
}

/// A business account's details: each at most 512 bytes, without control characters.
pub fn account(field: &str, account: Account) -> Result<Account, ApiError> {
    for (key, value) in
        [("full_name", &account.full_name), ("email", &account.email), ("phone", &account.phone)]
    {
        if let Some(value) = value {
            let field = format!("{field}.{key}");
            if value.len() > 512 {
                return Err(ApiError::field(field, "must be at most 512 bytes"));
            }
            if let Some(c) = value.chars().find(|c| c.is_control()) {
                return Err(ApiError::field(
                    field,
                    format!("contains the control character U+{:04X}", c as u32),
                ));
            }
        }
    }
    Ok(account)
}

/// An e-mail address the mailer can send to: parsed by the mail library (`lettre`), with a plain
/// local part (no quoted string) and a domain name with a dot (no IP literal, no bare host), so
/// that what is accepted here is what an SMTP server will take.
pub fn email(field: &str, value: &str) -> Result<String, ApiError> {
    let value = required_text(field, value, 320)?;
    let refuse = |why: &str| ApiError::field(field, format!("{value:?} is not an e-mail address: {why}"));
    let address = value.parse::<lettre::Address>().map_err(|e| refuse(&e.to_string()))?;
    if address.user().starts_with('"') {
        return Err(refuse("a quoted local part is not accepted"));
    }
    if address.domain().starts_with('[') {
        return Err(refuse("the domain must be a name, not an address"));
    }
    if !address.domain().contains('.') {
        return Err(refuse("the domain must be a full name, such as example.com"));
    }
    Ok(address.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_addresses_are_parsed_not_pattern_matched() {
        for bad in [
            "\">‹svg onload=x>\"@x.com",
            "a@[127.0.0.1]",
            "a@localhost.",
            "a@localhost",
            "a b@x.com",
            "a@x..com",
            "<svg>@x.com",
            "a@x.com\r\nBcc: b@y.com",
        ] {
            let err = email("owner_email", bad).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("owner_email"), "{bad}");
        }
        for good in ["owner@acme.example", "first.last+tag@mail.example.co.jp", "ünï@例え.jp"] {
            assert_eq!(email("owner_email", good).unwrap(), good);
        }
    }

    #[test]
    fn names_with_line_breaks_are_refused() {
        assert!(required_text("name", "Acme\r\nINFO forged", 200).is_err());
        assert!(required_text("name", "Acme\u{0}", 200).is_err());
        assert_eq!(required_text("name", "  Acme GmbH ", 200).unwrap(), "Acme GmbH");
    }
}
