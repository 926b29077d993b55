//! `POST /logs`: auth, status codes, framing in the face of bad input.

use crate::helpers::*;

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_with_challenge() {
    let app = spawn_app().await;
    let body = sample("web.1", UUID_A, 100.0, 512.0);
    let r = app
        .http
        .post(app.url("/logs"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"dynoguard\"");
    assert_eq!(app.post_as("/logs", "user", "wrong", &body).await, 401);
    // Any user name is fine.
    assert_eq!(app.post_as("/logs", "anything", PASSWORD, &body).await, 204);
    app.stop().await;
}

#[tokio::test]
async fn healthy_sample_calls_nothing() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_logs(sample("web.1", UUID_A, 256.8, 512.0))
            .await
            .status(),
        204
    );
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    let dynos = app.dynos().await;
    assert_eq!(dynos[0]["dyno"], "web.1");
    assert_eq!(dynos[0]["state"], "ok");
    assert_eq!(dynos[0]["last_sample"]["memory_total_mb"], 256.8);
    app.stop().await;
}

#[tokio::test]
async fn over_quota_restarts_exactly_once_with_the_right_headers() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_logs(sample("web.1", UUID_A, 768.0, 512.0))
            .await
            .status(),
        204
    );
    let calls = app.wait_for_restarts(1).await;
    app.quiesce().await;
    let calls = if calls.len() == 1 {
        app.fake.restarts()
    } else {
        calls
    };
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c.method, "DELETE");
    assert_eq!(c.path, "/apps/todo/dynos/web.1");
    assert_eq!(
        c.header("accept"),
        Some("application/vnd.heroku+json; version=3")
    );
    assert_eq!(
        c.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(c.header("content-type"), Some("application/json"));
    assert!(
        c.header("user-agent").unwrap().starts_with("dynoguard/"),
        "{:?}",
        c.header("user-agent")
    );
    let events = app.wait_for_event("restart").await;
    let restart = events.iter().find(|e| e["event"] == "restart").unwrap();
    assert_eq!(restart["reason"], "threshold");
    assert_eq!(restart["instance"], UUID_A);
    assert_eq!(restart["memory_total_mb"], 768.0);
    assert_eq!(restart["memory_quota_mb"], 512.0);
    assert_eq!(restart["dry_run"], false);
    app.stop().await;
}

#[tokio::test]
async fn garbage_around_good_frames_is_skipped_and_the_frames_used() {
    let app = spawn_app().await;
    let mut body = b"\x00\xff\xfegarbage 99999999999 <1>1 \n12 <13>1 short\n".to_vec();
    body.extend_from_slice(sample("web.2", UUID_A, 100.0, 512.0).as_bytes());
    body.extend_from_slice(b"1000000 <134>1 truncated frame claiming a megabyte\n\xc3\x28\r\n");
    body.extend_from_slice(sample("web.1", UUID_A, 900.0, 512.0).as_bytes());
    body.extend_from_slice(b"trailing junk without newline");
    let r = app
        .post_to("/logs", body, &[("Logplex-Msg-Count", "2")])
        .await;
    assert_eq!(r.status(), 204);
    let calls = app.wait_for_restarts(1).await;
    assert_eq!(calls[0].path, "/apps/todo/dynos/web.1");
    app.stop().await;
}

#[tokio::test]
async fn decimal_memory_is_not_truncated() {
    // dark_knight truncates 512.50MB to 512 and would not restart.
    let app = spawn_app().await;
    app.post_logs(sample("web.1", UUID_A, 512.5, 512.0)).await;
    assert_eq!(app.wait_for_restarts(1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let app = spawn_app().await;
    let big = vec![b'x'; 11 * 1024 * 1024];
    assert_eq!(app.post_logs(big).await.status(), 413);
    app.stop().await;
}

#[tokio::test]
async fn ten_megabyte_body_of_good_frames_is_accepted() {
    let app = spawn_app().await;
    let one = frame(
        "<158>1 2020-01-08T22:33:57.353034+00:00 host heroku router - at=info method=GET path=\"/\" dyno=web.1 status=200",
    );
    let mut body = String::with_capacity(10 * 1024 * 1024);
    while body.len() + one.len() + 400 < 10 * 1024 * 1024 {
        body.push_str(&one);
    }
    body.push_str(&sample("web.1", UUID_A, 700.0, 512.0));
    assert_eq!(app.post_logs(body).await.status(), 204);
    assert_eq!(app.wait_for_restarts(1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn retried_batches_are_deduplicated_by_frame_id() {
    let app = spawn_app().await;
    let id = [("Logplex-Frame-Id", "09C557EAFCFB6CF2740EE62F62971098")];
    assert_eq!(
        app.post_to("/logs", sample("web.1", UUID_A, 100.0, 512.0), &id)
            .await
            .status(),
        204
    );
    assert_eq!(
        app.post_to("/logs", sample("web.1", UUID_A, 100.0, 512.0), &id)
            .await
            .status(),
        204
    );
    let frames = app
        .shared
        .counters
        .frames
        .load(std::sync::atomic::Ordering::Relaxed);
    let dups = app
        .shared
        .counters
        .duplicate_batches
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((frames, dups), (1, 1));
    app.stop().await;
}

#[tokio::test]
async fn msg_count_mismatch_is_counted_not_rejected() {
    let app = spawn_app().await;
    let r = app
        .post_to(
            "/logs",
            sample("web.1", UUID_A, 100.0, 512.0),
            &[("Logplex-Msg-Count", "5")],
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.shared
            .counters
            .msg_count_mismatch
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let m = app.metrics().await;
    assert!(m.contains("dynoguard_msg_count_mismatch_total 1"), "{m}");
    app.stop().await;
}

#[tokio::test]
async fn healthz_needs_no_auth() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().trim(), "ok");
    assert_eq!(
        app.http
            .get(app.url("/api/dynos"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.http.get(app.url("/")).send().await.unwrap().status(),
        401
    );
    app.post_logs(sample("web.1", UUID_A, 300.0, 512.0)).await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("web.1") && html.contains("<svg"), "{html}");
    app.stop().await;
}
