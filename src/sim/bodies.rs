//! Realistic drain bodies for benchmarks and load tests: either read from a
//! `../shared/tools/gen_drain.py --format nul` file, or generated here with
//! the same mix (≈5 % memory samples, 5 % load, 50 % router, rest app).

use jiff::Timestamp;

use super::fleet::Line;

/// Splits a gen_drain.py `nul` file into bodies.
pub fn split_nul(data: &[u8]) -> Vec<Vec<u8>> {
    data.split(|&b| b == 0)
        .filter(|b| !b.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// `bodies` bodies of `frames` frames over `dynos` web dynos.
pub fn generate(bodies: usize, frames: usize, dynos: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut out = Vec::with_capacity(bodies);
    let mut n: i64 = 0;
    for _ in 0..bodies {
        let mut body = String::with_capacity(frames * 200);
        for _ in 0..frames {
            n += 1;
            let at = start + jiff::SignedDuration::from_millis(n * 7);
            let d = rng.usize(1..=dynos.max(1));
            let dyno = format!("web.{d}");
            let r = rng.f64();
            let line = if r < 0.05 {
                Line {
                    at,
                    source: "heroku",
                    procid: dyno.clone(),
                    msg: format!(
                        "source={dyno} dyno=heroku.4242.{d:08x}-aaaa-bbbb-cccc-dddddddddddd sample#memory_total={:.2}MB sample#memory_rss={:.2}MB sample#memory_cache=4.55MB sample#memory_swap=0.00MB sample#memory_pgpgin=1651pages sample#memory_pgpgout=165pages sample#memory_quota=512.00MB",
                        200.0 + rng.f64() * 250.0,
                        190.0 + rng.f64() * 200.0
                    ),
                }
            } else if r < 0.10 {
                Line {
                    at,
                    source: "heroku",
                    procid: dyno.clone(),
                    msg: format!(
                        "source={dyno} dyno=heroku.4242.{d:08x}-aaaa-bbbb-cccc-dddddddddddd sample#load_avg_1m=0.{:02} sample#load_avg_5m=0.10 sample#load_avg_15m=0.05",
                        rng.u8(0..99)
                    ),
                }
            } else if r < 0.60 {
                Line {
                    at,
                    source: "heroku",
                    procid: "router".into(),
                    msg: format!(
                        "at=info method=GET path=\"/products/{}\" host=shop.herokuapp.com request_id=05726858-c44e-4f94-9a20-37df73be{:04x} fwd=\"73.75.38.87\" dyno={dyno} connect=1ms service={}ms status=200 bytes={} protocol=https",
                        rng.u32(1..9999),
                        rng.u16(..),
                        rng.u32(2..900),
                        rng.u32(100..90000)
                    ),
                }
            } else {
                Line {
                    at,
                    source: "app",
                    procid: dyno.clone(),
                    msg: format!(
                        "I, [2024-01-01T00:00:00.000000 #4]  INFO -- : [{:08x}] Completed 200 OK in {}ms (Views: 3.1ms | ActiveRecord: 1.2ms)",
                        rng.u32(..),
                        rng.u32(1..500)
                    ),
                }
            };
            line.frame(&mut body);
        }
        out.push(body.into_bytes());
    }
    out
}
