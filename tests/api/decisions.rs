//! Decisions you can trust (issue 8): no log line can forge a restart, and a
//! running `serve` decides exactly as `replay` does on the same bytes.

use dynoguard::sim::scenario::{self, Scenario};

use crate::helpers::*;

fn ago(secs: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)).to_string()
}

#[tokio::test]
async fn app_output_cannot_forge_a_platform_line() {
    let app = spawn_app().await;
    // A correctly counted app frame whose message holds a newline and then a
    // whole, correctly counted platform R15 frame.
    let forged = format!(
        "<134>1 {} host heroku web.1 - Error R15 (Memory quota vastly exceeded)",
        ago(1)
    );
    let app_frame = format!(
        "<190>1 {} host app web.1 - user input: x\n{} {forged}",
        ago(2),
        forged.len() + 1
    );
    let body = sample_at("web.1", UUID_A, 200.0, 512.0, &ago(3)) + &frame(&app_frame);
    assert_eq!(app.post_logs(body).await.status(), 204);
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    assert!(app.events().await.iter().all(|e| e["event"] != "r15"));
    app.stop().await;
}

#[tokio::test]
async fn version_2_frames_without_newlines_are_each_read() {
    let app = spawn_app().await;
    // Nine exactly counted frames, VERSION 1, 2 and 3, no newline between.
    let mut body = String::new();
    for (i, v) in [1, 2, 3, 2, 1, 2, 3, 2, 1].into_iter().enumerate() {
        let p = if i == 4 {
            sample_payload_at("web.1", UUID_A, 300.25, 512.0, &ago(30))
        } else {
            format!(
                "<40>{v} {} host heroku router - at=info status=200",
                ago(40)
            )
        };
        let p = p.replacen("<134>1 ", &format!("<134>{v} "), 1);
        body.push_str(&format!("{} {p}", p.len()));
    }
    // A platform frame followed, with no newline, by app output posing as a
    // sample: the app frame is app output, whatever it says.
    let fake = format!(
        "<190>2 {} host app web.1 - source=web.1 sample#memory_total=9999.00MB sample#memory_quota=512.00MB",
        ago(20)
    );
    body.push_str(&format!("{} {fake}", fake.len()));
    assert_eq!(app.post_logs(body).await.status(), 204);
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    let dynos = app.dynos().await;
    assert_eq!(dynos[0]["last_sample"]["memory_total_mb"], 300.25);
    assert_eq!(dynos[0]["last_sample"]["memory_quota_mb"], 512.0);
    app.stop().await;
}

#[tokio::test]
async fn serve_judges_by_log_time_not_arrival() {
    let mut cfg =
        dynoguard::config::env::from_env(&base_env(&[]), dynoguard::config::env::Need::App)
            .unwrap();
    cfg.apps[0].policy.defaults.predict = Some(jiff::SignedDuration::from_mins(5));
    let app = spawn_config(cfg).await;
    // +0.5 MB per 20 s: 211 MB to go is hours away. Posted back to back, an
    // arrival clock would see +0.5 MB per millisecond and predict a crossing.
    for (i, mb) in [300.0, 300.5, 301.0].into_iter().enumerate() {
        let at = ago(60 - 20 * i as i64);
        app.post_logs(sample_at("web.1", UUID_A, mb, 512.0, &at))
            .await;
    }
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty(), "{:?}", app.events().await);
    app.stop().await;
}

#[tokio::test]
async fn out_of_order_and_far_future_samples_cannot_freeze_or_fool_a_dyno() {
    let app = spawn_app().await;
    // A far-future sample is judged at its arrival; the next real sample is
    // newer and still applies.
    app.post_logs(sample_at(
        "web.1",
        UUID_A,
        200.0,
        512.0,
        "2100-01-01T00:00:00+00:00",
    ))
    .await;
    // An older over-quota sample arriving late changes nothing.
    app.post_logs(sample_at("web.1", UUID_A, 900.0, 512.0, &ago(60)))
        .await;
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    app.post_logs(sample("web.1", UUID_A, 700.0, 512.0)).await;
    assert_eq!(app.wait_for_restarts(1).await.len(), 1);
    let m = app.metrics().await;
    assert!(m.contains("dynoguard_lines_stale_total 1"), "{m}");
    assert!(m.contains("dynoguard_timestamps_clamped_total 1"), "{m}");
    app.stop().await;
}

#[tokio::test]
async fn preboot_overlap_never_restarts_the_new_instance() {
    let app = spawn_app().await;
    // A is over quota and restarted; B boots; A keeps logging beside B.
    app.post_logs(sample_at("web.1", UUID_A, 600.0, 512.0, &ago(200)))
        .await;
    app.wait_for_event("restart").await;
    for i in 0..6 {
        let t = 180 - i * 20;
        let body = sample_at("web.1", UUID_B, 200.0 + i as f64, 512.0, &ago(t))
            + &sample_at("web.1", UUID_A, 620.0 + i as f64, 512.0, &ago(t - 5))
            + &frame(&format!(
                "<134>1 {} host heroku web.1 - Error R14 (Memory quota exceeded)",
                ago(t - 5)
            ));
        app.post_logs(body).await;
    }
    // Long after the window, a late line of A still changes nothing.
    app.post_logs(sample("web.1", UUID_A, 700.0, 512.0)).await;
    app.quiesce().await;
    assert_eq!(app.fake.restarts().len(), 1);
    let events = app.events().await;
    let count = |k: &str| events.iter().filter(|e| e["event"] == k).count();
    assert_eq!(count("recovered"), 1, "{events:?}");
    assert_eq!(count("over_threshold"), 1, "{events:?}");
    assert_eq!(count("skipped"), 0, "{events:?}");
    assert!(
        app.metrics()
            .await
            .contains("dynoguard_lines_replaced_total 1")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_r14_restart_carries_the_memory_of_its_process_running_line() {
    let app = spawn_app().await;
    let body = frame(&format!(
        "<134>1 {} host heroku web.1 - source=web.1 dyno=heroku.1.{UUID_A} sample#load_avg_1m=0.00",
        ago(3)
    )) + &frame(&format!(
        "<134>1 {} host heroku web.1 - Process running mem=789M(154.3%)",
        ago(2)
    )) + &frame(&format!(
        "<134>1 {} host heroku web.1 - Error R14 (Memory quota exceeded)",
        ago(2)
    ));
    app.post_logs(body).await;
    let events = app.wait_for_event("restart").await;
    let r = events.iter().find(|e| e["event"] == "restart").unwrap();
    assert_eq!(r["reason"], "r14");
    assert_eq!(r["memory_total_mb"], 789.0);
    assert_eq!(r["memory_quota_mb"], 512.0, "snapped to a real dyno size");
    app.stop().await;
}

// ---- replay == serve -------------------------------------------------------

fn replay_events(input: &[u8], env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let env = base_env(env);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (code, events, stderr) = run_replay(input, &env);
    assert_eq!(code, 0, "{stderr}");
    events
}

/// The decision-relevant fields of an event.
fn decision(e: &serde_json::Value) -> String {
    format!(
        "{} {} {} {} {} {} {}",
        e["at"],
        e["event"],
        e["dyno"],
        e["instance"],
        e["reason"],
        e["memory_total_mb"],
        e["count"]
    )
}

/// Posts `batches` to a dry-run `serve`, one POST each, and returns its
/// decisions in the order they were made.
async fn serve_events(batches: &[Vec<u8>], expect: usize) -> Vec<serde_json::Value> {
    let cfg = dynoguard::config::env::from_env(
        &base_env(&[("DYNOGUARD_DRY_RUN", "1")]),
        dynoguard::config::env::Need::App,
    )
    .unwrap();
    let fake = dynoguard::sim::api::FakeHeroku::start().await.unwrap();
    // Decisions are held until the log moves 5 s past them or, in a quiet
    // app, for this long: longer than any pause between two posts here, so
    // serve releases them exactly where replay does.
    let tuning = dynoguard::service::Tuning {
        order_hold: std::time::Duration::from_secs(3),
        ..tuning()
    };
    let app = spawn_tuned(cfg, fake, None, tuning).await;
    for b in batches {
        assert_eq!(app.post_logs(b.clone()).await.status(), 204);
    }
    // Events reach the store through a batched writer: wait for at least as
    // many as replay printed (15 s at most), then for stragglers (a serve
    // that decided *more* must show it too).
    let read = || async {
        app.shared
            .store
            .recent_events(None, 1_000_000)
            .await
            .unwrap()
    };
    for _ in 0..150 {
        if read().await.len() >= expect {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = read().await;
    if events.len() < expect {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &app.shared.counters;
        eprintln!(
            "serve: {} events stored, {} expected; frames={} observations={} stale={} dropped={} store={:?}",
            events.len(),
            expect,
            c.frames.load(Relaxed),
            c.observations.load(Relaxed),
            c.lines_stale.load(Relaxed),
            c.events_dropped.load(Relaxed),
            app.shared.store.health().failing()
        );
    }
    app.stop().await;
    let mut events = events;
    // In the order they were decided (the store lists newest log time first).
    events.sort_by_key(|r| r.id);
    events
        .into_iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

async fn assert_same_decisions(name: &str, batches: Vec<Vec<u8>>) -> usize {
    let replayed = replay_events(&batches.concat(), &[("DYNOGUARD_DRY_RUN", "1")]);
    let served = serve_events(&batches, replayed.len()).await;
    let r: Vec<String> = replayed.iter().map(decision).collect();
    let s: Vec<String> = served.iter().map(decision).collect();
    if r != s {
        let first = r.iter().zip(&s).position(|(a, b)| a != b);
        panic!(
            "{name}: replay and serve differ ({} vs {} decisions, first difference at {first:?}):\nreplay: {:?}\nserve:  {:?}",
            r.len(),
            s.len(),
            first.and_then(|i| r.get(i)),
            first.and_then(|i| s.get(i)),
        );
    }
    r.len()
}

#[tokio::test]
async fn replay_equals_serve_on_every_fixture() {
    for name in [
        "web.1",
        "web.1.new_dyno",
        "web.1.new_dyno.out_of_memory",
        "web.1.out_of_memory",
        "web.1.restarting",
        "logplex",
    ] {
        assert_same_decisions(name, vec![fixture(name)]).await;
    }
    // All of them in sequence, one POST each.
    let all = [
        "web.1",
        "web.1.out_of_memory",
        "web.1.new_dyno.out_of_memory",
        "web.1.restarting",
        "logplex",
    ]
    .map(fixture)
    .to_vec();
    assert!(assert_same_decisions("all fixtures", all).await > 0);
}

#[tokio::test]
async fn replay_equals_serve_on_hours_of_leaks_kills_and_preboot_overlaps() {
    let s = Scenario {
        start: jiff::Timestamp::now() - jiff::SignedDuration::from_hours(4),
        ..Scenario::default()
    };
    let batches = scenario::batches(&s);
    let n = assert_same_decisions("scenario in order", batches.clone()).await;
    assert!(n > 20, "the scenario should be eventful ({n} decisions)");
    // Late, out of order and retried batches: both still decide alike.
    let delivered = scenario::deliver(&batches, 3);
    assert_same_decisions("scenario, disordered delivery", delivered).await;
}

#[tokio::test]
async fn replay_equals_serve_on_a_drain_that_turns_blind() {
    // Samples, then eight minutes of traffic with no sample (metrics turned
    // off), then samples again: one `blind`, dated when it became blind,
    // whether judged line by line (replay) or per batch (serve).
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(30);
    let at = |secs: i64| (start + jiff::SignedDuration::from_secs(secs)).to_string();
    let line = |secs: i64| {
        frame(&format!(
            "<158>1 {} host heroku router - at=info method=GET path=\"/\" status=200",
            at(secs)
        ))
    };
    let mut batches = Vec::new();
    for i in 0..60 {
        let t = i * 10;
        let mut b = line(t) + &line(t + 3);
        if !(6..54).contains(&i) {
            b += &sample_at("web.1", UUID_A, 200.0, 512.0, &at(t + 5));
        }
        b += &line(t + 7);
        batches.push(b.into_bytes());
    }
    let blind_events = |events: &[serde_json::Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == "blind")
            .map(|e| e["at"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let replayed = replay_events(&batches.concat(), &[("DYNOGUARD_DRY_RUN", "1")]);
    assert_eq!(
        blind_events(&replayed),
        [(start + jiff::SignedDuration::from_secs(55 + 300)).to_string()],
        "{replayed:?}"
    );
    assert_same_decisions("blind drain", batches).await;
}

// ---- issue 17: the right instance, and replay == serve whenever it runs --

/// The old instance's over-quota sample and the replacement's first sample
/// in one body: the old one is being replaced already, and a DELETE would
/// hit the newcomer. `serve` calls nothing; `replay` says the same.
#[tokio::test]
async fn a_replacement_in_the_same_body_is_never_restarted() {
    let body = sample_at("web.1", UUID_A, 600.0, 512.0, &ago(30))
        + &sample_at("web.1", UUID_B, 200.0, 512.0, &ago(28));
    let app = spawn_app().await;
    assert_eq!(app.post_logs(body.clone()).await.status(), 204);
    let events = app.wait_for_event("skipped").await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(app.fake.restarts().is_empty(), "{events:?}");
    let skipped = events.iter().find(|e| e["event"] == "skipped").unwrap();
    assert_eq!(skipped["reason"], "replaced", "{skipped}");
    assert_eq!(skipped["instance"], UUID_A);
    app.stop().await;
    let replayed = replay_events(body.as_bytes(), &[]);
    let kinds: Vec<_> = replayed
        .iter()
        .map(|e| format!("{} {}", e["event"], e["reason"]))
        .collect();
    assert_eq!(
        kinds,
        ["\"over_threshold\" null", "\"skipped\" \"replaced\""],
        "{replayed:?}"
    );
}

/// A preboot overlap in both orders of arrival, a replacement inside one
/// batch and a miscounted frame without separators: `replay` run afterwards
/// decides exactly as `serve` did.
#[tokio::test]
async fn replay_equals_serve_on_overlaps_in_both_orders_and_replacements() {
    let at = |secs: i64| ago(3600 - secs);
    let s = |dyno: &str, uuid: &str, mb: f64, t: i64| {
        sample_at(dyno, uuid, mb, 512.0, &at(t)).into_bytes()
    };
    const C: &str = "cccccccc-0000-0000-0000-000000000003";
    const D: &str = "dddddddd-0000-0000-0000-000000000004";
    let mut batches = Vec::new();
    // web.1: the new instance (B) seen first, the old (A, over) next; A stops.
    for i in 0..8 {
        let t = i * 20;
        batches.push(s("web.1", UUID_B, 200.0 + i as f64, t));
        if i < 2 {
            batches.push(s("web.1", UUID_A, 650.0, t + 5));
        }
    }
    // web.2: the old instance (C, over) seen first, the new (D) moments later.
    for i in 0..8 {
        let t = 200 + i * 20;
        if i < 2 {
            batches.push(s("web.2", C, 640.0, t));
        }
        batches.push(s("web.2", D, 210.0, t + 5));
    }
    // web.3: a replacement inside one batch.
    let mut b = s("web.3", UUID_A, 700.0, 400);
    b.extend(s("web.3", UUID_B, 220.0, 402));
    batches.push(b);
    // web.5: a platform frame whose count is 5 bytes short, then, with no
    // newline between them, an app frame posing as a sample and three real
    // over-quota samples: the app text is never a sample, the real ones count.
    let miscounted = |p: &str, off: i64| format!("{} {p}", p.len() as i64 + off);
    let p = |mb: f64, t: i64| sample_payload_at("web.5", UUID_A, mb, 512.0, &at(t));
    let forged = format!(
        "<190>1 {} host app web.5 - user said: sample#memory_total=9999.00MB",
        at(601)
    );
    let body = miscounted(&p(200.0, 600), -5)
        + &miscounted(&forged, 0)
        + &miscounted(&p(700.0, 620), 0)
        + &miscounted(&p(710.0, 640), 0)
        + &miscounted(&p(720.0, 660), 0);
    batches.push(body.into_bytes());
    let replayed = replay_events(&batches.concat(), &[("DYNOGUARD_DRY_RUN", "1")]);
    let web5: Vec<_> = replayed.iter().filter(|e| e["dyno"] == "web.5").collect();
    assert!(
        web5.iter().any(|e| e["event"] == "skipped"
            && e["reason"] == "dry_run"
            && e["memory_total_mb"] == 700.0),
        "{web5:?}"
    );
    assert!(
        web5.iter().all(|e| e["memory_total_mb"] != 9999.0),
        "{web5:?}"
    );
    let n = assert_same_decisions("overlaps, replacements, miscounted frames", batches).await;
    assert!(n > 3);
}
