//! Media: what a message carries besides its text, as the channel gave it, and whether a webhook
//! wants messages that carry some.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Invalid;

/// What a webhook does with a message that carries media (a picture, a voice note, a location…).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    /// Leaves it out, as the channels' own CRM connectors do ("only text and emoji messages
    /// are supported; messages with attachments are skipped"); it stays on the transcript.
    #[default]
    Skip,
    /// Keeps it: its text is its caption, or a placeholder such as "[image]" in the workspace's
    /// language, and the payload's message lists its `attachments`.
    Placeholder,
    /// As `Placeholder`, and each attachment whose file chatbundle can fetch from its channel
    /// carries a `download_url` ([`linkable`]).
    Link,
}

impl Media {
    pub const ALL: [Media; 3] = [Media::Skip, Media::Placeholder, Media::Link];

    pub fn as_str(self) -> &'static str {
        match self {
            Media::Skip => "skip",
            Media::Placeholder => "placeholder",
            Media::Link => "link",
        }
    }

    /// Whether a webhook with this choice takes a message of `text` that carries `attachments`:
    /// one that skips media still takes the words of a media message (its caption), without
    /// the media.
    pub fn takes(self, text: &str, attachments: &[Attachment]) -> bool {
        self != Media::Skip || attachments.is_empty() || !text.trim().is_empty()
    }

    /// A message as a webhook with this choice sees it: as it is, its caption alone (made by
    /// `without_media`) when it skips media, or `None` when it does not take it.
    pub fn view<'m, M: Clone>(
        self,
        message: &'m M,
        text: &str,
        attachments: &[Attachment],
        without_media: impl FnOnce(&M) -> M,
    ) -> Option<std::borrow::Cow<'m, M>> {
        use std::borrow::Cow;
        if self != Media::Skip || attachments.is_empty() {
            Some(Cow::Borrowed(message))
        } else if self.takes(text, attachments) {
            Some(Cow::Owned(without_media(message)))
        } else {
            None
        }
    }
}

impl FromStr for Media {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Media::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| Invalid(format!("must be one of skip, placeholder, link (got {s:?})")))
    }
}

/// What kind of medium an attachment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentKind {
    Image,
    Video,
    Audio,
    /// A recorded voice message (WhatsApp's voice notes, WeChat's voice).
    Voice,
    Document,
    Sticker,
    Location,
    /// A contact card.
    Contact,
    /// A shared link (WeChat's link messages).
    Link,
    /// Anything else a channel sends as a file.
    File,
}

impl AttachmentKind {
    pub const ALL: [AttachmentKind; 10] = [
        AttachmentKind::Image,
        AttachmentKind::Video,
        AttachmentKind::Audio,
        AttachmentKind::Voice,
        AttachmentKind::Document,
        AttachmentKind::Sticker,
        AttachmentKind::Location,
        AttachmentKind::Contact,
        AttachmentKind::Link,
        AttachmentKind::File,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::Image => "image",
            AttachmentKind::Video => "video",
            AttachmentKind::Audio => "audio",
            AttachmentKind::Voice => "voice",
            AttachmentKind::Document => "document",
            AttachmentKind::Sticker => "sticker",
            AttachmentKind::Location => "location",
            AttachmentKind::Contact => "contact",
            AttachmentKind::Link => "link",
            AttachmentKind::File => "file",
        }
    }

    /// The kind a MIME type names (`image/jpeg` is an image), for channels that give only that.
    pub fn of_mime(mime: &str) -> AttachmentKind {
        let mime = mime.to_ascii_lowercase();
        match mime.split('/').next().unwrap_or_default() {
            "image" if mime == "image/webp" => AttachmentKind::Sticker,
            "image" => AttachmentKind::Image,
            "video" => AttachmentKind::Video,
            "audio" => AttachmentKind::Audio,
            "text" if mime.contains("vcard") => AttachmentKind::Contact,
            "application" | "text" => AttachmentKind::Document,
            _ => AttachmentKind::File,
        }
    }
}

impl fmt::Display for AttachmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttachmentKind {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        AttachmentKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            Invalid(format!(
                "must be one of image, video, audio, voice, document, sticker, location, contact, \
                 link, file (got {s:?})"
            ))
        })
    }
}

/// One medium of a message, as the channel described it: chatbundle never downloads media, it
/// passes on where they are (`url`, or the channel's `media_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attachment {
    #[serde(rename = "type")]
    pub kind: AttachmentKind,
    /// `null` when the channel does not say.
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// A location's coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -90, maximum = 90)]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -180, maximum = 180)]
    pub longitude: Option<f64>,
    /// A location's place name, a contact's name, a link's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Attachment {
    /// An attachment of `kind` that says nothing more yet.
    pub fn new(kind: AttachmentKind) -> Attachment {
        Attachment {
            kind,
            mime_type: None,
            url: None,
            media_id: None,
            filename: None,
            caption: None,
            latitude: None,
            longitude: None,
            name: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_choices_parse_and_skip_takes_only_text() {
        assert_eq!("placeholder".parse::<Media>(), Ok(Media::Placeholder));
        assert!("all".parse::<Media>().is_err());
        let photo = [Attachment::new(AttachmentKind::Image)];
        assert!(!Media::Skip.takes("", &photo));
        assert!(!Media::Skip.takes(" \n", &photo));
        assert!(Media::Skip.takes("its caption", &photo), "the words of a media message");
        assert!(Media::Skip.takes("text", &[]));
        assert!(Media::Placeholder.takes("", &photo));
        let view = |media: Media, text: &str| {
            media.view(&(text.to_string(), photo.len()), text, &photo, |(t, _)| (t.clone(), 0)).map(|v| v.1)
        };
        assert_eq!(view(Media::Skip, "caption"), Some(0), "seen without its media");
        assert_eq!(view(Media::Skip, ""), None);
        assert_eq!(view(Media::Placeholder, ""), Some(1));
    }

    #[test]
    fn kinds_follow_mime_types() {
        assert_eq!(AttachmentKind::of_mime("image/jpeg"), AttachmentKind::Image);
        assert_eq!(AttachmentKind::of_mime("image/webp"), AttachmentKind::Sticker);
        assert_eq!(AttachmentKind::of_mime("audio/ogg; codecs=opus"), AttachmentKind::Audio);
        assert_eq!(AttachmentKind::of_mime("text/vcard"), AttachmentKind::Contact);
        assert_eq!(AttachmentKind::of_mime("application/pdf"), AttachmentKind::Document);
        assert_eq!(AttachmentKind::of_mime("x"), AttachmentKind::File);
    }

    #[test]
    fn an_attachment_serialises_with_type_and_mime_type_always() {
        let mut a = Attachment::new(AttachmentKind::Document);
        a.filename = Some("invoice.pdf".into());
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v, serde_json::json!({"type": "document", "mime_type": null, "filename": "invoice.pdf"}));
    }
}

/// Whether chatbundle can fetch `attachment` from its channel for a `download_url` link, with a
/// source of `kind` holding `credentials`; if not, why not (a sentence a page shows).
pub fn linkable(
    kind: super::SourceKind,
    credentials: &serde_json::Value,
    attachment: &Attachment,
) -> Result<(), String> {
    use super::SourceKind;
    if matches!(attachment.kind, AttachmentKind::Location | AttachmentKind::Contact | AttachmentKind::Link) {
        return Err("a location, contact card or link has no file".into());
    }
    links_media(kind, credentials).map_err(|missing| match missing {
        Some(credential) => format!("media links need the source's {credential}"),
        None => "this channel's files are not fetched".to_string(),
    })?;
    let (address, missing) = match kind {
        SourceKind::Twilio | SourceKind::Chatwoot => {
            (&attachment.url, "the channel gave no address for the file")
        }
        _ => (&attachment.media_id, "the channel gave no id for the file"),
    };
    address.as_ref().map(|_| ()).ok_or_else(|| missing.to_string())
}

/// Whether a source of `kind` holding `credentials` can fetch its channel's files for media
/// links; if not, the credential it lacks (`Some(name)`), or `None` for a channel whose files
/// are not fetched (Zoho Desk). The source's card says which.
pub fn links_media(
    kind: super::SourceKind,
    credentials: &serde_json::Value,
) -> Result<(), Option<&'static str>> {
    use super::SourceKind;
    use super::credentials::{Credential, twilio, wechat, whatsapp};
    let needs =
        |credential: Credential| credential.read(credentials).map(|_| ()).ok_or(Some(credential.name));
    match kind {
        SourceKind::Twilio => needs(twilio::ACCOUNT_SID),
        SourceKind::Whatsapp => needs(whatsapp::ACCESS_TOKEN),
        SourceKind::Wechat => needs(wechat::APP_SECRET),
        SourceKind::Chatwoot => Ok(()),
        SourceKind::ZohoDesk => Err(None),
    }
}

/// Signs and checks media links, `{public_url}/media/{token}`: the token names a stored message
/// (its `seq`), one of its attachments and when the link expires, with an HMAC-SHA256 of those
/// under a key of the daemon's. A link can neither be made up nor stretched; it names nothing
/// but positions. Its key never leaves the daemon (`Debug` does not show it).
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

/// Why a media link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not a token this daemon signed, or one altered.
    Invalid,
    /// It was, but its lifetime is over.
    Expired,
}

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey(…)")
    }
}

impl LinkKey {
    /// The key for media links, derived from the daemon's own secret (so links end when it
    /// changes), for this use only.
    pub fn derive(secret: &str) -> LinkKey {
        use hmac::Mac;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
        mac.update(b"chatbundle media links v1");
        LinkKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self, body: &str) -> String {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(body.as_bytes());
        let bytes = mac.finalize().into_bytes();
        bytes[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The token of attachment `index` of the message at `seq`, good until `expires`.
    pub fn token(&self, seq: i64, index: usize, expires: chrono::DateTime<chrono::Utc>) -> String {
        let body = format!("{seq}-{index}-{}", expires.timestamp());
        format!("{body}-{}", self.mac(&body))
    }

    /// The message and attachment a token names, if this key signed it and it is still good at `now`.
    pub fn check(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(i64, usize), LinkRefusal> {
        use subtle::ConstantTimeEq;
        let (body, given) = token.rsplit_once('-').ok_or(LinkRefusal::Invalid)?;
        if given.len() != 32 || !bool::from(self.mac(body).as_bytes().ct_eq(given.as_bytes())) {
            return Err(LinkRefusal::Invalid);
        }
        let mut parts = body.split('-');
        let mut next = || parts.next().ok_or(LinkRefusal::Invalid);
        let seq = next()?.parse::<i64>().map_err(|_| LinkRefusal::Invalid)?;
        let index = next()?.parse::<usize>().map_err(|_| LinkRefusal::Invalid)?;
        let expires = next()?.parse::<i64>().map_err(|_| LinkRefusal::Invalid)?;
        if now.timestamp() >= expires {
            return Err(LinkRefusal::Expired);
        }
        Ok((seq, index))
    }
}
