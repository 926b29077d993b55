//! The restart policy: every knob in one struct, and the pure decision.
//!
//! Nothing here does I/O, reads the clock or is async. Time comes in as an
//! argument (`now`), so replay drives it from the log and tests from a table.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use jiff::{SignedDuration, Timestamp};

use crate::decide::ring::SampleRing;
use crate::decide::state::{DynoState, RestartMark, UNKNOWN_GRACE};
use crate::domain::event::{Event, EventKind, Reason};
use crate::domain::{AppName, Megabytes};

/// When a sample counts as "too big".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Percent of the dyno's `memory_quota` (100 = at quota).
    Percent(f64),
    /// An absolute size.
    Absolute(Megabytes),
}

impl Threshold {
    /// The limit in MB for a dyno with this quota, if it can be known.
    pub fn limit(self, quota: Option<Megabytes>) -> Option<Megabytes> {
        match self {
            Self::Absolute(m) => Some(m),
            // A zero quota is no quota: judging against it would restart everything.
            Self::Percent(p) => quota
                .filter(|q| q.0 > 0.0)
                .map(|q| Megabytes(q.0 * p / 100.0)),
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Percent(p) => write!(f, "{p}%"),
            Self::Absolute(m) => write!(f, "{m}"),
        }
    }
}

/// How many restarts of one app and type may be in progress at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Parallelism {
    Percent(f64),
    Count(u32),
}

impl Parallelism {
    /// Allowed in-progress restarts given how many dynos of the type are live.
    pub fn allowed(self, live: usize) -> usize {
        match self {
            Self::Count(n) => n as usize,
            Self::Percent(p) => ((live as f64 * p / 100.0).ceil() as usize).max(1),
        }
    }
}

impl std::fmt::Display for Parallelism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Percent(p) => write!(f, "{p}%"),
            Self::Count(n) => write!(f, "{n}"),
        }
    }
}

/// Every policy knob for one process type (SPEC §6). Defaults are the SPEC's.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Restart when `memory_total` is above this. Default `100%` of quota.
    pub threshold: Threshold,
    /// Restart on an `Error R14` line. Default on.
    pub on_r14: bool,
    /// Restart on an `Error R15` line. Default on.
    pub on_r15: bool,
    /// Restart when `memory_swap` is above this. Default off.
    pub swap_threshold: Option<Megabytes>,
    /// Consecutive over-threshold samples needed. Default 1.
    pub consecutive: u32,
    /// Restart when the instance's trend says `memory_total` passes the quota
    /// within this (`None`: off). Default [`PREDICT_HORIZON`]: see
    /// [`predicted_crossing`] for what the trend is and why this default.
    pub predict: Option<SignedDuration>,
    /// Percent of the quota below which the trend never acts. Default
    /// [`PREDICT_FLOOR`]: healthy dynos sit lower than this for days.
    pub predict_floor: f64,
    /// How far back the trend looks; it needs samples of the current
    /// instance over nine tenths of it at least. Default [`PREDICT_WINDOW`].
    pub predict_window: SignedDuration,
    /// At most one restart per process name per window. Default 10 min.
    pub restart_window: SignedDuration,
    /// Restarts of one app and type in progress at once. Default 25%.
    pub max_parallel: Parallelism,
    /// A restart is in progress until the new instance reports or this passes.
    pub settle: SignedDuration,
    /// More restarts than this in `flap_window` is reported as flapping.
    pub flap_limit: u32,
    pub flap_window: SignedDuration,
    /// Decide and report, never call the API.
    pub dry_run: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            threshold: Threshold::Percent(100.0),
            on_r14: true,
            on_r15: true,
            swap_threshold: None,
            consecutive: 1,
            predict: Some(PREDICT_HORIZON),
            predict_floor: PREDICT_FLOOR,
            predict_window: PREDICT_WINDOW,
            restart_window: SignedDuration::from_mins(10),
            max_parallel: Parallelism::Percent(25.0),
            settle: SignedDuration::from_mins(2),
            flap_limit: 3,
            flap_window: SignedDuration::from_hours(1),
            dry_run: false,
        }
    }
}

/// Which process types an app watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DynoTypes {
    /// Exactly these types.
    List(Vec<String>),
    /// `*`: every long-running process type — never the one-off dynos
    /// (`run`, `release`, `scheduler`, `console`): restarting the release
    /// phase fails the deploy, and a one-off ends by itself.
    All,
}

impl DynoTypes {
    /// `web,worker`, `web worker`, `["web", "worker"]` or `*`. A name that
    /// is not a Heroku process type (letters, digits, `_`, `-`) is refused.
    pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut list: Vec<String> = Vec::new();
        let mut all = false;
        for item in items
            .into_iter()
            .flat_map(|s| s.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|s| !s.is_empty())
        {
            if item == "*" {
                all = true;
            } else if !is_process_type(item) {
                return Err(format!(
                    "{item:?} is not a process type name: use letters, digits, _ and - (web, worker, slow_worker), or * for every type"
                ));
            } else if !list.iter().any(|t| t == item) {
                list.push(item.to_owned());
            }
        }
        Ok(if all { Self::All } else { Self::List(list) })
    }

    pub fn watches(&self, process_type: &str) -> bool {
        match self {
            Self::List(l) => l.iter().any(|t| t == process_type),
            Self::All => !ONE_OFF_TYPES.contains(&process_type),
        }
    }
}

/// Process types of one-off dynos, which `*` never watches (name them to).
pub const ONE_OFF_TYPES: [&str; 4] = ["run", "release", "scheduler", "console"];

impl Default for DynoTypes {
    fn default() -> Self {
        Self::List(vec!["web".to_owned()])
    }
}

/// A Heroku process type name: letters, digits, `_` and `-`, at most 64.
pub fn is_process_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `slow-worker`, `SLOW_WORKER` and `slow_worker` name the same settings
/// (config vars cannot hold `-` and are written in capitals).
fn same_type(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let norm = |c: u8| {
                if c == b'-' {
                    b'_'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            norm(x) == norm(y)
        })
}

/// The effective policy of one app: watched types, defaults, per-type overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct AppPolicy {
    pub dyno_types: DynoTypes,
    pub defaults: Policy,
    /// Overrides per process type, keyed as configured (`worker`, or
    /// `slow_worker` from `SLOW_WORKER_…`; matched ignoring case and `-`/`_`).
    pub per_type: BTreeMap<String, Policy>,
    /// Lines but no memory sample for this long: the app is `blind`.
    pub blind_after: SignedDuration,
}

impl Default for AppPolicy {
    fn default() -> Self {
        Self {
            dyno_types: DynoTypes::default(),
            defaults: Policy::default(),
            per_type: BTreeMap::new(),
            blind_after: SignedDuration::from_mins(5),
        }
    }
}

impl AppPolicy {
    /// The policy for a process type; `None` if the type is not watched.
    pub fn for_type(&self, process_type: &str) -> Option<&Policy> {
        self.dyno_types
            .watches(process_type)
            .then(|| self.judging(process_type))
    }

    /// Knobs used for types that are not watched (to judge "over" for display).
    pub fn judging(&self, process_type: &str) -> &Policy {
        self.per_type
            .get(process_type)
            .or_else(|| {
                self.per_type
                    .iter()
                    .find(|(t, _)| same_type(t, process_type))
                    .map(|(_, p)| p)
            })
            .unwrap_or(&self.defaults)
    }
}

/// The quota implied by `mem=N(P%)`, snapped to the nearest real dyno size
/// when within 10% of it (N is truncated and P rounded, and real lines are
/// off by more than that arithmetic suggests).
pub fn quota_from_percent(memory: Megabytes, percent: f64) -> Megabytes {
    let raw = memory.0 * 100.0 / percent;
    let nearest = crate::domain::DYNO_SIZES
        .iter()
        .map(|(_, mb)| *mb)
        .min_by(|a, b| (a - raw).abs().total_cmp(&(b - raw).abs()))
        .unwrap_or(raw);
    if (nearest - raw).abs() <= nearest * 0.10 {
        Megabytes(nearest)
    } else {
        Megabytes(raw.round())
    }
}

/// Why the policy wants a restart of a dyno, before the window checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Threshold,
    Swap,
    Predicted,
    R14,
    R15,
}

impl Trigger {
    fn reason(self) -> Reason {
        match self {
            Self::Threshold => Reason::Threshold,
            Self::Swap => Reason::Swap,
            Self::Predicted => Reason::Predicted,
            Self::R14 => Reason::R14,
            Self::R15 => Reason::R15,
        }
    }
}

/// Judges the dyno's latest memory against the knobs. `None`: not over (or
/// cannot be judged).
pub fn judge_memory(policy: &Policy, state: &DynoState) -> Option<Trigger> {
    let total = state.memory.total?;
    if let Some(limit) = policy.threshold.limit(state.quota())
        && total.0 > limit.0
    {
        return Some(Trigger::Threshold);
    }
    if let (Some(limit), Some(swap)) = (policy.swap_threshold, state.memory.swap)
        && swap.0 > limit.0
    {
        return Some(Trigger::Swap);
    }
    if let Some(quota) = state.quota()
        && predicted_crossing(policy, &state.history, quota).is_some()
    {
        return Some(Trigger::Predicted);
    }
    None
}

/// Default `predict`: six sample intervals. Long enough that a leak climbing
/// a few percent of the quota a minute is restarted before it swaps; short
/// enough that a GC sawtooth or a wandering dyno that turns at 95 % is not
/// (the climb it would need, 2.5 % of the quota a minute *at* 95 %, is the
/// leak's). Chosen from the simulator's table (`cargo bench --bench predict`).
pub const PREDICT_HORIZON: SignedDuration = SignedDuration::from_mins(2);
/// Default `predict_floor`, percent of the quota: many healthy Ruby and JVM
/// dynos sit at 85–95 % for days, so the floor does not keep them safe by
/// itself — the trend does; the floor keeps a dyno with room from ever being
/// restarted on a trend.
pub const PREDICT_FLOOR: f64 = 85.0;
/// Default `predict_window`: ten minutes (30 samples) of the instance for the
/// trend, which acts only once the instance has logged for that long (nine
/// tenths of it, for jitter): the first minutes of an instance are its
/// warm-up, whose climb is steep and stops by itself.
pub const PREDICT_WINDOW: SignedDuration = SignedDuration::from_mins(10);
/// Percent of the quota memory may fall within the window and still be a
/// leak's trend: a leak's samples wobble by a percent or so; a GC cycle or a
/// spike passing gives back far more.
const PREDICT_DRAWDOWN: f64 = 3.0;
/// Fewest samples a trend is fitted to, whatever the window: an L10 drop or
/// a short window must not leave two points to draw a line through.
const PREDICT_MIN_POINTS: usize = 8;

/// What the trend of an instance says, when it says the quota is passed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crossing {
    /// The fitted memory now (MB): the median line's value at the last sample.
    pub level: Megabytes,
    /// Growth in MB per minute (Theil–Sen: the median of pairwise slopes).
    pub mb_per_min: f64,
    /// When the fitted line reaches the quota, from the last sample.
    pub within: SignedDuration,
}

/// Will the current instance's `memory_total` pass `quota` within
/// `policy.predict`? `Some` with the figures if so.
///
/// Each condition is there for a dyno that must never be restarted:
/// - the last sample and the fitted level are at or above `predict_floor`,
///   and under the quota (over it, the threshold and R14 decide);
/// - samples of this instance (the history is per instance) cover nine
///   tenths of `predict_window` at least, [`PREDICT_MIN_POINTS`] of them or
///   more: a fresh instance's warm-up or one spike is no trend;
/// - memory did not fall by more than [`PREDICT_DRAWDOWN`] within the window;
/// - the slope is Theil–Sen's, the median of all pairwise slopes, and the
///   level the median of the residuals: short spikes and noise move
///   neither, where a least-squares line follows every spike;
/// - the climb does not slow down: a dyno warming up to a plateau under the
///   quota decelerates, a leak does not (see the body);
/// - the level is a new high for the instance: a sample older than the
///   window (among its last [`HISTORY`](crate::decide::ring::HISTORY)) at
///   or above it shows the instance has been here and came back
///   down (a GC sawtooth, a wave, a spike). A leak never comes back down;
///   a dyno that did is judged by the threshold and R14 alone.
pub fn predicted_crossing(
    policy: &Policy,
    history: &SampleRing,
    quota: Megabytes,
) -> Option<Crossing> {
    let horizon = policy.predict?;
    let (now, latest) = history.last()?;
    let floor = quota.0 * policy.predict_floor / 100.0;
    if !(quota.0 > 0.0 && latest >= floor && latest < quota.0) {
        return None;
    }
    let cutoff = now - policy.predict_window;
    // Seconds before the last sample (≤ 0) and MB.
    let recent: Vec<(f64, f64)> = history
        .iter()
        .skip_while(|(t, _)| *t < cutoff)
        .map(|(t, y)| (-now.duration_since(t).as_secs_f64(), y))
        .collect();
    let covered = recent
        .first()
        .is_some_and(|(x, _)| -x >= (policy.predict_window * 9 / 10).as_secs_f64());
    if recent.len() < PREDICT_MIN_POINTS || !covered {
        return None;
    }
    // A leak does not give memory back: a fall of more than noise within the
    // window (a GC cycle, a spike passing) says this climb may turn too.
    let mut high = f64::MIN;
    for (_, y) in &recent {
        high = high.max(*y);
        if high - y > quota.0 * PREDICT_DRAWDOWN / 100.0 {
            return None;
        }
    }
    // A leak grows steadily; a dyno settling to its plateau (warming up
    // after boot, a wave turning over) grows ever slower, and a line through
    // all of it points past where it is heading. So the newer half of the
    // window must climb at least half as fast as the older half, and the
    // projection uses the slower of the newer half and the whole window.
    let half = recent.partition_point(|(x, _)| *x < recent[0].0 / 2.0);
    let (older, newer) = recent.split_at(half);
    let (Some(whole), Some(old_slope), Some(new_slope)) =
        (theil_sen(&recent), theil_sen(older), theil_sen(newer))
    else {
        return None;
    };
    if new_slope < old_slope / 2.0 {
        return None;
    }
    let slope = whole.min(new_slope);
    if slope <= 0.0 {
        return None;
    }
    let mut residuals: Vec<f64> = recent.iter().map(|(x, y)| y - slope * x).collect();
    let level = median(&mut residuals)?;
    if level < floor || level >= quota.0 {
        return None;
    }
    // The ring's window is this policy's (`record_sample`): every sample
    // older than the cut-off has aged into its maxima.
    if history.aged_max().is_some_and(|y| y >= level) {
        return None;
    }
    let secs = (quota.0 - level) / slope;
    (secs <= horizon.as_secs_f64()).then(|| Crossing {
        level: Megabytes(level),
        mb_per_min: slope * 60.0,
        within: SignedDuration::from_secs_f64(secs),
    })
}

/// Theil–Sen slope of `(x, y)` points in x order: the median of the slopes
/// between every pair. `None` for fewer than three points.
fn theil_sen(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let mut slopes = Vec::with_capacity(points.len() * (points.len() - 1) / 2);
    for (i, (xi, yi)) in points.iter().enumerate() {
        for (xj, yj) in &points[i + 1..] {
            if xj > xi {
                slopes.push((yj - yi) / (xj - xi));
            }
        }
    }
    median(&mut slopes)
}

/// The median (the upper one of an even count); `None` for no values.
fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    let (_, m, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    Some(*m)
}

/// Context the decision needs about the dyno's siblings (same app and type).
#[derive(Debug, Clone, Copy)]
pub struct Siblings {
    /// Dynos of the type that reported in the last 5 minutes.
    pub live: usize,
    /// Dynos of the type (other than this one) with a restart in progress.
    pub restarting: usize,
}

/// The decision for a dyno that a trigger fired for: a `restart` event (the
/// order) or a `skipped` one, plus `flapping` when restarts come too often.
/// Updates the dyno's restart bookkeeping. Returns no event when the same
/// skip was already reported for this instance.
pub fn decide_restart(
    app: &AppName,
    policy: Option<&Policy>,
    state: &mut DynoState,
    trigger: Trigger,
    siblings: Siblings,
    now: Timestamp,
    confirmed: bool,
) -> Vec<Event> {
    let Some(policy) = policy else {
        return skip(app, state, trigger, Reason::TypeNotWatched, None, now);
    };
    let call = match may_call(app, policy, state, trigger, siblings, now) {
        ControlFlow::Continue(call) => call,
        ControlFlow::Break(events) => return events,
    };
    mark_restart(policy, state, call, now, confirmed);
    restart_events(app, policy, state, call, now)
}

/// A restart the decision orders: why, and whether it is the one more call
/// a restart with an unknown outcome allows.
#[derive(Debug, Clone, Copy)]
struct Call {
    reason: Reason,
    second_call: bool,
}

/// `skipped` for `why`, unless the dyno's last skip was for the same
/// reason: a skip repeated on every sample would say nothing new.
fn skip(
    app: &AppName,
    state: &mut DynoState,
    trigger: Trigger,
    why: Reason,
    dry_run: Option<bool>,
    now: Timestamp,
) -> Vec<Event> {
    if state.last_skip == Some(why) {
        return Vec::new();
    }
    state.last_skip = Some(why);
    let mut e = event_for(app, state, EventKind::Skipped, now);
    e.reason = Some(why);
    e.dry_run = dry_run;
    e.detail = Some(format!("trigger: {}", trigger.reason().as_str()));
    vec![e]
}

/// Whether a restart may be ordered now, in the order the checks rank: an
/// unclear lineage, the API's back-off, the restart window (with the one
/// more call an unknown outcome allows), then the siblings restarting.
/// `Break` holds what to report instead — possibly nothing.
fn may_call(
    app: &AppName,
    policy: &Policy,
    state: &mut DynoState,
    trigger: Trigger,
    siblings: Siblings,
    now: Timestamp,
) -> ControlFlow<Vec<Event>, Call> {
    let skipped = |state: &mut DynoState, why: Reason| -> ControlFlow<Vec<Event>, Call> {
        ControlFlow::Break(skip(app, state, trigger, why, Some(policy.dry_run), now))
    };
    if state.contender.is_some() {
        return ControlFlow::Break(unclear_instance(app, policy, state, trigger, now));
    }
    if let Some(t) = state.trouble().retry_after
        && now < t
    {
        return skipped(state, Reason::Backoff);
    }
    let mut call = Call {
        reason: trigger.reason(),
        second_call: false,
    };
    if let Some(last) = &state.trouble().last_restart {
        let in_window = now.duration_since(last.at) < policy.restart_window;
        let same = last.instance == state.instance;
        // A call whose outcome is unknown counts as made until the same
        // instance is still reporting well past the time a restart takes;
        // then one more call, once per incident.
        let unknown_expired = last.unknown
            && !last.second_call
            && now.duration_since(last.at) >= UNKNOWN_GRACE.max(policy.settle);
        match (same, in_window) {
            (true, true) if unknown_expired => {
                call.reason = Reason::Retry;
                call.second_call = true;
            }
            // Still the instance we restarted: expected while the restart is
            // in progress (nothing to report); after `settle` it did not take.
            (true, true) if state.restart_in_progress(policy, now) || last.unknown => {
                return ControlFlow::Break(Vec::new());
            }
            (true, true) => return skipped(state, Reason::SameInstance),
            (false, true) => return skipped(state, Reason::Window),
            (true, false) => call.reason = Reason::Retry,
            (false, false) => {}
        }
    }
    if siblings.restarting >= policy.max_parallel.allowed(siblings.live) {
        return skipped(state, Reason::Deferred);
    }
    ControlFlow::Continue(call)
}

/// A restart is never ordered on an instance that may be the old one: while
/// two instances report and nothing shows which is newer, the decision is
/// skipped, once, saying which two.
fn unclear_instance(
    app: &AppName,
    policy: &Policy,
    state: &mut DynoState,
    trigger: Trigger,
    now: Timestamp,
) -> Vec<Event> {
    let Some(c) = &state.contender else {
        return Vec::new();
    };
    if state.last_skip == Some(Reason::UnclearInstance) {
        return Vec::new();
    }
    let detail = format!(
        "trigger: {}; two instances report ({} and {}) and nothing yet shows which is the newer: nothing is decided until one of them stops reporting",
        trigger.reason().as_str(),
        state.instance.as_deref().unwrap_or("?"),
        c.id
    );
    let mut e = skip(
        app,
        state,
        trigger,
        Reason::UnclearInstance,
        Some(policy.dry_run),
        now,
    );
    for ev in &mut e {
        ev.detail = Some(detail.clone());
    }
    e
}

/// The bookkeeping of an ordered restart: the mark the window, the lineage
/// and the outcome go by, and the restarts within `flap_window`. A dry run
/// keeps it too, so that its output matches what a real run would do.
fn mark_restart(
    policy: &Policy,
    state: &mut DynoState,
    call: Call,
    now: Timestamp,
    confirmed: bool,
) {
    state.trouble_mut().previous_restart = state.trouble_mut().last_restart.take();
    let mut mark = RestartMark::new(now, state.instance.clone(), call.reason);
    mark.confirmed = confirmed;
    mark.second_call = call.second_call;
    state.trouble_mut().last_restart = Some(mark);
    state.awaiting_replacement = true;
    state.last_skip = None;
    state.trouble_mut().restarts.push_back(now);
    while state
        .trouble()
        .restarts
        .front()
        .is_some_and(|t| now.duration_since(*t) > policy.flap_window)
    {
        state.trouble_mut().restarts.pop_front();
    }
}

/// The events of an ordered restart: the order itself (in a dry run a
/// `skipped` saying what would have been done) and `flapping` when the
/// restarts within `flap_window` exceed `flap_limit`.
fn restart_events(
    app: &AppName,
    policy: &Policy,
    state: &DynoState,
    call: Call,
    now: Timestamp,
) -> Vec<Event> {
    let mut events = Vec::with_capacity(2);
    let mut e = if policy.dry_run {
        // Decided and reported, never called.
        let mut e = event_for(app, state, EventKind::Skipped, now);
        e.detail = Some(format!("would restart: {}", call.reason.as_str()));
        e.reason = Some(Reason::DryRun);
        e
    } else {
        let mut e = event_for(app, state, EventKind::Restart, now);
        e.reason = Some(call.reason);
        if call.second_call {
            e.detail = Some(format!(
                "the outcome of the restart call at {} is unknown and the same instance is still reporting {} min later: one more call",
                state
                    .trouble()
                    .previous_restart
                    .as_ref()
                    .map_or(now, |m| m.at),
                UNKNOWN_GRACE.as_mins()
            ));
        }
        e
    };
    e.dry_run = Some(policy.dry_run);
    events.push(e);
    if state.trouble().restarts.len() > policy.flap_limit as usize {
        let mut f = event_for(app, state, EventKind::Flapping, now);
        f.dry_run = Some(policy.dry_run);
        f.count = Some(state.trouble().restarts.len() as u64);
        events.push(f);
    }
    events
}

/// An event about this dyno carrying its instance and latest memory.
pub fn event_for(app: &AppName, state: &DynoState, kind: EventKind, now: Timestamp) -> Event {
    let mut e = Event::new(now, kind, app.clone());
    e.dyno = Some(state.dyno.clone());
    e.instance = state.instance.clone();
    e.memory_total_mb = state.latest_total().map(Megabytes::get);
    e.memory_quota_mb = state.quota().map(Megabytes::get);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_threshold_needs_a_quota() {
        let t = Threshold::Percent(95.0);
        assert_eq!(t.limit(None), None);
        assert_eq!(t.limit(Some(Megabytes(1000.0))), Some(Megabytes(950.0)));
        assert_eq!(t.limit(Some(Megabytes(0.0))), None);
    }

    #[test]
    fn star_excludes_one_off_dynos() {
        let all = DynoTypes::parse_list(["*"]).unwrap();
        assert!(all.watches("web") && all.watches("worker"));
        assert!(!all.watches("run") && !all.watches("scheduler"));
        assert!(!all.watches("release") && !all.watches("console"));
        let named = DynoTypes::parse_list(["web", "release"]).unwrap();
        assert!(named.watches("release"), "a one-off type named is watched");
        for spelling in ["web, worker", "web worker", "web,worker", " web\tworker,"] {
            let list = DynoTypes::parse_list([spelling]).unwrap();
            assert_eq!(list, DynoTypes::List(vec!["web".into(), "worker".into()]));
            assert!(list.watches("worker") && !list.watches("slow_worker"));
        }
        assert!(DynoTypes::parse_list(["web", "work.er"]).is_err());
        assert!(DynoTypes::parse_list(["web;worker"]).is_err());
    }

    #[test]
    fn per_type_settings_match_config_var_spelling() {
        let mut app = AppPolicy {
            dyno_types: DynoTypes::All,
            ..AppPolicy::default()
        };
        let slow = Policy {
            consecutive: 3,
            ..Policy::default()
        };
        app.per_type.insert("slow_worker".into(), slow.clone());
        assert_eq!(app.for_type("slow-worker"), Some(&slow));
        assert_eq!(app.for_type("slow_worker"), Some(&slow));
        assert_eq!(app.for_type("web"), Some(&app.defaults));
        assert_eq!(app.for_type("run"), None);
    }

    #[test]
    fn quotas_from_percent_snap_to_real_dyno_sizes() {
        let q = |m: f64, p: f64| quota_from_percent(Megabytes(m), p).0;
        assert_eq!(q(594.0, 109.6), 512.0);
        assert_eq!(q(736.0, 143.8), 512.0);
        assert_eq!(q(1210.0, 236.5), 512.0);
        assert_eq!(q(1100.0, 107.0), 1024.0);
        assert_eq!(q(2700.0, 105.0), 2560.0);
        // Nothing near: the arithmetic, rounded.
        assert_eq!(q(700.0, 100.0), 700.0);
    }

    #[test]
    fn parallelism() {
        assert_eq!(Parallelism::Percent(25.0).allowed(0), 1);
        assert_eq!(Parallelism::Percent(25.0).allowed(8), 2);
        assert_eq!(Parallelism::Percent(25.0).allowed(9), 3);
        assert_eq!(Parallelism::Count(2).allowed(100), 2);
    }
}
