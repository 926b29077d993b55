//! What a starting dynoguard restores from the store into its engines.

use std::sync::Arc;

use anyhow::Context as _;
use jiff::Timestamp;

use crate::decide::state::RestartMark;
use crate::store::{self, Store};

use super::AppRuntime;

/// Restores what the store knows into the engines, so a restarted dynoguard
/// decides as the one before it would have: the instance each dyno last had
/// (and those it replaced), restart windows, and the restart calls left in
/// flight — unknown outcomes, counted as made until the logs say otherwise.
pub(super) async fn seed_engines(store: &Store, apps: &[Arc<AppRuntime>]) -> anyhow::Result<()> {
    let find = |app: &str| apps.iter().find(|a| a.config.name.as_str() == app);
    load_app_numbers(store, apps).await;
    match store.latest_samples().await {
        Ok(rows) => {
            for r in rows {
                let (Some(app), Some(dyno), Some(instance)) = (
                    find(&r.app),
                    crate::domain::DynoName::parse(&r.dyno),
                    r.instance,
                ) else {
                    continue;
                };
                let replaced: Vec<String> = r
                    .replaced
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                app.lock().seed_instance(
                    dyno,
                    instance,
                    store::from_millis(r.at),
                    &replaced,
                    r.contender,
                );
            }
        }
        Err(e) => tracing::error!("reading the latest samples failed: {e}"),
    }
    // Windows and "never the same instance twice" survive our own restart.
    let since = Timestamp::now().as_millisecond() - 24 * 3600 * 1000;
    for r in store
        .last_restarts(since)
        .await
        .context("reading restart history")?
    {
        let (Some(app), Some(dyno)) = (find(&r.app), crate::domain::DynoName::parse(&r.dyno))
        else {
            continue;
        };
        let reason = crate::domain::event::Reason::parse(&r.reason)
            .unwrap_or(crate::domain::event::Reason::Threshold);
        let mut mark = RestartMark::new(store::from_millis(r.at), r.instance, reason);
        mark.confirmed = true;
        mark.unknown = r.outcome == "unknown";
        app.lock().seed_restart(dyno, mark);
    }
    match store.leases().await {
        Ok(leases) => {
            for l in leases {
                let (Some(app), Some(dyno)) =
                    (find(&l.app), crate::domain::DynoName::parse(&l.dyno))
                else {
                    continue;
                };
                tracing::warn!(
                    "{} {dyno}: a restart call was in flight when its dynoguard stopped (decided at {}); its outcome is unknown — counted as made, the logs will tell",
                    l.app,
                    store::from_millis(l.decided_at)
                );
                let mut mark = RestartMark::new(
                    store::from_millis(l.decided_at),
                    l.instance,
                    crate::domain::event::Reason::Threshold,
                );
                mark.confirmed = true;
                mark.unknown = true;
                app.lock().seed_restart(dyno, mark);
            }
        }
        Err(e) => tracing::error!("reading restart claims failed: {e}"),
    }
    Ok(())
}

/// Gives each engine the app number `setup` recorded (samples of another
/// app's number are then ignored). Read at start and every minute, so a
/// `setup` run beside a serving dynoguard takes effect.
pub(crate) async fn load_app_numbers(store: &Store, apps: &[Arc<AppRuntime>]) {
    match store.app_numbers().await {
        Ok(rows) => {
            for a in apps {
                let n = rows
                    .iter()
                    .find(|(app, _)| app == a.config.name.as_str())
                    .map(|(_, n)| *n);
                a.lock().set_app_number(n);
            }
        }
        Err(e) => tracing::debug!("reading app numbers failed: {e}"),
    }
}
