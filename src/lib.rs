//! chatbundle receives chat messages, buffers them per chat, and delivers them to CRMs and
//! automation tools: each message at once, or bundled per chat per window.
//!
//! The way a message travels is the module list:
//! - [`ingest`]: inbound routes and channel adapters; parses and validates (refusals in its own
//!   [`ingest::error::IngestError`]), then hands messages to the store.
//! - [`store`]: narrow traits with written guarantees, and their implementations (SQLite,
//!   PostgreSQL).
//! - [`render`]: the outbound payloads, frozen when a delivery is created.
//! - [`deliver`]: the worker that claims, signs, sends, records attempts and schedules retries.
//! - [`window`]: window boundaries, and the closer that turns buffered messages into bundles.
//! - [`notify`]: the owner's e-mail when a webhook is switched off, and the mailer.
//! - [`vendors`] and [`sso`]: the outside APIs the daemon calls: the channels' (their media, and
//!   sending replies), and the OpenID Connect provider people may sign in with.
//! - [`reply`]: the worker that sends what the business answers through each chat's channel.
//!
//! The HTTP side, in layers that only look down:
//! - [`http`]: what every route stands on (state, the error answer, authentication, request
//!   bodies, the connection server, health); it knows no route.
//! - [`service`]: what the admin API and the web page both do (the steps after a change, test
//!   sends, log downloads, resends).
//! - [`admin`] (the admin API), [`ingest`] (above) and [`web`] (the admin pages and the public
//!   transcripts): the front ends.
//! - [`routes`]: the composition root, the one place that knows every route and builds the
//!   OpenAPI document.
//!
//! Around them: [`app`] (assembly, supervision and shutdown), [`cli`], [`supervise`] (liveness
//! flags and fatal failures), [`retention`] (the activity log's upkeep), [`config`], [`clock`]
//! (injected time), [`domain`] (shared vocabulary, and the validated inputs every front end
//! takes), [`words`] (everything chatbundle writes for people, one file per language),
//! [`telemetry`], [`files`] and [`fault`] (test-only fault switches). No module depends on one
//! that depends on it; `tests/spine/architecture.rs` checks.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod deliver;
pub mod domain;
pub mod fault;
pub mod files;
pub mod http;
pub mod ingest;
pub mod notify;
pub mod render;
pub mod reply;
pub mod retention;
pub mod routes;
pub mod service;
pub mod sso;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod tls;
pub mod vendors;
pub mod web;
pub mod window;
pub mod words;
