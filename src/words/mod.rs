//! Everything chatbundle writes for people in one language: a bundle's note, the pages of a
//! workspace, the owner's e-mails. One file per language holds all of it, so adding a language is
//! adding one file here (with its [`Locale`] variant and its line in [`catalogue`]); the askama
//! templates take their words and word order from it. Payload keys, form values and ids never
//! change with the language.

mod en;
mod ja;
mod mail;
mod note;
mod page;

pub use mail::MailWords;
pub use note::{MediaWords, NoteWords};
pub use page::PageWords;

use crate::domain::Locale;

/// One language's words.
pub struct Catalogue {
    pub note: NoteWords,
    pub page: PageWords,
    pub mail: MailWords,
}

/// The catalogue of a language.
pub fn catalogue(locale: Locale) -> &'static Catalogue {
    match locale {
        Locale::En => &en::CATALOGUE,
        Locale::Ja => &ja::CATALOGUE,
    }
}

/// A language's words for notes.
pub fn note_words(locale: Locale) -> &'static NoteWords {
    &catalogue(locale).note
}

/// A language's words for a workspace's pages.
pub fn page_words(locale: Locale) -> &'static PageWords {
    &catalogue(locale).page
}

/// The words of the pages that belong to no workspace (sign-in, the list, failures).
pub fn default_page_words() -> &'static PageWords {
    page_words(Locale::default())
}

/// A language's words for the owner's e-mails.
pub fn mail_words(locale: Locale) -> &'static MailWords {
    &catalogue(locale).mail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every language's date formats are ones chrono can write.
    #[test]
    fn every_catalogues_time_formats_are_valid() {
        use chrono::format::{Item, StrftimeItems};
        for locale in Locale::ALL {
            let c = catalogue(locale);
            for format in [c.page.time, c.page.time_seconds, c.page.transcript_day, c.note.note_time] {
                assert!(!StrftimeItems::new(format).any(|i| i == Item::Error), "{format} ({locale:?})");
            }
            assert_eq!(c.page.lang, locale.as_str());
        }
    }
}
