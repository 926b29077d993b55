//! Log sessions: chunk boundaries, reconnects, SSE, isolation between apps.

use dynoguard::config::file;
use dynoguard::sim::{FakeHeroku, SessionPlan};

use crate::helpers::*;

fn pulled(apps: &[(&str, &str)]) -> dynoguard::config::Config {
    let mut toml = String::new();
    for (name, token) in apps {
        toml.push_str(&format!(
            "[[app]]\nname = \"{name}\"\napi_token = \"{token}\"\nsource = \"log-session\"\n\n"
        ));
    }
    file::parse("t.toml", &toml, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn line(dyno: &str, total: f64) -> String {
    format!(
        "2024-05-01T10:00:00.000000+00:00 heroku[{dyno}]: source={dyno} dyno=heroku.1.{UUID_A} sample#memory_total={total:.2}MB sample#memory_rss=1.00MB sample#memory_quota=512.00MB\n"
    )
}

#[tokio::test]
async fn a_sample_split_across_chunks_is_used() {
    let fake = FakeHeroku::start().await.unwrap();
    let text = format!("{}{}", line("web.1", 100.0), line("web.2", 768.25));
    // Cut the over-quota sample in the middle of its memory figure.
    let cut = text.find("768.").unwrap() + 2;
    let chunks = vec![
        text.as_bytes()[..cut].to_vec(),
        text.as_bytes()[cut..].to_vec(),
    ];
    fake.plan_session(
        "a",
        SessionPlan::Chunks {
            content_type: "text/plain; charset=utf-8",
            chunks,
        },
    );
    let app = spawn_with(pulled(&[("a", "tok")]), fake, None).await;
    let calls = app.wait_for_restarts(1).await;
    assert_eq!(calls[0].path, "/apps/a/dynos/web.2");
    let events = app.wait_for_event("restart").await;
    let r = events.iter().find(|e| e["event"] == "restart").unwrap();
    assert_eq!(r["memory_total_mb"], 768.25);
    let session = app
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/apps/a/log-sessions")
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&session.body).unwrap();
    assert_eq!(body["tail"], true);
    assert_eq!(body["source"], "heroku");
    app.stop().await;
}

#[tokio::test]
async fn server_sent_events_are_unwrapped() {
    let fake = FakeHeroku::start().await.unwrap();
    let sse = format!(
        "event: message\ndata: {}\n",
        line("web.1", 900.0).trim_end()
    );
    fake.plan_session(
        "a",
        SessionPlan::Chunks {
            content_type: "text/event-stream",
            chunks: vec![sse.into_bytes()],
        },
    );
    let app = spawn_with(pulled(&[("a", "tok")]), fake, None).await;
    assert_eq!(
        app.wait_for_restarts(1).await[0].path,
        "/apps/a/dynos/web.1"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_session_is_reopened_after_eof_and_after_a_500() {
    let fake = FakeHeroku::start().await.unwrap();
    fake.plan_session(
        "a",
        SessionPlan::Chunks {
            content_type: "text/plain",
            chunks: vec![line("web.1", 100.0).into_bytes()],
        },
    );
    fake.plan_session("a", SessionPlan::Status(500));
    fake.plan_session(
        "a",
        SessionPlan::Chunks {
            content_type: "text/plain",
            chunks: vec![line("web.1", 900.0).into_bytes()],
        },
    );
    let app = spawn_with(pulled(&[("a", "tok")]), fake, None).await;
    app.wait_for_restarts(1).await;
    let sessions = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/apps/a/log-sessions")
        .count();
    assert!(sessions >= 3, "{sessions} sessions");
    let events = app.wait_for_event("session_reconnect").await;
    let reconnects: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "session_reconnect")
        .collect();
    assert!(
        reconnects
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("500")),
        "{reconnects:?}"
    );
    assert!(
        reconnects
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("stream ended")),
        "{reconnects:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_broken_app_does_not_stop_another() {
    let fake = FakeHeroku::start().await.unwrap();
    // "broken" has a token the API rejects: every session creation fails.
    fake.require_token("broken", "the-real-token");
    fake.plan_session(
        "good",
        SessionPlan::Chunks {
            content_type: "text/plain",
            chunks: vec![line("web.1", 900.0).into_bytes()],
        },
    );
    let app = spawn_with(
        pulled(&[("broken", "wrong-token"), ("good", "tok")]),
        fake,
        None,
    )
    .await;
    let calls = app.wait_for_restarts(1).await;
    assert_eq!(calls[0].path, "/apps/good/dynos/web.1");
    let events = app.wait_for_event("session_reconnect").await;
    assert!(events.iter().any(|e| e["event"] == "session_reconnect"
        && e["app"] == "broken"
        && e["detail"].as_str().unwrap().contains("401")));
    app.stop().await;
}

#[tokio::test]
async fn a_silent_stream_is_reopened() {
    // No plan: the fake serves a live tail that never says anything.
    let fake = FakeHeroku::start().await.unwrap();
    let app = spawn_with(pulled(&[("a", "tok")]), fake, None).await;
    let events = app.wait_for_event("session_reconnect").await;
    let r = events
        .iter()
        .find(|e| e["event"] == "session_reconnect")
        .unwrap();
    assert!(
        r["detail"].as_str().unwrap().contains("silent for 2s"),
        "{r}"
    );
    app.stop().await;
}

/// dynoguard watching app `a` through log sessions, three of which in a
/// row each replay `history` (a reconnect replays recent history).
async fn replayed_three_times(history: &str, type_settings: &str) -> TestApp {
    let fake = FakeHeroku::start().await.unwrap();
    for _ in 0..3 {
        fake.plan_session(
            "a",
            SessionPlan::Chunks {
                content_type: "text/plain; charset=utf-8",
                chunks: vec![history.as_bytes().to_vec()],
            },
        );
    }
    let toml = format!(
        "[[app]]\nname = \"a\"\napi_token = \"tok\"\nsource = \"log-session\"\n{type_settings}"
    );
    let cfg = file::parse("t.toml", &toml, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    spawn_with(cfg, fake, None).await
}

/// Waits (5 s at most) until `count()` reaches `n`; returns the count.
async fn count_reaches(count: impl Fn() -> u64, n: u64) -> u64 {
    for _ in 0..100 {
        if count() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    count()
}

#[tokio::test]
async fn a_reconnect_replaying_history_does_not_count_samples_twice() {
    // Two over-quota samples are needed; the session's history holds one,
    // and every reconnect replays it.
    let app =
        replayed_three_times(&line("web.1", 700.0), "[app.types.web]\nconsecutive = 2\n").await;
    // Three sessions (the stream ends after the history each time): the two
    // replays are counted as stale, never as new samples.
    let c = &app.shared.counters;
    let stale = count_reaches(
        || c.lines_stale.load(std::sync::atomic::Ordering::Relaxed),
        2,
    )
    .await;
    assert_eq!(stale, 2);
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty(), "{:?}", app.events().await);
    app.stop().await;
}

/// Issue 17: a reconnect replays recent history; an R15 in it is reported
/// once, however many sessions replay it.
#[tokio::test]
async fn a_reconnect_replaying_an_r15_reports_it_once() {
    let history = line("web.1", 300.0)
        + "2024-05-01T10:00:05.000000+00:00 heroku[web.1]: Error R15 (Memory quota vastly exceeded)\n";
    let app = replayed_three_times(&history, "").await;
    let c = &app.shared.counters;
    let repeated = count_reaches(
        || c.lines_repeated.load(std::sync::atomic::Ordering::Relaxed),
        2,
    )
    .await;
    assert_eq!(repeated, 2);
    assert_eq!(app.wait_for_restarts(1).await.len(), 1);
    app.wait_for_event("r15").await;
    app.quiesce().await;
    let events = app.events().await;
    let r15 = events.iter().filter(|e| e["event"] == "r15").count();
    assert_eq!(r15, 1, "{events:?}");
    assert_eq!(app.fake.restarts().len(), 1);
    app.stop().await;
}
