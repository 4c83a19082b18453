//! The process-wide metrics registry: verdicts by transport, results per method, the
//! end-of-message latency, the SMTP front end's, the store writer's and the report inbox's
//! counters, written out in the Prometheus text exposition format.
//!
//! It lives with the end-of-message step because it counts that step's outcomes (auth's
//! `Outcome`, `Transport` and the in-flight `Budget`, all below this floor), and everything
//! that feeds it (store, report, runtime, the doors) sits above. The primitives it is built
//! from (histograms, family headers) are in the ground-floor `metrics` module, which imports
//! nothing, so the resolver's counters use them without reaching up to auth.
//!
//! The text exposition (`/metrics`) is written in [`render`]. The hot path touches only
//! relaxed atomic adds: [`Metrics::observe_verdict`] once per message, the connection gauge
//! once per connection.

use crate::auth::budget::Budget;
use crate::auth::{AuthResult, Outcome, Transport};
use crate::config::default_max_inflight_bytes;
use crate::metrics::Histogram;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

mod render;

const ACTIONS: [&str; 4] = ["accept", "quarantine", "tempfail", "reject"];
const METHODS: [&str; 4] = ["spf", "dkim", "arc", "dmarc"];
const RESULTS: [AuthResult; 7] = [
    AuthResult::Pass,
    AuthResult::Fail,
    AuthResult::Softfail,
    AuthResult::Neutral,
    AuthResult::None,
    AuthResult::Temperror,
    AuthResult::Permerror,
];
/// Process-wide counters; one per server, shared by every session and the API. Also holds
/// the memory budget for messages in flight, which every door charges and `/metrics` shows.
#[derive(Default)]
pub struct Metrics {
    inflight: InflightBudget,
    smtp_stressed: AtomicI64,
    smtp_stress_episodes: AtomicU64,
    /// Connections refused at accept: over the total, per-address or per-network limit.
    smtp_refused: [AtomicU64; 3],
    /// Sessions ended for making no progress: a timeout, or too many junk commands.
    smtp_cut: [AtomicU64; 2],
    /// AUTH attempts by result.
    smtp_auth: [AtomicU64; 5],
    /// AUTH blocks begun, by scope (client address, user name).
    smtp_auth_blocks: [AtomicU64; 2],
    /// AUTH attempts refused with 421 because a block was in force.
    smtp_auth_blocked: AtomicU64,
    /// Submissions refused: sender not owned, From not owned, hourly messages, recipients.
    smtp_submission_refused: [AtomicU64; 4],
    messages: [[AtomicU64; ACTIONS.len()]; 3],
    results: [[AtomicU64; RESULTS.len()]; METHODS.len()],
    eom: [Histogram; 3],
    open_connections: AtomicI64,
    store_written: AtomicU64,
    store_batches: AtomicU64,
    store_dropped: AtomicU64,
    store_failed: AtomicU64,
    /// Times the writer lost its database connection (PostgreSQL) and began reconnecting.
    store_disconnects: AtomicU64,
    /// Abuse-limit calls answered from this host's memory: the shared store was unreachable
    /// or late.
    limits_local: AtomicU64,
    /// Records put in the local spool while the database was unreachable, and taken out of
    /// it into the database; the spool's encoded size now.
    store_spooled: AtomicU64,
    store_replayed: AtomicU64,
    store_spool_bytes: AtomicU64,
    /// DMARC reports received, by [`ReportIn`].
    reports_in: [AtomicU64; REPORTS_IN.len()],
}

/// What became of a DMARC report received by mail (the `result` label).
#[derive(Debug, Clone, Copy)]
pub enum ReportIn {
    Stored = 0,
    Duplicate = 1,
    /// About a domain we do not own, and `reports.foreign = "drop"`.
    Dropped = 2,
    Refused = 3,
    /// The store failed.
    Failed = 4,
    /// A message never reached the importer: queue full, memory budget spent, no store.
    Lost = 5,
}

const REPORTS_IN: [&str; 6] = [
    "stored",
    "duplicate",
    "dropped",
    "refused",
    "failed",
    "lost",
];

/// Why an SMTP connection was refused at accept (the `reason` label).
#[derive(Debug, Clone, Copy)]
pub enum SmtpRefusal {
    Total = 0,
    Address = 1,
    Network = 2,
}

const SMTP_REFUSALS: [&str; 3] = ["total", "address", "network"];

/// Why an SMTP session was ended for making no progress (the `reason` label).
#[derive(Debug, Clone, Copy)]
pub enum SmtpCut {
    Timeout = 0,
    Junk = 1,
}

const SMTP_CUTS: [&str; 2] = ["timeout", "junk"];

/// How an AUTH attempt ended (the `result` label).
#[derive(Debug, Clone, Copy)]
pub enum SmtpAuthResult {
    Success = 0,
    /// Wrong credentials (535).
    Failure = 1,
    /// The back end could not answer (454).
    Tempfail = 2,
    /// Not base64, or an over-long line (501, 500).
    Malformed = 3,
    /// The client sent `*` (501).
    Cancelled = 4,
}

const AUTH_RESULTS: [&str; 5] = ["success", "failure", "tempfail", "malformed", "cancelled"];

/// Which failure count started an AUTH block (the `scope` label).
#[derive(Debug, Clone, Copy)]
pub enum AuthBlockScope {
    Address = 0,
    User = 1,
}

const AUTH_BLOCK_SCOPES: [&str; 2] = ["address", "user"];

/// Why a submission was refused (the `reason` label).
#[derive(Debug, Clone, Copy)]
pub enum SubmissionRefusal {
    /// The envelope sender is not the user's (553 at MAIL).
    Sender = 0,
    /// The From address is not the user's (550 at end of DATA).
    From = 1,
    /// Messages per hour spent (451 4.7.1).
    Messages = 2,
    /// Recipients per hour spent (452 4.5.3).
    Recipients = 3,
}

const SUBMISSION_REFUSALS: [&str; 4] = ["sender", "from", "messages", "recipients"];

/// The budget, defaulting to [`default_max_inflight_bytes`] until the configuration says.
struct InflightBudget(Arc<Budget>);

impl Default for InflightBudget {
    fn default() -> Self {
        InflightBudget(Budget::new(default_max_inflight_bytes()))
    }
}

/// Decrements the open-connection gauge when the connection ends, however it ends.
pub struct ConnectionGuard<'a>(&'a Metrics);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Relaxed);
    }
}

fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Milter => 0,
        Transport::Smtp => 1,
        Transport::Http => 2,
    }
}

impl Metrics {
    /// Counts one verdict: by transport and action, each method's results, and the time the
    /// end-of-message check took.
    pub fn observe_verdict(
        &self,
        transport: Transport,
        verdict: &str,
        duration: Duration,
        outcome: &Outcome,
    ) {
        let t = transport_index(transport);
        if let Some(a) = ACTIONS.iter().position(|a| *a == verdict) {
            self.messages[t][a].fetch_add(1, Relaxed);
        }
        self.eom[t].observe(duration);
        let count = |method: usize, result: AuthResult| {
            if let Some(r) = RESULTS.iter().position(|&x| x == result) {
                self.results[method][r].fetch_add(1, Relaxed);
            }
        };
        if let Some(spf) = &outcome.spf {
            count(0, spf.mail_from.result);
        }
        for d in &outcome.dkim {
            count(1, d.result);
        }
        if let Some(arc) = &outcome.arc {
            count(2, arc.result);
        }
        if let Some(dmarc) = &outcome.dmarc {
            count(3, dmarc.result);
        }
    }

    /// The memory budget for messages in flight (`limits.max_inflight_bytes`).
    pub fn inflight(&self) -> &Arc<Budget> {
        &self.inflight.0
    }

    /// The SMTP front end went under stress, or came out of it.
    pub fn smtp_stress(&self, on: bool) {
        self.smtp_stressed.store(i64::from(on), Relaxed);
        if on {
            self.smtp_stress_episodes.fetch_add(1, Relaxed);
        }
    }

    /// An SMTP connection refused at accept.
    pub fn smtp_refused(&self, why: SmtpRefusal) {
        self.smtp_refused[why as usize].fetch_add(1, Relaxed);
    }

    /// An SMTP session ended because it made no progress.
    pub fn smtp_cut(&self, why: SmtpCut) {
        self.smtp_cut[why as usize].fetch_add(1, Relaxed);
    }

    pub fn smtp_auth(&self, result: SmtpAuthResult) {
        self.smtp_auth[result as usize].fetch_add(1, Relaxed);
    }

    pub fn smtp_auth_block(&self, scope: AuthBlockScope) {
        self.smtp_auth_blocks[scope as usize].fetch_add(1, Relaxed);
    }

    pub fn smtp_auth_blocked(&self) {
        self.smtp_auth_blocked.fetch_add(1, Relaxed);
    }

    pub fn smtp_submission_refused(&self, why: SubmissionRefusal) {
        self.smtp_submission_refused[why as usize].fetch_add(1, Relaxed);
    }

    /// A milter (or SMTP) connection opened; the guard closes it.
    pub fn connection_opened(&self) -> ConnectionGuard<'_> {
        self.open_connections.fetch_add(1, Relaxed);
        ConnectionGuard(self)
    }

    pub fn store_written(&self, n: usize) {
        self.store_written.fetch_add(n as u64, Relaxed);
        self.store_batches.fetch_add(1, Relaxed);
    }

    pub fn store_failed(&self, n: usize) {
        self.store_failed.fetch_add(n as u64, Relaxed);
    }

    /// The writer lost the database (or could not reach it) and will reconnect.
    pub fn store_disconnected(&self) {
        self.store_disconnects.fetch_add(1, Relaxed);
    }

    /// An abuse-limit call answered from this host's memory (the shared store unreachable or
    /// past its deadline).
    pub fn limits_local(&self) {
        self.limits_local.fetch_add(1, Relaxed);
    }

    pub fn limits_local_count(&self) -> u64 {
        self.limits_local.load(Relaxed)
    }

    /// Records spooled (the database unreachable).
    pub fn store_spooled(&self, n: usize, spool_bytes: u64) {
        self.store_spooled.fetch_add(n as u64, Relaxed);
        self.store_spool_bytes.store(spool_bytes, Relaxed);
    }

    /// Records replayed from the spool into the database (also counted as written).
    pub fn store_replayed(&self, n: usize, spool_bytes: u64) {
        self.store_replayed.fetch_add(n as u64, Relaxed);
        self.store_spool_bytes.store(spool_bytes, Relaxed);
    }

    /// The spool's size now.
    pub fn set_spool_bytes(&self, spool_bytes: u64) {
        self.store_spool_bytes.store(spool_bytes, Relaxed);
    }

    /// Records dropped at once (a spool past its bound).
    pub fn store_dropped_many(&self, n: usize) {
        self.store_dropped.fetch_add(n as u64, Relaxed);
    }

    /// Records lost to write errors so far.
    pub fn store_failures(&self) -> u64 {
        self.store_failed.load(Relaxed)
    }

    /// A report received by mail was stored, refused, ... (see [`ReportIn`]).
    pub fn report_received(&self, result: ReportIn) {
        self.reports_in[result as usize].fetch_add(1, Relaxed);
    }

    /// Reports received with this result so far.
    pub fn reports_received(&self, result: ReportIn) -> u64 {
        self.reports_in[result as usize].load(Relaxed)
    }

    pub fn store_dropped(&self) {
        self.store_dropped.fetch_add(1, Relaxed);
    }

    /// (records written, transactions) so far.
    pub fn store_counts(&self) -> (u64, u64) {
        (
            self.store_written.load(Relaxed),
            self.store_batches.load(Relaxed),
        )
    }

    pub fn dropped(&self) -> u64 {
        self.store_dropped.load(Relaxed)
    }
}
