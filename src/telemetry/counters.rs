//! The counters `/metrics` shows: this process's own figures. Kept beside
//! the logging, below the pipeline, because every layer that counts — the
//! ingest path, the decisions, the reporter and restarter, the HTTP edge, the
//! log sessions and the store tasks — shares one `Counters`, and none of them
//! should import another layer (the HTTP edge used to import `act`) for it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::event::EventKind;

/// Counters the `/metrics` route shows, grouped by the layer that counts.
#[derive(Debug, Default)]
pub struct Counters {
    // Ingest: drain bodies and their frames (`service::server::drain`,
    // `Shared::ingest`).
    pub drain_requests: AtomicU64,
    pub drain_bytes: AtomicU64,
    pub frames: AtomicU64,
    pub frames_rejected: AtomicU64,
    pub frames_repaired: AtomicU64,
    pub duplicate_batches: AtomicU64,
    pub msg_count_mismatch: AtomicU64,
    pub observations: AtomicU64,
    pub samples_lost: AtomicU64,

    // Decide: what the engines ignored (`Shared::apply`).
    /// Samples not newer than the one applied (retries, reconnects, disorder).
    pub lines_stale: AtomicU64,
    /// Lines of an instance already replaced.
    pub lines_replaced: AtomicU64,
    /// Lines of a second instance not yet ordered against the current one.
    pub lines_unclear: AtomicU64,
    /// R14/R15 lines not newer than the last reported (session reconnects).
    pub lines_repeated: AtomicU64,
    /// Samples of another app than the one setup recorded (wrong drain).
    pub lines_foreign: AtomicU64,
    /// Timestamps more than a minute ahead, replaced by the arrival time.
    pub timestamps_clamped: AtomicU64,
    /// L10/L11 lines folded into the minute's first report.
    pub l10_coalesced: AtomicU64,

    // Act: the reporter and the restarter.
    pub events_dropped: AtomicU64,
    /// Restart calls by (app, process type, reason, outcome): this process's
    /// own count, so `/metrics` never scans the history and `sum()` over
    /// replicas is right.
    pub restarts:
        std::sync::Mutex<std::collections::BTreeMap<(String, String, String, String), u64>>,
    /// Events reported by kind (in [`EventKind::ALL`] order), this process.
    pub events: [AtomicU64; EventKind::ALL.len()],

    // Service: log sessions.
    pub session_lines: AtomicU64,
    pub session_reconnects: AtomicU64,

    // Service: the HTTP edge (`server::drain`, `server::listen`).
    /// Drain POSTs with wrong or missing credentials.
    pub drain_auth_failures: AtomicU64,
    /// Drain batches refused because their `Logplex-Drain-Token` is not
    /// the one configured for the app they were routed to (403).
    pub drain_token_mismatch: AtomicU64,
    /// Batches on the shared `/logs` whose token no app has (404).
    pub drain_unknown_token: AtomicU64,
    /// Bodies refused as too large (413).
    pub bodies_too_large: AtomicU64,
    /// Bodies not received within the deadline (408).
    pub body_timeouts: AtomicU64,
    /// Bodies refused for their Content-Encoding (415).
    pub unsupported_encoding: AtomicU64,
    /// Connections closed at once because the connection limit was reached.
    pub connections_refused: AtomicU64,
    /// Connections closed to make room at the connection limit: the oldest
    /// of those waiting for a request head.
    pub connections_evicted: AtomicU64,
    /// Failed `accept()` calls (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,

    // Service: the store tasks.
    /// Events deleted by retention.
    pub rows_pruned: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        // Most per-batch counts are zero: no locked add (and no cache line
        // taken from the other core) for them.
        if n != 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn count_restart(&self, app: &str, dyno: &str, reason: &str, outcome: &str) {
        let ty = dyno.rsplit_once('.').map_or(dyno, |(t, _)| t);
        let mut m = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((app.into(), ty.into(), reason.into(), outcome.into()))
            .or_default() += 1;
    }

    pub fn restarts(&self) -> Vec<((String, String, String, String), u64)> {
        let m = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}
