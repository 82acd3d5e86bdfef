//! The credentials each channel's sources take, as the adapters publish them: the sources API
//! checks what an admin gives against this registry, and each adapter reads its credentials
//! through the same constants, so a key is spelt in one place.

use serde_json::{Map, Value};

use super::error::IngestError;
use super::{chatwoot, twilio, wechat, whatsapp, zoho_desk};
use crate::domain::SourceKind;

/// A check of a credential's value, and what the refusal says when it fails.
pub type ValueCheck = (fn(&str) -> bool, &'static str);

/// One credential of a source.
#[derive(Debug, Clone, Copy)]
pub struct Credential {
    pub name: &'static str,
    pub required: bool,
    /// A check of its value beyond being a string, with what to say when it fails.
    pub check: Option<ValueCheck>,
}

impl Credential {
    pub const fn required(name: &'static str) -> Credential {
        Credential { name, required: true, check: None }
    }

    pub const fn optional(name: &'static str) -> Credential {
        Credential { name, required: false, check: None }
    }

    /// This credential's value among a source's, when set and not empty.
    pub fn read(self, credentials: &Value) -> Option<&str> {
        credentials[self.name].as_str().filter(|v| !v.is_empty())
    }
}

/// The credentials a kind of source takes.
pub fn spec(kind: SourceKind) -> &'static [Credential] {
    match kind {
        SourceKind::Twilio => twilio::CREDENTIALS,
        SourceKind::Whatsapp => whatsapp::CREDENTIALS,
        SourceKind::Wechat => wechat::CREDENTIALS,
        SourceKind::Chatwoot => chatwoot::CREDENTIALS,
        SourceKind::ZohoDesk => zoho_desk::CREDENTIALS,
    }
}

/// Checks a kind's credentials: the required ones present, all strings, each value as its
/// adapter wants it, nothing unknown.
pub fn check(kind: SourceKind, given: Map<String, Value>) -> Result<Value, IngestError> {
    let allowed = spec(kind);
    for (key, value) in &given {
        let Some(credential) = allowed.iter().find(|c| c.name == key) else {
            let names: Vec<&str> = allowed.iter().map(|c| c.name).collect();
            return Err(IngestError::field(
                format!("credentials.{key}"),
                format!("not a credential of a {} source (those are: {})", kind.as_str(), names.join(", ")),
            ));
        };
        match value {
            Value::Null => {}
            Value::String(text) => {
                if let Some((valid, what)) = credential.check
                    && !text.trim().is_empty()
                    && !valid(text)
                {
                    return Err(IngestError::field(format!("credentials.{key}"), what));
                }
            }
            _ => return Err(IngestError::field(format!("credentials.{key}"), "must be a string")),
        }
    }
    for credential in allowed.iter().filter(|c| c.required) {
        let value = given.get(credential.name).and_then(Value::as_str).map(str::trim);
        if value.is_none_or(str::is_empty) {
            return Err(IngestError::field(format!("credentials.{}", credential.name), "missing"));
        }
    }
    Ok(Value::Object(given))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn given(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn each_kind_takes_what_its_adapter_reads() {
        assert!(check(SourceKind::Twilio, given(json!({"auth_token": "t"}))).is_ok());
        let missing = check(SourceKind::Twilio, given(json!({}))).unwrap_err();
        assert_eq!(missing.field.as_deref(), Some("credentials.auth_token"));
        let unknown = check(SourceKind::ZohoDesk, given(json!({"token": "t"}))).unwrap_err();
        assert_eq!(unknown.field.as_deref(), Some("credentials.token"));
        let key = json!({"token": "t", "app_id": "wx1", "encoding_aes_key": "short"});
        let bad_key = check(SourceKind::Wechat, given(key)).unwrap_err();
        assert_eq!(bad_key.field.as_deref(), Some("credentials.encoding_aes_key"));
        let number = check(SourceKind::Chatwoot, given(json!({"secret": 5}))).unwrap_err();
        assert!(number.detail.ends_with("must be a string"), "{}", number.detail);
    }
}
