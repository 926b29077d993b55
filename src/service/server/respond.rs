//! The HTTP layer's toolkit: what the API, the dashboard and `/metrics`
//! share to read a request and to answer one. Query parameters are checked
//! here (each allowed name at most once, unknown names refused) and every
//! failure is an [`ApiError`], which answers as JSON naming the parameter;
//! the dashboard shows the same errors as a page.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;

use super::views::Range;
use crate::domain::DynoName;
use crate::domain::event::{Event, EventKind};
use crate::service::Shared;
use crate::store::{EventRow, StoreError};

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
        let parameter = match &self {
            Self::BadParameter { parameter, .. } => Some(parameter.clone()),
            Self::UnknownApp { .. } => Some("app".to_owned()),
            Self::UnknownDyno { .. } => Some("dyno".to_owned()),
            Self::Store(_) => None,
        };
        let body = Body {
            error: self.to_string(),
            parameter,
        };
        (self.status(), Json(body)).into_response()
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

    /// `app`, a configured app (404 for another).
    pub fn app(&self, s: &Shared) -> Result<Option<String>, ApiError> {
        self.get("app").map(|a| known_app(s, a)).transpose()
    }

    /// `dyno`, a dyno name (`web.1`).
    pub fn dyno(&self) -> Result<Option<String>, ApiError> {
        Ok(self
            .get("dyno")
            .map(parse_dyno)
            .transpose()?
            .map(|d| d.to_string()))
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

pub fn parse_limit(s: Option<&str>) -> Result<i64, ApiError> {
    match s {
        None => Ok(100),
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad("limit", format!("{l:?} is not a number from 1 to 1000"))),
    }
}

/// Events as stored, typed (a row that is not an event is skipped).
pub fn typed_events(rows: Vec<EventRow>) -> Vec<Event> {
    rows.iter().filter_map(EventRow::event).collect()
}

impl ApiError {
    /// The status the error answers with (the page shows it too).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadParameter { .. } => StatusCode::BAD_REQUEST,
            Self::UnknownApp { .. } | Self::UnknownDyno { .. } => StatusCode::NOT_FOUND,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A failed store read of `route`, logged once here.
    pub fn store(route: &str, e: &StoreError) -> Self {
        tracing::warn!("{route}: {e}");
        Self::Store(e.to_string())
    }
}

/// A failed store read, not logged (the caller's `?`).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

/// A body of its own content type (the Prometheus exposition, a document
/// served as it is).
pub fn typed(content_type: &'static str, body: impl Into<String>) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body.into()).into_response()
}
