//! dark_knight's feature list, each as a test against its own fixtures.

use crate::helpers::*;

#[tokio::test]
async fn its_out_of_memory_fixture_restarts_web_1() {
    let app = spawn_app().await;
    app.post_logs(fixture("web.1.out_of_memory")).await;
    let calls = app.wait_for_restarts(1).await;
    assert_eq!(calls[0].path, "/apps/todo/dynos/web.1");
    app.stop().await;
}

#[tokio::test]
async fn its_healthy_fixture_restarts_nothing() {
    let app = spawn_app().await;
    app.post_logs(fixture("web.1")).await;
    app.post_logs(fixture("web.1.new_dyno")).await;
    app.post_logs(fixture("logplex")).await;
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_new_dyno_out_of_memory_within_the_window_waits() {
    let app = spawn_app().await;
    app.post_logs(fixture("web.1.out_of_memory")).await;
    app.wait_for_restarts(1).await;
    app.post_logs(fixture("web.1.new_dyno.out_of_memory")).await;
    app.quiesce().await;
    assert_eq!(app.fake.restarts().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_new_dyno_out_of_memory_after_the_window_is_restarted() {
    let app = spawn_env(&[("WEB_RESTART_WINDOW", "1")]).await;
    app.post_logs(fixture("web.1.out_of_memory")).await;
    app.wait_for_restarts(1).await;
    app.wait_for_event("restart").await;
    // dark_knight's fixtures all carry one timestamp; windows are measured in
    // log time, so the new dyno's line is stamped 2 s later (same length:
    // the octet count still holds).
    let later = String::from_utf8(fixture("web.1.new_dyno.out_of_memory"))
        .unwrap()
        .replace("22:12:51.822974", "22:12:53.822974");
    app.post_logs(later).await;
    assert_eq!(app.wait_for_restarts(2).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn dyno_types_selects_what_is_watched() {
    let app = spawn_env(&[("DYNO_TYPES", "web,worker")]).await;
    app.post_logs(sample("worker.2", UUID_A, 600.0, 512.0))
        .await;
    let calls = app.wait_for_restarts(1).await;
    assert_eq!(calls[0].path, "/apps/todo/dynos/worker.2");
    app.post_logs(sample("clock.1", UUID_B, 600.0, 512.0)).await;
    app.quiesce().await;
    assert_eq!(app.fake.restarts().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn per_type_threshold_in_megabytes_and_percent() {
    let app = spawn_env(&[
        ("DYNO_TYPES", "web,worker"),
        ("WEB_RESTART_THRESHOLD", "300"),
        ("WORKER_RESTART_THRESHOLD", "90%"),
    ])
    .await;
    // web: 256.8 MB is under 300 MB; worker: 470 MB is over 90% of 512.
    app.post_logs(fixture("web.1")).await;
    app.post_logs(sample("worker.1", UUID_A, 470.0, 512.0))
        .await;
    let calls = app.wait_for_restarts(1).await;
    app.quiesce().await;
    assert_eq!(app.fake.restarts().len(), 1);
    assert_eq!(calls[0].path, "/apps/todo/dynos/worker.1");
    app.post_logs(sample("web.2", UUID_B, 301.0, 512.0)).await;
    assert_eq!(
        app.wait_for_restarts(2).await[1].path,
        "/apps/todo/dynos/web.2"
    );
    app.stop().await;
}

#[tokio::test]
async fn l10_is_counted_and_reported() {
    let app = spawn_app().await;
    app.post_logs(fixture("logplex")).await;
    let events = app.wait_for_event("samples_lost").await;
    let e = events
        .iter()
        .find(|e| e["event"] == "samples_lost")
        .unwrap();
    assert_eq!(e["count"], 2);
    let m = app.metrics().await;
    assert!(m.contains("dynoguard_l10_lost_messages_total 2"), "{m}");
    app.stop().await;
}
