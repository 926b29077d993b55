//! The service's background work: batched writes of events and samples,
//! the start-up self-test, forgetting silent dynos, refreshing quotas from
//! the formation. Each task ends when the stop signal turns true (or its
//! channel closes) so that shutdown can wait for it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use secrecy::SecretString;
use tokio::sync::{mpsc, watch};

use crate::domain::Megabytes;
use crate::domain::event::{Event, EventKind};
use crate::service::{AppRuntime, Shared};
use crate::store::{RestartRow, Store};
use crate::telemetry::Counters;

/// Events kept for a retry while the store fails; beyond this the oldest
/// are dropped (counted and logged).
const PENDING_EVENTS: usize = 50_000;

/// Writes events (and restart records the restarter could not write) to the
/// store in batches until the channel closes. Failed writes are kept and
/// retried with a backoff (1 s → 30 s): nothing accepted is dropped silently.
pub(crate) async fn write_events(
    store: Store,
    mut rx: mpsc::Receiver<Event>,
    pending_restarts: Arc<Mutex<Vec<RestartRow>>>,
    counters: Arc<Counters>,
) {
    let mut pending: VecDeque<Event> = VecDeque::new();
    let mut batch = Vec::with_capacity(256);
    let mut backoff = Duration::from_secs(1);
    let mut open = true;
    let mut health = store.health().subscribe();
    loop {
        let waiting = !pending.is_empty() || !lock(&pending_restarts).is_empty();
        if open {
            let got = if !waiting {
                rx.recv_many(&mut batch, 256).await
            } else {
                // Something waits for a retry: wake up for it after the
                // backoff, or as soon as another write finds the store well.
                health.borrow_and_update();
                let healed = async {
                    // Only a change to healthy wakes us (not a state that
                    // already was: that would spin while our writes fail).
                    loop {
                        if health.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        if health.borrow_and_update().is_none() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    n = rx.recv_many(&mut batch, 256) => n,
                    _ = tokio::time::sleep(backoff) => usize::MAX,
                    _ = healed => usize::MAX,
                }
            };
            if got == 0 {
                open = false;
            }
            pending.extend(batch.drain(..));
        }
        while pending.len() > PENDING_EVENTS {
            pending.pop_front();
            Counters::add(&counters.events_dropped, 1);
        }
        let rows: Vec<RestartRow> = std::mem::take(&mut *lock(&pending_restarts));
        let mut ok = true;
        for row in rows {
            if ok && let Err(e) = store.record_restart(&row).await {
                tracing::error!(
                    "recording the restart of {} {} failed again: {e}",
                    row.app,
                    row.dyno
                );
                ok = false;
            }
            if !ok {
                lock(&pending_restarts).push(row);
            }
        }
        while ok && !pending.is_empty() {
            let n = pending.len().min(256);
            let chunk: Vec<Event> = pending.iter().take(n).cloned().collect();
            match store.insert_events(&chunk).await {
                Ok(()) => {
                    pending.drain(..n);
                }
                Err(e) => {
                    tracing::error!(
                        "writing {} events failed ({e}); kept for a retry in {}s",
                        pending.len(),
                        backoff.as_secs()
                    );
                    ok = false;
                }
            }
        }
        backoff = if ok {
            Duration::from_secs(1)
        } else {
            (backoff * 2).min(Duration::from_secs(30))
        };
        if !open && (pending.is_empty() && lock(&pending_restarts).is_empty()) {
            return;
        }
        if !open && !ok {
            // Shutting down with the store failing: the caller's deadline
            // ends this; say what is lost if it does.
            tracing::warn!(
                "store unavailable at shutdown: {} events and {} restart records wait for it",
                pending.len(),
                lock(&pending_restarts).len()
            );
            tokio::time::sleep(backoff).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reports the store's trouble as it starts (`store_unavailable`, once per
/// outage and app — even an outage that ended before this task looked) and
/// its end (a log line), until `stop`.
pub(crate) async fn watch_store(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut outages = shared.store.health().outages();
    let mut health = shared.store.health().subscribe();
    let mut reported = outages.borrow_and_update().0;
    loop {
        tokio::select! {
            r = outages.changed() => if r.is_err() { return },
            r = health.changed() => {
                if r.is_err() { return }
                if health.borrow_and_update().is_none() {
                    tracing::info!("store available again: pending writes are being flushed");
                }
                continue;
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        let (count, why) = outages.borrow_and_update().clone();
        if count == reported {
            continue;
        }
        reported = count;
        tracing::error!(
            "store unavailable: {why} — protection goes on with claims held in memory (other replicas cannot see them); writes are retried"
        );
        for app in &shared.apps {
            let mut e = Event::new(
                Timestamp::now(),
                EventKind::StoreUnavailable,
                app.config.name.clone(),
            );
            e.detail = Some(format!(
                "{why}; restarts go on with in-memory claims on this replica; events and history are kept and retried"
            ));
            e.count = Some(count);
            shared.reporter.emit(e);
        }
    }
}

/// Rows written per transaction by the flusher: a restart claim waits for
/// at most one chunk (SQLite's writer lock), not for 10,000 dynos' rows.
/// (The hourly prune deletes a 12-minute slot of history a turn.)
const FLUSH_CHUNK: usize = 100;

/// Writes the latest samples and the history's minutes, in transactions of
/// [`FLUSH_CHUNK`] rows, every `every`.
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
        if let Some((from, e)) = first_failure(&rows, |c| shared.store.upsert_samples(c)).await {
            tracing::error!(
                "writing {} samples failed ({e}); kept for the next flush",
                rows.len() - from
            );
            // Back into the buffer, unless a newer sample of the dyno came.
            shared
                .samples
                .put_back(rows.into_iter().skip(from).collect());
        }
        let minutes = shared.samples.take_history();
        if let Some((from, e)) = first_failure(&minutes, |c| shared.store.write_history(c)).await {
            tracing::error!(
                "writing {} minutes of history failed ({e}); kept for the next flush",
                minutes.len() - from
            );
            shared
                .samples
                .put_back_history(minutes.into_iter().skip(from).collect());
        }
        if stopping {
            return;
        }
    }
}

/// Writes `rows` in chunks of [`FLUSH_CHUNK`] until one fails: where the
/// unwritten rows start, and why.
async fn first_failure<'a, T, F>(
    rows: &'a [T],
    mut write: impl FnMut(&'a [T]) -> F,
) -> Option<(usize, crate::store::StoreError)>
where
    F: std::future::Future<Output = Result<(), crate::store::StoreError>>,
{
    for (i, chunk) in rows.chunks(FLUSH_CHUNK).enumerate() {
        if let Err(e) = write(chunk).await {
            return Some((i * FLUSH_CHUNK, e));
        }
    }
    None
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
                crate::config::describe::describe(policy)
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

/// Releases the restart decisions an engine has held for the wall-clock
/// hold with no later line to move its log clock (a quiet app), several
/// times per hold.
pub(crate) async fn release_held(
    shared: Arc<Shared>,
    hold: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval((hold / 4).max(Duration::from_millis(20)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            // Decided before the stop: reported (and handed to the restarter,
            // which finishes what it was given within the deadline).
            for a in &shared.apps {
                shared.release_held(a, Timestamp::MAX);
            }
            return;
        }
        let cutoff = Timestamp::now() - jiff::SignedDuration::try_from(hold).unwrap_or_default();
        for a in &shared.apps {
            shared.release_held(a, cutoff);
        }
    }
}

/// Releases from the Platform API become `release` events (chart markers)
/// unless the store already has one for that version — from the log's
/// `app[api]: Release vN created by …` line, or an earlier fetch.
async fn record_releases(shared: &Arc<Shared>, app: &Arc<AppRuntime>, token: &SecretString) {
    let name = &app.config.name;
    let releases = match shared.client.releases(token, name).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("{name}: releases not available ({e})");
            return;
        }
    };
    let Some(oldest) = releases.iter().map(|r| r.created_at).min() else {
        return;
    };
    let known = match shared
        .store
        .events(&crate::store::EventFilter {
            app: Some(name.to_string()),
            kinds: vec![EventKind::Release.as_str().to_owned()],
            since: Some((oldest - jiff::SignedDuration::from_mins(5)).as_millisecond()),
            limit: 1000,
            ..crate::store::EventFilter::default()
        })
        .await
    {
        Ok(rows) => rows,
        // Without the store, markers could be doubled: wait for it.
        Err(_) => return,
    };
    let seen: std::collections::HashSet<String> = known
        .iter()
        .filter_map(crate::store::EventRow::event)
        .filter_map(|e| e.detail)
        .filter_map(|d| d.split_whitespace().next().map(str::to_owned))
        .collect();
    for r in releases {
        let version = format!("v{}", r.version);
        if seen.contains(&version) {
            continue;
        }
        let mut e = Event::new(r.created_at, EventKind::Release, name.clone());
        let by = r.user.and_then(|u| u.email);
        e.detail = Some(match by {
            Some(by) => format!("{version} by {by}"),
            None => version,
        });
        shared.reporter.emit(e);
    }
}

/// Retention of the store (SECURITY.md): events 30 days and at most
/// 200,000 rows, restart history 90 days, latest samples and per-minute
/// history 7 days, expired claims a day after they expired.
pub const EVENTS_KEPT: jiff::SignedDuration = jiff::SignedDuration::from_hours(30 * 24);
pub const MAX_EVENTS: i64 = 200_000;
pub const RESTARTS_KEPT: jiff::SignedDuration = jiff::SignedDuration::from_hours(90 * 24);
pub const SAMPLES_KEPT: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);
pub const HISTORY_KEPT: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);

/// Applies the store's retention (at start, then hourly). Dynos are
/// forgotten by the engine itself, on the log clock, as `replay` does.
pub(crate) async fn prune(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut minutes = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // A `setup --wait` run beside this dynoguard records app numbers.
        crate::service::load_app_numbers(&shared.store, &shared.apps).await;
        if minutes.is_multiple_of(60) {
            let now = Timestamp::now();
            let ms = |d: jiff::SignedDuration| (now - d).as_millisecond();
            let retention = crate::store::Retention {
                events_before: ms(EVENTS_KEPT),
                max_events: MAX_EVENTS,
                restarts_before: ms(RESTARTS_KEPT),
                samples_before: ms(SAMPLES_KEPT),
                history_before: ms(HISTORY_KEPT),
                claims_before: ms(jiff::SignedDuration::from_hours(24)),
            };
            match shared.store.prune(&retention).await {
                Ok(n) => {
                    Counters::add(&shared.counters.rows_pruned, n);
                    if n > 0 {
                        tracing::info!("retention: {n} old rows deleted");
                    }
                }
                Err(e) => tracing::warn!("retention failed: {e}"),
            }
        }
        minutes = minutes.wrapping_add(1);
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
        record_releases(&shared, &app, &token).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
