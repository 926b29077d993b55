//! Configuration: one [`Config`] built either from the environment
//! (dark_knight's variables, [`env`]) or from a TOML file (whacamole's
//! many-apps setup, [`file`]). Both sources only read: each turns what it
//! finds into entries (setting, value, origin — `entry`), and one validator
//! (`build`) checks every value through its row of the settings' table
//! ([`settings`]) or of the knobs' ([`knobs`]), once; problems are collected
//! so `check` can list them all.

mod build;
pub mod describe;
mod entry;
pub mod env;
pub mod file;
pub mod knobs;
pub mod names;
pub(crate) mod settings;
mod toml_value;
pub mod tuning;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::decide::policy::AppPolicy;
use crate::domain::AppName;
use crate::domain::event::EventKind;

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
    /// Public URL of this dynoguard (`DYNOGUARD_URL`), for links in
    /// notifications.
    pub public_url: Option<String>,
    /// Where the operational switches came from, for `check`.
    pub origins: Origins,
    /// Accepted but suspicious: said by `check` and logged at start.
    pub warnings: Vec<Problem>,
}

/// Where each operational switch's value came from (environment over file
/// over default, SPEC §5.1): `PORT (environment)`, `server.port (file)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    pub port: String,
    pub database_url: String,
    pub dashboard_password: String,
    pub dry_run: String,
    pub log_format: String,
    pub heroku_api_url: String,
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

impl LogFormat {
    /// As it is written in `LOG_FORMAT` and `server.log_format`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Logs arrive on `POST /logs[/{app}]`.
    #[default]
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
    /// The settings that changed a type's policy from the built-in defaults,
    /// per type (`*` for the app's defaults), each as written and where:
    /// `WEB_RESTART_THRESHOLD=1024`,
    /// `app.shop.types.web.threshold=900MB (dg.toml:12)`. For `check`.
    pub set_by: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    Slack,
    Webhook,
}

impl NotifyKind {
    /// As it is written in `kind = "slack"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Webhook => "webhook",
        }
    }
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
    /// What a sink hears unless told otherwise: everything an operator must
    /// act on, failures included (a restart that failed protects nobody).
    pub const DEFAULT_EVENTS: [EventKind; 4] = [
        EventKind::Restart,
        EventKind::RestartFailed,
        EventKind::Flapping,
        EventKind::Blind,
    ];

    pub fn wants(&self, kind: EventKind) -> bool {
        if self.events.is_empty() {
            Self::DEFAULT_EVENTS.contains(&kind)
        } else {
            self.events.contains(&kind)
        }
    }

    /// Does this sink want this event? By default also the resolution of an
    /// incident (`recovered`) and, in alert-only mode, what would have been
    /// restarted (`skipped`/`dry_run`) — alert-only must alert.
    pub fn wants_event(&self, e: &crate::domain::event::Event) -> bool {
        use crate::domain::event::Reason;
        if !self.events.is_empty() {
            return self.events.contains(&e.event);
        }
        Self::DEFAULT_EVENTS.contains(&e.event)
            || e.event == EventKind::Recovered
            || (e.event == EventKind::Skipped && e.reason == Some(Reason::DryRun))
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

// Lives in `domain` so the store can redact a URL without importing the
// configuration; re-exported because `check` and `setup` read it from here.
pub use crate::domain::secret::redact_url;

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

/// Problems and warnings as they are found; server-side problems are kept
/// apart because `replay` neither serves nor calls anything.
#[derive(Debug, Default)]
pub(crate) struct Collect {
    pub problems: Vec<Problem>,
    /// Problems with what only `serve` uses (port, store, notifications).
    pub server: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Collect {
    pub fn warn(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem {
            at: at.into(),
            message: message.into(),
        });
    }

    /// The problems that matter for `need`.
    pub fn finish(self, need: env::Need) -> Result<Vec<Problem>, ConfigError> {
        let mut problems = self.problems;
        if need == env::Need::App {
            problems.extend(self.server);
        }
        if problems.is_empty() {
            Ok(self.warnings)
        } else {
            Err(ConfigError(problems))
        }
    }
}

/// `sqlite://PATH` or `postgres://…`; anything else is refused by name
/// (never by value: the URL may hold a password).
pub fn check_store_url(url: &str) -> Result<(), String> {
    if url.starts_with("sqlite:") {
        return Ok(());
    }
    let shown = redact_url(url);
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    if matches!(scheme, "postgres" | "postgresql") {
        return match url::Url::parse(url) {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
            _ => Err(format!(
                "{shown} is not a valid PostgreSQL URL; use postgres://USER:PASSWORD@HOST:5432/DATABASE"
            )),
        };
    }
    Err(format!(
        "{} is not supported; use sqlite://PATH (default sqlite://dynoguard.db) or postgres://USER:PASSWORD@HOST:5432/DATABASE",
        if scheme.is_empty() {
            "a value without a scheme".to_owned()
        } else {
            format!("{scheme}://")
        }
    ))
}

/// The Platform API base URL: https (http only to this machine, for tests
/// and local proxies; anywhere else it is a warning: the token would travel
/// in clear). An error is a problem for `serve` only.
pub(crate) fn check_api_url(raw: &str) -> knobs::Outcome {
    match url::Url::parse(raw) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Ok(None),
        Ok(u) if u.scheme() == "http" && u.host_str().is_some() => {
            Ok((!is_loopback(&u)).then(|| {
                format!(
                    "{} is plain http: the API token would travel unencrypted",
                    redact_url(raw)
                )
            }))
        }
        Ok(u) => Err(format!(
            "{}:// is not allowed; use an https:// URL (default {DEFAULT_HEROKU_API_URL})",
            u.scheme()
        )),
        Err(_) => Err(format!(
            "not a URL; use an https:// URL (default {DEFAULT_HEROKU_API_URL})"
        )),
    }
}

/// A webhook or link URL: http(s) with a host.
pub fn check_http_url(raw: &str) -> Result<(), String> {
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() => Ok(()),
        Ok(u) => Err(format!(
            "{}:// is not allowed; use an https:// URL",
            u.scheme()
        )),
        Err(_) => Err("not a URL; use an https:// URL".into()),
    }
}

pub fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
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

/// The config var that may hold a whole TOML document.
pub const CONFIG_TOML_VAR: &str = "DYNOGUARD_CONFIG_TOML";

/// Loads the configuration from `--config FILE`, else from a TOML document
/// in `DYNOGUARD_CONFIG_TOML`, else from the other config vars.
pub fn load_from(
    path: Option<&std::path::Path>,
    vars: &env::Env,
    need: env::Need,
) -> Result<Config, ConfigError> {
    let inline = vars.get(CONFIG_TOML_VAR).filter(|v| !v.trim().is_empty());
    match (path, inline) {
        (Some(p), Some(_)) => Err(ConfigError(vec![Problem {
            at: CONFIG_TOML_VAR.into(),
            message: format!(
                "set, and a file is given too ({}): keep one of them",
                p.display()
            ),
        }])),
        (Some(p), None) => file::load(p, vars, need),
        (None, Some(doc)) => file::parse_for(CONFIG_TOML_VAR, doc, vars, need),
        (None, None) => env::from_env(vars, need),
    }
}

/// The config vars the settings read (names and aliases, from the one
/// table of settings; the knobs' `{TYPE}_{KNOB}` are not listed): what
/// `app.json` must offer.
pub fn variables() -> impl Iterator<Item = &'static str> {
    settings::SETTINGS
        .iter()
        .flat_map(|s| s.env.iter().copied())
}

/// [`load_from`] with this process's environment.
pub fn load(path: Option<&std::path::Path>, need: env::Need) -> Result<Config, ConfigError> {
    load_from(path, &env::snapshot(), need)
}

/// Problems that only matter for `serve` (a token to restart with). `check`
/// reports them too, so they live here rather than in either command.
pub fn serve_problems(cfg: &Config) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    for a in &cfg.apps {
        if a.api_token.is_none()
            && !(a.policy.defaults.dry_run && a.policy.per_type.values().all(|p| p.dry_run))
        {
            problems.push(Problem {
                at: format!("app {}", a.name),
                message: "no API token (AUTH_TOKEN / HEROKU_API_KEY, or api_token in the file); set one or enable dry run (DYNOGUARD_DRY_RUN=1)".into(),
            });
        }
        if a.source == Source::Drain
            && a.drain_password.is_none()
            && cfg.server.drain_password.is_none()
        {
            problems.push(Problem {
                at: format!("app {}", a.name),
                message: "no drain password (DRAIN_PASSWORD or server.drain_password): the drain endpoint would be open to anyone".into(),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError(problems))
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
