//! DMARC reporting (RFC 9990): aggregate reports built from the verdict store and sent to
//! the domains that ask for them, and the reports other receivers send us, read back into
//! the store.
//!
//! - [`event`]: what each message contributes, taken when its verdict is recorded.

pub mod aggregate;
pub mod event;
pub mod failure;
pub mod message;
pub mod send;
