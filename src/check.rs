//! The end-of-message step every transport shares: outcome -> verdict -> header edits, and
//! the JSON document `authmilter check --json` (and later the HTTP API) returns.

use crate::auth::headers::{authentication_results, received_spf};
use crate::auth::{AuthResult, Connection, Outcome, Transaction, Verifier};
use crate::config::OnUnauthorised;
use crate::policy::{decide, Action, Policy, Verdict};
use crate::sign::{from_domain, SignError, Signer};
use serde::Serialize;

pub mod metrics;
mod seal;
pub use seal::{apply_edits, seal_inbound, sign_and_seal};

/// Header changes for the MTA to make.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Edits {
    /// Fields to add at the top of the header, in this order: `(name, value)`.
    pub add: Vec<(String, String)>,
    /// Fields to delete: `(name, 1-based index among fields of that name)`.
    pub remove: Vec<(String, usize)>,
}

/// Everything decided about a message.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    pub verdict: Verdict,
    pub edits: Edits,
}

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

/// What happens to an outbound message (trusted or authenticated client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Add these fields at the top, in this order: `(name, value)`, the `DKIM-Signature`
    /// fields (one per key), with our ARC set above them when it is sealed too.
    Signed(Vec<(String, String)>),
    /// Pass it on unsigned, for this reason (not our domain, no From, ...).
    Unsigned(String),
    /// Refuse it with this verdict (an unauthorised sender when policy says reject, or a
    /// signing failure, which is temporary).
    Refused(Verdict),
}

/// Signs an outbound message if its From domain has keys and the sender may use them
/// (RFC 6376 §5; the authorisation closes the hole where any local user gets mail signed for
/// any domain by choosing the From header).
pub fn sign_outbound(signer: &Signer, auth_user: Option<&str>, message: &[u8]) -> Outbound {
    if signer.is_empty() {
        return Outbound::Unsigned("no signing keys configured".into());
    }
    let Some(domain) = from_domain(message) else {
        return Outbound::Unsigned("no From address".into());
    };
    match signer.sign(&domain, auth_user, message) {
        Ok(values) => Outbound::Signed(
            values
                .into_iter()
                .map(|v| ("DKIM-Signature".to_string(), v))
                .collect(),
        ),
        Err(SignError::Unauthorised { user, domain })
            if signer.on_unauthorised() == OnUnauthorised::Reject =>
        {
            Outbound::Refused(Verdict {
                action: Action::Reject,
                code: 550,
                status: "5.7.1".into(),
                text: format!("{user} may not send as {domain}"),
                reasons: vec![format!("user {user} may not sign for {domain}")],
                dmarc_disposition: None,
                local_override: None,
            })
        }
        Err(e @ SignError::Crypto(_)) => Outbound::Refused(Verdict {
            action: Action::Tempfail,
            code: 451,
            status: "4.3.0".into(),
            text: "Signing failed, try again later".into(),
            reasons: vec![e.to_string()],
            dmarc_disposition: None,
            local_override: None,
        }),
        Err(e) => Outbound::Unsigned(e.to_string()),
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

/// The stable JSON document (`check --json`, HTTP `/v1/check`).
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub verdict: Action,
    pub smtp: SmtpReply<'a>,
    pub reasons: &'a [String],
    pub spf: Option<SpfReport<'a>>,
    pub dkim: Vec<DkimReport<'a>>,
    pub arc: Option<ArcReport<'a>>,
    pub dmarc: Option<DmarcReport<'a>>,
    pub iprev: Option<AuthResult>,
    pub authentication_results: Option<&'a str>,
    pub received_spf: Option<&'a str>,
    /// Indexes of forged Authentication-Results fields to delete.
    pub remove_authentication_results: Vec<usize>,
    pub local_override: Option<&'a str>,
    pub skipped: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct SmtpReply<'a> {
    pub code: u16,
    pub status: &'a str,
    pub text: &'a str,
}

#[derive(Debug, Serialize)]
pub struct SpfReport<'a> {
    pub result: AuthResult,
    pub domain: &'a str,
    pub helo_result: Option<AuthResult>,
    pub reason: &'a str,
    pub explanation: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct DkimReport<'a> {
    pub result: AuthResult,
    pub domain: &'a str,
    pub selector: &'a str,
    pub algorithm: &'a str,
    pub reason: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct ArcReport<'a> {
    pub result: AuthResult,
    pub reason: Option<&'a str>,
    pub sealers: &'a [String],
}

#[derive(Debug, Serialize)]
pub struct DmarcReport<'a> {
    pub result: AuthResult,
    pub policy: &'a str,
    pub domain: &'a str,
    pub disposition: Option<&'a str>,
    pub reason: Option<&'a str>,
}

impl Decision {
    /// The Authentication-Results value, if one is added.
    pub fn authentication_results(&self) -> Option<&str> {
        self.header("Authentication-Results")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.edits
            .add
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn report(&self) -> Report<'_> {
        let o = &self.outcome;
        let v = &self.verdict;
        Report {
            verdict: v.action,
            smtp: SmtpReply {
                code: v.code,
                status: &v.status,
                text: &v.text,
            },
            reasons: &v.reasons,
            spf: o.spf.as_ref().map(|s| SpfReport {
                result: s.mail_from.result,
                domain: &s.mail_from.domain,
                helo_result: s.helo.as_ref().map(|h| h.result),
                reason: &s.mail_from.reason,
                explanation: s.mail_from.explanation.as_deref(),
            }),
            dkim: o
                .dkim
                .iter()
                .map(|d| DkimReport {
                    result: d.result,
                    domain: &d.domain,
                    selector: &d.selector,
                    algorithm: &d.algorithm,
                    reason: d.reason.as_deref(),
                })
                .collect(),
            arc: o.arc.as_ref().map(|a| ArcReport {
                result: a.result,
                reason: a.reason.as_deref(),
                sealers: &a.sealers,
            }),
            dmarc: o.dmarc.as_ref().map(|d| DmarcReport {
                result: d.result,
                policy: if d.policy.is_empty() {
                    "none"
                } else {
                    &d.policy
                },
                domain: &d.domain,
                disposition: v.dmarc_disposition.as_deref(),
                reason: d.reason.as_deref(),
            }),
            iprev: o.iprev.as_ref().map(|i| i.result),
            authentication_results: self.authentication_results(),
            received_spf: self.header("Received-SPF"),
            remove_authentication_results: o.forged_ar.clone(),
            local_override: v.local_override.as_deref(),
            skipped: o.skipped.as_deref(),
        }
    }
}
