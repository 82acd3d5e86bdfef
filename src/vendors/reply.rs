//! Sending a reply through a chat's channel, with its source's credentials, as each vendor
//! documents it:
//!
//! - Twilio: `POST {twilio_api}/2010-04-01/Accounts/{AccountSid}/Messages.json`, a form with
//!   `From` and `To` (`whatsapp:+…`) and `Body`, or `ContentSid` and `ContentVariables` for a
//!   template; HTTP Basic with the Account SID and Auth Token. The answer's `sid` is kept.
//! - Meta (WhatsApp Cloud API): `POST {meta_graph}/{phone_number_id}/messages` with the access
//!   token, `{"messaging_product": "whatsapp", "to", "type": "text", "text": {"body"}}` or a
//!   `template` message; the answer's `messages[0].id` (`wamid.…`) is kept.
//! - WeChat: `POST {wechat_api}/cgi-bin/message/custom/send?access_token=…` (the customer-service
//!   message API), `{"touser", "msgtype": "text", "text": {"content"}}`; WeChat answers 200 with
//!   `errcode` 0, or the error's code.
//! - Chatwoot: `POST {api_url}/api/v1/accounts/{account_id}/conversations/{id}/messages` with the
//!   `api_access_token` header, `{"content", "message_type": "outgoing", "private": false}`; the
//!   answer's `id` is kept.
//! - A JSON API chat: the workspace's `reply_url`, signed as deliveries are.
//!
//! What is worth trying again (a timeout, a server error, a rate limit) comes back
//! [`SendResult::Transient`]; a refusal (the vendor's 4xx, with its code and message) comes back
//! [`SendResult::Refused`].

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

use super::{VENDOR_TIMEOUT, Vendors};
use crate::domain::credentials::{chatwoot, twilio, whatsapp};
use crate::domain::reply::{ReplyBody, SendResult, VendorError};
use crate::domain::{Chat, SourceKind};
use crate::store::Source;

/// A reply on its way out through a source.
pub struct Outgoing<'a> {
    pub source: &'a Source,
    pub chat: &'a Chat,
    /// Twilio: the business number the customer wrote to, which answers (`+…`).
    pub from: Option<&'a str>,
    pub body: &'a ReplyBody,
}

/// The JSON API's reply webhook: the workspace's `reply_url`, its signing secret, and what to post.
pub struct ReplyHook<'a> {
    pub url: &'a str,
    pub secret: Option<&'a str>,
    /// The request's `webhook-id`: the reply's message id, the same on every retry.
    pub id: &'a str,
    pub payload: &'a [u8],
}

impl Vendors {
    /// Sends `out` through its source's channel (Zoho Desk's chats never get here).
    pub async fn send_reply(&self, out: &Outgoing<'_>) -> SendResult {
        let credentials = &out.source.credentials;
        match out.source.kind {
            SourceKind::Twilio => {
                let sid = twilio::ACCOUNT_SID.read(credentials).unwrap_or_default();
                let token = twilio::AUTH_TOKEN.read(credentials).unwrap_or_default();
                let Some(from) = out.from else {
                    return refused("from", "no number of the business is known for this chat yet");
                };
                let url = format!(
                    "{}/2010-04-01/Accounts/{}/Messages.json",
                    self.settings.twilio_api.trim_end_matches('/'),
                    super::media::encoded(sid)
                );
                let mut form = vec![
                    ("To".to_string(), whatsapp_address(&out.chat.external_id)),
                    ("From".to_string(), whatsapp_address(from)),
                ];
                match out.body {
                    ReplyBody::Text(text) => form.push(("Body".into(), text.clone())),
                    ReplyBody::Template(t) => {
                        let variables: serde_json::Map<String, Value> = t
                            .parameters
                            .iter()
                            .enumerate()
                            .map(|(i, p)| ((i + 1).to_string(), Value::String(p.clone())))
                            .collect();
                        form.push(("ContentSid".into(), t.name.clone()));
                        form.push(("ContentVariables".into(), Value::Object(variables).to_string()));
                    }
                }
                let form = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
                let request = self
                    .client
                    .post(url)
                    .basic_auth(sid, Some(token))
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form);
                answer(request, |v| v["sid"].as_str().map(str::to_string), twilio_error).await
            }
            SourceKind::Whatsapp => {
                let token = whatsapp::ACCESS_TOKEN.read(credentials).unwrap_or_default();
                let number = whatsapp::PHONE_NUMBER_ID.read(credentials).unwrap_or_default();
                let url = format!(
                    "{}/{}/messages",
                    self.settings.meta_graph.trim_end_matches('/'),
                    super::media::encoded(number)
                );
                let to = out.chat.external_id.trim_start_matches('+');
                let message = match out.body {
                    ReplyBody::Text(text) => json!({
                        "messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                        "type": "text", "text": {"preview_url": false, "body": text},
                    }),
                    ReplyBody::Template(t) => {
                        let parameters: Vec<Value> =
                            t.parameters.iter().map(|p| json!({"type": "text", "text": p})).collect();
                        let components = if parameters.is_empty() {
                            json!([])
                        } else {
                            json!([{"type": "body", "parameters": parameters}])
                        };
                        json!({
                            "messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                            "type": "template",
                            "template": {"name": t.name, "language": {"code": t.language}, "components": components},
                        })
                    }
                };
                let request = self.client.post(url).bearer_auth(token).json(&message);
                answer(request, |v| v["messages"][0]["id"].as_str().map(str::to_string), meta_error).await
            }
            SourceKind::Wechat => self.wechat_reply(out).await,
            SourceKind::Chatwoot => {
                let base = chatwoot::API_URL.read(credentials).unwrap_or_default();
                let account = chatwoot::ACCOUNT_ID.read(credentials).unwrap_or_default();
                let token = chatwoot::API_ACCESS_TOKEN.read(credentials).unwrap_or_default();
                let url = format!(
                    "{}/api/v1/accounts/{}/conversations/{}/messages",
                    base.trim_end_matches('/'),
                    super::media::encoded(account),
                    super::media::encoded(&out.chat.external_id)
                );
                let message =
                    json!({"content": out.body.shown(), "message_type": "outgoing", "private": false});
                let request = self.client.post(url).header("api_access_token", token).json(&message);
                answer(request, |v| id_of(&v["id"]), chatwoot_error).await
            }
            SourceKind::ZohoDesk => refused("source", "Zoho Desk chats are answered in Zoho Desk"),
        }
    }

    async fn wechat_reply(&self, out: &Outgoing<'_>) -> SendResult {
        let message = json!({
            "touser": out.chat.external_id, "msgtype": "text", "text": {"content": out.body.shown()},
        });
        for fresh in [false, true] {
            let token = match self.wechat_token(out.source, fresh).await {
                Ok(token) => token,
                Err(e) => {
                    return SendResult::Transient(VendorError {
                        code: "token".into(),
                        message: e.to_string(),
                    });
                }
            };
            let url = format!(
                "{}/cgi-bin/message/custom/send?access_token={}",
                self.settings.wechat_api.trim_end_matches('/'),
                super::media::encoded(&token)
            );
            let sent = answer(self.client.post(url).json(&message), |_| None, |_, v| wechat_error(v)).await;
            // A token WeChat no longer takes is fetched afresh, once.
            if let SendResult::Refused(error) = &sent
                && !fresh
                && super::media::WECHAT_TOKEN_GONE.iter().any(|c| c.to_string() == error.code)
            {
                continue;
            }
            return sent;
        }
        unreachable!("the loop returns")
    }

    /// Posts a JSON API chat's reply to the workspace's `reply_url`, signed as deliveries are; a
    /// JSON answer's `id` (or `message_id`) is kept as the message's id there.
    pub async fn send_reply_hook(&self, hook: &ReplyHook<'_>) -> SendResult {
        let timestamp = chrono::Utc::now().timestamp();
        let headers = crate::deliver::signed_headers(hook.id, hook.secret, hook.payload, timestamp);
        let request = self.client.post(hook.url).headers(headers).body(hook.payload.to_vec());
        answer(
            request,
            |v| id_of(&v["id"]).or_else(|| id_of(&v["message_id"])),
            |status, v| {
                let message = v["error"]["message"].as_str().or(v["message"].as_str()).map(str::to_string);
                VendorError { code: status.as_u16().to_string(), message: message.unwrap_or_default() }
            },
        )
        .await
    }
}

/// `whatsapp:+E.164` for a number (a business-scoped id as it is).
fn whatsapp_address(number: &str) -> String {
    let number = number.trim_start_matches("whatsapp:");
    if number.chars().all(|c| c.is_ascii_digit()) {
        format!("whatsapp:+{number}")
    } else {
        format!("whatsapp:{number}")
    }
}

fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn refused(code: &str, message: &str) -> SendResult {
    SendResult::Refused(VendorError { code: code.into(), message: message.into() })
}

/// Sends and reads the answer: a 2xx is sent (with the id `sent_id` finds in its JSON), a 408,
/// 425, 429 or 5xx or no answer is worth another try, any other status is a refusal, as
/// `refusal` reads the vendor's error body. WeChat's 200 with an error is judged by its reader.
async fn answer(
    request: RequestBuilder,
    sent_id: impl Fn(&Value) -> Option<String>,
    refusal: impl Fn(StatusCode, &Value) -> VendorError,
) -> SendResult {
    let response = match request.timeout(VENDOR_TIMEOUT).send().await {
        Ok(response) => response,
        Err(e) => {
            let code = if e.is_timeout() { "timeout" } else { "connection" };
            return SendResult::Transient(VendorError { code: code.into(), message: without_url(&e) });
        }
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => {
            return SendResult::Transient(VendorError {
                code: "connection".into(),
                message: without_url(&e),
            });
        }
    };
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_success() {
        // WeChat says how it went in the body, whatever the status.
        if let Some(code) = value["errcode"].as_i64().filter(|c| *c != 0) {
            let error = refusal(status, &value);
            return if code == -1 { SendResult::Transient(error) } else { SendResult::Refused(error) };
        }
        return SendResult::Sent(sent_id(&value));
    }
    let mut error = refusal(status, &value);
    if error.message.is_empty() {
        error.message = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    }
    let retry = matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error();
    if retry { SendResult::Transient(error) } else { SendResult::Refused(error) }
}

/// A transport error's words, without the URL (WeChat's carries the access token).
fn without_url(error: &reqwest::Error) -> String {
    // reqwest's own words name the URL: say what kind of failure it was instead.
    let mut words = if error.is_timeout() {
        "no answer in time".to_string()
    } else if error.is_connect() {
        "could not connect".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        words.push_str(": ");
        words.push_str(&cause.to_string());
        source = cause.source();
    }
    words
}

/// Twilio's error body: `{"code": 21211, "message": "…", "more_info": "…", "status": 400}`.
fn twilio_error(status: StatusCode, v: &Value) -> VendorError {
    VendorError {
        code: id_of(&v["code"]).unwrap_or_else(|| status.as_u16().to_string()),
        message: v["message"].as_str().unwrap_or_default().to_string(),
    }
}

/// Meta's: `{"error": {"message", "type", "code": 131047, "error_data": {"details"}, …}}`.
fn meta_error(status: StatusCode, v: &Value) -> VendorError {
    let error = &v["error"];
    let details = error["error_data"]["details"].as_str();
    let message = error["message"].as_str().unwrap_or_default();
    VendorError {
        code: id_of(&error["code"]).unwrap_or_else(|| status.as_u16().to_string()),
        message: match details {
            Some(details) if !message.is_empty() => format!("{message}: {details}"),
            _ => message.to_string(),
        },
    }
}

/// WeChat's: `{"errcode": 45015, "errmsg": "response out of time limit…"}`.
fn wechat_error(v: &Value) -> VendorError {
    VendorError {
        code: id_of(&v["errcode"]).unwrap_or_default(),
        message: v["errmsg"].as_str().unwrap_or_default().to_string(),
    }
}

/// Chatwoot's: `{"error": "…"}` or `{"message": "…"}` (or `errors`).
fn chatwoot_error(status: StatusCode, v: &Value) -> VendorError {
    let message = v["error"]
        .as_str()
        .or(v["message"].as_str())
        .map(str::to_string)
        .or_else(|| v.get("errors").map(Value::to_string))
        .unwrap_or_default();
    VendorError { code: status.as_u16().to_string(), message }
}
