//! Telling people: the e-mails a workspace owner gets when a webhook is switched off or gives up
//! a delivery, and the mailer that sends the outbox through the configured SMTP server.

pub mod mailer;

use askama::Template;

use crate::store::{DisableNotice, Email, GaveUpNotice};

#[derive(Template)]
#[template(path = "disabled_email.txt")]
struct DisabledEmail<'a> {
    n: &'a DisableNotice,
    at: String,
    last_error: &'a str,
    public_url: &'a str,
}

/// The e-mail for an automatic disable.
pub fn disabled_email(public_url: &str, notice: &DisableNotice) -> Email {
    let body = DisabledEmail {
        n: notice,
        at: notice.at.format("%Y-%m-%d %H:%M:%S").to_string(),
        last_error: notice.last_error.as_deref().unwrap_or("none recorded"),
        public_url,
    }
    .render()
    .expect("the e-mail template renders");
    Email {
        recipient: notice.owner_email.clone(),
        subject: format!("chatbundle: a webhook of \"{}\" was switched off", notice.workspace_name),
        body,
    }
}

#[derive(Template)]
#[template(path = "gave_up_email.txt")]
struct GaveUpEmail<'a> {
    n: &'a GaveUpNotice,
    at: String,
    chat: &'a str,
    answer: String,
    public_url: &'a str,
}

/// The e-mail for a delivery given up after its endpoint rejected it.
pub fn gave_up_email(public_url: &str, notice: &GaveUpNotice) -> Email {
    let status = notice.status.map(|s| format!("HTTP {s}")).unwrap_or_else(|| "no status".into());
    let excerpt: String = notice.response_excerpt.as_deref().unwrap_or("").chars().take(300).collect();
    let answer = if excerpt.trim().is_empty() { status } else { format!("{status}: {}", excerpt.trim()) };
    let body = GaveUpEmail {
        n: notice,
        at: notice.at.format("%Y-%m-%d %H:%M:%S").to_string(),
        chat: notice.chat.as_deref().unwrap_or("none"),
        answer,
        public_url,
    }
    .render()
    .expect("the e-mail template renders");
    Email {
        recipient: notice.owner_email.clone(),
        subject: format!("chatbundle: a webhook of \"{}\" refused a delivery", notice.workspace_name),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_disable_email_names_workspace_url_reason_error_and_the_way_back() {
        let notice = DisableNotice {
            workspace_id: "ws_1".into(),
            workspace_name: "Acme".into(),
            owner_email: "owner@acme.example".into(),
            webhook_id: "wh_1".into(),
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
}
