//! One set of store contract tests, run against SQLite and PostgreSQL.
//! PostgreSQL needs `DATABASE_URL_POSTGRES` (`.ci/run` starts a server);
//! without it those tests say they were skipped.

use dynoguard::decide::events::{Event, EventKind};
use dynoguard::store::{RestartRow, SampleRow, Store};

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
        s.try_claim(&app, "web.1", Some("u1"), "a", 1_000, 2_000)
            .await
            .unwrap()
    );
    assert!(
        !s.try_claim(&app, "web.1", Some("u1"), "b", 1_500, 2_500)
            .await
            .unwrap(),
        "held until 2000"
    );
    assert!(
        s.try_claim(&app, "web.2", None, "b", 1_500, 2_500)
            .await
            .unwrap(),
        "another dyno is independent"
    );
    assert!(
        s.try_claim(&app, "web.1", Some("u1"), "b", 2_000, 3_000)
            .await
            .unwrap(),
        "expired at 2000"
    );
    // Release only by the holder.
    s.release_claim(&app, "web.1", "a").await.unwrap();
    assert!(
        !s.try_claim(&app, "web.1", None, "c", 2_100, 3_100)
            .await
            .unwrap()
    );
    s.release_claim(&app, "web.1", "b").await.unwrap();
    assert!(
        s.try_claim(&app, "web.1", None, "c", 2_100, 3_100)
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
            s.try_claim(&app, "web.1", Some("u"), &format!("r{i}"), 10, 100)
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
        total: Some(total),
        rss: None,
        swap: None,
        quota: Some(512.0),
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
    assert_eq!((got[0].at, got[0].total), (30, Some(300.25)));
}

async fn a_lease_becomes_the_window_and_blocks_only_its_instance(s: &Store) {
    use dynoguard::store::ClaimKind;
    let app = unique("lease");
    assert!(
        s.try_claim(&app, "web.1", Some("A"), "host1-aaaa", 1_000, 61_000)
            .await
            .unwrap()
    );
    assert!(
        !s.try_claim(&app, "web.1", Some("B"), "host2-bbbb", 2_000, 62_000)
            .await
            .unwrap(),
        "a lease blocks everyone"
    );
    s.extend_claim(&app, "web.1", "host1-aaaa", 600_000, ClaimKind::Window)
        .await
        .unwrap();
    assert!(
        !s.try_claim(&app, "web.1", Some("A"), "host2-bbbb", 3_000, 63_000)
            .await
            .unwrap(),
        "the window blocks the same instance"
    );
    assert!(
        s.try_claim(&app, "web.1", Some("B"), "host2-bbbb", 3_000, 63_000)
            .await
            .unwrap(),
        "but not a new instance"
    );
    let (holder, kind, _) = s.claim(&app, "web.1").await.unwrap().unwrap();
    assert_eq!((holder.as_str(), kind), ("host2-bbbb", ClaimKind::Lease));
    // A crashed run's lease: only the same host takes it over at start.
    assert!(
        s.try_claim(
            &app,
            "web.2",
            Some("A"),
            "host3-cccc",
            3_000,
            9_000_000_000_000
        )
        .await
        .unwrap()
    );
    s.take_over_leases("host1").await.unwrap();
    assert!(s.claim(&app, "web.2").await.unwrap().is_some());
    assert!(s.take_over_leases("host3").await.unwrap() >= 1);
    assert!(s.claim(&app, "web.2").await.unwrap().is_none());
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
    let n = s.prune(10, 10, 10, 10, i64::MAX / 4).await.unwrap();
    assert!(n >= 1);
    let left: Vec<i64> = s
        .restarts(&app)
        .await
        .unwrap()
        .iter()
        .map(|r| r.at)
        .collect();
    assert_eq!(left, [50_000]);
}

async fn contract(s: &Store) {
    s.ping().await.unwrap();
    a_lease_becomes_the_window_and_blocks_only_its_instance(s).await;
    retention_deletes_what_is_old(s).await;
    claims_are_exclusive_until_they_expire(s).await;
    concurrent_claims_have_one_winner(s).await;
    restarts_history_and_last_restarts(s).await;
    events_round_trip_newest_first(s).await;
    samples_keep_the_newest(s).await;
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
