//! End of message: the verdict (inbound) or the signatures (outbound), and the one function
//! that turns a [`Decision`] into milter replies, all sent by the listener in one write
//! (header edits, then the verdict).

use super::{refusal, Session, State};
use crate::auth::Transaction;
use crate::check::{sign_and_seal, Decision, Outbound};
use crate::milter::consts::*;
use crate::milter::reply::{lf_folded, Reply, ReplyText};
use crate::policy::Action;
use crate::store::Transport;
use std::sync::Arc;

impl Session {
    pub(super) async fn end_of_message(&mut self, chunk: &[u8], replies: &mut Vec<Reply>) {
        self.state = State::Connected;
        let Some(mut m) = self.message.take() else {
            replies.push(Reply::Continue);
            return;
        };
        m.tx.body(chunk);
        let snapshot = Arc::clone(&self.snapshot);
        if m.outbound {
            self.sign(&m.tx, replies).await;
            return;
        }
        let envelope = m.rcpts.envelope(self.queue_id());
        // Report mail is copied for the importer before the transaction is consumed.
        let report = (m.report_rcpts > 0).then(|| m.tx.raw().to_vec());
        let decision = snapshot
            .conclude_recorded(Transport::Milter, &self.conn, envelope, m.tx)
            .await;
        tracing::info!(
            queue_id = self.queue_id.as_deref().unwrap_or("-"),
            client = %self.conn.ip,
            verdict = %decision.verdict.action,
            reasons = ?decision.verdict.reasons,
            "milter verdict"
        );
        if let Some(raw) = report {
            let (n, total) = (m.report_rcpts, m.rcpts.total());
            if snapshot.hand_over_report(&raw, n, total, decision.verdict.action) {
                tracing::info!(
                    queue_id = self.queue_id.as_deref().unwrap_or("-"),
                    "DMARC report mail queued for import; discarded (reports.deliver_imported = false)"
                );
                replies.push(Reply::Discard);
                return;
            }
        }
        self.eom_replies(&decision, replies);
    }

    /// The one place a [`Decision`] becomes milter replies: header edits (only when the
    /// message is kept), then the verdict.
    fn eom_replies(&self, decision: &Decision, replies: &mut Vec<Reply>) {
        let verdict = &decision.verdict;
        let keeps_message = matches!(verdict.action, Action::Accept | Action::Quarantine);
        if keeps_message {
            if self.actions & SMFIF_CHGHDRS != 0 {
                // Delete from the highest index down so earlier deletions don't renumber later ones;
                // before our insertion, which would otherwise count as the first A-R field.
                let mut removals = decision.edits.remove.clone();
                removals.sort_by_key(|r| std::cmp::Reverse(r.1));
                for (name, index) in removals {
                    replies.push(Reply::ChangeHeader {
                        index: index as u32,
                        name,
                        value: String::new(),
                    });
                }
            }
            self.insert_fields(&decision.edits.add, replies);
        }
        match verdict.action {
            Action::Accept => replies.push(Reply::Continue),
            Action::Quarantine => {
                if self.actions & SMFIF_QUARANTINE != 0 {
                    replies.push(Reply::Quarantine {
                        reason: format!("authmilter: {}", verdict.reasons.join("; ")),
                    });
                }
                replies.push(Reply::Continue);
            }
            Action::Reject | Action::Tempfail => replies.push(refusal(verdict)),
        }
    }

    /// Outbound end of message: the signatures (and our ARC set, when outbound mail is
    /// sealed) go on top, in one write with the verdict.
    async fn sign(&self, tx: &Transaction, replies: &mut Vec<Reply>) {
        let queue_id = self.queue_id.as_deref().unwrap_or("-");
        if let Some(limit) = tx.resource_limit() {
            // Not kept, so not signable: defer rather than pass it on unsigned.
            tracing::warn!(
                queue_id,
                reason = limit.reason(),
                "outbound message deferred"
            );
            let (code, status, text) = limit.reply();
            replies.push(match ReplyText::new(format!("{code} {status} {text}")) {
                Ok(text) => Reply::ReplyCode { text },
                Err(_) => Reply::Tempfail,
            });
            return;
        }
        if tx.is_oversized() {
            tracing::warn!(
                queue_id,
                "outbound message over the size limit: passed on unsigned"
            );
            replies.push(Reply::Continue);
            return;
        }
        let user = self.conn.authenticated.as_deref();
        let snapshot = &self.snapshot;
        let outbound = sign_and_seal(
            &snapshot.signer,
            snapshot.sealer.as_deref(),
            &snapshot.verifier,
            &self.conn,
            user,
            tx.raw(),
        )
        .await;
        match outbound {
            Outbound::Signed(fields) => {
                tracing::info!(queue_id, fields = fields.len(), "signed");
                self.insert_fields(&fields, replies);
                replies.push(Reply::Continue);
            }
            Outbound::Unsigned(why) => {
                tracing::info!(queue_id, user, reason = %why, "outbound message not signed");
                replies.push(Reply::Continue);
            }
            Outbound::Refused(verdict) => {
                tracing::warn!(queue_id, user, reasons = ?verdict.reasons, "outbound message refused");
                replies.push(refusal(&verdict));
            }
        }
    }

    /// Our fields on top of the header (index 0 up), when the MTA lets us add fields. What
    /// was signed is `Name: <value>`, one space after the colon; with `SMFIP_HDR_LEADSPC`
    /// the MTA takes the value as given, so the space is ours to send.
    fn insert_fields(&self, fields: &[(String, String)], replies: &mut Vec<Reply>) {
        if self.actions & SMFIF_ADDHDRS == 0 {
            return;
        }
        let space = if self.protocol & SMFIP_HDR_LEADSPC != 0 {
            " "
        } else {
            ""
        };
        for (i, (name, value)) in fields.iter().enumerate() {
            replies.push(Reply::InsertHeader {
                index: i as u32,
                name: name.clone(),
                value: format!("{space}{}", lf_folded(value)),
            });
        }
    }
}
