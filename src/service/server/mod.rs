//! The HTTP surface (SPEC §9): drain endpoints, health, JSON API, metrics and
//! the dashboard. Typed errors stop here and become status codes.

mod api;
mod auth;
pub mod chart;
pub mod dashboard;
mod drain;
pub mod listen;
pub mod metrics;
mod respond;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::service::Shared;

pub use crate::service::replicas::FrameIdCache;

pub fn router(shared: Arc<Shared>, body_timeout: std::time::Duration) -> Router {
    let state = drain::DrainState::new(shared.clone(), body_timeout);
    // Drain bodies are read by the handler itself, after the credentials
    // were checked, with the limit and a deadline.
    let drains = Router::new()
        .route("/logs", post(drain::post_logs))
        .route("/logs/{app}", post(drain::post_app_logs))
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    // Everything behind the dashboard password, checked by one layer.
    let protected = Router::new()
        .route("/api/apps", get(api::apps))
        .route("/api/dynos", get(api::dynos))
        .route("/api/dynos/{app}/{dyno}/history", get(api::history))
        .route("/api/events", get(api::events))
        .route("/api/incidents", get(api::incidents))
        .route("/api/openapi.json", get(api::openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(dashboard::dashboard))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::require_dashboard_password,
        ))
        .with_state(shared.clone());
    let public = Router::new()
        .route("/healthz", get(api::healthz))
        .with_state(shared);
    drains.merge(protected).merge(public)
}
