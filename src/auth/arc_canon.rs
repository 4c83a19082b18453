//! ARC canonicalisation (RFC 8617 §4.1, §5.1.1, with DKIM's forms from RFC 6376 §3.4): what
//! the incoming chain is, the body hash, and the exact bytes an ARC-Message-Signature and an
//! ARC-Seal cover. Our chain validation ([`super::arc_chain`]) checks signatures over these
//! bytes, and the sealer (`sign::seal`) signs over the same bytes, so a set we add is one we
//! would validate.
//!
//! The relaxed header form is written here rather than taken from mail-auth 0.13.3, which
//! treats form feed (and other ASCII white space) as folding white space where RFC 6376 §3.4.2
//! does not (only SP and HTAB are WSP); its relaxed *body* form is reused on a copy of the body
//! without trailing whitespace-only lines (DESIGN.md item 1).

use super::dkim::trim_trailing_blank_lines;
use super::outcome::{ArcOutcome, AuthResult};
use mail_auth::common::headers::Writable;
use mail_auth::dkim::Canonicalization;

/// RFC 8617 §4.2.1: a chain has at most 50 sets.
pub const MAX_ARC_SETS: u32 = 50;

/// A header field as `(name, value)`: the value is everything after the colon, as written
/// (folding and the final CRLF may be there or not; the relaxed form does not care).
pub type Field<'a> = (&'a [u8], &'a [u8]);

/// Why a message was not sealed. None of these stops the message: it goes on unsealed and
/// the reason is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSealed {
    /// The incoming chain could not be validated for now (DNS): neither `pass` nor `fail`
    /// would be true, so no set is added.
    #[error("the incoming ARC chain could not be validated (temporary error)")]
    Undetermined,
    /// RFC 8617 §5.1: the newest incoming seal says `cv=fail`, so the chain has ended and
    /// nothing is added to it.
    #[error("the incoming ARC chain already ended with cv=fail")]
    ChainEnded,
    /// RFC 8617 §4.2.1: instance numbers stop at 50.
    #[error("the message already has {0} ARC sets (the limit is 50)")]
    TooManySets(u32),
    /// The incoming ARC fields carry no instance number we could read, so ours is unknown.
    #[error("the incoming ARC fields have unreadable instance numbers")]
    UnreadableInstances,
    /// A validated chain lacks a field of one of its sets (cannot happen after a pass).
    #[error("ARC set {0} is incomplete")]
    IncompleteSet(u32),
    /// ring refused to sign.
    #[error("sealing failed: {0}")]
    Crypto(String),
}

/// What the incoming chain was, for our set: its instance and `cv=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainState {
    /// No ARC fields: our set is i=1, cv=none.
    None,
    /// A valid chain of `n` sets: our set is i=n+1, cv=pass, and the seal covers them all.
    Pass(u32),
    /// A broken chain whose highest instance is `n`: our set is i=n+1, cv=fail, and the seal
    /// covers our set alone (RFC 8617 §5.1.2).
    Fail(u32),
}

impl ChainState {
    /// Reads the chain from the message's header fields and our validation of it.
    pub fn of(fields: &[Field<'_>], arc: Option<&ArcOutcome>) -> Result<ChainState, NotSealed> {
        let mut highest = 0u32;
        let mut any = false;
        // The cv= of the newest ARC-Seal.
        let mut newest_cv: Option<(u32, String)> = None;
        for (name, value) in fields {
            let Some(kind) = arc_kind(name) else {
                continue;
            };
            any = true;
            if let Some(i) = instance(value) {
                highest = highest.max(i);
                if kind == 2 && newest_cv.as_ref().is_none_or(|(n, _)| i > *n) {
                    newest_cv = Some((i, tag(value, "cv").unwrap_or_default()));
                }
            }
        }
        // RFC 8617 §5.1 step 1: a chain whose newest seal already says fail has ended.
        if newest_cv.is_some_and(|(i, cv)| i == highest && cv.eq_ignore_ascii_case("fail")) {
            return Err(NotSealed::ChainEnded);
        }
        let result = arc.map_or(AuthResult::None, |a| a.result);
        let state = match result {
            AuthResult::Temperror => return Err(NotSealed::Undetermined),
            AuthResult::None if !any => ChainState::None,
            AuthResult::Pass => ChainState::Pass(highest),
            // Anything else, and ARC fields that validation did not see as a chain, fail.
            _ if highest == 0 => return Err(NotSealed::UnreadableInstances),
            _ => ChainState::Fail(highest),
        };
        if highest >= MAX_ARC_SETS {
            return Err(NotSealed::TooManySets(highest));
        }
        Ok(state)
    }

    /// The instance of the set we add.
    pub fn instance(self) -> u32 {
        match self {
            ChainState::None => 1,
            ChainState::Pass(n) | ChainState::Fail(n) => n + 1,
        }
    }

    /// The `cv=` value of the set we add.
    pub fn cv(self) -> &'static str {
        match self {
            ChainState::None => "none",
            ChainState::Pass(_) => "pass",
            ChainState::Fail(_) => "fail",
        }
    }
}

/// Which ARC field a header field name is: 0 AAR, 1 AMS, 2 AS (the order of a set in the
/// seal's hash, RFC 8617 §5.1.1).
pub fn arc_kind(name: &[u8]) -> Option<usize> {
    let name = name.trim_ascii();
    ARC_FIELDS
        .iter()
        .position(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// The names of a set's three fields, in the order [`arc_kind`] numbers them.
pub const ARC_FIELDS: [&str; 3] = [
    "ARC-Authentication-Results",
    "ARC-Message-Signature",
    "ARC-Seal",
];

/// The `i=` tag of an ARC field (the AAR's comes first, the others are tag lists), if it is
/// a number from 1 to 1024 (anything larger is nonsense and read as unreadable).
pub fn instance(value: &[u8]) -> Option<u32> {
    tag(value, "i")?
        .parse::<u32>()
        .ok()
        .filter(|i| (1..=1024).contains(i))
}

/// The value of a tag in a tag list (white space removed); the first one if repeated.
pub fn tag(value: &[u8], wanted: &str) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    text.split(';').find_map(|tag| {
        let (name, v) = tag.split_once('=')?;
        (name.trim() == wanted).then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

/// SHA-256 of the relaxed canonical body (RFC 6376 §3.4.4), computed over a copy without
/// trailing whitespace-only lines: mail-auth 0.13.3 keeps them (DESIGN.md item 1).
pub fn body_hash(body: &[u8]) -> Vec<u8> {
    body_hash_as(body, true, None)
}

/// SHA-256 of the relaxed or simple canonical body, cut to `length` octets if given (`l=`).
pub fn body_hash_as(body: &[u8], relaxed: bool, length: Option<usize>) -> Vec<u8> {
    let mut canonical = Vec::with_capacity(body.len());
    if relaxed {
        Canonicalization::Relaxed
            .canonical_body(trim_trailing_blank_lines(body), 0)
            .write(&mut canonical);
    } else {
        Canonicalization::Simple
            .canonical_body(body, 0)
            .write(&mut canonical);
    }
    if let Some(l) = length {
        canonical.truncate(l);
    }
    ring::digest::digest(&ring::digest::SHA256, &canonical)
        .as_ref()
        .to_vec()
}

/// What the AMS signature covers (RFC 6376 §3.7): the listed fields, each occurrence taken
/// from the bottom up, then the AMS itself without its `b=` value and without CRLF.
pub fn ams_signed_data(fields: &[Field<'_>], h: &[String], ams_unsigned: &str) -> Vec<u8> {
    let ams = (&b"ARC-Message-Signature"[..], ams_unsigned.as_bytes());
    ams_signed_data_as(fields, h, ams, true)
}

/// [`ams_signed_data`] for either header canonicalization; `ams` is the field as written
/// (name and value) with its `b=` value removed. Simple keeps every byte (RFC 6376 §3.4.1).
pub fn ams_signed_data_as(
    fields: &[Field<'_>],
    h: &[String],
    ams: Field<'_>,
    relaxed: bool,
) -> Vec<u8> {
    let mut data = Vec::new();
    let mut used = vec![false; fields.len()];
    for name in h {
        let found =
            fields.iter().enumerate().rev().find(|(k, (n, _))| {
                !used[*k] && n.trim_ascii().eq_ignore_ascii_case(name.as_bytes())
            });
        if let Some((k, (n, v))) = found {
            used[k] = true;
            if relaxed {
                relaxed_header(n, v, &mut data);
                data.extend_from_slice(b"\r\n");
            } else {
                data.extend_from_slice(n);
                data.push(b':');
                data.extend_from_slice(v);
                if !v.ends_with(b"\n") {
                    data.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    if relaxed {
        relaxed_header(ams.0, ams.1, &mut data);
    } else {
        data.extend_from_slice(ams.0);
        data.push(b':');
        let value = ams.1;
        let value = value.strip_suffix(b"\n").unwrap_or(value);
        data.extend_from_slice(value.strip_suffix(b"\r").unwrap_or(value));
    }
    data
}

/// What the seal covers (RFC 8617 §5.1.1): every set in instance order, AAR, AMS, AS, each
/// relaxed; ours last, its seal without the `b=` value and without CRLF. After a failed
/// chain only our set (§5.1.2).
pub fn seal_signed_data(
    fields: &[Field<'_>],
    chain: ChainState,
    aar: &[u8],
    ams: &[u8],
    seal_unsigned: &[u8],
) -> Result<Vec<u8>, NotSealed> {
    let mut data = Vec::new();
    if let ChainState::Pass(n) = chain {
        for i in 1..=n {
            for kind in 0..3 {
                let field = fields
                    .iter()
                    .find(|(name, value)| {
                        arc_kind(name) == Some(kind) && instance(value) == Some(i)
                    })
                    .ok_or(NotSealed::IncompleteSet(i))?;
                relaxed_header(field.0, field.1, &mut data);
                data.extend_from_slice(b"\r\n");
            }
        }
    }
    relaxed_header(b"ARC-Authentication-Results", aar, &mut data);
    data.extend_from_slice(b"\r\n");
    relaxed_header(b"ARC-Message-Signature", ams, &mut data);
    data.extend_from_slice(b"\r\n");
    relaxed_header(b"ARC-Seal", seal_unsigned, &mut data);
    Ok(data)
}

/// RFC 6376 §3.4.2 relaxed header canonicalization, without the final CRLF: the name in
/// lower case without white space around it, the value unfolded, each run of WSP (SP and
/// HTAB only) one space, none at either end.
pub fn relaxed_header(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend(name.trim_ascii().iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let mut pending_space = false;
    let mut started = false;
    for &c in value {
        match c {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => pending_space = started,
            _ => {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                out.push(c);
                started = true;
            }
        }
    }
}
