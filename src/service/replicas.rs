//! Replicas that behave as one process (SPEC §10).
//!
//! Every replica accepts drains (auth, parse, 204). What happens to the
//! observations depends on the replica's [`Role`]:
//! - the **leader** (or the only process, or one cut off from the store)
//!   applies them with the same engine as `replay`, and alone runs the
//!   restarter and the notifiers;
//! - a **follower** queues them, and [`forward`] writes them to PostgreSQL
//!   in batches (bounded memory) for the leader, which [`lead`] takes,
//!   de-duplicates by `Logplex-Frame-Id` and applies.
//!
//! The leader holds every batch (its own too) for [`REORDER`] before
//! applying, in log-time order: a forwarded batch is a few tens of
//! milliseconds late, and the engine judges each dyno's samples in log
//! order. (It cannot know whether a follower is about to forward, so it
//! always holds: one second on a decision whose samples come every 20.)

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::watch;

use crate::ingest::heroku_line::Observation;
use crate::store::replicas::{ForwardedRow, Leadership, Role};
use crate::store::{self, Store, StoreError};
use crate::telemetry::Counters;

use super::{AppRuntime, Shared};

/// How long the leader holds batches while followers forward.
pub const REORDER: Duration = Duration::from_millis(1000);
/// How often a follower writes what it queued.
const FORWARD_EVERY: Duration = Duration::from_millis(50);
/// The leader looks for forwarded batches at least this often (a missed
/// `NOTIFY` costs no more).
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Batches a follower keeps while the store refuses them; then the oldest
/// go (counted).
const QUEUE_CAP: usize = 20_000;
/// The longest a replica waits on one store call of this machinery: a
/// database that hangs must not hold the lead's renewal or the forwarding.
const STORE_CALL: Duration = Duration::from_secs(2);

/// Remembers recent `Logplex-Frame-Id`s to drop retried batches.
#[derive(Debug)]
pub struct FrameIdCache {
    seen: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl FrameIdCache {
    pub fn new(cap: usize) -> Self {
        Self {
            seen: HashSet::with_capacity(cap),
            order: VecDeque::with_capacity(cap),
            cap,
        }
    }

    /// Records `id`; false if it was already seen.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// One batch of observations on its way to an engine.
#[derive(Debug)]
struct Batch {
    app: Arc<AppRuntime>,
    frame_id: Option<String>,
    /// Wall clock when a replica received it (unix ms): the reorder hold
    /// and the forwarding lag run from it.
    received: i64,
    /// Taken from the store (a follower's): its lag is measured.
    forwarded: bool,
    lines: Option<(Timestamp, Timestamp)>,
    observations: Vec<Observation>,
}

/// What the replicas did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    /// Batches this follower wrote for the leader.
    pub forwarded: AtomicU64,
    /// Forwarded batches this leader applied.
    pub consumed: AtomicU64,
    /// Batches dropped: the queue was full while the store refused them, or
    /// a forwarded batch could not be read.
    pub dropped: AtomicU64,
    /// Receipt at a follower → applied by the leader (ms), of the oldest
    /// forwarded batch of the last release: the hold included.
    pub lag_ms: AtomicI64,
    /// Times this replica took the lead.
    pub promotions: AtomicU64,
}

/// This replica's part: its role and the batches in flight.
#[derive(Debug)]
pub struct Replicas {
    pub leadership: Arc<Leadership>,
    pub stats: ReplicaStats,
    frame_ids: Mutex<FrameIdCache>,
    /// A follower's batches waiting to be written.
    queue: Mutex<VecDeque<Batch>>,
    /// A leader's batches waiting for [`REORDER`].
    held: Mutex<Vec<Batch>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Replicas {
    pub fn new(leadership: Leadership) -> Self {
        Self {
            leadership: Arc::new(leadership),
            stats: ReplicaStats::default(),
            frame_ids: Mutex::new(FrameIdCache::new(16 * 1024)),
            queue: Mutex::default(),
            held: Mutex::default(),
        }
    }

    /// The replica group of these apps: replicas watching the same apps
    /// elect one leader among them.
    pub fn scope(apps: &[Arc<AppRuntime>]) -> String {
        let mut names: Vec<&str> = apps.iter().map(|a| a.config.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.join(",")
    }

    /// Batches queued for the leader (follower) or held for order (leader).
    pub fn queued(&self) -> usize {
        locked(&self.queue).len() + locked(&self.held).len()
    }

    /// False if the batch's `Logplex-Frame-Id` was seen already.
    fn first_time(&self, frame_id: Option<&str>) -> bool {
        frame_id.is_none_or(|id| locked(&self.frame_ids).insert(id))
    }
}

impl Shared {
    /// False (counted) if a batch with this `Logplex-Frame-Id` was taken
    /// before — here, or (for the leader) forwarded by a follower: a batch
    /// Logplex retried to another replica is applied once. Asked before the
    /// body is parsed.
    pub fn first_time(&self, frame_id: Option<&str>) -> bool {
        let fresh = self.replicas.first_time(frame_id);
        if !fresh {
            Counters::add(&self.counters.duplicate_batches, 1);
        }
        fresh
    }

    /// A drain batch, after auth, [`Shared::first_time`] and parsing:
    /// applied here (leader, single process), held for order (leader with
    /// followers), or queued for the leader (follower). Never waits on I/O.
    pub fn accept(
        &self,
        app: &Arc<AppRuntime>,
        frame_id: Option<&str>,
        observations: Vec<Observation>,
        lines: Option<(Timestamp, Timestamp)>,
    ) {
        let r = &self.replicas;
        let role = r.leadership.role();
        let decides = r.leadership.decides();
        if decides && !matches!(role, Role::Leader { .. }) {
            // One process (or one cut off from the store): no hold, no copy.
            self.apply(app, &observations, lines);
            return;
        }
        self.route(Batch {
            app: app.clone(),
            frame_id: frame_id.map(str::to_owned),
            received: Timestamp::now().as_millisecond(),
            forwarded: false,
            lines,
            observations,
        });
    }

    /// A batch on its way: applied now (single process, store cut off),
    /// held for log order (leader), or queued for the leader (follower).
    fn route(&self, batch: Batch) {
        let r = &self.replicas;
        if !r.leadership.decides() {
            let mut q = locked(&r.queue);
            if q.len() >= QUEUE_CAP {
                q.pop_front();
                Counters::add(&r.stats.dropped, 1);
            }
            q.push_back(batch);
        } else if matches!(r.leadership.role(), Role::Leader { .. }) {
            locked(&r.held).push(batch);
        } else {
            self.apply(&batch.app, &batch.observations, batch.lines);
        }
    }

    /// Applies the held batches that waited [`REORDER`] (all of them with
    /// `all`), app by app in log-time order. A replica that no longer
    /// decides passes them on to the leader instead.
    fn release_reordered(&self, all: bool) {
        let r = &self.replicas;
        // Due by when a replica received it (the wall clocks of Heroku's
        // dynos agree to milliseconds): a forwarded batch is released
        // together with the leader's own batches of the same moment.
        let cutoff = Timestamp::now().as_millisecond() - REORDER.as_millis() as i64;
        let due: Vec<Batch> = {
            let mut held = locked(&r.held);
            let (due, keep) = std::mem::take(&mut *held)
                .into_iter()
                .partition(|b| all || b.received <= cutoff);
            *held = keep;
            due
        };
        if due.is_empty() {
            return;
        }
        if !r.leadership.decides() {
            locked(&r.queue).extend(due);
            return;
        }
        let now = Timestamp::now().as_millisecond();
        if let Some(oldest) = due.iter().filter(|b| b.forwarded).map(|b| b.received).min() {
            r.stats
                .lag_ms
                .store((now - oldest).max(0), Ordering::Relaxed);
        }
        // Batch by batch in log order (a batch's own lines keep theirs: the
        // engine reads them as Logplex wrote them, as `replay` does).
        let mut due = due;
        due.sort_by_key(|b| (b.lines.map(|(first, _)| first), b.received));
        for app in &self.apps {
            let mut lines: Option<(Timestamp, Timestamp)> = None;
            let mut obs = Vec::new();
            for b in due.iter().filter(|b| Arc::ptr_eq(&b.app, app)) {
                if let Some((first, last)) = b.lines {
                    lines = Some(match lines {
                        Some((f, l)) => (f.min(first), l.max(last)),
                        None => (first, last),
                    });
                }
                obs.extend(b.observations.iter().cloned());
            }
            if obs.is_empty() && lines.is_none() {
                continue;
            }
            self.apply(app, &obs, lines);
        }
    }
}

/// Takes the lead when it is free and keeps it renewed; follows otherwise.
/// A replica that cannot reach the store for a whole lease decides from
/// its own observations ([`Role::Cut`]) until the store is back.
pub async fn lead(shared: Arc<Shared>, lease: Duration, mut stop: watch::Receiver<bool>) {
    let l = shared.replicas.leadership.clone();
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let mut last_ok = Instant::now();
    let mut last_prune = Instant::now();
    loop {
        let sent = Instant::now();
        let bound = (lease / 3).min(STORE_CALL);
        let contest =
            tokio::time::timeout(bound, shared.store.contend(&l.scope, &l.replica, lease_ms))
                .await
                .unwrap_or(Err(StoreError::Timeout(bound)));
        match contest {
            Ok(row) if row.holder == l.replica => {
                last_ok = sent;
                let was = l.role();
                if !matches!(was, Role::Leader { epoch } if epoch == row.epoch) {
                    if !matches!(was, Role::Cut) {
                        // A follower's engines are stale: start from the
                        // shared state, as a restarted dynoguard does.
                        promote(&shared).await;
                    }
                    Counters::add(&shared.replicas.stats.promotions, 1);
                    tracing::warn!(
                        "this replica ({}) leads now (epoch {}); it decides and restarts",
                        l.replica,
                        row.epoch
                    );
                }
                let until = Leadership::lease_end(sent, row.remaining_ms);
                l.set(Role::Leader { epoch: row.epoch }, Some(until));
                if last_prune.elapsed() >= Duration::from_secs(60) {
                    last_prune = Instant::now();
                    prune_forwarded(&shared).await;
                }
            }
            Ok(row) => {
                last_ok = sent;
                let was = l.role();
                if !matches!(was, Role::Follower { .. }) {
                    tracing::warn!(
                        "{} leads (epoch {}); this replica ({}) forwards what it receives",
                        row.holder,
                        row.epoch,
                        l.replica
                    );
                }
                l.set(
                    Role::Follower {
                        leader: row.holder,
                        epoch: row.epoch,
                    },
                    None,
                );
            }
            Err(e) => {
                let role = l.role();
                let lapsed = match role {
                    Role::Leader { .. } => !l.decides(),
                    Role::Follower { .. } => sent.duration_since(last_ok) >= lease,
                    Role::Alone | Role::Cut => false,
                };
                if lapsed {
                    tracing::error!(
                        "the store is unreachable ({e}): this replica decides from its own observations until it is back — another replica may do the same, so a dyno could be restarted twice"
                    );
                    l.set(Role::Cut, None);
                }
            }
        }
        let wait = lease / 4;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if let Role::Leader { epoch } = l.role() {
        // Hand over now rather than when the lease runs out.
        l.set(
            Role::Follower {
                leader: "(none: resigned)".into(),
                epoch,
            },
            None,
        );
        if let Err(e) = shared.store.resign(&l.scope, &l.replica, epoch).await {
            tracing::warn!(
                "giving up the lead failed ({e}); another replica takes over when the lease runs out"
            );
        }
    }
}

/// Forwarded batches older than this are nobody's: their leader would
/// have taken them within seconds.
const FORWARDED_KEPT: Duration = Duration::from_secs(600);

async fn prune_forwarded(shared: &Shared) {
    let before = Timestamp::now().as_millisecond() - FORWARDED_KEPT.as_millis() as i64;
    match tokio::time::timeout(STORE_CALL, shared.store.prune_forwarded(before)).await {
        Ok(Ok(0)) | Err(_) => {}
        Ok(Ok(n)) => {
            Counters::add(&shared.replicas.stats.dropped, n);
            tracing::warn!(
                "dropped {n} forwarded batch(es) older than {} min that no leader took (a replica of another set of apps?)",
                FORWARDED_KEPT.as_secs() / 60
            );
        }
        Ok(Err(e)) => tracing::debug!("pruning forwarded batches failed: {e}"),
    }
}

/// Fresh engines seeded from the store: the latest samples and lineage,
/// restart windows, calls left in flight by the old leader (unknown
/// outcomes, never repeated).
async fn promote(shared: &Shared) {
    for app in &shared.apps {
        app.reset_engine();
    }
    if let Err(e) = super::seed_engines(&shared.store, &shared.apps).await {
        tracing::error!("taking the lead: reading the shared state failed: {e}");
    }
}

/// A follower's writer: every [`FORWARD_EVERY`], the queued batches go to
/// the store in one statement. A replica that decides (it took the lead, or
/// the store is gone) applies what is queued itself.
pub async fn forward(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let r = &shared.replicas;
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(FORWARD_EVERY) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let batches: Vec<Batch> = locked(&r.queue).drain(..).collect();
        if !batches.is_empty() {
            if r.leadership.decides() {
                // It leads now (or the store is gone): what it queued as a
                // follower is its own to decide.
                for b in batches {
                    shared.route(b);
                }
            } else {
                write_batches(&shared, batches).await;
            }
        }
        if stopping {
            break;
        }
    }
}

async fn write_batches(shared: &Shared, batches: Vec<Batch>) {
    let r = &shared.replicas;
    let rows: Vec<ForwardedRow> = batches
        .iter()
        .filter_map(|b| {
            let observations = serde_json::to_string(&b.observations).ok()?;
            Some(ForwardedRow {
                id: 0,
                app: b.app.config.name.to_string(),
                replica: r.leadership.replica.clone(),
                frame_id: b.frame_id.clone(),
                received_at: b.received,
                first_line: b.lines.map(|(f, _)| store::millis(f)),
                last_line: b.lines.map(|(_, l)| store::millis(l)),
                observations,
            })
        })
        .collect();
    let written =
        tokio::time::timeout(STORE_CALL, shared.store.forward(&r.leadership.scope, &rows))
            .await
            .unwrap_or(Err(StoreError::Timeout(STORE_CALL)));
    match written {
        Ok(()) => Counters::add(&r.stats.forwarded, rows.len() as u64),
        Err(e) => {
            tracing::warn!(
                "forwarding {} batch(es) to the leader failed ({e}); kept for the next try",
                rows.len()
            );
            let mut q = locked(&r.queue);
            for b in batches.into_iter().rev() {
                if q.len() >= QUEUE_CAP {
                    Counters::add(&r.stats.dropped, 1);
                    continue;
                }
                q.push_front(b);
            }
        }
    }
}

/// The leader's intake: woken by `NOTIFY` (or every [`POLL_EVERY`]), it
/// takes the forwarded batches, drops those whose Frame-Id it has seen, and
/// holds them with its own for [`REORDER`] ([`release`] applies them).
/// Every store call is bounded: a hanging database delays the intake,
/// never the release of what is already held.
pub async fn intake(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut listener = None;
    let mut listen_tried: Option<Instant> = None;
    let mut last_poll = Instant::now();
    loop {
        let leading = matches!(shared.replicas.leadership.role(), Role::Leader { .. })
            && shared.replicas.leadership.decides();
        if leading
            && listener.is_none()
            && listen_tried.is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            listen_tried = Some(Instant::now());
            listener = tokio::time::timeout(STORE_CALL, shared.store.forwarded_listener())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
        }
        let woken = tokio::select! {
            () = tokio::time::sleep(POLL_EVERY) => false,
            n = recv(&mut listener) => {
                if n.is_err() { listener = None; }
                true
            }
            _ = stop.wait_for(|s| *s) => break,
        };
        if leading && (woken || last_poll.elapsed() >= POLL_EVERY) {
            last_poll = Instant::now();
            if tokio::time::timeout(STORE_CALL * 4, take_forwarded(&shared))
                .await
                .is_err()
            {
                tracing::debug!("taking forwarded batches timed out");
            }
        }
    }
}

/// Every 50 ms, applies the held batches that waited [`REORDER`]; all of
/// them at shutdown.
pub async fn release(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tick.tick() => shared.release_reordered(false),
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    shared.release_reordered(true);
}

async fn recv(l: &mut Option<sqlx::postgres::PgListener>) -> Result<(), sqlx::Error> {
    match l {
        Some(l) => l.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}

async fn take_forwarded(shared: &Shared) {
    let r = &shared.replicas;
    loop {
        let rows = match shared.store.take_forwarded(&r.leadership.scope, 500).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!("taking forwarded batches failed: {e}");
                return;
            }
        };
        let n = rows.len();
        for row in rows {
            take_one(shared, row);
        }
        if n < 500 {
            return;
        }
    }
}

fn take_one(shared: &Shared, row: ForwardedRow) {
    let r = &shared.replicas;
    let Some(app) = shared.app(&row.app).cloned() else {
        return;
    };
    let Ok(observations) = serde_json::from_str::<Vec<Observation>>(&row.observations) else {
        Counters::add(&r.stats.dropped, 1);
        tracing::warn!("{}: a forwarded batch could not be read; dropped", row.app);
        return;
    };
    Counters::add(&r.stats.consumed, 1);
    if !r.first_time(row.frame_id.as_deref()) {
        Counters::add(&shared.counters.duplicate_batches, 1);
        return;
    }
    let lines = row
        .first_line
        .zip(row.last_line)
        .map(|(f, l)| (store::from_millis(f), store::from_millis(l)));
    locked(&r.held).push(Batch {
        app,
        frame_id: row.frame_id,
        received: row.received_at,
        forwarded: true,
        lines,
        observations,
    });
}

/// The role this replica starts in: the only process on SQLite; on
/// PostgreSQL, whatever the first contest for the lead gives (the leader
/// then seeds its engines from the store as usual).
pub async fn first_role(store: &Store, leadership: &Leadership, lease: Duration) {
    if !store.is_postgres() {
        leadership.set(Role::Alone, None);
        return;
    }
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let sent = Instant::now();
    match store
        .contend(&leadership.scope, &leadership.replica, lease_ms)
        .await
    {
        Ok(row) if row.holder == leadership.replica => leadership.set(
            Role::Leader { epoch: row.epoch },
            Some(Leadership::lease_end(sent, row.remaining_ms)),
        ),
        Ok(row) => leadership.set(
            Role::Follower {
                leader: row.holder,
                epoch: row.epoch,
            },
            None,
        ),
        Err(e) => {
            tracing::error!(
                "contending for the lead failed ({e}); deciding alone until the store answers"
            );
            leadership.set(Role::Cut, None);
        }
    }
}
