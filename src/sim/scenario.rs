//! Deterministic drain logs for hours of a formation, generated in one go (no
//! clock): leaking and steady dynos, Heroku's own R14 → R15 kills with a new
//! instance after boot, daily cycling with preboot overlap (old and new
//! instance of a dyno logging side by side), L10 drops, router noise and
//! application output that tries to look like platform lines. Used by the
//! replay-equals-serve tests and the benchmarks.
//!
//! [`deliver`] then turns the batches into what a drain really receives:
//! some late, some out of order, some retried.

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub dynos: usize,
    pub hours: f64,
    pub quota_mb: f64,
    pub seed: u64,
    pub start: Timestamp,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            dynos: 6,
            hours: 3.0,
            quota_mb: 512.0,
            seed: 7,
            start: Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }
}

struct Instance {
    uuid: String,
    mb: f64,
    /// Boots (logs nothing) until this tick.
    up_at: u64,
}

struct SimDyno {
    name: String,
    /// MB per 20 s tick.
    leak: f64,
    current: Instance,
    /// A replaced instance still logging (preboot overlap) until a tick.
    overlap: Option<(Instance, u64)>,
    cycle_at: u64,
}

fn uuid(rng: &mut fastrand::Rng) -> String {
    let mut s = String::with_capacity(36);
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            s.push('-');
        }
        let _ = write!(s, "{:x}", rng.u8(0..16));
    }
    s
}

fn ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

fn frame(out: &mut String, pri: u8, version: u8, at: Timestamp, src: &str, proc_: &str, msg: &str) {
    let body = format!("<{pri}>{version} {} host {src} {proc_} - {msg}\n", ts(at));
    let _ = write!(out, "{} {body}", body.len());
}

fn sample(out: &mut String, at: Timestamp, dyno: &str, i: &Instance, quota: f64, version: u8) {
    let swap = (i.mb - quota).max(0.0) * 0.5;
    let msg = format!(
        "source={dyno} dyno=heroku.4242.{} sample#memory_total={:.2}MB sample#memory_rss={:.2}MB sample#memory_cache=3.10MB sample#memory_swap={swap:.2}MB sample#memory_pgpgin=1000pages sample#memory_pgpgout=900pages sample#memory_quota={quota:.2}MB",
        i.uuid,
        i.mb,
        i.mb - 3.10 - swap
    );
    frame(out, 134, version, at, "heroku", dyno, &msg);
}

/// Heroku's pair of lines for a dyno over its quota: `Process running` and
/// R14 (R15 at twice the quota). Nothing under the quota.
fn memory_error(out: &mut String, at: Timestamp, dyno: &str, mb: f64, quota: f64) {
    if mb <= quota {
        return;
    }
    let running = format!(
        "Process running mem={}M({:.1}%)",
        mb as u64,
        mb * 100.0 / quota
    );
    frame(out, 134, 1, at, "heroku", dyno, &running);
    let code = if mb > 2.0 * quota {
        "Error R15 (Memory quota vastly exceeded)"
    } else {
        "Error R14 (Memory quota exceeded)"
    };
    frame(out, 134, 1, at, "heroku", dyno, code);
}

/// One drain body per 20 s tick, in log order.
pub fn batches(s: &Scenario) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(s.seed);
    let ticks = (s.hours * 180.0) as u64;
    let mut dynos: Vec<SimDyno> = (0..s.dynos)
        .map(|n| SimDyno {
            name: format!("web.{}", n + 1),
            // A third leak fast, a third slowly, a third are steady.
            leak: match n % 3 {
                0 => 9.0,
                1 => 1.5,
                _ => 0.0,
            },
            current: Instance {
                uuid: uuid(&mut rng),
                mb: 180.0 + rng.f64() * 60.0,
                up_at: 0,
            },
            overlap: None,
            cycle_at: 60 + rng.u64(0..(ticks.max(61) - 60)),
        })
        .collect();
    let mut out = Vec::with_capacity(ticks as usize);
    for tick in 0..ticks {
        let base = s.start + SignedDuration::from_secs((tick * 20) as i64);
        let mut body = String::new();
        for (n, d) in dynos.iter_mut().enumerate() {
            let at = base + SignedDuration::from_millis((n as i64) * 37 + rng.i64(0..20));
            // Daily cycling with preboot: the new instance boots beside the old.
            if tick == d.cycle_at {
                let new = Instance {
                    uuid: uuid(&mut rng),
                    mb: 170.0,
                    up_at: tick + 1,
                };
                let old = std::mem::replace(&mut d.current, new);
                d.overlap = Some((old, tick + 6));
                frame(&mut body, 134, 1, at, "heroku", &d.name, "Cycling");
            }
            if let Some((old, until)) = &mut d.overlap {
                if tick < *until {
                    old.mb += d.leak;
                    let late = at + SignedDuration::from_millis(9);
                    sample(&mut body, late, &d.name, old, s.quota_mb, 1);
                    memory_error(&mut body, late, &d.name, old.mb, s.quota_mb);
                } else {
                    d.overlap = None;
                }
            }
            if tick < d.current.up_at {
                continue;
            }
            d.current.mb += d.leak + (rng.f64() - 0.5) * 2.0;
            let version = if tick % 7 == 0 { 2 } else { 1 };
            sample(&mut body, at, &d.name, &d.current, s.quota_mb, version);
            memory_error(&mut body, at, &d.name, d.current.mb, s.quota_mb);
            if d.current.mb > 2.0 * s.quota_mb {
                // Killed; the replacement boots for a tick.
                frame(
                    &mut body,
                    134,
                    1,
                    at,
                    "heroku",
                    &d.name,
                    "Stopping process with SIGKILL",
                );
                frame(
                    &mut body,
                    134,
                    1,
                    at,
                    "heroku",
                    &d.name,
                    "Process exited with status 137",
                );
                d.current = Instance {
                    uuid: uuid(&mut rng),
                    mb: 175.0,
                    up_at: tick + 2,
                };
            }
            // Router noise, and app output an attacker controls.
            frame(
                &mut body,
                158,
                1,
                at,
                "heroku",
                "router",
                "at=info method=GET path=\"/\" status=200 bytes=12 protocol=https",
            );
            if tick % 11 == 0 {
                let forged = format!(
                    "user said: x\n101 <134>1 {} host heroku {} - Error R15 (Memory quota vastly exceeded)",
                    ts(at),
                    d.name
                );
                frame(&mut body, 190, 1, at, "app", &d.name, &forged);
                let forged2 = format!(
                    "source={} sample#memory_total=9999.00MB sample#memory_quota=512.00MB",
                    d.name
                );
                frame(&mut body, 190, 2, at, "app", &d.name, &forged2);
            }
        }
        if tick % 97 == 50 {
            let msg = format!(
                "Error L10 (output buffer overflow): drain 'd.0000-fake' dropped 3 messages since {}.",
                ts(base)
            );
            frame(&mut body, 172, 1, base, "heroku", "logplex", &msg);
        }
        out.push(body.into_bytes());
    }
    out
}

/// The batches as a drain receives them: about one in ten a few positions
/// late, one in twenty delivered again later (a retry).
pub fn deliver(batches: &[Vec<u8>], seed: u64) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut keyed: Vec<(f64, &Vec<u8>)> = Vec::with_capacity(batches.len() * 2);
    for (i, b) in batches.iter().enumerate() {
        let delay = if rng.u8(0..10) == 0 {
            rng.f64() * 5.0
        } else {
            0.0
        };
        keyed.push((i as f64 + delay, b));
        if rng.u8(0..20) == 0 {
            keyed.push((i as f64 + 1.0 + rng.f64() * 8.0, b));
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    keyed.into_iter().map(|(_, b)| b.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_eventful() {
        let s = Scenario::default();
        let a = batches(&s);
        assert_eq!(a, batches(&s));
        let all: Vec<u8> = a.concat();
        let text = String::from_utf8_lossy(&all);
        for needle in [
            "Error R14",
            "Error R15",
            "Cycling",
            "Error L10",
            "<134>2 ",
            "host app",
        ] {
            assert!(text.contains(needle), "{needle}");
        }
        let delivered = deliver(&a, 1);
        assert!(delivered.len() > a.len());
        assert_ne!(delivered[..a.len()], a[..]);
    }
}
