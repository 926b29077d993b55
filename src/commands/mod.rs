//! The subcommands other than `serve`: `check`, `replay`, `setup`, `demo`.

pub mod check;
pub mod demo;
pub mod replay;
pub mod setup;
