//! HTTPS-drain bodies: RFC 6587 octet-counted RFC 5424 frames as Logplex sends
//! them (`LEN <PRI>V TIMESTAMP host APP PROCID - MSG\n`, no structured data).
//!
//! Frames are cut by their octet count, never by newline. **A count that lands
//! on a frame boundary (or the end of the body) is authoritative**: nothing
//! inside that frame is ever parsed as another frame, whatever an application
//! logged into it. Real senders get the count wrong (hand-edited fixtures one
//! byte short, proxies re-joining lines, absurd lengths), and some bodies are
//! plain newline-separated syslog. A frame whose count does *not* land ends at
//! the earlier of its own newline and the next frame header
//! `LEN <PRI>V YYYY-MM-DDTHH:MM:SS` — with or without a newline before it — so
//! a platform line never runs across another frame's header (in a body with
//! no newlines the line end is the end of the body, and every later frame
//! would become part of the broken one). VERSION is any one or two digits
//! (`<40>2 ` is seen in real bodies), and frames may follow each other with no
//! newline between them.
//!
//! A count that does not land is still near the truth (senders are off by a
//! few bytes): the frame's end is looked for within [`SKEW`] bytes of where
//! its count says, and an application frame's own line end there wins over
//! a header. The shortest forged platform frame is about 55 bytes, so a
//! header forged in application text is out of reach unless the count is
//! off by more than 38 bytes. Beyond the window a platform frame (whose text
//! holds no header) ends at the first header after its start; any other runs
//! to a line end a frame follows, or to the end of the body — frames may be
//! lost there, none is forged from its text. A count that is wrong *and*
//! lands on a header inside application text is, like any landing count,
//! taken as it is.

use memchr::memchr;

use super::LogRecord;

/// Counts of what a body contained, for metrics and the `Logplex-Msg-Count`
/// cross-check.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames whose payload was handed out (well-formed or repaired).
    pub frames: usize,
    /// Frames whose octet count was wrong but whose payload was recovered.
    pub repaired: usize,
    /// Stretches of bytes that were not a frame and were skipped.
    pub rejected: usize,
}

/// Iterator over the frame payloads of one drain body.
///
/// Each item is the syslog message without its octet count and without the
/// trailing newline. Iteration never fails: broken input is skipped and counted
/// in [`Frames::stats`].
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    stats: FrameStats,
}

impl<'a> Frames<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            stats: FrameStats::default(),
        }
    }

    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    fn skip_separators(&mut self) {
        while let Some(&b) = self.buf.get(self.pos) {
            if matches!(b, b'\n' | b'\r' | b' ' | b'\t' | 0) {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The end of the payload that starts at `start` when its count is not
    /// to be trusted: the earlier of its own line end and the next frame
    /// header (`LEN <PRI>V TIMESTAMP`). Frames may follow each other with no
    /// newline, so the line end alone could be the end of the body and the
    /// broken frame would swallow every later frame — a platform line would
    /// then carry whatever those frames said.
    fn end_of_broken(&self, start: usize) -> usize {
        match self.next_header(start, true) {
            Ok(h) => h,
            Err(line_end) => (line_end + 1).min(self.buf.len()),
        }
    }

    /// The end of a payload whose count (`stated`) does not land: its own
    /// line end or the next header, looked for within [`SKEW`] bytes of the
    /// stated end — a real count is off by a few bytes, and a header forged
    /// inside application text earlier in the payload (a whole frame is
    /// longer than the window) is then never taken for a frame. A count off
    /// by more than that is re-measured from the payload start.
    fn end_of_miscounted(&self, start: usize, stated: usize) -> usize {
        let len = self.buf.len();
        let platform = self.is_platform(start);
        if stated <= len.saturating_add(SKEW) {
            let near = stated.saturating_sub(SKEW).max(start).min(len);
            // Its own newline before the window: the frame ended there.
            if let Some(i) = memchr(b'\n', &self.buf[start..near]) {
                return start + i + 1;
            }
            // An application frame's own line end near the stated end wins
            // over a header: its text may hold a forged one.
            let far = stated.saturating_add(SKEW).min(len);
            if !platform && let Some(i) = memchr(b'\n', &self.buf[near..far]) {
                return near + i + 1;
            }
            match self.next_header(near, true) {
                Ok(h) if h <= stated.saturating_add(SKEW) => return h,
                Err(line_end) if line_end <= stated.saturating_add(SKEW) => {
                    return (line_end + 1).min(len);
                }
                _ => {}
            }
        }
        // Off by more than the window. A platform frame's own text holds no
        // header, so the first one after its start is the next frame. Any
        // other frame's text is an application's, which may hold a forged
        // header anywhere: it runs to its own line end — in a body with no
        // newline, to the end (the frames after it are lost, counted; none
        // is forged).
        if platform {
            self.end_of_broken(start)
        } else {
            // Its line end where a frame follows it (Logplex ends frames with
            // a newline); else the end of the body.
            let mut from = start;
            while let Some(i) = memchr(b'\n', &self.buf[from..]) {
                let nl = from + i + 1;
                if nl >= len || boundary_at(self.buf, nl).is_some() {
                    return nl.min(len);
                }
                from = nl;
            }
            len
        }
    }

    /// Is the payload at `start` a platform frame (`… host heroku …`)?
    fn is_platform(&self, start: usize) -> bool {
        let head = &self.buf[start..self.buf.len().min(start + 200)];
        head.split(|b| *b == b' ')
            .nth(3)
            .is_some_and(|app| app == b"heroku")
    }

    /// Does a payload ending at `at` end where a frame should: on its own
    /// newline, or (after separators) at the end of the body or a frame start?
    fn ends_cleanly(&self, at: usize) -> bool {
        if self.buf[..at].last() == Some(&b'\n') {
            return true;
        }
        let mut i = at;
        while let Some(&(b'\n' | b'\r' | 0)) = self.buf.get(i) {
            i += 1;
        }
        i >= self.buf.len() || boundary_at(self.buf, i).is_some()
    }

    /// Does the count of the frame whose payload starts at `start` land?
    ///
    /// A count a few bytes too long can land inside the next frame's own
    /// `LEN ` (on a shorter number, or on the bare `<PRI>`). Taking that would
    /// steal the next frame's digits, and the next frame — left with a wrong
    /// count — would be cut by line, exposing whatever its message holds. So
    /// when a header starting just before the landing point also covers it,
    /// the reading whose counts keep landing for longer wins; on a tie the
    /// stated count stays authoritative (a payload may end in digits).
    fn count_lands(&self, start: usize, stated: usize) -> bool {
        if stated > self.buf.len() || !self.ends_cleanly(stated) {
            return false;
        }
        // Only digits, or `LEN ` before a bare `<`, can be covered by a
        // header that starts earlier: the usual landing after `\n` is final.
        if !matches!(self.buf[..stated].last(), Some(b'0'..=b'9' | b' ')) {
            return true;
        }
        let from = stated.saturating_sub(MAX_DIGITS + 1).max(start + 1);
        let mut landed: Option<usize> = None;
        !(from..stated).any(|q| {
            header_at(self.buf, q).is_some_and(|h| {
                h.payload_start >= stated && {
                    let here = *landed.get_or_insert_with(|| self.chain(stated));
                    self.chain(q) > here
                }
            })
        })
    }

    /// How many frames in a row, from `at`, have counts that land (the end
    /// of the body counts as all of them), up to [`CHAIN`].
    fn chain(&self, mut at: usize) -> usize {
        for n in 0..CHAIN {
            while let Some(&(b'\n' | b'\r' | 0)) = self.buf.get(at) {
                at += 1;
            }
            if at >= self.buf.len() {
                return CHAIN;
            }
            match boundary_at(self.buf, at) {
                None => return n,
                Some(Boundary { len: None, .. }) => return n + 1,
                Some(h) => match h.len.map(|len| h.payload_start.saturating_add(len)) {
                    Some(end) if end <= self.buf.len() && self.ends_cleanly(end) => at = end,
                    _ => return n + 1,
                },
            }
        }
        CHAIN
    }

    /// Does this header's own count land (one step; no look further)?
    fn header_count_lands(&self, h: &Boundary) -> bool {
        h.len.is_some_and(|len| {
            let end = h.payload_start.saturating_add(len);
            end <= self.buf.len() && self.ends_cleanly(end)
        })
    }

    /// The first frame header (`LEN <PRI>V TIMESTAMP`) that starts at or
    /// after `from`, found through the `<` of its PRI; with `in_line`, only
    /// before the next newline (`Err` is then that newline, or the end of the
    /// body). When the digits before ` <` run on (a frame ending in digits
    /// with no newline after it), the split whose count lands is taken, else
    /// the longest. Work is linear in the distance to what is found.
    fn next_header(&self, from: usize, in_line: bool) -> Result<usize, usize> {
        let mut search = from;
        while search < self.buf.len() {
            let rest = &self.buf[search..];
            let hit = if in_line {
                memchr::memchr2(b'<', b'\n', rest)
            } else {
                memchr(b'<', rest)
            };
            let Some(i) = hit else { break };
            let lt = search + i;
            if self.buf[lt] == b'\n' {
                return Err(lt);
            }
            search = lt + 1;
            if lt < from + 2 || self.buf[lt - 1] != b' ' {
                continue;
            }
            let mut d = lt - 1;
            while d > from && self.buf[d - 1].is_ascii_digit() {
                d -= 1;
            }
            let first = lt - 1 - (lt - 1 - d).min(MAX_DIGITS);
            let candidates = (first..lt - 1).filter_map(|s| header_at(self.buf, s).map(|h| (s, h)));
            let mut longest = None;
            for (s, h) in candidates {
                if self.header_count_lands(&h) {
                    return Ok(s);
                }
                longest.get_or_insert(s);
            }
            if let Some(s) = longest {
                return Ok(s);
            }
        }
        Err(self.buf.len())
    }

    /// Skips to the next frame start after `from` — a frame header, or a bare
    /// `<PRI>V TIMESTAMP` at a line start — counting one rejection.
    fn resync(&mut self, from: usize) {
        self.stats.rejected += 1;
        let len = self.buf.len();
        let header = self.next_header(from, false).ok();
        let limit = header.unwrap_or(len);
        let mut bare = None;
        let mut search = from;
        while search < limit {
            let Some(i) = memchr(b'<', &self.buf[search..limit]) else {
                break;
            };
            let lt = search + i;
            if lt > 0
                && matches!(self.buf[lt - 1], b'\n' | b'\r')
                && pri_version_len(&self.buf[lt..])
                    .is_some_and(|n| looks_like_timestamp(&self.buf[lt + n..]))
            {
                bare = Some(lt);
                break;
            }
            search = lt + 1;
        }
        self.pos = bare.or(header).unwrap_or(len);
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            self.skip_separators();
            if self.pos >= self.buf.len() {
                return None;
            }
            let Some(b) = boundary_at(self.buf, self.pos) else {
                self.resync(self.pos + 1);
                continue;
            };
            let start = b.payload_start;
            let end = match b.len {
                // Unframed syslog line: up to its newline or the next header.
                None => self.end_of_broken(start),
                Some(len) => {
                    let stated = start.saturating_add(len);
                    if self.count_lands(start, stated) {
                        // The count lands: it is the frame, whatever it holds.
                        stated
                    } else {
                        self.stats.repaired += 1;
                        self.end_of_miscounted(start, stated)
                    }
                }
            };
            self.pos = end;
            let payload = trim_line_end(&self.buf[start..end]);
            if payload.is_empty() {
                self.stats.rejected += 1;
                continue;
            }
            self.stats.frames += 1;
            return Some(payload);
        }
    }
}

/// Where a frame starts: the payload offset, and the stated length if it was
/// octet-counted.
struct Boundary {
    len: Option<usize>,
    payload_start: usize,
}

/// Longest octet count we believe. Logplex sends single messages of at most a
/// few hundred KiB; anything longer is a broken count and is re-measured.
const MAX_DIGITS: usize = 8;

/// How far from its stated end a miscounted frame's real end is looked for.
/// As wide as real count errors (a few bytes; the property tests perturb by
/// up to 16) and no wider: the shortest forged platform frame is about 55
/// bytes, so a header forged at the end of application text is only inside
/// the window when the count is off by more than 38.
const SKEW: usize = 16;

/// How far a chain of landing counts is followed to choose between two
/// readings of the digits before ` <`.
const CHAIN: usize = 16;

/// Recognises `LEN <PRI>V ` or `<PRI>V ` at `at`.
fn boundary_at(buf: &[u8], at: usize) -> Option<Boundary> {
    let rest = buf.get(at..)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return is_pri_version(rest).then_some(Boundary {
            len: None,
            payload_start: at,
        });
    }
    // LEN is `NONZERO-DIGIT *DIGIT` (RFC 6587): a payload ending in `0` with
    // no newline after it does not run into the next frame's count.
    if digits > MAX_DIGITS || rest[0] == b'0' || rest.get(digits) != Some(&b' ') {
        return None;
    }
    if !is_pri_version(&rest[digits + 1..]) {
        return None;
    }
    // At most 8 ASCII digits: parsing cannot overflow or fail.
    let len = rest[..digits]
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    Some(Boundary {
        len: Some(len),
        payload_start: at + digits + 1,
    })
}

/// `<PRI>V ` with PRI of one to three digits and VERSION of one or two
/// (RFC 5424 allows up to three; senders use `1`, and `2`/`3` are seen).
pub(crate) fn is_pri_version(b: &[u8]) -> bool {
    pri_version_len(b).is_some()
}

/// The length of a leading `<PRI>V ` (its space included).
fn pri_version_len(b: &[u8]) -> Option<usize> {
    if b.first() != Some(&b'<') {
        return None;
    }
    let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) || b.get(1 + digits) != Some(&b'>') {
        return None;
    }
    let rest = &b[2 + digits..];
    let version = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    ((1..=2).contains(&version) && rest[0] != b'0' && rest.get(version) == Some(&b' '))
        .then_some(3 + digits + version)
}

/// Starts with `YYYY-MM-DDTHH:MM:SS`. Required of a header found by search
/// (not reached by a count): `<PRI>V ` alone is too easy to meet in text.
fn looks_like_timestamp(b: &[u8]) -> bool {
    const SHAPE: &[u8; 19] = b"0000-00-00T00:00:00";
    b.len() >= SHAPE.len()
        && SHAPE.iter().zip(b).all(|(&want, &got)| {
            if want == b'0' {
                got.is_ascii_digit()
            } else {
                got == want
            }
        })
}

/// A frame header at `at`: `LEN <PRI>V TIMESTAMP`, the count included.
fn header_at(buf: &[u8], at: usize) -> Option<Boundary> {
    let b = boundary_at(buf, at)?;
    b.len?;
    let rest = buf.get(b.payload_start..)?;
    let pv = pri_version_len(rest)?;
    looks_like_timestamp(&rest[pv..]).then_some(b)
}

fn trim_line_end(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = b {
        b = rest;
    }
    b
}

/// Splits one RFC 5424 payload as Logplex writes it:
/// `<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID MSG`.
///
/// Returns `None` when the header is short. A `- ` structured-data NILVALUE
/// (syslog-drain style) before MSG is tolerated.
pub fn parse_record(payload: &[u8]) -> Option<LogRecord<'_>> {
    // `splitn(7, ' ')` with memchr: six fields, then the rest (none when
    // the sixth ends the payload). Every line passes here.
    let mut fields: [&[u8]; 6] = [&[]; 6];
    let mut rest = Some(payload);
    for field in &mut fields {
        let r = rest?;
        match memchr::memchr(b' ', r) {
            Some(i) => {
                *field = &r[..i];
                rest = Some(&r[i + 1..]);
            }
            None => {
                *field = r;
                rest = None;
            }
        }
    }
    let [_pri_version, timestamp, _host, app, procid, _msgid] = fields;
    let mut message = rest.unwrap_or_default();
    if let Some(rest) = message.strip_prefix(b"- ") {
        message = rest;
    }
    Some(LogRecord {
        timestamp,
        app,
        procid,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &str) -> String {
        format!("{} {payload}\n", payload.len() + 1)
    }

    fn payloads(body: &[u8]) -> (Vec<String>, FrameStats) {
        let mut f = Frames::new(body);
        let v = f
            .by_ref()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        (v, f.stats())
    }

    const A: &str = "<134>1 2023-02-13T22:12:51.822974+00:00 host heroku web.1 - source=web.1 sample#memory_total=1MB";
    const B: &str =
        "<158>1 2020-01-08T22:33:57.353034+00:00 host heroku router - at=info method=GET";

    #[test]
    fn exact_counts() {
        let body = format!("{}{}", frame(A), frame(B));
        let (v, s) = payloads(body.as_bytes());
        assert_eq!(v, vec![A, B]);
        assert_eq!(
            s,
            FrameStats {
                frames: 2,
                repaired: 0,
                rejected: 0
            }
        );
    }

    #[test]
    fn count_one_short() {
        let body = format!("{} {A}\n{}", A.len(), frame(B));
        let (v, _) = payloads(body.as_bytes());
        assert_eq!(v, vec![A, B]);
    }

    #[test]
    fn count_several_short_and_long() {
        let body = format!("{} {A}\n{} {B}\n{}", A.len() - 7, B.len() + 9, frame(A));
        let (v, s) = payloads(body.as_bytes());
        assert_eq!(v, vec![A, B, A]);
        assert_eq!(s.repaired, 2);
    }

    #[test]
    fn a_count_that_lands_is_authoritative_even_over_a_frame_inside() {
        // The count covers A, a newline and a whole frame: it lands on the
        // next frame, so it is one frame. What is inside is never split out.
        let second = frame(B);
        let body = format!("{} {A}\n{second}{}", A.len() + 1 + second.len(), frame(A));
        let (v, s) = payloads(body.as_bytes());
        assert_eq!(v, vec![format!("{A}\n{}", second.trim_end()), A.to_owned()]);
        assert_eq!(s.repaired, 0);
    }

    #[test]
    fn any_version_and_no_newline_between_frames() {
        let p2 = "<40>2 2023-02-13T22:12:51Z host heroku web.1 - State changed from up to down";
        let p3 = "<190>13 2023-02-13T22:12:51Z host app web.1 - hello";
        let body = format!("{} {A}{} {p2}{} {p3}", A.len(), p2.len(), p3.len());
        let (v, s) = payloads(body.as_bytes());
        assert_eq!(v, vec![A, p2, p3]);
        assert_eq!(s.rejected + s.repaired, 0);
        assert!(!is_pri_version(b"<40>0 x") && !is_pri_version(b"<40>123 x"));
    }

    #[test]
    fn absurd_length() {
        let body = format!("99999999999 {A}\n1000000 {B}\n{}", frame(A));
        let (v, _) = payloads(body.as_bytes());
        // An 11-digit count is not believed; the message behind it is still a
        // good syslog line and is kept.
        assert_eq!(v, vec![A, B, A]);
    }

    #[test]
    fn unframed_lines_and_crlf() {
        let body = format!("{A}\r\n{B}\r\n");
        let (v, _) = payloads(body.as_bytes());
        assert_eq!(v, vec![A, B]);
    }

    #[test]
    fn garbage_between_frames() {
        let mut body = b"\x00\xffjunk<<>> 12 <x".to_vec();
        body.extend_from_slice(frame(A).as_bytes());
        body.extend_from_slice(b"garbage \xc3\x28 no newline");
        body.extend_from_slice(frame(B).as_bytes());
        let (v, s) = payloads(&body);
        assert_eq!(v, vec![A, B]);
        assert!(s.rejected >= 1);
    }

    #[test]
    fn truncated_body_keeps_what_is_there() {
        let full = format!("{}{}", frame(A), frame(B));
        let cut = &full.as_bytes()[..full.len() - 10];
        let (v, _) = payloads(cut);
        assert_eq!(v[0], A);
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn empty_body() {
        assert!(payloads(b"").0.is_empty());
        assert!(payloads(b"\n\n").0.is_empty());
    }

    #[test]
    fn record_fields() {
        let r = parse_record(A.as_bytes()).unwrap();
        assert_eq!(r.app, b"heroku");
        assert_eq!(r.procid, b"web.1");
        assert_eq!(r.timestamp, b"2023-02-13T22:12:51.822974+00:00");
        assert!(r.message.starts_with(b"source=web.1"));
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use crate::ingest::heroku_line::{ObservationKind, observe};

    fn fixture(name: &str) -> Vec<u8> {
        let p = format!(
            "{}/tests/fixtures/dark_knight/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn kinds(body: &[u8]) -> (Vec<ObservationKind>, FrameStats) {
        let mut frames = Frames::new(body);
        let mut out = Vec::new();
        for p in frames.by_ref() {
            let rec = parse_record(p).expect("every fixture frame has a header");
            if let Some(o) = observe(&rec).expect("fixture lines are valid") {
                out.push(o.kind);
            }
        }
        (out, frames.stats())
    }

    #[test]
    fn every_fixture_parses() {
        let dir = format!("{}/tests/fixtures/dark_knight", env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let body = std::fs::read(entry.unwrap().path()).unwrap();
            let (obs, stats) = kinds(&body);
            assert!(stats.frames > 0 && !obs.is_empty());
            assert_eq!(stats.rejected, 0);
            n += 1;
        }
        assert_eq!(n, 6);
    }

    #[test]
    fn hand_edited_fixtures_one_byte_short_still_parse() {
        for name in [
            "web.1",
            "web.1.new_dyno",
            "web.1.new_dyno.out_of_memory",
            "web.1.out_of_memory",
        ] {
            let body = fixture(name);
            let (obs, stats) = kinds(&body);
            assert_eq!(stats.frames, 1, "{name}");
            // 327 declared, 329 real (328 visible + LF): re-measured by line.
            assert_eq!(stats.repaired, 1, "{name}");
            assert_eq!(stats.rejected, 0, "{name}");
            match &obs[0] {
                ObservationKind::Sample(s) => {
                    assert_eq!(s.dyno.as_ref().unwrap().as_str(), "web.1");
                    assert!(
                        s.memory.total.is_some() && s.memory.quota.is_some(),
                        "{name}"
                    );
                }
                k => panic!("{name}: {k:?}"),
            }
        }
    }

    #[test]
    fn restarting_fixture_sequence() {
        let (obs, stats) = kinds(&fixture("web.1.restarting"));
        assert_eq!(stats.frames, 11);
        let names: Vec<&str> = obs
            .iter()
            .map(|k| match k {
                ObservationKind::Sample(_) => "sample",
                ObservationKind::ProcessMemory { .. } => "mem",
                ObservationKind::R14 { .. } => "r14",
                ObservationKind::State { .. } => "state",
                _ => "other",
            })
            .collect();
        assert_eq!(
            names,
            ["sample", "mem", "r14", "state", "state", "state", "sample"]
        );
    }

    #[test]
    fn crlf_frames_and_cr_only_trailers() {
        let p = "<134>1 2023-02-13T22:12:51Z host heroku web.1 - Error R14 (Memory quota exceeded)";
        let body = format!("{} {p}\r\n", p.len() + 2);
        let got: Vec<_> = Frames::new(body.as_bytes()).collect();
        assert_eq!(got, [p.as_bytes()]);
    }
}

/// Counts that do not land in bodies with no newline between frames: the
/// broken frame never swallows the frames after it.
#[cfg(test)]
mod miscount_tests {
    use crate::ingest::drain_body;
    use crate::ingest::heroku_line::ObservationKind;

    /// A platform sample for `dyno` with `total` MB.
    fn sample(dyno: &str, total: u32) -> String {
        format!(
            "<134>1 2023-02-13T22:12:51.822974+00:00 host heroku {dyno} - source={dyno} dyno=heroku.1.cfe2c338-81f4-40d4-bfb2-13f4e5e31fce sample#memory_total={total}.00MB sample#memory_quota=1024.00MB"
        )
    }

    const APP: &str = "<190>1 2023-02-13T22:12:52.1+00:00 host app web.1 - user said: sample#memory_total=9999.00MB";

    /// `LEN payload` with the count off by `delta` (no newline after it).
    fn counted(payload: &str, delta: i64) -> String {
        let len = i64::try_from(payload.len()).unwrap_or(i64::MAX) + delta;
        format!("{len} {payload}")
    }

    /// (dyno, MB) of every sample observation.
    fn samples(body: &[u8]) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        drain_body(body, |o| {
            if let ObservationKind::Sample(s) = o.kind {
                let dyno = s.dyno.map(|d| d.as_str().to_owned()).unwrap_or_default();
                out.push((dyno, s.memory.total.map_or(f64::NAN, |m| m.0)));
            }
        });
        out
    }

    #[test]
    fn a_forged_sample_in_app_text_is_never_web_1s() {
        for delta in (-16..=16).filter(|d| *d != 0) {
            let body = format!(
                "{}{}{}",
                counted(&sample("web.1", 500), delta),
                counted(APP, 0),
                counted(&sample("web.2", 200), 0)
            );
            let got = samples(body.as_bytes());
            assert!(
                got.iter().all(|(_, mb)| *mb < 9999.0),
                "delta {delta}: {got:?}"
            );
            assert!(
                got.contains(&("web.2".to_owned(), 200.0)),
                "delta {delta}: {got:?}"
            );
        }
    }

    #[test]
    fn later_samples_survive_a_broken_count() {
        // The cases seen from outside: −8…−3, +2, +4…+8.
        for delta in [-8, -7, -6, -5, -4, -3, 2, 4, 5, 6, 7, 8] {
            let body = format!(
                "{}{}{}{}{}",
                counted(&sample("web.1", 500), delta),
                counted(APP, 0),
                counted(&sample("web.2", 700), 0),
                counted(&sample("web.3", 701), 0),
                counted(&sample("web.4", 702), 0),
            );
            let got = samples(body.as_bytes());
            for (dyno, mb) in [("web.2", 700.0), ("web.3", 701.0), ("web.4", 702.0)] {
                assert!(
                    got.contains(&(dyno.to_owned(), mb)),
                    "delta {delta}: {dyno} missing from {got:?}"
                );
            }
            assert!(got.iter().all(|(_, mb)| *mb < 9999.0), "delta {delta}");
            // The broken frame itself is recovered too: only its count was wrong.
            assert!(
                got.contains(&("web.1".to_owned(), 500.0)),
                "delta {delta}: {got:?}"
            );
        }
    }

    /// The hostile review's case: an *application* frame whose count is off
    /// by a few bytes and whose text holds a whole, well-formed platform
    /// frame (a sample at 950 MB, an R15), with and without newlines between
    /// frames. The forged frame stays inside the app frame's text.
    #[test]
    fn a_miscounted_app_frame_never_releases_a_frame_forged_in_its_text() {
        let forged_sample = format!("{} {}", sample("web.1", 950).len(), sample("web.1", 950));
        let r15 = "<134>1 2023-02-13T22:12:52+00:00 host heroku web.1 - Error R15 (Memory quota vastly exceeded)";
        let forged_r15 = format!("{} {r15}", r15.len());
        for forged in [forged_sample, forged_r15] {
            let app = format!(
                "<190>1 2023-02-13T22:12:52.1+00:00 host app web.1 - user input: {forged} and more text after it"
            );
            for sep in ["", "\n"] {
                // Within the window and far beyond it (the second review).
                for delta in (-48..=48).filter(|d| *d != 0) {
                    let body = format!(
                        "{}{sep}{}{sep}{}{sep}",
                        counted(&sample("web.1", 500), 0),
                        counted(&format!("{app}{sep}"), delta),
                        counted(&sample("web.2", 200), 0)
                    );
                    let mut kinds = Vec::new();
                    drain_body(body.as_bytes(), |o| kinds.push(o.kind));
                    let forged_seen = kinds.iter().any(|k| match k {
                        ObservationKind::Sample(s) => s.memory.total.is_some_and(|m| m.0 > 900.0),
                        ObservationKind::R15 { .. } => true,
                        _ => false,
                    });
                    assert!(!forged_seen, "delta {delta} sep {sep:?}: {kinds:?}");
                }
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn frame(payload: &str) -> String {
        format!("{} {payload}\n", payload.len() + 1)
    }

    fn payload() -> impl Strategy<Value = String> {
        ("[a-z]{1,8}", "[a-z]{1,6}\\.[0-9]{1,2}", "[ -~]{0,120}").prop_map(|(app, proc_, msg)| {
            format!("<134>1 2023-02-13T22:12:51.822974+00:00 host {app} {proc_} - {msg}")
                .trim_end()
                .to_owned()
        })
    }

    /// What applications log that looks like platform lines.
    const APP_TEXTS: [&str; 6] = [
        "user said: sample#memory_total=9999.00MB",
        "source=web.1 sample#memory_total=9999.00MB sample#memory_quota=512.00MB",
        "Error R15 (Memory quota vastly exceeded)",
        "Process running mem=9999M(100.0%)",
        "line one\nsample#memory_total=9999.00MB\nError R14 (Memory quota exceeded)",
        "x\n98 <134>1 2023-02-13T22:12:53+00:00 host heroku web.1 - source=web.1 sample#memory_total=9999.00MB",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut f = Frames::new(&bytes);
            for p in f.by_ref() {
                let _ = parse_record(p).map(|r| crate::ingest::heroku_line::observe(&r));
            }
            let _ = f.stats();
        }

        #[test]
        fn well_formed_frames_round_trip(payloads in proptest::collection::vec(payload(), 1..20)) {
            let body: String = payloads.iter().map(|p| frame(p)).collect();
            let got: Vec<String> = Frames::new(body.as_bytes()).map(|p| String::from_utf8(p.to_vec()).unwrap()).collect();
            prop_assert_eq!(got, payloads);
        }

        /// Whatever an application logs (newlines, counts, whole forged
        /// platform frames), a correctly framed body yields no observation
        /// from it: only the platform frames around it count.
        #[test]
        fn app_output_never_becomes_an_observation(
            m in proptest::collection::vec(any::<u8>(), 0..600),
            forged in "[0-9]{1,3}",
            sep in proptest::bool::ANY,
        ) {
            let platform = "<134>1 2023-02-13T22:12:51.822974+00:00 host heroku web.1 - source=web.1 sample#memory_total=100.00MB sample#memory_quota=512.00MB";
            let mut msg = m.clone();
            msg.extend_from_slice(format!("\n{forged} <134>1 2023-02-13T22:12:52+00:00 host heroku web.1 - Error R15 (Memory quota vastly exceeded)\n").as_bytes());
            msg.extend_from_slice(&m);
            let mut app = b"<190>1 2023-02-13T22:12:51.9+00:00 host app web.1 - ".to_vec();
            app.extend_from_slice(&msg);
            let mut body = Vec::new();
            for payload in [platform.as_bytes(), &app, platform.as_bytes()] {
                let len = payload.len() + usize::from(sep);
                body.extend_from_slice(format!("{len} ").as_bytes());
                body.extend_from_slice(payload);
                if sep {
                    body.push(b'\n');
                }
            }
            let mut kinds = Vec::new();
            let stats = crate::ingest::drain_body(&body, |o| kinds.push(o.kind));
            prop_assert_eq!(kinds.len(), 2, "{:?}", kinds);
            for k in &kinds {
                let is_sample = matches!(k, crate::ingest::heroku_line::ObservationKind::Sample(_));
                prop_assert!(is_sample);
            }
            prop_assert_eq!(stats.records, 3);
        }

        /// Frames with no separator between them, any VERSION, are each found.
        #[test]
        fn frames_without_separators_are_each_found(
            payloads in proptest::collection::vec((payload(), 1u8..=99), 1..12),
        ) {
            let payloads: Vec<String> = payloads
                .into_iter()
                .map(|(p, v)| p.replacen("<134>1 ", &format!("<134>{v} "), 1))
                .collect();
            let body: String = payloads.iter().map(|p| format!("{} {p}", p.len())).collect();
            let got: Vec<String> = Frames::new(body.as_bytes()).map(|p| String::from_utf8(p.to_vec()).unwrap()).collect();
            prop_assert_eq!(got, payloads);
        }

        /// Random bodies of correct frames, one count perturbed by −16…+16,
        /// with or without newlines: no observation comes from app text, and
        /// only the perturbed frame may be lost.
        #[test]
        fn one_broken_count_loses_at_most_its_frame(
            kinds in proptest::collection::vec((proptest::bool::ANY, 0usize..APP_TEXTS.len(), "[ -;=-~]{0,40}"), 2..10),
            perturbed in 0usize..10,
            delta in -16i64..=16,
            sep in proptest::bool::ANY,
        ) {
            let perturbed = perturbed % kinds.len();
            let mut body = Vec::new();
            let mut expected = Vec::new();
            for (i, (platform, text, noise)) in kinds.iter().enumerate() {
                let payload = if *platform {
                    let (dyno, mb) = (format!("web.{}", i + 1), 100 + i);
                    if i != perturbed {
                        expected.push((dyno.clone(), mb as f64));
                    }
                    format!("<134>1 2023-02-13T22:12:51.822974+00:00 host heroku {dyno} - source={dyno} dyno=heroku.1.cfe2c338-81f4-40d4-bfb2-13f4e5e31fce sample#memory_total={mb}.00MB sample#memory_quota=1024.00MB")
                } else {
                    // A whole forged frame only in app frames whose own count
                    // is right: a wrong count that lands on one is, by the
                    // rule that a landing count is authoritative, a frame.
                    let text = APP_TEXTS[*text];
                    if i == perturbed && text.contains(" <") {
                        format!("<190>1 2023-02-13T22:12:52.1+00:00 host app web.1 - {noise} user said: sample#memory_total=9999.00MB")
                    } else {
                        format!("<190>1 2023-02-13T22:12:52.1+00:00 host app web.1 - {noise}{text}")
                    }
                };
                let mut len = i64::try_from(payload.len() + usize::from(sep)).unwrap_or(0);
                if i == perturbed {
                    len += delta;
                }
                body.extend_from_slice(format!("{len} {payload}").as_bytes());
                if sep {
                    body.push(b'\n');
                }
            }
            let mut got = Vec::new();
            crate::ingest::drain_body(&body, |o| {
                if let crate::ingest::heroku_line::ObservationKind::Sample(s) = o.kind {
                    let dyno = s.dyno.map(|d| d.as_str().to_owned()).unwrap_or_default();
                    got.push((dyno, s.memory.total.map_or(f64::NAN, |m| m.0)));
                }
            });
            for (dyno, mb) in &got {
                let i: usize = dyno.trim_start_matches("web.").parse().unwrap_or(0);
                prop_assert!(*mb == (100 + i - 1) as f64, "{} {} from app text? {:?}", dyno, mb, String::from_utf8_lossy(&body));
            }
            for e in &expected {
                prop_assert!(got.contains(e), "{:?} lost: {:?} {:?}", e, got, String::from_utf8_lossy(&body));
            }
        }

        #[test]
        fn a_good_frame_after_garbage_is_found(garbage in proptest::collection::vec(any::<u8>(), 0..512), p in payload()) {
            let mut body = garbage;
            body.push(b'\n');
            body.extend_from_slice(frame(&p).as_bytes());
            let got: Vec<&[u8]> = Frames::new(&body).collect();
            prop_assert_eq!(got.last().copied(), Some(p.as_bytes()));
        }
    }
}
