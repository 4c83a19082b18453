//! DKIM verification (RFC 6376) through mail-auth, with the library's known gaps covered:
//!
//! - relaxed body hashes of bodies ending in whitespace-only lines (DESIGN.md item 1);
//! - signatures whose `h=` lacks From are refused (RFC 6376 §6.1.1, item 2);
//! - `rsa-sha1` is refused (RFC 8301) and the number of signatures is capped (item 6);
//! - a body-hash mismatch is `fail`, not `neutral` (item 7).

use super::message::b_tag_prefix;
use super::outcome::{AuthResult, DkimOutcome};
use crate::dns::Dns;
use mail_auth::common::crypto::Algorithm;
use mail_auth::dkim::{Canonicalization, DkimError, Signature};
use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult, Error};

/// Signatures refused before verification, with why.
pub(super) struct Refused {
    pub outcome: DkimOutcome,
}

/// Makes the message ready for mail-auth: recomputes relaxed body hashes over a body without
/// trailing whitespace-only lines, caps the number of signatures, and takes out those we
/// refuse to evaluate. Returns the refused ones and how many were ignored over the cap.
pub(super) fn prepare(msg: &mut AuthenticatedMessage<'_>, max: usize) -> (Vec<Refused>, usize) {
    fix_relaxed_body_hashes(msg);

    let ignored = msg.dkim_headers.len().saturating_sub(max);
    msg.dkim_headers.truncate(max);

    let mut refused = Vec::new();
    msg.dkim_headers.retain(|h| {
        let reason = if h.header.a == Algorithm::RsaSha1 {
            // RFC 8301 §3.1: verifiers MUST NOT consider rsa-sha1 signatures valid.
            Some("rsa-sha1 is not accepted (RFC 8301)")
        } else if !h.header.h.iter().any(|n| n.eq_ignore_ascii_case("from")) {
            // RFC 6376 §6.1.1: a signature not covering From must be ignored (PERMFAIL).
            Some("From is not signed (RFC 6376 6.1.1)")
        } else {
            None
        };
        match reason {
            Some(reason) => {
                refused.push(Refused {
                    outcome: outcome_for(
                        &h.header,
                        h.value,
                        AuthResult::Permerror,
                        Some(reason.into()),
                    ),
                });
                false
            }
            None => true,
        }
    });
    (refused, ignored)
}

/// Verifies what `prepare` left and maps mail-auth's results to ours.
pub(super) async fn verify<'x>(
    dns: &'x Dns,
    msg: &'x AuthenticatedMessage<'x>,
) -> (Vec<DkimOutcome>, Vec<DkimOutput<'x>>) {
    for h in &msg.dkim_headers {
        let key = format!("{}._domainkey.{}.", h.header.s, h.header.d);
        let _ = dns
            .prefetch_txt::<mail_auth::common::verify::DomainKey>(&key)
            .await;
    }
    let outputs = dns.authenticator().verify_dkim(dns.params(msg)).await;
    let outcomes = outputs.iter().map(|o| map_output(msg, o)).collect();
    (outcomes, outputs)
}

fn map_output(msg: &AuthenticatedMessage<'_>, output: &DkimOutput<'_>) -> DkimOutcome {
    let (result, reason) = match output.result() {
        DkimResult::Pass => (AuthResult::Pass, None),
        DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthResult::Fail, Some("body hash mismatch".to_string()))
        }
        DkimResult::Neutral(Error::Dkim(DkimError::SignatureExpired)) => {
            (AuthResult::Fail, Some("signature expired".to_string()))
        }
        DkimResult::Neutral(e) => (AuthResult::Neutral, Some(describe(e))),
        DkimResult::Fail(e) => (AuthResult::Fail, Some(describe(e))),
        DkimResult::PermError(e) => (AuthResult::Permerror, Some(describe(e))),
        DkimResult::TempError(e) => (AuthResult::Temperror, Some(describe(e))),
        DkimResult::None => (AuthResult::None, None),
    };
    match output.signature() {
        Some(sig) => {
            let raw = msg
                .dkim_headers
                .iter()
                .find(|h| std::ptr::eq(&h.header, sig))
                .map(|h| h.value)
                .unwrap_or_default();
            outcome_for(sig, raw, result, reason)
        }
        None => DkimOutcome {
            result,
            domain: String::new(),
            selector: String::new(),
            algorithm: String::new(),
            b: String::new(),
            identity: None,
            reason: reason.map(|r| format!("malformed signature: {r}")),
        },
    }
}

fn outcome_for(
    sig: &Signature,
    raw: &[u8],
    result: AuthResult,
    reason: Option<String>,
) -> DkimOutcome {
    DkimOutcome {
        result,
        domain: sig.d.to_ascii_lowercase(),
        selector: sig.s.clone(),
        algorithm: algorithm_name(sig.a).to_string(),
        b: b_tag_prefix(raw, 8),
        identity: (!sig.i.is_empty()).then(|| sig.i.clone()),
        reason,
    }
}

pub(super) fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

fn describe(e: &Error) -> String {
    match e {
        Error::Crypto(_) => "signature did not verify".into(),
        Error::Dns(mail_auth::DnsError::RecordNotFound(_)) => "no key record".into(),
        Error::Dns(mail_auth::DnsError::InvalidRecordType) | Error::ParseError => {
            "invalid key record".into()
        }
        other => other.to_string().to_lowercase(),
    }
}

/// DESIGN.md item 1: mail-auth 0.13.3's relaxed body canonicalization keeps whitespace-only
/// lines at the end of the body, which RFC 6376 §3.4.4 removes. The relaxed canonical form of
/// the body without them is the same, so hash that instead. Simple-body hashes are untouched.
fn fix_relaxed_body_hashes(msg: &mut AuthenticatedMessage<'_>) {
    if !msg
        .body_hashes
        .iter()
        .any(|(c, ..)| *c == Canonicalization::Relaxed)
    {
        return;
    }
    let body = msg
        .raw_message
        .get(msg.body_offset as usize..)
        .unwrap_or_default();
    let trimmed = trim_trailing_blank_lines(body);
    if trimmed.len() == body.len() {
        return;
    }
    for (canon, hash, length, bh) in msg.body_hashes.iter_mut() {
        if *canon == Canonicalization::Relaxed {
            *bh = hash
                .hash(canon.canonical_body(trimmed, *length))
                .as_ref()
                .to_vec();
        }
    }
}

/// The body up to and including the line break that ends its last line with anything other
/// than spaces and tabs; empty if every line is blank.
pub(crate) fn trim_trailing_blank_lines(body: &[u8]) -> &[u8] {
    let Some(last) = body
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    else {
        return &body[..0];
    };
    match body[last..].iter().position(|&b| b == b'\n') {
        Some(nl) => &body[..last + nl + 1],
        // The last line has content and no line break: nothing trails it.
        None => body,
    }
}

#[cfg(test)]
mod tests {
    use super::trim_trailing_blank_lines as trim;

    #[test]
    fn trims_only_whitespace_lines() {
        assert_eq!(trim(b"Hi\r\n \r\n\t\r\n"), b"Hi\r\n");
        assert_eq!(trim(b"Hi\r\n\r\n"), b"Hi\r\n");
        assert_eq!(trim(b"Hi  \r\n"), b"Hi  \r\n");
        assert_eq!(trim(b"Hi"), b"Hi");
        assert_eq!(trim(b"Hi\r\n  "), b"Hi\r\n");
        assert_eq!(trim(b" \r\n\r\n"), b"");
        assert_eq!(trim(b""), b"");
    }
}
