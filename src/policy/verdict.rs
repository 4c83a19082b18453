//! What a policy decides for a message: the action and the verdict a door turns into its reply.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What happens to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    // Ordered by severity: when several rules apply, the most severe wins.
    Accept,
    Quarantine,
    Tempfail,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Quarantine => "quarantine",
            Action::Tempfail => "tempfail",
            Action::Reject => "reject",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision for one message, with the SMTP reply a transport should give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub action: Action,
    /// SMTP reply code (250, 451, 550, ...).
    pub code: u16,
    /// RFC 3463 enhanced status code.
    pub status: String,
    pub text: String,
    /// Every finding that contributed, in the order they were considered.
    pub reasons: Vec<String>,
    /// What was done about DMARC (`none`, `quarantine`, `reject`), when DMARC applied.
    pub dmarc_disposition: Option<String>,
    /// A local policy overrode the domain owner's DMARC policy (e.g. `trusted ARC sealer x`).
    pub local_override: Option<String>,
}
