//! End to end against the simulator: several dynos with mixed memory curves
//! post real drain bodies; dynoguard restarts the leaking ones before R15
//! and never the steady ones.

use dynoguard::config::{self, env::Need};
use dynoguard::sim::FakeHeroku;
use dynoguard::sim::fleet::{self, Curve, Delivery, FleetOptions};
use tokio::sync::watch;

use crate::helpers::*;

#[tokio::test]
async fn leaking_dynos_are_restarted_before_r15_and_steady_ones_never() {
    let speed = 240.0;
    let fake = FakeHeroku::start().await.unwrap();
    let cfg = config::env::from_env(&base_env(&[]), Need::App).unwrap();
    // The real defaults: decisions run on the simulated log clock.
    let app = spawn_with(cfg, fake.clone(), None).await;

    let curves = [
        Curve::FastLeak,
        Curve::Steady,
        Curve::SlowLeak,
        Curve::Spiky,
        Curve::Steady,
    ];
    let mut opts = FleetOptions::new(
        APP,
        fleet::web_dynos(&curves, 512.0),
        Delivery::Drain {
            url: app.url("/logs"),
            password: PASSWORD.into(),
            drain_token: None,
        },
    );
    opts.speed = speed;
    opts.router_lines = 5;
    let (stop, rx) = watch::channel(false);
    let running = fleet::spawn(opts, fake.clone(), rx);
    // Run until the slow leak (quota at ~40 simulated minutes) was restarted,
    // then ten simulated minutes more; 60 s real at most on a loaded machine.
    wait_for(
        || fake.restarts().iter().any(|r| r.path.ends_with("/web.3")),
        60,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs_f64(10.0 * 60.0 / speed)).await;
    let _ = stop.send(true);
    let report = running.await.unwrap();

    let by_name = |n: &str| report.dynos.iter().find(|d| d.name == n).unwrap();
    for leak in ["web.1", "web.3"] {
        let d = by_name(leak);
        assert!(d.api_restarts >= 1, "{leak} never restarted: {d:?}");
        assert_eq!(d.r15_kills, 0, "{leak} reached R15: {d:?}");
    }
    for steady in ["web.2", "web.4", "web.5"] {
        assert_eq!(
            by_name(steady).api_restarts,
            0,
            "{steady} was restarted: {:?}",
            by_name(steady)
        );
    }
    // The fast leak would have been killed without dynoguard in that time.
    assert!(
        by_name("web.1").shadow_r15_kills >= 1,
        "{:?}",
        by_name("web.1")
    );
    // Every API call restarted a leaking dyno, with the app's token.
    for call in fake.restarts() {
        assert!(
            call.path.ends_with("/web.1") || call.path.ends_with("/web.3"),
            "{}",
            call.path
        );
        assert_eq!(
            call.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_leaking_dyno_watched_through_a_live_log_session_is_restarted() {
    let speed = 240.0;
    let fake = FakeHeroku::start().await.unwrap();
    let toml =
        "[[app]]\nname = \"todo\"\napi_token = \"test-token-7f3a\"\nsource = \"log-session\"\n";
    let cfg = dynoguard::config::file::parse("t.toml", toml, &Default::default()).unwrap();
    // The real defaults: decisions run on the simulated log clock.
    let app = spawn_with(cfg, fake.clone(), None).await;
    let mut opts = FleetOptions::new(
        APP,
        fleet::web_dynos(&[Curve::FastLeak, Curve::Steady], 512.0),
        Delivery::Session,
    );
    opts.speed = speed;
    let (stop, rx) = watch::channel(false);
    let running = fleet::spawn(opts, fake.clone(), rx);
    wait_for(|| !fake.restarts().is_empty(), 30).await;
    let _ = stop.send(true);
    let report = running.await.unwrap();
    let calls = fake.restarts();
    assert!(!calls.is_empty(), "no restart; report: {report:?}");
    assert!(
        calls.iter().all(|c| c.path == "/apps/todo/dynos/web.1"),
        "{calls:?}"
    );
    app.stop().await;
}
