//! Policy: the pure function from what verification found to what happens to the message.
//!
//! `decide(&Outcome, &Policy) -> Verdict` does no I/O. Policies are TOML files; the default
//! (`policies/default.toml`) is compiled in.

mod decide;
mod file;
mod verdict;

pub use decide::{decide, decide_at_mail};
pub use file::{Policy, DEFAULT_POLICY};
pub use verdict::{Action, Verdict};
