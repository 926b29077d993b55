//! Config-var names: which ones are dynoguard's settings, and what a name
//! that is not one most likely meant.
//!
//! A misspelt variable is otherwise invisible: the setting keeps its
//! default and `check` says the configuration is valid. So every variable
//! under a prefix dynoguard owns (`DYNOGUARD_`, `SLACK_`, `WEB_`, and
//! `{TYPE}_` for each watched type) that is not a setting is warned with
//! the nearest real name, and the names the two tools dynoguard replaces
//! (whacamole, dark_knight) made people use get a hint saying what to use
//! instead.

use super::Collect;
use super::env::{DEFAULT_PREFIX, Env, type_prefix};
use super::knobs::KNOBS;
use super::settings::SETTINGS;

/// Variables read besides the settings' rows ([`SETTINGS`]) and the knobs.
const OTHER: [&str; 4] = [
    "RUST_LOG",
    "DYNOGUARD_CONFIG",
    "DYNOGUARD_CONFIG_TOML",
    // Read by the test and benchmark harnesses, never by the service: not
    // a mistake when found in a developer's shell.
    "DYNOGUARD_REQUIRE_TOOLS",
];

/// Variables under an owned prefix that belong to someone else and are
/// commonly present: Heroku's language buildpacks set `WEB_CONCURRENCY`
/// and `WEB_MEMORY` on dynos, and operators copy them between apps.
const FOREIGN: [&str; 3] = ["WEB_CONCURRENCY", "WEB_MEMORY", "DYNOGUARD_BENCH_BODIES"];

/// Names whacamole's and dark_knight's setups use (or that people carry
/// over from them) that dynoguard does not read, and what to use instead.
const PEERS: [(&str, &str); 8] = [
    (
        "HEROKU_API_TOKEN",
        "whacamole's examples read the token from HEROKU_API_TOKEN; dynoguard reads AUTH_TOKEN (dark_knight's name) or HEROKU_API_KEY: set AUTH_TOKEN to this token",
    ),
    (
        "API_TOKEN",
        "dynoguard reads the Platform API token from AUTH_TOKEN (or HEROKU_API_KEY): set AUTH_TOKEN to this token",
    ),
    (
        "DYNO_TYPE",
        "the list of process types to watch is DYNO_TYPES (plural, dark_knight's name): rename it to DYNO_TYPES",
    ),
    (
        "DYNOS",
        "whacamole's `config.dynos` is DYNO_TYPES here (e.g. DYNO_TYPES=web,worker)",
    ),
    (
        "RESTART_THRESHOLD",
        "whacamole's `config.restart_threshold` is DYNOGUARD_RESTART_THRESHOLD here (every type) or {TYPE}_RESTART_THRESHOLD (one type, e.g. WEB_RESTART_THRESHOLD=1000)",
    ),
    (
        "RESTART_WINDOW",
        "the restart window is DYNOGUARD_RESTART_WINDOW here (every type) or {TYPE}_RESTART_WINDOW (one type, e.g. WEB_RESTART_WINDOW=10m)",
    ),
    (
        "APP_NAME",
        "the app to watch is APP_ID_OR_NAME (dark_knight's name)",
    ),
    (
        "SLACK_URL",
        "the Slack incoming webhook is SLACK_WEBHOOK_URL",
    ),
];

/// Every setting whose name starts with one of `prefixes` (each ending in
/// `_`): the rows' variables, `DYNOGUARD_{KNOB}`, and `{TYPE}_{KNOB}` for each
/// prefix that is not `DYNOGUARD_` or `SLACK_`.
fn settings(prefixes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = SETTINGS
        .iter()
        .flat_map(|s| s.env.iter())
        .chain(OTHER.iter())
        .map(|s| (*s).to_owned())
        .collect();
    out.extend(super::tuning::TUNING_VARS.iter().map(|v| v.name.to_owned()));
    for p in prefixes {
        if p == "SLACK_" {
            continue;
        }
        out.extend(KNOBS.iter().map(|k| format!("{p}{}", k.env)));
    }
    out.sort();
    out.dedup();
    out
}

/// Edit distance (Levenshtein) between two names.
pub fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The setting `name` most likely meant, among `candidates`: the nearest by
/// edit distance, if near enough to be a slip (a third of its length), or
/// one that `name` extends or shortens (`WEB_RESTART_THRESHOLD_MB`,
/// `SLACK_WEBHOOK`).
fn nearest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    let (best, d) = candidates
        .iter()
        .map(|c| (c, distance(name, c)))
        .min_by_key(|(_, d)| *d)?;
    let close = d <= (best.len() / 3).max(2);
    let extends = name.starts_with(best.as_str()) || best.starts_with(name);
    (close || extends).then_some(best.as_str())
}

/// Warns about every variable of `env` that looks like a dynoguard setting
/// but is not one. `types` are the watched process types (their `{TYPE}_`
/// prefixes are owned); `skip` says which variables are already accounted
/// for (warned otherwise, or read by a configuration file).
pub(crate) fn unknown_vars(
    env: &Env,
    types: &[String],
    dyno_types_set: bool,
    skip: &dyn Fn(&str) -> bool,
    c: &mut Collect,
) {
    let mut prefixes: Vec<String> =
        vec![format!("{DEFAULT_PREFIX}_"), "SLACK_".into(), "WEB_".into()];
    prefixes.extend(types.iter().map(|t| format!("{}_", type_prefix(t))));
    prefixes.sort();
    prefixes.dedup();
    let real = settings(&prefixes);
    for (var, value) in env {
        if value.trim().is_empty()
            || real.contains(var)
            || FOREIGN.contains(&var.as_str())
            || skip(var)
        {
            continue;
        }
        if let Some((_, hint)) = PEERS.iter().find(|(name, _)| *name == var.as_str()) {
            let mut message = format!("not read by dynoguard (ignored): {hint}");
            if var == "DYNO_TYPE" && !dyno_types_set {
                message.push_str(&format!(
                    "; until then dynoguard watches only web, not {:?}",
                    value.trim()
                ));
            }
            c.warn(var.as_str(), message);
            continue;
        }
        // The candidates share the variable's prefix: a slip keeps the
        // prefix, and a `WEB_…` name never meant `DYNOGUARD_…`.
        let owned: Vec<&String> = prefixes
            .iter()
            .filter(|p| var.starts_with(p.as_str()))
            .collect();
        if owned.is_empty() {
            continue;
        }
        let candidates: Vec<String> = real
            .iter()
            .filter(|r| owned.iter().any(|p| r.starts_with(p.as_str())))
            .cloned()
            .collect();
        let message = match nearest(var, &candidates) {
            Some(n) => format!("not a setting (ignored) — did you mean {n}?"),
            None => format!(
                "not a setting (ignored); settings starting with {} are: {}",
                owned[0],
                candidates.join(", ")
            ),
        };
        c.warn(var.as_str(), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(pairs: &[(&str, &str)], types: &[&str]) -> Vec<String> {
        let env: Env = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        let mut c = Collect::default();
        unknown_vars(&env, &types, false, &|_| false, &mut c);
        c.warnings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn slips_get_the_nearest_real_name() {
        for (given, meant) in [
            ("WEB_RESTART_TRESHOLD", "WEB_RESTART_THRESHOLD"),
            ("DYNOGUARD_CONSECUTVE", "DYNOGUARD_CONSECUTIVE"),
            ("WEB_RESTART_THRESHOLD_MB", "WEB_RESTART_THRESHOLD"),
            ("DYNOGUARD_RESTART_WINDOWS", "DYNOGUARD_RESTART_WINDOW"),
            ("SLACK_WEBHOOK", "SLACK_WEBHOOK_URL"),
            ("WORKER_RESTART_TRESHOLD", "WORKER_RESTART_THRESHOLD"),
            ("DYNOGUARD_DRYRUN", "DYNOGUARD_DRY_RUN"),
            ("DYNOGUARD_API_TIMEOUTS", "DYNOGUARD_API_TIMEOUT"),
        ] {
            assert_eq!(
                warned(&[(given, "1")], &["web", "worker"]),
                [format!(
                    "{given}: not a setting (ignored) — did you mean {meant}?"
                )],
                "{given}"
            );
        }
    }

    #[test]
    fn settings_and_foreign_names_are_left_alone() {
        assert!(
            warned(
                &[
                    ("WEB_RESTART_THRESHOLD", "1"),
                    ("WORKER_CONSECUTIVE", "2"),
                    ("WEB_CONCURRENCY", "4"),
                    ("DYNOGUARD_SHUTDOWN_TIMEOUT", "20s"),
                    ("SLACK_EVENTS", "restart"),
                    ("HEROKU_APP_NAME", "my-dynoguard"),
                    ("DYNO", "run.1234"),
                    ("CLOCK_RESTART_TRESHOLD", "1"),
                ],
                &["web", "worker"]
            )
            .is_empty()
        );
    }

    #[test]
    fn peer_names_say_what_to_use() {
        let w = warned(
            &[("HEROKU_API_TOKEN", "t"), ("DYNO_TYPE", "web,worker")],
            &["web"],
        );
        assert!(w[0].starts_with("DYNO_TYPE: not read by dynoguard (ignored):"));
        assert!(w[0].contains("rename it to DYNO_TYPES"));
        assert!(w[0].contains("watches only web, not \"web,worker\""));
        assert!(w[1].starts_with("HEROKU_API_TOKEN: not read by dynoguard"));
        assert!(w[1].contains("set AUTH_TOKEN"));
    }

    #[test]
    fn far_names_list_the_prefix_settings() {
        let w = warned(&[("SLACK_CHANNEL", "#ops")], &["web"]);
        assert_eq!(
            w,
            [
                "SLACK_CHANNEL: not a setting (ignored); settings starting with SLACK_ are: SLACK_EVENTS, SLACK_WEBHOOK_URL"
            ]
        );
    }

    #[test]
    fn distances() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}
