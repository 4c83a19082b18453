//! The hot path's side of the verdict journal: [`Journal::record`] hands a record to the
//! writer's bounded channel and never waits; when the channel is full the record is dropped
//! and counted (`authmilter_store_dropped_total`).

use crate::auth::Outcome;
use crate::auth::Transport;
use crate::check::metrics::Metrics;
use crate::check::Record;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The hot path's handle: cheap to clone; recording never blocks.
#[derive(Clone)]
pub struct Journal {
    tx: Option<mpsc::Sender<Record>>,
    metrics: Arc<Metrics>,
}

impl Journal {
    /// Metrics only, no store.
    pub fn disabled(metrics: Arc<Metrics>) -> Journal {
        Journal { tx: None, metrics }
    }

    pub fn new(tx: mpsc::Sender<Record>, metrics: Arc<Metrics>) -> Journal {
        Journal {
            tx: Some(tx),
            metrics,
        }
    }

    /// Whether records go to a store (otherwise they only feed the metrics).
    pub fn is_storing(&self) -> bool {
        self.tx.is_some()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Counts the verdict in the metrics and hands the record to the writer, or drops it
    /// (counted) when the writer is behind.
    pub fn record(&self, record: Record, outcome: &Outcome) {
        self.metrics
            .observe_verdict(record.transport, &record.verdict, record.duration, outcome);
        self.send(record);
    }

    /// As [`Journal::record`], building the record (with its JSON document) only when a store
    /// will take it: without one, a verdict costs the metrics' atomic adds and nothing more.
    pub fn record_with(
        &self,
        transport: Transport,
        verdict: &str,
        duration: Duration,
        outcome: &Outcome,
        build: impl FnOnce() -> Record,
    ) {
        self.metrics
            .observe_verdict(transport, verdict, duration, outcome);
        if self.is_storing() {
            self.send(build());
        }
    }

    fn send(&self, record: Record) {
        if let Some(tx) = &self.tx {
            if tx.try_send(record).is_err() {
                self.metrics.store_dropped();
            }
        }
    }

    /// Records waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx
            .as_ref()
            .map(|tx| tx.max_capacity() - tx.capacity())
            .unwrap_or(0)
    }
}
