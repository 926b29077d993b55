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
//! While followers forward (and for a minute after it takes the lead, when
//! it cannot know yet), the leader holds every batch — its own too — for
//! [`REORDER`] before applying, in log-time order: a forwarded batch is a
//! few tens of milliseconds late, and the engine judges each dyno's samples
//! in log order. A leader with no follower forwarding applies at once, as
//! a single process does.

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

/// How long the leader holds a batch before applying it.
pub const REORDER: Duration = Duration::from_millis(1000);
/// Batches a follower keeps while the store refuses them, and the
/// observations in them; past either, the oldest go (counted).
const QUEUE_CAP: usize = 20_000;
const QUEUE_OBSERVATIONS: usize = 500_000;
/// Batches a leader holds at most: past it (a flood, a stalled tick), the
/// held batches are applied at once rather than kept.
const HELD_CAP: usize = 20_000;
/// How long a leader keeps holding after the last forwarded batch (and
/// after taking the lead).
const FOLLOWERS_QUIET: Duration = Duration::from_secs(60);
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
    /// Wall clock when a replica received it (unix ms): the order among
    /// batches of the same moment, and the forwarding lag.
    received: i64,
    /// When the leader applies it, by the leader's own clock: a follower's
    /// wall clock (skewed, perhaps) never holds a batch longer than
    /// [`REORDER`] or makes it skip the hold beyond its real lag.
    due: Instant,
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
    /// A leader's batches waiting for [`REORDER`].
    /// In arrival order: released from the front while due (a forwarded
    /// batch due a little earlier than the one before it waits for it:
    /// release costs only what it releases, never a scan of the hold).
    held: Mutex<VecDeque<Batch>>,
    /// Forwarded rows applied, to delete.
    applied_rows: Mutex<Vec<i64>>,
    /// Batches being written to the store right now (follower).
    in_flight: AtomicUsize,
    /// Until when the leader holds its own batches for order: followers
    /// forwarded lately, or it took the lead lately.
    hold_until: Mutex<Option<Instant>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Replicas {
    /// A replica that starts as the leader holds for order at first:
    /// followers may be forwarding already.
    pub fn new(leadership: Leadership) -> Self {
        let leads = matches!(leadership.role(), Role::Leader { .. });
        let r = Self {
            leadership: Arc::new(leadership),
            stats: ReplicaStats::default(),
            local_claims: Arc::default(),
            frame_ids: Mutex::new(FrameIdCache::new(16 * 1024)),
            queue: Mutex::default(),
            held: Mutex::default(),
            applied_rows: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            hold_until: Mutex::default(),
        };
        if leads {
            r.forwarding_seen();
        }
        r
    }

    /// A follower forwarded (or this replica just took the lead): hold for
    /// order for [`FOLLOWERS_QUIET`] from now.
    fn forwarding_seen(&self) {
        *locked(&self.hold_until) = Some(Instant::now() + FOLLOWERS_QUIET);
    }

    /// Whether the leader holds its own batches now: followers forwarded
    /// lately, or batches are still held (a newer one must not pass them).
    fn holding(&self) -> bool {
        locked(&self.hold_until).is_some_and(|t| Instant::now() < t)
            || !locked(&self.held).is_empty()
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
        q.extend(batches.into_iter().filter(|b| b.row.is_none()));
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
            due: Instant::now() + REORDER,
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
            let full = {
                let mut held = locked(&r.held);
                held.push_back(batch);
                held.len() >= HELD_CAP
            };
            if full {
                self.release_reordered(true);
            }
        } else {
            self.apply(&batch.app, &batch.observations, batch.lines);
        }
    }

    /// Applies the held batches that waited [`REORDER`] (all of them with
    /// `all`), batch by batch in log order. A replica that no longer
    /// decides passes them on to the leader instead.
    fn release_reordered(&self, all: bool) {
        let r = &self.replicas;
        let now = Instant::now();
        let mut due: Vec<Batch> = {
            let mut held = locked(&r.held);
            let n = if all {
                held.len()
            } else {
                held.iter().take_while(|b| b.due <= now).count()
            };
            held.drain(..n).collect()
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
