//! `POST /logs` and `POST /logs/{app}`: Logplex HTTPS drains.
//!
//! Auth and routing failures are the only 4xx (Logplex drops a batch it gets
//! a 4xx for). Content problems are counted and logged; the good frames of a
//! batch are always used. Parsing and deciding happen inline (microseconds);
//! the store and the Heroku API are never awaited here.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth;
use crate::act::report::Counters;
use crate::config::Source;
use crate::ingest;
use crate::service::{AppRuntime, Shared};

/// Remembers recent `Logplex-Frame-Id`s to drop retried batches.
#[derive(Debug)]
pub struct FrameIdCache {
    seen: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl FrameIdCache {
    pub fn new(cap: usize) -> Self {
        Self {
            seen: HashSet::with_capacity(cap),
            order: VecDeque::with_capacity(cap),
            cap,
        }
    }

    /// Records `id`; false if it was already seen.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

#[derive(Clone)]
pub struct DrainState {
    shared: Arc<Shared>,
    frame_ids: Arc<Mutex<FrameIdCache>>,
    warned_count: Arc<AtomicBool>,
    /// The app a shared `/logs` serves when no drain token picks one: the
    /// one drained app (the dark_knight set-up), if there is exactly one.
    /// Fixed by the configuration, so worked out once.
    untokened: Option<Arc<AppRuntime>>,
    /// The same for batches with an unknown token: an app that has a drain
    /// token of its own does not take those.
    unknown_token: Option<Arc<AppRuntime>>,
}

impl DrainState {
    pub fn new(shared: Arc<Shared>) -> Self {
        let only = |with_token: bool| {
            let mut drained = shared
                .apps
                .iter()
                .filter(|a| a.config.source == Source::Drain)
                .filter(|a| !with_token || a.config.drain_token.is_none());
            match (drained.next(), drained.next()) {
                (Some(a), None) => Some(a.clone()),
                _ => None,
            }
        };
        Self {
            untokened: only(false),
            unknown_token: only(true),
            shared,
            frame_ids: Arc::new(Mutex::new(FrameIdCache::new(16 * 1024))),
            warned_count: Arc::new(AtomicBool::new(false)),
        }
    }
}

pub async fn post_logs(State(st): State<DrainState>, headers: HeaderMap, body: Bytes) -> Response {
    let token = headers
        .get("logplex-drain-token")
        .and_then(|v| v.to_str().ok());
    let app = match token {
        None => st.untokened.clone(),
        Some(t) => st
            .shared
            .apps
            .iter()
            .find(|a| a.config.drain_token.as_deref() == Some(t))
            .cloned()
            .or_else(|| st.unknown_token.clone()),
    };
    handle(st, app, &headers, body)
}

pub async fn post_app_logs(
    State(st): State<DrainState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let app = st.shared.app(&name).cloned();
    handle(st, app, &headers, body)
}

fn handle(
    st: DrainState,
    app: Option<Arc<AppRuntime>>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let provided = auth::password(headers);
    let server_pw = st.shared.config.server.drain_password.as_ref();
    let Some(app) = app else {
        // Only an authenticated caller learns that the app is unknown.
        let known = server_pw.is_some_and(|pw| auth::matches(provided.as_deref(), pw))
            || st.shared.apps.iter().any(|a| {
                a.config
                    .drain_password
                    .as_ref()
                    .is_some_and(|pw| auth::matches(provided.as_deref(), pw))
            });
        return if known {
            (StatusCode::NOT_FOUND, "unknown app\n").into_response()
        } else {
            auth::unauthorized()
        };
    };
    let Some(expected) = app.config.drain_password.as_ref().or(server_pw) else {
        return auth::unauthorized();
    };
    if !auth::matches(provided.as_deref(), expected) {
        return auth::unauthorized();
    }

    let c = &st.shared.counters;
    Counters::add(&c.drain_requests, 1);
    Counters::add(&c.drain_bytes, body.len() as u64);

    let frame_id = headers
        .get("logplex-frame-id")
        .and_then(|v| v.to_str().ok());
    if let Some(id) = frame_id {
        let mut ids = st.frame_ids.lock().unwrap_or_else(|e| e.into_inner());
        if !ids.insert(id) {
            Counters::add(&c.duplicate_batches, 1);
            return StatusCode::NO_CONTENT.into_response();
        }
    }

    let mut observations = Vec::new();
    let stats = ingest::drain_body(&body, |o| observations.push(o));
    st.shared.count(&stats);
    if let Some(expected) = headers
        .get("logplex-msg-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        && expected != stats.records
    {
        Counters::add(&c.msg_count_mismatch, 1);
        if !st.warned_count.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{}: Logplex-Msg-Count says {expected}, body held {} frames (counted in /metrics; further mismatches are not logged)",
                app.config.name,
                stats.records
            );
        }
    }
    if stats.rejected > 0 {
        tracing::debug!(
            "{}: {} broken stretches skipped in a drain body",
            app.config.name,
            stats.rejected
        );
    }
    st.shared.apply(&app, &observations);
    StatusCode::NO_CONTENT.into_response()
}
