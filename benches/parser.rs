//! Parser micro-benchmarks: drain bodies → observations, and text lines.
//!
//! Bodies come from `../shared/tools/gen_drain.py` when `DYNOGUARD_BENCH_BODIES`
//! names a `--format nul` file (the figures in BENCHMARKS.md), else from the
//! simulator's generator with the same line mix.
//!
//!     python3 ../shared/tools/gen_drain.py --out /tmp/bodies.nul --bodies 200 --frames 100
//!     DYNOGUARD_BENCH_BODIES=/tmp/bodies.nul cargo bench --bench parser

use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use dynoguard::ingest;
use dynoguard::sim::bodies;

fn main() {
    divan::main();
}

fn load() -> Vec<Vec<u8>> {
    match std::env::var("DYNOGUARD_BENCH_BODIES") {
        Ok(path) => {
            bodies::split_nul(&std::fs::read(&path).expect("DYNOGUARD_BENCH_BODIES readable"))
        }
        Err(_) => bodies::generate(200, 100, 20, 7),
    }
}

/// The bodies and their counts: every bench reports lines/s and bytes/s.
struct Corpus {
    bodies: Vec<Vec<u8>>,
    lines: usize,
    bytes: usize,
}

fn corpus() -> Corpus {
    let bodies = load();
    let lines = bodies
        .iter()
        .map(|b| ingest::logplex::Frames::new(b).count())
        .sum();
    let bytes = bodies.iter().map(Vec::len).sum();
    Corpus {
        bodies,
        lines,
        bytes,
    }
}

#[divan::bench(sample_count = 30)]
fn drain_bodies(b: Bencher) {
    let c = corpus();
    b.counter(ItemsCount::new(c.lines))
        .counter(BytesCount::new(c.bytes))
        .bench(|| {
            let mut n = 0u64;
            for body in &c.bodies {
                n += ingest::drain_body(black_box(body), |o| {
                    black_box(o);
                })
                .observations;
            }
            n
        });
}

#[divan::bench(sample_count = 30)]
fn framing_only(b: Bencher) {
    let c = corpus();
    b.counter(ItemsCount::new(c.lines))
        .counter(BytesCount::new(c.bytes))
        .bench(|| {
            let mut n = 0usize;
            for body in &c.bodies {
                n += ingest::logplex::Frames::new(black_box(body)).count();
            }
            n
        });
}

#[divan::bench(sample_count = 30)]
fn text_lines(b: Bencher) {
    // The same messages as `heroku logs` text lines (log sessions).
    let mut text = Vec::new();
    for body in &corpus().bodies {
        for p in ingest::logplex::Frames::new(body) {
            if let Some(r) = ingest::logplex::parse_record(p) {
                text.extend_from_slice(r.timestamp);
                text.push(b' ');
                text.extend_from_slice(r.app);
                text.push(b'[');
                text.extend_from_slice(r.procid);
                text.extend_from_slice(b"]: ");
                text.extend_from_slice(r.message);
                text.push(b'\n');
            }
        }
    }
    let lines = text.iter().filter(|&&b| b == b'\n').count();
    b.counter(ItemsCount::new(lines))
        .counter(BytesCount::new(text.len()))
        .bench(|| {
            let mut stats = ingest::IngestStats::default();
            let mut lb = ingest::text::LineBuffer::new();
            lb.push(black_box(&text), |l| {
                black_box(ingest::text_line(l, &mut stats, |o| {
                    black_box(o);
                }));
            });
            stats.observations
        });
}
