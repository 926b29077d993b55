//! The deploy files stay true to the code: `app.json` (Heroku Button) lists
//! every variable the code reads, requires the ones without a default, gives
//! no secret a value; the Dockerfile builds with the command CI runs.

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    let p = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Variables the settings read (their one table) and the machinery
/// variables.
fn variables_the_code_reads() -> BTreeSet<String> {
    let mut vars: BTreeSet<String> = dynoguard::config::variables().map(str::to_owned).collect();
    for var in &dynoguard::service::TUNING_VARS {
        vars.insert(var.name.to_owned());
    }
    assert!(read("src/cli.rs").contains("env = \"DYNOGUARD_CONFIG\""));
    vars.insert("DYNOGUARD_CONFIG".into());
    assert!(vars.len() > 15, "the scan found the variables: {vars:?}");
    vars
}

#[test]
fn app_json_lists_every_variable_and_no_secret_has_a_value() {
    let app: serde_json::Value = serde_json::from_str(&read("app.json")).expect("app.json is JSON");
    for key in ["name", "description", "repository"] {
        assert!(app[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    let env = app["env"].as_object().expect("env");
    // Set by the platform or an add-on, not by the person deploying.
    let provided = ["PORT", "DATABASE_URL"];
    for var in variables_the_code_reads() {
        if provided.contains(&var.as_str()) {
            continue;
        }
        assert!(env.contains_key(&var), "app.json does not list {var}");
    }
    for (name, spec) in env {
        assert!(
            spec["description"].as_str().is_some_and(|d| d.len() > 10),
            "{name} needs a description"
        );
        assert!(spec["required"].is_boolean(), "{name}: required true/false");
    }
    // No default for these: required.
    for var in ["APP_ID_OR_NAME", "AUTH_TOKEN", "DRAIN_PASSWORD"] {
        assert_eq!(env[var]["required"], true, "{var}");
    }
    for secret in [
        "AUTH_TOKEN",
        "HEROKU_API_KEY",
        "DRAIN_PASSWORD",
        "DASHBOARD_PASSWORD",
        "SLACK_WEBHOOK_URL",
    ] {
        assert!(
            env[secret].get("value").is_none(),
            "{secret} must have no default value"
        );
    }
    assert_eq!(env["DRAIN_PASSWORD"]["generator"], "secret");
    let addons: Vec<&str> = app["addons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["plan"].as_str())
        .collect();
    assert!(
        addons.iter().any(|p| p.starts_with("heroku-postgresql")),
        "{addons:?}"
    );
    assert_eq!(app["formation"]["web"]["quantity"], 1);
}

#[test]
fn the_dockerfile_builds_what_ci_builds_and_the_procfiles_run_it() {
    let docker = read("Dockerfile");
    let build = docker
        .lines()
        .find_map(|l| l.strip_prefix("RUN cargo build"))
        .map(|rest| format!("cargo build{rest}"))
        .expect("a cargo build line");
    assert!(read(".ci/run").contains(&build), "CI must run `{build}`");
    assert!(docker.contains("USER dynoguard") && docker.contains("HEALTHCHECK"));
    assert!(docker.contains("CMD [\"dynoguard\", \"serve\"]"));
    assert!(read("Procfile").contains("web: ./target/release/dynoguard serve"));
    assert!(read("heroku.yml").contains("web: dynoguard serve"));
    // The toolchain pinned for the buildpack is the image's.
    let version = read("RustConfig")
        .lines()
        .find_map(|l| l.strip_prefix("VERSION="))
        .expect("VERSION=")
        .to_owned();
    let minor = version.rsplit_once('.').unwrap().0;
    assert!(docker.contains(&format!("FROM rust:{minor}-")), "{version}");
    assert!(read("Cargo.toml").contains(&format!("rust-version = \"{minor}\"")));
}
