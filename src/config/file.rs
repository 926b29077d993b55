//! Configuration from a TOML document (SPEC §5.2): `[server]`, `[store]`,
//! `[defaults]`, any number of `[[app]]` with `[app.types.TYPE]` overrides,
//! and `[[notify]]` sinks. `${VAR}` in a string reads the environment. The
//! document comes from `--config FILE` or the `DYNOGUARD_CONFIG_TOML` config
//! var.
//!
//! The document is parsed into spanned TOML values and walked by hand, so
//! every problem of a file — unknown keys, wrong types, values out of range —
//! is reported in one run, each with its line and full key
//! (`shop.toml:12: app.shop.types.worker.threshold: …`). The walk only
//! turns the document into [`Entries`]; the values are checked by
//! [`super::build`], through the same rows ([`SETTINGS`](super::settings::SETTINGS), [`KNOBS`]) as the
//! config vars.
//!
//! The operational switches `PORT`, `DATABASE_URL`, `DASHBOARD_PASSWORD`
//! and `DYNOGUARD_DRY_RUN` in the environment win over the file.

use std::path::Path;

use toml::de::DeTable;

use super::entry::{AppEntries, Entries, Entry, Item, Scope, TypeEntries};
use super::env::{Env, Need};
use super::knobs::{KNOBS, Knob};
use super::settings::{Section, Setting, Shape};
use super::toml_value::{Ctx, Value, join};
use super::{Config, ConfigError, Problem};
use crate::domain::AppName;

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
    let (doc, errors) = DeTable::parse_recoverable(src);
    if !errors.is_empty() {
        let cx = Ctx::new(file, src, env);
        return Err(ConfigError(
            errors
                .iter()
                .map(|e| Problem {
                    at: match e.span() {
                        Some(s) => format!("{file}:{}", cx.line(s.start)),
                        None => file.to_owned(),
                    },
                    message: e.message().trim().to_owned(),
                })
                .collect(),
        ));
    }
    let mut entries = read(&mut Ctx::new(file, src, env), doc.get_ref());
    // The environment's switches (which win over the file) and fallbacks.
    super::env::read_with_file(env, &mut entries);
    super::build::build(entries, env, need)
}

/// The sections' allowed keys: the knobs (where a policy is written), the
/// section's rows, and the sub-tables it may hold.
fn allowed(section: Section, knobs: bool, tables: &[&'static str]) -> Vec<&'static str> {
    let knob_keys = KNOBS.iter().map(|k| k.key).filter(|_| knobs);
    let rows = Setting::in_section(section).map(|s| s.key);
    knob_keys
        .chain(rows)
        .chain(tables.iter().copied())
        .collect()
}

/// The whole document as entries; its problems are in `cx.found`.
fn read<'a>(cx: &mut Ctx<'a>, root: &DeTable<'a>) -> Entries {
    let root_keys = ["server", "store", "defaults", "app", "notify"];
    cx.known_keys("", root, &root_keys);
    let mut e = Entries::default();
    // [server] and [store]: only `serve` uses them.
    cx.serving = true;
    for section in [Section::Server, Section::Store] {
        let name = section.name();
        if let Some(t) = root.get(name).and_then(|v| cx.table(name, v)) {
            cx.known_keys(name, t, &allowed(section, false, &[]));
            scope(cx, name, t, section, &mut e.global);
        }
    }
    cx.serving = false;
    if let Some(t) = root.get("defaults").and_then(|v| cx.table("defaults", v)) {
        cx.known_keys("defaults", t, &allowed(Section::Defaults, true, &[]));
        scope(cx, "defaults", t, Section::Defaults, &mut e.defaults);
    }
    match root.get("app") {
        None => cx.problem("[[app]]", 0..0, "missing: name at least one app to watch"),
        Some(v) => {
            let mut names: Vec<AppName> = Vec::new();
            for (i, v) in cx
                .tables("app", v, " (one per watched app)")
                .into_iter()
                .enumerate()
            {
                if let Some(a) = app(cx, i, v, &mut names) {
                    e.apps.push(a);
                }
            }
        }
    }
    cx.serving = true;
    if let Some(v) = root.get("notify") {
        for (i, v) in cx.tables("notify", v, "").into_iter().enumerate() {
            if let Some(n) = notify(cx, i, v) {
                e.notify.push(n);
            }
        }
    }
    e.file = Some((cx.file.to_owned(), std::mem::take(&mut cx.read)));
    e.found = std::mem::take(&mut cx.found);
    e
}

/// The rows of `section` and (where a policy is written) the knobs that
/// table `t` sets, into `out`; other keys are the caller's.
fn scope(cx: &mut Ctx<'_>, path: &str, t: &DeTable<'_>, section: Section, out: &mut Scope) {
    for s in Setting::in_section(section) {
        if let Some(v) = t.get(s.key)
            && let Some(entry) = cx.entry(&join(path, s.key), v, s.shape)
        {
            out.items.push(Item { setting: s, entry });
        }
    }
    if matches!(section, Section::Defaults | Section::App) {
        out.knobs = knobs(cx, path, t);
    }
}

/// The knobs a table sets, in the table's order.
fn knobs(cx: &mut Ctx<'_>, path: &str, t: &DeTable<'_>) -> Vec<(&'static Knob, Entry)> {
    let mut out = Vec::new();
    for (k, v) in t.iter() {
        let Some(knob) = Knob::by_key(k.get_ref()) else {
            continue;
        };
        if let Some(entry) = cx.entry(&join(path, knob.key), v, Shape::Scalar) {
            out.push((knob, entry));
        }
    }
    out
}

/// One `[[app]]`: keyed `app.NAME` once its name is known (`app[0]` before).
fn app<'a>(
    cx: &mut Ctx<'a>,
    i: usize,
    v: &Value<'a>,
    names: &mut Vec<AppName>,
) -> Option<AppEntries> {
    let a = cx.table(&format!("app[{i}]"), v)?;
    let at = format!("app[{i}].name");
    // The name is checked (and its problems said) with the other values;
    // here it only names the app in the keys of its settings.
    let name = match a.get("name") {
        None => {
            cx.problem(&at, v.span(), "required: the Heroku app's name");
            None
        }
        Some(n) => {
            let found = std::mem::take(&mut cx.found);
            let name = cx.string(&at, n).and_then(|s| AppName::parse(&s).ok());
            cx.found = found;
            name
        }
    };
    let path = match &name {
        Some(n) => format!("app.{n}"),
        None => format!("app[{i}]"),
    };
    cx.known_keys(&path, a, &allowed(Section::App, true, &["types"]));
    if let (Some(n), Some(nv)) = (&name, a.get("name")) {
        if names.contains(n) {
            cx.problem(
                &format!("{path}.name"),
                nv.span(),
                "the same app is configured twice",
            );
        }
        names.push(n.clone());
    }
    let mut out = AppEntries::default();
    scope(cx, &path, a, Section::App, &mut out.scope);
    if let Some(tv) = a.get("types") {
        out.types = types(cx, &path, tv);
    }
    Some(out)
}

/// `[app.NAME.types.TYPE]` tables: each type's knobs, named by its header.
fn types<'a>(cx: &mut Ctx<'a>, path: &str, tv: &Value<'a>) -> Vec<TypeEntries> {
    let mut out = Vec::new();
    let Some(types) = cx.table(&format!("{path}.types"), tv) else {
        return out;
    };
    let knob_keys: Vec<&str> = KNOBS.iter().map(|k| k.key).collect();
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
        cx.known_keys(&tpath, t, &knob_keys);
        out.push(TypeEntries {
            origin: cx.origin(&tpath, k.span()),
            knobs: knobs(cx, &tpath, t),
            name: ty,
        });
    }
    out
}

/// One `[[notify]]`: a kind and a URL are required.
fn notify<'a>(cx: &mut Ctx<'a>, i: usize, v: &Value<'a>) -> Option<Scope> {
    let p = format!("notify[{i}]");
    let n = cx.table(&p, v)?;
    cx.known_keys(&p, n, &allowed(Section::Notify, false, &[]));
    if !n.contains_key("kind") {
        cx.server(
            &format!("{p}.kind"),
            v.span(),
            "required: \"slack\" or \"webhook\"",
        );
    }
    if !n.contains_key("url") {
        cx.server(&format!("{p}.url"), v.span(), "required: the webhook URL");
    }
    let mut out = Scope::default();
    scope(cx, &p, n, Section::Notify, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests;
