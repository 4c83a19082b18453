//! ARC sealing (RFC 8617 §5.1): the three fields a forwarding hop adds on top of a message,
//! built from our own verification of it.
//!
//! mail-auth 0.13.3 has an `ArcSealer`, but it cannot be used as it is:
//! - its `ARC-Authentication-Results` is mail-auth's own `AuthenticationResults`, whose fields
//!   are private and which is built only from mail-auth's outputs, so it cannot carry the
//!   Authentication-Results this filter wrote (our SPF evaluator, our DKIM fixes, DMARC with
//!   our policy);
//! - it takes the body hash mail-auth computed while parsing, with the relaxed body
//!   canonicalization that keeps trailing whitespace-only lines (DESIGN.md item 1);
//! - it refuses to seal a failed chain (`InvalidCV`), where RFC 8617 §5.1.2 asks for a set
//!   with `cv=fail` that covers only itself;
//! - its relaxed header canonicalization treats form feed (and other ASCII white space) as
//!   folding white space, which RFC 6376 §3.4.2 does not (only SP and HTAB are WSP).
//!
//! So the set is built here: always `a=rsa-sha256` (the only algorithm RFC 8617 allows) and
//! `c=relaxed/relaxed`, over the bytes auth's ARC canonicalisation (`auth::arc_canon`, shared
//! with our chain validation) says each signature covers; signatures come from our ring key.

use super::key::{KeyAlgorithm, KeyError, KeyErrorKind, PrivateKey};
use crate::auth::arc_canon::{
    ams_signed_data, body_hash, seal_signed_data, ChainState, Field, NotSealed,
};
use crate::config::{ArcSealConfig, SealMode};

/// The smallest RSA key we seal with: RFC 8617 allows rsa-sha256 only, and RFC 8301 §3.2
/// recommends 2048 bits.
pub const ARC_MIN_RSA_BITS: usize = 2048;

/// Seals messages with one RSA key as `d=domain; s=selector`.
#[derive(Debug)]
pub struct Sealer {
    pub domain: String,
    pub selector: String,
    pub mode: SealMode,
    headers: Vec<String>,
    key: PrivateKey,
}

/// One ARC set's three fields, values without the name, folded with CRLF + TAB; written
/// on top of the message in this order (RFC 8617 §4.1 shows ARC-Seal first).
pub type ArcSet = [(&'static str, String); 3];

impl Sealer {
    /// Loads the key of an `[arc.seal]` section; `None` when sealing is off.
    pub fn new(config: &ArcSealConfig) -> Result<Option<Sealer>, KeyError> {
        if config.mode == SealMode::Off {
            return Ok(None);
        }
        let with_origin = |mut e: KeyError| {
            e.origin = config.origin.clone();
            e
        };
        let key = PrivateKey::load(&config.key_file).map_err(with_origin)?;
        if key.algorithm() != KeyAlgorithm::Rsa || key.bits() < ARC_MIN_RSA_BITS {
            let reason = format!(
                "ARC sealing needs an RSA key of at least {ARC_MIN_RSA_BITS} bits \
                 (RFC 8617 allows rsa-sha256 only); this is {} {} bits",
                key.algorithm(),
                key.bits()
            );
            let e = KeyError::new(KeyErrorKind::Invalid(reason)).at(&config.key_file);
            return Err(with_origin(e));
        }
        tracing::info!(domain = %config.domain, selector = %config.selector,
            mode = ?config.mode, "ARC sealing key loaded");
        Ok(Some(Sealer::with_key(config, key)))
    }

    /// A sealer with its key already in memory (tests). The key must be RSA.
    pub fn with_key(config: &ArcSealConfig, key: PrivateKey) -> Sealer {
        Sealer {
            domain: config.domain.clone(),
            selector: config.selector.clone(),
            mode: config.mode,
            headers: config.headers.clone(),
            key,
        }
    }

    /// Builds our ARC set for a message as it will leave: `fields` are its header fields top
    /// first (our other additions included, removed fields left out), `body` its body,
    /// `results` our Authentication-Results value (authserv-id and results), `chain` what
    /// our validation found. `now` is the `t=` of both signatures.
    pub fn seal(
        &self,
        fields: &[Field<'_>],
        body: &[u8],
        results: &str,
        chain: ChainState,
        now: u64,
    ) -> Result<ArcSet, NotSealed> {
        let h = signed_names(fields, &self.headers);
        let parts = SetParts {
            domain: &self.domain,
            selector: &self.selector,
            instance: chain.instance(),
            cv: chain.cv(),
            t: now,
            h: &h,
        };
        let sign = |data: &[u8]| {
            self.key
                .sign_bytes(data)
                .map_err(|_| NotSealed::Crypto("the RSA key refused to sign".into()))
        };
        build_set(&parts, fields, body, results, chain, sign)
    }
}

/// The names for `h=`: each configured field once per occurrence in the message, in the
/// configured order (a verifier takes occurrences from the bottom, RFC 6376 §5.4.2).
pub fn signed_names(fields: &[Field<'_>], headers: &[String]) -> Vec<String> {
    let mut h = Vec::new();
    for name in headers {
        let count = fields
            .iter()
            .filter(|(n, _)| n.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
            .count();
        h.extend(std::iter::repeat_n(name.to_ascii_lowercase(), count));
    }
    h
}

/// The tag values of a set, apart from the signatures.
pub struct SetParts<'a> {
    pub domain: &'a str,
    pub selector: &'a str,
    pub instance: u32,
    pub cv: &'a str,
    pub t: u64,
    pub h: &'a [String],
}

/// Builds the set, signing with `sign` (RSASSA-PKCS1-v1_5 over SHA-256 of the data it is
/// given). Public so the conformance tests can check the exact bytes signed.
pub fn build_set(
    parts: &SetParts<'_>,
    fields: &[Field<'_>],
    body: &[u8],
    results: &str,
    chain: ChainState,
    mut sign: impl FnMut(&[u8]) -> Result<Vec<u8>, NotSealed>,
) -> Result<ArcSet, NotSealed> {
    let i = parts.instance;
    let aar = format!("i={i}; {}", results.trim_start());
    let mut ams = ams_unsigned(parts, &body_hash(body));
    let data = ams_signed_data(fields, parts.h, &ams);
    ams.push_str(&fold_base64(&base64(&sign(&data)?)));
    let mut seal = format!(
        "i={i}; a=rsa-sha256; cv={}; d={}; s={};\r\n\tt={}; b=",
        parts.cv, parts.domain, parts.selector, parts.t
    );
    let data = seal_signed_data(
        fields,
        chain,
        aar.as_bytes(),
        ams.as_bytes(),
        seal.as_bytes(),
    )?;
    seal.push_str(&fold_base64(&base64(&sign(&data)?)));
    Ok([
        ("ARC-Seal", seal),
        ("ARC-Message-Signature", ams),
        ("ARC-Authentication-Results", aar),
    ])
}

/// The AMS value up to and including `b=` (tags in the order RFC 8617 §4.1.2 lists them).
fn ams_unsigned(parts: &SetParts<'_>, bh: &[u8]) -> String {
    let mut ams = format!(
        "i={}; a=rsa-sha256; c=relaxed/relaxed; d={}; s={};\r\n\tt={}; h=",
        parts.instance, parts.domain, parts.selector, parts.t
    );
    let mut column = 13;
    for (n, name) in parts.h.iter().enumerate() {
        if n > 0 {
            if column + name.len() + 1 > 76 {
                ams.push_str("\r\n\t  ");
                column = 10;
            }
            ams.push(':');
            column += 1;
        }
        ams.push_str(name);
        column += name.len();
    }
    ams.push_str(&format!(";\r\n\tbh={};\r\n\tb=", base64(bh)));
    ams
}

fn base64(bytes: &[u8]) -> String {
    crate::auth::base64::base64_encode(bytes)
}

/// A signature value folded into lines of at most 72 characters, so header lines stay
/// within RFC 5322's 78; nothing follows it (dkimpy keeps trailing white space after `b=`).
fn fold_base64(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 36);
    for (n, chunk) in b64.as_bytes().chunks(72).enumerate() {
        if n > 0 {
            out.push_str("\r\n\t");
        }
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    out
}

/// The header fields of a message and where its body starts (shared with the DKIM signer).
pub fn split_message(message: &[u8]) -> (Vec<Field<'_>>, &[u8]) {
    let (fields, body_offset) = super::header_fields(message);
    (fields, &message[body_offset..])
}

#[cfg(test)]
mod tests;
