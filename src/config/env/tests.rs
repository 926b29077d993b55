//! The environment source's tests: dark_knight's variables, every knob
//! per type and as the default, and the names of what is wrong.

use super::*;
use crate::decide::policy::{Policy, Threshold};
use crate::domain::Megabytes;

pub(crate) fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn app(pairs: &[(&str, &str)]) -> Config {
    let mut all = vec![("APP_ID_OR_NAME", "a")];
    all.extend_from_slice(pairs);
    from_env(&env(&all), Need::App).unwrap_or_else(|e| panic!("{e}"))
}

fn warnings(c: &Config) -> String {
    c.warnings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn dark_knight_variables() {
    let c = from_env(
        &env(&[
            ("APP_ID_OR_NAME", "whatismyip"),
            ("AUTH_TOKEN", "cf0e05d9"),
            ("DRAIN_PASSWORD", "pw"),
            ("DYNO_TYPES", "web,worker"),
            ("WEB_RESTART_THRESHOLD", "1024"),
            ("WORKER_RESTART_THRESHOLD", "95%"),
            ("WORKER_RESTART_WINDOW", "10m"),
            ("WEB_RESTART_WINDOW", "300"),
        ]),
        Need::App,
    )
    .unwrap();
    let app = &c.apps[0];
    assert_eq!(app.name.as_str(), "whatismyip");
    let web = app.policy.for_type("web").unwrap();
    assert_eq!(web.threshold, Threshold::Absolute(Megabytes(1024.0)));
    assert_eq!(web.restart_window.as_secs(), 300);
    let worker = app.policy.for_type("worker").unwrap();
    assert_eq!(worker.threshold, Threshold::Percent(95.0));
    assert_eq!(worker.restart_window.as_secs(), 600);
    assert!(app.policy.for_type("slow_worker").is_none());
    assert_eq!(c.server.port, 5000);
    assert!(c.server.dashboard_password.is_some());
    assert!(c.warnings.is_empty(), "{}", warnings(&c));
}

#[test]
fn every_knob_is_a_config_var_per_type_and_as_default() {
    let c = app(&[
        ("DYNO_TYPES", "web worker"),
        ("DYNOGUARD_CONSECUTIVE", "2"),
        ("DYNOGUARD_SETTLE", "3m"),
        ("WORKER_CONSECUTIVE", "4"),
        ("WORKER_SWAP_THRESHOLD", "64MB"),
        ("WORKER_PREDICT", "5m"),
        ("WORKER_PREDICT_FLOOR", "90%"),
        ("DYNOGUARD_PREDICT_WINDOW", "15m"),
        ("WORKER_MAX_PARALLEL", "2"),
        ("WORKER_ON_R14", "false"),
        ("WORKER_ON_R15", "0"),
        ("WORKER_FLAP_LIMIT", "5"),
        ("WORKER_FLAP_WINDOW", "2h"),
        ("DYNOGUARD_BLIND_AFTER", "10m"),
    ]);
    let p = &c.apps[0].policy;
    let web = p.for_type("web").unwrap();
    assert_eq!((web.consecutive, web.settle.as_secs()), (2, 180));
    let w = p.for_type("worker").unwrap();
    assert_eq!(w.consecutive, 4);
    assert_eq!(w.settle.as_secs(), 180, "inherits DYNOGUARD_SETTLE");
    assert_eq!(w.swap_threshold, Some(Megabytes(64.0)));
    assert_eq!(w.predict.unwrap().as_secs(), 300);
    assert_eq!((w.predict_floor, w.predict_window.as_secs()), (90.0, 900));
    assert_eq!(
        web.predict,
        Policy::default().predict,
        "predict is on by default"
    );
    assert_eq!(
        (web.predict_floor, web.predict_window.as_secs()),
        (85.0, 900)
    );
    assert!(!w.on_r14 && !w.on_r15);
    assert_eq!((w.flap_limit, w.flap_window.as_secs()), (5, 7200));
    assert_eq!(p.blind_after.as_secs(), 600);
    assert_eq!(
        c.apps[0].set_by["worker"].len(),
        9,
        "{:?}",
        c.apps[0].set_by
    );
}

#[test]
fn star_honours_per_type_settings() {
    let c = app(&[("DYNO_TYPES", "*"), ("WEB_RESTART_THRESHOLD", "150")]);
    let p = &c.apps[0].policy;
    assert_eq!(
        p.for_type("web").unwrap().threshold,
        Threshold::Absolute(Megabytes(150.0))
    );
    assert_eq!(
        p.for_type("worker").unwrap().threshold,
        Threshold::Percent(100.0)
    );
    let c = app(&[("DYNO_TYPES", "*"), ("SLOW_WORKER_CONSECUTIVE", "3")]);
    assert_eq!(
        c.apps[0]
            .policy
            .for_type("slow-worker")
            .unwrap()
            .consecutive,
        3
    );
}

#[test]
fn settings_for_unwatched_types_are_warned_by_name() {
    let c = app(&[
        ("DYNO_TYPES", "web,worker"),
        ("WROKER_RESTART_THRESHOLD", "900"),
    ]);
    assert_eq!(
        warnings(&c),
        "WROKER_RESTART_THRESHOLD: sets threshold for the process type wroker, which is not watched (DYNO_TYPES=web,worker): ignored; did you mean WORKER_RESTART_THRESHOLD?"
    );
    let c = app(&[("DYNO_TYPES", "web"), ("WORKER_RESTART_THRESHOLD", "900")]);
    assert_eq!(
        warnings(&c),
        "WORKER_RESTART_THRESHOLD: sets threshold for the process type worker, which is not watched (DYNO_TYPES=web): ignored"
    );
    let c = app(&[("WORKER_RESTART_WINDOW", "10m")]);
    assert!(warnings(&c).contains("(DYNO_TYPES=web (the default))"));
    let c = app(&[("DYNO_TYPES", "*"), ("RUN_RESTART_THRESHOLD", "900")]);
    assert!(
        warnings(&c).contains("RUN_RESTART_THRESHOLD"),
        "{}",
        warnings(&c)
    );
}

#[test]
fn bad_values_name_the_variable_and_the_range() {
    let err = from_env(
        &env(&[
            ("APP_ID_OR_NAME", "a"),
            ("WEB_RESTART_THRESHOLD", "5000%"),
            ("WEB_RESTART_WINDOW", "soon"),
            ("PORT", "http"),
            ("DYNOGUARD_DRY_RUN", "maybe"),
            ("DYNO_TYPES", "web worker!"),
            ("DATABASE_URL", "mysql://u:p@h/db"),
            ("HEROKU_API_URL", "ftp://x"),
            ("SLACK_EVENTS", "restart,explosion"),
            ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/x"),
        ]),
        Need::App,
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(text.matches("DYNOGUARD_DRY_RUN").count(), 1, "{text}");
    for needle in [
        "WEB_RESTART_THRESHOLD: \"5000%\" is not allowed (out of range); use megabytes from 1 to 1048576",
        "WEB_RESTART_WINDOW: \"soon\" is not allowed; use a duration from 1s to 7d",
        "PORT: \"http\" is not allowed; use a port from 1 to 65535",
        "DYNOGUARD_DRY_RUN: \"maybe\" is not allowed; use true or false",
        "DYNO_TYPES: \"worker!\" is not a process type name",
        "DATABASE_URL: mysql:// is not supported; use sqlite://PATH",
        "HEROKU_API_URL: ftp:// is not allowed; use an https:// URL",
        "SLACK_EVENTS: \"explosion\" is not an event",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    assert!(!text.contains("u:p"), "{text}");
}

#[test]
fn replay_needs_no_app_no_secrets_and_no_server_settings() {
    let err = from_env(&Env::new(), Need::App).unwrap_err();
    assert!(err.to_string().contains("APP_ID_OR_NAME"));
    let c = from_env(&Env::new(), Need::Nothing).unwrap();
    assert_eq!(c.apps[0].name.as_str(), REPLAY_APP);
    let c = from_env(
        &env(&[("PORT", "x"), ("DATABASE_URL", "mysql://h/d")]),
        Need::Nothing,
    )
    .unwrap();
    assert_eq!(c.apps.len(), 1);
}

#[test]
fn notifications_default_to_failures_too() {
    let c = app(&[("SLACK_WEBHOOK_URL", "https://hooks.slack.com/x")]);
    let n = &c.notify[0];
    for k in [
        EventKind::Restart,
        EventKind::RestartFailed,
        EventKind::Flapping,
        EventKind::Blind,
    ] {
        assert!(n.wants(k), "{k:?}");
    }
    assert!(!n.wants(EventKind::Skipped));
    let c = app(&[
        ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/x"),
        ("SLACK_EVENTS", "restart_failed blind"),
    ]);
    assert!(c.notify[0].wants(EventKind::Blind) && !c.notify[0].wants(EventKind::Restart));
}

#[test]
fn secrets_do_not_leak_through_debug() {
    let c = from_env(
        &env(&[
            ("APP_ID_OR_NAME", "a"),
            ("AUTH_TOKEN", "tok-SECRET-1"),
            ("DRAIN_PASSWORD", "pw-SECRET-2"),
            ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/SECRET-3"),
        ]),
        Need::App,
    )
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("SECRET"), "{dbg}");
}
