//! The service as a process: state across restarts of dynoguard, signals.

use dynoguard::config::{self, env::Need};

use crate::helpers::*;

#[tokio::test]
async fn windows_and_claims_survive_a_restart_of_dynoguard() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let cfg = || config::env::from_env(&base_env(&[]), Need::App).unwrap();
    let fake = dynoguard::sim::FakeHeroku::start().await.unwrap();

    let first = spawn_with(cfg(), fake.clone(), Some(db.clone())).await;
    first.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    first.wait_for_restarts(1).await;
    first.wait_for_event("restart").await;
    first.stop().await;

    let second = spawn_with(cfg(), fake.clone(), Some(db.clone())).await;
    // The restarted instance reports again, still over: never restarted twice.
    second
        .post_logs(sample("web.1", UUID_A, 790.0, 512.0))
        .await;
    // Its replacement over quota within the window: not yet either.
    second
        .post_logs(sample("web.1", UUID_B, 795.0, 512.0))
        .await;
    second.quiesce().await;
    assert_eq!(fake.restarts().len(), 1);
    let events = second.wait_for_event("skipped").await;
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "skipped" && e["reason"] == "same_instance")
    );
    second.stop().await;
}

#[tokio::test]
async fn a_claim_held_elsewhere_stops_the_restart() {
    // Another replica claimed web.1 a moment ago.
    let app = spawn_app().await;
    let now = jiff::Timestamp::now().as_millisecond();
    assert!(
        app.shared
            .store
            .try_claim(
                APP,
                "web.1",
                Some(UUID_A),
                "other-replica",
                now,
                now,
                now + 600_000
            )
            .await
            .unwrap()
    );
    app.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn sigterm_stops_the_binary_cleanly() {
    let serve = ServeProcess::start(&[
        ("APP_ID_OR_NAME", APP),
        ("AUTH_TOKEN", TOKEN),
        ("DRAIN_PASSWORD", PASSWORD),
    ])
    .await;
    let out = serve.sigterm().await;
    let exit = out.status;
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(exit.success(), "exit {exit:?}; log: {log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        log.contains("watching todo web via drain: threshold=100% restart_window=10m"),
        "{log}"
    );
    assert!(
        log.contains("could not check the Platform API token"),
        "{log}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains(PASSWORD),
        "secrets in the log: {log}"
    );
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_token_or_password() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dynoguard"))
        .arg("serve")
        .env_clear()
        .env("APP_ID_OR_NAME", APP)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AUTH_TOKEN") && err.contains("DRAIN_PASSWORD"),
        "{err}"
    );
}

#[tokio::test]
async fn two_replicas_sharing_postgres_restart_once() {
    let Ok(pg) = std::env::var("DATABASE_URL_POSTGRES") else {
        assert!(
            std::env::var_os("DYNOGUARD_REQUIRE_TOOLS").is_none(),
            "PostgreSQL is required here (DYNOGUARD_REQUIRE_TOOLS) but DATABASE_URL_POSTGRES is not set"
        );
        eprintln!("SKIPPED: two replicas on PostgreSQL (set DATABASE_URL_POSTGRES to run it)");
        return;
    };
    // A fresh app name: the database outlives test runs.
    let name = format!("ha-{:012x}", fastrand::u64(..) >> 16);
    let cfg = || config::env::from_env(&base_env(&[("APP_ID_OR_NAME", &name)]), Need::App).unwrap();
    let fake = dynoguard::sim::FakeHeroku::start().await.unwrap();
    let a = spawn_with(cfg(), fake.clone(), Some(pg.clone())).await;
    let b = spawn_with(cfg(), fake.clone(), Some(pg.clone())).await;
    // Heroku spreads drain POSTs across replicas: both see the incident.
    let body = sample("web.1", UUID_A, 768.0, 512.0);
    let (ra, rb) = tokio::join!(a.post_logs(body.clone()), b.post_logs(body));
    assert_eq!((ra.status().as_u16(), rb.status().as_u16()), (204, 204));
    a.wait_for_restarts(1).await;
    a.quiesce().await;
    assert_eq!(fake.restarts().len(), 1);
    a.stop().await;
    b.stop().await;
}

/// Runs the real binary in dry run with `LOG_FORMAT`, posts an over-quota
/// sample, stops it and returns its stdout.
async fn run_binary_log(format: &str) -> String {
    let serve = ServeProcess::start(&[
        ("APP_ID_OR_NAME", APP),
        ("DRAIN_PASSWORD", PASSWORD),
        ("DYNOGUARD_DRY_RUN", "1"),
        ("LOG_FORMAT", format),
    ])
    .await;
    let r = reqwest::Client::new()
        .post(serve.url("/logs"))
        .basic_auth("u", Some(PASSWORD))
        .body(sample("web.1", UUID_A, 768.0, 512.0))
        .send()
        .await
        .expect("posted");
    assert_eq!(r.status(), 204);
    // The event line is written before the 204 goes out: no wait needed.
    let out = serve.sigterm().await;
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn log_format_json_prints_each_event_as_the_spec_object() {
    let log = run_binary_log("json").await;
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("event").is_some_and(|e| e.is_string()) && v.get("app").is_some())
        .collect();
    let skipped = events
        .iter()
        .find(|e| e["event"] == "skipped")
        .unwrap_or_else(|| panic!("no skipped event in {log}"));
    assert_eq!(skipped["reason"], "dry_run");
    assert_eq!(skipped["dyno"], "web.1");
    assert_eq!(skipped["dry_run"], true);
    assert_eq!(skipped["memory_total_mb"], 768.0);
    // Every line is JSON in this mode.
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{log}"
    );
}

#[tokio::test]
async fn log_format_text_is_readable_key_values() {
    let log = run_binary_log("text").await;
    assert!(
        log.lines().any(|l| l.contains(
            "event=skipped app=todo dyno=web.1 reason=dry_run memory_total=768MB quota=512MB"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn the_token_is_checked_at_start_up() {
    let app = spawn_app().await;
    wait_until(|| {
        app.fake
            .requests()
            .iter()
            .any(|r| r.path == "/account/rate-limits")
    })
    .await;
    let check = app
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/account/rate-limits")
        .expect("self-test call");
    assert_eq!(
        check.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    app.stop().await;
}
