//! Every DKIM-Signature field of a message, checked before any DNS lookup (RFC 6376 §3.5,
//! §6.1.1), so that each one gets a result.
//!
//! mail-auth 0.13.3 drops a field whose parse fails in some ways (a missing required tag,
//! `b=` that is not base64, no tags at all: DESIGN.md item 9), so the message read as
//! unsigned; it keeps the last of duplicate tags, reads a field without `v=`, and never looks
//! at `q=`. Here every field mail-auth saw, parsed or not, is read again as a strict tag list
//! and refused (PERMFAIL) with a reason that names the tag.

use super::arc::parse_tag_list;
use mail_auth::common::crypto::Algorithm;
use mail_auth::dkim::{DkimError, Signature};
use mail_auth::{AuthenticatedMessage, Error};

/// What became of one field: refused here (why, and whether that is `permerror` or, for an
/// `l=` tag mail-auth will not evaluate, `neutral`), or handed on to key retrieval.
pub(super) enum Check {
    Refused { reason: String, neutral: bool },
    Accepted,
}

/// A DKIM-Signature field as found: its place among the header fields, its value, and
/// mail-auth's parse of it (the signature, or why it failed).
pub(super) struct Field<'m> {
    pub position: usize,
    pub value: &'m [u8],
    pub parsed: Result<&'m Signature, &'m Error>,
}

/// The DKIM-Signature fields mail-auth saw, top first (the order of the header section).
pub(super) fn fields<'m>(msg: &'m AuthenticatedMessage<'_>) -> Vec<Field<'m>> {
    let mut found = Vec::with_capacity(msg.dkim_headers.len());
    for (position, (name, value)) in msg.headers.iter().enumerate() {
        if !is_dkim_signature(name) {
            continue;
        }
        let parsed = if let Some(h) = msg
            .dkim_headers
            .iter()
            .find(|h| h.value.as_ptr() == value.as_ptr())
        {
            Ok(&h.header)
        } else if let Some(e) = msg
            .errors
            .iter()
            .find(|e| e.value.as_ptr() == value.as_ptr())
        {
            Err(&e.header)
        } else {
            // mail-auth did not take the field for a DKIM-Signature: neither do we.
            continue;
        };
        found.push(Field {
            position,
            value,
            parsed,
        });
    }
    found
}

/// The field name, white space ignored (mail-auth reads folded names too).
fn is_dkim_signature(name: &[u8]) -> bool {
    let mut letters = name.iter().filter(|c| !c.is_ascii_whitespace());
    b"dkim-signature"
        .iter()
        .all(|want| letters.next().is_some_and(|c| c.eq_ignore_ascii_case(want)))
        && letters.next().is_none()
}

/// RFC 6376 §3.5 and §6.1.1 for one field.
pub(super) fn check(field: &Field<'_>) -> Check {
    let refuse = |reason: String| Check::Refused {
        reason,
        neutral: false,
    };
    let tags = match parse_tag_list(field.value) {
        Ok(tags) => tags,
        // §3.2: a tag list with a duplicate (or any syntax error) is invalid as a whole.
        Err(e) => return refuse(format!("malformed signature: {e} (RFC 6376 3.2)")),
    };
    if tags.is_empty() {
        return refuse("signature has no tags (RFC 6376 3.5)".into());
    }
    let get = |n: &str| tags.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    match get("v") {
        None => return refuse("signature lacks the required tag v= (RFC 6376 3.5)".into()),
        Some("1") => {}
        Some(v) => return refuse(format!("unsupported version v={v} (RFC 6376 3.5)")),
    }
    for required in ["a", "b", "bh", "d", "h", "s"] {
        match get(required) {
            None => {
                return refuse(format!(
                    "signature lacks the required tag {required}= (RFC 6376 3.5)"
                ))
            }
            Some("") => return refuse(format!("empty {required}= tag (RFC 6376 3.5)")),
            Some(_) => {}
        }
    }
    let a = get("a").unwrap_or_default();
    match algorithm(a) {
        None => return refuse(format!("unsupported algorithm a={a} (RFC 6376 3.5)")),
        // RFC 8301 §3.1: verifiers MUST NOT consider rsa-sha1 signatures valid.
        Some(Algorithm::RsaSha1) => return refuse("rsa-sha1 is not accepted (RFC 8301)".into()),
        Some(_) => {}
    }
    if let Some(c) = get("c").filter(|c| !is_canonicalization(c)) {
        return refuse(format!("unsupported canonicalization c={c} (RFC 6376 3.5)"));
    }
    if let Err(Error::Base64) = field.parsed {
        let bad = ["b", "bh"]
            .into_iter()
            .find(|t| !is_base64(get(t).unwrap_or_default()))
            .unwrap_or("b");
        return refuse(format!("{bad}= is not base64 (RFC 6376 3.5)"));
    }
    let signed = get("h").unwrap_or_default();
    if !signed
        .split(':')
        .any(|n| n.trim().eq_ignore_ascii_case("from"))
    {
        // RFC 6376 §6.1.1: a signature not covering From must be ignored (PERMFAIL).
        return refuse("From is not signed (RFC 6376 6.1.1)".into());
    }
    let d = get("d").unwrap_or_default();
    let i = match field.parsed {
        // mail-auth decodes i= (dkim-quoted-printable).
        Ok(sig) => Some(sig.i.as_str()).filter(|i| !i.is_empty()),
        Err(_) => get("i"),
    };
    if let Some(i) = i {
        if !auid_within(i, d) {
            // §6.1.1: d= must be the domain of i= or a parent of it, else PERMFAIL.
            return refuse(format!("i={i} is not within d={d} (RFC 6376 6.1.1)"));
        }
    }
    if let Some(q) = get("q") {
        if !q.split(':').any(|m| m.eq_ignore_ascii_case("dns/txt")) {
            // §3.5: dns/txt is the only query method; with no other, no key can be fetched.
            return refuse(format!("no known query method in q={q} (RFC 6376 3.5)"));
        }
    }
    match field.parsed {
        Ok(_) => Check::Accepted,
        Err(Error::Dkim(DkimError::SignatureLength)) => Check::Refused {
            reason: "signature has an l= tag, which is not evaluated".into(),
            neutral: true,
        },
        Err(e) => refuse(format!(
            "malformed signature: {}",
            e.to_string().to_lowercase()
        )),
    }
}

/// The algorithms RFC 6376 and RFC 8463 define (tag values are case-insensitive here as in
/// mail-auth).
fn algorithm(a: &str) -> Option<Algorithm> {
    match a.to_ascii_lowercase().as_str() {
        "rsa-sha256" => Some(Algorithm::RsaSha256),
        "rsa-sha1" => Some(Algorithm::RsaSha1),
        "ed25519-sha256" => Some(Algorithm::Ed25519Sha256),
        _ => None,
    }
}

/// `c=`: `simple` or `relaxed`, optionally `/simple` or `/relaxed` for the body.
fn is_canonicalization(c: &str) -> bool {
    let known = |m: &str| m.eq_ignore_ascii_case("simple") || m.eq_ignore_ascii_case("relaxed");
    match c.split_once('/') {
        Some((header, body)) => known(header) && known(body),
        None => known(c),
    }
}

/// Base64 as RFC 6376's `base64string` allows it: the alphabet, then at most two `=`.
fn is_base64(s: &str) -> bool {
    let data = s.trim_end_matches('=');
    s.len() - data.len() <= 2
        && !data.is_empty()
        && data
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

/// Whether the domain of the AUID `i` is `d` or a subdomain of it.
pub(super) fn auid_within(i: &str, d: &str) -> bool {
    let Some((_, domain)) = i.rsplit_once('@') else {
        return false;
    };
    let (domain, d) = (domain.trim_end_matches('.'), d.trim_end_matches('.'));
    domain.eq_ignore_ascii_case(d)
        || domain.len() > d.len()
            && domain.as_bytes()[domain.len() - d.len() - 1] == b'.'
            && domain[domain.len() - d.len()..].eq_ignore_ascii_case(d)
}

/// A tag's value read leniently (first occurrence, white space removed), for describing a
/// field that did not parse.
pub(super) fn loose_tag(value: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    text.split(';').find_map(|t| {
        let (n, v) = t.split_once('=')?;
        (n.trim() == name).then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_like_mail_auth() {
        assert!(is_dkim_signature(b"DKIM-Signature"));
        assert!(is_dkim_signature(b"dkim-signature "));
        assert!(!is_dkim_signature(b"DKIM-Signatures"));
        assert!(!is_dkim_signature(b"DKIM2-Signature"));
    }

    #[test]
    fn auid_domain_within_d() {
        assert!(auid_within("@example.com", "example.com"));
        assert!(auid_within("joe@Mail.Example.com", "example.com"));
        assert!(!auid_within("joe@badexample.com", "example.com"));
        assert!(!auid_within("joe@example.org", "example.com"));
        assert!(!auid_within("example.com", "example.com"));
    }

    #[test]
    fn base64_and_canonicalization() {
        assert!(is_base64("AbC+/9=="));
        assert!(!is_base64("AbC*"));
        assert!(!is_base64("A==="));
        assert!(is_canonicalization("relaxed/Simple"));
        assert!(!is_canonicalization("future"));
        assert!(!is_canonicalization("simple/"));
    }
}
