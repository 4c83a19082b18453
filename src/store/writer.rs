//! The writer task: drains the journal channel in batches (one transaction each) and prunes
//! verdicts past the retention period.
//!
//! Store calls block, so each batch runs on the blocking pool; the channel keeps filling in
//! the meantime and the next batch is simply larger. When the database is unreachable
//! (PostgreSQL down or restarting) the batch in hand is kept and tried again on a new
//! connection with a growing pause (logged), while new records wait in the bounded channel;
//! what does not fit there is dropped and counted by [`super::Journal`]. Mail never waits.

use super::dispatch::{Handle, Store};
use super::journal::Journal;
use super::model::StoreError;
use crate::check::metrics::Metrics;
use crate::check::Record;
use crate::config::Location;
use crate::config::{OnUnavailable, StoreConfig};
use crate::dates::{now_ms, DAY_MS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Most records written in one transaction.
pub const BATCH: usize = 512;
/// How often old verdicts are pruned (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The first pause before connecting again, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The running writer: its journal handle, and a way to flush and stop it.
pub struct Writer {
    pub journal: Journal,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Writer {
    /// Writes what is queued (when the database is reachable), then stops.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Opens the store and starts its writer. At start-up a store that cannot be opened
/// refuses to start, except a database that cannot be reached with
/// `on_unavailable = "buffer"`: then the writer starts and connects in the background.
pub fn spawn_writer(
    location: &Location,
    config: &StoreConfig,
    metrics: Arc<Metrics>,
) -> Result<Writer, StoreError> {
    let handle = match Store::connect(location) {
        Ok(store) => Handle::with_store(location.clone(), store.with_host(&config.host)),
        Err(e) if e.is_connection() && config.on_unavailable == OnUnavailable::Buffer => {
            tracing::warn!(error = %e, store = %location,
                "verdict store unreachable at start; records are queued until it answers");
            metrics.store_disconnected();
            Handle::new(location.clone(), &config.host)
        }
        Err(e) => return Err(e),
    };
    let (tx, rx) = mpsc::channel(config.queue_size);
    let (stop, stop_rx) = watch::channel(false);
    let journal = Journal::new(tx, Arc::clone(&metrics));
    let task = tokio::spawn(run(
        Arc::new(handle),
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
    store: Arc<Handle>,
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
    let mut writer = BatchWriter {
        store,
        metrics,
        down_since: None,
    };
    loop {
        tokio::select! {
            n = rx.recv_many(&mut buf, BATCH) => {
                if n == 0 {
                    break;
                }
                writer.write(std::mem::take(&mut buf), &mut stop).await;
            }
            _ = prune.tick(), if retention_days > 0 => prune_now(&writer.store, retention_days).await,
            _ = stop.changed() => {
                // No new records; write what is queued.
                rx.close();
                while rx.recv_many(&mut buf, BATCH).await > 0 {
                    writer.write(std::mem::take(&mut buf), &mut stop).await;
                }
                break;
            }
        }
    }
}

/// Runs `f` on the store's connection on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: &Arc<Handle>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || store.with(f, StoreError::is_connection))
        .await
        .unwrap_or_else(|e| Err(StoreError::Config(format!("store task failed: {e}"))))
}

/// Deletes verdicts older than the retention period (on PostgreSQL, one host of the fleet
/// at a time).
async fn prune_now(store: &Arc<Handle>, retention_days: u32) {
    let before = now_ms() - i64::from(retention_days) * DAY_MS;
    match blocking(store, move |s| s.prune(before)).await {
        Ok(n) if n > 0 => tracing::info!(deleted = n, retention_days, "old verdicts pruned"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning the verdict store failed"),
    }
}

struct BatchWriter {
    store: Arc<Handle>,
    metrics: Arc<Metrics>,
    /// When the database stopped answering (for the log line when it is back).
    down_since: Option<std::time::Instant>,
}

impl BatchWriter {
    /// Writes one batch; while the database is unreachable, keeps it and tries again after
    /// a growing pause, until it is written or the writer is told to stop.
    async fn write(&mut self, batch: Vec<Record>, stop: &mut watch::Receiver<bool>) {
        let n = batch.len();
        let batch = Arc::new(batch);
        // The same token on every try: a commit whose answer was lost is not repeated.
        let token = batch_token();
        let mut pause = FIRST_BACKOFF;
        loop {
            let records = Arc::clone(&batch);
            let result = blocking(&self.store, move |s| s.insert_batch_once(&records, token)).await;
            match result {
                Ok(()) => {
                    self.metrics.store_written(n);
                    if let Some(since) = self.down_since.take() {
                        tracing::info!(down_for = ?since.elapsed(), "verdict store reachable again");
                    }
                    return;
                }
                Err(e) if e.is_connection() => {
                    if self.down_since.is_none() {
                        self.down_since = Some(std::time::Instant::now());
                        self.metrics.store_disconnected();
                    }
                    if *stop.borrow() {
                        self.metrics.store_failed(n);
                        tracing::warn!(error = %e, records = n,
                            "verdict store unreachable at shutdown; batch lost");
                        return;
                    }
                    tracing::warn!(error = %e, retry_in = ?pause, records = n,
                        "verdict store unreachable; records wait in the queue");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => {}
                    }
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    self.metrics.store_failed(n);
                    tracing::warn!(error = %e, records = n, "writing verdicts failed; batch lost");
                    return;
                }
            }
        }
    }
}

/// A random batch id (unique across the fleet's writers in practice: 64 random bits).
fn batch_token() -> i64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No randomness: fall back on the clock, still distinct between batches.
        return now_ms() ^ (std::process::id() as i64) << 40;
    }
    i64::from_ne_bytes(bytes)
}
