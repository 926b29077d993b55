//! `dynoguard check`: validate the configuration, print the effective policy
//! per app and type. Secrets show as `***`.

use std::io::Write;
use std::path::Path;

use crate::config::{self, Config, Source, env::Env, env::Need, format_duration};
use crate::decide::policy::{DynoTypes, Policy};

/// Prints the effective configuration or every problem. Returns whether
/// there were problems (exit code 2).
pub fn run(path: Option<&Path>, env: &Env, out: &mut dyn Write) -> std::io::Result<bool> {
    let loaded = match path {
        Some(p) => config::file::load(p, env),
        None => config::env::from_env(env, Need::App),
    };
    let cfg = match loaded.and_then(|c| serve_problems(&c).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            write!(out, "{e}")?;
            return Ok(true);
        }
    };
    print_effective(&cfg, out)?;
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

fn print_effective(cfg: &Config, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "configuration is valid")?;
    writeln!(
        out,
        "server: port={} drain_password={} dashboard_password={} body_limit={}B log_format={:?}",
        cfg.server.port,
        secret(&cfg.server.drain_password),
        secret(&cfg.server.dashboard_password),
        cfg.server.body_limit,
        cfg.log_format
    )?;
    writeln!(out, "store: {}", cfg.database_url_redacted())?;
    writeln!(out, "heroku api: {}", cfg.heroku_api_url)?;
    for a in &cfg.apps {
        writeln!(
            out,
            "app {}: source={} api_token={} drain_token={} drain_password={}",
            a.name,
            a.source.as_str(),
            secret(&a.api_token),
            if a.drain_token.is_some() {
                "set"
            } else {
                "(not set)"
            },
            secret(&a.drain_password)
        )?;
        let types: Vec<String> = match &a.policy.dyno_types {
            DynoTypes::All => vec!["*".into()],
            DynoTypes::List(l) => l.clone(),
        };
        for ty in &types {
            let p = if ty == "*" {
                &a.policy.defaults
            } else {
                a.policy.for_type(ty).unwrap_or(&a.policy.defaults)
            };
            writeln!(out, "  {ty}: {}", describe(p))?;
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
    Ok(())
}

pub fn describe(p: &Policy) -> String {
    format!(
        "threshold={} restart_window={} on_r14={} on_r15={} swap_threshold={} consecutive={} predict={} max_parallel={} settle={} flap_limit={} flap_window={} dry_run={}",
        p.threshold,
        format_duration(p.restart_window),
        p.on_r14,
        p.on_r15,
        p.swap_threshold.map_or("off".into(), |m| m.to_string()),
        p.consecutive,
        p.predict.map_or("off".into(), format_duration),
        p.max_parallel,
        format_duration(p.settle),
        p.flap_limit,
        format_duration(p.flap_window),
        p.dry_run
    )
}
