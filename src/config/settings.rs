//! Every setting besides the policy knobs, once: its TOML section and key,
//! its config var, how the two relate when both are written, and how a
//! value is checked and stored ([`SETTINGS`]). The policy knobs have their
//! own table ([`super::knobs::KNOBS`]) because they repeat per type.
//!
//! Adding a setting is one row here plus its field (in [`Global`],
//! [`AppDraft`] or [`NotifyDraft`] and in [`super::Config`]), and one row
//! in the README's configuration table — a test below holds the README to
//! this table. The TOML reader, the environment reader, the unknown-key and
//! misspelt-variable checks all read it.

use jiff::SignedDuration;
use secrecy::SecretString;

use super::entry::Origin;
use super::env::event_list;
use super::knobs::{self, Outcome};
use super::{LogFormat, NotifyKind, Source};
use crate::decide::policy::DynoTypes;
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
        match self {
            Self::Server => "server",
            Self::Store => "store",
            Self::Defaults => "defaults",
            Self::App => "app",
            Self::Notify => "notify",
        }
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

/// Where a checked value goes.
pub enum Set {
    Global(fn(&mut Global, &str, &Origin) -> Outcome),
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
}

/// `[server]` and `[store]`: one per configuration.
#[derive(Default)]
pub struct Global {
    pub port: Option<u16>,
    pub drain_password: Option<SecretString>,
    pub dashboard_password: Option<SecretString>,
    pub body_limit: Option<usize>,
    pub log_format: Option<LogFormat>,
    pub heroku_api_url: Option<String>,
    pub public_url: Option<String>,
    pub database_url: Option<String>,
}

/// One app's settings (`[defaults]` holds the ones every app inherits).
#[derive(Default, Clone)]
pub struct AppDraft {
    pub name: Option<AppName>,
    pub api_token: Option<SecretString>,
    pub source: Option<Source>,
    pub drain_token: Option<String>,
    pub drain_password: Option<SecretString>,
    pub dyno_types: Option<DynoTypes>,
    pub blind_after: Option<SignedDuration>,
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

fn port(g: &mut Global, v: &str, _: &Origin) -> Outcome {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => g.port = Some(p),
        _ => return Err(format!("{v:?} is not allowed; use a port from 1 to 65535")),
    }
    Ok(None)
}

fn body_limit(g: &mut Global, v: &str, _: &Origin) -> Outcome {
    // Bytes, or a size in MB (`10MB`); the float is a whole number of
    // bytes within the range checked next, so the cast truncates nothing.
    let bytes = v
        .parse::<usize>()
        .ok()
        .or_else(|| knobs::parse_size(v).map(|m| (m.0 * 1024.0 * 1024.0) as usize));
    match bytes {
        Some(n) if (1024..=1024 * 1024 * 1024).contains(&n) => g.body_limit = Some(n),
        _ => {
            return Err(format!(
                "{v:?} is not allowed; use bytes or a size (\"10MB\") from 1024 bytes to 1GB"
            ));
        }
    }
    Ok(None)
}

fn heroku_api_url(g: &mut Global, v: &str, _: &Origin) -> Outcome {
    let url = v.trim_end_matches('/').to_owned();
    let warning = super::check_api_url(&url)?;
    g.heroku_api_url = Some(url);
    Ok(warning)
}

fn public_url(g: &mut Global, v: &str, _: &Origin) -> Outcome {
    super::check_http_url(v)?;
    g.public_url = Some(v.trim_end_matches('/').to_owned());
    Ok(None)
}

fn store_url(g: &mut Global, v: &str, _: &Origin) -> Outcome {
    super::check_store_url(v)?;
    g.database_url = Some(v.to_owned());
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
            a.dyno_types = Some(t);
            Ok(None)
        }
    }
}

fn blind_after(a: &mut AppDraft, v: &str, _: &Origin) -> Outcome {
    a.blind_after = Some(knobs::parse_blind_after(v)?);
    Ok(None)
}

fn app_name(a: &mut AppDraft, v: &str, _: &Origin) -> Outcome {
    a.name = Some(AppName::parse(v).map_err(|e| e.to_string())?);
    Ok(None)
}

fn source(a: &mut AppDraft, v: &str, o: &Origin) -> Outcome {
    let words = [
        ("drain", Source::Drain),
        ("log-session", Source::LogSession),
    ];
    a.source = Some(one_of(v, o, words)?);
    Ok(None)
}

fn notify_kind(n: &mut NotifyDraft, v: &str, o: &Origin) -> Outcome {
    let words = [
        ("slack", NotifyKind::Slack),
        ("webhook", NotifyKind::Webhook),
    ];
    n.kind = Some(one_of(v, o, words)?);
    Ok(None)
}

fn notify_url(n: &mut NotifyDraft, v: &str, _: &Origin) -> Outcome {
    super::check_http_url(v)?;
    n.url = Some(v.to_owned());
    Ok(None)
}

/// Every setting besides the policy knobs, per section in the order the
/// file's "allowed here" lists name them.
pub static SETTINGS: [Setting; 21] = [
    Setting {
        section: Section::Server,
        key: "port",
        env: &["PORT"],
        with_file: WithFile::EnvWins,
        shape: Shape::Scalar,
        serve_only: true,
        set: Set::Global(port),
    },
    Setting {
        section: Section::Server,
        key: "drain_password",
        env: &["DRAIN_PASSWORD"],
        with_file: WithFile::Ignored,
        shape: Shape::Secret,
        serve_only: true,
        set: Set::Global(|g, v, _| {
            g.drain_password = secret(v);
            Ok(None)
        }),
    },
    Setting {
        section: Section::Server,
        key: "dashboard_password",
        env: &["DASHBOARD_PASSWORD"],
        with_file: WithFile::EnvWins,
        shape: Shape::Secret,
        serve_only: true,
        set: Set::Global(|g, v, _| {
            g.dashboard_password = secret(v);
            Ok(None)
        }),
    },
    Setting {
        section: Section::Server,
        key: "body_limit",
        env: &[],
        with_file: WithFile::Ignored,
        shape: Shape::Scalar,
        serve_only: true,
        set: Set::Global(body_limit),
    },
    Setting {
        section: Section::Server,
        key: "log_format",
        env: &["LOG_FORMAT"],
        with_file: WithFile::Fallback,
        shape: Shape::Text,
        serve_only: true,
        set: Set::Global(|g, v, o| {
            let words = [("text", LogFormat::Text), ("json", LogFormat::Json)];
            g.log_format = Some(one_of(&v.to_ascii_lowercase(), o, words)?);
            Ok(None)
        }),
    },
    Setting {
        section: Section::Server,
        key: "heroku_api_url",
        env: &["HEROKU_API_URL"],
        with_file: WithFile::Fallback,
        shape: Shape::Text,
        serve_only: true,
        set: Set::Global(heroku_api_url),
    },
    Setting {
        section: Section::Server,
        key: "public_url",
        env: &["DYNOGUARD_URL"],
        with_file: WithFile::Fallback,
        shape: Shape::Text,
        serve_only: true,
        set: Set::Global(public_url),
    },
    Setting {
        section: Section::Store,
        key: "url",
        env: &["DATABASE_URL"],
        with_file: WithFile::EnvWins,
        shape: Shape::Text,
        serve_only: true,
        set: Set::Global(store_url),
    },
    Setting {
        section: Section::Defaults,
        key: "dyno_types",
        env: &[],
        with_file: WithFile::Ignored,
        shape: Shape::List,
        serve_only: false,
        set: Set::App(dyno_types),
    },
    Setting {
        section: Section::Defaults,
        key: "blind_after",
        env: &["DYNOGUARD_BLIND_AFTER"],
        with_file: WithFile::Fallback,
        shape: Shape::Scalar,
        serve_only: false,
        set: Set::App(blind_after),
    },
    Setting {
        section: Section::App,
        key: "name",
        env: &["APP_ID_OR_NAME"],
        with_file: WithFile::Ignored,
        shape: Shape::Text,
        serve_only: false,
        set: Set::App(app_name),
    },
    Setting {
        section: Section::App,
        key: "api_token",
        env: &["AUTH_TOKEN", "HEROKU_API_KEY"],
        with_file: WithFile::Ignored,
        shape: Shape::Secret,
        serve_only: true,
        set: Set::App(|a, v, _| {
            a.api_token = secret(v);
            Ok(None)
        }),
    },
    Setting {
        section: Section::App,
        key: "source",
        env: &["DYNOGUARD_SOURCE"],
        with_file: WithFile::Ignored,
        shape: Shape::Text,
        serve_only: true,
        set: Set::App(source),
    },
    Setting {
        section: Section::App,
        key: "drain_token",
        env: &["DRAIN_TOKEN"],
        with_file: WithFile::Ignored,
        shape: Shape::Text,
        serve_only: false,
        set: Set::App(|a, v, _| {
            a.drain_token = Some(v.to_owned());
            Ok(None)
        }),
    },
    Setting {
        section: Section::App,
        key: "drain_password",
        env: &[],
        with_file: WithFile::Ignored,
        shape: Shape::Secret,
        serve_only: true,
        set: Set::App(|a, v, _| {
            a.drain_password = secret(v);
            Ok(None)
        }),
    },
    Setting {
        section: Section::App,
        key: "dyno_types",
        env: &["DYNO_TYPES"],
        with_file: WithFile::Ignored,
        shape: Shape::List,
        serve_only: false,
        set: Set::App(dyno_types),
    },
    Setting {
        section: Section::App,
        key: "blind_after",
        env: &[],
        with_file: WithFile::Ignored,
        shape: Shape::Scalar,
        serve_only: false,
        set: Set::App(blind_after),
    },
    Setting {
        section: Section::Notify,
        key: "kind",
        env: &[],
        with_file: WithFile::Ignored,
        shape: Shape::Text,
        serve_only: true,
        set: Set::Notify(notify_kind),
    },
    Setting {
        section: Section::Notify,
        key: "url",
        env: &["SLACK_WEBHOOK_URL"],
        with_file: WithFile::Ignored,
        shape: Shape::Text,
        serve_only: true,
        set: Set::Notify(notify_url),
    },
    Setting {
        section: Section::Notify,
        key: "events",
        env: &["SLACK_EVENTS"],
        with_file: WithFile::Ignored,
        shape: Shape::List,
        serve_only: true,
        set: Set::Notify(|n, v, _| {
            n.events = event_list([v])?;
            Ok(None)
        }),
    },
    Setting {
        section: Section::Notify,
        key: "secret",
        env: &[],
        with_file: WithFile::Ignored,
        shape: Shape::Secret,
        serve_only: true,
        set: Set::Notify(|n, v, _| {
            n.secret = secret(v);
            Ok(None)
        }),
    },
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
