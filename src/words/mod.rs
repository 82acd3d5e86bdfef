//! Everything chatbundle writes for people in one language: a bundle's note, the pages of a
//! workspace, the owner's e-mails. One file per language holds all of it, so adding a language is
//! adding one file here (with its [`Locale`] variant and its line in [`catalogue`]); the askama
//! templates take their words and word order from it. Payload keys, form values and ids never
//! change with the language.

mod channels;
mod en;
mod ja;
mod mail;
mod note;
mod page;

pub use channels::{ChannelText, ChannelWords};
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

    /// Every channel's form has a label and a help for each credential its adapter reads, and
    /// steps to follow, in every language.
    #[test]
    fn every_credential_of_every_channel_is_explained_in_every_language() {
        use crate::domain::SourceKind;
        use crate::domain::credentials::spec;
        for locale in Locale::ALL {
            let channels = &catalogue(locale).page.channels;
            for kind in SourceKind::ALL {
                let text = channels.of(kind);
                assert!(!text.name.is_empty() && !text.steps.is_empty(), "{kind:?} in {locale:?}");
                for credential in spec(kind) {
                    let (label, help) = channels.credential(kind, credential.name);
                    assert!(
                        !label.is_empty() && !help.is_empty(),
                        "{} of {kind:?} in {locale:?}",
                        credential.name
                    );
                }
                assert_eq!(text.credentials.len(), spec(kind).len(), "no words for a credential it lacks");
            }
        }
    }
}
