//! How a message that carries media reads in a payload and a note: its caption, or a placeholder
//! per medium in the workspace's language ("[image]", "[document: invoice.pdf]").

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{Attachment, AttachmentKind, LinkKey, SourceKind, linkable};
use crate::words::NoteWords as Words;

/// One medium's placeholder: "[image]", "[document: invoice.pdf]", "[location 35.68, 139.76]".
pub fn placeholder(attachment: &Attachment, w: &Words) -> String {
    let m = &w.media;
    let name = match attachment.kind {
        AttachmentKind::Image => m.image,
        AttachmentKind::Video => m.video,
        AttachmentKind::Audio => m.audio,
        AttachmentKind::Voice => m.voice,
        AttachmentKind::Document => m.document,
        AttachmentKind::Sticker => m.sticker,
        AttachmentKind::Location => m.location,
        AttachmentKind::Contact => m.contact,
        AttachmentKind::Link => m.link,
        AttachmentKind::File => m.file,
    };
    let label =
        attachment.filename.as_deref().or(attachment.name.as_deref()).filter(|s| !s.trim().is_empty());
    match (attachment.latitude, attachment.longitude, label) {
        (Some(lat), Some(lon), None) => format!("[{name} {lat}, {lon}]"),
        (Some(lat), Some(lon), Some(label)) => format!("[{name} {lat}, {lon}: {label}]"),
        (_, _, Some(label)) => format!("[{name}: {label}]"),
        _ => format!("[{name}]"),
    }
}

/// The placeholders of all of a message's media, in order.
fn placeholders(attachments: &[Attachment], w: &Words) -> String {
    attachments.iter().map(|a| placeholder(a, w)).collect::<Vec<_>>().join(" ")
}

/// A message's `text` in a payload: its own text (a media message's caption), or, for media
/// without a caption, their placeholders.
pub fn message_text<'a>(text: &'a str, attachments: &[Attachment], w: &Words) -> Cow<'a, str> {
    if attachments.is_empty() || !text.trim().is_empty() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(placeholders(attachments, w))
    }
}

/// A message's text in a note, which a person reads without the payload's `attachments`: the
/// placeholders first, then the caption, so a photo never leaves a silent gap.
pub fn note_text<'a>(text: &'a str, attachments: &[Attachment], w: &Words) -> Cow<'a, str> {
    if attachments.is_empty() {
        return Cow::Borrowed(text);
    }
    let marks = placeholders(attachments, w);
    if text.trim().is_empty() { Cow::Owned(marks) } else { Cow::Owned(format!("{marks} {text}")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Locale;
    use crate::words::note_words as words;

    fn with(kind: AttachmentKind, f: impl FnOnce(&mut Attachment)) -> Attachment {
        let mut a = Attachment::new(kind);
        f(&mut a);
        a
    }

    #[test]
    fn placeholders_name_the_medium_in_the_workspaces_language() {
        let en = words(Locale::En);
        let ja = words(Locale::Ja);
        assert_eq!(placeholder(&Attachment::new(AttachmentKind::Image), en), "[image]");
        assert_eq!(placeholder(&Attachment::new(AttachmentKind::Voice), en), "[voice message]");
        let place = with(AttachmentKind::Location, |a| {
            a.latitude = Some(35.68);
            a.longitude = Some(139.76);
        });
        assert_eq!(placeholder(&place, en), "[location 35.68, 139.76]");
        assert_eq!(placeholder(&place, ja), "[位置情報 35.68, 139.76]");
        let named = with(AttachmentKind::Location, |a| {
            a.latitude = Some(35.6812);
            a.longitude = Some(139.7671);
            a.name = Some("Tokyo Station".into());
        });
        assert_eq!(placeholder(&named, en), "[location 35.6812, 139.7671: Tokyo Station]");
        let invoice = with(AttachmentKind::Document, |a| a.filename = Some("invoice.pdf".into()));
        assert_eq!(placeholder(&invoice, en), "[document: invoice.pdf]");
        assert_eq!(placeholder(&invoice, ja), "[ドキュメント: invoice.pdf]");
        assert_eq!(placeholder(&Attachment::new(AttachmentKind::Sticker), ja), "[ステッカー]");
    }

    #[test]
    fn a_caption_is_the_text_and_the_note_names_the_medium_too() {
        let en = words(Locale::En);
        let photo = [Attachment::new(AttachmentKind::Image)];
        assert_eq!(message_text("", &photo, en), "[image]");
        assert_eq!(message_text("our shop", &photo, en), "our shop");
        assert_eq!(note_text("our shop", &photo, en), "[image] our shop");
        assert_eq!(note_text("  ", &photo, en), "[image]");
        assert_eq!(note_text("plain", &[], en), "plain");
        let two = [Attachment::new(AttachmentKind::Image), Attachment::new(AttachmentKind::Video)];
        assert_eq!(message_text("", &two, en), "[image] [video]");
    }
}

/// What a payload needs to give a message's media `download_url`s: the daemon's address and link
/// key, when the links expire, and the source the message came through (whose credentials decide
/// which files can be fetched: [`crate::domain::linkable`]).
/// (No `Debug`: it holds the source's credentials.)
#[derive(Clone, Copy)]
pub struct MediaLinks<'a> {
    pub public_url: &'a str,
    pub key: &'a LinkKey,
    pub expires: DateTime<Utc>,
    pub kind: SourceKind,
    pub credentials: &'a serde_json::Value,
}

impl MediaLinks<'_> {
    /// The link to attachment `index` of the message at `seq`, or `None` when its file cannot be
    /// fetched from its channel.
    pub fn url(&self, seq: i64, index: usize, attachment: &Attachment) -> Option<String> {
        linkable(self.kind, self.credentials, attachment).ok()?;
        Some(format!("{}/media/{}", self.public_url, self.key.token(seq, index, self.expires)))
    }
}

/// An attachment in a payload: as the channel described it, and with `media: link` its
/// `download_url`.
#[derive(Debug, Serialize)]
pub struct AttachmentObject<'a> {
    #[serde(flatten)]
    pub attachment: &'a Attachment,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
}

/// A message's attachments as its payload lists them.
pub fn attachment_objects<'a>(
    attachments: &'a [Attachment],
    seq: i64,
    links: Option<&MediaLinks>,
) -> Vec<AttachmentObject<'a>> {
    attachments
        .iter()
        .enumerate()
        .map(|(index, attachment)| AttachmentObject {
            attachment,
            download_url: links.and_then(|links| links.url(seq, index, attachment)),
        })
        .collect()
}

/// How one close or one request makes media links: the key, when its links expire, and the
/// workspace's sources by id (the credentials decide which files can be fetched).
/// (No `Debug`: it holds the sources' credentials.)
#[derive(Clone)]
pub struct LinkPlan {
    pub key: LinkKey,
    pub expires: DateTime<Utc>,
    pub sources: std::collections::HashMap<String, (SourceKind, serde_json::Value)>,
}

impl LinkPlan {
    /// The links of a chat that came through `source_key`; `None` for a chat of the JSON API
    /// (its attachments carry the client's own URLs) or of a source since deleted.
    pub fn for_source<'a>(&'a self, public_url: &'a str, source_key: &str) -> Option<MediaLinks<'a>> {
        let (kind, credentials) = self.sources.get(source_key)?;
        Some(MediaLinks { public_url, key: &self.key, expires: self.expires, kind: *kind, credentials })
    }
}
