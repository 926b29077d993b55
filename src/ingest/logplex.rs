//! HTTPS-drain bodies: RFC 6587 octet-counted RFC 5424 frames as Logplex sends
//! them (`LEN <PRI>V TIMESTAMP host APP PROCID - MSG\n`, no structured data).
//!
//! Frames are cut by their octet count, never by newline. **A count that lands
//! on a frame boundary (or the end of the body) is authoritative**: nothing
//! inside that frame is ever parsed as another frame, whatever an application
//! logged into it. Real senders get the count wrong (hand-edited fixtures one
//! byte short, proxies re-joining lines, absurd lengths), and some bodies are
//! plain newline-separated syslog; only when a count does *not* land do we
//! re-measure by line and resynchronise on the next `LEN <PRI>V ` (or bare
//! `<PRI>V ` at a line start), skipping only the broken bytes. VERSION is any
//! one or two digits (`<40>2 ` is seen in real bodies), and frames may follow
//! each other with no newline between them.

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

    /// The end of the payload that starts at `start` when the stated count is
    /// not to be trusted: just past the line's newline (or the end of the body).
    fn end_by_line(&self, start: usize) -> usize {
        memchr(b'\n', &self.buf[start..]).map_or(self.buf.len(), |i| start + i + 1)
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

    /// Skips to the next frame boundary after `from`, counting one rejection.
    fn resync(&mut self, from: usize) {
        self.stats.rejected += 1;
        self.pos = next_boundary(self.buf, from).unwrap_or(self.buf.len());
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
                // Unframed syslog line: up to its newline.
                None => self.end_by_line(start),
                Some(len) => {
                    let stated = start.saturating_add(len);
                    if stated <= self.buf.len() && self.ends_cleanly(stated) {
                        // The count lands: it is the frame, whatever it holds.
                        stated
                    } else {
                        self.stats.repaired += 1;
                        self.end_by_line(start)
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
    if digits > MAX_DIGITS || rest.get(digits) != Some(&b' ') {
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
    if b.first() != Some(&b'<') {
        return false;
    }
    let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) || b.get(1 + digits) != Some(&b'>') {
        return false;
    }
    let rest = &b[2 + digits..];
    let version = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    (1..=2).contains(&version) && rest[0] != b'0' && rest.get(version) == Some(&b' ')
}

/// The next boundary at or after `from` that starts a line or follows a
/// non-digit: found through the `<` of its PRI.
fn next_boundary(buf: &[u8], from: usize) -> Option<usize> {
    let mut search = from;
    while search < buf.len() {
        let lt = search + memchr(b'<', &buf[search..])?;
        // Walk back over `LEN ` if there is one.
        let mut start = lt;
        if lt > from && buf[lt - 1] == b' ' {
            let mut d = lt - 1;
            while d > from && buf[d - 1].is_ascii_digit() {
                d -= 1;
            }
            if d < lt - 1 {
                start = d;
            }
        }
        if boundary_at(buf, start).is_some() {
            return Some(start);
        }
        if start != lt && boundary_at(buf, lt).is_some() {
            return Some(lt);
        }
        search = lt + 1;
    }
    None
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
    let mut fields = payload.splitn(7, |&b| b == b' ');
    let _pri_version = fields.next()?;
    let timestamp = fields.next()?;
    let _host = fields.next()?;
    let app = fields.next()?;
    let procid = fields.next()?;
    let _msgid = fields.next()?;
    let mut message = fields.next().unwrap_or_default();
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
