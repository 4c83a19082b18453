//! The abuse limits shared by a fleet (issue 22): AUTH failure counts and blocks, the
//! per-user hourly allowances and the networks users logged in from, in the PostgreSQL store
//! every host uses, so that N hosts together allow what one host allows.
//!
//! Each call is one atomic statement (an upsert that starts a new window when the old one is
//! over), timed by the database's clock. Calls run on one thread of their own holding one
//! connection; the caller waits at most `deadline` for the answer, and the server stops any
//! statement past it (`statement_timeout`). When the database is unreachable or late, the
//! answer comes from this host's own counts ([`Memory`], which every call also updates): the
//! limits then hold per host, as with SQLite, neither letting everything through nor locking
//! everyone out. Each such answer is counted (`authmilter_limits_local_total`); the change
//! to local counts and back is logged.

use super::connect;
use crate::check::metrics::Metrics;
use crate::config::PgTarget;
use crate::identity::limits::{Counts, Held, Key, Memory, Rule};
use postgres::Client;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a caller waits for the database before answering from memory.
pub const LIMITS_DEADLINE: Duration = Duration::from_millis(500);

/// Calls waiting for the thread; past this, callers answer from memory at once.
const QUEUE: usize = 256;

/// How long after a failed connection the thread tries again.
const RECONNECT: Duration = Duration::from_secs(5);

/// Rows not counting and not blocked for this long are deleted (hourly, by the thread).
const KEEP: &str = "1 day";

type Job = Box<dyn FnOnce(&mut Client) -> Result<(), postgres::Error> + Send>;

/// The counts in the PostgreSQL store, with this host's memory behind them.
pub struct PgCounts {
    jobs: Mutex<SyncSender<Job>>,
    memory: Memory,
    deadline: Duration,
    metrics: Option<Arc<Metrics>>,
    /// Whether the last call was answered from memory (for logging the changes only).
    local: AtomicBool,
}

impl PgCounts {
    /// Starts the thread that connects to `target` (the store's own migrations made the
    /// tables) and answers the calls.
    pub fn start(target: &PgTarget, deadline: Duration, metrics: Option<Arc<Metrics>>) -> PgCounts {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let target = target.clone();
        std::thread::Builder::new()
            .name("limits-pg".into())
            .spawn(move || serve(&target, deadline, rx))
            .expect("spawning the limits thread");
        PgCounts {
            jobs: Mutex::new(tx),
            memory: Memory::default(),
            deadline,
            metrics,
            local: AtomicBool::new(false),
        }
    }

    /// Runs `query` on the database thread and waits for its answer until the deadline;
    /// `None` when none came (then the caller answers from memory).
    fn ask<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Option<T> {
        let (reply_tx, reply_rx) = sync_channel(1);
        let job: Job = Box::new(move |client| {
            let out = query(client)?;
            let _ = reply_tx.send(out);
            Ok(())
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_send(job);
        let answer = match sent {
            Ok(()) => off_the_runtime(|| reply_rx.recv_timeout(self.deadline).ok()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => None,
        };
        let was_local = self.local.swap(answer.is_none(), Relaxed);
        if answer.is_none() {
            if let Some(m) = &self.metrics {
                m.limits_local();
            }
            if !was_local {
                tracing::warn!(
                    "abuse limits: the shared store is unreachable or late; counting on this host alone"
                );
            }
        } else if was_local {
            tracing::info!("abuse limits: the shared store answers again; counting fleet-wide");
        }
        answer
    }
}

/// The database thread: one connection (re-made when lost), jobs in order, old rows purged.
fn serve(target: &PgTarget, deadline: Duration, jobs: Receiver<Job>) {
    let mut client: Option<Client> = None;
    let mut last_try: Option<Instant> = None;
    let mut last_purge = Instant::now();
    while let Ok(job) = jobs.recv() {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = None;
            if last_try.is_some_and(|t| t.elapsed() < RECONNECT) {
                continue; // the caller answers from memory
            }
            last_try = Some(Instant::now());
            match connect::client(target).and_then(|mut c| {
                let ms = deadline.as_millis().max(1);
                c.batch_execute(&format!("SET statement_timeout = {ms}"))?;
                Ok(c)
            }) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::debug!(error = %e, "abuse limits: connecting to the shared store");
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        if let Err(e) = job(c) {
            tracing::debug!(error = %e, "abuse limits: shared store query");
        }
        if last_purge.elapsed() >= Duration::from_secs(3600) {
            last_purge = Instant::now();
            let purge = format!(
                "DELETE FROM auth_limits WHERE window_start < now() - interval '{KEEP}' \
                 AND coalesce(blocked_until <= now(), true)"
            );
            if let Err(e) = c.batch_execute(&purge) {
                tracing::debug!(error = %e, "abuse limits: purging old rows");
            }
        }
    }
}

fn key_text(key: &Key) -> String {
    match key {
        Key::Network(ip) => format!("net:{ip}"),
        Key::User(u) => format!("user:{u}"),
        Key::Messages(u) => format!("msg:{u}"),
        Key::Recipients(u) => format!("rcpt:{u}"),
        Key::Reports(d) => format!("ruf:{d}"),
    }
}

/// The old window is over and holds no block: the call starts a new one.
const OVER: &str = "(l.window_start <= now() - $2::float8 * interval '1 second' \
                    AND coalesce(l.blocked_until <= now(), true))";

impl Counts for PgCounts {
    fn fail(&self, key: &Key, rule: Rule, now: Instant) -> bool {
        let local = self.memory.fail(key, rule, now);
        let (key, window, max, block) = (
            key_text(key),
            rule.window.as_secs_f64(),
            i32::try_from(rule.max).unwrap_or(i32::MAX),
            rule.block.as_secs_f64(),
        );
        // `blocked_until` equals this statement's `now() + block` only when it started the
        // block (`now()` is fixed for the statement).
        let sql = format!(
            "INSERT INTO auth_limits AS l (key, window_start, count, blocked_until) \
             VALUES ($1, now(), 1, CASE WHEN 1 >= $3 THEN now() + $4::float8 * interval '1 second' END) \
             ON CONFLICT (key) DO UPDATE SET \
               window_start = CASE WHEN {OVER} THEN now() ELSE l.window_start END, \
               count = CASE WHEN {OVER} THEN 1 ELSE l.count + 1 END, \
               blocked_until = CASE \
                 WHEN (CASE WHEN {OVER} THEN 1 ELSE l.count + 1 END) >= $3 \
                   AND coalesce(l.blocked_until <= now(), true) \
                 THEN now() + $4::float8 * interval '1 second' ELSE l.blocked_until END \
             RETURNING coalesce(blocked_until = now() + $4::float8 * interval '1 second', false)"
        );
        self.ask(move |c| {
            let row = c.query_one(&sql, &[&key, &window, &max, &block])?;
            Ok(row.get::<_, bool>(0))
        })
        .unwrap_or(local)
    }

    fn held(&self, key: &Key, now: Instant) -> Option<Held> {
        let local = self.memory.held(key, now);
        let key = key_text(key);
        self.ask(move |c| {
            let row = c.query_opt(
                "SELECT coalesce(blocked_until > now(), false) FROM auth_limits WHERE key = $1",
                &[&key],
            )?;
            Ok(row
                .is_some_and(|r| r.get::<_, bool>(0))
                .then_some(Held::Own))
        })
        .unwrap_or(local)
    }

    fn take(&self, key: &Key, rule: Rule, now: Instant) -> bool {
        let local = self.memory.take(key, rule, now);
        let (key, window, max) = (
            key_text(key),
            rule.window.as_secs_f64(),
            i32::try_from(rule.max).unwrap_or(i32::MAX),
        );
        // No row comes back when the window's allowance is spent (the update's WHERE).
        let sql = format!(
            "INSERT INTO auth_limits AS l (key, window_start, count) \
             SELECT $1, now(), 1 WHERE $3 >= 1 \
             ON CONFLICT (key) DO UPDATE SET \
               window_start = CASE WHEN {OVER} THEN now() ELSE l.window_start END, \
               count = CASE WHEN {OVER} THEN 1 ELSE l.count + 1 END \
             WHERE {OVER} OR l.count < $3 \
             RETURNING 1"
        );
        self.ask(move |c| Ok(c.query_opt(&sql, &[&key, &window, &max])?.is_some()))
            .unwrap_or(local)
    }

    fn remember(&self, user: &str, network: IpAddr, capacity: usize, now: Instant) {
        self.memory.remember(user, network, capacity, now);
        let (user, network) = (user.to_string(), network.to_string());
        // Waited for like the others, so that a login is known fleet-wide once it is over.
        let _ = self.ask(move |c| {
            c.execute(
                "INSERT INTO auth_known (login, network, at) VALUES ($1, $2, now()) \
                 ON CONFLICT (login, network) DO UPDATE SET at = now()",
                &[&user, &network],
            )
        });
    }

    fn known(&self, user: &str, network: IpAddr, max_age: Duration, now: Instant) -> bool {
        let local = self.memory.known(user, network, max_age, now);
        let (user, network, age) = (user.to_string(), network.to_string(), max_age.as_secs_f64());
        self.ask(move |c| {
            let row = c.query_opt(
                "SELECT at > now() - $3::float8 * interval '1 second' FROM auth_known \
                 WHERE login = $1 AND network = $2",
                &[&user, &network, &age],
            )?;
            Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
        })
        .unwrap_or(local)
    }
}

/// Waits for `wait`; on a worker of a multi-threaded tokio runtime through `block_in_place`,
/// so the worker's other tasks (other SMTP sessions, milter sessions) move to another thread
/// while this one waits for the database (the SMTP session checks the limits synchronously;
/// the wait is bounded by the deadline).
fn off_the_runtime<T>(wait: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}
