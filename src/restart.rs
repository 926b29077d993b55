//! The restarter: claim → call → record, one task per order so restarts of
//! different dynos run concurrently and a slow API never blocks ingestion.
//!
//! Right before calling it re-checks the newest state (earlyoom's rule): if a
//! new instance already replaced the one the order was for, nothing is done.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::app::AppRuntime;
use crate::events::{Event, EventKind};
use crate::heroku_api::{ApiError, HerokuClient};
use crate::report::Reporter;
use crate::store::{self, RestartRow, Store};

/// A restart the policy ordered.
#[derive(Debug, Clone)]
pub struct RestartOrder {
    pub app: Arc<AppRuntime>,
    /// The `restart` event the policy produced (dyno, instance, reason, memory).
    pub event: Event,
}

#[derive(Debug, Clone)]
pub struct RestartContext {
    pub store: Store,
    pub client: Arc<HerokuClient>,
    pub reporter: Reporter,
    /// Identifies this replica in claims.
    pub holder: String,
    /// Calls per order before giving up (429/5xx/timeouts are retried).
    pub attempts: u32,
    /// First backoff; doubles per attempt, with jitter.
    pub retry_base: Duration,
}

/// Runs until `shutdown` turns true, then finishes the orders already queued
/// and in flight.
pub async fn run(
    ctx: RestartContext,
    mut rx: mpsc::UnboundedReceiver<RestartOrder>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            order = rx.recv() => match order {
                Some(o) => { tasks.spawn(execute(ctx.clone(), o)); }
                None => break,
            },
            _ = shutdown.wait_for(|s| *s) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    rx.close();
    while let Ok(o) = rx.try_recv() {
        tasks.spawn(execute(ctx.clone(), o));
    }
    while tasks.join_next().await.is_some() {}
}

pub async fn execute(ctx: RestartContext, order: RestartOrder) {
    let app = &order.app;
    let e = &order.event;
    let Some(dyno) = e.dyno.clone() else { return };
    let policy = app
        .config
        .policy
        .for_type(dyno.process_type())
        .cloned()
        .unwrap_or_default();

    // Re-check the newest sample: was the instance replaced meanwhile?
    {
        let w = app.lock();
        if let Some(s) = w.dyno(&dyno)
            && s.instance.is_some()
            && s.instance != e.instance
        {
            tracing::info!(
                "{} {dyno}: instance already replaced; restart not needed",
                app.config.name
            );
            return;
        }
    }

    let now = Timestamp::now();
    let expires = now
        .as_millisecond()
        .saturating_add(policy.restart_window.as_millis() as i64);
    match ctx
        .store
        .try_claim(
            app.config.name.as_str(),
            dyno.as_str(),
            e.instance.as_deref(),
            &ctx.holder,
            now.as_millisecond(),
            expires,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            // Another replica (or an earlier run) holds it: that one restarts.
            tracing::info!(
                "{} {dyno}: restart already claimed elsewhere; not restarting",
                app.config.name
            );
            return;
        }
        Err(err) => {
            // Without the store we cannot prove we are alone: do not act.
            app.lock().restart_failed(&dyno);
            fail(
                &ctx,
                &order,
                format!("store unavailable for the claim: {err}"),
                None,
            )
            .await;
            return;
        }
    }

    let Some(token) = app.config.api_token.clone() else {
        app.lock().restart_failed(&dyno);
        let _ = ctx
            .store
            .release_claim(app.config.name.as_str(), dyno.as_str(), &ctx.holder)
            .await;
        fail(&ctx, &order, "no API token configured".into(), None).await;
        return;
    };

    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        match ctx
            .client
            .restart_dyno(&token, &app.config.name, &dyno)
            .await
        {
            Ok(r) => break Ok(r),
            Err(err) if err.is_retryable() && attempt < ctx.attempts => {
                let wait = match &err {
                    ApiError::RateLimited {
                        retry_after: Some(d),
                        ..
                    } => (*d).min(Duration::from_secs(60)),
                    _ => ctx.retry_base.mul_f64(
                        f64::from(1u32 << (attempt - 1).min(10)) * (0.5 + fastrand::f64()),
                    ),
                };
                tracing::warn!(
                    "{} {dyno}: restart attempt {attempt} failed ({err}); retrying in {:.1}s",
                    app.config.name,
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
            Err(err) => break Err(err),
        }
    };

    match result {
        Ok(receipt) => {
            let mut ev = e.clone();
            ev.at = Timestamp::now();
            ev.dry_run = Some(false);
            if let Some(id) = &receipt.request_id {
                ev.detail = Some(format!("request_id={id}"));
            }
            let row = RestartRow {
                app: app.config.name.to_string(),
                dyno: dyno.to_string(),
                instance: e.instance.clone(),
                reason: e.reason.map_or("threshold", |r| r.as_str()).to_owned(),
                at: store::millis(ev.at),
                outcome: "ok".into(),
                request_id: receipt.request_id.clone(),
                detail: None,
            };
            if let Err(err) = ctx.store.record_restart(&row).await {
                tracing::error!(
                    "{} {dyno}: restarted, but recording it failed: {err}",
                    app.config.name
                );
            }
            ctx.reporter.emit(ev);
        }
        Err(err) => {
            if matches!(err, ApiError::NotFound { .. }) {
                // Scaled down or renamed: forget it rather than retry.
                app.lock().forget(&dyno);
            } else {
                app.lock().restart_failed(&dyno);
            }
            if let Err(se) = ctx
                .store
                .release_claim(app.config.name.as_str(), dyno.as_str(), &ctx.holder)
                .await
            {
                tracing::error!(
                    "{} {dyno}: releasing the claim failed: {se}",
                    app.config.name
                );
            }
            let request_id = match &err {
                ApiError::NotFound { request_id }
                | ApiError::RateLimited { request_id, .. }
                | ApiError::Status { request_id, .. } => request_id.clone(),
                _ => None,
            };
            fail(&ctx, &order, err.to_string(), request_id).await;
        }
    }
}

async fn fail(
    ctx: &RestartContext,
    order: &RestartOrder,
    detail: String,
    request_id: Option<String>,
) {
    let e = &order.event;
    let mut ev = e.clone();
    ev.at = Timestamp::now();
    ev.event = EventKind::RestartFailed;
    ev.detail = Some(detail.clone());
    let row = RestartRow {
        app: e.app.to_string(),
        dyno: e.dyno.as_ref().map(|d| d.to_string()).unwrap_or_default(),
        instance: e.instance.clone(),
        reason: e.reason.map_or("threshold", |r| r.as_str()).to_owned(),
        at: store::millis(ev.at),
        outcome: "failed".into(),
        request_id,
        detail: Some(detail),
    };
    if let Err(err) = ctx.store.record_restart(&row).await {
        tracing::error!("recording a failed restart failed: {err}");
    }
    ctx.reporter.emit(ev);
}
