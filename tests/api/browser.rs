//! The dashboard in a real browser: `dynoguard demo` (the real binary) and
//! headless Chromium at a laptop's and a phone's size. Asserts on the
//! rendered DOM and saves screenshots under `target/` (`dashboard-1366.png`,
//! `dashboard-390.png`). Skipped when Chromium is not installed, unless
//! `DYNOGUARD_REQUIRE_TOOLS` is set (`.ci/run` installs it and sets it).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn chromedriver() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// A WebDriver session of headless Chromium emulating a `width`×`height`
/// screen (headless windows cannot be narrower than 500 px; emulation can).
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn open(driver: &str, (width, height): (u32, u32)) -> Self {
        let http = reqwest::Client::new();
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--hide-scrollbars"],
            "mobileEmulation": {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0}}
        }}}});
        let r: serde_json::Value = http
            .post(format!("{driver}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Self {
            http,
            session: format!("{driver}/session/{session}"),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let mut rb = self.http.request(method, format!("{}{path}", self.session));
        if !body.is_null() {
            rb = rb.json(&body);
        }
        let r: serde_json::Value = rb.send().await.unwrap().json().await.unwrap();
        r["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(
            reqwest::Method::POST,
            "/url",
            serde_json::json!({ "url": url }),
        )
        .await;
    }

    async fn run(&self, script: &str) -> serde_json::Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            serde_json::json!({"script": script, "args": []}),
        )
        .await
    }

    async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let v = self
            .call(reqwest::Method::GET, "/screenshot", serde_json::Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a screenshot"))
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// What the test asserts on, read from the rendered DOM.
const FACTS: &str = r#"
const q = (s) => Array.from(document.querySelectorAll(s));
const chart = document.querySelector("svg.chart");
return {
  scroll: document.documentElement.scrollWidth,
  width: window.innerWidth,
  pcts: q("article.dyno").map((a) => parseFloat(a.dataset.pct)),
  charts: q("svg.chart").length,
  time_labels: q("svg.chart g.axis.x text").length,
  mb_labels: q("svg.chart g.axis.y text").length,
  restart_markers: q("svg.chart .mk-restart").length,
  marker_titles: q("svg.chart .mk-restart title").map((t) => t.textContent).slice(0, 3),
  event_rows: q("table.events tbody tr").length,
  restart_rows: q("table.events tr.ev-restart").length,
  chart_width: chart ? chart.getBoundingClientRect().width : 0,
  attention_cards: q("article.dyno").filter((a) => a.dataset.attention).length,
  header_attention: q("p.summary").map((p) => parseInt((p.textContent.match(/(\d+) needs? attention/) || [0, "0"])[1], 10)).reduce((a, b) => a + b, 0),
  flapping_badges: q("article.dyno .state.badge.flapping").length,
  swap_areas: q("svg.chart g.swap").length,
  release_markers: q("svg.chart .mk-release").length,
  incident_rows: q("table.incidents tr.inc").length,
  alert_only_banner: q(".banner.alert-only").length,
};
"#;

/// Starts `dynoguard demo` on a free port; returns it and the port.
fn start_demo(extra: &[&str]) -> (std::process::Child, u16) {
    let port = free_port();
    let mut args = vec!["demo".to_owned(), "--port".to_owned(), port.to_string()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let demo = Command::new(env!("CARGO_BIN_EXE_dynoguard"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dynoguard demo starts");
    (demo, port)
}

/// Waits until the demo's `/api/events?kind=KIND` lists at least `n`.
async fn wait_for_events(port: u16, kind: &str, n: usize) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(80);
    loop {
        let r = http
            .get(format!(
                "http://127.0.0.1:{port}/api/events?kind={kind}&limit=1000"
            ))
            .basic_auth("ops", Some("demo"))
            .send()
            .await;
        if let Ok(r) = r
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v.as_array().is_some_and(|a| a.len() >= n)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} events in the demo"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_demo_dashboard_renders_in_chromium_at_1366_and_390_px() {
    let (Some(driver_bin), true) = (
        chromedriver(),
        std::path::Path::new("/usr/bin/chromium").exists(),
    ) else {
        assert!(
            std::env::var_os("DYNOGUARD_REQUIRE_TOOLS").is_none(),
            "Chromium and chromedriver are required here (DYNOGUARD_REQUIRE_TOOLS) but not installed"
        );
        eprintln!(
            "SKIPPED: browser test (install Debian's chromium and chromium-driver to run it)"
        );
        return;
    };
    crate::helpers::install_crypto();
    let port = free_port();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_dynoguard"))
        .args([
            "demo",
            "--dynos",
            "12",
            "--for",
            "90s",
            "--port",
            &port.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dynoguard demo starts");
    let driver_port = free_port();
    let mut driver = Command::new(driver_bin)
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let base = format!("http://127.0.0.1:{port}");
    let driver_url = format!("http://127.0.0.1:{driver_port}");
    // Wait for restarts (the leaking dynos reach their quota within seconds).
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .get(format!("{base}/api/events?kind=restart&limit=1000"))
            .basic_auth("ops", Some("demo"))
            .send()
            .await;
        if let Ok(r) = r
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v.as_array().is_some_and(|a| a.len() >= 3)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no restarts in the demo"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    while http
        .get(format!("{driver_url}/status"))
        .send()
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("http://ops:demo@127.0.0.1:{port}/");
    let shots = target_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let mut facts = Vec::new();
    for (size, shot) in [
        ((1366, 900), "dashboard-1366.png"),
        ((390, 844), "dashboard-390.png"),
    ] {
        let b = Browser::open(&driver_url, size).await;
        b.go(&url).await;
        facts.push((size.0, b.run(FACTS).await));
        b.screenshot(&shots.join(shot)).await;
        b.close().await;
    }
    let _ = demo.kill();
    let _ = demo.wait();
    let _ = driver.kill();
    let _ = driver.wait();

    for (width, f) in &facts {
        let at = format!("{width}px: {f}");
        assert_eq!(f["width"], *width, "{at}");
        assert!(
            f["scroll"].as_u64().unwrap() <= u64::from(*width),
            "wider than the screen: {at}"
        );
        // Dyno cards in urgency order (percent of quota, highest first).
        let pcts: Vec<f64> = f["pcts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert_eq!(pcts.len(), 12, "{at}");
        assert!(pcts.windows(2).all(|w| w[0] >= w[1]), "urgency order: {at}");
        // Charts with labelled axes and restart markers.
        assert_eq!(f["charts"], 12, "{at}");
        assert!(f["time_labels"].as_u64().unwrap() >= 12 * 3, "{at}");
        assert!(f["mb_labels"].as_u64().unwrap() >= 12 * 3, "{at}");
        assert!(f["restart_markers"].as_u64().unwrap() >= 1, "{at}");
        assert!(
            f["marker_titles"][0]
                .as_str()
                .unwrap()
                .starts_with("restart "),
            "{at}"
        );
        // Events as rows.
        assert!(f["restart_rows"].as_u64().unwrap() >= 1, "{at}");
        // A chart wide enough to read on a phone.
        assert!(f["chart_width"].as_f64().unwrap() >= 300.0, "{at}");
        // One definition of "needs attention": the header counts the cards.
        assert_eq!(f["header_attention"], f["attention_cards"], "{at}");
        // Releases on the charts, incidents as rows.
        assert!(f["release_markers"].as_u64().unwrap() >= 12, "{at}");
        assert!(f["incident_rows"].as_u64().unwrap() >= 1, "{at}");
        assert_eq!(f["alert_only_banner"], 0, "{at}");
    }
    // Alert-only mode: the banner; nothing is restarted, so dynos swap and
    // the would-be restarts of a leak outpace the flap limit.
    let (mut dry, dry_port) = start_demo(&["--dynos", "6", "--for", "90s", "--dry-run"]);
    wait_for_events(dry_port, "flapping", 1).await;
    let driver_port = free_port();
    let mut driver = Command::new(chromedriver().expect("checked above"))
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver_url = format!("http://127.0.0.1:{driver_port}");
    let http = reqwest::Client::new();
    while http
        .get(format!("{driver_url}/status"))
        .send()
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = Browser::open(&driver_url, (1366, 900)).await;
    b.go(&format!("http://ops:demo@127.0.0.1:{dry_port}/"))
        .await;
    let f = b.run(FACTS).await;
    b.screenshot(&shots.join("dashboard-alert-only.png")).await;
    b.close().await;
    let _ = dry.kill();
    let _ = dry.wait();
    let _ = driver.kill();
    let _ = driver.wait();
    assert_eq!(f["alert_only_banner"], 1, "{f}");
    assert!(f["swap_areas"].as_u64().unwrap() >= 1, "{f}");
    assert!(f["flapping_badges"].as_u64().unwrap() >= 1, "{f}");
    assert_eq!(f["header_attention"], f["attention_cards"], "{f}");
    for shot in ["dashboard-1366.png", "dashboard-390.png"] {
        let len = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
}
