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

pub async fn run(env: &Env, app: &str, drain_url: &str, dry_run: bool) -> anyhow::Result<()> {
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
    Ok(())
}
