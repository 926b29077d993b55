//! The `dynoguard` binary: parse the command line, load configuration, run.
//! The only place errors become exit codes (0 ok, 1 runtime failure, 2 bad
//! configuration or usage).

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use dynoguard::cli::{Cli, Command};
use dynoguard::commands;
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

/// Dispatches a parsed command line. Logging is set up here (commands do
/// not import telemetry); each command's own argument handling lives with
/// it in `commands`.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay { config, file, app } => {
            dynoguard::telemetry::init_stderr();
            let summary = commands::replay::from_cli(
                config.config.as_deref(),
                file.as_deref(),
                app.as_deref(),
            )?;
            eprintln!("{summary}");
        }
        Command::Check { config } => {
            let problems = commands::check::run(
                config.config.as_deref(),
                &config::env::snapshot(),
                &mut std::io::stdout().lock(),
            )?;
            if problems {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Serve { config, port } => serve(config.config.as_deref(), port)?,
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
            let args = commands::setup::SetupArgs {
                config: config.config,
                app,
                drain_url,
                dry_run,
                restart,
                restart_timeout,
                replace,
                wait,
            };
            runtime()?.block_on(commands::setup::from_cli(args, &config::env::snapshot()))?;
        }
        Command::Demo {
            duration,
            dynos,
            speed,
            port,
            dry_run,
        } => {
            let color = std::io::stdout().is_terminal();
            // Checked before logging starts: a usage problem is all it says.
            let opts = commands::demo::options_from_cli(
                duration.as_deref(),
                dynos,
                speed,
                port,
                dry_run,
                color,
            )?;
            dynoguard::telemetry::init_demo(color);
            runtime()?.block_on(commands::demo::run(opts))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynoguard serve`: the configuration (an app required, `--port` over
/// `PORT`) and the machinery's knobs are checked before logging starts in
/// the format the configuration chose; then the service runs until a signal.
fn serve(config_path: Option<&Path>, port: Option<u16>) -> anyhow::Result<()> {
    let mut cfg = config::load(config_path, Need::App)?;
    if let Some(p) = port {
        cfg.server.port = p;
    }
    let tuning = dynoguard::service::Tuning::from_env(&config::env::snapshot())?;
    dynoguard::telemetry::init(cfg.log_format);
    for w in &cfg.warnings {
        tracing::warn!("configuration: {w}");
    }
    runtime()?.block_on(dynoguard::service::serve_until_signal(cfg, tuning))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // ring is the one TLS crypto provider (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
