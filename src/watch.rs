//! Per-app dyno state: feeds observations to the policy, returns events.
//!
//! A [`Watcher`] is the in-memory truth about one app's dynos. It is still
//! pure — no I/O, no clock — so replay, the service and tests share it. The
//! service keeps one per app behind a mutex and persists what it returns.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

use crate::domain::{AppName, DynoName, Megabytes};
use crate::events::{Event, EventKind};
use crate::heroku_line::{Observation, ObservationKind, Sample};
use crate::policy::{self, AppPolicy, DynoState, RestartMark, Siblings, Trigger};

/// A dyno with no report for this long is not counted as live.
pub const LIVE: SignedDuration = SignedDuration::from_mins(5);
/// A dyno with no report for this long is forgotten.
pub const FORGET: SignedDuration = SignedDuration::from_hours(1);

#[derive(Debug)]
pub struct Watcher {
    app: AppName,
    policy: AppPolicy,
    dynos: HashMap<DynoName, DynoState>,
    /// Quota per process type from the app's formation, for samples that
    /// carry none (legacy lines).
    type_quota: HashMap<String, Megabytes>,
    warnings: Vec<String>,
}

impl Watcher {
    pub fn new(app: AppName, policy: AppPolicy) -> Self {
        Self {
            app,
            policy,
            dynos: HashMap::new(),
            type_quota: HashMap::new(),
            warnings: Vec::new(),
        }
    }

    pub fn app(&self) -> &AppName {
        &self.app
    }

    pub fn policy(&self) -> &AppPolicy {
        &self.policy
    }

    pub fn dynos(&self) -> impl Iterator<Item = &DynoState> {
        self.dynos.values()
    }

    pub fn dyno(&self, name: &DynoName) -> Option<&DynoState> {
        self.dynos.get(name)
    }

    /// Warnings the policy produced (a percentage threshold without a quota);
    /// each is produced once per dyno.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    pub fn set_type_quota(&mut self, process_type: &str, quota: Megabytes) {
        self.type_quota.insert(process_type.to_owned(), quota);
    }

    /// Restores a restart remembered by the store (after dynoguard itself
    /// restarted), so windows and "never the same instance twice" survive.
    pub fn seed_restart(&mut self, dyno: DynoName, mark: RestartMark) {
        let state = self
            .dynos
            .entry(dyno.clone())
            .or_insert_with(|| DynoState::new(dyno, mark.at));
        if state.instance.is_none() {
            state.instance = mark.instance.clone();
        }
        state.restarts.push_back(mark.at);
        state.last_restart = Some(mark);
    }

    /// The restart call for `dyno` failed: release its bookkeeping.
    pub fn restart_failed(&mut self, dyno: &DynoName) {
        if let Some(s) = self.dynos.get_mut(dyno) {
            s.restart_failed();
        }
    }

    /// The dyno no longer exists (404 from the API).
    pub fn forget(&mut self, dyno: &DynoName) {
        self.dynos.remove(dyno);
    }

    /// Drops dynos that have not reported for [`FORGET`].
    pub fn prune(&mut self, now: Timestamp) {
        self.dynos
            .retain(|_, s| now.duration_since(s.last_seen) < FORGET);
    }

    /// Applies one observation at `now`; returns the decision events.
    pub fn observe(&mut self, obs: &Observation, now: Timestamp) -> Vec<Event> {
        match &obs.kind {
            ObservationKind::Sample(s) => self.sample(s, now),
            ObservationKind::R14 { dyno } => self.platform_error(dyno, EventKind::R14, now),
            ObservationKind::R15 { dyno } => self.platform_error(dyno, EventKind::R15, now),
            ObservationKind::ProcessMemory {
                dyno,
                memory,
                percent,
            } => {
                let state = self.state(dyno, now);
                // Quotas are whole megabytes: 736M at 143.8% is a 512 MB dyno.
                state.quota_hint = Some(Megabytes((memory.0 * 100.0 / percent).round()));
                Vec::new()
            }
            ObservationKind::State { dyno, .. } => {
                self.state(dyno, now);
                Vec::new()
            }
            ObservationKind::SamplesLost { dropped } => {
                let mut e = Event::new(now, EventKind::SamplesLost, self.app.clone());
                e.count = Some(*dropped);
                vec![e]
            }
        }
    }

    fn state(&mut self, dyno: &DynoName, now: Timestamp) -> &mut DynoState {
        let s = self
            .dynos
            .entry(dyno.clone())
            .or_insert_with(|| DynoState::new(dyno.clone(), now));
        s.last_seen = now;
        s
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

    fn sample(&mut self, sample: &Sample, now: Timestamp) -> Vec<Event> {
        let Some(dyno) = &sample.dyno else {
            return Vec::new();
        };
        let ty = dyno.process_type().to_owned();
        let type_quota = self.type_quota.get(&ty).copied();
        let app = self.app.clone();
        let state = self.state(dyno, now);
        let recovered = state.set_instance(sample.instance.clone(), now);
        state.record_memory(sample.memory, now);
        if state.quota().is_none() {
            state.quota_hint = type_quota;
        }
        let mut events = Vec::new();
        if let Some(secs) = recovered {
            let mut e = policy::event_for(&app, state, EventKind::Recovered, now);
            e.seconds = Some(secs);
            events.push(e);
        }
        if sample.memory.total.is_none() {
            return events;
        }
        let judging = self.policy.judging(&ty).clone();
        let state = self.dynos.get_mut(dyno).expect("inserted above");
        if judging.threshold.limit(state.quota()).is_none() && !state.unjudged_warned {
            state.unjudged_warned = true;
            self.warnings.push(format!(
                "{app} {dyno}: threshold {} needs a memory quota, but the samples carry none and the formation gave none; samples are recorded but not judged",
                judging.threshold
            ));
        }
        let Some(trigger) = policy::judge_memory(&judging, state) else {
            state.consecutive_over = 0;
            state.over = false;
            return events;
        };
        state.consecutive_over += 1;
        if !state.over {
            state.over = true;
            let mut e = policy::event_for(&app, state, EventKind::OverThreshold, now);
            e.detail = judging
                .threshold
                .limit(state.quota())
                .map(|l| format!("threshold {} = {l}", judging.threshold));
            events.push(e);
        }
        if state.consecutive_over < judging.consecutive {
            return events;
        }
        events.extend(self.decide(dyno, trigger, now));
        events
    }

    fn platform_error(&mut self, dyno: &DynoName, kind: EventKind, now: Timestamp) -> Vec<Event> {
        let app = self.app.clone();
        let state = self.state(dyno, now);
        let mut events = vec![policy::event_for(&app, state, kind, now)];
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
        policy::decide_restart(&app, policy.as_ref(), state, trigger, siblings, now)
    }
}
