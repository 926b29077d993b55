//! Newtypes parsed once at the edge: an app name, a dyno (process) name, an
//! amount of memory. Everything past the parsers works with these, never with
//! raw strings.

pub mod event;
pub mod secret;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Heroku app name or id, as used in Platform API paths.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid app name {0:?}: use lowercase letters, digits and dashes (or an app UUID)")]
pub struct InvalidAppName(pub String);

impl AppName {
    pub fn parse(s: &str) -> Result<Self, InvalidAppName> {
        let ok = !s.is_empty()
            && s.len() <= 100
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidAppName(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AppName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for AppName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A dyno's process name in the formation: `web.1`, `slow_worker.12`.
///
/// The process *type* is everything before the last dot; matching on it is
/// exact, so `worker` never matches `slow_worker.2`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DynoName {
    name: String,
    dot: usize,
}

impl DynoName {
    /// Parses `TYPE.N`; returns `None` for router, logplex, api and friends.
    pub fn parse(s: &str) -> Option<Self> {
        Self::parse_bytes(s.as_bytes())
    }

    pub fn parse_bytes(b: &[u8]) -> Option<Self> {
        let dot = memchr::memrchr(b'.', b)?;
        let (ty, num) = (&b[..dot], &b[dot + 1..]);
        let ty_ok = !ty.is_empty()
            && ty.len() <= 64
            && ty
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        let num_ok = !num.is_empty() && num.len() <= 9 && num.iter().all(u8::is_ascii_digit);
        if !(ty_ok && num_ok) {
            return None;
        }
        // Validated as ASCII above.
        let name = std::str::from_utf8(b).ok()?.to_owned();
        Some(Self { name, dot })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The name, without a copy.
    pub fn into_string(self) -> String {
        self.name
    }

    /// The process type: `web` for `web.1`.
    pub fn process_type(&self) -> &str {
        &self.name[..self.dot]
    }
}

/// For maps keyed by name that copy the name only when they insert it.
impl From<&DynoName> for DynoName {
    fn from(d: &DynoName) -> Self {
        d.clone()
    }
}

impl fmt::Display for DynoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for DynoName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a dyno name")))
    }
}

impl Serialize for DynoName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

/// Heroku's dyno sizes (reference §2.8): the names a size goes by (compared
/// case-insensitively) and its memory quota in MB.
pub const DYNO_SIZES: [(&[&str], f64); 7] = [
    (&["eco", "basic", "free", "hobby", "standard-1x"], 512.0),
    (&["standard-2x", "private-s", "shield-s"], 1024.0),
    (&["performance-m", "private-m", "shield-m"], 2560.0),
    (&["performance-l", "private-l", "shield-l"], 14336.0),
    (
        &["performance-l-ram", "private-l-ram", "shield-l-ram"],
        30720.0,
    ),
    (&["performance-xl", "private-xl", "shield-xl"], 63488.0),
    (&["performance-2xl", "private-2xl", "shield-2xl"], 129024.0),
];

/// Memory quota in MB of a dyno size name, for when neither samples nor
/// `/dyno-sizes` give it.
pub fn quota_for_size(size: &str) -> Option<f64> {
    let size = size.to_ascii_lowercase();
    DYNO_SIZES
        .iter()
        .find(|(names, _)| names.contains(&size.as_str()))
        .map(|(_, mb)| *mb)
}

/// A dyno's memory figures in MB (Heroku's "MB" are mebibytes), each when
/// known: what a sample reported, as the store keeps it and the page, the
/// API and `/metrics` show it. In JSON: `memory_total_mb`, `memory_rss_mb`,
/// `memory_swap_mb`, `memory_quota_mb`, as in events.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct MemoryMb {
    #[serde(rename = "memory_total_mb")]
    pub total: Option<f64>,
    #[serde(rename = "memory_rss_mb")]
    pub rss: Option<f64>,
    #[serde(rename = "memory_swap_mb")]
    pub swap: Option<f64>,
    #[serde(rename = "memory_quota_mb")]
    pub quota: Option<f64>,
}

impl MemoryMb {
    /// `total` as a percentage of `quota` (a quota of 0 has none).
    pub fn percent_of_quota(&self) -> Option<f64> {
        match (self.total, self.quota) {
            (Some(t), Some(q)) if q > 0.0 => Some(t * 100.0 / q),
            _ => None,
        }
    }
}

/// Megabytes as Heroku reports them (`512.00MB`), decimals kept.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct Megabytes(pub f64);

impl Megabytes {
    pub fn get(self) -> f64 {
        self.0
    }

    /// Parses `768.00MB`, `768MB`, `768M`, `768` (and `1.5GB`, `1GB`).
    pub fn parse(s: &str) -> Option<Self> {
        // The runtime-metrics shape, `381.45MB`: what the general path
        // below makes of it, without trimming and searching.
        if let Some(v) = s.strip_suffix("MB").and_then(plain_decimal) {
            return Some(Self(v));
        }
        let s = s.trim();
        let (num, mult) = if let Some(n) = s.strip_suffix("GB") {
            (n, 1024.0)
        } else if let Some(n) = s.strip_suffix("MB").or_else(|| s.strip_suffix('M')) {
            (n, 1.0)
        } else {
            (s, 1.0)
        };
        let num = num.trim();
        let v: f64 = match plain_decimal(num) {
            Some(v) => v,
            None => num.parse().ok()?,
        };
        // `1e308GB` overflows to infinity once scaled: check the product.
        let mb = v * mult;
        (mb.is_finite() && mb >= 0.0).then_some(Self(mb))
    }
}

/// `123` or `123.45` with at most 15 digits, the common shape of a sample,
/// without the general float parser: the digits make an integer below 2^53
/// and 10^k is exact, so one division rounds correctly — the very value
/// `str::parse` gives. Anything else is `None` (the caller parses it).
fn plain_decimal(s: &str) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let b = s.as_bytes();
    let (int, frac) = match memchr::memchr(b'.', b) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b[..0]),
    };
    let has_dot = int.len() < b.len();
    if int.is_empty() || (has_dot && frac.is_empty()) || int.len() + frac.len() > 15 {
        return None;
    }
    let mut m: u64 = 0;
    for &c in int.iter().chain(frac) {
        if !c.is_ascii_digit() {
            return None;
        }
        m = m * 10 + u64::from(c - b'0');
    }
    #[allow(clippy::cast_precision_loss)] // below 10^15 < 2^53: exact
    let m = m as f64;
    Some(m / POW10[frac.len()])
}

impl fmt::Display for Megabytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.fract() == 0.0 {
            write!(f, "{}MB", self.0)
        } else {
            write!(f, "{:.2}MB", self.0)
        }
    }
}

impl Serialize for Megabytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

/// Read back from what another replica forwarded: a figure the parser could
/// not have produced (negative, not finite) is refused.
impl<'de> Deserialize<'de> for Megabytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        (v.is_finite() && v >= 0.0)
            .then_some(Self(v))
            .ok_or_else(|| serde::de::Error::custom(format!("{v} is not a size in MB")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path gives exactly what `str::parse` gives, and declines
    /// what it does not cover.
    #[test]
    fn plain_decimal_is_str_parse() {
        for s in [
            "0",
            "0.0",
            "512.00",
            "123.45",
            "999999999999999",
            "99999999999999.9",
            "0.1",
            "0.30",
            "1.005",
            "471.23",
            "00012.5000",
            "7",
            "3.14159265358979",
        ] {
            assert_eq!(plain_decimal(s), Some(s.parse::<f64>().unwrap()), "{s}");
        }
        for s in [
            "",
            ".",
            "1.",
            ".5",
            "1e3",
            "-1",
            "+1",
            "1.2.3",
            "1234567890123456",
            "12a",
            "inf",
        ] {
            assert_eq!(plain_decimal(s), None, "{s}");
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100_000 {
            let int = rng.u64(0..1_000_000_000);
            let frac_digits = rng.usize(0..6);
            let s = if frac_digits == 0 {
                int.to_string()
            } else {
                let frac = rng.u64(0..10u64.pow(frac_digits as u32));
                format!("{int}.{frac:0w$}", w = frac_digits)
            };
            assert_eq!(plain_decimal(&s), Some(s.parse::<f64>().unwrap()), "{s}");
        }
    }

    #[test]
    fn dyno_type_is_exact() {
        let d = DynoName::parse("slow_worker.2").unwrap();
        assert_eq!(d.process_type(), "slow_worker");
        assert_ne!(d.process_type(), "worker");
        assert_eq!(DynoName::parse("web.1").unwrap().process_type(), "web");
    }

    #[test]
    fn non_dynos_are_rejected() {
        for s in [
            "router", "logplex", "api", "web", "web.", ".1", "web.x", "we b.1", "",
        ] {
            assert!(DynoName::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn dyno_sizes_by_any_name_and_case() {
        assert_eq!(quota_for_size("Standard-1X"), Some(512.0));
        assert_eq!(quota_for_size("performance-M"), Some(2560.0));
        assert_eq!(quota_for_size("shield-2xl"), Some(129024.0));
        assert_eq!(quota_for_size("huge"), None);
    }

    #[test]
    fn megabytes_keep_decimals() {
        assert_eq!(Megabytes::parse("512.50MB"), Some(Megabytes(512.5)));
        assert_eq!(Megabytes::parse("736M"), Some(Megabytes(736.0)));
        assert_eq!(Megabytes::parse("1GB"), Some(Megabytes(1024.0)));
        assert_eq!(Megabytes::parse("-1MB"), None);
        assert_eq!(Megabytes::parse("NaNMB"), None);
        assert_eq!(Megabytes::parse("abc"), None);
    }
}
