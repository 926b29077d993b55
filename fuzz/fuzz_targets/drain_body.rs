//! Any bytes as a drain body: never panics; the engine sees only what parsed.
#![no_main]

use dynoguard::decide::engine::{Confirmation, Engine};
use dynoguard::decide::policy::AppPolicy;
use dynoguard::domain::AppName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut e = Engine::new(
        AppName::parse("fuzz").unwrap(),
        AppPolicy::default(),
        Confirmation::OnDecision,
    );
    let mut obs = Vec::new();
    let stats = dynoguard::ingest::drain_body(data, |o| obs.push(o));
    assert!(stats.observations as usize == obs.len());
    let arrived = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    let _ = e.apply(&obs, arrived);
});
