//! `POST /logs` and `POST /logs/{app}`: Logplex HTTPS drains.
//!
//! Auth and routing failures are the only 4xx (Logplex drops a batch it gets
//! a 4xx for). Content problems are counted and logged; the good frames of a
//! batch are always used. Parsing and deciding happen inline (microseconds);
//! the store and the Heroku API are never awaited here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth;
use crate::config::Source;
use crate::ingest;
use crate::service::{AppRuntime, Shared};
use crate::telemetry::Counters;
use crate::telemetry::Throttle;

#[derive(Clone)]
pub struct DrainState {
    shared: Arc<Shared>,
    warned_count: Arc<AtomicBool>,
    /// When a failed drain login was last logged (unix seconds).
    login_log: Arc<Throttle>,
    /// The same for batches refused for their drain token.
    token_log: Arc<Throttle>,
    body_timeout: std::time::Duration,
    /// The app the shared `/logs` serves whatever the token: the one drained
    /// app (the dark_knight set-up), if there is exactly one. Fixed by the
    /// configuration, so worked out once. With several, only a token picks.
    single: Option<Arc<AppRuntime>>,
    /// The drain passwords, hashed once: the server's, and each app's (in
    /// `shared.apps` order). Fixed by the configuration, like `single`.
    server_pw: Option<auth::PasswordDigest>,
    app_pw: Arc<Vec<Option<auth::PasswordDigest>>>,
}

/// Why a request has no app to post for: told apart so that the 404 says
/// what to fix, and so that unknown tokens are counted.
#[derive(Debug, Clone, Copy)]
enum Missing {
    /// `/logs/{app}` names no configured app.
    App,
    /// Several apps and a `Logplex-Drain-Token` none of them has.
    Token,
    /// Several apps and no `Logplex-Drain-Token` to choose by.
    NoToken,
}

impl DrainState {
    pub fn new(shared: Arc<Shared>, body_timeout: std::time::Duration) -> Self {
        let mut drained = shared
            .apps
            .iter()
            .filter(|a| a.config.source == Source::Drain);
        let single = match (drained.next(), drained.next()) {
            (Some(a), None) => Some(a.clone()),
            _ => None,
        };
        let server_pw = shared
            .config
            .server
            .drain_password
            .as_ref()
            .map(auth::PasswordDigest::of);
        let app_pw = shared
            .apps
            .iter()
            .map(|a| {
                a.config
                    .drain_password
                    .as_ref()
                    .map(auth::PasswordDigest::of)
            })
            .collect();
        Self {
            single,
            server_pw,
            app_pw: Arc::new(app_pw),
            shared,
            warned_count: Arc::new(AtomicBool::new(false)),
            login_log: Arc::new(Throttle::new(std::time::Duration::from_secs(60))),
            token_log: Arc::new(Throttle::new(std::time::Duration::from_secs(60))),
            body_timeout,
        }
    }

    /// Counts a failed drain login and logs it at most once a minute: after
    /// a password rotation Logplex keeps posting with the old one and every
    /// batch is lost until the drain is updated.
    fn login_failed(&self, app: Option<&Arc<AppRuntime>>) {
        Counters::add(&self.shared.counters.drain_auth_failures, 1);
        if self.login_log.allow().is_some() {
            let total = self
                .shared
                .counters
                .drain_auth_failures
                .load(Ordering::Relaxed);
            tracing::warn!(
                "drain login failed{} ({total} so far): the drain's password may have changed — Logplex drops every batch until the drain URL is updated (dynoguard setup)",
                app.map(|a| format!(" for {}", a.config.name))
                    .unwrap_or_default()
            );
        }
    }

    /// A batch refused for its token: counted always, logged at most once a
    /// minute (a misrouted drain posts several batches a second).
    fn token_refused(&self, counter: &AtomicU64, line: impl FnOnce(u64) -> String) {
        Counters::add(counter, 1);
        if let Some(held) = self.token_log.allow() {
            tracing::warn!("{}", line(held));
        }
    }
}

/// The `Logplex-Drain-Token` header as bytes: a token that is not valid
/// text still differs from the configured one (never "no token").
fn drain_token(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get("logplex-drain-token").map(|v| v.as_bytes())
}

/// A token as the logs may show it: the header is the caller's, so it is
/// quoted and cut short.
fn shown(token: &[u8]) -> String {
    let t = String::from_utf8_lossy(token);
    let cut: String = t.chars().take(64).collect();
    format!("{cut:?}")
}

pub async fn post_logs(State(st): State<DrainState>, headers: HeaderMap, body: Body) -> Response {
    // SPEC 4.1: one drained app takes `/logs` (its token is checked after
    // the credentials); with several, the token is the only way to tell
    // them apart, and a token no app has is nobody's — never a fallback
    // app, whose `web.1` would be restarted for another app's memory.
    let app = match (&st.single, drain_token(&headers)) {
        (Some(a), _) => Ok(a.clone()),
        (None, Some(t)) => st
            .shared
            .apps
            .iter()
            .find(|a| a.config.drain_token.as_deref().map(str::as_bytes) == Some(t))
            .cloned()
            .ok_or(Missing::Token),
        (None, None) => Err(Missing::NoToken),
    };
    handle(st, app, &headers, body).await
}

pub async fn post_app_logs(
    State(st): State<DrainState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let app = st.shared.app(&name).cloned().ok_or(Missing::App);
    handle(st, app, &headers, body).await
}

/// Longest `Logplex-Frame-Id` remembered (Logplex's are 32 hex digits).
const MAX_FRAME_ID: usize = 128;

/// Auth, then the token, then size, then the body: nothing of a stranger's
/// body is read.
async fn handle(
    st: DrainState,
    app: Result<Arc<AppRuntime>, Missing>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let app = match authenticate(&st, app, headers) {
        Ok(app) => app,
        Err(r) => return r,
    };
    if let Err(r) = check_token(&st, &app, headers) {
        return r;
    }
    let limit = st.shared.config.server.body_limit;
    let c = &st.shared.counters;
    if let Some(enc) = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().eq_ignore_ascii_case("identity"))
    {
        // Logplex sends plain bodies; never drop an encoded one silently.
        Counters::add(&c.unsupported_encoding, 1);
        tracing::warn!(
            "{}: drain body with Content-Encoding {enc:?} refused (415); Logplex sends plain bodies",
            app.config.name
        );
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding not supported: send the body uncompressed\n",
        )
            .into_response();
    }
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        Counters::add(&c.bodies_too_large, 1);
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n").into_response();
    }
    let read = tokio::time::timeout(st.body_timeout, axum::body::to_bytes(body, limit)).await;
    let body = match read {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            // Over the limit without a Content-Length, or the client broke off.
            Counters::add(&c.bodies_too_large, 1);
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or incomplete\n",
            )
                .into_response();
        }
        Err(_) => {
            Counters::add(&c.body_timeouts, 1);
            return (StatusCode::REQUEST_TIMEOUT, "body not received in time\n").into_response();
        }
    };
    ingest_body(&st, &app, headers, body)
}

/// The app a request may post for, or the answer to give instead.
#[allow(clippy::result_large_err)]
fn authenticate(
    st: &DrainState,
    app: Result<Arc<AppRuntime>, Missing>,
    headers: &HeaderMap,
) -> Result<Arc<AppRuntime>, Response> {
    let provided = auth::password(headers);
    let server_pw = st.server_pw.as_ref();
    let app = match app {
        Ok(app) => app,
        Err(missing) => {
            // Only an authenticated caller learns that the app is unknown.
            let known = server_pw.is_some_and(|pw| auth::matches_digest(provided.as_deref(), pw))
                || st
                    .app_pw
                    .iter()
                    .flatten()
                    .any(|pw| auth::matches_digest(provided.as_deref(), pw));
            if !known {
                st.login_failed(None);
                return Err(auth::unauthorized());
            }
            return Err(not_found(st, missing, headers));
        }
    };
    let app_pw = st
        .shared
        .apps
        .iter()
        .position(|a| Arc::ptr_eq(a, &app))
        .and_then(|i| st.app_pw.get(i))
        .and_then(Option::as_ref);
    let Some(expected) = app_pw.or(server_pw) else {
        st.login_failed(Some(&app));
        return Err(auth::unauthorized());
    };
    if !auth::matches_digest(provided.as_deref(), expected) {
        st.login_failed(Some(&app));
        return Err(auth::unauthorized());
    }
    Ok(app)
}

/// The 404 for an authenticated request no app takes, saying what to fix.
fn not_found(st: &DrainState, missing: Missing, headers: &HeaderMap) -> Response {
    let msg = match missing {
        Missing::App => "unknown app: /logs/{app} takes the name of a configured app\n",
        Missing::Token => {
            let token = drain_token(headers).map(shown).unwrap_or_default();
            st.token_refused(&st.shared.counters.drain_unknown_token, |held| {
                format!(
                    "drain batch on /logs with Logplex-Drain-Token {token} refused (404): no configured app has this drain_token; set it for the app (dynoguard setup prints it) or point the drain at /logs/{{app}} ({held} more not logged)"
                )
            });
            "unknown drain token: no configured app has this Logplex-Drain-Token as its drain_token; set drain_token for the app or post to /logs/{app}\n"
        }
        Missing::NoToken => {
            "several apps are configured: post to /logs/{app}, or send the Logplex-Drain-Token of an app's drain_token\n"
        }
    };
    (StatusCode::NOT_FOUND, msg).into_response()
}

/// SPEC 4.1: a batch whose `Logplex-Drain-Token` is not the app's
/// configured `drain_token` is another drain's — pointed at this path by
/// mistake, its `web.1` would restart this app's `web.1` — so it is refused
/// with 403. An app without a configured token takes any (Logplex always
/// sends one; the operator may not have recorded it), and a batch with no
/// token at all is not Logplex's, only a password holder's (curl, replays).
#[allow(clippy::result_large_err)]
fn check_token(st: &DrainState, app: &AppRuntime, headers: &HeaderMap) -> Result<(), Response> {
    let (Some(expected), Some(got)) = (app.config.drain_token.as_deref(), drain_token(headers))
    else {
        return Ok(());
    };
    if expected.as_bytes() == got {
        return Ok(());
    }
    let name = &app.config.name;
    st.token_refused(&st.shared.counters.drain_token_mismatch, |held| {
        format!(
            "{name}: drain batch with Logplex-Drain-Token {} refused (403): {name}'s drain_token is {expected:?} — another app's drain may point at this app's URL ({held} more not logged)",
            shown(got)
        )
    });
    Err((
        StatusCode::FORBIDDEN,
        format!(
            "Logplex-Drain-Token is not the drain_token configured for app {name}: this batch is another drain's\n"
        ),
    )
        .into_response())
}

fn ingest_body(
    st: &DrainState,
    app: &Arc<AppRuntime>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let c = &st.shared.counters;
    Counters::add(&c.drain_requests, 1);
    Counters::add(&c.drain_bytes, body.len() as u64);

    let frame_id = headers
        .get("logplex-frame-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| id.len() <= MAX_FRAME_ID);
    if !st.shared.first_time(frame_id) {
        return StatusCode::NO_CONTENT.into_response();
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
    // De-duplicated by Frame-Id in the shared path (a batch retried to
    // another replica is dropped by the leader), then applied or forwarded.
    st.shared
        .accept(app, frame_id, observations, stats.first.zip(stats.latest));
    StatusCode::NO_CONTENT.into_response()
}
