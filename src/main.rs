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
            let args = dynoguard::commands::setup::SetupArgs {
                config: config.config,
                app,
                drain_url,
                dry_run,
                restart,
                restart_timeout,
                replace,
                wait,
            };
            runtime()?.block_on(dynoguard::commands::setup::from_cli(
                args,
                &config::env::snapshot(),
            ))?;
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
