//! `dynoguard replay`: a saved log through the same parser and policy the
//! service uses, with the log's own timestamps as the clock. Calls nothing.

use std::io::{BufRead, Write};

use anyhow::Context as _;

use crate::config::AppConfig;
use crate::decide::engine::{Confirmation, Engine};
use crate::decide::events::{Event, EventKind};
use crate::ingest::{self, IngestStats, InputFormat};

/// Totals printed on stderr at the end of a replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub format: Option<&'static str>,
    pub stats: IngestStats,
    pub events: u64,
    pub restarts: u64,
    pub skipped: u64,
    /// Samples not newer than one already applied (duplicates, disorder).
    pub stale: u64,
    /// Lines of an instance already replaced.
    pub replaced: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replay: format={} records={} observations={} repaired={} rejected={} stale={} replaced_instance={} events={} restarts={} skipped={}",
            self.format.unwrap_or("empty"),
            self.stats.records,
            self.stats.observations,
            self.stats.repaired,
            self.stats.rejected,
            self.stale,
            self.replaced,
            self.events,
            self.restarts,
            self.skipped
        )
    }
}

/// Replays `input` for `app`, writing one JSON event per line to `out`.
pub fn run(
    app: &AppConfig,
    mut input: impl BufRead,
    mut out: impl Write,
) -> anyhow::Result<Summary> {
    // The same engine the service runs; only what acts differs: here the
    // decision is the record (nothing is called).
    let mut engine = Engine::new(
        app.name.clone(),
        app.policy.clone(),
        Confirmation::OnDecision,
    );
    let arrived = jiff::Timestamp::now();
    let mut summary = Summary::default();
    // One record at a time, as logged: its observation (if any), then the
    // line itself for blindness — the same calls `serve` makes per batch.
    let mut decide = |obs: Option<crate::ingest::heroku_line::Observation>,
                      ts: Option<&[u8]>,
                      summary: &mut Summary| {
        let blind = ts
            .and_then(|t| crate::ingest::heroku_line::timestamp(t).ok())
            .and_then(|t| engine.lines_seen(t, arrived));
        let mut d = engine.apply(obs.as_slice(), arrived);
        if let Some(b) = blind {
            d.events.insert(0, b);
        }
        for w in &d.warnings {
            tracing::warn!("{w}");
        }
        summary.stale += d.ignored.stale;
        summary.replaced += d.ignored.replaced;
        d.events
    };
    let emit =
        |events: Vec<Event>, summary: &mut Summary, out: &mut dyn Write| -> std::io::Result<()> {
            for e in events {
                if e.event == EventKind::Sample {
                    continue;
                }
                summary.events += 1;
                match e.event {
                    EventKind::Restart => summary.restarts += 1,
                    EventKind::Skipped => summary.skipped += 1,
                    _ => {}
                }
                writeln!(out, "{}", e.to_json())?;
            }
            Ok(())
        };

    let peek = input.fill_buf().context("reading the log")?;
    if peek.is_empty() {
        return Ok(summary);
    }
    match InputFormat::detect(peek) {
        InputFormat::Drain => {
            summary.format = Some("drain");
            // Drain bodies are framed by length, so the whole input is framed
            // at once (a saved log is a file, not an endless stream).
            let mut body = Vec::new();
            input.read_to_end(&mut body).context("reading the log")?;
            let mut frames = crate::ingest::logplex::Frames::new(&body);
            for payload in frames.by_ref() {
                let mut obs = None;
                let ts = ingest::frame(payload, &mut summary.stats, &mut |o| obs = Some(o));
                let events = decide(obs, ts, &mut summary);
                emit(events, &mut summary, &mut out)?;
            }
            summary.stats.add_frames(frames.stats());
        }
        InputFormat::Text => {
            summary.format = Some("text");
            let mut line = Vec::new();
            loop {
                line.clear();
                if input
                    .read_until(b'\n', &mut line)
                    .context("reading the log")?
                    == 0
                {
                    break;
                }
                let mut obs = None;
                let ts = ingest::text_line(&line, &mut summary.stats, |o| obs = Some(o));
                let events = decide(obs, ts, &mut summary);
                emit(events, &mut summary, &mut out)?;
            }
        }
    }
    out.flush()?;
    Ok(summary)
}
