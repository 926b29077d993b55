//! Load test: realistic drain bodies over loopback HTTP against a real
//! `dynoguard serve` process (SQLite, the simulated Platform API), reporting
//! requests/s, lines/s, p50/p99 latency, the server's peak RSS and the size of
//! its SQLite database.
//!
//!     cargo build --release
//!     python3 ../shared/tools/gen_drain.py --out /tmp/bodies.nul --bodies 500 --frames 100 --dynos 200 --over-frac 0.01
//!     cargo build --release --features loadtest --bin dynoguard-loadtest
//!     target/release/dynoguard-loadtest --bodies /tmp/bodies.nul --seconds 20 --connections 32

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use dynoguard::sim::{FakeHeroku, bodies};

#[derive(Parser, Debug)]
#[command(about = "Drive a real dynoguard process with drain bodies and report throughput")]
struct Args {
    /// gen_drain.py `--format nul` file; without it bodies are generated.
    #[arg(long)]
    bodies: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The dynoguard binary [default: next to this one].
    #[arg(long)]
    dynoguard: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (bodies, frames) = load_bodies(args.bodies.as_deref())?;
    let fake = FakeHeroku::start().await?;
    let dir = tempfile_dir()?;
    let exe = match &args.dynoguard {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("dynoguard"),
    };
    let mut server = Server::start(&exe, &fake, &dir)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()?;
    server.wait_healthy(&client).await;
    let idle_kb = vm_hwm_kb(server.pid).unwrap_or(0);

    let url = server.drain_url();
    let (bodies, frames) = (Arc::new(bodies), Arc::new(frames));
    let seconds = Duration::from_secs(args.seconds);
    let load = drive(&client, &url, &bodies, &frames, args.connections, seconds).await?;
    let peak_kb = vm_hwm_kb(server.pid).unwrap_or(0);
    let decide = decisive_latencies(&fake, &client, &url).await;
    server.stop();
    let db_bytes: u64 = ["load.db", "load.db-wal", "load.db-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();

    println!(
        "connections={} seconds={:.1} bodies={} frames/body≈{}",
        args.connections,
        load.elapsed,
        bodies.len(),
        frames.iter().sum::<u64>() / frames.len() as u64
    );
    load.print();
    println!(
        "decisive sample → restart call (50 new dynos): p50 {:.2} ms, max {:.2} ms",
        decide[decide.len() / 2].as_secs_f64() * 1e3,
        decide.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "dynoguard RSS: {:.1} MB idle, {:.1} MB peak;  SQLite on disk: {:.1} KB;  restart calls: {}",
        idle_kb as f64 / 1024.0,
        peak_kb as f64 / 1024.0,
        db_bytes as f64 / 1024.0,
        fake.restarts().len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The drain bodies (from a gen_drain.py file, or generated) and the number
/// of frames in each — the `Logplex-Msg-Count` Logplex sends with a body.
fn load_bodies(file: Option<&Path>) -> anyhow::Result<(Vec<bytes::Bytes>, Vec<u64>)> {
    let bodies: Vec<bytes::Bytes> = match file {
        Some(p) => bodies::split_nul(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => bodies::generate(500, 100, 200, 3),
    }
    .into_iter()
    .map(bytes::Bytes::from)
    .collect();
    if bodies.is_empty() {
        bail!("no bodies");
    }
    let frames = bodies
        .iter()
        .map(|b| dynoguard::ingest::logplex::Frames::new(b).count() as u64)
        .collect();
    Ok((bodies, frames))
}

/// The `dynoguard serve` process under load: configured through its
/// environment as on Heroku, against the fake API, with SQLite in `dir`.
struct Server {
    child: std::process::Child,
    pid: u32,
    port: u16,
}

impl Server {
    fn start(exe: &Path, fake: &FakeHeroku, dir: &Path) -> anyhow::Result<Self> {
        let db = dir.join("load.db");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(exe)
            .arg("serve")
            .env("APP_ID_OR_NAME", "load")
            .env("AUTH_TOKEN", "load-token")
            .env("DRAIN_PASSWORD", "load-pw")
            .env("DYNO_TYPES", "*")
            .env("PORT", port.to_string())
            .env("HEROKU_API_URL", fake.url())
            .env("DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let pid = child.id();
        Ok(Self { child, pid, port })
    }

    fn drain_url(&self) -> String {
        format!("http://127.0.0.1:{}/logs", self.port)
    }

    /// Until `/healthz` answers, for at most about 5 s: a server that never
    /// does shows up as failed requests in the report.
    async fn wait_healthy(&self, client: &reqwest::Client) {
        for _ in 0..100 {
            if client
                .get(format!("http://127.0.0.1:{}/healthz", self.port))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as Heroku stops a dyno, so that it flushes and closes SQLite
    /// before the database is measured.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// What the load phase measured.
struct Load {
    /// Every request's latency, sorted.
    latencies: Vec<Duration>,
    elapsed: f64,
    ok: u64,
    failed: u64,
    lines: u64,
}

impl Load {
    fn print(&self) {
        let lat = &self.latencies;
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "requests: {} ok, {} failed  →  {:.0} req/s, {:.0} lines/s",
            self.ok,
            self.failed,
            self.ok as f64 / self.elapsed,
            self.lines as f64 / self.elapsed
        );
        println!(
            "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
}

/// Counts shared by the workers.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    lines: AtomicU64,
}

/// `connections` workers post bodies as fast as they are answered, for
/// `seconds`.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    bodies: &Arc<Vec<bytes::Bytes>>,
    frames: &Arc<Vec<u64>>,
    connections: usize,
    seconds: Duration,
) -> anyhow::Result<Load> {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|w| {
            let (client, url, stop, counts, bodies, frames) = (
                client.clone(),
                url.to_owned(),
                stop.clone(),
                counts.clone(),
                bodies.clone(),
                frames.clone(),
            );
            tokio::spawn(async move {
                post_until(w, &client, &url, &stop, &counts, &bodies, &frames).await
            })
        })
        .collect();
    tokio::time::sleep(seconds).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    Ok(Load {
        latencies,
        elapsed,
        ok: counts.ok.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
        lines: counts.lines.load(Ordering::Relaxed),
    })
}

/// One worker: posts bodies as Logplex does (frame count, frame id) until
/// `stop`, starting at body `w` and striding, and returns its latencies. A
/// body counts its lines only when answered 204.
async fn post_until(
    w: usize,
    client: &reqwest::Client,
    url: &str,
    stop: &AtomicBool,
    counts: &Counts,
    bodies: &[bytes::Bytes],
    frames: &[u64],
) -> Vec<Duration> {
    let mut lat = Vec::new();
    let mut i = w;
    while !stop.load(Ordering::Relaxed) {
        let k = i % bodies.len();
        i += STRIDE;
        let t = Instant::now();
        let r = client
            .post(url)
            .basic_auth("logplex", Some("load-pw"))
            .header("Content-Type", "application/logplex-1")
            .header("Logplex-Msg-Count", frames[k].to_string())
            .header("Logplex-Frame-Id", format!("{:032X}", fastrand::u128(..)))
            .body(bodies[k].clone())
            .send()
            .await;
        lat.push(t.elapsed());
        match r {
            Ok(r) if r.status().as_u16() == 204 => {
                counts.ok.fetch_add(1, Ordering::Relaxed);
                counts.lines.fetch_add(frames[k], Ordering::Relaxed);
            }
            _ => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    lat
}

/// Decisive sample → restart call: POST one over-quota sample for a dyno
/// not seen before and time until the fake API has the DELETE (at most 2 s
/// each). Each probe is its own process type, so `max_parallel` never
/// defers it. Sorted.
async fn decisive_latencies(
    fake: &FakeHeroku,
    client: &reqwest::Client,
    url: &str,
) -> Vec<Duration> {
    let mut decide = Vec::new();
    for i in 0..50 {
        let before = fake.restarts().len();
        let payload = format!(
            "<134>1 2024-01-01T00:00:00.000000+00:00 host heroku probe{n}.1 - source=probe{n}.1 dyno=heroku.1.{n:08}-0000-0000-0000-000000000000 sample#memory_total=700.00MB sample#memory_quota=512.00MB",
            n = 100_000 + i
        );
        let body = format!("{} {payload}\n", payload.len() + 1);
        let t = Instant::now();
        let _ = client
            .post(url)
            .basic_auth("logplex", Some("load-pw"))
            .body(body)
            .send()
            .await;
        while fake.restarts().len() == before && t.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        decide.push(t.elapsed());
    }
    decide.sort();
    decide
}

/// Workers step through the bodies with a stride so that they send different ones.
const STRIDE: usize = 7;

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "dynoguard-load-{}-{:x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
