//! Slack and webhook notifications: payloads, signatures, failures.

use dynoguard::config::{self, NotifyConfig, NotifyKind, env::Need};
use dynoguard::domain::event::EventKind;
use dynoguard::sim::FakeHeroku;
use secrecy::SecretString;

use crate::helpers::*;

#[tokio::test]
async fn slack_gets_dark_knight_style_text() {
    let fake = FakeHeroku::start().await.unwrap();
    let hook = format!("{}/hooks/slack/T000/B000/XXXX", fake.url());
    let cfg = config::env::from_env(&base_env(&[("SLACK_WEBHOOK_URL", &hook)]), Need::App).unwrap();
    let app = spawn_with(cfg, fake, None).await;
    app.post_logs(fixture("web.1.out_of_memory")).await;
    app.wait_for_restarts(1).await;
    wait_until(|| !app.fake.hooks().is_empty()).await;
    let hooks = app.fake.hooks();
    assert_eq!(hooks.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&hooks[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("web.1 dyno restarted with memory total 768MB"),
        "{text}"
    );
    assert!(
        text.contains("todo") && text.contains("threshold"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failing_webhook_never_fails_the_restart() {
    let mut cfg = config::env::from_env(&base_env(&[]), Need::App).unwrap();
    // Nothing listens on port 9 (discard): every delivery fails.
    cfg.notify.push(NotifyConfig {
        kind: NotifyKind::Slack,
        url: SecretString::from("http://127.0.0.1:9/hooks/broken".to_owned()),
        events: vec![],
        secret: None,
    });
    let app = spawn_config(cfg).await;
    app.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    app.wait_for_restarts(1).await;
    app.wait_for_event("restart").await;
    app.stop().await;
}

#[tokio::test]
async fn webhooks_get_the_json_event_signed() {
    let fake = FakeHeroku::start().await.unwrap();
    let mut cfg = config::env::from_env(&base_env(&[]), Need::App).unwrap();
    cfg.notify.push(NotifyConfig {
        kind: NotifyKind::Webhook,
        url: SecretString::from(format!("{}/hooks/webhook", fake.url())),
        events: vec![EventKind::Restart, EventKind::OverThreshold],
        secret: Some(SecretString::from("s3cret".to_owned())),
    });
    let app = spawn_with(cfg, fake, None).await;
    app.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    wait_until(|| app.fake.hooks().len() >= 2).await;
    let hooks = app.fake.hooks();
    let kinds: Vec<String> = hooks
        .iter()
        .map(|h| {
            serde_json::from_str::<serde_json::Value>(&h.body).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        kinds.contains(&"restart".to_owned()) && kinds.contains(&"over_threshold".to_owned()),
        "{kinds:?}"
    );
    for h in &hooks {
        let sig = h.header("x-dynoguard-signature").expect("signed");
        assert_eq!(
            sig,
            dynoguard::act::notify::signature(b"s3cret", h.body.as_bytes())
        );
    }
    let restart: serde_json::Value = hooks
        .iter()
        .map(|h| serde_json::from_str::<serde_json::Value>(&h.body).unwrap())
        .find(|v| v["event"] == "restart")
        .unwrap();
    assert_eq!(restart["dyno"], "web.1");
    assert_eq!(restart["reason"], "threshold");
    app.stop().await;
}
