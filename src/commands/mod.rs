//! The subcommands other than `serve`: `check`, `replay`, `setup`, `demo`.

pub mod check;
pub mod demo;
pub mod replay;
pub mod setup;

/// A usage problem with a command-line flag: a [`crate::config::ConfigError`],
/// so that main turns it into exit code 2 like a configuration problem.
fn usage(at: &str, message: impl Into<String>) -> crate::config::ConfigError {
    crate::config::ConfigError(vec![crate::config::Problem {
        at: at.into(),
        message: message.into(),
    }])
}
