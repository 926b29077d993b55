//! HTTP basic auth with constant-time password comparison.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
    let Some(p) = provided else { return false };
    let a = Sha256::digest(p.as_bytes());
    let b = Sha256::digest(expected.expose_secret().as_bytes());
    a.ct_eq(&b).into()
}

pub fn unauthorized() -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"dynoguard\""),
    );
    r
}
