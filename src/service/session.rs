//! Log sessions (whacamole's way, SPEC §4.2): create a tail session for the
//! app's platform lines, stream `logplex_url` (plain lines or server-sent
//! events), hand each complete line to the pipeline, and reopen with
//! exponential backoff and jitter (1 s → 60 s) when the stream ends or fails.
//! Each app runs on its own task: one app's failure never stops another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use jiff::Timestamp;
use tokio::sync::watch;

use crate::domain::event::{Event, EventKind};
use crate::ingest::heroku_line::Observation;
use crate::ingest::text::{LineBuffer, SseDecoder};
use crate::ingest::{self, IngestStats};
use crate::service::{AppRuntime, Shared, Tuning};
use crate::telemetry::Counters;

/// A stream that delivered for this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(30);

enum Decoder {
    Lines(LineBuffer),
    Sse(SseDecoder),
}

impl Decoder {
    fn push(&mut self, chunk: &[u8], f: impl FnMut(&[u8])) {
        match self {
            Self::Lines(d) => d.push(chunk, f),
            Self::Sse(d) => d.push(chunk, f),
        }
    }

    fn finish(&mut self, f: impl FnMut(&[u8])) {
        match self {
            Self::Lines(d) => d.finish(f),
            Self::Sse(d) => d.finish(f),
        }
    }

    fn take_oversized(&mut self) -> u64 {
        match self {
            Self::Lines(d) => d.take_oversized(),
            Self::Sse(d) => d.take_oversized(),
        }
    }
}

/// Watches one app through log sessions until `stop`.
pub async fn watch(
    shared: Arc<Shared>,
    app: Arc<AppRuntime>,
    tuning: Tuning,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            r = stream_once(&shared, &app, tuning.session_idle) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        if started.elapsed() >= HEALTHY {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        let base = tuning.session_backoff_base.as_secs_f64()
            * 2f64.powi(failures.saturating_sub(1).min(16) as i32);
        let wait = Duration::from_secs_f64(
            base.min(tuning.session_backoff_max.as_secs_f64()) * (0.5 + fastrand::f64() * 0.5),
        );
        let why = match outcome {
            Ok(()) => "stream ended".to_owned(),
            Err(e) => e,
        };
        Counters::add(&shared.counters.session_reconnects, 1);
        let mut e = Event::new(
            Timestamp::now(),
            EventKind::SessionReconnect,
            app.config.name.clone(),
        );
        e.detail = Some(format!("{why}; reopening in {:.1}s", wait.as_secs_f64()));
        e.count = Some(u64::from(failures));
        shared.reporter.emit(e);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One session: create, stream until it ends. `Err` says why it failed.
async fn stream_once(shared: &Shared, app: &Arc<AppRuntime>, idle: Duration) -> Result<(), String> {
    let token = app
        .config
        .api_token
        .as_ref()
        .ok_or("no API token configured")?;
    let session = shared
        .client
        .create_log_session(token, &app.config.name)
        .await
        .map_err(|e| format!("creating the log session failed: {e}"))?;
    let resp = shared
        .client
        .open_stream(&session.logplex_url)
        .await
        .map_err(|e| format!("opening the log stream failed: {e}"))?;
    let sse = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut decoder = if sse {
        Decoder::Sse(SseDecoder::new())
    } else {
        Decoder::Lines(LineBuffer::new())
    };
    tracing::info!(
        "{}: log session open ({})",
        app.config.name,
        if sse {
            "server-sent events"
        } else {
            "plain lines"
        }
    );
    let mut body = resp.bytes_stream();
    let mut stats = IngestStats::default();
    let mut obs: Vec<Observation> = Vec::new();
    // The first and last line's timestamps of a chunk (their log times
    // tell blindness): copied, parsed once per chunk.
    let mut stamps = Stamps::default();
    let on_line =
        |line: &[u8], stats: &mut IngestStats, obs: &mut Vec<Observation>, stamps: &mut Stamps| {
            if let Some(ts) = ingest::text_line(line, stats, |o| obs.push(o)) {
                stamps.note(ts);
            }
        };
    loop {
        // A half-open connection would otherwise wait forever: with dynos
        // sampling every 20 s, this much silence means the stream is dead.
        let next = tokio::time::timeout(idle, body.next())
            .await
            .map_err(|_| format!("log stream silent for {}s", idle.as_secs()))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| format!("log stream failed: {}", e.without_url()))?;
        decoder.push(&chunk, |line| {
            on_line(line, &mut stats, &mut obs, &mut stamps)
        });
        stats.rejected += decoder.take_oversized();
        flush(shared, app, &mut stats, &mut obs, &mut stamps);
    }
    decoder.finish(|line| on_line(line, &mut stats, &mut obs, &mut stamps));
    flush(shared, app, &mut stats, &mut obs, &mut stamps);
    Ok(())
}

fn flush(
    shared: &Shared,
    app: &Arc<AppRuntime>,
    stats: &mut IngestStats,
    obs: &mut Vec<Observation>,
    stamps: &mut Stamps,
) {
    Counters::add(&shared.counters.session_lines, stats.records);
    shared.count(stats);
    *stats = IngestStats::default();
    // Every replica's session sees every line: only the one that decides
    // applies them (nothing to forward).
    let stamps = stamps.take();
    if shared.replicas.leadership.decides() {
        shared.apply(app, obs, stamps);
    }
    obs.clear();
}

/// The first and last timestamp of the lines of a chunk, unparsed.
#[derive(Default)]
struct Stamps {
    first: Vec<u8>,
    last: Vec<u8>,
}

impl Stamps {
    fn note(&mut self, ts: &[u8]) {
        if self.first.is_empty() {
            self.first.extend_from_slice(ts);
        }
        self.last.clear();
        self.last.extend_from_slice(ts);
    }

    /// Parsed, and cleared for the next chunk.
    fn take(&mut self) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
        use crate::ingest::heroku_line::timestamp;
        let out = timestamp(&self.first).ok().zip(timestamp(&self.last).ok());
        self.first.clear();
        self.last.clear();
        out
    }
}
