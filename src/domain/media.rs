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
}

impl Media {
    pub const ALL: [Media; 2] = [Media::Skip, Media::Placeholder];

    pub fn as_str(self) -> &'static str {
        match self {
            Media::Skip => "skip",
            Media::Placeholder => "placeholder",
        }
    }

    /// Whether a webhook with this choice takes a message of `text` that carries `attachments`:
    /// one that skips media still takes the words of a media message (its caption), without
    /// the media.
    pub fn takes(self, text: &str, attachments: &[Attachment]) -> bool {
        self == Media::Placeholder || attachments.is_empty() || !text.trim().is_empty()
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
        if self == Media::Placeholder || attachments.is_empty() {
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
            .ok_or_else(|| Invalid(format!("must be one of skip, placeholder (got {s:?})")))
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
