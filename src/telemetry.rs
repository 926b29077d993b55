//! Logging set-up: readable text (what `heroku logs` shows) or JSON lines.

pub mod counters;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
pub use counters::Counters;

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

/// Lets a recurring log line through at most once per interval, and says
/// how many were held back since. Shared by concurrent callers.
#[derive(Debug)]
pub struct Throttle {
    every: std::time::Duration,
    /// Milliseconds since `epoch` of the last line let through (0: none yet).
    last: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
}

impl Throttle {
    pub fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            last: Default::default(),
            suppressed: Default::default(),
            epoch: std::time::Instant::now(),
        }
    }

    /// `Some(held back since the last one)` if a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        // +1 so that "never logged" (0) differs from "logged at the start".
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.every.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_through_per_interval_and_counts_the_rest() {
        let t = Throttle::new(std::time::Duration::from_millis(50));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(t.allow(), Some(2));
    }
}
