//! Command-line interface. Parsing only; `main` runs the commands.
//!
//! Each subcommand takes exactly the flags it uses (a flag it would ignore
//! is refused), and its `--help` lists the environment variables it reads.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dynoguard",
    version,
    about = "Watches Heroku dyno memory and restarts a dyno before it swaps itself into uselessness.",
    long_about = "Watches Heroku dyno memory (runtime metrics from an HTTPS log drain or a log session) and \
restarts dynos through the Platform API before they swap (R14) or get killed (R15).\n\n\
Configuration comes from config vars (dark_knight's APP_ID_OR_NAME, AUTH_TOKEN, DRAIN_PASSWORD, \
DYNO_TYPES, {TYPE}_RESTART_THRESHOLD, … and every policy knob as {TYPE}_{KNOB} / DYNOGUARD_{KNOB}), \
from a TOML file given with --config, or from a TOML document in DYNOGUARD_CONFIG_TOML. \
`dynoguard check` shows what is in effect and where each value came from."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `--config FILE` for the subcommands that read a configuration.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// TOML configuration file; without it, the configuration comes from
    /// DYNOGUARD_CONFIG_TOML or the other config vars.
    #[arg(long, short = 'c', env = "DYNOGUARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

macro_rules! config_vars {
    () => {
        "\
Configuration (without --config; README \"Configuration: config vars\"):
  APP_ID_OR_NAME            the app to watch
  AUTH_TOKEN / HEROKU_API_KEY  Platform API token
  DRAIN_PASSWORD            basic-auth password of POST /logs
  DRAIN_TOKEN               Logplex-Drain-Token of the app on a shared /logs
  DYNO_TYPES                process types to watch, by commas or spaces, or * [web]
  {TYPE}_{KNOB}             a policy knob for one type, e.g. WEB_RESTART_THRESHOLD=1024
  DYNOGUARD_{KNOB}          a policy knob for every type, e.g. DYNOGUARD_CONSECUTIVE=2
      KNOB: RESTART_THRESHOLD RESTART_WINDOW SWAP_THRESHOLD CONSECUTIVE PREDICT
            PREDICT_FLOOR PREDICT_WINDOW MAX_PARALLEL SETTLE ON_R14 ON_R15 FLAP_LIMIT FLAP_WINDOW (DYNOGUARD_DRY_RUN)
  DYNOGUARD_BLIND_AFTER     lines but no memory sample this long: `blind` event [5m]
  DYNOGUARD_SOURCE          drain or log-session [drain]
  DYNOGUARD_CONFIG_TOML     a whole TOML configuration in one config var
  DYNOGUARD_CONFIG          same as --config FILE"
    };
}

macro_rules! server_vars {
    () => {
        "\
Service (these four win over the file: PORT, DATABASE_URL, DASHBOARD_PASSWORD, DYNOGUARD_DRY_RUN):
  PORT                      HTTP port [5000]
  DATABASE_URL              sqlite://PATH or postgres://… [sqlite://dynoguard.db]
  DASHBOARD_PASSWORD        password of the dashboard, /api and /metrics [DRAIN_PASSWORD]
  DYNOGUARD_DRY_RUN         1: decide and report, never call the API
  HEROKU_API_URL            Platform API base URL [https://api.heroku.com]
  SLACK_WEBHOOK_URL         Slack incoming webhook
  SLACK_EVENTS              events sent to Slack [restart,restart_failed,flapping,blind]
  DYNOGUARD_URL             public URL of this dynoguard, linked from notifications
  LOG_FORMAT / RUST_LOG     text or json / level filter [text / info]
  DYNOGUARD_SHUTDOWN_TIMEOUT  SIGTERM to exit [25s]
  DYNOGUARD_API_TIMEOUT, _HEADER_TIMEOUT, _IDLE_TIMEOUT, _BODY_TIMEOUT, _MAX_CONNECTIONS"
    };
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: drain endpoint, log sessions, policy, restarter, dashboard.
    #[command(after_help = concat!(config_vars!(), "\n\n", server_vars!()))]
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Port to listen on [default: $PORT, else 5000].
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run a saved log (drain bodies or `heroku logs` lines) through the policy;
    /// print one JSON decision per line. Never calls the API; needs no secrets.
    #[command(after_help = concat!(config_vars!(), "\n\nOnly the policy is read: tokens, passwords and server settings are not needed."))]
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// The log file; `-` or nothing reads standard input.
        #[arg(value_name = "FILE|-")]
        file: Option<PathBuf>,
        /// Which configured app the log belongs to [default: the first].
        #[arg(long)]
        app: Option<String>,
    },
    /// Validate the configuration; print the effective policy per app and type,
    /// where each value came from, and every warning. Exit 2 on a problem.
    #[command(after_help = concat!(config_vars!(), "\n\n", server_vars!()))]
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Enable log-runtime-metrics and add the HTTPS drain (idempotent; a drain
    /// whose password changed is replaced), for one app or every app of --config.
    /// Run it on the deployed dynoguard and it needs nothing else:
    /// heroku run -a my-dynoguard -- dynoguard setup --app my-app --restart
    #[command(after_help = "\
Environment (all already set on a deployed dynoguard):
  AUTH_TOKEN / HEROKU_API_KEY  Platform API token (api_token of each app with --config)
  APP_ID_OR_NAME            the app, when --app is not given
  DRAIN_PASSWORD            the drain password, when the URL has none
  DYNOGUARD_URL             where this dynoguard is, when --drain-url is not given (/logs is added)
  HEROKU_APP_NAME           else: this dynoguard's own app (set by dyno metadata); its web URL is asked of the API
  HEROKU_API_URL            Platform API base URL [https://api.heroku.com]
  DYNOGUARD_CONFIG / DYNOGUARD_CONFIG_TOML  a configuration: every app of it is set up")]
    Setup {
        #[command(flatten)]
        config: ConfigArg,
        /// The app to instrument [default: APP_ID_OR_NAME; with --config: every app].
        #[arg(long)]
        app: Option<String>,
        /// The drain URL, e.g. https://dynoguard:PASSWORD@dynoguard.example.com/logs
        /// (with --config: the base; each app gets /logs/APP and its drain password).
        /// A URL without a path gets /logs. [default: DYNOGUARD_URL, else this
        /// dynoguard's own web URL (HEROKU_APP_NAME), with /logs]
        #[arg(long)]
        drain_url: Option<String>,
        /// Print the calls instead of making them.
        #[arg(long)]
        dry_run: bool,
        /// Restart the app's dynos after enabling the feature (samples start
        /// only with dynos started after it): one at a time, each up again
        /// before the next; one-off dynos are left alone.
        #[arg(long)]
        restart: bool,
        /// With --restart: how long each dyno may take to be up again before
        /// the rolling restart stops.
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "3m",
            requires = "restart"
        )]
        restart_timeout: String,
        /// Replace a drain to the same endpoint even if Heroku does not show
        /// its password (use after changing DRAIN_PASSWORD).
        #[arg(long)]
        replace: bool,
        /// Then watch the app's logs (a log session) until its first
        /// runtime-metrics samples arrive, and say which dynos are watched —
        /// or exactly what is missing. Default wait: 3m.
        #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "3m")]
        wait: Option<String>,
    },
    /// Start a simulated Heroku and a real dynoguard against it; print a summary.
    /// Reads no configuration: everything is simulated, on loopback.
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
        /// Alert-only mode (as DYNOGUARD_DRY_RUN=1): decide and report, restart nothing.
        #[arg(long)]
        dry_run: bool,
    },
}
