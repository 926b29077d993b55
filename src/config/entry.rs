//! The one configuration model both sources produce. The environment
//! ([`super::env`]) and a TOML document ([`super::file`]) each turn what they
//! read into [`Entries`] — a setting's row, its value as written and where it
//! was written ([`Origin`]) — and [`super::build`] alone turns entries into a
//! [`super::Config`]. So a value means the same and is refused with the same
//! message wherever it is written; only the place named differs.

use super::knobs::Knob;
use super::settings::Setting;
use super::{Collect, ConfigError, Problem};

/// Where a value was written: a variable, or a file's line and full key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `WEB_RESTART_THRESHOLD`.
    Env(String),
    /// `shop.toml:12: app.shop.types.worker.threshold`.
    File {
        file: String,
        line: usize,
        key: String,
    },
}

impl Origin {
    /// As problems name it: `PORT`, `dg.toml:3: server.port`.
    pub fn at(&self) -> String {
        match self {
            Self::Env(var) => var.clone(),
            Self::File { file, line, key } => format!("{file}:{line}: {key}"),
        }
    }

    /// The file line, for ordering a file's problems; none for a variable.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Env(_) => None,
            Self::File { line, .. } => Some(*line),
        }
    }

    pub fn is_file(&self) -> bool {
        matches!(self, Self::File { .. })
    }

    /// A word as it is written in this source: `"json"` in TOML, `json` in
    /// a variable — messages show what to type where the mistake was.
    pub fn literal(&self, word: &str) -> String {
        if self.is_file() {
            format!("{word:?}")
        } else {
            word.to_owned()
        }
    }

    /// How `check` lists a setting that changed a policy:
    /// `WEB_RESTART_WINDOW=300`, `app.shop.settle=2m (dg.toml:9)`.
    pub fn set_by(&self, value: &str) -> String {
        match self {
            Self::Env(var) => format!("{var}={value}"),
            Self::File { file, line, key } => format!("{key}={value} ({file}:{line})"),
        }
    }
}

/// One value as written. Not `Debug`: the value may be a secret.
pub(crate) struct Entry {
    /// The text (a list's items joined by commas; TOML numbers as text).
    pub value: String,
    pub origin: Origin,
}

impl Entry {
    /// `value` as variable `var` holds it.
    pub fn env(var: &str, value: &str) -> Self {
        Self {
            value: value.to_owned(),
            origin: Origin::Env(var.to_owned()),
        }
    }
}

/// A setting of the table with its value.
pub(crate) struct Item {
    pub setting: &'static Setting,
    pub entry: Entry,
}

/// Settings and policy knobs written at one level: `[defaults]`, an
/// `[[app]]`, a `[[notify]]` (no knobs there), or the variables for them.
#[derive(Default)]
pub(crate) struct Scope {
    pub items: Vec<Item>,
    pub knobs: Vec<(&'static Knob, Entry)>,
}

impl Scope {
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.setting.key == key)
    }
}

/// Knobs for one process type: an `[app.types.TYPE]` table (named by its
/// header), or one `{TYPE}_{KNOB}` variable (named by its prefix, `WEB`,
/// resolved against the watched types once they are known).
pub(crate) struct TypeEntries {
    pub name: String,
    pub origin: Origin,
    pub knobs: Vec<(&'static Knob, Entry)>,
}

#[derive(Default)]
pub(crate) struct AppEntries {
    pub scope: Scope,
    pub types: Vec<TypeEntries>,
}

/// Everything both sources found, and the problems found while reading.
#[derive(Default)]
pub(crate) struct Entries {
    /// `[server]`, `[store]` and their variables.
    pub global: Scope,
    /// `[defaults]`, `DYNOGUARD_{KNOB}`, `DYNOGUARD_BLIND_AFTER`.
    pub defaults: Scope,
    pub apps: Vec<AppEntries>,
    pub notify: Vec<Scope>,
    /// With a file: `DYNOGUARD_DRY_RUN`, which turns dry run on for every
    /// app and type however the file is written (SPEC §5.1).
    pub dry_run_switch: Option<Entry>,
    /// With a file: its name and the variables it reads through `${VAR}`
    /// (those are the file's business, never "ignored").
    pub file: Option<(String, std::collections::BTreeSet<String>)>,
    pub found: Found,
}

/// Problems and warnings as they are found, each with its origin: a file's
/// come first in line order (as the file reads), then the environment's in
/// the order they were found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// `(line, server-only, problem)`.
    file: Vec<(usize, bool, Problem)>,
    file_warnings: Vec<(usize, Problem)>,
    /// The environment's (and anything without a line).
    pub env: Collect,
}

impl Found {
    /// A problem; `server` when only `serve` needs the value.
    pub fn problem(&mut self, origin: &Origin, server: bool, message: impl Into<String>) {
        let p = Problem {
            at: origin.at(),
            message: message.into(),
        };
        match origin.line() {
            Some(line) => self.file.push((line, server, p)),
            None if server => self.env.server.push(p),
            None => self.env.problems.push(p),
        }
    }

    pub fn warn(&mut self, origin: &Origin, message: impl Into<String>) {
        let p = Problem {
            at: origin.at(),
            message: message.into(),
        };
        match origin.line() {
            Some(line) => self.file_warnings.push((line, p)),
            None => self.env.warnings.push(p),
        }
    }

    /// Whether anything (a variable) was already warned about.
    pub fn warned(&self) -> std::collections::BTreeSet<String> {
        self.env.warnings.iter().map(|w| w.at.clone()).collect()
    }

    /// The warnings, or every problem that matters for `need`.
    pub fn finish(mut self, need: super::env::Need) -> Result<Vec<Problem>, ConfigError> {
        // Stable: problems on one line stay in the order they were found.
        self.file.sort_by_key(|(line, _, _)| *line);
        self.file_warnings.sort_by_key(|(line, _)| *line);
        let mut all = Collect::default();
        for (_, server, p) in self.file {
            if server {
                all.server.push(p);
            } else {
                all.problems.push(p);
            }
        }
        all.warnings
            .extend(self.file_warnings.into_iter().map(|(_, p)| p));
        all.problems.extend(self.env.problems);
        all.server.extend(self.env.server);
        all.warnings.extend(self.env.warnings);
        all.finish(need)
    }
}
