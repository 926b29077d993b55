//! The decision core: observations in, events and restart orders out.
//!
//! Pure: no I/O, no wall clock, no async. Time is the log's own (sanitised by
//! [`engine`]); `serve` and `replay` run exactly this code and differ only in
//! what acts on the orders.

pub mod blind;
pub mod engine;
pub mod policy;
pub mod ring;
pub mod state;
pub mod watch;
