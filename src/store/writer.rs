//! The writer task: drains the journal channel in batches (one transaction each) and prunes
//! verdicts past the retention period.
//!
//! SQLite calls block, so each batch runs on the blocking pool; the channel keeps filling in
//! the meantime and the next batch is simply larger.

use super::{Journal, Record, Store, StoreError};
use crate::config::StoreConfig;
use crate::dates::{now_ms, DAY_MS};
use crate::metrics::Metrics;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Most records written in one transaction.
const BATCH: usize = 512;
/// How often old verdicts are pruned (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The running writer: its journal handle, and a way to flush and stop it.
pub struct Writer {
    pub journal: Journal,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Writer {
    /// Writes what is queued, then stops.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Opens the store and starts its writer (at start-up: an unusable file refuses to start).
pub fn spawn_writer(
    path: &std::path::Path,
    config: &StoreConfig,
    metrics: Arc<Metrics>,
) -> Result<Writer, StoreError> {
    let store = Store::open(path)?;
    let (tx, rx) = mpsc::channel(config.queue_size);
    let (stop, stop_rx) = watch::channel(false);
    let journal = Journal::new(tx, Arc::clone(&metrics));
    let task = tokio::spawn(run(
        Arc::new(Mutex::new(store)),
        rx,
        stop_rx,
        config.retention_days,
        metrics,
    ));
    Ok(Writer {
        journal,
        stop,
        task,
    })
}

async fn run(
    store: Arc<Mutex<Store>>,
    mut rx: mpsc::Receiver<Record>,
    mut stop: watch::Receiver<bool>,
    retention_days: u32,
    metrics: Arc<Metrics>,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Prune once before taking records (the interval's first tick is immediate, and select!
    // would otherwise race it against the first batch or a quick shutdown).
    prune.tick().await;
    if retention_days > 0 {
        prune_now(&store, retention_days).await;
    }
    let mut buf = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut buf, BATCH) => {
                if n == 0 {
                    break;
                }
                write(&store, std::mem::take(&mut buf), &metrics).await;
            }
            _ = prune.tick(), if retention_days > 0 => prune_now(&store, retention_days).await,
            _ = stop.changed() => {
                // No new records; write what is queued.
                rx.close();
                while rx.recv_many(&mut buf, BATCH).await > 0 {
                    write(&store, std::mem::take(&mut buf), &metrics).await;
                }
                break;
            }
        }
    }
}

/// Deletes verdicts older than the retention period, off the async threads.
async fn prune_now(store: &Arc<Mutex<Store>>, retention_days: u32) {
    let before = now_ms() - i64::from(retention_days) * DAY_MS;
    let store = Arc::clone(store);
    let pruned = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prune(before)
    })
    .await;
    match pruned {
        Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, retention_days, "old verdicts pruned"),
        Ok(Err(e)) => tracing::warn!(error = %e, "pruning the verdict store failed"),
        _ => {}
    }
}

async fn write(store: &Arc<Mutex<Store>>, batch: Vec<Record>, metrics: &Arc<Metrics>) {
    let store = Arc::clone(store);
    let n = batch.len();
    let written = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert_batch(&batch)
    })
    .await;
    match written {
        Ok(Ok(())) => metrics.store_written(n),
        Ok(Err(e)) => {
            metrics.store_failed(n);
            tracing::warn!(error = %e, records = n, "writing verdicts failed; batch lost");
        }
        Err(e) => {
            metrics.store_failed(n);
            tracing::error!(error = %e, "verdict writer panicked");
        }
    }
}
