//! A steady fleet for soak tests (`dynoguard-loadtest --soak`): `dynos`
//! dynos of one app, each logging one memory sample and one load sample
//! every [`SAMPLE_EVERY`] of log time, as log-runtime-metrics does, with a
//! few router and app lines around them. Memory wanders but stays between
//! 30 % and 80 % of the quota (under the default predict floor of 85 %), so
//! nothing should be restarted.
//!
//! Lines are generated on the fly, in log-time order, into drain bodies:
//! nothing of the run is buffered beyond one body.

use jiff::{SignedDuration, Timestamp};

use super::fleet::Line;

/// How often a dyno reports its memory (log-runtime-metrics: every 20 s).
pub const SAMPLE_EVERY: SignedDuration = SignedDuration::from_secs(20);

/// Process types: share of the fleet, quota in MB (Standard-1X, Standard-2X,
/// Performance-M).
const TYPES: [(&str, f64, f64); 3] = [
    ("web", 0.6, 512.0),
    ("worker", 0.3, 1024.0),
    ("urgent", 0.1, 2560.0),
];

/// The lowest and highest memory of a dyno, as fractions of its quota.
const LOW: f64 = 0.30;
const HIGH: f64 = 0.80;

struct Dyno {
    /// `web.17`.
    procid: String,
    /// `heroku.4242.<uuid>`.
    id: String,
    quota: f64,
    mb: f64,
    /// Offset of its samples within each [`SAMPLE_EVERY`].
    phase: SignedDuration,
    web: bool,
}

/// What [`SoakFleet::fill`] added to a body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filled {
    pub frames: u64,
    pub memory_samples: u64,
}

/// The fleet and its cursor: the next dyno to report, in log-time order.
pub struct SoakFleet {
    /// Ordered by phase.
    dynos: Vec<Dyno>,
    start: Timestamp,
    cycle: i64,
    next: usize,
    rng: fastrand::Rng,
}

impl SoakFleet {
    /// `dynos` dynos whose first samples fall in the [`SAMPLE_EVERY`] after
    /// `start`.
    pub fn new(dynos: usize, start: Timestamp, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = Vec::with_capacity(dynos);
        let mut counts = [0usize; TYPES.len()];
        let period_ms = SAMPLE_EVERY.as_millis() as i64;
        for i in 0..dynos {
            // Deterministic shares: type t takes the dynos up to its cumulative share.
            let f = (i as f64 + 0.5) / dynos.max(1) as f64;
            let mut acc = 0.0;
            let mut t = TYPES.len() - 1;
            for (k, (_, share, _)) in TYPES.iter().enumerate() {
                acc += share;
                if f < acc {
                    t = k;
                    break;
                }
            }
            counts[t] += 1;
            let (name, _, quota) = TYPES[t];
            out.push(Dyno {
                procid: format!("{name}.{}", counts[t]),
                id: format!(
                    "heroku.4242.{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                    rng.u32(..),
                    rng.u16(..),
                    rng.u16(..0x1000),
                    rng.u16(..0x1000),
                    rng.u64(..1 << 48)
                ),
                quota,
                mb: quota * (LOW + rng.f64() * (HIGH - LOW)),
                phase: SignedDuration::from_millis(rng.i64(0..period_ms)),
                web: name == "web",
            });
        }
        out.sort_by_key(|d| d.phase);
        Self {
            dynos: out,
            start,
            cycle: 0,
            next: 0,
            rng,
        }
    }

    /// The log time of the next dyno's report.
    pub fn next_at(&self) -> Timestamp {
        let phase = self
            .dynos
            .get(self.next)
            .map(|d| d.phase)
            .unwrap_or_default();
        self.start
            + SignedDuration::from_millis(SAMPLE_EVERY.as_millis() as i64 * self.cycle)
            + phase
    }

    /// Appends Logplex frames to `body`: the reports of the next dynos whose
    /// log time is at or before `until`, until it holds at least `frames`
    /// frames (a dyno's report is never split) or `until` is reached.
    pub fn fill(&mut self, until: Timestamp, frames: u64, body: &mut String) -> Filled {
        let mut filled = Filled::default();
        if self.dynos.is_empty() {
            return filled;
        }
        while filled.frames < frames {
            let at = self.next_at();
            if at > until {
                break;
            }
            filled.frames += self.report(at, body);
            filled.memory_samples += 1;
            self.next += 1;
            if self.next == self.dynos.len() {
                self.next = 0;
                self.cycle += 1;
            }
        }
        filled
    }

    /// One dyno's report at `at`: its memory and load samples, then 0–4
    /// router lines (web dynos) and 0–2 app lines. Returns the frame count.
    fn report(&mut self, at: Timestamp, body: &mut String) -> u64 {
        let rng = &mut self.rng;
        let Some(d) = self.dynos.get_mut(self.next) else {
            return 0;
        };
        // A mean-reverting walk: about 1 % of the quota per sample.
        let noise = (rng.f64() + rng.f64() + rng.f64() - 1.5) * 0.02 * d.quota;
        d.mb = (d.mb + noise + 0.02 * (0.55 * d.quota - d.mb)).clamp(LOW * d.quota, HIGH * d.quota);
        let mut n = 0;
        let mut push = |line: Line, body: &mut String| {
            line.frame(body);
            n += 1;
        };
        push(
            Line {
                at,
                source: "heroku",
                procid: d.procid.clone(),
                msg: format!(
                    "source={} dyno={} sample#memory_total={:.2}MB sample#memory_rss={:.2}MB sample#memory_cache={:.2}MB sample#memory_swap=0.00MB sample#memory_pgpgin={}pages sample#memory_pgpgout={}pages sample#memory_quota={:.2}MB",
                    d.procid,
                    d.id,
                    d.mb,
                    d.mb * 0.95,
                    d.mb * 0.05,
                    rng.u32(1000..900_000),
                    rng.u32(1000..500_000),
                    d.quota
                ),
            },
            body,
        );
        push(
            Line {
                at: at + SignedDuration::from_micros(rng.i64(50..900)),
                source: "heroku",
                procid: d.procid.clone(),
                msg: format!(
                    "source={} dyno={} sample#load_avg_1m={:.2} sample#load_avg_5m={:.2} sample#load_avg_15m={:.2}",
                    d.procid,
                    d.id,
                    rng.f64() * 2.0,
                    rng.f64(),
                    rng.f64() * 0.5
                ),
            },
            body,
        );
        let routers = if d.web { rng.u32(0..=4) } else { 0 };
        for _ in 0..routers {
            push(
                Line {
                    at: at + SignedDuration::from_micros(rng.i64(1_000..900_000)),
                    source: "heroku",
                    procid: "router".into(),
                    msg: format!(
                        "at=info method=GET path=\"/products/{}\" host=shop.herokuapp.com request_id={:08x}-c44e-4f94-9a20-37df73be{:04x} fwd=\"73.75.38.87\" dyno={} connect=1ms service={}ms status=200 bytes={} protocol=https",
                        rng.u32(1..9999),
                        rng.u32(..),
                        rng.u16(..),
                        d.procid,
                        rng.u32(2..900),
                        rng.u32(100..90000)
                    ),
                },
                body,
            );
        }
        for _ in 0..rng.u32(0..=2) {
            push(
                Line {
                    at: at + SignedDuration::from_micros(rng.i64(1_000..900_000)),
                    source: "app",
                    procid: d.procid.clone(),
                    msg: format!(
                        "I, [{} #4]  INFO -- : [{:08x}] Completed 200 OK in {}ms (Views: 3.1ms | ActiveRecord: 1.2ms)",
                        at.strftime("%Y-%m-%dT%H:%M:%S%.6f"),
                        rng.u32(..),
                        rng.u32(1..500)
                    ),
                },
                body,
            );
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dyno_reports_once_per_period_in_order_and_under_quota() {
        let start = Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut fleet = SoakFleet::new(50, start, 1);
        let until = start + SAMPLE_EVERY * 2 - SignedDuration::from_millis(1);
        let mut body = String::new();
        let mut samples = 0;
        loop {
            let f = fleet.fill(until, 100, &mut body);
            if f.frames == 0 {
                break;
            }
            samples += f.memory_samples;
        }
        assert_eq!(samples, 100);
        let frames: Vec<&[u8]> = crate::ingest::logplex::Frames::new(body.as_bytes()).collect();
        let memory: Vec<&str> = frames
            .iter()
            .filter_map(|f| std::str::from_utf8(f).ok())
            .filter(|f| f.contains("sample#memory_total"))
            .collect();
        assert_eq!(memory.len(), 100);
        for line in &memory {
            let mb = |key: &str| -> f64 {
                line.split(' ')
                    .find_map(|t| t.strip_prefix(key))
                    .and_then(|v| v.strip_suffix("MB"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN)
            };
            assert!(mb("sample#memory_total=") < 0.81 * mb("sample#memory_quota="));
        }
        assert!(fleet.next_at() >= until);
    }
}
