//! The `dynoguard` binary: parse the command line, load configuration, run.
//! The only place errors become exit codes (0 ok, 1 runtime failure, 2 bad
//! configuration or usage).

use std::io::{BufReader, IsTerminal as _};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use dynoguard::cli::{Cli, Command};
use dynoguard::config::{self, ConfigError, env::Need};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // `dynoguard replay log | head`: the reader left; not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            if let Some(c) = e.downcast_ref::<ConfigError>() {
                eprint!("{c}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn usage(at: &str, message: impl Into<String>) -> ConfigError {
    ConfigError(vec![config::Problem {
        at: at.into(),
        message: message.into(),
    }])
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay { config, file, app } => {
            dynoguard::telemetry::init_stderr();
            let cfg = config::load(config.config.as_deref(), Need::Nothing)?;
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            let app = match &app {
                Some(name) => cfg.app(name).ok_or_else(|| {
                    usage(
                        "--app",
                        format!(
                            "{name:?} is not a configured app; configured: {}",
                            cfg.apps
                                .iter()
                                .map(|a| a.name.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?,
                None => cfg.apps.first().context("the configuration names no app")?,
            };
            let summary = match file.as_deref() {
                None => replay_stdin(app)?,
                Some(p) if p.as_os_str() == "-" => replay_stdin(app)?,
                Some(p) => {
                    let f = std::fs::File::open(p)
                        .with_context(|| format!("opening {}", p.display()))?;
                    dynoguard::commands::replay::run(
                        app,
                        BufReader::new(f),
                        std::io::stdout().lock(),
                    )?
                }
            };
            eprintln!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let problems = dynoguard::commands::check::run(
                config.config.as_deref(),
                &config::env::snapshot(),
                &mut std::io::stdout().lock(),
            )?;
            Ok(if problems {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Serve { config, port } => {
            let mut cfg = config::load(config.config.as_deref(), Need::App)?;
            if let Some(p) = port {
                cfg.server.port = p;
            }
            let tuning = dynoguard::service::Tuning::from_env(&config::env::snapshot())?;
            dynoguard::telemetry::init(cfg.log_format);
            for w in &cfg.warnings {
                tracing::warn!("configuration: {w}");
            }
            runtime()?.block_on(dynoguard::service::serve_until_signal(cfg, tuning))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Setup {
            config,
            app,
            drain_url,
            dry_run,
            restart,
            restart_timeout,
            replace,
            wait,
        } => {
            dynoguard::telemetry::init_stderr();
            let env = config::env::snapshot();
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
            let from_file = config.config.is_some()
                || env
                    .get(config::CONFIG_TOML_VAR)
                    .is_some_and(|v| !v.trim().is_empty());
            let cfg = if from_file {
                Some(config::load_from(
                    config.config.as_deref(),
                    &env,
                    Need::Nothing,
                )?)
            } else {
                None
            };
            let api_base = match &cfg {
                Some(c) => c.heroku_api_url.clone(),
                None => config::env::get(&env, "HEROKU_API_URL")
                    .unwrap_or(config::DEFAULT_HEROKU_API_URL)
                    .trim_end_matches('/')
                    .to_owned(),
            };
            use dynoguard::commands::setup;
            let base = setup::DrainBase::from_env(drain_url.as_deref(), &env)?;
            // Dynoguard's own app is looked up with the environment's token,
            // else the first app's of the file.
            let token = setup::env_token(&env).or_else(|| {
                cfg.as_ref()
                    .and_then(|c| c.apps.iter().find_map(|a| a.api_token.clone()))
            });
            let opts = setup::SetupOptions {
                dry_run,
                restart,
                replace,
                wait,
                restart_timeout,
                // Inside the deployed dynoguard (`heroku run`), its store.
                database_url: std::env::var("DATABASE_URL")
                    .ok()
                    .filter(|u| !u.is_empty())
                    .map(secrecy::SecretString::from),
            };
            runtime()?.block_on(async {
                let base = match (&base, &token, dry_run) {
                    // A dry run without a token calls nothing, not even to
                    // find dynoguard's own URL: say what would be asked.
                    (Some(setup::DrainBase::OwnApp(name)), None, true) => {
                        println!(
                            "GET    {api_base}/apps/{name}   (HEROKU_APP_NAME: its web_url + /logs is the drain URL; shown below as https://{name}.herokuapp.com, which newer apps do not have)"
                        );
                        Some((format!("https://{name}.herokuapp.com"), "HEROKU_APP_NAME"))
                    }
                    _ => setup::resolve_base(&api_base, base.as_ref(), token.as_ref()).await?,
                };
                if let (Some((url, origin)), false) = (&base, drain_url.is_some()) {
                    println!(
                        "drain URL from {origin}: {}",
                        config::redact_url(url)
                    );
                }
                let targets = setup::targets(
                    cfg.as_ref(),
                    app.as_deref(),
                    base.as_ref().map(|(u, o)| (u.as_str(), *o)),
                    &env,
                )?;
                setup::run(&api_base, targets, &opts).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            duration,
            dynos,
            speed,
            port,
            dry_run,
        } => {
            let duration = duration
                .map(|d| {
                    config::parse_duration(&d)
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| {
                            usage(
                                "--for",
                                format!("{d:?} is not a duration; use e.g. 30s or 2m"),
                            )
                        })
                })
                .transpose()?;
            if !(speed.is_finite() && speed > 0.0 && speed <= 10_000.0)
                || dynos == 0
                || dynos > 1000
            {
                return Err(usage(
                    "--speed/--dynos",
                    "--speed must be in (0, 10000] and --dynos in 1..=1000",
                )
                .into());
            }
            dynoguard::telemetry::init_demo(std::io::stdout().is_terminal());
            let opts = dynoguard::commands::demo::DemoOptions {
                duration,
                dynos,
                speed,
                port: port.unwrap_or(0),
                dry_run,
                color: std::io::stdout().is_terminal(),
            };
            runtime()?.block_on(dynoguard::commands::demo::run(opts))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn replay_stdin(
    app: &dynoguard::config::AppConfig,
) -> anyhow::Result<dynoguard::commands::replay::Summary> {
    let stdin = std::io::stdin().lock();
    dynoguard::commands::replay::run(app, stdin, std::io::stdout().lock())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // ring is the one TLS crypto provider (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
