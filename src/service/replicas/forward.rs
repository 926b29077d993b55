//! Batches between replicas: a follower's writer ([`forward`]), the
//! leader's intake of forwarded batches ([`intake`]) and the release of
//! what the leader holds ([`release`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::watch;

use super::{Batch, FOLLOWER_ALIVE, STORE_CALL, locked};
use crate::ingest::heroku_line::Observation;
use crate::service::Shared;
use crate::store::replicas::{ForwardedRow, Role};
use crate::store::{self, StoreError};
use crate::telemetry::Counters;

/// How often a follower writes what it queued.
const FORWARD_EVERY: Duration = Duration::from_millis(50);
/// The leader reads the followers' marks and looks for forwarded batches
/// at least this often (a missed `NOTIFY` costs no more).
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Forwarded batches taken per statement.
const TAKE: i64 = 2_000;
/// Batches a follower writes per statement (the rest wait for the next).
const WRITE: usize = 2_000;

/// A follower's writer: every [`FORWARD_EVERY`], the queued batches go to
/// the store in one statement. A replica that decides (it took the lead, or
/// the store is gone) routes what it queued through its own path.
pub async fn forward(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(FORWARD_EVERY) => {}
            _ = stop.wait_for(|s| *s) => break,
        };
        flush(&shared).await;
    }
}

/// Writes (or, for a replica that decides, routes) what is queued now.
pub(super) async fn flush(shared: &Shared) {
    let r = &shared.replicas;
    loop {
        let (batches, through) = {
            let mut q = locked(&r.queue);
            let n = q.len().min(WRITE);
            let batches: Vec<Batch> = q.drain(..n).collect();
            // Everything received before this is in the chunk or written:
            // the oldest batch left, else now (less a margin for a batch
            // stamped but not yet queued).
            let through = q
                .front()
                .map_or_else(|| Timestamp::now().as_millisecond() - 100, |b| b.received);
            (batches, through)
        };
        let n = batches.len();
        if r.leadership.decides() {
            // It leads now (or the store is gone): what it queued as a
            // follower is its own to decide.
            for b in batches {
                shared.route(b);
            }
            return;
        }
        if n > 0 {
            r.in_flight.store(n, std::sync::atomic::Ordering::Relaxed);
            let written = write_batches(shared, batches).await;
            r.in_flight.store(0, std::sync::atomic::Ordering::Relaxed);
            if !written {
                return;
            }
        }
        mark(shared, through).await;
        if n < WRITE {
            return;
        }
    }
}

/// Tells the leader how far this follower has forwarded.
async fn mark(shared: &Shared, through: i64) {
    let l = &shared.replicas.leadership;
    let marked = tokio::time::timeout(
        STORE_CALL,
        shared.store.mark_forwarded(&l.scope, &l.replica, through),
    )
    .await;
    if !matches!(marked, Ok(Ok(()))) {
        tracing::debug!("marking what this follower forwarded failed");
    }
}

/// Writes one chunk; false (the batches back in the queue) if it failed.
async fn write_batches(shared: &Shared, batches: Vec<Batch>) -> bool {
    let r = &shared.replicas;
    let rows: Vec<ForwardedRow> = batches
        .iter()
        .filter_map(|b| {
            let observations = serde_json::to_string(&b.observations).ok()?;
            Some(ForwardedRow {
                id: 0,
                app: b.app.config.name.to_string(),
                replica: r.leadership.replica.clone(),
                frame_id: b.frame_id.clone(),
                received_at: b.received,
                first_line: b.lines.map(|(f, _)| store::millis(f)),
                last_line: b.lines.map(|(_, l)| store::millis(l)),
                observations,
            })
        })
        .collect();
    let written =
        tokio::time::timeout(STORE_CALL, shared.store.forward(&r.leadership.scope, &rows))
            .await
            .unwrap_or(Err(StoreError::Timeout(STORE_CALL)));
    match written {
        Ok(()) => {
            Counters::add(&r.stats.forwarded, rows.len() as u64);
            true
        }
        Err(e) => {
            tracing::warn!(
                "forwarding {} batch(es) to the leader failed ({e}); kept for the next try",
                rows.len()
            );
            // Back in front of what came since, bounded like the queue.
            let mut q = locked(&r.queue);
            let newer: Vec<Batch> = q.drain(..).collect();
            drop(q);
            r.enqueue(batches.into_iter().chain(newer));
            false
        }
    }
}

/// The leader's intake: woken by `NOTIFY` (or every [`POLL_EVERY`]), it
/// takes the forwarded batches, drops those whose Frame-Id it has seen, and
/// holds them with its own (see [`release`]); it deletes the rows of the
/// batches applied. Every store call is bounded: a hanging database delays
/// the intake, never the release of what is already held.
pub async fn intake(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut listener = None;
    let mut listen_tried: Option<Instant> = None;
    let mut last_poll = Instant::now();
    loop {
        let l = &shared.replicas.leadership;
        let epoch = match l.role() {
            Role::Leader { epoch } if l.decides() => Some(epoch),
            _ => None,
        };
        if epoch.is_some()
            && listener.is_none()
            && listen_tried.is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            listen_tried = Some(Instant::now());
            listener = tokio::time::timeout(STORE_CALL, shared.store.forwarded_listener())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
        }
        let woken = tokio::select! {
            () = tokio::time::sleep(POLL_EVERY) => false,
            n = recv(&mut listener) => {
                if n.is_err() { listener = None; }
                true
            }
            _ = stop.wait_for(|s| *s) => break,
        };
        delete_applied(&shared).await;
        if let Some(epoch) = epoch
            && (woken || last_poll.elapsed() >= POLL_EVERY)
        {
            last_poll = Instant::now();
            // The mark first, then the rows: every batch a follower marked
            // as forwarded is among the rows taken after it.
            let mark = read_mark(&shared).await;
            let taken = tokio::time::timeout(STORE_CALL * 4, take_forwarded(&shared, epoch))
                .await
                .unwrap_or(false);
            if taken && let Some(mark) = mark {
                shared.replicas.set_followers_mark(mark);
            }
        }
    }
    delete_applied(&shared).await;
}

/// Every 50 ms, applies the held batches the followers' marks passed. (At stop, a
/// leader's `resign` hands what it still holds to the next leader.)
pub async fn release(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tick.tick() => shared.release_reordered(false),
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// The live followers' lowest mark: `Some(None)` when none is alive,
/// `None` when the store did not answer (the hold stays as it was).
async fn read_mark(shared: &Shared) -> Option<Option<i64>> {
    let l = &shared.replicas.leadership;
    let alive = i64::try_from(FOLLOWER_ALIVE.as_millis()).unwrap_or(i64::MAX);
    tokio::time::timeout(
        STORE_CALL,
        shared.store.followers_mark(&l.scope, &l.replica, alive),
    )
    .await
    .ok()
    .and_then(Result::ok)
}

async fn recv(l: &mut Option<sqlx::postgres::PgListener>) -> Result<(), sqlx::Error> {
    match l {
        Some(l) => l.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}

async fn delete_applied(shared: &Shared) {
    let ids: Vec<i64> = std::mem::take(&mut *locked(&shared.replicas.applied_rows));
    if ids.is_empty() {
        return;
    }
    let done = tokio::time::timeout(STORE_CALL, shared.store.done_forwarded(&ids)).await;
    if !matches!(done, Ok(Ok(()))) {
        // Kept for the next round; a row left behind is taken again only
        // by a later epoch (re-applied samples are stale: ignored).
        locked(&shared.replicas.applied_rows).extend(ids);
    }
}

/// Takes every forwarded batch waiting; false if the store failed.
async fn take_forwarded(shared: &Shared, epoch: i64) -> bool {
    let r = &shared.replicas;
    loop {
        let rows = match shared
            .store
            .take_forwarded(&r.leadership.scope, epoch, TAKE)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!("taking forwarded batches failed: {e}");
                return false;
            }
        };
        let n = rows.len();
        for row in rows {
            take_one(shared, row);
        }
        if n < TAKE as usize {
            return true;
        }
    }
}

fn take_one(shared: &Shared, row: ForwardedRow) {
    let r = &shared.replicas;
    let Some(app) = shared.app(&row.app).cloned() else {
        return;
    };
    Counters::add(&r.stats.consumed, 1);
    let Ok(observations) = serde_json::from_str::<Vec<Observation>>(&row.observations) else {
        Counters::add(&r.stats.dropped, 1);
        locked(&r.applied_rows).push(row.id);
        tracing::warn!("{}: a forwarded batch could not be read; dropped", row.app);
        return;
    };
    // This replica's own forwarded batches (written while it followed)
    // passed its Frame-Id check when it received them.
    if row.replica != r.leadership.replica && !shared.first_time(row.frame_id.as_deref()) {
        locked(&r.applied_rows).push(row.id);
        return;
    }
    let lines = row
        .first_line
        .zip(row.last_line)
        .map(|(f, l)| (store::from_millis(f), store::from_millis(l)));
    shared.route(Batch {
        app,
        frame_id: row.frame_id,
        received: row.received_at,
        arrived: Instant::now(),
        row: Some(row.id),
        lines,
        observations,
    });
}
