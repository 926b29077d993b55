//! Simulated dynos: each has a process name, an instance UUID, a quota and a
//! memory curve, and logs what Heroku logs — runtime-metrics samples every
//! 20 simulated seconds, R14 above quota, R15 and a kill at the hard limit,
//! the restart sequence with a new UUID when the API restarts it — plus
//! router and app noise in realistic proportion. Lines go to dynoguard as
//! real drain bodies, or to the fake API's live log sessions.
//!
//! A shadow copy of every dyno runs the same curve with no one restarting
//! it: the demo's "without dynoguard" column.

use std::fmt::Write as _;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::{mpsc, watch};

use super::api::FakeHeroku;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// 35–50 % of quota, flat with noise.
    Steady,
    /// +1.5 % of quota per simulated minute (quota reached in ~40 min).
    SlowLeak,
    /// +4 % of quota per simulated minute (quota reached in ~15 min).
    FastLeak,
    /// Around 45 %, with short spikes to ~85 %.
    Spiky,
}

impl Curve {
    pub fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::SlowLeak => "slow leak",
            Self::FastLeak => "fast leak",
            Self::Spiky => "spiky",
        }
    }

    /// Growth in fractions of quota per simulated second.
    fn leak_per_sec(self) -> f64 {
        match self {
            Self::SlowLeak => 0.015 / 60.0,
            Self::FastLeak => 0.04 / 60.0,
            Self::Steady | Self::Spiky => 0.0,
        }
    }

    /// A mix for `n` dynos: leaks and steady ones alternate.
    pub fn mix(n: usize) -> Vec<Curve> {
        const CYCLE: [Curve; 6] = [
            Curve::FastLeak,
            Curve::Steady,
            Curve::SlowLeak,
            Curve::Spiky,
            Curve::Steady,
            Curve::FastLeak,
        ];
        (0..n).map(|i| CYCLE[i % CYCLE.len()]).collect()
    }
}

#[derive(Debug, Clone)]
pub struct DynoSpec {
    pub name: String,
    pub curve: Curve,
    pub quota_mb: f64,
}

/// Where the fleet's logs go.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// POST drain bodies to `url` (e.g. `http://127.0.0.1:PORT/logs`).
    Drain {
        url: String,
        password: String,
        drain_token: Option<String>,
    },
    /// Publish platform lines to the fake API's tail sessions.
    Session,
}

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub app: String,
    pub dynos: Vec<DynoSpec>,
    /// Simulated seconds per real second.
    pub speed: f64,
    pub sample_every: SignedDuration,
    pub boot: SignedDuration,
    /// Router lines per dyno per sample interval (app output is half that).
    pub router_lines: usize,
    pub delivery: Delivery,
    pub seed: u64,
    /// Where the simulated clock starts. dynoguard decides on log time and
    /// judges a line stamped over a minute ahead at its arrival, so a clock
    /// running `speed` times faster than the wall clock must start far
    /// enough in the past. Default: a day ago (24 minutes at 60×).
    pub start: Timestamp,
}

impl FleetOptions {
    pub fn new(app: &str, dynos: Vec<DynoSpec>, delivery: Delivery) -> Self {
        Self {
            app: app.to_owned(),
            dynos,
            speed: 60.0,
            sample_every: SignedDuration::from_secs(20),
            boot: SignedDuration::from_secs(15),
            router_lines: 20,
            delivery,
            seed: 42,
            start: Timestamp::now() - SignedDuration::from_hours(24),
        }
    }
}

/// Per-dyno outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct DynoReport {
    pub name: String,
    pub curve: Option<Curve>,
    pub api_restarts: u32,
    pub r15_kills: u32,
    pub over_quota_secs: f64,
    pub peak_mb: f64,
    pub shadow_r15_kills: u32,
    pub shadow_over_quota_secs: f64,
    pub shadow_peak_mb: f64,
    /// Simulated seconds from start to the first API restart.
    pub first_restart_at: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct FleetReport {
    pub simulated_secs: f64,
    pub samples_sent: u64,
    pub lines_sent: u64,
    pub posts_failed: u64,
    pub dynos: Vec<DynoReport>,
}

#[derive(Debug, Clone)]
struct SimDyno {
    spec: DynoSpec,
    uuid: String,
    mem: f64,
    base: f64,
    up_at: Option<Timestamp>,
    kills: u32,
    over_secs: f64,
    peak: f64,
}

impl SimDyno {
    fn new(spec: DynoSpec, rng: &mut fastrand::Rng) -> Self {
        let base = spec.quota_mb * (0.35 + rng.f64() * 0.1);
        Self {
            uuid: uuid(rng),
            mem: base,
            base,
            spec,
            up_at: None,
            kills: 0,
            over_secs: 0.0,
            peak: 0.0,
        }
    }

    fn booting(&self, now: Timestamp) -> bool {
        self.up_at.is_some_and(|t| now < t)
    }

    /// Advances memory by `dt` seconds; returns the platform lines logged.
    fn step(
        &mut self,
        now: Timestamp,
        dt: f64,
        boot: SignedDuration,
        rng: &mut fastrand::Rng,
        out: &mut Vec<Line>,
    ) -> bool {
        let name = self.spec.name.clone();
        if let Some(up) = self.up_at {
            if now < up {
                return false;
            }
            self.up_at = None;
            out.push(Line::heroku(
                &name,
                now,
                "State changed from starting to up".into(),
            ));
        }
        let q = self.spec.quota_mb;
        self.mem = match self.spec.curve {
            Curve::Steady => self.base * (0.97 + rng.f64() * 0.06),
            Curve::Spiky => {
                if rng.f64() < 0.12 {
                    q * (0.8 + rng.f64() * 0.08)
                } else {
                    self.base * (0.95 + rng.f64() * 0.1)
                }
            }
            c => self.mem + q * c.leak_per_sec() * dt * (0.8 + rng.f64() * 0.4),
        };
        self.peak = self.peak.max(self.mem);
        if self.mem > q {
            self.over_secs += dt;
        }
        let swap = (self.mem - q).max(0.0) * 0.9;
        let cache = self.mem * 0.02;
        let rss = self.mem - swap - cache;
        out.push(Line::heroku(
            &name,
            now,
            format!(
                "source={name} dyno=heroku.4242.{} sample#memory_total={:.2}MB sample#memory_rss={rss:.2}MB sample#memory_cache={cache:.2}MB sample#memory_swap={swap:.2}MB sample#memory_pgpgin={}pages sample#memory_pgpgout={}pages sample#memory_quota={q:.2}MB",
                self.uuid,
                self.mem,
                rng.u32(10_000..90_000),
                rng.u32(5_000..40_000)
            ),
        ));
        out.push(Line::heroku(&name, now, format!("source={name} dyno=heroku.4242.{} sample#load_avg_1m={:.2} sample#load_avg_5m={:.2} sample#load_avg_15m={:.2}", self.uuid, rng.f64(), rng.f64(), rng.f64())));
        if self.mem > q {
            let pct = self.mem / q * 100.0;
            out.push(Line::heroku(
                &name,
                now,
                format!("Process running mem={}M({pct:.1}%)", self.mem as u64),
            ));
            if self.mem >= 2.0 * q {
                out.push(Line::heroku(
                    &name,
                    now,
                    "Error R15 (Memory quota vastly exceeded)".into(),
                ));
                out.push(Line::heroku(
                    &name,
                    now,
                    "Stopping process with SIGKILL".into(),
                ));
                out.push(Line::heroku(
                    &name,
                    now,
                    "Process exited with status 137".into(),
                ));
                out.push(Line::heroku(
                    &name,
                    now,
                    "State changed from up to crashed".into(),
                ));
                self.kills += 1;
                self.replace(now, boot, rng);
                out.push(Line::heroku(
                    &name,
                    now,
                    "State changed from crashed to starting".into(),
                ));
            } else {
                out.push(Line::heroku(
                    &name,
                    now,
                    "Error R14 (Memory quota exceeded)".into(),
                ));
            }
        }
        true
    }

    /// A new instance: new UUID, memory back to its base after boot.
    fn replace(&mut self, now: Timestamp, boot: SignedDuration, rng: &mut fastrand::Rng) {
        self.uuid = uuid(rng);
        self.mem = self.base;
        self.up_at = Some(now + boot);
    }

    fn restart(
        &mut self,
        now: Timestamp,
        boot: SignedDuration,
        rng: &mut fastrand::Rng,
        out: &mut Vec<Line>,
    ) {
        let name = self.spec.name.clone();
        out.push(Line::heroku(&name, now, "Restarting".into()));
        out.push(Line::heroku(
            &name,
            now,
            "State changed from up to starting".into(),
        ));
        out.push(Line::heroku(
            &name,
            now,
            "Stopping all processes with SIGTERM".into(),
        ));
        out.push(Line::heroku(
            &name,
            now,
            "Process exited with status 143".into(),
        ));
        self.replace(now, boot, rng);
    }
}

fn uuid(rng: &mut fastrand::Rng) -> String {
    let mut s = String::with_capacity(36);
    for (i, n) in [8, 4, 4, 4, 12].iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        for _ in 0..*n {
            let _ = write!(s, "{:x}", rng.u8(0..16));
        }
    }
    s
}

/// One log line before framing.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Timestamp,
    /// `heroku` or `app`.
    pub source: &'static str,
    pub procid: String,
    pub msg: String,
}

/// Sample intervals between two simulated releases (90 minutes of 20 s).
const RELEASE_EVERY: u64 = 270;

impl Line {
    fn heroku(procid: &str, at: Timestamp, msg: String) -> Self {
        Self {
            at,
            source: "heroku",
            procid: procid.to_owned(),
            msg,
        }
    }

    fn ts(&self) -> String {
        self.at.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }

    /// An octet-counted RFC 5424 frame exactly as Logplex writes it.
    pub fn frame(&self, out: &mut String) {
        let pri = if self.source == "app" {
            190
        } else if self.procid == "router" {
            158
        } else {
            134
        };
        let body = format!(
            "<{pri}>1 {} host {} {} - {}\n",
            self.ts(),
            self.source,
            self.procid,
            self.msg
        );
        let _ = write!(out, "{} {body}", body.len());
    }

    /// A `heroku logs` / log-session text line.
    pub fn text(&self) -> String {
        format!(
            "{} {}[{}]: {}\n",
            self.ts(),
            self.source,
            self.procid,
            self.msg
        )
    }
}

fn noise(dyno: &str, at: Timestamp, router: usize, rng: &mut fastrand::Rng, out: &mut Vec<Line>) {
    for _ in 0..router {
        out.push(Line {
            at,
            source: "heroku",
            procid: "router".into(),
            msg: format!(
                "at=info method=GET path=\"/products/{}\" host=shop.herokuapp.com request_id={} fwd=\"203.0.113.{}\" dyno={dyno} connect=0ms service={}ms status=200 bytes={} protocol=https",
                rng.u32(1..5000),
                uuid(rng),
                rng.u8(1..255),
                rng.u32(3..400),
                rng.u32(200..40_000)
            ),
        });
    }
    for _ in 0..router / 2 {
        out.push(Line {
            at,
            source: "app",
            procid: dyno.to_owned(),
            msg: format!(
                "I, [{}] INFO -- : Completed 200 OK in {}ms",
                at,
                rng.u32(2..300)
            ),
        });
    }
}

/// Runs the fleet until `stop`; restart calls arrive from the fake API.
pub async fn run(
    opts: FleetOptions,
    fake: FakeHeroku,
    mut stop: watch::Receiver<bool>,
) -> FleetReport {
    let (tx, mut restarts) = mpsc::unbounded_channel();
    fake.on_restart(tx);
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let mut dynos: Vec<SimDyno> = opts
        .dynos
        .iter()
        .cloned()
        .map(|s| SimDyno::new(s, &mut rng))
        .collect();
    let mut shadow = dynos.clone();
    let mut shadow_rng = fastrand::Rng::with_seed(opts.seed);
    let mut reports: Vec<DynoReport> = dynos
        .iter()
        .map(|d| DynoReport {
            name: d.spec.name.clone(),
            curve: Some(d.spec.curve),
            ..Default::default()
        })
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok();
    let mut report = FleetReport::default();

    let start = opts.start;
    let mut now = start;
    let dt = opts.sample_every.as_secs_f64();
    let tick = Duration::from_secs_f64((dt / opts.speed).max(0.001));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        now += opts.sample_every;
        let mut lines = Vec::new();
        while let Ok((app, name)) = restarts.try_recv() {
            if app != opts.app {
                continue;
            }
            if let Some(i) = dynos.iter().position(|d| d.spec.name == name) {
                // Lines are stamped a little after the call, as Heroku's are.
                dynos[i].restart(now - opts.sample_every / 2, opts.boot, &mut rng, &mut lines);
                reports[i].api_restarts += 1;
                reports[i]
                    .first_restart_at
                    .get_or_insert(now.duration_since(start).as_secs_f64());
            }
        }
        // A release now and then (the first tick, then every 90 simulated
        // minutes): `app[api]` lines, as Heroku logs them, for the charts'
        // release markers.
        if ticks.is_multiple_of(RELEASE_EVERY) {
            lines.push(Line {
                at: now,
                source: "app",
                procid: "api".into(),
                msg: format!(
                    "Release v{} created by deploy@example.com",
                    41 + ticks / RELEASE_EVERY
                ),
            });
        }
        ticks += 1;
        for d in dynos.iter_mut() {
            if d.step(now, dt, opts.boot, &mut rng, &mut lines) {
                report.samples_sent += 1;
            }
            if !d.booting(now) {
                noise(&d.spec.name, now, opts.router_lines, &mut rng, &mut lines);
            }
        }
        // The same dynos with nobody restarting them.
        let mut discard = Vec::new();
        for s in shadow.iter_mut() {
            s.step(now, dt, opts.boot, &mut shadow_rng, &mut discard);
            discard.clear();
        }
        report.lines_sent += lines.len() as u64;
        deliver(&opts, &fake, http.as_ref(), &lines, &mut report).await;
    }
    report.simulated_secs = now.duration_since(start).as_secs_f64();
    for ((r, d), s) in reports.iter_mut().zip(&dynos).zip(&shadow) {
        r.r15_kills = d.kills;
        r.over_quota_secs = d.over_secs;
        r.peak_mb = d.peak;
        r.shadow_r15_kills = s.kills;
        r.shadow_over_quota_secs = s.over_secs;
        r.shadow_peak_mb = s.peak;
    }
    report.dynos = reports;
    report
}

async fn deliver(
    opts: &FleetOptions,
    fake: &FakeHeroku,
    http: Option<&reqwest::Client>,
    lines: &[Line],
    report: &mut FleetReport,
) {
    match &opts.delivery {
        Delivery::Session => {
            let mut buf = String::new();
            for l in lines
                .iter()
                .filter(|l| l.source == "heroku" && l.procid != "router")
            {
                buf.push_str(&l.text());
            }
            fake.publish(&opts.app, bytes::Bytes::from(buf));
        }
        Delivery::Drain {
            url,
            password,
            drain_token,
        } => {
            let Some(http) = http else { return };
            for batch in lines.chunks(100) {
                let mut body = String::new();
                for l in batch {
                    l.frame(&mut body);
                }
                let mut rb = http
                    .post(url)
                    .basic_auth("logplex", Some(password))
                    .header("Content-Type", "application/logplex-1")
                    .header("Logplex-Msg-Count", batch.len().to_string())
                    .header("Logplex-Frame-Id", format!("{:032X}", fastrand::u128(..)))
                    .body(body);
                if let Some(t) = drain_token {
                    rb = rb.header("Logplex-Drain-Token", t);
                }
                match rb.send().await {
                    Ok(r) if r.status().is_success() => {}
                    _ => report.posts_failed += 1,
                }
            }
        }
    }
}

/// Convenience for tests and the demo: specs `web.1..web.n` with `curves`.
pub fn web_dynos(curves: &[Curve], quota_mb: f64) -> Vec<DynoSpec> {
    curves
        .iter()
        .enumerate()
        .map(|(i, c)| DynoSpec {
            name: format!("web.{}", i + 1),
            curve: *c,
            quota_mb,
        })
        .collect()
}

/// Shared handle for a running fleet.
pub type FleetHandle = tokio::task::JoinHandle<FleetReport>;

pub fn spawn(opts: FleetOptions, fake: FakeHeroku, stop: watch::Receiver<bool>) -> FleetHandle {
    tokio::spawn(run(opts, fake, stop))
}
