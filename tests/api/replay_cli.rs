//! `dynoguard replay` on saved logs: same decisions as dark_knight and
//! whacamole for the same config; nothing for healthy logs.

use std::process::Command;

fn replay(input: &[u8], env: &[(&str, &str)]) -> (i32, Vec<serde_json::Value>, String) {
    crate::helpers::run_replay(input, env)
}

/// `(event, reason)` of each event, for comparing decision sequences.
fn kinds(events: &[serde_json::Value]) -> Vec<(&str, &str)> {
    events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("?"),
                e["reason"].as_str().unwrap_or(""),
            )
        })
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    crate::helpers::fixture(name)
}

#[test]
fn healthy_logs_print_nothing() {
    let mut log = fixture("web.1");
    log.extend(fixture("web.1.new_dyno"));
    let (code, events, err) = replay(&log, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(events.is_empty(), "{events:?}");
    assert!(err.contains("replay: format=drain records=2"), "{err}");
    assert!(
        !err.contains("memory samples in"),
        "samples were seen: {err}"
    );
}

#[test]
fn a_log_without_memory_samples_asks_about_runtime_metrics() {
    let log = b"2023-02-14T22:40:09+00:00 heroku[router]: at=info method=GET path=/ dyno=web.1 status=200\n\
2023-02-14T22:40:10+00:00 app[web.1]: GET / 200\n\
2023-02-14T22:40:11+00:00 heroku[web.1]: Error R14 (Memory quota exceeded)\n";
    let (code, _, err) = replay(log, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("0 memory samples in 3 lines — is log-runtime-metrics enabled?"),
        "{err}"
    );
}

#[test]
fn dark_knight_out_of_memory_then_new_dyno() {
    // dark_knight: restart web.1 at 768MB > quota; the new dyno within the
    // window is left alone. Here the new dyno reports 40 s later.
    let mut log = fixture("web.1.out_of_memory");
    let later = String::from_utf8(fixture("web.1.new_dyno.out_of_memory"))
        .unwrap()
        .replace("22:12:51.822974", "22:13:31.822974");
    log.extend(later.into_bytes());
    let (code, events, err) = replay(&log, &[("APP_ID_OR_NAME", "todo")]);
    assert_eq!(code, 0, "{err}");
    let kinds = kinds(&events);
    assert_eq!(
        kinds,
        [
            ("over_threshold", ""),
            ("restart", "threshold"),
            ("recovered", ""),
            ("over_threshold", ""),
            ("skipped", "window")
        ]
    );
    let r = &events[1];
    assert_eq!(r["at"], "2023-02-13T22:12:51.822974Z");
    assert_eq!(r["app"], "todo");
    assert_eq!(r["dyno"], "web.1");
    assert_eq!(r["instance"], "cfe2c338-81f4-40d4-bfb2-13f4e5e31fce");
    assert_eq!(r["memory_total_mb"], 768.0);
    assert_eq!(r["memory_quota_mb"], 512.0);
    assert_eq!(r["dry_run"], false);
}

#[test]
fn dark_knights_fixtures_as_captured_restart_the_newer_instance_only() {
    // As captured, the new dyno's sample has the same timestamp as the old
    // one's: it was already there when the old one was judged, so a DELETE
    // would have hit it. The old one's decision is dropped (`replaced`),
    // and the new one, itself over quota, is the one restarted.
    let mut log = fixture("web.1.out_of_memory");
    log.extend(fixture("web.1.new_dyno.out_of_memory"));
    let (code, events, err) = replay(&log, &[("APP_ID_OR_NAME", "todo")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        kinds(&events),
        [
            ("over_threshold", ""),
            ("skipped", "replaced"),
            ("over_threshold", ""),
            ("restart", "threshold"),
        ]
    );
    assert_eq!(
        events[1]["instance"],
        "cfe2c338-81f4-40d4-bfb2-13f4e5e31fce"
    );
    assert_eq!(
        events[3]["instance"],
        "cfe2c338-81f4-40d4-bfb2-13f4e5e31fcf"
    );
}

#[test]
fn dark_knight_r14_fixture_restarts_on_r14() {
    let (code, events, err) = replay(&fixture("web.1.restarting"), &[]);
    assert_eq!(code, 0, "{err}");
    let kinds = kinds(&events);
    assert_eq!(kinds, [("r14", ""), ("restart", "r14"), ("recovered", "")]);
    assert_eq!(
        events[2]["instance"],
        "5fb3210e-a52b-4d35-9620-cc5a2cb416d7"
    );
}

#[test]
fn whacamole_style_text_logs_with_an_absolute_threshold() {
    // whacamole: restart_threshold = 1000 MB, dynos %w{web}; legacy lines.
    let log = b"2013-08-21T21:57:15.513688+00:00 heroku[web.2]: source=heroku.772639.web.2.c04b10ff-4903-43cb-9de2-90f8a4fbf2f1 measure=memory_total val=766.50 units=MB
2013-08-21T21:57:35.513688+00:00 heroku[web.2]: source=heroku.772639.web.2.c04b10ff-4903-43cb-9de2-90f8a4fbf2f1 measure=memory_total val=1001.20 units=MB
2013-08-21T21:57:35.600000+00:00 app[web.2]: source=web.2 sample#memory_total=5000MB
2013-08-21T21:57:36.513688+00:00 heroku[slow_worker.2]: source=heroku.772639.slow_worker.2.c04b10ff-4903-43cb-9de2-90f8a4fbf2f2 measure=memory_total val=2000 units=MB
2013-08-21T21:57:55.513688+00:00 heroku[web.2]: source=heroku.772639.web.2.c04b10ff-4903-43cb-9de2-90f8a4fbf2f1 measure=memory_total val=1010.00 units=MB
";
    let (code, events, err) = replay(log, &[("WEB_RESTART_THRESHOLD", "1000")]);
    assert_eq!(code, 0, "{err}");
    let restarts: Vec<_> = events.iter().filter(|e| e["event"] == "restart").collect();
    assert_eq!(restarts.len(), 1, "{events:?}");
    assert_eq!(restarts[0]["dyno"], "web.2");
    assert_eq!(restarts[0]["memory_total_mb"], 1001.2);
    assert!(
        events.iter().all(|e| e["dyno"] != "slow_worker.2"),
        "{events:?}"
    );
    assert!(err.contains("format=text"), "{err}");
}

#[test]
fn replay_reads_a_file_and_reports_a_missing_one() {
    let path = format!(
        "{}/tests/fixtures/dark_knight/web.1.out_of_memory",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dynoguard"))
        .env_clear()
        .args(["replay", &path])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"event\":\"restart\""));
    let out = Command::new(env!("CARGO_BIN_EXE_dynoguard"))
        .env_clear()
        .args(["replay", "/nonexistent.log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.log"));
}

#[test]
fn replay_calls_nothing_even_with_a_token() {
    // HEROKU_API_URL points at a closed port: a call would be an error.
    let (code, events, err) = replay(
        &fixture("web.1.out_of_memory"),
        &[
            ("AUTH_TOKEN", "t"),
            ("HEROKU_API_URL", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(events.iter().any(|e| e["event"] == "restart"));
}

#[test]
fn a_new_instance_does_not_inherit_the_old_ones_memory() {
    // web.1 restarted at 768 MB; the next line is a load sample of a new
    // instance (no memory fields): it must not be reported at 768 MB.
    let mut log = fixture("web.1.out_of_memory");
    // 40 s later, the first line of the replacement (a load sample).
    let load = "<134>1 2023-02-13T22:13:31.000000+00:00 host heroku web.1 - source=web.1 dyno=heroku.295224626.4cf08a3d-2f18-4746-baa3-8374af270390 sample#load_avg_1m=0.00 sample#load_avg_5m=0.00";
    log.extend(format!("{} {load}\n", load.len() + 1).into_bytes());
    let (code, events, err) = replay(&log, &[]);
    assert_eq!(code, 0, "{err}");
    let recovered = events
        .iter()
        .find(|e| e["event"] == "recovered")
        .expect("recovered");
    assert_eq!(
        recovered["instance"],
        "4cf08a3d-2f18-4746-baa3-8374af270390"
    );
    assert!(recovered.get("memory_total_mb").is_none(), "{recovered}");
    assert_eq!(recovered["memory_quota_mb"], 512.0);
}

/// Issue 17: a line stamped 90 s ahead of the lines around it is judged at
/// its arrival, read from the log (as `serve` judged it at its arrival), so
/// the samples after it still count — whenever the replay runs.
#[test]
fn a_line_stamped_in_the_future_does_not_make_the_next_samples_stale() {
    let line = |t: &str, mb: f64| {
        let p = format!(
            "<134>1 2023-02-13T22:{t}+00:00 host heroku web.1 - source=web.1 dyno=heroku.1.cfe2c338-81f4-40d4-bfb2-13f4e5e31fce sample#memory_total={mb:.2}MB sample#memory_quota=512.00MB"
        );
        format!("{} {p}\n", p.len() + 1)
    };
    let log = [
        line("10:00", 200.0),
        line("11:30", 210.0), // 90 s ahead of its neighbours
        line("10:20", 300.0),
        line("10:40", 400.0),
        line("11:00", 600.0),
        line("11:20", 610.0),
    ]
    .concat();
    let (code, events, err) = replay(log.as_bytes(), &[]);
    assert_eq!(code, 0, "{err}");
    let kinds = kinds(&events);
    assert_eq!(
        kinds,
        [("over_threshold", ""), ("restart", "threshold")],
        "{err}"
    );
    assert_eq!(events[1]["at"], "2023-02-13T22:11:00Z");
}
