//! Hardened under attack and failure (issue 9): no failure makes dynoguard
//! restart twice or go quiet, no stranger can exhaust it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dynoguard::sim::{FakeHeroku, RestartMode};

use crate::helpers::*;

fn short_api_timeout() -> dynoguard::service::Tuning {
    dynoguard::service::Tuning {
        api_timeout: Duration::from_millis(800),
        ..tuning()
    }
}

async fn spawn_short_timeout(fake: FakeHeroku) -> TestApp {
    let cfg = dynoguard::config::env::from_env(&base_env(&[]), dynoguard::config::env::Need::App)
        .unwrap();
    spawn_tuned(cfg, fake, None, short_api_timeout()).await
}

/// Waits for the `restart_failed` of a call whose outcome is unknown.
async fn assert_outcome_unknown(app: &TestApp) {
    let events = app.wait_for_event("restart_failed").await;
    let f = events
        .iter()
        .find(|e| e["event"] == "restart_failed")
        .unwrap();
    assert!(
        f["detail"].as_str().unwrap().contains("outcome unknown"),
        "{f}"
    );
}

fn ago(secs: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)).to_string()
}

#[tokio::test]
async fn a_restart_answered_after_the_timeout_is_not_repeated() {
    let fake = FakeHeroku::start().await.unwrap();
    // Heroku restarts the dyno at once but answers after our timeout.
    fake.set_restart_mode(RestartMode::AnswerAfter(Duration::from_secs(3)));
    let app = spawn_short_timeout(fake).await;
    app.post_logs(sample_at("web.1", UUID_A, 700.0, 512.0, &ago(100)))
        .await;
    let events = app.wait_for_event("restart").await;
    let r = events.iter().find(|e| e["event"] == "restart").unwrap();
    assert!(
        r["detail"].as_str().unwrap().contains("answer was lost"),
        "{r}"
    );
    // The old instance keeps reporting for a while; the new one arrives.
    for i in 0..5 {
        app.post_logs(sample_at("web.1", UUID_A, 710.0, 512.0, &ago(90 - i * 5)))
            .await;
    }
    app.post_logs(sample_at("web.1", UUID_B, 180.0, 512.0, &ago(60)))
        .await;
    app.wait_for_event("recovered").await;
    // The API's late answer comes at 3 s: nothing may follow it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.fake.restarts().len(), 1, "one DELETE per incident");
    let evidence = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/apps/todo/dynos/web.1")
        .count();
    assert_eq!(evidence, 1, "the dyno was looked up once, as evidence");
    app.stop().await;
}

#[tokio::test]
async fn an_api_that_never_answers_gets_at_most_one_more_delete_per_incident() {
    let fake = FakeHeroku::start().await.unwrap();
    fake.set_restart_mode(RestartMode::Hang);
    // The evidence call hangs too: the outcome stays unknown.
    fake.set_info_delay(Some(Duration::from_secs(60)));
    let app = spawn_short_timeout(fake).await;
    app.post_logs(sample_at("web.1", UUID_A, 700.0, 512.0, &ago(300)))
        .await;
    assert_outcome_unknown(&app).await;
    // The same instance keeps reporting over quota (log time, inside the
    // window). For the two minutes a restart may take, the call counts as
    // made: no second DELETE.
    for i in 1..=5 {
        app.post_logs(sample_at("web.1", UUID_A, 720.0, 512.0, &ago(300 - i * 20)))
            .await;
    }
    app.quiesce().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.fake.restarts().len(), 1, "counted as made for 2 min");
    // Still the same instance well past the time a restart takes: one more
    // call, reported as such — and none after it within the window.
    for i in 6..=12 {
        app.post_logs(sample_at("web.1", UUID_A, 720.0, 512.0, &ago(300 - i * 20)))
            .await;
    }
    wait_for(|| app.fake.restarts().len() >= 2, 10).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(app.fake.restarts().len(), 2);
    let events = app.events().await;
    let retry = events
        .iter()
        .find(|e| e["event"] == "restart_failed" && e["reason"] == "retry")
        .expect("the second call is reported");
    assert!(
        retry["detail"]
            .as_str()
            .unwrap()
            .contains("outcome unknown"),
        "{retry}"
    );
    let rows = app.shared.store.restarts(APP).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.outcome == "unknown"), "{rows:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_timeout_with_the_dyno_shown_unchanged_is_not_taken_as_proof() {
    let fake = FakeHeroku::start().await.unwrap();
    // The DELETE times out; the dyno lookup shows it up and unchanged. That
    // proves nothing (the lookup may lag; an accepted restart leaves the old
    // instance running for its SIGTERM grace): counted as made.
    fake.set_restart_mode(RestartMode::Lost);
    let app = spawn_short_timeout(fake.clone()).await;
    app.post_logs(sample_at("web.1", UUID_A, 700.0, 512.0, &ago(200)))
        .await;
    app.wait_for_event("restart_failed").await;
    fake.set_restart_mode(RestartMode::Normal);
    // 30 s later (log time) the same instance still reports: no DELETE yet.
    app.post_logs(sample_at("web.1", UUID_A, 710.0, 512.0, &ago(170)))
        .await;
    app.quiesce().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deletes = || {
        fake.requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count()
    };
    assert_eq!(deletes(), 1, "not repeated on an unknown outcome");
    // 2 min 20 s after the decision it still reports: one more call.
    app.post_logs(sample_at("web.1", UUID_A, 720.0, 512.0, &ago(60)))
        .await;
    wait_for(|| deletes() >= 2, 10).await;
    let events = app.wait_for_event("restart").await;
    let retry = events
        .iter()
        .find(|e| e["event"] == "restart" && e["reason"] == "retry")
        .expect("one more call");
    assert!(
        retry["detail"].as_str().unwrap().contains("one more call"),
        "{retry}"
    );
    assert_eq!(deletes(), 2);
    app.stop().await;
}

/// `dynoguard serve` as a process against `fake`, with its store in `db`.
async fn serve_process(
    fake: &FakeHeroku,
    db: &std::path::Path,
    extra: &[(&str, &str)],
) -> ServeProcess {
    let url = format!("sqlite://{}", db.display());
    let api = fake.url();
    let mut env = vec![
        ("APP_ID_OR_NAME", APP),
        ("AUTH_TOKEN", TOKEN),
        ("DRAIN_PASSWORD", PASSWORD),
        ("DATABASE_URL", url.as_str()),
        ("HEROKU_API_URL", api.as_str()),
        ("DYNO", "web.1"),
        ("LOG_FORMAT", "json"),
    ];
    env.extend_from_slice(extra);
    ServeProcess::start(&env).await
}

async fn post(serve: &ServeProcess, body: String) -> u16 {
    reqwest::Client::new()
        .post(serve.url("/logs"))
        .basic_auth("x", Some(PASSWORD))
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_crash_between_claim_and_call_does_not_cost_the_window() {
    let fake = FakeHeroku::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    // The call hangs; dynoguard is killed while it is in flight.
    fake.set_restart_mode(RestartMode::Hang);
    let serve = serve_process(&fake, &db, &[]).await;
    post(&serve, sample_at("web.1", UUID_A, 700.0, 512.0, &ago(200))).await;
    wait_for(|| !fake.restarts().is_empty(), 10).await;
    serve.kill9();
    // The next start finds the lease: the call may have worked (Heroku
    // accepted it before we died), so it counts as made. The same instance
    // still reporting 16 s later is expected (SIGTERM grace, boot): no DELETE.
    fake.set_restart_mode(RestartMode::Normal);
    let serve = serve_process(&fake, &db, &[]).await;
    post(&serve, sample_at("web.1", UUID_A, 720.0, 512.0, &ago(184))).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.restarts().len(), 1, "not repeated after a crash");
    // Still the same instance well past the time a restart takes: one more
    // call — not a whole window later.
    post(&serve, sample_at("web.1", UUID_A, 730.0, 512.0, &ago(60))).await;
    wait_for(|| fake.restarts().len() >= 2, 10).await;
    assert_eq!(fake.restarts().len(), 2);
    let (out, _) = serve.output();
    assert!(out.contains("its outcome is unknown"), "{out}");
    // On a dyno (DYNO is set) with SQLite, start-up says what that costs.
    assert!(
        out.contains("running on Heroku with SQLite")
            && out.contains("heroku addons:create heroku-postgresql"),
        "{out}"
    );
    let _ = serve.sigterm().await;
}

#[tokio::test]
async fn sigterm_with_a_hanging_api_exits_within_the_deadline() {
    let fake = FakeHeroku::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    fake.set_restart_mode(RestartMode::Hang);
    let serve = serve_process(
        &fake,
        &dir.path().join("s.db"),
        &[
            ("DYNOGUARD_SHUTDOWN_TIMEOUT", "3s"),
            ("DYNOGUARD_API_TIMEOUT", "60s"),
        ],
    )
    .await;
    post(&serve, sample_at("web.1", UUID_A, 700.0, 512.0, &ago(10))).await;
    wait_for(|| !fake.restarts().is_empty(), 10).await;
    let started = Instant::now();
    let out = serve.sigterm().await;
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(fake.restarts().len(), 1, "no DELETE during shutdown");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("abandoning 1 restart call"), "{stdout}");
}

// ---- the HTTP edge ----------------------------------------------------------

/// Writes `head` and returns what the server answers within `wait`.
fn raw(port: u16, head: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(head).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn credentials_and_size_are_checked_before_any_body_byte() {
    let app = spawn_app().await;
    let port = app.addr.port();
    // A stranger announcing 10 MiB − 1 gets 401 before sending any of it.
    let head = format!(
        "POST /logs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nContent-Length: {}\r\n\r\n",
        base64_of("x:wrong"),
        10 * 1024 * 1024 - 1
    );
    let started = Instant::now();
    let answer =
        tokio::task::spawn_blocking(move || raw(port, head.as_bytes(), Duration::from_secs(3)))
            .await
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The right password, too large a Content-Length: 413 at once.
    let head = format!(
        "POST /logs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nContent-Length: {}\r\n\r\n",
        base64_of(&format!("x:{PASSWORD}")),
        64 * 1024 * 1024
    );
    let answer =
        tokio::task::spawn_blocking(move || raw(port, head.as_bytes(), Duration::from_secs(3)))
            .await
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // An encoded body is refused, not dropped silently.
    let r = app
        .http
        .post(app.url("/logs"))
        .basic_auth("x", Some(PASSWORD))
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let m = app.metrics().await;
    assert!(m.contains("dynoguard_drain_auth_failures_total 1"), "{m}");
    assert!(m.contains("dynoguard_unsupported_encoding_total 1"), "{m}");
    app.stop().await;
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn http2_cleartext_is_not_served() {
    let app = spawn_app().await;
    let port = app.addr.port();
    let answer = tokio::task::spawn_blocking(move || {
        raw(
            port,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
            Duration::from_secs(3),
        )
    })
    .await
    .unwrap();
    assert!(!answer.contains("HTTP/2"), "{answer:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
        "{answer:?}"
    );
    app.stop().await;
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_and_connections_are_capped() {
    let fake = FakeHeroku::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_process(
        &fake,
        &dir.path().join("s.db"),
        &[
            ("DYNOGUARD_HEADER_TIMEOUT", "1s"),
            ("DYNOGUARD_IDLE_TIMEOUT", "1s"),
            ("DYNOGUARD_BODY_TIMEOUT", "1s"),
            ("DYNOGUARD_MAX_CONNECTIONS", "50"),
        ],
    )
    .await;
    let port = serve.port;
    let pid = serve.pid();
    let before = open_fds(pid);
    // 300 bare connections: at most 50 are held, the rest closed at once.
    let bare: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = open_fds(pid);
    assert!(during <= before + 55, "fds {before} → {during}");
    // A slowloris header and a slow body are cut off by their deadlines.
    let slow = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        for b in b"POST /logs HTTP/1.1\r\nHost: x\r\n" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        started.elapsed()
    });
    // After the header timeout (1 s) the bare connections are gone, and the
    // service answers again.
    let client = reqwest::Client::new();
    let mut ok = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ok = client
            .get(serve.url("/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
    }
    assert_eq!(ok, 200);
    assert!(slow.await.unwrap() < Duration::from_secs(4));
    // Slow body: headers complete, the body never comes.
    let head = format!(
        "POST /logs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nContent-Length: 1000\r\n\r\nabc",
        base64_of(&format!("x:{PASSWORD}"))
    );
    let answer =
        tokio::task::spawn_blocking(move || raw(port, head.as_bytes(), Duration::from_secs(4)))
            .await
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    drop(bare);
    let _ = serve.sigterm().await;
}

// ---- store failures ----------------------------------------------------------

async fn healthz(app: &TestApp) -> (u16, String) {
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn wait_health(app: &TestApp, want: u16, secs: u64) -> (u16, String) {
    let mut last = (0, String::new());
    for _ in 0..secs * 10 {
        last = healthz(app).await;
        if last.0 == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test]
async fn a_failing_store_is_visible_protection_goes_on_and_nothing_is_lost() {
    // Root ignores file modes and a busy SQLite file cannot be remounted
    // read-only: SQLite's own read-only error comes through the fault switch.
    let app = spawn_app().await;
    app.shared
        .store
        .inject_fault(Some("attempt to write a readonly database"));
    app.post_logs(sample_at("web.1", UUID_A, 700.0, 512.0, &ago(30)))
        .await;
    // The restart happens on an in-memory claim.
    assert_eq!(app.wait_for_restarts(1).await.len(), 1);
    let (status, body) = wait_health(&app, 503, 5).await;
    assert_eq!(status, 503);
    assert!(body.contains("readonly database"), "{body}");
    // The fault clears: the queued events and the restart record arrive.
    app.shared.store.inject_fault(None);
    assert_eq!(wait_health(&app, 200, 10).await.0, 200);
    let events = app.wait_for_event("store_unavailable").await;
    assert!(events.iter().any(|e| e["event"] == "restart"), "{events:?}");
    for _ in 0..50 {
        if !app.shared.store.restarts(APP).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = app.shared.store.restarts(APP).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "ok");
    app.stop().await;
}

/// A tmpfs of `kb` KiB mounted for the test; unmounted when dropped.
struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(kb: u32) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kb}k"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_is_reported_and_the_store_recovers_when_space_is_back() {
    // 4 MB: once space is back, the queued writes (2,000 events, 1,000
    // dynos' samples, minutes and their 12-minute roll-up, the WAL) must fit.
    let Some(fs) = TinyFs::mount(4096) else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the fault-switch test covers the logic"
        );
        return;
    };
    let db = fs.path().join("dynoguard.db");
    let cfg = dynoguard::config::env::from_env(&base_env(&[]), dynoguard::config::env::Need::App)
        .unwrap();
    let fake = FakeHeroku::start().await.unwrap();
    let app = spawn_tuned(
        cfg,
        fake,
        Some(format!("sqlite://{}", db.display())),
        tuning(),
    )
    .await;
    // Fill the disk.
    let filler = fs.path().join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
    }
    // Enough to need new pages: 1,000 dynos of an unwatched type over
    // quota (an over_threshold and a skipped event each).
    for batch in 0..10 {
        let body: String = (0..100)
            .map(|i| {
                sample_at(
                    &format!("worker.{}", batch * 100 + i),
                    UUID_B,
                    600.0,
                    512.0,
                    &ago(50),
                )
            })
            .collect();
        app.post_logs(body).await;
    }
    app.post_logs(sample_at("web.1", UUID_A, 700.0, 512.0, &ago(40)))
        .await;
    assert_eq!(
        app.wait_for_restarts(1).await.len(),
        1,
        "protection goes on"
    );
    let (status, body) = wait_health(&app, 503, 10).await;
    assert_eq!(status, 503, "{body}");
    // Space back: the store recovers by itself, the queued writes land.
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = wait_health(&app, 200, 15).await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..100 {
        if !app.shared.store.restarts(APP).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A write on every pooled connection works: none was left inside a
    // transaction by the failed commits ("database is locked" for good).
    for n in 0..8 {
        let row = dynoguard::store::RestartRow {
            app: "probe".into(),
            dyno: format!("web.{n}"),
            instance: None,
            reason: "threshold".into(),
            at: jiff::Timestamp::now().as_millisecond(),
            outcome: "ok".into(),
            request_id: None,
            detail: None,
        };
        app.shared
            .store
            .record_restart(&row)
            .await
            .expect("the store writes again");
    }
    assert_eq!(app.shared.store.restarts("probe").await.unwrap().len(), 8);
    assert_eq!(app.shared.store.restarts(APP).await.unwrap().len(), 1);
    // Behind the 2,000 worker events: look for it by kind.
    let mut found = false;
    for _ in 0..150 {
        let rows = app.shared.store.recent_events(None, 100_000).await.unwrap();
        if rows.iter().any(|r| r.kind == "store_unavailable") {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "a store_unavailable event was stored");
    app.stop().await;
    drop(fs);
}

// ---- connection cap, chunked bodies, request smuggling ----------------------

/// dynoguard with these HTTP edge limits (the rest as in the other tests).
async fn spawn_limited(limits: impl FnOnce(&mut dynoguard::service::Tuning)) -> TestApp {
    let cfg = dynoguard::config::env::from_env(&base_env(&[]), dynoguard::config::env::Need::App)
        .unwrap();
    let mut t = tuning();
    limits(&mut t);
    spawn_tuned(cfg, FakeHeroku::start().await.unwrap(), None, t).await
}

/// Writes `head`, then `trickle` one byte a second (for at most `secs`),
/// while reading the answer until the server closes. The answer and how
/// long after the head the connection was closed (`None`: still open).
fn trickle(
    port: u16,
    head: String,
    trickle: &'static [u8],
    secs: u64,
) -> (String, Option<Duration>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for b in trickle.iter().cycle() {
            if started.elapsed() > Duration::from_secs(secs) || w.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break Some(started.elapsed()),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            // A reset after the answer is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                break Some(started.elapsed());
            }
            Err(_) => break None,
        }
    };
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

#[tokio::test]
async fn slow_chunked_uploads_are_cut_off_by_the_body_deadline() {
    let app = spawn_limited(|t| t.http.body_timeout = Duration::from_secs(1)).await;
    let port = app.addr.port();
    let auth = base64_of(&format!("x:{PASSWORD}"));
    let uploads: Vec<_> = (0..20)
        .map(|i| {
            // Half with the password (the handler reads the body), half
            // without (the body is never read) — neither may hold on.
            let auth = if i % 2 == 0 { auth.clone() } else { base64_of("x:wrong") };
            let head = format!(
                "POST /logs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            tokio::task::spawn_blocking(move || trickle(port, head, b"1\r\nx\r\n", 8))
        })
        .collect();
    for (i, u) in uploads.into_iter().enumerate() {
        let (answer, closed) = u.await.unwrap();
        let want = if i % 2 == 0 {
            "HTTP/1.1 408"
        } else {
            "HTTP/1.1 401"
        };
        assert!(answer.starts_with(want), "upload {i}: {answer:?}");
        let closed = closed.unwrap_or_else(|| panic!("upload {i} still open after 8 s"));
        assert!(
            closed < Duration::from_secs(4),
            "upload {i} closed after {closed:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_400_and_closed() {
    let app = spawn_app().await;
    let port = app.addr.port();
    let auth = base64_of(&format!("x:{PASSWORD}"));
    let body = sample("web.1", UUID_A, 700.0, 512.0);
    // RFC 9112 §6.3: both framings in one request is a smuggling attempt.
    let req = format!(
        "POST /logs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let (answer, closed) = tokio::task::spawn_blocking(move || trickle(port, req, b"", 3))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(closed.is_some(), "the connection stays open: {answer:?}");
    // The other order of the two headers, and on a route that reads no body.
    let req = "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n"
        .to_owned();
    let (answer, closed) = tokio::task::spawn_blocking(move || trickle(port, req, b"", 3))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(closed.is_some(), "the connection stays open: {answer:?}");
    app.quiesce().await;
    assert!(app.fake.restarts().is_empty());
    // A chunked request alone is fine, and so is the next one on the
    // connection after it.
    let req = format!(
        "POST /logs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (answer, _) = tokio::task::spawn_blocking(move || trickle(port, req, b"", 3))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer:?}");
    assert!(answer.contains("HTTP/1.1 200"), "{answer:?}");
    assert_eq!(app.wait_for_restarts(1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn idle_connections_at_the_cap_make_room_for_a_real_request() {
    // The cap is at least 16 (listen::connection_cap).
    let app = spawn_limited(|t| {
        t.http.max_connections = 16;
        t.http.header_timeout = Duration::from_secs(30);
    })
    .await;
    let port = app.addr.port();
    // Idle connections that never send a request head, twice the cap.
    let idle: Vec<TcpStream> = (0..32)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for _ in 0..3 {
        let r = app
            .http
            .get(app.url("/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        assert_eq!(r.map(|r| r.status().as_u16()).ok(), Some(200));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let m = app.metrics().await;
    assert!(m.contains("dynoguard_connections_evicted_total"), "{m}");
    drop(idle);
    app.stop().await;
}

/// A 502/504 is a gateway that lost the backend's answer: the restart may
/// have happened, so it is an unknown outcome — never repeated at once.
#[tokio::test]
async fn a_gateway_error_is_an_unknown_outcome_not_a_retry() {
    let fake = FakeHeroku::start().await.unwrap();
    fake.fail_restarts(&[502, 502, 502, 502]);
    let app = spawn_short_timeout(fake.clone()).await;
    app.post_logs(sample_at("web.1", UUID_A, 700.0, 512.0, &ago(100)))
        .await;
    assert_outcome_unknown(&app).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.restarts().len(), 1, "not repeated on a 502");
    app.stop().await;
}
