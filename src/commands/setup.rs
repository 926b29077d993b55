//! `dynoguard setup --app APP --drain-url URL`: enable `log-runtime-metrics`
//! and add the HTTPS drain, saying what was already in place. Idempotent.

use anyhow::Context as _;
use secrecy::SecretString;

use crate::act::heroku_api::HerokuClient;
use crate::config::env::Env;
use crate::domain::AppName;

pub const FEATURE: &str = "log-runtime-metrics";

/// The drain URL with its password masked, for printing.
pub fn redact_drain_url(url: &str) -> String {
    crate::config::redact_url(url)
}

pub async fn run(
    env: &Env,
    app: &str,
    drain_url: &str,
    dry_run: bool,
    wait: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    let app = AppName::parse(app).map_err(|e| {
        crate::config::ConfigError(vec![crate::config::Problem {
            at: "--app".into(),
            message: e.to_string(),
        }])
    })?;
    if !drain_url.starts_with("https://") && !drain_url.starts_with("http://") {
        return Err(crate::config::ConfigError(vec![crate::config::Problem {
            at: "--drain-url".into(),
            message:
                "must be an https:// URL, e.g. https://user:PASSWORD@dynoguard.example.com/logs"
                    .into(),
        }])
        .into());
    }
    let base = env
        .get("HEROKU_API_URL")
        .map_or(crate::config::DEFAULT_HEROKU_API_URL, String::as_str);
    let shown = redact_drain_url(drain_url);
    if dry_run {
        println!("PATCH {base}/apps/{app}/features/{FEATURE} {{\"enabled\": true}}");
        println!(
            "POST  {base}/apps/{app}/log-drains {{\"url\": \"{shown}\"}}   (skipped if a drain with this URL exists)"
        );
        return Ok(());
    }
    let token = env
        .get("AUTH_TOKEN")
        .or_else(|| env.get("HEROKU_API_KEY"))
        .filter(|t| !t.is_empty())
        .map(|t| SecretString::from(t.clone()))
        .ok_or_else(|| {
            crate::config::ConfigError(vec![crate::config::Problem {
                at: "AUTH_TOKEN".into(),
                message: "required: a Heroku API token (or HEROKU_API_KEY)".into(),
            }])
        })?;
    let client = HerokuClient::new(base)?;

    match client.feature(&token, &app, FEATURE).await {
        Ok(f) if f.enabled => println!("{FEATURE}: already enabled on {app}"),
        _ => {
            client
                .enable_feature(&token, &app, FEATURE)
                .await
                .with_context(|| format!("enabling {FEATURE} on {app}"))?;
            println!(
                "{FEATURE}: enabled on {app} (restart the app's dynos once for metrics to start: heroku ps:restart -a {app})"
            );
        }
    }
    let drains = client
        .log_drains(&token, &app)
        .await
        .with_context(|| format!("listing the drains of {app}"))?;
    if let Some(d) = drains
        .iter()
        .find(|d| d.url == drain_url || redact_drain_url(&d.url) == shown)
    {
        println!(
            "drain: already in place ({shown}){}",
            d.token
                .as_ref()
                .map(|t| format!(", token {t}"))
                .unwrap_or_default()
        );
    } else {
        let d = client
            .add_log_drain(&token, &app, drain_url)
            .await
            .with_context(|| format!("adding the drain to {app}"))?;
        println!(
            "drain: added ({shown}){}",
            d.token
                .map(|t| format!(", token {t} (use it as drain_token for a shared /logs)"))
                .unwrap_or_default()
        );
    }
    if let Some(limit) = wait {
        let seen = wait_for_samples(&client, &token, &app, limit).await?;
        report_wait(&app, limit, &seen)?;
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
