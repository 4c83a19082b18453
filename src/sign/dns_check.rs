//! `authmilter dns-check`: does the key published in DNS match the private key we sign with?
//! A signature made with a key whose record is missing or stale fails everywhere, silently,
//! so this is worth running after every rotation. It asks through the program's one resolver.

use super::key::PrivateKey;
use super::record::{self, RecordMatch};
use crate::dns::Dns;
use mail_auth::hickory_resolver::proto::rr::Name;

/// What DNS says about `selector._domainkey.domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsCheck {
    /// Exactly one TXT record, and it publishes this key.
    Matches { record: String },
    /// No TXT record at that name.
    Missing,
    /// Several TXT records: verifiers may pick any (RFC 6376 §3.6.2.2), so it must be one.
    Several { count: usize, one_matches: bool },
    /// One record, revoked (`p=` empty).
    Revoked { record: String },
    /// One record, for something else.
    Differs { record: String, reason: String },
}

impl DnsCheck {
    /// Whether signatures made with the key will verify.
    pub fn is_ok(&self) -> bool {
        matches!(self, DnsCheck::Matches { .. })
    }
}

/// The lookup itself failed (timeout, SERVFAIL): nothing is known about the record.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup of {name} failed: {reason}")]
pub struct DnsCheckError {
    pub name: String,
    pub reason: String,
}

/// Looks the record up and compares it with `key`.
pub async fn check_published(
    dns: &Dns,
    domain: &str,
    selector: &str,
    key: &PrivateKey,
) -> Result<DnsCheck, DnsCheckError> {
    let name = record::record_name(domain, selector);
    let fail = |reason: String| DnsCheckError {
        name: name.clone(),
        reason,
    };
    Name::from_ascii(&name).map_err(|e| fail(e.to_string()))?;
    // No record (NXDOMAIN or no TXT) is an empty list, which judge() calls missing.
    let records = dns.txt_strings(&name).await.map_err(fail)?;
    Ok(judge(records, key))
}

/// The verdict on the TXT records found (pure, for tests).
pub fn judge(records: Vec<String>, key: &PrivateKey) -> DnsCheck {
    match records.len() {
        0 => DnsCheck::Missing,
        1 => {
            let record = records.into_iter().next().expect("one record");
            match record::compare(&record, key) {
                RecordMatch::Matches => DnsCheck::Matches { record },
                RecordMatch::Revoked => DnsCheck::Revoked { record },
                RecordMatch::Differs(reason) => DnsCheck::Differs { record, reason },
            }
        }
        count => DnsCheck::Several {
            count,
            one_matches: records
                .iter()
                .any(|r| record::compare(r, key) == RecordMatch::Matches),
        },
    }
}
