//! Replicas that behave as one process (SPEC §10).
//!
//! Every replica accepts drains (auth, parse, 204). What happens to the
//! observations depends on the replica's [`Role`]:
//! - the **leader** (or the only process, or one cut off from the store)
//!   applies them with the same engine as `replay`, and alone runs the
//!   restarter and the notifiers;
//! - a **follower** queues them, and [`forward`] writes them to PostgreSQL
//!   in batches (bounded memory) for the leader, whose [`intake`] takes
//!   them, drops a `Logplex-Frame-Id` it has seen, and holds them for
//!   [`release`]. [`lead`] contends for the lead and keeps it.
//!
//! While followers forward, the leader holds every batch — its own too —
//! until each live follower has marked that everything it received before
//! that batch is in the store ([`Replicas::followers_mark`]), then applies
//! the due batches in log order: the engine judges each dyno's samples in
//! log order, and a forwarded batch is late by however slow its follower
//! is. A follower that stops marking counts as gone after
//! [`FOLLOWER_ALIVE`]; nothing is held longer than [`MAX_HOLD`]. A leader
//! with no live follower applies at once, as a single process does.

mod forward;
mod lead;

pub use forward::{forward, intake, release};
pub use lead::{first_role, lead};

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::act::restart::LocalClaims;
use crate::ingest::heroku_line::Observation;
use crate::store::replicas::{Leadership, Role};
use crate::telemetry::Counters;

use super::{AppRuntime, Shared};

/// The longest the leader holds a batch for a follower's mark.
pub const MAX_HOLD: Duration = Duration::from_secs(5);
/// A follower whose mark is older than this (database clock) is gone.
pub const FOLLOWER_ALIVE: Duration = Duration::from_secs(3);
/// Batches a follower keeps while the store refuses them, and the
/// observations in them; past either, the oldest go (counted).
const QUEUE_CAP: usize = 20_000;
const QUEUE_OBSERVATIONS: usize = 500_000;
/// Batches a leader holds at most: past it (a flood, a stalled tick), the
/// oldest are released at the next tick rather than kept.
const HELD_CAP: usize = 100_000;
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
    /// Wall clock when a replica received it (unix ms): compared with the
    /// followers' marks, the order among batches of the same moment, and
    /// the forwarding lag.
    received: i64,
    /// When it reached this replica (its own clock): [`MAX_HOLD`] runs
    /// from it, whatever the wall clocks say.
    arrived: Instant,
    /// The `forwarded` row it came from (the leader deletes it once
    /// applied), or `None` for the replica's own.
    row: Option<i64>,
    lines: Option<(Timestamp, Timestamp)>,
    observations: Vec<Observation>,
}

/// What the replicas did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    /// Batches this follower wrote for the leader.
    pub forwarded: AtomicU64,
    /// Forwarded batches this leader took from the store.
    pub consumed: AtomicU64,
    /// Batches dropped: the queue was full while the store refused them, a
    /// forwarded batch could not be read, or nobody took it in time.
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
    /// The restarter's claims held in memory (store outages), written to
    /// the store once it is back.
    pub local_claims: Arc<LocalClaims>,
    frame_ids: Mutex<FrameIdCache>,
    /// A follower's batches waiting to be written.
    queue: Mutex<VecDeque<Batch>>,
    /// A leader's batches waiting for the followers' marks.
    held: Mutex<Vec<Batch>>,
    /// Forwarded rows applied, to delete.
    applied_rows: Mutex<Vec<i64>>,
    /// Batches being written to the store right now (follower).
    in_flight: AtomicUsize,
    /// The live followers' lowest mark (unix ms, their clocks), as the
    /// leader last read it; `i64::MAX` when no follower is alive.
    followers_mark: AtomicI64,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Replicas {
    /// A replica starts holding (as if a follower had marked nothing yet):
    /// its first intake tells whether any follower is alive.
    pub fn new(leadership: Leadership) -> Self {
        Self {
            leadership: Arc::new(leadership),
            stats: ReplicaStats::default(),
            local_claims: Arc::default(),
            frame_ids: Mutex::new(FrameIdCache::new(16 * 1024)),
            queue: Mutex::default(),
            held: Mutex::default(),
            applied_rows: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            followers_mark: AtomicI64::new(i64::MIN),
        }
    }

    /// Sets the live followers' lowest mark (`None`: no follower alive).
    fn set_followers_mark(&self, mark: Option<i64>) {
        self.followers_mark
            .store(mark.unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Holds for a follower now: one is alive, or batches are still held
    /// (a newer one must not pass them).
    fn holding(&self) -> bool {
        self.followers_mark.load(Ordering::Relaxed) != i64::MAX || !locked(&self.held).is_empty()
    }

    /// The replica group of these apps: replicas watching the same apps
    /// elect one leader among them.
    pub fn scope(apps: &[Arc<AppRuntime>]) -> String {
        let mut names: Vec<&str> = apps.iter().map(|a| a.config.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.join(",")
    }

    /// Batches queued for the leader or being written (follower), or held
    /// for order (leader).
    pub fn queued(&self) -> usize {
        locked(&self.queue).len()
            + self.in_flight.load(Ordering::Relaxed)
            + locked(&self.held).len()
    }

    /// False if the batch's `Logplex-Frame-Id` was seen already.
    fn first_time(&self, frame_id: Option<&str>) -> bool {
        frame_id.is_none_or(|id| locked(&self.frame_ids).insert(id))
    }

    /// Queues batches for the leader; the oldest go when the queue is full.
    /// Batches that came from the store stay there for the next leader.
    fn enqueue(&self, batches: impl IntoIterator<Item = Batch>) {
        let mut q = locked(&self.queue);
        // Stamped under the lock: a batch received before a flush's mark is
        // in the queue that flush drains (see `forward::flush`).
        let now = Timestamp::now().as_millisecond();
        q.extend(
            batches
                .into_iter()
                .filter(|b| b.row.is_none())
                .map(|mut b| {
                    b.received = b.received.max(now);
                    b
                }),
        );
        let mut observations: usize = q.iter().map(|b| b.observations.len()).sum();
        while q.len() > QUEUE_CAP || (observations > QUEUE_OBSERVATIONS && q.len() > 1) {
            if let Some(b) = q.pop_front() {
                observations -= b.observations.len();
                Counters::add(&self.stats.dropped, 1);
            }
        }
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
    /// applied here (single process, store cut off), held for order
    /// (leader), or queued for the leader (follower). Never waits on I/O.
    pub fn accept(
        &self,
        app: &Arc<AppRuntime>,
        frame_id: Option<&str>,
        observations: Vec<Observation>,
        lines: Option<(Timestamp, Timestamp)>,
    ) {
        let r = &self.replicas;
        let l = &r.leadership;
        if l.decides() && (!matches!(l.role(), Role::Leader { .. }) || !r.holding()) {
            // One process (or one cut off from the store, or a leader no
            // follower forwards to): no hold, no copy.
            self.apply(app, &observations, lines);
            return;
        }
        self.route(Batch {
            app: app.clone(),
            frame_id: frame_id.map(str::to_owned),
            received: Timestamp::now().as_millisecond(),
            arrived: Instant::now(),
            row: None,
            lines,
            observations,
        });
    }

    /// A batch on its way: queued for the leader (follower), held for log
    /// order (leader), or applied now (single process, store cut off).
    fn route(&self, batch: Batch) {
        let r = &self.replicas;
        if !r.leadership.decides() {
            r.enqueue([batch]);
        } else if matches!(r.leadership.role(), Role::Leader { .. }) {
            // Never applied here, on the request: the tick applies it (all
            // beyond the cap at once).
            locked(&r.held).push(batch);
        } else {
            self.apply(&batch.app, &batch.observations, batch.lines);
        }
    }

    /// Applies the held batches the followers' marks have passed (or held
    /// for [`MAX_HOLD`]; all of them with `all`, or past [`HELD_CAP`]),
    /// batch by batch in log order. A replica that no longer decides passes
    /// them on to the leader instead.
    fn release_reordered(&self, all: bool) {
        let r = &self.replicas;
        let mark = r.followers_mark.load(Ordering::Relaxed);
        let mut due: Vec<Batch> = {
            let mut held = locked(&r.held);
            let flood = held.len() > HELD_CAP;
            let (due, keep) = std::mem::take(&mut *held).into_iter().partition(|b| {
                all || flood || b.received <= mark || b.arrived.elapsed() >= MAX_HOLD
            });
            *held = keep;
            due
        };
        if due.is_empty() {
            return;
        }
        if !r.leadership.decides() {
            // Lost the lead while holding them: the new leader decides.
            r.enqueue(due);
            return;
        }
        let wall = Timestamp::now().as_millisecond();
        if let Some(oldest) = due
            .iter()
            .filter(|b| b.row.is_some())
            .map(|b| b.received)
            .min()
        {
            r.stats
                .lag_ms
                .store((wall - oldest).max(0), Ordering::Relaxed);
        }
        // Batch by batch in log order (a batch's own lines keep theirs: the
        // engine reads them as Logplex wrote them, as `replay` does).
        due.sort_by_key(|b| (b.lines.map(|(first, _)| first), b.received));
        locked(&r.applied_rows).extend(due.iter().filter_map(|b| b.row));
        for app in &self.apps {
            let mut lines: Option<(Timestamp, Timestamp)> = None;
            let mut obs = Vec::new();
            let (mine, rest): (Vec<Batch>, Vec<Batch>) =
                due.into_iter().partition(|b| Arc::ptr_eq(&b.app, app));
            due = rest;
            for b in mine {
                if let Some((first, last)) = b.lines {
                    lines = Some(match lines {
                        Some((f, l)) => (f.min(first), l.max(last)),
                        None => (first, last),
                    });
                }
                obs.extend(b.observations);
            }
            if obs.is_empty() && lines.is_none() {
                continue;
            }
            self.apply(app, &obs, lines);
        }
    }
}
