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
//! - [`hop`]: the [`NextHop`] a session delivers through: [`relay`] or [`maildir`].

use crate::config::ListenerConfig;
use crate::identity::Backend;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub mod auth;
pub mod data;
pub mod hop;
pub mod listener;
pub mod maildir;
pub mod relay;
pub mod session;
pub mod setup;
pub mod stress;
pub mod tls;

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

/// An SMTP reply: what we send the client, or what the next hop sent us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    /// Enhanced status code (RFC 3463) such as `"2.0.0"`, if there is one.
    pub status: Option<String>,
    /// One entry per line, without code, status or CRLF.
    pub lines: Vec<String>,
}

impl SmtpReply {
    pub fn new(code: u16, status: &str, text: impl Into<String>) -> SmtpReply {
        SmtpReply {
            code,
            status: (!status.is_empty()).then(|| status.to_string()),
            lines: vec![text.into()],
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// Who the client is, for `XFORWARD` and `Received:`.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// The EHLO/HELO name.
    pub helo: Option<String>,
    /// `"ESMTP"`, `"ESMTPS"` (after STARTTLS), `"ESMTPSA"` (and AUTH) or `"SMTP"`.
    pub protocol: String,
}

/// MAIL FROM parameters that matter to the next hop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=` as the client declared it.
    pub size: Option<usize>,
    /// `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
    /// RFC 3461 `RET=`: `FULL` or `HDRS`.
    pub dsn_ret: Option<&'static str>,
    /// RFC 3461 `ENVID=` (decoded).
    pub dsn_envid: Option<String>,
}

impl MailParams {
    /// Whether the client asked for delivery status notifications at MAIL.
    pub fn asks_dsn(&self) -> bool {
        self.dsn_ret.is_some() || self.dsn_envid.is_some()
    }
}

/// RFC 3461 RCPT parameters, passed on to a next hop that offers DSN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptDsn {
    /// `NOTIFY=` as a comma list (`SUCCESS,FAILURE`, `NEVER`, ...).
    pub notify: Option<String>,
    /// `ORCPT=rfc822;` address (decoded).
    pub orcpt: Option<String>,
}

impl RcptDsn {
    pub fn is_empty(&self) -> bool {
        self.notify.is_none() && self.orcpt.is_none()
    }
}

/// Where accepted mail goes: one per SMTP session, one transaction at a time.
///
/// Every method answers with the reply to pass to the client on refusal; a transport
/// failure is a 4xx (never a 250 for mail that was not handed on).
pub trait NextHop: Send {
    /// Starts a transaction (after our own MAIL checks passed).
    fn mail(
        &mut self,
        client: &ClientInfo,
        from: &str,
        params: &MailParams,
    ) -> impl Future<Output = Result<(), SmtpReply>> + Send;
    /// Adds a recipient; `Err` refuses this recipient only.
    fn rcpt(&mut self, to: &str) -> impl Future<Output = Result<(), SmtpReply>> + Send;
    /// Adds a recipient with its DSN parameters; only a next hop that offers DSN gets any.
    fn rcpt_dsn(
        &mut self,
        to: &str,
        dsn: &RcptDsn,
    ) -> impl Future<Output = Result<(), SmtpReply>> + Send {
        let _ = dsn;
        self.rcpt(to)
    }
    /// Whether DSN (RFC 3461) can be offered to clients: the next hop was last seen offering
    /// it. Only then are DSN parameters accepted and passed on.
    fn offers_dsn(&self) -> bool {
        false
    }
    /// Hands the whole message (headers we added included, CRLF line ends, not dot-stuffed)
    /// on for the recipients accepted so far; `Ok` carries the next hop's acceptance.
    fn data(&mut self, message: &[u8])
        -> impl Future<Output = Result<SmtpReply, SmtpReply>> + Send;
    /// Drops the transaction in progress (RSET, rejected message, client gone).
    fn reset(&mut self) -> impl Future<Output = ()> + Send;
    /// Ends the session politely (QUIT).
    fn quit(&mut self) -> impl Future<Output = ()> + Send;
}

/// Where the next hop is, from configuration.
#[derive(Debug, Clone)]
pub enum HopConfig {
    Relay(relay::RelayConfig),
    Maildir(PathBuf),
}
