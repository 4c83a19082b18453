//! The standalone SMTP front end: an ESMTP server that runs the same pipeline as the milter
//! and hands accepted mail to the next hop (a relay or a Maildir) without losing any.
//!
//! The shape is a before-queue proxy: MAIL and each RCPT are passed to the next hop as the
//! client sends them, so the next hop's refusals reach the client per recipient; the message
//! itself goes on only after the verdict, and the client hears 250 only once the next hop
//! has accepted it.
//!
//! - [`session`]: the SMTP dialogue (parsing via `smtp-proto`, pipelining, STARTTLS, limits);
//! - [`data`]: the DATA decoder (end marker, dot-unstuffing, limits);
//! - [`hop`]: the [`NextHop`] a session delivers through: the relay client (`relay`, a
//!   module of its own below this one, which the reports use too) or [`maildir`].
//!
//! The settings a session runs with (`SmtpSettings`, the STARTTLS certificate, where mail
//! goes) are built with each runtime snapshot, in `runtime::smtp_service`.

pub mod auth;
pub mod data;
pub mod hop;
pub mod listener;
pub mod maildir;
pub mod session;
pub mod stress;

/// The vocabulary the SMTP dialogue shares with the next hop, defined with the relay client.
pub use crate::relay::{ClientInfo, MailParams, NextHop, RcptDsn, SmtpReply};
