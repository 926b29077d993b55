//! dynoguard watches the memory of Heroku dynos and restarts a dyno before it
//! swaps itself into uselessness.
//!
//! # Layout, in the order data flows
//!
//! * [`ingest`] — bytes → [`ingest::LogRecord`]: Logplex drain framing
//!   (octet counts, resynchronisation) and log-session text lines (partial
//!   lines carried across chunks, server-sent events).
//! * [`heroku_line`] — record → [`heroku_line::Observation`]: runtime-metrics
//!   samples (current and legacy), R14/R15, state changes, L10. Everything
//!   else is dropped as cheaply as possible.
//! * [`policy`] — every knob in one struct and the pure restart decision.
//! * [`watch`] — per-app dyno state: observations in, [`events::Event`]s out.
//!   Pure: no I/O, no clock, no async.
//! * [`events`] — typed decision events and their text / JSON / Slack forms.
//! * [`config`] — environment (dark_knight) and TOML (whacamole) configuration.
//! * [`replay`] — a saved log through the same core, the log's clock.
//!
//! The edges, which do I/O: [`heroku_api`] (Platform API client), [`store`]
//! (SQLite / PostgreSQL), [`restart`] (claim → call → record), [`notify`]
//! (Slack, webhooks), [`session`] (log-session streams), [`server`] (axum),
//! [`tasks`] (batched writes, self-test, pruning, quota refresh),
//! [`app`] (wiring; `App::build`), and [`sim`] (the simulated Heroku used by
//! tests, the demo and the benchmarks).

pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod events;
pub mod heroku_api;
pub mod heroku_line;
pub mod ingest;
pub mod notify;
pub mod policy;
pub mod replay;
pub mod report;
pub mod restart;
pub mod server;
pub mod session;
pub mod setup;
pub mod sim;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod watch;
