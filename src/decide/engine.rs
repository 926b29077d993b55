//! The engine: one app's observations in, events and restart orders out, on
//! the log's own clock.
//!
//! This is the one decision path. `serve` (drain and log sessions), `replay`
//! and `demo` all call [`Engine::apply`]; they differ only in what acts on
//! [`Decisions::orders`] — the restarter, or nothing (replay, dry run).
//!
//! The clock of every decision is the record's own timestamp, sanitised: a
//! timestamp more than [`MAX_FUTURE`] ahead of the arrival time is replaced
//! by the arrival time (a far-future line must not freeze a dyno). Batches that
//! arrive late, retried or out of order are judged by when the lines were
//! logged, never by when they reached us; a sample not newer than the one
//! already applied for that dyno instance changes nothing (it is counted).

use jiff::{SignedDuration, Timestamp};

use crate::domain::{AppName, DynoName};
use crate::ingest::heroku_line::{Memory, Observation, ObservationKind};

use super::blind::BlindWatch;
use super::policy::AppPolicy;
use super::state::{DynoSnapshot, RestartMark};
use super::watch::{Ignored, Watcher};
use crate::domain::event::{Event, EventKind};

/// How far ahead of its arrival a line's timestamp may be before it is
/// replaced by the arrival time.
pub const MAX_FUTURE: SignedDuration = SignedDuration::from_mins(1);

/// How long (log time) a restart decision is held before it is acted on. A
/// line of a newer instance of the dyno logged within it shows that the
/// decided instance was already being replaced — no restart produces a
/// replacement that fast — so the decision is dropped (`skipped`/`replaced`)
/// instead of a `DELETE` that would hit the newcomer. Released when an
/// observation of the app is logged later than this, when the service's
/// tick finds it held for its wall-clock hold, or at the end of a replay.
pub const HOLD: SignedDuration = SignedDuration::from_secs(5);

/// Who confirms that an ordered restart happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// The decision is the record (replay): an order counts as done at once.
    OnDecision,
    /// A restarter calls the API and reports back through
    /// [`Engine::restart_confirmed`], [`Engine::order_dropped`] or
    /// [`Engine::restart_failed`] (the service). Dry-run policies are always
    /// confirmed on decision: nothing is called.
    ByRestarter,
}

/// One memory sample as applied to a dyno (for history and the store).
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedSample {
    pub dyno: DynoName,
    pub instance: Option<String>,
    /// The instances of the name already replaced (newest last), kept in the
    /// store so a restarted dynoguard still knows them.
    pub replaced: Vec<String>,
    /// A second instance not yet ordered against this one (stored too).
    pub contender: Option<String>,
    pub at: Timestamp,
    /// The dyno's figures after the sample (quota resolved from hints).
    pub memory: Memory,
}

/// What one batch of observations produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decisions {
    /// Events to report as they are.
    pub events: Vec<Event>,
    /// `restart` events the actuator carries out (with
    /// [`Confirmation::ByRestarter`]); with [`Confirmation::OnDecision`] they
    /// are in `events` instead.
    pub orders: Vec<Event>,
    pub samples: Vec<AppliedSample>,
    /// Warnings to log once (a percentage threshold without a quota).
    pub warnings: Vec<String>,
    /// Lines that changed nothing, and why.
    pub ignored: Ignored,
    /// Timestamps replaced by the arrival time.
    pub future_clamped: u64,
}

/// A restart decision (and the `flapping` it brought) waiting for [`HOLD`].
#[derive(Debug)]
struct Held {
    /// The `restart` (or dry run's `skipped`) event, then any `flapping`.
    events: Vec<Event>,
    /// When the batch that decided it arrived (wall clock; the tick's hold).
    arrived: Timestamp,
}

/// The decision core of one app.
#[derive(Debug)]
pub struct Engine {
    watcher: Watcher,
    confirmation: Confirmation,
    blind: BlindWatch,
    held: Vec<Held>,
    /// The log minute dynos were last pruned at.
    pruned_minute: Option<i64>,
    /// R14/R15 lines judged at their arrival (stamped far ahead), by their
    /// own timestamp: the same line delivered again arrives later, so only
    /// its own timestamp shows it is the same line. Bounded.
    clamped_seen: std::collections::VecDeque<(DynoName, bool, Timestamp)>,
}

/// Is this event a restart decision (an order, or what a dry run would do)?
fn is_decision(e: &Event) -> bool {
    e.event == EventKind::Restart
        || (e.event == EventKind::Skipped && e.reason == Some(crate::domain::event::Reason::DryRun))
}

impl Engine {
    pub fn new(app: AppName, policy: AppPolicy, confirmation: Confirmation) -> Self {
        Self {
            watcher: Watcher::new(app, policy),
            confirmation,
            blind: BlindWatch::default(),
            held: Vec::new(),
            pruned_minute: None,
            clamped_seen: std::collections::VecDeque::new(),
        }
    }

    #[cfg(test)]
    pub(super) fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    /// The app's knobs.
    pub fn policy(&self) -> &AppPolicy {
        self.watcher.policy()
    }

    /// A read-only copy of every dyno the engine knows.
    pub fn snapshots(&self) -> Vec<DynoSnapshot> {
        let policy = self.watcher.policy();
        self.watcher
            .dynos()
            .map(|d| d.snapshot(policy.judging(d.dyno().process_type())))
            .collect()
    }

    /// How many dynos the engine knows.
    pub fn dyno_count(&self) -> usize {
        self.watcher.dynos().count()
    }

    /// The dyno's current instance: `None` if the engine does not know the
    /// dyno (forgotten), `Some(None)` if it knows no instance id for it.
    pub fn current_instance(&self, dyno: &DynoName) -> Option<Option<&str>> {
        self.watcher.dyno(dyno).map(|d| d.instance())
    }

    /// The clock a line is judged by.
    pub fn clock(logged: Timestamp, arrived: Timestamp) -> Timestamp {
        if logged.duration_since(arrived) > MAX_FUTURE {
            arrived
        } else {
            logged
        }
    }

    /// Applies a batch in order; `arrived` is when the batch reached us.
    ///
    /// The one batch function of `serve` and `replay`: restart decisions are
    /// held for [`HOLD`] of log time (a newer instance seen meanwhile drops
    /// them), dynos are pruned on the log clock, and what was ignored is
    /// counted — so both decide alike whatever the batching.
    pub fn apply(&mut self, observations: &[Observation], arrived: Timestamp) -> Decisions {
        let mut out = Decisions::default();
        for o in observations {
            let at = Self::clock(o.at, arrived);
            if at != o.at {
                out.future_clamped += 1;
                if let ObservationKind::R14 { dyno } | ObservationKind::R15 { dyno } = &o.kind {
                    let key = (
                        dyno.clone(),
                        matches!(o.kind, ObservationKind::R15 { .. }),
                        o.at,
                    );
                    if self.clamped_seen.contains(&key) {
                        out.ignored.repeated += 1;
                        continue;
                    }
                    if self.clamped_seen.len() == 256 {
                        self.clamped_seen.pop_front();
                    }
                    self.clamped_seen.push_back(key);
                }
            }
            self.release(&mut out, |h| at.duration_since(h.events[0].at) > HOLD);
            self.prune_on(at);
            // Every observation is a line, too (blindness is judged on all).
            let (app, after) = (self.watcher.app(), self.watcher.policy().blind_after);
            if let Some(e) = self.blind.lines(app, at, after) {
                out.events.push(e);
            }
            if let ObservationKind::Sample(s) = &o.kind
                && s.memory.total.is_some()
            {
                self.blind.sample(at);
            }
            let events = self.watcher.observe(&o.kind, at);
            self.watcher.note_arrival(&o.kind, arrived);
            if let ObservationKind::Sample(s) = &o.kind
                && s.memory.total.is_some()
                && let Some(d) = &s.dyno
                && let Some(state) = self.watcher.dyno(d)
                && state.sample_at == Some(at)
                // The current instance's sample, not a contender's.
                && (s.instance.is_none() || s.instance == state.instance)
            {
                let mut memory = state.memory;
                memory.quota = state.quota();
                out.samples.push(AppliedSample {
                    dyno: d.clone(),
                    instance: state.instance.clone(),
                    replaced: state.replaced.iter().cloned().collect(),
                    contender: state.contender_id().map(str::to_owned),
                    at,
                    memory,
                });
            }
            for e in events {
                if is_decision(&e) {
                    self.held.push(Held {
                        events: vec![e],
                        arrived,
                    });
                } else if e.event == EventKind::Flapping
                    && let Some(h) = self.held.last_mut()
                    && h.events[0].dyno == e.dyno
                    && h.events[0].at == e.at
                {
                    h.events.push(e);
                } else {
                    out.events.push(e);
                }
            }
            self.drop_replaced(&mut out);
        }
        out.warnings = self.watcher.take_warnings();
        let repeated = out.ignored.repeated;
        out.ignored = self.watcher.take_ignored();
        out.ignored.repeated += repeated;
        out
    }

    /// Releases the decisions held since a batch that arrived at or before
    /// `cutoff` (the service's tick: a quiet app logs nothing that would
    /// move its log clock past [`HOLD`]).
    pub fn release_due(&mut self, cutoff: Timestamp) -> Decisions {
        let mut out = Decisions::default();
        self.release(&mut out, |h| h.arrived <= cutoff);
        out
    }

    /// Releases every held decision (the end of a replay, shutdown).
    pub fn finish(&mut self) -> Decisions {
        let mut out = Decisions::default();
        self.release(&mut out, |_| true);
        out
    }

    /// Are decisions held?
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn release(&mut self, out: &mut Decisions, due: impl Fn(&Held) -> bool) {
        if self.held.is_empty() {
            return;
        }
        let (now, later): (Vec<Held>, Vec<Held>) =
            std::mem::take(&mut self.held).into_iter().partition(due);
        self.held = later;
        for h in now {
            let mut events = h.events.into_iter();
            let Some(decision) = events.next() else {
                continue;
            };
            self.watcher.order_released(&decision);
            let confirm_now = self.confirmation == Confirmation::OnDecision
                || decision.event != EventKind::Restart;
            if confirm_now {
                let recovered = self.watcher.restart_confirmed(&decision);
                out.events.push(decision);
                out.events.extend(events);
                out.events.extend(recovered);
            } else {
                // Reported events come before the order the restarter then
                // carries out.
                out.events.extend(events);
                out.orders.push(decision);
            }
        }
    }

    /// Drops held decisions whose instance a newer one replaced meanwhile.
    fn drop_replaced(&mut self, out: &mut Decisions) {
        if self.held.is_empty() {
            return;
        }
        let watcher = &self.watcher;
        let (gone, keep): (Vec<Held>, Vec<Held>) =
            std::mem::take(&mut self.held).into_iter().partition(|h| {
                let d = &h.events[0];
                d.dyno
                    .as_ref()
                    .and_then(|n| watcher.dyno(n))
                    .is_none_or(|s| s.instance != d.instance)
            });
        self.held = keep;
        for h in gone {
            out.events.extend(self.watcher.order_dropped(&h.events[0]));
        }
    }

    /// Forgets silent dynos once per minute of the log clock.
    fn prune_on(&mut self, at: Timestamp) {
        let minute = at.as_second().div_euclid(60);
        if self.pruned_minute.is_none_or(|m| minute > m) {
            self.pruned_minute = Some(minute);
            self.watcher.prune(at);
        }
    }

    /// A log line (of any kind: app output, router, platform) logged at
    /// `logged`. Returns the `blind` event when lines keep coming without a
    /// memory sample for the app's `blind_after`. Lines that are observations
    /// are seen by [`Engine::apply`]; the others are told here — per line
    /// (replay) or the first and last of a batch (serve), which date the
    /// event alike.
    pub fn lines_seen(&mut self, logged: Timestamp, arrived: Timestamp) -> Option<Event> {
        let at = Self::clock(logged, arrived);
        let (app, after) = (self.watcher.app(), self.watcher.policy().blind_after);
        self.blind.lines(app, at, after)
    }

    /// Since when the app's logs carry no memory sample, if they do not.
    pub fn blind_since(&self) -> Option<Timestamp> {
        self.blind.blind_since()
    }

    /// The restarter's re-check found the instance already replaced: the
    /// order is dropped, the window is not consumed, and a `skipped` event
    /// with reason `replaced` says so.
    pub fn order_dropped(&mut self, order: &Event) -> Option<Event> {
        self.watcher.order_dropped(order)
    }

    /// The restart call failed: the next attempt waits a backoff.
    pub fn restart_failed(&mut self, order: &Event) {
        self.watcher.restart_failed(order);
    }

    /// The call's outcome is unknown: it counts as made until the same
    /// instance is still reporting well past the time a restart takes.
    pub fn restart_unknown(&mut self, order: &Event) -> Option<Event> {
        self.watcher.restart_unknown(order)
    }

    /// The restart happened (the API accepted it, or evidence shows the
    /// instance was replaced). Returns the `recovered` event if the new
    /// instance already reported.
    pub fn restart_confirmed(&mut self, order: &Event) -> Option<Event> {
        self.watcher.restart_confirmed(order)
    }

    /// The dyno no longer exists (404 from the API).
    pub fn forget(&mut self, dyno: &DynoName) {
        self.watcher.forget(dyno);
    }

    /// The app's number in `dyno=heroku.N.…`, once recorded by `setup`.
    pub fn set_app_number(&mut self, number: Option<u64>) {
        self.watcher.set_app_number(number);
    }

    /// Restores the instance the store last saw for a dyno.
    pub fn seed_instance(
        &mut self,
        dyno: DynoName,
        instance: String,
        at: Timestamp,
        replaced: &[String],
        contender: Option<String>,
    ) {
        self.watcher
            .seed_instance(dyno, instance, at, replaced, contender);
    }

    pub fn seed_restart(&mut self, dyno: DynoName, mark: RestartMark) {
        self.watcher.seed_restart(dyno, mark);
    }

    pub fn set_type_quota(&mut self, process_type: &str, quota: crate::domain::Megabytes) {
        self.watcher.set_type_quota(process_type, quota);
    }
}

/// One app's engine shared by the service's handlers, log sessions, tasks
/// and restarter. A panic elsewhere never poisons ingestion for good.
#[derive(Debug)]
pub struct SharedEngine {
    app: AppName,
    inner: std::sync::Mutex<Engine>,
}

impl SharedEngine {
    pub fn new(app: AppName, policy: AppPolicy, confirmation: Confirmation) -> Self {
        Self {
            inner: std::sync::Mutex::new(Engine::new(app.clone(), policy, confirmation)),
            app,
        }
    }

    pub fn app(&self) -> &AppName {
        &self.app
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l10_is_reported_once_a_minute_and_the_rest_counted() {
        use crate::ingest::heroku_line::{Observation, ObservationKind};
        let mut e = Engine::new(
            AppName::parse("a").unwrap(),
            AppPolicy::default(),
            Confirmation::OnDecision,
        );
        let t0 = Timestamp::from_second(1_700_000_040).unwrap();
        let lost = |secs: i64| Observation {
            at: t0 + SignedDuration::from_secs(secs),
            kind: ObservationKind::SamplesLost { dropped: 2 },
        };
        let batch: Vec<_> = (0..50).map(|i| lost(i % 20)).chain([lost(65)]).collect();
        let d = e.apply(&batch, t0 + SignedDuration::from_hours(1));
        assert_eq!(d.events.len(), 2, "one per log minute");
        assert_eq!(d.ignored.l10_coalesced, 49);
        assert_eq!(d.ignored.l10_dropped, 98);
    }

    #[test]
    fn a_far_future_r15_delivered_twice_is_one_event() {
        use crate::ingest::heroku_line::{Observation, ObservationKind};
        let mut e = Engine::new(
            AppName::parse("a").unwrap(),
            AppPolicy::default(),
            Confirmation::OnDecision,
        );
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let r15 = Observation {
            at: now + SignedDuration::from_secs(90),
            kind: ObservationKind::R15 {
                dyno: DynoName::parse("web.3").unwrap(),
            },
        };
        let first = e.apply(std::slice::from_ref(&r15), now);
        let again = e.apply(
            std::slice::from_ref(&r15),
            now + SignedDuration::from_secs(3),
        );
        let r15s = |d: &Decisions| {
            d.events
                .iter()
                .filter(|x| x.event == EventKind::R15)
                .count()
        };
        assert_eq!((r15s(&first), r15s(&again)), (1, 0));
        assert_eq!(again.ignored.repeated, 1);
    }

    #[test]
    fn far_future_is_clamped_to_arrival() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let soon = now + SignedDuration::from_secs(30);
        let far = now + SignedDuration::from_hours(24 * 365);
        let past = now - SignedDuration::from_hours(5);
        assert_eq!(Engine::clock(soon, now), soon);
        assert_eq!(Engine::clock(far, now), now);
        assert_eq!(Engine::clock(past, now), past);
    }
}
