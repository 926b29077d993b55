//! Command-line interface (SPEC §3). Parsing only; `main` runs the commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dynoguard",
    version,
    about = "Watches Heroku dyno memory and restarts a dyno before it swaps itself into uselessness.",
    long_about = "Watches Heroku dyno memory (runtime metrics from an HTTPS log drain or a log session) and \
restarts dynos through the Platform API before they swap (R14) or get killed (R15).\n\n\
Configuration comes from the environment (dark_knight's variables: APP_ID_OR_NAME, AUTH_TOKEN, \
DRAIN_PASSWORD, DYNO_TYPES, {TYPE}_RESTART_THRESHOLD, {TYPE}_RESTART_WINDOW, …) or from a TOML file \
given with --config."
)]
pub struct Cli {
    /// TOML configuration file; without it, configuration comes from the environment.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "DYNOGUARD_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: drain endpoint, log sessions, policy, restarter, dashboard.
    Serve {
        /// Port to listen on [default: $PORT, else 5000].
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run a saved log (drain bodies or `heroku logs` lines) through the policy;
    /// print one JSON decision per line. Never calls the API.
    Replay {
        /// The log file; `-` or nothing reads standard input.
        #[arg(value_name = "FILE|-")]
        file: Option<PathBuf>,
        /// Which configured app the log belongs to [default: the first].
        #[arg(long)]
        app: Option<String>,
    },
    /// Validate the configuration and print the effective policy per app and type.
    Check,
    /// Enable log-runtime-metrics and add the HTTPS drain for an app (idempotent).
    Setup {
        /// The app to instrument.
        #[arg(long)]
        app: String,
        /// The drain URL, e.g. https://user:PASSWORD@dynoguard.example.com/logs
        #[arg(long)]
        drain_url: String,
        /// Print the calls instead of making them.
        #[arg(long)]
        dry_run: bool,
        /// Then watch the app's logs (a log session) until its first
        /// runtime-metrics samples arrive, and say which dynos are watched —
        /// or exactly what is missing. Default wait: 3m.
        #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "3m")]
        wait: Option<String>,
    },
    /// Start a simulated Heroku and a real dynoguard against it; print a summary.
    Demo {
        /// Run for this long (`30s`, `2m`), then print the summary [default: until Ctrl-C].
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Number of simulated dynos.
        #[arg(long, default_value_t = 6)]
        dynos: usize,
        /// Simulated seconds per real second (compresses hours of leaking).
        #[arg(long, default_value_t = 120.0)]
        speed: f64,
        /// Port for the dashboard [default: any free port].
        #[arg(long)]
        port: Option<u16>,
    },
}
