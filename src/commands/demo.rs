//! `dynoguard demo`: a simulated Heroku (fake Platform API + leaking dynos
//! posting real drain bodies) and a real `dynoguard serve` against it, on
//! loopback, with SQLite in a temporary directory. Ends with a table: what
//! dynoguard did, and what the same dynos would have suffered without it.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::Context as _;
use jiff::SignedDuration;
use secrecy::SecretString;
use tokio::sync::watch;

use crate::config::{
    AppConfig, Config, ConfigError, DEFAULT_BODY_LIMIT, LogFormat, ServerConfig, Source,
};
use crate::decide::policy::AppPolicy;
use crate::domain::AppName;
use crate::service::{App, Tuning};
use crate::sim::FakeHeroku;
use crate::sim::fleet::{self, Curve, Delivery, FleetOptions, FleetReport};

pub const DEMO_APP: &str = "demo-shop";
/// The demo's dashboard password (any user name); it only listens on loopback.
pub const DEMO_DASHBOARD_PASSWORD: &str = "demo";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Option<SignedDuration>,
    pub dynos: usize,
    pub speed: f64,
    pub port: u16,
    pub color: bool,
    /// Alert-only mode: decide and report, restart nothing.
    pub dry_run: bool,
}

/// `dynoguard demo`'s options from its command line: `--for` a duration
/// other than zero, `--speed` in (0, 10000] and `--dynos` in 1..=1000 —
/// anything else is a usage problem (exit 2) — and any free port without
/// `--port`.
pub fn options_from_cli(
    duration: Option<&str>,
    dynos: usize,
    speed: f64,
    port: Option<u16>,
    dry_run: bool,
    color: bool,
) -> Result<DemoOptions, ConfigError> {
    let duration = duration
        .map(|d| {
            crate::config::parse_duration(d)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    super::usage(
                        "--for",
                        format!("{d:?} is not a duration; use e.g. 30s or 2m"),
                    )
                })
        })
        .transpose()?;
    if !(speed.is_finite() && speed > 0.0 && speed <= 10_000.0) || dynos == 0 || dynos > 1000 {
        return Err(super::usage(
            "--speed/--dynos",
            "--speed must be in (0, 10000] and --dynos in 1..=1000",
        ));
    }
    Ok(DemoOptions {
        duration,
        dynos,
        speed,
        port: port.unwrap_or(0),
        dry_run,
        color,
    })
}

/// A config for dynoguard against the simulator.
pub fn demo_config(api_url: &str, database_url: &str, port: u16, password: &str) -> Config {
    Config {
        server: ServerConfig {
            port,
            drain_password: Some(SecretString::from(password.to_owned())),
            dashboard_password: Some(SecretString::from(DEMO_DASHBOARD_PASSWORD.to_owned())),
            body_limit: DEFAULT_BODY_LIMIT,
        },
        database_url: SecretString::from(database_url.to_owned()),
        heroku_api_url: api_url.to_owned(),
        log_format: LogFormat::Text,
        apps: vec![AppConfig {
            name: AppName::parse(DEMO_APP).expect("a valid constant"),
            api_token: Some(SecretString::from("demo-token".to_owned())),
            source: Source::Drain,
            drain_token: None,
            drain_password: None,
            // The real defaults: decisions run on the simulated log clock.
            policy: AppPolicy::default(),
            set_by: Default::default(),
        }],
        notify: Vec::new(),
        public_url: None,
        origins: Default::default(),
        warnings: Vec::new(),
    }
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let fake = FakeHeroku::start()
        .await
        .context("starting the simulated Heroku API")?;
    let dir = std::env::temp_dir().join(format!(
        "dynoguard-demo-{}-{:x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let db = format!("sqlite://{}", dir.join("dynoguard.db").display());
    let password = format!("demo-{:016x}", fastrand::u64(..));
    let mut cfg = demo_config(&fake.url(), &db, opts.port, &password);
    cfg.apps[0].policy.defaults.dry_run = opts.dry_run;
    let tuning = Tuning {
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        sample_flush: Duration::from_millis(500),
        // The header's clock and "3 min ago" on the simulated log time,
        // which the charts and events are in.
        page_log_clock: true,
        ..Tuning::default()
    };
    let app = App::build(cfg, tuning).await?;
    let addr = app.local_addr();
    let shared = app.shared();

    let curves = Curve::mix(opts.dynos);
    println!(
        "dynoguard demo — a simulated Heroku app with {} web dynos (512 MB quota), {}x speed",
        opts.dynos, opts.speed
    );
    for (i, c) in curves.iter().enumerate() {
        println!("  web.{:<3} {}", i + 1, c.name());
    }
    println!(
        "dashboard:  http://{addr}/  (any user, password: {DEMO_DASHBOARD_PASSWORD})   JSON: /api/dynos, /api/events   metrics: /metrics"
    );
    println!("fake Platform API: {}   store: {}", fake.url(), db);
    match opts.duration {
        Some(d) => println!(
            "running for {}s (≈{:.0} simulated minutes)…\n",
            d.as_secs(),
            d.as_secs_f64() * opts.speed / 60.0
        ),
        None => println!("running until Ctrl-C…\n"),
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut app_stop = stop_rx.clone();
    let server = tokio::spawn(app.run_until(async move {
        let _ = app_stop.wait_for(|s| *s).await;
    }));
    let mut fo = FleetOptions::new(
        DEMO_APP,
        fleet::web_dynos(&curves, 512.0),
        Delivery::Drain {
            url: format!("http://{addr}/logs"),
            password,
            drain_token: None,
        },
    );
    fo.speed = opts.speed;
    // Simulated time must stay behind the wall clock (log time decides).
    if let Some(d) = opts.duration {
        fo.start = jiff::Timestamp::now()
            - jiff::SignedDuration::from_secs_f64(d.as_secs_f64() * opts.speed + 60.0);
    }
    let fleet = fleet::spawn(fo, fake.clone(), stop_rx.clone());

    match opts.duration {
        Some(d) => tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(d.as_secs_f64())) => {}
            _ = crate::service::shutdown_signal() => {}
        },
        None => crate::service::shutdown_signal().await,
    }
    let _ = stop_tx.send(true);
    let report = fleet.await.context("the simulated fleet failed")?;
    let restarts = shared.store.restarts(DEMO_APP).await.unwrap_or_default();
    let samples = shared
        .counters
        .observations
        .load(std::sync::atomic::Ordering::Relaxed);
    let frames = shared
        .counters
        .frames
        .load(std::sync::atomic::Ordering::Relaxed);
    drop(shared);
    server.await.context("dynoguard failed")??;
    print!("{}", summary(&report, &restarts, frames, samples));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn mins(secs: f64) -> String {
    format!("{:.1} min", secs / 60.0)
}

pub fn summary(
    report: &FleetReport,
    restarts: &[crate::store::RestartRow],
    frames: u64,
    observations: u64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n── summary ─ {} simulated ─────────────────────────────────────────",
        mins(report.simulated_secs)
    );
    let _ = writeln!(
        s,
        "log lines received: {frames}  platform observations used: {observations}  memory samples sent: {}",
        report.samples_sent
    );
    let mut by_reason = std::collections::BTreeMap::<(String, String), u32>::new();
    for r in restarts {
        *by_reason
            .entry((r.reason.clone(), r.outcome.clone()))
            .or_default() += 1;
    }
    let reasons: Vec<String> = by_reason
        .iter()
        .map(|((r, o), n)| {
            format!(
                "{r}: {n}{}",
                if o == "ok" {
                    String::new()
                } else {
                    format!(" ({o})")
                }
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "restarts by reason: {}",
        if reasons.is_empty() {
            "none".into()
        } else {
            reasons.join(", ")
        }
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<8} {:<10} │ {:>8} {:>12} {:>5} │ {:>12} {:>5}",
        "dyno", "curve", "restarts", "over quota", "R15", "over quota", "R15"
    );
    let _ = writeln!(
        s,
        "{:<8} {:<10} │ {:^27} │ {:^18}",
        "", "", "with dynoguard", "without"
    );
    let (mut over, mut over0, mut k, mut k0) = (0.0, 0.0, 0, 0);
    for d in &report.dynos {
        let _ = writeln!(
            s,
            "{:<8} {:<10} │ {:>8} {:>12} {:>5} │ {:>12} {:>5}",
            d.name,
            d.curve.map_or("?", Curve::name),
            d.api_restarts,
            mins(d.over_quota_secs),
            d.r15_kills,
            mins(d.shadow_over_quota_secs),
            d.shadow_r15_kills
        );
        over += d.over_quota_secs;
        over0 += d.shadow_over_quota_secs;
        k += d.r15_kills;
        k0 += d.shadow_r15_kills;
    }
    let _ = writeln!(
        s,
        "{:<19} │ {:>8} {:>12} {:>5} │ {:>12} {:>5}",
        "total",
        report.dynos.iter().map(|d| d.api_restarts).sum::<u32>(),
        mins(over),
        k,
        mins(over0),
        k0
    );
    let _ = writeln!(
        s,
        "\nTime swapping (over quota) and R15 kills avoided: {} and {} kill(s).",
        mins((over0 - over).max(0.0)),
        k0.saturating_sub(k)
    );
    s
}
