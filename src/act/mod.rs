//! The edges that act on decisions: the restarter, the Platform API client,
//! the notifiers, and the reporter that sends events to the log, the store
//! and the notifiers.

pub mod heroku_api;
pub mod notify;
pub mod report;
pub mod restart;
