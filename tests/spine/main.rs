//! End-to-end tests of the spine: the daemon on port 0 with a real SQLite file, a real HTTP
//! receiver, and time driven through an injected clock.

mod access;
mod admin;
mod architecture;
mod browser;
mod bundles;
mod channels;
mod conformance;
mod conversations;
mod defences;
mod delivery;
mod faults;
mod helpers;
mod hostile;
mod ingest;
mod lifecycle;
mod media;
mod openapi;
mod operations;
mod package;
mod process;
mod replays_history;
mod replies;
mod scale;
mod supervision;
mod telemetry;
mod web;
mod zapier;
