//! The words of a bundle's note (and a medium's placeholder), which a CRM shows.

/// One language's words for a bundle's note.
pub struct NoteWords {
    /// How a note line gives a message's time (`strftime`).
    pub note_time: &'static str,
    /// A note line's head is `before`, the sender and the time (in this order when
    /// `sender_first`, else the time first), `between` them, then `after`.
    pub line_before: &'static str,
    pub sender_first: bool,
    pub line_between: &'static str,
    pub line_after: &'static str,
    /// The link line of the HTML note: `before`, the link with `text`, `after`.
    pub link_before: &'static str,
    pub link_text: &'static str,
    pub link_after: &'static str,
    /// The link line of the plain-text note, before the URL.
    pub link_plain: &'static str,
    /// Who a line is from when the message names no one.
    pub unknown_sender: &'static str,
    /// What a medium is called in its placeholder: "[image]", "[document: invoice.pdf]",
    /// "[location 35.68, 139.76]" (see `crate::render::media`).
    pub media: MediaWords,
}

/// The names of media in placeholders, by [`crate::domain::AttachmentKind`].
pub struct MediaWords {
    pub image: &'static str,
    pub video: &'static str,
    pub audio: &'static str,
    pub voice: &'static str,
    pub document: &'static str,
    pub sticker: &'static str,
    pub location: &'static str,
    pub contact: &'static str,
    pub link: &'static str,
    pub file: &'static str,
}
