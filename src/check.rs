//! The end-of-message step every transport shares: outcome -> verdict -> header edits, and
//! the JSON document `authmilter check --json` (and later the HTTP API) returns, and the
//! [`Record`] the verdict store keeps of it (with its [`DmarcEvent`] for the reports).

use crate::auth::headers::{append_resinfo, authentication_results, received_spf};
use crate::auth::{Connection, Outcome, Transaction, Verifier};
use crate::bimi::Bimi;
use crate::policy::{decide, Action, Policy};

mod decision;
mod event;
pub mod metrics;
mod outbound;
mod record;
mod seal;
pub use decision::{
    ArcReport, Decision, DkimReport, DmarcReport, Edits, Report, SmtpReply, SpfReport,
};
pub use event::{DkimRow, DmarcEvent};
pub use outbound::{sign_outbound, Outbound};
pub use record::{cut, message_id, Envelope, Recipients, Record, MAX_RCPT_LEN, MAX_STORED_RCPTS};
pub use seal::{apply_edits, seal_inbound, sign_and_seal};

/// Applies the policy and builds the header edits.
pub fn conclude(
    verifier: &Verifier,
    policy: &Policy,
    conn: &Connection,
    outcome: Outcome,
) -> Decision {
    let verdict = decide(&outcome, policy);
    let config = verifier.config();
    let mut edits = Edits::default();
    if outcome.skipped.is_none() {
        let ar = authentication_results(
            &config.authserv_id,
            &outcome,
            verdict.dmarc_disposition.as_deref(),
        );
        edits.add.push(("Authentication-Results".into(), ar));
        if config.received_spf {
            if let Some(v) =
                received_spf(&config.authserv_id, conn.ip, conn.helo.as_deref(), &outcome)
            {
                edits.add.push(("Received-SPF".into(), v));
            }
        }
        edits.remove = outcome
            .forged_ar
            .iter()
            .map(|&i| ("Authentication-Results".to_string(), i))
            .collect();
    }
    Decision {
        outcome,
        verdict,
        edits,
        bimi: None,
    }
}

/// BIMI after DMARC (src/bimi/), for mail that is kept: the incoming `BIMI-Location` and
/// `BIMI-Indicator` fields are deleted, `bimi=` joins Authentication-Results, and on a pass
/// `BIMI-Location` and `BIMI-Indicator` are added. Waits at most `bimi.max_wait`.
pub async fn add_bimi(bimi: &Bimi, decision: &mut Decision, conn: &Connection, raw: &[u8]) {
    if decision.outcome.skipped.is_some()
        || !matches!(decision.verdict.action, Action::Accept | Action::Quarantine)
    {
        return;
    }
    let (fields, _) = crate::sign::seal::split_message(raw);
    decision
        .edits
        .remove
        .extend(crate::bimi::header::forged(&fields));
    // The policy accepted a DMARC failure on a trusted ARC sealer's word (policy/decide.rs).
    let arc_vouched = decision
        .verdict
        .local_override
        .as_deref()
        .is_some_and(|o| o.starts_with("trusted ARC sealer "));
    let Some(found) = bimi
        .evaluate(&decision.outcome, arc_vouched, conn.ip, &fields)
        .await
    else {
        return;
    };
    if let Some((_, ar)) = decision
        .edits
        .add
        .iter_mut()
        .find(|(name, _)| name == "Authentication-Results")
    {
        append_resinfo(ar, &crate::bimi::header::resinfo(&found));
    }
    if let Some(v) = crate::bimi::header::location(&found) {
        decision.edits.add.push(("BIMI-Location".into(), v));
    }
    if let Some(v) = crate::bimi::header::indicator(&found) {
        decision.edits.add.push(("BIMI-Indicator".into(), v));
    }
    decision.bimi = Some(found);
}

/// Verifies a whole message in one call (the `check` command, the HTTP API).
pub async fn check_message(
    verifier: &Verifier,
    policy: &Policy,
    conn: &Connection,
    mail_from: &str,
    raw: &[u8],
) -> Decision {
    let mut tx = Transaction::begin(verifier, conn, mail_from).await;
    tx.message(raw);
    let outcome = tx.finish(verifier).await;
    conclude(verifier, policy, conn, outcome)
}
