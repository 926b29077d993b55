//! The TOML source's tests: every problem of a file in one run, with its
//! line and full key; the environment's switches over the file.

use super::*;
use crate::config::env::tests::env;
use crate::decide::policy::Threshold;
use crate::domain::Megabytes;

const MIN: &str = "[server]\nport = 7000\ndrain_password = \"${PW}\"\n\n[[app]]\nname = \"a\"\napi_token = \"t\"\n";

fn problems(src: &str, e: &Env) -> String {
    parse("bad.toml", src, e).unwrap_err().to_string()
}

#[test]
fn the_environment_wins_for_the_operational_switches() {
    let c = parse("f", MIN, &env(&[("PW", "x")])).unwrap();
    assert_eq!(c.server.port, 7000);
    assert_eq!(c.origins.port, "server.port (file)");
    let c = parse(
        "f",
        MIN,
        &env(&[
            ("PW", "x"),
            ("PORT", "31337"),
            ("DYNOGUARD_DRY_RUN", "1"),
            ("DASHBOARD_PASSWORD", "dash"),
            ("DATABASE_URL", "postgres://u:p@db.example.com/d"),
        ]),
    )
    .unwrap();
    assert_eq!(c.server.port, 31337);
    assert!(c.apps[0].policy.defaults.dry_run);
    use secrecy::ExposeSecret as _;
    assert_eq!(
        c.server
            .dashboard_password
            .as_ref()
            .unwrap()
            .expose_secret(),
        "dash"
    );
    assert!(c.database_url.expose_secret().starts_with("postgres://"));
    assert!(c.origins.dry_run.starts_with("DYNOGUARD_DRY_RUN=1"));
}

#[test]
fn variables_are_expanded_and_stay_secret() {
    let c = parse("f", MIN, &env(&[("PW", "s3cret-value")])).unwrap();
    use secrecy::ExposeSecret as _;
    assert_eq!(
        c.server.drain_password.as_ref().unwrap().expose_secret(),
        "s3cret-value"
    );
    assert!(!format!("{c:?}").contains("s3cret-value"));
}

#[test]
fn types_inherit_app_then_defaults() {
    let src = "[server]\ndrain_password = \"p\"\n\n[defaults]\nrestart_window = \"20m\"\nthreshold = \"90%\"\n\n[[app]]\nname = \"a\"\napi_token = \"t\"\ndyno_types = [\"web\", \"worker\"]\nthreshold = \"1000MB\"\n\n  [app.types.worker]\n  consecutive = 2\n";
    let c = parse("f", src, &Env::new()).unwrap();
    let p = &c.apps[0].policy;
    let web = p.for_type("web").unwrap();
    let worker = p.for_type("worker").unwrap();
    assert_eq!(web.threshold, Threshold::Absolute(Megabytes(1000.0)));
    assert_eq!(web.restart_window.as_secs(), 1200);
    assert_eq!(
        (
            worker.threshold,
            worker.consecutive,
            worker.restart_window.as_secs()
        ),
        (Threshold::Absolute(Megabytes(1000.0)), 2, 1200)
    );
    assert!(p.for_type("clock").is_none());
}

#[test]
fn every_problem_of_a_file_in_one_run_with_line_and_full_key() {
    let src = "\
[server]
drain_password = \"p\"
port = \"http\"

[defaults]
thresold = \"90%\"
dyno_types = 5

[[app]]
name = \"shop\"
dyno_types = \"web\"
consecutive = \"many\"

  [app.types.web]
  settle = [1, 2]
  max_parallel = \"0%\"
";
    let text = problems(src, &Env::new());
    let expected = [
        "bad.toml:3: server.port: \"http\" is not allowed; use a port from 1 to 65535",
        "bad.toml:6: defaults.thresold: unknown key; did you mean threshold?",
        "bad.toml:7: defaults.dyno_types: expected a list of strings ([\"web\", \"worker\"]), found an integer",
        "bad.toml:12: app.shop.consecutive: \"many\" is not allowed; use a count of samples from 1 to 100",
        "bad.toml:15: app.shop.types.web.settle: expected a string or a number, found an array",
        "bad.toml:16: app.shop.types.web.max_parallel: \"0%\" is not allowed (out of range)",
    ];
    for e in expected {
        assert!(text.contains(e), "{e}\n---\n{text}");
    }
    assert!(
        text.starts_with("invalid configuration (6 problems)"),
        "{text}"
    );
}

#[test]
fn unwatched_types_and_ignored_vars_are_warned() {
    let src = "[server]\ndrain_password = \"p\"\n[[app]]\nname = \"a\"\napi_token = \"t\"\ndyno_types = [\"web\", \"worker\"]\n[app.types.wroker]\nthreshold = 900\n";
    let c = parse(
        "f.toml",
        src,
        &env(&[("WEB_RESTART_THRESHOLD", "900"), ("APP_ID_OR_NAME", "x")]),
    )
    .unwrap();
    let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w[0],
        "f.toml:7: app.a.types.wroker: settings for wroker, which is not watched (dyno_types = [\"web\", \"worker\"]): ignored; did you mean worker?"
    );
    assert!(
        w.iter().any(|w| w
            .starts_with("WEB_RESTART_THRESHOLD: ignored: the configuration comes from f.toml")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.starts_with("APP_ID_OR_NAME: ignored")),
        "{w:?}"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let text = problems("[server\nport = 1\n", &Env::new());
    assert!(text.contains("bad.toml:1"), "{text}");
}

#[test]
fn replay_needs_neither_secrets_nor_server_settings() {
    let src = "[server]\nport = 0\ndrain_password = \"${NOPE_PW}\"\n[store]\nurl = \"mysql://h/d\"\n[[app]]\nname = \"a\"\napi_token = \"${NOPE_TOKEN}\"\n[[notify]]\nkind = \"slack\"\nurl = \"${NOPE_HOOK}\"\n";
    assert!(parse_for("f", src, &Env::new(), Need::Nothing).is_ok());
    let text = problems(src, &Env::new());
    assert!(
        text.contains("store.url: mysql:// is not supported"),
        "{text}"
    );
}
