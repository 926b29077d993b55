//! `/metrics`: Prometheus text exposition in base units (bytes, seconds).
//!
//! Everything here is this process's own: counters count what this replica
//! did (so `sum()` over replicas is right) and per-dyno gauges cover the
//! dynos whose logs this replica receives. Nothing reads the store. A value
//! that is not known is left out, never written as a sentinel.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::views::{self, DynoStatus, DynoView};
use crate::domain::event::EventKind;
use crate::service::Shared;
use crate::telemetry::Counters;

/// Heroku's "MB" are mebibytes.
const MIB: f64 = 1_048_576.0;

/// The plain counters: name, help, and where this process counts it.
type CounterOf = fn(&Counters) -> &AtomicU64;

#[rustfmt::skip]
const COUNTERS: &[(&str, &str, CounterOf)] = &[
    ("dynoguard_drain_requests_total", "Drain POSTs accepted", |c| &c.drain_requests),
    ("dynoguard_drain_bytes_total", "Drain body bytes received", |c| &c.drain_bytes),
    ("dynoguard_frames_total", "Frames / lines read", |c| &c.frames),
    ("dynoguard_frames_rejected_total", "Broken stretches or lines skipped", |c| &c.frames_rejected),
    ("dynoguard_frames_repaired_total", "Frames with a wrong octet count, recovered", |c| &c.frames_repaired),
    ("dynoguard_duplicate_batches_total", "Retried batches dropped by Logplex-Frame-Id", |c| &c.duplicate_batches),
    ("dynoguard_msg_count_mismatch_total", "Batches whose Logplex-Msg-Count disagreed", |c| &c.msg_count_mismatch),
    ("dynoguard_observations_total", "Platform lines used", |c| &c.observations),
    ("dynoguard_l10_lost_messages_total", "Messages Logplex reported dropped (L10/L11)", |c| &c.samples_lost),
    ("dynoguard_events_dropped_total", "Events not queued for store/notify (queue full)", |c| &c.events_dropped),
    ("dynoguard_session_reconnects_total", "Log sessions reopened", |c| &c.session_reconnects),
    ("dynoguard_lines_stale_total", "Samples not newer than the one applied for the instance (retries, reconnects, disorder)", |c| &c.lines_stale),
    ("dynoguard_lines_replaced_total", "Lines of a dyno instance already replaced (preboot overlap, late lines)", |c| &c.lines_replaced),
    ("dynoguard_lines_unclear_total", "Lines of a second instance of a dyno that nothing yet orders against the current one (nothing is decided meanwhile)", |c| &c.lines_unclear),
    ("dynoguard_lines_foreign_total", "Samples whose dyno=heroku.N.… is not the app number setup recorded: another app's drain points at this app's URL", |c| &c.lines_foreign),
    ("dynoguard_lines_repeated_total", "R14/R15 lines not newer than the last reported for the dyno (log-session reconnects, retried batches)", |c| &c.lines_repeated),
    ("dynoguard_drain_auth_failures_total", "Drain POSTs with wrong or missing credentials (401)", |c| &c.drain_auth_failures),
    ("dynoguard_bodies_too_large_total", "Drain bodies refused as too large (413)", |c| &c.bodies_too_large),
    ("dynoguard_body_timeouts_total", "Drain bodies not received within the deadline (408)", |c| &c.body_timeouts),
    ("dynoguard_unsupported_encoding_total", "Drain bodies refused for their Content-Encoding (415)", |c| &c.unsupported_encoding),
    ("dynoguard_connections_refused_total", "Connections closed at once: the connection limit was reached", |c| &c.connections_refused),
    ("dynoguard_connections_evicted_total", "Idle connections (no request head yet) closed to make room at the connection limit", |c| &c.connections_evicted),
    ("dynoguard_accept_errors_total", "Failed accept() calls (e.g. out of file descriptors)", |c| &c.accept_errors),
    ("dynoguard_rows_pruned_total", "Stored rows deleted by retention", |c| &c.rows_pruned),
    ("dynoguard_l10_coalesced_total", "L10/L11 lines folded into the minute's first report", |c| &c.l10_coalesced),
    ("dynoguard_timestamps_clamped_total", "Lines stamped more than a minute ahead, judged at their arrival", |c| &c.timestamps_clamped),
    ("dynoguard_session_lines_total", "Lines read from log sessions", |c| &c.session_lines),
];

/// A label value, escaped as the exposition format wants.
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn counter(&mut self, name: &str, help: &str, v: &AtomicU64) {
        self.family(name, "counter", help);
        let _ = writeln!(self.0, "{name} {}", v.load(Ordering::Relaxed));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", label(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {v}");
    }
}

fn bytes(mb: Option<f64>) -> Option<f64> {
    mb.map(|m| (m * MIB).round())
}

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rendered text per piece of the streamed body, about (a piece ends after
/// the dyno that reaches it). At 10,000 dynos the exposition is ≈ 17 MB;
/// streamed, a scrape holds the dynos' [`Row`]s, this much text, and what
/// hyper buffers of it on a slow connection (bounded by its write buffer).
const CHUNK: usize = 64 * 1024;

/// `GET /metrics`: the exposition, streamed. Everything is read at once
/// here (one consistent snapshot, as [`render`] takes it); the per-dyno
/// lines are rendered piece by piece as hyper asks for the next one.
pub async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let pieces = Exposition::new(&s, CHUNK).map(Ok::<_, Infallible>);
    let body = Body::from_stream(futures_util::stream::iter(pieces));
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// The whole exposition in one `String` (byte for byte what `/metrics`
/// streams): this process, its counters, the labelled counters, the store
/// and the Platform API, the apps, the dynos, the replica.
pub fn render(s: &Shared) -> String {
    Exposition::new(s, usize::MAX).whole()
}

/// Everything before the per-dyno families.
fn head(s: &Shared) -> String {
    let mut o = Out(String::with_capacity(16 * 1024));
    process(&mut o, s);
    for (name, help, v) in COUNTERS {
        o.counter(name, help, v(&s.counters));
    }
    o.counter(
        "dynoguard_history_points_dropped_total",
        "Per-minute history points dropped while the store was down too long",
        &s.samples.minutes_dropped,
    );
    labelled_counters(&mut o, &s.counters);
    platform_api(&mut o, s);
    store(&mut o, s);
    o.family(
        "dynoguard_app_blind",
        "gauge",
        "1 while an app's logs arrive without memory samples (runtime metrics off or not restarted)",
    );
    for a in views::app_views(s) {
        o.sample("dynoguard_app_blind", &[("app", &a.app)], u8::from(a.blind));
    }
    o.0
}

/// The exposition as pieces of at most about `limit` bytes: the head, the
/// per-dyno families (family by family, dyno by dyno, in [`render`]'s
/// order), the replica's part. All of it read when made.
struct Exposition {
    head: String,
    rows: Vec<Row>,
    tail: String,
    limit: usize,
    /// The per-dyno family being written ([`DYNO_FAMILIES`]`.len()`: done).
    family: usize,
    /// Its `# HELP`/`# TYPE` lines are written.
    started: bool,
    /// The next row of the family.
    next: usize,
}

impl Exposition {
    fn new(s: &Shared, limit: usize) -> Self {
        let head = head(s);
        let rows = views::local_views(s, None)
            .into_iter()
            .map(|d| Row::new(&d))
            .collect();
        let mut tail = Out(String::with_capacity(4 * 1024));
        replicas(&mut tail, s);
        Self::of(head, rows, tail.0, limit)
    }

    fn of(head: String, rows: Vec<Row>, tail: String, limit: usize) -> Self {
        Self {
            head,
            rows,
            tail,
            limit,
            family: 0,
            started: false,
            next: 0,
        }
    }
}

impl Exposition {
    /// All of it in one `String`, written in one go (no pieces).
    fn whole(self) -> String {
        let mut o = Out(self.head);
        for family in 0..DYNO_FAMILIES.len() {
            dyno_family(&mut o, family);
            for row in &self.rows {
                dyno_lines(&mut o, family, row);
            }
        }
        o.0.push_str(&self.tail);
        o.0
    }
}

impl Iterator for Exposition {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if !self.head.is_empty() {
            return Some(Bytes::from(std::mem::take(&mut self.head)));
        }
        if self.family < DYNO_FAMILIES.len() {
            let mut o = Out(String::with_capacity(self.limit.min(CHUNK) + 1024));
            while self.family < DYNO_FAMILIES.len() && o.0.len() < self.limit {
                if !self.started {
                    dyno_family(&mut o, self.family);
                    self.started = true;
                }
                while self.next < self.rows.len() && o.0.len() < self.limit {
                    dyno_lines(&mut o, self.family, &self.rows[self.next]);
                    self.next += 1;
                }
                if self.next == self.rows.len() {
                    self.family += 1;
                    self.started = false;
                    self.next = 0;
                }
            }
            if self.family == DYNO_FAMILIES.len() {
                self.rows = Vec::new();
            }
            return Some(Bytes::from(o.0));
        }
        if !self.tail.is_empty() {
            return Some(Bytes::from(std::mem::take(&mut self.tail)));
        }
        None
    }
}

/// What a per-dyno gauge shows of a dyno (`None`: not known, left out).
type Gauge = fn(&DynoView) -> Option<f64>;

fn memory(d: &DynoView) -> crate::domain::MemoryMb {
    d.last_sample.as_ref().map(|x| x.memory).unwrap_or_default()
}

/// The per-dyno families, in exposition order: name, help, and the gauge
/// (`None`: `dynoguard_dyno_state`, one line per state).
#[rustfmt::skip]
const DYNO_FAMILIES: [(&str, &str, Option<Gauge>); 9] = [
    ("dynoguard_dyno_memory_bytes", "memory_total of the dyno's latest sample", Some(|d| bytes(memory(d).total))),
    ("dynoguard_dyno_memory_rss_bytes", "memory_rss of the dyno's latest sample", Some(|d| bytes(memory(d).rss))),
    ("dynoguard_dyno_memory_swap_bytes", "memory_swap of the dyno's latest sample", Some(|d| bytes(memory(d).swap))),
    ("dynoguard_dyno_memory_quota_bytes", "memory_quota of the dyno (its size)", Some(|d| bytes(memory(d).quota))),
    ("dynoguard_dyno_memory_threshold_bytes", "Restart threshold of the dyno", Some(|d| bytes(d.threshold_mb))),
    ("dynoguard_dyno_last_sample_timestamp_seconds", "Log time of the dyno's latest memory sample (unix seconds)", Some(|d| d.sample_at.map(|t| t.as_millisecond() as f64 / 1000.0))),
    ("dynoguard_dyno_state", "1 for the dyno's current state (ok, over, restarting, stale), 0 for the others", None),
    ("dynoguard_dyno_needs_attention", "1 if the dyno needs attention (over, restarting, restart failed, flapping, stale, two instances unordered): the definition the page and /api/dynos use", Some(|d| Some(f64::from(u8::from(d.needs_attention()))))),
    ("dynoguard_dyno_recent_restarts", "Restarts of the dyno decided within its flap window", Some(|d| Some(d.recent_restarts as f64))),
];

/// What the per-dyno families need of a dyno, taken from its view (about
/// 200 B a dyno instead of the view's strings and lists).
struct Row {
    /// `app="…",process_type="…",dyno="…"`, escaped.
    labels: Box<str>,
    /// By family ([`DYNO_FAMILIES`]); the state family's slot is unused.
    values: [Option<f64>; DYNO_FAMILIES.len()],
    state: DynoStatus,
}

impl Row {
    fn new(d: &DynoView) -> Self {
        Self {
            labels: format!(
                "app=\"{}\",process_type=\"{}\",dyno=\"{}\"",
                label(&d.app),
                label(&d.process_type),
                label(&d.dyno)
            )
            .into_boxed_str(),
            values: DYNO_FAMILIES.map(|(_, _, gauge)| gauge.and_then(|g| g(d))),
            state: d.state,
        }
    }
}

fn dyno_family(o: &mut Out, family: usize) {
    let (name, help, _) = DYNO_FAMILIES[family];
    o.family(name, "gauge", help);
}

/// A dyno's line(s) of a per-dyno family: as [`Out::sample`] writes them.
fn dyno_lines(o: &mut Out, family: usize, row: &Row) {
    let (name, _, gauge) = DYNO_FAMILIES[family];
    let labels = &row.labels;
    if gauge.is_none() {
        for st in DynoStatus::ALL {
            let _ = writeln!(
                o.0,
                "{name}{{{labels},state=\"{}\"}} {}",
                st.as_str(),
                u8::from(row.state == st)
            );
        }
    } else if let Some(v) = row.values[family] {
        let _ = writeln!(o.0, "{name}{{{labels}}} {v}");
    }
}

/// Which dynoguard runs, since when.
fn process(o: &mut Out, s: &Shared) {
    o.family(
        "dynoguard_build_info",
        "gauge",
        "The running dynoguard: 1, labelled with its version",
    );
    o.sample(
        "dynoguard_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    o.family(
        "dynoguard_start_time_seconds",
        "gauge",
        "When this process started (unix seconds)",
    );
    o.sample("dynoguard_start_time_seconds", &[], s.started.as_second());
}

/// Counters by a label: refused drain batches, events, restarts.
fn labelled_counters(o: &mut Out, c: &Counters) {
    o.family(
        "dynoguard_drain_refused_total",
        "counter",
        "Authenticated drain batches refused for their Logplex-Drain-Token, by reason (token_mismatch: 403, unknown_token: 404)",
    );
    for (reason, n) in [
        ("token_mismatch", &c.drain_token_mismatch),
        ("unknown_token", &c.drain_unknown_token),
    ] {
        o.sample(
            "dynoguard_drain_refused_total",
            &[("reason", reason)],
            n.load(Ordering::Relaxed),
        );
    }
    o.family(
        "dynoguard_events_total",
        "counter",
        "Decision events reported by this process, by kind",
    );
    for (kind, n) in EventKind::ALL.iter().zip(&c.events) {
        o.sample(
            "dynoguard_events_total",
            &[("kind", kind.as_str())],
            n.load(Ordering::Relaxed),
        );
    }
    o.family(
        "dynoguard_restarts_total",
        "counter",
        "Restart calls by app, process type, reason and outcome (this process)",
    );
    for ((app, ty, reason, outcome), n) in c.restarts() {
        o.sample(
            "dynoguard_restarts_total",
            &[
                ("app", &app),
                ("process_type", &ty),
                ("reason", &reason),
                ("outcome", &outcome),
            ],
            n,
        );
    }
}

/// The Platform API: calls by status, the rate limit left.
fn platform_api(o: &mut Out, s: &Shared) {
    o.family(
        "dynoguard_api_calls_total",
        "counter",
        "Platform API calls by HTTP status (0: no response)",
    );
    for (status, n) in s.client.calls_by_status() {
        o.sample(
            "dynoguard_api_calls_total",
            &[("status", &status.to_string())],
            n,
        );
    }
    o.family(
        "dynoguard_heroku_ratelimit_remaining",
        "gauge",
        "The last RateLimit-Remaining the Platform API sent",
    );
    if let Some(n) = s.client.rate_limit_remaining() {
        o.sample("dynoguard_heroku_ratelimit_remaining", &[], n);
    }
}

/// The store: outages so far, up now.
fn store(o: &mut Out, s: &Shared) {
    o.family(
        "dynoguard_store_outages_total",
        "counter",
        "Times writes to the store started failing",
    );
    o.sample(
        "dynoguard_store_outages_total",
        &[],
        s.store.health().outages().borrow().0,
    );
    o.family(
        "dynoguard_store_up",
        "gauge",
        "1 while writes to the store work, 0 while they fail",
    );
    o.sample(
        "dynoguard_store_up",
        &[],
        u8::from(s.store.health().failing().is_none()),
    );
}

/// The replica's role and what it forwards (SPEC §10).
fn replicas(o: &mut Out, s: &Shared) {
    use crate::store::replicas::Role;
    let r = &s.replicas;
    let l = &r.leadership;
    let role = l.role();
    o.family(
        "dynoguard_leader",
        "gauge",
        "1 if this replica decides and restarts (the leader, the only process, or one cut off from the store), else 0",
    );
    o.sample(
        "dynoguard_leader",
        &[("replica", &l.replica), ("role", role.as_str())],
        u8::from(l.decides()),
    );
    o.family(
        "dynoguard_leader_epoch",
        "gauge",
        "The leader's epoch as this replica last saw it (0: single process)",
    );
    let epoch = match role {
        Role::Leader { epoch } | Role::Follower { epoch, .. } => epoch,
        Role::Alone | Role::Cut => 0,
    };
    o.sample("dynoguard_leader_epoch", &[], epoch);
    let counters: [(&str, &str, &AtomicU64); 4] = [
        (
            "dynoguard_forwarded_batches_total",
            "Batches this follower wrote to the store for the leader",
            &r.stats.forwarded,
        ),
        (
            "dynoguard_forwarded_applied_total",
            "Forwarded batches this leader took from the store",
            &r.stats.consumed,
        ),
        (
            "dynoguard_forwarded_dropped_total",
            "Batches lost on the way to the leader (queue full while the store refused them, or unreadable)",
            &r.stats.dropped,
        ),
        (
            "dynoguard_leader_promotions_total",
            "Times this replica took the lead",
            &r.stats.promotions,
        ),
    ];
    for (name, help, v) in counters {
        o.counter(name, help, v);
    }
    o.family(
        "dynoguard_observations_queued",
        "gauge",
        "Batches waiting: queued for the leader (follower) or held for log-time order (leader)",
    );
    o.sample("dynoguard_observations_queued", &[], r.queued());
    o.family(
        "dynoguard_forward_lag_seconds",
        "gauge",
        "Receipt at a follower to decision by the leader (the one-second reorder hold included), of the oldest forwarded batch last applied",
    );
    o.sample(
        "dynoguard_forward_lag_seconds",
        &[],
        r.stats.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MemoryMb;
    use crate::service::server::views::{Attention, SampleView};

    /// `Out::dyno_gauge` as it was.
    fn dyno_gauge(
        o: &mut Out,
        name: &str,
        help: &str,
        dynos: &[DynoView],
        f: impl Fn(&DynoView) -> Option<f64>,
    ) {
        o.family(name, "gauge", help);
        for d in dynos {
            if let Some(v) = f(d) {
                o.sample(name, &dyno_labels(d), v);
            }
        }
    }

    fn dyno_labels(d: &DynoView) -> [(&'static str, &str); 3] {
        [
            ("app", &d.app),
            ("process_type", &d.process_type),
            ("dyno", &d.dyno),
        ]
    }

    /// `dynos` as it was before `/metrics` was streamed (issue 21): the
    /// reference the rows must match byte for byte.
    fn dynos(o: &mut Out, dynos: &[DynoView]) {
        let memory = |d: &DynoView| d.last_sample.as_ref().map(|x| x.memory).unwrap_or_default();
        dyno_gauge(
            o,
            "dynoguard_dyno_memory_bytes",
            "memory_total of the dyno's latest sample",
            dynos,
            |d| bytes(memory(d).total),
        );
        dyno_gauge(
            o,
            "dynoguard_dyno_memory_rss_bytes",
            "memory_rss of the dyno's latest sample",
            dynos,
            |d| bytes(memory(d).rss),
        );
        dyno_gauge(
            o,
            "dynoguard_dyno_memory_swap_bytes",
            "memory_swap of the dyno's latest sample",
            dynos,
            |d| bytes(memory(d).swap),
        );
        dyno_gauge(
            o,
            "dynoguard_dyno_memory_quota_bytes",
            "memory_quota of the dyno (its size)",
            dynos,
            |d| bytes(memory(d).quota),
        );
        dyno_gauge(
            o,
            "dynoguard_dyno_memory_threshold_bytes",
            "Restart threshold of the dyno",
            dynos,
            |d| bytes(d.threshold_mb),
        );
        dyno_gauge(
            o,
            "dynoguard_dyno_last_sample_timestamp_seconds",
            "Log time of the dyno's latest memory sample (unix seconds)",
            dynos,
            |d| d.sample_at.map(|t| t.as_millisecond() as f64 / 1000.0),
        );
        o.family(
            "dynoguard_dyno_state",
            "gauge",
            "1 for the dyno's current state (ok, over, restarting, stale), 0 for the others",
        );
        for d in dynos {
            let [a, t, n] = dyno_labels(d);
            for st in DynoStatus::ALL {
                o.sample(
                    "dynoguard_dyno_state",
                    &[a, t, n, ("state", st.as_str())],
                    u8::from(d.state == st),
                );
            }
        }
        dyno_gauge(
            o,
            "dynoguard_dyno_needs_attention",
            "1 if the dyno needs attention (over, restarting, restart failed, flapping, stale, two instances unordered): the definition the page and /api/dynos use",
            dynos,
            |d| Some(f64::from(u8::from(d.needs_attention()))),
        );
        dyno_gauge(
            o,
            "dynoguard_dyno_recent_restarts",
            "Restarts of the dyno decided within its flap window",
            dynos,
            |d| Some(d.recent_restarts as f64),
        );
    }

    fn view(app: &str, dyno: &str, i: usize) -> DynoView {
        let states = DynoStatus::ALL;
        let sample = (!i.is_multiple_of(5)).then(|| SampleView {
            memory: MemoryMb {
                total: Some(100.0 + i as f64 * 1.37),
                rss: (!i.is_multiple_of(3)).then_some(90.125 + i as f64),
                swap: (i.is_multiple_of(4)).then_some(0.0),
                quota: Some(512.0),
            },
            at: String::new(),
        });
        DynoView {
            app: app.to_owned(),
            dyno: dyno.to_owned(),
            process_type: dyno.rsplit_once('.').map_or(dyno, |(t, _)| t).to_owned(),
            instance: None,
            state: states[i % 4],
            last_sample: sample,
            threshold_mb: (!i.is_multiple_of(7)).then_some(460.8),
            percent_of_quota: None,
            last_restart: None,
            seen_here: true,
            attention: if i.is_multiple_of(3) {
                vec![Attention::Flapping]
            } else {
                Vec::new()
            },
            recent_restarts: i % 4,
            incident: None,
            sample_at: (!i.is_multiple_of(5))
                .then(|| jiff::Timestamp::from_millisecond(1_764_000_000_123 + i as i64).unwrap()),
        }
    }

    fn views(n: usize) -> Vec<DynoView> {
        let mut v: Vec<DynoView> = (0..n)
            .map(|i| view("shop", &format!("web.{i}"), i))
            .collect();
        // Labels that need escaping.
        v.push(view("a\"b\\c", "we\nird.1", 1));
        v
    }

    fn rows(views: &[DynoView]) -> Vec<Row> {
        views.iter().map(Row::new).collect()
    }

    #[test]
    fn rows_render_as_the_views_did() {
        for n in [0, 1, 7, 300] {
            let v = views(n);
            let mut before = Out(String::new());
            dynos(&mut before, &v);
            let after = Exposition::of(String::new(), rows(&v), String::new(), usize::MAX).whole();
            assert_eq!(after, before.0, "{n} dynos");
        }
    }

    #[test]
    fn pieces_are_bounded_and_add_up_to_the_whole() {
        let v = views(500);
        let head = "# head\nx 1\n".to_owned();
        let tail = "# tail\ny 2\n".to_owned();
        let whole = Exposition::of(head.clone(), rows(&v), tail.clone(), usize::MAX).whole();
        // The longest a dyno adds to a piece: its four state lines, or a
        // family's header and one line.
        let most = 1024;
        for limit in [1, 100, 4096, 65_536, usize::MAX] {
            let pieces: Vec<Bytes> =
                Exposition::of(head.clone(), rows(&v), tail.clone(), limit).collect();
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(String::from_utf8(joined).unwrap(), whole, "limit {limit}");
            assert!(pieces.iter().all(|p| !p.is_empty()), "limit {limit}");
            for p in &pieces[1..pieces.len() - 1] {
                assert!(
                    p.len() < limit.saturating_add(most),
                    "limit {limit}: {}",
                    p.len()
                );
            }
            if limit == 4096 {
                assert!(pieces.len() > whole.len() / 5000, "{}", pieces.len());
            }
        }
    }
}
