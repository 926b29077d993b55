//! Load test: drain bodies over loopback HTTP against a real `dynoguard
//! serve` process (SQLite, the simulated Platform API on a runtime of its
//! own), in one of two modes.
//!
//! **Flood** (the default): `--connections` keep-alive connections post
//! bodies as fast as they are answered, for `--seconds`; reports requests/s,
//! lines/s, p50/p99 latency, the server's peak RSS and its SQLite size.
//! Meanwhile, every `--probe-every-ms` (200), a separate connection posts a
//! decisive sample (memory_total 700 MB over a 512 MB quota) for a dyno not
//! seen before, stamped with the log time of the body the flood sent last,
//! and the time from that POST to the fake API receiving the restart call
//! (`DELETE`) is reported: *decisive sample → restart call under load*.
//! After the load, 50 more such probes on a quiet app (stamped with the wall
//! clock: only the wall-clock order hold, 2 s, releases them).
//! `--advance` does what `benches/drain.lua` does with `DRAIN_ADVANCE=1`:
//! for `gen_drain.py --worst-case` bodies, every pass over the bodies
//! replaces the stamp `2023-02-13T22` (date and hour of every timestamp) by
//! one hour later, so that no repeated sample is stale.
//!
//! **Soak** (`--soak`): `--dynos` (10,000) dynos of one app (web, worker
//! and urgent types) each report a memory sample, a load sample and a few
//! router/app lines every 20 s of log time; log time runs `--speedup` ×
//! faster than the wall clock (default: one hour of log time over the run)
//! and ends at about the wall clock (nothing is stamped in the future).
//! Bodies of about `--frames` (100) frames are generated on the fly, with
//! `Logplex-Msg-Count` and a unique `Logplex-Frame-Id`, over
//! `--connections` (4) connections. Every `--rss-every` (10) s the server's
//! VmRSS and VmHWM are read from `/proc/PID/status`; at the end the curve,
//! the peak, the flatness (RSS at the end against the first third of the
//! run) and the server's own counters (`GET /metrics`) are printed.
//!
//! `--server-wrapper "heaptrack -o /tmp/dg"` starts the server under a
//! wrapper (RSS is then read from the `dynoguard` process below it).
//!
//!     export CARGO_TARGET_DIR=…
//!     cargo build --release --features loadtest --bin dynoguard-loadtest --bin dynoguard
//!     # flood, the mix, with probes under load
//!     python3 benches/gen_drain.py --out /tmp/mix.nul --bodies 500 --frames 100 --dynos 200 --over-frac 0.01
//!     $CARGO_TARGET_DIR/release/dynoguard-loadtest --bodies /tmp/mix.nul --seconds 20 --connections 32
//!     # flood, worst case (as benches/end_to_end.sh `worst`), with probes under load
//!     python3 benches/gen_drain.py --out /tmp/worst.nul --bodies 2000 --frames 100 --worst-case --seed 3
//!     $CARGO_TARGET_DIR/release/dynoguard-loadtest --bodies /tmp/worst.nul --advance --seconds 30 --connections 8
//!     # soak: 10,000 dynos, 10 minutes, one hour of log time
//!     $CARGO_TARGET_DIR/release/dynoguard-loadtest --soak --dynos 10000 --seconds 600
//!     # 2 h of log time (past the hour the per-dyno history fills)
//!     $CARGO_TARGET_DIR/release/dynoguard-loadtest --soak --dynos 10000 --seconds 600 --speedup 12
//!     # under heaptrack (then: heaptrack_print -f /tmp/dg-soak-heap.zst --print-peaks 1 | head -200)
//!     $CARGO_TARGET_DIR/release/dynoguard-loadtest --soak --dynos 10000 --seconds 240 --speedup 15 --server-wrapper "heaptrack -o /tmp/dg-soak-heap"

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use dynoguard::sim::soak::SoakFleet;
use dynoguard::sim::{FakeHeroku, bodies};
use jiff::{SignedDuration, Timestamp};

#[derive(Parser, Debug)]
#[command(
    about = "Drive a real dynoguard process with drain bodies: throughput and decisive-sample latency under load (flood), or RSS over a long steady run (--soak)",
    after_help = "Examples are in the doc comment of src/bin/loadtest.rs and in BENCHMARKS.md."
)]
struct Args {
    /// Soak mode: a steady fleet of --dynos dynos reporting every 20 s of log
    /// time, RSS recorded every --rss-every seconds.
    #[arg(long)]
    soak: bool,
    /// Flood: a gen_drain.py `--format nul` file; without it bodies are generated.
    #[arg(long, conflicts_with = "soak")]
    bodies: Option<PathBuf>,
    /// Flood: bodies from `gen_drain.py --worst-case`; each pass over them
    /// moves every timestamp an hour on (the stamp 2023-02-13T22), as
    /// drain.lua's DRAIN_ADVANCE=1.
    #[arg(long, requires = "bodies")]
    advance: bool,
    /// Flood: a decisive sample for a new dyno every this many ms on its own
    /// connection while the load runs (0: none).
    #[arg(long, default_value_t = 200)]
    probe_every_ms: u64,
    /// How long the load (or the soak) runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Connections posting bodies [default: 32 flood, 4 soak].
    #[arg(long)]
    connections: Option<usize>,
    /// Soak: dynos in the app.
    #[arg(long, default_value_t = 10_000)]
    dynos: usize,
    /// Soak: log time runs this many times faster than the wall clock
    /// [default: one hour of log time over --seconds].
    #[arg(long)]
    speedup: Option<f64>,
    /// Soak: frames per body (a dyno's report is never split, so about).
    #[arg(long, default_value_t = 100)]
    frames: u64,
    /// Soak: seconds between two RSS readings.
    #[arg(long, default_value_t = 10)]
    rss_every: u64,
    /// Soak: seed of the fleet (dyno ids, phases, memory walks).
    #[arg(long, default_value_t = 21)]
    seed: u64,
    /// Start the server under this command, split on whitespace (e.g.
    /// "heaptrack -o /tmp/dg"); RSS is read from the dynoguard process under it.
    #[arg(long)]
    server_wrapper: Option<String>,
    /// The dynoguard binary [default: next to this one].
    #[arg(long)]
    dynoguard: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = Api::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(run(args, &api));
    drop(rt);
    drop(api);
    out
}

async fn run(args: Args, api: &Api) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let exe = match &args.dynoguard {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("dynoguard"),
    };
    let mut server = Server::start(&exe, &api.fake, &dir, args.server_wrapper.as_deref())?;
    let out = if args.soak {
        soak(&args, &server).await
    } else {
        flood(&args, api, &server).await
    };
    server.stop();
    let db_bytes: u64 = ["load.db", "load.db-wal", "load.db-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "SQLite on disk: {:.1} KB;  restart calls: {}",
        db_bytes as f64 / 1024.0,
        api.restarts.total.load(Ordering::Relaxed)
    );
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The fake Platform API on a runtime of its own, so that the load's
/// workers do not delay its answers, and the restart calls it receives,
/// timed as they arrive.
struct Api {
    fake: FakeHeroku,
    restarts: Arc<Restarts>,
    _rt: tokio::runtime::Runtime,
}

/// Restart calls received: all counted, the probes' timed by dyno.
#[derive(Default)]
struct Restarts {
    total: AtomicU64,
    probes: Mutex<HashMap<String, Instant>>,
}

impl Restarts {
    fn probe(&self, dyno: &str) -> Option<Instant> {
        self.probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(dyno)
            .copied()
    }
}

impl Api {
    fn start() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-api")
            .enable_all()
            .build()?;
        let fake = rt.block_on(FakeHeroku::start())?;
        let restarts = Arc::new(Restarts::default());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
        fake.on_restart(tx);
        let r = restarts.clone();
        rt.spawn(async move {
            while let Some((_app, dyno)) = rx.recv().await {
                let now = Instant::now();
                r.total.fetch_add(1, Ordering::Relaxed);
                if dyno.starts_with(PROBE_TYPE) {
                    r.probes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(dyno)
                        .or_insert(now);
                }
            }
        });
        Ok(Self {
            fake,
            restarts,
            _rt: rt,
        })
    }
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmHWM:")
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmRSS:")
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The value at fraction `p` of sorted `v`.
fn pct(v: &[Duration], p: f64) -> Duration {
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

// ---------------------------------------------------------------- flood

async fn flood(args: &Args, api: &Api, server: &Server) -> anyhow::Result<()> {
    let connections = args.connections.unwrap_or(32);
    let flood = Arc::new(Flood::load(args.bodies.as_deref(), args.advance)?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    server.wait_healthy(&client).await;
    let idle_kb = vm_hwm_kb(server.pid).unwrap_or(0);
    let url = server.drain_url();

    let stop = Arc::new(AtomicBool::new(false));
    let probing = (args.probe_every_ms > 0).then(|| {
        let (url, flood, stop) = (url.clone(), flood.clone(), stop.clone());
        let every = Duration::from_millis(args.probe_every_ms);
        tokio::spawn(async move { probe(&url, Some(flood.as_ref()), every, 0, &stop).await })
    });
    let load = drive(&client, &url, &flood, connections, args.seconds, &stop).await?;
    let peak_kb = vm_hwm_kb(server.pid).unwrap_or(0);
    let under_load = match probing {
        Some(p) => Some(p.await??),
        None => None,
    };
    // After the load: 50 probes on a quiet app, 200 ms apart.
    let quiet_stop = AtomicBool::new(false);
    let quiet = tokio::time::timeout(Duration::from_secs(60), async {
        probe(
            &url,
            None,
            Duration::from_millis(200),
            POST_LOAD_PROBES,
            &quiet_stop,
        )
        .await
    })
    .await
    .context("post-load probes")??;
    let metrics = server.metrics(&client).await;

    println!(
        "connections={} seconds={:.1} bodies={} frames/body≈{} advance={}",
        connections,
        load.elapsed,
        flood.bodies.len(),
        flood.frames.iter().sum::<u64>() / flood.frames.len() as u64,
        flood.advance
    );
    load.print();
    if let Some(sent) = under_load {
        print_probes(
            "decisive sample → restart call UNDER LOAD",
            &sent,
            &api.restarts,
        )
        .await;
    }
    print_probes(
        "decisive sample → restart call after the load (quiet app: the wall-clock order hold)",
        &quiet,
        &api.restarts,
    )
    .await;
    println!(
        "dynoguard RSS: {:.1} MB idle, {:.1} MB peak",
        mb(idle_kb),
        mb(peak_kb)
    );
    print_metrics(&metrics);
    Ok(())
}

/// The bodies a flood posts, in order: body `n % len` of pass `n / len`.
struct Flood {
    bodies: Vec<bytes::Bytes>,
    /// Frames in each body: the `Logplex-Msg-Count` Logplex sends.
    frames: Vec<u64>,
    /// With `advance`: where each body has the stamp.
    stamps: Vec<Vec<usize>>,
    /// The log time of each body's first frame.
    first_at: Vec<Option<Timestamp>>,
    advance: bool,
    /// The next body to send.
    next: AtomicU64,
}

/// Date and hour of every timestamp in `gen_drain.py --worst-case` bodies.
const STAMP: &[u8] = b"2023-02-13T22";

impl Flood {
    fn load(file: Option<&Path>, advance: bool) -> anyhow::Result<Self> {
        let raw: Vec<Vec<u8>> = match file {
            Some(p) => bodies::split_nul(
                &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            ),
            None => bodies::generate(500, 100, 200, 3),
        };
        if raw.is_empty() {
            bail!("no bodies");
        }
        let frames = raw
            .iter()
            .map(|b| dynoguard::ingest::logplex::Frames::new(b).count() as u64)
            .collect();
        let first_at = raw
            .iter()
            .map(|b| {
                let frame = dynoguard::ingest::logplex::Frames::new(b).next()?;
                let ts = std::str::from_utf8(frame).ok()?.split(' ').nth(1)?;
                ts.parse::<Timestamp>().ok()
            })
            .collect();
        let stamps: Vec<Vec<usize>> = if advance {
            raw.iter()
                .map(|b| memchr::memmem::find_iter(b, STAMP).collect())
                .collect()
        } else {
            Vec::new()
        };
        if advance && stamps.iter().any(Vec::is_empty) {
            bail!(
                "--advance: a body without the stamp {} (use gen_drain.py --worst-case)",
                String::from_utf8_lossy(STAMP)
            );
        }
        Ok(Self {
            bodies: raw.into_iter().map(bytes::Bytes::from).collect(),
            frames,
            stamps,
            first_at,
            advance,
            next: AtomicU64::new(0),
        })
    }

    /// Body `n`: the `k`-th, with its stamp moved on by `pass` hours.
    fn body(&self, n: u64) -> (bytes::Bytes, u64) {
        let len = self.bodies.len() as u64;
        let k = (n % len) as usize;
        if !self.advance {
            return (self.bodies[k].clone(), self.frames[k]);
        }
        let stamp = (base() + SignedDuration::from_hours((n / len) as i64))
            .strftime("%Y-%m-%dT%H")
            .to_string();
        let mut b = self.bodies[k].to_vec();
        for &at in &self.stamps[k] {
            b[at..at + STAMP.len()].copy_from_slice(stamp.as_bytes());
        }
        (bytes::Bytes::from(b), self.frames[k])
    }

    /// The log time of the first frame of the body sent last: where the
    /// flood's log clock is.
    fn log_time(&self) -> Option<Timestamp> {
        let n = self.next.load(Ordering::Relaxed).checked_sub(1)?;
        let len = self.bodies.len() as u64;
        let at = self.first_at[(n % len) as usize]?;
        Some(if self.advance {
            at + SignedDuration::from_hours((n / len) as i64)
        } else {
            at
        })
    }
}

/// 2023-02-13T22:00:00Z, the hour [`STAMP`] names.
fn base() -> Timestamp {
    Timestamp::from_second(1_676_325_600).unwrap_or(Timestamp::UNIX_EPOCH)
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
        println!(
            "requests: {} ok, {} failed  →  {:.0} req/s, {:.0} lines/s",
            self.ok,
            self.failed,
            self.ok as f64 / self.elapsed,
            self.lines as f64 / self.elapsed
        );
        println!(
            "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(pct(lat, 0.50)),
            ms(pct(lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default())
        );
    }
}

/// Counts shared by the workers.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    lines: AtomicU64,
    samples: AtomicU64,
}

/// `connections` workers post the flood's bodies as fast as they are
/// answered, for `seconds`; then `stop` is set.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    flood: &Arc<Flood>,
    connections: usize,
    seconds: u64,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Load> {
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url, stop, counts, flood) = (
                client.clone(),
                url.to_owned(),
                stop.clone(),
                counts.clone(),
                flood.clone(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let n = flood.next.fetch_add(1, Ordering::Relaxed);
                    let (body, frames) = flood.body(n);
                    let t = Instant::now();
                    let ok = post(&client, &url, body, frames).await;
                    lat.push(t.elapsed());
                    counts.record(ok, frames, 0);
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
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

impl Counts {
    fn record(&self, ok: bool, frames: u64, samples: u64) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
            self.lines.fetch_add(frames, Ordering::Relaxed);
            self.samples.fetch_add(samples, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Frame ids unique to the run.
static FRAME_ID: AtomicU64 = AtomicU64::new(1);

/// One body, posted as Logplex does (frame count, a unique frame id):
/// answered 204?
async fn post(client: &reqwest::Client, url: &str, body: bytes::Bytes, frames: u64) -> bool {
    let id = FRAME_ID.fetch_add(1, Ordering::Relaxed);
    client
        .post(url)
        .basic_auth("logplex", Some(DRAIN_PASSWORD))
        .header("Content-Type", "application/logplex-1")
        .header("Logplex-Msg-Count", frames.to_string())
        .header(
            "Logplex-Frame-Id",
            format!("{:016X}{id:016X}", std::process::id()),
        )
        .header(
            "Logplex-Drain-Token",
            "d.00000000-0000-0000-0000-000000000000",
        )
        .body(body)
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == 204)
}

/// The process type of probe dynos (each probe its own type, `probe123`,
/// so that `max_parallel` never defers one).
const PROBE_TYPE: &str = "probe";
const POST_LOAD_PROBES: usize = 50;

/// One probe posted: its dyno, when the POST was sent and when answered.
struct Sent {
    dyno: String,
    sent: Instant,
    answered: Instant,
    ok: bool,
}

static PROBE_N: AtomicU64 = AtomicU64::new(100_000);

/// Posts a decisive sample (700 MB of a 512 MB quota) for a new dyno every
/// `every`, on a connection of its own, until `stop` (or `count` probes,
/// if not 0). Stamped with the flood's log clock, else the wall clock.
async fn probe(
    url: &str,
    flood: Option<&Flood>,
    every: Duration,
    count: usize,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<Sent>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) && (count == 0 || out.len() < count) {
        tick.tick().await;
        let n = PROBE_N.fetch_add(1, Ordering::Relaxed);
        let at = flood
            .and_then(Flood::log_time)
            .unwrap_or_else(Timestamp::now);
        let dyno = format!("{PROBE_TYPE}{n}.1");
        let payload = format!(
            "<134>1 {} host heroku {dyno} - source={dyno} dyno=heroku.4242.{n:08}-0000-4000-a000-000000000000 sample#memory_total=700.00MB sample#memory_rss=690.00MB sample#memory_cache=10.00MB sample#memory_swap=0.00MB sample#memory_pgpgin=1651pages sample#memory_pgpgout=165pages sample#memory_quota=512.00MB",
            at.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        );
        let body = format!("{} {payload}\n", payload.len() + 1);
        let sent = Instant::now();
        let ok = post(&client, url, bytes::Bytes::from(body), 1).await;
        out.push(Sent {
            dyno,
            sent,
            answered: Instant::now(),
            ok,
        });
    }
    Ok(out)
}

/// Waits up to 10 s for the probes' restart calls, then prints the
/// latencies from the POST's send and from its answer.
async fn print_probes(what: &str, sent: &[Sent], restarts: &Restarts) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && sent.iter().any(|s| restarts.probe(&s.dyno).is_none()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut from_send = Vec::new();
    let mut from_answer = Vec::new();
    for s in sent {
        if let Some(at) = restarts.probe(&s.dyno) {
            from_send.push(at.saturating_duration_since(s.sent));
            from_answer.push(at.saturating_duration_since(s.answered));
        }
    }
    from_send.sort();
    from_answer.sort();
    let failed = sent.iter().filter(|s| !s.ok).count();
    println!(
        "{what}: {} probes ({} not answered 204), {} restarted within 10 s",
        sent.len(),
        failed,
        from_send.len()
    );
    for (label, v) in [("from send", &from_send), ("from 204", &from_answer)] {
        println!(
            "    {label}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(pct(v, 0.50)),
            ms(pct(v, 0.99)),
            ms(v.last().copied().unwrap_or_default())
        );
    }
}

// ---------------------------------------------------------------- soak

/// One RSS reading.
struct Point {
    wall: f64,
    /// Log time reached, from the start of the soak's log time.
    log: SignedDuration,
    rss_kb: u64,
    hwm_kb: u64,
    samples: u64,
}

async fn soak(args: &Args, server: &Server) -> anyhow::Result<()> {
    let connections = args.connections.unwrap_or(4).max(1);
    let seconds = args.seconds.max(1);
    let speedup = args.speedup.unwrap_or(3600.0 / seconds as f64);
    if !(speedup.is_finite() && speedup > 0.0) {
        bail!("--speedup must be positive");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    server.wait_healthy(&client).await;
    let url = server.drain_url();

    // Log time ends a minute behind the wall clock: nothing is clamped.
    let wall0 = Timestamp::now();
    let lead = SignedDuration::try_from_secs_f64((speedup - 1.0).max(0.0) * seconds as f64 + 60.0)
        .context("--speedup")?;
    let log0 = wall0 - lead;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    // Log time reached, in ms after log0.
    let reached = Arc::new(AtomicI64::new(0));

    let (tx, rx) = tokio::sync::mpsc::channel::<(bytes::Bytes, u64, u64)>(connections * 2);
    let producer = spawn_soak_producer(args, log0, speedup, started, reached.clone(), tx);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url, counts, rx) =
                (client.clone(), url.clone(), counts.clone(), rx.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some((body, frames, samples)) = next else {
                        break;
                    };
                    let t = Instant::now();
                    let ok = post(&client, &url, body, frames).await;
                    lat.push(t.elapsed());
                    counts.record(ok, frames, samples);
                }
                lat
            })
        })
        .collect();
    let sampler = spawn_rss_sampler(
        server.pid,
        Duration::from_secs(args.rss_every.max(1)),
        started,
        stop.clone(),
        counts.clone(),
        reached.clone(),
    );
    producer.await?;
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let points = sampler.await?;
    latencies.sort();
    let metrics = server.metrics(&client).await;

    report_soak(
        args,
        (elapsed, speedup, log0, connections),
        &reached,
        &counts,
        &latencies,
        &points,
    );
    print_metrics(&metrics);
    Ok(())
}

/// Generates the fleet's lines on the log clock (`speedup` × the wall
/// clock from `started`) into bodies of `args.frames` frames (or whatever a
/// second gathered), sent with their frame and memory-sample counts;
/// `reached` follows the log time generated, in ms after `log0`.
fn spawn_soak_producer(
    args: &Args,
    log0: Timestamp,
    speedup: f64,
    started: Instant,
    reached: Arc<AtomicI64>,
    tx: tokio::sync::mpsc::Sender<(bytes::Bytes, u64, u64)>,
) -> tokio::task::JoinHandle<()> {
    let run_for = Duration::from_secs(args.seconds.max(1));
    let (dynos, frames, seed) = (args.dynos, args.frames, args.seed);
    tokio::spawn(async move {
        let mut fleet = SoakFleet::new(dynos, log0, seed);
        let mut body = String::with_capacity(frames as usize * 300);
        let (mut in_body, mut samples) = (0, 0);
        let mut body_started = Instant::now();
        while started.elapsed() < run_for {
            let log_elapsed = started.elapsed().as_secs_f64() * speedup;
            let until = log0 + SignedDuration::try_from_secs_f64(log_elapsed).unwrap_or_default();
            let f = fleet.fill(until, frames - in_body.min(frames), &mut body);
            in_body += f.frames;
            samples += f.memory_samples;
            reached.store(
                fleet.next_at().duration_since(log0).as_millis() as i64,
                Ordering::Relaxed,
            );
            let full = in_body >= frames;
            if full || (in_body > 0 && body_started.elapsed() > Duration::from_secs(1)) {
                let b = std::mem::replace(&mut body, String::with_capacity(frames as usize * 300));
                if tx
                    .send((bytes::Bytes::from(b), in_body, samples))
                    .await
                    .is_err()
                {
                    break;
                }
                (in_body, samples) = (0, 0);
                body_started = Instant::now();
            }
            if !full {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
}

/// Reads the server's RSS every `every` (printing each point) until `stop`.
fn spawn_rss_sampler(
    pid: u32,
    every: Duration,
    started: Instant,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    reached: Arc<AtomicI64>,
) -> tokio::task::JoinHandle<Vec<Point>> {
    tokio::spawn(async move {
        let mut points = Vec::new();
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let p = Point {
                wall: started.elapsed().as_secs_f64(),
                log: SignedDuration::from_millis(reached.load(Ordering::Relaxed)),
                rss_kb: vm_rss_kb(pid).unwrap_or(0),
                hwm_kb: vm_hwm_kb(pid).unwrap_or(0),
                samples: counts.samples.load(Ordering::Relaxed),
            };
            eprintln!(
                "soak: {:6.0} s  log +{}  RSS {:6.1} MB  HWM {:6.1} MB  samples {}",
                p.wall,
                hms(p.log),
                mb(p.rss_kb),
                mb(p.hwm_kb),
                p.samples
            );
            points.push(p);
            if stop.load(Ordering::Relaxed) {
                return points;
            }
        }
    })
}

/// Prints the soak's figures: what was posted, request latency, the RSS
/// curve, the peak and the flatness (end against the first third).
fn report_soak(
    args: &Args,
    run: (f64, f64, Timestamp, usize),
    reached: &AtomicI64,
    counts: &Counts,
    latencies: &[Duration],
    points: &[Point],
) {
    let (elapsed, speedup, log0, connections) = run;
    let ok = counts.ok.load(Ordering::Relaxed);
    println!(
        "soak: {} dynos, {:.0} s, speedup {:.2} (log time {} → {} of {}), {} connections, ≈{} frames/body",
        args.dynos,
        elapsed,
        speedup,
        log0.strftime("%H:%M:%S"),
        hms(SignedDuration::from_millis(reached.load(Ordering::Relaxed))),
        hms(SignedDuration::try_from_secs_f64(elapsed * speedup).unwrap_or_default()),
        connections,
        args.frames
    );
    println!(
        "posted: {} bodies ok, {} failed, {} lines, {} memory samples ({:.0} lines/s)",
        ok,
        counts.failed.load(Ordering::Relaxed),
        counts.lines.load(Ordering::Relaxed),
        counts.samples.load(Ordering::Relaxed),
        counts.lines.load(Ordering::Relaxed) as f64 / elapsed
    );
    println!(
        "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(latencies, 0.5)),
        ms(pct(latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!("curve (wall s, log time reached, RSS MB, HWM MB, memory samples posted):");
    for p in points {
        println!(
            "  {:6.0}  +{}  {:7.1}  {:7.1}  {:>10}",
            p.wall,
            hms(p.log),
            mb(p.rss_kb),
            mb(p.hwm_kb),
            p.samples
        );
    }
    let peak = points.iter().map(|p| p.hwm_kb).max().unwrap_or(0);
    let third = elapsed / 3.0;
    let at_third = points
        .iter()
        .min_by(|a, b| (a.wall - third).abs().total_cmp(&(b.wall - third).abs()));
    if let (Some(a), Some(z)) = (at_third, points.last()) {
        let minutes = ((z.wall - a.wall) / 60.0).max(1e-9);
        println!(
            "peak RSS (VmHWM) {:.1} MB;  flatness: RSS {:.1} MB at {:.0} s (first third) → {:.1} MB at {:.0} s (end): {:+.1} MB ({:+.1} %, {:+.2} MB/min)",
            mb(peak),
            mb(a.rss_kb),
            a.wall,
            mb(z.rss_kb),
            z.wall,
            mb(z.rss_kb) - mb(a.rss_kb),
            (z.rss_kb as f64 / (a.rss_kb.max(1)) as f64 - 1.0) * 100.0,
            (mb(z.rss_kb) - mb(a.rss_kb)) / minutes
        );
    }
}

/// `1:02:03`.
fn hms(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

// ---------------------------------------------------------------- server

const DRAIN_PASSWORD: &str = "load-pw";
const DASHBOARD_PASSWORD: &str = "load-dash";

/// The `dynoguard serve` process under load: configured through its
/// environment as on Heroku, against the fake API, with SQLite in `dir`.
struct Server {
    child: std::process::Child,
    /// The dynoguard process (under the wrapper, if any).
    pid: u32,
    port: u16,
}

impl Server {
    fn start(
        exe: &Path,
        fake: &FakeHeroku,
        dir: &Path,
        wrapper: Option<&str>,
    ) -> anyhow::Result<Self> {
        let db = dir.join("load.db");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let wrapper: Vec<&str> = wrapper
            .map(|w| w.split_whitespace().collect())
            .unwrap_or_default();
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let child = cmd
            .arg("serve")
            .env("APP_ID_OR_NAME", "load")
            .env("AUTH_TOKEN", "load-token")
            .env("DRAIN_PASSWORD", DRAIN_PASSWORD)
            .env("DASHBOARD_PASSWORD", DASHBOARD_PASSWORD)
            .env("DYNO_TYPES", "*")
            .env("PORT", port.to_string())
            .env("HEROKU_API_URL", fake.url())
            .env("DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut pid = child.id();
        if !wrapper.is_empty() {
            let name = exe
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("dynoguard");
            pid = (0..200)
                .find_map(|_| {
                    let found = descendant_named(pid, name);
                    if found.is_none() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    found
                })
                .with_context(|| format!("no {name} process under the wrapper"))?;
            eprintln!("server under the wrapper: pid {pid}");
        }
        Ok(Self { child, pid, port })
    }

    fn drain_url(&self) -> String {
        format!("http://127.0.0.1:{}/logs", self.port)
    }

    /// Until `/healthz` answers, for at most about 30 s (a wrapper may be
    /// slow to start): a server that never does shows up as failed requests.
    async fn wait_healthy(&self, client: &reqwest::Client) {
        for _ in 0..600 {
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

    /// `GET /metrics` (empty if it fails).
    async fn metrics(&self, client: &reqwest::Client) -> String {
        let r = client
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .basic_auth("load", Some(DASHBOARD_PASSWORD))
            .send()
            .await;
        match r {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// SIGTERM, as Heroku stops a dyno, so that it flushes and closes SQLite
    /// before the database is measured (and a wrapper writes its output).
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A process below `root` whose command name is `name`.
fn descendant_named(root: u32, name: &str) -> Option<u32> {
    let mut parent = HashMap::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
        let ppid = tail.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent.insert(pid, (ppid, comm.to_owned()));
        }
    }
    let under_root = |mut p: u32| {
        for _ in 0..16 {
            match parent.get(&p) {
                Some((pp, _)) if *pp == root => return true,
                Some((pp, _)) => p = *pp,
                None => return false,
            }
        }
        false
    };
    parent
        .iter()
        .filter(|(_, (_, comm))| comm.as_str() == name)
        .map(|(pid, _)| *pid)
        .find(|pid| under_root(*pid))
}

/// The server's counters worth reading beside the load's own.
const METRICS: [&str; 10] = [
    "dynoguard_drain_requests_total",
    "dynoguard_frames_total",
    "dynoguard_observations_total",
    "dynoguard_msg_count_mismatch_total",
    "dynoguard_duplicate_batches_total",
    "dynoguard_lines_stale_total",
    "dynoguard_timestamps_clamped_total",
    "dynoguard_frames_rejected_total",
    "dynoguard_events_dropped_total",
    "dynoguard_observations_queued",
];

fn print_metrics(text: &str) {
    if text.is_empty() {
        println!("server counters: GET /metrics failed");
        return;
    }
    let found: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(name, _)| METRICS.contains(name))
        .map(|(name, v)| format!("{}={v}", name.trim_start_matches("dynoguard_")))
        .collect();
    println!("server counters: {}", found.join(" "));
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "dynoguard-load-{}-{:x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
