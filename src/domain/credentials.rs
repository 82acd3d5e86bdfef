//! The credentials each kind of source takes: the sources API checks what an admin gives against
//! this list, and each channel's adapter reads its credentials through the same constants, so a key
//! is spelt in one place.

use serde_json::{Map, Value};

use super::{AccountType, Invalid, SourceKind};

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

/// Twilio's WhatsApp webhooks.
pub mod twilio {
    use super::Credential;

    /// The account's Auth Token, which signs every request (`X-Twilio-Signature`).
    pub const AUTH_TOKEN: Credential = Credential::required("auth_token");
    /// The account's SID: when set, a request for another account is refused, and media can be
    /// fetched (HTTP Basic with the SID and the Auth Token) for `download_url` links.
    pub const ACCOUNT_SID: Credential = Credential::optional("account_sid");
    pub const ALL: &[Credential] = &[AUTH_TOKEN, ACCOUNT_SID];
    /// What sending a reply needs (Twilio's Messages API is under the account).
    pub const REPLIES: &[Credential] = &[AUTH_TOKEN, ACCOUNT_SID];
}

/// Meta's WhatsApp Cloud API webhooks.
pub mod whatsapp {
    use super::Credential;

    /// The app secret, which signs every push (`X-Hub-Signature-256`).
    pub const APP_SECRET: Credential = Credential::required("app_secret");
    /// The token Meta's subscription check must echo.
    pub const VERIFY_TOKEN: Credential = Credential::required("verify_token");
    /// A system user's access token of the WhatsApp Business account (optional): with it,
    /// media can be fetched for `download_url` links, and, with the phone number id, replies sent.
    pub const ACCESS_TOKEN: Credential = Credential::optional("access_token");
    /// The Phone number ID replies are sent from (optional; WhatsApp → API Setup).
    pub const PHONE_NUMBER_ID: Credential = Credential {
        check: Some((
            |id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
            "must be the digits of Meta's Phone number ID",
        )),
        ..Credential::optional("phone_number_id")
    };
    pub const ALL: &[Credential] = &[APP_SECRET, VERIFY_TOKEN, ACCESS_TOKEN, PHONE_NUMBER_ID];
    /// What sending a reply needs.
    pub const REPLIES: &[Credential] = &[ACCESS_TOKEN, PHONE_NUMBER_ID];
}

/// WeChat Official Accounts.
pub mod wechat {
    use base64::Engine;
    use serde_json::Value;

    use super::{AccountType, Credential};

    /// The token set in the WeChat console, which signs every push.
    pub const TOKEN: Credential = Credential::required("token");
    /// The official account's AppID, which encrypted pushes carry.
    pub const APP_ID: Credential = Credential::required("app_id");
    /// The EncodingAESKey of safe mode (optional: plaintext mode has none).
    pub const ENCODING_AES_KEY: Credential = Credential {
        check: Some((
            |key| aes_key(key).is_some(),
            "must be the 43-character EncodingAESKey from the WeChat console",
        )),
        ..Credential::optional("encoding_aes_key")
    };
    /// The official account's Original ID (`gh_…`, under Settings → Account Info): when set, a
    /// push addressed to another account (`ToUserName`) is refused.
    pub const ORIGINAL_ID: Credential = Credential::optional("original_id");
    /// The official account's type: `service` (when unset), `subscription` or `enterprise`. It
    /// decides what the business may still send a follower after the 48-hour reply window.
    pub const ACCOUNT_TYPE: Credential = Credential {
        check: Some((
            |t| AccountType::parse(t).is_some(),
            "must be one of service, subscription, enterprise",
        )),
        ..Credential::optional("account_type")
    };
    /// The AppSecret (optional): with it, media can be fetched (through an access token it
    /// gets) for `download_url` links.
    pub const APP_SECRET: Credential = Credential::optional("app_secret");
    pub const ALL: &[Credential] = &[TOKEN, APP_ID, ENCODING_AES_KEY, ORIGINAL_ID, ACCOUNT_TYPE, APP_SECRET];
    /// What sending a reply needs (an access token, from the AppID and AppSecret).
    pub const REPLIES: &[Credential] = &[APP_ID, APP_SECRET];

    /// The account type a WeChat source speaks as.
    pub fn account_type(credentials: &Value) -> AccountType {
        ACCOUNT_TYPE.read(credentials).and_then(AccountType::parse).unwrap_or(AccountType::Service)
    }

    /// The AES key an EncodingAESKey (43 characters of base64) stands for.
    pub fn aes_key(encoding_aes_key: &str) -> Option<[u8; 32]> {
        if encoding_aes_key.len() != 43 {
            return None;
        }
        // Keys from the WeChat console often end in a character with stray low bits; WeChat's own
        // decoders ignore them, so this one must too.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let bytes = lenient.decode(format!("{encoding_aes_key}=")).ok()?;
        bytes.try_into().ok()
    }
}

/// Chatwoot's (and MessageHub's) webhooks.
pub mod chatwoot {
    use super::Credential;

    /// The webhook's secret, which signs newer Chatwoot versions' pushes (optional: older ones
    /// sign nothing).
    pub const SECRET: Credential = Credential::optional("secret");
    /// Where the Chatwoot installation is (`https://app.chatwoot.com`), for replies (optional).
    pub const API_URL: Credential = Credential {
        check: Some((
            |url| {
                url::Url::parse(url)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            },
            "must be the http(s) address of the Chatwoot installation, e.g. https://app.chatwoot.com",
        )),
        ..Credential::optional("api_url")
    };
    /// The account's number (in Chatwoot's addresses, after `/app/accounts/`), for replies.
    pub const ACCOUNT_ID: Credential = Credential {
        check: Some((
            |id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
            "must be the account's number",
        )),
        ..Credential::optional("account_id")
    };
    /// An agent's or agent bot's access token (Profile settings → Access Token), for replies.
    pub const API_ACCESS_TOKEN: Credential = Credential::optional("api_access_token");
    pub const ALL: &[Credential] = &[SECRET, API_URL, ACCOUNT_ID, API_ACCESS_TOKEN];
    /// What sending a reply needs.
    pub const REPLIES: &[Credential] = &[API_URL, ACCOUNT_ID, API_ACCESS_TOKEN];
}

/// The credentials a kind of source takes (Zoho Desk's webhooks take none).
pub fn spec(kind: SourceKind) -> &'static [Credential] {
    match kind {
        SourceKind::Twilio => twilio::ALL,
        SourceKind::Whatsapp => whatsapp::ALL,
        SourceKind::Wechat => wechat::ALL,
        SourceKind::Chatwoot => chatwoot::ALL,
        SourceKind::ZohoDesk => &[],
    }
}

/// The credentials a kind of source needs to send replies, which `credentials` lacks (empty: it
/// can send them).
pub fn missing_for_replies(kind: SourceKind, credentials: &Value) -> Vec<&'static str> {
    let needed = match kind {
        SourceKind::Twilio => twilio::REPLIES,
        SourceKind::Whatsapp => whatsapp::REPLIES,
        SourceKind::Wechat => wechat::REPLIES,
        SourceKind::Chatwoot => chatwoot::REPLIES,
        SourceKind::ZohoDesk => &[],
    };
    needed.iter().filter(|c| c.read(credentials).is_none()).map(|c| c.name).collect()
}

/// Checks a kind's credentials: the required ones present, all strings, each value as its
/// channel wants it, nothing unknown. A refusal names its field (`credentials.<name>`).
pub fn check(kind: SourceKind, given: Map<String, Value>) -> Result<Value, (String, Invalid)> {
    let allowed = spec(kind);
    let refuse = |name: &str, detail: String| Err((format!("credentials.{name}"), Invalid(detail)));
    for (key, value) in &given {
        let Some(credential) = allowed.iter().find(|c| c.name == key) else {
            let names: Vec<&str> = allowed.iter().map(|c| c.name).collect();
            let those =
                format!("not a credential of a {} source (those are: {})", kind.as_str(), names.join(", "));
            return refuse(key, those);
        };
        match value {
            Value::Null => {}
            Value::String(text) => {
                if let Some((valid, what)) = credential.check
                    && !text.trim().is_empty()
                    && !valid(text)
                {
                    return refuse(key, what.to_string());
                }
            }
            _ => return refuse(key, "must be a string".to_string()),
        }
    }
    for credential in allowed.iter().filter(|c| c.required) {
        let value = given.get(credential.name).and_then(Value::as_str).map(str::trim);
        if value.is_none_or(str::is_empty) {
            return refuse(credential.name, "missing".to_string());
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

    fn field(refused: Result<Value, (String, Invalid)>) -> String {
        refused.unwrap_err().0
    }

    #[test]
    fn each_kind_takes_what_its_adapter_reads() {
        assert!(check(SourceKind::Twilio, given(json!({"auth_token": "t"}))).is_ok());
        assert_eq!(field(check(SourceKind::Twilio, given(json!({})))), "credentials.auth_token");
        assert_eq!(field(check(SourceKind::ZohoDesk, given(json!({"token": "t"})))), "credentials.token");
        let key = json!({"token": "t", "app_id": "wx1", "encoding_aes_key": "short"});
        assert_eq!(field(check(SourceKind::Wechat, given(key))), "credentials.encoding_aes_key");
        let (_, number) = check(SourceKind::Chatwoot, given(json!({"secret": 5}))).unwrap_err();
        assert_eq!(number.0, "must be a string");
    }

    #[test]
    fn a_wechat_source_is_a_service_account_unless_it_says_otherwise() {
        assert_eq!(wechat::account_type(&json!({})), AccountType::Service);
        assert_eq!(wechat::account_type(&json!({"account_type": "subscription"})), AccountType::Subscription);
    }
}
