//! `dynoguard setup`: enables runtime metrics and adds the drain, once.

use dynoguard::sim::FakeHeroku;

fn setup(api: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "--app",
        "shop",
        "--drain-url",
        "https://user:SECRETPW@dg.example.com/logs",
    ];
    args.extend_from_slice(extra);
    setup_with(&args, &[("AUTH_TOKEN", "tok"), ("HEROKU_API_URL", api)])
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

fn sample_line(dyno: &str, mb: f64) -> String {
    format!(
        "2024-05-01T10:00:00.000000+00:00 heroku[{dyno}]: source={dyno} dyno=heroku.1.aaaaaaaa-0000-0000-0000-00000000000{} sample#memory_total={mb:.2}MB sample#memory_quota=512.00MB\n",
        dyno.len() % 10
    )
}

#[tokio::test]
async fn setup_wait_reports_the_dynos_it_will_watch() {
    let fake = FakeHeroku::start().await.unwrap();
    let body = format!(
        "2024-05-01T10:00:00+00:00 heroku[router]: at=info method=GET path=/\n{}{}",
        sample_line("web.1", 230.4),
        sample_line("worker.1", 120.0)
    );
    fake.plan_session(
        "shop",
        dynoguard::sim::SessionPlan::Chunks {
            content_type: "text/plain",
            chunks: vec![body.into_bytes()],
        },
    );
    let url = fake.url();
    let (code, out) = tokio::task::spawn_blocking(move || setup(&url, &["--wait", "10s"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("watching 2 dynos of shop: web.1 (230 of 512 MB), worker.1 (120 of 512 MB)"),
        "{out}"
    );
    assert!(!out.contains("SECRETPW"));
}

#[tokio::test]
async fn setup_wait_says_what_is_missing_when_no_sample_comes() {
    let fake = FakeHeroku::start().await.unwrap();
    for _ in 0..20 {
        fake.plan_session(
            "shop",
            dynoguard::sim::SessionPlan::Chunks {
                content_type: "text/plain",
                chunks: vec![
                    b"2024-05-01T10:00:00+00:00 heroku[router]: at=info method=GET path=/\n"
                        .to_vec(),
                ],
            },
        );
    }
    let url = fake.url();
    let (code, out) = tokio::task::spawn_blocking(move || setup(&url, &["--wait", "2s"]))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no memory sample of shop within 2s"), "{out}");
    assert!(out.contains("heroku ps:restart -a shop"), "{out}");
}

/// `dynoguard setup` with exactly these arguments and environment.
fn setup_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let args: Vec<&str> = std::iter::once("setup")
        .chain(args.iter().copied())
        .collect();
    crate::helpers::run_dynoguard(&args, env)
}

#[tokio::test]
async fn a_drain_whose_password_changed_is_replaced_not_called_in_place() {
    let fake = FakeHeroku::start().await.unwrap();
    fake.add_log_drain("shop", "https://user:OLDPW@dg.example.com/logs");
    let url = fake.url();
    let (code, out) = tokio::task::spawn_blocking(move || setup(&url, &[]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("already in place"), "{out}");
    assert!(out.contains("drain: added"), "{out}");
    assert!(
        out.contains("drain: removed the old drain to the same endpoint"),
        "{out}"
    );
    assert_eq!(
        fake.log_drains("shop"),
        ["https://user:SECRETPW@dg.example.com/logs"]
    );
    assert!(!out.contains("SECRETPW") && !out.contains("OLDPW"), "{out}");
    // A drain elsewhere is left alone.
    fake.add_log_drain("shop", "https://logs.papertrail.example/x");
    let url = fake.url();
    let (code, out) = tokio::task::spawn_blocking(move || setup(&url, &[]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already in place"), "{out}");
    assert_eq!(fake.log_drains("shop").len(), 2);
}

#[tokio::test]
async fn a_drain_heroku_shows_without_password_is_explained() {
    let fake = FakeHeroku::start().await.unwrap();
    fake.add_log_drain("shop", "https://dg.example.com/logs");
    let url = fake.url();
    let (code, out) = tokio::task::spawn_blocking(move || setup(&url, &[]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("--replace"), "{out}");
    assert_eq!(fake.log_drains("shop").len(), 1);
    let url = fake.url();
    let (code, out) = tokio::task::spawn_blocking(move || setup(&url, &["--replace"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        fake.log_drains("shop"),
        ["https://user:SECRETPW@dg.example.com/logs"]
    );
}

#[test]
fn plain_http_and_passwordless_drains_are_refused() {
    let env = [
        ("AUTH_TOKEN", "tok"),
        ("HEROKU_API_URL", "http://127.0.0.1:9"),
    ];
    let (code, out) = setup_with(
        &[
            "--app",
            "shop",
            "--drain-url",
            "http://u:pw@dg.example.com/logs",
        ],
        &env,
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "--drain-url: http:// is not allowed: Logplex would send the drain password in clear"
        ),
        "{out}"
    );
    let (code, out) = setup_with(
        &[
            "--app",
            "shop",
            "--drain-url",
            "https://dg.example.com/logs",
        ],
        &env,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--drain-url: has no password"), "{out}");
}

#[tokio::test]
async fn setup_with_a_config_file_sets_up_every_app_and_restarts() {
    let fake = FakeHeroku::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dg.toml");
    std::fs::write(
        &p,
        "[server]\ndrain_password = \"${DRAIN_PASSWORD}\"\n\n[[app]]\nname = \"shop\"\napi_token = \"t1\"\n\n[[app]]\nname = \"blog\"\napi_token = \"t2\"\ndrain_password = \"BLOGPW\"\n\n[[app]]\nname = \"jobs\"\napi_token = \"t3\"\nsource = \"log-session\"\n",
    )
    .unwrap();
    let p = p.display().to_string();
    for app in ["shop", "blog", "jobs"] {
        fake.set_formation(app, vec![web(1)]);
    }
    let api = fake.url();
    let (code, out) = tokio::task::spawn_blocking(move || {
        setup_with(
            &[
                "--config",
                &p,
                "--drain-url",
                "https://dg.example.com",
                "--restart",
            ],
            &[("HEROKU_API_URL", &api), ("DRAIN_PASSWORD", "SHOPPW")],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        fake.log_drains("shop"),
        ["https://dynoguard:SHOPPW@dg.example.com/logs/shop"]
    );
    assert_eq!(
        fake.log_drains("blog"),
        ["https://dynoguard:BLOGPW@dg.example.com/logs/blog"]
    );
    assert!(
        fake.log_drains("jobs").is_empty(),
        "log-session app: no drain"
    );
    for app in ["shop", "blog", "jobs"] {
        assert!(fake.feature_enabled(app), "{app}");
    }
    // Each app's dynos one at a time; never every dyno at once.
    assert!(fake.app_restarts().is_empty());
    assert_eq!(
        delete_paths(&fake),
        [
            "/apps/shop/dynos/web.1",
            "/apps/blog/dynos/web.1",
            "/apps/jobs/dynos/web.1"
        ]
    );
    assert!(!out.contains("SHOPPW") && !out.contains("BLOGPW"), "{out}");
}

#[tokio::test]
async fn a_drain_url_quoted_back_by_the_api_is_redacted() {
    let fake = FakeHeroku::start().await.unwrap();
    fake.reject_drains(true);
    let api = fake.url();
    // A password with every character that breaks naive redaction.
    let password = "p@ss:w/rd?#%";
    let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
    let (code, out) = tokio::task::spawn_blocking(move || {
        setup_with(
            &[
                "--app",
                "shop",
                "--drain-url",
                "https://dg.example.com/logs",
            ],
            &[
                ("AUTH_TOKEN", "api-token-a1b2c3d4"),
                ("HEROKU_API_URL", &api),
                ("DRAIN_PASSWORD", password),
            ],
        )
    })
    .await
    .unwrap();
    assert_ne!(code, 0, "{out}");
    // The API's message is shown, with the secret masked.
    assert!(out.contains("is invalid"), "{out}");
    assert!(out.contains("https://***@dg.example.com/logs"), "{out}");
    for leak in [
        password,
        "p@ss",
        "w/rd",
        encoded.as_str(),
        "p%40ss",
        "api-token-a1b2c3d4",
    ] {
        assert!(!out.contains(leak), "{leak:?} in: {out}");
    }
    // The drain really was asked for with the password.
    let sent = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/apps/shop/log-drains")
        .expect("the drain was asked for");
    assert!(sent.body.contains("p%40ss"), "{}", sent.body);
}

fn web(quantity: u32) -> dynoguard::sim::FormationItem {
    formation("web", quantity)
}

fn formation(process_type: &str, quantity: u32) -> dynoguard::sim::FormationItem {
    dynoguard::sim::FormationItem {
        process_type: process_type.into(),
        quantity,
        size: "standard-1X".into(),
    }
}

/// The paths of the DELETE calls to dynos (restarts), in order.
fn delete_paths(fake: &FakeHeroku) -> Vec<String> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/dynos"))
        .map(|r| r.path)
        .collect()
}

/// Issue 18 item 7: inside the deployed dynoguard (`heroku run -a
/// my-dynoguard -- dynoguard setup --app shop`), its own config vars are
/// all setup needs. Before, --drain-url was a required flag.
#[tokio::test]
async fn setup_inside_the_deployed_dynoguard_needs_only_the_app() {
    let fake = FakeHeroku::start().await.unwrap();
    let api = fake.url();
    // Dyno metadata gives the app's name; its URL (with Heroku's random
    // suffix) comes from the API.
    let (code, out) = tokio::task::spawn_blocking({
        let api = api.clone();
        move || {
            setup_with(
                &["--app", "shop"],
                &[
                    ("AUTH_TOKEN", "tok"),
                    ("DRAIN_PASSWORD", "SECRETPW"),
                    ("HEROKU_APP_NAME", "my-dynoguard"),
                    ("APP_ID_OR_NAME", "shop"),
                    ("HEROKU_API_URL", &api),
                ],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        fake.log_drains("shop"),
        ["https://dynoguard:SECRETPW@my-dynoguard-0a1b2c3d4e5f.herokuapp.com/logs"]
    );
    assert!(fake.feature_enabled("shop"));
    assert!(
        out.contains(
            "drain URL from HEROKU_APP_NAME: https://my-dynoguard-0a1b2c3d4e5f.herokuapp.com/"
        ),
        "{out}"
    );
    assert!(!out.contains("SECRETPW"), "{out}");

    // DYNOGUARD_URL (the dashboard's public URL) wins, with /logs added.
    let fake = FakeHeroku::start().await.unwrap();
    let api = fake.url();
    let (code, out) = tokio::task::spawn_blocking(move || {
        setup_with(
            &[],
            &[
                ("AUTH_TOKEN", "tok"),
                ("DRAIN_PASSWORD", "SECRETPW"),
                ("DYNOGUARD_URL", "https://dg.example.com"),
                ("HEROKU_APP_NAME", "my-dynoguard"),
                ("APP_ID_OR_NAME", "shop"),
                ("HEROKU_API_URL", &api),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        fake.log_drains("shop"),
        ["https://dynoguard:SECRETPW@dg.example.com/logs"]
    );
    assert!(out.contains("drain URL from DYNOGUARD_URL"), "{out}");

    // Nothing says where dynoguard is: what to set, not a clap error.
    let (code, out) = setup_with(
        &["--app", "shop"],
        &[("AUTH_TOKEN", "tok"), ("DRAIN_PASSWORD", "pw")],
    );
    assert_eq!(code, 2, "{out}");
    for needle in [
        "--drain-url: required",
        "DYNOGUARD_URL",
        "heroku labs:enable runtime-dyno-metadata",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}

/// `--restart` used to send `DELETE /apps/{app}/dynos`: every dyno down at
/// once. Now: one at a time, each up again before the next, one-off dynos
/// left alone.
#[tokio::test]
async fn restart_is_rolling_one_dyno_at_a_time() {
    let fake = FakeHeroku::start().await.unwrap();
    fake.set_formation(
        "shop",
        vec![formation("worker", 1), web(2), formation("run", 1)],
    );
    let url = fake.url();
    let (code, out) = tokio::task::spawn_blocking(move || setup(&url, &["--restart"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(fake.app_restarts().is_empty(), "never all at once");
    assert_eq!(
        delete_paths(&fake),
        [
            "/apps/shop/dynos/web.1",
            "/apps/shop/dynos/web.2",
            "/apps/shop/dynos/worker.1"
        ]
    );
    // Each restart is confirmed (its dyno asked for) before the next one.
    let calls: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/apps/shop/dynos"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    for (restart, next) in [("web.1", "web.2"), ("web.2", "worker.1")] {
        let del = calls
            .iter()
            .position(|c| *c == format!("DELETE /apps/shop/dynos/{restart}"))
            .unwrap();
        let confirmed = calls
            .iter()
            .position(|c| *c == format!("GET /apps/shop/dynos/{restart}"))
            .unwrap();
        let next_del = calls
            .iter()
            .position(|c| *c == format!("DELETE /apps/shop/dynos/{next}"))
            .unwrap();
        assert!(del < confirmed && confirmed < next_del, "{calls:?}");
    }
    assert!(
        out.contains("restart: 3 dynos of shop, one at a time"),
        "{out}"
    );
    assert!(out.contains("restart: web.2 is up again (2/3"), "{out}");
    assert!(out.contains("left alone run.1 (one-off dynos"), "{out}");
}

#[tokio::test]
async fn a_dyno_that_does_not_come_back_stops_the_rolling_restart() {
    let fake = FakeHeroku::start().await.unwrap();
    fake.set_formation("shop", vec![web(3)]);
    fake.set_restart_mode(dynoguard::sim::RestartMode::NoEffect);
    let url = fake.url();
    let (code, out) =
        tokio::task::spawn_blocking(move || setup(&url, &["--restart", "--restart-timeout", "2s"]))
            .await
            .unwrap();
    assert_eq!(code, 1, "{out}");
    assert_eq!(delete_paths(&fake), ["/apps/shop/dynos/web.1"]);
    assert!(
        out.contains("web.1 of shop did not report a new instance up within 2s"),
        "{out}"
    );
    assert!(out.contains("not restarted: web.2, web.3"), "{out}");
}

#[tokio::test]
async fn a_drain_url_dynoguard_does_not_serve_is_corrected_or_refused() {
    let fake = FakeHeroku::start().await.unwrap();
    let api = fake.url();
    let (code, out) = tokio::task::spawn_blocking({
        let api = api.clone();
        move || {
            setup_with(
                &[
                    "--app",
                    "shop",
                    "--drain-url",
                    "https://u:SECRETPW@dg.example.com/",
                ],
                &[("AUTH_TOKEN", "tok"), ("HEROKU_API_URL", &api)],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        fake.log_drains("shop"),
        ["https://u:SECRETPW@dg.example.com/logs"]
    );
    assert!(
        out.contains("drain URL: the drain URL had no path: /logs added (dynoguard receives drains only at /logs and /logs/APP)"),
        "{out}"
    );
    for (path, why) in [
        (
            "/drain",
            "--drain-url: its path /drain is not served by dynoguard",
        ),
        (
            "/logs/blog",
            "--drain-url: its path /logs/blog sends the drain to the app blog, not shop",
        ),
    ] {
        let (code, out) = setup_with(
            &[
                "--app",
                "shop",
                "--drain-url",
                &format!("https://u:pw@dg.example.com{path}"),
            ],
            &[("AUTH_TOKEN", "tok"), ("HEROKU_API_URL", &api)],
        );
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(why), "{why}: {out}");
    }
    // The app's own /logs/APP is served, and kept as it is.
    let (code, out) = tokio::task::spawn_blocking(move || {
        setup_with(
            &[
                "--app",
                "shop",
                "--drain-url",
                "https://u:pw@dg2.example.com/logs/shop",
            ],
            &[("AUTH_TOKEN", "tok"), ("HEROKU_API_URL", &api)],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        fake.log_drains("shop")
            .contains(&"https://u:pw@dg2.example.com/logs/shop".to_owned())
    );
}

#[test]
fn dry_run_without_a_token_says_so() {
    let (code, out) = setup_with(
        &["--app", "shop", "--dry-run", "--restart"],
        &[
            ("DRAIN_PASSWORD", "pw"),
            ("DYNOGUARD_URL", "https://dg.example.com"),
            ("HEROKU_API_URL", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(no API token for shop: AUTH_TOKEN or HEROKU_API_KEY is not set"),
        "{out}"
    );
    assert!(
        out.contains("DELETE http://127.0.0.1:9/apps/shop/dynos/{dyno}"),
        "{out}"
    );
    assert!(
        !out.contains("DELETE http://127.0.0.1:9/apps/shop/dynos "),
        "{out}"
    );
    // Only the app name known: the lookup it would make is shown.
    let (code, out) = setup_with(
        &["--app", "shop", "--dry-run"],
        &[
            ("DRAIN_PASSWORD", "pw"),
            ("HEROKU_APP_NAME", "my-dynoguard"),
            ("HEROKU_API_URL", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("GET    http://127.0.0.1:9/apps/my-dynoguard   (HEROKU_APP_NAME"),
        "{out}"
    );
    assert!(out.contains("no API token"), "{out}");
}

/// Issue 17: `setup --wait` inside the deployed dynoguard records the number
/// the app's samples carry (`dyno=heroku.N.…`) in dynoguard's store; `serve`
/// then ignores a sample of any other app number on this app's drain.
#[tokio::test]
async fn setup_records_the_app_number_and_serve_ignores_another_apps_samples() {
    let fake = FakeHeroku::start().await.unwrap();
    let body = sample_line("web.1", 230.4) + &sample_line("web.2", 240.0);
    fake.plan_session(
        "shop",
        dynoguard::sim::SessionPlan::Chunks {
            content_type: "text/plain",
            chunks: vec![body.into_bytes()],
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("dg.db").display());
    let url = fake.url();
    let db2 = db.clone();
    let (code, out) = tokio::task::spawn_blocking(move || {
        setup_with(
            &[
                "--app",
                "shop",
                "--drain-url",
                "https://user:SECRETPW@dg.example.com/logs",
                "--wait",
                "10s",
            ],
            &[
                ("AUTH_TOKEN", "tok"),
                ("HEROKU_API_URL", &url),
                ("DATABASE_URL", &db2),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("recorded heroku.1 for shop"), "{out}");
    let store = dynoguard::store::Store::connect(&db).await.unwrap();
    assert_eq!(store.app_numbers().await.unwrap(), [("shop".to_owned(), 1)]);
    store.close().await;
    // serve on that store: a sample of app number 99 is another app's.
    let mut cfg = dynoguard::config::env::from_env(
        &crate::helpers::base_env(&[("APP_ID_OR_NAME", "shop")]),
        dynoguard::config::env::Need::App,
    )
    .unwrap();
    cfg.apps[0].name = dynoguard::domain::AppName::parse("shop").unwrap();
    let app = crate::helpers::spawn_with(cfg, FakeHeroku::start().await.unwrap(), Some(db)).await;
    let at = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(30)).to_string();
    // The app reports under its own number...
    let before = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(40)).to_string();
    app.post_logs(crate::helpers::frame(&format!(
        "<134>1 {before} host heroku web.1 - source=web.1 dyno=heroku.1.aaaaaaaa-0000-0000-0000-000000000001 sample#memory_total=200.00MB sample#memory_quota=512.00MB"
    )))
    .await;
    // ...so a sample under another number is another app's.
    let foreign = crate::helpers::frame(&format!(
        "<134>1 {at} host heroku web.1 - source=web.1 dyno=heroku.99.aaaaaaaa-0000-0000-0000-000000000009 sample#memory_total=900.00MB sample#memory_quota=512.00MB"
    ));
    app.post_logs(foreign).await;
    app.quiesce().await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(
        app.fake.restarts().is_empty(),
        "another app's sample restarts nothing"
    );
    assert_eq!(
        app.shared
            .counters
            .lines_foreign
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The app's own number still counts.
    let later = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(20)).to_string();
    app.post_logs(crate::helpers::frame(&format!(
        "<134>1 {later} host heroku web.1 - source=web.1 dyno=heroku.1.aaaaaaaa-0000-0000-0000-000000000001 sample#memory_total=900.00MB sample#memory_quota=512.00MB"
    )))
    .await;
    assert_eq!(app.wait_for_restarts(1).await.len(), 1);
    app.stop().await;
}
