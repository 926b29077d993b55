//! One dynoguard for several apps: per-app tokens, `/logs/{app}`, and a
//! shared `/logs` routed by `Logplex-Drain-Token`.

use dynoguard::config::file;
use dynoguard::sim::{FakeHeroku, SessionPlan};

use crate::helpers::*;

fn config(toml: &str) -> dynoguard::config::Config {
    file::parse("test.toml", toml, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

const TWO_DRAINS: &str = r#"
[server]
drain_password = "drain-pw-91c2"

[[app]]
name = "shop"
api_token = "token-shop"
drain_token = "d.11111111-1111-1111-1111-111111111111"

[[app]]
name = "blog"
api_token = "token-blog"
drain_token = "d.22222222-2222-2222-2222-222222222222"
dyno_types = ["web", "worker"]
"#;

#[tokio::test]
async fn shared_logs_is_routed_by_drain_token() {
    let app = spawn_config(config(TWO_DRAINS)).await;
    app.fake.require_token("shop", "token-shop");
    app.fake.require_token("blog", "token-blog");
    let r = app
        .post_to(
            "/logs",
            sample("worker.1", UUID_A, 700.0, 512.0),
            &[(
                "Logplex-Drain-Token",
                "d.22222222-2222-2222-2222-222222222222",
            )],
        )
        .await;
    assert_eq!(r.status(), 204);
    let calls = app.wait_for_restarts(1).await;
    assert_eq!(calls[0].path, "/apps/blog/dynos/worker.1");
    assert_eq!(calls[0].header("authorization"), Some("Bearer token-blog"));
    app.wait_for_event("restart").await;
    // Unknown token on the shared path: 404 (authenticated), never 2xx.
    let r = app
        .post_to(
            "/logs",
            sample("web.1", UUID_A, 700.0, 512.0),
            &[("Logplex-Drain-Token", "d.nope")],
        )
        .await;
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn logs_by_app_path_and_unknown_app() {
    let app = spawn_config(config(TWO_DRAINS)).await;
    app.fake.require_token("shop", "token-shop");
    app.post_to("/logs/shop", sample("web.1", UUID_A, 700.0, 512.0), &[])
        .await;
    let calls = app.wait_for_restarts(1).await;
    assert_eq!(calls[0].path, "/apps/shop/dynos/web.1");
    assert_eq!(calls[0].header("authorization"), Some("Bearer token-shop"));
    assert_eq!(
        app.post_to("/logs/unknown", sample("web.1", UUID_A, 700.0, 512.0), &[])
            .await
            .status(),
        404
    );
    // Without credentials the caller learns nothing about which apps exist.
    let r = app
        .http
        .post(app.url("/logs/unknown"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn per_app_drain_password() {
    let toml = r#"
[server]
drain_password = "drain-pw-91c2"

[[app]]
name = "shop"
api_token = "t"

[[app]]
name = "blog"
api_token = "t"
drain_password = "blog-only"
"#;
    let app = spawn_config(config(toml)).await;
    let body = sample("web.1", UUID_A, 100.0, 512.0);
    assert_eq!(app.post_as("/logs/blog", "u", PASSWORD, &body).await, 401);
    assert_eq!(
        app.post_as("/logs/blog", "u", "blog-only", &body).await,
        204
    );
    assert_eq!(app.post_as("/logs/shop", "u", PASSWORD, &body).await, 204);
    app.stop().await;
}

#[tokio::test]
async fn one_pulled_and_one_drained_app_each_restart_with_their_own_token() {
    let toml = r#"
[server]
drain_password = "drain-pw-91c2"

[[app]]
name = "pulled"
api_token = "token-pulled"
source = "log-session"

[[app]]
name = "drained"
api_token = "token-drained"
"#;
    let fake = FakeHeroku::start().await.unwrap();
    fake.require_token("pulled", "token-pulled");
    fake.require_token("drained", "token-drained");
    let line = format!(
        "2024-05-01T10:00:00.000000+00:00 heroku[web.3]: source=web.3 dyno=heroku.1.{UUID_A} sample#memory_total=900.00MB sample#memory_quota=512.00MB\n"
    );
    fake.plan_session(
        "pulled",
        SessionPlan::Chunks {
            content_type: "text/plain",
            chunks: vec![line.into_bytes()],
        },
    );
    let app = spawn_with(config(toml), fake, None).await;
    app.post_to("/logs", sample("web.1", UUID_A, 700.0, 512.0), &[])
        .await;
    let calls = app.wait_for_restarts(2).await;
    let mut seen: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            (
                c.path.clone(),
                c.header("authorization").unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "/apps/drained/dynos/web.1".to_owned(),
                "Bearer token-drained".to_owned()
            ),
            (
                "/apps/pulled/dynos/web.3".to_owned(),
                "Bearer token-pulled".to_owned()
            )
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_single_app_with_its_own_drain_token_refuses_other_tokens() {
    let app = spawn_env(&[("DRAIN_TOKEN", "d.33333333-3333-3333-3333-333333333333")]).await;
    let body = sample("web.1", UUID_A, 100.0, 512.0);
    assert_eq!(
        app.post_to(
            "/logs",
            body.clone(),
            &[(
                "Logplex-Drain-Token",
                "d.33333333-3333-3333-3333-333333333333"
            )]
        )
        .await
        .status(),
        204
    );
    assert_eq!(app.post_to("/logs", body.clone(), &[]).await.status(), 204);
    assert_eq!(
        app.post_to("/logs", body, &[("Logplex-Drain-Token", "d.someone-else")])
            .await
            .status(),
        403
    );
    app.stop().await;
}

#[tokio::test]
async fn a_single_app_without_a_drain_token_takes_any_token() {
    let app = spawn_app().await;
    let r = app
        .post_to(
            "/logs",
            sample("web.1", UUID_A, 700.0, 512.0),
            &[(
                "Logplex-Drain-Token",
                "d.fc6b856b-3332-4546-93de-7d0ee272c3bd",
            )],
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.wait_for_restarts(1).await.len(), 1);
    app.stop().await;
}

/// SPEC 4.1: prod has a drain token, staging has none.
const PROD_AND_STAGING: &str = r#"
[server]
drain_password = "drain-pw-91c2"

[[app]]
name = "prod"
api_token = "token-prod"
drain_token = "d.44444444-4444-4444-4444-444444444444"

[[app]]
name = "staging"
api_token = "token-staging"
"#;

const PROD_TOKEN: &str = "d.44444444-4444-4444-4444-444444444444";
const FOREIGN_TOKEN: &str = "d.55555555-5555-5555-5555-555555555555";

#[tokio::test]
async fn a_foreign_token_on_an_apps_path_is_refused_and_restarts_nothing() {
    let app = spawn_config(config(PROD_AND_STAGING)).await;
    let over = || sample("web.1", UUID_A, 700.0, 512.0);
    // Without credentials the token is never looked at: 401, not 403.
    let r = app
        .http
        .post(app.url("/logs/prod"))
        .header("Logplex-Drain-Token", FOREIGN_TOKEN)
        .body(over())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Another app's drain pointed at prod's URL.
    let r = app
        .post_to(
            "/logs/prod",
            over(),
            &[("Logplex-Drain-Token", FOREIGN_TOKEN)],
        )
        .await;
    assert_eq!(r.status(), 403);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("drain_token") && text.contains("prod"),
        "{text}"
    );
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty(), "{:?}", app.fake.restarts());
    // Staging has no token configured: any token is taken on its path.
    let r = app
        .post_to(
            "/logs/staging",
            sample("web.2", UUID_A, 100.0, 512.0),
            &[("Logplex-Drain-Token", FOREIGN_TOKEN)],
        )
        .await;
    assert_eq!(r.status(), 204);
    let m = app.metrics().await;
    assert!(
        m.contains("dynoguard_drain_refused_total{reason=\"token_mismatch\"} 1"),
        "{m}"
    );
    assert!(m.contains("dynoguard_drain_auth_failures_total 1"), "{m}");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_token_on_the_shared_path_is_404_not_the_untokened_app() {
    let app = spawn_config(config(PROD_AND_STAGING)).await;
    let r = app
        .post_to(
            "/logs",
            sample("web.1", UUID_A, 700.0, 512.0),
            &[("Logplex-Drain-Token", FOREIGN_TOKEN)],
        )
        .await;
    assert_eq!(r.status(), 404);
    let text = r.text().await.unwrap();
    assert!(text.contains("drain token"), "{text}");
    // No token at all: several apps, nothing to choose by.
    let r = app
        .post_to("/logs", sample("web.1", UUID_A, 700.0, 512.0), &[])
        .await;
    assert_eq!(r.status(), 404);
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty(), "{:?}", app.fake.restarts());
    let m = app.metrics().await;
    assert!(
        m.contains("dynoguard_drain_refused_total{reason=\"unknown_token\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("dynoguard_drain_refused_total{reason=\"token_mismatch\"} 0"),
        "{m}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_matching_token_is_taken_on_both_paths() {
    let app = spawn_config(config(PROD_AND_STAGING)).await;
    app.fake.require_token("prod", "token-prod");
    let r = app
        .post_to(
            "/logs",
            sample("web.1", UUID_A, 700.0, 512.0),
            &[("Logplex-Drain-Token", PROD_TOKEN)],
        )
        .await;
    assert_eq!(r.status(), 204);
    let calls = app.wait_for_restarts(1).await;
    assert_eq!(calls[0].path, "/apps/prod/dynos/web.1");
    let r = app
        .post_to(
            "/logs/prod",
            sample("web.2", UUID_A, 100.0, 512.0),
            &[("Logplex-Drain-Token", PROD_TOKEN)],
        )
        .await;
    assert_eq!(r.status(), 204);
    let m = app.metrics().await;
    assert!(
        m.contains("dynoguard_drain_refused_total{reason=\"token_mismatch\"} 0")
            && m.contains("dynoguard_drain_refused_total{reason=\"unknown_token\"} 0"),
        "{m}"
    );
    app.stop().await;
}
