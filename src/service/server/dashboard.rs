//! `GET /`: the dashboard, rendered on the server and readable without
//! JavaScript. Per app a summary line and banners; per process type the
//! dynos by urgency, each with a bar and a chart from the stored history;
//! recent events as rows, filterable by `app`, `dyno` and `kind`; charts
//! over `range` (1h, 6h, 24h, 7d). A small inline script refreshes the page
//! in place (no scroll reset) every 15 s.
//!
//! Data is gathered first ([`gather`], async: engine and store), then
//! rendered by a pure function ([`render`]) — what the benchmark measures.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use jiff::Timestamp;

use super::api::{self, ApiError, Params};
use super::chart::{self, Chart, Mark, MarkKind, esc, mb};
use super::views::{self, DynoStatus, DynoView, Range};
use crate::domain::event::{Event, EventKind};
use crate::service::Shared;
use crate::store::{EventFilter, HistoryPoint};

/// The page's query: chart range and the events filter (`app` also narrows
/// the apps shown).
#[derive(Debug, Clone)]
pub struct PageQuery {
    pub app: Option<String>,
    pub dyno: Option<String>,
    pub kinds: Vec<String>,
    pub range: Range,
}

impl PageQuery {
    fn parse(s: &Shared, raw: Option<&str>) -> Result<Self, ApiError> {
        let p = Params::parse(raw, &["app", "dyno", "kind", "range"])?;
        Ok(Self {
            app: p.get("app").map(|a| api::known_app(s, a)).transpose()?,
            dyno: p
                .get("dyno")
                .map(api::parse_dyno)
                .transpose()?
                .map(|d| d.to_string()),
            kinds: api::parse_kinds(p.get("kind"))?,
            range: api::parse_range(p.get("range"), Range::H6)?,
        })
    }

    /// This page's URL with one parameter changed (`None`: removed).
    fn with(&self, key: &str, value: Option<&str>) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let mut set = |k: &'static str, v: Option<String>| {
            let v = if k == key {
                value.map(str::to_owned)
            } else {
                v
            };
            if let Some(v) = v {
                pairs.push((k, v));
            }
        };
        set("app", self.app.clone());
        set("dyno", self.dyno.clone());
        set(
            "kind",
            (!self.kinds.is_empty()).then(|| self.kinds.join(",")),
        );
        set("range", Some(self.range.as_str().to_owned()));
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        format!("?{}", q.finish())
    }
}

/// One app's part of the page.
pub struct AppData {
    pub name: String,
    pub source: &'static str,
    pub blind: Option<(Timestamp, String)>,
    pub dynos: Vec<DynoView>,
    pub history: HashMap<String, Vec<HistoryPoint>>,
    pub marks: HashMap<String, Vec<Mark>>,
    /// Marks of the whole app (its releases), drawn on every dyno's chart.
    pub releases: Vec<Mark>,
    pub restarts_24h: usize,
}

/// Everything the page shows, gathered.
pub struct PageData {
    pub query: PageQuery,
    /// The page's clock: the header shows it and the "3 min ago" beside each
    /// time counts from it.
    pub now: Timestamp,
    /// `now` is the newest log time, not the wall clock (the demo, whose
    /// logs run on a simulated clock).
    pub log_clock: bool,
    /// The x axis of every chart (unix ms): the range, narrowed to the
    /// history shown.
    pub from: i64,
    pub to: i64,
    pub bucket: i64,
    /// The oldest history shown, when the range asked for reaches further
    /// back than any history (unix ms).
    pub history_since: Option<i64>,
    pub apps: Vec<AppData>,
    pub events: Vec<Event>,
    /// The incidents within the range (one row each on the page).
    pub incidents: Vec<views::IncidentView>,
    /// Alert-only mode (`DYNOGUARD_DRY_RUN`): nothing is restarted.
    pub alert_only: bool,
    pub store_failing: Option<String>,
    /// Reading history or events failed (the page still shows live figures).
    pub read_error: Option<String>,
}

const MARK_KINDS: [EventKind; 6] = [
    EventKind::Restart,
    EventKind::RestartFailed,
    EventKind::R14,
    EventKind::R15,
    EventKind::Recovered,
    EventKind::Release,
];

fn hm(t: Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

/// How long before the page's clock `t` was, to read at a glance beside
/// the exact UTC time (`3 min ago`, `5 h ago`).
pub fn ago(t: Timestamp, now: Timestamp) -> String {
    let s = now.duration_since(t).as_secs();
    match s {
        ..=-45 => "ahead of the clock".into(),
        -44..=44 => "just now".into(),
        45..5_400 => format!("{} min ago", (s + 30) / 60),
        5_400..172_800 => format!("{} h ago", (s + 1_800) / 3_600),
        _ => format!("{} days ago", (s + 43_200) / 86_400),
    }
}

/// `<span class="ago">(3 min ago)</span>`, to follow a UTC time.
fn ago_span(t: Timestamp, now: Timestamp) -> String {
    format!(" <span class=\"ago\">({})</span>", ago(t, now))
}

/// A release: on every chart of the app, its version and author on hover.
fn release_mark(e: &Event) -> Mark {
    Mark {
        at: e.at.as_millisecond(),
        kind: MarkKind::Release,
        title: format!(
            "{} ({} UTC)",
            e.detail.as_deref().unwrap_or("release"),
            hm(e.at)
        ),
    }
}

fn mark_of(e: &Event) -> Option<(String, Mark)> {
    let dyno = e.dyno.as_ref()?.to_string();
    let at = e.at;
    let kind = match e.event {
        EventKind::Restart => MarkKind::Restart,
        EventKind::RestartFailed => MarkKind::RestartFailed,
        EventKind::R14 => MarkKind::R14,
        EventKind::R15 => MarkKind::R15,
        EventKind::Recovered => MarkKind::Recovered,
        _ => return None,
    };
    let mut title = format!("{} {} UTC", e.event.as_str().replace('_', " "), hm(at));
    if let Some(r) = e.reason {
        let _ = write!(title, " ({})", r.as_str());
    }
    if let Some(m) = e.memory_total_mb {
        let _ = write!(title, " at {}", mb(m));
    }
    if let Some(s) = e.seconds {
        let _ = write!(title, " after {s:.0}s");
    }
    if let Some(d) = &e.detail {
        let _ = write!(title, ": {d}");
    }
    Some((
        dyno,
        Mark {
            at: at.as_millisecond(),
            kind,
            title,
        },
    ))
}

/// Reads what the page shows: views from the engines and the store,
/// history in buckets, markers, recent events.
pub async fn gather(s: &Shared, q: PageQuery) -> PageData {
    let wall = Timestamp::now();
    let views = views::all_views(s, q.app.as_deref()).await;
    // The demo's logs run on a simulated clock, behind the wall clock: its
    // page runs on the newest sample's time (never ahead of the wall), so
    // the header, the ranges and "3 min ago" agree with the charts.
    let newest = views.iter().filter_map(|v| v.sample_at).max();
    let (now, log_clock) = match newest {
        Some(n) if s.page_log_clock => (n.min(wall), true),
        _ => (wall, false),
    };
    let span = q.range.span();
    let to = now.as_millisecond() + 60_000;
    let range_from = (now - span).as_millisecond();
    // About 120 buckets per chart, whole minutes.
    let bucket = (span.as_millis() as i64 / 120).div_euclid(60_000).max(1) * 60_000;
    let mut read_error = None;
    let mut apps = Vec::new();
    for a in s
        .apps
        .iter()
        .filter(|a| q.app.as_deref().is_none_or(|n| a.config.name.as_str() == n))
    {
        let name = a.config.name.to_string();
        let blind = a.lock().blind_since().map(|since| {
            (
                since,
                crate::decide::blind::hint(&a.config.name, a.config.policy.blind_after),
            )
        });
        let mut history: HashMap<String, Vec<HistoryPoint>> = HashMap::new();
        match s.store.history(&name, None, range_from, to, bucket).await {
            Ok(points) => {
                for p in points {
                    history.entry(p.dyno.clone()).or_default().push(p);
                }
            }
            Err(e) => read_error = Some(e.to_string()),
        }
        let mut marks: HashMap<String, Vec<Mark>> = HashMap::new();
        let mut releases = Vec::new();
        // One marker per version: the log's line and the Platform API's
        // list may both have told of it.
        let mut versions = std::collections::HashSet::new();
        let filter = EventFilter {
            app: Some(name.clone()),
            kinds: MARK_KINDS.map(|k| k.as_str().to_owned()).to_vec(),
            since: Some(range_from),
            limit: 5000,
            ..EventFilter::default()
        };
        match s.store.events(&filter).await {
            Ok(rows) => {
                for v in api::typed_events(rows) {
                    if v.event == EventKind::Release {
                        let version = v
                            .detail
                            .as_deref()
                            .and_then(|d| d.split_whitespace().next())
                            .map(str::to_owned);
                        if version.is_none_or(|ver| versions.insert(ver)) {
                            releases.push(release_mark(&v));
                        }
                    } else if let Some((dyno, m)) = mark_of(&v) {
                        marks.entry(dyno).or_default().push(m);
                    }
                }
            }
            Err(e) => read_error = Some(e.to_string()),
        }
        // Whatever the chart range, the summary counts the last day.
        let day = EventFilter {
            app: Some(name.clone()),
            kinds: vec![EventKind::Restart.as_str().into()],
            since: Some((now - jiff::SignedDuration::from_hours(24)).as_millisecond()),
            limit: 10_000,
            ..EventFilter::default()
        };
        let restarts_24h = match s.store.events(&day).await {
            Ok(rows) => rows.len(),
            Err(e) => {
                read_error = Some(e.to_string());
                0
            }
        };
        match s.store.instance_starts(&name, range_from).await {
            Ok(starts) => {
                let mut prev: Option<&str> = None;
                for st in &starts {
                    // The first instance of each dyno in the range is no change.
                    if prev == Some(st.dyno.as_str()) {
                        marks.entry(st.dyno.clone()).or_default().push(Mark {
                            at: st.since,
                            kind: MarkKind::Instance,
                            title: format!(
                                "new instance {} from {} UTC",
                                short(&st.instance),
                                hm(crate::store::from_millis(st.since))
                            ),
                        });
                    }
                    prev = Some(st.dyno.as_str());
                }
            }
            Err(e) => read_error = Some(e.to_string()),
        }
        apps.push(AppData {
            source: a.config.source.as_str(),
            blind,
            dynos: views.iter().filter(|v| v.app == name).cloned().collect(),
            history,
            marks,
            releases,
            restarts_24h,
            name,
        });
    }
    let incidents = match s
        .store
        .events(&EventFilter {
            app: q.app.clone(),
            dyno: q.dyno.clone(),
            kinds: Vec::new(),
            since: Some(range_from),
            limit: 20_000,
        })
        .await
    {
        Ok(rows) => views::incidents(api::typed_events(rows)),
        Err(e) => {
            read_error = Some(e.to_string());
            Vec::new()
        }
    };
    let events = match s
        .store
        .events(&EventFilter {
            app: q.app.clone(),
            dyno: q.dyno.clone(),
            kinds: q.kinds.clone(),
            since: None,
            limit: 100,
        })
        .await
    {
        Ok(rows) => api::typed_events(rows),
        Err(e) => {
            read_error = Some(e.to_string());
            Vec::new()
        }
    };
    // The axis spans the history shown: from its oldest point (a new
    // install shows its first hour across the chart, not as a sliver) to its
    // newest (logs arrive late; a replayed or simulated clock runs behind),
    // within the range and never past now.
    let points = || {
        apps.iter()
            .flat_map(|a| a.history.values())
            .flatten()
            .map(|p| p.t)
    };
    let to = points()
        .max()
        .map_or(to, |newest| (newest + 2 * bucket).min(to));
    let from = points()
        .min()
        .map_or(range_from, |o| {
            o.max(range_from).max(to - span.as_millis() as i64)
        })
        .min(to - 15 * 60_000);
    // History younger than the range: the charts say so (a bucket's start
    // may lie up to a bucket before the range's).
    let history_since = points()
        .min()
        .filter(|oldest| *oldest > range_from + bucket);
    PageData {
        query: q,
        now,
        log_clock,
        from,
        to,
        bucket,
        history_since,
        apps,
        events,
        incidents,
        alert_only: s.alert_only(),
        store_failing: s.store.health().failing(),
        read_error,
    }
}

fn short(instance: &str) -> &str {
    instance.get(..8).unwrap_or(instance)
}

pub async fn dashboard(State(s): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    match PageQuery::parse(&s, raw.as_deref()) {
        Ok(q) => Html(render(&gather(&s, q).await)).into_response(),
        Err(e) => {
            let status = match e {
                ApiError::UnknownApp { .. } | ApiError::UnknownDyno { .. } => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            let page = format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>dynoguard</title></head><body><h1>dynoguard</h1><p>{}</p><p><a href=\"/\">the whole dashboard</a></p></body></html>",
                esc(&e.to_string())
            );
            (status, Html(page)).into_response()
        }
    }
}

const STYLE: &str = include_str!("dashboard.css");
const SCRIPT: &str = include_str!("dashboard.js");

/// Pages with more dynos than this start with untroubled types folded.
const FOLD_OVER: usize = 24;
/// In a type with more dynos than this, the untroubled rest is folded.
const SHOW_FIRST: usize = 12;

/// One definition of "needs attention" (`views::Attention`), the same as
/// `/api/dynos` and `/metrics` give.
fn troubled(d: &DynoView) -> bool {
    d.needs_attention()
}

/// The page (pure).
pub fn render(p: &PageData) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let q = &p.query;
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>dynoguard</title><style>{STYLE}</style></head><body><header><h1>dynoguard</h1><nav class=\"ranges\" aria-label=\"chart range\">"
    );
    for r in Range::ALL {
        let _ = write!(
            h,
            "<a href=\"{}\"{}>{}</a>",
            esc(&q.with("range", Some(r.as_str()))),
            if r == q.range {
                " class=\"on\" aria-current=\"true\""
            } else {
                ""
            },
            r.as_str()
        );
    }
    let _ = write!(
        h,
        "</nav><span class=\"updated\">{} {} UTC <noscript>(reload for new data)</noscript></span></header><main>",
        if p.log_clock {
            "simulated log time"
        } else {
            "updated"
        },
        hm(p.now)
    );
    if p.alert_only {
        h.push_str("<p class=\"banner alert-only\" role=\"status\"><b>Alert-only mode</b> (<code>DYNOGUARD_DRY_RUN</code>): every decision is made and reported — nothing is restarted.</p>");
    }
    if let Some(why) = &p.store_failing {
        let _ = write!(
            h,
            "<p class=\"banner store\" role=\"alert\"><b>Store unavailable</b>: {} — restarts go on with claims held in memory; events and history are kept and retried.</p>",
            esc(why)
        );
    } else if let Some(why) = &p.read_error {
        let _ = write!(
            h,
            "<p class=\"banner store\" role=\"alert\"><b>History unavailable</b>: {} — the figures below are live.</p>",
            esc(why)
        );
    }
    h.push_str("<p class=\"legend\"><span><i class=\"k-avg\"></i>average</span><span><i class=\"k-band\"></i>min–max</span><span><i class=\"k-quota\"></i>quota</span><span><i class=\"k-threshold\"></i>restart threshold</span><span><b class=\"c-restart\">▼</b> restart</span><span><b class=\"c-failed\">▼</b> failed restart</span><span><b class=\"c-r14\">●</b> R14</span><span><b class=\"c-r15\">✕</b> R15</span><span><b class=\"c-recovered\">●</b> recovered</span><span><b class=\"c-instance\">┆</b> new instance</span><span><i class=\"k-swap\"></i>swap</span><span><b class=\"c-release\">⚑</b> release</span></p>");
    let many = p.apps.iter().map(|a| a.dynos.len()).sum::<usize>() > FOLD_OVER;
    for a in &p.apps {
        app_section(&mut h, p, a, many);
    }
    incidents_section(&mut h, p);
    events_section(&mut h, p);
    let _ = write!(h, "</main><script>{SCRIPT}</script></body></html>");
    h
}

fn app_section(h: &mut String, p: &PageData, a: &AppData, many: bool) {
    let count = |st: DynoStatus| a.dynos.iter().filter(|d| d.state == st).count();
    let (over, restarting, stale) = (
        count(DynoStatus::Over),
        count(DynoStatus::Restarting),
        count(DynoStatus::Stale),
    );
    let with = |x: views::Attention| a.dynos.iter().filter(|d| d.attention.contains(&x)).count();
    let (flapping, failing) = (
        with(views::Attention::Flapping),
        with(views::Attention::RestartFailed),
    );
    let attention = a.dynos.iter().filter(|d| troubled(d)).count();
    let _ = write!(
        h,
        "<section class=\"app\" id=\"app-{0}\"><h2>{0} <small>via {1}</small></h2><p class=\"summary\">{2} dyno{3} watched · <b class=\"{12}\">{13} need{14} attention</b>: <b class=\"{4}\">{5} over</b> · <span class=\"{6}\">{7} restarting</span> · <span class=\"{8}\">{9} stale</span> · <span class=\"{15}\">{16} flapping</span> · <span class=\"{17}\">{18} restart failed</span> · <b>{10}</b> restart{11} in the last 24 h</p>",
        esc(&a.name),
        a.source,
        a.dynos.len(),
        if a.dynos.len() == 1 { "" } else { "s" },
        if over > 0 { "n-over" } else { "n-zero" },
        over,
        if restarting > 0 {
            "n-restarting"
        } else {
            "n-zero"
        },
        restarting,
        if stale > 0 { "n-stale" } else { "n-zero" },
        stale,
        a.restarts_24h,
        if a.restarts_24h == 1 { "" } else { "s" },
        if attention > 0 { "n-over" } else { "n-zero" },
        attention,
        if attention == 1 { "s" } else { "" },
        if flapping > 0 { "n-over" } else { "n-zero" },
        flapping,
        if failing > 0 { "n-over" } else { "n-zero" },
        failing,
    );
    if let Some((since, hint)) = &a.blind {
        let _ = write!(
            h,
            "<p class=\"banner blind\" role=\"alert\"><b>{} is blind</b> since {} UTC{}: {}</p>",
            esc(&a.name),
            since.strftime("%Y-%m-%d %H:%M"),
            ago_span(*since, p.now),
            esc(hint)
        );
    }
    if a.dynos.is_empty() {
        h.push_str("<p class=\"empty\">No dyno has reported yet.</p>");
    }
    let mut types: Vec<&str> = a.dynos.iter().map(|d| d.process_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    for ty in types {
        let mut dynos: Vec<&DynoView> = a.dynos.iter().filter(|d| d.process_type == ty).collect();
        dynos.sort_by(|x, y| views::by_urgency(x, y));
        let bad = dynos.iter().filter(|d| troubled(d)).count();
        // A type with an incident in the range never starts folded.
        let eventful = dynos.iter().any(|d| {
            d.incident.is_some()
                || p.incidents
                    .iter()
                    .any(|i| i.app == d.app && i.dyno == d.dyno)
        });
        let top = dynos.first().and_then(|d| d.percent_of_quota);
        let _ = write!(
            h,
            "<details class=\"ptype\" id=\"t-{}-{}\"{}><summary><b>{}</b> · {} dyno{}{}{}</summary>",
            esc(&a.name),
            esc(ty),
            if !many || bad > 0 || eventful {
                " open"
            } else {
                ""
            },
            esc(ty),
            dynos.len(),
            if dynos.len() == 1 { "" } else { "s" },
            if bad > 0 {
                format!(" · <b class=\"n-over\">{bad} need attention</b>")
            } else {
                String::new()
            },
            top.map_or(String::new(), |t| format!(" · highest {t:.0}% of quota")),
        );
        let shown = if dynos.len() > SHOW_FIRST {
            bad.max(SHOW_FIRST)
        } else {
            dynos.len()
        };
        h.push_str("<div class=\"grid\">");
        for d in &dynos[..shown] {
            dyno_card(h, p, a, d);
        }
        h.push_str("</div>");
        if shown < dynos.len() {
            let rest = &dynos[shown..];
            let _ = write!(
                h,
                "<details class=\"more\" id=\"m-{}-{}\"><summary>{} more {} dynos, all under {:.0}% of quota</summary><div class=\"grid\">",
                esc(&a.name),
                esc(ty),
                rest.len(),
                esc(ty),
                rest[0].percent_of_quota.unwrap_or(0.0).ceil()
            );
            for d in rest {
                dyno_card(h, p, a, d);
            }
            h.push_str("</div></details>");
        }
        h.push_str("</details>");
    }
    h.push_str("</section>");
}

/// The attention a card's state badge does not already say: flapping (with
/// its restart count), a failed restart, two instances unordered.
fn badges(d: &DynoView) -> String {
    let mut out = String::new();
    for a in &d.attention {
        let label = match a {
            views::Attention::Flapping => format!("flapping · {} restarts", d.recent_restarts),
            views::Attention::RestartFailed => "restart failed".to_owned(),
            views::Attention::UnclearInstance => "two instances".to_owned(),
            _ => continue,
        };
        let _ = write!(
            out,
            "<span class=\"state badge {}\">{}</span>",
            a.as_str(),
            esc(&label)
        );
    }
    out
}

fn dyno_card(h: &mut String, p: &PageData, a: &AppData, d: &DynoView) {
    let s = d.last_sample.as_ref();
    let total = s.and_then(|s| s.memory_total_mb);
    let quota = s.and_then(|s| s.memory_quota_mb);
    let pct = d.percent_of_quota;
    let _ = write!(
        h,
        "<article class=\"dyno {}{}\" id=\"d-{}-{}\" data-pct=\"{}\" data-attention=\"{}\"><div class=\"head\"><span class=\"name\">{}</span><span class=\"state {}\">{}</span>{}<span class=\"mem\"><b>{}</b>{}{}</span></div>",
        d.state.as_str(),
        if pct.is_some_and(|p| p >= 80.0) {
            " warm"
        } else {
            ""
        },
        esc(&d.app),
        esc(&d.dyno),
        pct.map_or(String::from("-1"), |p| format!("{p:.1}")),
        d.attention
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        esc(&d.dyno),
        d.state.as_str(),
        d.state.as_str(),
        badges(d),
        total.map_or("–".into(), mb),
        quota.map_or(String::new(), |q| format!(" / {}", mb(q))),
        pct.map_or(String::new(), |p| format!(
            " · <b class=\"pct\">{p:.0}%</b>"
        )),
    );
    if let (Some(t), Some(q)) = (total, quota.filter(|q| *q > 0.0)) {
        let _ = write!(
            h,
            "<div class=\"bar\" title=\"{} of {}{}\"><span style=\"width:{:.1}%\"></span>{}</div>",
            mb(t),
            mb(q),
            d.threshold_mb
                .map_or(String::new(), |l| format!("; restart at {}", mb(l))),
            (t / q * 100.0).clamp(0.0, 100.0),
            d.threshold_mb.map_or(String::new(), |l| format!(
                "<i style=\"left:{:.1}%\"></i>",
                (l / q * 100.0).clamp(0.0, 100.0)
            ))
        );
    }
    let empty = Vec::new();
    let label = format!("{} memory, last {}", d.dyno, p.query.range.as_str());
    let own = a.marks.get(&d.dyno).map_or(&[][..], Vec::as_slice);
    let marks: Vec<Mark> = own.iter().chain(&a.releases).cloned().collect();
    h.push_str(&chart::svg(&Chart {
        from: p.from,
        to: p.to,
        bucket: p.bucket,
        points: a.history.get(&d.dyno).unwrap_or(&empty),
        quota,
        threshold: d.threshold_mb,
        marks: &marks,
        label: &label,
        history_since: p.history_since,
    }));
    let mut foot = Vec::new();
    if let Some(s) = s {
        if let Some(r) = s.memory_rss_mb {
            foot.push(format!("rss {}", mb(r)));
        }
        if let Some(w) = s.memory_swap_mb {
            foot.push(format!("swap {}", mb(w)));
        }
        if let Ok(t) = s.at.parse::<Timestamp>() {
            foot.push(format!("sample {} UTC{}", hm(t), ago_span(t, p.now)));
        }
    }
    if let Some(i) = &d.instance {
        foot.push(format!("instance {}", esc(short(i))));
    }
    if let Some(r) = d
        .last_restart
        .as_ref()
        .and_then(|r| r.parse::<Timestamp>().ok())
    {
        // In alert-only mode the decision was made, nothing was restarted.
        let what = if p.alert_only {
            "would have restarted"
        } else {
            "restarted"
        };
        foot.push(format!("{what} {} UTC{}", hm(r), ago_span(r, p.now)));
    }
    if !d.seen_here {
        foot.push("via another replica".into());
    }
    let _ = write!(h, "<p class=\"foot\">{}</p></article>", foot.join(" · "));
}

/// One row per incident (dyno, opened, trigger, action, outcome, minutes
/// over quota), each unfolding to its events.
fn incidents_section(h: &mut String, p: &PageData) {
    h.push_str("<section id=\"incidents\"><h2>Incidents</h2>");
    if p.incidents.is_empty() {
        h.push_str("<p class=\"empty\">No incident in this range.</p></section>");
        return;
    }
    h.push_str("<div class=\"tablewrap\"><table class=\"incidents\"><thead><tr><th>opened (UTC)</th><th class=\"opt\">app</th><th>dyno</th><th>trigger</th><th>action</th><th>outcome</th><th class=\"num\">min over quota</th></tr></thead><tbody>");
    for i in p.incidents.iter().take(200) {
        let action = match i.action {
            "restarted" if i.restarts > 1 => format!("restarted ×{}", i.restarts),
            "would_restart" => "would restart (alert-only)".to_owned(),
            other => other.replace('_', " "),
        };
        let _ = write!(
            h,
            "<tr class=\"inc inc-{outcome}\" id=\"i-{id}\"><td>{}</td><td class=\"opt\">{}</td><td>{}</td><td>{}</td><td>{}</td><td><span class=\"kind k-{outcome}\">{outcome}</span></td><td class=\"num\">{:.1}</td></tr><tr class=\"inc-events\"><td colspan=\"7\"><details><summary>{} event{}</summary><ul>",
            i.opened_at.strftime("%Y-%m-%d %H:%M:%S"),
            esc(&i.app),
            esc(&i.dyno),
            esc(&i.trigger.replace('_', " ")),
            esc(&action),
            i.minutes_over_quota,
            i.events.len(),
            if i.events.len() == 1 { "" } else { "s" },
            outcome = esc(i.outcome),
            id = esc(&i.id),
        );
        for e in &i.events {
            let _ = write!(
                h,
                "<li>{} {}{}{}{}</li>",
                e.at.strftime("%H:%M:%S"),
                esc(&e.event.as_str().replace('_', " ")),
                e.reason
                    .map_or(String::new(), |r| format!(" ({})", esc(r.as_str()))),
                e.memory_total_mb
                    .map_or(String::new(), |m| format!(" at {}", mb(m))),
                e.detail
                    .as_deref()
                    .map_or(String::new(), |d| format!(" — {}", esc(d))),
            );
        }
        h.push_str("</ul></details></td></tr>");
    }
    h.push_str("</tbody></table></div></section>");
}

fn events_section(h: &mut String, p: &PageData) {
    let q = &p.query;
    h.push_str("<section id=\"events\"><h2>Recent events</h2><form class=\"filter\" method=\"get\" action=\"/#events\"><label>app <select name=\"app\"><option value=\"\">all</option>");
    for a in &p.apps {
        let _ = write!(
            h,
            "<option{}>{}</option>",
            if q.app.as_deref() == Some(a.name.as_str()) {
                " selected"
            } else {
                ""
            },
            esc(&a.name)
        );
    }
    let _ = write!(
        h,
        "</select></label> <label>dyno <input name=\"dyno\" size=\"8\" placeholder=\"web.1\" value=\"{}\"></label> <label>event <select name=\"kind\"><option value=\"\">all</option>",
        esc(q.dyno.as_deref().unwrap_or(""))
    );
    let chosen = q.kinds.join(",");
    for k in EventKind::ALL.iter().filter(|k| **k != EventKind::Sample) {
        let _ = write!(
            h,
            "<option value=\"{0}\"{1}>{0}</option>",
            k.as_str(),
            if chosen == k.as_str() {
                " selected"
            } else {
                ""
            }
        );
    }
    let _ = write!(
        h,
        "</select></label><input type=\"hidden\" name=\"range\" value=\"{}\"> <button>filter</button> <a href=\"{}\">restarts only</a> · <a href=\"{}\">R14 / R15</a></form>",
        q.range.as_str(),
        esc(&q.with("kind", Some("restart,restart_failed"))),
        esc(&q.with("kind", Some("r14,r15")))
    );
    if p.events.is_empty() {
        h.push_str("<p class=\"empty\">No events match.</p></section>");
        return;
    }
    h.push_str("<div class=\"tablewrap\"><table class=\"events\"><thead><tr><th>time (UTC)</th><th class=\"opt\">app</th><th>dyno</th><th>event</th><th>reason</th><th class=\"num\">memory</th><th class=\"num opt\">quota</th><th class=\"num\">%</th></tr></thead><tbody>");
    for e in &p.events {
        let at = format!(
            "{}{}",
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            ago_span(e.at, p.now)
        );
        let kind = e.event.as_str();
        let total = e.memory_total_mb;
        let quota = e.memory_quota_mb;
        let mut reason = esc(e.reason.map_or("", |r| r.as_str()));
        if let Some(d) = &e.detail {
            let cut: String = d.chars().take(120).collect();
            let _ = write!(
                reason,
                " <small title=\"{}\">{}{}</small>",
                esc(d),
                esc(&cut),
                if cut.len() < d.len() { "…" } else { "" }
            );
        }
        if let Some(r) = &e.request_id {
            let _ = write!(reason, " <small>request {}</small>", esc(r));
        }
        if let Some(c) = e.count {
            let _ = write!(reason, " <small>count {c}</small>");
        }
        let _ = write!(
            h,
            "<tr class=\"ev-{kind}\"><td>{at}</td><td class=\"opt\">{}</td><td>{}</td><td><span class=\"kind k-{kind}\">{}</span></td><td>{reason}</td><td class=\"num\">{}</td><td class=\"num opt\">{}</td><td class=\"num\">{}</td></tr>",
            esc(e.app.as_str()),
            esc(e.dyno.as_ref().map_or("", |d| d.as_str())),
            esc(&kind.replace('_', " ")),
            total.map_or(String::new(), mb),
            quota.map_or(String::new(), mb),
            match (total, quota) {
                (Some(t), Some(q)) if q > 0.0 => format!("{:.0}%", t / q * 100.0),
                _ => String::new(),
            },
            kind = esc(kind),
        );
    }
    h.push_str("</tbody></table></div></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_at_a_glance() {
        let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let before = |s: i64| now - jiff::SignedDuration::from_secs(s);
        for (secs, said) in [
            (0, "just now"),
            (-30, "just now"),
            (-120, "ahead of the clock"),
            (44, "just now"),
            (60, "1 min ago"),
            (3 * 60 + 10, "3 min ago"),
            (89 * 60, "89 min ago"),
            (90 * 60, "2 h ago"),
            (47 * 3600, "47 h ago"),
            (3 * 86_400, "3 days ago"),
        ] {
            assert_eq!(ago(before(secs), now), said, "{secs} s");
        }
    }
}
