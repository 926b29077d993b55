//! Log record → observation: the Heroku platform lines dynoguard acts on.
//!
//! Only `heroku` platform lines from a dyno (`web.1`) or from Logplex count,
//! and the Platform API's release lines (`app[api]`). Router lines and
//! application output — most of the traffic — are dropped after a few byte
//! comparisons, before any timestamp is parsed.

use jiff::Timestamp;

use crate::domain::{DynoName, Megabytes, MemoryMb};
use crate::ingest::LogRecord;

/// One thing the platform told us about a dyno (or about the log stream).
// Serialized only to forward observations from a follower replica to the
// leader (`store::replicas`): the same values, parsed once by the follower.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Observation {
    pub at: Timestamp,
    pub kind: ObservationKind,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ObservationKind {
    /// A runtime-metrics line. Load-average lines arrive here too, with no
    /// memory fields: they still tell us the dyno's current instance.
    Sample(Sample),
    /// `Error R14 (Memory quota exceeded)`.
    R14 { dyno: DynoName },
    /// `Error R15 (Memory quota vastly exceeded)`.
    R15 { dyno: DynoName },
    /// `Process running mem=736M(143.8%)`: memory and, from the percentage,
    /// the quota.
    ProcessMemory {
        dyno: DynoName,
        memory: Megabytes,
        percent: f64,
    },
    /// The dyno manager restarted, stopped or cycled the dyno.
    State { dyno: DynoName, change: StateChange },
    /// `Error L10` / `Error L11`: the log stream lost messages.
    SamplesLost { dropped: u64 },
    /// `app[api]: Release v123 created by user@example.com`: a new release
    /// of the app (a deploy, a config change, a rollback). Drawn on the
    /// charts; nothing is decided on it.
    Release {
        /// `v123`.
        version: String,
        /// Who created it, as Heroku wrote it (an email, or e.g. `Heroku`).
        by: Option<String>,
    },
}

impl ObservationKind {
    /// The dyno the line is about (`None` for Logplex's own L10/L11).
    pub fn dyno(&self) -> Option<&DynoName> {
        match self {
            Self::Sample(s) => s.dyno.as_ref(),
            Self::R14 { dyno }
            | Self::R15 { dyno }
            | Self::ProcessMemory { dyno, .. }
            | Self::State { dyno, .. } => Some(dyno),
            Self::SamplesLost { .. } | Self::Release { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StateChange {
    /// `Starting process with command …`: an instance of the name is born.
    Starting,
    Restarting,
    Cycling,
    /// `State changed from up to starting` etc.
    Changed {
        from: String,
        to: String,
    },
    Exited {
        status: i32,
    },
    Killed,
}

impl StateChange {
    /// Does the line mark the birth of an instance? Only `Starting process`:
    /// it comes before anything the new process logs, so an instance that
    /// logged before it is older than one whose first line follows it.
    /// (`State changed from starting to up` does not: a slow boot logs its
    /// first sample before it.)
    pub fn is_birth(&self) -> bool {
        matches!(self, Self::Starting)
    }
}

/// A runtime-metrics sample for one dyno instance.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub dyno: Option<DynoName>,
    /// The UUID of this dyno instance (`dyno=heroku.N.UUID`); a new one means
    /// the dyno was replaced.
    pub instance: Option<String>,
    pub memory: Memory,
    /// A memory field was present but not a number of MB (`inf`, `1e308GB`).
    pub malformed: bool,
    /// The app's number in `dyno=heroku.N.UUID` (`source=heroku.N.…`): every
    /// dyno of one app carries the same, so a sample with another number is
    /// another app's (a drain pointed at the wrong URL).
    pub app_number: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    pub total: Option<Megabytes>,
    pub rss: Option<Megabytes>,
    pub cache: Option<Megabytes>,
    pub swap: Option<Megabytes>,
    pub quota: Option<Megabytes>,
}

/// Why a line that looked relevant could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("bad timestamp")]
    Timestamp,
    #[error("runtime-metrics line without a dyno name")]
    NoDyno,
    #[error(
        "implausible memory figure (negative, not finite, over 1 TB, or a stated or implied quota under 64 MB or over the largest dyno)"
    )]
    Implausible,
    #[error("a platform line holding a line break (two frames run together)")]
    Multiline,
}

/// No dyno has more than this (the largest has 126 GB).
pub const MAX_PLAUSIBLE_MB: f64 = 1024.0 * 1024.0;
/// No dyno has a quota under this (the smallest has 512 MB).
pub const MIN_PLAUSIBLE_QUOTA_MB: f64 = 64.0;

impl Memory {
    /// The figures dynoguard keeps and shows (not `cache`), in MB.
    pub fn mb(&self) -> MemoryMb {
        MemoryMb {
            total: self.total.map(Megabytes::get),
            rss: self.rss.map(Megabytes::get),
            swap: self.swap.map(Megabytes::get),
            quota: self.quota.map(Megabytes::get),
        }
    }

    /// Every figure finite, not negative, at most 1 TB; a quota at least 64 MB.
    pub fn plausible(&self) -> bool {
        let ok = |m: Option<Megabytes>| {
            m.is_none_or(|m| m.0.is_finite() && (0.0..=MAX_PLAUSIBLE_MB).contains(&m.0))
        };
        ok(self.total)
            && ok(self.rss)
            && ok(self.cache)
            && ok(self.swap)
            && ok(self.quota)
            && self.quota.is_none_or(|q| q.0 >= MIN_PLAUSIBLE_QUOTA_MB)
    }
}

/// Classifies one record: `Ok(None)` for the lines dynoguard ignores.
pub fn observe(rec: &LogRecord<'_>) -> Result<Option<Observation>, LineError> {
    if rec.app != b"heroku" {
        // Logplex's own lines in text form come as `logplex[1]:`.
        if rec.app == b"logplex" {
            return lost(rec);
        }
        // The Platform API logs releases as `app[api]`. Application output
        // never has this procid: Heroku sets it to the dyno's name (`web.1`,
        // `api.1`, `run.1234`), so a bare `api` is the platform's.
        if rec.app == b"app" && rec.procid == b"api" {
            return release(rec);
        }
        return Ok(None);
    }
    match rec.procid {
        b"router" | b"api" => return Ok(None),
        b"logplex" => return lost(rec),
        _ => {}
    }
    let msg = rec.message;
    let Some(&first) = msg.first() else {
        return Ok(None);
    };
    if !matches!(first, b's' | b'd' | b'm' | b'E' | b'P' | b'S' | b'R' | b'C') {
        return Ok(None);
    }
    let Some(dyno) = DynoName::parse_bytes(rec.procid) else {
        // Text lines from very old logs could say `heroku[router]` etc.
        return Ok(None);
    };
    let Ok(msg) = std::str::from_utf8(msg) else {
        return Ok(None);
    };
    // Heroku's platform lines are one line each. A break means bytes of two
    // frames were run together: nothing in it is trusted.
    if memchr::memchr2(b'\n', b'\r', msg.trim_end().as_bytes()).is_some() {
        return Err(LineError::Multiline);
    }
    let metrics = ["source=", "sample#", "dyno=", "measure="];
    let kind = if metrics.iter().any(|p| msg.starts_with(p)) {
        let s = parse_sample(msg, Some(dyno));
        if s.dyno.is_none() {
            return Err(LineError::NoDyno);
        }
        if s.malformed || !s.memory.plausible() {
            return Err(LineError::Implausible);
        }
        ObservationKind::Sample(s)
    } else if msg.starts_with("Error R14") {
        ObservationKind::R14 { dyno }
    } else if msg.starts_with("Error R15") {
        ObservationKind::R15 { dyno }
    } else if let Some(rest) = msg.strip_prefix("Process running mem=") {
        match parse_process_memory(rest) {
            Some((memory, percent)) => ObservationKind::ProcessMemory {
                dyno,
                memory,
                percent,
            },
            None => return Err(LineError::Implausible),
        }
    } else if let Some(change) = parse_state(msg) {
        ObservationKind::State { dyno, change }
    } else {
        return Ok(None);
    };
    Ok(Some(Observation {
        at: timestamp(rec.timestamp)?,
        kind,
    }))
}

fn lost(rec: &LogRecord<'_>) -> Result<Option<Observation>, LineError> {
    let Ok(msg) = std::str::from_utf8(rec.message) else {
        return Ok(None);
    };
    if !(msg.starts_with("Error L10") || msg.starts_with("Error L11")) {
        return Ok(None);
    }
    let dropped = dropped_count(msg);
    Ok(Some(Observation {
        at: timestamp(rec.timestamp)?,
        kind: ObservationKind::SamplesLost { dropped },
    }))
}

/// Longest `by` kept: Heroku writes an email or a short name; anything
/// longer is not worth a chart's hover text.
const MAX_RELEASE_BY: usize = 120;

/// `Release v123 created by user@example.com` → `v123`, `user@example.com`.
///
/// Only `Release` lines: the `Deploy 1a2b3c4 by …` line of a build is
/// followed by the `Release` line it creates (every deploy is a release),
/// so a marker for both would draw two at the same instant.
fn release(rec: &LogRecord<'_>) -> Result<Option<Observation>, LineError> {
    let Some(rest) = rec.message.strip_prefix(b"Release v") else {
        return Ok(None);
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return Ok(None);
    };
    if memchr::memchr2(b'\n', b'\r', rest.trim_end().as_bytes()).is_some() {
        return Err(LineError::Multiline);
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    // `v` and up to 9 digits (Heroku's versions count up from 1); a space
    // or the end after them, so `Release v12abc` is no release.
    if digits == 0 || digits > 9 || !matches!(rest.as_bytes().get(digits), None | Some(b' ')) {
        return Ok(None);
    }
    let version = format!("v{}", &rest[..digits]);
    let by = rest[digits..]
        .trim()
        .strip_prefix("created by ")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| b.chars().take(MAX_RELEASE_BY).collect::<String>());
    Ok(Some(Observation {
        at: timestamp(rec.timestamp)?,
        kind: ObservationKind::Release { version, by },
    }))
}

/// The `N` of every known L10/L11 wording: `2 messages dropped since …`,
/// `drain 'd.…' dropped 1 messages since …`, `… dropped 1101 messages since …`
/// (the number right before `message(s)`). 0 when no wording matches.
fn dropped_count(msg: &str) -> u64 {
    let mut prev: Option<&str> = None;
    for word in msg.split_ascii_whitespace() {
        if word.starts_with("message")
            && let Some(n) = prev.and_then(|p| p.parse::<u64>().ok())
        {
            return n;
        }
        prev = Some(word);
    }
    0
}

/// RFC 3339 with any number of fractional digits and any offset.
pub fn timestamp(b: &[u8]) -> Result<Timestamp, LineError> {
    if let Some(t) = utc_timestamp(b) {
        return Ok(t);
    }
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .ok_or(LineError::Timestamp)
}

/// The shape Logplex writes, `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+00:00)`
/// with a year from 1970 and a valid date and time, read without the
/// general parser (every sample's timestamp passes here). Anything else is
/// `None`, and [`timestamp`] asks jiff, which gives the same instant for
/// everything this accepts.
fn utc_timestamp(b: &[u8]) -> Option<Timestamp> {
    fn num(b: &[u8]) -> Option<i64> {
        b.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    }
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, minute, second) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    let mut rest = &b[19..];
    let mut nanos = 0i64;
    if let [b'.', frac @ ..] = rest {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = num(&frac[..digits])? * 10i64.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    if rest != b"Z" && rest != b"+00:00" {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1970 || day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    #[allow(clippy::cast_possible_truncation)] // below 10^9
    Timestamp::new(secs, nanos as i32).ok()
}

/// The leading `N.` of `N.UUID` / `N.web.2.UUID`: digits only, at most 18.
fn app_number(rest: &str) -> Option<u64> {
    let (n, _) = rest.split_once('.')?;
    (!n.is_empty() && n.len() <= 18 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// Parses the `key=value` fields of a runtime-metrics line, current
/// (`sample#memory_total=…MB`) or legacy (`measure=memory_total val=… units=MB`).
/// Fields may come in any order and any number; unknown ones are ignored.
pub fn parse_sample(msg: &str, procid: Option<DynoName>) -> Sample {
    let mut s = Sample {
        dyno: procid,
        ..Sample::default()
    };
    // The last `source=`: parsed as it comes when legacy (it carries the
    // instance), else only at the end and only if the procid names no dyno.
    let mut source_name: Option<Option<DynoName>> = None;
    let mut source_raw: Option<&str> = None;
    let (mut measure, mut val) = (None, None);
    // `msg.split(' ')` by memchr: every sample line passes here.
    let bytes = msg.as_bytes();
    let mut start = 0;
    while start <= bytes.len() {
        let end = memchr::memchr(b' ', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        // Cut at ASCII spaces and `=`: always on character boundaries.
        let token = &msg[start..end];
        start = end + 1;
        let Some(eq) = memchr::memchr(b'=', token.as_bytes()) else {
            continue;
        };
        let (key, value) = (&token[..eq], &token[eq + 1..]);
        match key {
            "source" => {
                if let Some(rest) = value.strip_prefix("heroku.") {
                    // Legacy: heroku.APPID.web.2.UUID
                    s.app_number = s.app_number.or_else(|| app_number(rest));
                    let (name, uuid) = split_legacy_source(rest);
                    source_name = Some(name);
                    source_raw = None;
                    if s.instance.is_none() {
                        s.instance = uuid;
                    }
                } else {
                    source_name = None;
                    source_raw = Some(value);
                }
            }
            "dyno" => {
                // heroku.APPID.UUID
                if let Some(uuid) = value.rsplit('.').next().filter(|u| looks_like_uuid(u)) {
                    s.instance = Some(uuid.to_owned());
                }
                if let Some(rest) = value.strip_prefix("heroku.") {
                    s.app_number = app_number(rest);
                }
            }
            "measure" => measure = Some(value),
            "val" => val = Megabytes::parse(value),
            _ => {
                if let Some(field) = key.strip_prefix("sample#memory_")
                    && let Some(slot) = field_slot(&mut s.memory, field)
                {
                    // Only the fields dynoguard uses are parsed.
                    let v = Megabytes::parse(value);
                    *slot = v;
                    if v.is_none() {
                        s.malformed = true;
                    }
                }
            }
        }
    }
    if let (Some(m), Some(v)) = (measure.and_then(|m| m.strip_prefix("memory_")), val) {
        set_field(&mut s.memory, m, Some(v));
    }
    if s.dyno.is_none() {
        s.dyno = match (source_name, source_raw) {
            (Some(parsed), _) => parsed,
            (None, Some(raw)) => DynoName::parse(raw),
            (None, None) => None,
        };
    }
    s
}

/// The slot of a known memory field; `None` for fields dynoguard does not use.
fn field_slot<'m>(m: &'m mut Memory, field: &str) -> Option<&'m mut Option<Megabytes>> {
    Some(match field {
        "total" => &mut m.total,
        "rss" => &mut m.rss,
        "cache" => &mut m.cache,
        "swap" => &mut m.swap,
        "quota" => &mut m.quota,
        _ => return None,
    })
}

/// Sets a known memory field; false for fields dynoguard does not use.
fn set_field(m: &mut Memory, field: &str, v: Option<Megabytes>) -> bool {
    match field_slot(m, field) {
        Some(slot) => {
            *slot = v;
            true
        }
        None => false,
    }
}

fn split_legacy_source(rest: &str) -> (Option<DynoName>, Option<String>) {
    // APPID.TYPE.N.UUID
    let Some((_app_id, rest)) = rest.split_once('.') else {
        return (None, None);
    };
    match rest.rsplit_once('.') {
        Some((name, uuid)) if looks_like_uuid(uuid) => {
            (DynoName::parse(name), Some(uuid.to_owned()))
        }
        _ => (DynoName::parse(rest), None),
    }
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// `736M(143.8%)`, `1028MB(103.3%)`.
///
/// The decide layer derives a quota from this line (`mem × 100 / percent`)
/// and acts on it: `600M(100000%)` would make it a 0.6 MB quota, and the next
/// 300 MB sample a restart. So the implied quota is held to the same bounds as
/// a stated one: at least [`MIN_PLAUSIBLE_QUOTA_MB`], at most the largest
/// dyno size with a tenth to spare.
fn parse_process_memory(rest: &str) -> Option<(Megabytes, f64)> {
    let (mem, pct) = rest.split_once('(')?;
    let mem = Megabytes::parse(mem)?;
    let pct: f64 = pct.trim_end().strip_suffix("%)")?.parse().ok()?;
    let plausible = pct.is_finite()
        && pct > 0.0
        && pct <= 100_000.0
        && mem.0.is_finite()
        && (0.0..=MAX_PLAUSIBLE_MB).contains(&mem.0);
    if !plausible {
        return None;
    }
    let quota = mem.0 * 100.0 / pct;
    (quota.is_finite() && (MIN_PLAUSIBLE_QUOTA_MB..=max_derived_quota_mb()).contains(&quota))
        .then_some((mem, pct))
}

/// The largest quota a `Process running` line may imply: the largest Heroku
/// dyno with 10 % to spare (the percent is rounded to one decimal).
fn max_derived_quota_mb() -> f64 {
    crate::domain::DYNO_SIZES
        .iter()
        .map(|(_, mb)| *mb)
        .fold(0.0, f64::max)
        * 1.1
}

fn parse_state(msg: &str) -> Option<StateChange> {
    if msg.starts_with("Starting process with command") {
        Some(StateChange::Starting)
    } else if msg.starts_with("Restarting") {
        Some(StateChange::Restarting)
    } else if msg.starts_with("Cycling") {
        Some(StateChange::Cycling)
    } else if let Some(rest) = msg.strip_prefix("State changed from ") {
        let (from, to) = rest.split_once(" to ")?;
        Some(StateChange::Changed {
            from: from.to_owned(),
            to: to.trim().to_owned(),
        })
    } else if let Some(rest) = msg.strip_prefix("Process exited with status ") {
        Some(StateChange::Exited {
            status: rest.trim().parse().ok()?,
        })
    } else if msg.starts_with("Stopping process with SIGKILL") {
        Some(StateChange::Killed)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path reads exactly what jiff reads, and leaves the rest to it.
    #[test]
    fn utc_timestamps_read_as_jiff_reads_them() {
        let jiff = |s: &str| s.parse::<Timestamp>().ok();
        for s in [
            "2023-02-13T22:12:51.822974+00:00",
            "2023-02-13T22:12:51Z",
            "2024-02-29T23:59:59.999999999Z",
            "2000-02-29T00:00:00.1+00:00",
            "1970-01-01T00:00:00Z",
            "2100-12-31T12:00:00.000001+00:00",
        ] {
            assert_eq!(utc_timestamp(s.as_bytes()), jiff(s), "{s}");
            assert!(utc_timestamp(s.as_bytes()).is_some(), "{s}");
        }
        for s in [
            "2023-02-30T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-02-13T24:00:00Z",
            "2023-02-13T22:60:00Z",
            "2016-12-31T23:59:60Z",
            "2023-02-13T22:12:51.Z",
            "2023-02-13T22:12:51.1234567890Z",
            "2023-02-13T22:12:51+01:00",
            "2023-02-13t22:12:51z",
            "1969-12-31T23:59:59Z",
            "2023-02-13T22:12:51",
            "2023-02-13 22:12:51Z",
            "+2023-02-13T22:12:51Z",
        ] {
            assert_eq!(utc_timestamp(s.as_bytes()), None, "{s}");
            assert_eq!(timestamp(s.as_bytes()).ok(), jiff(s), "{s}");
        }
        let mut rng = fastrand::Rng::with_seed(21);
        for _ in 0..50_000 {
            let s = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{}",
                rng.i64(1970..2200),
                rng.u8(1..13),
                rng.u8(1..32),
                rng.u8(0..24),
                rng.u8(0..60),
                rng.u8(0..60),
                match rng.usize(0..4) {
                    0 => String::new(),
                    n => format!(".{}", rng.u64(0..10u64.pow(3 * n as u32))),
                },
                if rng.bool() { "Z" } else { "+00:00" },
            );
            assert_eq!(timestamp(s.as_bytes()).ok(), jiff(&s), "{s}");
        }
    }
    use crate::ingest::{logplex, text};

    fn drain(payload: &str) -> Option<Observation> {
        observe(&logplex::parse_record(payload.as_bytes()).unwrap()).unwrap()
    }

    fn sample(o: Option<Observation>) -> Sample {
        match o.map(|o| o.kind) {
            Some(ObservationKind::Sample(s)) => s,
            other => panic!("not a sample: {other:?}"),
        }
    }

    #[test]
    fn current_sample_any_order_decimals_kept() {
        let s = sample(drain(
            "<134>1 2023-02-13T22:12:51.822974+00:00 host heroku web.1 - sample#memory_quota=512.00MB sample#memory_total=512.50MB source=web.1 dyno=heroku.1.cfe2c338-81f4-40d4-bfb2-13f4e5e31fce sample#new_field=3 sample#memory_swap=1.25MB",
        ));
        assert_eq!(s.dyno.unwrap().as_str(), "web.1");
        assert_eq!(
            s.instance.as_deref(),
            Some("cfe2c338-81f4-40d4-bfb2-13f4e5e31fce")
        );
        assert_eq!(s.memory.total, Some(Megabytes(512.5)));
        assert_eq!(s.memory.quota, Some(Megabytes(512.0)));
        assert_eq!(s.memory.swap, Some(Megabytes(1.25)));
        assert_eq!(s.memory.rss, None);
    }

    #[test]
    fn quota_is_optional() {
        let s = sample(drain(
            "<134>1 2023-02-13T22:12:51Z host heroku worker.3 - source=worker.3 dyno=heroku.1.cfe2c338-81f4-40d4-bfb2-13f4e5e31fce sample#memory_total=100MB",
        ));
        assert_eq!(s.memory.quota, None);
        assert_eq!(s.memory.total, Some(Megabytes(100.0)));
    }

    #[test]
    fn legacy_lines() {
        let r = text::parse_line(b"2013-08-21T21:57:15.513688+00:00 heroku[web.2]: source=heroku.772639.web.2.c04b10ff-4903-43cb-9de2-90f8a4fbf2f1 measure=memory_total val=766.50 units=MB").unwrap();
        let s = sample(observe(&r).unwrap());
        assert_eq!(s.dyno.unwrap().as_str(), "web.2");
        assert_eq!(
            s.instance.as_deref(),
            Some("c04b10ff-4903-43cb-9de2-90f8a4fbf2f1")
        );
        assert_eq!(s.memory.total, Some(Megabytes(766.5)));
        let r = text::parse_line(b"2013-08-21T21:57:15.513688+00:00 heroku[web.2]: source=heroku.772639.web.2.c04b10ff-4903-43cb-9de2-90f8a4fbf2f1 measure=memory_total val=509 units=MB").unwrap();
        assert_eq!(
            sample(observe(&r).unwrap()).memory.total,
            Some(Megabytes(509.0))
        );
    }

    #[test]
    fn errors_state_and_lost() {
        let at = "<134>1 2023-02-14T22:40:09.731329+00:00 host heroku web.1 - ";
        assert!(matches!(
            drain(&format!("{at}Error R14 (Memory quota exceeded)"))
                .unwrap()
                .kind,
            ObservationKind::R14 { .. }
        ));
        assert!(matches!(
            drain(&format!("{at}Error R15 (Memory quota vastly exceeded)"))
                .unwrap()
                .kind,
            ObservationKind::R15 { .. }
        ));
        match drain(&format!("{at}Process running mem=736M(143.8%)"))
            .unwrap()
            .kind
        {
            ObservationKind::ProcessMemory {
                memory, percent, ..
            } => {
                assert_eq!(memory, Megabytes(736.0));
                assert_eq!(percent, 143.8);
            }
            k => panic!("{k:?}"),
        }
        assert!(matches!(
            drain(&format!("{at}Process running mem=1028MB(103.3%)"))
                .unwrap()
                .kind,
            ObservationKind::ProcessMemory { .. }
        ));
        assert_eq!(
            drain(&format!("{at}State changed from up to starting"))
                .unwrap()
                .kind,
            ObservationKind::State {
                dyno: DynoName::parse("web.1").unwrap(),
                change: StateChange::Changed {
                    from: "up".into(),
                    to: "starting".into()
                }
            }
        );
        assert!(matches!(
            drain(&format!("{at}Restarting")).unwrap().kind,
            ObservationKind::State {
                change: StateChange::Restarting,
                ..
            }
        ));
        assert!(matches!(
            drain(&format!("{at}Process exited with status 137"))
                .unwrap()
                .kind,
            ObservationKind::State {
                change: StateChange::Exited { status: 137 },
                ..
            }
        ));
        let l10 = drain("<172>1 2023-02-12T20:47:48.605013+00:00 host heroku logplex - Error L10 (output buffer overflow): 2 messages dropped since 2023-02-12T20:46:53.025447+00:00.").unwrap();
        assert_eq!(l10.kind, ObservationKind::SamplesLost { dropped: 2 });
    }

    #[test]
    fn the_app_number_is_read_from_dyno_and_legacy_source() {
        let s = sample(drain(
            "<134>1 2023-02-13T22:12:51Z host heroku web.1 - source=web.1 dyno=heroku.15253441.cfe2c338-81f4-40d4-bfb2-13f4e5e31fce sample#memory_total=100MB",
        ));
        assert_eq!(s.app_number, Some(15_253_441));
        let r = text::parse_line(b"2013-08-21T21:57:15.513688+00:00 heroku[web.2]: source=heroku.772639.web.2.c04b10ff-4903-43cb-9de2-90f8a4fbf2f1 measure=memory_total val=766.50 units=MB").unwrap();
        assert_eq!(sample(observe(&r).unwrap()).app_number, Some(772_639));
        let odd = sample(drain(
            "<134>1 2023-02-13T22:12:51Z host heroku web.1 - source=web.1 dyno=heroku.x1.cfe2c338-81f4-40d4-bfb2-13f4e5e31fce sample#memory_total=100MB",
        ));
        assert_eq!(odd.app_number, None);
    }

    #[test]
    fn app_output_and_router_are_dropped() {
        assert!(drain("<190>1 2023-02-14T22:40:15.843112+00:00 host app web.1 - source=web.1 sample#memory_total=9999MB").is_none());
        assert!(
            drain(
                "<158>1 2020-01-08T22:33:57.353034+00:00 host heroku router - at=info dyno=web.1"
            )
            .is_none()
        );
        // A birth line is a state change (it orders instances), not a sample.
        let born = drain("<134>1 2023-02-14T22:40:12.861788+00:00 host heroku web.1 - Starting process with command `x`").unwrap();
        assert!(matches!(
            born.kind,
            ObservationKind::State {
                change: StateChange::Starting,
                ..
            }
        ));
        assert!(drain("<190>1 2023-02-14T22:40:12.861788+00:00 host app web.1 - Starting process with command `x`").is_none());
        let r = text::parse_line(
            b"2013-08-22T02:12:56+00:00 app[web.2]: Error R14 (Memory quota exceeded)",
        )
        .unwrap();
        assert_eq!(observe(&r).unwrap(), None);
    }

    fn release(version: &str, by: Option<&str>) -> ObservationKind {
        ObservationKind::Release {
            version: version.into(),
            by: by.map(str::to_owned),
        }
    }

    #[test]
    fn platform_api_release_lines_are_releases() {
        let o = drain("<45>1 2023-02-14T22:40:15.843112+00:00 host app api - Release v123 created by user@example.com").unwrap();
        assert_eq!(o.kind, release("v123", Some("user@example.com")));
        assert_eq!(o.at, "2023-02-14T22:40:15.843112Z".parse().unwrap());
        assert_eq!(o.kind.dyno(), None, "about the app, not a dyno");
        let r = text::parse_line(
            b"2023-02-14T22:40:15+00:00 app[api]: Release v9 created by Heroku Git",
        )
        .unwrap();
        assert_eq!(
            observe(&r).unwrap().unwrap().kind,
            release("v9", Some("Heroku Git"))
        );
        let r = text::parse_line(b"2023-02-14T22:40:15+00:00 app[api]: Release v10").unwrap();
        assert_eq!(observe(&r).unwrap().unwrap().kind, release("v10", None));
        // Other API lines, and near misses, are not releases.
        for other in [
            "Deploy 1a2b3c4 by user@example.com",
            "Set FOO config vars by user@example.com",
            "Scaled to web@2:Standard-1X by user@example.com",
            "Release vX created by user@example.com",
            "Release v12abc created by user@example.com",
            "Release v",
        ] {
            let r = format!("2023-02-14T22:40:15+00:00 app[api]: {other}");
            let r = text::parse_line(r.as_bytes()).unwrap();
            assert_eq!(observe(&r).unwrap(), None, "{other}");
        }
    }

    #[test]
    fn app_output_saying_release_is_not_a_release() {
        // The app's own output carries its dyno's name as procid.
        for line in [
            "<190>1 2023-02-14T22:40:15.843112+00:00 host app web.1 - Release v9 created by mallory@example.com",
            "<190>1 2023-02-14T22:40:15.843112+00:00 host app api.1 - Release v9 created by mallory@example.com",
            "<134>1 2023-02-14T22:40:15.843112+00:00 host heroku api - Release v9 created by mallory@example.com",
        ] {
            assert!(drain(line).is_none(), "{line}");
        }
        let r = text::parse_line(
            b"2023-02-14T22:40:15+00:00 app[web.1]: Release v9 created by mallory@example.com",
        )
        .unwrap();
        assert_eq!(observe(&r).unwrap(), None);
    }

    #[test]
    fn a_release_line_with_a_break_is_not_trusted() {
        let rec = logplex::parse_record(
            b"<45>1 2023-02-14T22:40:15Z host app api - Release v9 created by x\n99 <134>1 2023-02-13T22:12:51Z host heroku web.1 - Error R15",
        )
        .unwrap();
        assert_eq!(observe(&rec), Err(LineError::Multiline));
    }

    #[test]
    fn every_l10_l11_wording_gives_its_count() {
        for (line, n) in [
            (
                "<172>1 2023-02-12T20:47:48.605013+00:00 host heroku logplex - Error L10 (output buffer overflow): 2 messages dropped since 2023-02-12T20:46:53.025447+00:00.",
                2,
            ),
            (
                "<172>1 2023-02-12T20:47:48.605013+00:00 host heroku logplex - Error L10 (output buffer overflow): drain 'd.9f0c1a2b-1111-2222-3333-444455556666' dropped 1 messages since 2023-02-12T20:46:53+00:00.",
                1,
            ),
            (
                "<172>1 2023-02-12T20:47:48.605013+00:00 host heroku logplex - Error L11 (Tail buffer overflow) -> This tail session dropped 1101 messages since 2023-02-12T20:46:53+00:00.",
                1101,
            ),
        ] {
            assert_eq!(
                drain(line).unwrap().kind,
                ObservationKind::SamplesLost { dropped: n },
                "{line}"
            );
        }
    }

    #[test]
    fn implausible_numbers_are_bad_input() {
        let at = "<134>1 2023-02-13T22:12:51Z host heroku web.1 - source=web.1 ";
        for bad in [
            "sample#memory_total=100.00MB sample#memory_quota=1e-320MB",
            "sample#memory_total=1e308GB sample#memory_quota=512.00MB",
            "sample#memory_total=inf sample#memory_quota=512.00MB",
            "sample#memory_total=2000000.00MB sample#memory_quota=512.00MB",
            "sample#memory_total=100.00MB sample#memory_quota=10.00MB",
        ] {
            let rec = logplex::parse_record(format!("{at}{bad}").into_bytes().leak()).unwrap();
            assert_eq!(observe(&rec), Err(LineError::Implausible), "{bad}");
        }
        let rec = logplex::parse_record(
            b"<134>1 2023-02-13T22:12:51Z host heroku web.1 - Process running mem=1e400M(143.8%)",
        )
        .unwrap();
        assert_eq!(observe(&rec), Err(LineError::Implausible));
    }

    #[test]
    fn a_process_line_implying_an_implausible_quota_is_bad_input() {
        let at = "<134>1 2023-02-13T22:12:51Z host heroku web.1 - Process running mem=";
        for bad in [
            // 0.6 MB quota: the next 300 MB sample would look like 50000 %.
            "600M(100000%)",
            // Under 64 MB.
            "63M(100.0%)",
            "100M(200.0%)",
            // Above the largest dyno (126 GB) with a tenth to spare.
            "150000M(100.0%)",
            "1000M(0.5%)",
            // Percent not finite or not positive.
            "736M(0%)",
            "736M(-143.8%)",
            "736M(NaN%)",
            "736M(inf%)",
            "736M(1e-320%)",
            "-736M(143.8%)",
            "NaNM(143.8%)",
        ] {
            let rec = logplex::parse_record(format!("{at}{bad}").into_bytes().leak()).unwrap();
            assert_eq!(observe(&rec), Err(LineError::Implausible), "{bad}");
        }
        for good in [
            "736M(143.8%)",
            "64M(100.0%)",
            "1028MB(103.3%)",
            "141926M(100.0%)",
            "2700M(105.0%)",
        ] {
            let rec = logplex::parse_record(format!("{at}{good}").into_bytes().leak()).unwrap();
            assert!(
                matches!(
                    observe(&rec),
                    Ok(Some(Observation {
                        kind: ObservationKind::ProcessMemory { .. },
                        ..
                    }))
                ),
                "{good}"
            );
        }
    }

    #[test]
    fn a_rejected_process_line_is_counted() {
        let line =
            "<134>1 2023-02-13T22:12:51Z host heroku web.1 - Process running mem=600M(100000%)";
        let body = format!("{} {line}\n", line.len() + 1);
        let mut seen = 0;
        let stats = crate::ingest::drain_body(body.as_bytes(), |_| seen += 1);
        assert_eq!((seen, stats.observations, stats.rejected), (0, 0, 1));
    }

    #[test]
    fn a_platform_line_with_a_break_is_not_trusted() {
        let rec = logplex::parse_record(
            b"<134>1 2023-02-13T22:12:51Z host heroku web.1 - source=web.1 sample#memory_total=1MB\n101 <134>1 2023-02-13T22:12:51Z host heroku web.1 - Error R15 (Memory quota vastly exceeded)",
        )
        .unwrap();
        assert_eq!(observe(&rec), Err(LineError::Multiline));
    }

    #[test]
    fn bad_timestamp_is_an_error_not_a_panic() {
        let r = logplex::parse_record(
            b"<134>1 yesterday host heroku web.1 - Error R14 (Memory quota exceeded)",
        )
        .unwrap();
        assert_eq!(observe(&r), Err(LineError::Timestamp));
    }
}
