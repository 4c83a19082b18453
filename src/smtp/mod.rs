//! The standalone SMTP front end: an ESMTP server that runs the same pipeline as the milter
//! and hands accepted mail to the next hop (a relay or a Maildir) without losing any.
//!
//! The shape is a before-queue proxy: MAIL and each RCPT are passed to the next hop as the
//! client sends them, so the next hop's refusals reach the client per recipient; the message
//! itself goes on only after the verdict, and the client hears 250 only once the next hop
//! has accepted it.
//!
//! - [`session`]: the SMTP dialogue (parsing via `smtp-proto`, pipelining, STARTTLS, limits);
//! - [`data`]: the DATA decoder (end marker, dot-unstuffing, limits); [`tls`]: STARTTLS;
//! - [`hop`]: the [`NextHop`] a session delivers through: the relay client (`relay`, a
//!   module of its own below this one, which the reports use too) or [`maildir`].

use crate::config::ListenerConfig;
use crate::identity::Backend;
use crate::relay::RelayConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub mod auth;
pub mod data;
pub mod hop;
pub mod listener;
pub mod maildir;
pub mod session;
pub mod setup;
pub mod stress;
pub mod tls;

/// The vocabulary the SMTP dialogue shares with the next hop, defined with the relay client.
pub use crate::relay::{ClientInfo, MailParams, NextHop, RcptDsn, SmtpReply};

/// Settings of the SMTP listener, fixed for a session's life (built from `[smtp]`).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// The name in the greeting, EHLO reply and `Received:` fields.
    pub hostname: String,
    /// Longest command line accepted, CRLF included (RFC 5321 §4.5.3.1.4 asks for at least 512).
    pub max_line_length: usize,
    /// Longest line inside DATA, CRLF included (RFC 5322 allows 1000; real mail is sloppier).
    pub max_data_line_length: usize,
    /// Recipients per message; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Largest message accepted (advertised in SIZE); over it 552 5.3.4.
    pub max_message_size: usize,
    /// How long to wait for the next command (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub command_timeout: Duration,
    /// How long to wait for the next chunk of DATA (RFC 5321 §4.5.3.2.5: 3 minutes).
    pub data_timeout: Duration,
    /// Bad commands before the session is ended with 421.
    pub max_errors: usize,
    /// Under stress, the command (and greeting) timeout, and the time each DATA line may take.
    pub stress_timeout: Duration,
    /// NOOP, RSET, HELP and VRFY in a row (no MAIL between) before 421; 5 under stress.
    pub junk_command_limit: usize,
    /// Domains we accept mail for from untrusted clients; anything else is relaying (550 5.7.1).
    pub local_domains: Vec<String>,
    /// Offered as STARTTLS when set.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Quarantined mail is delivered into this Maildir instead of the next hop; without one it
    /// goes to the next hop with an `X-Authmilter-Quarantine:` field naming the reasons.
    pub quarantine: Option<PathBuf>,
    /// The listener this session came through: its role and TLS rules.
    pub listener: ListenerConfig,
    /// Where AUTH checks passwords (`None`: AUTH not offered).
    pub credentials: Option<Arc<Backend>>,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            hostname: "localhost".into(),
            max_line_length: 4096,
            max_data_line_length: 65536,
            max_recipients: 100,
            max_message_size: 50 * 1024 * 1024,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            max_errors: 10,
            stress_timeout: Duration::from_secs(10),
            junk_command_limit: 100,
            local_domains: Vec::new(),
            tls: None,
            quarantine: None,
            listener: ListenerConfig::mx(SocketAddr::from(([127, 0, 0, 1], 0))),
            credentials: None,
        }
    }
}

/// Where the next hop is, from configuration.
#[derive(Debug, Clone)]
pub enum HopConfig {
    Relay(RelayConfig),
    Maildir(PathBuf),
}
