//! English: "from John Doe on 2024-03-01 12:08: …".

use super::{MediaWords, Words};

pub const WORDS: Words = Words {
    note_time: "%Y-%m-%d %H:%M",
    line_before: "from ",
    sender_first: true,
    line_between: " on ",
    line_after: ": ",
    link_before: "Click ",
    link_text: "here",
    link_after: " to open the conversation",
    link_plain: "Open the conversation:",
    unknown_sender: "unknown",
    media: MediaWords {
        image: "image",
        video: "video",
        audio: "audio",
        voice: "voice message",
        document: "document",
        sticker: "sticker",
        location: "location",
        contact: "contact",
        link: "link",
        file: "file",
    },
};
