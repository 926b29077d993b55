//! The service's background work: batched writes of events and samples,
//! the start-up self-test, forgetting silent dynos, refreshing quotas from
//! the formation. Each task ends when the stop signal turns true (or its
//! channel closes) so that shutdown can wait for it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::decide::events::Event;
use crate::domain::Megabytes;
use crate::service::{AppRuntime, Shared};
use crate::store::Store;

/// Writes events to the store in batches until the channel closes.
pub(crate) async fn write_events(store: Store, mut rx: mpsc::Receiver<Event>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        if let Err(e) = store.insert_events(&batch).await {
            tracing::error!("writing {} events failed: {e}", batch.len());
        }
        batch.clear();
    }
}

/// Writes the latest samples in one transaction every `every`.
pub(crate) async fn flush_samples(
    shared: Arc<Shared>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let rows = shared.samples.take();
        if let Err(e) = shared.store.upsert_samples(&rows).await {
            tracing::error!("writing {} samples failed: {e}", rows.len());
        }
        if stopping {
            return;
        }
    }
}

/// Start-up self-test: say what is watched and how, and prove each API
/// token works (a free call). Problems are logged loudly, never fatal: the
/// API may be down for a moment, and drains must keep being accepted.
pub(crate) async fn self_test(shared: Arc<Shared>) {
    for app in &shared.apps {
        let p = &app.config.policy;
        let types: Vec<String> = match &p.dyno_types {
            crate::decide::policy::DynoTypes::All => vec!["*".into()],
            crate::decide::policy::DynoTypes::List(l) => l.clone(),
        };
        for ty in types {
            let policy = p.for_type(&ty).unwrap_or(&p.defaults);
            tracing::info!(
                "watching {} {ty} via {}: {}",
                app.config.name,
                app.config.source.as_str(),
                crate::commands::check::describe(policy)
            );
        }
        let Some(token) = &app.config.api_token else {
            tracing::info!("{}: no API token: dry run only", app.config.name);
            continue;
        };
        match shared.client.rate_limit(token).await {
            Ok(remaining) => tracing::info!(
                "{}: Platform API token accepted (rate limit remaining: {remaining})",
                app.config.name
            ),
            Err(
                e @ crate::act::heroku_api::ApiError::Status {
                    status: 401 | 403, ..
                },
            ) => {
                tracing::error!(
                    "{}: the Platform API rejected the token ({e}); restarts will fail until it is fixed",
                    app.config.name
                )
            }
            Err(e) => tracing::warn!(
                "{}: could not check the Platform API token ({e}); will retry on each restart",
                app.config.name
            ),
        }
    }
}

/// Forgets dynos that stopped reporting an hour ago.
pub(crate) async fn prune(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for a in &shared.apps {
            a.lock().prune();
        }
    }
}

/// Fetches per-type quotas from the formation, for samples without
/// `memory_quota` (legacy lines) judged against a percentage.
pub(crate) async fn refresh_quotas(
    shared: Arc<Shared>,
    app: Arc<AppRuntime>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let Some(token) = app.config.api_token.clone() else {
        return;
    };
    loop {
        match shared.client.type_quotas(&token, &app.config.name).await {
            Ok(q) => {
                let mut w = app.lock();
                for (ty, mb) in q {
                    w.set_type_quota(&ty, Megabytes(mb));
                }
            }
            Err(e) => tracing::debug!(
                "{}: formation not available ({e}); quotas come from samples only",
                app.config.name
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
