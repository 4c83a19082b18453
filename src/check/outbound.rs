//! Outbound mail: DKIM signing for trusted or authenticated senders, when the From domain
//! has keys and the sender may use them.

use crate::config::OnUnauthorised;
use crate::policy::{Action, Verdict};
use crate::sign::{from_domain, SignError, Signer};

/// What happens to an outbound message (trusted or authenticated client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Add these fields at the top, in this order: `(name, value)`, the `DKIM-Signature`
    /// fields (one per key), with our ARC set above them when it is sealed too.
    Signed(Vec<(String, String)>),
    /// Pass it on unsigned, for this reason (not our domain, no From, ...).
    Unsigned(String),
    /// Refuse it with this verdict (an unauthorised sender when policy says reject, or a
    /// signing failure, which is temporary).
    Refused(Verdict),
}

/// Signs an outbound message if its From domain has keys and the sender may use them
/// (RFC 6376 §5; the authorisation closes the hole where any local user gets mail signed for
/// any domain by choosing the From header).
pub fn sign_outbound(signer: &Signer, auth_user: Option<&str>, message: &[u8]) -> Outbound {
    if signer.is_empty() {
        return Outbound::Unsigned("no signing keys configured".into());
    }
    let Some(domain) = from_domain(message) else {
        return Outbound::Unsigned("no From address".into());
    };
    match signer.sign(&domain, auth_user, message) {
        Ok(values) => Outbound::Signed(
            values
                .into_iter()
                .map(|v| ("DKIM-Signature".to_string(), v))
                .collect(),
        ),
        Err(SignError::Unauthorised { user, domain })
            if signer.on_unauthorised() == OnUnauthorised::Reject =>
        {
            Outbound::Refused(Verdict {
                action: Action::Reject,
                code: 550,
                status: "5.7.1".into(),
                text: format!("{user} may not send as {domain}"),
                reasons: vec![format!("user {user} may not sign for {domain}")],
                dmarc_disposition: None,
                local_override: None,
            })
        }
        Err(e @ SignError::Crypto(_)) => Outbound::Refused(Verdict {
            action: Action::Tempfail,
            code: 451,
            status: "4.3.0".into(),
            text: "Signing failed, try again later".into(),
            reasons: vec![e.to_string()],
            dmarc_disposition: None,
            local_override: None,
        }),
        Err(e) => Outbound::Unsigned(e.to_string()),
    }
}
