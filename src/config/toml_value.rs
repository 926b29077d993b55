//! Reading one TOML value as the configuration's text: the value's line and
//! full key ([`Origin`]), `${VAR}` from the environment, the shapes a
//! setting may take ([`Shape`]) and the "expected a string, found an
//! integer" problems — so [`super::file`] only walks the sections.

use std::collections::BTreeSet;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::entry::{Entry, Found, Origin};
use super::env::Env;
use super::knobs::suggestion;
use super::settings::Shape;

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// `a string`, `an integer`: what a value is, for "expected …, found …".
pub(crate) fn kind(v: &DeValue<'_>) -> &'static str {
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

/// `server.port`; a top-level key alone.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Walks one document, collecting problems with their line.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    src: &'a str,
    env: &'a Env,
    pub found: Found,
    /// Variables the document reads through `${VAR}`.
    pub read: BTreeSet<String>,
    /// Problems found now concern only `serve` (secrets, server, store,
    /// notifications): `replay` goes on without them.
    pub serving: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a str, src: &'a str, env: &'a Env) -> Self {
        Self {
            file,
            src,
            env,
            found: Found::default(),
            read: BTreeSet::new(),
            serving: false,
        }
    }

    /// The line a span starts on, from 1.
    pub fn line(&self, start: usize) -> usize {
        self.src[..start.min(self.src.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    /// `key` as written at `span`.
    pub fn origin(&self, key: &str, span: Range<usize>) -> Origin {
        Origin::File {
            file: self.file.to_owned(),
            line: self.line(span.start),
            key: key.to_owned(),
        }
    }

    pub fn problem(&mut self, key: &str, span: Range<usize>, message: impl Into<String>) {
        let o = self.origin(key, span);
        self.found.problem(&o, self.serving, message);
    }

    /// A problem with something only `serve` uses.
    pub fn server(&mut self, key: &str, span: Range<usize>, message: impl Into<String>) {
        let o = self.origin(key, span);
        self.found.problem(&o, true, message);
    }

    /// "expected `what`, found an integer": a value of the wrong type.
    fn wrong<T>(
        &mut self,
        key: &str,
        span: Range<usize>,
        what: &str,
        v: &DeValue<'_>,
    ) -> Option<T> {
        self.problem(key, span, format!("expected {what}, found {}", kind(v)));
        None
    }

    /// Unknown keys of a table, each reported with what is allowed.
    pub fn known_keys(&mut self, path: &str, t: &DeTable<'_>, allowed: &[&str]) {
        for (k, _) in t.iter() {
            let name = k.get_ref().as_ref();
            if allowed.contains(&name) {
                continue;
            }
            let hint = suggestion(name, allowed.iter().copied());
            self.problem(
                &join(path, name),
                k.span(),
                format!(
                    "unknown key{hint}{} allowed here: {}",
                    if hint.is_empty() { ";" } else { "" },
                    allowed.join(", ")
                ),
            );
        }
    }

    pub fn table<'v>(&mut self, key: &str, v: &'v Value<'a>) -> Option<&'v DeTable<'a>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => self.wrong(key, v.span(), &format!("a table ([{key}])"), other),
        }
    }

    /// `[[key]]` tables: the items of an array (a problem otherwise).
    pub fn tables<'v>(&mut self, key: &str, v: &'v Value<'a>, what: &str) -> Vec<&'v Value<'a>> {
        match v.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            other => {
                let tables = format!("[[{key}]] tables{what}");
                self.wrong(key, v.span(), &tables, other)
                    .unwrap_or_default()
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
    pub fn string(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => self.expand(key, v, s),
            other => self.wrong(key, v.span(), "a string", other),
        }
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
            other => self.wrong(key, v.span(), "a string or a number", other),
        }
    }

    /// A list of strings (one string is split later, on commas and
    /// spaces), as one text of comma-separated items.
    fn list(&mut self, key: &str, v: &Value<'_>) -> Option<String> {
        let items = match v.get_ref() {
            DeValue::String(s) => return Some(s.to_string()),
            DeValue::Array(items) => items,
            other => {
                return self.wrong(
                    key,
                    v.span(),
                    "a list of strings ([\"web\", \"worker\"])",
                    other,
                );
            }
        };
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
        Some(out.join(","))
    }

    /// The value of `key` read as `shape`, with its origin; none (and a
    /// problem said) when it cannot be read.
    pub fn entry(&mut self, key: &str, v: &Value<'_>, shape: Shape) -> Option<Entry> {
        let value = match shape {
            Shape::Text => self.string(key, v),
            Shape::Scalar => self.scalar(key, v),
            Shape::List => self.list(key, v),
            Shape::Secret => {
                // Only `serve` needs a secret, so its problems are server-only.
                let was = std::mem::replace(&mut self.serving, true);
                let s = self.string(key, v).filter(|s| !s.is_empty());
                self.serving = was;
                s
            }
        }?;
        Some(Entry {
            value,
            origin: self.origin(key, v.span()),
        })
    }
}
