//! Configuration from environment variables, dark_knight compatible
//! (SPEC §5.1): a dark_knight deployment works unchanged, and every policy
//! knob is a config var too — `{TYPE}_{KNOB}` for one process type,
//! `DYNOGUARD_{KNOB}` as the default ([`super::knobs`]).
//!
//! Precedence, per type and knob: `{TYPE}_{KNOB}`, else `DYNOGUARD_{KNOB}`,
//! else the built-in default.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::knobs::{self, KNOBS, Knob, parse_bool};
use super::{
    AppConfig, Collect, Config, ConfigError, DEFAULT_BODY_LIMIT, DEFAULT_DATABASE_URL,
    DEFAULT_HEROKU_API_URL, DEFAULT_PORT, LogFormat, NotifyConfig, NotifyKind, Origins,
    ServerConfig, Source,
};
use crate::decide::policy::{AppPolicy, DynoTypes, Policy, is_process_type};
use crate::domain::AppName;
use crate::domain::event::EventKind;

/// A snapshot of the environment (tests pass their own).
pub type Env = BTreeMap<String, String>;

pub fn snapshot() -> Env {
    std::env::vars().collect()
}

/// What the caller needs from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `serve`/`check`: the watched app must be named; server settings count.
    App,
    /// `replay`: the policy only (events are labelled `app` when no app is
    /// named); server settings and secrets are not needed.
    Nothing,
}

/// The name used for the app in replay output when `APP_ID_OR_NAME` is unset.
pub const REPLAY_APP: &str = "app";

/// The prefix of the default knobs: `DYNOGUARD_RESTART_WINDOW`.
pub const DEFAULT_PREFIX: &str = "DYNOGUARD";

/// A variable's trimmed value; empty counts as unset.
pub fn get<'a>(env: &'a Env, key: &str) -> Option<&'a str> {
    env.get(key)
        .map(String::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn secret(env: &Env, key: &str) -> Option<SecretString> {
    get(env, key).map(|v| SecretString::from(v.to_owned()))
}

/// `WEB` for `web`, `SLOW_WORKER` for `slow_worker` or `slow-worker`.
pub fn type_prefix(process_type: &str) -> String {
    process_type.to_ascii_uppercase().replace('-', "_")
}

/// The operational switches read from the environment in both modes; with
/// a file they win over it (SPEC §5.1).
#[derive(Debug, Default)]
pub(crate) struct Switches {
    pub port: Option<u16>,
    pub database_url: Option<String>,
    pub dashboard_password: Option<SecretString>,
    pub dry_run: Option<bool>,
}

pub(crate) fn switches(env: &Env, c: &mut Collect) -> Switches {
    let port = get(env, "PORT").and_then(|v| match v.parse::<u16>() {
        Ok(p) if p > 0 => Some(p),
        _ => {
            c.server(
                "PORT",
                format!("{v:?} is not allowed; use a port from 1 to 65535"),
            );
            None
        }
    });
    let database_url = get(env, "DATABASE_URL").map(str::to_owned);
    if let Some(url) = &database_url
        && let Err(e) = super::check_store_url(url)
    {
        c.server("DATABASE_URL", e);
    }
    let dry_var = format!("{DEFAULT_PREFIX}_DRY_RUN");
    let dry_run = get(env, &dry_var).and_then(|v| {
        let b = parse_bool(v);
        if b.is_none() {
            c.problem(
                dry_var.as_str(),
                format!("{v:?} is not allowed; use true or false (1/0, yes/no, on/off)"),
            );
        }
        b
    });
    Switches {
        port,
        database_url,
        dashboard_password: secret(env, "DASHBOARD_PASSWORD"),
        dry_run,
    }
}

/// `DYNOGUARD_URL`: where this dynoguard's dashboard is, for links.
pub(crate) fn public_url(env: &Env, c: &mut Collect) -> Option<String> {
    let v = get(env, "DYNOGUARD_URL")?;
    match super::check_http_url(v) {
        Ok(()) => Some(v.trim_end_matches('/').to_owned()),
        Err(e) => {
            c.server("DYNOGUARD_URL", e);
            None
        }
    }
}

/// `DYNOGUARD_BLIND_AFTER`, or the default.
pub(crate) fn blind_after(env: &Env, c: &mut Collect) -> Option<jiff::SignedDuration> {
    let v = get(env, "DYNOGUARD_BLIND_AFTER")?;
    knobs::parse_blind_after(v)
        .map_err(|e| c.problem("DYNOGUARD_BLIND_AFTER", e))
        .ok()
}

/// Event kinds from a list (`restart,restart_failed flapping`).
pub(crate) fn event_list<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<EventKind>, String> {
    let mut out = Vec::new();
    for item in items
        .into_iter()
        .flat_map(|s| s.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|s| !s.is_empty())
    {
        match EventKind::parse(item).filter(|k| *k != EventKind::Sample) {
            Some(k) if !out.contains(&k) => out.push(k),
            Some(_) => {}
            None => {
                return Err(format!(
                    "{item:?} is not an event; use any of {}",
                    EventKind::ALL
                        .iter()
                        .filter(|k| **k != EventKind::Sample)
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("lists no event; e.g. restart,restart_failed,flapping,blind".into());
    }
    Ok(out)
}

fn apply_knob(knob: &Knob, policy: &mut Policy, var: &str, value: &str, c: &mut Collect) -> bool {
    match knob.set(policy, value) {
        Ok(warning) => {
            if let Some(w) = warning {
                c.warn(var, w);
            }
            true
        }
        Err(e) => {
            c.problem(var, e);
            false
        }
    }
}

/// The app's policy from `DYNO_TYPES`, `DYNOGUARD_{KNOB}` and `{TYPE}_{KNOB}`.
fn policy(
    env: &Env,
    dry_run: Option<bool>,
    c: &mut Collect,
) -> (AppPolicy, BTreeMap<String, Vec<String>>) {
    let types_raw = get(env, "DYNO_TYPES");
    let types = match types_raw.map(|v| DynoTypes::parse_list([v])) {
        None => DynoTypes::default(),
        Some(Ok(DynoTypes::List(l))) if l.is_empty() => {
            c.problem(
                "DYNO_TYPES",
                "lists no process type; use e.g. web,worker or *",
            );
            DynoTypes::default()
        }
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            c.problem("DYNO_TYPES", e);
            DynoTypes::default()
        }
    };
    let shown_types = types_raw.unwrap_or("web (the default)");

    let mut set_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut defaults = Policy::default();
    for knob in &KNOBS {
        let var = format!("{DEFAULT_PREFIX}_{}", knob.env);
        // DYNOGUARD_DRY_RUN is an operational switch, read once by `switches`.
        if knob.key == "dry_run" {
            continue;
        }
        if let Some(v) = get(env, &var)
            && apply_knob(knob, &mut defaults, &var, v, c)
        {
            set_by
                .entry("*".into())
                .or_default()
                .push(format!("{var}={v}"));
        }
    }
    if let Some(d) = dry_run {
        defaults.dry_run = d;
        let var = format!("{DEFAULT_PREFIX}_DRY_RUN");
        let written = get(env, &var).unwrap_or(if d { "1" } else { "0" });
        set_by
            .entry("*".into())
            .or_default()
            .push(format!("{var}={written}"));
    }

    let mut per_type: BTreeMap<String, Policy> = BTreeMap::new();
    for (var, value) in env {
        let Some((prefix, knob)) = Knob::by_var(var) else {
            continue;
        };
        if prefix == DEFAULT_PREFIX || value.trim().is_empty() {
            continue;
        }
        let ty = match &types {
            DynoTypes::List(list) => list.iter().find(|t| type_prefix(t) == prefix).cloned(),
            DynoTypes::All => {
                let ty = prefix.to_ascii_lowercase();
                (is_process_type(&ty) && types.watches(&ty)).then_some(ty)
            }
        };
        let Some(ty) = ty else {
            let watched: Vec<String> = match &types {
                DynoTypes::List(l) => l.iter().map(|t| type_prefix(t)).collect(),
                DynoTypes::All => Vec::new(),
            };
            let hint = watched
                .iter()
                .find(|w| knobs::similar(prefix, w))
                .map(|w| format!("; did you mean {w}_{}?", knob.env))
                .unwrap_or_default();
            c.warn(
                var.as_str(),
                format!(
                    "sets {} for the process type {}, which is not watched (DYNO_TYPES={shown_types}): ignored{hint}",
                    knob.key,
                    prefix.to_ascii_lowercase()
                ),
            );
            continue;
        };
        let p = per_type
            .entry(ty.clone())
            .or_insert_with(|| defaults.clone());
        if apply_knob(knob, p, var, value, c) {
            set_by
                .entry(ty)
                .or_default()
                .push(format!("{var}={}", value.trim()));
        }
    }
    (
        AppPolicy {
            dyno_types: types,
            defaults,
            per_type,
            ..AppPolicy::default()
        },
        set_by,
    )
}

pub fn from_env(env: &Env, need: Need) -> Result<Config, ConfigError> {
    let mut c = Collect::default();

    let app_name = match (get(env, "APP_ID_OR_NAME"), need) {
        (Some(v), _) => AppName::parse(v)
            .map_err(|e| c.problem("APP_ID_OR_NAME", e.to_string()))
            .ok(),
        (None, Need::App) => {
            c.problem(
                "APP_ID_OR_NAME",
                "required: the name or id of the Heroku app to watch (or pass --config FILE, or a TOML document in DYNOGUARD_CONFIG_TOML)",
            );
            None
        }
        (None, Need::Nothing) => AppName::parse(REPLAY_APP).ok(),
    };

    let switches = switches(env, &mut c);
    let log_format = match get(env, "LOG_FORMAT")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(v) => {
            c.server(
                "LOG_FORMAT",
                format!("{v:?} is not allowed; use text or json"),
            );
            LogFormat::Text
        }
    };
    let source = match get(env, "DYNOGUARD_SOURCE") {
        None | Some("drain") => Source::Drain,
        Some("log-session") => Source::LogSession,
        Some(v) => {
            c.server(
                "DYNOGUARD_SOURCE",
                format!("{v:?} is not allowed; use drain or log-session"),
            );
            Source::Drain
        }
    };
    let heroku_api_url = get(env, "HEROKU_API_URL")
        .unwrap_or(DEFAULT_HEROKU_API_URL)
        .trim_end_matches('/')
        .to_owned();
    super::check_api_url(&heroku_api_url, &mut c, "HEROKU_API_URL");

    let (mut policy, set_by) = policy(env, switches.dry_run, &mut c);
    let watched: Vec<String> = match &policy.dyno_types {
        DynoTypes::List(l) => l.clone(),
        DynoTypes::All => Vec::new(),
    };
    // A variable already warned about (a setting for an unwatched type) is
    // not warned twice.
    let warned: std::collections::BTreeSet<String> =
        c.warnings.iter().map(|w| w.at.clone()).collect();
    super::names::unknown_vars(
        env,
        &watched,
        get(env, "DYNO_TYPES").is_some(),
        &|v| warned.contains(v),
        &mut c,
    );
    if let Some(b) = blind_after(env, &mut c) {
        policy.blind_after = b;
    }

    let mut notify = Vec::new();
    let slack_events = get(env, "SLACK_EVENTS").and_then(|v| {
        event_list([v])
            .map_err(|e| c.server("SLACK_EVENTS", e))
            .ok()
    });
    match get(env, "SLACK_WEBHOOK_URL") {
        Some(url) => match super::check_http_url(url) {
            Ok(()) => notify.push(NotifyConfig {
                kind: NotifyKind::Slack,
                url: SecretString::from(url.to_owned()),
                events: slack_events.unwrap_or_default(),
                secret: None,
            }),
            Err(e) => c.server("SLACK_WEBHOOK_URL", e),
        },
        None if slack_events.is_some() => {
            c.warn("SLACK_EVENTS", "ignored: SLACK_WEBHOOK_URL is not set");
        }
        None => {}
    }
    let public_url = public_url(env, &mut c);

    let drain_password = secret(env, "DRAIN_PASSWORD");
    let (dashboard_password, dashboard_origin) = match switches.dashboard_password {
        Some(p) => (Some(p), "DASHBOARD_PASSWORD (environment)"),
        None if drain_password.is_some() => {
            (drain_password.clone(), "DRAIN_PASSWORD (environment)")
        }
        None => (None, "not set"),
    };
    let api_token = secret(env, "AUTH_TOKEN").or_else(|| secret(env, "HEROKU_API_KEY"));

    let warnings = c.finish(need)?;
    let origins = Origins {
        port: if switches.port.is_some() {
            "PORT (environment)"
        } else {
            "default"
        }
        .into(),
        database_url: if switches.database_url.is_some() {
            "DATABASE_URL (environment)"
        } else {
            "default"
        }
        .into(),
        dashboard_password: dashboard_origin.into(),
        dry_run: if switches.dry_run.is_some() {
            "DYNOGUARD_DRY_RUN (environment)"
        } else {
            "default"
        }
        .into(),
        log_format: if get(env, "LOG_FORMAT").is_some() {
            "LOG_FORMAT (environment)"
        } else {
            "default"
        }
        .into(),
        heroku_api_url: if get(env, "HEROKU_API_URL").is_some() {
            "HEROKU_API_URL (environment)"
        } else {
            "default"
        }
        .into(),
    };
    let apps = app_name
        .map(|name| AppConfig {
            name,
            api_token,
            source,
            drain_token: get(env, "DRAIN_TOKEN").map(str::to_owned),
            drain_password: None,
            policy,
            set_by,
        })
        .into_iter()
        .collect();
    Ok(Config {
        server: ServerConfig {
            port: switches.port.unwrap_or(DEFAULT_PORT),
            drain_password,
            dashboard_password,
            body_limit: DEFAULT_BODY_LIMIT,
        },
        database_url: SecretString::from(
            switches
                .database_url
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
        ),
        heroku_api_url,
        log_format,
        apps,
        notify,
        public_url,
        origins,
        warnings,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decide::policy::Threshold;
    use crate::domain::Megabytes;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn app(pairs: &[(&str, &str)]) -> Config {
        let mut all = vec![("APP_ID_OR_NAME", "a")];
        all.extend_from_slice(pairs);
        from_env(&env(&all), Need::App).unwrap_or_else(|e| panic!("{e}"))
    }

    fn warnings(c: &Config) -> String {
        c.warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
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
        assert!(c.warnings.is_empty(), "{}", warnings(&c));
    }

    #[test]
    fn every_knob_is_a_config_var_per_type_and_as_default() {
        let c = app(&[
            ("DYNO_TYPES", "web worker"),
            ("DYNOGUARD_CONSECUTIVE", "2"),
            ("DYNOGUARD_SETTLE", "3m"),
            ("WORKER_CONSECUTIVE", "4"),
            ("WORKER_SWAP_THRESHOLD", "64MB"),
            ("WORKER_PREDICT", "5m"),
            ("WORKER_PREDICT_FLOOR", "90%"),
            ("DYNOGUARD_PREDICT_WINDOW", "15m"),
            ("WORKER_MAX_PARALLEL", "2"),
            ("WORKER_ON_R14", "false"),
            ("WORKER_ON_R15", "0"),
            ("WORKER_FLAP_LIMIT", "5"),
            ("WORKER_FLAP_WINDOW", "2h"),
            ("DYNOGUARD_BLIND_AFTER", "10m"),
        ]);
        let p = &c.apps[0].policy;
        let web = p.for_type("web").unwrap();
        assert_eq!((web.consecutive, web.settle.as_secs()), (2, 180));
        let w = p.for_type("worker").unwrap();
        assert_eq!(w.consecutive, 4);
        assert_eq!(w.settle.as_secs(), 180, "inherits DYNOGUARD_SETTLE");
        assert_eq!(w.swap_threshold, Some(Megabytes(64.0)));
        assert_eq!(w.predict.unwrap().as_secs(), 300);
        assert_eq!((w.predict_floor, w.predict_window.as_secs()), (90.0, 900));
        assert_eq!(
            web.predict,
            Policy::default().predict,
            "predict is on by default"
        );
        assert_eq!(
            (web.predict_floor, web.predict_window.as_secs()),
            (85.0, 900)
        );
        assert!(!w.on_r14 && !w.on_r15);
        assert_eq!((w.flap_limit, w.flap_window.as_secs()), (5, 7200));
        assert_eq!(p.blind_after.as_secs(), 600);
        assert_eq!(
            c.apps[0].set_by["worker"].len(),
            9,
            "{:?}",
            c.apps[0].set_by
        );
    }

    #[test]
    fn star_honours_per_type_settings() {
        let c = app(&[("DYNO_TYPES", "*"), ("WEB_RESTART_THRESHOLD", "150")]);
        let p = &c.apps[0].policy;
        assert_eq!(
            p.for_type("web").unwrap().threshold,
            Threshold::Absolute(Megabytes(150.0))
        );
        assert_eq!(
            p.for_type("worker").unwrap().threshold,
            Threshold::Percent(100.0)
        );
        let c = app(&[("DYNO_TYPES", "*"), ("SLOW_WORKER_CONSECUTIVE", "3")]);
        assert_eq!(
            c.apps[0]
                .policy
                .for_type("slow-worker")
                .unwrap()
                .consecutive,
            3
        );
    }

    #[test]
    fn settings_for_unwatched_types_are_warned_by_name() {
        let c = app(&[
            ("DYNO_TYPES", "web,worker"),
            ("WROKER_RESTART_THRESHOLD", "900"),
        ]);
        assert_eq!(
            warnings(&c),
            "WROKER_RESTART_THRESHOLD: sets threshold for the process type wroker, which is not watched (DYNO_TYPES=web,worker): ignored; did you mean WORKER_RESTART_THRESHOLD?"
        );
        let c = app(&[("DYNO_TYPES", "web"), ("WORKER_RESTART_THRESHOLD", "900")]);
        assert_eq!(
            warnings(&c),
            "WORKER_RESTART_THRESHOLD: sets threshold for the process type worker, which is not watched (DYNO_TYPES=web): ignored"
        );
        let c = app(&[("WORKER_RESTART_WINDOW", "10m")]);
        assert!(warnings(&c).contains("(DYNO_TYPES=web (the default))"));
        let c = app(&[("DYNO_TYPES", "*"), ("RUN_RESTART_THRESHOLD", "900")]);
        assert!(
            warnings(&c).contains("RUN_RESTART_THRESHOLD"),
            "{}",
            warnings(&c)
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_the_range() {
        let err = from_env(
            &env(&[
                ("APP_ID_OR_NAME", "a"),
                ("WEB_RESTART_THRESHOLD", "5000%"),
                ("WEB_RESTART_WINDOW", "soon"),
                ("PORT", "http"),
                ("DYNOGUARD_DRY_RUN", "maybe"),
                ("DYNO_TYPES", "web worker!"),
                ("DATABASE_URL", "mysql://u:p@h/db"),
                ("HEROKU_API_URL", "ftp://x"),
                ("SLACK_EVENTS", "restart,explosion"),
                ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/x"),
            ]),
            Need::App,
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(text.matches("DYNOGUARD_DRY_RUN").count(), 1, "{text}");
        for needle in [
            "WEB_RESTART_THRESHOLD: \"5000%\" is not allowed (out of range); use megabytes from 1 to 1048576",
            "WEB_RESTART_WINDOW: \"soon\" is not allowed; use a duration from 1s to 7d",
            "PORT: \"http\" is not allowed; use a port from 1 to 65535",
            "DYNOGUARD_DRY_RUN: \"maybe\" is not allowed; use true or false",
            "DYNO_TYPES: \"worker!\" is not a process type name",
            "DATABASE_URL: mysql:// is not supported; use sqlite://PATH",
            "HEROKU_API_URL: ftp:// is not allowed; use an https:// URL",
            "SLACK_EVENTS: \"explosion\" is not an event",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert!(!text.contains("u:p"), "{text}");
    }

    #[test]
    fn replay_needs_no_app_no_secrets_and_no_server_settings() {
        let err = from_env(&Env::new(), Need::App).unwrap_err();
        assert!(err.to_string().contains("APP_ID_OR_NAME"));
        let c = from_env(&Env::new(), Need::Nothing).unwrap();
        assert_eq!(c.apps[0].name.as_str(), REPLAY_APP);
        let c = from_env(
            &env(&[("PORT", "x"), ("DATABASE_URL", "mysql://h/d")]),
            Need::Nothing,
        )
        .unwrap();
        assert_eq!(c.apps.len(), 1);
    }

    #[test]
    fn notifications_default_to_failures_too() {
        let c = app(&[("SLACK_WEBHOOK_URL", "https://hooks.slack.com/x")]);
        let n = &c.notify[0];
        for k in [
            EventKind::Restart,
            EventKind::RestartFailed,
            EventKind::Flapping,
            EventKind::Blind,
        ] {
            assert!(n.wants(k), "{k:?}");
        }
        assert!(!n.wants(EventKind::Skipped));
        let c = app(&[
            ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/x"),
            ("SLACK_EVENTS", "restart_failed blind"),
        ]);
        assert!(c.notify[0].wants(EventKind::Blind) && !c.notify[0].wants(EventKind::Restart));
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
