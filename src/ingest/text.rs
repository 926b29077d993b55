//! `heroku logs` / log-session text lines:
//! `2013-08-22T02:12:56.148063+00:00 heroku[worker.1]: MESSAGE`.
//!
//! A network stream delivers these in arbitrary chunks; [`LineBuffer`] keeps
//! the partial last line of a chunk until the rest arrives (whacamole drops
//! it, losing samples). [`SseDecoder`] unwraps server-sent events, whose
//! `data:` payloads carry the same lines.

use memchr::memchr;

use super::LogRecord;

/// Parses one text line. Returns `None` for lines that are not
/// `TIMESTAMP SOURCE[PROCID]: MESSAGE`.
pub fn parse_line(line: &[u8]) -> Option<LogRecord<'_>> {
    let line = trim_end(line);
    let sp = memchr(b' ', line)?;
    let (timestamp, rest) = (&line[..sp], &line[sp + 1..]);
    let open = memchr(b'[', rest)?;
    let app = &rest[..open];
    let after = &rest[open + 1..];
    let close = memchr(b']', after)?;
    let procid = &after[..close];
    let message = after[close + 1..].strip_prefix(b":")?;
    let message = message.strip_prefix(b" ").unwrap_or(message);
    if app.is_empty() || app.contains(&b' ') {
        return None;
    }
    Some(LogRecord {
        timestamp,
        app,
        procid,
        message,
    })
}

fn trim_end(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = b {
        b = rest;
    }
    b
}

/// Longest partial line kept between chunks; a "line" longer than this is
/// not a Heroku log line and is dropped rather than buffered without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// Splits a byte stream into complete lines, carrying the partial last line
/// of each chunk over to the next.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
    /// Partial lines dropped for exceeding [`MAX_LINE`], not yet reported.
    oversized: u64,
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; calls `f` for every line completed by it (without the
    /// newline).
    pub fn push(&mut self, mut chunk: &[u8], mut f: impl FnMut(&[u8])) {
        while let Some(nl) = memchr(b'\n', chunk) {
            if self.pending.is_empty() {
                f(&chunk[..nl]);
            } else {
                self.pending.extend_from_slice(&chunk[..nl]);
                f(&self.pending);
                self.pending.clear();
            }
            chunk = &chunk[nl + 1..];
        }
        if self.pending.len() + chunk.len() > MAX_LINE {
            self.pending.clear();
            self.oversized += 1;
        } else {
            self.pending.extend_from_slice(chunk);
        }
    }

    /// Lines dropped for exceeding [`MAX_LINE`] since the last call.
    pub fn take_oversized(&mut self) -> u64 {
        std::mem::take(&mut self.oversized)
    }

    /// The stream ended: a last line without a newline is still a line.
    pub fn finish(&mut self, mut f: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            f(&self.pending);
            self.pending.clear();
        }
    }
}

/// Server-sent events → the text lines inside their `data:` fields.
///
/// Works line by line on top of [`LineBuffer`]: every `data:` line's payload
/// is a log line (a payload may also hold several newline-separated lines,
/// which arrive as several `data:` lines per the SSE rules).
#[derive(Debug, Default)]
pub struct SseDecoder {
    lines: LineBuffer,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8], mut f: impl FnMut(&[u8])) {
        self.lines.push(chunk, |line| {
            if let Some(data) = sse_data(line) {
                f(data);
            }
        });
    }

    pub fn take_oversized(&mut self) -> u64 {
        self.lines.take_oversized()
    }

    pub fn finish(&mut self, mut f: impl FnMut(&[u8])) {
        self.lines.finish(|line| {
            if let Some(data) = sse_data(line) {
                f(data);
            }
        });
    }
}

fn sse_data(line: &[u8]) -> Option<&[u8]> {
    let line = trim_end(line);
    let data = line.strip_prefix(b"data:")?;
    let data = data.strip_prefix(b" ").unwrap_or(data);
    (!data.is_empty()).then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_platform_and_app_lines() {
        let r =
            parse_line(b"2013-08-22T02:12:56.148063+00:00 heroku[worker.1]: source=worker.1 x\r\n")
                .unwrap();
        assert_eq!(r.app, b"heroku");
        assert_eq!(r.procid, b"worker.1");
        assert_eq!(r.message, b"source=worker.1 x");
        let r = parse_line(b"2013-08-22T02:12:56+00:00 app[web.2]: hello: world").unwrap();
        assert_eq!(r.app, b"app");
        assert_eq!(r.message, b"hello: world");
        assert!(parse_line(b"garbage").is_none());
        assert!(parse_line(b"").is_none());
    }

    #[test]
    fn line_buffer_carries_partial_lines() {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        for chunk in [&b"ab"[..], b"c\nde", b"f\n\ng", b"h"] {
            lb.push(chunk, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        lb.finish(|l| out.push(String::from_utf8_lossy(l).into_owned()));
        assert_eq!(out, ["abc", "def", "", "gh"]);
    }

    #[test]
    fn an_endless_line_is_dropped_and_counted_not_buffered() {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        let junk = vec![b'x'; MAX_LINE / 2 + 1];
        lb.push(&junk, |l| out.push(l.len()));
        lb.push(&junk, |l| out.push(l.len()));
        lb.push(b"\nok\n", |l| out.push(l.len()));
        assert_eq!(lb.take_oversized(), 1);
        assert_eq!(lb.take_oversized(), 0);
        // The remainder of the dropped line ends at its newline; then all is normal.
        assert_eq!(out.last(), Some(&2));
    }

    #[test]
    fn sse_unwraps_data_lines() {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        d.push(b"event: message\ndata: line one\n\nda", |l| {
            out.push(l.to_vec())
        });
        d.push(b"ta: line two\n\n: comment\n", |l| out.push(l.to_vec()));
        assert_eq!(out, [b"line one".to_vec(), b"line two".to_vec()]);
    }
}
