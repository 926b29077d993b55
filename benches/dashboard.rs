//! The dashboard with 100 dynos (issue: under ~1 MB, under 200 ms on the
//! server): the history reads over 7 days of per-minute rows in SQLite (as
//! the page makes them, on a store filled through `write_history`), a flush
//! of a minute into it, and the page's rendering from gathered data.
//! `cargo bench --bench dashboard`.

use std::collections::HashMap;

use divan::{Bencher, black_box};
use dynoguard::domain::MemoryMb;
use dynoguard::service::server::chart::{Mark, MarkKind};
use dynoguard::service::server::dashboard::{AppData, PageData, PageQuery, render};
use dynoguard::service::server::views::{DynoStatus, DynoView, Range, SampleView};
use dynoguard::store::{HistoryPoint, MinuteRow, SampleRow, Store};

const DYNOS: usize = 100;
const MIN: i64 = 60_000;

fn main() {
    divan::main();
}

fn total(dyno: usize, minute: i64) -> f64 {
    200.0 + ((minute + dyno as i64 * 37) % 300) as f64
}

/// 100 dynos × 7 days of minutes in one SQLite store, written as the
/// service writes them (`write_history`, which keeps the roll-up too), and
/// the page's clock: a wall-clock `now` between minutes, as `Window` has it.
struct Fixture {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    store: Store,
    now: i64,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let now = 1_763_700_037_123_i64;
        let started = std::time::Instant::now();
        let store = rt.block_on(async {
            let s = Store::connect(&url).await.unwrap();
            let minutes = 7 * 24 * 60;
            for d in 0..DYNOS {
                let rows: Vec<MinuteRow> = (0..minutes)
                    .filter_map(|m| {
                        MinuteRow::of_sample(&SampleRow {
                            app: "shop".into(),
                            dyno: format!("web.{}", d + 1),
                            instance: Some(format!("i{}", m / 600)),
                            at: now - (minutes - m) * MIN,
                            memory: MemoryMb {
                                total: Some(total(d, m)),
                                rss: Some(total(d, m) - 5.0),
                                swap: Some(0.0),
                                quota: Some(512.0),
                            },
                            replaced: None,
                            contender: None,
                        })
                    })
                    .collect();
                s.write_history(&rows).await.unwrap();
            }
            s
        });
        eprintln!(
            "{DYNOS} dynos × 7 days of minutes written in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Fixture {
            rt,
            _dir: dir,
            store,
            now,
        }
    })
}

/// The page's read for a range (`dashboard::Window`): from `span` before
/// now to a minute after it, in whole-minute buckets of about a 120th of it.
fn page_read(bencher: Bencher, span: i64) {
    let f = fixture();
    let bucket = (span / 120).div_euclid(MIN).max(1) * MIN;
    let (from, to) = (f.now - span, f.now + MIN);
    let n =
        f.rt.block_on(f.store.history("shop", None, from, to, bucket))
            .unwrap()
            .len();
    assert!(n >= DYNOS * 120, "{n} points");
    bencher.bench_local(|| {
        f.rt.block_on(f.store.history("shop", None, from, to, bucket))
            .unwrap()
            .len()
    });
}

/// The page's history read: 7 days of 100 dynos in 120 buckets each.
#[divan::bench(sample_count = 10)]
fn history_query_7d_100_dynos(bencher: Bencher) {
    page_read(bencher, 7 * 24 * 60 * MIN);
}

/// The 24-hour range: 100 dynos in 120 buckets of 12 minutes.
#[divan::bench(sample_count = 10)]
fn history_query_24h_100_dynos(bencher: Bencher) {
    page_read(bencher, 24 * 60 * MIN);
}

/// The page's other read of the history over 7 days: where instances began.
#[divan::bench(sample_count = 10)]
fn instance_starts_7d_100_dynos(bencher: Bencher) {
    let f = fixture();
    bencher.bench_local(|| {
        f.rt.block_on(f.store.instance_starts("shop", f.now - 7 * 24 * 60 * MIN))
            .unwrap()
            .len()
    });
}

/// One flush of the service's sample buffer: a minute of each of the 100
/// dynos merged into the store (the minute and its roll-up slot).
#[divan::bench(sample_count = 20)]
fn write_history_flush_100_dynos(bencher: Bencher) {
    let f = fixture();
    let rows: Vec<MinuteRow> = (0..DYNOS)
        .filter_map(|d| {
            MinuteRow::of_sample(&SampleRow {
                app: "shop".into(),
                dyno: format!("web.{}", d + 1),
                instance: Some("i16".into()),
                at: f.now - 1000,
                memory: MemoryMb {
                    total: Some(total(d, 7)),
                    rss: Some(total(d, 7) - 5.0),
                    swap: Some(0.0),
                    quota: Some(512.0),
                },
                replaced: None,
                contender: None,
            })
        })
        .collect();
    bencher.bench_local(|| f.rt.block_on(f.store.write_history(&rows)).unwrap());
}

fn page_data() -> PageData {
    let now = jiff::Timestamp::now();
    let to = now.as_millisecond();
    let bucket = 7 * 24 * 60 * MIN / 120;
    let from = to - 120 * bucket;
    let mut history = HashMap::new();
    let mut marks = HashMap::new();
    let mut dynos = Vec::new();
    for d in 0..DYNOS {
        let name = format!("web.{}", d + 1);
        let points: Vec<HistoryPoint> = (0..120)
            .map(|i| HistoryPoint {
                dyno: name.clone(),
                t: from + i * bucket,
                samples: 252,
                min: total(d, i) - 20.0,
                avg: total(d, i),
                max: total(d, i) + 20.0,
                rss: Some(total(d, i)),
                swap: Some(0.0),
                quota: Some(512.0),
            })
            .collect();
        history.insert(name.clone(), points);
        marks.insert(
            name.clone(),
            (0..6)
                .map(|i| Mark {
                    at: from + i * 20 * bucket,
                    kind: if i % 2 == 0 {
                        MarkKind::Restart
                    } else {
                        MarkKind::R14
                    },
                    title: format!("restart {i} (threshold) at 530 MB"),
                })
                .collect::<Vec<_>>(),
        );
        let t = total(d, 0);
        dynos.push(DynoView {
            app: "shop".into(),
            dyno: name,
            process_type: "web".into(),
            instance: Some("cfe2c338-81f4-40d4-bfb2-13f4e5e31fce".into()),
            state: if t > 480.0 {
                DynoStatus::Over
            } else {
                DynoStatus::Ok
            },
            last_sample: Some(SampleView {
                memory: MemoryMb {
                    total: Some(t),
                    rss: Some(t - 5.0),
                    swap: Some(0.0),
                    quota: Some(512.0),
                },
                at: now.to_string(),
            }),
            threshold_mb: Some(512.0),
            percent_of_quota: Some(t / 5.12),
            last_restart: None,
            seen_here: true,
            attention: if t > 480.0 {
                vec![dynoguard::service::server::views::Attention::Over]
            } else {
                Vec::new()
            },
            recent_restarts: 0,
            incident: None,
            sample_at: Some(now),
        });
    }
    let event = dynoguard::domain::event::Event::from_json(
        &serde_json::json!({"at": now.to_string(), "event": "restart", "app": "shop", "dyno": "web.1",
            "reason": "threshold", "memory_total_mb": 530.0, "memory_quota_mb": 512.0, "request_id": "abc"})
        .to_string(),
    )
    .expect("an event");
    PageData {
        query: PageQuery {
            app: None,
            dyno: None,
            kinds: Vec::new(),
            range: Range::D7,
        },
        now,
        log_clock: false,
        from,
        to,
        bucket,
        history_since: None,
        apps: vec![AppData {
            name: "shop".into(),
            source: "drain",
            blind: None,
            dynos,
            history,
            marks,
            releases: (0..3)
                .map(|i| Mark {
                    at: from + (i * 40 + 10) * bucket,
                    kind: MarkKind::Release,
                    title: format!("v{} by dev@example.com", 100 + i),
                })
                .collect(),
            restarts_24h: 42,
        }],
        events: vec![event; 100],
        incidents: Vec::new(),
        replica: None,
        alert_only: false,
        store_failing: None,
        read_error: None,
    }
}

/// Rendering the page of 100 dynos (7 days, 120 buckets, 6 markers each, 100 events).
#[divan::bench(sample_count = 20)]
fn render_page_100_dynos(bencher: Bencher) {
    let data = page_data();
    let page = render(&data);
    eprintln!("page of {DYNOS} dynos: {} bytes", page.len());
    bencher.bench_local(|| black_box(render(black_box(&data))).len());
}
