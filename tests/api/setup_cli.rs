//! `dynoguard setup`: enables runtime metrics and adds the drain, once.

use std::process::Command;

use dynoguard::sim::FakeHeroku;

fn setup(api: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dynoguard"))
        .env_clear()
        .env("AUTH_TOKEN", "tok")
        .env("HEROKU_API_URL", api)
        .args([
            "setup",
            "--app",
            "shop",
            "--drain-url",
            "https://user:SECRETPW@dg.example.com/logs",
        ])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn setup_is_idempotent_and_never_prints_the_password() {
    let fake = FakeHeroku::start().await.unwrap();
    let url = fake.url();
    let (code, out) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || setup(&url, &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("log-runtime-metrics: enabled on shop"),
        "{out}"
    );
    assert!(out.contains("drain: added"), "{out}");
    assert!(fake.feature_enabled("shop"));
    assert_eq!(
        fake.log_drains("shop"),
        ["https://user:SECRETPW@dg.example.com/logs"]
    );

    let (code, out2) = tokio::task::spawn_blocking(move || setup(&url, &[]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out2}");
    assert!(
        out2.contains("already enabled") && out2.contains("already in place"),
        "{out2}"
    );
    assert_eq!(fake.log_drains("shop").len(), 1);
    assert!(!out.contains("SECRETPW") && !out2.contains("SECRETPW"));
}

#[tokio::test]
async fn setup_dry_run_prints_the_calls() {
    let fake = FakeHeroku::start().await.unwrap();
    let url = fake.url();
    let (code, out) = tokio::task::spawn_blocking(move || setup(&url, &["--dry-run"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("PATCH") && out.contains("/apps/shop/features/log-runtime-metrics"),
        "{out}"
    );
    assert!(!out.contains("SECRETPW"), "{out}");
    assert!(fake.requests().is_empty());
}
