//! Contending for the lead and keeping it; the role at start; what a
//! replica does when it takes the lead, loses it, or loses the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::watch;

use super::{STORE_CALL, forward};
use crate::service::Shared;
use crate::store::replicas::{LeaderRow, Leadership, Role};
use crate::store::{Store, StoreError};
use crate::telemetry::Counters;

/// Forwarded batches older than this are nobody's: their leader would
/// have taken them within seconds.
const FORWARDED_KEPT: Duration = Duration::from_secs(600);

/// Takes the lead when it is free and keeps it renewed; follows otherwise.
/// A replica that cannot reach the store for a whole lease decides from
/// its own observations ([`Role::Cut`]) until the store is back. At stop, a
/// leader hands what it holds to the store and gives the lead up.
pub async fn lead(shared: Arc<Shared>, lease: Duration, mut stop: watch::Receiver<bool>) {
    let l = shared.replicas.leadership.clone();
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let mut last_ok = Instant::now();
    let mut last_prune = Instant::now();
    loop {
        let sent = Instant::now();
        let bound = (lease / 3).min(STORE_CALL);
        let contest =
            tokio::time::timeout(bound, shared.store.contend(&l.scope, &l.replica, lease_ms))
                .await
                .unwrap_or(Err(StoreError::Timeout(bound)));
        match contest {
            Ok(row) => {
                last_ok = sent;
                back_in_touch(&shared).await;
                if row.holder == l.replica {
                    leads(&shared, &row, sent, lease).await;
                    if last_prune.elapsed() >= Duration::from_secs(60) {
                        last_prune = Instant::now();
                        prune_forwarded(&shared).await;
                    }
                } else {
                    follows(&l, row);
                }
            }
            Err(e) => {
                let lapsed = match l.role() {
                    Role::Leader { .. } => !l.decides(),
                    Role::Follower { .. } => sent.duration_since(last_ok) >= lease,
                    Role::Alone | Role::Cut => false,
                };
                if lapsed {
                    tracing::error!(
                        "the store is unreachable ({e}): this replica decides from its own observations until it is back — another replica may do the same, so a dyno could be restarted twice"
                    );
                    l.set(Role::Cut, None);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(lease / 4) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    resign(&shared).await;
}

/// The store answered: the restart windows this replica held only in
/// memory during an outage are written first, so that no replica restarts
/// the same instance again once it leads.
async fn back_in_touch(shared: &Shared) {
    let r = &shared.replicas;
    let synced = tokio::time::timeout(
        STORE_CALL,
        r.local_claims.sync(&shared.store, &r.leadership.replica),
    )
    .await;
    if !matches!(synced, Ok(true)) {
        tracing::warn!("restart windows held in memory are not all recorded yet; retrying");
    }
}

/// The store says this replica leads. A new term starts from the shared
/// state; one that follows a store outage also waits a lease before it
/// claims, so the other replicas' windows from the outage reach the store.
async fn leads(shared: &Shared, row: &LeaderRow, sent: Instant, lease: Duration) {
    let l = &shared.replicas.leadership;
    let was = l.role();
    if !matches!(was, Role::Leader { epoch } if epoch == row.epoch) {
        promote(shared).await;
        // Followers may be forwarding already: hold until the first intake
        // has read their marks.
        shared.replicas.set_followers_mark(Some(i64::MIN));
        if matches!(was, Role::Cut) {
            l.settle(Instant::now() + lease);
        }
        Counters::add(&shared.replicas.stats.promotions, 1);
        tracing::warn!(
            "this replica ({}) leads now (epoch {}); it decides and restarts",
            l.replica,
            row.epoch
        );
    }
    let until = Leadership::lease_end(sent, row.remaining_ms);
    l.set(Role::Leader { epoch: row.epoch }, Some(until));
}

fn follows(l: &Leadership, row: LeaderRow) {
    if !matches!(l.role(), Role::Follower { .. }) {
        tracing::warn!(
            "{} leads (epoch {}); this replica ({}) forwards what it receives",
            row.holder,
            row.epoch,
            l.replica
        );
    }
    l.set(
        Role::Follower {
            leader: row.holder,
            epoch: row.epoch,
        },
        None,
    );
}

/// At stop: a leader stops deciding, hands the batches it holds to the
/// store (the next leader applies them), and gives the lead up at once
/// rather than when the lease runs out.
async fn resign(shared: &Shared) {
    let l = &shared.replicas.leadership;
    let Role::Leader { epoch } = l.role() else {
        return;
    };
    l.set(
        Role::Follower {
            leader: "(none: resigned)".into(),
            epoch,
        },
        None,
    );
    shared.release_reordered(true);
    forward::flush(shared).await;
    if let Err(e) = shared.store.resign(&l.scope, &l.replica, epoch).await {
        tracing::warn!(
            "giving up the lead failed ({e}); another replica takes over when the lease runs out"
        );
    }
}

async fn prune_forwarded(shared: &Shared) {
    let before = Timestamp::now().as_millisecond() - FORWARDED_KEPT.as_millis() as i64;
    match tokio::time::timeout(STORE_CALL, shared.store.prune_forwarded(before)).await {
        Ok(Ok(0)) | Err(_) => {}
        Ok(Ok(n)) => {
            Counters::add(&shared.replicas.stats.dropped, n);
            tracing::warn!(
                "dropped {n} forwarded batch(es) older than {} min that no leader took (a replica of another set of apps?)",
                FORWARDED_KEPT.as_secs() / 60
            );
        }
        Ok(Err(e)) => tracing::debug!("pruning forwarded batches failed: {e}"),
    }
}

/// Fresh engines seeded from the store: the latest samples and lineage,
/// restart windows, calls left in flight by the old leader (unknown
/// outcomes, never repeated).
async fn promote(shared: &Shared) {
    for app in &shared.apps {
        app.reset_engine();
    }
    if let Err(e) = crate::service::seed_engines(&shared.store, &shared.apps).await {
        tracing::error!("taking the lead: reading the shared state failed: {e}");
    }
}

/// The role this replica starts in: the only process on SQLite; on
/// PostgreSQL, whatever the first contest for the lead gives (the leader
/// then seeds its engines from the store as usual). Warns when replicas of
/// another set of apps lead some of the same apps: each group would judge
/// from its share of the samples only.
pub async fn first_role(store: &Store, leadership: &Leadership, lease: Duration) {
    if !store.is_postgres() {
        leadership.set(Role::Alone, None);
        return;
    }
    warn_overlapping_groups(store, &leadership.scope).await;
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let sent = Instant::now();
    match store
        .contend(&leadership.scope, &leadership.replica, lease_ms)
        .await
    {
        Ok(row) if row.holder == leadership.replica => leadership.set(
            Role::Leader { epoch: row.epoch },
            Some(Leadership::lease_end(sent, row.remaining_ms)),
        ),
        Ok(row) => leadership.set(
            Role::Follower {
                leader: row.holder,
                epoch: row.epoch,
            },
            None,
        ),
        Err(e) => {
            tracing::error!(
                "contending for the lead failed ({e}); deciding alone until the store answers"
            );
            leadership.set(Role::Cut, None);
        }
    }
}

async fn warn_overlapping_groups(store: &Store, scope: &str) {
    let Ok(scopes) = store.led_scopes().await else {
        return;
    };
    let ours: Vec<&str> = scope.split(',').collect();
    for other in scopes.iter().filter(|s| s.as_str() != scope) {
        let shared: Vec<&str> = other.split(',').filter(|a| ours.contains(a)).collect();
        if !shared.is_empty() {
            tracing::warn!(
                "replicas watching another set of apps ({other}) lead {} too: each group elects its own leader and judges from its share of the samples — give every replica the same apps",
                shared.join(", ")
            );
        }
    }
}
