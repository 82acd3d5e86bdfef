//! Telling people: the e-mails a workspace owner gets when a webhook is switched off or gives up
//! a delivery, in the workspace's language (one template each, its words from `crate::words`),
//! and the mailer that sends the outbox through the configured SMTP server.

pub mod mailer;

use askama::Template;

use crate::domain::masked_url;
use crate::store::{DisableNotice, Email, GaveUpNotice};
use crate::words::{MailWords, mail_words};

#[derive(Template)]
#[template(path = "disabled_email.txt")]
struct DisabledEmail<'a> {
    m: &'a MailWords,
    n: &'a DisableNotice,
    /// The webhook's URL with any password in it masked: an e-mail is read and kept in places
    /// the daemon does not control.
    webhook_url: String,
    at: String,
    last_error: &'a str,
    public_url: &'a str,
}

/// The e-mail for an automatic disable.
pub fn disabled_email(public_url: &str, notice: &DisableNotice) -> Email {
    let m = mail_words(notice.locale);
    let body = DisabledEmail {
        m,
        n: notice,
        webhook_url: masked_url(&notice.webhook_url),
        at: notice.at.format("%Y-%m-%d %H:%M:%S").to_string(),
        last_error: notice.last_error.as_deref().unwrap_or(m.none_recorded),
        public_url,
    }
    .render()
    .expect("the e-mail template renders");
    let subject =
        format!("{}{}{}", m.disabled_subject_before, notice.workspace_name, m.disabled_subject_after);
    Email { recipient: notice.owner_email.clone(), subject, body }
}

#[derive(Template)]
#[template(path = "invite_email.txt", escape = "none")]
struct InviteEmail<'a> {
    m: &'a MailWords,
    workspace: &'a str,
    admin: bool,
    link: &'a str,
}

/// The e-mail that invites `recipient` to a workspace, in the workspace's language.
pub fn invitation_email(
    locale: crate::domain::Locale,
    workspace: &str,
    recipient: &str,
    admin: bool,
    link: &str,
) -> Email {
    let m = mail_words(locale);
    let body = InviteEmail { m, workspace, admin, link }.render().expect("the e-mail template renders");
    let subject = format!("{}{workspace}{}", m.invite_subject_before, m.invite_subject_after);
    Email { recipient: recipient.to_string(), subject, body }
}

#[derive(Template)]
#[template(path = "reset_email.txt")]
struct ResetEmail<'a> {
    m: &'a MailWords,
    link: &'a str,
}

/// The e-mail with a password-reset link, in `locale`.
pub fn reset_email(locale: crate::domain::Locale, recipient: &str, link: &str) -> Email {
    let m = mail_words(locale);
    let body = ResetEmail { m, link }.render().expect("the e-mail template renders");
    Email { recipient: recipient.to_string(), subject: m.reset_subject.to_string(), body }
}

#[derive(Template)]
#[template(path = "gave_up_email.txt")]
struct GaveUpEmail<'a> {
    m: &'a MailWords,
    n: &'a GaveUpNotice,
    /// As in [`DisabledEmail`]: masked.
    webhook_url: String,
    at: String,
    chat: &'a str,
    answer: String,
    public_url: &'a str,
}

/// The e-mail for a delivery given up after its endpoint rejected it.
pub fn gave_up_email(public_url: &str, notice: &GaveUpNotice) -> Email {
    let m = mail_words(notice.locale);
    let status = notice.status.map(|s| format!("HTTP {s}")).unwrap_or_else(|| m.no_status.into());
    let excerpt: String = notice.response_excerpt.as_deref().unwrap_or("").chars().take(300).collect();
    let answer = if excerpt.trim().is_empty() { status } else { format!("{status}: {}", excerpt.trim()) };
    let body = GaveUpEmail {
        m,
        n: notice,
        webhook_url: masked_url(&notice.webhook_url),
        at: notice.at.format("%Y-%m-%d %H:%M:%S").to_string(),
        chat: notice.chat.as_deref().unwrap_or(m.none),
        answer,
        public_url,
    }
    .render()
    .expect("the e-mail template renders");
    let subject = format!("{}{}{}", m.gave_up_subject_before, notice.workspace_name, m.gave_up_subject_after);
    Email { recipient: notice.owner_email.clone(), subject, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeliveryId, Locale, WebhookId, WorkspaceId};
    use chrono::TimeZone;

    #[test]
    fn the_disable_email_names_workspace_url_reason_error_and_the_way_back() {
        let notice = DisableNotice {
            workspace_id: WorkspaceId::stored("ws_1"),
            workspace_name: "Acme".into(),
            owner_email: "owner@acme.example".into(),
            locale: Locale::En,
            webhook_id: WebhookId::stored("wh_1"),
            webhook_url: "https://hooks.example.com/x".into(),
            reason: "10 consecutive failed attempts".into(),
            last_error: Some("HTTP 500".into()),
            at: chrono::Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap(),
        };
        let email = disabled_email("https://cb.example", &notice);
        assert_eq!(email.recipient, "owner@acme.example");
        assert!(email.subject.contains("Acme"));
        for needle in [
            "Acme",
            "https://hooks.example.com/x",
            "10 consecutive failed attempts",
            "HTTP 500",
            "{\"enabled\": true}",
            "https://cb.example/api/v1/webhooks/wh_1",
        ] {
            assert!(email.body.contains(needle), "{needle:?} missing from\n{}", email.body);
        }
    }

    #[test]
    fn a_japanese_workspace_gets_its_owner_e_mails_in_japanese() {
        let at = chrono::Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
        let disabled = DisableNotice {
            workspace_id: WorkspaceId::stored("ws_1"),
            workspace_name: "アクメ".into(),
            owner_email: "owner@acme.example".into(),
            locale: Locale::Ja,
            webhook_id: WebhookId::stored("wh_1"),
            webhook_url: "https://hooks.example.com/x".into(),
            reason: "10 consecutive failed attempts".into(),
            last_error: None,
            at,
        };
        let email = disabled_email("https://cb.example", &disabled);
        assert_eq!(email.subject, "chatbundle: ワークスペース「アクメ」の Webhook を停止しました");
        for needle in [
            "ご担当者様",
            "2024-03-01 12:00:00(UTC)に停止しました",
            "最後のエラー: 記録なし",
            "{\"enabled\": true}",
        ] {
            assert!(email.body.contains(needle), "{needle:?} missing from\n{}", email.body);
        }
        let gave_up = GaveUpNotice {
            workspace_id: WorkspaceId::stored("ws_1"),
            workspace_name: "アクメ".into(),
            owner_email: "owner@acme.example".into(),
            locale: Locale::Ja,
            webhook_id: WebhookId::stored("wh_1"),
            webhook_url: "https://hooks.example.com/x".into(),
            delivery_id: DeliveryId::stored("msg_1"),
            chat: None,
            status: Some(422),
            response_excerpt: Some("bad field".into()),
            rejections: 3,
            at,
        };
        let email = gave_up_email("https://cb.example", &gave_up);
        assert_eq!(email.subject, "chatbundle: ワークスペース「アクメ」の Webhook が配信を拒否しました");
        for needle in [
            "配信を 3 回拒否",
            "チャット:  なし",
            "応答:      HTTP 422: bad field",
            "/deliveries/msg_1/resend",
        ] {
            assert!(email.body.contains(needle), "{needle:?} missing from\n{}", email.body);
        }
    }
}
