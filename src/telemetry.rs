//! Logging set-up: readable text (what `heroku logs` shows) or JSON lines.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The service's log: stdout, text or JSON (`LOG_FORMAT`), level from `RUST_LOG`.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal as _;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().flatten_event(true).try_init(),
    };
}

/// Commands whose stdout is data (replay, setup): logs go to stderr.
pub fn init_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// The demo shows dynoguard's events (and warnings) as they happen.
pub fn init_demo(color: bool) {
    let _ = tracing_subscriber::fmt()
        .with_ansi(color)
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,dynoguard::act::report=info")),
        )
        .with_target(false)
        .without_time()
        .try_init();
}
