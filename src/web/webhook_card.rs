//! A webhook's card on the workspace's page: its state, its form and the form's checks, its latest
//! activity and the deliveries it gave up. The workspace's page draws the cards; the webhook's
//! routes ([`super::webhooks`]) check the forms.

use serde::Deserialize;

use super::{FormErrors, keep};
use crate::domain::{
    Backlog, DeliveryStatus, DeliveryTimeout, Event, Granularity, Media, NoteMaxChars, OffMode, Switch,
    WebhookUrl,
};
use crate::service;
use crate::service::AppState;
use crate::service::activity::TestResult;
use crate::store::{ActivityRow, DeliveryInfo, StoreResult, Webhook, Workspace};
use crate::words::{PageWords, page_words};

#[derive(Debug, Default, Deserialize, Clone)]
pub struct WebhookForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub granularity: String,
    /// A checkbox: present ("on") when ticked.
    pub enabled: Option<String>,
    /// Characters of note per bundle part; empty leaves it as it is.
    #[serde(default)]
    pub note_max_chars: String,
    /// `skip` or `placeholder`; empty leaves it as it is.
    #[serde(default)]
    pub media: String,
    /// What it does while off: `pause` (empty means that too) or `stop`.
    #[serde(default)]
    pub off_mode: String,
    /// Switched on again: `send` what waited (empty means that too) or `discard` it.
    #[serde(default)]
    pub backlog: String,
    /// Present on the full forms, which carry the events and the timeout (the short re-enable
    /// form leaves both as they are).
    pub full: Option<String>,
    /// The events' checkboxes: present when ticked.
    pub event_messages: Option<String>,
    pub event_session_status: Option<String>,
    /// How long one call may take (`10s`); empty: the daemon's setting.
    #[serde(default)]
    pub timeout: String,
    /// Which button: "save" or "test".
    pub(super) action: Option<String>,
    #[serde(skip)]
    pub(super) errors: FormErrors,
}

/// A webhook on the page: its state, its form, what it last did.
pub struct WebhookCard {
    pub(super) id: String,
    /// The granularity in force, as a sentence.
    pub(super) effective: String,
    /// The granularity choices: the workspace's default first, then each one by name.
    pub(super) choices: Vec<(&'static str, String)>,
    /// Deliveries given up or expired, which can be sent again.
    pub(super) failed: Vec<FailedLine>,
    pub(super) enabled: bool,
    /// Off in "stop" mode: taking nothing.
    pub(super) stopped: bool,
    /// Deliveries waiting to be sent.
    pub(super) waiting: u64,
    pub(super) disabled_reason: Option<String>,
    pub(super) has_secret: bool,
    pub(super) consecutive_failures: u32,
    pub form: WebhookForm,
    pub(super) activity: Vec<ActivityLine>,
    pub test: Option<TestResult>,
    pub new_secret: Option<String>,
    pub saved: bool,
}

pub struct FailedLine {
    pub(super) id: String,
    pub(super) status: &'static str,
    pub(super) answer: String,
    pub(super) finished: String,
}

impl FailedLine {
    fn from(d: &DeliveryInfo, w: &PageWords) -> Self {
        let answer = match (d.last_status, &d.last_error) {
            (Some(status), _) => format!("HTTP {status}"),
            (None, Some(error)) => error.chars().take(120).collect(),
            (None, None) => String::new(),
        };
        FailedLine {
            id: d.id.to_string(),
            status: w.delivery_status(d.status),
            answer,
            finished: d.finished_at.map(|t| t.format(w.time).to_string()).unwrap_or_default(),
        }
    }
}

pub struct ActivityLine {
    pub(super) at: String,
    pub(super) kind: String,
    pub(super) status: String,
    pub(super) duration: String,
    /// Who did it (`operator`, `token:<name>`); empty for what the daemon did.
    pub(super) actor: String,
    pub(super) note: String,
}

impl ActivityLine {
    fn from(row: &ActivityRow, w: &PageWords) -> Self {
        let note = row
            .error
            .clone()
            .or_else(|| row.response_excerpt.clone())
            .or_else(|| row.detail.as_ref().map(|d| d.to_string()))
            .unwrap_or_default();
        ActivityLine {
            at: row.at.format(w.time_seconds).to_string(),
            kind: row.kind.clone(),
            status: row.status.map(|s| s.to_string()).unwrap_or_default(),
            duration: row.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
            actor: row.actor.clone().unwrap_or_default(),
            note: note.chars().take(200).collect(),
        }
    }
}

/// The value of the granularity choice that follows the workspace.
pub const FOLLOW_WORKSPACE: &str = "default";

/// The granularity choices of a webhook form, the workspace's default first, in its language.
pub fn choices(ws: &Workspace) -> Vec<(&'static str, String)> {
    let w = page_words(ws.locale);
    let default = w.granularity(ws.granularity);
    let follow = format!("{}{default}{}", w.workspace_default_before, w.workspace_default_after);
    std::iter::once((FOLLOW_WORKSPACE, follow))
        .chain(w.granularities().map(|(value, label)| (value, label.to_string())))
        .collect()
}

/// A granularity choice: `None` follows the workspace.
fn chosen_granularity(value: &str) -> Result<Option<Granularity>, String> {
    match value {
        FOLLOW_WORKSPACE | "" => Ok(None),
        other => other.parse().map(Some),
    }
}

impl WebhookCard {
    /// The card as stored: the webhook, its latest activity and the deliveries it gave up.
    pub async fn load(state: &AppState, ws: &Workspace, webhook: &Webhook) -> StoreResult<WebhookCard> {
        let w = page_words(ws.locale);
        let activity = state.store.activity(&webhook.id, None, 10).await?;
        let activity = activity.iter().map(|row| ActivityLine::from(row, w)).collect();
        let mut card = WebhookCard::new(ws, webhook, activity);
        card.waiting = state.store.pending_count(&webhook.id).await?;
        for status in [DeliveryStatus::Failed, DeliveryStatus::Expired] {
            let given_up = state.store.list_deliveries(&webhook.id, Some(status), 10, 0).await?;
            card.failed.extend(given_up.iter().map(|d| FailedLine::from(d, w)));
        }
        Ok(card)
    }

    fn new(ws: &Workspace, webhook: &Webhook, activity: Vec<ActivityLine>) -> WebhookCard {
        let w = page_words(ws.locale);
        let label = w.granularity(webhook.granularity.unwrap_or(ws.granularity));
        let after =
            if webhook.granularity.is_none() { w.effective_follows_after } else { w.effective_own_after };
        WebhookCard {
            id: webhook.id.to_string(),
            effective: format!("{label}{after}"),
            choices: choices(ws),
            failed: Vec::new(),
            enabled: webhook.enabled,
            stopped: webhook.stopped,
            waiting: 0,
            disabled_reason: webhook.disabled_reason.clone(),
            has_secret: webhook.secret.is_some(),
            consecutive_failures: webhook.consecutive_failures,
            form: WebhookForm::from(webhook),
            activity,
            test: None,
            new_secret: None,
            saved: false,
        }
    }
}

impl WebhookForm {
    /// The form as the page shows a stored webhook (its URL's password masked).
    pub(super) fn from(webhook: &Webhook) -> WebhookForm {
        WebhookForm {
            url: webhook.url.masked(),
            granularity: webhook.granularity.map(|g| g.as_str()).unwrap_or(FOLLOW_WORKSPACE).into(),
            enabled: webhook.enabled.then(|| "on".into()),
            note_max_chars: webhook.note_max_chars.get().to_string(),
            media: webhook.media.as_str().into(),
            off_mode: if webhook.stopped { "stop" } else { "pause" }.into(),
            event_messages: webhook.events.contains(&Event::Messages).then(|| "on".into()),
            event_session_status: webhook.events.contains(&Event::SessionStatus).then(|| "on".into()),
            timeout: webhook.timeout.map(|t| humantime::format_duration(t).to_string()).unwrap_or_default(),
            ..WebhookForm::default()
        }
    }

    /// Checks the URL (with the SSRF guard), the granularity (`None`: follow the workspace), the
    /// note length and the media choice (`None`: as they are).
    pub(super) async fn check(&mut self, state: &AppState) -> Option<Checked> {
        let url = service::webhooks::checked_url(state, &self.url).await;
        let url = keep(&mut self.errors, "url", url);
        let granularity = keep(&mut self.errors, "granularity", chosen_granularity(&self.granularity));
        let note = match self.note_max_chars.trim() {
            "" => Some(None),
            given => keep(&mut self.errors, "note_max_chars", given.parse::<NoteMaxChars>()).map(Some),
        };
        let media = match self.media.trim() {
            "" => Some(None),
            given => keep(&mut self.errors, "media", given.parse::<Media>()).map(Some),
        };
        let switch = match (self.enabled.is_some(), self.off_mode.trim(), self.backlog.trim()) {
            (true, _, "" | "send") => Some(Switch::On(Backlog::Send)),
            (true, _, "discard") => Some(Switch::On(Backlog::Discard)),
            (false, "" | "pause", _) => Some(Switch::Off(OffMode::Pause)),
            (false, "stop", _) => Some(Switch::Off(OffMode::Stop)),
            (true, _, _) => keep(&mut self.errors, "backlog", Err("must be send or discard")),
            (false, _, _) => keep(&mut self.errors, "off_mode", Err("must be pause or stop")),
        };
        let (events, timeout) = match self.full {
            None => (Some(None), Some(None)),
            Some(_) => {
                let mut events = Vec::new();
                if self.event_messages.is_some() {
                    events.push(Event::Messages);
                }
                if self.event_session_status.is_some() {
                    events.push(Event::SessionStatus);
                }
                let events = match events.is_empty() {
                    true => keep(&mut self.errors, "events", Err("choose at least one")),
                    false => Some(Some(events)),
                };
                let timeout = match self.timeout.trim() {
                    "" => Some(Some(None)),
                    given => keep(&mut self.errors, "timeout", given.parse::<DeliveryTimeout>())
                        .map(|t| Some(Some(t.duration()))),
                };
                (events, timeout)
            }
        };
        Some(Checked {
            url: url?,
            granularity: granularity?,
            note_max_chars: note?,
            media: media?,
            switch: switch?,
            events: events?,
            timeout: timeout?,
        })
    }
}

/// A webhook form that passed its checks.
pub struct Checked {
    pub url: WebhookUrl,
    pub granularity: Option<Granularity>,
    pub note_max_chars: Option<NoteMaxChars>,
    pub media: Option<Media>,
    /// On (and what becomes of what waited) or off (and how).
    pub switch: Switch,
    /// What it takes; `None`: as it is.
    pub events: Option<Vec<Event>>,
    /// Its timeout (`Some(None)`: the daemon's setting); `None`: as it is.
    pub timeout: Option<Option<std::time::Duration>>,
}
