//! The words of connecting a channel on the page: each channel's name, the credentials its form
//! asks for (label and help), and the steps in the vendor's own console, with its menu names.

use crate::domain::SourceKind;

/// One channel's words.
pub struct ChannelText {
    pub name: &'static str,
    /// Each credential the channel takes: its key (as the API names it), label and help.
    pub credentials: &'static [(&'static str, &'static str, &'static str)],
    /// Where to paste the inbound URL, step by step, in the vendor's console.
    pub steps: &'static [&'static str],
}

/// Every channel's words, in one language.
pub struct ChannelWords {
    pub twilio: ChannelText,
    pub whatsapp: ChannelText,
    pub wechat: ChannelText,
    pub chatwoot: ChannelText,
    pub zoho_desk: ChannelText,
}

impl ChannelWords {
    pub fn of(&self, kind: SourceKind) -> &ChannelText {
        match kind {
            SourceKind::Twilio => &self.twilio,
            SourceKind::Whatsapp => &self.whatsapp,
            SourceKind::Wechat => &self.wechat,
            SourceKind::Chatwoot => &self.chatwoot,
            SourceKind::ZohoDesk => &self.zoho_desk,
        }
    }

    /// A credential's label and help, by its key.
    pub fn credential(&self, kind: SourceKind, key: &str) -> (&'static str, &'static str) {
        self.of(kind)
            .credentials
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, l, h)| (*l, *h))
            .unwrap_or(("", ""))
    }
}
