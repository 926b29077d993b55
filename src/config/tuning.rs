//! The knobs of the machinery rather than of the policy ([`Tuning`]): retry
//! bases, timeouts, the HTTP edge's limits, the notification digest — and the
//! `DYNOGUARD_*` variables an operator may set for some of them
//! ([`TUNING_VARS`]). Here, in `config`, because `check` validates them and
//! `names` lists them as known variables, and neither may import `service`,
//! which only consumes them.

use std::time::Duration;

use super::env::Env;
use super::{ConfigError, Problem, parse_duration};

/// Platform API call timeout unless `DYNOGUARD_API_TIMEOUT` says otherwise.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits of the HTTP edge (defaults in SECURITY.md).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// A keep-alive connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// When many incidents open at once (a bad deploy, a leak in every dyno),
/// the opens past `after` within `window` are sent as one digest.
#[derive(Debug, Clone, Copy)]
pub struct Digest {
    pub after: usize,
    pub window: Duration,
}

impl Default for Digest {
    fn default() -> Self {
        Self {
            after: 5,
            window: Duration::from_secs(600),
        }
    }
}

/// Knobs of the machinery rather than of the policy (tests shorten them).
#[derive(Debug, Clone)]
pub struct Tuning {
    pub restart_attempts: u32,
    pub restart_retry_base: Duration,
    pub notify_retry_base: Duration,
    pub sample_flush: Duration,
    pub session_backoff_base: Duration,
    pub session_backoff_max: Duration,
    /// A log session silent this long is reopened.
    pub session_idle: Duration,
    /// How often quotas are fetched from the formation (apps with % thresholds).
    pub formation_refresh: Duration,
    /// `{host}-{random}`: identifies this replica in claims.
    pub holder: String,
    /// The `{host}` part: leases an earlier run of this host left are taken over.
    pub host: String,
    /// Interface to listen on (tests and the demo use loopback).
    pub bind_ip: std::net::IpAddr,
    /// Platform API call timeout (`DYNOGUARD_API_TIMEOUT`, default 10 s).
    pub api_timeout: Duration,
    /// How long a restart claim holds while its call is in flight.
    pub claim_lease: Duration,
    /// Everything stops within this after SIGTERM (`DYNOGUARD_SHUTDOWN_TIMEOUT`,
    /// default 25 s: Heroku sends SIGKILL 30 s after SIGTERM).
    pub shutdown_timeout: Duration,
    /// The HTTP edge: connection cap and timeouts.
    pub http: Limits,
    /// More incident opens than `after` within `window` are notified as one
    /// digest (`DYNOGUARD_DIGEST_AFTER`, `DYNOGUARD_DIGEST_WINDOW`).
    pub digest: Digest,
    /// How long (wall clock) a restart decision may wait for a later line
    /// of its app before it is acted on anyway (`decide::engine::HOLD` is the
    /// same hold on the log clock, which busy apps reach first).
    pub order_hold: Duration,
    /// The dashboard tells the newest log time instead of the wall clock
    /// (the demo, whose simulated logs run behind it).
    pub page_log_clock: bool,
    /// With several replicas on PostgreSQL, how long the leader's lease
    /// runs (`DYNOGUARD_LEADER_LEASE`, default 10 s): a dead leader is
    /// replaced within it; it is renewed every quarter of it.
    pub leader_lease: Duration,
}

/// One machinery knob an operator may set (SECURITY.md lists them): a
/// duration (`30s`, `2m`) in seconds, or a count.
pub struct TuningVar {
    pub name: &'static str,
    pub default: &'static str,
    pub min: u64,
    pub max: u64,
    /// A count rather than a duration.
    pub count: bool,
    set: fn(&mut Tuning, u64),
}

const fn secs(v: u64) -> Duration {
    Duration::from_secs(v)
}

pub const TUNING_VARS: [TuningVar; 9] = [
    TuningVar {
        name: "DYNOGUARD_LEADER_LEASE",
        default: "10s",
        min: 2,
        max: 120,
        count: false,
        set: |t, v| t.leader_lease = secs(v),
    },
    TuningVar {
        name: "DYNOGUARD_API_TIMEOUT",
        default: "10s",
        min: 1,
        max: 120,
        count: false,
        set: |t, v| t.api_timeout = secs(v),
    },
    TuningVar {
        name: "DYNOGUARD_SHUTDOWN_TIMEOUT",
        default: "25s",
        min: 1,
        max: 300,
        count: false,
        set: |t, v| t.shutdown_timeout = secs(v),
    },
    TuningVar {
        name: "DYNOGUARD_HEADER_TIMEOUT",
        default: "10s",
        min: 1,
        max: 300,
        count: false,
        set: |t, v| t.http.header_timeout = secs(v),
    },
    TuningVar {
        name: "DYNOGUARD_IDLE_TIMEOUT",
        default: "75s",
        min: 1,
        max: 3600,
        count: false,
        set: |t, v| t.http.idle_timeout = secs(v),
    },
    TuningVar {
        name: "DYNOGUARD_BODY_TIMEOUT",
        default: "30s",
        min: 1,
        max: 600,
        count: false,
        set: |t, v| t.http.body_timeout = secs(v),
    },
    TuningVar {
        name: "DYNOGUARD_MAX_CONNECTIONS",
        default: "1024",
        min: 16,
        max: 100_000,
        count: true,
        set: |t, v| t.http.max_connections = usize::try_from(v).unwrap_or(usize::MAX),
    },
    TuningVar {
        name: "DYNOGUARD_DIGEST_AFTER",
        default: "5",
        min: 1,
        max: 1000,
        count: true,
        set: |t, v| t.digest.after = usize::try_from(v).unwrap_or(usize::MAX),
    },
    TuningVar {
        name: "DYNOGUARD_DIGEST_WINDOW",
        default: "10m",
        min: 10,
        max: 86_400,
        count: false,
        set: |t, v| t.digest.window = secs(v),
    },
];

impl Tuning {
    /// The defaults, with the operator's `DYNOGUARD_*` machinery variables;
    /// every bad value is reported with its allowed range.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut t = Self::default();
        let mut problems = Vec::new();
        for var in &TUNING_VARS {
            let Some(raw) = env.get(var.name) else {
                continue;
            };
            let value = if var.count {
                raw.trim().parse::<u64>().ok()
            } else {
                parse_duration(raw).and_then(|d| u64::try_from(d.as_secs()).ok())
            };
            match value.filter(|v| (var.min..=var.max).contains(v)) {
                Some(v) => (var.set)(&mut t, v),
                None => {
                    let unit = if var.count { "" } else { "s" };
                    problems.push(Problem {
                        at: var.name.into(),
                        message: format!(
                            "{raw:?} is not valid: use {}{unit} to {}{unit} (default {})",
                            var.min, var.max, var.default
                        ),
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(ConfigError(problems))
        }
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            restart_attempts: 4,
            restart_retry_base: Duration::from_secs(1),
            notify_retry_base: Duration::from_secs(1),
            sample_flush: Duration::from_secs(2),
            session_backoff_base: Duration::from_secs(1),
            session_backoff_max: Duration::from_secs(60),
            session_idle: Duration::from_secs(300),
            formation_refresh: Duration::from_secs(600),
            holder: format!("{}-{:08x}", hostname(), fastrand::u32(..)),
            host: hostname(),
            bind_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            api_timeout: API_TIMEOUT,
            claim_lease: Duration::from_secs(120),
            shutdown_timeout: Duration::from_secs(25),
            http: Limits::default(),
            order_hold: Duration::from_secs(2),
            digest: Digest::default(),
            page_log_clock: false,
            leader_lease: Duration::from_secs(10),
        }
    }
}

fn hostname() -> String {
    std::env::var("DYNO")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "dynoguard".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> crate::config::env::Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn machinery_variables_are_read_and_checked() {
        let t = Tuning::from_env(&env(&[
            ("DYNOGUARD_API_TIMEOUT", "3s"),
            ("DYNOGUARD_SHUTDOWN_TIMEOUT", "1m"),
            ("DYNOGUARD_MAX_CONNECTIONS", "64"),
        ]))
        .unwrap();
        assert_eq!(t.api_timeout, Duration::from_secs(3));
        assert_eq!(t.shutdown_timeout, Duration::from_secs(60));
        assert_eq!(t.http.max_connections, 64);
        assert_eq!(t.http.idle_timeout, Duration::from_secs(75), "default kept");

        let e = Tuning::from_env(&env(&[
            ("DYNOGUARD_SHUTDOWN_TIMEOUT", "10m"),
            ("DYNOGUARD_MAX_CONNECTIONS", "lots"),
        ]))
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(
                r#"DYNOGUARD_SHUTDOWN_TIMEOUT: "10m" is not valid: use 1s to 300s (default 25s)"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"DYNOGUARD_MAX_CONNECTIONS: "lots" is not valid: use 16 to 100000 (default 1024)"#
            ),
            "{text}"
        );
    }
}
