//! What a session hands mail on through, and the words both ends of SMTP share: the reply,
//! who the client is, the MAIL and RCPT parameters passed on, and the [`NextHop`] trait the
//! relay client (and the SMTP front end's Maildir) implement.

use std::future::Future;
use std::net::IpAddr;

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
