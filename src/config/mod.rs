//! Configuration: one [`Config`] built either from the environment
//! (dark_knight's variables, [`env`]) or from a TOML file (whacamole's
//! many-apps setup, [`file`]). Every value is parsed and checked here, once;
//! problems are collected so `check` can list them all.

pub mod env;
pub mod file;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::decide::events::EventKind;
use crate::decide::policy::AppPolicy;
use crate::domain::AppName;

pub const DEFAULT_PORT: u16 = 5000;
pub const DEFAULT_DATABASE_URL: &str = "sqlite://dynoguard.db";
pub const DEFAULT_HEROKU_API_URL: &str = "https://api.heroku.com";
/// Largest drain body accepted (SPEC §4.1).
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// `sqlite://path` or `postgres://…` (may hold a password: never printed).
    pub database_url: SecretString,
    pub heroku_api_url: String,
    pub log_format: LogFormat,
    pub apps: Vec<AppConfig>,
    pub notify: Vec<NotifyConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub port: u16,
    pub drain_password: Option<SecretString>,
    pub dashboard_password: Option<SecretString>,
    pub body_limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Logs arrive on `POST /logs[/{app}]`.
    Drain,
    /// dynoguard opens log sessions itself.
    LogSession,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::LogSession => "log-session",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub name: AppName,
    pub api_token: Option<SecretString>,
    pub source: Source,
    /// `Logplex-Drain-Token` that identifies this app on a shared `/logs`.
    pub drain_token: Option<String>,
    /// Per-app drain password; falls back to the server's.
    pub drain_password: Option<SecretString>,
    pub policy: AppPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    Slack,
    Webhook,
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub kind: NotifyKind,
    pub url: SecretString,
    /// Event kinds delivered; empty = the default set (restarts, failures,
    /// flapping).
    pub events: Vec<EventKind>,
    /// HMAC-SHA256 key for `X-Dynoguard-Signature` (webhooks).
    pub secret: Option<SecretString>,
}

impl NotifyConfig {
    pub const DEFAULT_EVENTS: [EventKind; 3] = [
        EventKind::Restart,
        EventKind::RestartFailed,
        EventKind::Flapping,
    ];

    pub fn wants(&self, kind: EventKind) -> bool {
        if self.events.is_empty() {
            Self::DEFAULT_EVENTS.contains(&kind)
        } else {
            self.events.contains(&kind)
        }
    }
}

impl Config {
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name.as_str() == name)
    }

    /// The store URL with any password replaced by `***`.
    pub fn database_url_redacted(&self) -> String {
        redact_url(self.database_url.expose_secret())
    }
}

/// A URL fit to print: the password, secret-looking query parameters and
/// the fragment become `***` (`postgres://user:***@host/db?sslmode=require`).
/// Parsed with a real URL parser, so a password holding `@ : / ? # %` never
/// leaks a tail; a URL that does not parse is not shown at all.
pub fn redact_url(raw: &str) -> String {
    const SECRET_KEYS: [&str; 7] = ["pass", "pwd", "secret", "token", "key", "auth", "sig"];
    let Ok(mut url) = url::Url::parse(raw) else {
        let scheme = raw
            .split_once("://")
            .map(|(s, _)| s)
            .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+'))
            .unwrap_or("?");
        return format!("{scheme}://<unparseable URL, not shown>");
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = SECRET_KEYS.iter().any(|s| lower.contains(s));
                (
                    k.into_owned(),
                    if secret { "***".into() } else { v.into_owned() },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if url.fragment().is_some() {
        url.set_fragment(Some("***"));
    }
    url.to_string().replace("%2A%2A%2A", "***")
}

/// One configuration problem: where, what is wrong, what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The variable (`WEB_RESTART_THRESHOLD`) or `file:line: key`.
    pub at: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// `600` (seconds), `30s`, `10m`, `1h`, `1h30m`, `2d`.
pub fn parse_duration(s: &str) -> Option<jiff::SignedDuration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<u64>() {
        return i64::try_from(secs)
            .ok()
            .map(jiff::SignedDuration::from_secs);
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(jiff::SignedDuration::from_secs(total))
}

/// `10m` style display for `check`.
pub fn format_duration(d: jiff::SignedDuration) -> String {
    let s = d.as_secs();
    if s != 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s != 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Loads the configuration from `--config FILE`, or else the environment.
pub fn load(path: Option<&std::path::Path>, need: env::Need) -> Result<Config, ConfigError> {
    let vars = env::snapshot();
    match path {
        Some(p) => file::load(p, &vars),
        None => env::from_env(&vars, need),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert!(parse_duration("10 minutes").is_none());
        assert!(parse_duration("m").is_none());
        assert!(parse_duration("-5").is_none());
        assert_eq!(format_duration(jiff::SignedDuration::from_secs(600)), "10m");
    }

    #[test]
    fn secrets_with_every_special_character_never_leak() {
        for secret in [
            "xY7@Zq",
            "xY7:Zq",
            "xY7%Zq",
            "xY7/Zq",
            "xY7?Zq",
            "xY7#Zq",
            "xY7@:/?#%Zq",
        ] {
            for url in [
                format!("postgres://user:{secret}@db.example.com:5432/d"),
                format!("postgres://db.example.com/d?sslmode=require&password={secret}"),
                format!("https://user:{secret}@drain.example.com/logs"),
            ] {
                let shown = redact_url(&url);
                // Neither end of the secret, however the URL was cut.
                assert!(
                    !shown.contains("xY7") && !shown.contains("Zq"),
                    "{url} → {shown}"
                );
            }
        }
        assert_eq!(
            redact_url("postgres://u:p@ss@h:5432/d?sslmode=require&password=x"),
            "postgres://u:***@h:5432/d?sslmode=require&password=***"
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://dynoguard.db"), "sqlite://dynoguard.db");
    }
}
