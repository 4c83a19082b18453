//! The milter front end: Sendmail's and Postfix's content-filter protocol (versions 2 to 6).
//!
//! The MTA connects to us, offers what it can do in option negotiation, and then sends one
//! command per SMTP event (connect, HELO, MAIL, RCPT, headers, body chunks, end of message),
//! each preceded by the macros we asked for. We answer each with a reply; at end of message
//! the answer carries the header edits and the verdict.
//!
//! The layers are kept apart so that only the codec ever touches raw bytes:
//!
//! * [`codec`]: framing (length, code byte, data) with a hard size cap and no I/O;
//! * [`command`]: MTA -> milter frames parsed into [`command::Command`];
//! * [`reply`]: [`reply::Reply`] encoded for the MTA, and decoded again for test clients;
//! * [`consts`]: the protocol's numbers under their libmilter names.

pub mod codec;
pub mod command;
pub mod consts;
pub mod listener;
pub mod reply;
pub mod session;
