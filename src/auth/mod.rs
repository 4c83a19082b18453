//! The verification core: SPF, DKIM, ARC and DMARC for one message, independent of how the
//! message arrived.
//!
//! A transport creates a [`Transaction`] at MAIL FROM (SPF runs there), feeds it the message,
//! and at end of data gets an [`Outcome`]. `policy::decide` turns that into a verdict;
//! [`headers`] renders Authentication-Results. No I/O here beyond DNS.

pub(crate) mod arc;
pub mod arc_canon;
mod arc_chain;
pub mod base64;
pub mod budget;
mod dkim;
mod dkim_fields;
mod dkim_key;
mod dmarc;
pub mod headers;
pub(crate) mod message;
mod outcome;
pub mod spf;
pub(crate) mod spf_record;
mod transaction;

pub use outcome::{
    ArcOutcome, AuthResult, DkimOutcome, DmarcOutcome, FromInfo, IprevOutcome, Outcome, Published,
    ResourceLimit, SpfCheck, SpfOutcome,
};
pub use transaction::{normalize_mail_from, Connection, Transaction, Transport, Verifier};

/// 1-based positions of the `Authentication-Results` fields in `raw` that claim
/// `authserv_id` (RFC 8601 §5: a receiver removes those it did not add), for a door that
/// does not verify the message (submission).
pub fn claimed_results(raw: &[u8], authserv_id: &str) -> Vec<usize> {
    mail_auth::AuthenticatedMessage::parse(raw)
        .map(|msg| message::forged_ar(&msg, authserv_id))
        .unwrap_or_default()
}

/// Shared with the signer, which works around the same mail-auth defect (DESIGN.md item 1).
pub(crate) use dkim::trim_trailing_blank_lines;
