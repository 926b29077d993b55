//! The restarter: re-check → claim (a short lease) → call → record, one task
//! per order so restarts of different dynos run concurrently and a slow API
//! never blocks ingestion.
//!
//! A dyno restart is not idempotent: `DELETE …/dynos/web.1` restarts whatever
//! holds the name *now*. So:
//! - right before calling, the order is re-checked against the newest state
//!   (earlyoom's rule): an instance already replaced is not restarted, the
//!   order is dropped and the engine's bookkeeping rolled back;
//! - a call whose outcome is unknown (timeout, broken connection) is never
//!   repeated by the restarter: evidence of success — a newer instance in the
//!   logs, or the dyno's `created_at`/`updated_at`/`state` from
//!   `GET …/dynos/{dyno}` — confirms it; anything else (the GET may lag, and
//!   an accepted restart leaves the old instance logging for 30 s or more)
//!   counts it as made. The engine allows one more call only if the same
//!   instance is still reporting well past the time a restart takes
//!   ([`crate::decide::state::UNKNOWN_GRACE`] of log time);
//! - the claim is stamped with the decision's log time: a lease (wall clock)
//!   while the call is in flight, then the window, `restart_window` from the
//!   decision — the engine's clock — so our own claim never refuses our own
//!   later decision. A run killed mid-call leaves its lease, which the next
//!   start reads as an unknown outcome (never deletes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use secrecy::SecretString;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::act::heroku_api::{ApiError, HerokuClient};
use crate::act::report::Reporter;
use crate::decide::engine::SharedEngine;
use crate::domain::DynoName;
use crate::domain::event::{Event, EventKind};
use crate::store::replicas::{Fence, Leadership};
use crate::store::{self, ClaimKind, ClaimRequest, RestartRow, Store};

/// A restart the engine ordered.
#[derive(Debug, Clone)]
pub struct RestartOrder {
    pub engine: Arc<SharedEngine>,
    pub api_token: Option<SecretString>,
    /// The `restart` event the engine produced (dyno, instance, reason,
    /// memory, and the log time of the decision).
    pub event: Event,
}

/// Claims held in memory while the store is unavailable, so protection goes
/// on (on one replica; several could then restart the same dyno — reported),
/// and the windows the store did not take, written to it once it is back
/// ([`LocalClaims::sync`]): a replica that restarted a dyno during an
/// outage must keep the others from restarting the same instance after it.
#[derive(Debug, Default)]
pub struct LocalClaims {
    held: Mutex<HashMap<(String, String), i64>>,
    unsynced: Mutex<Vec<WindowClaim>>,
}

/// A restart window the store has not recorded yet.
#[derive(Debug, Clone)]
struct WindowClaim {
    app: String,
    dyno: String,
    instance: Option<String>,
    /// The decision's log time, and the window's end (unix ms).
    decided_at: i64,
    expires_at: i64,
}

impl LocalClaims {
    /// Writes the windows the store missed; true when none is left.
    pub async fn sync(&self, store: &Store, holder: &str) -> bool {
        let pending: Vec<WindowClaim> =
            std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(|e| e.into_inner()));
        let mut left = Vec::new();
        for w in pending {
            let written = store
                .keep_window(&ClaimRequest {
                    app: &w.app,
                    dyno: &w.dyno,
                    instance: w.instance.as_deref(),
                    holder,
                    decided_at: w.decided_at,
                    wall_now: 0,
                    lease_until: w.expires_at,
                })
                .await;
            match written {
                Ok(()) => tracing::info!(
                    "{} {}: the restart window this replica held in memory during the store outage is recorded",
                    w.app,
                    w.dyno
                ),
                Err(_) => left.push(w),
            }
        }
        let done = left.is_empty();
        self.unsynced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(left);
        done
    }

    fn missed(&self, w: WindowClaim) {
        let mut u = self.unsynced.lock().unwrap_or_else(|e| e.into_inner());
        u.retain(|x| (&x.app, &x.dyno) != (&w.app, &w.dyno));
        u.push(w);
    }

    fn try_claim(&self, app: &str, dyno: &str, now: i64, expires: i64) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|_, exp| *exp > now);
        let key = (app.to_owned(), dyno.to_owned());
        if held.contains_key(&key) {
            return false;
        }
        held.insert(key, expires);
        true
    }

    fn set(&self, app: &str, dyno: &str, expires: Option<i64>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let key = (app.to_owned(), dyno.to_owned());
        match expires {
            Some(e) => {
                held.insert(key, e);
            }
            None => {
                held.remove(&key);
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestartContext {
    pub store: Store,
    pub client: Arc<HerokuClient>,
    pub reporter: Reporter,
    /// Identifies this replica in claims.
    pub holder: String,
    /// Calls per order before giving up (429/5xx/connection failures are
    /// retried; an unknown outcome only after proof the call did not act).
    pub attempts: u32,
    /// First backoff; doubles per attempt, with jitter.
    pub retry_base: Duration,
    /// How long a claim holds while its call is in flight.
    pub lease: Duration,
    pub local_claims: Arc<LocalClaims>,
    /// Restart records that could not be written; the event writer retries.
    pub pending_restarts: Arc<Mutex<Vec<RestartRow>>>,
    /// This replica's role: only the leader (or a single process) claims
    /// and calls, and its claims carry its epoch.
    pub leadership: Arc<Leadership>,
}

/// Runs until `shutdown` turns true, then finishes the orders already queued
/// and in flight within `deadline`; calls still open then are abandoned
/// (their leases expire and the next start takes over).
pub async fn run(
    ctx: RestartContext,
    mut rx: mpsc::UnboundedReceiver<RestartOrder>,
    mut shutdown: watch::Receiver<bool>,
    deadline: Duration,
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
    let finished = tokio::time::timeout(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            "shutdown deadline ({}s): abandoning {} restart call(s) in flight; their claims are leases the next start takes over",
            deadline.as_secs(),
            tasks.len()
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// What one order came to.
enum Outcome {
    /// The API accepted the call.
    Done { request_id: Option<String> },
    /// The answer was lost, but evidence shows the dyno was replaced.
    Replaced { evidence: String },
    /// The call failed and did not act.
    Failed(ApiError),
    /// No answer and no evidence either way: not repeated.
    Unknown { error: ApiError, evidence: String },
}

/// Evidence about a call whose answer was lost.
enum Evidence {
    Replaced(String),
    /// Nothing proves it acted (which does not prove it did not).
    Unknown(String),
}

/// One order: re-check → claim → call → settle.
pub async fn execute(ctx: RestartContext, order: RestartOrder) {
    let e = &order.event;
    let Some(dyno) = e.dyno.clone() else { return };

    // Re-check the newest state: was the instance replaced meanwhile?
    if replaced_in_logs(&order, &dyno) {
        tracing::info!(
            "{} {dyno}: instance already replaced; restart not needed",
            order.engine.app()
        );
        let dropped = order.engine.lock().order_dropped(e);
        if let Some(ev) = dropped {
            ctx.reporter.emit(ev);
        }
        return;
    }
    let Some(token) = order.api_token.clone() else {
        order.engine.lock().restart_failed(e);
        fail(&ctx, &order, "no API token configured".into(), None).await;
        return;
    };
    if !claim(&ctx, &order, &dyno).await {
        return;
    }
    if let Some(outcome) = call(&ctx, &order, &token, &dyno).await {
        settle(&ctx, &order, &dyno, outcome).await;
    }
}

/// Takes the claim (fenced by the leader's epoch with several replicas;
/// in memory while the store is down). False: the order ended here, said.
async fn claim(ctx: &RestartContext, order: &RestartOrder, dyno: &DynoName) -> bool {
    let e = &order.event;
    let app = order.engine.app();
    if let Some(wait) = ctx.leadership.settling() {
        // A lead taken right after a store outage: the windows other
        // replicas held in memory during it are still on their way.
        tracing::info!(
            "{app} {dyno}: waiting {:.1}s for the other replicas' restart windows from the store outage",
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }
    let lease_ms = ctx.lease.as_millis() as i64;
    let now = Timestamp::now().as_millisecond();
    let fence = match ctx.leadership.fence() {
        Fence::Open => None,
        Fence::Epoch(epoch) => Some(epoch),
        Fence::Closed(why) => {
            not_the_leader(ctx, order, why);
            return false;
        }
    };
    let request = ClaimRequest {
        app: app.as_str(),
        dyno: dyno.as_str(),
        instance: e.instance.as_deref(),
        holder: &ctx.holder,
        decided_at: store::millis(e.at),
        wall_now: now,
        lease_until: now.saturating_add(lease_ms),
    };
    let scope = ctx.leadership.scope.as_str();
    let claimed = match ctx
        .store
        .claim_restart(&request, fence.map(|epoch| (scope, epoch)))
        .await
    {
        Ok(c) => c,
        Err(err) if fence.is_some() => {
            // A leader that cannot reach the store cannot prove it still
            // leads: no call. Its role turns `Cut` once its lease lapses,
            // and protection goes on from its own memory then.
            not_the_leader(
                ctx,
                order,
                format!("the store did not confirm this replica's lead ({err})"),
            );
            return false;
        }
        Err(err) => {
            // Protection goes on without the store, on this replica's word.
            tracing::error!(
                "{app} {dyno}: the store is unavailable for the claim ({err}); claiming in memory — other replicas cannot see this claim"
            );
            ctx.local_claims.try_claim(
                app.as_str(),
                dyno.as_str(),
                now,
                now.saturating_add(lease_ms),
            )
        }
    };
    if !claimed && fence.is_some() && !matches!(ctx.leadership.fence(), Fence::Epoch(_)) {
        not_the_leader(ctx, order, "another replica took the lead".into());
        return false;
    }
    if !claimed {
        refused(ctx, order, dyno).await;
    }
    claimed
}

/// Another holder has the claim. A window for this instance means it
/// restarted it: the window holds here too. A lease means its call is in
/// flight (or it died mid-call): back off and look again, so a stuck lease
/// costs minutes, not a window. Every refusal is an event with its reason.
async fn refused(ctx: &RestartContext, order: &RestartOrder, dyno: &DynoName) {
    let e = &order.event;
    let app = order.engine.app();
    let held = ctx.store.claim(app.as_str(), dyno.as_str()).await;
    let (detail, held_window) = match held {
        Ok(Some((holder, ClaimKind::Window, _))) => (
            format!("already restarted by {holder} (its claim holds the window); not restarting"),
            true,
        ),
        Ok(Some((holder, ..))) if holder == ctx.holder => (
            "this dynoguard's previous restart call for it is still in flight (the log runs ahead of the API); looking again after a backoff".to_owned(),
            false,
        ),
        other => {
            let holder = match other {
                Ok(Some((h, ..))) => h,
                _ => "another replica".into(),
            };
            (
                format!(
                    "{holder} is restarting it (its lease is in flight); looking again after a backoff"
                ),
                false,
            )
        }
    };
    tracing::info!("{app} {dyno}: {detail}");
    {
        let mut engine = order.engine.lock();
        if held_window {
            let _ = engine.restart_confirmed(e);
        } else {
            engine.restart_failed(e);
        }
    }
    let mut ev = e.clone();
    ev.event = EventKind::Skipped;
    ev.reason = Some(if held_window {
        crate::domain::event::Reason::Window
    } else {
        crate::domain::event::Reason::Deferred
    });
    ev.dry_run = Some(false);
    ev.detail = Some(detail);
    ctx.reporter.emit(ev);
}

/// The call, retried on failures that did not act; `None` when this
/// replica lost the lead before a call (said, claim released).
async fn call(
    ctx: &RestartContext,
    order: &RestartOrder,
    token: &SecretString,
    dyno: &DynoName,
) -> Option<Outcome> {
    let app = order.engine.app();
    let started = Timestamp::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        if attempt > 1 {
            renew_lease(ctx, order, dyno, ClaimKind::Lease, ctx.lease).await;
        }
        // Re-checked right before the call: a leader paused past its lease
        // (SIGSTOP, a stalled host) wakes up to find it lapsed, and calls
        // nothing — the replica that took over decides now. Earlier
        // attempts (if any) failed without acting: nothing is left in
        // doubt when this one is not made.
        if let Fence::Closed(why) = ctx.leadership.fence() {
            release(ctx, app, dyno).await;
            not_the_leader(ctx, order, why);
            return None;
        }
        match ctx.client.restart_dyno(token, app, dyno).await {
            Ok(r) => {
                return Some(Outcome::Done {
                    request_id: r.request_id,
                });
            }
            Err(err) if err.outcome_unknown() => {
                // Never repeated here: a GET that shows the instance up proves
                // nothing (it may lag; an accepted restart leaves the old
                // instance running for its SIGTERM grace). Only success is
                // provable; the engine decides about one more call from the
                // logs, well after a restart would have shown.
                return Some(match evidence(ctx, order, token, dyno, started).await {
                    Evidence::Replaced(evidence) => Outcome::Replaced { evidence },
                    Evidence::Unknown(evidence) => Outcome::Unknown {
                        error: err,
                        evidence,
                    },
                });
            }
            Err(err) if err.is_retryable() && attempt < ctx.attempts => {
                let wait = backoff(ctx, attempt, &err);
                tracing::warn!(
                    "{app} {dyno}: restart attempt {attempt} failed ({err}); retrying in {:.1}s",
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
            Err(err) => return Some(Outcome::Failed(err)),
        }
    }
}

/// What the outcome leaves: the window (made, or unknown), or the claim
/// released for a later decision (failed).
async fn settle(ctx: &RestartContext, order: &RestartOrder, dyno: &DynoName, outcome: Outcome) {
    let app = order.engine.app();
    let window = {
        let engine = order.engine.lock();
        engine.policy().judging(dyno.process_type()).restart_window
    };
    match outcome {
        Outcome::Done { request_id } => {
            let done = (EventKind::Restart, "ok");
            window_holds(ctx, order, dyno, window, done, request_id, None).await;
        }
        Outcome::Replaced { evidence } => {
            let detail = format!("the API's answer was lost; the dyno was replaced ({evidence})");
            tracing::warn!("{app} {dyno}: {detail}");
            let done = (EventKind::Restart, "ok");
            window_holds(ctx, order, dyno, window, done, None, Some(detail)).await;
        }
        Outcome::Unknown { error, evidence } => {
            // Maybe restarted, maybe not: repeating could restart the healthy
            // replacement. The window holds the order; the logs will tell.
            let detail = format!(
                "outcome unknown ({error}; {evidence}): counted as made, not repeated — one more call only if the same instance is still reporting {} min after the decision",
                crate::decide::state::UNKNOWN_GRACE.as_mins()
            );
            let unknown = (EventKind::RestartFailed, "unknown");
            window_holds(ctx, order, dyno, window, unknown, None, Some(detail)).await;
        }
        Outcome::Failed(err) => {
            if matches!(err, ApiError::NotFound { .. }) {
                // Scaled down or renamed: forget it rather than retry (its
                // stored latest sample too, or every page would show it).
                order.engine.lock().forget(dyno);
                if let Err(se) = ctx.store.forget_dyno(app.as_str(), dyno.as_str()).await {
                    tracing::error!("{app} {dyno}: forgetting its latest sample failed: {se}");
                }
            } else {
                order.engine.lock().restart_failed(&order.event);
            }
            release(ctx, app, dyno).await;
            let request_id = err.request_id().map(str::to_owned);
            fail(ctx, order, err.to_string(), request_id).await;
        }
    }
}

/// Lets a later decision in: this holder's claim goes (store and memory).
async fn release(ctx: &RestartContext, app: &crate::domain::AppName, dyno: &DynoName) {
    ctx.local_claims.set(app.as_str(), dyno.as_str(), None);
    if let Err(se) = ctx
        .store
        .release_claim(app.as_str(), dyno.as_str(), &ctx.holder)
        .await
    {
        tracing::error!("{app} {dyno}: releasing the claim failed: {se}");
    }
}

/// An order this replica may not carry out: it does not lead (any more).
/// Reported as `skipped`/`deferred`; the leader decides from the same
/// observations.
fn not_the_leader(ctx: &RestartContext, order: &RestartOrder, why: String) {
    let e = &order.event;
    order.engine.lock().restart_failed(e);
    tracing::warn!(
        "{} {}: not restarting — {why}",
        order.engine.app(),
        e.dyno.as_ref().map(DynoName::as_str).unwrap_or("?")
    );
    let mut ev = e.clone();
    ev.event = EventKind::Skipped;
    ev.reason = Some(crate::domain::event::Reason::Deferred);
    ev.dry_run = Some(false);
    ev.detail = Some(format!("not restarting: {why}"));
    ctx.reporter.emit(ev);
}

fn window_duration(window: jiff::SignedDuration) -> Duration {
    Duration::try_from(window).unwrap_or(Duration::from_secs(600))
}

/// Has the engine seen a newer instance than the order was for (or
/// forgotten the dyno, so the order is stale)?
fn replaced_in_logs(order: &RestartOrder, dyno: &DynoName) -> bool {
    let engine = order.engine.lock();
    match engine.current_instance(dyno) {
        None => true,
        Some(current) => {
            current.is_some_and(|current| Some(current) != order.event.instance.as_deref())
        }
    }
}

fn backoff(ctx: &RestartContext, attempt: u32, err: &ApiError) -> Duration {
    match err {
        ApiError::RateLimited {
            retry_after: Some(d),
            ..
        } => (*d).min(Duration::from_secs(60)),
        _ => ctx
            .retry_base
            .mul_f64(f64::from(1u32 << (attempt - 1).min(10)) * (0.5 + fastrand::f64())),
    }
}

/// Looks for proof of whether a call whose answer was lost acted.
async fn evidence(
    ctx: &RestartContext,
    order: &RestartOrder,
    token: &SecretString,
    dyno: &DynoName,
    started: Timestamp,
) -> Evidence {
    if replaced_in_logs(order, dyno) {
        return Evidence::Replaced("a new instance reported in the logs".into());
    }
    let app = order.engine.app();
    match ctx.client.dyno_info(token, app, dyno).await {
        Ok(info) => {
            // Heroku's clock and ours differ a little: a change within a few
            // seconds before our call counts as ours.
            let since = started - jiff::SignedDuration::from_secs(5);
            let state = info.state.as_deref().unwrap_or("up");
            if info.created_at.is_some_and(|t| t >= since) {
                Evidence::Replaced(format!("GET dyno: created_at {}", fmt(info.created_at)))
            } else if info.updated_at.is_some_and(|t| t >= since) || state != "up" {
                Evidence::Replaced(format!(
                    "GET dyno: state {state} since {}",
                    fmt(info.updated_at)
                ))
            } else {
                Evidence::Unknown(format!(
                    "GET dyno: up and unchanged since {} (which may lag the call)",
                    fmt(info.updated_at.or(info.created_at))
                ))
            }
        }
        Err(ApiError::NotFound { .. }) => {
            Evidence::Replaced("GET dyno: 404, the dyno is gone".into())
        }
        Err(err) => {
            if replaced_in_logs(order, dyno) {
                return Evidence::Replaced("a new instance reported in the logs".into());
            }
            Evidence::Unknown(format!("GET dyno failed too: {err}"))
        }
    }
}

fn fmt(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "?".into(), |t| t.to_string())
}

/// Turns the lease into the window (or renews the lease). A lease runs on
/// the wall clock (the call in flight); the window on the log clock, from
/// the decision, as the engine's window does.
async fn renew_lease(
    ctx: &RestartContext,
    order: &RestartOrder,
    dyno: &DynoName,
    kind: ClaimKind,
    hold: Duration,
) {
    let app = order.engine.app();
    let from = match kind {
        ClaimKind::Lease => Timestamp::now(),
        ClaimKind::Window => order.event.at,
    };
    let expires = from
        .as_millisecond()
        .saturating_add(hold.as_millis() as i64);
    // The in-memory fallback compares with the wall clock only.
    let local = Timestamp::now()
        .as_millisecond()
        .saturating_add(hold.as_millis() as i64);
    ctx.local_claims
        .set(app.as_str(), dyno.as_str(), Some(local));
    if let Err(err) = ctx
        .store
        .extend_claim(app.as_str(), dyno.as_str(), &ctx.holder, expires, kind)
        .await
    {
        tracing::error!("{app} {dyno}: updating the claim failed: {err}");
        if kind == ClaimKind::Window {
            ctx.local_claims.missed(WindowClaim {
                app: app.to_string(),
                dyno: dyno.to_string(),
                instance: order.event.instance.clone(),
                decided_at: store::millis(order.event.at),
                expires_at: expires,
            });
        }
    }
}

/// The restart happened (or may have: an unknown outcome is not repeated
/// either): the claim becomes the window, the outcome is recorded, the engine
/// confirms the order, and `kind` (`restart`, or `restart_failed` for an
/// unknown outcome) is reported, then `recovered` if the new instance already
/// reported.
async fn window_holds(
    ctx: &RestartContext,
    order: &RestartOrder,
    dyno: &DynoName,
    window: jiff::SignedDuration,
    (kind, outcome): (EventKind, &str),
    request_id: Option<String>,
    detail: Option<String>,
) {
    renew_lease(ctx, order, dyno, ClaimKind::Window, window_duration(window)).await;
    record(ctx, order, outcome, request_id.clone(), detail.clone()).await;
    let recovered = if outcome == "unknown" {
        order.engine.lock().restart_unknown(&order.event)
    } else {
        order.engine.lock().restart_confirmed(&order.event)
    };
    let mut ev = order.event.clone();
    ev.event = kind;
    ev.dry_run = Some(false);
    ev.detail = detail.or(ev.detail);
    ev.request_id = request_id;
    ctx.reporter.emit(ev);
    if let Some(r) = recovered {
        ctx.reporter.emit(r);
    }
}

async fn record(
    ctx: &RestartContext,
    order: &RestartOrder,
    outcome: &str,
    request_id: Option<String>,
    detail: Option<String>,
) {
    let e = &order.event;
    let row = RestartRow {
        app: e.app.to_string(),
        dyno: e.dyno.as_ref().map(|d| d.to_string()).unwrap_or_default(),
        instance: e.instance.clone(),
        reason: e.reason.map_or("threshold", |r| r.as_str()).to_owned(),
        // The decision's log time: windows seeded from this history after
        // dynoguard restarts run on the same clock as the engine's.
        at: store::millis(e.at),
        outcome: outcome.into(),
        request_id,
        detail,
    };
    ctx.reporter
        .counters
        .count_restart(&row.app, &row.dyno, &row.reason, &row.outcome);
    if let Err(err) = ctx.store.record_restart(&row).await {
        tracing::error!(
            "{} {}: recording the restart ({outcome}) failed: {err}; kept for a retry",
            row.app,
            row.dyno
        );
        ctx.pending_restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(row);
    }
}

async fn fail(
    ctx: &RestartContext,
    order: &RestartOrder,
    detail: String,
    request_id: Option<String>,
) {
    record(
        ctx,
        order,
        "failed",
        request_id.clone(),
        Some(detail.clone()),
    )
    .await;
    let mut ev = order.event.clone();
    ev.event = EventKind::RestartFailed;
    ev.detail = Some(detail);
    ev.request_id = request_id;
    ctx.reporter.emit(ev);
}
