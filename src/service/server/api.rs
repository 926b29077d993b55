//! Health, JSON API, Prometheus metrics and the HTML dashboard.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::auth;
use crate::decide::policy::DynoState;
use crate::decide::watch::LIVE;
use crate::service::Shared;

pub async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    if let Some(why) = s.store.health().failing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {why}\n"),
        )
            .into_response();
    }
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!("health check: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    // No password configured: closed (the start-up log says how to open it).
    s.config
        .server
        .dashboard_password
        .as_ref()
        .is_some_and(|pw| auth::matches(auth::password(headers).as_deref(), pw))
}

#[derive(Serialize)]
pub struct DynoView {
    pub app: String,
    pub dyno: String,
    pub process_type: String,
    pub instance: Option<String>,
    pub state: &'static str,
    pub last_sample: Option<SampleView>,
    pub last_restart: Option<String>,
}

#[derive(Serialize)]
pub struct SampleView {
    pub total: Option<f64>,
    pub rss: Option<f64>,
    pub swap: Option<f64>,
    pub quota: Option<f64>,
    pub at: String,
}

/// Staleness is about the wall clock (is the dyno still reporting?); the
/// restart in progress is judged on the dyno's own log clock, as decisions are.
fn state_of(d: &DynoState, now: Timestamp, settle: jiff::SignedDuration) -> &'static str {
    if d.last_arrival.is_none_or(|t| now.duration_since(t) > LIVE) {
        "stale"
    } else if d.awaiting_replacement
        && d.last_restart
            .as_ref()
            .is_some_and(|m| d.last_seen.duration_since(m.at) < settle)
    {
        "restarting"
    } else if d.over {
        "over"
    } else {
        "ok"
    }
}

pub fn dyno_views(s: &Shared) -> Vec<DynoView> {
    let now = Timestamp::now();
    let mut out = Vec::new();
    for a in &s.apps {
        let w = a.lock();
        for d in w.watcher().dynos() {
            let settle = w.watcher().policy().judging(d.dyno.process_type()).settle;
            out.push(DynoView {
                app: a.config.name.to_string(),
                dyno: d.dyno.to_string(),
                process_type: d.dyno.process_type().to_owned(),
                instance: d.instance.clone(),
                state: state_of(d, now, settle),
                last_sample: d.sample_at.map(|at| SampleView {
                    total: d.memory.total.map(|m| m.0),
                    rss: d.memory.rss.map(|m| m.0),
                    swap: d.memory.swap.map(|m| m.0),
                    quota: d.quota().map(|m| m.0),
                    at: at.to_string(),
                }),
                last_restart: d.last_restart.as_ref().map(|m| m.at.to_string()),
            });
        }
    }
    out.sort_by(|a, b| (&a.app, &a.dyno).cmp(&(&b.app, &b.dyno)));
    out
}

pub async fn dynos(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return auth::unauthorized();
    }
    Json(dyno_views(&s)).into_response()
}

/// One watched app: how it is fed, how many dynos, whether it is blind.
#[derive(Serialize)]
pub struct AppView {
    pub app: String,
    pub source: &'static str,
    pub dynos: usize,
    /// Lines arrive but no memory sample for `blind_after`.
    pub blind: bool,
    pub blind_since: Option<String>,
    /// How to fix blindness (set while blind).
    pub hint: Option<String>,
}

pub fn app_views(s: &Shared) -> Vec<AppView> {
    s.apps
        .iter()
        .map(|a| {
            let e = a.lock();
            let since = e.blind_since();
            AppView {
                app: a.config.name.to_string(),
                source: a.config.source.as_str(),
                dynos: e.watcher().dynos().count(),
                blind: since.is_some(),
                blind_since: since.map(|t| t.to_string()),
                hint: since.map(|_| {
                    crate::decide::blind::hint(&a.config.name, a.config.policy.blind_after)
                }),
            }
        })
        .collect()
}

pub async fn apps(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return auth::unauthorized();
    }
    Json(app_views(&s)).into_response()
}

#[derive(Deserialize)]
pub struct EventsQuery {
    app: Option<String>,
    limit: Option<i64>,
}

pub async fn events(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    if !authorized(&s, &headers) {
        return auth::unauthorized();
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match s
        .store
        .recent_events(q.app.as_deref().filter(|a| !a.is_empty()), limit)
        .await
    {
        Ok(rows) => {
            let events: Vec<serde_json::Value> = rows
                .iter()
                .filter_map(|r| serde_json::from_str(&r.body).ok())
                .collect();
            Json(events).into_response()
        }
        Err(e) => {
            tracing::warn!("/api/events: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

pub async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return auth::unauthorized();
    }
    let mut out = String::new();
    let c = &s.counters;
    let counters = [
        (
            "dynoguard_drain_requests_total",
            "Drain POSTs accepted",
            &c.drain_requests,
        ),
        (
            "dynoguard_drain_bytes_total",
            "Drain body bytes received",
            &c.drain_bytes,
        ),
        ("dynoguard_frames_total", "Frames / lines read", &c.frames),
        (
            "dynoguard_frames_rejected_total",
            "Broken stretches or lines skipped",
            &c.frames_rejected,
        ),
        (
            "dynoguard_frames_repaired_total",
            "Frames with a wrong octet count, recovered",
            &c.frames_repaired,
        ),
        (
            "dynoguard_duplicate_batches_total",
            "Retried batches dropped by Logplex-Frame-Id",
            &c.duplicate_batches,
        ),
        (
            "dynoguard_msg_count_mismatch_total",
            "Batches whose Logplex-Msg-Count disagreed",
            &c.msg_count_mismatch,
        ),
        (
            "dynoguard_observations_total",
            "Platform lines used",
            &c.observations,
        ),
        (
            "dynoguard_l10_lost_messages_total",
            "Messages Logplex reported dropped (L10/L11)",
            &c.samples_lost,
        ),
        (
            "dynoguard_events_dropped_total",
            "Events not queued for store/notify (queue full)",
            &c.events_dropped,
        ),
        (
            "dynoguard_session_reconnects_total",
            "Log sessions reopened",
            &c.session_reconnects,
        ),
        (
            "dynoguard_lines_stale_total",
            "Samples not newer than the one applied for the instance (retries, reconnects, disorder)",
            &c.lines_stale,
        ),
        (
            "dynoguard_lines_replaced_total",
            "Lines of a dyno instance already replaced (preboot overlap, late lines)",
            &c.lines_replaced,
        ),
        (
            "dynoguard_drain_auth_failures_total",
            "Drain POSTs with wrong or missing credentials (401)",
            &c.drain_auth_failures,
        ),
        (
            "dynoguard_bodies_too_large_total",
            "Drain bodies refused as too large (413)",
            &c.bodies_too_large,
        ),
        (
            "dynoguard_body_timeouts_total",
            "Drain bodies not received within the deadline (408)",
            &c.body_timeouts,
        ),
        (
            "dynoguard_unsupported_encoding_total",
            "Drain bodies refused for their Content-Encoding (415)",
            &c.unsupported_encoding,
        ),
        (
            "dynoguard_connections_refused_total",
            "Connections closed at once: the connection limit was reached",
            &c.connections_refused,
        ),
        (
            "dynoguard_accept_errors_total",
            "Failed accept() calls (e.g. out of file descriptors)",
            &c.accept_errors,
        ),
        (
            "dynoguard_rows_pruned_total",
            "Stored rows deleted by retention",
            &c.rows_pruned,
        ),
        (
            "dynoguard_l10_coalesced_total",
            "L10/L11 lines folded into the minute's first report",
            &c.l10_coalesced,
        ),
        (
            "dynoguard_timestamps_clamped_total",
            "Lines stamped more than a minute ahead, judged at their arrival",
            &c.timestamps_clamped,
        ),
        (
            "dynoguard_session_lines_total",
            "Lines read from log sessions",
            &c.session_lines,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP dynoguard_heroku_ratelimit_remaining Last RateLimit-Remaining seen\n# TYPE dynoguard_heroku_ratelimit_remaining gauge\ndynoguard_heroku_ratelimit_remaining {}",
        s.client.rate_limit_remaining()
    );
    let _ = writeln!(
        out,
        "# HELP dynoguard_api_calls_total Platform API calls by HTTP status (0: no response)\n# TYPE dynoguard_api_calls_total counter"
    );
    for (status, n) in s.client.calls_by_status() {
        let _ = writeln!(out, "dynoguard_api_calls_total{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP dynoguard_dyno_memory_mb Latest memory_total per dyno\n# TYPE dynoguard_dyno_memory_mb gauge"
    );
    let views = dyno_views(&s);
    for d in &views {
        if let Some(t) = d.last_sample.as_ref().and_then(|x| x.total) {
            let _ = writeln!(
                out,
                "dynoguard_dyno_memory_mb{{app=\"{}\",dyno=\"{}\"}} {t}",
                d.app, d.dyno
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP dynoguard_dyno_quota_mb Memory quota per dyno\n# TYPE dynoguard_dyno_quota_mb gauge"
    );
    for d in &views {
        if let Some(q) = d.last_sample.as_ref().and_then(|x| x.quota) {
            let _ = writeln!(
                out,
                "dynoguard_dyno_quota_mb{{app=\"{}\",dyno=\"{}\"}} {q}",
                d.app, d.dyno
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP dynoguard_app_blind 1 while an app's logs arrive without memory samples (runtime metrics off or not restarted)\n# TYPE dynoguard_app_blind gauge"
    );
    for a in app_views(&s) {
        let _ = writeln!(
            out,
            "dynoguard_app_blind{{app=\"{}\"}} {}",
            a.app,
            u8::from(a.blind)
        );
    }
    // This process's own counts: O(series), no store scan per scrape.
    let _ = writeln!(
        out,
        "# HELP dynoguard_restarts_total Restart calls by app, type, reason and outcome (this process)\n# TYPE dynoguard_restarts_total counter"
    );
    for ((app, ty, reason, outcome), n) in s.counters.restarts() {
        let _ = writeln!(
            out,
            "dynoguard_restarts_total{{app=\"{app}\",type=\"{ty}\",reason=\"{reason}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A hand-drawn SVG chart of one dyno's last hour: memory, quota/threshold
/// line, restart marker.
fn chart(d: &DynoState, limit: Option<f64>) -> String {
    let (w, h) = (360.0, 80.0);
    let Some(&(t_end, _)) = d.history.back() else {
        return String::new();
    };
    let t0 = t_end.as_second() as f64 - 3600.0;
    let max = d
        .history
        .iter()
        .map(|p| p.1)
        .fold(limit.unwrap_or(0.0), f64::max)
        .max(1.0)
        * 1.1;
    let x = |t: Timestamp| ((t.as_second() as f64 - t0) / 3600.0 * w).clamp(0.0, w);
    let y = |v: f64| h - v / max * h;
    let pts: Vec<String> = d
        .history
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let mut svg = format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\"><rect width=\"{w}\" height=\"{h}\" fill=\"#f7f7f7\"/>"
    );
    if let Some(l) = limit {
        let _ = write!(
            svg,
            "<line x1=\"0\" x2=\"{w}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#c00\" stroke-dasharray=\"4 3\"/>",
            y(l)
        );
    }
    if let Some(m) = &d.last_restart {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{h}\" stroke=\"#06c\"/>",
            x(m.at)
        );
    }
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"#333\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        pts.join(" ")
    );
    svg
}

pub async fn dashboard(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return auth::unauthorized();
    }
    let now = Timestamp::now();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\"><title>dynoguard</title><style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left}.over{color:#c00}.restarting{color:#06c}.stale{color:#888}</style></head><body><h1>dynoguard</h1>",
    );
    if let Some(why) = s.store.health().failing() {
        let _ = write!(
            html,
            "<p style=\"background:#fee;border:1px solid #c00;padding:.6em\"><b>Store unavailable</b>: {} — restarts go on with claims held in memory; events and history are kept and retried.</p>",
            esc(&why)
        );
    }
    for a in &s.apps {
        let w = a.lock();
        if let Some(since) = w.blind_since() {
            let _ = write!(
                html,
                "<p class=\"blind\" style=\"background:#fff4e0;border:1px solid #c60;padding:.6em\"><b>{} is blind</b> since {since}: {}</p>",
                esc(a.config.name.as_str()),
                esc(&crate::decide::blind::hint(
                    &a.config.name,
                    a.config.policy.blind_after
                ))
            );
        }
        let _ = write!(
            html,
            "<h2>{} <small>({})</small></h2><table><tr><th>dyno</th><th>state</th><th>memory</th><th>quota</th><th>last hour (dashed: threshold, blue: restart)</th></tr>",
            esc(a.config.name.as_str()),
            a.config.source.as_str()
        );
        let mut dynos: Vec<&DynoState> = w.watcher().dynos().collect();
        dynos.sort_by(|x, y| x.dyno.cmp(&y.dyno));
        for d in dynos {
            let p = w.watcher().policy().judging(d.dyno.process_type());
            let st = state_of(d, now, p.settle);
            let limit = p.threshold.limit(d.quota()).map(|m| m.0);
            let _ = write!(
                html,
                "<tr><td>{}</td><td class=\"{st}\">{st}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(d.dyno.as_str()),
                d.memory.total.map_or("–".into(), |m| m.to_string()),
                d.quota().map_or("–".into(), |m| m.to_string()),
                chart(d, limit)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>Recent events</h2><table><tr><th>at</th><th>event</th></tr>");
    if let Ok(rows) = s.store.recent_events(None, 50).await {
        for r in rows {
            let _ = write!(
                html,
                "<tr><td>{}</td><td><b>{}</b> {}</td></tr>",
                crate::store::from_millis(r.at),
                esc(&r.kind),
                esc(&r.body)
            );
        }
    }
    html.push_str("</table></body></html>");
    Html(html).into_response()
}
