//! One integration test binary (zero-to-production style): every test spawns
//! dynoguard on 127.0.0.1:0 with its own temp SQLite and its own simulated
//! Heroku API. Nothing here talks to a real Heroku host.

mod helpers;

mod browser;
mod check_cli;
mod dark_knight;
mod dashboard;
mod decisions;
mod deploy;
mod drain;
mod hardening;
mod many_apps;
mod metrics;
mod misconfig;
mod notify;
mod replay_cli;
mod replicas;
mod restart;
mod service;
mod sessions;
mod setup_cli;
mod simulation;
mod store_contract;
mod tidy;
