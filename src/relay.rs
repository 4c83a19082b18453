//! The next hop as an SMTP relay: a small SMTP client speaking to one configured MTA (the
//! usual set-up puts authmilter before Postfix, which hands the mail on). The SMTP front end
//! delivers through it, and the reports we send leave through it.
//!
//! Each SMTP session gets its own connection, opened lazily at the first MAIL and kept for
//! the session's transactions. The client's MAIL and RCPTs are passed on as they arrive, so
//! the next hop's refusals reach the client unchanged; anything that goes wrong with the
//! connection itself (refused, timed out, TLS, closed, garbage) becomes a 451 so the client
//! keeps the mail and retries. After DATA, only the next hop's own 2xx makes an `Ok`.
//!
//! Not `lettre`: its transport sends a whole envelope in one call with no per-recipient
//! result, drops EHLO keywords it does not know (so no XFORWARD attributes), and reports
//! refusals as errors without the next hop's reply text, which a before-queue proxy must
//! repeat; a hand-written client of a few hundred lines fits better. Not `smtp-proto`'s
//! reply parser either: it accepts a multiline reply whose lines carry different codes
//! (`250-`…`451 ` reads as 250), which a proxy must not take for success.
//!
//! - [`reply`]: decoding the next hop's replies;
//! - [`command`]: EHLO keywords and the MAIL, RCPT and XFORWARD lines;
//! - [`dot`]: the message as DATA sends it;
//! - [`conn`]: the connection (greeting, EHLO, STARTTLS, timeouts);
//! - [`tls`]: the rustls client configuration;
//! - [`next_hop`]: the [`NextHop`] trait and the words both ends of SMTP share;
//! - [`stream`]: the byte stream before and after STARTTLS.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

mod command;
mod conn;
mod dot;
mod next_hop;
mod reply;
mod stream;
#[cfg(test)]
mod tests;
pub(crate) mod tls;

use conn::{refusable, strict, Connection};

pub use next_hop::{ClientInfo, MailParams, NextHop, RcptDsn, SmtpReply};
pub use stream::Stream;

pub use crate::config::RelayTls;

/// How to reach the next hop (`[smtp.relay]`).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `host:port` or `[v6]:port`; the host is also the name its certificate must carry.
    pub addr: String,
    /// Our name in EHLO.
    pub helo_name: String,
    /// See [`RelayTls`]; `None` by default.
    pub starttls: RelayTls,
    /// PEM roots that the next hop's certificate must chain to; read at each connection,
    /// so a renewed file takes effect without a restart.
    pub ca_file: Option<PathBuf>,
    /// TCP connect.
    pub connect_timeout: Duration,
    /// Each reply to a command (greeting, EHLO, MAIL, RCPT, …) and the TLS handshake.
    /// RFC 5321 §4.5.3.2 suggests 5 minutes, but our client waits on us meanwhile with the
    /// same 5 minutes, so ours must be shorter for it to hear our 451 rather than time out.
    pub command_timeout: Duration,
    /// Each write of the message and the wait for the final reply (RFC 5321 §4.5.3.2.6:
    /// 10 minutes for the client, so less here).
    pub data_timeout: Duration,
    /// Send XFORWARD when the next hop offers it, so it logs the real client.
    pub xforward: bool,
    /// Whether the next hop offers DSN, as last seen (shared by the sessions of one
    /// configuration): [`DSN_UNKNOWN`], [`DSN_PROBING`], [`DSN_NO`] or [`DSN_YES`].
    pub dsn: Arc<AtomicU8>,
}

pub const DSN_UNKNOWN: u8 = 0;
pub const DSN_PROBING: u8 = 1;
pub const DSN_NO: u8 = 2;
pub const DSN_YES: u8 = 3;

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            // Postfix's customary re-injection port for content filters.
            addr: "127.0.0.1:10025".into(),
            helo_name: "localhost".into(),
            starttls: RelayTls::None,
            ca_file: None,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(120),
            data_timeout: Duration::from_secs(300),
            xforward: true,
            dsn: Arc::new(AtomicU8::new(DSN_UNKNOWN)),
        }
    }
}

impl RelayConfig {
    /// The defaults, towards `addr`, introducing ourselves as `helo_name`.
    pub fn new(addr: impl Into<String>, helo_name: impl Into<String>) -> RelayConfig {
        RelayConfig {
            addr: addr.into(),
            helo_name: helo_name.into(),
            ..RelayConfig::default()
        }
    }

    /// Checks at start-up what would otherwise fail every connection: `addr` has a port,
    /// and with STARTTLS, the certificate name and `ca_file` are usable.
    pub fn validate(&self) -> Result<(), RelayError> {
        tls::server_name(&self.addr)?;
        let port = self.addr.rsplit_once(':').map(|(_, port)| port);
        if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
            return Err(RelayError::Config(format!(
                "addr {:?} has no port",
                self.addr
            )));
        }
        if self.helo_name.is_empty()
            || self
                .helo_name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(RelayError::Config(format!(
                "helo_name {:?} is not a name",
                self.helo_name
            )));
        }
        if self.starttls != RelayTls::None {
            let pem =
                match &self.ca_file {
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        RelayError::Config(format!("ca_file {}: {e}", path.display()))
                    })?),
                    None => None,
                };
            tls::client_config(self, pem.as_deref())?;
        }
        Ok(())
    }
}

/// What went wrong talking to the next hop, by whose fault.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The next hop refused (4xx/5xx other than 421), or we refuse on its behalf
    /// (SMTPUTF8 it cannot take): the reply goes to the client as it is.
    #[error("refused: {} {}", .0.code, .0.lines.join(" / "))]
    Refused(SmtpReply),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("connection failed during {0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("connection closed by the next hop during {0}")]
    Closed(&'static str),
    #[error("unreadable reply: {0}")]
    BadReply(#[from] reply::ReplyError),
    #[error("unexpected reply to {}: {} {}", .0, .1.code, .1.lines.join(" / "))]
    Unexpected(&'static str, SmtpReply),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("STARTTLS is required but the next hop does not offer or refuses it")]
    TlsNotOffered,
    #[error("configuration: {0}")]
    Config(String),
    /// RCPT or DATA after the connection failed earlier in the transaction.
    #[error("connection lost earlier in this transaction")]
    Lost,
    /// RCPT or DATA on a live connection with no transaction: a bug in the caller.
    #[error("no transaction in progress")]
    NoTransaction,
}

impl RelayError {
    /// Whether the connection is in an unknown state and must be dropped.
    fn breaks_connection(&self) -> bool {
        !matches!(
            self,
            RelayError::Refused(_) | RelayError::NoTransaction | RelayError::Lost
        )
    }

    /// The reply for our client: the one place that picks codes. Details of transport
    /// failures go to the log, not to the client.
    pub fn to_reply(&self) -> SmtpReply {
        let (code, status, text) = match self {
            RelayError::Refused(reply) => return reply.clone(),
            // RFC 3463: X.4.1 no answer from host, X.4.2 bad connection, X.3.5 system
            // incorrectly configured, X.7.4 security features not supported.
            RelayError::Connect(_) => (451, "4.4.1", "Next hop not reachable, try again later"),
            RelayError::Config(_) => (451, "4.3.5", "Next hop misconfigured, try again later"),
            RelayError::TlsNotOffered => {
                (451, "4.7.4", "Next hop does not offer TLS, try again later")
            }
            RelayError::NoTransaction => (503, "5.5.1", "No transaction in progress"),
            _ => (451, "4.4.2", "Next hop connection failed, try again later"),
        };
        SmtpReply::new(code, status, text)
    }
}

/// One SMTP session's link to the next hop.
pub struct RelaySession {
    config: RelayConfig,
    /// Boxed: a few hundred bytes that only exist while connected, and [`super::hop::Hop`]
    /// stays small for the Maildir case.
    conn: Option<Box<Connection>>,
}

impl RelaySession {
    /// No connection yet: the first `mail()` opens it.
    pub fn new(config: RelayConfig) -> RelaySession {
        RelaySession { config, conn: None }
    }

    /// Maps an error to the client's reply, dropping a connection it broke.
    fn fail(&mut self, error: RelayError) -> SmtpReply {
        if error.breaks_connection() {
            tracing::warn!(next_hop = %self.config.addr, %error, "next hop failed");
            self.conn = None;
        } else {
            tracing::debug!(next_hop = %self.config.addr, %error, "next hop refused");
        }
        error.to_reply()
    }

    async fn try_mail(
        &mut self,
        client: &ClientInfo,
        from: &str,
        params: &MailParams,
    ) -> Result<(), RelayError> {
        if command::unsafe_address(from) {
            return Err(RelayError::Refused(SmtpReply::new(
                501,
                "5.1.7",
                "Bad sender address syntax",
            )));
        }
        // A kept connection may have been closed by the next hop while idle: try it, and
        // on a transport failure start over once on a fresh one (nothing was accepted yet).
        if let Some(conn) = self.conn.as_mut() {
            match begin(conn, &self.config, client, from, params).await {
                Err(e) if e.breaks_connection() => {
                    let next_hop = &self.config.addr;
                    tracing::debug!(%next_hop, error = %e, "kept connection failed; reconnecting");
                    self.conn = None;
                }
                result => return result,
            }
        }
        let conn = self
            .conn
            .insert(Box::new(Connection::open(&self.config).await?));
        remember_dsn(&self.config, conn.ext.dsn);
        begin(conn, &self.config, client, from, params).await
    }

    /// The connection carrying the current transaction. Without a connection, an earlier
    /// command of this transaction broke it: a 451, so the client retries the recipient
    /// rather than bouncing it.
    fn transaction(&mut self) -> Result<&mut Connection, RelayError> {
        match self.conn.as_mut() {
            None => Err(RelayError::Lost),
            Some(conn) if !conn.in_transaction => Err(RelayError::NoTransaction),
            Some(conn) => Ok(conn),
        }
    }

    async fn try_rcpt(&mut self, to: &str, dsn: &RcptDsn) -> Result<(), RelayError> {
        let conn = self.transaction()?;
        if command::unsafe_address(to) {
            return Err(RelayError::Refused(SmtpReply::new(
                501,
                "5.1.3",
                "Bad recipient address syntax",
            )));
        }
        if !dsn.is_empty() && !conn.ext.dsn {
            return Err(no_dsn());
        }
        let reply = conn
            .command(&command::rcpt_to(to, dsn, &conn.ext), "RCPT")
            .await?;
        refusable(reply, 2, "RCPT").map(drop)
    }

    async fn try_data(&mut self, message: &[u8]) -> Result<SmtpReply, RelayError> {
        let conn = self.transaction()?;
        conn.data(message).await
    }
}

/// RSET if a transaction is left over, XFORWARD, MAIL.
async fn begin(
    conn: &mut Connection,
    config: &RelayConfig,
    client: &ClientInfo,
    from: &str,
    params: &MailParams,
) -> Result<(), RelayError> {
    if conn.in_transaction {
        strict(conn.command("RSET", "RSET").await?, 2, "RSET")?;
        conn.in_transaction = false;
    }
    if params.smtputf8 && !conn.ext.smtputf8 {
        // RFC 6531 §3.2: a message needing SMTPUTF8 must not go to a server that does not
        // offer it, and we cannot downgrade it: refused, permanently, with X.6.7 ("non-ASCII
        // addresses not permitted"), the code RFC 6531 registers for this.
        return Err(RelayError::Refused(SmtpReply::new(
            550,
            "5.6.7",
            "SMTPUTF8 is not supported by the next hop",
        )));
    }
    if params.asks_dsn() && !conn.ext.dsn {
        return Err(no_dsn());
    }
    if params.eight_bit && !conn.ext.eight_bit_mime {
        // Sent anyway, without BODY= (see command::mail_from); worth a trace if it bounces.
        tracing::debug!(next_hop = %config.addr, "8-bit message to a next hop without 8BITMIME");
    }
    if let (true, Some(offered)) = (config.xforward, conn.ext.xforward.clone()) {
        // XFORWARD attributes last one transaction, so they are repeated before each MAIL.
        for line in command::xforward(&offered, client) {
            strict(conn.command(&line, "XFORWARD").await?, 2, "XFORWARD")?;
        }
    }
    let reply = conn
        .command(&command::mail_from(from, params, &conn.ext), "MAIL")
        .await?;
    refusable(reply, 2, "MAIL")?;
    conn.in_transaction = true;
    Ok(())
}

impl NextHop for RelaySession {
    async fn mail(
        &mut self,
        client: &ClientInfo,
        from: &str,
        params: &MailParams,
    ) -> Result<(), SmtpReply> {
        let result = self.try_mail(client, from, params).await;
        result.map_err(|e| self.fail(e))
    }

    async fn rcpt(&mut self, to: &str) -> Result<(), SmtpReply> {
        self.rcpt_dsn(to, &RcptDsn::default()).await
    }

    async fn rcpt_dsn(&mut self, to: &str, dsn: &RcptDsn) -> Result<(), SmtpReply> {
        let result = self.try_rcpt(to, dsn).await;
        result.map_err(|e| self.fail(e))
    }

    fn offers_dsn(&self) -> bool {
        self.config.dsn.load(Relaxed) == DSN_YES
    }

    async fn data(&mut self, message: &[u8]) -> Result<SmtpReply, SmtpReply> {
        let result = self.try_data(message).await;
        result.map_err(|e| self.fail(e))
    }

    async fn reset(&mut self) {
        let Some(conn) = self.conn.as_mut().filter(|c| c.in_transaction) else {
            return;
        };
        let result = match conn.command("RSET", "RSET").await {
            Ok(reply) => strict(reply, 2, "RSET").map(drop),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => conn.in_transaction = false,
            Err(e) => drop(self.fail(e)),
        }
    }

    async fn quit(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.quit().await;
        }
    }
}

/// The client asked for DSN (we offered it because the next hop did), and this connection to
/// the next hop does not offer it: a temporary refusal, never a relay that drops the request
/// (RFC 3461 §4 would then owe the client notices we cannot give without a queue).
fn no_dsn() -> RelayError {
    RelayError::Refused(SmtpReply::new(
        451,
        "4.3.3",
        "The next hop does not offer DSN now; try again later",
    ))
}

/// Records whether the next hop offers DSN, for the EHLO replies of later sessions.
fn remember_dsn(config: &RelayConfig, offered: bool) {
    config
        .dsn
        .store(if offered { DSN_YES } else { DSN_NO }, Relaxed);
}

/// Learns once, in the background, whether the next hop offers DSN (its EHLO reply), so
/// sessions can offer it too. Later relay connections keep the answer current.
pub fn probe_dsn(config: &RelayConfig) {
    if config
        .dsn
        .compare_exchange(DSN_UNKNOWN, DSN_PROBING, Relaxed, Relaxed)
        .is_err()
    {
        return;
    }
    let config = config.clone();
    tokio::spawn(async move {
        match Connection::open(&config).await {
            Ok(conn) => {
                remember_dsn(&config, conn.ext.dsn);
                conn.quit().await;
            }
            // Unknown again: the next session's probe (or relay) tries again.
            Err(_) => config.dsn.store(DSN_UNKNOWN, Relaxed),
        }
    });
}
