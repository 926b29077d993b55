//! Health and the JSON API (SPEC §9; described by `openapi.json`).
//! Errors are JSON (`respond::ApiError`): `{"error": "...", "parameter": "..."}`
//! — 400 for a bad parameter (named), 404 for an unknown app, 503 while the
//! store fails.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;

use super::respond::{self, ApiError, Params, typed_events};
use super::views::{self, AppView, DynoView, IncidentView, Range};
use crate::domain::event::Event;
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
    // Bounded: a database that does not answer is unavailable, now.
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), s.store.ping())
        .await
        .unwrap_or(Err(crate::store::StoreError::Timeout(
            std::time::Duration::from_secs(2),
        )));
    match ping {
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

pub async fn dynos(
    State(s): State<Arc<Shared>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<DynoView>>, ApiError> {
    let p = Params::parse(q.as_deref(), &["app"])?;
    let app = p.app(&s)?;
    Ok(Json(views::all_views(&s, app.as_deref()).await))
}

pub async fn apps(State(s): State<Arc<Shared>>) -> Json<Vec<AppView>> {
    Json(views::app_views(&s))
}

pub async fn events(
    State(s): State<Arc<Shared>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<Event>>, ApiError> {
    let p = Params::parse(q.as_deref(), &["app", "dyno", "kind", "since", "limit"])?;
    let filter = EventFilter {
        app: p.app(&s)?,
        dyno: p.dyno()?,
        kinds: respond::parse_kinds(p.get("kind"))?,
        since: respond::parse_since(p.get("since"), Timestamp::now())?,
        limit: respond::parse_limit(p.get("limit"))?,
    };
    let rows = s
        .store
        .events(&filter)
        .await
        .map_err(|e| ApiError::store("/api/events", &e))?;
    Ok(Json(typed_events(rows)))
}

/// The incidents of the last day (or since `since`): each a dyno
/// instance's episode with its events, newest first.
pub async fn incidents(
    State(s): State<Arc<Shared>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<IncidentView>>, ApiError> {
    let p = Params::parse(q.as_deref(), &["app", "dyno", "since"])?;
    let now = Timestamp::now();
    let since = respond::parse_since(p.get("since"), now)?
        .unwrap_or((now - jiff::SignedDuration::from_hours(24)).as_millisecond());
    let filter = EventFilter {
        app: p.app(&s)?,
        dyno: p.dyno()?,
        kinds: Vec::new(),
        since: Some(since),
        limit: 20_000,
    };
    let rows = s
        .store
        .events(&filter)
        .await
        .map_err(|e| ApiError::store("/api/incidents", &e))?;
    Ok(Json(views::incidents(typed_events(rows))))
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
    pub events: Vec<Event>,
}

pub async fn history(
    State(s): State<Arc<Shared>>,
    Path((app, dyno)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<HistoryView>, ApiError> {
    let app = respond::known_app(&s, &app)?;
    let dyno = respond::parse_dyno(&dyno)?;
    let p = Params::parse(q.as_deref(), &["range"])?;
    let range = respond::parse_range(p.get("range"), Range::H1)?;
    let now = Timestamp::now();
    let (from, to) = (now - range.span(), now + jiff::SignedDuration::from_mins(1));
    let points = s
        .store
        .history(
            &app,
            Some(dyno.as_str()),
            from.as_millisecond(),
            to.as_millisecond(),
            60_000,
        )
        .await?;
    let events = s
        .store
        .events(&EventFilter {
            app: Some(app.clone()),
            dyno: Some(dyno.to_string()),
            kinds: Vec::new(),
            since: Some(from.as_millisecond()),
            limit: 1000,
        })
        .await?;
    // Nothing in the range: a typo'd or scaled-down-long-ago dyno looks
    // the same as a quiet one unless the engine or the store ever heard
    // of it.
    if points.is_empty() && events.is_empty() {
        let live = s
            .app(&app)
            .is_some_and(|a| a.lock().current_instance(&dyno).is_some());
        if !live && !s.store.dyno_reported(&app, dyno.as_str()).await? {
            return Err(ApiError::UnknownDyno {
                app,
                dyno: dyno.to_string(),
            });
        }
    }
    Ok(Json(HistoryView {
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
    }))
}

/// The OpenAPI 3.1 document of `/api` (hand-written; `tests/api/openapi.rs`
/// checks it against the routes and real answers).
pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn openapi() -> Response {
    respond::typed("application/json", OPENAPI)
}
