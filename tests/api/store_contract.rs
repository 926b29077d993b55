//! One set of store contract tests, run against SQLite and PostgreSQL.
//! PostgreSQL needs `DATABASE_URL_POSTGRES` (`.ci/run` starts a server);
//! without it those tests say they were skipped.

use dynoguard::domain::MemoryMb;
use dynoguard::domain::event::{Event, EventKind};
use dynoguard::store::{EventFilter, MinuteRow, RestartRow, Retention, SampleRow, Store};

async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    (dir, store)
}

async fn postgres() -> Option<Store> {
    match std::env::var("DATABASE_URL_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(
            Store::connect(&url)
                .await
                .expect("DATABASE_URL_POSTGRES is set but unreachable"),
        ),
        _ => {
            // CI installs and starts PostgreSQL: there, a skip is a failure.
            assert!(
                std::env::var_os("DYNOGUARD_REQUIRE_TOOLS").is_none(),
                "PostgreSQL is required here (DYNOGUARD_REQUIRE_TOOLS) but DATABASE_URL_POSTGRES is not set"
            );
            eprintln!("SKIPPED: PostgreSQL store contract (set DATABASE_URL_POSTGRES to run it)");
            None
        }
    }
}

/// A name no other test (or earlier run against the same server) uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", fastrand::u64(..))
}

async fn claims_are_exclusive_until_they_expire(s: &Store) {
    let app = unique("claims");
    assert!(
        s.try_claim(&app, "web.1", Some("u1"), "a", 1_000, 1_000, 2_000)
            .await
            .unwrap()
    );
    assert!(
        !s.try_claim(&app, "web.1", Some("u1"), "b", 1_500, 1_500, 2_500)
            .await
            .unwrap(),
        "held until 2000"
    );
    assert!(
        s.try_claim(&app, "web.2", None, "b", 1_500, 1_500, 2_500)
            .await
            .unwrap(),
        "another dyno is independent"
    );
    assert!(
        s.try_claim(&app, "web.1", Some("u1"), "b", 2_000, 2_000, 3_000)
            .await
            .unwrap(),
        "expired at 2000"
    );
    // Release only by the holder.
    s.release_claim(&app, "web.1", "a").await.unwrap();
    assert!(
        !s.try_claim(&app, "web.1", None, "c", 2_100, 2_100, 3_100)
            .await
            .unwrap()
    );
    s.release_claim(&app, "web.1", "b").await.unwrap();
    assert!(
        s.try_claim(&app, "web.1", None, "c", 2_100, 2_100, 3_100)
            .await
            .unwrap()
    );
}

async fn concurrent_claims_have_one_winner(s: &Store) {
    let app = unique("race");
    let tries = (0..16).map(|i| {
        let s = s.clone();
        let app = app.clone();
        async move {
            s.try_claim(&app, "web.1", Some("u"), &format!("r{i}"), 10, 10, 100)
                .await
                .unwrap()
        }
    });
    let wins = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|w| *w)
        .count();
    assert_eq!(wins, 1);
}

async fn restarts_history_and_last_restarts(s: &Store) {
    let app = unique("hist");
    let row = |dyno: &str, at: i64, outcome: &str| RestartRow {
        app: app.clone(),
        dyno: dyno.into(),
        instance: Some(format!("i-{at}")),
        reason: "threshold".into(),
        at,
        outcome: outcome.into(),
        request_id: None,
        detail: None,
    };
    s.record_restart(&row("web.1", 100, "ok")).await.unwrap();
    s.record_restart(&row("web.1", 200, "ok")).await.unwrap();
    s.record_restart(&row("web.1", 300, "failed"))
        .await
        .unwrap();
    s.record_restart(&row("web.2", 150, "ok")).await.unwrap();
    let mut last: Vec<_> = s
        .last_restarts(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.app == app)
        .map(|r| (r.dyno, r.at))
        .collect();
    last.sort();
    assert_eq!(last, [("web.1".to_owned(), 200), ("web.2".to_owned(), 150)]);
    assert_eq!(s.restarts(&app).await.unwrap().len(), 4);
}

async fn events_round_trip_newest_first(s: &Store) {
    let app = unique("ev");
    let name = dynoguard::domain::AppName::parse(&app).unwrap();
    let events: Vec<Event> = [EventKind::OverThreshold, EventKind::Restart]
        .into_iter()
        .map(|k| Event::new(jiff::Timestamp::now(), k, name.clone()))
        .collect();
    s.insert_events(&events).await.unwrap();
    let rows = s.recent_events(Some(&app), 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        ["restart", "over_threshold"]
    );
    assert_eq!(s.recent_events(Some(&app), 1).await.unwrap().len(), 1);
}

async fn samples_keep_the_newest(s: &Store) {
    let app = unique("samp");
    let row = |at: i64, total: f64| SampleRow {
        app: app.clone(),
        dyno: "web.1".into(),
        instance: None,
        at,
        memory: MemoryMb {
            total: Some(total),
            rss: None,
            swap: None,
            quota: Some(512.0),
        },
        replaced: None,
        contender: None,
    };
    s.upsert_samples(&[row(10, 100.5)]).await.unwrap();
    s.upsert_samples(&[row(30, 300.25)]).await.unwrap();
    s.upsert_samples(&[row(20, 200.0)]).await.unwrap();
    let got: Vec<_> = s
        .latest_samples()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.app == app)
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].at, got[0].memory.total), (30, Some(300.25)));
}

async fn a_lease_becomes_the_window_and_blocks_only_its_instance(s: &Store) {
    use dynoguard::store::ClaimKind;
    let app = unique("lease");
    assert!(
        s.try_claim(&app, "web.1", Some("A"), "host1-aaaa", 1_000, 1_000, 61_000)
            .await
            .unwrap()
    );
    assert!(
        !s.try_claim(&app, "web.1", Some("B"), "host2-bbbb", 2_000, 2_000, 62_000)
            .await
            .unwrap(),
        "a lease blocks everyone"
    );
    s.extend_claim(&app, "web.1", "host1-aaaa", 600_000, ClaimKind::Window)
        .await
        .unwrap();
    assert!(
        !s.try_claim(&app, "web.1", Some("A"), "host2-bbbb", 3_000, 3_000, 63_000)
            .await
            .unwrap(),
        "the window blocks the same instance"
    );
    assert!(
        s.try_claim(&app, "web.1", Some("B"), "host2-bbbb", 3_000, 3_000, 63_000)
            .await
            .unwrap(),
        "but not a new instance"
    );
    let (holder, kind, _) = s.claim(&app, "web.1").await.unwrap().unwrap();
    assert_eq!((holder.as_str(), kind), ("host2-bbbb", ClaimKind::Lease));
    // A crashed run's lease: read at start as an unknown outcome dated by
    // its decision, never deleted (it expires).
    assert!(
        s.try_claim(
            &app,
            "web.2",
            Some("A"),
            "host3-cccc",
            2_500,
            3_000,
            9_000_000_000_000
        )
        .await
        .unwrap()
    );
    let left: Vec<_> = s
        .leases()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.app == app)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    let web2 = left.iter().find(|l| l.dyno == "web.2").unwrap();
    assert_eq!(
        (web2.instance.as_deref(), web2.decided_at),
        (Some("A"), 2_500)
    );
    assert!(s.claim(&app, "web.2").await.unwrap().is_some());
}

/// The window runs on the decision's log time, as the engine's does, and a
/// holder's own window never refuses its own later decision.
async fn windows_run_on_log_time_and_never_refuse_their_holder(s: &Store) {
    use dynoguard::store::ClaimKind;
    let app = unique("logclock");
    // Decided at log time 1_000 (the wall clock is far later: a backlog).
    assert!(
        s.try_claim(&app, "web.1", Some("A"), "h1-a", 1_000, 50_000, 170_000)
            .await
            .unwrap()
    );
    // The window: 20 s from the decision's log time.
    s.extend_claim(&app, "web.1", "h1-a", 21_000, ClaimKind::Window)
        .await
        .unwrap();
    assert!(
        !s.try_claim(&app, "web.1", Some("A"), "h2-b", 15_000, 60_000, 180_000)
            .await
            .unwrap(),
        "another replica inside the window (log time) is refused"
    );
    assert!(
        s.try_claim(&app, "web.1", Some("A"), "h2-b", 21_000, 60_000, 180_000)
            .await
            .unwrap(),
        "the window ended at the log time 21_000, whatever the wall clock"
    );
    s.extend_claim(&app, "web.1", "h2-b", 41_000, ClaimKind::Window)
        .await
        .unwrap();
    assert!(
        s.try_claim(&app, "web.1", Some("A"), "h2-b", 30_000, 61_000, 181_000)
            .await
            .unwrap(),
        "the holder's own window never refuses its own decision"
    );
}

async fn retention_deletes_what_is_old(s: &Store) {
    let app = unique("retention");
    let old = RestartRow {
        app: app.clone(),
        dyno: "web.1".into(),
        instance: None,
        reason: "threshold".into(),
        at: 5,
        outcome: "ok".into(),
        request_id: None,
        detail: None,
    };
    s.record_restart(&old).await.unwrap();
    s.record_restart(&RestartRow {
        at: 50_000,
        ..old.clone()
    })
    .await
    .unwrap();
    let minute = |at: i64| minute_row(&app, "web.1", None, at, 100.0, None);
    s.write_history(&[minute(0), minute(120_000)])
        .await
        .unwrap();
    let n = s
        .prune(&Retention {
            events_before: 10,
            max_events: i64::MAX / 4,
            restarts_before: 10,
            samples_before: 10,
            history_before: 60_000,
            claims_before: 10,
        })
        .await
        .unwrap();
    assert!(n >= 1);
    let left: Vec<i64> = s
        .restarts(&app)
        .await
        .unwrap()
        .iter()
        .map(|r| r.at)
        .collect();
    assert_eq!(left, [50_000]);
    let kept = s.history(&app, None, 0, i64::MAX, 60_000).await.unwrap();
    assert_eq!(kept.iter().map(|p| p.t).collect::<Vec<_>>(), [120_000]);
}

/// The minute of one sample (rss: total - 10, swap: 0.5).
fn minute_row(
    app: &str,
    dyno: &str,
    instance: Option<&str>,
    at: i64,
    total: f64,
    quota: Option<f64>,
) -> MinuteRow {
    MinuteRow::of_sample(&SampleRow {
        app: app.into(),
        dyno: dyno.into(),
        instance: instance.map(str::to_owned),
        at,
        memory: MemoryMb {
            total: Some(total),
            rss: Some(total - 10.0),
            swap: Some(0.5),
            quota,
        },
        replaced: None,
        contender: None,
    })
    .expect("a total")
}

/// Two replicas (or two flushes) write parts of the same minutes: the
/// history holds exact min/max, the right average, the newest instance.
async fn history_merges_minutes_and_reads_buckets(s: &Store) {
    let app = unique("history");
    let m = |dyno: &str, inst: &str, at: i64, total: f64, quota: Option<f64>| {
        minute_row(&app, dyno, Some(inst), at, total, quota)
    };
    const MIN: i64 = 60_000;
    // Replica A: web.1 minutes 0..3; replica B: more of minute 1, and web.2.
    s.write_history(&[
        m("web.1", "a", 5_000, 100.0, Some(512.0)),
        m("web.1", "a", MIN + 1_000, 200.0, Some(512.0)),
        m("web.1", "b", 2 * MIN + 1, 50.0, Some(512.0)),
    ])
    .await
    .unwrap();
    s.write_history(&[
        m("web.1", "a", MIN + 30_000, 400.0, None),
        m("web.2", "x", 5_000, 300.0, Some(1024.0)),
    ])
    .await
    .unwrap();
    let mut other = m("web.1", "a", MIN + 20_000, 300.0, None);
    other.merge(m("web.1", "a", MIN + 21_000, 300.0, None));
    s.write_history(&[other]).await.unwrap();

    let pts = s
        .history(&app, Some("web.1"), 0, 10 * MIN, MIN)
        .await
        .unwrap();
    let got: Vec<_> = pts
        .iter()
        .map(|p| (p.t, p.samples, p.min, p.avg, p.max, p.quota))
        .collect();
    assert_eq!(
        got,
        [
            (0, 1, 100.0, 100.0, 100.0, Some(512.0)),
            (MIN, 4, 200.0, 300.0, 400.0, Some(512.0)),
            (2 * MIN, 1, 50.0, 50.0, 50.0, Some(512.0)),
        ]
    );
    assert_eq!(pts[1].rss, Some(390.0));
    assert_eq!(pts[1].swap, Some(0.5));
    // Buckets of two minutes, every dyno, the range's end excluded.
    let pts = s.history(&app, None, 0, 2 * MIN, 2 * MIN).await.unwrap();
    let got: Vec<_> = pts
        .iter()
        .map(|p| (p.dyno.as_str(), p.t, p.samples, p.min, p.max))
        .collect();
    assert_eq!(
        got,
        [("web.1", 0, 5, 100.0, 400.0), ("web.2", 0, 1, 300.0, 300.0)]
    );
    let starts: Vec<_> = s
        .instance_starts(&app, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.dyno, i.instance, i.since))
        .collect();
    assert_eq!(
        starts,
        [
            ("web.1".to_owned(), "a".to_owned(), 0),
            ("web.1".to_owned(), "b".to_owned(), 2 * MIN),
            ("web.2".to_owned(), "x".to_owned(), 0),
        ]
    );
}

/// A dyno is known from any trace it left: history, a latest sample or an
/// event (`/api/dynos/{app}/{dyno}/history` is 404 for the others).
async fn a_dyno_is_known_by_any_trace(s: &Store) {
    let app = unique("known");
    assert!(!s.dyno_reported(&app, "web.1").await.unwrap());
    s.write_history(&[minute_row(&app, "web.1", None, 5_000, 100.0, None)])
        .await
        .unwrap();
    let mut sample = SampleRow {
        app: app.clone(),
        dyno: "web.2".into(),
        instance: None,
        at: 5_000,
        memory: MemoryMb {
            total: Some(1.0),
            rss: None,
            swap: None,
            quota: None,
        },
        replaced: None,
        contender: None,
    };
    s.upsert_samples(std::slice::from_ref(&sample))
        .await
        .unwrap();
    let mut e = Event::new(
        jiff::Timestamp::now(),
        EventKind::R14,
        dynoguard::domain::AppName::parse(&app).unwrap(),
    );
    e.dyno = dynoguard::domain::DynoName::parse("web.3");
    s.insert_events(&[e]).await.unwrap();
    for (dyno, known) in [
        ("web.1", true),
        ("web.2", true),
        ("web.3", true),
        ("web.4", false),
    ] {
        assert_eq!(s.dyno_reported(&app, dyno).await.unwrap(), known, "{dyno}");
    }
    assert!(!s.dyno_reported("other-app", "web.1").await.unwrap());
    sample.dyno = "web.4".into();
    sample.app = unique("elsewhere");
    s.upsert_samples(&[sample]).await.unwrap();
    assert!(
        !s.dyno_reported(&app, "web.4").await.unwrap(),
        "another app's"
    );
}

async fn events_filter_by_app_dyno_kind_and_time(s: &Store) {
    use dynoguard::domain::{AppName, DynoName};
    let app = unique("evf");
    let name = AppName::parse(&app).unwrap();
    let t = |secs: i64| jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap();
    let ev = |secs: i64, kind: EventKind, dyno: Option<&str>| {
        let mut e = Event::new(t(secs), kind, name.clone());
        e.dyno = dyno.and_then(DynoName::parse);
        e
    };
    // Stored out of log order (a backlog arrives late).
    s.insert_events(&[
        ev(30, EventKind::Restart, Some("web.1")),
        ev(10, EventKind::R14, Some("web.1")),
        ev(20, EventKind::Restart, Some("web.2")),
        ev(40, EventKind::Blind, None),
    ])
    .await
    .unwrap();
    let kinds = |f: EventFilter| {
        let s = s.clone();
        async move {
            s.events(&f)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.kind, r.dyno.unwrap_or_default()))
                .collect::<Vec<_>>()
        }
    };
    let all = EventFilter {
        app: Some(app.clone()),
        limit: 10,
        ..Default::default()
    };
    let pair = |k: &str, d: &str| (k.to_owned(), d.to_owned());
    assert_eq!(
        kinds(all.clone()).await,
        [
            pair("blind", ""),
            pair("restart", "web.1"),
            pair("restart", "web.2"),
            pair("r14", "web.1")
        ],
        "newest log time first"
    );
    assert_eq!(
        kinds(EventFilter {
            dyno: Some("web.1".into()),
            ..all.clone()
        })
        .await,
        [pair("restart", "web.1"), pair("r14", "web.1")]
    );
    assert_eq!(
        kinds(EventFilter {
            kinds: vec!["r14".into(), "blind".into()],
            ..all.clone()
        })
        .await,
        [pair("blind", ""), pair("r14", "web.1")]
    );
    assert_eq!(
        kinds(EventFilter {
            since: Some(t(20).as_millisecond()),
            limit: 2,
            ..all.clone()
        })
        .await,
        [pair("blind", ""), pair("restart", "web.1")]
    );
    assert!(
        kinds(EventFilter {
            app: Some(unique("none")),
            ..all
        })
        .await
        .is_empty()
    );
}

async fn contract(s: &Store) {
    s.ping().await.unwrap();
    a_lease_becomes_the_window_and_blocks_only_its_instance(s).await;
    windows_run_on_log_time_and_never_refuse_their_holder(s).await;
    retention_deletes_what_is_old(s).await;
    claims_are_exclusive_until_they_expire(s).await;
    concurrent_claims_have_one_winner(s).await;
    restarts_history_and_last_restarts(s).await;
    events_round_trip_newest_first(s).await;
    samples_keep_the_newest(s).await;
    history_merges_minutes_and_reads_buckets(s).await;
    events_filter_by_app_dyno_kind_and_time(s).await;
    a_dyno_is_known_by_any_trace(s).await;
}

#[tokio::test]
async fn sqlite_store_contract() {
    let (_dir, s) = sqlite().await;
    assert_eq!(s.backend(), "sqlite");
    contract(&s).await;
}

#[tokio::test]
async fn postgres_store_contract() {
    let Some(s) = postgres().await else { return };
    assert_eq!(s.backend(), "postgres");
    contract(&s).await;
}

#[tokio::test]
async fn bad_urls_are_refused_without_printing_passwords() {
    let err = Store::connect("mysql://u:hunter2@h/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unsupported") && !err.contains("hunter2"),
        "{err}"
    );
}

#[tokio::test]
async fn in_memory_sqlite_keeps_one_database() {
    let s = Store::connect("sqlite::memory:").await.unwrap();
    contract(&s).await;
}
