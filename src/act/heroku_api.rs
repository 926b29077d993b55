//! Heroku Platform API v3 client (SPEC §7, reference §3). The base URL is
//! injectable (`HEROKU_API_URL`) so tests, the demo and benchmarks point it at
//! the simulator on loopback.
//!
//! One attempt per call: the restarter owns retries and backoff. The token is
//! a [`SecretString`] and appears in no log line and no error.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{AppName, DynoName};

pub const ACCEPT: &str = "application/vnd.heroku+json; version=3";
/// The default call timeout; `DYNOGUARD_API_TIMEOUT` overrides it (`Tuning`).
pub const TIMEOUT: Duration = crate::config::tuning::API_TIMEOUT;
/// Below this many remaining calls, calls on that account are spaced out.
pub const LOW_RATE_LIMIT: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found (HTTP 404){}", request_id_note(.request_id))]
    NotFound { request_id: Option<String> },
    #[error("rate limited (HTTP 429){}", request_id_note(.request_id))]
    RateLimited {
        retry_after: Option<Duration>,
        request_id: Option<String>,
    },
    #[error("HTTP {status}: {message}{}", request_id_note(.request_id))]
    Status {
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    /// No answer in time: the call may or may not have taken effect.
    #[error("no answer within {0:?} (outcome unknown)")]
    Timeout(Duration),
    /// The connection could not be made: the call was not sent.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The connection broke after the call was sent: outcome unknown.
    #[error("connection broken: {0} (outcome unknown)")]
    Transport(String),
    #[error("unexpected response: {0}")]
    Decode(String),
}

fn request_id_note(id: &Option<String>) -> String {
    id.as_ref()
        .map(|i| format!(" request_id={i}"))
        .unwrap_or_default()
}

impl ApiError {
    /// Worth another try after a backoff: rate limits, server errors, network.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Timeout(_) | Self::Connect(_) | Self::Transport(_) => {
                true
            }
            Self::Status { status, .. } => *status >= 500,
            Self::NotFound { .. } | Self::Decode(_) => false,
        }
    }

    /// The request may have reached Heroku and acted: a DELETE must not be
    /// repeated before evidence says whether it did. A 502/504 is a gateway
    /// that lost the backend's answer — the backend may have restarted the
    /// dyno; a 500/503 is Heroku's own "did not do it".
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Transport(_))
            || matches!(
                self,
                Self::Status {
                    status: 502 | 504,
                    ..
                }
            )
    }

    /// The `Request-Id` Heroku gave, if it answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::NotFound { request_id }
            | Self::RateLimited { request_id, .. }
            | Self::Status { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    fn from_reqwest(e: reqwest::Error, timeout: Duration) -> Self {
        if e.is_timeout() {
            Self::Timeout(timeout)
        } else if e.is_connect() {
            Self::Connect(e.without_url().to_string())
        } else {
            // Drop the URL: webhooks and log-session URLs can carry secrets.
            Self::Transport(e.without_url().to_string())
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(v)
        .ok()?;
    let wait = when.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// `GET /apps/{app}/dynos/{dyno}`: what the restarter needs as evidence.
#[derive(Debug, Clone, Deserialize)]
pub struct DynoInfo {
    pub name: String,
    #[serde(default)]
    pub state: Option<String>,
    /// When this instance of the dyno was created (a restart makes a new one).
    pub created_at: Option<jiff::Timestamp>,
    /// The last state change.
    pub updated_at: Option<jiff::Timestamp>,
}

/// A successful call's receipt.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub status: u16,
    pub request_id: Option<String>,
}

/// One entry of `GET /apps/{app}/releases`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Release {
    pub version: u64,
    pub created_at: jiff::Timestamp,
    #[serde(default)]
    pub user: Option<ReleaseUser>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ReleaseUser {
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FormationEntry {
    #[serde(rename = "type")]
    pub process_type: String,
    pub quantity: u32,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub dyno_size: Option<NamedRef>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NamedRef {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DynoSize {
    pub name: String,
    /// GB as a float (0.5 = 512 MB).
    pub memory: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogSession {
    pub logplex_url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogDrain {
    #[serde(default)]
    pub id: Option<String>,
    pub url: String,
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Feature {
    pub name: String,
    pub enabled: bool,
}

/// Per-account pacing: 429s and a low `RateLimit-Remaining` slow every call
/// made with that token.
#[derive(Debug, Default)]
struct Pacer {
    /// Keyed by a hash of the token (never the token itself).
    paused_until: Mutex<HashMap<[u8; 8], Instant>>,
}

impl Pacer {
    fn key(token: &SecretString) -> [u8; 8] {
        let d = Sha256::digest(token.expose_secret().as_bytes());
        let mut k = [0; 8];
        k.copy_from_slice(&d[..8]);
        k
    }

    fn wait_for(&self, token: &SecretString) -> Option<Duration> {
        let map = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&Self::key(token))
            .and_then(|t| t.checked_duration_since(Instant::now()))
    }

    fn pause(&self, token: &SecretString, d: Duration) {
        let mut map = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + d;
        let e = map.entry(Self::key(token)).or_insert(until);
        if *e < until {
            *e = until;
        }
    }
}

#[derive(Debug)]
pub struct HerokuClient {
    http: reqwest::Client,
    timeout: Duration,
    base: String,
    rate_remaining: AtomicI64,
    pacer: Pacer,
    /// Calls by HTTP status (0: no response), for `/metrics`.
    calls: Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl HerokuClient {
    pub fn new(base_url: &str) -> Result<Self, ApiError> {
        Self::with_timeout(base_url, TIMEOUT)
    }

    /// A client whose calls give up after `timeout` (`DYNOGUARD_API_TIMEOUT`).
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("dynoguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            timeout,
            base: base_url.trim_end_matches('/').to_owned(),
            rate_remaining: AtomicI64::new(-1),
            pacer: Pacer::default(),
            calls: Mutex::default(),
        })
    }

    /// API calls made so far, by HTTP status (0: no response).
    pub fn calls_by_status(&self) -> Vec<(u16, u64)> {
        let m = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn count(&self, status: u16) {
        let mut m = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(status).or_default() += 1;
    }

    /// The last `RateLimit-Remaining` seen (-1: none yet).
    /// The last `RateLimit-Remaining` seen (`None` before any answer had one).
    pub fn rate_limit_remaining(&self) -> Option<i64> {
        Some(self.rate_remaining.load(Ordering::Relaxed)).filter(|n| *n >= 0)
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &SecretString,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .bearer_auth(token.expose_secret())
    }

    async fn send(
        &self,
        token: &SecretString,
        rb: reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, Receipt), ApiError> {
        self.send_with_secrets(token, rb, &[]).await
    }

    /// [`Self::send`] for a call that carries secrets besides the token (a
    /// drain URL's password): the API may quote them back in its error.
    async fn send_with_secrets(
        &self,
        token: &SecretString,
        rb: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<(reqwest::Response, Receipt), ApiError> {
        if let Some(wait) = self.pacer.wait_for(token) {
            tokio::time::sleep(wait).await;
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                self.count(0);
                return Err(ApiError::from_reqwest(e, self.timeout));
            }
        };
        let status = resp.status();
        self.count(status.as_u16());
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut known: Vec<&str> = secrets.to_vec();
        known.push(token.expose_secret());
        // Everything the API says goes through the redaction before it is
        // kept: an error or log line made of it can then never hold a secret.
        let request_id = header("request-id").map(|id| redact_api_text(&id, &known));
        tracing::debug!(
            "Platform API {} → {} request_id={}",
            resp.url().path(),
            status.as_u16(),
            request_id.as_deref().unwrap_or("-")
        );
        if let Some(rem) = header("ratelimit-remaining").and_then(|v| v.trim().parse::<i64>().ok())
        {
            self.rate_remaining.store(rem, Ordering::Relaxed);
            if rem < LOW_RATE_LIMIT {
                // ~75 tokens refill per minute: space calls about a second apart.
                self.pacer.pause(token, Duration::from_millis(800));
            }
        }
        if status.is_success() {
            return Ok((
                resp,
                Receipt {
                    status: status.as_u16(),
                    request_id,
                },
            ));
        }
        let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v));
        let body = resp.text().await.unwrap_or_default();
        Err(match status {
            StatusCode::NOT_FOUND => ApiError::NotFound { request_id },
            StatusCode::TOO_MANY_REQUESTS => {
                self.pacer.pause(
                    token,
                    retry_after
                        .unwrap_or(Duration::from_secs(5))
                        .min(Duration::from_secs(120)),
                );
                ApiError::RateLimited {
                    retry_after,
                    request_id,
                }
            }
            _ => ApiError::Status {
                status: status.as_u16(),
                message: redact_api_text(&error_message(&body), &known),
                request_id,
            },
        })
    }

    /// [`Self::send`], then the body as JSON.
    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        token: &SecretString,
        rb: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<T, ApiError> {
        let (resp, _) = self.send_with_secrets(token, rb, secrets).await?;
        resp.json()
            .await
            .map_err(|e| ApiError::Decode(e.without_url().to_string()))
    }

    /// `DELETE /apps/{app}/dynos/{dyno}`: restart one dyno.
    pub async fn restart_dyno(
        &self,
        token: &SecretString,
        app: &AppName,
        dyno: &DynoName,
    ) -> Result<Receipt, ApiError> {
        let rb = self.request(
            reqwest::Method::DELETE,
            &format!("/apps/{app}/dynos/{dyno}"),
            token,
        );
        self.send(token, rb).await.map(|(_, r)| r)
    }

    /// `GET /apps/{app}/dynos/{dyno}`: the dyno's current instance, as
    /// evidence of whether a restart whose answer was lost took effect.
    pub async fn dyno_info(
        &self,
        token: &SecretString,
        app: &AppName,
        dyno: &DynoName,
    ) -> Result<DynoInfo, ApiError> {
        let rb = self.request(
            reqwest::Method::GET,
            &format!("/apps/{app}/dynos/{dyno}"),
            token,
        );
        self.send_json(token, rb, &[]).await
    }

    /// `GET /apps/{app}/dynos`: every dyno of the app, one-off ones included
    /// (`setup --restart` restarts them one at a time).
    pub async fn list_dynos(
        &self,
        token: &SecretString,
        app: &AppName,
    ) -> Result<Vec<DynoInfo>, ApiError> {
        let rb = self.request(reqwest::Method::GET, &format!("/apps/{app}/dynos"), token);
        self.send_json(token, rb, &[]).await
    }

    /// `GET /apps/{app}`: the app's `web_url` (`https://name-1a2b3c.herokuapp.com/`;
    /// newer apps carry a random suffix, so it cannot be derived from the
    /// name).
    pub async fn app_web_url(
        &self,
        token: &SecretString,
        app: &AppName,
    ) -> Result<Option<String>, ApiError> {
        #[derive(Deserialize)]
        struct App {
            #[serde(default)]
            web_url: Option<String>,
        }
        let rb = self.request(reqwest::Method::GET, &format!("/apps/{app}"), token);
        let a: App = self.send_json(token, rb, &[]).await?;
        Ok(a.web_url.filter(|u| !u.trim().is_empty()))
    }

    /// `GET /account/rate-limits` (free): proves the token works.
    pub async fn rate_limit(&self, token: &SecretString) -> Result<i64, ApiError> {
        #[derive(Deserialize)]
        struct Remaining {
            remaining: i64,
        }
        let rb = self.request(reqwest::Method::GET, "/account/rate-limits", token);
        let r: Remaining = self.send_json(token, rb, &[]).await?;
        Ok(r.remaining)
    }

    /// `POST /apps/{app}/log-sessions` (tail, platform lines only).
    pub async fn create_log_session(
        &self,
        token: &SecretString,
        app: &AppName,
    ) -> Result<LogSession, ApiError> {
        let rb = self
            .request(
                reqwest::Method::POST,
                &format!("/apps/{app}/log-sessions"),
                token,
            )
            .json(&serde_json::json!({"tail": true, "source": "heroku", "lines": 10}));
        self.send_json(token, rb, &[]).await
    }

    /// Opens a log session's stream (no token: the URL is pre-authorised).
    pub async fn open_stream(&self, url: &str) -> Result<reqwest::Response, ApiError> {
        // No overall timeout: a tail stream is meant to stay open.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("dynoguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| ApiError::from_reqwest(e, Duration::from_secs(10)))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(ApiError::Status {
                status,
                message: redact_api_text(&error_message(&body), &url_secrets(url)),
                request_id: None,
            });
        }
        Ok(resp)
    }

    /// `GET /apps/{app}/formation`.
    pub async fn formation(
        &self,
        token: &SecretString,
        app: &AppName,
    ) -> Result<Vec<FormationEntry>, ApiError> {
        let rb = self.request(
            reqwest::Method::GET,
            &format!("/apps/{app}/formation"),
            token,
        );
        self.send_json(token, rb, &[]).await
    }

    /// `GET /apps/{app}/releases`, the newest 20 (for the charts' release
    /// markers when the log did not carry them).
    pub async fn releases(
        &self,
        token: &SecretString,
        app: &AppName,
    ) -> Result<Vec<Release>, ApiError> {
        let rb = self
            .request(
                reqwest::Method::GET,
                &format!("/apps/{app}/releases"),
                token,
            )
            .header("Range", "version ..; order=desc, max=20");
        self.send_json(token, rb, &[]).await
    }

    /// `GET /dyno-sizes`.
    pub async fn dyno_sizes(&self, token: &SecretString) -> Result<Vec<DynoSize>, ApiError> {
        let rb = self.request(reqwest::Method::GET, "/dyno-sizes", token);
        self.send_json(token, rb, &[]).await
    }

    /// Quota in MB per process type, from the formation and dyno sizes.
    pub async fn type_quotas(
        &self,
        token: &SecretString,
        app: &AppName,
    ) -> Result<HashMap<String, f64>, ApiError> {
        let formation = self.formation(token, app).await?;
        let sizes: HashMap<String, f64> = self
            .dyno_sizes(token)
            .await
            .map(|v| {
                v.into_iter()
                    .map(|s| (s.name.to_ascii_lowercase(), s.memory * 1024.0))
                    .collect()
            })
            .unwrap_or_default();
        Ok(formation
            .into_iter()
            .filter_map(|f| {
                let size = f
                    .dyno_size
                    .and_then(|d| d.name)
                    .or(f.size)?
                    .to_ascii_lowercase();
                let mb = sizes
                    .get(&size)
                    .copied()
                    .or_else(|| crate::domain::quota_for_size(&size))?;
                Some((f.process_type, mb))
            })
            .collect())
    }

    pub async fn feature(
        &self,
        token: &SecretString,
        app: &AppName,
        name: &str,
    ) -> Result<Feature, ApiError> {
        let rb = self.request(
            reqwest::Method::GET,
            &format!("/apps/{app}/features/{name}"),
            token,
        );
        self.send_json(token, rb, &[]).await
    }

    pub async fn enable_feature(
        &self,
        token: &SecretString,
        app: &AppName,
        name: &str,
    ) -> Result<Receipt, ApiError> {
        let rb = self
            .request(
                reqwest::Method::PATCH,
                &format!("/apps/{app}/features/{name}"),
                token,
            )
            .json(&serde_json::json!({"enabled": true}));
        self.send(token, rb).await.map(|(_, r)| r)
    }

    pub async fn log_drains(
        &self,
        token: &SecretString,
        app: &AppName,
    ) -> Result<Vec<LogDrain>, ApiError> {
        let rb = self.request(
            reqwest::Method::GET,
            &format!("/apps/{app}/log-drains"),
            token,
        );
        self.send_json(token, rb, &[]).await
    }

    /// `DELETE /apps/{app}/log-drains/{id-or-url-or-token}`.
    pub async fn remove_log_drain(
        &self,
        token: &SecretString,
        app: &AppName,
        id: &str,
    ) -> Result<(), ApiError> {
        // The id may be the drain's URL, password and all.
        let secrets = url_secrets(id);
        let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        let rb = self.request(
            reqwest::Method::DELETE,
            &format!("/apps/{app}/log-drains/{id}"),
            token,
        );
        self.send_with_secrets(token, rb, &secrets)
            .await
            .map(|_| ())
    }

    pub async fn add_log_drain(
        &self,
        token: &SecretString,
        app: &AppName,
        url: &str,
    ) -> Result<LogDrain, ApiError> {
        let rb = self
            .request(
                reqwest::Method::POST,
                &format!("/apps/{app}/log-drains"),
                token,
            )
            .json(&serde_json::json!({"url": url}));
        // Heroku's 422 quotes the URL it refused ("Url https://… is invalid").
        self.send_json(token, rb, &url_secrets(url)).await
    }
}

/// The password of `url` as it was written, if it has one (a drain URL).
fn url_secrets(url: &str) -> Vec<&str> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    // Up to the last `@` of the authority: the password may hold `@ / ? #`
    // when it was not encoded.
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return Vec::new();
    };
    match rest[..at].split_once(':') {
        Some((_, pw)) if !pw.is_empty() => vec![pw],
        _ => Vec::new(),
    }
}

/// Shortest secret replaced wherever it occurs: shorter ones would mask
/// ordinary words (the userinfo rule still covers them inside URLs).
const MIN_SECRET: usize = 6;

/// Text the Platform API sent back (an error message, an id), fit to print:
/// each of `secrets` (the API token, a drain password) is replaced by `***`
/// in every spelling it may come back in — raw, percent-decoded,
/// percent-encoded as a URL's userinfo, form-encoded — and so is the
/// userinfo of any `scheme://user:pass@` in it. The API quotes what it
/// refused ("Url https://user:PASSWORD@host/logs is invalid"), and a
/// message is printed and logged as it is.
pub fn redact_api_text(text: &str, secrets: &[&str]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for s in secrets {
        let raw = percent_decode(s);
        for base in [s.to_string(), raw] {
            let encoded = userinfo_encoded(&base);
            let form: String = url::form_urlencoded::byte_serialize(base.as_bytes()).collect();
            let form_of_encoded: String =
                url::form_urlencoded::byte_serialize(encoded.as_bytes()).collect();
            forms.extend([
                base.clone(),
                encoded,
                form,
                form_of_encoded,
                all_encoded(&base, false),
                all_encoded(&base, true),
            ]);
        }
    }
    forms.retain(|f| f.len() >= MIN_SECRET);
    // Longest first: a form that contains another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    let mut out = text.to_owned();
    for f in &forms {
        if out.contains(f.as_str()) {
            out = out.replace(f.as_str(), "***");
        }
    }
    redact_userinfo(&out)
}

/// `scheme://user:pass@host` → `scheme://***@host`, everywhere in `text`.
/// The userinfo runs to the last `@` before the next space or quote, since
/// a password that was not encoded may hold `@ : / ? #`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// `s` as the `url` crate writes a password into a URL.
fn userinfo_encoded(s: &str) -> String {
    let Ok(mut u) = url::Url::parse("https://user@host") else {
        return s.to_owned();
    };
    if u.set_password(Some(s)).is_err() {
        return s.to_owned();
    }
    u.password().unwrap_or(s).to_owned()
}

/// Every byte but RFC 3986's unreserved ones as `%XX`.
fn all_encoded(s: &str, lower: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// In `domain` so the simulated Heroku can decode what it echoes without
// importing the client it stands in for.
pub use crate::domain::secret::percent_decode;

/// The `message` of a Heroku error body, else a short excerpt.
fn error_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct ErrBody {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_str::<ErrBody>(body) {
        Ok(ErrBody {
            id,
            message: Some(m),
        }) => match id {
            Some(id) => format!("{id}: {m}"),
            None => m,
        },
        _ => body.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        assert_eq!(parse_retry_after("30"), Some(Duration::from_secs(30)));
        let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(90);
        let date = soon.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let d = parse_retry_after(&date).expect("an HTTP date");
        assert!((85..=91).contains(&d.as_secs()), "{date} → {d:?}");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    const PW: &str = "p@ss:w/rd?#%";

    #[test]
    fn a_quoted_drain_url_loses_its_password_in_every_spelling() {
        let url = format!("https://user:{}@host/logs", userinfo_encoded(PW));
        let secrets = url_secrets(&url);
        for quoted in [
            format!("Url https://user:{PW}@host/logs is invalid"),
            format!("Url {url} is invalid"),
            format!("\"url\":\"{}\"", all_encoded(PW, true)),
            format!("password {} refused", all_encoded(PW, false)),
        ] {
            let shown = redact_api_text(&quoted, &secrets);
            for leak in [PW, "p@ss", "w/rd", "p%40ss", "p%40"] {
                assert!(!shown.contains(leak), "{leak:?} in {shown:?}");
            }
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(
            redact_api_text(&format!("Url https://user:{PW}@host/logs is invalid"), &[]),
            "Url https://***@host/logs is invalid"
        );
    }

    #[test]
    fn the_token_is_masked_and_plain_text_is_left_alone() {
        let t = "0123abcd-token";
        assert_eq!(
            redact_api_text(&format!("bad token {t}."), &[t]),
            "bad token ***."
        );
        let plain = "Couldn't find that app. See https://devcenter.heroku.com/x (id: not_found)";
        assert_eq!(redact_api_text(plain, &[t, "short"]), plain);
    }
}
