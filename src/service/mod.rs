//! What the admin API and the web page both do, written once: the steps that follow a change to a
//! workspace or a webhook, the webhook URL check, test sends, log downloads, resends and inbound
//! URLs. Each front end reads its input, calls these, and answers in its own form.

pub mod activity;
pub mod deliveries;
pub mod sources;
pub mod webhooks;
pub mod workspaces;
