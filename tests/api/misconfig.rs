//! No silent misconfiguration: each mistake a new operator makes is refused
//! or warned about by name, through the real binary where an operator would
//! see it (`check`, `serve`, `replay`, `--help`), and failure states that
//! used to be silent (a blind drain, failed drain logins, a failing API with
//! Slack configured) are said.

use dynoguard::config::{self, env::Need};
use dynoguard::sim::FakeHeroku;

use crate::helpers::*;

const BASE: [(&str, &str); 3] = [
    ("APP_ID_OR_NAME", "shop"),
    ("AUTH_TOKEN", "tok-SECRET"),
    ("DRAIN_PASSWORD", "pw-SECRET"),
];

fn check_env(extra: &[(&str, &str)]) -> (i32, String) {
    let mut env = BASE.to_vec();
    env.extend_from_slice(extra);
    run_dynoguard(&["check"], &env)
}

// 1. Process types.

#[test]
fn dyno_types_split_on_spaces_and_bad_names_are_refused() {
    let (code, out) = check_env(&[("DYNO_TYPES", "web worker")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  watching: web, worker"), "{out}");
    assert!(out.contains("\n  worker: threshold=100%"), "{out}");

    let (code, out) = check_env(&[("DYNO_TYPES", "web,work.er")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("DYNO_TYPES: \"work.er\" is not a process type name: use letters, digits, _ and - (web, worker, slow_worker), or * for every type"),
        "{out}"
    );
}

#[test]
fn misspelt_and_unwatched_type_settings_are_warned_by_name() {
    let (code, out) = check_env(&[
        ("DYNO_TYPES", "web,worker"),
        ("WROKER_RESTART_THRESHOLD", "900"),
    ]);
    assert_eq!(code, 0, "warnings are not errors: {out}");
    assert!(
        out.contains("warning: WROKER_RESTART_THRESHOLD: sets threshold for the process type wroker, which is not watched (DYNO_TYPES=web,worker): ignored; did you mean WORKER_RESTART_THRESHOLD?"),
        "{out}"
    );
    let (code, out) = check_env(&[("DYNO_TYPES", "web"), ("WORKER_RESTART_THRESHOLD", "900")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: WORKER_RESTART_THRESHOLD: sets threshold for the process type worker, which is not watched (DYNO_TYPES=web): ignored"),
        "{out}"
    );
    let (_d, p) = write_toml(
        "[server]\ndrain_password = \"p\"\n\n[[app]]\nname = \"shop\"\napi_token = \"t\"\ndyno_types = [\"web\", \"worker\"]\n\n  [app.types.wroker]\n  threshold = \"900MB\"\n",
    );
    let (code, out) = run_dynoguard(&["check", "--config", &p], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("warning: {p}:9: app.shop.types.wroker: settings for wroker, which is not watched (dyno_types = [\"web\", \"worker\"]): ignored; did you mean worker?")),
        "{out}"
    );
}

#[test]
fn serve_says_the_warnings_at_start() {
    let mut env = BASE.to_vec();
    env.push(("WROKER_RESTART_THRESHOLD", "900"));
    env.push(("WEB_RESTART_TRESHOLD", "400"));
    env.push(("DYNOGUARD_RESTART_THRESHOLD", "90"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = ServeProcess::start(&env).await;
        let (out, err) = p.output();
        let all = format!("{out}{err}");
        for needle in [
            "WROKER_RESTART_THRESHOLD: sets threshold",
            "WEB_RESTART_TRESHOLD: not a setting (ignored) — did you mean WEB_RESTART_THRESHOLD?",
            "DYNOGUARD_RESTART_THRESHOLD: 90MB is implausibly low",
        ] {
            assert!(all.contains(needle), "{needle}\n---\n{all}");
        }
    });
}

/// Issue 18 item 6: every misspelt setting is warned with the real name it
/// most likely meant; before, each of these said "configuration is valid"
/// and nothing else.
#[test]
fn misspelt_settings_are_warned_with_the_nearest_real_name() {
    for (var, value, meant) in [
        ("WEB_RESTART_TRESHOLD", "400", "WEB_RESTART_THRESHOLD"),
        ("DYNOGUARD_CONSECUTVE", "2", "DYNOGUARD_CONSECUTIVE"),
        ("WEB_RESTART_THRESHOLD_MB", "900", "WEB_RESTART_THRESHOLD"),
        (
            "DYNOGUARD_RESTART_WINDOWS",
            "10m",
            "DYNOGUARD_RESTART_WINDOW",
        ),
        (
            "SLACK_WEBHOOK",
            "https://hooks.slack.com/services/x",
            "SLACK_WEBHOOK_URL",
        ),
        ("WORKER_SETTEL", "2m", "WORKER_SETTLE"),
    ] {
        let (code, out) = check_env(&[(var, value), ("DYNO_TYPES", "web,worker")]);
        assert_eq!(code, 0, "a warning, not an error: {out}");
        assert!(
            out.contains(&format!(
                "warning: {var}: not a setting (ignored) — did you mean {meant}?"
            )),
            "{var}\n---\n{out}"
        );
        assert_eq!(out.matches("warning:").count(), 1, "{out}");
    }
    // Buildpack variables under an owned prefix are not dynoguard's mistakes.
    let (code, out) = check_env(&[("WEB_CONCURRENCY", "4"), ("WEB_MEMORY", "512")]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
}

#[test]
fn the_peers_variable_names_say_what_to_use_instead() {
    // whacamole's token variable, next to a real token: ignored, said so.
    let (code, out) = check_env(&[("HEROKU_API_TOKEN", "tok2-SECRET")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: HEROKU_API_TOKEN: not read by dynoguard (ignored): whacamole's examples read the token from HEROKU_API_TOKEN; dynoguard reads AUTH_TOKEN"),
        "{out}"
    );
    // As the only token: the missing token is the problem, and it says why.
    let (code, out) = run_dynoguard(
        &["check"],
        &[
            ("APP_ID_OR_NAME", "shop"),
            ("DRAIN_PASSWORD", "pw"),
            ("HEROKU_API_TOKEN", "tok-SECRET"),
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("HEROKU_API_TOKEN: is whacamole's name for the token; dynoguard reads AUTH_TOKEN (or HEROKU_API_KEY): rename it"),
        "{out}"
    );
    assert!(!out.contains("SECRET"), "{out}");

    // dark_knight's DYNO_TYPES, singular: only web was watched, silently.
    let (code, out) = check_env(&[("DYNO_TYPE", "web,worker")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  watching: web\n"), "{out}");
    assert!(
        out.contains("warning: DYNO_TYPE: not read by dynoguard (ignored): the list of process types to watch is DYNO_TYPES (plural, dark_knight's name): rename it to DYNO_TYPES; until then dynoguard watches only web, not \"web,worker\""),
        "{out}"
    );
    let (code, out) = check_env(&[("RESTART_THRESHOLD", "500")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: RESTART_THRESHOLD: not read by dynoguard (ignored): whacamole's `config.restart_threshold` is DYNOGUARD_RESTART_THRESHOLD here"),
        "{out}"
    );
}

#[test]
fn thresholds_that_storm_or_never_fire_are_warned_by_setting() {
    // 90 meant as 90 %: read as 90 MB, every dyno restarted.
    for var in ["WEB_RESTART_THRESHOLD", "DYNOGUARD_RESTART_THRESHOLD"] {
        let (code, out) = check_env(&[(var, "90")]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(&format!("warning: {var}: 90MB is implausibly low")),
            "{var}: {out}"
        );
        assert!(out.contains("did you mean 90%?"), "{out}");
    }
    let (code, out) = check_env(&[
        ("DYNO_TYPES", "web,worker"),
        ("WORKER_RESTART_THRESHOLD", "100MB"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: WORKER_RESTART_THRESHOLD: 100MB is implausibly low")
            && out.contains("did you mean 100%?"),
        "{out}"
    );
    // 600 %: Heroku kills at 200 % (R15) before it is reached.
    let (code, out) = check_env(&[("WEB_RESTART_THRESHOLD", "600%")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: WEB_RESTART_THRESHOLD: 600% of the quota can never fire: Heroku kills a dyno with R15 at 200% of its quota"),
        "{out}"
    );
    // More memory than any dyno has.
    let (code, out) = check_env(&[("WEB_RESTART_THRESHOLD", "200GB")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: WEB_RESTART_THRESHOLD: 204800MB is more than the largest dyno has (129024MB, Performance-2XL)"),
        "{out}"
    );
    // Plausible values say nothing.
    for ok in ["95%", "200%", "400", "1GB", "120GB"] {
        let (code, out) = check_env(&[("WEB_RESTART_THRESHOLD", ok)]);
        assert_eq!(code, 0, "{ok}: {out}");
        assert!(!out.contains("warning"), "{ok}: {out}");
    }
    // The same in a file, by key and line.
    let (_d, p) = write_toml(
        "[server]\ndrain_password = \"p\"\n\n[defaults]\nthreshold = \"90\"\n\n[[app]]\nname = \"shop\"\napi_token = \"t\"\nthreshold = \"600%\"\n",
    );
    let (code, out) = run_dynoguard(&["check", "--config", &p], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "warning: {p}:5: defaults.threshold: 90MB is implausibly low"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "warning: {p}:10: app.shop.threshold: 600% of the quota can never fire"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn star_honours_per_type_settings() {
    // `*` with WEB_RESTART_THRESHOLD=150: a 154 MB web dyno (quota 512) is
    // restarted, a 154 MB worker is not.
    let app = spawn_env(&[("DYNO_TYPES", "*"), ("WEB_RESTART_THRESHOLD", "150")]).await;
    app.post_logs(sample("worker.1", UUID_B, 154.0, 512.0))
        .await;
    app.post_logs(sample("web.1", UUID_A, 154.0, 512.0)).await;
    let restarts = app.wait_for_restarts(1).await;
    assert_eq!(restarts[0].path, format!("/apps/{APP}/dynos/web.1"));
    app.quiesce().await;
    assert_eq!(app.fake.restarts().len(), 1, "the worker stays");
    app.stop().await;

    let (code, out) = check_env(&[("DYNO_TYPES", "*"), ("WEB_RESTART_THRESHOLD", "150")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\n  *: threshold=100%"), "{out}");
    assert!(out.contains("\n  web: threshold=150MB"), "{out}");
    assert!(out.contains("    set by: WEB_RESTART_THRESHOLD"), "{out}");
}

// 2. URLs and values.

#[test]
fn store_and_api_urls_are_checked_and_exit_2() {
    let (code, out) = check_env(&[("DATABASE_URL", "mysql://u:SECRET@h/d")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DATABASE_URL: mysql:// is not supported; use sqlite://PATH (default sqlite://dynoguard.db) or postgres://USER:PASSWORD@HOST:5432/DATABASE"), "{out}");
    assert!(!out.contains("SECRET"), "{out}");

    let mut env = BASE.to_vec();
    env.push(("DATABASE_URL", "mysql://x"));
    let (code, out) = run_dynoguard(&["serve"], &env);
    assert_eq!(
        code, 2,
        "serve refuses a bad store URL as configuration: {out}"
    );
    assert!(out.contains("DATABASE_URL: mysql://"), "{out}");

    let (code, out) = check_env(&[("HEROKU_API_URL", "ftp://x")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("HEROKU_API_URL: ftp:// is not allowed; use an https:// URL (default https://api.heroku.com)"),
        "{out}"
    );
}

#[test]
fn values_carry_their_range_and_implausible_ones_are_warned() {
    let (code, out) = check_env(&[("WEB_RESTART_THRESHOLD", "5000%")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("WEB_RESTART_THRESHOLD: \"5000%\" is not allowed (out of range); use megabytes from 1 to 1048576 (1024, 1024MB, 1.5GB) or a percentage of the dyno's quota from 1% to 1000% (95%)"), "{out}");

    let (code, out) = check_env(&[("WEB_RESTART_THRESHOLD", "1")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "warning: WEB_RESTART_THRESHOLD: 1MB is implausibly low (the smallest dyno has 512MB)"
        ),
        "{out}"
    );
    for ok in ["1024mb", "1.5GB", "1024 MB"] {
        let (code, out) = check_env(&[("WEB_RESTART_THRESHOLD", ok)]);
        assert_eq!(code, 0, "{ok}: {out}");
        assert!(!out.contains("warning"), "{ok}: {out}");
    }

    // The trend's knobs are config vars like every other.
    let (code, out) = check_env(&[("DYNOGUARD_PREDICT_FLOOR", "30%")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DYNOGUARD_PREDICT_FLOOR: \"30%\" is not allowed (out of range); use a percentage of the dyno's quota from 50% to 100% (85%)"), "{out}");
    let (code, out) = check_env(&[("WEB_PREDICT", "30m")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: WEB_PREDICT: predict 30m looks far ahead"),
        "{out}"
    );
    let (code, out) = check_env(&[("WEB_PREDICT", "off"), ("WEB_PREDICT_WINDOW", "20m")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("predict=off predict_floor=85% predict_window=20m"),
        "{out}"
    );
}

// 3. Precedence.

#[test]
fn environment_switches_win_over_the_file_and_check_says_so() {
    let (_d, p) = write_toml(
        "[server]\nport = 7000\ndrain_password = \"p\"\ndashboard_password = \"file-dash\"\n\n[store]\nurl = \"sqlite://file.db\"\n\n[[app]]\nname = \"shop\"\napi_token = \"t\"\n",
    );
    let (code, out) = run_dynoguard(
        &["check", "--config", &p],
        &[
            ("DYNOGUARD_DRY_RUN", "1"),
            ("DASHBOARD_PASSWORD", "env-dash"),
            ("PORT", "31337"),
            ("DATABASE_URL", "sqlite://env.db"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    for needle in [
        "port=31337 [PORT (environment, over server.port in the file)]",
        "[DASHBOARD_PASSWORD (environment, over server.dashboard_password in the file)]",
        "store: sqlite://env.db [DATABASE_URL (environment, over store.url in the file)]",
        "dry_run=true [DYNOGUARD_DRY_RUN=1 (environment, over the file: every app and type)]",
    ] {
        assert!(out.contains(needle), "{needle}\n---\n{out}");
    }
    assert!(
        !out.contains("env-dash") && !out.contains("file-dash"),
        "{out}"
    );
}

#[tokio::test]
async fn dry_run_from_the_environment_holds_with_a_file() {
    let toml = format!(
        "[server]\ndrain_password = \"{PASSWORD}\"\n\n[[app]]\nname = \"todo\"\napi_token = \"t\"\n"
    );
    let env = [("DYNOGUARD_DRY_RUN".to_owned(), "1".to_owned())]
        .into_iter()
        .collect();
    let (_d, p) = write_toml(&toml);
    let cfg = config::load_from(Some(p.as_ref()), &env, Need::App).unwrap();
    assert!(cfg.apps[0].policy.defaults.dry_run);
    let app = spawn_config(cfg).await;
    app.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    let skipped = app.wait_for_event("skipped").await;
    assert!(
        skipped.iter().any(|e| e["reason"] == "dry_run"),
        "{skipped:?}"
    );
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty(), "no real restart in dry run");
    app.stop().await;
}

#[test]
fn a_whole_toml_document_in_one_config_var() {
    let doc = "[server]\ndrain_password = \"p\"\n\n[[app]]\nname = \"shop\"\napi_token = \"t\"\n\n[[app]]\nname = \"blog\"\napi_token = \"t\"\nthreshold = \"90%\"\n";
    let (code, out) = run_dynoguard(&["check"], &[("DYNOGUARD_CONFIG_TOML", doc)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(read from DYNOGUARD_CONFIG_TOML)"), "{out}");
    assert!(
        out.contains("app shop:") && out.contains("app blog:"),
        "{out}"
    );
    let (code, out) = run_dynoguard(
        &["check"],
        &[("DYNOGUARD_CONFIG_TOML", "[[app]]\nname = 5\n")],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("DYNOGUARD_CONFIG_TOML:2: app[0].name: expected a string, found an integer"),
        "{out}"
    );
}

// 4. Replay.

#[test]
fn replay_needs_no_secrets_and_names_an_unknown_app() {
    let (_d, p) = write_toml("[[app]]\nname = \"shop\"\n\n[[app]]\nname = \"blog\"\n");
    let log = fixture("web.1.out_of_memory");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("log");
    std::fs::write(&f, log).unwrap();
    let f = f.display().to_string();
    let (code, out) = run_dynoguard(&["replay", "--config", &p, &f], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"event\":\"restart\""), "{out}");

    let (code, out) = run_dynoguard(&["replay", "--config", &p, "--app", "nope", &f], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("--app: \"nope\" is not a configured app; configured: shop, blog"),
        "{out}"
    );
    // The example file reads its secrets from ${VAR}s that are not set here.
    let example = format!("{}/dynoguard.example.toml", env!("CARGO_MANIFEST_DIR"));
    let (code, out) = run_dynoguard(&["replay", "--config", &example, &f], &[]);
    assert_eq!(code, 0, "{out}");
    // Without a file: no app, token or password needed.
    let (code, out) = run_dynoguard(&["replay", &f], &[("PORT", "not-a-port")]);
    assert_eq!(code, 0, "{out}");
}

// 5. TOML problems, all at once.

#[test]
fn every_toml_problem_in_one_run() {
    let (_d, p) = write_toml(
        "[server]\ndrain_password = \"p\"\n\n[defaults]\ndyno_types = \"web\"\nthresold = \"90%\"\n\n[[app]]\nname = \"shop\"\napi_token = \"t\"\ndyno_types = 7\nconsecutive = \"two\"\n\n  [app.types.web]\n  settle = true\n",
    );
    let (code, out) = run_dynoguard(&["check", "--config", &p], &[]);
    assert_eq!(code, 2, "{out}");
    for needle in [
        ":6: defaults.thresold: unknown key; did you mean threshold?",
        ":11: app.shop.dyno_types: expected a list of strings ([\"web\", \"worker\"]), found an integer",
        ":12: app.shop.consecutive: \"two\" is not allowed; use a count of samples from 1 to 100",
        ":15: app.shop.types.web.settle: \"true\" is not allowed; use a duration from 1s to 1h (2m)",
    ] {
        assert!(out.contains(needle), "{needle}\n---\n{out}");
    }
    assert!(
        out.starts_with("invalid configuration (4 problems)"),
        "{out}"
    );
}

// 6. Notifications cover failure.

#[tokio::test]
async fn slack_hears_a_failing_restart_by_default() {
    let fake = FakeHeroku::start().await.unwrap();
    let hook = format!("{}/hooks/slack/T000/B000/XXXX", fake.url());
    fake.fail_restarts(&[500; 8]);
    let cfg = config::env::from_env(
        &base_env(&[
            ("SLACK_WEBHOOK_URL", &hook),
            ("DYNOGUARD_URL", "https://dg.example.com/"),
        ]),
        Need::App,
    )
    .unwrap();
    let app = spawn_with(cfg, fake, None).await;
    app.post_logs(sample("web.1", UUID_A, 768.0, 512.0)).await;
    app.wait_for_event("restart_failed").await;
    wait_until(|| !app.fake.hooks().is_empty()).await;
    let body: serde_json::Value = serde_json::from_str(&app.fake.hooks()[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "web.1 dyno restart FAILED with memory total 768MB (150% of its 512MB quota) on todo"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("<https://dg.example.com/?app=todo|dashboard>"),
        "{text}"
    );
    app.stop().await;
}

// 7. Blind drains and failed logins, through the real binary.

fn lines_at(from: jiff::Timestamp, minutes: i64) -> String {
    // Router and app lines every 30 s of log time: traffic, no sample.
    let mut body = String::new();
    for i in 0..=(minutes * 2) {
        let at = from + jiff::SignedDuration::from_secs(30 * i);
        body.push_str(&frame(&format!(
            "<158>1 {at} host heroku router - at=info method=GET path=\"/\" host=shop.example.com status=200 bytes=10 protocol=https"
        )));
        body.push_str(&frame(&format!(
            "<190>1 {at} host app web.1 - Completed 200 OK in 12ms"
        )));
    }
    body
}

#[tokio::test]
async fn a_drain_without_runtime_metrics_is_reported_blind() {
    let mut env = BASE.to_vec();
    env.push(("DYNOGUARD_BLIND_AFTER", "2m"));
    env.push(("DASHBOARD_PASSWORD", "dash"));
    let p = ServeProcess::start(&env).await;
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(p.url("/logs"))
            .basic_auth("x", Some("pw-SECRET"))
            .body(body)
            .send()
    };
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(4);
    // One minute of traffic: not yet blind.
    assert_eq!(post(lines_at(start, 1)).await.unwrap().status(), 204);
    let get = |path: &'static str| http.get(p.url(path)).basic_auth("x", Some("dash")).send();
    let apps: serde_json::Value = get("/api/apps").await.unwrap().json().await.unwrap();
    assert_eq!(apps[0]["blind"], false, "{apps}");
    // Three minutes of lines without a sample: blind.
    assert_eq!(
        post(lines_at(start + jiff::SignedDuration::from_mins(1), 2))
            .await
            .unwrap()
            .status(),
        204
    );
    let apps: serde_json::Value = get("/api/apps").await.unwrap().json().await.unwrap();
    assert_eq!(apps[0]["blind"], true, "{apps}");
    assert!(
        apps[0]["hint"]
            .as_str()
            .unwrap()
            .contains("heroku labs:enable log-runtime-metrics -a shop"),
        "{apps}"
    );
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("dynoguard_app_blind{app=\"shop\"} 1"),
        "{metrics}"
    );
    let page = get("/").await.unwrap().text().await.unwrap();
    assert!(page.contains("shop is blind"), "{page}");
    let mut logged = String::new();
    wait_for(
        || {
            let (o, e) = p.output();
            logged = o + &e;
            logged.contains("event=blind")
        },
        15,
    )
    .await;
    assert!(
        logged.contains("event=blind app=shop") && logged.contains("heroku ps:restart -a shop"),
        "{logged}"
    );
    assert_eq!(logged.matches("event=blind").count(), 1, "once: {logged}");
    // The events API has it too.
    let mut events = serde_json::Value::Null;
    for _ in 0..100 {
        events = get("/api/events").await.unwrap().json().await.unwrap();
        if events.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "blind" && e["app"] == "shop"),
        "{events}"
    );

    // A sample: seen again.
    let sample = sample_at("web.1", UUID_A, 200.0, 512.0, &log_now());
    assert_eq!(post(sample).await.unwrap().status(), 204);
    let apps: serde_json::Value = get("/api/apps").await.unwrap().json().await.unwrap();
    assert_eq!(apps[0]["blind"], false, "{apps}");

    // A failed drain login (a rotated password): 401, counted, logged with the hint.
    let r = http
        .post(p.url("/logs"))
        .basic_auth("x", Some("old-password"))
        .body(lines_at(jiff::Timestamp::now(), 0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("dynoguard_drain_auth_failures_total 1"),
        "{metrics}"
    );
    wait_for(
        || {
            let (o, e) = p.output();
            (o + &e).contains("drain login failed")
        },
        15,
    )
    .await;
    let (o, e) = p.output();
    assert!(
        (o + &e).contains("the drain's password may have changed"),
        "hint missing"
    );
}

// 9. Help and flags.

#[test]
fn every_subcommand_help_lists_its_environment() {
    for (cmd, vars) in [
        (
            "serve",
            &[
                "APP_ID_OR_NAME",
                "DYNO_TYPES",
                "DYNOGUARD_{KNOB}",
                "PORT",
                "DATABASE_URL",
                "SLACK_EVENTS",
                "DYNOGUARD_URL",
                "DYNOGUARD_BLIND_AFTER",
                "DYNOGUARD_CONFIG_TOML",
            ][..],
        ),
        ("check", &["AUTH_TOKEN", "DASHBOARD_PASSWORD"][..]),
        ("replay", &["DYNO_TYPES", "are not needed"][..]),
        (
            "setup",
            &["AUTH_TOKEN", "DRAIN_PASSWORD", "HEROKU_API_URL"][..],
        ),
    ] {
        let (code, out) = run_dynoguard(&[cmd, "--help"], &[]);
        assert_eq!(code, 0, "{out}");
        for v in vars {
            assert!(out.contains(v), "{cmd} --help lacks {v}:\n{out}");
        }
    }
}

#[test]
fn flags_a_subcommand_would_ignore_are_refused() {
    let (code, out) = run_dynoguard(&["demo", "--config", "x.toml", "--for", "1s"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unexpected argument '--config'"), "{out}");
}
