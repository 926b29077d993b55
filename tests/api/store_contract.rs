//! One set of store contract tests, run against SQLite and PostgreSQL.
//! PostgreSQL needs `DATABASE_URL_POSTGRES` (`.ci/run` starts a server);
//! without it those tests say they were skipped.

use dynoguard::domain::MemoryMb;
use dynoguard::domain::event::{Event, EventKind};
use dynoguard::store::{
    EventFilter, HistoryPoint, MinuteRow, RestartRow, Retention, SampleRow, Store,
};

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
    let row = |dyno: &str, at: i64, total: f64| SampleRow {
        app: app.clone(),
        dyno: dyno.into(),
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
    let latest = async || -> Vec<(String, i64, Option<f64>)> {
        s.latest_samples()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.app == app)
            .map(|r| (r.dyno, r.at, r.memory.total))
            .collect()
    };
    s.upsert_samples(&[row("web.1", 10, 100.5)]).await.unwrap();
    s.upsert_samples(&[row("web.1", 30, 300.25)]).await.unwrap();
    s.upsert_samples(&[row("web.1", 20, 200.0)]).await.unwrap();
    assert_eq!(latest().await, [("web.1".into(), 30, Some(300.25))]);

    // One batch with a dyno three times (rows are written many to a
    // statement): as one upsert after the other, the latest wins, and of
    // equal times the last given. And a batch of 150 dynos (64 + 64 + 16 + 4
    // + 2 rows a statement) writes every one.
    s.upsert_samples(&[
        row("web.1", 40, 400.0),
        row("web.2", 50, 500.0),
        row("web.1", 35, 350.0),
        row("web.2", 60, 601.0),
        row("web.2", 60, 602.0),
    ])
    .await
    .unwrap();
    let many: Vec<SampleRow> = (0..150)
        .map(|i| row(&format!("worker.{i}"), 100 + i, 1000.0 + i as f64))
        .collect();
    s.upsert_samples(&many).await.unwrap();
    let got = latest().await;
    assert_eq!(got.len(), 152);
    assert!(got.contains(&("web.1".into(), 40, Some(400.0))));
    assert!(got.contains(&("web.2".into(), 60, Some(602.0))));
    assert!(got.contains(&("worker.149".into(), 249, Some(1149.0))));
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

/// Parts of one stored minute in one batch: the newest quota and instance
/// that are not NULL is the stored one, between the two parts in time.
async fn a_batch_folds_a_minute_as_one_upsert_after_another(s: &Store) {
    let app = unique("fold");
    const M: i64 = 5 * 60_000;
    s.write_history(&[minute_row(
        &app,
        "web.1",
        Some("d"),
        M + 10_000,
        100.0,
        Some(1.0),
    )])
    .await
    .unwrap();
    s.write_history(&[
        minute_row(&app, "web.1", Some("a"), M + 9_000, 90.0, Some(2.0)),
        minute_row(&app, "web.1", None, M + 11_000, 110.0, None),
    ])
    .await
    .unwrap();
    let pts = s
        .history(&app, Some("web.1"), 0, 10 * M, 60_000)
        .await
        .unwrap();
    let got: Vec<_> = pts
        .iter()
        .map(|p| (p.t, p.samples, p.min, p.max, p.quota))
        .collect();
    assert_eq!(got, [(M, 3, 90.0, 110.0, Some(1.0))]);
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
    // The same minute twice in one batch, out of order (rows are written
    // many to a statement): folded as one upsert after the other.
    s.write_history(&[
        m("web.3", "y", MIN + 9_000, 700.0, Some(2048.0)),
        m("web.3", "y", 1_000, 600.0, Some(2048.0)),
        m("web.3", "z", MIN + 1_000, 650.0, None),
    ])
    .await
    .unwrap();
    let web3: Vec<_> = s
        .history(&app, Some("web.3"), 0, 10 * MIN, MIN)
        .await
        .unwrap()
        .iter()
        .map(|p| (p.t, p.samples, p.min, p.max, p.quota))
        .collect();
    assert_eq!(
        web3,
        [
            (0, 1, 600.0, 600.0, Some(2048.0)),
            (MIN, 2, 650.0, 700.0, Some(2048.0))
        ]
    );

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
        [
            ("web.1", 0, 5, 100.0, 400.0),
            ("web.2", 0, 1, 300.0, 300.0),
            ("web.3", 0, 3, 600.0, 700.0)
        ]
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
            // Not z: it was never a minute's newest sample.
            ("web.3".to_owned(), "y".to_owned(), 0),
        ]
    );
}

/// What reading minutes must give, computed here from the rows written:
/// the minutes merged as the upsert merges them, grouped into `bucket`s.
fn expected_history(
    written: &[MinuteRow],
    dyno: Option<&str>,
    from: i64,
    to: i64,
    bucket: i64,
) -> Vec<HistoryPoint> {
    use std::collections::BTreeMap;
    let mut minutes: BTreeMap<(String, i64), MinuteRow> = BTreeMap::new();
    for r in written {
        match minutes.entry((r.dyno.clone(), r.minute)) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(r.clone()),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(r.clone());
            }
        }
    }
    let mut buckets: BTreeMap<(String, i64), (HistoryPoint, f64)> = BTreeMap::new();
    for ((d, minute), r) in minutes {
        if minute < from || minute >= to || dyno.is_some_and(|x| x != d) {
            continue;
        }
        let t = minute / bucket * bucket;
        let (p, sum) = buckets.entry((d.clone(), t)).or_insert_with(|| {
            (
                HistoryPoint {
                    dyno: d.clone(),
                    t,
                    samples: 0,
                    min: f64::INFINITY,
                    avg: 0.0,
                    max: f64::NEG_INFINITY,
                    rss: None,
                    swap: None,
                    quota: None,
                },
                0.0,
            )
        });
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        p.samples += i64::from(r.samples);
        p.min = p.min.min(r.total_min);
        p.max = p.max.max(r.total_max);
        *sum += r.total_sum;
        p.rss = max(p.rss, r.rss_max);
        p.swap = max(p.swap, r.swap_max);
        p.quota = max(p.quota, r.quota);
    }
    buckets
        .into_values()
        .map(|(mut p, sum)| {
            p.avg = sum / p.samples as f64;
            p
        })
        .collect()
}

/// Equal points: every figure exact but the average, a sum divided, whose
/// last bits depend on the order the database adds in.
fn assert_same_points(got: &[HistoryPoint], want: &[HistoryPoint], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?}\nwant {want:?}");
    for (g, w) in got.iter().zip(want) {
        let exact = |p: &HistoryPoint| {
            (
                p.dyno.clone(),
                p.t,
                p.samples,
                p.min,
                p.max,
                p.rss,
                p.swap,
                p.quota,
            )
        };
        assert_eq!(exact(g), exact(w), "{what}");
        assert!(
            (g.avg - w.avg).abs() <= w.avg.abs() * 1e-12,
            "{what}: avg {} vs {}",
            g.avg,
            w.avg
        );
    }
}

/// The roll-up (12-minute slots, read for buckets of a multiple of 12
/// minutes) gives what reading minutes gives: minutes written in several
/// batches — the same minute in two of them, two replicas' rows merged, a
/// minute whose quota falls when a newer part arrives — then read over
/// ranges whose ends fall on slots or between them, for every dyno or one.
async fn history_rollup_reads_as_minutes(s: &Store) {
    const MIN: i64 = 60_000;
    let app = unique("rollup");
    // Four hours from 2025-11-21 04:40 UTC (not on a 12-minute boundary).
    let t0 = 1_763_700_000_000_i64 / MIN * MIN;
    let dynos = ["web.1", "web.2", "worker.1"];
    let figure =
        |d: usize, m: i64, k: i64| 200.0 + ((m * 37 + d as i64 * 11 + k * 5) % 300) as f64 * 0.37;
    let row = |d: usize, m: i64, second: i64, k: i64, inst: &str, quota: Option<f64>| {
        minute_row(
            &app,
            dynos[d],
            Some(inst),
            t0 + m * MIN + second * 1000,
            figure(d, m, k),
            quota,
        )
    };
    let mut written = Vec::new();
    // Flush 1: minutes 0..150 of every dyno, one sample each at :10.
    let first: Vec<MinuteRow> = (0..3)
        .flat_map(|d| (0..150).map(move |m| (d, m)))
        .map(|(d, m)| row(d, m, 10, 0, if m < 70 { "a" } else { "b" }, Some(512.0)))
        .collect();
    // Flush 2: minutes 140..240 — 140..150 again (the same minute in two
    // batches), two samples each folded in memory first.
    let second: Vec<MinuteRow> = (0..3)
        .flat_map(|d| (140..240).map(move |m| (d, m)))
        .map(|(d, m)| {
            let mut r = row(d, m, 30, 1, "b", Some(512.0));
            r.merge(row(d, m, 40, 2, "b", None));
            r
        })
        .collect();
    // Replica B: parts of minutes the first replica also wrote — web.1's
    // minutes 20..50 newer (a resize: the quota falls to 256 there), web.2's
    // 100..110 older (its quota and instance lose) and higher.
    let replica: Vec<MinuteRow> = (20..50)
        .map(|m| row(0, m, 50, 3, "a", Some(256.0)))
        .chain((100..110).map(|m| {
            let mut r = row(1, m, 1, 4, "z", Some(2048.0));
            r.total_max += 1000.0;
            r.total_sum += 1000.0;
            r.samples += 1;
            r
        }))
        .collect();
    for batch in [&first, &second, &replica] {
        s.write_history(batch).await.unwrap();
        written.extend(batch.iter().cloned());
    }
    // One minute, then the same minute again in its own batch.
    let late = row(2, 200, 59, 9, "b", Some(1024.0));
    s.write_history(std::slice::from_ref(&late)).await.unwrap();
    s.write_history(std::slice::from_ref(&late)).await.unwrap();
    written.extend([late.clone(), late]);

    let slot = 12 * MIN;
    let first_slot = (t0 / slot + 1) * slot;
    let ranges = [
        // The page's: from and to anywhere (the ends read from minutes).
        (
            t0 + 7 * MIN + 13_000,
            t0 + 230 * MIN + 60_000 + 17,
            84 * MIN,
        ),
        (
            t0 + 7 * MIN + 13_000,
            t0 + 230 * MIN + 60_000 + 17,
            12 * MIN,
        ),
        // On slots: the roll-up alone.
        (first_slot, first_slot + 10 * slot, 12 * MIN),
        (first_slot, first_slot + 10 * slot, 24 * MIN),
        // Everything.
        (0, i64::MAX, 84 * MIN),
        (
            t0 - 7 * 24 * 60 * MIN,
            t0 + 7 * 24 * 60 * MIN,
            7 * 24 * 60 * MIN / 120,
        ),
        // Within one slot, or buckets the roll-up does not divide: minutes.
        (first_slot + MIN, first_slot + 11 * MIN, 12 * MIN),
        (t0, t0 + 240 * MIN, 3 * MIN),
        (t0, t0 + 240 * MIN, 90 * MIN),
    ];
    for (from, to, bucket) in ranges {
        for dyno in [None, Some("web.1"), Some("web.2"), Some("worker.1")] {
            let what = format!("{dyno:?} from {from} to {to} in {bucket}");
            let want = expected_history(&written, dyno, from, to, bucket);
            assert!(!want.is_empty(), "{what}");
            let by_minute = s.history(&app, dyno, from, to, MIN).await.unwrap();
            assert_same_points(
                &by_minute,
                &expected_history(&written, dyno, from, to, MIN),
                &format!("minutes, {what}"),
            );
            let got = s.history(&app, dyno, from, to, bucket).await.unwrap();
            assert_same_points(&got, &want, &what);
        }
    }
    // The quota that fell: web.1's minutes 20..50 say 256, so a 12-minute
    // bucket wholly inside them does too (the highest of its minutes').
    let inside = (t0 + 20 * MIN + slot - 1) / slot * slot;
    let pts = s
        .history(&app, Some("web.1"), inside, inside + slot, 12 * MIN)
        .await
        .unwrap();
    assert_eq!(
        pts.iter().map(|p| p.quota).collect::<Vec<_>>(),
        [Some(256.0)]
    );

    // Pruning cuts a slot: what is left of it still reads as its minutes.
    let before = first_slot + 5 * slot + 5 * MIN;
    s.prune(&history_only(before)).await.unwrap();
    written.retain(|r| r.minute >= before);
    for (from, to, bucket) in [
        (0, i64::MAX, 12 * MIN),
        (first_slot, first_slot + 20 * slot, 84 * MIN),
    ] {
        let got = s.history(&app, None, from, to, bucket).await.unwrap();
        assert_same_points(
            &got,
            &expected_history(&written, None, from, to, bucket),
            &format!("after pruning, from {from} to {to} in {bucket}"),
        );
    }
}

/// What `instance_starts` must give, computed here from the rows written:
/// the minutes merged as the upsert merges them (a minute's instance is its
/// newest sample's), then each dyno's instances with their first minute
/// from `from` on — what grouping the minutes in SQL gave.
fn expected_starts(written: &[MinuteRow], from: i64) -> Vec<(String, String, i64)> {
    use std::collections::BTreeMap;
    let mut minutes: BTreeMap<(String, i64), MinuteRow> = BTreeMap::new();
    for r in written {
        match minutes.entry((r.dyno.clone(), r.minute)) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(r.clone()),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(r.clone());
            }
        }
    }
    let mut first: BTreeMap<(String, String), i64> = BTreeMap::new();
    for ((dyno, minute), r) in minutes {
        if let (true, Some(i)) = (minute >= from, r.instance) {
            first.entry((dyno, i)).or_insert(minute);
        }
    }
    let mut starts: Vec<_> = first.into_iter().map(|((d, i), m)| (d, i, m)).collect();
    starts.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    starts
}

/// `instance_starts` (bounds per instance, the first minute looked up
/// within them) gives what grouping the minutes gave, from any point:
/// minutes written in several batches and by two replicas, a newer sample
/// taking a minute over for another instance — an instance's first minute,
/// an instance's only minute (it is then seen no more), a minute in the
/// middle of another's (the first comes back after it) — an older sample
/// losing (its instance is never seen), minutes without an instance, then
/// pruning and a minute written late, below the cut-off.
async fn instance_starts_read_as_minutes(s: &Store) {
    const MIN: i64 = 60_000;
    let app = unique("starts");
    let other = unique("starts-other");
    let t0 = 1_763_700_000_000_i64 / MIN * MIN;
    let row = |dyno: &str, m: i64, second: i64, inst: Option<&str>| {
        minute_row(
            &app,
            dyno,
            inst,
            t0 + m * MIN + second * 1000,
            200.0 + m as f64,
            Some(512.0),
        )
    };
    let range = |dyno: &'static str, ms: std::ops::Range<i64>, second: i64, inst: &'static str| {
        ms.map(move |m| (dyno, m, second, Some(inst)))
    };
    // (dyno, minute, second of its sample, instance)
    type Part<'a> = (&'a str, i64, i64, Option<&'a str>);
    let batches: Vec<Vec<Part>> = vec![
        // Flush 1.
        range("web.1", 0..60, 10, "a")
            .chain(range("web.1", 60..130, 10, "b"))
            .chain(range("web.2", 0..100, 10, "x"))
            .chain(range("web.3", 0..10, 10, "p"))
            .chain(range("web.3", 10..40, 10, "q"))
            .chain((0..20).map(|m| ("worker.1", m, 10, None)))
            .collect(),
        // Flush 2: an older part of minute 60 for "a" (loses), web.1's
        // next instance, web.2's minute 50 taken by "y" (newer), worker.1's
        // minute 10 with an older "w" (loses to the minute without one).
        range("web.1", 60..61, 5, "a")
            .chain(range("web.1", 130..200, 10, "c"))
            .chain(range("web.2", 50..51, 59, "y"))
            .chain(range("worker.1", 10..11, 1, "w"))
            .collect(),
        // Replica B: newer parts — web.1's "b" takes 130..135 from "c"
        // (its first minute moves), web.3's "p" takes "q"'s first two,
        // worker.1's minute 15 gets "w"; an older "q" at web.3's minute 5.
        range("web.1", 125..135, 50, "b")
            .chain(range("web.3", 10..12, 50, "p"))
            .chain(range("web.3", 5..6, 1, "q"))
            .chain(range("worker.1", 15..16, 50, "w"))
            .collect(),
        // web.2's minute 50 again, newer still, for "z": "y" loses its
        // only minute.
        range("web.2", 50..51, 59, "z").collect(),
    ];
    let mut written = Vec::new();
    for batch in &batches {
        let rows: Vec<MinuteRow> = batch
            .iter()
            .map(|&(d, m, sec, i)| {
                let mut r = row(d, m, sec, i);
                if sec == 59 && i == Some("z") {
                    r.last_at += 500;
                }
                r
            })
            .collect();
        s.write_history(&rows).await.unwrap();
        written.extend(rows);
    }
    // Another app's dynos of the same names are not this app's.
    s.write_history(&[minute_row(
        &other,
        "web.1",
        Some("o"),
        t0 + 70 * MIN,
        1.0,
        None,
    )])
    .await
    .unwrap();

    let read = |from: i64| {
        let app = &app;
        async move {
            s.instance_starts(app, from)
                .await
                .unwrap()
                .into_iter()
                .map(|i| (i.dyno, i.instance, i.since))
                .collect::<Vec<_>>()
        }
    };
    let mut froms = vec![i64::MIN, -1, 0, i64::MAX];
    for m in -2..=202 {
        froms.extend([t0 + m * MIN, t0 + m * MIN + 1, t0 + m * MIN - 1]);
    }
    for &from in &froms {
        assert_eq!(
            read(from).await,
            expected_starts(&written, from),
            "from {from}"
        );
    }
    let all = read(0).await;
    let names = |dyno: &str| {
        all.iter()
            .filter(|(d, _, _)| d == dyno)
            .map(|(_, i, m)| (i.as_str(), (m - t0) / MIN))
            .collect::<Vec<_>>()
    };
    assert_eq!(names("web.1"), [("a", 0), ("b", 60), ("c", 135)]);
    assert_eq!(names("web.2"), [("x", 0), ("z", 50)], "y lost its minute");
    assert_eq!(names("web.3"), [("p", 0), ("q", 12)]);
    assert_eq!(names("worker.1"), [("w", 15)]);

    // Pruning: instances whose minutes are all gone are gone; one cut
    // through keeps its first minute left; a minute written late, below
    // the cut-off, is seen.
    let before = t0 + 55 * MIN + 1;
    let prune = |before: i64| async move { s.prune(&history_only(before)).await };
    prune(before).await.unwrap();
    written.retain(|r| r.minute >= before);
    let late = row("web.2", 3, 30, Some("late"));
    s.write_history(std::slice::from_ref(&late)).await.unwrap();
    written.push(late);
    for &from in &froms {
        assert_eq!(
            read(from).await,
            expected_starts(&written, from),
            "after pruning, from {from}"
        );
    }
    prune(t0 + 240 * MIN).await.unwrap();
    assert_eq!(read(i64::MIN).await, []);
    assert_eq!(
        s.instance_starts(&other, 0).await.unwrap().len(),
        0,
        "pruned with the rest"
    );

    // More dynos and instances in one batch than one statement widens.
    let bulk = unique("starts-bulk");
    let rows: Vec<MinuteRow> = (0..1100)
        .map(|i| {
            minute_row(
                &bulk,
                &format!("web.{}", i % 550),
                Some(&format!("i{i}")),
                t0 + (i / 550) * MIN,
                1.0,
                None,
            )
        })
        .collect();
    s.write_history(&rows).await.unwrap();
    assert_eq!(s.instance_starts(&bulk, 0).await.unwrap().len(), 1100);
    assert_eq!(s.instance_starts(&bulk, t0 + 1).await.unwrap().len(), 550);
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
    a_batch_folds_a_minute_as_one_upsert_after_another(s).await;
    history_rollup_reads_as_minutes(s).await;
    instance_starts_read_as_minutes(s).await;
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

/// A retention that prunes history minutes before `before` and nothing else.
fn history_only(before: i64) -> Retention {
    Retention {
        events_before: 0,
        max_events: i64::MAX / 4,
        restarts_before: 0,
        samples_before: 0,
        history_before: before,
        claims_before: 0,
    }
}
