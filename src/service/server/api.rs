//! Health and the JSON API (SPEC §9; described by `openapi.json`).
//! Errors are JSON: `{"error": "...", "parameter": "..."}` — 400 for a bad
//! parameter (named), 404 for an unknown app, 503 while the store fails.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;

use super::views::{self, Range};
use crate::domain::DynoName;
use crate::domain::event::EventKind;
use crate::service::Shared;
use crate::store::{EventFilter, from_millis};

pub async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let role = role_line(&s);
    if let Some(why) = s.store.health().failing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {why}\n{role}"),
        )
            .into_response();
    }
    match s.store.ping().await {
        Ok(()) if s.alert_only() => (
            StatusCode::OK,
            format!("ok (alert-only mode: DYNOGUARD_DRY_RUN is set — decisions are reported, nothing is restarted)\n{role}"),
        )
            .into_response(),
        Ok(()) => (StatusCode::OK, format!("ok\n{role}")).into_response(),
        Err(e) => {
            tracing::warn!("health check: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unavailable\n{role}"),
            )
                .into_response()
        }
    }
}

/// With replicas: this one's role, the leader and the epoch (nothing for a
/// single process).
fn role_line(s: &Shared) -> String {
    use crate::store::replicas::Role;
    let l = &s.replicas.leadership;
    match l.role() {
        Role::Alone => String::new(),
        Role::Leader { epoch } => format!("role: leader {} (epoch {epoch})\n", l.replica),
        Role::Follower { leader, epoch } => {
            format!(
                "role: follower {} (leader {leader}, epoch {epoch})\n",
                l.replica
            )
        }
        Role::Cut => format!(
            "role: store_unavailable {} (deciding from its own observations)\n",
            l.replica
        ),
    }
}

/// An API error, answered as JSON.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{parameter}: {message}")]
    BadParameter { parameter: String, message: String },
    #[error("unknown app {app:?}; watched: {watched}")]
    UnknownApp { app: String, watched: String },
    #[error("{app} has no dyno {dyno:?}: it never reported")]
    UnknownDyno { app: String, dyno: String },
    #[error("store unavailable: {0}")]
    Store(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            parameter: Option<String>,
        }
        let (status, parameter) = match &self {
            Self::BadParameter { parameter, .. } => {
                (StatusCode::BAD_REQUEST, Some(parameter.clone()))
            }
            Self::UnknownApp { .. } => (StatusCode::NOT_FOUND, Some("app".to_owned())),
            Self::UnknownDyno { .. } => (StatusCode::NOT_FOUND, Some("dyno".to_owned())),
            Self::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        let body = Body {
            error: self.to_string(),
            parameter,
        };
        (status, Json(body)).into_response()
    }
}

fn bad(parameter: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::BadParameter {
        parameter: parameter.to_owned(),
        message: message.into(),
    }
}

/// The query's parameters, each allowed name at most once; an unknown name
/// is an error (a typo such as `kinds=` would otherwise silently match all).
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>, allowed: &[&'static str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(ApiError::BadParameter {
                parameter: k.clone(),
                message: format!(
                    "unknown parameter; this endpoint takes {}",
                    allowed.join(", ")
                ),
            });
        }
        Ok(Self(pairs))
    }

    /// The last non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// A configured app by name, or 404.
pub fn known_app(s: &Shared, app: &str) -> Result<String, ApiError> {
    match s.app(app) {
        Some(a) => Ok(a.config.name.to_string()),
        None => Err(ApiError::UnknownApp {
            app: app.to_owned(),
            watched: s
                .apps
                .iter()
                .map(|a| a.config.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

pub fn parse_dyno(s: &str) -> Result<DynoName, ApiError> {
    DynoName::parse(s).ok_or_else(|| {
        bad(
            "dyno",
            format!("{s:?} is not a dyno name (web.1, worker.2)"),
        )
    })
}

pub fn parse_range(s: Option<&str>, default: Range) -> Result<Range, ApiError> {
    match s {
        None => Ok(default),
        Some(r) => Range::parse(r).ok_or_else(|| {
            bad(
                "range",
                format!("{r:?} is not a range; use one of 1h, 6h, 24h, 7d"),
            )
        }),
    }
}

/// `kind=restart,r14` → the kinds, each checked.
pub fn parse_kinds(s: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some(s) = s else { return Ok(Vec::new()) };
    s.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| match EventKind::parse(k) {
            Some(kind) => Ok(kind.as_str().to_owned()),
            None => Err(bad(
                "kind",
                format!(
                    "{k:?} is not an event kind; use {}",
                    EventKind::ALL.map(EventKind::as_str).join(", ")
                ),
            )),
        })
        .collect()
}

/// `since`: an RFC 3339 time (`2026-11-21T10:00:00Z`), unix seconds, or a
/// duration back from now (`30m`, `2h`, `7d`).
pub fn parse_since(s: Option<&str>, now: Timestamp) -> Result<Option<i64>, ApiError> {
    let Some(s) = s else { return Ok(None) };
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(Some(t.as_millisecond()));
    }
    if let Ok(secs) = s.parse::<i64>()
        && let Some(ms) = secs.checked_mul(1000)
    {
        return Ok(Some(ms));
    }
    let ago = s
        .strip_suffix('d')
        .and_then(|d| d.parse::<i64>().ok())
        .and_then(|d| d.checked_mul(24))
        .map(jiff::SignedDuration::from_hours)
        .or_else(|| crate::config::parse_duration(s));
    match ago.filter(|d| !d.is_negative()) {
        Some(d) => Ok(Some(
            now.as_millisecond().saturating_sub(d.as_millis() as i64),
        )),
        None => Err(bad(
            "since",
            format!(
                "{s:?} is not a time; use RFC 3339 (2026-11-21T10:00:00Z), unix seconds, or a duration back from now (30m, 2h, 7d)"
            ),
        )),
    }
}

fn parse_limit(s: Option<&str>) -> Result<i64, ApiError> {
    match s {
        None => Ok(100),
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad("limit", format!("{l:?} is not a number from 1 to 1000"))),
    }
}

/// Runs a handler body that may fail with an [`ApiError`].
fn answer<T: Serialize>(r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn dynos(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let r = async {
        let p = Params::parse(q.as_deref(), &["app"])?;
        let app = p.get("app").map(|a| known_app(&s, a)).transpose()?;
        Ok(views::all_views(&s, app.as_deref()).await)
    }
    .await;
    answer(r)
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
                dynos: e.dyno_count(),
                blind: since.is_some(),
                blind_since: since.map(|t| t.to_string()),
                hint: since.map(|_| {
                    crate::decide::blind::hint(&a.config.name, a.config.policy.blind_after)
                }),
            }
        })
        .collect()
}

pub async fn apps(State(s): State<Arc<Shared>>) -> Response {
    Json(app_views(&s)).into_response()
}

/// Events as stored, typed (a row that is not an event is skipped).
pub fn typed_events(rows: Vec<crate::store::EventRow>) -> Vec<crate::domain::event::Event> {
    rows.iter()
        .filter_map(crate::store::EventRow::event)
        .collect()
}

pub async fn events(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let r = async {
        let p = Params::parse(q.as_deref(), &["app", "dyno", "kind", "since", "limit"])?;
        let filter = EventFilter {
            app: p.get("app").map(|a| known_app(&s, a)).transpose()?,
            dyno: p
                .get("dyno")
                .map(parse_dyno)
                .transpose()?
                .map(|d| d.to_string()),
            kinds: parse_kinds(p.get("kind"))?,
            since: parse_since(p.get("since"), Timestamp::now())?,
            limit: parse_limit(p.get("limit"))?,
        };
        let rows = s.store.events(&filter).await.map_err(|e| {
            tracing::warn!("/api/events: {e}");
            ApiError::Store(e.to_string())
        })?;
        Ok(typed_events(rows))
    }
    .await;
    answer(r)
}

/// The incidents of the last day (or since `since`): each a dyno
/// instance's episode with its events, newest first.
pub async fn incidents(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let r = async {
        let p = Params::parse(q.as_deref(), &["app", "dyno", "since"])?;
        let now = Timestamp::now();
        let since = parse_since(p.get("since"), now)?
            .unwrap_or((now - jiff::SignedDuration::from_hours(24)).as_millisecond());
        let filter = EventFilter {
            app: p.get("app").map(|a| known_app(&s, a)).transpose()?,
            dyno: p
                .get("dyno")
                .map(parse_dyno)
                .transpose()?
                .map(|d| d.to_string()),
            kinds: Vec::new(),
            since: Some(since),
            limit: 20_000,
        };
        let rows = s.store.events(&filter).await.map_err(|e| {
            tracing::warn!("/api/incidents: {e}");
            ApiError::Store(e.to_string())
        })?;
        Ok(views::incidents(typed_events(rows)))
    }
    .await;
    answer(r)
}

/// One point of `/api/dynos/{app}/{dyno}/history`.
#[derive(Debug, Serialize)]
pub struct HistoryPointView {
    pub at: String,
    pub samples: i64,
    pub memory_total_min_mb: f64,
    pub memory_total_avg_mb: f64,
    pub memory_total_max_mb: f64,
    pub memory_rss_mb: Option<f64>,
    pub memory_swap_mb: Option<f64>,
    pub memory_quota_mb: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub app: String,
    pub dyno: String,
    pub range: &'static str,
    pub from: String,
    pub to: String,
    pub step_seconds: u32,
    pub points: Vec<HistoryPointView>,
    pub events: Vec<crate::domain::event::Event>,
}

pub async fn history(
    State(s): State<Arc<Shared>>,
    Path((app, dyno)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let r = async {
        let app = known_app(&s, &app)?;
        let dyno = parse_dyno(&dyno)?;
        let p = Params::parse(q.as_deref(), &["range"])?;
        let range = parse_range(p.get("range"), Range::H1)?;
        let now = Timestamp::now();
        let (from, to) = (now - range.span(), now + jiff::SignedDuration::from_mins(1));
        let store_err = |e: crate::store::StoreError| ApiError::Store(e.to_string());
        let points = s
            .store
            .history(
                &app,
                Some(dyno.as_str()),
                from.as_millisecond(),
                to.as_millisecond(),
                60_000,
            )
            .await
            .map_err(store_err)?;
        let events = s
            .store
            .events(&EventFilter {
                app: Some(app.clone()),
                dyno: Some(dyno.to_string()),
                kinds: Vec::new(),
                since: Some(from.as_millisecond()),
                limit: 1000,
            })
            .await
            .map_err(store_err)?;
        // Nothing in the range: a typo'd or scaled-down-long-ago dyno looks
        // the same as a quiet one unless the engine or the store ever heard
        // of it.
        if points.is_empty() && events.is_empty() {
            let live = s
                .app(&app)
                .is_some_and(|a| a.lock().current_instance(&dyno).is_some());
            if !live
                && !s
                    .store
                    .dyno_reported(&app, dyno.as_str())
                    .await
                    .map_err(store_err)?
            {
                return Err(ApiError::UnknownDyno {
                    app,
                    dyno: dyno.to_string(),
                });
            }
        }
        Ok(HistoryView {
            app,
            dyno: dyno.to_string(),
            range: range.as_str(),
            from: from.to_string(),
            to: now.to_string(),
            step_seconds: 60,
            points: points
                .into_iter()
                .map(|p| HistoryPointView {
                    at: from_millis(p.t).to_string(),
                    samples: p.samples,
                    memory_total_min_mb: p.min,
                    memory_total_avg_mb: (p.avg * 100.0).round() / 100.0,
                    memory_total_max_mb: p.max,
                    memory_rss_mb: p.rss,
                    memory_swap_mb: p.swap,
                    memory_quota_mb: p.quota,
                })
                .collect(),
            events: typed_events(events),
        })
    }
    .await;
    answer(r)
}

/// The OpenAPI 3.1 document of `/api` (hand-written; `tests/api/openapi.rs`
/// checks it against the routes and real answers).
pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
