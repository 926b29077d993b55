//! Configuration from environment variables, dark_knight compatible
//! (SPEC §5.1): a dark_knight deployment works unchanged.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::{
    AppConfig, Config, ConfigError, DEFAULT_BODY_LIMIT, DEFAULT_DATABASE_URL,
    DEFAULT_HEROKU_API_URL, DEFAULT_PORT, LogFormat, NotifyConfig, NotifyKind, Problem,
    ServerConfig, Source, parse_duration,
};
use crate::decide::policy::{AppPolicy, DynoTypes, Policy, Threshold};
use crate::domain::AppName;

/// A snapshot of the environment (tests pass their own).
pub type Env = BTreeMap<String, String>;

pub fn snapshot() -> Env {
    std::env::vars().collect()
}

/// What the caller needs from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `serve`/`check`: the watched app must be named.
    App,
    /// `replay`: no app needed (events are labelled `app` when unset).
    Nothing,
}

/// The name used for the app in replay output when `APP_ID_OR_NAME` is unset.
pub const REPLAY_APP: &str = "app";

fn get<'a>(env: &'a Env, key: &str) -> Option<&'a str> {
    env.get(key)
        .map(String::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn flag(env: &Env, key: &str, problems: &mut Vec<Problem>) -> Option<bool> {
    let v = get(env, key)?;
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => {
            problems.push(Problem {
                at: key.to_owned(),
                message: format!("{v:?} is not a boolean; use 1/true/yes/on or 0/false/no/off"),
            });
            None
        }
    }
}

fn secret(env: &Env, key: &str) -> Option<SecretString> {
    get(env, key).map(|v| SecretString::from(v.to_owned()))
}

/// `WEB` for `web`, `SLOW_WORKER` for `slow_worker` or `slow-worker`.
pub fn type_prefix(process_type: &str) -> String {
    process_type.to_ascii_uppercase().replace('-', "_")
}

pub fn from_env(env: &Env, need: Need) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();

    let app_name = match (get(env, "APP_ID_OR_NAME"), need) {
        (Some(v), _) => AppName::parse(v)
            .map_err(|e| {
                problems.push(Problem {
                    at: "APP_ID_OR_NAME".into(),
                    message: e.to_string(),
                })
            })
            .ok(),
        (None, Need::App) => {
            problems.push(Problem {
                at: "APP_ID_OR_NAME".into(),
                message:
                    "required: the name or id of the Heroku app to watch (or pass --config FILE)"
                        .into(),
            });
            None
        }
        (None, Need::Nothing) => AppName::parse(REPLAY_APP).ok(),
    };

    let port = match get(env, "PORT") {
        None => DEFAULT_PORT,
        Some(v) => v.parse().unwrap_or_else(|_| {
            problems.push(Problem {
                at: "PORT".into(),
                message: format!("{v:?} is not a port number (1-65535)"),
            });
            DEFAULT_PORT
        }),
    };

    let log_format = match get(env, "LOG_FORMAT")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(v) => {
            problems.push(Problem {
                at: "LOG_FORMAT".into(),
                message: format!("{v:?} is not allowed; use text or json"),
            });
            LogFormat::Text
        }
    };

    let source = match get(env, "DYNOGUARD_SOURCE") {
        None | Some("drain") => Source::Drain,
        Some("log-session") => Source::LogSession,
        Some(v) => {
            problems.push(Problem {
                at: "DYNOGUARD_SOURCE".into(),
                message: format!("{v:?} is not allowed; use drain or log-session"),
            });
            Source::Drain
        }
    };

    let dry_run = flag(env, "DYNOGUARD_DRY_RUN", &mut problems).unwrap_or(false);
    let types = get(env, "DYNO_TYPES")
        .map(|v| DynoTypes::parse_list(v.split(',')))
        .unwrap_or_default();
    if types == DynoTypes::List(Vec::new()) {
        problems.push(Problem {
            at: "DYNO_TYPES".into(),
            message: "lists no process type; use e.g. web,worker or *".into(),
        });
    }

    let defaults = Policy {
        dry_run,
        ..Policy::default()
    };
    let mut per_type = BTreeMap::new();
    if let DynoTypes::List(list) = &types {
        for ty in list {
            if let Some(p) = type_policy(env, ty, &defaults, &mut problems) {
                per_type.insert(ty.clone(), p);
            }
        }
    }

    let mut notify = Vec::new();
    if let Some(url) = get(env, "SLACK_WEBHOOK_URL") {
        if url.starts_with("https://") || url.starts_with("http://") {
            notify.push(NotifyConfig {
                kind: NotifyKind::Slack,
                url: SecretString::from(url.to_owned()),
                events: vec![crate::decide::events::EventKind::Restart],
                secret: None,
            });
        } else {
            problems.push(Problem {
                at: "SLACK_WEBHOOK_URL".into(),
                message: "must be an http(s) URL".into(),
            });
        }
    }

    let drain_password = secret(env, "DRAIN_PASSWORD");
    let dashboard_password = secret(env, "DASHBOARD_PASSWORD").or_else(|| drain_password.clone());
    let api_token = secret(env, "AUTH_TOKEN").or_else(|| secret(env, "HEROKU_API_KEY"));

    if !problems.is_empty() {
        return Err(ConfigError(problems));
    }
    let apps = app_name
        .map(|name| AppConfig {
            name,
            api_token,
            source,
            drain_token: get(env, "DRAIN_TOKEN").map(str::to_owned),
            drain_password: None,
            policy: AppPolicy {
                dyno_types: types,
                defaults,
                per_type,
            },
        })
        .into_iter()
        .collect();
    Ok(Config {
        server: ServerConfig {
            port,
            drain_password,
            dashboard_password,
            body_limit: DEFAULT_BODY_LIMIT,
        },
        database_url: SecretString::from(
            get(env, "DATABASE_URL")
                .unwrap_or(DEFAULT_DATABASE_URL)
                .to_owned(),
        ),
        heroku_api_url: get(env, "HEROKU_API_URL")
            .unwrap_or(DEFAULT_HEROKU_API_URL)
            .trim_end_matches('/')
            .to_owned(),
        log_format,
        apps,
        notify,
    })
}

/// `{TYPE}_RESTART_THRESHOLD` and `{TYPE}_RESTART_WINDOW` for one type.
fn type_policy(
    env: &Env,
    ty: &str,
    defaults: &Policy,
    problems: &mut Vec<Problem>,
) -> Option<Policy> {
    let prefix = type_prefix(ty);
    let mut p = defaults.clone();
    let mut changed = false;
    let key = format!("{prefix}_RESTART_THRESHOLD");
    if let Some(v) = get(env, &key) {
        match Threshold::parse(v) {
            Some(t) => {
                p.threshold = t;
                changed = true;
            }
            None => problems.push(Problem {
                at: key,
                message: format!("{v:?} is not a threshold; use megabytes (1024, 1024MB) or a percentage of the quota (95%)"),
            }),
        }
    }
    let key = format!("{prefix}_RESTART_WINDOW");
    if let Some(v) = get(env, &key) {
        match parse_duration(v).filter(|d| !d.is_zero()) {
            Some(d) => {
                p.restart_window = d;
                changed = true;
            }
            None => problems.push(Problem {
                at: key,
                message: format!(
                    "{v:?} is not a window; use seconds (600) or a duration (10m, 1h)"
                ),
            }),
        }
    }
    changed.then_some(p)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::Megabytes;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dark_knight_variables() {
        let c = from_env(
            &env(&[
                ("APP_ID_OR_NAME", "whatismyip"),
                ("AUTH_TOKEN", "cf0e05d9"),
                ("DRAIN_PASSWORD", "pw"),
                ("DYNO_TYPES", "web,worker"),
                ("WEB_RESTART_THRESHOLD", "1024"),
                ("WORKER_RESTART_THRESHOLD", "95%"),
                ("WORKER_RESTART_WINDOW", "10m"),
                ("WEB_RESTART_WINDOW", "300"),
            ]),
            Need::App,
        )
        .unwrap();
        let app = &c.apps[0];
        assert_eq!(app.name.as_str(), "whatismyip");
        let web = app.policy.for_type("web").unwrap();
        assert_eq!(web.threshold, Threshold::Absolute(Megabytes(1024.0)));
        assert_eq!(web.restart_window.as_secs(), 300);
        let worker = app.policy.for_type("worker").unwrap();
        assert_eq!(worker.threshold, Threshold::Percent(95.0));
        assert_eq!(worker.restart_window.as_secs(), 600);
        assert!(app.policy.for_type("slow_worker").is_none());
        assert_eq!(c.server.port, 5000);
        assert!(c.server.dashboard_password.is_some());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = from_env(
            &env(&[
                ("APP_ID_OR_NAME", "a"),
                ("WEB_RESTART_THRESHOLD", "lots"),
                ("WEB_RESTART_WINDOW", "soon"),
                ("PORT", "http"),
                ("DYNOGUARD_DRY_RUN", "maybe"),
            ]),
            Need::App,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "WEB_RESTART_THRESHOLD",
            "95%",
            "WEB_RESTART_WINDOW",
            "10m",
            "PORT",
            "DYNOGUARD_DRY_RUN",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn app_required_for_serve_not_replay() {
        let err = from_env(&Env::new(), Need::App).unwrap_err();
        assert!(err.to_string().contains("APP_ID_OR_NAME"));
        let c = from_env(&Env::new(), Need::Nothing).unwrap();
        assert_eq!(c.apps[0].name.as_str(), REPLAY_APP);
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let c = from_env(
            &env(&[
                ("APP_ID_OR_NAME", "a"),
                ("AUTH_TOKEN", "tok-SECRET-1"),
                ("DRAIN_PASSWORD", "pw-SECRET-2"),
                ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/SECRET-3"),
            ]),
            Need::App,
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
    }
}
