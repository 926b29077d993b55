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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let need = match cli.command {
        Command::Replay { .. } => Need::Nothing,
        _ => Need::App,
    };
    match cli.command {
        Command::Replay { file, app } => {
            dynoguard::telemetry::init_stderr();
            let cfg = dynoguard::config::load(cli.config.as_deref(), need)?;
            let app = match &app {
                Some(name) => cfg
                    .app(name)
                    .with_context(|| format!("no app named {name:?} in the configuration"))?,
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
        Command::Check => {
            let problems = dynoguard::commands::check::run(
                cli.config.as_deref(),
                &config::env::snapshot(),
                &mut std::io::stdout().lock(),
            )?;
            Ok(if problems {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Serve { port } => {
            let mut cfg = dynoguard::config::load(cli.config.as_deref(), need)?;
            if let Some(p) = port {
                cfg.server.port = p;
            }
            let tuning = dynoguard::service::Tuning::from_env(&config::env::snapshot())?;
            dynoguard::telemetry::init(cfg.log_format);
            runtime()?.block_on(dynoguard::service::serve_until_signal(cfg, tuning))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Setup {
            app,
            drain_url,
            dry_run,
            wait,
        } => {
            dynoguard::telemetry::init_stderr();
            let env = config::env::snapshot();
            let wait = wait
                .map(|w| {
                    config::parse_duration(&w)
                        .filter(|d| !d.is_zero() && d.as_secs() <= 3600)
                        .and_then(|d| std::time::Duration::try_from(d).ok())
                        .ok_or_else(|| {
                            ConfigError(vec![config::Problem {
                                at: "--wait".into(),
                                message: format!("{w:?} is not a duration from 1s to 1h (e.g. 3m)"),
                            }])
                        })
                })
                .transpose()?;
            runtime()?.block_on(dynoguard::commands::setup::run(
                &env, &app, &drain_url, dry_run, wait,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            duration,
            dynos,
            speed,
            port,
        } => {
            let duration = duration
                .map(|d| {
                    config::parse_duration(&d)
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| {
                            ConfigError(vec![config::Problem {
                                at: "--for".into(),
                                message: format!("{d:?} is not a duration; use e.g. 30s or 2m"),
                            }])
                        })
                })
                .transpose()?;
            if !(speed.is_finite() && speed > 0.0 && speed <= 10_000.0)
                || dynos == 0
                || dynos > 1000
            {
                return Err(ConfigError(vec![config::Problem {
                    at: "--speed/--dynos".into(),
                    message: "--speed must be in (0, 10000] and --dynos in 1..=1000".into(),
                }])
                .into());
            }
            dynoguard::telemetry::init_demo(std::io::stdout().is_terminal());
            let opts = dynoguard::commands::demo::DemoOptions {
                duration,
                dynos,
                speed,
                port: port.unwrap_or(0),
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
