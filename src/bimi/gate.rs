//! Whether a message may have BIMI at all (draft-brand-indicators-for-message-identification
//! §7.3 and §4.3): exactly one From address, a DMARC pass, enforcing DMARC policies at the
//! Author Domain and the Organizational Domain (RFC 9989: no `pct`, `t=y` lowers the policy),
//! and which selector to use (`BIMI-Selector`, honoured only under an aligned DKIM signature).

use super::{BimiOutcome, BimiResult};
use crate::auth::{AuthResult, Outcome};
use crate::dns::Dns;
use mail_auth::dmarc::{Dmarc, Policy, Psd};

/// What the gate lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub author: String,
    /// The Organizational Domain (RFC 9989 §4.10.2), the fallback for the record lookup.
    pub org: String,
    pub selector: String,
}

fn stop(result: BimiResult, reason: impl Into<String>) -> BimiOutcome {
    BimiOutcome::new(result, Some(reason.into()))
}

fn enforcing(p: &str) -> bool {
    matches!(p, "quarantine" | "reject")
}

/// Checks the prerequisites; `fields` is the message's header. `arc_vouched`: local policy
/// accepted a DMARC failure because a trusted ARC sealer vouched for the message, which
/// then counts as a pass here (the trusted-forwarder case).
pub async fn admit(
    dns: &Dns,
    outcome: &Outcome,
    arc_vouched: bool,
    fields: &[(&[u8], &[u8])],
) -> Result<Admitted, BimiOutcome> {
    if outcome.from.is_multiple() {
        return Err(stop(BimiResult::Skipped, "not exactly one From address"));
    }
    let author = outcome
        .from
        .domain()
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .ok_or_else(|| stop(BimiResult::Skipped, "no From address"))?;
    let dmarc = outcome
        .dmarc
        .as_ref()
        .ok_or_else(|| stop(BimiResult::Skipped, "DMARC not evaluated"))?;
    let vouched = arc_vouched && dmarc.result == AuthResult::Fail;
    if dmarc.result != AuthResult::Pass && !vouched {
        return Err(stop(BimiResult::Skipped, format!("DMARC {}", dmarc.result)));
    }
    // The policy the Author Domain's mail is under: p, sp or np as published, lowered by t=y.
    if !enforcing(&dmarc.policy) {
        return Err(stop(
            BimiResult::Skipped,
            format!("DMARC policy {} is not enforcing", or_none(&dmarc.policy)),
        ));
    }
    let published = dmarc.published.as_ref();
    let org = match published.filter(|p| p.domain.trim_end_matches('.') != author) {
        // The tree walk found the record above the Author Domain: that is the policy domain.
        Some(p) => {
            if !enforcing(&p.p) || p.sp == "none" || p.testing {
                return Err(stop(
                    BimiResult::Skipped,
                    format!(
                        "Organizational Domain policy p={} sp={} is not enforcing",
                        p.p, p.sp
                    ),
                ));
            }
            p.domain.trim_end_matches('.').to_ascii_lowercase()
        }
        None => {
            let org = org_domain_checked(dns, &author).await?;
            // The Author Domain is the Organizational Domain: its own sp= must enforce too.
            if org == author && published.is_some_and(|p| p.sp == "none") {
                return Err(stop(
                    BimiResult::Skipped,
                    "Organizational Domain policy sp=none is not enforcing",
                ));
            }
            org
        }
    };
    let selector = selector(
        outcome,
        fields,
        &author,
        &org,
        published.map(|p| p.adkim.as_str()),
    );
    Ok(Admitted {
        author,
        org,
        selector,
    })
}

fn or_none(p: &str) -> &str {
    if p.is_empty() {
        "none"
    } else {
        p
    }
}

/// RFC 9989 §4.10.2 from the Author Domain (whose record was found): walk up; a `psd=n`
/// record makes its domain the Organizational Domain, a `psd=y` one the domain just below
/// it, else the shortest domain with a record. Its policy must be enforcing too (`p`, and
/// `sp` not `none`).
async fn org_domain_checked(dns: &Dns, author: &str) -> Result<String, BimiOutcome> {
    let labels: Vec<&str> = author.split('.').collect();
    let mut found: Option<(String, std::sync::Arc<Dmarc>)> = None;
    for start in 1..labels.len().saturating_sub(1) {
        let name = labels[start..].join(".");
        match dns.prefetch_txt::<Dmarc>(&format!("_dmarc.{name}.")).await {
            Ok(record) => match record.psd {
                Psd::Yes => break,
                Psd::No => {
                    found = Some((name, record));
                    break;
                }
                Psd::Default => found = Some((name, record)),
            },
            Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_)))
            | Err(mail_auth::Error::Dns(mail_auth::DnsError::InvalidRecordType)) => {}
            Err(mail_auth::Error::Dns(e)) => {
                return Err(stop(
                    BimiResult::Temperror,
                    format!("DMARC lookup for {name}: {e}"),
                ))
            }
            Err(_) => {}
        }
    }
    let Some((org, record)) = found else {
        return Ok(author.to_string());
    };
    let name = |p: Policy| match p {
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
        Policy::None => "none",
        Policy::Unspecified => "unspecified",
    };
    let p_ok = matches!(record.p, Policy::Quarantine | Policy::Reject) && !record.t;
    if !p_ok || record.sp == Policy::None {
        return Err(stop(
            BimiResult::Skipped,
            format!(
                "Organizational Domain policy p={} sp={} is not enforcing",
                name(record.p),
                name(record.sp)
            ),
        ));
    }
    Ok(org)
}

/// §4.3: the `BIMI-Selector` field counts only when there is exactly one and a passing DKIM
/// signature aligned with the Author Domain signs it; otherwise `default`.
fn selector(
    outcome: &Outcome,
    fields: &[(&[u8], &[u8])],
    author: &str,
    org: &str,
    adkim: Option<&str>,
) -> String {
    let named = |n: &'static [u8]| -> Vec<String> {
        fields
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(n))
            .map(|(_, v)| String::from_utf8_lossy(v).replace(['\r', '\n'], ""))
            .collect()
    };
    let values = named(b"BIMI-Selector");
    let [value] = values.as_slice() else {
        return "default".into();
    };
    let Some(wanted) = super::record::selector_of(value) else {
        return "default".into();
    };
    let strict = adkim == Some("s");
    let aligned = |d: &str| {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if strict {
            d == author
        } else {
            d == org || d.ends_with(&format!(".{org}"))
        }
    };
    let signatures: Vec<Vec<(String, String)>> =
        named(b"DKIM-Signature").iter().map(|v| tags(v)).collect();
    let covered = outcome
        .dkim
        .iter()
        .filter(|d| d.result == AuthResult::Pass && aligned(&d.domain))
        .any(|d| {
            signatures.iter().any(|tags| {
                let get = |k: &str| tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                get("d").is_some_and(|v| v.eq_ignore_ascii_case(&d.domain))
                    && get("b").is_some_and(|b| !d.b.is_empty() && b.starts_with(&d.b))
                    && get("h").is_some_and(|h| {
                        h.split(':')
                            .any(|f| f.eq_ignore_ascii_case("bimi-selector"))
                    })
            })
        });
    if covered {
        wanted
    } else {
        "default".into()
    }
}

/// A tag list (RFC 6376 §3.2), whitespace removed from values.
fn tags(value: &str) -> Vec<(String, String)> {
    value
        .split(';')
        .filter_map(|t| {
            let (k, v) = t.split_once('=')?;
            let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            Some((k.trim().to_string(), v))
        })
        .collect()
}
