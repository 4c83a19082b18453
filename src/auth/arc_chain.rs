//! Our own ARC chain validation (RFC 8617 §5.2), for what mail-auth 0.13.3 cannot do:
//!
//! - it refuses to parse an ARC-Message-Signature whose `h=` is empty, so such a chain comes
//!   out broken; dkimpy and Mail::DKIM validate it (an AMS that signs no field still signs
//!   the body and itself), and so do we, here, when that is why mail-auth failed;
//! - it validates only the newest AMS; §5.2 step 7's `oldest-pass` needs the older ones.
//!
//! Keys come through the same resolver and caches as every other lookup; signatures are
//! checked with mail-auth's ring-backed verifying key; the bytes signed come from
//! [`super::arc_canon`], which the sealer signs over too.

use super::arc_canon::{ams_signed_data_as, arc_kind, body_hash_as, instance, seal_signed_data};
use super::arc_canon::{tag, ChainState, Field, ARC_FIELDS};
use super::base64::base64_decode;
use crate::dns::Dns;
use mail_auth::common::crypto::Algorithm;
use mail_auth::common::verify::DomainKey;

/// The ARC fields of a message by instance: `sets[i - 1] = [AAR, AMS, AS]`.
struct Sets<'a> {
    sets: Vec<[Field<'a>; 3]>,
}

impl<'a> Sets<'a> {
    /// Exactly one field of each kind for each instance from 1 up, at most 50 (§5.2 step 2).
    fn collect(fields: &[Field<'a>]) -> Result<Sets<'a>, String> {
        let mut found: Vec<[Option<Field<'a>>; 3]> = Vec::new();
        for &(name, value) in fields {
            let Some(kind) = arc_kind(name) else {
                continue;
            };
            let i = instance(value).ok_or("an ARC field has no valid i= tag")? as usize;
            if i > 50 {
                return Err("more than 50 ARC sets".into());
            }
            if found.len() < i {
                found.resize(i, [None, None, None]);
            }
            if found[i - 1][kind].replace((name, value)).is_some() {
                return Err(format!("two {} fields with i={i}", ARC_FIELDS[kind]));
            }
        }
        let mut sets = Vec::with_capacity(found.len());
        for (n, set) in found.into_iter().enumerate() {
            match set {
                [Some(aar), Some(ams), Some(seal)] => sets.push([aar, ams, seal]),
                _ => return Err(format!("ARC set {} is incomplete", n + 1)),
            }
        }
        Ok(Sets { sets })
    }
}

/// The whole of §5.2 for a message mail-auth could not parse: `Ok(oldest_pass)` when the
/// chain passes, `Err(why)` when it fails.
pub(super) async fn validate(dns: &Dns, fields: &[Field<'_>], body: &[u8]) -> Result<u32, String> {
    let sets = Sets::collect(fields)?;
    let n = sets.sets.len();
    if n == 0 {
        return Err("no ARC sets".into());
    }
    // §5.2 step 3: cv=none on the first seal, cv=pass on every later one.
    for (k, set) in sets.sets.iter().enumerate() {
        let cv = tag(set[2].1, "cv").unwrap_or_default().to_ascii_lowercase();
        let want = if k == 0 { "none" } else { "pass" };
        if cv != want {
            return Err(format!("ARC-Seal i={} has cv={cv}", k + 1));
        }
    }
    // Step 4: the newest AMS.
    verify_ams(dns, fields, body, sets.sets[n - 1][1]).await?;
    // Step 5: every seal, newest first, each over the sets up to its own.
    for k in (0..n).rev() {
        let [aar, ams, seal] = sets.sets[k];
        let prior = ChainState::Pass(k as u32);
        let (unsigned, b) = without_b(seal.1)?;
        let data = seal_signed_data(fields, prior, aar.1, ams.1, unsigned.as_bytes())
            .map_err(|e| e.to_string())?;
        verify(dns, seal.1, &data, &b)
            .await
            .map_err(|e| format!("ARC-Seal i={}: {e}", k + 1))?;
    }
    Ok(oldest_pass(dns, fields, body).await)
}

/// §5.2 step 7: walking down from the newest AMS (already valid), the lowest instance whose
/// AMS still validates with all newer ones; 0 when they all do.
pub(super) async fn oldest_pass(dns: &Dns, fields: &[Field<'_>], body: &[u8]) -> u32 {
    let Ok(sets) = Sets::collect(fields) else {
        return 0;
    };
    let n = sets.sets.len();
    for k in (0..n.saturating_sub(1)).rev() {
        if verify_ams(dns, fields, body, sets.sets[k][1])
            .await
            .is_err()
        {
            return k as u32 + 2;
        }
    }
    0
}

/// One ARC-Message-Signature (RFC 8617 §4.1.2, DKIM's rules: RFC 6376 §3.7, §6.1.3).
async fn verify_ams(
    dns: &Dns,
    fields: &[Field<'_>],
    body: &[u8],
    ams_field: Field<'_>,
) -> Result<(), String> {
    let ams = ams_field.1;
    let c = tag(ams, "c").unwrap_or_else(|| "simple/simple".into());
    let (ch, cb) = c.split_once('/').unwrap_or((c.as_str(), "simple"));
    let relaxed = |s: &str| match s {
        "relaxed" => Ok(true),
        "simple" => Ok(false),
        _ => Err(format!("unknown canonicalization {s}")),
    };
    let (ch, cb) = (relaxed(ch)?, relaxed(cb)?);
    let bh = tag(ams, "bh").ok_or("AMS without bh=")?;
    let length = match tag(ams, "l") {
        Some(l) => Some(l.parse::<usize>().map_err(|_| "bad l= tag")?),
        None => None,
    };
    if base64_decode(bh.as_bytes()).as_deref() != Some(body_hash_as(body, cb, length).as_slice()) {
        return Err("AMS body hash mismatch".into());
    }
    let h: Vec<String> = tag(ams, "h")
        .unwrap_or_default()
        .split(':')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let (unsigned, b) = without_b(ams)?;
    let data = ams_signed_data_as(fields, &h, (ams_field.0, unsigned.as_bytes()), ch);
    verify(dns, ams, &data, &b).await
}

/// Checks `b` over `data` with the key the field's `d=` and `s=` name (rsa-sha256 only).
async fn verify(dns: &Dns, field: &[u8], data: &[u8], b: &[u8]) -> Result<(), String> {
    if tag(field, "a").as_deref() != Some("rsa-sha256") {
        return Err("not rsa-sha256".into());
    }
    let (d, s) = (
        tag(field, "d").ok_or("no d= tag")?,
        tag(field, "s").ok_or("no s= tag")?,
    );
    let key = dns
        .prefetch_txt::<DomainKey>(&format!("{s}._domainkey.{d}."))
        .await
        .map_err(|e| e.to_string().to_lowercase())?;
    if key.p.public_key_bits() < 1024 {
        return Err("key shorter than 1024 bits".into());
    }
    let signature = base64_decode(b).ok_or("b= is not base64")?;
    key.p
        .verify_bytes(data, &signature, Algorithm::RsaSha256)
        .map_err(|_| "signature verification failed".to_string())
}

/// The field with its `b=` value removed (RFC 6376 §3.7; the rest byte for byte), and the
/// `b=` value without white space.
fn without_b(value: &[u8]) -> Result<(String, Vec<u8>), String> {
    let text = std::str::from_utf8(value).map_err(|_| "ARC field is not UTF-8")?;
    let mut out = String::with_capacity(text.len());
    let mut b = None;
    for (k, part) in text.split(';').enumerate() {
        if k > 0 {
            out.push(';');
        }
        match part.split_once('=') {
            Some((name, v)) if name.trim() == "b" => {
                out.push_str(name);
                out.push('=');
                b = Some(v.bytes().filter(|c| !c.is_ascii_whitespace()).collect());
            }
            _ => out.push_str(part),
        }
    }
    Ok((out, b.ok_or("no b= tag")?))
}
