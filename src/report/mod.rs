//! DMARC reporting (RFC 9990): aggregate reports built from the verdict store and sent to
//! the domains that ask for them, and the reports other receivers send us, read back into
//! the store.
//!
//! - [`event`]: what each message contributes, taken when its verdict is recorded.
//! - [`import`]: reports received (a message, XML, gzip or zip) read into mail-auth's types,
//!   hostile input refused; [`received`]: from there into the store.

pub mod event;
pub mod import;
pub mod received;
