//! ARC sealing in the end-of-message step (RFC 8617 §5.1): our set added to the edits of an
//! inbound message we pass on, or above the DKIM signatures of an outbound one. The doors
//! (milter, SMTP front end, `arc-seal`) only apply the edits.

use super::decision::{Decision, Edits};
use super::outbound::{sign_outbound, Outbound};
use crate::auth::arc_canon::{ChainState, Field, NotSealed};
use crate::auth::headers::authentication_results;
use crate::auth::{Connection, Outcome, Transaction, Verifier};
use crate::config::SealMode;
use crate::policy::Action;
use crate::sign::seal::{split_message, Sealer};
use crate::sign::Signer;

/// Adds our ARC set on top of the edits of an inbound message we pass on (RFC 8617 §5.1),
/// when the sealer is set to seal verified mail. `raw` is the message as received; the set
/// covers it as it will leave, with the edits made. Returns the instance sealed, or why not
/// (never an error for the message: it goes on unsealed).
pub fn seal_inbound(
    sealer: &Sealer,
    decision: &mut Decision,
    raw: &[u8],
) -> Result<Option<u32>, NotSealed> {
    let keeps = matches!(decision.verdict.action, Action::Accept | Action::Quarantine);
    let o = &decision.outcome;
    if sealer.mode != SealMode::Verified
        || !keeps
        || o.skipped.is_some()
        || o.oversized
        || o.malformed.is_some()
    {
        return Ok(None);
    }
    let Some(results) = decision.authentication_results() else {
        return Ok(None);
    };
    let results = results.to_string();
    let set = seal_fields(sealer, &decision.edits, raw, &results, o)?;
    let instance = crate::auth::arc_canon::instance(set[0].1.as_bytes());
    decision
        .edits
        .add
        .splice(0..0, set.map(|(n, v)| (n.to_string(), v)));
    Ok(instance)
}

/// Builds the set for `raw` once `edits` are made: our fields on top, forged ones gone.
fn seal_fields(
    sealer: &Sealer,
    edits: &Edits,
    raw: &[u8],
    results: &str,
    outcome: &Outcome,
) -> Result<crate::sign::seal::ArcSet, NotSealed> {
    let (original, body) = split_message(raw);
    let chain = ChainState::of(&original, outcome.arc.as_ref())?;
    let mut fields: Vec<Field<'_>> = edits
        .add
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let removed = removed_fields(&original, edits);
    for (field, removed) in original.iter().zip(removed) {
        if !removed {
            fields.push(*field);
        }
    }
    sealer.seal(&fields, body, results, chain, unix_now())
}

/// The message as it leaves once `edits` are made: our fields on top (`Name: value`), the
/// removed fields gone, everything else byte for byte.
pub fn apply_edits(raw: &[u8], edits: &Edits) -> Vec<u8> {
    let (original, body) = split_message(raw);
    let mut out = Vec::with_capacity(raw.len() + 2048);
    for (name, value) in &edits.add {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let header_end = raw.len() - body.len();
    let removed = removed_fields(&original, edits);
    let mut end_of_fields = 0;
    for ((name, value), removed) in original.iter().zip(removed) {
        let start = name.as_ptr() as usize - raw.as_ptr() as usize;
        let end = value.as_ptr() as usize - raw.as_ptr() as usize + value.len();
        end_of_fields = end;
        if !removed {
            out.extend_from_slice(&raw[start..end]);
        }
    }
    // The empty line (or whatever ended the header) and the body.
    out.extend_from_slice(&raw[end_of_fields.min(header_end)..]);
    out
}

/// For each header field, whether `edits` remove it: removals name a field and its 1-based
/// index among the fields of that name.
fn removed_fields(fields: &[Field<'_>], edits: &Edits) -> Vec<bool> {
    let mut seen: Vec<(&[u8], usize)> = Vec::new();
    fields
        .iter()
        .map(|(name, _)| {
            let count = match seen.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some((_, c)) => {
                    *c += 1;
                    *c
                }
                None => {
                    seen.push((name, 1));
                    1
                }
            };
            edits
                .remove
                .iter()
                .any(|(n, i)| *i == count && n.as_bytes().eq_ignore_ascii_case(name))
        })
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs an outbound message and, when the sealer is set to seal outbound mail, adds our ARC
/// set over the signed message. The ARC-Authentication-Results carries our verification of
/// what the client sent (DKIM and ARC: SPF and DMARC would judge our own client).
pub async fn sign_and_seal(
    signer: &Signer,
    sealer: Option<&Sealer>,
    verifier: &Verifier,
    conn: &Connection,
    auth_user: Option<&str>,
    message: &[u8],
) -> Outbound {
    let signed = sign_outbound(signer, auth_user, message);
    let Outbound::Signed(mut fields) = signed else {
        return signed;
    };
    let Some(sealer) = sealer.filter(|s| s.mode == SealMode::Outbound) else {
        return Outbound::Signed(fields);
    };
    let tx = Transaction::for_outbound_seal(verifier, conn, message);
    let outcome = tx.finish(verifier).await;
    let results = authentication_results(&verifier.config().authserv_id, &outcome, None);
    let edits = Edits {
        add: fields.clone(),
        remove: Vec::new(),
    };
    match seal_fields(sealer, &edits, message, &results, &outcome) {
        Ok(set) => {
            fields.splice(0..0, set.map(|(n, v)| (n.to_string(), v)));
        }
        Err(why) => tracing::warn!(reason = %why, "outbound message not ARC-sealed"),
    }
    Outbound::Signed(fields)
}
