//! `dynoguard setup`: enable `log-runtime-metrics`, add (or fix) the HTTPS
//! drain, optionally restart the app so samples start — for one app, or for
//! every app of a configuration file. Idempotent: says what already was in
//! place, and replaces a drain whose password changed.

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::act::heroku_api::{HerokuClient, LogDrain, redact_api_text};
use crate::config::{Config, ConfigError, Problem, Source, env::Env};
use crate::domain::AppName;

pub const FEATURE: &str = "log-runtime-metrics";

/// The drain URL with its password masked, for printing.
pub fn redact_drain_url(url: &str) -> String {
    crate::config::redact_url(url)
}

/// What to do, from the command line.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    pub dry_run: bool,
    /// Restart the app's dynos after enabling the feature.
    pub restart: bool,
    /// Replace a drain to the same endpoint even when its password cannot be
    /// compared (Heroku may not show it).
    pub replace: bool,
    pub wait: Option<std::time::Duration>,
}

/// One app to set up.
#[derive(Debug)]
pub struct Target {
    pub app: AppName,
    pub token: Option<SecretString>,
    /// The full drain URL (with credentials); `None` for a log-session app.
    pub drain_url: Option<SecretString>,
}

fn problem(at: &str, message: impl Into<String>) -> ConfigError {
    ConfigError(vec![Problem {
        at: at.into(),
        message: message.into(),
    }])
}

/// The drain URL to register: https only, with a password (from the URL,
/// else `password`), and with `/logs/{app}` as the path when `per_app`.
pub fn drain_url_for(
    base: &str,
    per_app: Option<&AppName>,
    password: Option<&SecretString>,
) -> Result<String, String> {
    let mut url = url::Url::parse(base).map_err(|_| {
        "not a URL; use https://dynoguard:PASSWORD@dynoguard.example.com/logs".to_owned()
    })?;
    if url.scheme() != "https" {
        return Err(format!(
            "{}:// is not allowed: Logplex would send the drain password in clear; use https://dynoguard:PASSWORD@dynoguard.example.com/logs",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(
            "has no host; use https://dynoguard:PASSWORD@dynoguard.example.com/logs".into(),
        );
    }
    if let Some(app) = per_app {
        let base_path = url.path().trim_end_matches('/').to_owned();
        let base_path = if base_path.is_empty() {
            "/logs".to_owned()
        } else {
            base_path
        };
        url.set_path(&format!("{base_path}/{app}"));
    }
    if url.password().is_none_or(str::is_empty) {
        let Some(pw) = password else {
            return Err("has no password: dynoguard answers 401 to a drain without one and Logplex drops every batch; use https://dynoguard:PASSWORD@host/logs with PASSWORD = dynoguard's DRAIN_PASSWORD".into());
        };
        if url.username().is_empty() {
            let _ = url.set_username("dynoguard");
        }
        let _ = url.set_password(Some(pw.expose_secret()));
    }
    Ok(url.to_string())
}

/// Scheme, host, port and path: what makes two drain URLs the same
/// endpoint, whatever their credentials.
fn endpoint(u: &url::Url) -> (String, String, Option<u16>, String) {
    (
        u.scheme().to_owned(),
        u.host_str().unwrap_or_default().to_ascii_lowercase(),
        u.port_or_known_default(),
        u.path().trim_end_matches('/').to_owned(),
    )
}

/// The apps to set up: every app of the configuration (or the one named),
/// else `--app` (or `APP_ID_OR_NAME`) with the environment's token.
pub fn targets(
    cfg: Option<&Config>,
    app: Option<&str>,
    drain_url: &str,
    env: &Env,
) -> Result<Vec<Target>, ConfigError> {
    let env_token = crate::config::env::get(env, "AUTH_TOKEN")
        .or_else(|| crate::config::env::get(env, "HEROKU_API_KEY"))
        .map(|t| SecretString::from(t.to_owned()));
    let Some(cfg) = cfg else {
        let name = app
            .or_else(|| crate::config::env::get(env, "APP_ID_OR_NAME"))
            .ok_or_else(|| {
                problem(
                    "--app",
                    "required: the app to set up (or APP_ID_OR_NAME, or --config FILE for every app of a file)",
                )
            })?;
        let app = AppName::parse(name).map_err(|e| problem("--app", e.to_string()))?;
        let pw = crate::config::env::get(env, "DRAIN_PASSWORD")
            .map(|p| SecretString::from(p.to_owned()));
        let url =
            drain_url_for(drain_url, None, pw.as_ref()).map_err(|e| problem("--drain-url", e))?;
        return Ok(vec![Target {
            app,
            token: env_token,
            drain_url: Some(SecretString::from(url)),
        }]);
    };
    let chosen: Vec<_> = match app {
        Some(name) => {
            let a = cfg.app(name).ok_or_else(|| {
                problem(
                    "--app",
                    format!(
                        "{name:?} is not in the configuration; its apps: {}",
                        app_names(cfg)
                    ),
                )
            })?;
            vec![a]
        }
        None => cfg.apps.iter().collect(),
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for a in chosen {
        let drain_url = match a.source {
            Source::LogSession => None,
            Source::Drain => {
                let pw = a
                    .drain_password
                    .as_ref()
                    .or(cfg.server.drain_password.as_ref());
                match drain_url_for(drain_url, Some(&a.name), pw) {
                    Ok(u) => Some(SecretString::from(u)),
                    Err(e) => {
                        problems.push(Problem {
                            at: format!("--drain-url (app {})", a.name),
                            message: e,
                        });
                        None
                    }
                }
            }
        };
        out.push(Target {
            app: a.name.clone(),
            token: a.api_token.clone().or_else(|| env_token.clone()),
            drain_url,
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError(problems))
    }
}

fn app_names(cfg: &Config) -> String {
    cfg.apps
        .iter()
        .map(|a| a.name.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(api_base: &str, targets: Vec<Target>, opts: &SetupOptions) -> anyhow::Result<()> {
    let client = HerokuClient::new(api_base)?;
    for t in &targets {
        if targets.len() > 1 {
            println!("== {}", t.app);
        }
        if opts.dry_run {
            print_calls(api_base, t, opts);
            continue;
        }
        let token = t.token.as_ref().ok_or_else(|| {
            problem(
                "AUTH_TOKEN",
                format!(
                    "required for {}: a Heroku API token (AUTH_TOKEN or HEROKU_API_KEY, or api_token in the file)",
                    t.app
                ),
            )
        })?;
        one(&client, token, t, opts).await?;
    }
    Ok(())
}

fn print_calls(base: &str, t: &Target, opts: &SetupOptions) {
    let app = &t.app;
    println!(
        "PATCH  {base}/apps/{app}/features/{FEATURE} {{\"enabled\": true}}   (skipped if already enabled)"
    );
    if opts.restart {
        println!("DELETE {base}/apps/{app}/dynos   (restart every dyno so samples start)");
    }
    match &t.drain_url {
        Some(url) => println!(
            "POST   {base}/apps/{app}/log-drains {{\"url\": \"{}\"}}   (skipped if this drain is in place; a drain to the same endpoint with another password is replaced)",
            redact_drain_url(url.expose_secret())
        ),
        None => println!("(no drain: {app} is read through log sessions)"),
    }
}

async fn one(
    client: &HerokuClient,
    token: &SecretString,
    t: &Target,
    opts: &SetupOptions,
) -> anyhow::Result<()> {
    let app = &t.app;
    let enabled_now = match client.feature(token, app, FEATURE).await {
        Ok(f) if f.enabled => {
            println!("{FEATURE}: already enabled on {app}");
            false
        }
        _ => {
            client
                .enable_feature(token, app, FEATURE)
                .await
                .with_context(|| format!("enabling {FEATURE} on {app}"))?;
            println!("{FEATURE}: enabled on {app}");
            true
        }
    };
    if opts.restart {
        client
            .restart_app(token, app)
            .await
            .with_context(|| format!("restarting the dynos of {app}"))?;
        println!("restarted every dyno of {app}: runtime-metrics samples start with the new dynos");
    } else if enabled_now {
        println!(
            "  samples start only after the dynos restart: heroku ps:restart -a {app} (or run setup again with --restart)"
        );
    }
    if let Some(url) = &t.drain_url {
        drain(client, token, app, url.expose_secret(), opts).await?;
    }
    if let Some(limit) = opts.wait {
        let seen = wait_for_samples(client, token, app, limit).await?;
        report_wait(app, limit, &seen)?;
    }
    Ok(())
}

/// Adds the drain, or says it is in place, or replaces a drain to the same
/// endpoint whose password differs (new one first: no batch is lost).
async fn drain(
    client: &HerokuClient,
    token: &SecretString,
    app: &AppName,
    wanted: &str,
    opts: &SetupOptions,
) -> anyhow::Result<()> {
    let shown = redact_drain_url(wanted);
    let want = url::Url::parse(wanted).context("the drain URL")?;
    let drains = client
        .log_drains(token, app)
        .await
        .with_context(|| format!("listing the drains of {app}"))?;
    let same: Vec<&LogDrain> = drains
        .iter()
        .filter(|d| url::Url::parse(&d.url).is_ok_and(|u| endpoint(&u) == endpoint(&want)))
        .collect();
    // The drain token is the API's text: printed through the redaction too.
    let secrets: Vec<&str> = want.password().into_iter().collect();
    let api_text = |t: &str| redact_api_text(t, &secrets);
    let token_note = |d: &LogDrain| {
        d.token
            .as_ref()
            .map(|t| format!(", token {}", api_text(t)))
            .unwrap_or_default()
    };
    let mut stale = Vec::new();
    for d in &same {
        let Ok(u) = url::Url::parse(&d.url) else {
            continue;
        };
        match u.password() {
            Some(pw)
                if pw == want.password().unwrap_or_default() && u.username() == want.username() =>
            {
                println!("drain: already in place ({shown}){}", token_note(d));
                return Ok(());
            }
            Some(_) => stale.push(*d),
            None if opts.replace => stale.push(*d),
            None => {
                println!(
                    "drain: a drain to this endpoint is in place{} but Heroku does not show its password; if the drain password changed since, replace it:\n  dynoguard setup --app {app} --drain-url '{shown}' --replace   (with the real password)",
                    token_note(d)
                );
                return Ok(());
            }
        }
    }
    let added = client
        .add_log_drain(token, app, wanted)
        .await
        .with_context(|| format!("adding the drain to {app}"))?;
    println!(
        "drain: added ({shown}){}",
        added
            .token
            .map(|t| {
                format!(
                    ", token {} (use it as drain_token for a shared /logs)",
                    api_text(&t)
                )
            })
            .unwrap_or_default()
    );
    for d in stale {
        let id = d.id.as_deref().or(d.token.as_deref()).unwrap_or(&d.url);
        client
            .remove_log_drain(token, app, id)
            .await
            .with_context(|| format!("removing the old drain of {app}"))?;
        println!(
            "drain: removed the old drain to the same endpoint ({}): its password was not dynoguard's",
            redact_drain_url(&d.url)
        );
    }
    Ok(())
}

/// What `setup --wait` saw through a log session.
#[derive(Debug, Default)]
pub struct Seen {
    /// Platform and app lines read.
    pub lines: u64,
    /// Latest memory (MB) and quota per dyno.
    pub dynos: std::collections::BTreeMap<String, (f64, Option<f64>)>,
}

/// Reads the app's platform lines through log sessions until a round of
/// runtime-metrics samples came (25 s after the first, or the stream ends),
/// or `limit` passed.
pub async fn wait_for_samples(
    client: &HerokuClient,
    token: &SecretString,
    app: &AppName,
    limit: std::time::Duration,
) -> anyhow::Result<Seen> {
    use crate::ingest::heroku_line::ObservationKind;
    use crate::ingest::text::{LineBuffer, SseDecoder};
    use futures_util::StreamExt as _;

    const ROUND: std::time::Duration = std::time::Duration::from_secs(25);
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Seen::default();
    let mut first: Option<tokio::time::Instant> = None;
    println!(
        "waiting up to {}s for the first runtime-metrics samples of {app}…",
        limit.as_secs()
    );
    while tokio::time::Instant::now() < deadline {
        let session = match client.create_log_session(token, app).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("log session: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(resp) = client.open_stream(&session.logplex_url).await else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        let sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let (mut lines, mut events) = (LineBuffer::new(), SseDecoder::new());
        let mut body = resp.bytes_stream();
        let on_line = |line: &[u8], seen: &mut Seen| {
            let mut stats = crate::ingest::IngestStats::default();
            crate::ingest::text_line(line, &mut stats, |o| {
                if let ObservationKind::Sample(s) = o.kind
                    && let (Some(d), Some(total)) = (s.dyno, s.memory.total)
                {
                    seen.dynos
                        .insert(d.to_string(), (total.0, s.memory.quota.map(|q| q.0)));
                }
            });
            seen.lines += stats.records;
        };
        loop {
            let until = match first {
                Some(t) => (t + ROUND).min(deadline),
                None => deadline,
            };
            let Ok(next) = tokio::time::timeout_at(until, body.next()).await else {
                break;
            };
            let Some(Ok(chunk)) = next else { break };
            let mut got = Vec::new();
            if sse {
                events.push(&chunk, |l| got.push(l.to_vec()));
            } else {
                lines.push(&chunk, |l| got.push(l.to_vec()));
            }
            for l in got {
                on_line(&l, &mut seen);
            }
            if first.is_none() && !seen.dynos.is_empty() {
                first = Some(tokio::time::Instant::now());
            }
        }
        let mut rest = Vec::new();
        lines.finish(|l| rest.push(l.to_vec()));
        events.finish(|l| rest.push(l.to_vec()));
        for l in rest {
            on_line(&l, &mut seen);
        }
        if !seen.dynos.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Ok(seen)
}

fn report_wait(app: &AppName, limit: std::time::Duration, seen: &Seen) -> anyhow::Result<()> {
    if seen.dynos.is_empty() {
        let why = if seen.lines == 0 {
            format!("no log line at all came from {app}: is it running? (heroku ps -a {app})")
        } else {
            format!(
                "{} lines came, none a runtime-metrics sample: the dynos start logging samples only after a restart once {FEATURE} is enabled — run heroku ps:restart -a {app}",
                seen.lines
            )
        };
        anyhow::bail!(
            "no memory sample of {app} within {}s: {why}",
            limit.as_secs()
        );
    }
    let list: Vec<String> = seen
        .dynos
        .iter()
        .map(|(d, (mb, quota))| match quota {
            Some(q) => format!("{d} ({mb:.0} of {q:.0} MB)"),
            None => format!("{d} ({mb:.0} MB)"),
        })
        .collect();
    println!(
        "watching {} dyno{} of {app}: {}",
        list.len(),
        if list.len() == 1 { "" } else { "s" },
        list.join(", ")
    );
    Ok(())
}
