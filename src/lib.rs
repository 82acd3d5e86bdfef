//! chatbundle receives chat messages, buffers them per chat, and delivers them to CRMs and
//! automation tools: each message at once, or bundled per chat per window.
//!
//! The way a message travels is the module list:
//! - [`ingest`]: inbound routes; parses and validates, then hands messages to the store.
//! - [`store`]: narrow traits with written guarantees, and their implementations (SQLite).
//! - [`render`]: the outbound payloads, frozen when a delivery is created.
//! - [`deliver`]: the worker that claims, signs, sends, records attempts and schedules retries.
//! - [`window`]: window boundaries, and the closer that turns buffered messages into bundles.
//! - [`notify`]: the owner's e-mail when a webhook is switched off, and the mailer.
//! - [`admin`]: the admin API (workspaces, webhooks, sources, activity).
//! - [`web`]: the admin web page and the public chat transcripts.
//!
//! Around them: [`api`] (router, errors, auth), [`app`] (assembly, supervision and shutdown),
//! [`supervise`] (liveness flags and fatal failures), [`config`], [`clock`] (injected time),
//! [`domain`] (shared vocabulary), [`telemetry`], [`cli`] and [`fault`] (test-only fault switches).

#![forbid(unsafe_code)]

pub mod activity;
pub mod admin;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod deliver;
pub mod domain;
pub mod fault;
pub mod files;
pub mod ingest;
pub mod notify;
pub mod render;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod web;
pub mod window;
