//! Configuration from a TOML document (SPEC §5.2): `[server]`, `[store]`,
//! `[defaults]`, any number of `[[app]]` with `[app.types.TYPE]` overrides,
//! and `[[notify]]` sinks. `${VAR}` in a string reads the environment. The
//! document comes from `--config FILE` or the `DYNOGUARD_CONFIG_TOML` config
//! var.
//!
//! The document is parsed into spanned TOML values and walked by hand, so
//! every problem of a file — unknown keys, wrong types, values out of range —
//! is reported in one run, each with its line and full key
//! (`shop.toml:12: app.shop.types.worker.threshold: …`). Policy values go
//! through the same [`Knob`]s as config vars.
//!
//! The operational switches `PORT`, `DATABASE_URL`, `DASHBOARD_PASSWORD`
//! and `DYNOGUARD_DRY_RUN` in the environment win over the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use secrecy::SecretString;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::env::{Env, Need, event_list, get};
use super::knobs::{self, KNOBS, Knob, suggestion};
use super::{
    AppConfig, Collect, Config, ConfigError, DEFAULT_BODY_LIMIT, DEFAULT_DATABASE_URL,
    DEFAULT_HEROKU_API_URL, DEFAULT_PORT, LogFormat, NotifyConfig, NotifyKind, Origins, Problem,
    ServerConfig, Source,
};
use crate::decide::policy::{AppPolicy, DynoTypes, Policy};
use crate::domain::AppName;

type Value<'i> = Spanned<DeValue<'i>>;

const ROOT_KEYS: [&str; 5] = ["server", "store", "defaults", "app", "notify"];
const SERVER_KEYS: [&str; 7] = [
    "port",
    "drain_password",
    "dashboard_password",
    "body_limit",
    "log_format",
    "heroku_api_url",
    "public_url",
];
const APP_KEYS: [&str; 8] = [
    "name",
    "api_token",
    "source",
    "drain_token",
    "drain_password",
    "dyno_types",
    "types",
    "blind_after",
];
const NOTIFY_KEYS: [&str; 4] = ["kind", "url", "events", "secret"];

/// Environment variables that only mean something without a file: with
/// one they are ignored, and said to be (unless the file reads them).
const ENV_ONLY: [&str; 8] = [
    "APP_ID_OR_NAME",
    "DYNO_TYPES",
    "AUTH_TOKEN",
    "DRAIN_PASSWORD",
    "DRAIN_TOKEN",
    "DYNOGUARD_SOURCE",
    "SLACK_WEBHOOK_URL",
    "SLACK_EVENTS",
];

fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Walks the document, collecting problems with their line.
struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
    env: &'a Env,
    /// `(line, server-only, problem)`.
    problems: Vec<(usize, bool, Problem)>,
    warnings: Vec<(usize, Problem)>,
    /// Variables the document reads through `${VAR}`.
    read: BTreeSet<String>,
    /// Problems found now concern only `serve` (secrets, server, store,
    /// notifications): `replay` goes on without them.
    serving: bool,
}

impl<'a> Ctx<'a> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        self.src[..span.start.min(self.src.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn at(&self, key: &str, line: usize) -> String {
        format!("{}:{line}: {key}", self.file)
    }

    fn problem(&mut self, key: &str, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.push(key, span, message, self.serving);
    }

    /// A problem with something only `serve` uses.
    fn server(&mut self, key: &str, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.push(key, span, message, true);
    }

    fn push(
        &mut self,
        key: &str,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        server: bool,
    ) {
        let line = self.line(span);
        let p = Problem {
            at: self.at(key, line),
            message: message.into(),
        };
        self.problems.push((line, server, p));
    }

    fn warn(&mut self, key: &str, span: std::ops::Range<usize>, message: impl Into<String>) {
        let line = self.line(span);
        let p = Problem {
            at: self.at(key, line),
            message: message.into(),
        };
        self.warnings.push((line, p));
    }

    /// Unknown keys of a table, each reported with what is allowed.
    fn known_keys(&mut self, path: &str, t: &DeTable<'_>, allowed: &[&str]) {
        for (k, _) in t.iter() {
            let name = k.get_ref().as_ref();
            if allowed.contains(&name) {
                continue;
            }
            let full = join(path, name);
            let hint = suggestion(name, allowed.iter().copied());
            self.problem(
                &full,
                k.span(),
                format!(
                    "unknown key{hint}{} allowed here: {}",
                    if hint.is_empty() { ";" } else { "" },
                    allowed.join(", ")
                ),
            );
        }
    }

    fn table<'v>(&mut self, key: &str, v: &'v Value<'a>) -> Option<&'v DeTable<'a>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.problem(
                    key,
                    v.span(),
                    format!("expected a table ([{key}]), found {}", kind(other)),
                );
                None
            }
        }
    }

    /// Expands `${VAR}` from the environment.
    fn expand(&mut self, key: &str, v: &Value<'_>, s: &str) -> Option<String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.problem(key, v.span(), "unclosed ${ in value; write ${VAR}");
                return None;
            };
            let var = &after[..end];
            self.read.insert(var.to_owned());
            match self.env.get(var).filter(|v| !v.is_empty()) {
                Some(val) => out.push_str(val),
                None => {
                    self.problem(
                        key,
                        v.span(),
                        format!("environment variable {var} is not set"),
                    );
                    return None;
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// A string value (with `${VAR}` expanded).
    fn string(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => self.expand(key, v, s),
            other => {
                self.problem(
                    key,
                    v.span(),
                    format!("expected a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A secret: only `serve` needs it, so its problems are server-only.
    fn secret(&mut self, key: &str, v: Option<&Value<'_>>) -> Option<SecretString> {
        let was = std::mem::replace(&mut self.serving, true);
        let s = v.and_then(|v| self.string(key, v));
        self.serving = was;
        s.filter(|s| !s.is_empty()).map(SecretString::from)
    }

    /// A string, number or boolean as text (`threshold = 1000` and
    /// `threshold = "95%"` are both fine).
    fn scalar(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => self.expand(key, v, s),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n.to_string()),
                Err(_) => {
                    self.problem(key, v.span(), "integer too large");
                    None
                }
            },
            DeValue::Float(f) => Some(f.as_str().to_owned()),
            DeValue::Boolean(b) => Some(b.to_string()),
            other => {
                self.problem(
                    key,
                    v.span(),
                    format!("expected a string or a number, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list of strings; a single string is split on commas and spaces.
    fn list(&mut self, key: &str, v: &Value<'_>) -> Option<Vec<String>> {
        match v.get_ref() {
            DeValue::String(s) => Some(vec![s.to_string()]),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(s.to_string()),
                        other => {
                            self.problem(
                                key,
                                item.span(),
                                format!("expected a list of strings, found {} in it", kind(other)),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.problem(
                    key,
                    v.span(),
                    format!(
                        "expected a list of strings ([\"web\", \"worker\"]), found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    fn dyno_types(&mut self, key: &str, v: Option<&Value<'_>>) -> Option<DynoTypes> {
        let v = v?;
        let items = self.list(key, v)?;
        match DynoTypes::parse_list(items.iter().map(String::as_str)) {
            Ok(DynoTypes::List(l)) if l.is_empty() => {
                self.problem(
                    key,
                    v.span(),
                    "lists no process type; use e.g. [\"web\", \"worker\"] or [\"*\"]",
                );
                None
            }
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(key, v.span(), e);
                None
            }
        }
    }

    /// The knobs of one table over `base`; other keys are the caller's.
    fn policy(
        &mut self,
        path: &str,
        t: &DeTable<'_>,
        base: &Policy,
        set_by: &mut Vec<String>,
    ) -> Policy {
        let mut p = base.clone();
        for (k, v) in t.iter() {
            let Some(knob) = Knob::by_key(k.get_ref()) else {
                continue;
            };
            let key = join(path, knob.key);
            let Some(text) = self.scalar(&key, v) else {
                continue;
            };
            match knob.set(&mut p, &text) {
                Ok(warning) => {
                    if let Some(w) = warning {
                        self.warn(&key, v.span(), w);
                    }
                    let line = self.line(v.span());
                    set_by.push(format!("{key}={text} ({}:{line})", self.file));
                }
                Err(e) => self.problem(&key, v.span(), e),
            }
        }
        p
    }

    fn blind_after(&mut self, path: &str, t: &DeTable<'_>) -> Option<jiff::SignedDuration> {
        let key = join(path, "blind_after");
        let v = t.get("blind_after")?;
        let text = self.scalar(&key, v)?;
        knobs::parse_blind_after(&text)
            .map_err(|e| self.problem(&key, v.span(), e))
            .ok()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn keys_with_knobs(extra: &[&'static str]) -> Vec<&'static str> {
    KNOBS
        .iter()
        .map(|k| k.key)
        .chain(extra.iter().copied())
        .collect()
}

/// Reads and parses a TOML file.
pub fn load(path: &Path, env: &Env, need: Need) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(vec![Problem {
            at: file.clone(),
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    parse_for(&file, &src, env, need)
}

/// [`parse_for`] for `serve`: everything checked.
pub fn parse(file: &str, src: &str, env: &Env) -> Result<Config, ConfigError> {
    parse_for(file, src, env, Need::App)
}

/// Parses a TOML document named `file` (a path, or `DYNOGUARD_CONFIG_TOML`).
pub fn parse_for(file: &str, src: &str, env: &Env, need: Need) -> Result<Config, ConfigError> {
    let line_of = |start: usize| {
        src[..start.min(src.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    };
    let (doc, errors) = DeTable::parse_recoverable(src);
    if !errors.is_empty() {
        return Err(ConfigError(
            errors
                .iter()
                .map(|e| Problem {
                    at: match e.span() {
                        Some(s) => format!("{file}:{}", line_of(s.start)),
                        None => file.to_owned(),
                    },
                    message: e.message().trim().to_owned(),
                })
                .collect(),
        ));
    }
    let root = doc.get_ref();
    let mut cx = Ctx {
        file,
        src,
        env,
        problems: Vec::new(),
        warnings: Vec::new(),
        read: BTreeSet::new(),
        serving: false,
    };
    let mut c = Collect::default();
    let switches = super::env::switches(env, &mut c);
    cx.known_keys("", root, &ROOT_KEYS);

    // [server] and [store]: only `serve` uses them.
    cx.serving = true;
    let empty = DeTable::new();
    let server = root
        .get("server")
        .and_then(|v| cx.table("server", v))
        .unwrap_or(&empty);
    cx.known_keys("server", server, &SERVER_KEYS);
    let file_port = server.get("port").and_then(|v| {
        let text = cx.scalar("server.port", v)?;
        match text.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                cx.server(
                    "server.port",
                    v.span(),
                    format!("{text:?} is not allowed; use a port from 1 to 65535"),
                );
                None
            }
        }
    });
    let drain_password = cx.secret("server.drain_password", server.get("drain_password"));
    let file_dashboard = cx.secret(
        "server.dashboard_password",
        server.get("dashboard_password"),
    );
    let body_limit = server
        .get("body_limit")
        .and_then(|v| {
            let text = cx.scalar("server.body_limit", v)?;
            let bytes = text.parse::<usize>().ok().or_else(|| {
                knobs::parse_size(&text).map(|m| (m.0 * 1024.0 * 1024.0) as usize)
            });
            match bytes {
                Some(n) if (1024..=1024 * 1024 * 1024).contains(&n) => Some(n),
                _ => {
                    cx.server(
                        "server.body_limit",
                        v.span(),
                        format!(
                            "{text:?} is not allowed; use bytes or a size (\"10MB\") from 1024 bytes to 1GB"
                        ),
                    );
                    None
                }
            }
        })
        .unwrap_or(DEFAULT_BODY_LIMIT);
    let log_format = match server.get("log_format") {
        None => match get(env, "LOG_FORMAT") {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Text,
        },
        Some(v) => match cx.string("server.log_format", v).as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") | None => LogFormat::Text,
            Some(other) => {
                cx.server(
                    "server.log_format",
                    v.span(),
                    format!("{other:?} is not allowed; use \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        },
    };
    let heroku_api_url = match server.get("heroku_api_url") {
        Some(v) => cx.string("server.heroku_api_url", v).unwrap_or_default(),
        None => get(env, "HEROKU_API_URL")
            .unwrap_or(DEFAULT_HEROKU_API_URL)
            .to_owned(),
    }
    .trim_end_matches('/')
    .to_owned();
    let api_at = if server.contains_key("heroku_api_url") {
        format!("{file}: server.heroku_api_url")
    } else {
        "HEROKU_API_URL".to_owned()
    };
    super::check_api_url(&heroku_api_url, &mut c, &api_at);
    let api_origin = if server.contains_key("heroku_api_url") {
        "server.heroku_api_url (file)"
    } else if get(env, "HEROKU_API_URL").is_some() {
        "HEROKU_API_URL (environment)"
    } else {
        "default"
    }
    .to_owned();
    let log_format_origin = if server.contains_key("log_format") {
        "server.log_format (file)"
    } else if get(env, "LOG_FORMAT").is_some() {
        "LOG_FORMAT (environment)"
    } else {
        "default"
    }
    .to_owned();
    let public_url = match server.get("public_url") {
        Some(v) => {
            cx.string("server.public_url", v)
                .and_then(|u| match super::check_http_url(&u) {
                    Ok(()) => Some(u.trim_end_matches('/').to_owned()),
                    Err(e) => {
                        cx.server("server.public_url", v.span(), e);
                        None
                    }
                })
        }
        None => super::env::public_url(env, &mut c),
    };

    // [store]
    let store = root
        .get("store")
        .and_then(|v| cx.table("store", v))
        .unwrap_or(&empty);
    cx.known_keys("store", store, &["url"]);
    let file_store = store.get("url").and_then(|v| {
        let url = cx.string("store.url", v)?;
        if switches.database_url.is_none()
            && let Err(e) = super::check_store_url(&url)
        {
            cx.server("store.url", v.span(), e);
        }
        Some(url)
    });

    cx.serving = false;

    // [defaults]
    let defaults_t = root
        .get("defaults")
        .and_then(|v| cx.table("defaults", v))
        .unwrap_or(&empty);
    cx.known_keys(
        "defaults",
        defaults_t,
        &keys_with_knobs(&["dyno_types", "blind_after"]),
    );
    let mut default_set_by = Vec::new();
    let defaults = cx.policy(
        "defaults",
        defaults_t,
        &Policy::default(),
        &mut default_set_by,
    );
    let default_types = cx
        .dyno_types("defaults.dyno_types", defaults_t.get("dyno_types"))
        .unwrap_or_default();
    let mut default_blind = knobs::DEFAULT_BLIND_AFTER;
    if let Some(b) = super::env::blind_after(env, &mut c) {
        default_blind = b;
    }
    if let Some(b) = cx.blind_after("defaults", defaults_t) {
        default_blind = b;
    }

    // [[app]]
    let mut apps: Vec<AppConfig> = Vec::new();
    let app_values: Vec<&Value<'_>> = match root.get("app") {
        None => Vec::new(),
        Some(v) => match v.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            other => {
                cx.problem(
                    "app",
                    v.span(),
                    format!(
                        "expected [[app]] tables (one per watched app), found {}",
                        kind(other)
                    ),
                );
                Vec::new()
            }
        },
    };
    if app_values.is_empty() && root.get("app").is_none() {
        cx.problem("[[app]]", 0..0, "missing: name at least one app to watch");
    }
    for (i, v) in app_values.into_iter().enumerate() {
        let Some(a) = cx.table(&format!("app[{i}]"), v) else {
            continue;
        };
        let name = match a.get("name") {
            None => {
                cx.problem(
                    &format!("app[{i}].name"),
                    v.span(),
                    "required: the Heroku app's name",
                );
                None
            }
            Some(n) => {
                cx.string(&format!("app[{i}].name"), n)
                    .and_then(|s| match AppName::parse(&s) {
                        Ok(name) => Some(name),
                        Err(e) => {
                            cx.problem(&format!("app[{i}].name"), n.span(), e.to_string());
                            None
                        }
                    })
            }
        };
        let path = match &name {
            Some(n) => format!("app.{n}"),
            None => format!("app[{i}]"),
        };
        cx.known_keys(&path, a, &keys_with_knobs(&APP_KEYS));
        if let (Some(n), Some(nv)) = (&name, a.get("name"))
            && apps.iter().any(|x| &x.name == n)
        {
            cx.problem(
                &format!("{path}.name"),
                nv.span(),
                "the same app is configured twice",
            );
        }
        let source = match a.get("source") {
            None => Source::Drain,
            Some(v) => match cx.string(&format!("{path}.source"), v).as_deref() {
                Some("drain") | None => Source::Drain,
                Some("log-session") => Source::LogSession,
                Some(other) => {
                    cx.problem(
                        &format!("{path}.source"),
                        v.span(),
                        format!("{other:?} is not allowed; use \"drain\" or \"log-session\""),
                    );
                    Source::Drain
                }
            },
        };
        let api_token = cx.secret(&format!("{path}.api_token"), a.get("api_token"));
        let drain_token = a
            .get("drain_token")
            .and_then(|v| cx.string(&format!("{path}.drain_token"), v));
        let drain_password = cx.secret(&format!("{path}.drain_password"), a.get("drain_password"));
        let mut set_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut app_set = default_set_by.clone();
        let app_defaults = cx.policy(&path, a, &defaults, &mut app_set);
        let dyno_types = cx
            .dyno_types(&format!("{path}.dyno_types"), a.get("dyno_types"))
            .unwrap_or_else(|| default_types.clone());
        let blind_after = cx.blind_after(&path, a).unwrap_or(default_blind);
        let mut per_type = BTreeMap::new();
        if let Some(tv) = a.get("types")
            && let Some(types) = cx.table(&format!("{path}.types"), tv)
        {
            for (k, tv) in types.iter() {
                let ty = k.get_ref().to_string();
                let tpath = format!("{path}.types.{ty}");
                let Some(t) = cx.table(&tpath, tv) else {
                    continue;
                };
                if !crate::decide::policy::is_process_type(&ty) {
                    cx.problem(
                        &tpath,
                        k.span(),
                        format!("{ty:?} is not a process type name: use letters, digits, _ and -"),
                    );
                    continue;
                }
                cx.known_keys(&tpath, t, &keys_with_knobs(&[]));
                if !dyno_types.watches(&ty) {
                    let watched: Vec<&str> = match &dyno_types {
                        DynoTypes::List(l) => l.iter().map(String::as_str).collect(),
                        DynoTypes::All => Vec::new(),
                    };
                    let hint = suggestion(&ty, watched.iter().copied());
                    cx.warn(
                        &tpath,
                        k.span(),
                        format!(
                            "settings for {ty}, which is not watched (dyno_types = [{}]): ignored{hint}",
                            match &dyno_types {
                                DynoTypes::All => "\"*\"".to_owned(),
                                DynoTypes::List(l) => l
                                    .iter()
                                    .map(|t| format!("{t:?}"))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            }
                        ),
                    );
                }
                let mut type_set = app_set.clone();
                let p = cx.policy(&tpath, t, &app_defaults, &mut type_set);
                set_by.insert(ty.clone(), type_set);
                per_type.insert(ty, p);
            }
        }
        set_by.insert("*".into(), app_set);
        set_by.retain(|_, v| !v.is_empty());
        if let Some(name) = name {
            apps.push(AppConfig {
                name,
                api_token,
                source,
                drain_token,
                drain_password,
                policy: AppPolicy {
                    dyno_types,
                    defaults: app_defaults,
                    per_type,
                    blind_after,
                },
                set_by,
            });
        }
    }

    // [[notify]]
    cx.serving = true;
    let mut notify = Vec::new();
    let notify_values: Vec<&Value<'_>> = match root.get("notify") {
        None => Vec::new(),
        Some(v) => match v.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            other => {
                cx.server(
                    "notify",
                    v.span(),
                    format!("expected [[notify]] tables, found {}", kind(other)),
                );
                Vec::new()
            }
        },
    };
    for (i, v) in notify_values.into_iter().enumerate() {
        let p = format!("notify[{i}]");
        let Some(n) = cx.table(&p, v) else { continue };
        cx.known_keys(&p, n, &NOTIFY_KEYS);
        let kind = match n.get("kind") {
            None => {
                cx.server(
                    &format!("{p}.kind"),
                    v.span(),
                    "required: \"slack\" or \"webhook\"",
                );
                None
            }
            Some(kv) => match cx.string(&format!("{p}.kind"), kv).as_deref() {
                Some("slack") => Some(NotifyKind::Slack),
                Some("webhook") => Some(NotifyKind::Webhook),
                Some(other) => {
                    cx.server(
                        &format!("{p}.kind"),
                        kv.span(),
                        format!("{other:?} is not allowed; use \"slack\" or \"webhook\""),
                    );
                    None
                }
                None => None,
            },
        };
        let url = match n.get("url") {
            None => {
                cx.server(&format!("{p}.url"), v.span(), "required: the webhook URL");
                None
            }
            Some(uv) => {
                cx.string(&format!("{p}.url"), uv)
                    .and_then(|u| match super::check_http_url(&u) {
                        Ok(()) => Some(u),
                        Err(e) => {
                            cx.server(&format!("{p}.url"), uv.span(), e);
                            None
                        }
                    })
            }
        };
        let events = match n.get("events") {
            None => Vec::new(),
            Some(ev) => cx
                .list(&format!("{p}.events"), ev)
                .and_then(|l| {
                    event_list(l.iter().map(String::as_str))
                        .map_err(|e| cx.server(&format!("{p}.events"), ev.span(), e))
                        .ok()
                })
                .unwrap_or_default(),
        };
        let secret = cx.secret(&format!("{p}.secret"), n.get("secret"));
        if let (Some(kind), Some(url)) = (kind, url) {
            notify.push(NotifyConfig {
                kind,
                url: SecretString::from(url),
                events,
                secret,
            });
        }
    }

    // The environment's operational switches win over the file.
    let port_origin;
    let port = match (switches.port, file_port) {
        (Some(p), Some(_)) => {
            port_origin = "PORT (environment, over server.port in the file)";
            p
        }
        (Some(p), None) => {
            port_origin = "PORT (environment)";
            p
        }
        (None, Some(p)) => {
            port_origin = "server.port (file)";
            p
        }
        (None, None) => {
            port_origin = "default";
            DEFAULT_PORT
        }
    };
    let (database_url, store_origin) = match (switches.database_url, file_store) {
        (Some(u), Some(_)) => (u, "DATABASE_URL (environment, over store.url in the file)"),
        (Some(u), None) => (u, "DATABASE_URL (environment)"),
        (None, Some(u)) => (u, "store.url (file)"),
        (None, None) => (DEFAULT_DATABASE_URL.to_owned(), "default"),
    };
    let (dashboard_password, dashboard_origin) = match (switches.dashboard_password, file_dashboard)
    {
        (Some(p), Some(_)) => (
            Some(p),
            "DASHBOARD_PASSWORD (environment, over server.dashboard_password in the file)",
        ),
        (Some(p), None) => (Some(p), "DASHBOARD_PASSWORD (environment)"),
        (None, Some(p)) => (Some(p), "server.dashboard_password (file)"),
        (None, None) if drain_password.is_some() => {
            (drain_password.clone(), "server.drain_password (file)")
        }
        (None, None) => (None, "not set"),
    };
    let dry_origin = match switches.dry_run {
        Some(true) => {
            for a in &mut apps {
                a.policy.defaults.dry_run = true;
                for p in a.policy.per_type.values_mut() {
                    p.dry_run = true;
                }
            }
            "DYNOGUARD_DRY_RUN=1 (environment, over the file: every app and type)"
        }
        Some(false) => {
            for a in &apps {
                if a.policy.defaults.dry_run || a.policy.per_type.values().any(|p| p.dry_run) {
                    c.warn(
                        "DYNOGUARD_DRY_RUN",
                        format!(
                            "is 0 but the file sets dry_run = true for {}: the file's dry run stays on (remove it from the file to restart for real)",
                            a.name
                        ),
                    );
                }
            }
            "file (DYNOGUARD_DRY_RUN=0 turns nothing off)"
        }
        None => "file",
    };

    // Config vars that mean nothing with a file are said to be ignored.
    for (var, value) in env {
        if value.trim().is_empty() || cx.read.contains(var) {
            continue;
        }
        let knob_var = Knob::by_var(var).is_some_and(|(prefix, k)| {
            !(prefix == super::env::DEFAULT_PREFIX && k.key == "dry_run")
        });
        if ENV_ONLY.contains(&var.as_str()) || knob_var {
            c.warn(
                var.as_str(),
                format!(
                    "ignored: the configuration comes from {file}; set it there (see dynoguard.example.toml) or read it with ${{{var}}}"
                ),
            );
        }
    }

    // Misspelt dynoguard variables and the peers' names, as without a file
    // (a `DYNOGUARD_DRY_RUNN` matters here too); variables the file reads
    // through `${VAR}` are the file's business.
    let watched: Vec<String> = apps
        .iter()
        .filter_map(|a| match &a.policy.dyno_types {
            DynoTypes::List(l) => Some(l.clone()),
            DynoTypes::All => None,
        })
        .flatten()
        .collect();
    let warned: BTreeSet<String> = c.warnings.iter().map(|w| w.at.clone()).collect();
    super::names::unknown_vars(
        env,
        &watched,
        true,
        &|v| warned.contains(v) || cx.read.contains(v),
        &mut c,
    );

    // File problems in line order, then the environment's.
    cx.problems.sort_by_key(|(line, _, _)| *line);
    cx.warnings.sort_by_key(|(line, _)| *line);
    let mut all = Collect::default();
    for (_, server, p) in cx.problems {
        if server {
            all.server.push(p);
        } else {
            all.problems.push(p);
        }
    }
    all.warnings.extend(cx.warnings.into_iter().map(|(_, p)| p));
    all.problems.extend(c.problems);
    all.server.extend(c.server);
    all.warnings.extend(c.warnings);
    let warnings = all.finish(need)?;

    Ok(Config {
        server: ServerConfig {
            port,
            drain_password,
            dashboard_password,
            body_limit,
        },
        database_url: SecretString::from(database_url),
        heroku_api_url,
        log_format,
        apps,
        notify,
        public_url,
        origins: Origins {
            port: port_origin.into(),
            database_url: store_origin.into(),
            dashboard_password: dashboard_origin.into(),
            dry_run: dry_origin.into(),
            log_format: log_format_origin,
            heroku_api_url: api_origin,
        },
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::tests::env;
    use crate::decide::policy::Threshold;
    use crate::domain::Megabytes;

    const MIN: &str = "[server]\nport = 7000\ndrain_password = \"${PW}\"\n\n[[app]]\nname = \"a\"\napi_token = \"t\"\n";

    fn problems(src: &str, e: &Env) -> String {
        parse("bad.toml", src, e).unwrap_err().to_string()
    }

    #[test]
    fn the_environment_wins_for_the_operational_switches() {
        let c = parse("f", MIN, &env(&[("PW", "x")])).unwrap();
        assert_eq!(c.server.port, 7000);
        assert_eq!(c.origins.port, "server.port (file)");
        let c = parse(
            "f",
            MIN,
            &env(&[
                ("PW", "x"),
                ("PORT", "31337"),
                ("DYNOGUARD_DRY_RUN", "1"),
                ("DASHBOARD_PASSWORD", "dash"),
                ("DATABASE_URL", "postgres://u:p@db.example.com/d"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.port, 31337);
        assert!(c.apps[0].policy.defaults.dry_run);
        use secrecy::ExposeSecret as _;
        assert_eq!(
            c.server
                .dashboard_password
                .as_ref()
                .unwrap()
                .expose_secret(),
            "dash"
        );
        assert!(c.database_url.expose_secret().starts_with("postgres://"));
        assert!(c.origins.dry_run.starts_with("DYNOGUARD_DRY_RUN=1"));
    }

    #[test]
    fn variables_are_expanded_and_stay_secret() {
        let c = parse("f", MIN, &env(&[("PW", "s3cret-value")])).unwrap();
        use secrecy::ExposeSecret as _;
        assert_eq!(
            c.server.drain_password.as_ref().unwrap().expose_secret(),
            "s3cret-value"
        );
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }

    #[test]
    fn types_inherit_app_then_defaults() {
        let src = "[server]\ndrain_password = \"p\"\n\n[defaults]\nrestart_window = \"20m\"\nthreshold = \"90%\"\n\n[[app]]\nname = \"a\"\napi_token = \"t\"\ndyno_types = [\"web\", \"worker\"]\nthreshold = \"1000MB\"\n\n  [app.types.worker]\n  consecutive = 2\n";
        let c = parse("f", src, &Env::new()).unwrap();
        let p = &c.apps[0].policy;
        let web = p.for_type("web").unwrap();
        let worker = p.for_type("worker").unwrap();
        assert_eq!(web.threshold, Threshold::Absolute(Megabytes(1000.0)));
        assert_eq!(web.restart_window.as_secs(), 1200);
        assert_eq!(
            (
                worker.threshold,
                worker.consecutive,
                worker.restart_window.as_secs()
            ),
            (Threshold::Absolute(Megabytes(1000.0)), 2, 1200)
        );
        assert!(p.for_type("clock").is_none());
    }

    #[test]
    fn every_problem_of_a_file_in_one_run_with_line_and_full_key() {
        let src = "\
[server]
drain_password = \"p\"
port = \"http\"

[defaults]
thresold = \"90%\"
dyno_types = 5

[[app]]
name = \"shop\"
dyno_types = \"web\"
consecutive = \"many\"

  [app.types.web]
  settle = [1, 2]
  max_parallel = \"0%\"
";
        let text = problems(src, &Env::new());
        let expected = [
            "bad.toml:3: server.port: \"http\" is not allowed; use a port from 1 to 65535",
            "bad.toml:6: defaults.thresold: unknown key; did you mean threshold?",
            "bad.toml:7: defaults.dyno_types: expected a list of strings ([\"web\", \"worker\"]), found an integer",
            "bad.toml:12: app.shop.consecutive: \"many\" is not allowed; use a count of samples from 1 to 100",
            "bad.toml:15: app.shop.types.web.settle: expected a string or a number, found an array",
            "bad.toml:16: app.shop.types.web.max_parallel: \"0%\" is not allowed (out of range)",
        ];
        for e in expected {
            assert!(text.contains(e), "{e}\n---\n{text}");
        }
        assert!(
            text.starts_with("invalid configuration (6 problems)"),
            "{text}"
        );
    }

    #[test]
    fn unwatched_types_and_ignored_vars_are_warned() {
        let src = "[server]\ndrain_password = \"p\"\n[[app]]\nname = \"a\"\napi_token = \"t\"\ndyno_types = [\"web\", \"worker\"]\n[app.types.wroker]\nthreshold = 900\n";
        let c = parse(
            "f.toml",
            src,
            &env(&[("WEB_RESTART_THRESHOLD", "900"), ("APP_ID_OR_NAME", "x")]),
        )
        .unwrap();
        let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            w[0],
            "f.toml:7: app.a.types.wroker: settings for wroker, which is not watched (dyno_types = [\"web\", \"worker\"]): ignored; did you mean worker?"
        );
        assert!(
            w.iter().any(|w| w.starts_with(
                "WEB_RESTART_THRESHOLD: ignored: the configuration comes from f.toml"
            )),
            "{w:?}"
        );
        assert!(
            w.iter().any(|w| w.starts_with("APP_ID_OR_NAME: ignored")),
            "{w:?}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let text = problems("[server\nport = 1\n", &Env::new());
        assert!(text.contains("bad.toml:1"), "{text}");
    }

    #[test]
    fn replay_needs_neither_secrets_nor_server_settings() {
        let src = "[server]\nport = 0\ndrain_password = \"${NOPE_PW}\"\n[store]\nurl = \"mysql://h/d\"\n[[app]]\nname = \"a\"\napi_token = \"${NOPE_TOKEN}\"\n[[notify]]\nkind = \"slack\"\nurl = \"${NOPE_HOOK}\"\n";
        assert!(parse_for("f", src, &Env::new(), Need::Nothing).is_ok());
        let text = problems(src, &Env::new());
        assert!(
            text.contains("store.url: mysql:// is not supported"),
            "{text}"
        );
    }
}
