//! DMARC reporting (RFC 9990): aggregate reports built from the verdict store and sent to
//! the domains that ask for them, and the reports other receivers send us, read back into
//! the store.
//!
//! - What each message contributes is `check::DmarcEvent`, taken when its verdict is recorded.
//! - [`import`]: reports received (a message, XML, gzip or zip) read into mail-auth's types,
//!   hostile input refused; [`received`]: from there into the store; [`inbox`]: report
//!   mail from the doors, imported by a task off the hot path; [`import_cmd`]:
//!   `authmilter report import`.
//! - [`readiness`]: per owned domain, which senders would lose mail under `p=quarantine` or
//!   `p=reject`, from the reports received and our own verdicts.

pub mod aggregate;
pub mod failure;
pub mod failure_in;
pub mod import;
pub mod import_cmd;
pub mod inbox;
pub mod message;
pub mod readiness;
pub mod received;
pub mod send;
