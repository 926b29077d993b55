//! Wiring: builds the store, the client, the per-app watchers, the HTTP
//! server and the background tasks, and shuts them down in order.
//!
//! `App::build(config, tuning)` binds the port (0 in tests) and returns the
//! address; `App::run_until(signal)` serves until the signal, then stops
//! accepting, finishes in-flight restarts, flushes samples and events.

pub mod replicas;
mod seed;
pub mod server;
pub mod session;
mod state;
pub mod tasks;

pub(crate) use seed::load_app_numbers;
use seed::seed_engines;
pub use state::{AppRuntime, SampleBuffer, Shared};

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use crate::act::heroku_api::HerokuClient;
use crate::act::report::Reporter;
use crate::act::restart::{self, RestartContext, RestartOrder};
use crate::config::{Config, Source};
use crate::domain::event::Event;
use crate::store::Store;
use crate::store::replicas::{Leadership, Role};
use crate::telemetry::Counters;

// `Tuning` is read from the environment by `config` (so `check` validates
// it without importing the service); re-exported where `serve` wires it.
pub use crate::config::tuning::{TUNING_VARS, Tuning, TuningVar};

/// A built, bound, not yet serving dynoguard.
pub struct App {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    restart_rx: mpsc::UnboundedReceiver<RestartOrder>,
    store_rx: mpsc::Receiver<Event>,
    notify_rx: Option<mpsc::Receiver<Event>>,
    tuning: Tuning,
    /// Held while serving: a second `serve` on the same SQLite file is
    /// refused (two deciders would each restart).
    sqlite_lock: Option<std::fs::File>,
}

impl App {
    pub async fn build(config: Config, tuning: Tuning) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret as _;
        let store = Store::connect(config.database_url.expose_secret())
            .await
            .with_context(|| format!("opening the store {}", config.database_url_redacted()))?;
        let sqlite_lock = lock_sqlite(config.database_url.expose_secret())?;
        let client = Arc::new(
            HerokuClient::with_timeout(&config.heroku_api_url, tuning.api_timeout)
                .context("building the Heroku API client")?,
        );
        let counters = Arc::new(Counters::default());
        let (store_tx, store_rx) = mpsc::channel(crate::act::report::QUEUE);
        let (notify_tx, notify_rx) = if config.notify.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = mpsc::channel(1024);
            (Some(tx), Some(rx))
        };
        let reporter = Reporter::new(config.log_format, store_tx, notify_tx, counters.clone());
        let (restart_tx, restart_rx) = mpsc::unbounded_channel();

        let apps: Vec<Arc<AppRuntime>> = config
            .apps
            .iter()
            .cloned()
            .map(|a| Arc::new(AppRuntime::new(a)))
            .collect();
        seed_engines(&store, &apps).await?;
        // This host's leases (a run killed mid-call) become this run's
        // windows: never deleted, never a blind second DELETE.
        let window_ms = crate::decide::policy::Policy::default()
            .restart_window
            .as_millis() as i64;
        match store
            .adopt_leases(&tuning.host, &tuning.holder, window_ms)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                "adopted {n} restart claim(s) an earlier run left in flight: their outcome is unknown, counted as made"
            ),
            Err(e) => tracing::error!("adopting restart claims failed: {e}"),
        }

        let leadership = Leadership::new(
            tuning.holder.clone(),
            replicas::Replicas::scope(&apps),
            Role::Alone,
        );
        replicas::first_role(&store, &leadership, tuning.leader_lease).await;

        let addr = SocketAddr::new(tuning.bind_ip, config.server.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding port {}", config.server.port))?;
        let shared = Arc::new(Shared {
            config,
            apps,
            store,
            reporter,
            client,
            counters,
            samples: SampleBuffer::default(),
            pending_restarts: Arc::default(),
            restart_tx,
            started: Timestamp::now(),
            replicas: replicas::Replicas::new(leadership),
            page_log_clock: tuning.page_log_clock,
        });
        Ok(Self {
            listener,
            shared,
            restart_rx,
            store_rx,
            notify_rx,
            tuning,
            sqlite_lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `signal` completes, then shuts down in order.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            shared,
            restart_rx,
            store_rx,
            notify_rx,
            tuning,
            sqlite_lock: _sqlite_lock,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);

        let restarter = tokio::spawn(restart::run(
            RestartContext {
                store: shared.store.clone(),
                client: shared.client.clone(),
                reporter: shared.reporter.clone(),
                holder: tuning.holder.clone(),
                attempts: tuning.restart_attempts.max(1),
                retry_base: tuning.restart_retry_base,
                lease: tuning.claim_lease,
                local_claims: shared.replicas.local_claims.clone(),
                pending_restarts: shared.pending_restarts.clone(),
                leadership: shared.replicas.leadership.clone(),
            },
            restart_rx,
            stop_rx.clone(),
            // Leaves the last seconds of the deadline for flushing the store.
            tuning
                .shutdown_timeout
                .saturating_sub(Duration::from_secs(2))
                .max(Duration::from_secs(1)),
        ));
        let writer = tokio::spawn(tasks::write_events(
            shared.store.clone(),
            store_rx,
            shared.pending_restarts.clone(),
            shared.counters.clone(),
        ));
        let notifier = notify_rx.map(|rx| {
            tokio::spawn(crate::act::notify::run(
                shared.config.notify.clone(),
                shared.config.public_url.clone(),
                rx,
                tuning.notify_retry_base,
                tuning.digest,
            ))
        });
        let flusher = tokio::spawn(tasks::flush_samples(
            shared.clone(),
            tuning.sample_flush,
            stop_rx.clone(),
        ));
        let mut background = background_tasks(&shared, &tuning, &stop_rx);

        let router = server::router(shared.clone(), tuning.http.body_timeout);
        let mut stop_on_signal = stop_rx.clone();
        tokio::spawn(async move {
            signal.await;
            let _ = stop_tx.send(true);
        });
        log_start(&listener, &shared);
        let mut limits = tuning.http;
        limits.max_connections = server::listen::connection_cap(limits.max_connections);
        let http = tokio::spawn(server::listen::serve(
            listener,
            router,
            limits,
            shared.counters.clone(),
            stop_rx.clone(),
        ));
        let _ = stop_on_signal.wait_for(|s| *s).await;
        // From here on, everything finishes within the shutdown deadline
        // (Heroku sends SIGKILL 30 s after SIGTERM).
        let deadline = tokio::time::Instant::now() + tuning.shutdown_timeout;
        if tokio::time::timeout_at(deadline, http).await.is_err() {
            tracing::warn!("shutdown deadline: closing HTTP connections still open");
        }

        tracing::info!(
            "shutting down: finishing in-flight restarts and flushing state (deadline {}s)",
            tuning.shutdown_timeout.as_secs()
        );
        let started = tokio::time::Instant::now();
        if tokio::time::timeout_at(deadline, async {
            while background.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            background.abort_all();
        }
        // The restarter bounds itself by the deadline too (abandoning calls
        // still open: their claims are leases the next start takes over).
        let _ = tokio::time::timeout_at(deadline, restarter).await;
        let _ = tokio::time::timeout_at(deadline, flusher).await;
        // Every sender of events is gone once the tasks above ended, except
        // the reporter held by `shared`; dropping the last clone closes them.
        let store = shared.store.clone();
        drop(shared);
        let _ = tokio::time::timeout_at(deadline, writer).await;
        if let Some(n) = notifier {
            let _ = tokio::time::timeout_at(deadline, n).await;
        }
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), store.close()).await;
        tracing::info!("stopped in {:.1}s", started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// The tasks that run beside the HTTP server until the stop signal: log
/// sessions, quota refreshes, pruning, held decisions, the store's health,
/// the replica machinery (PostgreSQL), the start-up self-test.
fn background_tasks(
    shared: &Arc<Shared>,
    tuning: &Tuning,
    stop_rx: &watch::Receiver<bool>,
) -> tokio::task::JoinSet<()> {
    let mut background = tokio::task::JoinSet::new();
    for app in shared
        .apps
        .iter()
        .filter(|a| a.config.source == Source::LogSession)
    {
        background.spawn(crate::service::session::watch(
            shared.clone(),
            app.clone(),
            tuning.clone(),
            stop_rx.clone(),
        ));
    }
    for app in shared.apps.iter().filter(|a| a.config.api_token.is_some()) {
        background.spawn(tasks::refresh_quotas(
            shared.clone(),
            app.clone(),
            tuning.formation_refresh,
            stop_rx.clone(),
        ));
    }
    background.spawn(tasks::prune(shared.clone(), stop_rx.clone()));
    background.spawn(tasks::release_held(
        shared.clone(),
        tuning.order_hold,
        stop_rx.clone(),
    ));
    background.spawn(tasks::watch_store(shared.clone(), stop_rx.clone()));
    if shared.store.is_postgres() {
        background.spawn(replicas::lead(
            shared.clone(),
            tuning.leader_lease,
            stop_rx.clone(),
        ));
        background.spawn(replicas::forward(shared.clone(), stop_rx.clone()));
        background.spawn(replicas::intake(shared.clone(), stop_rx.clone()));
        background.spawn(replicas::release(shared.clone(), stop_rx.clone()));
    }
    let mut stop_test = stop_rx.clone();
    let tested = shared.clone();
    background.spawn(async move {
        tokio::select! {
            () = tasks::self_test(tested) => {}
            _ = stop_test.wait_for(|s| *s) => {}
        }
    });

    background
}

/// What runs, where, on which store: the first line an operator reads.
fn log_start(listener: &tokio::net::TcpListener, shared: &Shared) {
    tracing::info!(
        "dynoguard {} listening on {} (store: {}, apps: {})",
        env!("CARGO_PKG_VERSION"),
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        shared.store.backend(),
        shared
            .apps
            .iter()
            .map(|a| format!("{} via {}", a.config.name, a.config.source.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if shared.config.server.dashboard_password.is_none() {
        tracing::warn!(
            "no DASHBOARD_PASSWORD (or DRAIN_PASSWORD): the dashboard, /api and /metrics answer 401"
        );
    }
}

/// Locks a SQLite database file for this process (an OS lock, released
/// when the process ends, however it ends). SQLite is one process's store:
/// two `serve` on one file would be two deciders restarting the same dynos.
fn lock_sqlite(url: &str) -> anyhow::Result<Option<std::fs::File>> {
    use std::str::FromStr as _;
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(None);
    }
    let opts =
        sqlx::sqlite::SqliteConnectOptions::from_str(url).context("reading the SQLite URL")?;
    let path = opts.get_filename();
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening {} to lock it", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another dynoguard serve is using {}: SQLite serves one process — stop the other one, or run several replicas on PostgreSQL (DATABASE_URL=postgres://…), which elect one leader",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(
                "could not lock {} ({e}); not checking for a second serve on it",
                path.display()
            );
            Ok(None)
        }
    }
}

/// `dynoguard serve`: runs until SIGTERM (Heroku) or SIGINT (Ctrl-C).
pub async fn serve_until_signal(config: Config, tuning: Tuning) -> anyhow::Result<()> {
    crate::config::serve_problems(&config)?;
    use secrecy::ExposeSecret as _;
    if std::env::var_os("DYNO").is_some()
        && config.database_url.expose_secret().starts_with("sqlite:")
    {
        tracing::warn!(
            "running on Heroku with SQLite: a dyno's disk is wiped at every deploy, restart and daily cycle, so restart windows, claims and history are forgotten — attach Postgres: heroku addons:create heroku-postgresql:essential-0 -a <this app> (DATABASE_URL is then set for you)"
        );
    }
    let app = App::build(config, tuning).await?;
    app.run_until(shutdown_signal()).await
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
