//! Every policy knob, once: its TOML key, its config-var suffix, what values
//! it allows and how a value is parsed. The environment (`WEB_SETTLE`,
//! `DYNOGUARD_SETTLE`) and the TOML file (`settle = "2m"`) both go through
//! [`Knob::set`], so a value means the same and is refused with the same
//! message wherever it is written.

use jiff::SignedDuration;

use crate::decide::policy::{Parallelism, Policy, Threshold};
use crate::domain::Megabytes;

use super::{format_duration, parse_duration};

/// What setting a knob gave: a policy change and maybe a warning.
pub type Outcome = Result<Option<String>, String>;

/// One policy knob (SPEC §6).
pub struct Knob {
    /// Key in TOML tables: `restart_window`.
    pub key: &'static str,
    /// Config-var suffix: `RESTART_WINDOW` (→ `WEB_RESTART_WINDOW`,
    /// `DYNOGUARD_RESTART_WINDOW`).
    pub env: &'static str,
    /// What is allowed, said in every message about it.
    pub allowed: &'static str,
    set: fn(&mut Policy, &str) -> Outcome,
}

impl Knob {
    /// Parses `value` into `policy`: `Err` says what is wrong and what is
    /// allowed; `Ok(Some(_))` is a warning (accepted but implausible).
    pub fn set(&self, policy: &mut Policy, value: &str) -> Outcome {
        (self.set)(policy, value.trim()).map_err(|why| {
            format!(
                "{value:?} is not allowed{why}; use {}",
                self.allowed,
                value = value.trim()
            )
        })
    }

    pub fn by_key(key: &str) -> Option<&'static Knob> {
        KNOBS.iter().find(|k| k.key == key)
    }

    /// The knob whose suffix ends `var` (`WEB_RESTART_WINDOW` → restart_window,
    /// prefix `WEB`).
    pub fn by_var(var: &str) -> Option<(&str, &'static Knob)> {
        KNOBS.iter().find_map(|k| {
            let prefix = var.strip_suffix(k.env)?.strip_suffix('_')?;
            (!prefix.is_empty()).then_some((prefix, k))
        })
    }
}

/// Sizes: `1024`, `1024MB`, `1024mb`, `1024 M`, `1.5GB`, `2g` (MB = MiB, as
/// Heroku counts them).
pub fn parse_size(s: &str) -> Option<Megabytes> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let (num, mult) = [
        ("gib", 1024.0),
        ("gb", 1024.0),
        ("g", 1024.0),
        ("mib", 1.0),
        ("mb", 1.0),
        ("m", 1.0),
    ]
    .iter()
    .find_map(|(unit, mult)| lower.strip_suffix(unit).map(|n| (n, *mult)))
    .unwrap_or((lower.as_str(), 1.0));
    let v: f64 = num.trim().parse().ok()?;
    let mb = v * mult;
    (mb.is_finite() && mb >= 0.0).then_some(Megabytes(mb))
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn is_off(s: &str) -> bool {
    matches!(s.to_ascii_lowercase().as_str(), "off" | "none" | "false")
}

const MAX_MB: f64 = 1024.0 * 1024.0;

fn duration(s: &str, min: SignedDuration, max: SignedDuration) -> Result<SignedDuration, String> {
    let d = parse_duration(s).ok_or_else(String::new)?;
    if d < min || d > max {
        return Err(format!(" (out of range: {})", format_duration(d)));
    }
    Ok(d)
}

fn count(s: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: i64 = s.parse().map_err(|_| String::new())?;
    u32::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| " (out of range)".to_owned())
}

fn threshold(p: &mut Policy, s: &str) -> Outcome {
    let t = if let Some(pct) = s.strip_suffix('%') {
        let v: f64 = pct.trim().parse().map_err(|_| String::new())?;
        if !(v.is_finite() && (1.0..=1000.0).contains(&v)) {
            return Err(" (out of range)".into());
        }
        Threshold::Percent(v)
    } else {
        let m = parse_size(s).ok_or_else(String::new)?;
        if !(1.0..=MAX_MB).contains(&m.0) {
            return Err(" (out of range)".into());
        }
        Threshold::Absolute(m)
    };
    p.threshold = t;
    Ok(threshold_warning(t))
}

/// The largest dyno's memory (performance-2xl): no dyno ever has more.
fn largest_dyno_mb() -> f64 {
    crate::domain::DYNO_SIZES
        .iter()
        .map(|(_, mb)| *mb)
        .fold(0.0, f64::max)
}

/// A threshold that is accepted but almost surely not what was meant: one
/// that restarts every dyno (a restart storm) or one that can never fire.
fn threshold_warning(t: Threshold) -> Option<String> {
    match t {
        Threshold::Percent(v) if v > 200.0 => Some(format!(
            "{v}% of the quota can never fire: Heroku kills a dyno with R15 at 200% of its quota (at 120% on Performance-L-RAM and larger, at 100% in private spaces) before dynoguard would restart it; use 100% or less"
        )),
        Threshold::Percent(v) if v < 50.0 => Some(format!(
            "{v}% of the quota is implausibly low (under 50%): healthy dynos would be restarted"
        )),
        // dark_knight's thresholds are MB, and `90` is easily written for
        // 90 %: as MB it is below every dyno's footprint, a restart storm.
        Threshold::Absolute(m) if m.0 <= 100.0 => Some(format!(
            "{m} is implausibly low (the smallest dyno has 512MB): every dyno would be restarted, again and again; did you mean {}%? A bare number is megabytes; a percentage of the quota needs the % sign",
            m.0
        )),
        Threshold::Absolute(m) if m.0 > largest_dyno_mb() => Some(format!(
            "{m} is more than the largest dyno has ({}MB, Performance-2XL): it can never be reached, and no dyno would be restarted; use a size under the dyno's quota (1024, 1GB) or a percentage (95%)",
            largest_dyno_mb()
        )),
        _ => None,
    }
}

/// Every knob, in the order `check` prints them.
pub static KNOBS: [Knob; 14] = [
    Knob {
        key: "threshold",
        env: "RESTART_THRESHOLD",
        allowed: "megabytes from 1 to 1048576 (1024, 1024MB, 1.5GB) or a percentage of the dyno's quota from 1% to 1000% (95%)",
        set: threshold,
    },
    Knob {
        key: "restart_window",
        env: "RESTART_WINDOW",
        allowed: "a duration from 1s to 7d: seconds (600) or 30s, 10m, 1h",
        set: |p, s| {
            p.restart_window = duration(
                s,
                SignedDuration::from_secs(1),
                SignedDuration::from_hours(168),
            )?;
            Ok((p.restart_window < SignedDuration::from_mins(1)).then(|| {
                "a restart window under a minute may restart a dyno again before its replacement has booted".to_owned()
            }))
        },
    },
    Knob {
        key: "on_r14",
        env: "ON_R14",
        allowed: "true or false (1/0, yes/no, on/off)",
        set: |p, s| {
            p.on_r14 = parse_bool(s).ok_or_else(String::new)?;
            Ok(None)
        },
    },
    Knob {
        key: "on_r15",
        env: "ON_R15",
        allowed: "true or false (1/0, yes/no, on/off)",
        set: |p, s| {
            p.on_r15 = parse_bool(s).ok_or_else(String::new)?;
            Ok(None)
        },
    },
    Knob {
        key: "swap_threshold",
        env: "SWAP_THRESHOLD",
        allowed: "a size from 1MB to 1048576MB (64MB, 1GB) or off",
        set: |p, s| {
            if is_off(s) {
                p.swap_threshold = None;
                return Ok(None);
            }
            let m = parse_size(s).ok_or_else(String::new)?;
            if !(1.0..=MAX_MB).contains(&m.0) {
                return Err(" (out of range)".into());
            }
            p.swap_threshold = Some(m);
            Ok(None)
        },
    },
    Knob {
        key: "consecutive",
        env: "CONSECUTIVE",
        allowed: "a count of samples from 1 to 100",
        set: |p, s| {
            p.consecutive = count(s, 1, 100)?;
            Ok(None)
        },
    },
    Knob {
        key: "predict",
        env: "PREDICT",
        allowed: "a duration from 1s to 24h (2m) or off",
        set: |p, s| {
            p.predict = if is_off(s) {
                None
            } else {
                Some(duration(
                    s,
                    SignedDuration::from_secs(1),
                    SignedDuration::from_hours(24),
                )?)
            };
            Ok(p.predict
                .filter(|h| *h > SignedDuration::from_mins(5))
                .map(|h| {
                    format!(
                        "predict {} looks far ahead: a GC sawtooth or a wandering dyno near its quota may be restarted (the simulator's table is in BENCHMARKS.md)",
                        format_duration(h)
                    )
                }))
        },
    },
    Knob {
        key: "predict_floor",
        env: "PREDICT_FLOOR",
        allowed: "a percentage of the dyno's quota from 50% to 100% (85%)",
        set: |p, s| {
            let v: f64 = s
                .strip_suffix('%')
                .unwrap_or(s)
                .trim()
                .parse()
                .map_err(|_| String::new())?;
            if !(v.is_finite() && (50.0..=100.0).contains(&v)) {
                return Err(" (out of range)".into());
            }
            p.predict_floor = v;
            Ok((v < 80.0).then(|| {
                format!("a predict floor of {v}% lets the trend restart dynos with a fifth of their quota free")
            }))
        },
    },
    Knob {
        key: "predict_window",
        env: "PREDICT_WINDOW",
        allowed: "a duration from 2m to 1h (10m)",
        set: |p, s| {
            // At most the hour of samples kept per instance; at least six
            // samples, and the trend waits until the instance has logged
            // for this long (a long window delays every prediction).
            p.predict_window = duration(
                s,
                SignedDuration::from_mins(2),
                SignedDuration::from_hours(1),
            )?;
            Ok(None)
        },
    },
    Knob {
        key: "max_parallel",
        env: "MAX_PARALLEL",
        allowed: "a count from 1 to 1000 (2) or a percentage of the type's dynos from 1% to 100% (25%)",
        set: |p, s| {
            p.max_parallel = match s.strip_suffix('%') {
                Some(pct) => {
                    let v: f64 = pct.trim().parse().map_err(|_| String::new())?;
                    if !(v.is_finite() && (1.0..=100.0).contains(&v)) {
                        return Err(" (out of range)".into());
                    }
                    Parallelism::Percent(v)
                }
                None => Parallelism::Count(count(s, 1, 1000)?),
            };
            Ok(None)
        },
    },
    Knob {
        key: "settle",
        env: "SETTLE",
        allowed: "a duration from 1s to 1h (2m)",
        set: |p, s| {
            p.settle = duration(
                s,
                SignedDuration::from_secs(1),
                SignedDuration::from_hours(1),
            )?;
            Ok(None)
        },
    },
    Knob {
        key: "flap_limit",
        env: "FLAP_LIMIT",
        allowed: "a count of restarts from 1 to 1000",
        set: |p, s| {
            p.flap_limit = count(s, 1, 1000)?;
            Ok(None)
        },
    },
    Knob {
        key: "flap_window",
        env: "FLAP_WINDOW",
        allowed: "a duration from 1m to 7d (1h)",
        set: |p, s| {
            p.flap_window = duration(
                s,
                SignedDuration::from_mins(1),
                SignedDuration::from_hours(168),
            )?;
            Ok(None)
        },
    },
    Knob {
        key: "dry_run",
        env: "DRY_RUN",
        allowed: "true or false (1/0, yes/no, on/off)",
        set: |p, s| {
            p.dry_run = parse_bool(s).ok_or_else(String::new)?;
            Ok(None)
        },
    },
];

/// The default for `blind_after` (SPEC §8: lines but no memory sample).
pub const DEFAULT_BLIND_AFTER: SignedDuration = SignedDuration::from_mins(5);
pub const BLIND_AFTER_ALLOWED: &str = "a duration from 1m to 24h (5m)";

pub fn parse_blind_after(s: &str) -> Result<SignedDuration, String> {
    duration(
        s.trim(),
        SignedDuration::from_mins(1),
        SignedDuration::from_hours(24),
    )
    .map_err(|why| {
        format!(
            "{:?} is not allowed{why}; use {BLIND_AFTER_ALLOWED}",
            s.trim()
        )
    })
}

/// Edit distance ≤ 2 between two short names: for "did you mean …?".
pub fn similar(a: &str, b: &str) -> bool {
    a.chars().count().abs_diff(b.chars().count()) <= 2 && super::names::distance(a, b) <= 2
}

/// `did you mean "worker"?` for the first similar candidate, or nothing.
pub fn suggestion<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    candidates
        .into_iter()
        .find(|c| similar(&given.to_ascii_lowercase(), &c.to_ascii_lowercase()))
        .map(|c| format!("; did you mean {c}?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, v: &str) -> Result<(Policy, Option<String>), String> {
        let mut p = Policy::default();
        let w = Knob::by_key(key).unwrap().set(&mut p, v)?;
        Ok((p, w))
    }

    #[test]
    fn sizes_in_any_case_and_unit() {
        for (s, mb) in [
            ("1024", 1024.0),
            ("1024mb", 1024.0),
            ("1024 MB", 1024.0),
            ("1024M", 1024.0),
            ("1.5GB", 1536.0),
            ("2g", 2048.0),
            ("1GiB", 1024.0),
        ] {
            assert_eq!(parse_size(s), Some(Megabytes(mb)), "{s}");
        }
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
    }

    #[test]
    fn every_refusal_says_the_range() {
        let e = set("threshold", "5000%").unwrap_err();
        assert_eq!(
            e,
            "\"5000%\" is not allowed (out of range); use megabytes from 1 to 1048576 (1024, 1024MB, 1.5GB) or a percentage of the dyno's quota from 1% to 1000% (95%)"
        );
        assert!(
            set("consecutive", "0")
                .unwrap_err()
                .contains("from 1 to 100")
        );
        assert!(set("settle", "2h").unwrap_err().contains("from 1s to 1h"));
        assert!(
            set("on_r14", "maybe")
                .unwrap_err()
                .contains("true or false")
        );
        assert!(
            set("max_parallel", "0%")
                .unwrap_err()
                .contains("from 1% to 100%")
        );
    }

    #[test]
    fn implausible_thresholds_are_warned_not_refused() {
        let (p, w) = set("threshold", "1").unwrap();
        assert_eq!(p.threshold, Threshold::Absolute(Megabytes(1.0)));
        assert!(w.unwrap().contains("did you mean 1%?"));
        let w = set("threshold", "90").unwrap().1.unwrap();
        assert!(w.starts_with("90MB is implausibly low"), "{w}");
        assert!(w.contains("did you mean 90%?"), "{w}");
        assert!(set("threshold", "100").unwrap().1.is_some());
        assert!(set("threshold", "101").unwrap().1.is_none());
        let w = set("threshold", "600%").unwrap().1.unwrap();
        assert!(w.contains("can never fire"), "{w}");
        assert!(set("threshold", "200%").unwrap().1.is_none());
        let w = set("threshold", "200GB").unwrap().1.unwrap();
        assert!(
            w.contains("more than the largest dyno has (129024MB"),
            "{w}"
        );
        assert!(set("threshold", "126GB").unwrap().1.is_none());
        assert!(set("threshold", "30%").unwrap().1.unwrap().contains("50%"));
        assert!(set("threshold", "95%").unwrap().1.is_none());
        assert!(set("threshold", "1024mb").unwrap().1.is_none());
    }

    #[test]
    fn predict_knobs() {
        assert_eq!(set("predict", "off").unwrap().0.predict, None);
        let (p, w) = set("predict", "2m").unwrap();
        assert_eq!((p.predict, w), (Some(SignedDuration::from_mins(2)), None));
        assert!(
            set("predict", "30m")
                .unwrap()
                .1
                .unwrap()
                .contains("sawtooth")
        );
        assert_eq!(set("predict_floor", "90%").unwrap().0.predict_floor, 90.0);
        assert_eq!(set("predict_floor", "90").unwrap().0.predict_floor, 90.0);
        assert!(set("predict_floor", "75%").unwrap().1.is_some());
        assert!(
            set("predict_floor", "40%")
                .unwrap_err()
                .contains("from 50% to 100%")
        );
        assert_eq!(
            set("predict_window", "20m").unwrap().0.predict_window,
            SignedDuration::from_mins(20)
        );
        assert!(
            set("predict_window", "90m")
                .unwrap_err()
                .contains("from 2m to 1h")
        );
        let (prefix, k) = Knob::by_var("WEB_PREDICT_FLOOR").unwrap();
        assert_eq!((prefix, k.key), ("WEB", "predict_floor"));
        let (prefix, k) = Knob::by_var("DYNOGUARD_PREDICT").unwrap();
        assert_eq!((prefix, k.key), ("DYNOGUARD", "predict"));
    }

    #[test]
    fn vars_find_their_knob_and_prefix() {
        let (prefix, k) = Knob::by_var("SLOW_WORKER_RESTART_THRESHOLD").unwrap();
        assert_eq!((prefix, k.key), ("SLOW_WORKER", "threshold"));
        let (prefix, k) = Knob::by_var("WEB_FLAP_WINDOW").unwrap();
        assert_eq!((prefix, k.key), ("WEB", "flap_window"));
        assert!(Knob::by_var("RESTART_THRESHOLD").is_none());
        assert!(Knob::by_var("DATABASE_URL").is_none());
        assert!(
            set("swap_threshold", "off")
                .unwrap()
                .0
                .swap_threshold
                .is_none()
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggestion("wroker", ["web", "worker"]),
            "; did you mean worker?"
        );
        assert_eq!(suggestion("clock", ["web", "worker"]), "");
    }
}
