//! Configuration from environment variables, dark_knight compatible
//! (SPEC §5.1): a dark_knight deployment works unchanged, and every policy
//! knob is a config var too — `{TYPE}_{KNOB}` for one process type,
//! `DYNOGUARD_{KNOB}` as the default ([`super::knobs`]).
//!
//! Precedence, per type and knob: `{TYPE}_{KNOB}`, else `DYNOGUARD_{KNOB}`,
//! else the built-in default.
//!
//! The variables only become [`Entries`] here (each named by its variable);
//! [`super::build`] checks them through the same rows as a file's keys.

use std::collections::{BTreeMap, BTreeSet};

use super::entry::{AppEntries, Entries, Entry, Found, Item, Origin, Scope, TypeEntries};
use super::knobs::{KNOBS, Knob};
use super::settings::{SETTINGS, Section, Setting, WithFile};
use super::{AppConfig, Config, ConfigError};
use crate::decide::policy::DynoTypes;
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

/// `WEB` for `web`, `SLOW_WORKER` for `slow_worker` or `slow-worker`.
pub fn type_prefix(process_type: &str) -> String {
    process_type.to_ascii_uppercase().replace('-', "_")
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

/// The variable of `s` that is set (its name, else an alias), as an entry.
fn var_entry(env: &Env, s: &Setting) -> Option<Entry> {
    s.env
        .iter()
        .find_map(|var| get(env, var).map(|v| Entry::env(var, v)))
}

/// The environment as the configuration: one app (`APP_ID_OR_NAME`), its
/// knobs per type and as defaults, and Slack as the one notification.
fn read(env: &Env, need: Need) -> Entries {
    let mut e = Entries::default();
    let mut app = AppEntries::default();
    let mut slack = Scope::default();
    for s in &SETTINGS {
        let Some(entry) = var_entry(env, s) else {
            continue;
        };
        let scope = match s.section {
            Section::Server | Section::Store => &mut e.global,
            Section::Defaults => &mut e.defaults,
            Section::App => &mut app.scope,
            Section::Notify => &mut slack,
        };
        scope.items.push(Item { setting: s, entry });
    }
    if app.scope.get("name").is_none() {
        let var = "APP_ID_OR_NAME";
        match (need, Setting::row(Section::App, "name")) {
            (Need::App, _) => e.found.problem(
                &Origin::Env(var.into()),
                false,
                "required: the name or id of the Heroku app to watch (or pass --config FILE, or a TOML document in DYNOGUARD_CONFIG_TOML)",
            ),
            (Need::Nothing, Some(setting)) => app.scope.items.push(Item {
                setting,
                entry: Entry::env(var, REPLAY_APP),
            }),
            (Need::Nothing, None) => {}
        }
    }
    knob_vars(env, &mut e.defaults, &mut app);
    e.apps.push(app);
    if slack.get("url").is_some() {
        // The environment's one sink is Slack: its kind is its name.
        if let Some(setting) = Setting::row(Section::Notify, "kind") {
            let entry = Entry::env("SLACK_WEBHOOK_URL", "slack");
            slack.items.push(Item { setting, entry });
        }
    } else if slack.get("events").is_some() {
        let origin = Origin::Env("SLACK_EVENTS".into());
        e.found
            .warn(&origin, "ignored: SLACK_WEBHOOK_URL is not set");
    }
    e.notify.push(slack);
    e
}

/// `DYNOGUARD_{KNOB}` as the defaults' knobs; `{TYPE}_{KNOB}` each as the
/// knob of the type its prefix names (resolved once the types are known).
fn knob_vars(env: &Env, defaults: &mut Scope, app: &mut AppEntries) {
    for knob in &KNOBS {
        let var = format!("{DEFAULT_PREFIX}_{}", knob.env);
        if let Some(v) = get(env, &var) {
            defaults.knobs.push((knob, Entry::env(&var, v)));
        }
    }
    for (var, value) in env {
        let Some((prefix, knob)) = Knob::by_var(var) else {
            continue;
        };
        if prefix == DEFAULT_PREFIX || value.trim().is_empty() {
            continue;
        }
        app.types.push(TypeEntries {
            name: prefix.to_owned(),
            origin: Origin::Env(var.clone()),
            knobs: vec![(knob, Entry::env(var, value.trim()))],
        });
    }
}

/// With a file: the variables that win over it or stand in for what it
/// leaves out ([`WithFile`]), and the `DYNOGUARD_DRY_RUN` switch.
pub(crate) fn read_with_file(env: &Env, e: &mut Entries) {
    for s in SETTINGS.iter().filter(|s| s.with_file != WithFile::Ignored) {
        if let Some(entry) = var_entry(env, s) {
            let item = Item { setting: s, entry };
            match s.section {
                Section::Defaults => e.defaults.items.push(item),
                _ => e.global.items.push(item),
            }
        }
    }
    let var = format!("{DEFAULT_PREFIX}_DRY_RUN");
    e.dry_run_switch = get(env, &var).map(|v| Entry::env(&var, v));
}

/// Warns about variables that are set but read by nothing: with a file,
/// the ones only the environment's configuration reads (unless the file
/// reads them through `${VAR}`); always, misspelt settings and the peers'
/// names ([`super::names`]).
pub(crate) fn warn_unread(
    env: &Env,
    apps: &[AppConfig],
    file: Option<(&str, &BTreeSet<String>)>,
    found: &mut Found,
) {
    let read = |v: &str| file.is_some_and(|(_, read)| read.contains(v));
    if let Some((file, _)) = file {
        for (var, value) in env {
            if value.trim().is_empty() || read(var) {
                continue;
            }
            let knob_var = Knob::by_var(var)
                .is_some_and(|(prefix, k)| !(prefix == DEFAULT_PREFIX && k.key == "dry_run"));
            let env_only = SETTINGS
                .iter()
                .any(|s| s.with_file == WithFile::Ignored && s.env.first() == Some(&var.as_str()));
            if env_only || knob_var {
                found.warn(
                    &Origin::Env(var.clone()),
                    format!(
                        "ignored: the configuration comes from {file}; set it there (see dynoguard.example.toml) or read it with ${{{var}}}"
                    ),
                );
            }
        }
    }
    let watched: Vec<String> = apps
        .iter()
        .filter_map(|a| match &a.policy.dyno_types {
            DynoTypes::List(l) => Some(l.clone()),
            DynoTypes::All => None,
        })
        .flatten()
        .collect();
    // A variable already warned about (a setting for an unwatched type) is
    // not warned twice.
    let warned = found.warned();
    let dyno_types_set = file.is_some() || get(env, "DYNO_TYPES").is_some();
    let skip = |v: &str| warned.contains(v) || read(v);
    super::names::unknown_vars(env, &watched, dyno_types_set, &skip, &mut found.env);
}

/// The configuration from the environment alone.
pub fn from_env(env: &Env, need: Need) -> Result<Config, ConfigError> {
    super::build::build(read(env, need), env, need)
}

#[cfg(test)]
pub(crate) mod tests;
