//! The words of the pages that belong to one workspace (its page, a chat's page, a webhook's
//! preview, a chat's public transcript). A phrase with a value inside comes as the pieces around
//! the value, so each language keeps its own word order.
//!
//! Only what a person reads changes with the language: form values, field names, ids, classes and
//! the identifiers shown as they are (session statuses, activity kinds) never do, nor do the
//! refusals of the domain's checks, which the admin API shares.

use crate::domain::session::SessionCause;
use crate::domain::{DeliveryStatus, Granularity};

/// One language's words for the pages.
pub struct PageWords {
    /// The pages' `lang` attribute.
    pub lang: &'static str,
    /// How a moment is shown (`strftime`, in UTC), to the minute and to the second.
    pub time: &'static str,
    pub time_seconds: &'static str,

    /// Every page: the navigation's button, and the button the script adds next to a value to
    /// copy (what it says, what it says once copied, and its accessible name: `before`, what it
    /// copies, `after`).
    pub sign_out: &'static str,
    /// The link to the signed-in person's own page (their password).
    pub account: &'static str,
    /// Connecting each channel: its name, its credentials' labels and help, the vendor's steps.
    pub channels: super::ChannelWords,
    pub copy: &'static str,
    pub copied: &'static str,
    pub copy_label_before: &'static str,
    pub copy_label_after: &'static str,
    /// Words several pages share.
    pub back_to_workspace: &'static str,
    pub back_to_workspaces: &'static str,
    pub badge_on: &'static str,
    pub badge_off: &'static str,
    pub enabled: &'static str,
    pub url: &'static str,
    pub name: &'static str,
    pub col_when: &'static str,

    /// The granularity choices, and a webhook's choice that follows the workspace:
    /// `before`, the workspace's granularity, `after`.
    pub granularity: &'static str,
    pub granularity_none: &'static str,
    pub granularity_1h: &'static str,
    pub granularity_6h: &'static str,
    pub granularity_12h: &'static str,
    pub granularity_24h: &'static str,
    pub granularity_conversation: &'static str,
    pub workspace_default_before: &'static str,
    pub workspace_default_after: &'static str,

    /// The workspace page's notices: after "release now" (`before`, the number of deliveries,
    /// `after`), after saving the settings, after a resend (`before`, the delivery, `after`).
    pub notice_released_before: &'static str,
    pub notice_released_after: &'static str,
    pub notice_settings_saved: &'static str,
    pub notice_resent_before: &'static str,
    pub notice_resent_after: &'static str,
    /// A source's inbound URL was rotated (its name between).
    pub notice_inbound_rotated_before: &'static str,
    pub notice_inbound_rotated_after: &'static str,
    /// A chat just erased: around the number of its messages.
    pub notice_erased_before: &'static str,
    pub notice_erased_after: &'static str,
    /// "Release now": the heading and button, and what it does.
    pub release_now: &'static str,
    pub release_hint: &'static str,

    /// A webhook's card. Under its URL, the granularity in force, then one of these two.
    pub webhooks_heading: &'static str,
    pub effective_follows_after: &'static str,
    pub effective_own_after: &'static str,
    pub webhook_saved: &'static str,
    /// A switched-off webhook: `before`, the reason between its own `before` and `after` when
    /// there is one, `after`.
    pub switched_off_before: &'static str,
    pub switched_off_reason_before: &'static str,
    pub switched_off_reason_after: &'static str,
    pub switched_off_after: &'static str,
    pub re_enable: &'static str,
    /// Off in "stop" mode: what the alert says instead of `switched_off_after`.
    pub switched_off_stopped: &'static str,
    /// What a webhook does while off: the choice's legend and its two options.
    pub off_mode_legend: &'static str,
    pub off_mode_pause: &'static str,
    pub off_mode_stop: &'static str,
    /// Switching on with deliveries waiting: the legend, sending them (around their number),
    /// discarding them.
    pub backlog_legend: &'static str,
    pub backlog_send_before: &'static str,
    pub backlog_send_after: &'static str,
    pub backlog_discard: &'static str,
    /// The events a webhook takes: the legend, its two choices; its timeout and hint.
    pub events_legend: &'static str,
    pub event_messages: &'static str,
    pub event_session_status: &'static str,
    pub timeout: &'static str,
    pub timeout_hint: &'static str,
    /// Deleting a webhook: the confirmation (around the number of waiting deliveries), the
    /// button, what is said when it is not ticked, and the notice after.
    pub webhook_delete_before: &'static str,
    pub webhook_delete_after: &'static str,
    pub webhook_delete_button: &'static str,
    pub webhook_delete_unconfirmed: &'static str,
    pub notice_webhook_deleted: &'static str,
    pub note_length: &'static str,
    pub note_length_hint: &'static str,
    /// The media choice: its label, its two options (`skip`, `placeholder`) and a hint.
    pub media: &'static str,
    pub media_skip: &'static str,
    pub media_placeholder: &'static str,
    pub media_link: &'static str,
    /// On a source's card: whether webhooks with media links get `download_url`s for its files.
    pub media_link_ttl: &'static str,
    pub media_link_ttl_hint: &'static str,
    pub conversation_silence: &'static str,
    pub conversation_silence_hint: &'static str,
    pub conversation_max: &'static str,
    pub conversation_max_hint: &'static str,
    /// How long messages are kept: the field's label and hint; what a transcript says of it
    /// (around the duration).
    pub message_retention: &'static str,
    pub message_retention_hint: &'static str,
    pub transcript_retention_before: &'static str,
    pub transcript_retention_after: &'static str,
    /// How long transcript links work: the field's label and hint; the page of an expired link
    /// (around how long links work).
    pub transcript_link_ttl: &'static str,
    pub transcript_link_ttl_hint: &'static str,
    pub transcript_expired_before: &'static str,
    pub transcript_expired_after: &'static str,
    pub media_links_ready: &'static str,
    pub media_links_need_before: &'static str,
    pub media_links_need_after: &'static str,
    pub media_links_none: &'static str,
    pub media_hint: &'static str,
    pub save: &'static str,
    pub save_and_test: &'static str,
    /// A test's result: delivered or failed, whether it was a sample, then the answer (an HTTP
    /// status or `no_answer`) and its duration between `took_before` and `took_after`.
    pub test_delivered: &'static str,
    pub test_failed: &'static str,
    pub test_sample: &'static str,
    pub test_colon: &'static str,
    pub test_no_answer: &'static str,
    pub test_took_before: &'static str,
    pub test_took_after: &'static str,
    /// The signing secret: `before`, `set` or `none`, `after`; a new one is shown once.
    pub secret_before: &'static str,
    pub secret_set: &'static str,
    pub secret_none: &'static str,
    pub secret_after: &'static str,
    pub secret_shown_once: &'static str,
    pub secret_rotate: &'static str,
    pub secret_generate: &'static str,
    /// Deliveries given up: the table, the states, and the resend button (its accessible name is
    /// `before`, the delivery, `after`).
    pub given_up_heading: &'static str,
    pub given_up_hint: &'static str,
    pub col_delivery: &'static str,
    pub col_state: &'static str,
    pub col_last_answer: &'static str,
    pub col_given_up: &'static str,
    pub delivery_pending: &'static str,
    pub delivery_delivered: &'static str,
    pub delivery_failed: &'static str,
    pub delivery_expired: &'static str,
    pub delivery_discarded: &'static str,
    pub resend: &'static str,
    pub resend_label_before: &'static str,
    pub resend_label_after: &'static str,
    /// The latest activity: the link to the preview and what follows it, the failures in a row
    /// (`before`, the count, `after`, then the log's links), and the table.
    pub activity_heading: &'static str,
    pub activity_preview_link: &'static str,
    pub activity_preview_after: &'static str,
    pub activity_failures_before: &'static str,
    pub activity_failures_after: &'static str,
    pub activity_jsonl: &'static str,
    pub col_what: &'static str,
    pub col_status: &'static str,
    pub col_duration: &'static str,
    pub col_who: &'static str,
    pub col_detail: &'static str,
    pub activity_none: &'static str,
    /// The form for a new webhook.
    pub new_webhook_heading: &'static str,
    pub new_webhook_button: &'static str,

    /// The sources: the JSON API's line (`before` its URL, `between` it and the header, `after`
    /// the header, before the key), what the copy buttons copy, and the vendor channels.
    pub sources_heading: &'static str,
    pub ingest_before: &'static str,
    pub ingest_between: &'static str,
    pub ingest_after: &'static str,
    pub copied_ingest_url: &'static str,
    pub copied_ingest_key: &'static str,
    pub copied_inbound_before: &'static str,
    pub copied_inbound_after: &'static str,
    pub copied_secret: &'static str,
    pub copied_transcript_link: &'static str,
    pub no_sources_before: &'static str,
    pub no_sources_after: &'static str,
    /// Connecting a channel: the section's heading and hint, the name field, the button.
    pub connect_heading: &'static str,
    pub connect_hint: &'static str,
    pub connect_button: &'static str,
    /// A source's card: its credentials as set or not, the hint of an empty field, the steps'
    /// heading, the edit section's summary and button, deleting it (confirmation, button, what
    /// is said when it is not ticked).
    pub credential_set: &'static str,
    pub credential_not_set: &'static str,
    pub credential_keep_hint: &'static str,
    pub source_steps_heading: &'static str,
    pub source_edit_summary: &'static str,
    pub source_save: &'static str,
    pub source_delete_confirm: &'static str,
    pub source_delete_button: &'static str,
    pub source_delete_unconfirmed: &'static str,
    /// Notices: a source connected (around its name), saved, deleted.
    pub notice_connected_before: &'static str,
    pub notice_connected_after: &'static str,
    pub notice_source_saved: &'static str,
    pub notice_source_deleted: &'static str,
    /// Whether the vendor reaches us: the last request (its time after `before`), the count of
    /// the last 24 hours (around the number), none yet, and the last refusal (its time, status
    /// and reason after `before`).
    pub last_request_before: &'static str,
    pub requests_24h_before: &'static str,
    pub requests_24h_after: &'static str,
    pub no_request_yet: &'static str,
    pub last_refusal_before: &'static str,
    pub inbound_url: &'static str,
    /// Rotating a source's inbound URL: the button and what it does.
    pub inbound_rotate: &'static str,
    pub inbound_rotate_hint: &'static str,

    /// The workspace's chats.
    pub chats_heading: &'static str,
    pub chats_none: &'static str,
    pub col_chat: &'static str,
    pub col_messages: &'static str,
    pub col_session: &'static str,
    pub col_last_message: &'static str,

    /// The workspace's settings.
    pub settings_heading: &'static str,
    /// The Members section.
    pub members_heading: &'static str,
    pub members_hint: &'static str,
    pub members_none: &'static str,
    pub col_email: &'static str,
    pub col_role: &'static str,
    pub col_last_sign_in: &'static str,
    pub role_admin: &'static str,
    pub role_viewer: &'static str,
    pub member_pending: &'static str,
    pub member_save: &'static str,
    pub member_remove: &'static str,
    pub invite_email: &'static str,
    pub invite_button: &'static str,
    pub invited_before: &'static str,
    pub invited_after: &'static str,
    pub settings_save: &'static str,
    pub owner_email: &'static str,
    pub owner_email_hint: &'static str,
    pub timezone: &'static str,
    pub timezone_placeholder: &'static str,
    pub timezone_hint: &'static str,
    pub default_granularity: &'static str,
    pub language: &'static str,
    pub language_hint: &'static str,
    pub account_legend: &'static str,
    pub account_name: &'static str,
    pub account_email: &'static str,
    pub account_phone: &'static str,

    /// A chat's page: its owner (the channel's id of the assignee between `before` and `after`),
    /// and the notices after saving it and after a new link.
    pub owner_heading: &'static str,
    pub owner_hint: &'static str,
    pub owner_channel_id_before: &'static str,
    pub owner_channel_id_after: &'static str,
    pub email: &'static str,
    pub owner_save: &'static str,
    pub notice_owner_saved: &'static str,
    pub notice_reply_queued: &'static str,
    pub reply_heading: &'static str,
    pub reply_hint: &'static str,
    pub reply_label: &'static str,
    pub reply_send: &'static str,
    /// Before the reason a chat cannot be answered now.
    pub reply_closed: &'static str,
    pub notice_link_rotated: &'static str,
    /// The chat's session history, and why the session moved.
    pub sessions_heading: &'static str,
    pub sessions_hint: &'static str,
    pub col_from: &'static str,
    pub col_to: &'static str,
    pub col_why: &'static str,
    pub col_source: &'static str,
    pub col_reply_status: &'static str,
    pub sessions_none: &'static str,
    pub cause_message: &'static str,
    pub cause_reply: &'static str,
    pub cause_reported: &'static str,
    pub cause_earlier: &'static str,
    /// The chat's transcript link and its rotation.
    pub link_heading: &'static str,
    pub link_before: &'static str,
    pub link_rotate: &'static str,
    pub link_rotate_hint: &'static str,
    /// Erasing a chat (admins): the section's heading, what it does, the confirmation's label, the
    /// button, what is said when it is not ticked, and the notice after it (around the count).
    pub erase_heading: &'static str,
    pub erase_hint: &'static str,
    pub erase_confirm: &'static str,
    pub erase_button: &'static str,
    pub erase_unconfirmed: &'static str,

    /// The preview of a webhook's next bundles: what it shows (`before` the URL, `between` it
    /// and the time, `after`), each chat's count of messages (`before`, the count, `after` in
    /// the singular or plural), its parts (`before`, the count, `after`), and `end`.
    pub preview_title: &'static str,
    pub preview_before: &'static str,
    pub preview_between: &'static str,
    pub preview_after: &'static str,
    pub preview_buffered_before: &'static str,
    pub preview_buffered_one: &'static str,
    pub preview_buffered_many: &'static str,
    pub preview_parts_before: &'static str,
    pub preview_parts_after: &'static str,
    pub preview_buffered_end: &'static str,
    pub preview_payload: &'static str,
    pub preview_none: &'static str,

    /// A chat's public transcript: the title after the name, the heading around it, the hint
    /// (`before` the time zone, `after`, and a sentence when a bundle is marked), a day's date
    /// (`strftime`), who a message is from when it names no one, and the page links.
    pub transcript_title: &'static str,
    pub transcript_heading_before: &'static str,
    pub transcript_heading_after: &'static str,
    pub transcript_hint_before: &'static str,
    pub transcript_hint_after: &'static str,
    pub transcript_marked: &'static str,
    pub transcript_day: &'static str,
    pub transcript_unknown_sender: &'static str,
    /// Beside a message the channel edited after it was sent.
    pub transcript_edited: &'static str,
    pub transcript_none: &'static str,
    pub transcript_pages: &'static str,
    pub transcript_newer: &'static str,
    pub transcript_older: &'static str,
    /// A long message is shown shortened on its page, with a link to it whole, and back.
    pub transcript_whole: &'static str,
    pub transcript_back: &'static str,
}

impl PageWords {
    /// The label of a granularity choice.
    pub fn granularity(&self, granularity: Granularity) -> &'static str {
        match granularity {
            Granularity::None => self.granularity_none,
            Granularity::Hours1 => self.granularity_1h,
            Granularity::Hours6 => self.granularity_6h,
            Granularity::Hours12 => self.granularity_12h,
            Granularity::Hours24 => self.granularity_24h,
            Granularity::Conversation => self.granularity_conversation,
        }
    }

    /// The granularity choices: each form value with its label.
    pub fn granularities(&self) -> [(&'static str, &'static str); 6] {
        Granularity::ALL.map(|g| (g.as_str(), self.granularity(g)))
    }

    pub fn delivery_status(&self, status: DeliveryStatus) -> &'static str {
        match status {
            DeliveryStatus::Pending => self.delivery_pending,
            DeliveryStatus::Delivered => self.delivery_delivered,
            DeliveryStatus::Failed => self.delivery_failed,
            DeliveryStatus::Expired => self.delivery_expired,
            DeliveryStatus::Discarded => self.delivery_discarded,
        }
    }

    pub fn session_cause(&self, cause: SessionCause) -> &'static str {
        match cause {
            SessionCause::Message => self.cause_message,
            SessionCause::Reply => self.cause_reply,
            SessionCause::Reported => self.cause_reported,
            SessionCause::Earlier => self.cause_earlier,
        }
    }
}
