//! Load generators for benchmarking a milter (`bench-milter`) and an SMTP server
//! (`bench-smtp`) from the outside, the way production traffic reaches them.
//!
//! [`milter`] plays Postfix's side of the milter protocol (see `DESIGN.md`, "Milter facts"):
//! option negotiation, per-stage macros, one command per SMTP event, no waiting on stages the
//! filter negotiated as no-reply, ABORT after every message as Postfix's `mail_reset` does,
//! several messages per connection. [`smtp`] sends whole SMTP sessions (EHLO, optional
//! XCLIENT, MAIL/RCPT/DATA pipelined when offered). Both run N concurrent connections on
//! tokio and report throughput, end-of-message latency percentiles and answers by kind
//! ([`stats::Report`]).
//!
//! [`floor`] measures what one verified message costs at the least (RSA-2048 verify plus
//! SHA-256), so that benchmarks can print a filter's CPU per message as a ratio to it.
//!
//! Every run is bounded: by a message count, by a duration, or both, and always by
//! [`HARD_TIME_LIMIT`]; every read and write has a timeout. Whatever the peer does (closes,
//! stalls, sends garbage) becomes a counted error, never a panic or a hang.

pub mod cli;
pub mod floor;
pub mod milter;
mod run;
mod script;
pub mod smtp;
pub mod stats;

pub use cli::BenchCommand;
pub use run::{from_address, to_crlf, Client, Limit, Target, HARD_TIME_LIMIT};
