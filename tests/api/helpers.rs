//! `spawn_app()`: dynoguard on 127.0.0.1:0 with its own temp SQLite and its
//! own simulated Heroku API, as zero-to-production does it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dynoguard::config::{self, Config, env::Need};
use dynoguard::service::{App, Shared, Tuning};
use dynoguard::sim::{FakeHeroku, Recorded};
use secrecy::SecretString;
use tokio::sync::watch;

pub const APP: &str = "todo";
pub const TOKEN: &str = "test-token-7f3a";
pub const PASSWORD: &str = "drain-pw-91c2";
pub const UUID_A: &str = "cfe2c338-81f4-40d4-bfb2-13f4e5e31fce";
pub const UUID_B: &str = "cfe2c338-81f4-40d4-bfb2-13f4e5e31fcf";

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/dark_knight/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// One octet-counted frame, count including the trailing LF (as Logplex).
pub fn frame(payload: &str) -> String {
    format!("{} {payload}\n", payload.len() + 1)
}

/// Now, as a log timestamp: strictly increasing from call to call, since
/// decisions run on log time and a sample not newer than the last is stale.
pub fn log_now() -> String {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = jiff::Timestamp::now().as_microsecond();
    let prev = LAST.fetch_max(now, Ordering::SeqCst);
    let t = if prev >= now {
        LAST.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        now
    };
    jiff::Timestamp::from_microsecond(t).unwrap().to_string()
}

pub fn sample_payload(dyno: &str, uuid: &str, total: f64, quota: f64) -> String {
    sample_payload_at(dyno, uuid, total, quota, &log_now())
}

/// A sample logged at `at` (RFC 3339).
pub fn sample_at(dyno: &str, uuid: &str, total: f64, quota: f64, at: &str) -> String {
    frame(&sample_payload_at(dyno, uuid, total, quota, at))
}

pub fn sample_payload_at(dyno: &str, uuid: &str, total: f64, quota: f64, at: &str) -> String {
    format!(
        "<134>1 {at} host heroku {dyno} - source={dyno} dyno=heroku.15253441.{uuid} sample#memory_total={total:.2}MB sample#memory_rss={:.2}MB sample#memory_cache=4.55MB sample#memory_swap=0.00MB sample#memory_pgpgin=1651pages sample#memory_pgpgout=165pages sample#memory_quota={quota:.2}MB",
        total - 4.55
    )
}

pub fn sample(dyno: &str, uuid: &str, total: f64, quota: f64) -> String {
    frame(&sample_payload(dyno, uuid, total, quota))
}

pub fn platform(dyno: &str, msg: &str) -> String {
    frame(&format!("<134>1 {} host heroku {dyno} - {msg}", log_now()))
}

pub fn base_env(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("APP_ID_OR_NAME", APP),
        ("AUTH_TOKEN", TOKEN),
        ("DRAIN_PASSWORD", PASSWORD),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub fake: FakeHeroku,
    pub shared: Arc<Shared>,
    pub http: reqwest::Client,
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

pub fn tuning() -> Tuning {
    Tuning {
        restart_retry_base: Duration::from_millis(20),
        notify_retry_base: Duration::from_millis(20),
        sample_flush: Duration::from_millis(50),
        session_backoff_base: Duration::from_millis(50),
        session_backoff_max: Duration::from_millis(200),
        session_idle: Duration::from_secs(2),
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        order_hold: Duration::from_millis(300),
        ..Tuning::default()
    }
}

/// dynoguard configured from dark_knight-style environment variables.
pub async fn spawn_app() -> TestApp {
    spawn_env(&[]).await
}

pub async fn spawn_env(extra: &[(&str, &str)]) -> TestApp {
    let cfg = config::env::from_env(&base_env(extra), Need::App).expect("valid test env");
    spawn_config(cfg).await
}

/// dynoguard with a given config; the store and the API URL are the test's own.
pub async fn spawn_config(cfg: Config) -> TestApp {
    let fake = FakeHeroku::start().await.expect("fake heroku");
    spawn_with(cfg, fake, None).await
}

pub async fn spawn_with(cfg: Config, fake: FakeHeroku, db_url: Option<String>) -> TestApp {
    spawn_tuned(cfg, fake, db_url, tuning()).await
}

/// dynoguard with a given config and machinery knobs.
pub async fn spawn_tuned(
    mut cfg: Config,
    fake: FakeHeroku,
    db_url: Option<String>,
    tuning: Tuning,
) -> TestApp {
    install_crypto();
    // dynoguard's own log lines appear with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("dynoguard=warn")
        .try_init();
    let (dir, db_url) = match db_url {
        Some(u) => (None, u),
        None => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("dynoguard.db").display());
            (Some(dir), url)
        }
    };
    cfg.database_url = SecretString::from(db_url.clone());
    cfg.heroku_api_url = fake.url();
    cfg.server.port = 0;
    let app = App::build(cfg, tuning).await.expect("app builds");
    let addr = app.local_addr();
    let shared = app.shared();
    let (stop, mut rx) = watch::channel(false);
    let handle = tokio::spawn(app.run_until(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    TestApp {
        addr,
        fake,
        shared,
        http: reqwest::Client::new(),
        stop,
        handle,
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_logs(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_to("/logs", body, &[]).await
    }

    /// POSTs a drain body with these basic-auth credentials; the status.
    pub async fn post_as(&self, path: &str, user: &str, password: &str, body: &str) -> u16 {
        let r = self
            .http
            .post(self.url(path))
            .basic_auth(user, Some(password))
            .body(body.to_owned())
            .send()
            .await;
        r.expect("request sent").status().as_u16()
    }

    pub async fn post_to(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut rb = self
            .http
            .post(self.url(path))
            .basic_auth("logplex", Some(PASSWORD))
            .header("Content-Type", "application/logplex-1")
            .body(body);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().await.expect("request sent")
    }

    /// Waits until at least `n` restart calls arrived (or 5 s pass).
    pub async fn wait_for_restarts(&self, n: usize) -> Vec<Recorded> {
        wait_until(|| self.fake.restarts().len() >= n).await;
        self.fake.restarts()
    }

    /// Waits until an event of `kind` is in the store (or [`WAIT`] passes).
    pub async fn wait_for_event(&self, kind: &str) -> Vec<serde_json::Value> {
        // Generous: ~100 tests share two cores in CI.
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            let events = self.events().await;
            if events.iter().any(|e| e["event"] == kind) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let events = self.events().await;
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        let c = &self.shared.counters;
        let dropped = c.events_dropped.load(std::sync::atomic::Ordering::Relaxed);
        let direct = self
            .shared
            .store
            .recent_events(None, 5)
            .await
            .map(|r| r.len());
        panic!(
            "no {kind} event within {WAIT:?}; {} events: {kinds:?}; store health {:?}, events dropped {dropped}, direct read {direct:?}",
            kinds.len(),
            self.shared.store.health().failing()
        );
    }

    /// `GET /api/dynos` with the dashboard password.
    pub async fn dynos(&self) -> serde_json::Value {
        self.get("/api/dynos").await.json().await.expect("JSON")
    }

    /// `GET /metrics` with the dashboard password.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("text")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .basic_auth("x", Some(PASSWORD))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn events(&self) -> Vec<serde_json::Value> {
        self.shared
            .store
            .recent_events(None, 1000)
            .await
            .expect("events readable")
            .into_iter()
            .map(|r| serde_json::from_str(&r.body).expect("event json"))
            .collect()
    }

    /// For asserting that something does *not* happen: gives in-flight work
    /// time to run.
    pub async fn quiesce(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        drop(self.shared);
        self.handle
            .await
            .expect("app task")
            .expect("clean shutdown");
    }
}

pub async fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process killed when dropped, so that a failing test never leaves
/// a `dynoguard serve` running (and CI waiting on it).
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The real `dynoguard serve` binary on a free loopback port with its own
/// temp SQLite and no reachable Platform API (`HEROKU_API_URL` is a closed
/// port). `env` adds the configuration.
pub struct ServeProcess {
    pub port: u16,
    child: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl ServeProcess {
    /// Starts it and waits until `/healthz` answers.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        install_crypto();
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dynoguard"));
        cmd.arg("serve")
            .env_clear()
            .env("PORT", port.to_string())
            .env("HEROKU_API_URL", "http://127.0.0.1:9")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("d.db").display()),
            )
            // Files, not pipes: a chatty run must never block on a full pipe.
            .stdout(std::fs::File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let p = Self {
            port,
            child: KillOnDrop(Some(cmd.spawn().expect("dynoguard starts"))),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if client
                .get(p.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dynoguard did not come up");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.0.as_ref().expect("running").id()
    }

    /// What it printed so far.
    pub fn output(&self) -> (String, String) {
        let read = |n: &str| std::fs::read_to_string(self._dir.path().join(n)).unwrap_or_default();
        (read("stdout"), read("stderr"))
    }

    /// SIGKILL: no chance to clean up (a crash, an OOM kill).
    pub fn kill9(mut self) {
        let mut child = self.child.0.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM and returns the exit status and output once it exited
    /// (30 s at most).
    pub async fn sigterm(mut self) -> std::process::Output {
        let mut child = self.child.0.take().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        for _ in 0..600 {
            if let Some(status) = child.try_wait().expect("waitable") {
                let (stdout, stderr) = self.output();
                return std::process::Output {
                    status,
                    stdout: stdout.into_bytes(),
                    stderr: stderr.into_bytes(),
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child.0 = Some(child);
        panic!("dynoguard did not exit within 30 s of SIGTERM");
    }
}

/// Runs the real binary with `args` and exactly `env` (nothing inherited);
/// returns the exit code and stdout followed by stderr.
pub fn run_dynoguard(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dynoguard"));
    c.env_clear().args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("dynoguard runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A TOML configuration in a temp dir: the guard and the file's path.
pub fn write_toml(toml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("dynoguard.toml");
    std::fs::write(&p, toml).expect("write the file");
    (dir, p.display().to_string())
}

/// How long the helpers wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(15);

/// Polls `f` every 50 ms for up to `secs` seconds.
pub async fn wait_for(mut f: impl FnMut() -> bool, secs: u64) {
    for _ in 0..secs * 20 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `dynoguard replay -` on `input` with exactly `env`; returns the exit
/// code, the JSON events printed and stderr. Stdin is fed from a thread, so
/// a large log cannot deadlock against a full stdout pipe.
pub fn run_replay(input: &[u8], env: &[(&str, &str)]) -> (i32, Vec<serde_json::Value>, String) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut c = Command::new(env!("CARGO_BIN_EXE_dynoguard"));
    c.env_clear()
        .args(["replay", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("dynoguard runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("replay output");
    // A replay that exits early closes stdin: not the test's concern here.
    let _ = writer.join();
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        events,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `promtool check metrics` (skipped without it, unless DYNOGUARD_REQUIRE_TOOLS).
pub fn promtool_check(text: &str) {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    match child {
        Ok(mut child) => {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => {
            assert!(
                std::env::var_os("DYNOGUARD_REQUIRE_TOOLS").is_none(),
                "promtool is required here (DYNOGUARD_REQUIRE_TOOLS) but did not start: {e}"
            );
            eprintln!(
                "SKIPPED: promtool check metrics (install Debian's prometheus to run it): {e}"
            );
        }
    }
}
