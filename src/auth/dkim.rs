//! DKIM verification (RFC 6376) through mail-auth, with the library's known gaps covered:
//!
//! - relaxed body hashes of bodies ending in whitespace-only lines (DESIGN.md item 1);
//! - every DKIM-Signature field gets a result, the ones mail-auth cannot parse included
//!   (item 9), and fields are refused before any lookup as RFC 6376 §6.1.1 says: `h=`
//!   without From (item 2), `rsa-sha1` (item 6), `i=` outside `d=`, no known `q=` method
//!   ([`dkim_fields`](super::dkim_fields));
//! - key records are checked as §3.6.1 and §6.1.2 say: `h=`, `s=`, `t=s`, `k=`, and RSA keys
//!   of at least 1024 bits (item 8, [`dkim_key`](super::dkim_key));
//! - the number of signatures is capped (item 6);
//! - a body-hash mismatch is `fail`, not `neutral` (item 7).
//!
//! Three steps, so that key lookups run beside ARC's: [`prepare`] (no I/O), [`check_keys`]
//! (DNS), then [`Run::verify`] (mail-auth's verification of what is left, keys cached).

use super::dkim_fields::{self, Check, Field};
use super::dkim_key::{self, KeyCache};
use super::message::b_tag_prefix;
use super::outcome::{AuthResult, DkimOutcome};
use crate::dns::Dns;
use mail_auth::common::crypto::Algorithm;
use mail_auth::dkim::{Canonicalization, DkimError, Signature};
use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult, Error};

/// DKIM for one message between its steps: the results known so far, each with the position
/// of its field among the header fields (results are reported top first).
pub(super) struct Run {
    done: Vec<(usize, DkimOutcome)>,
    /// DKIM-Signature fields past the configured limit, not evaluated.
    pub ignored: usize,
}

/// Makes the message ready for mail-auth: recomputes relaxed body hashes over a body without
/// trailing whitespace-only lines, caps the number of DKIM-Signature fields (top first, parsed
/// or not), gives every field refused before any lookup its result, and leaves in
/// `msg.dkim_headers` only the signatures still to evaluate.
pub(super) fn prepare(msg: &mut AuthenticatedMessage<'_>, max: usize) -> Run {
    fix_relaxed_body_hashes(msg);
    let fields = dkim_fields::fields(msg);
    let ignored = fields.len().saturating_sub(max);
    let mut done = Vec::new();
    let mut keep = Vec::with_capacity(fields.len().min(max));
    for field in fields.iter().take(max) {
        match dkim_fields::check(field) {
            Check::Accepted => keep.push(field.value.as_ptr() as usize),
            Check::Refused { reason, neutral } => {
                let result = if neutral {
                    AuthResult::Neutral
                } else {
                    AuthResult::Permerror
                };
                done.push((field.position, refused_field(field, result, reason)));
            }
        }
    }
    msg.dkim_headers
        .retain(|h| keep.contains(&(h.value.as_ptr() as usize)));
    Run { done, ignored }
}

/// A signature whose key cannot be used, by index in `msg.dkim_headers`.
pub(super) struct KeyRefusal {
    index: usize,
    position: usize,
    outcome: DkimOutcome,
}

/// Fetches the key of every signature [`prepare`] left and checks it (RFC 6376 §6.1.2):
/// the signatures whose key is missing, failed to resolve or must be ignored.
pub(super) async fn check_keys(
    dns: &Dns,
    cache: &KeyCache,
    msg: &AuthenticatedMessage<'_>,
) -> Vec<KeyRefusal> {
    let mut refused = Vec::new();
    for (index, h) in msg.dkim_headers.iter().enumerate() {
        let sig = &h.header;
        let name = format!("{}._domainkey.{}.", sig.s, sig.d);
        let problem = match dkim_key::fetch(dns, cache, &name).await {
            Ok(record) => dkim_key::usable(&record, sig)
                .err()
                .map(|why| (AuthResult::Permerror, why)),
            Err(e @ Error::Dns(mail_auth::DnsError::Resolver(_))) => {
                Some((AuthResult::Temperror, describe(&e)))
            }
            Err(e) => Some((AuthResult::Permerror, describe(&e))),
        };
        if let Some((result, why)) = problem {
            refused.push(KeyRefusal {
                index,
                position: position(msg, h.value),
                outcome: outcome_for(sig, h.value, result, Some(why)),
            });
        }
    }
    refused
}

impl Run {
    /// Takes the signatures [`check_keys`] refused out of the message, keeping their results.
    pub(super) fn refuse_keys(
        &mut self,
        msg: &mut AuthenticatedMessage<'_>,
        refused: Vec<KeyRefusal>,
    ) {
        let mut index = 0;
        msg.dkim_headers.retain(|_| {
            let keep = !refused.iter().any(|r| r.index == index);
            index += 1;
            keep
        });
        self.done
            .extend(refused.into_iter().map(|r| (r.position, r.outcome)));
    }

    /// Verifies what is left through mail-auth and returns every result, top first, with
    /// mail-auth's outputs (DMARC's input).
    pub(super) async fn verify<'x>(
        self,
        dns: &'x Dns,
        msg: &'x AuthenticatedMessage<'x>,
    ) -> (Vec<DkimOutcome>, Vec<DkimOutput<'x>>) {
        let outputs = dns.authenticator().verify_dkim(dns.params(msg)).await;
        let mut all = self.done;
        for output in &outputs {
            // Outputs without a signature are mail-auth's view of fields it could not
            // parse: `prepare` gave each of those its result already.
            let Some(sig) = output.signature() else {
                continue;
            };
            let raw = msg
                .dkim_headers
                .iter()
                .find(|h| std::ptr::eq(&h.header, sig))
                .map(|h| h.value)
                .unwrap_or_default();
            let (result, reason) = map_result(output.result());
            all.push((position(msg, raw), outcome_for(sig, raw, result, reason)));
        }
        all.sort_by_key(|(position, _)| *position);
        (all.into_iter().map(|(_, o)| o).collect(), outputs)
    }
}

/// Where a field is among the header fields (by identity: mail-auth's values are slices of
/// the message).
fn position(msg: &AuthenticatedMessage<'_>, value: &[u8]) -> usize {
    msg.headers
        .iter()
        .position(|(_, v)| v.as_ptr() == value.as_ptr() && !value.is_empty())
        .unwrap_or(usize::MAX)
}

fn map_result(result: &DkimResult) -> (AuthResult, Option<String>) {
    match result {
        DkimResult::Pass => (AuthResult::Pass, None),
        DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthResult::Fail, Some("body hash mismatch".to_string()))
        }
        DkimResult::Neutral(Error::Dkim(DkimError::SignatureExpired)) => {
            (AuthResult::Fail, Some("signature expired".to_string()))
        }
        // Checked before the lookup already (RFC 6376 §6.1.1 and §3.6.1 make it PERMFAIL).
        DkimResult::Fail(e @ Error::Dkim(DkimError::FailedAuidMatch)) => {
            (AuthResult::Permerror, Some(describe(e)))
        }
        DkimResult::Neutral(e) => (AuthResult::Neutral, Some(describe(e))),
        DkimResult::Fail(e) => (AuthResult::Fail, Some(describe(e))),
        DkimResult::PermError(e) => (AuthResult::Permerror, Some(describe(e))),
        DkimResult::TempError(e) => (AuthResult::Temperror, Some(describe(e))),
        DkimResult::None => (AuthResult::None, None),
    }
}

/// The result of a field refused before any lookup, described from mail-auth's parse or,
/// when there is none, from the tags as written.
fn refused_field(field: &Field<'_>, result: AuthResult, reason: String) -> DkimOutcome {
    if let Ok(sig) = field.parsed {
        return outcome_for(sig, field.value, result, Some(reason));
    }
    let tag = |name| dkim_fields::loose_tag(field.value, name);
    DkimOutcome {
        result,
        domain: tag("d").unwrap_or_default().to_ascii_lowercase(),
        selector: tag("s").unwrap_or_default(),
        algorithm: tag("a").unwrap_or_default().to_ascii_lowercase(),
        b: b_tag_prefix(field.value, 8),
        identity: tag("i").filter(|i| !i.is_empty()),
        reason: Some(reason),
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
        Error::Dkim(DkimError::UnsupportedKeyType) => {
            "unsupported key type k= in key record (RFC 6376 3.6.1)".into()
        }
        Error::Dkim(DkimError::RevokedPublicKey) => "key revoked (empty p=)".into(),
        Error::Dkim(DkimError::FailedAuidMatch) => "i= is not within d= (RFC 6376 6.1.1)".into(),
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
