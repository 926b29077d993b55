//! The one validator: [`Entries`] from either source (or both: a file and
//! the environment's switches) become a [`Config`]. Each value goes through
//! its row of [`SETTINGS`] or [`KNOBS`](super::knobs::KNOBS), so it is
//! checked the same way wherever it was written; problems name the origin.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::entry::{AppEntries, Entries, Entry, Found, Item, Origin, Scope, TypeEntries};
use super::env::{Env, Need, type_prefix};
use super::knobs::{self, Knob, Outcome};
use super::settings::{AppDraft, NotifyDraft, SETTINGS, Section, Set, Setting, WithFile};
use super::{
    AppConfig, Config, ConfigError, DEFAULT_BODY_LIMIT, DEFAULT_DATABASE_URL,
    DEFAULT_HEROKU_API_URL, DEFAULT_PORT, LogFormat, NotifyConfig, Origins, ServerConfig,
};
use crate::decide::policy::{AppPolicy, DynoTypes, Policy, is_process_type};

/// Builds the configuration, or says every problem that matters for `need`.
pub(crate) fn build(e: Entries, env: &Env, need: Need) -> Result<Config, ConfigError> {
    let mut found = e.found;
    let mut cfg = defaults();
    let origin = global(&e.global, &mut cfg, &mut found);
    let mut base = AppDraft::default();
    for s in Setting::in_section(Section::Defaults) {
        if let (Some(item), _) = pick(&e.defaults, s) {
            set_app(&mut base, item, &mut found);
        }
    }
    let mut defaults_set = Vec::new();
    let policy_defaults = policy(
        &Policy::default(),
        &e.defaults.knobs,
        &mut defaults_set,
        &mut found,
    );
    for a in &e.apps {
        if let Some(app) = app(a, &base, (&policy_defaults, &defaults_set), &mut found) {
            cfg.apps.push(app);
        }
    }
    cfg.notify = e
        .notify
        .iter()
        .filter_map(|n| notify(n, &mut found))
        .collect();
    cfg.origins.dry_run = match &e.dry_run_switch {
        Some(switch) => dry_run_switch(switch, &mut cfg.apps, &mut found),
        None if e.file.is_some() => "file".into(),
        None => dry_run_origin(
            e.defaults
                .knobs
                .iter()
                .find(|(k, _)| k.key == "dry_run")
                .map(|(_, e)| e),
        ),
    };
    let file = e.file.as_ref().map(|(f, read)| (f.as_str(), read));
    super::env::warn_unread(env, &cfg.apps, file, &mut found);
    cfg.warnings = found.finish(need)?;

    // The dashboard's password falls back to the drain's (SPEC §5.1).
    let server = &mut cfg.server;
    let dashboard = match (&server.dashboard_password, &server.drain_password) {
        (Some(_), _) => origin("dashboard_password"),
        (None, Some(p)) => {
            server.dashboard_password = Some(p.clone());
            origin("drain_password")
        }
        (None, None) => Some("not set".into()),
    };
    let or_default = |l: Option<String>| l.unwrap_or_else(|| "default".into());
    cfg.origins.port = or_default(origin("port"));
    cfg.origins.database_url = or_default(origin("url"));
    cfg.origins.dashboard_password = or_default(dashboard);
    cfg.origins.log_format = or_default(origin("log_format"));
    cfg.origins.heroku_api_url = or_default(origin("heroku_api_url"));
    Ok(cfg)
}

/// The configuration before anything is set: every built-in default.
fn defaults() -> Config {
    Config {
        server: ServerConfig {
            port: DEFAULT_PORT,
            drain_password: None,
            dashboard_password: None,
            body_limit: DEFAULT_BODY_LIMIT,
        },
        database_url: SecretString::from(DEFAULT_DATABASE_URL.to_owned()),
        heroku_api_url: DEFAULT_HEROKU_API_URL.to_owned(),
        log_format: LogFormat::Text,
        apps: Vec::new(),
        notify: Vec::new(),
        public_url: None,
        origins: Origins::default(),
        warnings: Vec::new(),
    }
}

/// Where dry run came from without a file: `DYNOGUARD_DRY_RUN`, or the
/// built-in default.
fn dry_run_origin(e: Option<&Entry>) -> String {
    match e.map(|e| &e.origin) {
        Some(Origin::Env(var)) => format!("{var} (environment)"),
        Some(Origin::File { .. }) => "file".into(),
        None => "default".into(),
    }
}

/// The entry of `s` that counts — with a file and the environment both
/// saying something, the row's [`WithFile`] decides — and where it came
/// from, as `check` says it.
fn pick<'e>(scope: &'e Scope, s: &'static Setting) -> (Option<&'e Item>, Option<String>) {
    let of = |file: bool| {
        scope
            .items
            .iter()
            .find(|i| std::ptr::eq(i.setting, s) && i.entry.origin.is_file() == file)
    };
    let (env, file) = (of(false), of(true));
    // A variable's origin is its name.
    let var = |i: &Item| i.entry.origin.at();
    let path = s.path();
    match (env, file) {
        (Some(e), Some(_)) if s.with_file == WithFile::EnvWins => (
            Some(e),
            Some(format!("{} (environment, over {path} in the file)", var(e))),
        ),
        (_, Some(f)) => (Some(f), Some(format!("{path} (file)"))),
        (Some(e), None) => (Some(e), Some(format!("{} (environment)", var(e)))),
        (None, None) => (None, None),
    }
}

/// Says what a setter or knob made of a value; true when it was taken.
fn said(found: &mut Found, origin: &Origin, server: bool, outcome: Outcome) -> bool {
    match outcome {
        Ok(warning) => {
            if let Some(w) = warning {
                found.warn(origin, w);
            }
            true
        }
        Err(e) => {
            found.problem(origin, server, e);
            false
        }
    }
}

fn set_app(d: &mut AppDraft, item: &Item, found: &mut Found) {
    if let Set::App(f) = item.setting.set {
        let e = &item.entry;
        said(
            found,
            &e.origin,
            item.setting.serve_only,
            f(d, &e.value, &e.origin),
        );
    }
}

/// `[server]` and `[store]` into `cfg`; returns where each came from, by
/// key, for `check`.
fn global(
    scope: &Scope,
    cfg: &mut Config,
    found: &mut Found,
) -> impl Fn(&str) -> Option<String> + use<> {
    let mut labels: BTreeMap<&'static str, String> = BTreeMap::new();
    for s in SETTINGS.iter() {
        let Set::Global(f) = s.set else { continue };
        let (item, label) = pick(scope, s);
        if let Some(Item { entry: e, .. }) = item {
            said(found, &e.origin, s.serve_only, f(cfg, &e.value, &e.origin));
        }
        if let Some(label) = label {
            labels.insert(s.key, label);
        }
    }
    move |key| labels.get(key).cloned()
}

/// `base` with `knobs` applied in order, each taken one listed in `set_by`.
fn policy(
    base: &Policy,
    knobs: &[(&'static Knob, Entry)],
    set_by: &mut Vec<String>,
    found: &mut Found,
) -> Policy {
    let mut p = base.clone();
    for (k, e) in knobs {
        if said(found, &e.origin, false, k.set(&mut p, &e.value)) {
            set_by.push(e.origin.set_by(e.value.trim()));
        }
    }
    p
}

/// One app over the defaults (`base`, and the default policy with the
/// settings that changed it).
fn app(
    a: &AppEntries,
    base: &AppDraft,
    (defaults, defaults_set): (&Policy, &Vec<String>),
    found: &mut Found,
) -> Option<AppConfig> {
    let mut d = base.clone();
    for s in Setting::in_section(Section::App) {
        if let (Some(item), _) = pick(&a.scope, s) {
            set_app(&mut d, item, found);
        }
    }
    let mut app_set = defaults_set.clone();
    let app_defaults = policy(defaults, &a.scope.knobs, &mut app_set, found);
    let dyno_types = d.policy.dyno_types.clone();
    let written = a.scope.get("dyno_types").map(|i| i.entry.value.as_str());
    let mut per_type: BTreeMap<String, Policy> = BTreeMap::new();
    let mut set_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &a.types {
        let ty = match &t.origin {
            Origin::Env(_) => match env_type(t, &dyno_types, written, found) {
                Some(ty) => ty,
                None => continue,
            },
            Origin::File { .. } => file_type(t, &dyno_types, found),
        };
        let p = per_type
            .entry(ty.clone())
            .or_insert_with(|| app_defaults.clone());
        *p = policy(p, &t.knobs, set_by.entry(ty).or_default(), found);
    }
    set_by.insert("*".into(), app_set);
    set_by.retain(|_, v| !v.is_empty());
    Some(AppConfig {
        name: d.name?,
        api_token: d.api_token,
        source: d.source,
        drain_token: d.drain_token,
        drain_password: d.drain_password,
        policy: AppPolicy {
            defaults: app_defaults,
            per_type,
            ..d.policy
        },
        set_by,
    })
}

/// The watched type a `{TYPE}_{KNOB}` variable's prefix names, or a
/// warning that it names none (`written`: `DYNO_TYPES` as written).
fn env_type(
    t: &TypeEntries,
    types: &DynoTypes,
    written: Option<&str>,
    found: &mut Found,
) -> Option<String> {
    let prefix = t.name.as_str();
    let ty = match types {
        DynoTypes::List(list) => list.iter().find(|w| type_prefix(w) == prefix).cloned(),
        DynoTypes::All => {
            let ty = prefix.to_ascii_lowercase();
            (is_process_type(&ty) && types.watches(&ty)).then_some(ty)
        }
    };
    if ty.is_some() {
        return ty;
    }
    let watched: Vec<String> = match types {
        DynoTypes::List(l) => l.iter().map(|t| type_prefix(t)).collect(),
        DynoTypes::All => Vec::new(),
    };
    let shown = written.unwrap_or("web (the default)");
    for (knob, _) in &t.knobs {
        let hint = watched
            .iter()
            .find(|w| knobs::similar(prefix, w))
            .map(|w| format!("; did you mean {w}_{}?", knob.env))
            .unwrap_or_default();
        found.warn(
            &t.origin,
            format!(
                "sets {} for the process type {}, which is not watched (DYNO_TYPES={shown}): ignored{hint}",
                knob.key,
                prefix.to_ascii_lowercase()
            ),
        );
    }
    None
}

/// An `[app.types.TYPE]` table's type; a type that is not watched is
/// warned about (its settings are kept: they show in `check`).
fn file_type(t: &TypeEntries, types: &DynoTypes, found: &mut Found) -> String {
    let ty = t.name.clone();
    if !types.watches(&ty) {
        let (watched, shown) = match types {
            DynoTypes::All => (Vec::new(), "\"*\"".to_owned()),
            DynoTypes::List(l) => (
                l.iter().map(String::as_str).collect(),
                l.iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        };
        let hint = knobs::suggestion(&ty, watched.iter().copied());
        found.warn(
            &t.origin,
            format!(
                "settings for {ty}, which is not watched (dyno_types = [{shown}]): ignored{hint}"
            ),
        );
    }
    ty
}

fn notify(n: &Scope, found: &mut Found) -> Option<NotifyConfig> {
    let mut d = NotifyDraft::default();
    for s in Setting::in_section(Section::Notify) {
        if let (Some(Item { entry: e, .. }), _) = pick(n, s)
            && let Set::Notify(f) = s.set
        {
            said(
                found,
                &e.origin,
                s.serve_only,
                f(&mut d, &e.value, &e.origin),
            );
        }
    }
    Some(NotifyConfig {
        kind: d.kind?,
        url: SecretString::from(d.url?),
        events: d.events,
        secret: d.secret,
    })
}

/// `DYNOGUARD_DRY_RUN` with a file: `1` makes every app and type dry; `0`
/// turns off nothing the file turned on (said, since it looks like it
/// would). Returns where dry run came from, for `check`.
fn dry_run_switch(e: &Entry, apps: &mut [AppConfig], found: &mut Found) -> String {
    let mut scratch = Policy::default();
    let dry_run = knobs::Knob::by_key("dry_run").map(|k| k.set(&mut scratch, &e.value));
    if !said(found, &e.origin, false, dry_run.unwrap_or(Ok(None))) {
        return "file".into();
    }
    if scratch.dry_run {
        for a in apps.iter_mut() {
            a.policy.defaults.dry_run = true;
            for p in a.policy.per_type.values_mut() {
                p.dry_run = true;
            }
        }
        return "DYNOGUARD_DRY_RUN=1 (environment, over the file: every app and type)".into();
    }
    for a in apps.iter() {
        if a.policy.defaults.dry_run || a.policy.per_type.values().any(|p| p.dry_run) {
            found.warn(
                &e.origin,
                format!(
                    "is 0 but the file sets dry_run = true for {}: the file's dry run stays on (remove it from the file to restart for real)",
                    a.name
                ),
            );
        }
    }
    "file (DYNOGUARD_DRY_RUN=0 turns nothing off)".into()
}

#[cfg(test)]
mod tests {
    use crate::config::env::tests::env;
    use crate::config::env::{Need, from_env};
    use crate::config::file::parse_for;

    /// The problems of a configuration, each without where it was said.
    fn messages(r: Result<crate::config::Config, crate::config::ConfigError>) -> Vec<String> {
        let e = r.err().map(|e| e.0).unwrap_or_default();
        e.into_iter().map(|p| p.message).collect()
    }

    #[test]
    fn a_value_is_refused_the_same_way_from_either_source() {
        for (var, key, value) in [
            ("PORT", "[server]\nport", "0"),
            ("DATABASE_URL", "[store]\nurl", "mysql://h/d"),
            ("DYNOGUARD_URL", "[server]\npublic_url", "ftp://x"),
            ("HEROKU_API_URL", "[server]\nheroku_api_url", "ftp://x"),
            ("DYNOGUARD_BLIND_AFTER", "[defaults]\nblind_after", "2d"),
            ("DYNOGUARD_SETTLE", "[defaults]\nsettle", "2d"),
        ] {
            let from_env = messages(from_env(
                &env(&[("APP_ID_OR_NAME", "a"), (var, value)]),
                Need::App,
            ));
            let doc = format!("{key} = \"{value}\"\n\n[[app]]\nname = \"a\"\n");
            let from_file = messages(parse_for("f.toml", &doc, &env(&[]), Need::App));
            assert_eq!(from_env.len(), 1, "{var}: {from_env:?}");
            assert_eq!(from_env, from_file, "{var}");
        }
    }

    #[test]
    fn words_are_suggested_as_each_source_writes_them() {
        let e = from_env(
            &env(&[("APP_ID_OR_NAME", "a"), ("LOG_FORMAT", "xml")]),
            Need::App,
        );
        assert_eq!(messages(e), ["\"xml\" is not allowed; use text or json"]);
        let doc = "[server]\nlog_format = \"xml\"\n\n[[app]]\nname = \"a\"\n";
        let f = parse_for("f.toml", doc, &env(&[]), Need::App);
        assert_eq!(
            messages(f),
            ["\"xml\" is not allowed; use \"text\" or \"json\""]
        );
    }
}
