//! `GET /`: the dashboard, rendered on the server and readable without
//! JavaScript. Per app a summary line and banners; per process type the
//! dynos by urgency, each with a bar and a chart from the stored history;
//! recent events as rows, filterable by `app`, `dyno` and `kind`; charts
//! over `range` (1h, 6h, 24h, 7d). A small inline script refreshes the page
//! in place (no scroll reset) every 15 s.
//!
//! Data is gathered first ([`gather`], async: engine and store), then
//! rendered by a pure function ([`render`]) — what the benchmark measures.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{Html, IntoResponse, Response};
use jiff::Timestamp;
use maud::{Markup, PreEscaped, html};

use super::chart::{self, Chart, Mark, MarkKind, mb};
use super::respond::{self, ApiError, Params, typed_events};
use super::views::{self, DynoStatus, DynoView, Range};
use crate::domain::event::{Event, EventKind};
use crate::service::{AppRuntime, Shared};
use crate::store::{EventFilter, HistoryPoint, InstanceStart, StoreError};

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
            app: p.app(s)?,
            dyno: p.dyno()?,
            kinds: respond::parse_kinds(p.get("kind"))?,
            range: respond::parse_range(p.get("range"), Range::H6)?,
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
    /// With several replicas: this one's role, in a sentence.
    pub replica: Option<String>,
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

/// ` <span class="ago">(3 min ago)</span>`, to follow a UTC time.
fn ago_span(t: Timestamp, now: Timestamp) -> Markup {
    html! { " " span class="ago" { "(" (ago(t, now)) ")" } }
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

/// The page's clock and what it reads (unix ms): the range back from now,
/// in buckets of about a 120th of it.
struct Window {
    now: Timestamp,
    log_clock: bool,
    /// The range's length.
    span: i64,
    range_from: i64,
    to: i64,
    bucket: i64,
}

impl Window {
    fn of(s: &Shared, range: Range, views: &[DynoView]) -> Self {
        let wall = Timestamp::now();
        // The demo's logs run on a simulated clock, behind the wall clock: its
        // page runs on the newest sample's time (never ahead of the wall), so
        // the header, the ranges and "3 min ago" agree with the charts.
        let newest = views.iter().filter_map(|v| v.sample_at).max();
        let (now, log_clock) = match newest {
            Some(n) if s.page_log_clock => (n.min(wall), true),
            _ => (wall, false),
        };
        let span = range.span().as_millis() as i64;
        Self {
            now,
            log_clock,
            span,
            range_from: (now - range.span()).as_millisecond(),
            to: now.as_millisecond() + 60_000,
            // About 120 buckets per chart, whole minutes.
            bucket: (span / 120).div_euclid(60_000).max(1) * 60_000,
        }
    }

    /// The x axis of every chart (from, to) and since when history is
    /// shown, if the range reaches further back. The axis spans the history
    /// shown: from its oldest point (a new install shows its first hour
    /// across the chart, not as a sliver) to its newest (logs arrive late; a
    /// replayed or simulated clock runs behind), within the range and never
    /// past now.
    fn axis(&self, apps: &[AppData]) -> (i64, i64, Option<i64>) {
        let points = || {
            apps.iter()
                .flat_map(|a| a.history.values())
                .flatten()
                .map(|p| p.t)
        };
        let to = points()
            .max()
            .map_or(self.to, |newest| (newest + 2 * self.bucket).min(self.to));
        let from = points()
            .min()
            .map_or(self.range_from, |o| {
                o.max(self.range_from).max(to - self.span)
            })
            .min(to - 15 * 60_000);
        // History younger than the range: the charts say so (a bucket's start
        // may lie up to a bucket before the range's).
        let history_since = points()
            .min()
            .filter(|oldest| *oldest > self.range_from + self.bucket);
        (from, to, history_since)
    }
}

/// A read's result, or its default with the error noted: the page shows
/// what it could read (and the live figures) under a banner.
fn or_note<T: Default>(r: Result<T, StoreError>, error: &mut Option<String>) -> T {
    r.unwrap_or_else(|e| {
        *error = Some(e.to_string());
        T::default()
    })
}

/// Reads what the page shows: views from the engines and the store,
/// history in buckets, markers, recent events.
pub async fn gather(s: &Shared, q: PageQuery) -> PageData {
    let views = views::all_views(s, q.app.as_deref()).await;
    let w = Window::of(s, q.range, &views);
    let mut read_error = None;
    let mut apps = Vec::new();
    for a in s
        .apps
        .iter()
        .filter(|a| q.app.as_deref().is_none_or(|n| a.config.name.as_str() == n))
    {
        apps.push(app_data(s, a, &views, &w, &mut read_error).await);
    }
    let in_range = EventFilter {
        app: q.app.clone(),
        dyno: q.dyno.clone(),
        kinds: Vec::new(),
        since: Some(w.range_from),
        limit: 20_000,
    };
    let incidents = views::incidents(typed_events(or_note(
        s.store.events(&in_range).await,
        &mut read_error,
    )));
    let recent = EventFilter {
        kinds: q.kinds.clone(),
        since: None,
        limit: 100,
        ..in_range
    };
    let events = typed_events(or_note(s.store.events(&recent).await, &mut read_error));
    let (from, to, history_since) = w.axis(&apps);
    PageData {
        query: q,
        now: w.now,
        log_clock: w.log_clock,
        from,
        to,
        bucket: w.bucket,
        history_since,
        apps,
        events,
        incidents,
        alert_only: s.alert_only(),
        replica: replica_note(s),
        store_failing: s.store.health().failing(),
        read_error,
    }
}

/// One app's part: its dynos, their history, markers and restarts.
async fn app_data(
    s: &Shared,
    a: &AppRuntime,
    views: &[DynoView],
    w: &Window,
    read_error: &mut Option<String>,
) -> AppData {
    let name = a.config.name.to_string();
    let blind = a.lock().blind_since().map(|since| {
        (
            since,
            crate::decide::blind::hint(&a.config.name, a.config.policy.blind_after),
        )
    });
    let mut history: HashMap<String, Vec<HistoryPoint>> = HashMap::new();
    let points = s
        .store
        .history(&name, None, w.range_from, w.to, w.bucket)
        .await;
    for p in or_note(points, read_error) {
        history.entry(p.dyno.clone()).or_default().push(p);
    }
    let marked = EventFilter {
        app: Some(name.clone()),
        kinds: MARK_KINDS.map(|k| k.as_str().to_owned()).to_vec(),
        since: Some(w.range_from),
        limit: 5000,
        ..EventFilter::default()
    };
    let rows = or_note(s.store.events(&marked).await, read_error);
    let (mut marks, releases) = marks_of(typed_events(rows));
    // Whatever the chart range, the summary counts the last day.
    let day = EventFilter {
        app: Some(name.clone()),
        kinds: vec![EventKind::Restart.as_str().into()],
        since: Some((w.now - jiff::SignedDuration::from_hours(24)).as_millisecond()),
        limit: 10_000,
        ..EventFilter::default()
    };
    let restarts_24h = or_note(s.store.events(&day).await.map(|r| r.len()), read_error);
    let starts = s.store.instance_starts(&name, w.range_from).await;
    instance_marks(&or_note(starts, read_error), &mut marks);
    AppData {
        source: a.config.source.as_str(),
        blind,
        dynos: views.iter().filter(|v| v.app == name).cloned().collect(),
        history,
        marks,
        releases,
        restarts_24h,
        name,
    }
}

/// Each dyno's markers, and the app's releases: one marker per version
/// (the log's line and the Platform API's list may both have told of it).
fn marks_of(events: Vec<Event>) -> (HashMap<String, Vec<Mark>>, Vec<Mark>) {
    let mut marks: HashMap<String, Vec<Mark>> = HashMap::new();
    let mut releases = Vec::new();
    let mut versions = HashSet::new();
    for v in events {
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
    (marks, releases)
}

/// A marker where a dyno's instance changed (the first instance of each
/// dyno in the range is no change).
fn instance_marks(starts: &[InstanceStart], marks: &mut HashMap<String, Vec<Mark>>) {
    let mut prev: Option<&str> = None;
    for st in starts {
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

fn short(instance: &str) -> &str {
    instance.get(..8).unwrap_or(instance)
}

pub async fn dashboard(State(s): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    match PageQuery::parse(&s, raw.as_deref()) {
        Ok(q) => Html(render(&gather(&s, q).await)).into_response(),
        Err(e) => {
            let page = document(
                None,
                html! {
                    h1 { "dynoguard" }
                    p { (e) }
                    p { a href="/" { "the whole dashboard" } }
                },
            );
            (e.status(), Html(page.into_string())).into_response()
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

/// `s` unless there is one.
fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A count's class: `class` when there are any, else muted.
fn nonzero(n: usize, class: &'static str) -> &'static str {
    if n > 0 { class } else { "n-zero" }
}

/// An HTML document: the page's head (with `style`, if any), then `body`.
fn document(style: Option<&str>, body: Markup) -> Markup {
    html! {
        (PreEscaped("<!doctype html>"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { "dynoguard" }
                @if let Some(css) = style {
                    style { (PreEscaped(css)) }
                }
            }
            body { (body) }
        }
    }
}

/// The page (pure).
pub fn render(p: &PageData) -> String {
    let many = p.apps.iter().map(|a| a.dynos.len()).sum::<usize>() > FOLD_OVER;
    document(
        Some(STYLE),
        html! {
            (page_header(p))
            main {
                (banners(p))
                (legend())
                @for a in &p.apps {
                    (app_section(p, a, many))
                }
                (incidents_section(p))
                (events_section(p))
            }
            script { (PreEscaped(SCRIPT)) }
        },
    )
    .into_string()
}

/// The title, the chart ranges and the page's clock.
fn page_header(p: &PageData) -> Markup {
    let q = &p.query;
    html! {
        header {
            h1 { "dynoguard" }
            nav class="ranges" aria-label="chart range" {
                @for r in Range::ALL {
                    @let on = r == q.range;
                    a href=(q.with("range", Some(r.as_str())))
                        class=[on.then_some("on")]
                        aria-current=[on.then_some("true")] { (r.as_str()) }
                }
            }
            span class="updated" {
                (if p.log_clock { "simulated log time" } else { "updated" })
                " " (hm(p.now)) " UTC "
                noscript { "(reload for new data)" }
            }
        }
    }
}

/// With several replicas on PostgreSQL: who decides (nothing for a single
/// process).
fn replica_note(s: &Shared) -> Option<String> {
    use crate::store::replicas::Role;
    let l = &s.replicas.leadership;
    Some(match l.role() {
        Role::Alone => return None,
        Role::Leader { epoch } => format!(
            "This replica ({}) leads (epoch {epoch}): it decides and restarts; other replicas forward what they receive to it.",
            l.replica
        ),
        Role::Follower { leader, epoch } => format!(
            "This replica ({}) follows {leader} (epoch {epoch}), which decides and restarts: this page shows the dynos from the shared store.",
            l.replica
        ),
        Role::Cut => format!(
            "This replica ({}) cannot reach the store: it decides from the logs it receives itself until the store is back.",
            l.replica
        ),
    })
}

/// Alert-only mode; the replica's role; the store failing, or a read of it.
fn banners(p: &PageData) -> Markup {
    html! {
        @if let Some(note) = &p.replica {
            p class="banner replica" role="status" { (note) }
        }
        @if p.alert_only {
            p class="banner alert-only" role="status" {
                b { "Alert-only mode" } " (" code { "DYNOGUARD_DRY_RUN" } "): every decision is made and reported — nothing is restarted."
            }
        }
        @if let Some(why) = &p.store_failing {
            p class="banner store" role="alert" {
                b { "Store unavailable" } ": " (why) " — restarts go on with claims held in memory; events and history are kept and retried."
            }
        } @else if let Some(why) = &p.read_error {
            p class="banner store" role="alert" {
                b { "History unavailable" } ": " (why) " — the figures below are live."
            }
        }
    }
}

/// What the lines and markers of the charts mean.
fn legend() -> Markup {
    html! {
        p class="legend" {
            span { i class="k-avg" {} "average" }
            span { i class="k-band" {} "min–max" }
            span { i class="k-quota" {} "quota" }
            span { i class="k-threshold" {} "restart threshold" }
            span { b class="c-restart" { "▼" } " restart" }
            span { b class="c-failed" { "▼" } " failed restart" }
            span { b class="c-r14" { "●" } " R14" }
            span { b class="c-r15" { "✕" } " R15" }
            span { b class="c-recovered" { "●" } " recovered" }
            span { b class="c-instance" { "┆" } " new instance" }
            span { i class="k-swap" {} "swap" }
            span { b class="c-release" { "⚑" } " release" }
        }
    }
}

/// One app: its summary line, its banners, its dynos by process type.
fn app_section(p: &PageData, a: &AppData, many: bool) -> Markup {
    let mut types: Vec<&str> = a.dynos.iter().map(|d| d.process_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    html! {
        section class="app" id={ "app-" (a.name) } {
            h2 { (a.name) " " small { "via " (a.source) } }
            (summary(a))
            @if let Some((since, hint)) = &a.blind {
                p class="banner blind" role="alert" {
                    b { (a.name) " is blind" } " since " (since.strftime("%Y-%m-%d %H:%M")) " UTC"
                    (ago_span(*since, p.now)) ": " (hint)
                }
            }
            @if a.dynos.is_empty() {
                p class="empty" { "No dyno has reported yet." }
            }
            @for ty in types {
                (process_type(p, a, ty, many))
            }
        }
    }
}

/// The app's counts: dynos, those needing attention and why, restarts.
fn summary(a: &AppData) -> Markup {
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
    html! {
        p class="summary" {
            (a.dynos.len()) " dyno" (plural(a.dynos.len())) " watched · "
            b class=(nonzero(attention, "n-over")) {
                (attention) " need" (if attention == 1 { "s" } else { "" }) " attention"
            }
            ": "
            b class=(nonzero(over, "n-over")) { (over) " over" } " · "
            span class=(nonzero(restarting, "n-restarting")) { (restarting) " restarting" } " · "
            span class=(nonzero(stale, "n-stale")) { (stale) " stale" } " · "
            span class=(nonzero(flapping, "n-over")) { (flapping) " flapping" } " · "
            span class=(nonzero(failing, "n-over")) { (failing) " restart failed" } " · "
            b { (a.restarts_24h) } " restart" (plural(a.restarts_24h)) " in the last 24 h"
        }
    }
}

/// One process type of an app: its dynos by urgency, the untroubled rest
/// of a large type folded.
fn process_type(p: &PageData, a: &AppData, ty: &str, many: bool) -> Markup {
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
    let shown = if dynos.len() > SHOW_FIRST {
        bad.max(SHOW_FIRST)
    } else {
        dynos.len()
    };
    let (first, rest) = dynos.split_at(shown.min(dynos.len()));
    html! {
        details class="ptype" id={ "t-" (a.name) "-" (ty) } open[!many || bad > 0 || eventful] {
            summary {
                b { (ty) } " · " (dynos.len()) " dyno" (plural(dynos.len()))
                @if bad > 0 {
                    " · " b class="n-over" { (bad) " need attention" }
                }
                @if let Some(t) = top {
                    (format!(" · highest {t:.0}% of quota"))
                }
            }
            div class="grid" {
                @for d in first { (dyno_card(p, a, d)) }
            }
            @if let Some(least) = rest.first() {
                details class="more" id={ "m-" (a.name) "-" (ty) } {
                    summary {
                        (rest.len()) " more " (ty) " dynos, all under "
                        (format!("{:.0}", least.percent_of_quota.unwrap_or(0.0).ceil())) "% of quota"
                    }
                    div class="grid" {
                        @for d in rest { (dyno_card(p, a, d)) }
                    }
                }
            }
        }
    }
}

/// The attention a card's state badge does not already say: flapping (with
/// its restart count), a failed restart, two instances unordered.
fn badges(d: &DynoView) -> Markup {
    html! {
        @for a in &d.attention {
            @let label = match a {
                views::Attention::Flapping => Some(format!("flapping · {} restarts", d.recent_restarts)),
                views::Attention::RestartFailed => Some("restart failed".to_owned()),
                views::Attention::UnclearInstance => Some("two instances".to_owned()),
                _ => None,
            };
            @if let Some(label) = label {
                span class={ "state badge " (a.as_str()) } { (label) }
            }
        }
    }
}

/// One dyno: its figures, a bar against its quota, its chart, a footer.
fn dyno_card(p: &PageData, a: &AppData, d: &DynoView) -> Markup {
    let s = d.last_sample.as_ref();
    let total = s.and_then(|s| s.memory.total);
    let quota = s.and_then(|s| s.memory.quota);
    let pct = d.percent_of_quota;
    let warm = if pct.is_some_and(|p| p >= 80.0) {
        " warm"
    } else {
        ""
    };
    let attention: Vec<&str> = d.attention.iter().map(|a| a.as_str()).collect();
    html! {
        article class={ "dyno " (d.state.as_str()) (warm) }
            id={ "d-" (d.app) "-" (d.dyno) }
            data-pct=(pct.map_or(String::from("-1"), |p| format!("{p:.1}")))
            data-attention=(attention.join(" ")) {
            div class="head" {
                span class="name" { (d.dyno) }
                span class={ "state " (d.state.as_str()) } { (d.state.as_str()) }
                (badges(d))
                span class="mem" {
                    b { (total.map_or("–".into(), mb)) }
                    @if let Some(q) = quota { " / " (mb(q)) }
                    @if let Some(p) = pct { " · " b class="pct" { (format!("{p:.0}%")) } }
                }
            }
            @if let (Some(t), Some(q)) = (total, quota.filter(|q| *q > 0.0)) {
                (bar(t, q, d.threshold_mb))
            }
            (PreEscaped(card_chart(p, a, d, quota)))
            p class="foot" { (card_foot(p, d)) }
        }
    }
}

/// Memory against the quota, the restart threshold as a tick.
fn bar(total: f64, quota: f64, threshold: Option<f64>) -> Markup {
    let share = |v: f64| format!("{:.1}%", (v / quota * 100.0).clamp(0.0, 100.0));
    let restart_at = threshold.map_or(String::new(), |l| format!("; restart at {}", mb(l)));
    html! {
        div class="bar" title={ (mb(total)) " of " (mb(quota)) (restart_at) } {
            span style={ "width:" (share(total)) } {}
            @if let Some(l) = threshold {
                i style={ "left:" (share(l)) } {}
            }
        }
    }
}

/// The dyno's chart over the page's axis, with its own and the app's markers.
fn card_chart(p: &PageData, a: &AppData, d: &DynoView, quota: Option<f64>) -> String {
    let label = format!("{} memory, last {}", d.dyno, p.query.range.as_str());
    let own = a.marks.get(&d.dyno).map_or(&[][..], Vec::as_slice);
    let marks: Vec<Mark> = own.iter().chain(&a.releases).cloned().collect();
    chart::svg(&Chart {
        from: p.from,
        to: p.to,
        bucket: p.bucket,
        points: a.history.get(&d.dyno).map_or(&[][..], Vec::as_slice),
        quota,
        threshold: d.threshold_mb,
        marks: &marks,
        label: &label,
        history_since: p.history_since,
    })
}

/// rss, swap, the sample's time, the instance, the last restart, and
/// whether another replica receives the dyno — joined by ` · `.
fn card_foot(p: &PageData, d: &DynoView) -> Markup {
    let mut foot: Vec<Markup> = Vec::new();
    if let Some(s) = &d.last_sample {
        if let Some(r) = s.memory.rss {
            foot.push(html! { "rss " (mb(r)) });
        }
        if let Some(w) = s.memory.swap {
            foot.push(html! { "swap " (mb(w)) });
        }
        if let Ok(t) = s.at.parse::<Timestamp>() {
            foot.push(html! { "sample " (hm(t)) " UTC" (ago_span(t, p.now)) });
        }
    }
    if let Some(i) = &d.instance {
        foot.push(html! { "instance " (short(i)) });
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
        foot.push(html! { (what) " " (hm(r)) " UTC" (ago_span(r, p.now)) });
    }
    if !d.seen_here {
        foot.push(html! { "via another replica" });
    }
    html! {
        @for (i, part) in foot.iter().enumerate() {
            @if i > 0 { " · " }
            (part)
        }
    }
}

/// The incidents table's columns: class and label.
const INCIDENT_COLUMNS: &[(&str, &str)] = &[
    ("", "opened (UTC)"),
    ("opt", "app"),
    ("", "dyno"),
    ("", "trigger"),
    ("", "action"),
    ("", "outcome"),
    ("num", "min over quota"),
];

/// One row per incident (dyno, opened, trigger, action, outcome, minutes
/// over quota), each unfolding to its events.
fn incidents_section(p: &PageData) -> Markup {
    let rows: Vec<Markup> = p.incidents.iter().take(200).map(incident_rows).collect();
    html! {
        section id="incidents" {
            h2 { "Incidents" }
            (table("incidents", INCIDENT_COLUMNS, &rows, "No incident in this range."))
        }
    }
}

/// An incident's row, and the row its events unfold in.
fn incident_rows(i: &views::IncidentView) -> Markup {
    let action = match i.action {
        "restarted" if i.restarts > 1 => format!("restarted ×{}", i.restarts),
        "would_restart" => "would restart (alert-only)".to_owned(),
        other => other.replace('_', " "),
    };
    html! {
        tr class={ "inc inc-" (i.outcome) } id={ "i-" (i.id) } {
            td { (i.opened_at.strftime("%Y-%m-%d %H:%M:%S")) }
            td class="opt" { (i.app) }
            td { (i.dyno) }
            td { (i.trigger.replace('_', " ")) }
            td { (action) }
            td { span class={ "kind k-" (i.outcome) } { (i.outcome) } }
            td class="num" { (format!("{:.1}", i.minutes_over_quota)) }
        }
        tr class="inc-events" {
            td colspan="7" {
                details {
                    summary { (i.events.len()) " event" (plural(i.events.len())) }
                    ul {
                        @for e in &i.events {
                            li {
                                (e.at.strftime("%H:%M:%S")) " " (e.event.as_str().replace('_', " "))
                                @if let Some(r) = e.reason { " (" (r.as_str()) ")" }
                                @if let Some(m) = e.memory_total_mb { " at " (mb(m)) }
                                @if let Some(d) = &e.detail { " — " (d) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The events table's columns: class and label.
const EVENT_COLUMNS: &[(&str, &str)] = &[
    ("", "time (UTC)"),
    ("opt", "app"),
    ("", "dyno"),
    ("", "event"),
    ("", "reason"),
    ("num", "memory"),
    ("num opt", "quota"),
    ("num", "%"),
];

/// The events filter, then the recent events as rows.
fn events_section(p: &PageData) -> Markup {
    let rows: Vec<Markup> = p.events.iter().map(|e| event_row(p, e)).collect();
    html! {
        section id="events" {
            h2 { "Recent events" }
            (events_filter(p))
            (table("events", EVENT_COLUMNS, &rows, "No events match."))
        }
    }
}

/// A table of the page — its columns (class, label), its rows — or, with
/// no rows, a line saying so.
fn table(class: &str, columns: &[(&str, &str)], rows: &[Markup], empty: &str) -> Markup {
    html! {
        @if rows.is_empty() {
            p class="empty" { (empty) }
        } @else {
            div class="tablewrap" {
                table class=(class) {
                    thead {
                        tr {
                            @for (c, label) in columns {
                                th class=[(!c.is_empty()).then_some(c)] { (label) }
                            }
                        }
                    }
                    tbody { @for r in rows { (r) } }
                }
            }
        }
    }
}

/// The filter form: app, dyno, event kind, and two shortcuts.
fn events_filter(p: &PageData) -> Markup {
    let q = &p.query;
    let chosen = q.kinds.join(",");
    html! {
        form class="filter" method="get" action="/#events" {
            label {
                "app "
                select name="app" {
                    option value="" { "all" }
                    @for a in &p.apps {
                        option selected[q.app.as_deref() == Some(a.name.as_str())] { (a.name) }
                    }
                }
            }
            " "
            label {
                "dyno "
                input name="dyno" size="8" placeholder="web.1" value=(q.dyno.as_deref().unwrap_or(""));
            }
            " "
            label {
                "event "
                select name="kind" {
                    option value="" { "all" }
                    @for k in EventKind::ALL.iter().filter(|k| **k != EventKind::Sample) {
                        option value=(k.as_str()) selected[chosen == k.as_str()] { (k.as_str()) }
                    }
                }
            }
            input type="hidden" name="range" value=(q.range.as_str());
            " " button { "filter" } " "
            a href=(q.with("kind", Some("restart,restart_failed"))) { "restarts only" }
            " · "
            a href=(q.with("kind", Some("r14,r15"))) { "R14 / R15" }
        }
    }
}

/// One event: when, where, what, why, and the memory it saw.
fn event_row(p: &PageData, e: &Event) -> Markup {
    let kind = e.event.as_str();
    let (total, quota) = (e.memory_total_mb, e.memory_quota_mb);
    html! {
        tr class={ "ev-" (kind) } {
            td { (e.at.strftime("%Y-%m-%d %H:%M:%S")) (ago_span(e.at, p.now)) }
            td class="opt" { (e.app.as_str()) }
            td { (e.dyno.as_ref().map_or("", |d| d.as_str())) }
            td { span class={ "kind k-" (kind) } { (kind.replace('_', " ")) } }
            td { (reason(e)) }
            td class="num" { (total.map_or(String::new(), mb)) }
            td class="num opt" { (quota.map_or(String::new(), mb)) }
            td class="num" {
                @if let (Some(t), Some(q)) = (total, quota.filter(|q| *q > 0.0)) {
                    (format!("{:.0}%", t / q * 100.0))
                }
            }
        }
    }
}

/// An event's reason, its detail (cut, whole on hover), request id, count.
fn reason(e: &Event) -> Markup {
    html! {
        (e.reason.map_or("", |r| r.as_str()))
        @if let Some(d) = &e.detail {
            @let cut: String = d.chars().take(120).collect();
            " " small title=(d) { (cut) @if cut.len() < d.len() { "…" } }
        }
        @if let Some(r) = &e.request_id {
            " " small { "request " (r) }
        }
        @if let Some(c) = e.count {
            " " small { "count " (c) }
        }
    }
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
