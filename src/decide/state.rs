//! What dynoguard knows of one dyno (process name): its current instance
//! and the lineage of the instances it replaced, the current instance's
//! memory and history, and the restart bookkeeping.
//!
//! Fields are visible to `decide` only; the methods here keep the
//! invariants — lineage by evidence ([`DynoState::classify`]), every
//! per-instance history reset when the instance changes
//! ([`DynoState::set_instance`]). Everything outside `decide` reads a
//! [`DynoSnapshot`].

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};

use crate::decide::policy::Policy;
use crate::decide::ring::SampleRing;
use crate::domain::event::Reason;
use crate::domain::{DynoName, Megabytes};
use crate::ingest::heroku_line::Memory;

/// The last restart ordered for a dyno.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartMark {
    pub at: Timestamp,
    /// The instance that was restarted (`None` if never seen in a sample).
    pub instance: Option<String>,
    pub reason: Reason,
    /// The restart is known to have happened (the API accepted it, replay
    /// or dry run decided it, or the store remembered it). Until then the
    /// order can still be dropped or fail and be rolled back.
    pub confirmed: bool,
    /// The call's outcome is unknown (timeout, dynoguard killed mid-call): it
    /// counts as made until the same instance is still reporting
    /// [`UNKNOWN_GRACE`] of log time later; then one more call is allowed.
    pub unknown: bool,
    /// This order is that one more call: whatever its outcome, no third.
    pub second_call: bool,
    /// The engine released the order (to the restarter, or as the record):
    /// until then a newer instance drops it before anything is called.
    pub released: bool,
}

impl RestartMark {
    /// A restart decided at `at` for `instance`, not yet confirmed.
    pub fn new(at: Timestamp, instance: Option<String>, reason: Reason) -> Self {
        Self {
            at,
            instance,
            reason,
            confirmed: false,
            unknown: false,
            second_call: false,
            released: false,
        }
    }
}

/// How long after a restart call whose outcome is unknown the same instance
/// must still be reporting before one more call is made: an accepted restart
/// takes SIGTERM, up to 30 s of grace and a boot, and the old instance keeps
/// logging meanwhile.
pub const UNKNOWN_GRACE: SignedDuration = SignedDuration::from_mins(2);

/// How an instance id relates to what is known of a process name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lineage {
    /// The current instance (or a line without an instance id).
    Current,
    /// Shown to be newer than the current instance: it replaces it.
    New,
    /// An instance already replaced: its lines change nothing.
    Replaced,
    /// A second instance that nothing yet orders against the current one
    /// (the contender): its lines change nothing, and nothing is decided
    /// for the name until one of the two goes silent.
    Unclear,
}

/// An instance known for this long (log time) before another one's first
/// line is the older of the two: a runtime-metrics sample comes every 20 s,
/// so during a preboot overlap each instance shows up within one interval
/// (plus jitter) of dynoguard starting to watch.
///
/// Two minutes (six intervals): a lost sample or two (L10) must not make
/// the old instance of an overlap look like a newcomer. A real newcomer
/// inside it is a contender, decided by silence — safe, only slower.
pub const ESTABLISHED: SignedDuration = SignedDuration::from_mins(2);
/// Of two instances nothing orders, the one silent this long (three sample
/// intervals of log time) while the other reports is the old one.
pub const SILENT: SignedDuration = SignedDuration::from_secs(60);
/// An instance taken for replaced that keeps reporting this long after the
/// current one went silent was the live one after all: it is current again
/// (a leaking newcomer is never left unjudged). Ten minutes: far longer than
/// a gap in the new instance's samples during a long preboot overlap, which
/// must not hand the old instance back its say.
pub const RESURRECT: SignedDuration = SignedDuration::from_mins(10);

/// A second instance of a process name, not yet ordered against the current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contender {
    pub id: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

/// Replaced instances remembered per process name.
pub const LINEAGE: usize = 8;

/// What dynoguard knows of one dyno (process name). Updated only by the
/// watcher and the decision functions below.
#[derive(Debug, Clone)]
pub struct DynoState {
    pub(super) dyno: DynoName,
    pub(super) instance: Option<String>,
    pub(super) last_seen: Timestamp,
    pub(super) memory: Memory,
    pub(super) sample_at: Option<Timestamp>,
    /// `(at, memory_total)` of the current instance, for the trend.
    pub(super) history: SampleRing,
    pub(super) consecutive_over: u32,
    pub(super) over: bool,
    /// Waiting for the replacement instance's first sample.
    pub(super) awaiting_replacement: bool,
    /// The last `skipped` reason reported for this instance (reported once).
    pub(super) last_skip: Option<Reason>,
    pub(super) unjudged_warned: bool,
    /// An `r14` event was reported for this instance.
    pub(super) r14_reported: bool,
    /// Instances of this process name already replaced (newest last).
    pub(super) replaced: VecDeque<String>,
    /// When the last line of a replaced instance came (its R14 and
    /// `Process running` lines, which carry no instance, follow it).
    pub(super) replaced_line_at: Option<Timestamp>,
    /// When the current instance's first line came (or, after dynoguard
    /// restarted, the stored sample it is known from).
    pub(super) instance_since: Option<Timestamp>,
    /// The current instance's newest line carrying its id.
    pub(super) instance_last: Option<Timestamp>,
    /// A second instance not yet ordered against the current one.
    pub(super) contender: Option<Contender>,
    /// The newest `Starting process` / `starting to up` line of the name: an
    /// instance born then is newer than one that logged before it.
    pub(super) born_at: Option<Timestamp>,
    /// The quota of the process type from the app's formation (refreshed).
    pub(super) formation_quota: Option<Megabytes>,
    /// When a line of this dyno last *arrived* (wall clock, for display and
    /// staleness only: decisions use log time).
    pub(super) last_arrival: Option<Timestamp>,
    /// Restarts, incidents, R14/R15: see [`Trouble`]. `None` until the
    /// dyno has any.
    trouble: Option<Box<Trouble>>,
}

/// What a dyno needs once it has been in trouble — restarted, over its
/// threshold, an R14 or R15, a `Process running` line — and most of 10,000
/// never are: kept apart (boxed, allocated at the first need) so that a
/// quiet dyno's state is 300 bytes smaller.
#[derive(Debug, Clone, Default)]
pub struct Trouble {
    pub(super) last_restart: Option<RestartMark>,
    /// The restart before `last_restart`, restored if the last one failed.
    pub(super) previous_restart: Option<RestartMark>,
    /// When each restart of the flap window was decided (log time).
    pub(super) restarts: VecDeque<Timestamp>,
    /// `Process running mem=…`: the newest figure for R14 decisions.
    pub(super) process_memory: Option<(Timestamp, Megabytes)>,
    /// Quota learned from `Process running mem=…(P%)` when samples lack it.
    pub(super) quota_hint: Option<Megabytes>,
    /// The new instance reported before the restart was confirmed: the
    /// `recovered` seconds wait for the confirmation.
    pub(super) pending_recovery: Option<f64>,
    /// The newest R14 and R15 reported for the name (a log session replays
    /// history on reconnect: older or equal lines are not news).
    pub(super) r14_at: Option<Timestamp>,
    pub(super) r15_at: Option<Timestamp>,
    /// The open incident of the name (its id), if any.
    pub(super) incident: Option<String>,
    /// Failed restart calls in a row, and when the next may be made.
    pub(super) failures: u32,
    pub(super) retry_after: Option<Timestamp>,
}

/// The trouble of a dyno that never had any.
static NO_TROUBLE: Trouble = Trouble {
    last_restart: None,
    previous_restart: None,
    restarts: VecDeque::new(),
    process_memory: None,
    quota_hint: None,
    pending_recovery: None,
    r14_at: None,
    r15_at: None,
    incident: None,
    failures: 0,
    retry_after: None,
};

impl DynoState {
    pub fn new(dyno: DynoName, now: Timestamp) -> Self {
        Self {
            dyno,
            instance: None,
            last_seen: now,
            memory: Memory::default(),
            sample_at: None,
            history: SampleRing::default(),
            consecutive_over: 0,
            over: false,
            awaiting_replacement: false,
            last_skip: None,
            unjudged_warned: false,
            r14_reported: false,
            replaced: VecDeque::new(),
            replaced_line_at: None,
            instance_since: None,
            instance_last: None,
            contender: None,
            born_at: None,
            formation_quota: None,
            last_arrival: None,
            trouble: None,
        }
    }

    /// Restarts, incidents, R14/R15 (all empty for a dyno that had none).
    pub(super) fn trouble(&self) -> &Trouble {
        self.trouble.as_deref().unwrap_or(&NO_TROUBLE)
    }

    /// The same, to change: allocated at the first need.
    pub(super) fn trouble_mut(&mut self) -> &mut Trouble {
        self.trouble.get_or_insert_default()
    }

    /// The same, to clear something: nothing is allocated to clear.
    pub(super) fn trouble_if_any(&mut self) -> Option<&mut Trouble> {
        self.trouble.as_deref_mut()
    }

    /// Where a line of `instance`, logged at `at`, stands in the name's
    /// lineage — decided by evidence, never by which line arrived first:
    /// - an id already replaced stays replaced — unless the current instance
    ///   has been silent for [`RESURRECT`] while it reports (it was the live
    ///   one after all);
    /// - a new id is newer than the current instance if the current one was
    ///   known for [`ESTABLISHED`] before it, was restarted by us before it,
    ///   or logged before a birth line (`Starting process`) that precedes it;
    /// - otherwise it is a contender and nothing is decided for the name
    ///   until one of the two has been [`SILENT`] while the other reports.
    pub fn classify(&mut self, instance: Option<&str>, at: Timestamp) -> Lineage {
        let Some(id) = instance else {
            return Lineage::Current;
        };
        if self.replaced.iter().any(|r| r == id) {
            let current_silent = self
                .instance_last
                .or(self.instance_since)
                .is_some_and(|t| at.duration_since(t) >= RESURRECT);
            if current_silent && self.contender.is_none() {
                self.replaced.retain(|r| r != id);
                return Lineage::New;
            }
            return Lineage::Replaced;
        }
        if self.instance.as_deref() == Some(id) {
            self.instance_last = Some(self.instance_last.map_or(at, |t| t.max(at)));
        } else if let Some(c) = self.contender.as_mut().filter(|c| c.id == id) {
            c.last_seen = c.last_seen.max(at);
        } else if self.instance.is_none() || self.newer_than_current(at) {
            return Lineage::New;
        } else {
            // A third instance while two are unordered is as unordered.
            self.contender = Some(Contender {
                id: id.to_owned(),
                first_seen: at,
                last_seen: at,
            });
        }
        let Some(c) = self.contender.clone() else {
            return Lineage::Current;
        };
        let current_last = self.instance_last.or(self.instance_since).unwrap_or(at);
        let current_first = self.instance_since.unwrap_or(current_last);
        let contender_newer = c.last_seen.duration_since(current_last) >= SILENT
            || self
                .born_at
                .is_some_and(|b| current_first < b && b <= c.first_seen);
        if contender_newer {
            // Only the contender's own line can show the current one silent.
            return if c.id == id {
                Lineage::New
            } else {
                Lineage::Current
            };
        }
        if current_last.duration_since(c.last_seen) >= SILENT {
            self.contender = None;
            self.remember_replaced(c.id.clone());
            return if c.id == id {
                Lineage::Replaced
            } else {
                Lineage::Current
            };
        }
        if c.id == id {
            Lineage::Unclear
        } else {
            Lineage::Current
        }
    }

    /// Is a never-seen instance whose first line is at `at` newer than the
    /// current one?
    fn newer_than_current(&self, at: Timestamp) -> bool {
        let Some(since) = self.instance_since else {
            return true;
        };
        at.duration_since(since) >= ESTABLISHED
            || self.born_at.is_some_and(|b| since < b && b <= at)
            || self
                .trouble()
                .last_restart
                .as_ref()
                .is_some_and(|m| m.instance == self.instance && m.at <= at)
    }

    pub(super) fn remember_replaced(&mut self, id: String) {
        if self.replaced.iter().any(|r| *r == id) {
            return;
        }
        if self.replaced.len() == LINEAGE {
            self.replaced.pop_front();
        }
        self.replaced.push_back(id);
    }

    /// Restores what the store knew of the name (after dynoguard itself
    /// restarted): its instance as of `at`, the instances it replaced, and a
    /// contender not yet ordered against it (still unordered: a restart in
    /// the middle of an overlap decides nothing until one goes silent).
    pub fn seed_instance(
        &mut self,
        instance: String,
        at: Timestamp,
        replaced: &[String],
        contender: Option<String>,
    ) {
        for r in replaced {
            if *r != instance {
                self.remember_replaced(r.clone());
            }
        }
        if self.instance.is_none() {
            self.instance = Some(instance);
            self.instance_since = Some(at);
            self.instance_last = Some(at);
            self.contender = contender
                .filter(|c| Some(c) != self.instance.as_ref() && !self.replaced.contains(c))
                .map(|id| Contender {
                    id,
                    first_seen: at,
                    last_seen: at,
                });
        }
    }

    /// The newest memory figure: the last sample or a later `Process running`.
    pub fn latest_total(&self) -> Option<Megabytes> {
        match (
            self.memory.total,
            self.sample_at,
            self.trouble().process_memory,
        ) {
            (_, Some(s), Some((p, m))) if p > s => Some(m),
            (Some(t), _, _) => Some(t),
            (None, _, Some((_, m))) => Some(m),
            (None, _, None) => None,
        }
    }

    /// The quota: the sample's own, else the formation's for the type (the
    /// dyno size, refreshed after a resize), else the one implied by a
    /// `Process running mem=…(P%)` line.
    pub fn quota(&self) -> Option<Megabytes> {
        self.memory
            .quota
            .or(self.formation_quota)
            .or(self.trouble().quota_hint)
    }

    /// Is a restart of this dyno still in progress at `now`?
    pub fn restart_in_progress(&self, policy: &Policy, now: Timestamp) -> bool {
        self.awaiting_replacement
            && self
                .trouble()
                .last_restart
                .as_ref()
                .is_some_and(|m| now.duration_since(m.at) < policy.settle)
    }

    /// Records a new instance id. Returns the `recovered` figures (seconds
    /// since the restart) when it replaces a restarted instance.
    pub fn set_instance(&mut self, instance: Option<String>, at: Timestamp) -> Option<f64> {
        let new = instance?;
        if self.instance.as_deref() == Some(new.as_str()) {
            return None;
        }
        let had_instance = self.instance.is_some();
        if let Some(old) = self.instance.replace(new) {
            self.remember_replaced(old);
        }
        self.contender = None;
        if let Some(t) = self.trouble_if_any() {
            t.process_memory = None;
        }
        self.instance_since = Some(at);
        self.instance_last = Some(at);
        // Every per-dyno history belongs to one instance: the trend of the
        // old one says nothing about the new one.
        self.history.clear();
        // The old instance's memory says nothing about the new one; its quota
        // (the dyno size) still holds.
        self.memory = Memory {
            quota: self.memory.quota,
            ..Memory::default()
        };
        self.sample_at = None;
        self.consecutive_over = 0;
        self.over = false;
        self.last_skip = None;
        self.r14_reported = false;
        let recovered = if self.awaiting_replacement && had_instance {
            self.trouble()
                .last_restart
                .as_ref()
                .map(|m| (m.confirmed, at.duration_since(m.at).as_secs_f64().max(0.0)))
        } else {
            None
        };
        self.awaiting_replacement = false;
        match recovered {
            Some((true, secs)) => Some(secs),
            Some((false, secs)) => {
                // Only a restart that really happened recovers: wait for the
                // restarter to confirm (or drop) the order.
                self.trouble_mut().pending_recovery = Some(secs);
                None
            }
            None => None,
        }
    }

    /// Records a sample's figures; `window` is the type's `predict_window`
    /// (the trend keeps that much of the instance's samples whole).
    pub fn record_memory(&mut self, memory: Memory, at: Timestamp, window: SignedDuration) {
        // Keep fields a partial (legacy, one-measure) line does not carry.
        let m = &mut self.memory;
        m.total = memory.total.or(m.total);
        m.rss = memory.rss.or(m.rss);
        m.cache = memory.cache.or(m.cache);
        m.swap = memory.swap.or(m.swap);
        m.quota = memory.quota.or(m.quota);
        if let Some(total) = memory.total {
            self.sample_at = Some(at);
            self.history.push(at, total.0, window);
        }
    }

    /// Undo the bookkeeping of an order that was dropped or whose call
    /// failed: the window is not consumed and nothing recovered.
    pub fn roll_back_order(&mut self) {
        self.trouble_mut().last_restart = self.trouble_mut().previous_restart.take();
        self.awaiting_replacement = false;
        self.trouble_mut().pending_recovery = None;
        self.trouble_mut().restarts.pop_back();
        self.last_skip = None;
    }
}

/// A dyno whose lines stopped arriving this long ago (wall clock) is shown
/// as stale: it may be gone, or its logs may be.
pub fn is_stale(last_arrival: Option<Timestamp>, now: Timestamp) -> bool {
    last_arrival.is_none_or(|t| now.duration_since(t) > crate::decide::watch::LIVE)
}

/// What the HTTP views and the restarter may know of a dyno: a read-only
/// copy, so nothing outside `decide` reads or recomputes its internals.
#[derive(Debug, Clone, PartialEq)]
pub struct DynoSnapshot {
    pub dyno: DynoName,
    pub instance: Option<String>,
    /// The latest sample's figures, the quota resolved (sample, formation,
    /// `Process running`).
    pub memory: Memory,
    pub sample_at: Option<Timestamp>,
    pub last_seen: Timestamp,
    /// When a line of it last arrived (wall clock: staleness only).
    pub last_arrival: Option<Timestamp>,
    /// When the last restart was decided (log time).
    pub last_restart: Option<Timestamp>,
    /// A restart is in progress (judged on the dyno's own log clock).
    pub restarting: bool,
    /// Over its threshold (the last sample judged).
    pub over: bool,
    /// Two instances report and nothing yet orders them.
    pub unclear: bool,
    /// The open incident, if any.
    pub incident: Option<String>,
    /// The last restart call failed (the dyno is not protected until a
    /// retry works).
    pub restart_failing: bool,
    /// Restarts decided within the flap window, and whether that is more
    /// than the flap limit (the leak outpaces restarts).
    pub restarts_in_flap_window: usize,
    pub flapping: bool,
    /// The limit its threshold gives for its quota.
    pub threshold: Option<Megabytes>,
}

impl DynoSnapshot {
    pub fn stale(&self, now: Timestamp) -> bool {
        is_stale(self.last_arrival, now)
    }
}

impl DynoState {
    /// The read-only copy of this dyno under `policy` (its type's knobs).
    pub fn snapshot(&self, policy: &Policy) -> DynoSnapshot {
        let mut memory = self.memory;
        memory.quota = self.quota();
        let recent = self
            .trouble()
            .restarts
            .iter()
            .filter(|t| self.last_seen.duration_since(**t) <= policy.flap_window)
            .count();
        DynoSnapshot {
            dyno: self.dyno.clone(),
            instance: self.instance.clone(),
            memory,
            sample_at: self.sample_at,
            last_seen: self.last_seen,
            last_arrival: self.last_arrival,
            last_restart: self.trouble().last_restart.as_ref().map(|m| m.at),
            restarting: self.restart_in_progress(policy, self.last_seen),
            over: self.over,
            unclear: self.contender.is_some(),
            incident: self.trouble().incident.clone(),
            restart_failing: self.trouble().failures > 0,
            restarts_in_flap_window: recent,
            flapping: recent > policy.flap_limit as usize,
            threshold: policy.threshold.limit(self.quota()),
        }
    }

    /// Tags an event about this dyno with its incident, opening one if the
    /// event opens an episode (over, R14/R15, a decision, a failure) and
    /// closing it once the replacement reported (`recovered`).
    pub(super) fn tag_incident(&mut self, e: &mut crate::domain::event::Event) {
        use crate::domain::event::EventKind as K;
        let opens = matches!(
            e.event,
            K::OverThreshold | K::R14 | K::R15 | K::Restart | K::RestartFailed | K::Flapping
        ) || (e.event == K::Skipped
            && matches!(e.reason, Some(Reason::DryRun | Reason::UnclearInstance)));
        if self.trouble().incident.is_none() && opens {
            self.trouble_mut().incident = Some(format!("{}-{}", self.dyno, e.at.as_second()));
        }
        e.incident.clone_from(&self.trouble().incident);
        if e.event == K::Recovered
            && let Some(t) = self.trouble_if_any()
        {
            t.incident = None;
        }
    }

    /// The episode ended without a restart (back under its threshold, or
    /// replaced by Heroku): the incident closes silently.
    pub(super) fn close_quiet_incident(&mut self) {
        if !self.awaiting_replacement
            && self.trouble().pending_recovery.is_none()
            && let Some(t) = self.trouble_if_any()
        {
            t.incident = None;
        }
    }

    pub fn dyno(&self) -> &DynoName {
        &self.dyno
    }

    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    pub fn contender_id(&self) -> Option<&str> {
        self.contender.as_ref().map(|c| c.id.as_str())
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;
    use crate::decide::ring::HISTORY;

    /// An hour of samples keeps the window's slots and a few maxima, not
    /// an hour of samples.
    #[test]
    fn history_holds_the_window_not_the_hour() {
        let t0 = Timestamp::from_second(1_700_000_000).expect("valid");
        let dyno = DynoName::parse("web.1").expect("valid");
        let window = SignedDuration::from_mins(10);
        let mut s = DynoState::new(dyno, t0);
        for i in 0..1_000u32 {
            let at = t0 + SignedDuration::from_secs(20 * i64::from(i));
            let memory = Memory {
                total: Some(Megabytes(100.0 + f64::from(i))),
                ..Memory::default()
            };
            s.record_memory(memory, at, window);
            assert!(
                s.history.capacity() < HISTORY / 2,
                "{}",
                s.history.capacity()
            );
        }
        assert_eq!(s.history.len(), 31);
        assert_eq!(s.history.last().map(|(_, mb)| mb), Some(1099.0));
        assert_eq!(s.history.aged_max(), Some(1068.0));
    }
}
#[cfg(test)]
mod size_tests {
    use super::*;

    /// 10,000 dynos hold 10,000 of these: a field added to every dyno's
    /// state costs 10,000 times its size (what only a dyno in trouble needs
    /// goes into [`Trouble`]).
    #[test]
    fn a_quiet_dyno_s_state_stays_small() {
        assert!(
            std::mem::size_of::<DynoState>() <= 512,
            "{}",
            std::mem::size_of::<DynoState>()
        );
        let t0 = Timestamp::from_second(1_700_000_000).expect("valid");
        let mut s = DynoState::new(DynoName::parse("web.1").expect("valid"), t0);
        s.set_instance(Some("a1".into()), t0);
        s.close_quiet_incident();
        assert!(s.trouble.is_none(), "a quiet dyno allocates no trouble");
    }
}
