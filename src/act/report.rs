//! Where events go once decided: the log (text or JSON), the store (batched,
//! on a writer task) and the notifiers. `emit` never blocks on I/O.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::LogFormat;
use crate::domain::event::{Event, EventKind};
use crate::telemetry::Counters;

#[derive(Debug, Clone)]
pub struct Reporter {
    format: LogFormat,
    store_tx: mpsc::Sender<Event>,
    notify_tx: Option<mpsc::Sender<Event>>,
    pub counters: Arc<Counters>,
}

/// Buffered events between the hot path and the writer tasks.
pub const QUEUE: usize = 16 * 1024;

impl Reporter {
    pub fn new(
        format: LogFormat,
        store_tx: mpsc::Sender<Event>,
        notify_tx: Option<mpsc::Sender<Event>>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            format,
            store_tx,
            notify_tx,
            counters,
        }
    }

    pub fn emit(&self, e: Event) {
        if let Some(i) = EventKind::ALL.iter().position(|k| *k == e.event) {
            Counters::add(&self.counters.events[i], 1);
        }
        if e.event == EventKind::Sample {
            tracing::debug!("{}", e.to_text());
            return;
        }
        match self.format {
            LogFormat::Text => match e.event {
                EventKind::RestartFailed
                | EventKind::Flapping
                | EventKind::R15
                | EventKind::Blind => {
                    tracing::warn!("{}", e.to_text())
                }
                _ => tracing::info!("{}", e.to_text()),
            },
            LogFormat::Json => {
                // The event itself, in the SPEC's shape, one object per line.
                use std::io::Write as _;
                let _ = writeln!(std::io::stdout().lock(), "{}", e.to_json());
            }
        }
        if e.event == EventKind::SamplesLost {
            Counters::add(&self.counters.samples_lost, e.count.unwrap_or(0));
        }
        if let Some(tx) = &self.notify_tx
            && tx.try_send(e.clone()).is_err()
        {
            Counters::add(&self.counters.events_dropped, 1);
        }
        if self.store_tx.try_send(e).is_err() {
            Counters::add(&self.counters.events_dropped, 1);
        }
    }
}
