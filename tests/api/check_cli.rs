//! `dynoguard check` on good and bad configurations (the real binary).

use crate::helpers::write_toml;

fn check(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let args: Vec<&str> = std::iter::once("check")
        .chain(args.iter().copied())
        .collect();
    crate::helpers::run_dynoguard(&args, env)
}

#[test]
fn the_example_file_passes() {
    let example = format!("{}/dynoguard.example.toml", env!("CARGO_MANIFEST_DIR"));
    let (code, out) = check(
        &["--config", &example],
        &[
            ("DRAIN_PASSWORD", "pw-SECRET"),
            ("HEROKU_API_KEY", "key-SECRET"),
            (
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/SECRET",
            ),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("app shop-production: source=drain api_token=***"),
        "{out}"
    );
    assert!(
        out.contains("worker: threshold=1800MB restart_window=30m"),
        "{out}"
    );
    assert!(!out.contains("SECRET"), "secret printed: {out}");
}

#[test]
fn dark_knight_environment_passes_and_shows_the_policy() {
    let (code, out) = check(
        &[],
        &[
            ("APP_ID_OR_NAME", "whatismyip"),
            ("AUTH_TOKEN", "tok-SECRET"),
            ("DRAIN_PASSWORD", "pw-SECRET"),
            ("DYNO_TYPES", "web,worker"),
            ("WORKER_RESTART_THRESHOLD", "95%"),
            ("WORKER_PREDICT_FLOOR", "90%"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("web: threshold=100% restart_window=10m"),
        "{out}"
    );
    // Acting before a dyno swaps is the default (README "Before it swaps").
    assert!(
        out.contains("predict=2m predict_floor=85% predict_window=10m"),
        "{out}"
    );
    assert!(out.contains("worker: threshold=95%"), "{out}");
    assert!(out.contains("predict=2m predict_floor=90%"), "{out}");
    assert!(!out.contains("SECRET"), "{out}");
}

#[test]
fn bad_environment_lists_every_problem_and_exits_2() {
    let (code, out) = check(
        &[],
        &[
            ("APP_ID_OR_NAME", "a"),
            ("WEB_RESTART_THRESHOLD", "big"),
            ("PORT", "x"),
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("WEB_RESTART_THRESHOLD: \"big\" is not allowed; use megabytes from 1 to 1048576 (1024, 1024MB, 1.5GB) or a percentage of the dyno's quota from 1% to 1000% (95%)"), "{out}");
    assert!(
        out.contains("PORT: \"x\" is not allowed; use a port from 1 to 65535"),
        "{out}"
    );
}

#[test]
fn missing_token_and_password_are_problems() {
    let (code, out) = check(&[], &[("APP_ID_OR_NAME", "a")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no API token"), "{out}");
    assert!(out.contains("no drain password"), "{out}");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let (_d, p) = write_toml(
        "[server]\nport = 5000\n\n[[app]]\nname = \"a\"\napi_token = \"t\"\nthreshhold = \"90%\"\n",
    );
    let (code, out) = check(&["--config", &p], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(":7: app.a.threshhold: unknown key; did you mean threshold?"),
        "{out}"
    );
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let (_d, p) = write_toml("[server]\nport = [5000]\n");
    let (code, out) = check(&["--config", &p], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(":2: server.port: expected a string or a number, found an array"),
        "{out}"
    );
}

#[test]
fn impossible_values_are_all_listed_with_key_and_line() {
    let toml = "[server]\ndrain_password = \"pw\"\n\n[defaults]\nthreshold = \"lots\"\nrestart_window = \"soon\"\n\n[[app]]\nname = \"shop\"\napi_token = \"${NOPE_NOT_SET}\"\nsource = \"carrier-pigeon\"\n\n  [app.types.worker]\n  consecutive = 0\n\n[[notify]]\nkind = \"email\"\nurl = \"https://x\"\n";
    let (_d, p) = write_toml(toml);
    let (code, out) = check(&["--config", &p], &[]);
    assert_eq!(code, 2, "{out}");
    for needle in [
        ":5: defaults.threshold: \"lots\" is not allowed; use megabytes",
        ":6: defaults.restart_window: \"soon\" is not allowed; use a duration from 1s to 7d",
        ":10: app.shop.api_token: environment variable NOPE_NOT_SET is not set",
        ":11: app.shop.source: \"carrier-pigeon\" is not allowed; use \"drain\" or \"log-session\"",
        ":14: app.shop.types.worker.consecutive: \"0\" is not allowed (out of range); use a count of samples from 1 to 100",
        ":17: notify[0].kind: \"email\" is not allowed; use \"slack\" or \"webhook\"",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn a_file_that_cannot_be_read_is_a_problem() {
    let (code, out) = check(&["--config", "/nonexistent/dynoguard.toml"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot read the file"), "{out}");
}

#[test]
fn secrets_with_special_characters_never_reach_check_output() {
    for pw in [
        "xY7@Zq",
        "xY7:Zq",
        "xY7/Zq",
        "xY7?Zq",
        "xY7#Zq",
        "xY7%Zq",
        "xY7@:/?#%Zq",
    ] {
        let db =
            format!("postgres://user:{pw}@db.example.com:5432/d?sslmode=require&password={pw}");
        let (_, out) = check(
            &[],
            &[
                ("APP_ID_OR_NAME", "todo"),
                ("AUTH_TOKEN", pw),
                ("DRAIN_PASSWORD", pw),
                ("DATABASE_URL", &db),
                (
                    "SLACK_WEBHOOK_URL",
                    &format!("https://hooks.slack.com/services/{pw}"),
                ),
            ],
        );
        assert!(!out.contains("xY7") && !out.contains("Zq"), "{pw}: {out}");
    }
}

/// Issue 18 item 8: every value as it would be written (never Rust's debug
/// form: `log_format=Text`, `notify Slack`), each with where it came from.
#[test]
fn values_are_printed_as_written_with_their_origin() {
    let (code, out) = check(
        &[],
        &[
            ("APP_ID_OR_NAME", "shop"),
            ("AUTH_TOKEN", "tok-SECRET"),
            ("DRAIN_PASSWORD", "pw-SECRET"),
            ("DYNO_TYPES", "web,worker"),
            ("WEB_RESTART_THRESHOLD", "1000"),
            ("WORKER_RESTART_THRESHOLD", "95%"),
            ("DYNOGUARD_RESTART_WINDOW", "600"),
            ("LOG_FORMAT", "json"),
            (
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/SECRET",
            ),
        ],
    );
    assert_eq!(code, 0, "{out}");
    for needle in [
        "body_limit=10MB log_format=json [LOG_FORMAT (environment)]",
        "heroku api: https://api.heroku.com [default]",
        "dry_run=false [default]",
        "\n  web: threshold=1000MB restart_window=10m ",
        "    set by: DYNOGUARD_RESTART_WINDOW=600, WEB_RESTART_THRESHOLD=1000; everything else: the default",
        "\n  worker: threshold=95% restart_window=10m ",
        "    set by: DYNOGUARD_RESTART_WINDOW=600, WORKER_RESTART_THRESHOLD=95%;",
        "notify slack: url=*** events=restart,restart_failed,flapping,blind",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    for debug in ["Text", "Json", "Slack", "Some(", "Percent(", "Absolute("] {
        assert!(!out.contains(debug), "debug form {debug:?} in:\n{out}");
    }
    assert!(!out.contains("SECRET"), "{out}");

    // A type's own setting hides the default it overrides.
    let (code, out) = check(
        &[],
        &[
            ("APP_ID_OR_NAME", "shop"),
            ("AUTH_TOKEN", "t"),
            ("DRAIN_PASSWORD", "p"),
            ("DYNOGUARD_RESTART_WINDOW", "600"),
            ("WEB_RESTART_WINDOW", "5m"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("\n  web: threshold=100% restart_window=5m ")
            && out.contains("    set by: WEB_RESTART_WINDOW=5m; everything else: the default"),
        "{out}"
    );

    // From a file: the key, as written, and file:line.
    let (_d, p) = write_toml(
        "[server]\ndrain_password = \"p\"\nlog_format = \"text\"\n\n[[app]]\nname = \"shop\"\napi_token = \"t\"\nrestart_window = \"30m\"\n\n  [app.types.web]\n  threshold = \"1.5GB\"\n",
    );
    let (code, out) = check(&["--config", &p], &[]);
    assert_eq!(code, 0, "{out}");
    for needle in [
        "log_format=text [server.log_format (file)]".to_owned(),
        "\n  web: threshold=1536MB restart_window=30m ".to_owned(),
        format!(
            "    set by: app.shop.restart_window=30m ({p}:8), app.shop.types.web.threshold=1.5GB ({p}:11);"
        ),
    ] {
        assert!(out.contains(&needle), "{needle:?} missing:\n{out}");
    }
}
