//! The restarter: windows, instances, retries, concurrency, dry run.

use crate::helpers::*;

#[tokio::test]
async fn same_dyno_within_the_window_is_not_restarted_again() {
    let mut cfg =
        dynoguard::config::env::from_env(&base_env(&[]), dynoguard::config::env::Need::App)
            .unwrap();
    // A restart "settles" at once, so the same instance reporting again is
    // reported as a restart that did not take (not as one in progress).
    cfg.apps[0].policy.defaults.settle = jiff::SignedDuration::from_millis(1);
    let app = spawn_config(cfg).await;
    app.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    assert_eq!(app.wait_for_restarts(1).await.len(), 1);
    app.wait_for_event("restart").await;
    // The same instance still over (the restart did not take)…
    app.post_logs(sample("web.1", UUID_A, 770.0, 512.0)).await;
    // …and the replacement instance over again within the window.
    app.post_logs(sample("web.1", UUID_B, 800.0, 512.0)).await;
    app.quiesce().await;
    assert_eq!(app.fake.restarts().len(), 1);
    let events = app.wait_for_event("skipped").await;
    let reasons: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "skipped")
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(reasons.contains(&"same_instance".to_owned()), "{reasons:?}");
    assert!(reasons.contains(&"window".to_owned()), "{reasons:?}");
    app.stop().await;
}

#[tokio::test]
async fn r14_line_restarts() {
    let app = spawn_app().await;
    // The first three frames of dark_knight's fixture: load sample (instance),
    // Process running mem=736M(143.8%), Error R14.
    let text = String::from_utf8(fixture("web.1.restarting")).unwrap();
    let head: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    app.post_logs(head).await;
    let calls = app.wait_for_restarts(1).await;
    assert_eq!(calls.len(), 1);
    let events = app.wait_for_event("restart").await;
    let r = events.iter().find(|e| e["event"] == "restart").unwrap();
    assert_eq!(r["reason"], "r14");
    assert_eq!(r["instance"], "4cf08a3d-2f18-4746-baa3-8374af270390");
    app.stop().await;
}

#[tokio::test]
async fn unwatched_type_is_not_restarted() {
    let app = spawn_app().await;
    app.post_logs(sample("worker.1", UUID_A, 900.0, 512.0))
        .await;
    app.post_logs(sample("slow_worker.2", UUID_B, 900.0, 512.0))
        .await;
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    let events = app.wait_for_event("skipped").await;
    assert!(events.iter().any(|e| e["event"] == "skipped"
        && e["reason"] == "type_not_watched"
        && e["dyno"] == "worker.1"));
    app.stop().await;
}

#[tokio::test]
async fn a_failed_call_is_retried_with_backoff() {
    let app = spawn_app().await;
    app.fake.fail_restarts(&[500, 503]);
    app.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    let calls = app.wait_for_restarts(3).await;
    assert_eq!(calls.len(), 3);
    app.wait_for_event("restart").await;
    let m = app.metrics().await;
    for line in [
        "dynoguard_api_calls_total{status=\"500\"} 1",
        "dynoguard_api_calls_total{status=\"503\"} 1",
        "dynoguard_api_calls_total{status=\"202\"} 1",
    ] {
        assert!(m.contains(line), "{line} missing from {m}");
    }
    assert!(m.contains("dynoguard_restarts_total{app=\"todo\",process_type=\"web\",reason=\"threshold\",outcome=\"ok\"} 1"), "{m}");
    app.stop().await;
}

#[tokio::test]
async fn a_failing_call_backs_off_instead_of_retrying_on_every_sample() {
    let app = spawn_app().await;
    // An expired token: 401 is not worth an immediate retry.
    app.fake.fail_restarts(&[401]);
    // Log time in the past: a line more than a minute ahead of its arrival
    // would be judged at its arrival time.
    let t0 = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(5);
    let at = |secs: i64| (t0 + jiff::SignedDuration::from_secs(secs)).to_string();
    app.post_logs(sample_at("web.1", UUID_A, 768.0, 512.0, &at(0)))
        .await;
    app.wait_for_event("restart_failed").await;
    // Five more samples within the minute: no call, one `skipped backoff`.
    for i in 1..=5 {
        app.post_logs(sample_at("web.1", UUID_A, 770.0, 512.0, &at(i * 10)))
            .await;
    }
    app.quiesce().await;
    assert_eq!(app.fake.restarts().len(), 1);
    let events = app.events().await;
    let count = |kind: &str, reason: Option<&str>| {
        events
            .iter()
            .filter(|e| e["event"] == kind && reason.is_none_or(|r| e["reason"] == r))
            .count()
    };
    assert_eq!(count("restart_failed", None), 1, "{events:?}");
    assert_eq!(count("skipped", Some("backoff")), 1, "{events:?}");
    // After the backoff (log time), the next sample tries again: the claim
    // was released, the call now succeeds.
    app.post_logs(sample_at("web.1", UUID_A, 780.0, 512.0, &at(61)))
        .await;
    app.wait_for_event("restart").await;
    assert_eq!(app.fake.restarts().len(), 2);
    let rows = app.shared.store.restarts(APP).await.unwrap();
    let outcomes: Vec<_> = rows.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failed", "ok"]);
    app.stop().await;
}

#[tokio::test]
async fn a_404_forgets_the_dyno() {
    let app = spawn_app().await;
    app.fake.fail_restarts(&[404]);
    app.post_logs(sample("web.3", UUID_A, 768.0, 512.0)).await;
    let events = app.wait_for_event("restart_failed").await;
    let f = events
        .iter()
        .find(|e| e["event"] == "restart_failed")
        .unwrap();
    assert!(f["detail"].as_str().unwrap().contains("404"), "{f}");
    assert_eq!(app.fake.restarts().len(), 1, "404 is not retried");
    let dynos = app.dynos().await;
    assert!(
        dynos
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["dyno"] != "web.3")
    );
    app.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_posts_of_the_same_sample_give_one_restart() {
    let app = spawn_app().await;
    let body = sample("web.1", UUID_A, 768.0, 512.0);
    let posts = (0..20).map(|_| app.post_logs(body.clone()));
    for r in futures_util::future::join_all(posts).await {
        assert_eq!(r.status(), 204);
    }
    app.wait_for_restarts(1).await;
    app.quiesce().await;
    assert_eq!(app.fake.restarts().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn dry_run_decides_and_reports_but_calls_nothing() {
    let app = spawn_env(&[("DYNOGUARD_DRY_RUN", "1")]).await;
    app.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    let events = app.wait_for_event("skipped").await;
    let s = events.iter().find(|e| e["event"] == "skipped").unwrap();
    assert_eq!(s["reason"], "dry_run");
    assert_eq!(s["dry_run"], true);
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_slow_api_never_blocks_ingestion() {
    let app = spawn_app().await;
    app.fake.set_delay(Some(std::time::Duration::from_secs(2)));
    app.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    app.wait_for_restarts(1).await;
    // The API call is now in progress (and will be for 2 s): drains keep flowing.
    for i in 0..20 {
        let r = app
            .post_logs(sample(&format!("web.{}", i + 2), UUID_B, 100.0, 512.0))
            .await;
        assert_eq!(r.status(), 204);
    }
    let dynos = app.dynos().await;
    assert_eq!(dynos.as_array().unwrap().len(), 21);
    assert!(
        app.events().await.iter().all(|e| e["event"] != "restart"),
        "the slow call had not returned yet"
    );
    app.wait_for_event("restart").await;
    app.stop().await;
}

#[tokio::test]
async fn r15_line_restarts_and_can_be_turned_off() {
    let app = spawn_app().await;
    app.post_logs(
        sample("web.1", UUID_A, 400.0, 512.0)
            + &platform("web.1", "Error R15 (Memory quota vastly exceeded)"),
    )
    .await;
    app.wait_for_restarts(1).await;
    let events = app.wait_for_event("restart").await;
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "restart" && e["reason"] == "r15")
    );
    assert!(events.iter().any(|e| e["event"] == "r15"));
    app.stop().await;

    let mut cfg =
        dynoguard::config::env::from_env(&base_env(&[]), dynoguard::config::env::Need::App)
            .unwrap();
    cfg.apps[0].policy.defaults.on_r15 = false;
    cfg.apps[0].policy.defaults.on_r14 = false;
    let app = spawn_config(cfg).await;
    app.post_logs(
        sample("web.1", UUID_A, 400.0, 512.0)
            + &platform("web.1", "Error R15 (Memory quota vastly exceeded)")
            + &platform("web.1", "Error R14 (Memory quota exceeded)"),
    )
    .await;
    app.wait_for_event("r15").await;
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_batch_that_already_shows_the_replacement_restarts_nothing() {
    // dark_knight's whole fixture: R14, then Heroku restarting web.1 and the
    // new instance's first sample — all in one batch. Restarting now would
    // restart the fresh instance: the re-check before acting prevents it,
    // says so (`skipped` / `replaced`), and claims no recovery it did not make.
    let app = spawn_app().await;
    app.post_logs(fixture("web.1.restarting")).await;
    let events = app.wait_for_event("skipped").await;
    assert!(events.iter().any(|e| e["event"] == "r14"));
    let skipped = events.iter().find(|e| e["event"] == "skipped").unwrap();
    assert_eq!(skipped["reason"], "replaced");
    assert_eq!(skipped["instance"], "4cf08a3d-2f18-4746-baa3-8374af270390");
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    assert!(app.events().await.iter().all(|e| e["event"] != "recovered"));
    // The window was not consumed: the new instance going over is restarted.
    app.post_logs(sample(
        "web.1",
        "5fb3210e-a52b-4d35-9620-cc5a2cb416d7",
        600.0,
        512.0,
    ))
    .await;
    assert_eq!(app.wait_for_restarts(1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_restarted_instance_reporting_while_the_restart_settles_is_quiet() {
    let app = spawn_app().await;
    app.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    app.wait_for_event("restart").await;
    app.post_logs(
        sample("web.1", UUID_A, 770.0, 512.0)
            + &platform("web.1", "Error R14 (Memory quota exceeded)"),
    )
    .await;
    app.wait_for_event("r14").await;
    app.quiesce().await;
    assert_eq!(app.fake.restarts().len(), 1);
    assert!(
        app.events().await.iter().all(|e| e["event"] != "skipped"),
        "{:?}",
        app.events().await
    );
    app.stop().await;
}

/// Issue 17: the claim runs on the decision's log time, as the engine's
/// window does — a slow DELETE never makes dynoguard's own claim refuse its
/// own retry after the window.
#[tokio::test]
async fn our_own_claim_never_swallows_our_retry() {
    let app = spawn_env(&[("WEB_RESTART_WINDOW", "20s")]).await;
    let ago = |s: i64| (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s)).to_string();
    // A DELETE that takes 8 s.
    app.fake.set_delay(Some(std::time::Duration::from_secs(8)));
    app.post_logs(sample_at("web.1", UUID_A, 700.0, 512.0, &ago(60)))
        .await;
    app.wait_for_event("restart").await;
    app.fake.set_delay(None);
    // 25 s of log time after the decision the same instance is still over:
    // the 20 s window has passed, so it is restarted again at once.
    app.post_logs(sample_at("web.1", UUID_A, 710.0, 512.0, &ago(35)))
        .await;
    assert_eq!(app.wait_for_restarts(2).await.len(), 2);
    let mut events = app.events().await;
    for _ in 0..100 {
        if events
            .iter()
            .any(|e| e["event"] == "restart" && e["reason"] == "retry")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        events = app.events().await;
    }
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "restart" && e["reason"] == "retry"),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "skipped"
            && e["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("already restarted")),
        "{events:?}"
    );
    app.stop().await;
}
