//! HTTP basic auth with constant-time password comparison.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::service::Shared;

/// The password of a `Basic` Authorization header (any user name).
pub fn password(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (_user, pass) = s.split_once(':')?;
    Some(pass.to_owned())
}

/// Constant-time: both sides are hashed to the same length first.
pub fn matches(provided: Option<&str>, expected: &SecretString) -> bool {
    matches_digest(provided, &PasswordDigest::of(expected))
}

/// A configured password, hashed once (the drain path checks one per
/// batch: hashing the expected side each time doubled the cost).
#[derive(Clone)]
pub struct PasswordDigest([u8; 32]);

impl PasswordDigest {
    pub fn of(password: &SecretString) -> Self {
        Self(Sha256::digest(password.expose_secret().as_bytes()).into())
    }
}

impl std::fmt::Debug for PasswordDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordDigest(..)")
    }
}

/// [`matches`] against a digest made beforehand: the same answer.
pub fn matches_digest(provided: Option<&str>, expected: &PasswordDigest) -> bool {
    let Some(p) = provided else { return false };
    let a = Sha256::digest(p.as_bytes());
    a.as_slice().ct_eq(&expected.0).into()
}

/// The dashboard password: closed when none is configured (the start-up
/// log says how to open it).
pub fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    s.config
        .server
        .dashboard_password
        .as_ref()
        .is_some_and(|pw| matches(password(headers).as_deref(), pw))
}

/// One layer in front of every route behind the dashboard password (the
/// page, `/api/*`, `/metrics`): no handler checks credentials itself.
pub async fn require_dashboard_password(
    State(s): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    if authorized(&s, req.headers()) {
        next.run(req).await
    } else {
        unauthorized()
    }
}

pub fn unauthorized() -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"dynoguard\""),
    );
    r
}
