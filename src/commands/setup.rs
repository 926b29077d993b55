//! `dynoguard setup`: enable `log-runtime-metrics`, add (or fix) the HTTPS
//! drain, optionally restart the app so samples start — for one app, or for
//! every app of a configuration file. Idempotent: says what already was in
//! place, and replaces a drain whose password changed.
//!
//! Meant to run from the deployed dynoguard itself
//! (`heroku run -a my-dynoguard -- dynoguard setup --app my-app`): the drain
//! URL, its password and the token come from that app's own config vars
//! (`DYNOGUARD_URL` or the dyno's `HEROKU_APP_NAME`, `DRAIN_PASSWORD`,
//! `AUTH_TOKEN`), so nothing has to be typed twice.

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

use super::usage;
use crate::act::heroku_api::{DynoInfo, HerokuClient, LogDrain, redact_api_text};
use crate::config::{Config, ConfigError, Problem, Source, env::Env};
use crate::domain::{AppName, DynoName};

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
    /// How long each restarted dyno may take to report up again before the
    /// rolling restart stops.
    pub restart_timeout: std::time::Duration,
    /// dynoguard's store (`DATABASE_URL`, set inside the deployed app): with
    /// `--wait`, the app number the samples carry is recorded there.
    pub database_url: Option<SecretString>,
}

/// The default for `--restart-timeout`: Heroku gives a web dyno 60 s to
/// bind its port (up to 180 s when raised), plus time to be scheduled.
pub const DEFAULT_RESTART_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Where the drain should point, before it is a full URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainBase {
    /// `--drain-url`, as given.
    Given(String),
    /// `DYNOGUARD_URL`: this dynoguard's public URL.
    PublicUrl(String),
    /// Only the dyno's own app name is known (`HEROKU_APP_NAME`, from dyno
    /// metadata): its `web_url` is asked of the API.
    OwnApp(AppName),
}

impl DrainBase {
    /// The base from the command line, else this dynoguard's own config
    /// vars; `None` when nothing says where dynoguard is.
    pub fn from_env(flag: Option<&str>, env: &Env) -> Result<Option<Self>, ConfigError> {
        if let Some(u) = flag.map(str::trim).filter(|u| !u.is_empty()) {
            return Ok(Some(Self::Given(u.to_owned())));
        }
        if let Some(u) = crate::config::env::get(env, "DYNOGUARD_URL") {
            return Ok(Some(Self::PublicUrl(u.to_owned())));
        }
        match crate::config::env::get(env, "HEROKU_APP_NAME") {
            Some(name) => AppName::parse(name)
                .map(|a| Some(Self::OwnApp(a)))
                .map_err(|e| problem("HEROKU_APP_NAME", e.to_string())),
            None => Ok(None),
        }
    }

    /// Where the base came from, for messages.
    fn origin(&self) -> &'static str {
        match self {
            Self::Given(_) => "--drain-url",
            Self::PublicUrl(_) => "DYNOGUARD_URL",
            Self::OwnApp(_) => "HEROKU_APP_NAME",
        }
    }
}

/// Said when no drain URL can be found: every way to give one.
pub const NO_DRAIN_URL: &str = "required: where dynoguard receives the drain. Pass --drain-url https://dynoguard:PASSWORD@YOUR-DYNOGUARD.herokuapp.com/logs, or set DYNOGUARD_URL on the dynoguard app (heroku config:set DYNOGUARD_URL=https://… -a YOUR-DYNOGUARD; its Web URL is in heroku apps:info), or enable dyno metadata so HEROKU_APP_NAME is set (heroku labs:enable runtime-dyno-metadata -a YOUR-DYNOGUARD, then redeploy)";

/// The base URL as a string: asks the API for the own app's `web_url`
/// (`None` in a dry run without a token, where nothing may be called).
pub async fn resolve_base(
    api_base: &str,
    base: Option<&DrainBase>,
    token: Option<&SecretString>,
) -> anyhow::Result<Option<(String, &'static str)>> {
    let Some(base) = base else {
        return Ok(None);
    };
    let url = match base {
        DrainBase::Given(u) | DrainBase::PublicUrl(u) => u.clone(),
        DrainBase::OwnApp(name) => {
            let token = token.ok_or_else(|| {
                problem(
                    "--drain-url",
                    format!("not given, and finding the URL of {name} (HEROKU_APP_NAME) needs an API token (AUTH_TOKEN); {NO_DRAIN_URL}"),
                )
            })?;
            let client = HerokuClient::new(api_base)?;
            match client.app_web_url(token, name).await {
                Ok(Some(u)) => u,
                Ok(None) => {
                    return Err(problem(
                        "--drain-url",
                        format!("not given, and the API shows no web URL for {name} (HEROKU_APP_NAME); {NO_DRAIN_URL}"),
                    )
                    .into());
                }
                Err(e) => {
                    return Err(problem(
                        "--drain-url",
                        format!("not given, and the API did not say where {name} (HEROKU_APP_NAME) is ({e}); {NO_DRAIN_URL}"),
                    )
                    .into());
                }
            }
        }
    };
    Ok(Some((url, base.origin())))
}

/// One app to set up.
#[derive(Debug)]
pub struct Target {
    pub app: AppName,
    pub token: Option<SecretString>,
    /// The full drain URL (with credentials); `None` for a log-session app.
    pub drain_url: Option<SecretString>,
    /// What was corrected in the drain URL (a missing `/logs`), to be said.
    pub note: Option<String>,
}

fn problem(at: &str, message: impl Into<String>) -> ConfigError {
    ConfigError(vec![Problem {
        at: at.into(),
        message: message.into(),
    }])
}

/// The paths dynoguard receives drains on (SPEC §4.1).
const DRAIN_PATHS: &str = "dynoguard receives drains only at /logs and /logs/APP";

/// The drain URL to register: https only, with a password (from the URL,
/// else `password`), and a path dynoguard serves: `/logs` for one app
/// (`/logs/{app}` for that app also works), `/logs/{app}` for each app of
/// a configuration (`per_app`). A URL without a path gets `/logs` and a
/// note saying so; any other path is refused, since the drain would get
/// 404 for every batch and Logplex drops them. Returns the URL and the
/// note.
pub fn drain_url_for(
    base: &str,
    app: &AppName,
    per_app: bool,
    password: Option<&SecretString>,
) -> Result<(String, Option<String>), String> {
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
    let given = url.path().to_owned();
    let path = given.trim_end_matches('/');
    let own = format!("/logs/{app}");
    let (wanted, note) = match path {
        "" => {
            let p = if per_app { own } else { "/logs".to_owned() };
            let note =
                (!per_app).then(|| format!("the drain URL had no path: {p} added ({DRAIN_PATHS})"));
            (p, note)
        }
        "/logs" if per_app => (own, None),
        "/logs" => ("/logs".to_owned(), None),
        p if p == own => (own, None),
        p if p.starts_with("/logs/") => {
            return Err(format!(
                "its path {p} sends the drain to the app {}, not {app}; use https://HOST/logs{}",
                p.trim_start_matches("/logs/"),
                if per_app {
                    " (each app then gets /logs/APP)"
                } else {
                    ""
                }
            ));
        }
        p => {
            return Err(format!(
                "its path {p} is not served by dynoguard ({DRAIN_PATHS}): every batch would get 404 and Logplex would drop it; use https://HOST/logs"
            ));
        }
    };
    let note = note.or_else(|| {
        (given != wanted && given.trim_end_matches('/') == wanted && !per_app)
            .then(|| format!("the drain URL's trailing / was dropped: {wanted}"))
    });
    url.set_path(&wanted);
    if url.password().is_none_or(str::is_empty) {
        let Some(pw) = password else {
            return Err("has no password: dynoguard answers 401 to a drain without one and Logplex drops every batch; use https://dynoguard:PASSWORD@host/logs with PASSWORD = dynoguard's DRAIN_PASSWORD".into());
        };
        if url.username().is_empty() {
            let _ = url.set_username("dynoguard");
        }
        let _ = url.set_password(Some(pw.expose_secret()));
    }
    Ok((url.to_string(), note))
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
/// `base` is the resolved drain base and where it came from (`--drain-url`,
/// `DYNOGUARD_URL`, …), `None` when nothing says where dynoguard is (fine
/// for log-session apps only).
pub fn targets(
    cfg: Option<&Config>,
    app: Option<&str>,
    base: Option<(&str, &str)>,
    env: &Env,
) -> Result<Vec<Target>, ConfigError> {
    let env_token = env_token(env);
    let url_for = |app: &AppName, per_app: bool, pw: Option<&SecretString>| match base {
        None => Err(Problem {
            at: "--drain-url".into(),
            message: NO_DRAIN_URL.into(),
        }),
        Some((b, origin)) => drain_url_for(b, app, per_app, pw).map_err(|e| Problem {
            at: if per_app {
                format!("{origin} (app {app})")
            } else {
                origin.to_owned()
            },
            message: e,
        }),
    };
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
        let (url, note) = url_for(&app, false, pw.as_ref()).map_err(|p| ConfigError(vec![p]))?;
        return Ok(vec![Target {
            app,
            token: env_token,
            drain_url: Some(SecretString::from(url)),
            note,
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
        let (drain_url, note) = match a.source {
            Source::LogSession => (None, None),
            Source::Drain => {
                let pw = a
                    .drain_password
                    .as_ref()
                    .or(cfg.server.drain_password.as_ref());
                match url_for(&a.name, true, pw) {
                    Ok((u, note)) => (Some(SecretString::from(u)), note),
                    Err(p) => {
                        problems.push(p);
                        (None, None)
                    }
                }
            }
        };
        out.push(Target {
            app: a.name.clone(),
            token: a.api_token.clone().or_else(|| env_token.clone()),
            drain_url,
            note,
        });
    }
    // One "no drain URL" problem, not one per app.
    problems.dedup_by(|a, b| a.message == NO_DRAIN_URL && b.message == NO_DRAIN_URL);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError(problems))
    }
}

/// `AUTH_TOKEN`, else `HEROKU_API_KEY`.
pub fn env_token(env: &Env) -> Option<SecretString> {
    crate::config::env::get(env, "AUTH_TOKEN")
        .or_else(|| crate::config::env::get(env, "HEROKU_API_KEY"))
        .map(|t| SecretString::from(t.to_owned()))
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
        if let Some(note) = &t.note {
            println!("drain URL: {note}");
        }
        if opts.dry_run {
            if t.token.is_none() {
                println!(
                    "(no API token for {}: AUTH_TOKEN or HEROKU_API_KEY is not set, so these calls were not checked against the API; without --dry-run setup stops here until one is set)",
                    t.app
                );
            }
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
    match &t.drain_url {
        Some(url) => println!(
            "POST   {base}/apps/{app}/log-drains {{\"url\": \"{}\"}}   (skipped if this drain is in place; a drain to the same endpoint with another password is replaced)",
            redact_drain_url(url.expose_secret())
        ),
        None => println!("(no drain: {app} is read through log sessions)"),
    }
    if opts.restart {
        println!("GET    {base}/apps/{app}/dynos   (then, one dyno at a time:)");
        println!(
            "DELETE {base}/apps/{app}/dynos/{{dyno}}   (restart it, then GET {base}/apps/{app}/dynos/{{dyno}} until its new instance is up, at most {}s, before the next; one-off dynos are left alone)",
            opts.restart_timeout.as_secs()
        );
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
    // The drain first: the restarted dynos' first samples then reach it.
    if let Some(url) = &t.drain_url {
        drain(client, token, app, url.expose_secret(), opts).await?;
    }
    if opts.restart {
        rolling_restart(client, token, app, opts.restart_timeout).await?;
    } else if enabled_now {
        println!(
            "  samples start only after the dynos restart: heroku ps:restart -a {app} (or run setup again with --restart, which restarts them one at a time)"
        );
    }
    if let Some(limit) = opts.wait {
        let seen = wait_for_samples(client, token, app, limit).await?;
        report_wait(app, limit, &seen)?;
        record_app_number(app, &seen, opts.database_url.as_ref()).await;
    }
    Ok(())
}

/// Records the number the app's samples carry (`dyno=heroku.N.…`) in
/// dynoguard's store, so `serve` ignores samples of any other app that a
/// wrongly pointed drain delivers to this app's URL.
async fn record_app_number(app: &AppName, seen: &Seen, database_url: Option<&SecretString>) {
    use secrecy::ExposeSecret as _;
    let [number] = seen.numbers.iter().copied().collect::<Vec<_>>()[..] else {
        if seen.numbers.len() > 1 {
            println!(
                "  app number: the samples carried several ({:?}); not recorded",
                seen.numbers
            );
        }
        return;
    };
    let Some(url) = database_url else {
        println!(
            "  app number: {app}'s samples carry dyno=heroku.{number}.… — run setup with dynoguard's DATABASE_URL (heroku run -a my-dynoguard) to record it, so samples of another app are ignored"
        );
        return;
    };
    let recorded = async {
        let store = crate::store::Store::connect(url.expose_secret()).await?;
        let at = jiff::Timestamp::now().as_millisecond();
        let r = store.set_app_number(app.as_str(), number, at).await;
        store.close().await;
        r
    }
    .await;
    match recorded {
        Ok(()) => println!(
            "  app number: recorded heroku.{number} for {app} — samples of another app's number are ignored"
        ),
        Err(e) => println!("  app number: not recorded ({e})"),
    }
}

/// Process types of one-off dynos: restarting one kills whatever it runs
/// (a console, a migration) and it never comes back.
const ONE_OFF_TYPES: [&str; 3] = ["run", "scheduler", "release"];

/// Restarts the app's dynos one at a time — each must report its new
/// instance up before the next goes down — so the app never loses all its
/// dynos at once (`DELETE /apps/{app}/dynos` would restart every dyno
/// together: an outage while they boot). Stops at the first dyno that does
/// not come back within `timeout`, saying which were not restarted.
async fn rolling_restart(
    client: &HerokuClient,
    token: &SecretString,
    app: &AppName,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let listed = client
        .list_dynos(token, app)
        .await
        .with_context(|| format!("listing the dynos of {app}"))?;
    let mut dynos: Vec<(DynoName, DynoInfo)> = Vec::new();
    let mut one_off = Vec::new();
    for d in listed {
        match DynoName::parse(&d.name) {
            Some(n) if !ONE_OFF_TYPES.contains(&n.process_type()) => dynos.push((n, d)),
            _ => one_off.push(d.name),
        }
    }
    // web.2 before web.10: by type, then by number.
    dynos.sort_by_key(|(n, _)| {
        let num: u64 = n
            .as_str()
            .rsplit_once('.')
            .and_then(|(_, k)| k.parse().ok())
            .unwrap_or(0);
        (n.process_type().to_owned(), num)
    });
    if !one_off.is_empty() {
        println!(
            "restart: left alone {} (one-off dynos: a restart would kill what they run)",
            one_off.join(", ")
        );
    }
    if dynos.is_empty() {
        println!("restart: {app} has no running dyno; samples start when its dynos start");
        return Ok(());
    }
    let total = dynos.len();
    println!(
        "restart: {total} dyno{} of {app}, one at a time (each must be up again within {}s before the next)",
        if total == 1 { "" } else { "s" },
        timeout.as_secs()
    );
    for (i, (name, info)) in dynos.iter().enumerate() {
        // The instance being replaced: its creation time is the evidence
        // that a new one took its place (the API's clock, not ours).
        let before = match info.created_at {
            Some(t) => Some(t),
            None => client
                .dyno_info(token, app, name)
                .await
                .ok()
                .and_then(|d| d.created_at),
        };
        let started = tokio::time::Instant::now();
        client
            .restart_dyno(token, app, name)
            .await
            .with_context(|| format!("restarting {name} of {app}"))?;
        match wait_until_replaced(client, token, app, name, before, timeout).await {
            Ok(()) => println!(
                "restart: {name} is up again ({}/{total}, {}s)",
                i + 1,
                started.elapsed().as_secs()
            ),
            Err(last_state) => {
                let rest: Vec<&str> = dynos[i + 1..].iter().map(|(n, _)| n.as_str()).collect();
                anyhow::bail!(
                    "{name} of {app} did not report a new instance up within {}s of its restart (last state: {last_state}); the rolling restart stopped so that no more dynos go down{}. See heroku ps -a {app} and heroku logs -a {app} --dyno {name}; run setup --restart again when it is up",
                    timeout.as_secs(),
                    if rest.is_empty() {
                        String::new()
                    } else {
                        format!("; not restarted: {}", rest.join(", "))
                    }
                );
            }
        }
    }
    Ok(())
}

/// Polls the dyno until a new instance (created after `before`) is up, or
/// `timeout`; `Err` holds the last state seen. Errors from the API (a 404
/// while the dyno is replaced) count as "not yet".
async fn wait_until_replaced(
    client: &HerokuClient,
    token: &SecretString,
    app: &AppName,
    name: &DynoName,
    before: Option<jiff::Timestamp>,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = std::time::Duration::from_millis(200);
    let mut last: String;
    loop {
        tokio::time::sleep(
            pause.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
        match client.dyno_info(token, app, name).await {
            Ok(d) => {
                let state = d.state.unwrap_or_default();
                let new = match (before, d.created_at) {
                    (Some(b), Some(now)) => now > b,
                    // Nothing to compare: an answer after the restart call
                    // that says "up" is the best evidence there is.
                    (None, _) => true,
                    (Some(_), None) => false,
                };
                if new && state == "up" {
                    return Ok(());
                }
                last = if new {
                    state
                } else {
                    format!("{state}, still the old instance")
                };
            }
            Err(e) => last = e.to_string(),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(3));
    }
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
    /// The app numbers the samples carried (`dyno=heroku.N.…`).
    pub numbers: std::collections::BTreeSet<u64>,
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
                if let ObservationKind::Sample(s) = &o.kind
                    && let Some(n) = s.app_number
                {
                    seen.numbers.insert(n);
                }
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

/// The `setup` command line as parsed (`dynoguard setup …`).
#[derive(Debug, Clone)]
pub struct SetupArgs {
    pub config: Option<std::path::PathBuf>,
    pub app: Option<String>,
    pub drain_url: Option<String>,
    pub dry_run: bool,
    pub restart: bool,
    pub restart_timeout: String,
    pub replace: bool,
    pub wait: Option<String>,
}

/// `dynoguard setup` from its command line and the environment: works out
/// the configuration source, the API base, the drain URL and the targets,
/// then runs. Usage problems are [`crate::config::ConfigError`]s (exit 2).
pub async fn from_cli(a: SetupArgs, env: &crate::config::env::Env) -> anyhow::Result<()> {
    use crate::config::{self, env::Need};
    let (app, drain_url, dry_run, restart, replace) = (
        a.app.clone(),
        a.drain_url.clone(),
        a.dry_run,
        a.restart,
        a.replace,
    );
    let (wait, restart_timeout) = (a.wait.clone(), a.restart_timeout.clone());
    let duration = |flag: &str, text: &str, max_secs: i64| {
        config::parse_duration(text)
            .filter(|d| !d.is_zero() && d.as_secs() <= max_secs)
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .ok_or_else(|| {
                usage(
                    flag,
                    format!(
                        "{text:?} is not a duration from 1s to {} (e.g. 3m)",
                        config::format_duration(jiff::SignedDuration::from_secs(max_secs))
                    ),
                )
            })
    };
    let wait = wait.map(|w| duration("--wait", &w, 3600)).transpose()?;
    let restart_timeout = duration("--restart-timeout", &restart_timeout, 3600)?;
    let from_file = a.config.is_some()
        || env
            .get(config::CONFIG_TOML_VAR)
            .is_some_and(|v| !v.trim().is_empty());
    let cfg = if from_file {
        Some(config::load_from(a.config.as_deref(), env, Need::Nothing)?)
    } else {
        None
    };
    let api_base = match &cfg {
        Some(c) => c.heroku_api_url.clone(),
        None => config::env::get(env, "HEROKU_API_URL")
            .unwrap_or(config::DEFAULT_HEROKU_API_URL)
            .trim_end_matches('/')
            .to_owned(),
    };
    let base = DrainBase::from_env(drain_url.as_deref(), env)?;
    // Dynoguard's own app is looked up with the environment's token,
    // else the first app's of the file.
    let token = env_token(env).or_else(|| {
        cfg.as_ref()
            .and_then(|c| c.apps.iter().find_map(|a| a.api_token.clone()))
    });
    let opts = SetupOptions {
        dry_run,
        restart,
        replace,
        wait,
        restart_timeout,
        // Inside the deployed dynoguard (`heroku run`), its store.
        database_url: config::env::get(env, "DATABASE_URL")
            .filter(|u| !u.is_empty())
            .map(|u| secrecy::SecretString::from(u.to_owned())),
    };
    {
        let base = match (&base, &token, dry_run) {
            // A dry run without a token calls nothing, not even to
            // find dynoguard's own URL: say what would be asked.
            (Some(DrainBase::OwnApp(name)), None, true) => {
                println!(
                    "GET    {api_base}/apps/{name}   (HEROKU_APP_NAME: its web_url + /logs is the drain URL; shown below as https://{name}.herokuapp.com, which newer apps do not have)"
                );
                Some((format!("https://{name}.herokuapp.com"), "HEROKU_APP_NAME"))
            }
            _ => resolve_base(&api_base, base.as_ref(), token.as_ref()).await?,
        };
        if let (Some((url, origin)), false) = (&base, drain_url.is_some()) {
            println!("drain URL from {origin}: {}", config::redact_url(url));
        }
        let targets = targets(
            cfg.as_ref(),
            app.as_deref(),
            base.as_ref().map(|(u, o)| (u.as_str(), *o)),
            env,
        )?;
        run(&api_base, targets, &opts).await
    }
}
