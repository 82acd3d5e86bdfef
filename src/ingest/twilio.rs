//! WhatsApp through Twilio: a form-encoded POST per message, signed with `X-Twilio-Signature`
//! (base64 HMAC-SHA1, keyed with the account's auth token, of the URL Twilio called followed by
//! every parameter name and value, sorted by name). Twilio wants empty TwiML back.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;

use super::canonical::MAX_ATTACHMENTS;
use super::error::IngestError;
use super::inbound::{Answer, HookRequest, Inbound, malformed, refuse};
use crate::domain::{Attachment, AttachmentKind, Direction, Party, SourceKind};
use crate::store::{ChatInfo, NewMessage};

use crate::domain::credentials::twilio::{ACCOUNT_SID, AUTH_TOKEN};
use tracing::warn;

const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// The signature Twilio sends for `url` and `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL as Twilio may have signed it: as given, and with the default port written out or
/// left off (Twilio's own validators accept both).
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    let Ok(parsed) = url::Url::parse(url) else { return variants };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return variants;
    };
    let rest = format!("{}{}", parsed.path(), parsed.query().map(|q| format!("?{q}")).unwrap_or_default());
    let with_port = format!("{}://{host}:{port}{rest}", parsed.scheme());
    let without_port = format!("{}://{host}{rest}", parsed.scheme());
    for candidate in [with_port, without_port] {
        if !variants.contains(&candidate) {
            variants.push(candidate);
        }
    }
    variants
}

/// Whether `given` is Twilio's signature of the request.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    url_variants(url).iter().any(|u| {
        let expected = signature(auth_token, u, params);
        subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes()).into()
    })
}

fn number(address: &str) -> String {
    address.strip_prefix("whatsapp:").unwrap_or(address).to_string()
}

pub fn parse(credentials: &Value, request: &HookRequest) -> Result<(Inbound, Answer), IngestError> {
    let token = AUTH_TOKEN.read(credentials).unwrap_or_default();
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(request.body)
        .map_err(|e| malformed(format!("body: not a form: {e}")))?;
    let given = request
        .header("x-twilio-signature")
        .ok_or_else(|| refuse(SourceKind::Twilio, "missing X-Twilio-Signature"))?;
    if !verify(token, &request.url, &params, given) {
        return Err(refuse(SourceKind::Twilio, "X-Twilio-Signature does not match"));
    }
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    // Subaccounts share nothing; one whose token leaked elsewhere cannot post into this source.
    if let Some(expected) = ACCOUNT_SID.read(credentials)
        && param("AccountSid") != Some(expected)
    {
        warn!(kind = "twilio", "refused a request for another account");
        return Err(IngestError::wrong_account("AccountSid", "is not this source's account_sid"));
    }
    let sid = param("MessageSid")
        .or(param("SmsMessageSid"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("MessageSid: missing"))?;
    let from = param("From").filter(|s| !s.is_empty()).ok_or_else(|| malformed("From: missing"))?;
    // A tap on a template's quick-reply button: its text is the customer's words (Body repeats
    // it, or is empty), its payload says which of the business's buttons it was.
    let button = param("ButtonText").filter(|t| !t.trim().is_empty());
    let text = param("Body").filter(|t| !t.trim().is_empty()).or(button).unwrap_or_default();
    let reply_to_button = button.and(param("ButtonPayload")).filter(|p| !p.is_empty()).map(str::to_string);
    let mut inbound = Inbound::default();
    let answer =
        Answer { status: axum::http::StatusCode::OK, content_type: "text/xml", body: EMPTY_TWIML.into() };
    let attachments = media(&param);
    // Neither words nor media: nothing to keep.
    if text.trim().is_empty() && attachments.is_empty() {
        inbound.skipped.push(Some(sid.to_string()));
        return Ok((inbound, answer));
    }
    // Usually `whatsapp:+E.164`; a customer who shares only a username comes as a business-scoped id.
    let customer = number(from);
    let phone = customer.starts_with('+').then(|| customer.clone());
    let name = param("ProfileName").filter(|s| !s.is_empty()).map(str::to_string);
    inbound.messages.push(NewMessage {
        message_id: sid.to_string(),
        direction: Direction::Received,
        // Twilio sends no time of its own: the time of receipt it is.
        timestamp: request.received_at,
        chat: ChatInfo {
            external_id: customer,
            full_name: name.clone(),
            phone: phone.clone(),
            is_group: Some(false),
            ..ChatInfo::default()
        },
        sender: Party { full_name: name, phone },
        recipient: Party { full_name: None, phone: param("To").map(number) },
        text: text.to_string(),
        account: None,
        channel: "whatsapp".into(),
        attachments,
        reply_to_button,
    });
    Ok((inbound, answer))
}

/// The media of a request: `NumMedia` files at `MediaUrlN` of type `MediaContentTypeN` (Body is
/// their caption), and a shared location's `Latitude`, `Longitude`, `Label` and `Address`.
fn media<'p>(param: &impl Fn(&str) -> Option<&'p str>) -> Vec<Attachment> {
    let count = param("NumMedia").and_then(|n| n.trim().parse::<usize>().ok()).unwrap_or(0);
    let mut attachments: Vec<Attachment> = (0..count.min(MAX_ATTACHMENTS))
        .map(|i| {
            let mime = param(&format!("MediaContentType{i}")).filter(|m| !m.is_empty());
            let mut a = Attachment::new(mime.map(AttachmentKind::of_mime).unwrap_or(AttachmentKind::File));
            a.mime_type = mime.map(str::to_string);
            a.url = param(&format!("MediaUrl{i}")).filter(|u| !u.is_empty()).map(str::to_string);
            a
        })
        .collect();
    let coordinate = |name: &str| param(name).and_then(|v| v.trim().parse::<f64>().ok());
    if let (Some(latitude), Some(longitude)) = (coordinate("Latitude"), coordinate("Longitude")) {
        let mut place = Attachment::new(AttachmentKind::Location);
        place.latitude = Some(latitude);
        place.longitude = Some(longitude);
        place.name = param("Label").or(param("Address")).filter(|s| !s.is_empty()).map(str::to_string);
        attachments.push(place);
    }
    attachments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn signs_the_published_vector_with_and_without_the_default_port() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(signature("12345", url, &vector_params()), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(signature("12345", with_port, &vector_params()), "kvajT1Ptam85bY51eRf/AJRuM3w=");
        // Either signature verifies against either form of the URL.
        for given in ["RSOYDt4T1cUTdK1PDd93/VVr8B8=", "kvajT1Ptam85bY51eRf/AJRuM3w="] {
            assert!(verify("12345", url, &vector_params(), given));
            assert!(verify("12345", with_port, &vector_params(), given));
        }
    }

    #[test]
    fn a_wrong_token_url_or_parameter_fails() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!verify("54321", url, &vector_params(), good));
        assert!(!verify("12345", "https://mycompany.com/other.php?foo=1&bar=2", &vector_params(), good));
        let mut tampered = vector_params();
        tampered[2].1 = "9999".into();
        assert!(!verify("12345", url, &tampered, good));
    }
}
