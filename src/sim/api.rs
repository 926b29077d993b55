//! The fake Platform API: a real HTTP server on loopback that answers like
//! Heroku's (reference §3), records every request, can be told to fail, and
//! serves log sessions — scripted (tests) or live from a simulated fleet.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tokio::sync::{broadcast, mpsc};

/// The media type the Platform API requires (reference §3), written out
/// here rather than taken from the client: a fake that shares the client's
/// constant would accept whatever the client sends, right or wrong.
const ACCEPT: &str = "application/vnd.heroku+json; version=3";

/// One request as the fake API saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What one log-session stream does (tests script these).
#[derive(Debug, Clone)]
pub enum SessionPlan {
    /// Answer the stream request with this status.
    Status(u16),
    /// Send these chunks (as separate network writes), then end the stream.
    Chunks {
        content_type: &'static str,
        chunks: Vec<Vec<u8>>,
    },
}

/// How the fake answers restart calls (DELETE …/dynos/{dyno}).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartMode {
    /// Restart, answer 202.
    #[default]
    Normal,
    /// Restart, then never answer (an API that accepts and hangs).
    Hang,
    /// Restart, then answer only after this long (past the caller's timeout).
    AnswerAfter(Duration),
    /// The call is lost: no restart, no answer.
    Lost,
    /// Answer 202, but the dyno is not replaced: it never reports a new
    /// instance (a restart that does not take).
    NoEffect,
}

#[derive(Debug, Clone)]
pub struct FormationItem {
    pub process_type: String,
    pub quantity: u32,
    pub size: String,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<Recorded>,
    /// Status codes for the next restart calls (then 202 again).
    fail_restarts: VecDeque<u16>,
    delay: Option<Duration>,
    /// app → required bearer token.
    tokens: HashMap<String, String>,
    plans: HashMap<String, VecDeque<SessionPlan>>,
    formation: HashMap<String, Vec<FormationItem>>,
    /// `(version, created_at, email)` per app, for `GET /apps/{app}/releases`.
    releases: HashMap<String, Vec<(u64, jiff::Timestamp, String)>>,
    features: HashMap<String, bool>,
    /// Per app: `(number, url)` of each drain (ids and tokens derive from
    /// the number).
    drains: HashMap<String, Vec<(u32, String)>>,
    next_drain: u32,
    /// Apps whose dynos were all restarted (`DELETE /apps/{app}/dynos`).
    app_restarts: Vec<String>,
    /// session id → app
    sessions: HashMap<String, String>,
    restart_mode: RestartMode,
    /// (app, dyno) → when its current instance was created (restarts reset it).
    created: HashMap<(String, String), jiff::Timestamp>,
    /// Answer `GET …/dynos/{dyno}` only after this long (a slow API for reads).
    info_delay: Option<Duration>,
    /// Answer drain creation with 422 quoting the URL (as Heroku does for a
    /// URL it refuses).
    reject_drains: bool,
}

impl Inner {
    /// Adds a drain to the app's list; returns its number (its id and token
    /// derive from it).
    fn add_drain(&mut self, app: &str, url: String) -> u32 {
        self.next_drain += 1;
        let i = self.next_drain;
        self.drains
            .entry(app.to_owned())
            .or_default()
            .push((i, url));
        i
    }
}

#[derive(Debug)]
pub struct FakeState {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    rate_remaining: AtomicU64,
    /// Restart calls are forwarded here (the simulated fleet listens).
    restarts: Mutex<Option<mpsc::UnboundedSender<(String, String)>>>,
    /// Live platform lines per app, for tail sessions.
    live: broadcast::Sender<(String, Bytes)>,
    addr: Mutex<Option<SocketAddr>>,
}

/// A running fake Platform API.
#[derive(Debug, Clone)]
pub struct FakeHeroku {
    addr: SocketAddr,
    state: Arc<FakeState>,
}

impl FakeHeroku {
    /// Starts the server on 127.0.0.1 (any free port).
    pub async fn start() -> std::io::Result<Self> {
        let (live, _) = broadcast::channel(4096);
        let state = Arc::new(FakeState {
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(1),
            rate_remaining: AtomicU64::new(4500),
            restarts: Mutex::new(None),
            live,
            addr: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        *lock(&state.addr) = Some(addr);
        let router = Router::new()
            .route("/sessions/{id}", get(stream_session))
            .fallback(any(api))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { addr, state })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.inner).requests.clone()
    }

    /// Requests to `/hooks/…`, where tests point Slack and webhook sinks.
    pub fn hooks(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/hooks/"))
            .collect()
    }

    /// The restart calls (`DELETE /apps/{app}/dynos/{dyno}`) received.
    pub fn restarts(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .collect()
    }

    /// The next restart calls answer these statuses, in order.
    pub fn fail_restarts(&self, statuses: &[u16]) {
        lock(&self.state.inner).fail_restarts.extend(statuses);
    }

    /// How restart calls are answered from now on.
    pub fn set_restart_mode(&self, mode: RestartMode) {
        lock(&self.state.inner).restart_mode = mode;
    }

    /// `GET …/dynos/{dyno}` answers after this long (None: at once).
    pub fn set_info_delay(&self, d: Option<Duration>) {
        lock(&self.state.inner).info_delay = d;
    }

    /// Every API answer waits this long first (a slow Heroku).
    pub fn set_delay(&self, d: Option<Duration>) {
        lock(&self.state.inner).delay = d;
    }

    /// Drain creation answers 422 with a message that repeats the URL, as
    /// sent and percent-decoded (`Url https://user:PASSWORD@host is invalid`).
    pub fn reject_drains(&self, on: bool) {
        lock(&self.state.inner).reject_drains = on;
    }

    /// Calls for `app` must carry `Authorization: Bearer {token}`.
    pub fn require_token(&self, app: &str, token: &str) {
        lock(&self.state.inner)
            .tokens
            .insert(app.to_owned(), token.to_owned());
    }

    pub fn plan_session(&self, app: &str, plan: SessionPlan) {
        lock(&self.state.inner)
            .plans
            .entry(app.to_owned())
            .or_default()
            .push_back(plan);
    }

    pub fn set_releases(&self, app: &str, releases: Vec<(u64, jiff::Timestamp, String)>) {
        lock(&self.state.inner)
            .releases
            .insert(app.to_owned(), releases);
    }

    pub fn set_formation(&self, app: &str, items: Vec<FormationItem>) {
        lock(&self.state.inner)
            .formation
            .insert(app.to_owned(), items);
    }

    /// Where restart calls are forwarded (the fleet).
    pub fn on_restart(&self, tx: mpsc::UnboundedSender<(String, String)>) {
        *lock(&self.state.restarts) = Some(tx);
    }

    /// Publishes a platform line to the app's live tail sessions.
    pub fn publish(&self, app: &str, line: Bytes) {
        let _ = self.state.live.send((app.to_owned(), line));
    }

    pub fn log_drains(&self, app: &str) -> Vec<String> {
        lock(&self.state.inner)
            .drains
            .get(app)
            .map(|l| l.iter().map(|(_, u)| u.clone()).collect())
            .unwrap_or_default()
    }

    /// Registers a drain as if added earlier (e.g. with an old password).
    pub fn add_log_drain(&self, app: &str, url: &str) {
        lock(&self.state.inner).add_drain(app, url.to_owned());
    }

    /// Apps whose dynos were all restarted, in order.
    pub fn app_restarts(&self) -> Vec<String> {
        lock(&self.state.inner).app_restarts.clone()
    }

    pub fn feature_enabled(&self, app: &str) -> bool {
        lock(&self.state.inner)
            .features
            .get(app)
            .copied()
            .unwrap_or(false)
    }
}

fn drain_id(i: u32) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn drain_token(i: u32) -> String {
    format!("d.00000000-0000-4000-9000-{i:012}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn json(status: StatusCode, state: &FakeState, body: serde_json::Value) -> Response {
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let remaining = state
        .rate_remaining
        .fetch_sub(1, Ordering::Relaxed)
        .saturating_sub(1);
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::HeaderName::from_static("request-id"),
                format!("fake-{id:08}"),
            ),
            (
                header::HeaderName::from_static("ratelimit-remaining"),
                remaining.to_string(),
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, state: &FakeState, id: &str, message: &str) -> Response {
    json(
        status,
        state,
        serde_json::json!({"id": id, "message": message}),
    )
}

/// Every request but a log-session stream: recorded, then answered like the
/// Platform API — after the configured delay, once the `Accept` header and
/// the bearer token pass — by the handler of its route.
async fn api(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let delay = record(&state, &method, path, &headers, &body);
    // Notification sinks (Slack, webhooks) for tests and the demo: recorded
    // above, answered like Slack does.
    if path.starts_with("/hooks/") {
        return (StatusCode::OK, "ok").into_response();
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let Some(refused) = refuse(&state, &headers, &parts) {
        return refused;
    }
    route(&state, method.as_str(), &parts, &body).await
}

/// Keeps the request for the tests to read; returns how long every answer
/// waits first (a slow Heroku).
fn record(
    state: &FakeState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Duration> {
    let rec = Recorded {
        method: method.to_string(),
        path: path.to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(body).into_owned(),
    };
    let mut inner = lock(&state.inner);
    inner.requests.push(rec);
    inner.delay
}

/// What Heroku checks before any route: the v3 `Accept` header (406), then
/// a bearer token — any, or the one a test required for the app (401).
fn refuse(state: &FakeState, headers: &HeaderMap, parts: &[&str]) -> Option<Response> {
    if headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) != Some(ACCEPT) {
        return Some(error(
            StatusCode::NOT_ACCEPTABLE,
            state,
            "not_acceptable",
            "Accept: application/vnd.heroku+json; version=3 is required",
        ));
    }
    let app = (parts.first() == Some(&"apps"))
        .then(|| parts.get(1).copied())
        .flatten()
        .unwrap_or("");
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let wrong_token = lock(&state.inner)
        .tokens
        .get(app)
        .is_some_and(|required| required != bearer);
    (bearer.is_empty() || wrong_token).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            state,
            "unauthorized",
            "Invalid credentials provided.",
        )
    })
}

/// The routes the fake answers, by group: dynos (restarts, info), the app
/// and account, log sessions, features and log drains.
async fn route(state: &FakeState, method: &str, parts: &[&str], body: &Bytes) -> Response {
    match (method, parts) {
        ("DELETE", ["apps", app, "dynos"]) => restart_all(state, app),
        ("DELETE", ["apps", app, "dynos", dyno]) => restart_dyno(state, app, dyno).await,
        ("GET", ["apps", app, "dynos"]) => list_dynos(state, app),
        ("GET", ["apps", app, "dynos", dyno]) => dyno_info(state, app, dyno).await,
        ("GET", ["apps", app, "formation"]) => formation(state, app),
        ("GET", ["apps", app, "releases"]) => releases(state, app),
        ("GET", ["apps", app]) => app_info(state, app),
        ("GET", ["account", "rate-limits"]) => {
            let remaining = state.rate_remaining.load(Ordering::Relaxed);
            json(
                StatusCode::OK,
                state,
                serde_json::json!({"remaining": remaining}),
            )
        }
        ("GET", ["dyno-sizes"]) => dyno_sizes(state),
        ("POST", ["apps", app, "log-sessions"]) => create_session(state, app),
        ("GET", ["apps", app, "features", name]) => {
            let enabled = lock(&state.inner)
                .features
                .get(*app)
                .copied()
                .unwrap_or(false);
            json(
                StatusCode::OK,
                state,
                serde_json::json!({"name": name, "enabled": enabled}),
            )
        }
        ("PATCH", ["apps", app, "features", name]) => {
            lock(&state.inner).features.insert((*app).to_owned(), true);
            json(
                StatusCode::OK,
                state,
                serde_json::json!({"name": name, "enabled": true}),
            )
        }
        ("GET", ["apps", app, "log-drains"]) => list_drains(state, app),
        ("POST", ["apps", app, "log-drains"]) => add_drain(state, app, body),
        ("DELETE", ["apps", app, "log-drains", id]) => remove_drain(state, app, id),
        _ => error(StatusCode::NOT_FOUND, state, "not_found", "Not found."),
    }
}

/// When a dyno never restarted here was created: long ago (2024-01-01).
fn long_ago() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_704_067_200).unwrap_or_default()
}

/// `DELETE /apps/{app}/dynos`: restarts all the app's dynos
/// (`heroku ps:restart`); recorded, nothing else.
fn restart_all(state: &FakeState, app: &str) -> Response {
    lock(&state.inner).app_restarts.push(app.to_owned());
    json(StatusCode::ACCEPTED, state, serde_json::json!({}))
}

/// `DELETE /apps/{app}/dynos/{dyno}`: the restart call. Answers a failure a
/// test queued, else restarts (a new instance, the fleet told) and answers
/// as the restart mode says: at once, late, never — or not at all, lost.
async fn restart_dyno(state: &FakeState, app: &str, dyno: &str) -> Response {
    let fail = lock(&state.inner).fail_restarts.pop_front();
    if let Some(code) = fail {
        return failed_restart(state, code);
    }
    if lock(&state.inner).restart_mode == RestartMode::Lost {
        std::future::pending::<()>().await;
    }
    let mode = {
        let mut inner = lock(&state.inner);
        if inner.restart_mode != RestartMode::NoEffect {
            inner
                .created
                .insert((app.to_owned(), dyno.to_owned()), jiff::Timestamp::now());
        }
        inner.restart_mode
    };
    if let Some(tx) = lock(&state.restarts).as_ref() {
        let _ = tx.send((app.to_owned(), dyno.to_owned()));
    }
    match mode {
        RestartMode::Normal | RestartMode::Lost | RestartMode::NoEffect => {}
        RestartMode::Hang => std::future::pending::<()>().await,
        RestartMode::AnswerAfter(d) => tokio::time::sleep(d).await,
    }
    json(StatusCode::ACCEPTED, state, serde_json::json!({}))
}

/// A failed restart call with the status a test queued, in Heroku's words
/// for it (404 and 429 have their own).
fn failed_restart(state: &FakeState, code: u16) -> Response {
    match code {
        404 => error(
            StatusCode::NOT_FOUND,
            state,
            "not_found",
            "Couldn't find that process.",
        ),
        429 => error(
            StatusCode::TOO_MANY_REQUESTS,
            state,
            "rate_limit",
            "Your account reached the API rate limit",
        ),
        code => error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            state,
            "internal_server_error",
            "Internal server error.",
        ),
    }
}

/// `GET /apps/{app}/dynos`: one `up` dyno per unit of the formation, each
/// created when it was last restarted here.
fn list_dynos(state: &FakeState, app: &str) -> Response {
    let (items, created) = {
        let inner = lock(&state.inner);
        let items = inner.formation.get(app).cloned().unwrap_or_default();
        (items, inner.created.clone())
    };
    let body: Vec<_> = items
        .iter()
        .flat_map(|f| {
            let created = &created;
            (1..=f.quantity).map(move |n| {
                let name = format!("{}.{n}", f.process_type);
                let at = created
                    .get(&(app.to_owned(), name.clone()))
                    .copied()
                    .unwrap_or_else(long_ago);
                serde_json::json!({"name": name, "type": f.process_type, "size": f.size, "state": "up", "created_at": at.to_string(), "updated_at": at.to_string(), "app": {"name": app}})
            })
        })
        .collect();
    json(StatusCode::OK, state, serde_json::Value::Array(body))
}

/// `GET /apps/{app}/dynos/{dyno}`: the dyno, `up`, created when it was last
/// restarted here — the evidence the restarter reads after an unknown
/// outcome; it can be told to answer slowly.
async fn dyno_info(state: &FakeState, app: &str, dyno: &str) -> Response {
    let (created, delay) = {
        let inner = lock(&state.inner);
        (
            inner
                .created
                .get(&(app.to_owned(), dyno.to_owned()))
                .copied(),
            inner.info_delay,
        )
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let created = created.unwrap_or_else(long_ago);
    json(
        StatusCode::OK,
        state,
        serde_json::json!({"name": dyno, "type": dyno.split('.').next(), "state": "up", "created_at": created.to_string(), "updated_at": created.to_string(), "app": {"name": app}}),
    )
}

/// `GET /apps/{app}/formation`: the formation a test set.
fn formation(state: &FakeState, app: &str) -> Response {
    let items = lock(&state.inner)
        .formation
        .get(app)
        .cloned()
        .unwrap_or_default();
    let body: Vec<_> = items
        .iter()
        .map(|f| serde_json::json!({"type": f.process_type, "quantity": f.quantity, "size": f.size, "dyno_size": {"name": f.size}, "app": {"name": app}}))
        .collect();
    json(StatusCode::OK, state, serde_json::Value::Array(body))
}

/// `GET /apps/{app}/releases`: the releases a test set, newest first.
fn releases(state: &FakeState, app: &str) -> Response {
    let items = lock(&state.inner)
        .releases
        .get(app)
        .cloned()
        .unwrap_or_default();
    let body: Vec<_> = items
        .iter()
        .rev()
        .map(|(v, at, email)| serde_json::json!({"version": v, "created_at": at.to_string(), "user": {"email": email}, "description": format!("Deploy v{v}")}))
        .collect();
    json(StatusCode::OK, state, serde_json::Value::Array(body))
}

/// `GET /apps/{app}`: the app and its default domain.
fn app_info(state: &FakeState, app: &str) -> Response {
    // Newer Heroku apps get a random suffix in their default domain: the
    // fake has one too, so a URL guessed from the name is wrong.
    json(
        StatusCode::OK,
        state,
        serde_json::json!({"name": app, "web_url": format!("https://{app}-0a1b2c3d4e5f.herokuapp.com/")}),
    )
}

/// `GET /dyno-sizes`: Heroku's sizes and their memory in GB.
fn dyno_sizes(state: &FakeState) -> Response {
    json(
        StatusCode::OK,
        state,
        serde_json::json!([
            {"name": "eco", "memory": 0.5}, {"name": "basic", "memory": 0.5},
            {"name": "standard-1X", "memory": 0.5}, {"name": "standard-2X", "memory": 1.0},
            {"name": "performance-M", "memory": 2.5}, {"name": "performance-L", "memory": 14.0}
        ]),
    )
}

/// `POST /apps/{app}/log-sessions`: a session whose `logplex_url` points
/// back at this server (`stream_session`).
fn create_session(state: &FakeState, app: &str) -> Response {
    let id = format!("{:08x}-sess", state.next_id.fetch_add(1, Ordering::Relaxed));
    lock(&state.inner)
        .sessions
        .insert(id.clone(), app.to_owned());
    let addr = lock(&state.addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    json(
        StatusCode::CREATED,
        state,
        serde_json::json!({"id": id, "logplex_url": format!("http://{addr}/sessions/{id}?srv=1"), "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}),
    )
}

/// `GET /apps/{app}/log-drains`: the app's drains.
fn list_drains(state: &FakeState, app: &str) -> Response {
    let drains = lock(&state.inner)
        .drains
        .get(app)
        .cloned()
        .unwrap_or_default();
    let body: Vec<_> = drains
        .iter()
        .map(|(i, u)| serde_json::json!({"id": drain_id(*i), "url": u, "token": drain_token(*i)}))
        .collect();
    json(StatusCode::OK, state, serde_json::Value::Array(body))
}

/// `POST /apps/{app}/log-drains`: adds the drain — or, when a test said
/// so, refuses it with 422 quoting the URL as sent and decoded, as Heroku
/// does (so that the caller must keep the password out of its errors).
fn add_drain(state: &FakeState, app: &str, body: &Bytes) -> Response {
    let url = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["url"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut inner = lock(&state.inner);
    if inner.reject_drains {
        drop(inner);
        let decoded = crate::domain::secret::percent_decode(&url);
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            state,
            "invalid_params",
            &format!("Url {url} is invalid (read as {decoded})"),
        );
    }
    let i = inner.add_drain(app, url.clone());
    drop(inner);
    json(
        StatusCode::CREATED,
        state,
        serde_json::json!({"id": drain_id(i), "url": url, "token": drain_token(i)}),
    )
}

/// `DELETE /apps/{app}/log-drains/{id}`: removes the drain named by its
/// id, token or URL (Heroku takes any of them).
fn remove_drain(state: &FakeState, app: &str, id: &str) -> Response {
    let removed = {
        let mut inner = lock(&state.inner);
        let list = inner.drains.entry(app.to_owned()).or_default();
        list.iter()
            .position(|(i, u)| drain_token(*i) == id || drain_id(*i) == id || u == id)
            .map(|p| list.remove(p))
    };
    match removed {
        Some((i, url)) => json(
            StatusCode::OK,
            state,
            serde_json::json!({"id": drain_id(i), "url": url, "token": drain_token(i)}),
        ),
        None => error(
            StatusCode::NOT_FOUND,
            state,
            "not_found",
            "Couldn't find that log drain.",
        ),
    }
}

async fn stream_session(State(state): State<Arc<FakeState>>, Path(id): Path<String>) -> Response {
    let (app, plan) = {
        let mut inner = lock(&state.inner);
        let Some(app) = inner.sessions.get(&id).cloned() else {
            return (
                StatusCode::NOT_FOUND,
                "Your access to the log stream expired",
            )
                .into_response();
        };
        let plan = inner.plans.get_mut(&app).and_then(VecDeque::pop_front);
        (app, plan)
    };
    match plan {
        Some(SessionPlan::Status(code)) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Some(SessionPlan::Chunks {
            content_type,
            chunks,
        }) => {
            // Separate writes with a pause, so the client sees separate chunks.
            let stream = futures_util::stream::unfold(chunks.into_iter(), |mut it| async move {
                let c = it.next()?;
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((Ok::<_, std::io::Error>(Bytes::from(c)), it))
            });
            (
                [(header::CONTENT_TYPE, content_type)],
                Body::from_stream(stream),
            )
                .into_response()
        }
        None => {
            // Live tail: lines the fleet publishes for this app.
            let rx = state.live.subscribe();
            let stream = futures_util::stream::unfold((rx, app), |(mut rx, app)| async move {
                loop {
                    match rx.recv().await {
                        Ok((a, line)) if a == app => {
                            return Some((Ok::<_, std::io::Error>(line), (rx, app)));
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                Body::from_stream(stream),
            )
                .into_response()
        }
    }
}
