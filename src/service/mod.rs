//! Wiring: builds the store, the client, the per-app watchers, the HTTP
//! server and the background tasks, and shuts them down in order.
//!
//! `App::build(config, tuning)` binds the port (0 in tests) and returns the
//! address; `App::run_until(signal)` serves until the signal, then stops
//! accepting, finishes in-flight restarts, flushes samples and events.

pub mod server;
pub mod session;
pub mod tasks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use crate::act::heroku_api::HerokuClient;
use crate::act::report::Reporter;
use crate::act::restart::{self, RestartContext, RestartOrder};
use crate::config::{AppConfig, Config, Source};
use crate::decide::engine::{Confirmation, Decisions, Engine, SharedEngine};
use crate::decide::state::RestartMark;
use crate::domain::Megabytes;
use crate::domain::event::Event;
use crate::ingest::IngestStats;
use crate::ingest::heroku_line::Observation;
use crate::store::{self, SampleRow, Store};
use crate::telemetry::Counters;

// `Tuning` is read from the environment by `config` (so `check` validates
// it without importing the service); re-exported where `serve` wires it.
pub use crate::config::tuning::{TUNING_VARS, Tuning, TuningVar};

/// One watched app at run time: its configuration and its decision engine.
#[derive(Debug)]
pub struct AppRuntime {
    pub config: AppConfig,
    pub engine: Arc<SharedEngine>,
}

impl AppRuntime {
    pub fn new(config: AppConfig) -> Self {
        let engine = Arc::new(SharedEngine::new(
            config.name.clone(),
            config.policy.clone(),
            Confirmation::ByRestarter,
        ));
        Self { config, engine }
    }

    /// The engine; a panic elsewhere never poisons ingestion for good.
    pub fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock()
    }
}

/// Latest sample per dyno and the minutes of history, waiting for the next
/// batched write. Too many pending minutes (the store is down for hours)
/// drop the oldest, counted: memory stays bounded.
#[derive(Debug, Default)]
pub struct SampleBuffer {
    pending: Mutex<HashMap<(String, String), SampleRow>>,
    minutes: Mutex<HashMap<(String, String, i64), store::MinuteRow>>,
    /// Minutes dropped because the store was down too long.
    pub minutes_dropped: std::sync::atomic::AtomicU64,
}

/// Pending history minutes kept while the store fails (≈ 1,000 dynos × 2 h).
const PENDING_MINUTES: usize = 120_000;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SampleBuffer {
    fn put(&self, row: SampleRow) {
        if let Some(m) = store::MinuteRow::of_sample(&row) {
            self.add_minute(m);
        }
        locked(&self.pending).insert((row.app.clone(), row.dyno.clone()), row);
    }

    fn add_minute(&self, m: store::MinuteRow) {
        let mut minutes = locked(&self.minutes);
        match minutes.get_mut(&m.key()) {
            Some(have) => have.merge(m),
            None => {
                if minutes.len() >= PENDING_MINUTES
                    && let Some(oldest) = minutes.keys().min_by_key(|k| k.2).cloned()
                {
                    minutes.remove(&oldest);
                    self.minutes_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                minutes.insert(m.key(), m);
            }
        }
    }

    pub(crate) fn take(&self) -> Vec<SampleRow> {
        locked(&self.pending).drain().map(|(_, v)| v).collect()
    }

    /// Rows whose write failed go back, unless a newer one of the dyno came.
    pub(crate) fn put_back(&self, rows: Vec<SampleRow>) {
        let mut p = locked(&self.pending);
        for row in rows {
            p.entry((row.app.clone(), row.dyno.clone())).or_insert(row);
        }
    }

    pub(crate) fn take_history(&self) -> Vec<store::MinuteRow> {
        let mut v: Vec<_> = locked(&self.minutes).drain().map(|(_, m)| m).collect();
        v.sort_by(|a, b| (&a.app, &a.dyno, a.minute).cmp(&(&b.app, &b.dyno, b.minute)));
        v
    }

    /// Minutes whose write failed merge back with what came since.
    pub(crate) fn put_back_history(&self, rows: Vec<store::MinuteRow>) {
        for m in rows {
            self.add_minute(m);
        }
    }
}

/// State shared by the HTTP handlers, the session watchers and the tasks.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub apps: Vec<Arc<AppRuntime>>,
    pub store: Store,
    pub reporter: Reporter,
    pub client: Arc<HerokuClient>,
    pub counters: Arc<Counters>,
    pub samples: SampleBuffer,
    /// Restart records the restarter could not write; the writer retries.
    pub pending_restarts: Arc<Mutex<Vec<store::RestartRow>>>,
    restart_tx: mpsc::UnboundedSender<RestartOrder>,
    pub started: Timestamp,
    /// See [`Tuning::page_log_clock`].
    pub page_log_clock: bool,
}

impl Shared {
    pub fn app(&self, name: &str) -> Option<&Arc<AppRuntime>> {
        self.apps.iter().find(|a| a.config.name.as_str() == name)
    }

    /// Runs observations of one app through its engine (one lock for the
    /// whole batch) and dispatches the results: restart orders to the
    /// restarter, everything else to the reporter. Never waits on I/O.
    /// `lines` are the log times of the batch's first and last line (of any
    /// kind), which tell whether the app is blind.
    pub fn apply(
        &self,
        app: &Arc<AppRuntime>,
        observations: &[Observation],
        lines: Option<(Timestamp, Timestamp)>,
    ) {
        if observations.is_empty() && lines.is_none() {
            return;
        }
        let now = Timestamp::now();
        let decisions = {
            let mut engine = app.lock();
            let first = lines.and_then(|(first, _)| engine.lines_seen(first, now));
            let mut d = engine.apply(observations, now);
            let last = lines.and_then(|(_, last)| engine.lines_seen(last, now));
            // Dated when the app became blind: kept in time order.
            for e in first.into_iter().chain(last) {
                let at = d.events.iter().position(|x| x.at >= e.at);
                d.events.insert(at.unwrap_or(d.events.len()), e);
            }
            d
        };
        self.dispatch(app, decisions);
    }

    /// Alert-only mode: some app decides but never restarts
    /// (`DYNOGUARD_DRY_RUN`, `dry_run = true`).
    pub fn alert_only(&self) -> bool {
        self.apps.iter().any(|a| {
            let p = &a.config.policy;
            p.defaults.dry_run || p.per_type.values().any(|t| t.dry_run)
        })
    }

    /// Acts on the decisions an engine held since a batch that arrived at
    /// or before `cutoff` (the tick of a quiet app).
    pub fn release_held(&self, app: &Arc<AppRuntime>, cutoff: Timestamp) {
        let d = {
            let mut engine = app.lock();
            if !engine.holding() {
                return;
            }
            engine.release_due(cutoff)
        };
        self.dispatch(app, d);
    }

    fn dispatch(&self, app: &Arc<AppRuntime>, d: Decisions) {
        for s in d.samples {
            self.samples.put(SampleRow {
                app: app.config.name.to_string(),
                dyno: s.dyno.to_string(),
                instance: s.instance,
                at: store::millis(s.at),
                total: s.memory.total.map(Megabytes::get),
                rss: s.memory.rss.map(Megabytes::get),
                swap: s.memory.swap.map(Megabytes::get),
                quota: s.memory.quota.map(Megabytes::get),
                replaced: (!s.replaced.is_empty()).then(|| s.replaced.join(",")),
                contender: s.contender,
            });
        }
        let c = &self.counters;
        Counters::add(&c.lines_stale, d.ignored.stale);
        Counters::add(&c.lines_replaced, d.ignored.replaced);
        Counters::add(&c.lines_unclear, d.ignored.unclear);
        Counters::add(&c.lines_repeated, d.ignored.repeated);
        Counters::add(&c.lines_foreign, d.ignored.foreign);
        Counters::add(&c.timestamps_clamped, d.future_clamped);
        Counters::add(&c.l10_coalesced, d.ignored.l10_coalesced);
        Counters::add(&c.samples_lost, d.ignored.l10_dropped);
        for w in d.warnings {
            tracing::warn!("{w}");
        }
        for e in d.events {
            self.reporter.emit(e);
        }
        for e in d.orders {
            let order = RestartOrder {
                engine: app.engine.clone(),
                api_token: app.config.api_token.clone(),
                event: e,
            };
            if let Err(mpsc::error::SendError(o)) = self.restart_tx.send(order) {
                // Shutting down: the restart will not happen; say so.
                app.lock().restart_failed(&o.event);
                tracing::warn!("shutting down: restart of {:?} not started", o.event.dyno);
            }
        }
    }

    /// Counts what a body or stream chunk yielded.
    pub fn count(&self, stats: &IngestStats) {
        let c = &self.counters;
        Counters::add(&c.frames, stats.records);
        Counters::add(&c.frames_rejected, stats.rejected);
        Counters::add(&c.frames_repaired, stats.repaired);
        Counters::add(&c.observations, stats.observations);
    }
}

/// Restores what the store knows into the engines, so a restarted dynoguard
/// decides as the one before it would have: the instance each dyno last had
/// (and those it replaced), restart windows, and the restart calls left in
/// flight — unknown outcomes, counted as made until the logs say otherwise.
async fn seed_engines(store: &Store, apps: &[Arc<AppRuntime>]) -> anyhow::Result<()> {
    let find = |app: &str| apps.iter().find(|a| a.config.name.as_str() == app);
    load_app_numbers(store, apps).await;
    match store.latest_samples().await {
        Ok(rows) => {
            for r in rows {
                let (Some(app), Some(dyno), Some(instance)) = (
                    find(&r.app),
                    crate::domain::DynoName::parse(&r.dyno),
                    r.instance,
                ) else {
                    continue;
                };
                let replaced: Vec<String> = r
                    .replaced
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                app.lock().seed_instance(
                    dyno,
                    instance,
                    store::from_millis(r.at),
                    &replaced,
                    r.contender,
                );
            }
        }
        Err(e) => tracing::error!("reading the latest samples failed: {e}"),
    }
    // Windows and "never the same instance twice" survive our own restart.
    let since = Timestamp::now().as_millisecond() - 24 * 3600 * 1000;
    for r in store
        .last_restarts(since)
        .await
        .context("reading restart history")?
    {
        let (Some(app), Some(dyno)) = (find(&r.app), crate::domain::DynoName::parse(&r.dyno))
        else {
            continue;
        };
        let reason = crate::domain::event::Reason::parse(&r.reason)
            .unwrap_or(crate::domain::event::Reason::Threshold);
        let mut mark = RestartMark::new(store::from_millis(r.at), r.instance, reason);
        mark.confirmed = true;
        mark.unknown = r.outcome == "unknown";
        app.lock().seed_restart(dyno, mark);
    }
    match store.leases().await {
        Ok(leases) => {
            for l in leases {
                let (Some(app), Some(dyno)) =
                    (find(&l.app), crate::domain::DynoName::parse(&l.dyno))
                else {
                    continue;
                };
                tracing::warn!(
                    "{} {dyno}: a restart call was in flight when its dynoguard stopped (decided at {}); its outcome is unknown — counted as made, the logs will tell",
                    l.app,
                    store::from_millis(l.decided_at)
                );
                let mut mark = RestartMark::new(
                    store::from_millis(l.decided_at),
                    l.instance,
                    crate::domain::event::Reason::Threshold,
                );
                mark.confirmed = true;
                mark.unknown = true;
                app.lock().seed_restart(dyno, mark);
            }
        }
        Err(e) => tracing::error!("reading restart claims failed: {e}"),
    }
    Ok(())
}

/// Gives each engine the app number `setup` recorded (samples of another
/// app's number are then ignored). Read at start and every minute, so a
/// `setup` run beside a serving dynoguard takes effect.
pub(crate) async fn load_app_numbers(store: &Store, apps: &[Arc<AppRuntime>]) {
    match store.app_numbers().await {
        Ok(rows) => {
            for a in apps {
                let n = rows
                    .iter()
                    .find(|(app, _)| app == a.config.name.as_str())
                    .map(|(_, n)| *n);
                a.lock().set_app_number(n);
            }
        }
        Err(e) => tracing::debug!("reading app numbers failed: {e}"),
    }
}

/// A built, bound, not yet serving dynoguard.
pub struct App {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    restart_rx: mpsc::UnboundedReceiver<RestartOrder>,
    store_rx: mpsc::Receiver<Event>,
    notify_rx: Option<mpsc::Receiver<Event>>,
    tuning: Tuning,
}

impl App {
    pub async fn build(config: Config, tuning: Tuning) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret as _;
        let store = Store::connect(config.database_url.expose_secret())
            .await
            .with_context(|| format!("opening the store {}", config.database_url_redacted()))?;
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
            page_log_clock: tuning.page_log_clock,
        });
        Ok(Self {
            listener,
            shared,
            restart_rx,
            store_rx,
            notify_rx,
            tuning,
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
                local_claims: Arc::default(),
                pending_restarts: shared.pending_restarts.clone(),
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
        let mut stop_test = stop_rx.clone();
        let tested = shared.clone();
        background.spawn(async move {
            tokio::select! {
                () = tasks::self_test(tested) => {}
                _ = stop_test.wait_for(|s| *s) => {}
            }
        });

        let router = server::router(shared.clone(), tuning.http.body_timeout);
        let mut stop_on_signal = stop_rx.clone();
        tokio::spawn(async move {
            signal.await;
            let _ = stop_tx.send(true);
        });
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
