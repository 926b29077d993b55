//! What the page, the JSON API and `/metrics` show about dynos: one view
//! per dyno, from this replica's engine and — for dynos another replica
//! sees — from the latest samples in the shared store.

use std::cmp::Ordering;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::decide::state::{DynoSnapshot, is_stale};
use crate::domain::{Megabytes, MemoryMb};
use crate::service::{AppRuntime, Shared};
use crate::store::SampleRow;

/// A dyno's state for display (`ok`, `over`, `restarting`, `stale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DynoStatus {
    Ok,
    Over,
    Restarting,
    Stale,
}

impl DynoStatus {
    pub const ALL: [DynoStatus; 4] = [Self::Ok, Self::Over, Self::Restarting, Self::Stale];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Over => "over",
            Self::Restarting => "restarting",
            Self::Stale => "stale",
        }
    }
}

/// Why a dyno needs attention — the one definition the page, `/api/dynos`
/// and `/metrics` share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Over its threshold (or predicted to pass its quota).
    Over,
    Restarting,
    /// The last restart call failed.
    RestartFailed,
    /// Restarted more than `flap_limit` times in `flap_window`.
    Flapping,
    /// Its lines stopped arriving.
    Stale,
    /// Two instances report and nothing yet orders them.
    UnclearInstance,
}

impl Attention {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Over => "over",
            Self::Restarting => "restarting",
            Self::RestartFailed => "restart_failed",
            Self::Flapping => "flapping",
            Self::Stale => "stale",
            Self::UnclearInstance => "unclear_instance",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DynoView {
    pub app: String,
    pub dyno: String,
    pub process_type: String,
    pub instance: Option<String>,
    pub state: DynoStatus,
    pub last_sample: Option<SampleView>,
    /// The restart threshold in MB for this dyno (with a % threshold: of its quota).
    pub threshold_mb: Option<f64>,
    /// `memory_total` as a percentage of the quota.
    pub percent_of_quota: Option<f64>,
    pub last_restart: Option<String>,
    /// This replica receives the dyno's logs (else: known from the store).
    pub seen_here: bool,
    /// Why it needs attention; empty when it does not.
    pub attention: Vec<Attention>,
    /// Restarts decided within the flap window.
    pub recent_restarts: usize,
    /// The open incident, if any.
    pub incident: Option<String>,
    #[serde(skip)]
    pub sample_at: Option<Timestamp>,
}

/// A dyno's latest sample: its figures and its log time.
#[derive(Debug, Clone, Serialize)]
pub struct SampleView {
    #[serde(flatten)]
    pub memory: MemoryMb,
    pub at: String,
}

/// Staleness is about the wall clock (is the dyno still reporting?); the
/// restart in progress is judged on the dyno's own log clock, as decisions are.
fn status_of(d: &DynoSnapshot, now: Timestamp) -> DynoStatus {
    if d.stale(now) {
        DynoStatus::Stale
    } else if d.restarting {
        DynoStatus::Restarting
    } else if d.over {
        DynoStatus::Over
    } else {
        DynoStatus::Ok
    }
}

impl DynoView {
    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }
}

fn attention_of(d: &DynoSnapshot, state: DynoStatus) -> Vec<Attention> {
    let mut a = Vec::new();
    match state {
        DynoStatus::Stale => a.push(Attention::Stale),
        DynoStatus::Restarting => a.push(Attention::Restarting),
        DynoStatus::Over => a.push(Attention::Over),
        DynoStatus::Ok => {}
    }
    if d.restart_failing {
        a.push(Attention::RestartFailed);
    }
    if d.flapping {
        a.push(Attention::Flapping);
    }
    if d.unclear {
        a.push(Attention::UnclearInstance);
    }
    a
}

fn engine_view(app: &AppRuntime, d: &DynoSnapshot, now: Timestamp) -> DynoView {
    let memory = d.memory.mb();
    let state = status_of(d, now);
    DynoView {
        app: app.config.name.to_string(),
        dyno: d.dyno.to_string(),
        process_type: d.dyno.process_type().to_owned(),
        instance: d.instance.clone(),
        state,
        attention: attention_of(d, state),
        recent_restarts: d.restarts_in_flap_window,
        incident: d.incident.clone(),
        last_sample: d.sample_at.map(|at| SampleView {
            memory,
            at: at.to_string(),
        }),
        threshold_mb: d.threshold.map(Megabytes::get),
        percent_of_quota: memory.percent_of_quota(),
        last_restart: d.last_restart.map(|at| at.to_string()),
        seen_here: true,
        sample_at: d.sample_at,
    }
}

/// A dyno only another replica receives: its latest stored sample.
fn store_view(app: &AppRuntime, r: &SampleRow, now: Timestamp) -> DynoView {
    let process_type = r.dyno.rsplit_once('.').map_or(r.dyno.as_str(), |(t, _)| t);
    let judging = app.config.policy.judging(process_type);
    let quota = r.memory.quota.map(Megabytes);
    let limit = judging.threshold.limit(quota).map(Megabytes::get);
    let at = crate::store::from_millis(r.at);
    let state = if is_stale(Some(at), now) {
        DynoStatus::Stale
    } else if r.memory.total.zip(limit).is_some_and(|(t, l)| t > l) {
        DynoStatus::Over
    } else {
        DynoStatus::Ok
    };
    DynoView {
        app: r.app.clone(),
        dyno: r.dyno.clone(),
        process_type: process_type.to_owned(),
        instance: r.instance.clone(),
        state,
        last_sample: Some(SampleView {
            memory: r.memory,
            at: at.to_string(),
        }),
        threshold_mb: limit,
        percent_of_quota: r.memory.percent_of_quota(),
        last_restart: None,
        seen_here: false,
        attention: match state {
            DynoStatus::Stale => vec![Attention::Stale],
            DynoStatus::Over => vec![Attention::Over],
            _ => Vec::new(),
        },
        recent_restarts: 0,
        incident: None,
        sample_at: Some(at),
    }
}

/// One watched app: how it is fed, how many dynos, whether it is blind.
#[derive(Serialize)]
pub struct AppView {
    pub app: String,
    pub source: &'static str,
    pub dynos: usize,
    /// Lines arrive but no memory sample for `blind_after`.
    pub blind: bool,
    pub blind_since: Option<String>,
    /// How to fix blindness (set while blind).
    pub hint: Option<String>,
}

/// Every watched app, as `/api/apps` and `/metrics` show it.
pub fn app_views(s: &Shared) -> Vec<AppView> {
    s.apps
        .iter()
        .map(|a| {
            let e = a.lock();
            let since = e.blind_since();
            AppView {
                app: a.config.name.to_string(),
                source: a.config.source.as_str(),
                dynos: e.dyno_count(),
                blind: since.is_some(),
                blind_since: since.map(|t| t.to_string()),
                hint: since.map(|_| {
                    crate::decide::blind::hint(&a.config.name, a.config.policy.blind_after)
                }),
            }
        })
        .collect()
}

/// The dynos this replica's engines know (what `/metrics` reports: this
/// process's own view), sorted by app and natural dyno order.
pub fn local_views(s: &Shared, app: Option<&str>) -> Vec<DynoView> {
    let now = Timestamp::now();
    let mut out = Vec::new();
    for a in s
        .apps
        .iter()
        .filter(|a| app.is_none_or(|n| a.config.name.as_str() == n))
    {
        let dynos = a.lock().snapshots();
        out.extend(dynos.iter().map(|d| engine_view(a, d, now)));
    }
    out.sort_by(|x, y| x.app.cmp(&y.app).then_with(|| natural(&x.dyno, &y.dyno)));
    out
}

/// Stored samples older than this are dynos that are gone (scaled down,
/// renamed): not shown. The engine forgets silent dynos after the same.
const GONE: SignedDuration = SignedDuration::from_hours(1);

/// Every dyno of the formation: this replica's, plus those whose latest
/// sample another replica stored (the store failing: this replica's only).
pub async fn all_views(s: &Shared, app: Option<&str>) -> Vec<DynoView> {
    let mut out = local_views(s, app);
    let now = Timestamp::now();
    if let Ok(rows) = s.store.latest_samples().await {
        let known: std::collections::HashSet<(String, String)> = out
            .iter()
            .map(|v| (v.app.clone(), v.dyno.clone()))
            .collect();
        for r in rows {
            if app.is_some_and(|n| n != r.app)
                || known.contains(&(r.app.clone(), r.dyno.clone()))
                || now.duration_since(crate::store::from_millis(r.at)) > GONE
            {
                continue;
            }
            if let Some(a) = s.app(&r.app) {
                out.push(store_view(a, &r, now));
            }
        }
    }
    out.sort_by(|x, y| x.app.cmp(&y.app).then_with(|| natural(&x.dyno, &y.dyno)));
    out
}

/// `web.2` before `web.10`: process type, then the number, then the rest.
pub fn natural(a: &str, b: &str) -> Ordering {
    fn split(s: &str) -> (&str, Option<u64>, &str) {
        match s.rsplit_once('.') {
            Some((ty, n)) => (ty, n.parse().ok(), n),
            None => (s, None, ""),
        }
    }
    let (ta, na, ra) = split(a);
    let (tb, nb, rb) = split(b);
    ta.cmp(tb)
        .then_with(|| match (na, nb) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| ra.cmp(rb))
}

/// Urgency: the highest percentage of quota first (dynos without one last),
/// then natural order.
pub fn by_urgency(a: &DynoView, b: &DynoView) -> Ordering {
    let pa = a.percent_of_quota.unwrap_or(f64::NEG_INFINITY);
    let pb = b.percent_of_quota.unwrap_or(f64::NEG_INFINITY);
    pb.total_cmp(&pa).then_with(|| natural(&a.dyno, &b.dyno))
}

/// A chart's time range (Heroku's Metrics tab has the same choices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    H1,
    H6,
    H24,
    D7,
}

impl Range {
    pub const ALL: [Range; 4] = [Self::H1, Self::H6, Self::H24, Self::D7];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::H1 => "1h",
            Self::H6 => "6h",
            Self::H24 => "24h",
            Self::D7 => "7d",
        }
    }

    pub fn span(self) -> SignedDuration {
        SignedDuration::from_hours(match self {
            Self::H1 => 1,
            Self::H6 => 6,
            Self::H24 => 24,
            Self::D7 => 7 * 24,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynos_sort_naturally() {
        let mut v = vec!["web.10", "worker.1", "web.2", "web.1", "web.11", "web.x"];
        v.sort_by(|a, b| natural(a, b));
        assert_eq!(
            v,
            ["web.1", "web.2", "web.10", "web.11", "web.x", "worker.1"]
        );
    }
}

/// One incident: a dyno instance's episode, from going over (or an R14/R15,
/// or a decision) to the replacement reporting healthy, or the failure.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    pub id: String,
    pub app: String,
    pub dyno: String,
    /// The instance the episode began with.
    pub instance: Option<String>,
    pub opened: String,
    #[serde(skip)]
    pub opened_at: Timestamp,
    /// What opened it: `over_threshold`, `predicted`, `r14`, `r15`, …
    pub trigger: String,
    /// What dynoguard did: `restarted`, `restart_failed`, `would_restart`
    /// (alert-only), `none` (it went back under by itself, or waits).
    pub action: &'static str,
    /// `resolved` (the replacement reported), `failed`, `flapping`, `open`.
    pub outcome: &'static str,
    pub restarts: usize,
    /// From the first event over the quota to the restart or the
    /// replacement (log time), in minutes.
    pub minutes_over_quota: f64,
    pub events: Vec<crate::domain::event::Event>,
}

/// Groups events (any order) into incidents, newest first.
pub fn incidents(events: Vec<crate::domain::event::Event>) -> Vec<IncidentView> {
    use crate::domain::event::{EventKind as K, Reason};
    let mut by_id: std::collections::BTreeMap<String, Vec<crate::domain::event::Event>> =
        std::collections::BTreeMap::new();
    for e in events {
        if let Some(id) = e.incident.clone() {
            by_id.entry(id).or_default().push(e);
        }
    }
    let mut out: Vec<IncidentView> = by_id
        .into_iter()
        .filter_map(|(id, mut evs)| {
            // Events of one log second in the order they are decided.
            let rank = |k: K| match k {
                K::OverThreshold => 0,
                K::R14 => 1,
                K::R15 => 2,
                K::RestartFailed => 4,
                K::Flapping => 5,
                K::Recovered => 6,
                _ => 3,
            };
            evs.sort_by_key(|e| (e.at, rank(e.event)));
            let first = evs.first()?.clone();
            let restarts = evs.iter().filter(|e| e.event == K::Restart).count();
            let would = evs
                .iter()
                .any(|e| e.event == K::Skipped && e.reason == Some(Reason::DryRun));
            let failed = evs.iter().any(|e| e.event == K::RestartFailed);
            let resolved = evs.iter().any(|e| e.event == K::Recovered);
            let flapping = evs.iter().any(|e| e.event == K::Flapping);
            // What opened it, named as a restart reason is (`threshold`,
            // `predicted`, `r14`, …) whether or not a restart followed.
            let trigger = evs
                .iter()
                .find(|e| e.event == K::Restart)
                .and_then(|e| e.reason)
                .map(|r| r.as_str().to_owned())
                .unwrap_or_else(|| match first.event {
                    K::OverThreshold
                        if first
                            .detail
                            .as_deref()
                            .is_some_and(|d| d.starts_with("predicted")) =>
                    {
                        "predicted".to_owned()
                    }
                    K::OverThreshold => "threshold".to_owned(),
                    K::Skipped | K::RestartFailed => first.reason.map_or_else(
                        || first.event.as_str().to_owned(),
                        |r| r.as_str().to_owned(),
                    ),
                    k => k.as_str().to_owned(),
                });
            let over_from = evs.iter().find(|e| {
                matches!(
                    (e.memory_total_mb, e.memory_quota_mb),
                    (Some(m), Some(q)) if q > 0.0 && m > q
                ) || matches!(e.event, K::R14 | K::R15)
            });
            let over_until = evs
                .iter()
                .find(|e| matches!(e.event, K::Restart | K::Recovered))
                .or(evs.last());
            let minutes_over_quota = match (over_from, over_until) {
                (Some(a), Some(b)) if b.at > a.at => {
                    (b.at.duration_since(a.at).as_secs_f64() / 60.0 * 10.0).round() / 10.0
                }
                _ => 0.0,
            };
            Some(IncidentView {
                id,
                app: first.app.to_string(),
                dyno: first
                    .dyno
                    .as_ref()
                    .map_or_else(String::new, |d| d.to_string()),
                instance: first.instance.clone(),
                opened: first.at.to_string(),
                opened_at: first.at,
                trigger,
                action: if restarts > 0 {
                    "restarted"
                } else if failed {
                    "restart_failed"
                } else if would {
                    "would_restart"
                } else {
                    "none"
                },
                outcome: if resolved {
                    "resolved"
                } else if flapping {
                    "flapping"
                } else if failed {
                    "failed"
                } else {
                    "open"
                },
                restarts,
                minutes_over_quota,
                events: evs,
            })
        })
        .collect();
    out.sort_by(|a, b| b.opened_at.cmp(&a.opened_at).then_with(|| a.id.cmp(&b.id)));
    out
}
