//! The end-of-message step every transport shares: outcome -> verdict -> header edits, and
//! the JSON document `authmilter check --json` (and later the HTTP API) returns, and the
//! [`Record`] the verdict store keeps of it (with its [`DmarcEvent`] for the reports).

use crate::auth::headers::{authentication_results, received_spf};
use crate::auth::{Connection, Outcome, Transaction, Verifier};
use crate::policy::{decide, Policy};

mod decision;
mod event;
pub mod metrics;
mod outbound;
mod record;
mod seal;
pub use decision::{
    ArcReport, Decision, DkimReport, DmarcReport, Edits, Report, SmtpReply, SpfReport,
};
pub use event::DmarcEvent;
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
    }
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
