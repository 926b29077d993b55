//! `dynoguard replay`: a saved log through the same parser and policy the
//! service uses, with the log's own timestamps as the clock. Calls nothing.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context as _;

use crate::config::env::Need;
use crate::config::{AppConfig, Config};
use crate::decide::engine::{Confirmation, Engine};
use crate::domain::event::{Event, EventKind};
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
    /// Runtime-metrics samples with a memory figure.
    pub memory_samples: u64,
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
        )?;
        // A log without one memory sample decides nothing; the usual cause
        // is runtime metrics not enabled (or the app not restarted since).
        if self.memory_samples == 0 && self.stats.records > 0 {
            write!(
                f,
                "\n0 memory samples in {} lines — is log-runtime-metrics enabled?",
                self.stats.records
            )?;
        }
        Ok(())
    }
}

/// `dynoguard replay` from its command line: loads the configuration (its
/// warnings logged), picks the app `--app` names — the first configured one
/// without it — and replays `file`, or standard input for `-` or none.
/// Usage problems are [`crate::config::ConfigError`]s (exit 2).
pub fn from_cli(
    config: Option<&Path>,
    file: Option<&Path>,
    app: Option<&str>,
) -> anyhow::Result<Summary> {
    let cfg = crate::config::load(config, Need::Nothing)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let app = chosen_app(&cfg, app)?;
    match file {
        Some(p) if p.as_os_str() != "-" => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            run(app, BufReader::new(f), std::io::stdout().lock())
        }
        _ => run(app, std::io::stdin().lock(), std::io::stdout().lock()),
    }
}

/// The app `--app` names (a usage problem when it is not configured), or
/// the first configured one.
fn chosen_app<'a>(cfg: &'a Config, name: Option<&str>) -> anyhow::Result<&'a AppConfig> {
    let Some(name) = name else {
        return cfg.apps.first().context("the configuration names no app");
    };
    cfg.app(name).ok_or_else(|| {
        let configured: Vec<String> = cfg.apps.iter().map(|a| a.name.to_string()).collect();
        super::usage(
            "--app",
            format!(
                "{name:?} is not a configured app; configured: {}",
                configured.join(", ")
            ),
        )
        .into()
    })
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
    let mut summary = Summary::default();
    let mut arrivals = Arrivals::default();
    // One record at a time, as logged: its observation (if any), then the
    // line itself for blindness — the same calls `serve` makes per batch —
    // with an arrival time read from the log itself, so a replay run any
    // day later decides as `serve` did.
    let mut decide = |line: Line, arrived: jiff::Timestamp, summary: &mut Summary| {
        if let Some(crate::ingest::heroku_line::ObservationKind::Sample(s)) =
            line.observation.as_ref().map(|o| &o.kind)
            && s.memory.total.is_some()
        {
            summary.memory_samples += 1;
        }
        let blind = line.at.and_then(|t| engine.lines_seen(t, arrived));
        let mut d = engine.apply(line.observation.as_slice(), arrived);
        if let Some(b) = blind {
            d.events.insert(0, b);
        }
        tally(&d, summary);
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
                let mut observation = None;
                let ts = ingest::frame(payload, &mut summary.stats, &mut |o| observation = Some(o));
                if let Some((line, arrived)) = arrivals.push(Line::new(observation, ts)) {
                    let events = decide(line, arrived, &mut summary);
                    emit(events, &mut summary, &mut out)?;
                }
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
                let mut observation = None;
                let ts = ingest::text_line(&line, &mut summary.stats, |o| observation = Some(o));
                if let Some((line, arrived)) = arrivals.push(Line::new(observation, ts)) {
                    let events = decide(line, arrived, &mut summary);
                    emit(events, &mut summary, &mut out)?;
                }
            }
        }
    }
    while let Some((line, arrived)) = arrivals.pop() {
        let events = decide(line, arrived, &mut summary);
        emit(events, &mut summary, &mut out)?;
    }
    // The end of the log: decisions still held are made.
    let d = engine.finish();
    tally(&d, &mut summary);
    emit(d.events, &mut summary, &mut out)?;
    out.flush()?;
    Ok(summary)
}

fn tally(d: &crate::decide::engine::Decisions, summary: &mut Summary) {
    for w in &d.warnings {
        tracing::warn!("{w}");
    }
    summary.stale += d.ignored.stale;
    summary.replaced += d.ignored.replaced;
}

/// One record of the log: its observation, if it is one, and its log time.
struct Line {
    observation: Option<crate::ingest::heroku_line::Observation>,
    at: Option<jiff::Timestamp>,
}

impl Line {
    fn new(
        observation: Option<crate::ingest::heroku_line::Observation>,
        ts: Option<&[u8]>,
    ) -> Self {
        let at = ts.and_then(|t| crate::ingest::heroku_line::timestamp(t).ok());
        Self { observation, at }
    }
}

/// When each line "arrived", read from the log itself: `serve` judges a
/// line stamped more than a minute ahead of its arrival by its arrival, and
/// a saved log has no arrival times. A line arrives no earlier than the
/// newest line before it, and about when the lines right after it were
/// logged; so its arrival is the later of the two (the latest seen before,
/// the earliest of the next [`Arrivals::AHEAD`]). A line far ahead of both
/// is clamped as `serve` clamped it; a quiet gap (the lines after it follow
/// on) is not. Never the wall clock of the replay: any later run decides
/// the same.
#[derive(Default)]
struct Arrivals {
    queue: std::collections::VecDeque<Line>,
    newest: Option<jiff::Timestamp>,
}

impl Arrivals {
    const AHEAD: usize = 8;

    /// Queues a line; returns the oldest with its arrival once enough lines
    /// follow it.
    fn push(&mut self, line: Line) -> Option<(Line, jiff::Timestamp)> {
        self.queue.push_back(line);
        if self.queue.len() > Self::AHEAD {
            self.pop()
        } else {
            None
        }
    }

    /// The oldest queued line and its arrival.
    fn pop(&mut self) -> Option<(Line, jiff::Timestamp)> {
        let line = self.queue.pop_front()?;
        let next = self.queue.iter().filter_map(|l| l.at).min();
        let own = line.at.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let mut arrived = match (self.newest, next) {
            (Some(n), Some(x)) => n.max(x),
            (None, Some(x)) => x,
            (Some(n), None) => n.max(own),
            (None, None) => own,
        };
        if own.duration_since(arrived) > crate::decide::engine::MAX_FUTURE {
            // Far ahead of the lines around it: it arrived right after the
            // newest line before it (so the lines after it stay newer).
            arrived = self.newest.or(next).unwrap_or(arrived);
        }
        if let Some(at) = line.at {
            let judged = crate::decide::engine::Engine::clock(at, arrived);
            self.newest = Some(self.newest.map_or(judged, |n| n.max(judged)));
        }
        Some((line, arrived))
    }
}
