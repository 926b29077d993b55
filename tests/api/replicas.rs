//! Replicas that decide as one (SPEC §10, issue 20): real `dynoguard serve`
//! processes on one PostgreSQL, the drain split between them.

use std::time::{Duration, Instant};

use dynoguard::sim::FakeHeroku;
use dynoguard::sim::scenario::{self, Scenario};
use dynoguard::store::{EventFilter, Store};

use crate::helpers::*;

/// The PostgreSQL the tests share, or `None` (a failure under
/// `DYNOGUARD_REQUIRE_TOOLS`, as in CI).
fn postgres() -> Option<String> {
    match std::env::var("DATABASE_URL_POSTGRES") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("DYNOGUARD_REQUIRE_TOOLS").is_none(),
                "PostgreSQL is required here (DYNOGUARD_REQUIRE_TOOLS) but DATABASE_URL_POSTGRES is not set"
            );
            eprintln!("SKIPPED: replicas on PostgreSQL (set DATABASE_URL_POSTGRES to run it)");
            None
        }
    }
}

/// A fresh app name: the database outlives test runs, and the replica
/// group (the leader row) is per set of apps.
fn fresh_app() -> String {
    format!("ha-{:012x}", fastrand::u64(..) >> 16)
}

/// One replica: the real binary on PostgreSQL, its own fake Platform API.
async fn replica(db: &str, app: &str, api: &FakeHeroku, extra: &[(&str, &str)]) -> ServeProcess {
    let api_url = api.url();
    let mut env = vec![
        ("APP_ID_OR_NAME", app),
        ("AUTH_TOKEN", TOKEN),
        ("DRAIN_PASSWORD", PASSWORD),
        ("DATABASE_URL", db),
        ("HEROKU_API_URL", api_url.as_str()),
        ("DYNOGUARD_LEADER_LEASE", "3s"),
    ];
    env.extend_from_slice(extra);
    ServeProcess::start(&env).await
}

async fn health(p: &ServeProcess) -> (u16, String) {
    match reqwest::Client::new()
        .get(p.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

async fn role(p: &ServeProcess) -> String {
    let (_, text) = health(p).await;
    text.lines()
        .find_map(|l| l.strip_prefix("role: "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?")
        .to_owned()
}

/// Waits (up to `secs`) until `p` reports `want`; returns how long it took.
async fn until_role(p: &ServeProcess, want: &str, secs: u64) -> Duration {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if role(p).await == want {
            return t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "not {want} within {secs}s: {:?} / {:?}",
        health(p).await,
        p.output().1
    );
}

async fn post(p: &ServeProcess, body: &[u8], frame_id: Option<&str>) {
    let mut r = reqwest::Client::new()
        .post(p.url("/logs"))
        .basic_auth("u", Some(PASSWORD))
        .body(body.to_vec());
    if let Some(id) = frame_id {
        r = r.header("Logplex-Frame-Id", id);
    }
    let status = r.send().await.expect("posted").status();
    assert_eq!(
        status, 204,
        "Logplex never sees an error because of leadership"
    );
}

/// The decision-relevant fields of an event (as `decisions.rs` compares).
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

/// The app's events in the shared store, in the order they were decided.
async fn stored_events(store: &Store, app: &str) -> Vec<serde_json::Value> {
    let mut rows = store
        .events(&EventFilter {
            app: Some(app.to_owned()),
            limit: 1_000_000,
            ..EventFilter::default()
        })
        .await
        .expect("events");
    rows.sort_by_key(|r| r.id);
    rows.iter()
        .map(|r| serde_json::from_str(&r.body).expect("event JSON"))
        .collect()
}

/// Two real replicas, one long simulated log (six dynos, four of them
/// leaking, preboot overlaps, kills), `consecutive = 3`, `max_parallel =
/// 1`, each batch posted to a replica picked at random and one batch
/// retried to both with one Frame-Id: the decisions are exactly those
/// `dynoguard replay` makes for the log.
#[tokio::test]
async fn two_replicas_decide_exactly_as_replay_does() {
    let Some(pg) = postgres() else { return };
    let app = fresh_app();
    let knobs = [
        ("DYNOGUARD_DRY_RUN", "1"),
        ("DYNOGUARD_CONSECUTIVE", "3"),
        ("DYNOGUARD_MAX_PARALLEL", "1"),
    ];
    let api = FakeHeroku::start().await.unwrap();
    let a = replica(&pg, &app, &api, &knobs).await;
    until_role(&a, "leader", 10).await;
    let b = replica(&pg, &app, &api, &knobs).await;
    until_role(&b, "follower", 10).await;

    let s = Scenario {
        start: jiff::Timestamp::now() - jiff::SignedDuration::from_hours(4),
        ..Scenario::default()
    };
    let batches = scenario::batches(&s);
    let mut rng = fastrand::Rng::with_seed(20);
    let retried = batches.len() / 2;
    for (i, body) in batches.iter().enumerate() {
        let id = format!("{i:032X}");
        if i == retried {
            // Logplex retried it: both replicas got it.
            post(&b, body, Some(&id)).await;
            post(&a, body, Some(&id)).await;
        } else if rng.bool() {
            post(&a, body, Some(&id)).await;
        } else {
            post(&b, body, Some(&id)).await;
        }
    }

    let env = base_env(&[("APP_ID_OR_NAME", &app)]);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend_from_slice(&knobs);
    let (code, replayed, stderr) = run_replay(&batches.concat(), &env);
    assert_eq!(code, 0, "{stderr}");
    let want: Vec<String> = replayed.iter().map(decision).collect();
    assert!(want.len() > 20, "an eventful log: {want:?}");

    let store = Store::connect(&pg).await.unwrap();
    for _ in 0..200 {
        if stored_events(&store, &app).await.len() >= want.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stragglers: a pair that decided more must show it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got: Vec<String> = stored_events(&store, &app)
        .await
        .iter()
        .map(decision)
        .collect();
    if got != want {
        let first = want.iter().zip(&got).position(|(w, g)| w != g);
        panic!(
            "two replicas and replay differ ({} vs {} decisions, first difference at {first:?}):\nreplay:   {:?}\nreplicas: {:?}\nA: {}\nB: {}",
            want.len(),
            got.len(),
            first.and_then(|i| want.get(i)),
            first.and_then(|i| got.get(i)),
            a.output().1,
            b.output().1,
        );
    }
    let metrics = reqwest::Client::new()
        .get(a.url("/metrics"))
        .basic_auth("u", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dynoguard_duplicate_batches_total 1"),
        "the retried batch was dropped once, by the leader"
    );
    assert!(metrics.contains("dynoguard_leader{replica="), "{metrics}");
    // Each replica's page says who decides.
    let page = reqwest::Client::new()
        .get(b.url("/"))
        .basic_auth("u", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("class=\"banner replica\"") && page.contains("follows"),
        "{page}"
    );
    a.sigterm().await;
    b.sigterm().await;
}

/// Four dynos leaking one after the other, over `minutes` of log time from
/// `start`: dyno k crosses its 512 MB quota in minute 2k+2. One body per
/// 20 s tick.
fn leaks(start: jiff::Timestamp, minutes: i64) -> Vec<Vec<u8>> {
    const UUIDS: [&str; 4] = [
        "aaaaaaaa-0000-4000-8000-000000000001",
        "aaaaaaaa-0000-4000-8000-000000000002",
        "aaaaaaaa-0000-4000-8000-000000000003",
        "aaaaaaaa-0000-4000-8000-000000000004",
    ];
    (0..minutes * 3)
        .map(|tick| {
            let at = (start + jiff::SignedDuration::from_secs(tick * 20)).to_string();
            let mut body = String::new();
            for (k, uuid) in UUIDS.iter().enumerate() {
                let cross = (2 * k as i64 + 2) * 3;
                let mb = if tick < cross { 300.0 } else { 600.0 };
                body += &sample_at(&format!("web.{}", k + 1), uuid, mb, 512.0, &at);
            }
            body.into_bytes()
        })
        .collect()
}

fn deletes(api: &FakeHeroku) -> Vec<String> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path)
        .collect()
}

/// The leader is killed (SIGKILL) mid-run: the follower takes over within
/// the lease, from the shared state, and every dyno is restarted exactly
/// once — none lost, none doubled.
#[tokio::test]
async fn a_killed_leader_is_replaced_and_no_restart_is_lost_or_doubled() {
    let Some(pg) = postgres() else { return };
    let app = fresh_app();
    let api = FakeHeroku::start().await.unwrap();
    let a = replica(&pg, &app, &api, &[]).await;
    until_role(&a, "leader", 10).await;
    let b = replica(&pg, &app, &api, &[]).await;
    until_role(&b, "follower", 10).await;

    let batches = leaks(
        jiff::Timestamp::now() - jiff::SignedDuration::from_mins(30),
        12,
    );
    let mut rng = fastrand::Rng::with_seed(5);
    // Up to minute 5: web.1 and web.2 cross their quota.
    let (before, after) = batches.split_at(16);
    for body in before {
        post(if rng.bool() { &a } else { &b }, body, None).await;
    }
    wait_for(|| deletes(&api).len() >= 2, 20).await;
    assert_eq!(
        deletes(&api).len(),
        2,
        "web.1 and web.2: {:?}",
        deletes(&api)
    );
    // Let the leader's records reach the store, as they do within seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.kill9();
    let took = until_role(&b, "leader", 20).await;
    eprintln!("the follower took over {took:?} after the leader's SIGKILL");
    // Logplex posts to the replica still up.
    for body in after {
        post(&b, body, None).await;
    }
    wait_for(|| deletes(&api).len() >= 4, 30).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut d = deletes(&api);
    d.sort();
    let want: Vec<String> = (1..=4)
        .map(|k| format!("/apps/{app}/dynos/web.{k}"))
        .collect();
    assert_eq!(d, want, "each dyno once: {}", b.output().1);
    b.sigterm().await;
}

/// A leader paused (SIGSTOP) past its lease while its restart call waits
/// for a retry: the follower takes over; resumed, the old leader makes no
/// API call at all — its lease lapsed by its own clock, and its claim
/// would be refused for its stale epoch.
#[tokio::test]
async fn a_paused_leader_calls_nothing_after_another_took_over() {
    let Some(pg) = postgres() else { return };
    let app = fresh_app();
    let (api_a, api_b) = (
        FakeHeroku::start().await.unwrap(),
        FakeHeroku::start().await.unwrap(),
    );
    let a = replica(&pg, &app, &api_a, &[]).await;
    until_role(&a, "leader", 10).await;
    let b = replica(&pg, &app, &api_b, &[]).await;
    until_role(&b, "follower", 10).await;

    // A's first call fails with a 503: it will retry after a backoff.
    api_a.fail_restarts(&[503]);
    let body = sample("web.1", UUID_A, 768.0, 512.0);
    post(&a, body.as_bytes(), None).await;
    wait_for(|| !deletes(&api_a).is_empty(), 15).await;
    assert_eq!(deletes(&api_a).len(), 1);
    let stop = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &a.pid().to_string()])
            .status()
            .expect("kill runs")
    };
    assert!(stop("-STOP").success());
    let took = until_role(&b, "leader", 20).await;
    eprintln!("the follower took over {took:?} after the leader stopped");
    assert!(stop("-CONT").success());
    until_role(&a, "follower", 20).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        deletes(&api_a).len(),
        1,
        "no call after the lead was lost: {}",
        a.output().1
    );
    let (out, err) = a.output();
    assert!(
        out.contains("not restarting") || err.contains("not restarting"),
        "the dropped retry is said: {out}{err}"
    );
    a.sigterm().await;
    b.sigterm().await;
}

/// A TCP proxy in front of PostgreSQL that the test can cut and restore: an
/// outage as the replicas see it.
struct Proxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, k) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                k.lock().unwrap().push(h.abort_handle());
            }
        });
        Self { port, cut, conns }
    }

    fn set_cut(&self, on: bool) {
        self.cut.store(on, std::sync::atomic::Ordering::SeqCst);
        if on {
            for h in self.conns.lock().unwrap().drain(..) {
                h.abort();
            }
        }
    }
}

/// PostgreSQL goes away and comes back: no panic, `/healthz` 503 then 200,
/// protection goes on during the outage (a replica decides from its own
/// observations), and once the store is back there is one leader again.
#[tokio::test]
async fn a_store_outage_keeps_protection_and_ends_with_one_leader() {
    let Some(pg) = postgres() else { return };
    let mut u = url::Url::parse(&pg).unwrap();
    let upstream = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(5432))
        .parse()
        .unwrap();
    // One proxy per replica: the store comes back to A first.
    let (proxy_a, proxy_b) = (Proxy::start(upstream).await, Proxy::start(upstream).await);
    u.set_port(Some(proxy_a.port)).unwrap();
    let db_a = u.to_string();
    u.set_port(Some(proxy_b.port)).unwrap();
    let db_b = u.to_string();
    let app = fresh_app();
    let (api_a, api_b) = (
        FakeHeroku::start().await.unwrap(),
        FakeHeroku::start().await.unwrap(),
    );
    let a = replica(&db_a, &app, &api_a, &[]).await;
    until_role(&a, "leader", 10).await;
    let b = replica(&db_b, &app, &api_b, &[]).await;
    until_role(&b, "follower", 10).await;

    proxy_a.set_cut(true);
    proxy_b.set_cut(true);
    // Both notice: 503, then each decides from its own memory.
    wait_for_async(|| async { health(&b).await.0 == 503 }, 20).await;
    until_role(&b, "store_unavailable", 20).await;
    until_role(&a, "store_unavailable", 20).await;
    let body = sample("web.1", UUID_A, 768.0, 512.0);
    post(&b, body.as_bytes(), None).await;
    wait_for(|| !deletes(&api_b).is_empty(), 20).await;
    assert_eq!(
        deletes(&api_b).len(),
        1,
        "protection goes on without the store: {}",
        b.output().1
    );

    // A is back first and leads; B, which restarted web.1 meanwhile, a
    // moment later.
    proxy_a.set_cut(false);
    until_role(&a, "leader", 20).await;
    proxy_b.set_cut(false);
    wait_for_async(
        || async { health(&a).await.0 == 200 && health(&b).await.0 == 200 },
        30,
    )
    .await;
    let t = Instant::now();
    let mut roles = (String::new(), String::new());
    while t.elapsed() < Duration::from_secs(20) {
        roles = (role(&a).await, role(&b).await);
        let mut r = [roles.0.as_str(), roles.1.as_str()];
        r.sort_unstable();
        if r == ["follower", "leader"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut r = [roles.0.as_str(), roles.1.as_str()];
    r.sort_unstable();
    assert_eq!(r, ["follower", "leader"], "one leader again");
    // The instance B restarted during the outage is still over its quota
    // (the logs lag, or it is slow to go): neither replica restarts it again
    // — B's window, held in memory during the outage, reached the store.
    for p in [&a, &b] {
        post(p, sample("web.1", UUID_A, 790.0, 512.0).as_bytes(), None).await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let calls = deletes(&api_a).len() + deletes(&api_b).len();
    assert_eq!(
        calls,
        1,
        "one restart of the instance, not one per replica: A {:?} B {:?}\n{}\n{}",
        deletes(&api_a),
        deletes(&api_b),
        a.output().0,
        b.output().0
    );
    a.sigterm().await;
    b.sigterm().await;
}

/// A follower that takes the lead applies the batches it forwarded itself
/// while the old leader was gone (they passed its Frame-Id check when it
/// received them): nothing of the leaderless gap is lost.
#[tokio::test]
async fn a_new_leader_applies_what_it_forwarded_while_there_was_none() {
    let Some(pg) = postgres() else { return };
    let app = fresh_app();
    let (api_a, api_b) = (
        FakeHeroku::start().await.unwrap(),
        FakeHeroku::start().await.unwrap(),
    );
    let a = replica(&pg, &app, &api_a, &[]).await;
    until_role(&a, "leader", 10).await;
    let b = replica(&pg, &app, &api_b, &[]).await;
    until_role(&b, "follower", 10).await;
    let stop = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &a.pid().to_string()])
            .status()
            .expect("kill runs")
    };
    assert!(stop("-STOP").success());
    // Logplex posts to B while A hangs; B forwards (A takes nothing).
    let body = sample("web.2", UUID_B, 800.0, 512.0);
    post(
        &b,
        body.as_bytes(),
        Some("0123456789ABCDEF0123456789ABCDEF"),
    )
    .await;
    until_role(&b, "leader", 20).await;
    wait_for(|| !deletes(&api_b).is_empty(), 20).await;
    assert_eq!(
        deletes(&api_b),
        [format!("/apps/{app}/dynos/web.2")],
        "{}",
        b.output().0
    );
    assert!(stop("-CONT").success());
    a.sigterm().await;
    b.sigterm().await;
}

async fn wait_for_async<F, Fut>(mut f: F, secs: u64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {secs}s");
}

/// Two `serve` on one SQLite file: the second is refused with a message
/// that says what to do.
#[tokio::test]
async fn a_second_serve_on_one_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("one.db").display());
    let first = ServeProcess::start(&[
        ("APP_ID_OR_NAME", APP),
        ("DRAIN_PASSWORD", PASSWORD),
        ("DYNOGUARD_DRY_RUN", "1"),
        ("DATABASE_URL", &db),
    ])
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let (code, out) = run_dynoguard(
        &["serve"],
        &[
            ("APP_ID_OR_NAME", APP),
            ("DRAIN_PASSWORD", PASSWORD),
            ("DYNOGUARD_DRY_RUN", "1"),
            ("DATABASE_URL", &db),
            ("PORT", &port),
            ("HEROKU_API_URL", "http://127.0.0.1:9"),
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("another dynoguard serve is using") && out.contains("PostgreSQL"),
        "{out}"
    );
    first.sigterm().await;
}

/// A follower's backlog goes to the store in one statement however long
/// it is (a VALUES list stopped at PostgreSQL's 65,535 parameters: 8,192
/// batches), and the leader takes every row, once per epoch.
#[tokio::test]
async fn a_long_backlog_is_forwarded_in_one_statement_and_taken_once() {
    let Some(pg) = postgres() else { return };
    let store = Store::connect(&pg).await.unwrap();
    let scope = fresh_app();
    let rows: Vec<dynoguard::store::replicas::ForwardedRow> = (0..10_000)
        .map(|i| dynoguard::store::replicas::ForwardedRow {
            id: 0,
            app: scope.clone(),
            replica: "r2".into(),
            frame_id: (i % 2 == 0).then(|| format!("{i:032X}")),
            received_at: i,
            first_line: Some(i),
            last_line: None,
            observations: "[]".into(),
        })
        .collect();
    store
        .forward(&scope, &rows)
        .await
        .expect("10,000 rows at once");
    let mut taken = 0;
    loop {
        let got = store.take_forwarded(&scope, 1, 3_000).await.unwrap();
        if got.is_empty() {
            break;
        }
        taken += got.len();
    }
    assert_eq!(taken, 10_000);
    // Taken by epoch 1 and not applied: epoch 2 takes them again.
    let again = store.take_forwarded(&scope, 2, 20_000).await.unwrap();
    assert_eq!(again.len(), 10_000);
    let ids: Vec<i64> = again.iter().map(|r| r.id).collect();
    store.done_forwarded(&ids).await.unwrap();
    assert!(
        store
            .take_forwarded(&scope, 3, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
