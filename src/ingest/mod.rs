//! Bytes → log records. Two input forms feed the same pipeline:
//!
//! * [`logplex`]: HTTPS-drain bodies (octet-counted RFC 5424 frames);
//! * [`text`]: `heroku logs` / log-session lines
//!   (`TIMESTAMP heroku[web.2]: MESSAGE`), with partial-line carry-over and
//!   server-sent-events unwrapping for streams.
//!
//! Both produce a [`LogRecord`] that borrows from the input: nothing is copied
//! until a line is known to matter.

pub mod heroku_line;
pub mod logplex;
pub mod text;

/// One log message, fields borrowed from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// RFC 3339 timestamp, unparsed (most records are dropped before it is read).
    pub timestamp: &'a [u8],
    /// `heroku` for platform lines, `app` for application output.
    pub app: &'a [u8],
    /// `web.1`, `router`, `logplex`, …
    pub procid: &'a [u8],
    pub message: &'a [u8],
}

/// What kind of saved log a buffer holds, judged from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Octet-counted frames or bare `<PRI>1 ` syslog lines (drain bodies).
    Drain,
    /// `TIMESTAMP source[procid]: message` lines.
    Text,
}

impl InputFormat {
    pub fn detect(buf: &[u8]) -> Self {
        let start = buf
            .iter()
            .position(|b| !b.is_ascii_whitespace() && *b != 0)
            .unwrap_or(buf.len());
        let rest = &buf[start..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let framed = rest.first() == Some(&b'<')
            || (digits > 0
                && rest.get(digits) == Some(&b' ')
                && rest.get(digits + 1) == Some(&b'<'));
        if framed { Self::Drain } else { Self::Text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats() {
        assert_eq!(InputFormat::detect(b"327 <134>1 2023"), InputFormat::Drain);
        assert_eq!(InputFormat::detect(b"\n<134>1 2023"), InputFormat::Drain);
        assert_eq!(
            InputFormat::detect(b"2013-08-22T02:12:56.148063+00:00 heroku[web.1]: x"),
            InputFormat::Text
        );
        assert_eq!(InputFormat::detect(b""), InputFormat::Text);
    }
}

use heroku_line::Observation;

/// What one body or stream yielded, for metrics and the replay summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    /// Frames (drain) or lines (text) read.
    pub records: u64,
    /// Frames whose octet count was wrong but whose message was recovered.
    pub repaired: u64,
    /// Broken stretches skipped, unparseable headers, bad relevant lines.
    pub rejected: u64,
    /// Observations produced (memory samples, errors, state changes, L10).
    pub observations: u64,
    /// Log times of the first and last record of a drain body (any record:
    /// lines without a memory sample are how a blind app shows). Two
    /// timestamps parsed per body, not one per line.
    pub first: Option<jiff::Timestamp>,
    pub latest: Option<jiff::Timestamp>,
}

impl IngestStats {
    /// What the framing of a drain body counted.
    pub fn add_frames(&mut self, fs: logplex::FrameStats) {
        self.records += fs.frames as u64;
        self.repaired += fs.repaired as u64;
        self.rejected += fs.rejected as u64;
    }

    pub fn add(&mut self, o: IngestStats) {
        self.records += o.records;
        self.repaired += o.repaired;
        self.rejected += o.rejected;
        self.observations += o.observations;
        self.first = match (self.first, o.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.latest = self.latest.max(o.latest);
    }
}

/// Drain body → observations. Never fails: bad input is counted.
pub fn drain_body(body: &[u8], mut f: impl FnMut(Observation)) -> IngestStats {
    let mut stats = IngestStats::default();
    let mut frames = logplex::Frames::new(body);
    let (mut first, mut last): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    for payload in frames.by_ref() {
        if let Some(ts) = frame(payload, &mut stats, &mut f) {
            first.get_or_insert(ts);
            last = Some(ts);
        }
    }
    stats.first = first.and_then(|ts| heroku_line::timestamp(ts).ok());
    stats.latest = last.and_then(|ts| heroku_line::timestamp(ts).ok());
    stats.add_frames(frames.stats());
    stats
}

/// One drain frame's payload → observation (if it matters). Returns the
/// record's timestamp, unparsed.
pub fn frame<'a>(
    payload: &'a [u8],
    stats: &mut IngestStats,
    f: &mut impl FnMut(Observation),
) -> Option<&'a [u8]> {
    match logplex::parse_record(payload) {
        Some(rec) => {
            record(&rec, stats, f);
            Some(rec.timestamp)
        }
        None => {
            stats.rejected += 1;
            None
        }
    }
}

/// One text line → observation (if it matters). Returns the line's
/// timestamp, unparsed (callers that track blindness parse the last one).
pub fn text_line<'a>(
    line: &'a [u8],
    stats: &mut IngestStats,
    f: impl FnMut(Observation),
) -> Option<&'a [u8]> {
    let mut f = f;
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    stats.records += 1;
    match text::parse_line(line) {
        Some(rec) => {
            record(&rec, stats, &mut f);
            Some(rec.timestamp)
        }
        None => {
            stats.rejected += 1;
            None
        }
    }
}

fn record(rec: &LogRecord<'_>, stats: &mut IngestStats, f: &mut impl FnMut(Observation)) {
    match heroku_line::observe(rec) {
        Ok(Some(o)) => {
            stats.observations += 1;
            f(o);
        }
        Ok(None) => {}
        Err(_) => stats.rejected += 1,
    }
}
