//! The words of the e-mails a workspace owner gets. A sentence with values inside comes as the
//! pieces around them, in the order the values appear in both languages (workspace name, its id,
//! then the count and the time); labels carry their own padding, so each language aligns its own.

/// One language's words for the owner's e-mails.
pub struct MailWords {
    pub greeting: &'static str,
    /// Said of a missing value: no error was recorded, no chat, no HTTP status.
    pub none_recorded: &'static str,
    pub none: &'static str,
    pub no_status: &'static str,
    /// Before the CLI command that does what the `curl` above it does.
    pub on_the_server: &'static str,

    /// An invitation: the subject and the first sentence around the workspace's name, the role
    /// names, the sentence before the link, and what it is good for.
    pub invite_subject_before: &'static str,
    pub invite_subject_after: &'static str,
    pub invite_intro_before: &'static str,
    pub invite_intro_after: &'static str,
    pub invite_as_admin: &'static str,
    pub invite_as_viewer: &'static str,
    pub invite_link: &'static str,
    pub invite_once: &'static str,

    /// "Forgot your password?": the subject, the sentence before the link, and what it is good for.
    pub reset_subject: &'static str,
    pub reset_link: &'static str,
    pub reset_once: &'static str,

    /// A webhook switched off: the subject around the workspace's name, the first sentence around
    /// the name, its id and the time (UTC), the labelled lines, and the paragraphs after them.
    pub disabled_subject_before: &'static str,
    pub disabled_subject_after: &'static str,
    pub disabled_intro_before: &'static str,
    pub disabled_intro_name_id: &'static str,
    pub disabled_intro_id_at: &'static str,
    pub disabled_intro_after: &'static str,
    pub disabled_label_webhook: &'static str,
    pub disabled_label_reason: &'static str,
    pub disabled_label_last_error: &'static str,
    pub disabled_nothing_lost: &'static str,
    pub disabled_activity: &'static str,

    /// A delivery given up: the subject, the first sentence around the workspace's name, its id,
    /// how many refusals and the time (UTC), the labelled lines, and the paragraphs after them.
    pub gave_up_subject_before: &'static str,
    pub gave_up_subject_after: &'static str,
    pub gave_up_intro_before: &'static str,
    pub gave_up_intro_name_id: &'static str,
    pub gave_up_intro_id_count: &'static str,
    pub gave_up_intro_count_at: &'static str,
    pub gave_up_intro_after: &'static str,
    pub gave_up_label_webhook: &'static str,
    pub gave_up_label_delivery: &'static str,
    pub gave_up_label_chat: &'static str,
    pub gave_up_label_answer: &'static str,
    pub gave_up_explain: &'static str,
    pub gave_up_how_often: &'static str,
}
