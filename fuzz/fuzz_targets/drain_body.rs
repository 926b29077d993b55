//! Drain bodies, two ways.
//!
//! 1. Any bytes as a drain body: never panics; the engine sees only what
//!    parsed.
//! 2. An oracle for untrusted application output: the fuzzer's bytes are the
//!    message of an `app` frame placed between two known platform samples,
//!    counted right or with a fuzzer-chosen count error, with or without
//!    newlines between frames. Every observation must be one of the two
//!    platform samples: nothing the application wrote may become one.
//!
//! Input layout for (2): byte 0 holds flags (bit 0: newline after each frame,
//! bit 1: the app frame's count is off), byte 1 the count error as an `i8`,
//! the rest is the app message.
#![no_main]

use dynoguard::decide::engine::{Confirmation, Engine};
use dynoguard::decide::policy::AppPolicy;
use dynoguard::domain::AppName;
use dynoguard::ingest::heroku_line::ObservationKind;
use dynoguard::ingest::logplex::Frames;
use libfuzzer_sys::fuzz_target;

const P1: &str = "<134>1 2023-02-13T22:12:51.822974+00:00 host heroku web.1 - source=web.1 dyno=heroku.1.cfe2c338-81f4-40d4-bfb2-13f4e5e31fce sample#memory_total=111.00MB sample#memory_quota=512.00MB";
const P2: &str = "<134>1 2023-02-13T22:12:53.1+00:00 host heroku web.2 - source=web.2 dyno=heroku.1.4cf08a3d-2f18-4746-baa3-8374af270390 sample#memory_total=222.00MB sample#memory_quota=512.00MB";
const APP_HEADER: &[u8] = b"<190>1 2023-02-13T22:12:52.5+00:00 host app web.1 - ";

fuzz_target!(|data: &[u8]| {
    any_bytes(data);
    app_between_platform_frames(data);
});

fn any_bytes(data: &[u8]) {
    let mut e = Engine::new(
        AppName::parse("fuzz").unwrap(),
        AppPolicy::default(),
        Confirmation::OnDecision,
    );
    let mut obs = Vec::new();
    let stats = dynoguard::ingest::drain_body(data, |o| obs.push(o));
    assert!(stats.observations as usize == obs.len());
    let arrived = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    let _ = e.apply(&obs, arrived);
}

fn app_between_platform_frames(data: &[u8]) {
    let [flags, error, msg @ ..] = data else {
        return;
    };
    let sep = flags & 1 == 1;
    let error = if flags & 2 == 2 {
        i64::from(*error as i8)
    } else {
        0
    };
    let mut app = APP_HEADER.to_vec();
    app.extend_from_slice(msg);

    let mut body = Vec::new();
    for (payload, off) in [(P1.as_bytes(), 0), (&app[..], error), (P2.as_bytes(), 0)] {
        let true_len = (payload.len() + usize::from(sep)) as i64;
        // A count of 0 or less is not a count at all; keep it a number.
        let len = (true_len + off).max(1);
        body.extend_from_slice(format!("{len} ").as_bytes());
        body.extend_from_slice(payload);
        if sep {
            body.push(b'\n');
        }
    }

    // The iterator: every payload is a non-empty slice of the body, and the
    // stats count what was handed out.
    let mut frames = Frames::new(&body);
    let mut n = 0;
    for p in frames.by_ref() {
        assert!(!p.is_empty());
        n += 1;
    }
    assert_eq!(frames.stats().frames, n);

    let mut kinds = Vec::new();
    let stats = dynoguard::ingest::drain_body(&body, |o| kinds.push(o.kind));
    assert_eq!(stats.observations as usize, kinds.len());

    // A count that is wrong *and* lands on a header the application wrote is
    // taken as it stands (a landing count is authoritative), and an app frame
    // whose count does not land is cut at the first header in its text: with
    // a count error, only text holding no `<` (no header at all) is held to
    // the oracle.
    if error != 0 && msg.contains(&b'<') {
        return;
    }
    let mut seen = (false, false);
    for k in &kinds {
        let ObservationKind::Sample(s) = k else {
            panic!("an observation from app text: {k:?}");
        };
        let total = s.memory.total.map(|m| m.get());
        let dyno = s.dyno.as_ref().map(|d| d.as_str());
        match (dyno, total) {
            (Some("web.1"), Some(111.0)) => seen.0 = true,
            (Some("web.2"), Some(222.0)) => seen.1 = true,
            _ => panic!("a sample from app text: {s:?}"),
        }
    }
    // The platform frames are counted right: neither may be lost — except
    // that an application frame off by more than the repair window (16
    // bytes) with no line end runs to the end of the body (its text may
    // hold a forged header anywhere, so none inside it is trusted).
    let app_runs_on = error.abs() > 16 && !sep;
    assert!(seen.0, "a platform sample lost: {kinds:?}");
    assert!(seen.1 || app_runs_on, "a platform sample lost: {kinds:?}");
}
