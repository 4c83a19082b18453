//! The registry written out in the Prometheus text exposition format (version 0.0.4), for
//! `/metrics`: every family with its `# HELP` and `# TYPE` lines, in a fixed order.

use super::*;
use crate::metrics::family;
use std::fmt::Write;

/// A counter family with one label: name, help, label, label values, counts.
type Labelled<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], Vec<u64>);

impl Metrics {
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
                "Verdict records dropped because the store queue (or the spool) was full.",
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
            (
                "authmilter_limits_local_total",
                "counter",
                "Abuse-limit checks answered from this host's memory because the shared store was unreachable or late.",
                self.limits_local.load(Relaxed),
            ),
            (
                "authmilter_store_spooled_total",
                "counter",
                "Verdict records put in the local spool while the database was unreachable.",
                self.store_spooled.load(Relaxed),
            ),
            (
                "authmilter_store_replayed_total",
                "counter",
                "Verdict records replayed from the spool into the database.",
                self.store_replayed.load(Relaxed),
            ),
            (
                "authmilter_store_spool_bytes",
                "gauge",
                "Encoded size of the records waiting in the spool.",
                self.store_spool_bytes.load(Relaxed),
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
        let counts = |counters: &[AtomicU64]| counters.iter().map(|n| n.load(Relaxed)).collect();
        let labelled: [Labelled<'_>; 6] = [
            (
                "authmilter_smtp_refused_connections_total",
                "SMTP connections refused with 421 at accept, by the limit that refused them.",
                "reason",
                &SMTP_REFUSALS,
                counts(&self.smtp_refused),
            ),
            (
                "authmilter_smtp_no_progress_total",
                "SMTP sessions ended with 421 4.4.2 for making no progress.",
                "reason",
                &SMTP_CUTS,
                counts(&self.smtp_cut),
            ),
            (
                "authmilter_reports_received_total",
                "DMARC aggregate reports received by mail, by what became of them.",
                "result",
                &REPORTS_IN,
                counts(&self.reports_in),
            ),
            (
                "authmilter_smtp_auth_total",
                "SMTP AUTH attempts, by result.",
                "result",
                &AUTH_RESULTS,
                counts(&self.smtp_auth),
            ),
            (
                "authmilter_smtp_auth_blocks_total",
                "Temporary AUTH blocks begun after too many failures, by what was blocked.",
                "scope",
                &AUTH_BLOCK_SCOPES,
                counts(&self.smtp_auth_blocks),
            ),
            (
                "authmilter_smtp_submission_refused_total",
                "Submissions refused: sender or From not the user's, hourly limits spent.",
                "reason",
                &SUBMISSION_REFUSALS,
                counts(&self.smtp_submission_refused),
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
