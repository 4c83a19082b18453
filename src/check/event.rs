//! What an aggregate report needs to know about one message, taken when its verdict is
//! recorded (RFC 9990 §3.1.3: the row, the identifiers and the authentication results), and
//! kept with the verdict in the store until the report for its period is sent.

use crate::auth::{AuthResult, Connection, Outcome, Published};
use crate::policy::Verdict;
use serde::{Deserialize, Serialize};

/// One message as an aggregate report counts it. Stored as JSON with the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcEvent {
    /// The record as seen for this message.
    pub policy: Published,
    /// RFC5322.From domain.
    pub header_from: String,
    /// RFC5321.MailFrom domain, or the HELO name for the null sender (RFC 9990 §3.1.3).
    pub envelope_from: String,
    /// The first recipient's domain, when known.
    pub envelope_to: Option<String>,
    /// What was applied: `none`, `pass`, `quarantine` or `reject`.
    pub disposition: String,
    /// DMARC-aligned DKIM and SPF results.
    pub dkim_aligned: bool,
    pub spf_aligned: bool,
    /// Why the disposition differs from the policy: (RFC 9990 override type, comment).
    pub reasons: Vec<(String, Option<String>)>,
    /// Every DKIM signature evaluated: (d=, s=, result).
    pub dkim: Vec<(String, String, String)>,
    /// SPF for the MAIL FROM identity: (domain, scope `mfrom`, result). For the null sender
    /// the identity is `postmaster@<HELO name>` (RFC 7208 §2.4), so the domain is the HELO
    /// name. Events stored by earlier versions may say `helo` there; reports write `mfrom`.
    pub spf: (String, String, String),
}

impl DmarcEvent {
    /// The event for a decided message, when the From domain published a record that asks
    /// for aggregate reports (`rua=`); `None` otherwise.
    pub fn of(
        conn: &Connection,
        rcpts: &[String],
        outcome: &Outcome,
        verdict: &Verdict,
    ) -> Option<DmarcEvent> {
        let dmarc = outcome.dmarc.as_ref()?;
        let policy = dmarc.published.clone()?;
        if policy.rua.is_empty() {
            return None;
        }
        let spf = outcome.spf.as_ref()?;
        let helo = conn.helo.clone().unwrap_or_default();
        let (envelope_from, spf_row) = if spf.null_sender {
            let result = spf.helo.as_ref().map_or(AuthResult::None, |h| h.result);
            (helo.clone(), (helo, "mfrom".to_string(), spf_word(result)))
        } else {
            let domain = spf.mail_from.domain.clone();
            let row = (
                domain.clone(),
                "mfrom".to_string(),
                spf_word(spf.mail_from.result),
            );
            (domain, row)
        };
        let passed = dmarc.result == AuthResult::Pass;
        // RFC 9990 §3.1.3: "pass" is a passing message under an enforcing policy; otherwise
        // what was applied.
        let disposition = match verdict.dmarc_disposition.as_deref() {
            _ if passed && policy.p != "none" => "pass".to_string(),
            Some(applied) => applied.to_string(),
            None => "none".to_string(),
        };
        let mut reasons = Vec::new();
        if let Some(why) = &verdict.local_override {
            let kind = if why.starts_with("trusted ARC sealer") {
                "trusted_forwarder"
            } else {
                "local_policy"
            };
            reasons.push((kind.to_string(), Some(why.clone())));
        }
        Some(DmarcEvent {
            header_from: dmarc.domain.to_ascii_lowercase(),
            envelope_from: envelope_from.to_ascii_lowercase(),
            envelope_to: rcpts
                .first()
                .and_then(|r| r.rsplit_once('@'))
                .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase()),
            disposition,
            dkim_aligned: dmarc.dkim_aligned,
            spf_aligned: dmarc.spf_aligned,
            reasons,
            dkim: outcome
                .dkim
                .iter()
                .map(|d| (d.domain.clone(), d.selector.clone(), dkim_word(d.result)))
                .collect(),
            spf: spf_row,
            policy,
        })
    }
}

/// RFC 9990's SPFResultType words.
fn spf_word(r: AuthResult) -> String {
    r.as_str().to_string()
}

/// RFC 9990's DKIMResultType has no `softfail`: a DKIM result never is one.
fn dkim_word(r: AuthResult) -> String {
    match r {
        AuthResult::Softfail => "fail".to_string(),
        other => other.as_str().to_string(),
    }
}
