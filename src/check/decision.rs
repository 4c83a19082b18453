//! What the end-of-message step decides about a message ([`Decision`]: the outcome, the
//! verdict, the header edits) and the JSON document `authmilter check --json` and the HTTP API
//! return of it ([`Report`]).

use crate::auth::{AuthResult, Outcome};
use crate::policy::{Action, Verdict};
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
