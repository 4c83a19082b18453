//! The end-of-message step every transport shares: outcome -> verdict -> header edits, and
//! the JSON document `authmilter check --json` (and later the HTTP API) returns.

use crate::auth::headers::{authentication_results, received_spf};
use crate::auth::{AuthResult, Connection, Outcome, Transaction, Verifier};
use crate::config::OnUnauthorised;
use crate::config::SealMode;
use crate::policy::{decide, Action, Policy, Verdict};
use crate::sign::seal::{split_message, ChainState, Field, NotSealed, Sealer};
use crate::sign::{from_domain, SignError, Signer};
use serde::Serialize;

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

/// Adds our ARC set on top of the edits of an inbound message we pass on (RFC 8617 §5.1),
/// when the sealer is set to seal verified mail. `raw` is the message as received; the set
/// covers it as it will leave, with the edits made. Returns the instance sealed, or why not
/// (never an error for the message: it goes on unsealed).
pub fn seal_inbound(
    sealer: &Sealer,
    decision: &mut Decision,
    raw: &[u8],
) -> Result<Option<u32>, NotSealed> {
    let keeps = matches!(decision.verdict.action, Action::Accept | Action::Quarantine);
    let o = &decision.outcome;
    if sealer.mode != SealMode::Verified
        || !keeps
        || o.skipped.is_some()
        || o.oversized
        || o.malformed.is_some()
    {
        return Ok(None);
    }
    let Some(results) = decision.authentication_results() else {
        return Ok(None);
    };
    let results = results.to_string();
    let set = seal_fields(sealer, &decision.edits, raw, &results, o)?;
    let instance = crate::sign::seal::instance(set[0].1.as_bytes());
    decision
        .edits
        .add
        .splice(0..0, set.map(|(n, v)| (n.to_string(), v)));
    Ok(instance)
}

/// Builds the set for `raw` once `edits` are made: our fields on top, forged ones gone.
fn seal_fields(
    sealer: &Sealer,
    edits: &Edits,
    raw: &[u8],
    results: &str,
    outcome: &Outcome,
) -> Result<crate::sign::seal::ArcSet, NotSealed> {
    let (original, body) = split_message(raw);
    let chain = ChainState::of(&original, outcome.arc.as_ref())?;
    let mut fields: Vec<Field<'_>> = edits
        .add
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let mut seen: Vec<(&[u8], usize)> = Vec::new();
    for (name, value) in &original {
        let count = match seen.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, c)) => {
                *c += 1;
                *c
            }
            None => {
                seen.push((name, 1));
                1
            }
        };
        let removed = edits
            .remove
            .iter()
            .any(|(n, i)| *i == count && n.as_bytes().eq_ignore_ascii_case(name));
        if !removed {
            fields.push((name, value));
        }
    }
    sealer.seal(&fields, body, results, chain, unix_now())
}

/// The message as it leaves once `edits` are made: our fields on top (`Name: value`), the
/// removed fields gone, everything else byte for byte.
pub fn apply_edits(raw: &[u8], edits: &Edits) -> Vec<u8> {
    let (original, body) = split_message(raw);
    let mut out = Vec::with_capacity(raw.len() + 2048);
    for (name, value) in &edits.add {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let header_end = raw.len() - body.len();
    let mut seen: Vec<(&[u8], usize)> = Vec::new();
    let mut end_of_fields = 0;
    for (name, value) in &original {
        let start = name.as_ptr() as usize - raw.as_ptr() as usize;
        let end = value.as_ptr() as usize - raw.as_ptr() as usize + value.len();
        end_of_fields = end;
        let count = match seen.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, c)) => {
                *c += 1;
                *c
            }
            None => {
                seen.push((name, 1));
                1
            }
        };
        let removed = edits
            .remove
            .iter()
            .any(|(n, i)| *i == count && n.as_bytes().eq_ignore_ascii_case(name));
        if !removed {
            out.extend_from_slice(&raw[start..end]);
        }
    }
    // The empty line (or whatever ended the header) and the body.
    out.extend_from_slice(&raw[end_of_fields.min(header_end)..]);
    out
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs an outbound message and, when the sealer is set to seal outbound mail, adds our ARC
/// set over the signed message. The ARC-Authentication-Results carries our verification of
/// what the client sent (DKIM and ARC: SPF and DMARC would judge our own client).
pub async fn sign_and_seal(
    signer: &Signer,
    sealer: Option<&Sealer>,
    verifier: &Verifier,
    conn: &Connection,
    auth_user: Option<&str>,
    message: &[u8],
) -> Outbound {
    let signed = sign_outbound(signer, auth_user, message);
    let Outbound::Signed(mut fields) = signed else {
        return signed;
    };
    let Some(sealer) = sealer.filter(|s| s.mode == SealMode::Outbound) else {
        return Outbound::Signed(fields);
    };
    let tx = Transaction::for_outbound_seal(verifier, conn, message);
    let outcome = tx.finish(verifier).await;
    let results = authentication_results(&verifier.config().authserv_id, &outcome, None);
    let edits = Edits {
        add: fields.clone(),
        remove: Vec::new(),
    };
    match seal_fields(sealer, &edits, message, &results, &outcome) {
        Ok(set) => {
            fields.splice(0..0, set.map(|(n, v)| (n.to_string(), v)));
        }
        Err(why) => tracing::warn!(reason = %why, "outbound message not ARC-sealed"),
    }
    Outbound::Signed(fields)
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
