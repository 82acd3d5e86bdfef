//! Fetching a message's media from its channel, with its source's credentials, at the moment a
//! `download_url` is opened. Nothing is kept: the answer is streamed through.
//!
//! - Twilio: `GET MediaUrlN` with HTTP Basic (Account SID, Auth Token), only when the URL is at
//!   `[vendors] twilio_api`; Twilio answers with a redirect to its storage, which is followed.
//! - Meta (WhatsApp Cloud API): `GET {meta_graph}/{media_id}` with the source's access token
//!   answers `{"url", "mime_type", …}`; the file is `GET url` with the same token.
//! - WeChat: `GET {wechat_api}/cgi-bin/media/get?access_token=…&media_id=…`, the access token from
//!   `GET {wechat_api}/cgi-bin/token?grant_type=client_credential&appid=…&secret=…`, kept until
//!   shortly before it expires (and fetched again when WeChat says it has).
//! - Chatwoot: its `data_url`, which needs no credential.

use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::{Response, Url};
use serde_json::Value;

use super::{VENDOR_TIMEOUT, Vendors};
use crate::domain::credentials::{twilio, wechat, whatsapp};
use crate::domain::{Attachment, SourceKind};
use crate::store::Source;

/// Why a file could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The source cannot fetch it (a credential missing, no address or id for it).
    #[error("{0}")]
    Unavailable(String),
    /// The vendor refused or failed; the reason as it said it (no credential in it).
    #[error("the channel did not give the file: {0}")]
    Vendor(String),
}

/// WeChat's errors that say the access token is no longer good.
pub(super) const WECHAT_TOKEN_GONE: [i64; 3] = [40001, 40014, 42001];

impl Vendors {
    /// The vendor's answer carrying the file (a 2xx, its body not yet read).
    pub async fn fetch_media(
        &self,
        source: &Source,
        attachment: &Attachment,
    ) -> Result<Response, MediaError> {
        let credentials = &source.credentials;
        crate::domain::linkable(source.kind, credentials, attachment).map_err(MediaError::Unavailable)?;
        let response = match source.kind {
            SourceKind::Twilio => {
                let url = parsed(attachment.url.as_deref())?;
                let sid = twilio::ACCOUNT_SID.read(credentials).unwrap_or_default();
                let token = twilio::AUTH_TOKEN.read(credentials).unwrap_or_default();
                let request = self.client.get(url.clone());
                // The credentials go only to Twilio's own API.
                let request = if same_origin(&url, &self.settings.twilio_api) {
                    request.basic_auth(sid, Some(token))
                } else {
                    request
                };
                send(request).await?
            }
            SourceKind::Whatsapp => {
                let token = whatsapp::ACCESS_TOKEN.read(credentials).unwrap_or_default();
                let id = attachment.media_id.as_deref().unwrap_or_default();
                let lookup = format!("{}/{}", self.settings.meta_graph.trim_end_matches('/'), encoded(id));
                let answer = send(self.client.get(lookup).bearer_auth(token)).await?;
                let found: Value = answer.json().await.map_err(|e| MediaError::Vendor(e.to_string()))?;
                let url = parsed(found["url"].as_str())?;
                send(self.client.get(url).bearer_auth(token)).await?
            }
            SourceKind::Wechat => self.wechat_media(source, attachment).await?,
            SourceKind::Chatwoot => send(self.client.get(parsed(attachment.url.as_deref())?)).await?,
            SourceKind::ZohoDesk => unreachable!("linkable refuses Zoho Desk"),
        };
        Ok(response)
    }

    async fn wechat_media(&self, source: &Source, attachment: &Attachment) -> Result<Response, MediaError> {
        let id = attachment.media_id.as_deref().unwrap_or_default();
        for fresh in [false, true] {
            let token = self.wechat_token(source, fresh).await?;
            let url = format!(
                "{}/cgi-bin/media/get?access_token={}&media_id={}",
                self.settings.wechat_api.trim_end_matches('/'),
                encoded(&token),
                encoded(id)
            );
            let response = send(self.client.get(url)).await?;
            // A file comes as itself; an error as JSON (`{"errcode":40007,"errmsg":"invalid media_id"}`).
            let is_json = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/plain"));
            if !is_json {
                return Ok(response);
            }
            let error: Value = response.json().await.map_err(|e| MediaError::Vendor(e.to_string()))?;
            let code = error["errcode"].as_i64().unwrap_or(-1);
            if !fresh && WECHAT_TOKEN_GONE.contains(&code) {
                continue;
            }
            return Err(MediaError::Vendor(format!("WeChat errcode {code}: {}", error["errmsg"])));
        }
        Err(MediaError::Vendor("WeChat refused a fresh access token".into()))
    }

    /// The source's WeChat access token: the cached one, unless `fresh` or about to expire.
    pub(super) async fn wechat_token(&self, source: &Source, fresh: bool) -> Result<String, MediaError> {
        let credentials = &source.credentials;
        let app_id = wechat::APP_ID.read(credentials).unwrap_or_default();
        let secret = wechat::APP_SECRET.read(credentials).unwrap_or_default();
        let mut tokens = self.wechat_tokens.lock().await;
        if !fresh
            && let Some((token, until)) = tokens.get(app_id)
            && *until > Instant::now()
        {
            return Ok(token.clone());
        }
        let url = format!(
            "{}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
            self.settings.wechat_api.trim_end_matches('/'),
            encoded(app_id),
            encoded(secret)
        );
        let answer: Value =
            send(self.client.get(url)).await?.json().await.map_err(|e| MediaError::Vendor(e.to_string()))?;
        let Some(token) = answer["access_token"].as_str() else {
            return Err(MediaError::Vendor(format!(
                "WeChat gave no access token: errcode {}: {}",
                answer["errcode"], answer["errmsg"]
            )));
        };
        // Kept until five minutes before WeChat says it expires (7,200 s as a rule).
        let lasts = answer["expires_in"].as_u64().unwrap_or(7200).saturating_sub(300);
        tokens.insert(app_id.to_string(), (token.to_string(), Instant::now() + Duration::from_secs(lasts)));
        Ok(token.to_string())
    }
}

/// Sends a request; anything but a 2xx is the vendor's refusal, said by its status.
async fn send(request: reqwest::RequestBuilder) -> Result<Response, MediaError> {
    let response = request.timeout(VENDOR_TIMEOUT).send().await.map_err(|e| {
        // reqwest's message names the URL, which may carry an access token: say what failed only.
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_redirect() {
            "a redirect was refused (the SSRF guard, or too many)"
        } else {
            "the request failed"
        };
        MediaError::Vendor(what.into())
    })?;
    if !response.status().is_success() {
        return Err(MediaError::Vendor(format!("HTTP {}", response.status().as_u16())));
    }
    Ok(response)
}

fn parsed(url: Option<&str>) -> Result<Url, MediaError> {
    url.and_then(|u| Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| MediaError::Vendor("the channel gave no usable address for the file".into()))
}

fn same_origin(url: &Url, base: &str) -> bool {
    Url::parse(base).is_ok_and(|base| base.origin() == url.origin())
}

pub(super) fn encoded(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}
