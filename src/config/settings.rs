//! Every setting besides the policy knobs, once: its TOML section and key,
//! its config var, how the two relate when both are written, and how a
//! value is checked and stored ([`SETTINGS`]). The policy knobs have their
//! own table ([`super::knobs::KNOBS`]) because they repeat per type.
//!
//! Adding a setting is one row here plus its field (in [`super::Config`],
//! [`AppDraft`] or [`NotifyDraft`]) and its setter, and one row in the
//! README's configuration table — a test below holds the README to
//! this table. The TOML reader, the environment reader, the unknown-key and
//! misspelt-variable checks all read it.

use secrecy::SecretString;

use super::entry::Origin;
use super::env::event_list;
use super::knobs::{self, Outcome};
use super::{Config, LogFormat, NotifyKind, Source};
use crate::decide::policy::{AppPolicy, DynoTypes};
use crate::domain::AppName;
use crate::domain::event::EventKind;

/// Where a setting is written in a TOML document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Server,
    Store,
    Defaults,
    App,
    Notify,
}

impl Section {
    pub fn name(self) -> &'static str {
        ["server", "store", "defaults", "app", "notify"][self as usize]
    }
}

/// What a setting's variable does when a file is the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithFile {
    /// The variable wins over the file (the operational switches: Heroku
    /// sets `PORT` and `DATABASE_URL`, SPEC §5.1).
    EnvWins,
    /// The file wins; the variable is used when the file says nothing.
    Fallback,
    /// The variable is ignored, and said to be (the file names its apps).
    Ignored,
}

/// How a TOML value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A string (`${VAR}` expanded).
    Text,
    /// A string, number or boolean, as text (`port = 80`, `port = "80"`).
    Scalar,
    /// A list of strings, or one string split on commas and spaces.
    List,
    /// A string only `serve` needs; never shown.
    Secret,
}

/// Where a checked value goes: the configuration itself (`[server]`,
/// `[store]`), an app (`[defaults]` is the app every app starts from), or
/// a notification sink.
pub enum Set {
    Global(fn(&mut Config, &str, &Origin) -> Outcome),
    App(fn(&mut AppDraft, &str, &Origin) -> Outcome),
    Notify(fn(&mut NotifyDraft, &str, &Origin) -> Outcome),
}

/// One setting (besides the policy knobs).
pub struct Setting {
    pub section: Section,
    /// Key in its TOML table: `port`.
    pub key: &'static str,
    /// Its config vars: the name, then aliases read when it is unset.
    pub env: &'static [&'static str],
    pub with_file: WithFile,
    pub shape: Shape,
    /// Only `serve` uses it: `replay` goes on without it, or with it wrong.
    pub serve_only: bool,
    pub set: Set,
}

impl Setting {
    /// `server.port`.
    pub fn path(&self) -> String {
        format!("{}.{}", self.section.name(), self.key)
    }

    pub fn in_section(section: Section) -> impl Iterator<Item = &'static Setting> {
        SETTINGS.iter().filter(move |s| s.section == section)
    }

    /// The row of `key` in `section`.
    pub fn row(section: Section, key: &str) -> Option<&'static Setting> {
        Self::in_section(section).find(|s| s.key == key)
    }
}

/// One app's settings before its name is known to be good.
#[derive(Default, Clone)]
pub struct AppDraft {
    pub name: Option<AppName>,
    pub api_token: Option<SecretString>,
    pub source: Source,
    pub drain_token: Option<String>,
    pub drain_password: Option<SecretString>,
    /// Its types and `blind_after`; the knobs are applied later.
    pub policy: AppPolicy,
}

#[derive(Default)]
pub struct NotifyDraft {
    pub kind: Option<NotifyKind>,
    pub url: Option<String>,
    pub events: Vec<EventKind>,
    pub secret: Option<SecretString>,
}

fn secret(v: &str) -> Option<SecretString> {
    Some(SecretString::from(v.to_owned()))
}

/// `text`/`json`, `drain`/`log-session`: one of two words.
fn one_of<T>(v: &str, o: &Origin, words: [(&str, T); 2]) -> Result<T, String> {
    let [(a, x), (b, y)] = words;
    match v {
        _ if v == a => Ok(x),
        _ if v == b => Ok(y),
        _ => Err(format!(
            "{v:?} is not allowed; use {} or {}",
            o.literal(a),
            o.literal(b)
        )),
    }
}

fn port(c: &mut Config, v: &str, _: &Origin) -> Outcome {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => c.server.port = p,
        _ => return Err(format!("{v:?} is not allowed; use a port from 1 to 65535")),
    }
    Ok(None)
}

fn drain_password(c: &mut Config, v: &str, _: &Origin) -> Outcome {
    c.server.drain_password = secret(v);
    Ok(None)
}

fn dashboard_password(c: &mut Config, v: &str, _: &Origin) -> Outcome {
    c.server.dashboard_password = secret(v);
    Ok(None)
}

fn body_limit(c: &mut Config, v: &str, _: &Origin) -> Outcome {
    // Bytes, or a size in MB (`10MB`); only a result within the range
    // below is kept, so the float-to-integer cast loses nothing that counts.
    let bytes = v
        .parse::<usize>()
        .ok()
        .or_else(|| knobs::parse_size(v).map(|m| (m.0 * 1024.0 * 1024.0) as usize));
    match bytes {
        Some(n) if (1024..=1024 * 1024 * 1024).contains(&n) => c.server.body_limit = n,
        _ => {
            return Err(format!(
                "{v:?} is not allowed; use bytes or a size (\"10MB\") from 1024 bytes to 1GB"
            ));
        }
    }
    Ok(None)
}

fn log_format(c: &mut Config, v: &str, o: &Origin) -> Outcome {
    let words = [("text", LogFormat::Text), ("json", LogFormat::Json)];
    c.log_format = one_of(&v.to_ascii_lowercase(), o, words)?;
    Ok(None)
}

fn heroku_api_url(c: &mut Config, v: &str, _: &Origin) -> Outcome {
    let url = v.trim_end_matches('/');
    let warning = super::check_api_url(url)?;
    c.heroku_api_url = url.to_owned();
    Ok(warning)
}

fn public_url(c: &mut Config, v: &str, _: &Origin) -> Outcome {
    super::check_http_url(v)?;
    c.public_url = Some(v.trim_end_matches('/').to_owned());
    Ok(None)
}

fn store_url(c: &mut Config, v: &str, _: &Origin) -> Outcome {
    super::check_store_url(v)?;
    c.database_url = SecretString::from(v.to_owned());
    Ok(None)
}

fn dyno_types(a: &mut AppDraft, v: &str, o: &Origin) -> Outcome {
    match DynoTypes::parse_list([v])? {
        DynoTypes::List(l) if l.is_empty() => Err(format!(
            "lists no process type; use e.g. {}",
            if o.is_file() {
                "[\"web\", \"worker\"] or [\"*\"]"
            } else {
                "web,worker or *"
            }
        )),
        t => {
            a.policy.dyno_types = t;
            Ok(None)
        }
    }
}

fn blind_after(a: &mut AppDraft, v: &str, _: &Origin) -> Outcome {
    a.policy.blind_after = knobs::parse_blind_after(v)?;
    Ok(None)
}

fn app_name(a: &mut AppDraft, v: &str, _: &Origin) -> Outcome {
    a.name = Some(AppName::parse(v).map_err(|e| e.to_string())?);
    Ok(None)
}

fn api_token(a: &mut AppDraft, v: &str, _: &Origin) -> Outcome {
    a.api_token = secret(v);
    Ok(None)
}

fn source(a: &mut AppDraft, v: &str, o: &Origin) -> Outcome {
    a.source = one_of(
        v,
        o,
        [
            ("drain", Source::Drain),
            ("log-session", Source::LogSession),
        ],
    )?;
    Ok(None)
}

fn drain_token(a: &mut AppDraft, v: &str, _: &Origin) -> Outcome {
    a.drain_token = Some(v.to_owned());
    Ok(None)
}

fn app_drain_password(a: &mut AppDraft, v: &str, _: &Origin) -> Outcome {
    a.drain_password = secret(v);
    Ok(None)
}

fn notify_kind(n: &mut NotifyDraft, v: &str, o: &Origin) -> Outcome {
    let kinds = [
        ("slack", NotifyKind::Slack),
        ("webhook", NotifyKind::Webhook),
    ];
    n.kind = Some(one_of(v, o, kinds)?);
    Ok(None)
}

fn notify_url(n: &mut NotifyDraft, v: &str, _: &Origin) -> Outcome {
    super::check_http_url(v)?;
    n.url = Some(v.to_owned());
    Ok(None)
}

fn notify_events(n: &mut NotifyDraft, v: &str, _: &Origin) -> Outcome {
    n.events = event_list([v])?;
    Ok(None)
}

fn notify_secret(n: &mut NotifyDraft, v: &str, _: &Origin) -> Outcome {
    n.secret = secret(v);
    Ok(None)
}

/// A row, in the table's column order.
const fn row(
    (section, key, env): (Section, &'static str, &'static [&'static str]),
    with_file: WithFile,
    shape: Shape,
    serve_only: bool,
    set: Set,
) -> Setting {
    Setting {
        section,
        key,
        env,
        with_file,
        shape,
        serve_only,
        set,
    }
}

/// Only `serve` needs it (`replay` goes on without it).
const SERVE: bool = true;
const ALWAYS: bool = false;

use Section::{App, Defaults, Notify, Server, Store};
use Set::{App as ToApp, Global as ToConfig, Notify as ToNotify};
use Shape::{List, Scalar, Secret, Text};
use WithFile::{EnvWins, Fallback, Ignored};

/// Every setting besides the policy knobs: per section, in the order the
/// file's "allowed here" lists name them. Columns: (section, TOML key,
/// config vars), the variable with a file, the TOML shape, who needs it,
/// where the value goes.
#[rustfmt::skip]
pub static SETTINGS: [Setting; 21] = [
    row((Server, "port", &["PORT"]), EnvWins, Scalar, SERVE, ToConfig(port)),
    row((Server, "drain_password", &["DRAIN_PASSWORD"]), Ignored, Secret, SERVE, ToConfig(drain_password)),
    row((Server, "dashboard_password", &["DASHBOARD_PASSWORD"]), EnvWins, Secret, SERVE, ToConfig(dashboard_password)),
    row((Server, "body_limit", &[]), Ignored, Scalar, SERVE, ToConfig(body_limit)),
    row((Server, "log_format", &["LOG_FORMAT"]), Fallback, Text, SERVE, ToConfig(log_format)),
    row((Server, "heroku_api_url", &["HEROKU_API_URL"]), Fallback, Text, SERVE, ToConfig(heroku_api_url)),
    row((Server, "public_url", &["DYNOGUARD_URL"]), Fallback, Text, SERVE, ToConfig(public_url)),
    row((Store, "url", &["DATABASE_URL"]), EnvWins, Text, SERVE, ToConfig(store_url)),
    row((Defaults, "dyno_types", &[]), Ignored, List, ALWAYS, ToApp(dyno_types)),
    row((Defaults, "blind_after", &["DYNOGUARD_BLIND_AFTER"]), Fallback, Scalar, ALWAYS, ToApp(blind_after)),
    row((App, "name", &["APP_ID_OR_NAME"]), Ignored, Text, ALWAYS, ToApp(app_name)),
    row((App, "api_token", &["AUTH_TOKEN", "HEROKU_API_KEY"]), Ignored, Secret, SERVE, ToApp(api_token)),
    row((App, "source", &["DYNOGUARD_SOURCE"]), Ignored, Text, SERVE, ToApp(source)),
    row((App, "drain_token", &["DRAIN_TOKEN"]), Ignored, Text, ALWAYS, ToApp(drain_token)),
    row((App, "drain_password", &[]), Ignored, Secret, SERVE, ToApp(app_drain_password)),
    row((App, "dyno_types", &["DYNO_TYPES"]), Ignored, List, ALWAYS, ToApp(dyno_types)),
    row((App, "blind_after", &[]), Ignored, Scalar, ALWAYS, ToApp(blind_after)),
    row((Notify, "kind", &[]), Ignored, Text, SERVE, ToNotify(notify_kind)),
    row((Notify, "url", &["SLACK_WEBHOOK_URL"]), Ignored, Text, SERVE, ToNotify(notify_url)),
    row((Notify, "events", &["SLACK_EVENTS"]), Ignored, List, SERVE, ToNotify(notify_events)),
    row((Notify, "secret", &[]), Ignored, Secret, SERVE, ToNotify(notify_secret)),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::knobs::KNOBS;

    /// The README's configuration section: its table rows only.
    fn readme_rows() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("### Configuration: config vars")
            .expect("the README has a configuration section");
        let section = &readme[start..];
        let end = section
            .find("**Where configuration comes from.**")
            .unwrap_or(section.len());
        section[..end]
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(str::to_owned)
            .collect()
    }

    fn listed(rows: &[String], name: &str) -> bool {
        let cell = format!("`{name}`");
        rows.iter().any(|r| r.contains(&cell))
    }

    #[test]
    fn the_readme_table_lists_every_setting() {
        let rows = readme_rows();
        for s in &SETTINGS {
            assert!(listed(&rows, &s.path()), "README lacks {}", s.path());
            for var in s.env {
                assert!(listed(&rows, var), "README lacks {var} ({})", s.path());
            }
        }
        for k in &KNOBS {
            assert!(listed(&rows, k.key), "README lacks the knob {}", k.key);
            assert!(listed(&rows, k.env), "README lacks the knob {}", k.env);
        }
        for v in &crate::config::tuning::TUNING_VARS {
            assert!(listed(&rows, v.name), "README lacks {}", v.name);
        }
    }

    #[test]
    fn every_row_is_named_once() {
        let mut paths: Vec<String> = SETTINGS.iter().map(Setting::path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), SETTINGS.len());
        let mut vars: Vec<&str> = SETTINGS
            .iter()
            .flat_map(|s| s.env.iter().copied())
            .collect();
        vars.sort_unstable();
        vars.dedup();
        assert_eq!(
            vars.len(),
            SETTINGS.iter().map(|s| s.env.len()).sum::<usize>()
        );
    }
}
