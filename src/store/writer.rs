//! The writer task: drains the journal channel in batches (one transaction each) and prunes
//! verdicts past the retention period, hourly and at start, in steps of at most
//! [`PRUNE_STEP`] verdicts that take turns with the batches (a prune of a million rows never
//! holds records back for more than one step).
//!
//! Store calls block, so each batch runs on the blocking pool; the channel keeps filling in
//! the meantime and the next batch is simply larger. When the database is unreachable
//! (PostgreSQL down or restarting):
//! - with a spool (`store.spool_path`), the batch and every one after it go to the local
//!   spool ([`super::spool`]) while the spool holds anything, so order is kept; the spool is
//!   replayed, oldest first and each batch under its first token (exactly once), as soon as
//!   the database answers, also after a restart of the daemon. Past the spool's bound,
//!   records are dropped and counted.
//! - without one, the batch in hand is kept and tried again on a new connection with a
//!   growing pause (logged), while new records wait in the bounded channel; what does not
//!   fit there is dropped and counted by [`super::Journal`].
//!
//! Mail never waits. A stop has a deadline ([`Writer::stop_by`]): every store call races it.

use super::dispatch::{Handle, Store, PRUNE_STEP};
use super::journal::Journal;
use super::model::StoreError;
use super::spool::{Spool, SpoolError};
use crate::check::metrics::Metrics;
use crate::check::Record;
use crate::config::Location;
use crate::config::{OnUnavailable, StoreConfig};
use crate::dates::{now_ms, DAY_MS};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most records written in one transaction.
pub const BATCH: usize = 512;
/// How often old verdicts are pruned, and PostgreSQL's coming days' partitions made (and
/// once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The first pause before connecting again, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Spooled batches replayed in a row before new records get a turn.
const REPLAY_RUN: usize = 8;

/// The running writer: its journal handle, and a way to stop it by a deadline.
pub struct Writer {
    pub journal: Journal,
    /// `None` while running; the time by which to be done once told to stop. The writer
    /// reads this state whenever it decides (rather than waiting for a notification it may
    /// already have consumed), so a stop is never missed.
    stop: watch::Sender<Option<Instant>>,
    task: Option<JoinHandle<()>>,
}

impl Writer {
    /// Tells the writer to take no new records and write what is queued by `deadline` (an
    /// earlier deadline replaces a later one, as on a second signal). What is not written
    /// by then, or cannot be because the database is unreachable, is counted as failed.
    pub fn stop_by(&self, deadline: Instant) {
        self.stop.send_if_modified(|current| match *current {
            Some(old) if old <= deadline => false,
            _ => {
                *current = Some(deadline);
                true
            }
        });
    }

    /// Writes what is queued within `grace`, then stops (counting what is left as failed).
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop_by(Instant::now() + grace);
        self.finished().await;
    }

    /// Waits until the writer has finished (it does by its deadline plus [`LAST_WORDS`]
    /// once told to stop).
    pub async fn finished(&mut self) {
        if let Some(task) = &mut self.task {
            let _ = task.await;
            self.task = None;
        }
    }
}

/// How long the writer may take, past its deadline, to account for what it holds.
pub const LAST_WORDS: Duration = Duration::from_secs(1);

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
    // The spool serves an unreachable database: a SQLite store is a local file already.
    let spool = match (&config.spool_path, location) {
        (Some(path), Location::Postgres(_)) => {
            let spool = Spool::open(path, config.spool_max_bytes)
                .map_err(|e| StoreError::Config(e.to_string()))?;
            if !spool.is_empty() {
                tracing::info!(records = spool.records(), spool = %path.display(),
                    "verdicts spooled earlier; replayed once the store answers");
            }
            metrics.set_spool_bytes(spool.bytes());
            Some(spool)
        }
        _ => None,
    };
    let (tx, rx) = mpsc::channel(config.queue_size);
    let (stop, stop_rx) = watch::channel(None);
    let journal = Journal::new(tx, Arc::clone(&metrics));
    let writer = BatchWriter {
        store: Arc::new(handle),
        metrics,
        down_since: None,
        backlog: spool.as_ref().is_some_and(|s| !s.is_empty()),
        spool: spool.map(|s| Arc::new(Mutex::new(s))),
        retry_at: Instant::now(),
        pause: FIRST_BACKOFF,
    };
    let task = tokio::spawn(run(writer, rx, stop_rx, config.retention_days));
    Ok(Writer {
        journal,
        stop,
        task: Some(task),
    })
}

type StopRx = watch::Receiver<Option<Instant>>;

/// Resolves once the writer has been told to stop (at once if it already was; a writer
/// whose [`Writer`] is gone stops too).
async fn stopping(stop: &mut StopRx) {
    let _ = stop.wait_for(Option::is_some).await;
}

/// Resolves when the stop deadline has passed; never before a stop.
async fn deadline_passed(stop: &mut StopRx) {
    loop {
        let deadline = match stop.wait_for(Option::is_some).await {
            Ok(d) => *d,
            Err(_) => return,
        };
        let Some(deadline) = deadline else { return };
        // A deadline moved earlier (a second signal) wakes the wait.
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return,
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

/// `work`, unless the stop deadline passes first (`None`; a store call on the blocking pool
/// is then left to finish on its own: the daemon does not wait for it).
async fn by_deadline<T>(
    stop: &mut StopRx,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = deadline_passed(stop) => None,
        out = work => Some(out),
    }
}

async fn run(
    mut writer: BatchWriter,
    mut rx: mpsc::Receiver<Record>,
    mut stop: StopRx,
    retention_days: u32,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Start pruning before taking records (the interval's first tick is immediate, and
    // select! would otherwise race it against the first batch or a quick shutdown).
    prune.tick().await;
    let mut pruning = prune_next(&writer.store, &mut stop, Pruning::start(retention_days)).await;
    let mut buf = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            biased;
            () = stopping(&mut stop) => break,
            // Before new records: under steady mail they are always ready.
            () = tokio::time::sleep_until(writer.retry_at), if writer.backlog => {
                writer.replay(&mut stop).await;
            }
            n = rx.recv_many(&mut buf, BATCH) => {
                if n == 0 {
                    break;
                }
                writer.write(std::mem::take(&mut buf), &mut stop).await;
                // Batches and retention steps take turns: a long prune holds no record
                // back for more than one step.
                if let Some(p) = pruning.take() {
                    pruning = prune_next(&writer.store, &mut stop, p).await;
                }
            }
            _ = prune.tick(), if pruning.is_none() => {
                pruning = prune_next(&writer.store, &mut stop, Pruning::start(retention_days)).await;
            }
            // No records waiting: the next step at once.
            () = std::future::ready(()), if pruning.is_some() => {
                if let Some(p) = pruning.take() {
                    pruning = prune_next(&writer.store, &mut stop, p).await;
                }
            }
        }
    }
    // No new records; write what is queued, by the deadline (or spool it: the spool is
    // replayed by the next run).
    rx.close();
    while rx.recv_many(&mut buf, BATCH).await > 0 {
        writer.write(std::mem::take(&mut buf), &mut stop).await;
    }
    let metrics = &writer.metrics;
    let spooled = match &writer.spool {
        Some(spool) => lock(spool).records(),
        None => 0,
    };
    tracing::info!(
        written = metrics.store_counts().0,
        failed = metrics.store_failures(),
        dropped = metrics.dropped(),
        spooled,
        "verdict store writer stopped"
    );
}

fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` on the spool on the blocking pool (it waits on fsync).
async fn on_spool<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    let spool = Arc::clone(spool);
    tokio::task::spawn_blocking(move || f(&mut lock(&spool)))
        .await
        .unwrap_or_else(|e| Err(SpoolError::Unfinished(format!("task failed: {e}"))))
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

/// A prune under way: its cutoff and the verdicts its steps deleted so far.
struct Pruning {
    before: i64,
    deleted: usize,
    retention_days: u32,
}

impl Pruning {
    /// A prune of the verdicts older than the retention period, from now (with none, a
    /// step that deletes nothing: on PostgreSQL it still makes the coming days' partitions).
    fn start(retention_days: u32) -> Pruning {
        let before = match retention_days {
            0 => i64::MIN,
            days => now_ms() - i64::from(days) * DAY_MS,
        };
        Pruning {
            before,
            deleted: 0,
            retention_days,
        }
    }
}

/// Runs one step of `p` (at most [`PRUNE_STEP`] verdicts; on PostgreSQL, one host of the
/// fleet at a time); returns the prune while old verdicts are left. A step that fails ends
/// the prune until the next hour's; the stop deadline ends it too.
async fn prune_next(store: &Arc<Handle>, stop: &mut StopRx, mut p: Pruning) -> Option<Pruning> {
    let before = p.before;
    let step = blocking(store, move |s| s.prune_step(before, PRUNE_STEP));
    match by_deadline(stop, step).await? {
        Ok(step) => {
            p.deleted += step.deleted;
            if !step.done {
                return Some(p);
            }
            if p.deleted > 0 {
                tracing::info!(
                    deleted = p.deleted,
                    retention_days = p.retention_days,
                    "old verdicts pruned"
                );
            }
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "pruning the verdict store failed");
            None
        }
    }
}

struct BatchWriter {
    store: Arc<Handle>,
    metrics: Arc<Metrics>,
    /// When the database stopped answering (for the log line when it is back).
    down_since: Option<std::time::Instant>,
    spool: Option<Arc<Mutex<Spool>>>,
    /// The spool holds records: new ones go behind them, and it is replayed at `retry_at`.
    backlog: bool,
    retry_at: Instant,
    /// The next pause after a failed replay (doubling up to [`MAX_BACKOFF`]).
    pause: Duration,
}

impl BatchWriter {
    /// Writes one batch. While the database is unreachable: to the spool when there is
    /// one; otherwise the batch is kept and tried again after a growing pause, until it is
    /// written or the writer is told to stop. Once stopping, an unreachable database or the
    /// deadline ends the tries: the batch is spooled, or counted as failed.
    async fn write(&mut self, batch: Vec<Record>, stop: &mut StopRx) {
        // The same token on every try (and in the spool): a commit whose answer was lost is
        // not repeated.
        let token = batch_token();
        if self.backlog {
            // Older records wait in the spool: this batch goes behind them.
            return self.spool_batch(token, batch, stop).await;
        }
        let n = batch.len();
        let batch = Arc::new(batch);
        let mut pause = FIRST_BACKOFF;
        loop {
            let records = Arc::clone(&batch);
            let insert = blocking(&self.store, move |s| s.insert_batch_once(&records, token));
            let Some(result) = by_deadline(stop, insert).await else {
                tracing::warn!(
                    records = n,
                    "verdict store did not answer by the end of the grace period"
                );
                return self.give_up(token, batch, stop).await;
            };
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
                    if self.spool.is_some() {
                        tracing::warn!(error = %e, records = n,
                            "verdict store unreachable; records go to the spool");
                        self.backlog = true;
                        self.pause = FIRST_BACKOFF;
                        self.retry_at = Instant::now() + self.pause;
                        return self.give_up(token, batch, stop).await;
                    }
                    if stop.borrow().is_some() || stop.has_changed().is_err() {
                        tracing::warn!(error = %e, records = n,
                            "verdict store unreachable at shutdown");
                        return self.give_up(token, batch, stop).await;
                    }
                    tracing::warn!(error = %e, retry_in = ?pause, records = n,
                        "verdict store unreachable; records wait in the queue");
                    // The pause ends early on a stop; the state is read again above, so a
                    // stop that came during the pause is seen.
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stopping(stop) => {}
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

    /// A batch the database did not take: to the spool, or lost (counted).
    async fn give_up(&mut self, token: i64, batch: Arc<Vec<Record>>, stop: &mut StopRx) {
        if self.spool.is_some() {
            let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| shared.as_ref().clone());
            return self.spool_batch(token, batch, stop).await;
        }
        self.metrics.store_failed(batch.len());
        tracing::warn!(records = batch.len(), "verdict batch lost");
    }

    /// Appends a batch to the spool (by the stop deadline and [`LAST_WORDS`] past it).
    async fn spool_batch(&mut self, token: i64, batch: Vec<Record>, stop: &mut StopRx) {
        let n = batch.len();
        let Some(spool) = &self.spool else {
            self.metrics.store_failed(n);
            return;
        };
        let push = on_spool(spool, move |s| s.push(token, &batch).map(|()| s.bytes()));
        let pushed = tokio::select! {
            biased;
            () = last_words(stop) => Err(SpoolError::Unfinished("no answer in time".into())),
            out = push => out,
        };
        match pushed {
            Ok(bytes) => self.metrics.store_spooled(n, bytes),
            Err(e @ SpoolError::Full { .. }) => {
                self.metrics.store_dropped_many(n);
                tracing::warn!(error = %e, "verdict store unreachable and the spool full");
            }
            Err(e) => {
                self.metrics.store_failed(n);
                tracing::warn!(error = %e, records = n, "spooling verdicts failed; batch lost");
            }
        }
    }

    /// Replays the oldest spooled batches into the database, each under its first token;
    /// a database still unreachable sets the next try after a growing pause.
    async fn replay(&mut self, stop: &mut StopRx) {
        let Some(spool) = self.spool.clone() else {
            self.backlog = false;
            return;
        };
        for _ in 0..REPLAY_RUN {
            let front = match by_deadline(stop, on_spool(&spool, |s| s.front())).await {
                Some(Ok(front)) => front,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "reading the spool failed");
                    return self.replay_later();
                }
                None => return,
            };
            let Some(batch) = front else {
                self.backlog = false;
                self.pause = FIRST_BACKOFF;
                self.metrics.set_spool_bytes(lock(&spool).bytes());
                tracing::info!("spool replayed: the verdict store holds every spooled record");
                return;
            };
            let Some(records) = batch.records else {
                self.metrics.store_failed(batch.count);
                tracing::error!(
                    records = batch.count,
                    "a spooled batch cannot be read; lost"
                );
                let _ = on_spool(&spool, move |s| s.pop(batch.seq)).await;
                continue;
            };
            let n = records.len();
            let token = batch.token;
            let insert = blocking(&self.store, move |s| s.insert_batch_once(&records, token));
            match by_deadline(stop, insert).await {
                Some(Ok(())) => {
                    if let Some(since) = self.down_since.take() {
                        tracing::info!(down_for = ?since.elapsed(),
                            "verdict store reachable again; replaying the spool");
                    }
                    self.metrics.store_written(n);
                    match on_spool(&spool, move |s| s.pop(batch.seq).map(|()| s.bytes())).await {
                        Ok(bytes) => self.metrics.store_replayed(n, bytes),
                        Err(e) => {
                            // Replayed again later under the same token: not stored twice.
                            tracing::error!(error = %e, "taking a replayed batch out of the spool failed");
                            return self.replay_later();
                        }
                    }
                }
                Some(Err(e)) if e.is_connection() => {
                    if self.down_since.is_none() {
                        self.down_since = Some(std::time::Instant::now());
                        self.metrics.store_disconnected();
                    }
                    tracing::warn!(error = %e, retry_in = ?self.pause,
                        spooled = lock(&spool).records(),
                        "verdict store unreachable; records wait in the spool");
                    return self.replay_later();
                }
                Some(Err(e)) => {
                    self.metrics.store_failed(n);
                    tracing::warn!(error = %e, records = n,
                        "the verdict store refused a spooled batch; batch lost");
                    let _ = on_spool(&spool, move |s| s.pop(batch.seq)).await;
                }
                // The stop deadline: the spool keeps the batch for the next run.
                None => return,
            }
        }
        // More to replay: go on once new records had their turn.
        self.retry_at = Instant::now();
    }

    fn replay_later(&mut self) {
        self.retry_at = Instant::now() + self.pause;
        self.pause = (self.pause * 2).min(MAX_BACKOFF);
    }
}

/// Resolves [`LAST_WORDS`] past the stop deadline (half of it, to leave the server the
/// rest): the spool, local, gets that long to take what the database did not.
async fn last_words(stop: &mut StopRx) {
    deadline_passed(stop).await;
    tokio::time::sleep(LAST_WORDS / 2).await;
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
