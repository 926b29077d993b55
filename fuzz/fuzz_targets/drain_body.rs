//! Any bytes as a drain body: never panics; the policy sees only what parsed.
#![no_main]

use dynoguard::domain::AppName;
use dynoguard::decide::policy::AppPolicy;
use dynoguard::decide::watch::Watcher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut w = Watcher::new(AppName::parse("fuzz").unwrap(), AppPolicy::default());
    let mut obs = Vec::new();
    let stats = dynoguard::ingest::drain_body(data, |o| obs.push(o));
    assert!(stats.observations as usize == obs.len());
    for o in &obs {
        let _ = w.observe(o, o.at);
    }
});
