//! The running configuration, below every transport: the [`Snapshot`] a session takes when it
//! starts (configuration, resolver, policy, keys, and where its verdicts and reports go) and
//! [`Current`], the snapshot in force, which a reload swaps. The milter, SMTP and HTTP doors
//! and the periodic jobs read these; `server.rs` only starts and stops things.

use crate::auth::arc_canon::NotSealed;
use crate::auth::budget::Budget;
use crate::auth::{Connection, Transaction, Verifier};
use crate::bimi::Bimi;
use crate::check::metrics::Metrics;
use crate::check::{add_bimi, conclude, seal_inbound, Decision};
use crate::config::{Config, SealMode};
use crate::policy::{Action, Policy};
use crate::report::failure::{FailureCase, FailureReports};
use crate::report::inbox::{is_report_address, Inbox};
use crate::sign::seal::Sealer;
use crate::sign::Signer;
use crate::store::{Envelope, Journal, Record, Transport};
use smtp_service::SmtpService;
use std::sync::{Arc, RwLock};

pub mod smtp_service;
pub mod tls;

/// What a session needs, fixed for its lifetime.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub verifier: Verifier,
    pub policy: Arc<Policy>,
    /// Keys for outbound mail (empty: nothing is signed).
    pub signer: Arc<Signer>,
    /// The ARC sealer, when `[arc.seal]` seals anything.
    pub sealer: Option<Arc<Sealer>>,
    /// Where verdicts are recorded (the server sets it; a bare snapshot only counts metrics).
    pub journal: Journal,
    /// Where due DMARC failure reports go (the server sets it; a bare snapshot sends none).
    pub failures: FailureReports,
    /// The SMTP front end's settings and next hop, when `[smtp]` is configured.
    pub smtp: Option<Arc<SmtpService>>,
    /// Where report mail (to `reports.rua_addresses`) goes to be imported (the server sets
    /// it, like the journal; a bare snapshot counts it as lost).
    pub reports_in: Inbox,
    /// BIMI on inbound mail, when `[bimi]` is enabled.
    pub bimi: Option<Arc<Bimi>>,
}

impl Snapshot {
    /// Builds the resolver and loads the policy and the signing keys the configuration
    /// names; a missing, unreadable or too widely readable key refuses to start (or reload).
    pub fn new(config: Config) -> Result<Snapshot, String> {
        let policy = match &config.policy_dir {
            Some(dir) => Policy::load_dir(dir).map_err(|e| e.to_string())?,
            None => Policy::default(),
        };
        let signer = Signer::new(&config.signing).map_err(|e| e.to_string())?;
        let sealer = Sealer::new(&config.arc_seal).map_err(|e| e.to_string())?;
        let smtp = smtp_service::service(&config)?.map(Arc::new);
        let config = Arc::new(config);
        let verifier = Verifier::new(Arc::clone(&config)).map_err(|e| e.to_string())?;
        let bimi = Bimi::new(&config.bimi, Arc::clone(verifier.dns()))
            .map_err(|e| e.to_string())?
            .map(Arc::new);
        let metrics = Arc::new(Metrics::default());
        metrics.inflight().set_max(config.limits.max_inflight_bytes);
        Ok(Snapshot {
            config,
            verifier,
            policy: Arc::new(policy),
            signer: Arc::new(signer),
            sealer: sealer.map(Arc::new),
            journal: Journal::disabled(Arc::clone(&metrics)),
            failures: FailureReports::default(),
            smtp,
            reports_in: Inbox::disabled(metrics),
            bimi,
        })
    }

    /// The memory budget every door charges the messages it holds to.
    pub fn budget(&self) -> &Arc<Budget> {
        self.journal.metrics().inflight()
    }

    /// End of message for a transport that built the message itself (the milter): DKIM,
    /// ARC, DMARC, policy, then the verdict recorded without waiting on the store.
    pub async fn conclude_recorded(
        &self,
        transport: Transport,
        conn: &Connection,
        envelope: Envelope<'_>,
        tx: Transaction,
    ) -> Decision {
        let started = std::time::Instant::now();
        // Only a stored record needs the Message-ID: don't scan the header for metrics alone.
        let message_id = self
            .journal
            .is_storing()
            .then(|| crate::store::message_id(tx.raw()))
            .flatten();
        let sealing = self
            .sealer
            .as_deref()
            .filter(|s| s.mode == SealMode::Verified);
        let failure_reports = self.config.reports.failure && self.failures.is_running();
        let decision = if sealing.is_some() || failure_reports || self.bimi.is_some() {
            let (outcome, raw) = tx.finish_keeping(&self.verifier).await;
            let mut decision = conclude(&self.verifier, &self.policy, conn, outcome);
            if let Some(bimi) = &self.bimi {
                add_bimi(bimi, &mut decision, conn, &raw).await;
            }
            if failure_reports {
                let ar = decision
                    .edits
                    .add
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("Authentication-Results"))
                    .map(|(_, value)| value.as_str());
                if let Some(case) = FailureCase::of(
                    conn,
                    envelope.mail_from,
                    envelope.rcpts,
                    &decision.outcome,
                    &decision.verdict,
                    ar,
                    &raw,
                ) {
                    self.failures.submit(case);
                }
            }
            if let Some(sealer) = sealing {
                log_seal(seal_inbound(sealer, &mut decision, &raw), envelope.queue_id);
            }
            decision
        } else {
            let outcome = tx.finish(&self.verifier).await;
            conclude(&self.verifier, &self.policy, conn, outcome)
        };
        let took = started.elapsed();
        let verdict = decision.verdict.action.as_str();
        self.journal
            .record_with(transport, verdict, took, &decision.outcome, || {
                let mut record = Record::new(transport, conn, envelope, b"", &decision, took);
                record.message_id = message_id;
                record
            });
        decision
    }

    /// Whether an envelope recipient is one of our report addresses (`reports.rua_addresses`):
    /// the doors count these at end of message and hand such mail over with
    /// [`Snapshot::hand_over_report`], without knowing the report importer themselves.
    pub fn is_report_address(&self, rcpt: &str) -> bool {
        is_report_address(&self.config.reports, rcpt)
    }

    /// A door's end of message for mail with `report_rcpts` of its `rcpts` recipients at
    /// report addresses: the message (as received, `raw`) is handed to the report importer
    /// when its verdict keeps it. Returns true when the door must drop it instead of
    /// delivering it (`reports.deliver_imported = false` and every recipient a report
    /// address).
    pub fn hand_over_report(
        &self,
        raw: &[u8],
        report_rcpts: usize,
        rcpts: usize,
        action: Action,
    ) -> bool {
        // Mail refused or deferred is not ours to read.
        if report_rcpts == 0
            || raw.is_empty()
            || !matches!(action, Action::Accept | Action::Quarantine)
        {
            return false;
        }
        let queued = self.reports_in.offer(raw, &self.config, self.budget());
        queued && report_rcpts == rcpts && !self.config.reports.deliver_imported
    }
}

/// One log line for a message that was, or could have been, sealed.
fn log_seal(sealed: Result<Option<u32>, NotSealed>, queue_id: Option<&str>) {
    let queue_id = queue_id.unwrap_or("-");
    match sealed {
        Ok(Some(instance)) => tracing::debug!(queue_id, instance, "ARC set added"),
        Ok(None) => {}
        Err(why) => tracing::warn!(queue_id, reason = %why, "message not ARC-sealed"),
    }
}

/// A reload asked for over the API, answered with its outcome (the error names what is wrong).
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

/// The snapshot in force, swapped on reload; the HTTP API reads it per request.
pub type Current = Arc<RwLock<Arc<Snapshot>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::metrics::ReportIn;
    use crate::report::inbox::ReportMail;
    use tokio::sync::mpsc;

    fn snapshot(deliver: bool, queue: usize) -> (Snapshot, mpsc::Receiver<ReportMail>) {
        let mut config = Config::default();
        config.reports.rua_addresses = vec!["dmarc-rua@example.com".into()];
        config.reports.deliver_imported = deliver;
        let mut s = Snapshot::new(config).unwrap();
        let (tx, rx) = mpsc::channel(queue);
        s.reports_in = Inbox::feeding(tx, Arc::clone(s.journal.metrics()));
        (s, rx)
    }

    #[tokio::test]
    async fn only_queued_report_only_mail_is_dropped() {
        let (s, mut rx) = snapshot(false, 2);
        // Refused mail is not read; mail also for others is delivered.
        assert!(!s.hand_over_report(b"x", 1, 1, Action::Reject));
        assert!(!s.hand_over_report(b"x", 1, 2, Action::Accept));
        assert!(s.hand_over_report(b"x", 1, 1, Action::Quarantine));
        assert_eq!(rx.recv().await.unwrap().raw, b"x");
        let (s, _rx) = snapshot(true, 2);
        assert!(!s.hand_over_report(b"x", 1, 1, Action::Accept));
    }

    // The hot path never waits: a full queue or a spent budget loses the import (counted),
    // and the mail is then delivered whatever deliver_imported says.
    #[tokio::test]
    async fn full_queue_or_spent_budget_delivers_and_counts_lost() {
        let (s, _rx) = snapshot(false, 1);
        let lost = || s.journal.metrics().reports_received(ReportIn::Lost);
        assert!(s.hand_over_report(b"first", 1, 1, Action::Accept));
        assert!(!s.hand_over_report(b"second", 1, 1, Action::Accept));
        assert_eq!(lost(), 1);
        // The queued copy is charged to the budget.
        assert_eq!(s.budget().used(), 5);
        let (t, _rx2) = snapshot(false, 4);
        t.budget().set_max(3);
        assert!(!t.hand_over_report(b"four", 1, 1, Action::Accept));
        assert_eq!(t.journal.metrics().reports_received(ReportIn::Lost), 1);
    }
}
