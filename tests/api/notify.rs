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

// ---- issue 18: notifications speak in incidents ----------------------------

fn slack_env(fake: &FakeHeroku, extra: &[(&str, &str)]) -> dynoguard::config::Config {
    let hook = format!("{}/hooks/slack/T000/B000/XXXX", fake.url());
    let mut env: Vec<(&str, &str)> = vec![("SLACK_WEBHOOK_URL", hook.as_str())];
    env.extend_from_slice(extra);
    config::env::from_env(&base_env(&env), Need::App).unwrap()
}

fn texts(fake: &FakeHeroku) -> Vec<String> {
    fake.hooks()
        .iter()
        .map(|h| {
            serde_json::from_str::<serde_json::Value>(&h.body).unwrap()["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn ago(secs: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)).to_string()
}

#[tokio::test]
async fn one_post_when_an_incident_opens_and_one_when_it_resolves() {
    let fake = FakeHeroku::start().await.unwrap();
    let cfg = slack_env(&fake, &[]);
    let app = spawn_with(cfg, fake, None).await;
    // Over quota (three samples: over_threshold, restart, then the old
    // instance still logging while it stops), then the replacement.
    for (i, mb) in [700.0, 710.0, 720.0].into_iter().enumerate() {
        app.post_logs(sample_at(
            "web.1",
            UUID_A,
            mb,
            512.0,
            &ago(120 - 10 * i as i64),
        ))
        .await;
    }
    app.wait_for_restarts(1).await;
    app.post_logs(sample_at("web.1", UUID_B, 180.0, 512.0, &ago(60)))
        .await;
    wait_until(|| app.fake.hooks().len() >= 2).await;
    app.quiesce().await;
    let t = texts(&app.fake);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t[0].starts_with("web.1 dyno restarted"), "{t:?}");
    assert!(t[1].starts_with("web.1 on todo recovered"), "{t:?}");
    let id = |s: &str| s.rsplit_once("[incident ").map(|(_, i)| i.to_owned());
    assert!(id(&t[0]).is_some(), "{t:?}");
    assert_eq!(id(&t[0]), id(&t[1]), "one incident: {t:?}");
    app.stop().await;
}

#[tokio::test]
async fn many_incidents_at_once_are_one_digest() {
    let fake = FakeHeroku::start().await.unwrap();
    let cfg = slack_env(&fake, &[("DYNOGUARD_MAX_PARALLEL", "100%")]);
    let tuning = dynoguard::service::Tuning {
        digest: dynoguard::act::notify::Digest {
            after: 2,
            window: std::time::Duration::from_secs(1),
        },
        ..tuning()
    };
    let app = spawn_tuned(cfg, fake, None, tuning).await;
    let mut body = String::new();
    for i in 1..=5 {
        body += &sample_at(&format!("web.{i}"), UUID_A, 700.0, 512.0, &ago(30));
    }
    app.post_logs(body).await;
    app.wait_for_restarts(5).await;
    wait_until(|| app.fake.hooks().len() >= 3).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let t = texts(&app.fake);
    assert_eq!(t.len(), 3, "two posts, then one digest: {t:?}");
    let digest = t
        .iter()
        .find(|s| s.contains("(digest)"))
        .unwrap_or_else(|| panic!("{t:?}"));
    assert!(digest.starts_with("3 more incidents opened"), "{digest}");
    assert_eq!(digest.matches("\n• web.").count(), 3, "{digest}");
    app.stop().await;
}

#[tokio::test]
async fn alert_only_mode_alerts_and_says_nothing_was_restarted() {
    let fake = FakeHeroku::start().await.unwrap();
    let cfg = slack_env(&fake, &[("DYNOGUARD_DRY_RUN", "1")]);
    let app = spawn_with(cfg, fake, None).await;
    app.post_logs(sample_at("web.3", UUID_A, 700.0, 512.0, &ago(30)))
        .await;
    wait_until(|| !app.fake.hooks().is_empty()).await;
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    let t = texts(&app.fake);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(
        t[0].starts_with("ALERT-ONLY: web.3 dyno on todo would be restarted")
            && t[0].contains("nothing was restarted"),
        "{t:?}"
    );
    let health = app.get("/healthz").await.text().await.unwrap();
    assert!(health.contains("alert-only"), "{health}");
    app.stop().await;
}
