//! ARC chain validation (RFC 8617) through mail-auth, reported as `none`, `pass` or `fail`
//! with the sealers' domains (a trusted sealer may override a DMARC failure in policy).
//!
//! mail-auth accepts some malformed ARC header fields (duplicate or misspelt tags, an empty
//! tag, `a=rsa-sha1` or no `a=`, an AMS that signs ARC-Seal) and reports a set with no AMS as
//! "no chain". Those are checked here first: any of them makes the chain fail (§5.2).

use super::arc_chain;
use super::outcome::{ArcOutcome, AuthResult};
use crate::dns::Dns;
use mail_auth::{AuthenticatedMessage, DkimResult};

pub(super) async fn verify(dns: &Dns, msg: &AuthenticatedMessage<'_>) -> ArcOutcome {
    let mut seals: Vec<_> = msg
        .as_headers
        .iter()
        .map(|h| (h.header.i, h.header.d.to_ascii_lowercase()))
        .collect();
    seals.sort_by_key(|(i, _)| *i);
    let chain_length = seals.len() as u32;
    let sealers = seals.into_iter().map(|(_, d)| d).collect();

    let body = msg
        .raw_message
        .get(msg.body_offset as usize..)
        .unwrap_or_default();
    let mut oldest_pass = None;
    let (result, reason) = match structural_problem(msg) {
        Some(problem) => (AuthResult::Fail, Some(problem)),
        None => {
            // The keys mail-auth will want: the newest AMS and every seal (RFC 8617 §5.2).
            let newest = msg.ams_headers.iter().max_by_key(|h| h.header.i);
            let keys = newest
                .map(|h| (&h.header.s, &h.header.d))
                .into_iter()
                .chain(msg.as_headers.iter().map(|h| (&h.header.s, &h.header.d)));
            for (s, d) in keys {
                let key = format!("{s}._domainkey.{d}.");
                let _ = dns
                    .prefetch_txt::<mail_auth::common::verify::DomainKey>(&key)
                    .await;
            }
            let output = dns.authenticator().verify_arc(dns.params(msg)).await;
            match output.result() {
                DkimResult::Pass => {
                    oldest_pass = Some(arc_chain::oldest_pass(dns, &msg.headers, body).await);
                    (AuthResult::Pass, None)
                }
                DkimResult::None => (AuthResult::None, None),
                DkimResult::TempError(e) => (AuthResult::Temperror, Some(e.to_string())),
                // RFC 8617 §4.4: anything else makes the chain fail, unless our own
                // validation passes it: mail-auth refuses an AMS with an empty h=, and its
                // relaxed header form treats form feed as white space (RFC 6376 §3.4.2
                // does not), where dkimpy and Mail::DKIM follow the RFC.
                DkimResult::Fail(e) | DkimResult::Neutral(e) | DkimResult::PermError(e) => {
                    match arc_chain::validate(dns, &msg.headers, body).await {
                        Ok(oldest) => {
                            oldest_pass = Some(oldest);
                            (AuthResult::Pass, None)
                        }
                        Err(why) if has_empty_ams_h(msg) => {
                            (AuthResult::Fail, Some(why.to_lowercase()))
                        }
                        Err(_) => (AuthResult::Fail, Some(e.to_string().to_lowercase())),
                    }
                }
            }
        }
    };
    ArcOutcome {
        result,
        reason,
        chain_length,
        sealers,
        oldest_pass,
        remote_ip: None,
    }
}

/// Whether an ARC-Message-Signature signs no header field (`h=` empty), which mail-auth
/// refuses to parse; RFC 8617 §4.1.2 takes DKIM's `h=` syntax, and both peers accept it.
fn has_empty_ams_h(msg: &AuthenticatedMessage<'_>) -> bool {
    msg.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case(b"ARC-Message-Signature")
            && parse_tag_list(value).is_ok_and(|tags| {
                tags.iter()
                    .any(|(k, v)| k == "h" && v.trim_matches(':').is_empty())
            })
    })
}

/// Problems with the ARC header fields themselves, before any cryptography.
fn structural_problem(msg: &AuthenticatedMessage<'_>) -> Option<String> {
    let mut any_arc = false;
    for (name, value) in &msg.headers {
        let (kind, required): (&str, &[&str]) = if name.eq_ignore_ascii_case(b"ARC-Seal") {
            ("ARC-Seal", &["i", "a", "b", "d", "s", "cv"])
        } else if name.eq_ignore_ascii_case(b"ARC-Message-Signature") {
            (
                "ARC-Message-Signature",
                &["i", "a", "b", "bh", "d", "h", "s"],
            )
        } else {
            if name.eq_ignore_ascii_case(b"ARC-Authentication-Results") {
                any_arc = true;
            }
            continue;
        };
        any_arc = true;
        let tags = match parse_tag_list(value) {
            Ok(tags) => tags,
            Err(e) => return Some(format!("malformed {kind}: {e}")),
        };
        let get = |n: &str| tags.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        if let Some(missing) = required.iter().find(|t| get(t).is_none()) {
            return Some(format!("{kind} lacks the {missing}= tag"));
        }
        // RFC 8617 §4.1.1 and §4.1.3 (via RFC 8301): rsa-sha256 is the only algorithm.
        if get("a") != Some("rsa-sha256") {
            return Some(format!("{kind} uses an unsupported algorithm"));
        }
        if kind == "ARC-Seal" && get("h").is_some() {
            return Some("ARC-Seal must not have an h= tag".into());
        }
        if kind == "ARC-Message-Signature"
            && get("h").is_some_and(|h| {
                h.split(':')
                    .any(|f| f.trim().eq_ignore_ascii_case("arc-seal"))
            })
        {
            // RFC 8617 §4.1.2: the AMS must not sign ARC-Seal fields.
            return Some("ARC-Message-Signature signs ARC-Seal".into());
        }
    }
    if any_arc && (msg.ams_headers.is_empty() || msg.as_headers.is_empty()) && !msg.has_arc_errors {
        return Some("incomplete ARC set".into());
    }
    None
}

/// RFC 6376 §3.2 tag list: `name=value` separated by `;`, names `ALPHA *(ALPHA/DIGIT/_)`,
/// case-sensitive, no duplicates, no empty element except after the last `;`.
pub(crate) fn parse_tag_list(value: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(value).map_err(|_| "not UTF-8".to_string())?;
    let mut tags: Vec<(String, String)> = Vec::with_capacity(12);
    let mut specs = text.split(';').peekable();
    while let Some(spec) = specs.next() {
        if spec.trim().is_empty() {
            if specs.peek().is_none() {
                break;
            }
            return Err("empty tag".into());
        }
        let (name, value) = spec.split_once('=').ok_or("tag without '='")?;
        let name = name.trim();
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !valid {
            return Err(format!("invalid tag name {name:?}"));
        }
        if tags.iter().any(|(k, _)| k == name) {
            return Err(format!("duplicate tag {name}"));
        }
        tags.push((name.to_string(), without_white_space(value)));
    }
    Ok(tags)
}

/// A tag value with its (folding) white space removed. Signature values are long (`b=`,
/// `bh=`) and ASCII: those are filtered byte by byte, not char by char (profiled: collecting
/// chars into a String was most of the tag-list parse, itself 4 % of a verified message).
fn without_white_space(value: &str) -> String {
    // `char::is_whitespace` on ASCII: HT, LF, VT, FF, CR and space.
    let white = |b: u8| matches!(b, b'\t'..=b'\r' | b' ');
    if !value.is_ascii() {
        return value.chars().filter(|c| !c.is_whitespace()).collect();
    }
    if !value.bytes().any(white) {
        return value.to_string();
    }
    let mut kept = Vec::with_capacity(value.len());
    kept.extend(value.bytes().filter(|&b| !white(b)));
    // ASCII in, a subset of it out.
    String::from_utf8(kept).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::parse_tag_list;

    #[test]
    fn tag_lists() {
        assert!(parse_tag_list(b"a=rsa-sha256; b=abc\r\n def; d=x;").is_ok());
        assert!(parse_tag_list(b"a=1;; b=2").is_err());
        assert!(parse_tag_list(b"a=1; a=2").is_err());
        assert!(parse_tag_list(b"a=1; _=2").is_err());
        assert!(parse_tag_list(b"a=1; b").is_err());
        let t = parse_tag_list(b" S=dummy").unwrap();
        assert_eq!(t[0].0, "S");
        // White space inside values goes, ASCII or not (as `char::is_whitespace` says).
        let t = parse_tag_list(b"b=ab\r\n\t c\x0bd\x0c; n=\xc3\xa9 \xc2\xa0x ;").unwrap();
        assert_eq!(t[0].1, "abcd");
        assert_eq!(t[1].1, "\u{e9}x");
    }
}
