//! Per-app dyno state: feeds observations to the policy, returns events.
//!
//! A [`Watcher`] is the in-memory truth about one app's dynos. It is pure —
//! no I/O, no clock — so replay, the service and tests share it through
//! [`super::engine::Engine`], which gives it the sanitised log clock.
//!
//! Instance lineage: per process name it remembers the instances already
//! replaced (bounded). Lines from a replaced instance — preboot overlap, a
//! late batch — are counted and ignored, never taken for a new instance.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

use crate::domain::{AppName, DynoName, Megabytes};
use crate::ingest::heroku_line::{ObservationKind, Sample};

use super::policy::{self, AppPolicy, Policy, Siblings, Trigger};
use super::state::{DynoState, Lineage, RestartMark};
use crate::domain::event::{Event, EventKind, Reason};

/// A dyno with no report for this long is not counted as live.
pub const LIVE: SignedDuration = SignedDuration::from_mins(5);
/// The app's own number counts as reporting this long after its last
/// sample: only then is a sample with another number another app's (a
/// stale recorded number never turns protection off).
const OWN_NUMBER_FRESH: SignedDuration = SignedDuration::from_mins(5);
/// A dyno with no report for this long is forgotten.
pub const FORGET: SignedDuration = SignedDuration::from_hours(1);
/// An R14/R15/`Process running` line this close after a line of a replaced
/// instance belongs to that instance (Heroku logs them together).
const SAME_BURST: SignedDuration = SignedDuration::from_secs(5);

/// Rolls back the dyno's pending order (its window is not consumed) and says
/// so: `skipped`/`replaced` for the instance the order was for, with `why`.
fn drop_order(app: &AppName, state: &mut DynoState, at: Timestamp, why: &str) -> Event {
    let (instance, reason) = state
        .trouble()
        .last_restart
        .as_ref()
        .map_or((None, None), |m| (m.instance.clone(), Some(m.reason)));
    state.roll_back_order();
    let mut e = policy::event_for(app, state, EventKind::Skipped, at);
    e.reason = Some(Reason::Replaced);
    e.instance = instance;
    e.detail = Some(format!(
        "{why} (order: {})",
        reason.map_or("restart", |r| r.as_str())
    ));
    state.tag_incident(&mut e);
    e
}

/// What a new instance ended, from a sample its lineage accepted: the order
/// still held for the instance it replaces, and how long the restart we
/// ordered took (when we ordered one).
#[derive(Debug, Default)]
struct Accepted {
    dropped: Option<Event>,
    recovered: Option<f64>,
}

/// Drops a decision still held for the instance a new one replaces: it is
/// moot, and a DELETE now would hit the newcomer. Done before the newcomer
/// is judged.
/// The dyno's state, created on its first line; the name is copied only
/// then (every sample looks its dyno up).
fn state_in<'d>(dynos: &'d mut DynoMap, dyno: &DynoName, now: Timestamp) -> &'d mut DynoState {
    let s = dynos
        .entry_ref(dyno)
        .or_insert_with(|| Box::new(DynoState::new(dyno.clone(), now)));
    if now > s.last_seen {
        s.last_seen = now;
    }
    s
}

/// Dynos by name: looked up several times per sample, so hashbrown's map
/// (foldhash by default, randomly seeded: a fraction of SipHash's cost) and its
/// `entry_ref` (one look-up, the name copied only for a new dyno).
/// Boxed: the map grows by doubling, and 10,000 dynos inline took 16,384
/// slots × ~760 bytes; boxed, a slot is the name and a pointer.
type DynoMap = hashbrown::HashMap<DynoName, Box<DynoState>>;

fn drop_moot_order(app: &AppName, state: &mut DynoState, now: Timestamp) -> Option<Event> {
    let held = state
        .trouble()
        .last_restart
        .as_ref()
        .filter(|m| !m.confirmed && !m.released && m.instance == state.instance)?;
    let after = now.duration_since(held.at).as_secs();
    let why = format!(
        "a newer instance reported {after}s after the decision: not restarted, a DELETE now would hit it"
    );
    Some(drop_order(app, state, now, &why))
}

/// What an `over_threshold` event says fired. A prediction says what the
/// trend saw: a dyno restarted under its quota must be explainable from the
/// event alone.
fn over_threshold_detail(judging: &Policy, state: &DynoState, trigger: Trigger) -> Option<String> {
    if trigger != Trigger::Predicted {
        return judging
            .threshold
            .limit(state.quota())
            .map(|l| format!("threshold {} = {l}", judging.threshold));
    }
    let quota = state.quota()?;
    let c = policy::predicted_crossing(judging, &state.history, quota)?;
    Some(format!(
        "predicted: trend {:.1}MB/min from {:.0}MB reaches the quota in {}s (predict {}s)",
        c.mb_per_min,
        c.level.0,
        c.within.as_secs(),
        judging.predict.map_or(0, |h| h.as_secs())
    ))
}

/// Lines that changed nothing, and why (counted, shown in `/metrics`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ignored {
    /// Samples not newer than the one already applied for the instance
    /// (retried batches, reconnect history, out-of-order delivery).
    pub stale: u64,
    /// Lines from an instance already replaced (preboot overlap, late lines).
    pub replaced: u64,
    /// Lines of a second instance not yet ordered against the current one.
    pub unclear: u64,
    /// R14/R15 lines not newer than the last reported (a log session
    /// replaying history on reconnect, a retried batch).
    pub repeated: u64,
    /// Samples of another app (`dyno=heroku.N.…` with another number than
    /// `setup` recorded for this app): a drain pointed at the wrong URL.
    pub foreign: u64,
    /// L10/L11 lines folded into the minute's first report, and the
    /// messages they said were dropped.
    pub l10_coalesced: u64,
    pub l10_dropped: u64,
}

#[derive(Debug)]
pub struct Watcher {
    app: AppName,
    policy: AppPolicy,
    dynos: DynoMap,
    /// Quota per process type from the app's formation, for samples that
    /// carry none (legacy lines).
    type_quota: HashMap<String, Megabytes>,
    warnings: Vec<String>,
    ignored: Ignored,
    /// The log minute of the last L10/L11 reported: one per minute.
    lost_minute: Option<i64>,
    /// The app's number in `dyno=heroku.N.…`, once `setup` recorded it.
    app_number: Option<u64>,
    /// A foreign sample was already warned about.
    foreign_warned: bool,
    /// When a sample with the recorded app number last came (log time).
    own_number_at: Option<Timestamp>,
}

impl Watcher {
    pub fn new(app: AppName, policy: AppPolicy) -> Self {
        Self {
            app,
            policy,
            dynos: DynoMap::default(),
            type_quota: HashMap::new(),
            warnings: Vec::new(),
            ignored: Ignored::default(),
            lost_minute: None,
            app_number: None,
            foreign_warned: false,
            own_number_at: None,
        }
    }

    pub fn app(&self) -> &AppName {
        &self.app
    }

    pub fn policy(&self) -> &AppPolicy {
        &self.policy
    }

    pub fn dynos(&self) -> impl Iterator<Item = &DynoState> {
        self.dynos.values().map(|s| &**s)
    }

    pub fn dyno(&self, name: &DynoName) -> Option<&DynoState> {
        self.dynos.get(name).map(|s| &**s)
    }

    /// Warnings the policy produced (a percentage threshold without a quota);
    /// each is produced once per dyno.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    pub fn take_ignored(&mut self) -> Ignored {
        std::mem::take(&mut self.ignored)
    }

    /// The formation's quota for a process type: judged for every dyno of
    /// the type whose samples carry none, and refreshed after a resize.
    pub fn set_type_quota(&mut self, process_type: &str, quota: Megabytes) {
        self.type_quota.insert(process_type.to_owned(), quota);
        for s in self.dynos.values_mut() {
            if s.dyno.process_type() == process_type {
                s.formation_quota = Some(quota);
            }
        }
    }

    /// The app's number in `dyno=heroku.N.…` (recorded by `setup`): samples
    /// with another number are another app's and change nothing.
    pub fn set_app_number(&mut self, number: Option<u64>) {
        self.app_number = number;
    }

    /// Restores the instance the store last saw for a dyno (and the ones it
    /// replaced), so a restarted dynoguard still orders instances by evidence.
    pub fn seed_instance(
        &mut self,
        dyno: DynoName,
        instance: String,
        at: Timestamp,
        replaced: &[String],
        contender: Option<String>,
    ) {
        let state = self
            .dynos
            .entry(dyno.clone())
            .or_insert_with(|| Box::new(DynoState::new(dyno, at)));
        state.seed_instance(instance, at, replaced, contender);
    }

    /// Restores a restart remembered by the store (after dynoguard itself
    /// restarted), so windows and "never the same instance twice" survive.
    pub fn seed_restart(&mut self, dyno: DynoName, mark: RestartMark) {
        let state = self
            .dynos
            .entry(dyno.clone())
            .or_insert_with(|| Box::new(DynoState::new(dyno, mark.at)));
        match (&state.instance, &mark.instance) {
            (None, Some(_)) => {
                state.instance = mark.instance.clone();
                state.instance_since = Some(mark.at);
                state.instance_last = Some(mark.at);
            }
            // We restarted that instance: it can never be the newer one.
            (Some(cur), Some(old)) if cur != old && state.trouble().last_restart.is_none() => {
                state.remember_replaced(old.clone());
            }
            _ => {}
        }
        if mark.unknown {
            state.awaiting_replacement = true;
        }
        state.trouble_mut().restarts.push_back(mark.at);
        state.trouble_mut().last_restart = Some(mark);
    }

    /// The state an order was made from, if it is still the latest order.
    fn order_state(&mut self, order: &Event) -> Option<&mut DynoState> {
        let s = self.dynos.get_mut(order.dyno.as_ref()?)?;
        s.trouble()
            .last_restart
            .as_ref()
            .is_some_and(|m| m.at == order.at && m.instance == order.instance && !m.confirmed)
            .then_some(s)
    }

    /// The engine released the order: from now on only the restarter's
    /// re-check can drop it.
    pub fn order_released(&mut self, order: &Event) {
        if let Some(m) = self
            .order_state(order)
            .and_then(|s| s.trouble_mut().last_restart.as_mut())
        {
            m.released = true;
        }
    }

    /// The restarter's re-check found the instance already replaced: undo the
    /// order's bookkeeping (the window is not consumed) and say so.
    pub fn order_dropped(&mut self, order: &Event) -> Option<Event> {
        let app = self.app.clone();
        let state = self.order_state(order)?;
        let at = state.last_seen;
        let e = drop_order(&app, state, at, "instance replaced before the restart call");
        state.close_quiet_incident();
        Some(e)
    }

    /// The restart call failed: undo the order and back off (a minute,
    /// doubling, capped at the window) before the next attempt.
    pub fn restart_failed(&mut self, order: &Event) {
        let window = order
            .dyno
            .as_ref()
            .map(|d| self.policy.judging(d.process_type()).restart_window)
            .unwrap_or(SignedDuration::from_mins(10));
        let Some(state) = self.order_state(order) else {
            return;
        };
        state.roll_back_order();
        state.trouble_mut().failures = state.trouble().failures.saturating_add(1);
        let backoff = SignedDuration::from_mins(1)
            .checked_mul(1 << state.trouble().failures.saturating_sub(1).min(16))
            .unwrap_or(window)
            .min(window);
        state.trouble_mut().retry_after = Some(order.at + backoff);
    }

    /// The call's outcome is unknown (timeout, no evidence either way): it
    /// counts as made — the window holds — until the same instance is still
    /// reporting [`policy::UNKNOWN_GRACE`] later; then one more call.
    pub fn restart_unknown(&mut self, order: &Event) -> Option<Event> {
        let state = self.order_state(order)?;
        if let Some(m) = state.trouble_mut().last_restart.as_mut() {
            m.unknown = true;
        }
        self.restart_confirmed(order)
    }

    /// The restart happened. Returns `recovered` if the new instance already
    /// reported before the confirmation came.
    pub fn restart_confirmed(&mut self, order: &Event) -> Option<Event> {
        let app = self.app.clone();
        let state = self.order_state(order)?;
        if let Some(m) = state.trouble_mut().last_restart.as_mut() {
            m.confirmed = true;
        }
        state.trouble_mut().failures = 0;
        state.trouble_mut().retry_after = None;
        let secs = state.trouble_mut().pending_recovery.take()?;
        let mut e = policy::event_for(&app, state, EventKind::Recovered, state.last_seen);
        e.seconds = Some(secs);
        state.tag_incident(&mut e);
        Some(e)
    }

    /// The dyno no longer exists (404 from the API).
    pub fn forget(&mut self, dyno: &DynoName) {
        self.dynos.remove(dyno);
    }

    /// Drops dynos that have not reported for [`FORGET`] of the app's log
    /// clock (the newest line seen), never of the wall clock: a backlog or a
    /// replayed log must not be forgotten while it is being judged. A dyno
    /// whose restart window or flap window still covers the clock is kept,
    /// whatever their length. The engine calls this on the log clock, so
    /// `serve` and `replay` forget alike.
    pub fn prune(&mut self, clock: Timestamp) {
        let policy = &self.policy;
        self.dynos.retain(|_, s| {
            let p = policy.judging(s.dyno.process_type());
            let keep = FORGET.max(p.restart_window).max(p.flap_window);
            clock.duration_since(s.last_seen) < keep
                || s.trouble()
                    .restarts
                    .back()
                    .is_some_and(|t| clock.duration_since(*t) < keep)
        });
    }

    /// Applies one observation at `now` (the sanitised log time); returns the
    /// decision events.
    pub fn observe(&mut self, kind: &ObservationKind, now: Timestamp) -> Vec<Event> {
        let mut events = self.observe_untagged(kind, now);
        self.tag(&mut events);
        events
    }

    /// Gives each event about a dyno its incident id.
    fn tag(&mut self, events: &mut [Event]) {
        for e in events.iter_mut().filter(|e| e.incident.is_none()) {
            if let Some(s) = e.dyno.as_ref().and_then(|d| self.dynos.get_mut(d)) {
                s.tag_incident(e);
            }
        }
    }

    fn observe_untagged(&mut self, kind: &ObservationKind, now: Timestamp) -> Vec<Event> {
        match kind {
            ObservationKind::Sample(s) => self.sample(s, now),
            ObservationKind::R14 { dyno } => self.platform_error(dyno, EventKind::R14, now),
            ObservationKind::R15 { dyno } => self.platform_error(dyno, EventKind::R15, now),
            ObservationKind::ProcessMemory {
                dyno,
                memory,
                percent,
            } => {
                if self.follows_replaced_line(dyno, now) {
                    return Vec::new();
                }
                let state = self.state(dyno, now);
                state.trouble_mut().process_memory = Some((now, *memory));
                state.trouble_mut().quota_hint =
                    Some(policy::quota_from_percent(*memory, *percent));
                Vec::new()
            }
            ObservationKind::State { dyno, change } => {
                let state = self.state(dyno, now);
                if change.is_birth() {
                    state.born_at = Some(state.born_at.map_or(now, |b| b.max(now)));
                }
                Vec::new()
            }
            ObservationKind::SamplesLost { dropped } => {
                // A drain that overflows says so on every batch: one event a
                // minute, the rest counted.
                let minute = now.as_second().div_euclid(60);
                if self.lost_minute.is_some_and(|m| minute <= m) {
                    self.ignored.l10_coalesced += 1;
                    self.ignored.l10_dropped += dropped;
                    return Vec::new();
                }
                self.lost_minute = Some(minute);
                let mut e = Event::new(now, EventKind::SamplesLost, self.app.clone());
                e.count = Some(*dropped);
                vec![e]
            }
            ObservationKind::Release { version, by } => {
                let mut e = Event::new(now, EventKind::Release, self.app.clone());
                e.detail = Some(match by {
                    Some(by) => format!("{version} by {by}"),
                    None => version.clone(),
                });
                vec![e]
            }
        }
    }

    /// Notes when a line of the observation's dyno arrived (wall clock).
    pub fn note_arrival(&mut self, kind: &ObservationKind, arrived: Timestamp) {
        if let Some(s) = kind.dyno().and_then(|d| self.dynos.get_mut(d)) {
            s.last_arrival = Some(arrived);
        }
    }

    /// Did a line of a replaced instance of `dyno` just come (so this
    /// instance-less line belongs to it)?
    fn follows_replaced_line(&mut self, dyno: &DynoName, now: Timestamp) -> bool {
        let hit = self.dynos.get(dyno).is_some_and(|s| {
            s.replaced_line_at
                .is_some_and(|t| now >= t && now.duration_since(t) <= SAME_BURST)
        });
        if hit {
            self.ignored.replaced += 1;
        }
        hit
    }

    fn state(&mut self, dyno: &DynoName, now: Timestamp) -> &mut DynoState {
        state_in(&mut self.dynos, dyno, now)
    }

    fn siblings(&self, dyno: &DynoName, now: Timestamp) -> Siblings {
        let ty = dyno.process_type();
        let policy = self.policy.judging(ty);
        let mut sib = Siblings {
            live: 0,
            restarting: 0,
        };
        for s in self.dynos.values().filter(|s| s.dyno.process_type() == ty) {
            if now.duration_since(s.last_seen) < LIVE {
                sib.live += 1;
            }
            if &s.dyno != dyno && s.restart_in_progress(policy, now) {
                sib.restarting += 1;
            }
        }
        sib
    }

    /// A memory sample. Another app's is ignored; the dyno's lineage then
    /// says whether it counts at all; a sample that counts is recorded and,
    /// when it carries a total, judged.
    fn sample(&mut self, sample: &Sample, now: Timestamp) -> Vec<Event> {
        let Some(dyno) = &sample.dyno else {
            return Vec::new();
        };
        if self.is_foreign(dyno, sample.app_number, now) {
            return Vec::new();
        }
        let Some(accepted) = self.follow_lineage(dyno, sample.instance.as_deref(), now) else {
            return Vec::new();
        };
        let Some(mut events) = self.record_sample(dyno, sample, accepted, now) else {
            return Vec::new();
        };
        if sample.memory.total.is_none() {
            return events;
        }
        events.extend(self.judge(dyno, now));
        events
    }

    /// Whether a sample is another app's: it carries another `heroku.N`
    /// number than `setup` recorded while the app still reports under its
    /// own (a drain pointed at the wrong URL). A recorded number nothing
    /// reports under is stale instead: the sample is judged, because a stale
    /// number must never turn protection off. Each case is said once.
    fn is_foreign(&mut self, dyno: &DynoName, got: Option<u64>, now: Timestamp) -> bool {
        let (Some(expected), Some(got)) = (self.app_number, got) else {
            return false;
        };
        if expected == got {
            self.own_number_at = Some(self.own_number_at.map_or(now, |t| t.max(now)));
            return false;
        }
        if self
            .own_number_at
            .is_some_and(|t| now.duration_since(t) < OWN_NUMBER_FRESH)
        {
            // The app reports under its number meanwhile: this is another
            // app's sample, delivered to this app's drain URL.
            self.ignored.foreign += 1;
            if !self.foreign_warned {
                self.foreign_warned = true;
                self.warnings.push(format!(
                    "{}: a sample of {dyno} carries dyno=heroku.{got}.…, but this app's dynos are heroku.{expected}.… (recorded by setup): another app's drain points at this app's URL — its samples are ignored (dynoguard_lines_foreign_total)",
                    self.app
                ));
            }
            return true;
        }
        if !self.foreign_warned {
            // Nothing reports under the recorded number: it is stale (the
            // app recreated?). Protection must not stop: judged, said.
            self.foreign_warned = true;
            self.warnings.push(format!(
                "{}: samples carry dyno=heroku.{got}.… but setup recorded heroku.{expected}.… and none carries it: the recorded number looks stale — judging these samples; run dynoguard setup --wait again",
                self.app
            ));
        }
        false
    }

    /// Places a sample's instance in the dyno's lineage (by evidence, see
    /// `DynoState::classify`). `None` when the line changes nothing — a
    /// replaced instance's or, while the lineage is unclear, a contender's —
    /// counted in `ignored`. A new instance ends what belonged to the old
    /// one: the order still held for it and its quiet episode.
    fn follow_lineage(
        &mut self,
        dyno: &DynoName,
        instance: Option<&str>,
        now: Timestamp,
    ) -> Option<Accepted> {
        let app = &self.app;
        let state = state_in(&mut self.dynos, dyno, now);
        match state.classify(instance, now) {
            Lineage::Replaced => {
                state.replaced_line_at = Some(now);
                self.ignored.replaced += 1;
                None
            }
            Lineage::Unclear => {
                self.ignored.unclear += 1;
                None
            }
            Lineage::Current => Some(Accepted::default()),
            Lineage::New => {
                let dropped = drop_moot_order(app, state, now);
                // An episode of the old instance that no restart of ours is
                // resolving ends with it (Heroku replaced it).
                state.close_quiet_incident();
                let recovered = state.set_instance(instance.map(str::to_owned), now);
                Some(Accepted { dropped, recovered })
            }
        }
    }

    /// Records a sample its lineage accepted, unless it is stale (not newer
    /// than the one applied for the instance: a retried batch, a reconnect's
    /// history, out-of-order delivery) — then `None`, counted. Returns what
    /// the new instance ended: the dropped order and, after a restart of
    /// ours, `recovered`.
    fn record_sample(
        &mut self,
        dyno: &DynoName,
        sample: &Sample,
        accepted: Accepted,
        now: Timestamp,
    ) -> Option<Vec<Event>> {
        let type_quota = self.type_quota.get(dyno.process_type()).copied();
        let window = self.policy.judging(dyno.process_type()).predict_window;
        let app = &self.app;
        let state = state_in(&mut self.dynos, dyno, now);
        if sample.memory.total.is_some() && state.sample_at.is_some_and(|t| now <= t) {
            self.ignored.stale += 1;
            return None;
        }
        // `replaced_line_at` is kept: an R14 right after this sample may
        // still be the replaced instance's (it logs beside the new one).
        state.record_memory(sample.memory, now, window);
        if type_quota.is_some() {
            state.formation_quota = type_quota;
        }
        let mut events: Vec<Event> = accepted.dropped.into_iter().collect();
        if let Some(secs) = accepted.recovered {
            let mut e = policy::event_for(app, state, EventKind::Recovered, now);
            e.seconds = Some(secs);
            // Tagged now: judging the new instance below may end the episode.
            state.tag_incident(&mut e);
            events.push(e);
        }
        Some(events)
    }

    /// Judges a dyno's memory after a sample with a total was recorded.
    /// Under every trigger the episode ends; over one, `over_threshold` is
    /// reported once per episode, and after `consecutive` samples over the
    /// policy decides on a restart.
    fn judge(&mut self, dyno: &DynoName, now: Timestamp) -> Vec<Event> {
        let judging = self.policy.judging(dyno.process_type()).clone();
        let state = self.dynos.get_mut(dyno).expect("the sample was recorded");
        if judging.threshold.limit(state.quota()).is_none() && !state.unjudged_warned {
            state.unjudged_warned = true;
            self.warnings.push(format!(
                "{} {dyno}: threshold {} needs a memory quota, but the samples carry none and the formation gave none; samples are recorded but not judged",
                self.app, judging.threshold
            ));
        }
        let Some(trigger) = policy::judge_memory(&judging, state) else {
            state.consecutive_over = 0;
            state.over = false;
            state.close_quiet_incident();
            return Vec::new();
        };
        let mut events = Vec::new();
        state.consecutive_over += 1;
        if !state.over {
            state.over = true;
            let mut e = policy::event_for(&self.app, state, EventKind::OverThreshold, now);
            e.detail = over_threshold_detail(&judging, state, trigger);
            events.push(e);
        }
        if state.consecutive_over < judging.consecutive {
            return events;
        }
        events.extend(self.decide(dyno, trigger, now));
        events
    }

    fn platform_error(&mut self, dyno: &DynoName, kind: EventKind, now: Timestamp) -> Vec<Event> {
        if self.follows_replaced_line(dyno, now) {
            return Vec::new();
        }
        let app = self.app.clone();
        let state = self.state(dyno, now);
        // A line logged before the last restart was ordered is about the
        // instance already being restarted (a late or retried batch).
        // So is one logged before the current instance began.
        if state
            .trouble()
            .last_restart
            .as_ref()
            .is_some_and(|m| now < m.at)
            || state.instance_since.is_some_and(|t| now < t)
        {
            self.ignored.stale += 1;
            return Vec::new();
        }
        // A log session replays recent history on reconnect, and batches
        // are retried: an R14/R15 not newer than the last one reported for
        // the name is not news (one event per line, whatever the delivery).
        let last = match kind {
            EventKind::R14 => &mut state.trouble_mut().r14_at,
            _ => &mut state.trouble_mut().r15_at,
        };
        if last.is_some_and(|t| now <= t) {
            self.ignored.repeated += 1;
            return Vec::new();
        }
        *last = Some(now);
        // Heroku repeats R14 with every sample while a dyno swaps: report it
        // once per instance (R15 ends the instance, so it is always new).
        let mut events = Vec::new();
        if kind == EventKind::R15 || !state.r14_reported {
            state.r14_reported |= kind == EventKind::R14;
            events.push(policy::event_for(&app, state, kind, now));
        }
        let judging = self.policy.judging(dyno.process_type());
        let (enabled, trigger) = match kind {
            EventKind::R14 => (judging.on_r14, Trigger::R14),
            _ => (judging.on_r15, Trigger::R15),
        };
        if enabled {
            events.extend(self.decide(dyno, trigger, now));
        }
        events
    }

    fn decide(&mut self, dyno: &DynoName, trigger: Trigger, now: Timestamp) -> Vec<Event> {
        let siblings = self.siblings(dyno, now);
        let policy = self.policy.for_type(dyno.process_type()).cloned();
        let app = self.app.clone();
        let state = self.dynos.get_mut(dyno).expect("caller created the state");
        // Never confirmed here: the engine holds every decision a moment
        // (a newer instance may show it moot) and confirms it on release.
        policy::decide_restart(&app, policy.as_ref(), state, trigger, siblings, now, false)
    }
}

#[cfg(test)]
mod table {
    //! Policy as a table: a sample sequence and knobs → expected decisions.

    use super::*;
    use crate::decide::engine::{Confirmation, Engine};
    use crate::decide::policy::{Parallelism, Policy, Threshold};
    use crate::domain::AppName;
    use crate::ingest::heroku_line::{Memory, Observation, StateChange};

    const A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
    const B: &str = "bbbbbbbb-0000-0000-0000-000000000002";

    #[derive(Clone, Copy)]
    enum In {
        /// (seconds, dyno, instance, total MB, quota MB)
        S(i64, &'static str, &'static str, f64, Option<f64>),
        R14(i64, &'static str),
        R15(i64, &'static str),
        Mem(i64, &'static str, f64, f64),
        Restarting(i64, &'static str),
        /// `Starting process with command …` (a birth line).
        Start(i64, &'static str),
        /// `State changed from starting to up`.
        Up(i64, &'static str),
        /// From here on, orders wait for Ok/Fail/Drop (as with a restarter).
        Hold,
        /// The restarter confirms / fails / drops (re-check) the last order,
        /// or reports that its outcome is unknown.
        Ok(&'static str),
        Fail(&'static str),
        Drop(&'static str),
        Unknown(&'static str),
    }
    use In::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    /// A sample of web.1's instance `inst` at `t` with these figures.
    fn web1(t: i64, inst: &str, memory: Memory, app_number: Option<u64>) -> Observation {
        Observation {
            at: at(t),
            kind: ObservationKind::Sample(Sample {
                dyno: DynoName::parse("web.1"),
                instance: Some(inst.into()),
                memory,
                malformed: false,
                app_number,
            }),
        }
    }

    /// `total` MB of a 512 MB quota.
    fn of_512(total: f64) -> Memory {
        Memory {
            total: Some(Megabytes(total)),
            quota: Some(Megabytes(512.0)),
            ..Memory::default()
        }
    }

    fn run(policy: Policy, types: &[&str], input: &[In]) -> Vec<String> {
        let app = AppPolicy {
            dyno_types: crate::decide::policy::DynoTypes::parse_list(types.iter().copied())
                .unwrap(),
            defaults: policy,
            ..AppPolicy::default()
        };
        let mut w = Engine::new(AppName::parse("t").unwrap(), app, Confirmation::ByRestarter);
        let mut out = Vec::new();
        let mut hold = false;
        let mut orders: HashMap<String, Event> = HashMap::new();
        let name = |e: &Event| {
            let dyno = e.dyno.as_ref().map_or("-", DynoName::as_str).to_owned();
            match e.reason {
                Some(r) => format!("{dyno}:{}:{}", e.event.as_str(), r.as_str()),
                None => format!("{dyno}:{}", e.event.as_str()),
            }
        };
        let take = |w: &mut Engine,
                    d: crate::decide::engine::Decisions,
                    hold: bool,
                    out: &mut Vec<String>,
                    orders: &mut HashMap<String, Event>| {
            for e in d.events {
                out.push(name(&e));
            }
            for e in d.orders {
                out.push(name(&e));
                let dyno = e.dyno.as_ref().unwrap().to_string();
                if !hold {
                    // No restarter in these cases: the call "succeeds" at once.
                    if let Some(r) = w.restart_confirmed(&e) {
                        out.push(name(&r));
                    }
                }
                orders.insert(dyno, e);
            }
        };
        for i in input {
            if matches!(i, Ok(_) | Fail(_) | Drop(_) | Unknown(_)) {
                // The restarter only sees an order once the engine releases it.
                let d = w.release_due(at(1_000_000));
                take(&mut w, d, hold, &mut out, &mut orders);
            }
            let (t, kind) = match *i {
                S(t, d, inst, total, quota) => (
                    t,
                    ObservationKind::Sample(Sample {
                        dyno: DynoName::parse(d),
                        instance: Some(inst.to_owned()),
                        memory: Memory {
                            total: Some(Megabytes(total)),
                            quota: quota.map(Megabytes),
                            ..Memory::default()
                        },
                        malformed: false,
                        app_number: None,
                    }),
                ),
                R14(t, d) => (
                    t,
                    ObservationKind::R14 {
                        dyno: DynoName::parse(d).unwrap(),
                    },
                ),
                R15(t, d) => (
                    t,
                    ObservationKind::R15 {
                        dyno: DynoName::parse(d).unwrap(),
                    },
                ),
                Mem(t, d, mb, pct) => (
                    t,
                    ObservationKind::ProcessMemory {
                        dyno: DynoName::parse(d).unwrap(),
                        memory: Megabytes(mb),
                        percent: pct,
                    },
                ),
                Restarting(t, d) => (
                    t,
                    ObservationKind::State {
                        dyno: DynoName::parse(d).unwrap(),
                        change: StateChange::Restarting,
                    },
                ),
                Start(t, d) => (
                    t,
                    ObservationKind::State {
                        dyno: DynoName::parse(d).unwrap(),
                        change: StateChange::Starting,
                    },
                ),
                Up(t, d) => (
                    t,
                    ObservationKind::State {
                        dyno: DynoName::parse(d).unwrap(),
                        change: StateChange::Changed {
                            from: "starting".into(),
                            to: "up".into(),
                        },
                    },
                ),
                Hold => {
                    hold = true;
                    continue;
                }
                Unknown(d) => {
                    let Some(order) = orders.get(d) else {
                        out.push(format!("{d}:no order"));
                        continue;
                    };
                    if let Some(e) = w.restart_unknown(order) {
                        out.push(name(&e));
                    }
                    out.push(format!("{d}:outcome unknown"));
                    continue;
                }
                Ok(d) => {
                    let Some(order) = orders.get(d) else {
                        out.push(format!("{d}:no order"));
                        continue;
                    };
                    if let Some(e) = w.restart_confirmed(order) {
                        out.push(name(&e));
                    }
                    continue;
                }
                Fail(d) => {
                    let Some(order) = orders.get(d) else {
                        out.push(format!("{d}:no order"));
                        continue;
                    };
                    w.restart_failed(order);
                    out.push(format!("{d}:call failed"));
                    continue;
                }
                Drop(d) => {
                    let Some(order) = orders.get(d) else {
                        out.push(format!("{d}:no order"));
                        continue;
                    };
                    if let Some(e) = w.order_dropped(order) {
                        out.push(name(&e));
                    }
                    continue;
                }
            };
            let o = Observation { at: at(t), kind };
            let arrived = at(100_000);
            let d = w.apply(std::slice::from_ref(&o), arrived);
            take(&mut w, d, hold, &mut out, &mut orders);
        }
        let d = w.finish();
        take(&mut w, d, hold, &mut out, &mut orders);
        out
    }

    fn p() -> Policy {
        Policy::default()
    }

    #[test]
    fn table() {
        let q = Some(512.0);
        type Case = (
            &'static str,
            Policy,
            Vec<&'static str>,
            Vec<In>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "healthy: nothing",
                p(),
                vec!["web"],
                vec![S(0, "web.1", A, 300.0, q), S(20, "web.1", A, 310.0, q)],
                vec![],
            ),
            (
                "at quota is not over it",
                p(),
                vec!["web"],
                vec![S(0, "web.1", A, 512.0, q)],
                vec![],
            ),
            (
                "over quota: restart",
                p(),
                vec!["web"],
                vec![S(0, "web.1", A, 512.01, q)],
                vec!["web.1:over_threshold", "web.1:restart:threshold"],
            ),
            (
                "same instance still over: quiet while settling, skipped once after, retry after the window",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 600.0, q),
                    S(20, "web.1", A, 610.0, q),
                    S(200, "web.1", A, 620.0, q),
                    S(220, "web.1", A, 620.0, q),
                    S(601, "web.1", A, 700.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:skipped:same_instance",
                    "web.1:restart:retry",
                ],
            ),
            (
                "new instance over within the window waits, then restarts",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 600.0, q),
                    S(30, "web.1", B, 200.0, q),
                    S(300, "web.1", B, 600.0, q),
                    S(620, "web.1", B, 650.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:recovered",
                    "web.1:over_threshold",
                    "web.1:skipped:window",
                    "web.1:restart:threshold",
                ],
            ),
            (
                "unwatched type: one skip",
                p(),
                vec!["web"],
                vec![
                    S(0, "worker.1", A, 600.0, q),
                    S(20, "worker.1", A, 600.0, q),
                ],
                vec![
                    "worker.1:over_threshold",
                    "worker.1:skipped:type_not_watched",
                ],
            ),
            (
                "exact type match",
                p(),
                vec!["worker"],
                vec![S(0, "slow_worker.2", A, 600.0, q)],
                vec![
                    "slow_worker.2:over_threshold",
                    "slow_worker.2:skipped:type_not_watched",
                ],
            ),
            (
                "star watches every long-running type, never one-off dynos (run, release, scheduler)",
                p(),
                vec!["*"],
                vec![
                    S(0, "worker.3", A, 600.0, q),
                    S(0, "run.1234", B, 600.0, q),
                    S(1, "release.4567", B, 600.0, q),
                    S(2, "scheduler.8901", B, 600.0, q),
                ],
                // The restart is held a moment (a newer instance may show it
                // moot), so it comes after the skips of the same second.
                vec![
                    "worker.3:over_threshold",
                    "run.1234:over_threshold",
                    "run.1234:skipped:type_not_watched",
                    "release.4567:over_threshold",
                    "release.4567:skipped:type_not_watched",
                    "scheduler.8901:over_threshold",
                    "scheduler.8901:skipped:type_not_watched",
                    "worker.3:restart:threshold",
                ],
            ),
            (
                "r14 restarts",
                p(),
                vec!["web"],
                vec![S(0, "web.1", A, 300.0, q), R14(5, "web.1")],
                vec!["web.1:r14", "web.1:restart:r14"],
            ),
            (
                "repeated r14 of one instance: reported once, quiet while the restart settles",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 300.0, q),
                    R14(5, "web.1"),
                    R14(25, "web.1"),
                    R14(45, "web.1"),
                    S(60, "web.1", B, 200.0, q),
                    R14(65, "web.1"),
                    R14(85, "web.1"),
                ],
                vec![
                    "web.1:r14",
                    "web.1:restart:r14",
                    "web.1:recovered",
                    "web.1:r14",
                    "web.1:skipped:window",
                ],
            ),
            (
                "r14 off",
                Policy {
                    on_r14: false,
                    ..p()
                },
                vec!["web"],
                vec![R14(5, "web.1")],
                vec!["web.1:r14"],
            ),
            (
                "r15 restarts",
                p(),
                vec!["web"],
                vec![R15(5, "web.1")],
                vec!["web.1:r15", "web.1:restart:r15"],
            ),
            (
                "threshold in MB",
                Policy {
                    threshold: Threshold::Absolute(Megabytes(1000.0)),
                    ..p()
                },
                vec!["web"],
                vec![S(0, "web.1", A, 900.0, q), S(20, "web.1", A, 1000.5, q)],
                vec!["web.1:over_threshold", "web.1:restart:threshold"],
            ),
            (
                "percent threshold, no quota: not judged",
                p(),
                vec!["web"],
                vec![S(0, "web.1", A, 5000.0, None)],
                vec![],
            ),
            (
                "percent threshold learns the quota from Process running",
                Policy {
                    threshold: Threshold::Percent(95.0),
                    ..p()
                },
                vec!["web"],
                vec![Mem(0, "web.1", 736.0, 143.8), S(1, "web.1", A, 490.0, None)],
                vec!["web.1:over_threshold", "web.1:restart:threshold"],
            ),
            (
                "consecutive = 3",
                Policy {
                    consecutive: 3,
                    ..p()
                },
                vec!["web"],
                vec![
                    S(0, "web.1", A, 600.0, q),
                    S(20, "web.1", A, 300.0, q),
                    S(40, "web.1", A, 600.0, q),
                    S(60, "web.1", A, 600.0, q),
                    S(80, "web.1", A, 600.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                ],
            ),
            (
                "failed call: the next attempt waits a backoff (1 min, doubling), reported once per attempt",
                p(),
                vec!["web"],
                vec![
                    Hold,
                    S(0, "web.1", A, 600.0, q),
                    Fail("web.1"),
                    S(20, "web.1", A, 600.0, q),
                    S(40, "web.1", A, 600.0, q),
                    S(61, "web.1", A, 600.0, q),
                    Fail("web.1"),
                    S(90, "web.1", A, 600.0, q),
                    S(150, "web.1", A, 600.0, q),
                    S(182, "web.1", A, 600.0, q),
                    Ok("web.1"),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:call failed",
                    "web.1:skipped:backoff",
                    "web.1:restart:threshold",
                    "web.1:call failed",
                    "web.1:skipped:backoff",
                    "web.1:restart:threshold",
                ],
            ),
            (
                "preboot overlap: once B is seen after A was watched two minutes, A's lines change nothing",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 300.0, q),
                    S(60, "web.1", A, 300.0, q),
                    S(120, "web.1", A, 300.0, q),
                    S(140, "web.1", B, 200.0, q),
                    S(145, "web.1", A, 600.0, q),
                    S(160, "web.1", B, 210.0, q),
                    S(165, "web.1", A, 620.0, q),
                    R14(165, "web.1"),
                    S(180, "web.1", B, 220.0, q),
                ],
                vec![],
            ),
            (
                "late lines of a restarted instance: no second recovered, no retry onto B",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 600.0, q),
                    S(30, "web.1", B, 200.0, q),
                    S(35, "web.1", A, 700.0, q),
                    Mem(35, "web.1", 700.0, 136.7),
                    R14(35, "web.1"),
                    S(50, "web.1", B, 210.0, q),
                    S(400, "web.1", B, 215.0, q),
                    S(680, "web.1", B, 218.0, q),
                    S(700, "web.1", A, 700.0, q),
                    S(720, "web.1", B, 220.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:recovered",
                ],
            ),
            (
                "out of order and duplicated samples change nothing",
                Policy {
                    consecutive: 2,
                    ..p()
                },
                vec!["web"],
                vec![
                    S(40, "web.1", A, 300.0, q),
                    S(20, "web.1", A, 600.0, q),
                    S(60, "web.1", A, 600.0, q),
                    S(60, "web.1", A, 600.0, q),
                    S(60, "web.1", A, 600.0, q),
                ],
                vec!["web.1:over_threshold"],
            ),
            (
                "a newer instance within the hold drops the decision: no DELETE that would hit it",
                p(),
                vec!["web"],
                vec![
                    Hold,
                    S(0, "web.1", A, 600.0, q),
                    S(5, "web.1", B, 300.0, q),
                    Drop("web.1"),
                    S(25, "web.1", B, 600.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:skipped:replaced",
                    "web.1:no order",
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                ],
            ),
            (
                "re-check drops the order: window not consumed, no recovered, the new instance is judged",
                p(),
                vec!["web"],
                vec![
                    Hold,
                    S(0, "web.1", A, 600.0, q),
                    S(10, "web.1", B, 300.0, q),
                    Drop("web.1"),
                    S(25, "web.1", B, 600.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:skipped:replaced",
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                ],
            ),
            (
                "recovered only once the restart is confirmed",
                p(),
                vec!["web"],
                vec![
                    Hold,
                    S(0, "web.1", A, 600.0, q),
                    S(30, "web.1", B, 200.0, q),
                    Ok("web.1"),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:recovered",
                ],
            ),
            (
                "dry run reports what it would do, once per window",
                Policy {
                    dry_run: true,
                    ..p()
                },
                vec!["web"],
                vec![S(0, "web.1", A, 600.0, q), S(20, "web.1", A, 600.0, q)],
                vec!["web.1:over_threshold", "web.1:skipped:dry_run"],
            ),
            (
                "max_parallel 1: the second dyno is deferred until the first settles",
                Policy {
                    max_parallel: Parallelism::Count(1),
                    ..p()
                },
                vec!["web"],
                vec![
                    S(0, "web.1", A, 600.0, q),
                    S(1, "web.2", B, 600.0, q),
                    S(21, "web.2", B, 600.0, q),
                    S(130, "web.2", B, 600.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.2:over_threshold",
                    "web.2:skipped:deferred",
                    "web.1:restart:threshold",
                    "web.2:restart:threshold",
                ],
            ),
            (
                "flapping after more than flap_limit restarts in flap_window",
                Policy {
                    flap_limit: 2,
                    restart_window: jiff::SignedDuration::from_secs(60),
                    ..p()
                },
                vec!["web"],
                vec![
                    S(0, "web.1", A, 600.0, q),
                    S(61, "web.1", A, 600.0, q),
                    S(122, "web.1", A, 600.0, q),
                ],
                // Within one observation, reported events come before the
                // order that the restarter then carries out.
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:restart:retry",
                    "web.1:flapping",
                    "web.1:restart:retry",
                ],
            ),
            (
                "state lines alone decide nothing",
                p(),
                vec!["web"],
                vec![Restarting(0, "web.1")],
                vec![],
            ),
            // ---- lineage from evidence, every order of arrival (issue 17) ----
            (
                "started mid-overlap, the new instance seen first: the old one's 600 MB orders nothing; the new one is judged once the old one stopped",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", B, 200.0, q),
                    S(5, "web.1", A, 600.0, q),
                    S(20, "web.1", B, 210.0, q),
                    S(25, "web.1", A, 610.0, q),
                    R14(25, "web.1"),
                    S(40, "web.1", B, 220.0, q),
                    S(60, "web.1", B, 230.0, q),
                    S(80, "web.1", B, 240.0, q),
                    S(100, "web.1", B, 600.0, q),
                ],
                vec![
                    // The R14 is real (one of the two swaps) but orders nothing.
                    "web.1:r14",
                    "web.1:skipped:unclear_instance",
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                ],
            ),
            (
                "started mid-overlap, the old instance seen first: over quota while unclear orders nothing; the new one is current once the old one stopped",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 300.0, q),
                    S(5, "web.1", B, 200.0, q),
                    S(20, "web.1", A, 600.0, q),
                    S(25, "web.1", B, 210.0, q),
                    S(45, "web.1", B, 220.0, q),
                    S(65, "web.1", B, 230.0, q),
                    S(85, "web.1", B, 240.0, q),
                    // A late line of A changes nothing now.
                    S(90, "web.1", A, 700.0, q),
                    S(105, "web.1", B, 250.0, q),
                ],
                vec!["web.1:over_threshold", "web.1:skipped:unclear_instance"],
            ),
            (
                "a birth line between them orders them at once",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 300.0, q),
                    Start(3, "web.1"),
                    S(5, "web.1", B, 200.0, q),
                    S(20, "web.1", A, 600.0, q),
                    S(25, "web.1", B, 600.0, q),
                ],
                vec!["web.1:over_threshold", "web.1:restart:threshold"],
            ),
            (
                "a birth line before both orders nothing",
                p(),
                vec!["web"],
                vec![
                    Start(0, "web.1"),
                    S(5, "web.1", A, 300.0, q),
                    S(8, "web.1", B, 200.0, q),
                    S(25, "web.1", A, 600.0, q),
                ],
                vec!["web.1:over_threshold", "web.1:skipped:unclear_instance"],
            ),
            // ---- the hostile review's overlaps ------------------------------
            (
                "the new instance's up line after its first sample orders nothing: the old one's 900 MB is not restarted",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", B, 200.0, q),
                    Up(3, "web.1"),
                    S(8, "web.1", A, 900.0, q),
                    S(20, "web.1", B, 210.0, q),
                    S(28, "web.1", A, 910.0, q),
                ],
                // The old one is the contender: its lines decide nothing.
                vec![],
            ),
            (
                "a lost sample (a 31 s gap) does not make the old instance a newcomer",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", B, 200.0, q),
                    S(20, "web.1", B, 210.0, q),
                    S(51, "web.1", A, 900.0, q),
                    S(60, "web.1", B, 220.0, q),
                    S(71, "web.1", A, 910.0, q),
                ],
                vec![],
            ),
            (
                "the old instance's R14 right after the new one's sample is not the new one's",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 600.0, q),
                    S(60, "web.1", B, 200.0, q),
                    S(70, "web.1", A, 700.0, q),
                    S(70, "web.1", B, 210.0, q),
                    R14(71, "web.1"),
                    S(90, "web.1", B, 215.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:recovered",
                ],
            ),
            (
                "an instance taken for replaced that keeps reporting while the current one is silent ten minutes is judged again",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 300.0, q),
                    S(150, "web.1", B, 200.0, q),
                    S(160, "web.1", A, 300.0, q),
                    // Two minutes of B's silence is a gap, not an end.
                    S(300, "web.1", A, 900.0, q),
                    S(760, "web.1", A, 900.0, q),
                ],
                vec!["web.1:over_threshold", "web.1:restart:threshold"],
            ),
            // ---- repeated lines (log-session reconnects) -----------------
            (
                "an R15 or R14 delivered again is reported once",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 300.0, q),
                    R15(5, "web.1"),
                    R15(5, "web.1"),
                    R15(4, "web.1"),
                ],
                vec!["web.1:r15", "web.1:restart:r15"],
            ),
            // ---- unknown outcomes -------------------------------------
            (
                "an unknown outcome counts as made: one more call only when the same instance still reports 2 min later, none after that within the window",
                p(),
                vec!["web"],
                vec![
                    Hold,
                    S(0, "web.1", A, 600.0, q),
                    Unknown("web.1"),
                    S(20, "web.1", A, 600.0, q),
                    S(60, "web.1", A, 600.0, q),
                    S(100, "web.1", A, 600.0, q),
                    S(121, "web.1", A, 600.0, q),
                    Unknown("web.1"),
                    S(141, "web.1", A, 600.0, q),
                    S(300, "web.1", A, 600.0, q),
                    S(500, "web.1", A, 600.0, q),
                    S(722, "web.1", A, 600.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:outcome unknown",
                    "web.1:restart:retry",
                    "web.1:outcome unknown",
                    "web.1:restart:retry",
                ],
            ),
            (
                "an unknown outcome, then the replacement reports: recovered, no second call",
                p(),
                vec!["web"],
                vec![
                    Hold,
                    S(0, "web.1", A, 600.0, q),
                    Unknown("web.1"),
                    S(40, "web.1", B, 200.0, q),
                    S(130, "web.1", B, 210.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:outcome unknown",
                    "web.1:recovered",
                ],
            ),
            // ---- forgetting on the log clock ---------------------------
            (
                "a window longer than an hour holds across an hour of silence",
                Policy {
                    restart_window: jiff::SignedDuration::from_hours(3),
                    ..p()
                },
                vec!["web"],
                vec![
                    S(0, "web.1", A, 600.0, q),
                    S(10, "web.2", B, 100.0, q),
                    S(3900, "web.2", B, 100.0, q),
                    S(4000, "web.1", A, 600.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:skipped:same_instance",
                ],
            ),
            (
                "a dyno silent past an hour and its windows is forgotten on the log clock",
                p(),
                vec!["web"],
                vec![
                    S(0, "web.1", A, 600.0, q),
                    S(10, "web.2", B, 100.0, q),
                    S(3700, "web.2", B, 100.0, q),
                    S(3800, "web.1", A, 600.0, q),
                ],
                vec![
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                    "web.1:over_threshold",
                    "web.1:restart:threshold",
                ],
            ),
        ];
        let mut failed = Vec::new();
        for (name, policy, types, input, want) in cases {
            let got = run(policy, &types, &input);
            if got != want {
                failed.push(format!("case: {name}\n  got:  {got:?}\n  want: {want:?}"));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    #[test]
    fn an_episode_is_one_incident_from_over_to_recovered() {
        let mut e = Engine::new(
            AppName::parse("t").unwrap(),
            AppPolicy::default(),
            Confirmation::OnDecision,
        );
        let s = |t: i64, inst: &str, total: f64| web1(t, inst, of_512(total), None);
        let mut events = Vec::new();
        for o in [
            s(0, A, 300.0),
            s(20, A, 600.0),
            s(60, B, 200.0),
            s(80, B, 210.0),
        ] {
            events.extend(e.apply(&[o], at(100)).events);
        }
        // A later episode of the same dyno is another incident.
        events.extend(e.apply(&[s(2000, B, 700.0)], at(2000)).events);
        events.extend(e.finish().events);
        let tagged: Vec<(String, Option<String>)> = events
            .iter()
            .map(|e| (e.event.as_str().to_owned(), e.incident.clone()))
            .collect();
        let first = Some(format!("web.1-{}", at(20).as_second()));
        let second = Some(format!("web.1-{}", at(2000).as_second()));
        assert_eq!(
            tagged,
            [
                ("over_threshold".to_owned(), first.clone()),
                ("restart".to_owned(), first.clone()),
                ("recovered".to_owned(), first),
                ("over_threshold".to_owned(), second.clone()),
                ("restart".to_owned(), second),
            ]
        );
    }

    #[test]
    fn another_apps_number_is_ignored_only_while_the_apps_own_reports() {
        let s = |t: i64, inst: &str, number: u64, total: f64| {
            web1(t, inst, of_512(total), Some(number))
        };
        let kinds = |d: crate::decide::engine::Decisions| -> Vec<&'static str> {
            d.events.iter().map(|e| e.event.as_str()).collect()
        };
        // The app reports under its recorded number: another number is
        // another app's drain.
        let mut e = Engine::new(
            AppName::parse("t").unwrap(),
            AppPolicy::default(),
            Confirmation::OnDecision,
        );
        e.set_app_number(Some(1));
        let mut d = e.apply(&[s(0, A, 1, 200.0), s(10, B, 99, 900.0)], at(20));
        assert_eq!(d.ignored.foreign, 1);
        assert!(kinds(std::mem::take(&mut d)).is_empty());
        // A stale recorded number (nothing reports under it): judged, said.
        let mut e = Engine::new(
            AppName::parse("t").unwrap(),
            AppPolicy::default(),
            Confirmation::OnDecision,
        );
        e.set_app_number(Some(1));
        let mut d = e.apply(&[s(0, A, 1234, 900.0)], at(20));
        d.events.extend(e.finish().events);
        assert_eq!(d.ignored.foreign, 0);
        assert!(
            d.warnings.iter().any(|w| w.contains("looks stale")),
            "{:?}",
            d.warnings
        );
        assert_eq!(kinds(d), ["over_threshold", "restart"]);
    }

    #[test]
    fn history_belongs_to_one_instance() {
        // A flat old instance at 120 MB, then a flat new one at 330 of 512:
        // no trend, no `predicted` restart on the new one's first samples.
        let app = AppPolicy {
            defaults: Policy {
                predict: Some(jiff::SignedDuration::from_mins(5)),
                ..Policy::default()
            },
            ..AppPolicy::default()
        };
        let mut e = Engine::new(AppName::parse("t").unwrap(), app, Confirmation::OnDecision);
        let sample = |t: i64, inst: &str, total: f64| web1(t, inst, of_512(total), None);
        let mut events = Vec::new();
        for i in 0..10 {
            events.extend(e.apply(&[sample(i * 20, A, 120.0)], at(0)).events);
        }
        for i in 10..14 {
            events.extend(e.apply(&[sample(i * 20, B, 330.0)], at(0)).events);
        }
        events.extend(e.finish().events);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn the_formation_quota_follows_a_resize() {
        let mut e = Engine::new(
            AppName::parse("t").unwrap(),
            AppPolicy::default(),
            Confirmation::OnDecision,
        );
        // Legacy lines: no quota of their own.
        let legacy = |t: i64, inst: &str, total: f64| {
            let memory = Memory {
                total: Some(Megabytes(total)),
                ..Memory::default()
            };
            web1(t, inst, memory, None)
        };
        e.set_type_quota("web", Megabytes(512.0));
        e.apply(&[legacy(0, A, 300.0)], at(0));
        // Resized to 1024 MB: the next instance's 600 MB is under its quota.
        e.set_type_quota("web", Megabytes(1024.0));
        let mut events = e
            .apply(&[legacy(40, B, 600.0), legacy(60, B, 610.0)], at(0))
            .events;
        events.extend(e.finish().events);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(
            e.watcher()
                .dyno(&DynoName::parse("web.1").unwrap())
                .unwrap()
                .quota(),
            Some(Megabytes(1024.0))
        );
    }

    #[test]
    fn swap_and_predict_triggers() {
        let q = Some(Megabytes(512.0));
        let app = AppPolicy {
            defaults: Policy {
                swap_threshold: Some(Megabytes(64.0)),
                predict: Some(jiff::SignedDuration::from_mins(5)),
                ..Policy::default()
            },
            ..AppPolicy::default()
        };
        let mut w = Watcher::new(AppName::parse("t").unwrap(), app);
        let sample = |t: i64, total: f64, swap: f64| Observation {
            at: at(t),
            kind: ObservationKind::Sample(Sample {
                dyno: DynoName::parse("web.1"),
                instance: Some(A.into()),
                memory: Memory {
                    total: Some(Megabytes(total)),
                    swap: Some(Megabytes(swap)),
                    quota: q,
                    ..Memory::default()
                },
                malformed: false,
                app_number: None,
            }),
        };
        let reasons = |evs: Vec<Event>| {
            evs.iter()
                .filter_map(|e| e.reason.map(|r| r.as_str()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            reasons(w.observe(&sample(0, 300.0, 70.0).kind, at(0))),
            ["swap"]
        );
    }

    /// The default `predict` (a 2-minute horizon over a 10-minute trend of the
    /// instance, floor 85 %) on 512 MB dynos, one sample per 20 s. Returns
    /// the restart reasons and the sample index of the first.
    fn predicted(curve: impl Fn(i64) -> f64, samples: i64) -> Option<(i64, f64, String)> {
        let mut w = Watcher::new(AppName::parse("t").unwrap(), AppPolicy::default());
        for i in 0..samples {
            let total = curve(i);
            let kind = ObservationKind::Sample(Sample {
                dyno: DynoName::parse("web.1"),
                instance: Some(A.into()),
                memory: Memory {
                    total: Some(Megabytes(total)),
                    quota: Some(Megabytes(512.0)),
                    ..Memory::default()
                },
                malformed: false,
                app_number: None,
            });
            let events = w.observe(&kind, at(i * 20));
            if let Some(r) = events.iter().find(|e| e.event == EventKind::Restart) {
                return Some((i, total, r.reason.map_or("", |r| r.as_str()).to_owned()));
            }
        }
        None
    }

    #[test]
    fn predict_by_default_acts_on_a_leak_before_the_quota_only() {
        // A leak of 12 MB a minute from 360 MB: over the quota at 12.7 min
        // (sample 38). Predicted once the trend has ten minutes of the
        // instance and the quota is under two minutes away.
        let leak = |i: i64| 360.0 + 4.0 * i as f64;
        let (i, mb, reason) = predicted(leak, 60).unwrap();
        assert_eq!(reason, "predicted");
        assert!((30..38).contains(&i) && mb < 512.0, "sample {i}: {mb} MB");
        // The same leak with ±3 MB of noise and a spike ten minutes back:
        // still predicted.
        let noisy = |spike_at: i64| {
            move |i: i64| {
                leak(i) + [3.0, -3.0, 1.0][i as usize % 3] + if i == spike_at { 40.0 } else { 0.0 }
            }
        };
        let reason = |p: Option<(i64, f64, String)>| p.map(|p| p.2);
        assert_eq!(reason(predicted(noisy(2), 60)), Some("predicted".into()));
        // A spike within the window: memory fell back, so the trend stands
        // down and the threshold acts, as without predict.
        assert_eq!(reason(predicted(noisy(28), 60)), Some("threshold".into()));

        let never: [(&str, &dyn Fn(i64) -> f64); 5] = [
            // Under the floor (85 % = 435 MB), however steep.
            ("below the floor", &|i| 200.0 + (4.0 * i as f64).min(230.0)),
            // A plateau at 94 % with spikes to 99 %.
            ("spikes", &|i| if i % 10 == 0 { 507.0 } else { 480.0 }),
            // Climbs 2 % a minute to 95 % and drops back (GC sawtooth).
            ("sawtooth", &|i| 384.0 + 3.4 * (i % 30) as f64),
            // Warms up fast to a plateau at 96 %.
            ("warm-up", &|i| 491.0 - 300.0 * (-(i as f64) / 9.0).exp()),
            // Too few samples: one minute of a steep climb, then flat.
            ("short climb", &|i| 440.0 + 6.0 * i.min(9) as f64),
        ];
        for (name, curve) in never {
            assert_eq!(predicted(curve, 360), None, "{name}");
        }
    }
}
