//! `dynoguard check`: validate the configuration, print the effective policy
//! per app and type. Secrets show as `***`.

use std::io::Write;
use std::path::Path;

use crate::config::{self, Config, Source, env::Env, env::Need, format_duration};
use crate::decide::policy::{DynoTypes, Policy};

/// Prints the effective configuration and its warnings, or every problem.
/// Returns whether there were problems (exit code 2).
pub fn run(path: Option<&Path>, env: &Env, out: &mut dyn Write) -> std::io::Result<bool> {
    let loaded = config::load_from(path, env, Need::App).and_then(|c| {
        let mut problems = serve_problems(&c).err().map(|e| e.0).unwrap_or_default();
        if let Err(e) = crate::service::Tuning::from_env(env) {
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

/// Problems that only matter for `serve` (a token to restart with).
pub fn serve_problems(cfg: &Config) -> Result<(), config::ConfigError> {
    let mut problems = Vec::new();
    for a in &cfg.apps {
        if a.api_token.is_none()
            && !(a.policy.defaults.dry_run && a.policy.per_type.values().all(|p| p.dry_run))
        {
            problems.push(config::Problem {
                at: format!("app {}", a.name),
                message: "no API token (AUTH_TOKEN / HEROKU_API_KEY, or api_token in the file); set one or enable dry run (DYNOGUARD_DRY_RUN=1)".into(),
            });
        }
        if a.source == Source::Drain
            && a.drain_password.is_none()
            && cfg.server.drain_password.is_none()
        {
            problems.push(config::Problem {
                at: format!("app {}", a.name),
                message: "no drain password (DRAIN_PASSWORD or server.drain_password): the drain endpoint would be open to anyone".into(),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(config::ConfigError(problems))
    }
}

fn secret<T>(s: &Option<T>) -> &'static str {
    if s.is_some() { "***" } else { "(not set)" }
}

fn print_effective(cfg: &Config, from: &str, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "configuration is valid (read from {from})")?;
    let o = &cfg.origins;
    writeln!(
        out,
        "server: port={} [{}] drain_password={} dashboard_password={} [{}] body_limit={}B log_format={:?}",
        cfg.server.port,
        o.port,
        secret(&cfg.server.drain_password),
        secret(&cfg.server.dashboard_password),
        o.dashboard_password,
        cfg.server.body_limit,
        cfg.log_format
    )?;
    writeln!(
        out,
        "store: {} [{}]",
        cfg.database_url_redacted(),
        o.database_url
    )?;
    writeln!(out, "heroku api: {}", cfg.heroku_api_url)?;
    writeln!(out, "dry run: [{}]", o.dry_run)?;
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
            let set_by = a
                .set_by
                .get(&ty)
                .or_else(|| a.set_by.get("*"))
                .filter(|v| !v.is_empty());
            if let Some(vars) = set_by {
                writeln!(out, "    set by: {}", vars.join(", "))?;
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
            "notify {:?}: url=*** events={} secret={}",
            n.kind,
            events.join(","),
            secret(&n.secret)
        )?;
    }
    for w in &cfg.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

pub fn describe(p: &Policy) -> String {
    format!(
        "threshold={} restart_window={} on_r14={} on_r15={} swap_threshold={} consecutive={} predict={} predict_floor={}% predict_window={} max_parallel={} settle={} flap_limit={} flap_window={} dry_run={}",
        p.threshold,
        format_duration(p.restart_window),
        p.on_r14,
        p.on_r15,
        p.swap_threshold.map_or("off".into(), |m| m.to_string()),
        p.consecutive,
        p.predict.map_or("off".into(), format_duration),
        p.predict_floor,
        format_duration(p.predict_window),
        p.max_parallel,
        format_duration(p.settle),
        p.flap_limit,
        format_duration(p.flap_window),
        p.dry_run
    )
}
