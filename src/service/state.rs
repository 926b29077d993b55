//! The state the service's tasks share: each watched app at run time
//! (`AppRuntime`: its configuration and engine), the samples waiting for the
//! flusher (`SampleBuffer`), and `Shared` — what every handler and task
//! holds — with `apply`, the step from an engine's decisions to the
//! reporter, the restarter and the sample buffer.

use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use tokio::sync::mpsc;

use crate::act::heroku_api::HerokuClient;
use crate::act::report::Reporter;
use crate::act::restart::RestartOrder;
use crate::config::{AppConfig, Config};
use crate::decide::engine::{Confirmation, Decisions, Engine, SharedEngine};
use crate::ingest::IngestStats;
use crate::ingest::heroku_line::Observation;
use crate::store::{self, SampleRow, Store};
use crate::telemetry::Counters;

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

    /// Starts the engine afresh (a replica taking the lead seeds it from
    /// the store): its windows and lineage were a follower's stale view.
    pub fn reset_engine(&self) {
        *self.engine.lock() = Engine::new(
            self.config.name.clone(),
            self.config.policy.clone(),
            Confirmation::ByRestarter,
        );
    }

    /// The engine; a panic elsewhere never poisons ingestion for good.
    pub fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock()
    }
}

/// Latest sample per dyno and the minutes of history, waiting for the next
/// batched write. Too many pending minutes (the store is down for hours)
/// drop the oldest, counted: memory stays bounded.
///
/// Keyed app → dyno with `String` keys so that a sample finds its entry by
/// `&str` (nothing copied per sample; a name is copied once per flush), and
/// a whole batch takes each lock once.
#[derive(Debug, Default)]
pub struct SampleBuffer {
    pending: Mutex<ByDyno<SampleRow>>,
    minutes: Mutex<PendingMinutes>,
    /// Minutes dropped because the store was down too long.
    pub minutes_dropped: std::sync::atomic::AtomicU64,
}

type ByDyno<T> = hashbrown::HashMap<String, hashbrown::HashMap<String, T>>;

/// A dyno's pending minutes (one or two between flushes; more only while
/// the store fails), and how many there are in all. The rows' `app` and
/// `dyno` stay empty here (the keys hold the names): they are filled in by
/// [`SampleBuffer::take_history`].
#[derive(Debug, Default)]
struct PendingMinutes {
    rows: ByDyno<Vec<store::MinuteRow>>,
    len: usize,
}

/// Pending history minutes kept while the store fails (≈ 1,000 dynos × 2 h).
const PENDING_MINUTES: usize = 120_000;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The entry of `app`/`dyno`, its names copied only when it is new.
fn entry<'m, T: Default>(map: &'m mut ByDyno<T>, app: &str, dyno: &str) -> &'m mut T {
    map.entry_ref(app).or_default().entry_ref(dyno).or_default()
}

impl PendingMinutes {
    /// Folds one sample's minute in.
    fn add_sample(&mut self, app: &str, row: &SampleRow) -> Option<u64> {
        let minute = store::MinuteRow::minute_of(row.at);
        let have = entry(&mut self.rows, app, &row.dyno);
        if let Some(m) = have.iter_mut().rev().find(|m| m.minute == minute) {
            m.merge_sample(row);
            return Some(0);
        }
        let m = store::MinuteRow::unnamed_of_sample(row)?;
        Some(self.insert_new(app, &row.dyno, m))
    }

    /// Folds a named minute in; returns how many were dropped to make room.
    fn add(&mut self, mut m: store::MinuteRow) -> u64 {
        let (app, dyno) = (std::mem::take(&mut m.app), std::mem::take(&mut m.dyno));
        let have = entry(&mut self.rows, &app, &dyno);
        if let Some(h) = have.iter_mut().find(|h| h.minute == m.minute) {
            h.merge(m);
            return 0;
        }
        self.insert_new(&app, &dyno, m)
    }

    /// A minute not pending yet. When the buffer is full (the store has
    /// been down for hours, or cannot keep up) the oldest pending minute
    /// goes, for every dyno at once: one scan makes a minute's worth of
    /// room, where dropping one row per new minute scanned everything on
    /// every sample. Returns how many rows were dropped.
    fn insert_new(&mut self, app: &str, dyno: &str, m: store::MinuteRow) -> u64 {
        let dropped = if self.len >= PENDING_MINUTES {
            self.drop_oldest_minute()
        } else {
            0
        };
        let have = entry(&mut self.rows, app, dyno);
        // Exactly: a dyno holds one or two minutes between flushes, and a
        // doubling Vec took four rows' room for each of 10,000 dynos.
        have.reserve_exact(1);
        have.push(m);
        self.len += 1;
        dropped
    }

    fn drop_oldest_minute(&mut self) -> u64 {
        let oldest = self
            .rows
            .values()
            .flat_map(|ds| ds.values())
            .flat_map(|ms| ms.iter().map(|m| m.minute))
            .min();
        let Some(oldest) = oldest else {
            return 0;
        };
        let mut dropped = 0;
        for ms in self.rows.values_mut().flat_map(|ds| ds.values_mut()) {
            let before = ms.len();
            ms.retain(|x| x.minute != oldest);
            dropped += before - ms.len();
        }
        self.len -= dropped;
        dropped as u64
    }
}

impl SampleBuffer {
    /// One batch's applied samples of `app` (their `app` is left empty:
    /// the name is copied only into the rows kept): each lock taken once.
    fn put_all(&self, app: &str, rows: Vec<SampleRow>) {
        if rows.is_empty() {
            return;
        }
        let mut dropped = 0;
        {
            let mut minutes = locked(&self.minutes);
            for row in &rows {
                dropped += minutes.add_sample(app, row).unwrap_or(0);
            }
        }
        if dropped > 0 {
            self.minutes_dropped
                .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        }
        let mut pending = locked(&self.pending);
        let dynos = pending.entry_ref(app).or_default();
        for mut row in rows {
            if let Some(have) = dynos.get_mut(row.dyno.as_str()) {
                row.app = std::mem::take(&mut have.app);
                *have = row;
                continue;
            }
            row.app = app.to_owned();
            dynos.insert(row.dyno.clone(), row);
        }
    }

    pub(crate) fn take(&self) -> Vec<SampleRow> {
        let mut p = locked(&self.pending);
        p.values_mut()
            .flat_map(|ds| ds.drain().map(|(_, v)| v))
            .collect()
    }

    /// Rows whose write failed go back, unless a newer one of the dyno came.
    pub(crate) fn put_back(&self, rows: Vec<SampleRow>) {
        let mut p = locked(&self.pending);
        for row in rows {
            p.entry(row.app.clone())
                .or_default()
                .entry(row.dyno.clone())
                .or_insert(row);
        }
    }

    pub(crate) fn take_history(&self) -> Vec<store::MinuteRow> {
        let mut v: Vec<_> = {
            let mut m = locked(&self.minutes);
            let mut v = Vec::with_capacity(m.len);
            m.len = 0;
            for (app, dynos) in m.rows.iter_mut() {
                for (dyno, rows) in dynos.drain() {
                    v.extend(rows.into_iter().map(|mut r| {
                        app.clone_into(&mut r.app);
                        dyno.clone_into(&mut r.dyno);
                        r
                    }));
                }
            }
            v
        };
        v.sort_by(|a, b| (&a.app, &a.dyno, a.minute).cmp(&(&b.app, &b.dyno, b.minute)));
        v
    }

    /// Minutes whose write failed merge back with what came since.
    pub(crate) fn put_back_history(&self, rows: Vec<store::MinuteRow>) {
        let mut dropped = 0;
        {
            let mut minutes = locked(&self.minutes);
            for m in rows {
                dropped += minutes.add(m);
            }
        }
        if dropped > 0 {
            self.minutes_dropped
                .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
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
    pub(super) restart_tx: mpsc::UnboundedSender<RestartOrder>,
    pub started: Timestamp,
    /// This replica's role and the batches it forwards or holds.
    pub replicas: super::replicas::Replicas,
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
        if !d.samples.is_empty() {
            let rows = d
                .samples
                .into_iter()
                .map(|s| SampleRow {
                    // Named by `put_all` where a row is kept.
                    app: String::new(),
                    dyno: s.dyno.into_string(),
                    instance: s.instance,
                    at: store::millis(s.at),
                    memory: s.memory.mb(),
                    replaced: (!s.replaced.is_empty()).then(|| s.replaced.join(",")),
                    contender: s.contender,
                })
                .collect();
            self.samples.put_all(app.config.name.as_str(), rows);
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
                tracing::warn!(
                    "shutting down: restart of {} not started",
                    o.event.dyno.as_ref().map_or("?", |d| d.as_str())
                );
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

#[cfg(test)]
mod buffer_tests {
    use super::*;

    fn row(dyno: usize, minute: i64) -> SampleRow {
        SampleRow {
            app: String::new(),
            dyno: format!("web.{dyno}"),
            instance: None,
            at: minute * 60_000,
            memory: crate::domain::MemoryMb {
                total: Some(100.0),
                ..Default::default()
            },
            replaced: None,
            contender: None,
        }
    }

    /// Full, the buffer drops the oldest minute (all its dynos), counted,
    /// and keeps the newest.
    #[test]
    fn a_full_buffer_drops_the_oldest_minute() {
        let b = SampleBuffer::default();
        let dynos = 1_000;
        let minutes = (PENDING_MINUTES / dynos) as i64;
        for minute in 0..minutes {
            b.put_all("a", (0..dynos).map(|d| row(d, minute)).collect());
        }
        assert_eq!(
            b.minutes_dropped.load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        b.put_all("a", vec![row(0, minutes)]);
        assert_eq!(
            b.minutes_dropped.load(std::sync::atomic::Ordering::Relaxed),
            dynos as u64
        );
        let kept = b.take_history();
        assert_eq!(kept.len(), PENDING_MINUTES - dynos + 1);
        assert!(kept.iter().all(|m| m.minute > 0));
        assert!(kept.iter().any(|m| m.minute == minutes * 60_000));
    }
}
