//! What ingest and the channel adapters refuse, in their own words: which rule a request broke,
//! the field at fault, and a sentence. The HTTP answer (status, code and JSON shape) is chosen
//! in one place, the conversion to [`ApiError`] below.

use std::fmt::Display;

use crate::http::{ApiError, ErrorCode};

/// Which rule a refused request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A field's value is not acceptable.
    Invalid,
    /// More than the limits allow (messages per request, bytes of text).
    TooLarge,
    /// The body cannot be read the way the channel writes it.
    Malformed,
    /// The signature does not match the source's credentials, or is replayed or out of date.
    BadSignature,
    /// Meta's URL check with a verify token other than the source's.
    BadVerifyToken,
    /// Signed correctly, but for another account than the one the source is set up for.
    WrongAccount,
}

/// A refused inbound request; nothing of it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct IngestError {
    pub refusal: Refusal,
    /// The input at fault, as a path like `[2].chat.id`, when one is.
    pub field: Option<String>,
    /// A sentence for the human reading it; it starts with the field when there is one.
    pub detail: String,
}

impl IngestError {
    fn new(refusal: Refusal, field: Option<String>, detail: String) -> IngestError {
        IngestError { refusal, field, detail }
    }

    /// A field's value is not acceptable: the detail reads after the field's name.
    pub fn field(field: impl Into<String>, detail: impl Display) -> IngestError {
        let field = field.into();
        IngestError::new(Refusal::Invalid, Some(field.clone()), format!("{field}: {detail}"))
    }

    /// More than the limits allow, in `field`.
    pub fn too_large(field: impl Into<String>, detail: impl Display) -> IngestError {
        IngestError { refusal: Refusal::TooLarge, ..IngestError::field(field, detail) }
    }

    /// A body the adapter cannot read.
    pub fn malformed(detail: impl Into<String>) -> IngestError {
        IngestError::new(Refusal::Malformed, None, detail.into())
    }

    /// A signature that does not match (or is replayed, or out of date).
    pub fn forged(detail: impl Into<String>) -> IngestError {
        IngestError::new(Refusal::BadSignature, None, detail.into())
    }

    /// A request for another account than the source's (`field` names what said so).
    pub fn wrong_account(field: &str, detail: impl Display) -> IngestError {
        IngestError { refusal: Refusal::WrongAccount, ..IngestError::field(field, detail) }
    }

    pub fn bad_verify_token() -> IngestError {
        IngestError::new(Refusal::BadVerifyToken, None, "hub.verify_token does not match".into())
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        let code = match e.refusal {
            Refusal::Invalid => ErrorCode::InvalidField,
            Refusal::TooLarge => ErrorCode::TooLarge,
            Refusal::Malformed => ErrorCode::Malformed,
            Refusal::BadSignature => ErrorCode::BadSignature,
            Refusal::BadVerifyToken => ErrorCode::BadVerifyToken,
            Refusal::WrongAccount => ErrorCode::WrongAccount,
        };
        let mut answer = ApiError::new(code, e.detail);
        answer.field = e.field;
        answer
    }
}
