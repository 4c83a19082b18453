//! What verification found, as owned plain data: the input of the policy, the A-R renderer,
//! the JSON report and (later) the verdict store.

use serde::Serialize;
use std::fmt;

/// An RFC 8601 result token, shared by all methods (each uses a subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthResult {
    Pass,
    Fail,
    Softfail,
    Neutral,
    None,
    Temperror,
    Permerror,
}

impl AuthResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::Softfail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::Temperror => "temperror",
            AuthResult::Permerror => "permerror",
        }
    }
}

impl fmt::Display for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SPF for one identity.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SpfCheck {
    pub result: AuthResult,
    /// The domain whose record was evaluated.
    pub domain: String,
    /// The identity as written in A-R (`smtp.mailfrom` / `smtp.helo`).
    pub identity: String,
    pub reason: String,
    pub explanation: Option<String>,
}

/// SPF at MAIL FROM: the MAIL FROM identity (the HELO one for the null sender) and the HELO
/// identity, each checked once.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SpfOutcome {
    /// The result DMARC uses: the MAIL FROM identity; for the null sender RFC 7208 §2.4 checks
    /// `postmaster@<helo>`, which is reported here but not used for DMARC alignment.
    pub mail_from: SpfCheck,
    /// True when MAIL FROM was the null sender.
    pub null_sender: bool,
    /// The HELO identity's own result (RFC 7208 §2.3), when a HELO name was given.
    pub helo: Option<SpfCheck>,
}

/// One DKIM signature's evaluation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DkimOutcome {
    pub result: AuthResult,
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    /// The first 8 characters of `b=` (RFC 6008), to tell signatures apart.
    pub b: String,
    /// The AUID (`i=`), if the signature had one.
    pub identity: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArcOutcome {
    pub result: AuthResult,
    pub reason: Option<String>,
    /// Number of ARC sets.
    pub chain_length: u32,
    /// `d=` of each ARC-Seal, oldest (i=1) first.
    pub sealers: Vec<String>,
    /// RFC 8617 §5.2 step 7: the lowest instance whose AMS still validates, 0 when every
    /// AMS does; known only for a passing chain.
    pub oldest_pass: Option<u32>,
    /// The SMTP client's address (RFC 8617 §10.2 `smtp.remote-ip`), when known.
    pub remote_ip: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DmarcOutcome {
    pub result: AuthResult,
    /// The RFC5322.From domain evaluated.
    pub domain: String,
    /// The policy the domain owner asks for (`none`, `quarantine`, `reject`), after `sp`/`np`
    /// and `t=y` were applied; empty when there is no record.
    pub policy: String,
    pub spf_aligned: bool,
    pub dkim_aligned: bool,
    pub reason: Option<String>,
    /// The record the result came from, for aggregate reports (not in the JSON document).
    #[serde(skip)]
    pub published: Option<Published>,
}

/// A DMARC record as seen when a message was evaluated: what RFC 9990 §3.1.2's
/// `policy_published` reports, and where reports go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Published {
    /// The domain at which the record was found (the author or organizational domain).
    pub domain: String,
    /// `r` or `s`.
    pub adkim: String,
    pub aspf: String,
    /// `none`, `quarantine` or `reject` as published (`p` absent with `rua`: `none`).
    pub p: String,
    pub sp: String,
    pub np: String,
    /// `t=y`.
    pub testing: bool,
    /// `fo=` as published (`0` by default).
    pub fo: String,
    /// `rua=` destinations: (URI, size limit in bytes, 0 for none).
    pub rua: Vec<(String, usize)>,
    /// `ruf=` destinations.
    pub ruf: Vec<(String, usize)>,
}

/// The RFC5322.From field(s) as DMARC sees them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct FromInfo {
    /// Number of From header fields.
    pub fields: usize,
    /// Every address found in them, lower-cased.
    pub addresses: Vec<String>,
}

impl FromInfo {
    /// RFC 7489 §6.6.1: exactly one field with exactly one address is what DMARC can judge.
    pub fn is_multiple(&self) -> bool {
        self.fields > 1 || self.addresses.len() > 1
    }

    pub fn domain(&self) -> Option<&str> {
        self.addresses
            .first()
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IprevOutcome {
    pub result: AuthResult,
    pub ptr: Option<String>,
}

/// Everything verification found about one message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outcome {
    /// Set when verification was skipped (trusted or authenticated client), with why.
    pub skipped: Option<String>,
    pub spf: Option<SpfOutcome>,
    pub dkim: Vec<DkimOutcome>,
    /// Signatures past the configured limit, not evaluated.
    pub dkim_ignored: usize,
    pub arc: Option<ArcOutcome>,
    pub dmarc: Option<DmarcOutcome>,
    pub iprev: Option<IprevOutcome>,
    pub from: FromInfo,
    /// The message is not RFC 5322 in a way that stopped verification (no header, ...).
    pub malformed: Option<String>,
    /// The message exceeded the configured size limit; it was not verified.
    pub oversized: bool,
    /// A resource limit stopped the message being kept; it was not verified and is deferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_limit: Option<ResourceLimit>,
    /// 1-based positions, among `Authentication-Results` fields, of those claiming our
    /// authserv-id: forgeries to delete.
    pub forged_ar: Vec<usize>,
}

impl Outcome {
    pub(crate) fn empty() -> Self {
        Outcome {
            skipped: None,
            spf: None,
            dkim: Vec::new(),
            dkim_ignored: 0,
            arc: None,
            dmarc: None,
            iprev: None,
            from: FromInfo::default(),
            malformed: None,
            oversized: false,
            resource_limit: None,
            forged_ar: Vec::new(),
        }
    }

    /// An outcome with nothing found, for tests that build outcomes by hand.
    #[doc(hidden)]
    pub fn empty_for_tests() -> Self {
        Outcome::empty()
    }

    /// Did any lookup fail in a way that retrying later could change?
    pub fn has_temperror(&self) -> bool {
        self.spf
            .as_ref()
            .is_some_and(|s| s.mail_from.result == AuthResult::Temperror)
            || self.dkim.iter().any(|d| d.result == AuthResult::Temperror)
            || self
                .dmarc
                .as_ref()
                .is_some_and(|d| d.result == AuthResult::Temperror)
    }
}

/// A limit that stopped a message being kept, whatever door it came through: the message is
/// deferred, never verified on what was kept of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceLimit {
    /// The memory budget for messages in flight (`limits.max_inflight_bytes`) was spent.
    Memory,
    /// More recipients than `limits.max_recipients` (like Postfix's smtpd_recipient_limit).
    Recipients,
    /// More header fields than `limits.max_header_fields`.
    HeaderFields,
}

impl ResourceLimit {
    /// Why, for the verdict's reasons.
    pub fn reason(self) -> &'static str {
        match self {
            ResourceLimit::Memory => "memory budget for messages in flight spent",
            ResourceLimit::Recipients => "more recipients than limits.max_recipients",
            ResourceLimit::HeaderFields => "more header fields than limits.max_header_fields",
        }
    }

    /// The deferral the client hears: RFC 5321 §4.2.2 452 (insufficient storage), RFC 3463
    /// X.3.1 (mail system full) or X.5.3 (too many recipients).
    pub fn reply(self) -> (u16, &'static str, &'static str) {
        match self {
            ResourceLimit::Memory => (452, "4.3.1", "Insufficient system storage, try again later"),
            ResourceLimit::Recipients => (452, "4.5.3", "Too many recipients"),
            ResourceLimit::HeaderFields => (452, "4.3.1", "Too many header fields to check now"),
        }
    }
}
