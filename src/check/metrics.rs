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
//! The hot path touches only relaxed atomic adds: [`Metrics::observe_verdict`] once per
//! message, the connection gauge once per connection.

use crate::auth::budget::Budget;
use crate::auth::{AuthResult, Outcome, Transport};
use crate::config::default_max_inflight_bytes;
use crate::metrics::{family, Histogram};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

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

/// A counter family with one label: name, help, label, label values, counts.
type Labelled<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], Vec<u64>);

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

    /// The text exposition format (version 0.0.4).
    pub fn render(&self, queue_depth: usize) -> String {
        let mut out = String::with_capacity(8192);
        family(
            &mut out,
            "authmilter_messages_total",
            "counter",
            "Verdicts by transport and verdict.",
        );
        for t in Transport::ALL {
            for (a, action) in ACTIONS.iter().enumerate() {
                let n = self.messages[transport_index(t)][a].load(Relaxed);
                let _ = writeln!(
                    out,
                    "authmilter_messages_total{{transport=\"{}\",verdict=\"{action}\"}} {n}",
                    t.as_str()
                );
            }
        }
        family(
            &mut out,
            "authmilter_auth_results_total",
            "counter",
            "Authentication results per method (DKIM: per signature).",
        );
        for (m, method) in METHODS.iter().enumerate() {
            for (r, result) in RESULTS.iter().enumerate() {
                let n = self.results[m][r].load(Relaxed);
                let _ = writeln!(
                    out,
                    "authmilter_auth_results_total{{method=\"{method}\",result=\"{result}\"}} {n}"
                );
            }
        }
        family(
            &mut out,
            "authmilter_eom_duration_seconds",
            "histogram",
            "Time from end of message to verdict (DKIM, ARC, DMARC and policy).",
        );
        for t in Transport::ALL {
            self.eom[transport_index(t)].render(
                &mut out,
                "authmilter_eom_duration_seconds",
                &format!("transport=\"{}\"", t.as_str()),
            );
        }
        let gauges = [
            (
                "authmilter_open_connections",
                "gauge",
                "Milter connections open now.",
                self.open_connections.load(Relaxed).max(0) as u64,
            ),
            (
                "authmilter_inflight_bytes",
                "gauge",
                "Bytes of messages held in memory now, all doors together.",
                self.inflight().used() as u64,
            ),
            (
                "authmilter_inflight_budget_bytes",
                "gauge",
                "The memory budget for messages in flight (limits.max_inflight_bytes).",
                self.inflight().max() as u64,
            ),
            (
                "authmilter_inflight_refusals_total",
                "counter",
                "Messages deferred because the memory budget was spent.",
                self.inflight().refusals(),
            ),
            (
                "authmilter_store_queue_depth",
                "gauge",
                "Verdict records waiting for the store writer.",
                queue_depth as u64,
            ),
            (
                "authmilter_store_dropped_total",
                "counter",
                "Verdict records dropped because the store queue was full.",
                self.store_dropped.load(Relaxed),
            ),
            (
                "authmilter_store_written_total",
                "counter",
                "Verdict records written to the store.",
                self.store_written.load(Relaxed),
            ),
            (
                "authmilter_store_batches_total",
                "counter",
                "Store transactions (batches) committed.",
                self.store_batches.load(Relaxed),
            ),
            (
                "authmilter_store_failed_total",
                "counter",
                "Verdict records lost to store write errors.",
                self.store_failed.load(Relaxed),
            ),
            (
                "authmilter_store_disconnects_total",
                "counter",
                "Times the store writer lost its database connection and began reconnecting.",
                self.store_disconnects.load(Relaxed),
            ),
        ];
        for (name, kind, help, value) in gauges {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        family(
            &mut out,
            "authmilter_smtp_stress",
            "gauge",
            "1 while the SMTP front end is under stress (short timeouts), else 0.",
        );
        let _ = writeln!(
            out,
            "authmilter_smtp_stress {}",
            self.smtp_stressed.load(Relaxed)
        );
        family(
            &mut out,
            "authmilter_smtp_stress_episodes_total",
            "counter",
            "Times the SMTP front end went under stress.",
        );
        let _ = writeln!(
            out,
            "authmilter_smtp_stress_episodes_total {}",
            self.smtp_stress_episodes.load(Relaxed)
        );
        family(
            &mut out,
            "authmilter_smtp_refused_connections_total",
            "counter",
            "SMTP connections refused with 421 at accept, by the limit that refused them.",
        );
        for (i, reason) in SMTP_REFUSALS.iter().enumerate() {
            let n = self.smtp_refused[i].load(Relaxed);
            let _ = writeln!(
                out,
                "authmilter_smtp_refused_connections_total{{reason=\"{reason}\"}} {n}"
            );
        }
        family(
            &mut out,
            "authmilter_smtp_no_progress_total",
            "counter",
            "SMTP sessions ended with 421 4.4.2 for making no progress.",
        );
        for (i, reason) in SMTP_CUTS.iter().enumerate() {
            let n = self.smtp_cut[i].load(Relaxed);
            let _ = writeln!(
                out,
                "authmilter_smtp_no_progress_total{{reason=\"{reason}\"}} {n}"
            );
        }
        family(
            &mut out,
            "authmilter_reports_received_total",
            "counter",
            "DMARC aggregate reports received by mail, by what became of them.",
        );
        for (i, result) in REPORTS_IN.iter().enumerate() {
            let n = self.reports_in[i].load(Relaxed);
            let _ = writeln!(
                out,
                "authmilter_reports_received_total{{result=\"{result}\"}} {n}"
            );
        }
        let labelled: [Labelled<'_>; 3] = [
            (
                "authmilter_smtp_auth_total",
                "SMTP AUTH attempts, by result.",
                "result",
                &AUTH_RESULTS,
                self.smtp_auth.iter().map(|n| n.load(Relaxed)).collect(),
            ),
            (
                "authmilter_smtp_auth_blocks_total",
                "Temporary AUTH blocks begun after too many failures, by what was blocked.",
                "scope",
                &AUTH_BLOCK_SCOPES,
                self.smtp_auth_blocks
                    .iter()
                    .map(|n| n.load(Relaxed))
                    .collect(),
            ),
            (
                "authmilter_smtp_submission_refused_total",
                "Submissions refused: sender or From not the user's, hourly limits spent.",
                "reason",
                &SUBMISSION_REFUSALS,
                self.smtp_submission_refused
                    .iter()
                    .map(|n| n.load(Relaxed))
                    .collect(),
            ),
        ];
        for (name, help, label, values, counts) in labelled {
            family(&mut out, name, "counter", help);
            for (value, n) in values.iter().zip(counts) {
                let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
            }
        }
        family(
            &mut out,
            "authmilter_smtp_auth_blocked_total",
            "counter",
            "SMTP AUTH attempts refused with 421 while a block was in force.",
        );
        let _ = writeln!(
            out,
            "authmilter_smtp_auth_blocked_total {}",
            self.smtp_auth_blocked.load(Relaxed)
        );
        out
    }
}
