//! Memory curves of one dyno over a simulated week, fed sample by sample
//! through the real decision engine, with Heroku modelled around it: what a
//! restart policy costs (restarts of dynos that would have stayed under their
//! quota) and what it saves (time over the quota, swapping). The table in
//! the README and BENCHMARKS.md comes from here (`cargo bench --bench
//! predict`), and a unit test holds the default to it.
//!
//! Deterministic: every figure is a pure function of the curve, the seed, the
//! instance and its age, so the same run gives the same table — and "would
//! this instance have crossed its quota had it not been restarted?" is
//! answered by evaluating its curve further, not guessed.
//!
//! The Heroku model, per 20 s sample interval:
//! - a dyno instance logs a runtime-metrics sample (with a little jitter in
//!   the log timestamp) and, over its quota, an R14 line: it swaps;
//! - over twice its quota Heroku kills it (R15) and starts a new instance;
//! - a restart that dynoguard orders stops the instance before the next
//!   sample; the new instance (a new UUID, memory back at its boot level,
//!   any leak starting over) logs its first sample 40 s after the order;
//! - Heroku cycles every dyno daily (24 h plus up to 216 min after its start).

use jiff::{SignedDuration, Timestamp};

use crate::decide::engine::{Confirmation, Engine};
use crate::decide::policy::{AppPolicy, Policy};
use crate::domain::event::{EventKind, Reason};
use crate::domain::{AppName, DynoName, Megabytes};
use crate::ingest::heroku_line::{Memory, Observation, ObservationKind, Sample};

/// The simulated dyno's quota (a Standard-1X).
pub const QUOTA_MB: f64 = 512.0;
/// Heroku's runtime-metrics interval.
pub const SAMPLE_SECS: i64 = 20;
/// A simulated week.
pub const WEEK: SignedDuration = SignedDuration::from_hours(24 * 7);

/// A memory curve, in fractions of the quota over an instance's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// ~60 % with ±2 % noise.
    Steady,
    /// 90–97 %: waves of 7, 23 and 61 minutes (up to ~1 % a minute) and
    /// ±1 % noise; never over the quota.
    NoisyHigh,
    /// ~80 %, and every ~15 minutes a spike to 96–98.5 % for 1–3 samples.
    Spiky,
    /// GC sawtooth: climbs from 75 % to 95 % over 10 minutes (2 % a
    /// minute), then drops back.
    Sawtooth,
    /// A fast sawtooth: 80 % to 95 % in 4 minutes (3.75 % a minute).
    FastSawtooth,
    /// Leaks from 50 %: crosses the quota after 5 hours.
    SlowLeak,
    /// Leaks 1.5 % a minute from 40 %: crosses after 40 minutes (the
    /// demo's "slow leak").
    Leak40m,
    /// Leaks 4 % a minute from 40 %: crosses after 15 minutes.
    FastLeak,
}

impl Shape {
    pub const ALL: [Shape; 8] = [
        Shape::Steady,
        Shape::NoisyHigh,
        Shape::Spiky,
        Shape::Sawtooth,
        Shape::FastSawtooth,
        Shape::SlowLeak,
        Shape::Leak40m,
        Shape::FastLeak,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady ~60 %",
            Self::NoisyHigh => "noisy-high 90–97 %",
            Self::Spiky => "spiky ~80 %, spikes to 98 %",
            Self::Sawtooth => "GC sawtooth 75→95 % / 10 min",
            Self::FastSawtooth => "GC sawtooth 80→95 % / 4 min",
            Self::SlowLeak => "slow leak (crosses after 5 h)",
            Self::Leak40m => "leak (crosses after 40 min)",
            Self::FastLeak => "fast leak (crosses after 15 min)",
        }
    }

    /// Does the curve stay under its quota (every restart of it is false)?
    pub fn stays_under(self) -> bool {
        !matches!(self, Self::SlowLeak | Self::Leak40m | Self::FastLeak)
    }

    /// Memory as a fraction of the quota for the instance `seed` at `age`
    /// sample intervals.
    pub fn fraction(self, seed: u64, age: u64) -> f64 {
        let minutes = age as f64 * SAMPLE_SECS as f64 / 60.0;
        // Noise uniform in [-1, 1), independent per sample.
        let noise = unit(seed, age, 1) * 2.0 - 1.0;
        let target = match self {
            Self::Steady => 0.60 + 0.02 * noise,
            Self::NoisyHigh => {
                let wave = |period: f64, k: u64| {
                    (std::f64::consts::TAU * (minutes / period + unit(seed, 0, k))).sin()
                };
                let w = (wave(7.0, 2) + wave(23.0, 3) + wave(61.0, 4)) / 3.0;
                (0.935 + 0.025 * w + 0.01 * noise).clamp(0.90, 0.97)
            }
            Self::Spiky => {
                const SLOT: u64 = 45;
                let slot = age / SLOT;
                let at = (unit(seed, slot, 5) * 40.0) as u64;
                let len = 1 + (unit(seed, slot, 6) * 3.0) as u64;
                if (at..at + len).contains(&(age % SLOT)) {
                    0.96 + 0.025 * unit(seed, age, 7)
                } else {
                    0.80 + 0.02 * noise
                }
            }
            Self::Sawtooth => {
                let phase = (minutes / 10.0 + unit(seed, 0, 8)).fract();
                0.75 + 0.20 * phase + 0.005 * noise
            }
            Self::FastSawtooth => {
                let phase = (minutes / 4.0 + unit(seed, 0, 8)).fract();
                0.80 + 0.15 * phase + 0.005 * noise
            }
            Self::SlowLeak => 0.50 + 0.50 * minutes / 300.0 + 0.003 * noise,
            Self::Leak40m => 0.40 + 0.015 * minutes + 0.003 * noise,
            Self::FastLeak => 0.40 + 0.04 * minutes + 0.005 * noise,
        };
        // Every instance boots small and warms up to its curve (a time
        // constant of 3 minutes): the climb after a restart or a daily cycle
        // is part of every real dyno's life, and it must not read as a leak.
        const BOOT: f64 = 0.35;
        let warm = 1.0 - (-minutes / 3.0).exp();
        BOOT + (target - BOOT) * warm
    }
}

/// A hash of `(seed, i, k)` as a number in `[0, 1)` (SplitMix64): random
/// access, so any sample of any instance can be evaluated on its own.
fn unit(seed: u64, i: u64, k: u64) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(k.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// What a policy did with one curve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub samples: u64,
    /// Restart orders (every reason).
    pub restarts: u32,
    /// Of them, with reason `predicted`.
    pub predicted: u32,
    /// Restarts of an instance whose curve would have stayed under the quota
    /// until Heroku's daily cycle replaced it.
    pub false_restarts: u32,
    /// Sample intervals an instance spent over its quota (swapping, R14).
    pub over_quota_secs: f64,
    /// Instances that went over their quota at least once.
    pub swapped: u32,
    pub r15_kills: u32,
    /// The highest memory of an instance dynoguard restarted, at the order
    /// (percent of the quota; 0 if none).
    pub peak_at_restart_pct: f64,
}

struct Instance {
    serial: u64,
    uuid: String,
    /// The tick it started at (its age counts from here).
    born: u64,
    /// Heroku's daily cycle replaces it at this tick.
    cycles_at: u64,
    swapped: bool,
}

impl Instance {
    fn new(curve_seed: u64, serial: u64, born: u64) -> Self {
        let seed = instance_seed(curve_seed, serial);
        let day = (24 * 3600 / SAMPLE_SECS) as u64;
        let jitter = (unit(seed, 0, 9) * (216.0 * 60.0 / SAMPLE_SECS as f64)) as u64;
        Self {
            serial,
            uuid: format!(
                "{:08x}-0000-4000-8000-{:012x}",
                curve_seed & 0xffff_ffff,
                serial
            ),
            born,
            cycles_at: born + day + jitter,
            swapped: false,
        }
    }

    fn seed(&self, curve_seed: u64) -> u64 {
        instance_seed(curve_seed, self.serial)
    }
}

fn instance_seed(curve_seed: u64, serial: u64) -> u64 {
    curve_seed ^ serial.wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// Runs `shape` for `duration` through an engine with `policy` (one app, one
/// `web.1` dyno, decisions confirmed on release as in `replay`).
pub fn simulate(shape: Shape, policy: &Policy, duration: SignedDuration, seed: u64) -> Outcome {
    let app = AppName::parse("sim").expect("a valid app name");
    let dyno = DynoName::parse("web.1").expect("a valid dyno name");
    let app_policy = AppPolicy {
        defaults: policy.clone(),
        ..AppPolicy::default()
    };
    let mut engine = Engine::new(app, app_policy, Confirmation::OnDecision);
    let start = Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let ticks = (duration.as_secs() / SAMPLE_SECS).max(0) as u64;
    let quota = Megabytes(QUOTA_MB);

    let mut out = Outcome::default();
    let mut serial = 0;
    let mut current = Instance::new(seed, serial, 0);
    // The tick of the current instance's first sample (it boots meanwhile).
    let mut first_sample = 0;
    for tick in 0..ticks {
        if tick >= current.cycles_at {
            serial += 1;
            current = Instance::new(seed, serial, tick);
            first_sample = tick + 1;
        }
        if tick < first_sample {
            continue;
        }
        let age = tick - current.born;
        let mb = shape.fraction(current.seed(seed), age) * QUOTA_MB;
        // Log timestamps jitter within the interval, as Heroku's do.
        let jitter_ms = (unit(seed, tick, 10) * 900.0) as i64;
        let at = start + SignedDuration::from_millis(tick as i64 * SAMPLE_SECS * 1000 + jitter_ms);
        let mut lines = vec![Observation {
            at,
            kind: ObservationKind::Sample(Sample {
                dyno: Some(dyno.clone()),
                instance: Some(current.uuid.clone()),
                memory: Memory {
                    total: Some(Megabytes(mb)),
                    quota: Some(quota),
                    ..Memory::default()
                },
                malformed: false,
                app_number: None,
            }),
        }];
        out.samples += 1;
        let killed = mb > 2.0 * QUOTA_MB;
        if mb > QUOTA_MB {
            out.over_quota_secs += SAMPLE_SECS as f64;
            if !current.swapped {
                current.swapped = true;
                out.swapped += 1;
            }
            let dyno = dyno.clone();
            lines.push(Observation {
                at: at + SignedDuration::from_millis(1),
                kind: if killed {
                    ObservationKind::R15 { dyno }
                } else {
                    ObservationKind::R14 { dyno }
                },
            });
        }
        let mut events = engine.apply(&lines, at).events;
        // The service's tick releases a held decision 2 s after its batch.
        events.extend(engine.release_due(at).events);
        let ordered = events.iter().find(|e| {
            e.event == EventKind::Restart && e.instance.as_deref() == Some(&current.uuid)
        });
        if let Some(order) = ordered {
            out.restarts += 1;
            if order.reason == Some(Reason::Predicted) {
                out.predicted += 1;
            }
            out.peak_at_restart_pct = out.peak_at_restart_pct.max(mb * 100.0 / QUOTA_MB);
            if !killed && !crosses_later(shape, &current, seed, tick) {
                out.false_restarts += 1;
            }
        }
        if killed {
            out.r15_kills += 1;
        }
        if killed || ordered.is_some() {
            serial += 1;
            current = Instance::new(seed, serial, tick + 1);
            first_sample = tick + 2;
        }
    }
    out
}

/// Would the instance, left alone after `tick`, have gone over its quota
/// before Heroku's daily cycle replaced it?
fn crosses_later(shape: Shape, instance: &Instance, curve_seed: u64, tick: u64) -> bool {
    let seed = instance.seed(curve_seed);
    (tick + 1..instance.cycles_at).any(|t| shape.fraction(seed, t - instance.born) > 1.0)
}

/// One table row's policy.
pub struct Column {
    pub name: String,
    pub policy: Policy,
}

/// The table: for every curve, each policy's outcome over `duration`.
pub fn table(columns: &[Column], duration: SignedDuration, seed: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| curve | policy | restarts (predicted) | false restarts | time over quota | instances that swapped | R15 kills | highest % at a restart |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (i, shape) in Shape::ALL.into_iter().enumerate() {
        for c in columns {
            let o = simulate(shape, &c.policy, duration, seed.wrapping_add(i as u64));
            let _ = writeln!(
                out,
                "| {} | {} | {} ({}) | {} | {:.1} min | {} | {} | {} |",
                shape.name(),
                c.name,
                o.restarts,
                o.predicted,
                o.false_restarts,
                o.over_quota_secs / 60.0,
                o.swapped,
                o.r15_kills,
                if o.restarts > 0 {
                    format!("{:.1} %", o.peak_at_restart_pct)
                } else {
                    "–".to_owned()
                }
            );
        }
    }
    out
}

/// The default policy and `threshold = 100%, predict = off` (the behaviour
/// before predict was on by default): the README's columns.
pub fn default_columns() -> Vec<Column> {
    vec![
        Column {
            name: "default".into(),
            policy: Policy::default(),
        },
        Column {
            name: "predict off".into(),
            policy: Policy {
                predict: None,
                ..Policy::default()
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: SignedDuration = SignedDuration::from_hours(24);

    #[test]
    fn curves_are_what_their_names_say() {
        for shape in Shape::ALL {
            let (mut lo, mut hi) = (f64::MAX, f64::MIN);
            // An instance's first 12 hours, after its 15-minute warm-up.
            for age in 45..2160 {
                let f = shape.fraction(3, age);
                lo = lo.min(f);
                hi = hi.max(f);
            }
            assert_eq!(hi <= 1.0, shape.stays_under(), "{shape:?}: {lo}..{hi}");
            match shape {
                Shape::NoisyHigh => assert!(lo >= 0.90 && hi <= 0.97, "{lo}..{hi}"),
                Shape::Spiky => assert!(hi > 0.975 && lo < 0.80, "{lo}..{hi}"),
                Shape::Sawtooth | Shape::FastSawtooth => assert!(hi > 0.94, "{hi}"),
                _ => {}
            }
        }
        assert_eq!(
            Shape::FastLeak.fraction(1, 7),
            Shape::FastLeak.fraction(1, 7)
        );
    }

    /// The acceptance, over a simulated day per curve (the week is
    /// the benchmark's): the default never restarts a dyno that stays under
    /// its quota, and restarts every leak before it swaps.
    #[test]
    fn the_default_restarts_leaks_before_the_quota_and_nothing_else() {
        let default = Policy::default();
        let off = Policy {
            predict: None,
            ..Policy::default()
        };
        for (i, shape) in Shape::ALL.into_iter().enumerate() {
            let o = simulate(shape, &default, DAY, i as u64);
            assert_eq!(o.false_restarts, 0, "{shape:?}: {o:?}");
            assert_eq!(o.r15_kills, 0, "{shape:?}: {o:?}");
            if shape.stays_under() {
                assert_eq!(o.restarts, 0, "{shape:?}: {o:?}");
                assert_eq!(o.over_quota_secs, 0.0, "{shape:?}: {o:?}");
            } else {
                let before = simulate(shape, &off, DAY, i as u64);
                assert!(o.restarts > 0, "{shape:?}: {o:?}");
                assert!(before.over_quota_secs > 0.0, "{shape:?}: {before:?}");
                if shape == Shape::SlowLeak {
                    // 0.17 % of the quota a minute is 0.3 % in the horizon:
                    // the samples' own wobble sometimes crosses first, and
                    // the threshold acts as it did without predict.
                    assert!(o.predicted * 2 > o.restarts, "{o:?}");
                    assert!(o.over_quota_secs * 2.0 < before.over_quota_secs, "{o:?}");
                } else {
                    assert_eq!(o.predicted, o.restarts, "{shape:?}: {o:?}");
                    assert_eq!(o.swapped, 0, "{shape:?}: {o:?}");
                }
            }
        }
    }

    /// The scenario's formation (`sim::scenario`: fast and slow leaks, steady
    /// dynos, R14/R15 kills, preboot overlaps, forged app lines), parsed from
    /// its drain bodies as logged: Heroku there does not react to restarts,
    /// so only the first order per dyno says anything — and the default
    /// gives it no later than `predict = "off"`, before the quota for the
    /// leaks, and never for a steady dyno.
    #[test]
    fn the_scenario_formation_as_logged() {
        use crate::sim::scenario::{Scenario, batches};
        use std::collections::BTreeMap;
        let first_orders = |policy: Policy| {
            let app = AppPolicy {
                defaults: policy,
                ..AppPolicy::default()
            };
            let mut engine = Engine::new(
                AppName::parse("sim").unwrap(),
                app,
                Confirmation::OnDecision,
            );
            let mut first: BTreeMap<String, (Timestamp, Reason, f64)> = BTreeMap::new();
            for body in batches(&Scenario::default()) {
                let mut obs = Vec::new();
                let stats = crate::ingest::drain_body(&body, |o| obs.push(o));
                let arrived = stats.latest.unwrap();
                let mut events = engine.apply(&obs, arrived).events;
                events.extend(engine.release_due(arrived).events);
                for e in events.into_iter().filter(|e| e.event == EventKind::Restart) {
                    let dyno = e.dyno.as_ref().unwrap().to_string();
                    let mb = e.memory_total_mb.unwrap_or_default();
                    first.entry(dyno).or_insert((e.at, e.reason.unwrap(), mb));
                }
            }
            first
        };
        let default = first_orders(Policy::default());
        let off = first_orders(Policy {
            predict: None,
            ..Policy::default()
        });
        // web.3 and web.6 are steady; the others leak (fast, slow).
        for steady in ["web.3", "web.6"] {
            assert!(!default.contains_key(steady), "{default:?}");
        }
        for leak in ["web.1", "web.2", "web.4", "web.5"] {
            let (at, reason, mb) = default[leak];
            assert_eq!(reason, Reason::Predicted, "{leak}: {default:?}");
            assert!(mb < 512.0, "{leak}: {mb} MB");
            assert!(at < off[leak].0, "{leak}: {at} vs {:?}", off[leak]);
        }
    }

    #[test]
    fn the_same_run_gives_the_same_figures() {
        let p = Policy::default();
        let a = simulate(Shape::FastLeak, &p, SignedDuration::from_hours(2), 5);
        assert_eq!(
            a,
            simulate(Shape::FastLeak, &p, SignedDuration::from_hours(2), 5)
        );
    }
}
