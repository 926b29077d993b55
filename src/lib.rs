//! dynoguard watches the memory of Heroku dynos and restarts a dyno before it
//! swaps itself into uselessness.
//!
//! # Layout: ingest → decide → act, with the service and the commands around it
//!
//! * [`ingest`] — bytes → [`ingest::LogRecord`] → [`ingest::heroku_line::Observation`]:
//!   Logplex drain framing (octet counts trusted when they land, resync when
//!   they do not), log-session text lines, and the platform lines that matter
//!   (runtime-metrics samples, R14/R15, state changes, L10/L11).
//! * [`decide`] — the pure core: every knob ([`decide::policy::Policy`]), the
//!   per-app dyno state ([`decide::watch::Watcher`]), the events it says, and
//!   the [`decide::engine::Engine`] that turns observations into events and
//!   restart orders on the log's own clock. No I/O, no wall clock, no async.
//!   `serve`, `replay` and `demo` all decide through this one path.
//! * [`act`] — what the orders do: the restarter (re-check → claim → call →
//!   record), the Platform API client, the notifiers and the reporter.
//! * [`service`] — `dynoguard serve`: the wiring (`App::build`), the HTTP
//!   server, log sessions and the background tasks.
//! * [`commands`] — the other subcommands: `check`, `replay`, `setup`, `demo`.
//!
//! Beside the pipeline: [`domain`] (newtypes parsed once), [`config`]
//! (environment and TOML), [`store`] (SQLite / PostgreSQL), [`sim`] (the
//! simulated Heroku used by tests, the demo and the benchmarks), [`cli`] and
//! [`telemetry`] (logging and the `/metrics` counters).
//!
//! Imports run one way: `ingest`, `decide` and `domain` never reach into
//! `act`, `store`, `service`, `commands` or `config`; `act` never reaches
//! into `service`, `service` never into `commands`. The full rule and the
//! table of allowed imports are in ARCHITECTURE.md ("Layers"), held by the
//! tidy test `tests/api/tidy.rs`.

pub mod act;
pub mod cli;
pub mod commands;
pub mod config;
pub mod decide;
pub mod domain;
pub mod ingest;
pub mod service;
pub mod sim;
pub mod store;
pub mod telemetry;
