//! `dynoguard check`: validate the configuration, print the effective policy
//! per app and type. Secrets show as `***`.

use std::io::Write;
use std::path::Path;

use crate::config::describe::describe;
use crate::config::knobs::Knob;
use crate::config::{self, Config, env::Env, env::Need, format_duration};
use crate::decide::policy::{DynoTypes, Policy};

/// Prints the effective configuration and its warnings, or every problem.
/// Returns whether there were problems (exit code 2).
pub fn run(path: Option<&Path>, env: &Env, out: &mut dyn Write) -> std::io::Result<bool> {
    let loaded = config::load_from(path, env, Need::App).and_then(|c| {
        let mut problems = config::serve_problems(&c).err().map(|e| e.0).unwrap_or_default();
        // A whacamole deployment carries its token as HEROKU_API_TOKEN: when
        // that is why no token was found, say so where the problem is.
        if c.apps.iter().any(|a| a.api_token.is_none())
            && config::env::get(env, "HEROKU_API_TOKEN").is_some()
            && !problems.is_empty()
        {
            problems.push(config::Problem {
                at: "HEROKU_API_TOKEN".into(),
                message: "is whacamole's name for the token; dynoguard reads AUTH_TOKEN (or HEROKU_API_KEY): rename it".into(),
            });
        }
        if let Err(e) = config::tuning::Tuning::from_env(env) {
            problems.extend(e.0);
        }
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(config::ConfigError(problems))
        }
    });
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            write!(out, "{e}")?;
            return Ok(true);
        }
    };
    let from = match (
        path,
        env.get(config::CONFIG_TOML_VAR)
            .filter(|v| !v.trim().is_empty()),
    ) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(_)) => config::CONFIG_TOML_VAR.to_owned(),
        (None, None) => "the environment".to_owned(),
    };
    print_effective(&cfg, &from, out)?;
    Ok(false)
}

/// An origin for a value that may have none recorded (a configuration
/// built in code).
fn or_default(origin: &str) -> &str {
    if origin.is_empty() { "default" } else { origin }
}

fn secret<T>(s: &Option<T>) -> &'static str {
    if s.is_some() { "***" } else { "(not set)" }
}

/// A byte count as it is written in `server.body_limit` (`10MB`, or bytes).
fn bytes(n: usize) -> String {
    const MB: usize = 1024 * 1024;
    if n != 0 && n.is_multiple_of(MB) {
        format!("{}MB", n / MB)
    } else {
        n.to_string()
    }
}

/// Whether every app and type is in dry run (`true`), none is (`false`),
/// or it differs (shown per type below).
fn dry_run_value(cfg: &Config) -> &'static str {
    let all = cfg.apps.iter().flat_map(|a| {
        std::iter::once(a.policy.defaults.dry_run)
            .chain(a.policy.per_type.values().map(|p| p.dry_run))
    });
    let (mut on, mut off) = (false, false);
    for d in all {
        if d {
            on = true;
        } else {
            off = true;
        }
    }
    match (on, off) {
        (true, false) => "true",
        (true, true) => "per type (below)",
        _ => "false",
    }
}

// Every value is printed as it would be written in a config var or the
// file (`text`, `10m`, `95%`, `1000MB`), never in Rust's debug form, so a
// line of `check` can be copied back into the configuration.
fn print_effective(cfg: &Config, from: &str, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "configuration is valid (read from {from})")?;
    let o = &cfg.origins;
    writeln!(
        out,
        "server: port={} [{}] drain_password={} dashboard_password={} [{}] body_limit={} log_format={} [{}]",
        cfg.server.port,
        o.port,
        secret(&cfg.server.drain_password),
        secret(&cfg.server.dashboard_password),
        o.dashboard_password,
        bytes(cfg.server.body_limit),
        cfg.log_format.as_str(),
        or_default(&o.log_format),
    )?;
    writeln!(
        out,
        "store: {} [{}]",
        cfg.database_url_redacted(),
        o.database_url
    )?;
    writeln!(
        out,
        "heroku api: {} [{}]",
        cfg.heroku_api_url,
        or_default(&o.heroku_api_url)
    )?;
    writeln!(out, "dry_run={} [{}]", dry_run_value(cfg), o.dry_run)?;
    if let Some(u) = &cfg.public_url {
        writeln!(out, "dashboard link in notifications: {u}")?;
    }
    for a in &cfg.apps {
        writeln!(
            out,
            "app {}: source={} api_token={} drain_token={} drain_password={} blind_after={}",
            a.name,
            a.source.as_str(),
            secret(&a.api_token),
            if a.drain_token.is_some() {
                "set"
            } else {
                "(not set)"
            },
            secret(&a.drain_password),
            format_duration(a.policy.blind_after)
        )?;
        let lines: Vec<(String, &Policy)> = match &a.policy.dyno_types {
            DynoTypes::All => {
                writeln!(
                    out,
                    "  watching: every process type except run and scheduler (*)"
                )?;
                std::iter::once(("*".to_owned(), &a.policy.defaults))
                    .chain(a.policy.per_type.iter().map(|(t, p)| (t.clone(), p)))
                    .collect()
            }
            DynoTypes::List(l) => {
                writeln!(out, "  watching: {}", l.join(", "))?;
                l.iter().map(|t| (t.clone(), a.policy.judging(t))).collect()
            }
        };
        for (ty, p) in lines {
            writeln!(out, "  {ty}: {}", describe(p))?;
            let vars = effective_setters(&a.set_by, &ty);
            if vars.is_empty() {
                writeln!(out, "    set by: defaults only")?;
            } else {
                writeln!(
                    out,
                    "    set by: {}; everything else: the default",
                    vars.join(", ")
                )?;
            }
        }
    }
    for n in &cfg.notify {
        let events: Vec<&str> = if n.events.is_empty() {
            config::NotifyConfig::DEFAULT_EVENTS
                .iter()
                .map(|e| e.as_str())
                .collect()
        } else {
            n.events.iter().map(|e| e.as_str()).collect()
        };
        writeln!(
            out,
            "notify {}: url=*** events={} secret={}",
            n.kind.as_str(),
            events.join(","),
            secret(&n.secret)
        )?;
    }
    for w in &cfg.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

/// The knob an entry of `set_by` sets: `WEB_RESTART_WINDOW=300` and
/// `app.shop.types.web.restart_window=5m (dg.toml:9)` both set
/// `restart_window`.
fn knob_of(entry: &str) -> Option<&'static str> {
    let name = entry.split_once('=').map_or(entry, |(n, _)| n);
    match name.rsplit_once('.') {
        Some((_, key)) => Knob::by_key(key).map(|k| k.key),
        None => Knob::by_var(name).map(|(_, k)| k.key),
    }
}

/// The settings in effect for `ty`: the app's defaults (`*`) and the
/// type's own, a type's setting hiding the default it overrides (so the
/// list names exactly where each shown value came from).
fn effective_setters(
    set_by: &std::collections::BTreeMap<String, Vec<String>>,
    ty: &str,
) -> Vec<String> {
    let defaults = set_by.get("*").into_iter().flatten();
    let own = set_by.get(ty).filter(|_| ty != "*").into_iter().flatten();
    let mut out: Vec<String> = Vec::new();
    for entry in defaults.chain(own) {
        let knob = knob_of(entry);
        out.retain(|e| e != entry && (knob.is_none() || knob_of(e) != knob));
        out.push(entry.clone());
    }
    out
}
