//! The SMTP dialogue as an explicit state machine, one handler per verb.
//!
//! [`Session`] owns no socket: it takes one command line and pushes the replies, and tells the
//! driver what to do next (read DATA, start TLS, close). Whether a command is legal now is
//! decided in one place, [`Session::accepts`]. The ESMTP parameters of MAIL and RCPT are
//! read in [`super::params`], BDAT chunks gathered in [`super::chunking`], and the end of
//! the message handled in [`super::finish`].

use super::codec::names_postmaster;
use super::compose::queue_id;
use super::replies::{
    help, needs_smtputf8, no_memory, not_implemented, ok, parse_error, relayed, too_big,
};
use crate::auth::budget::Charge;
use crate::auth::{Connection, Transaction};
use crate::check::metrics::SmtpCut;
use crate::check::metrics::{SmtpAuthResult, SubmissionRefusal};
use crate::identity::limits::Guard;
use crate::policy::decide_at_mail;
use crate::runtime::smtp_service::SmtpSettings;
use crate::runtime::Snapshot;
use crate::smtp::auth::{self as sasl, Exchange};
use crate::smtp::data::DataEnd;
use crate::smtp::stress::{Load, STRESS_JUNK_LIMIT};
use crate::smtp::{ClientInfo, MailParams, NextHop, SmtpReply};
use smtp_proto::{MailFrom, RcptTo, Request};
use std::net::IpAddr;
use std::sync::Arc;

/// Where the dialogue is.
pub(super) enum State {
    /// Greeted (or just after STARTTLS): EHLO/HELO is needed before MAIL.
    Greeted,
    /// Said hello; no mail transaction.
    Ready,
    /// Between MAIL and the end of DATA (or RSET).
    Mail(Box<Message>),
    /// In an AUTH exchange: the next line is a SASL response, not a command.
    Auth(Exchange),
}

/// A mail transaction in progress.
pub(super) struct Message {
    /// Our queue id, in `Received:`, the reply to DATA and the logs.
    pub id: String,
    /// The reverse-path, without brackets ("" for the null sender).
    pub from: String,
    pub params: MailParams,
    /// Recipients the next hop accepted.
    pub rcpts: Vec<String>,
    pub tx: Transaction,
    /// The message so far, when it comes in BDAT chunks (RFC 3030).
    pub chunks: Option<Chunks>,
}

/// A message arriving in BDAT chunks: what was kept, charged to the memory budget, or why
/// the rest is thrown away as it arrives.
pub(super) struct Chunks {
    pub data: Vec<u8>,
    pub charge: Charge,
    pub overflow: Option<DataEnd>,
}

/// What the driver does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Continue,
    /// Flush, then read the message (354 was queued).
    Data,
    /// Read the `size` octets of a BDAT chunk that follow the command line (RFC 3030 §2:
    /// whatever the reply will be), then hand them to [`Session::chunk`].
    Chunk {
        size: usize,
        last: bool,
    },
    /// Flush, drop buffered input, run the TLS handshake (220 was queued).
    StartTls,
    /// Flush and close.
    Close,
}

/// One SMTP client's session.
pub(super) struct Session<H> {
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) settings: Arc<SmtpSettings>,
    pub(super) hop: H,
    pub(super) conn: Connection,
    /// EHLO (rather than HELO) was used.
    pub(super) esmtp: bool,
    pub(super) tls: bool,
    pub(super) state: State,
    /// Bad commands so far.
    errors: usize,
    /// The reply a BDAT chunk being read gets instead of being kept.
    pub(super) chunk_refusal: Option<SmtpReply>,
    /// DSN was offered in the EHLO reply (the next hop offers it).
    pub(super) dsn: bool,
    /// Commands in a row that moved no transaction forward (NOOP, RSET, HELP, VRFY).
    junk: usize,
    load: Arc<Load>,
    /// A trusted or authenticated client: never held to the stress limits.
    pub(super) exempt: bool,
    /// The abuse limits shared by every session.
    pub(super) guard: Arc<Guard>,
}

/// A handler's answer: `Err` is the client's fault and counts towards `max_errors`.
pub(super) type Handled = Result<SmtpReply, SmtpReply>;

impl<H: NextHop> Session<H> {
    pub fn new(
        snapshot: Arc<Snapshot>,
        settings: Arc<SmtpSettings>,
        hop: H,
        ip: IpAddr,
        load: Arc<Load>,
        guard: Arc<Guard>,
    ) -> Self {
        let exempt = snapshot.config.is_trusted(ip);
        Session {
            snapshot,
            settings,
            hop,
            conn: Connection::new(ip),
            esmtp: false,
            tls: false,
            state: State::Greeted,
            errors: 0,
            chunk_refusal: None,
            dsn: false,
            junk: 0,
            load,
            exempt,
            guard,
        }
    }

    /// Whether this session is held to the stress limits now.
    pub fn stressed(&self) -> bool {
        !self.exempt && self.load.is_stressed()
    }

    /// How long the client has for its next command (the first: from the greeting).
    pub fn command_timeout(&self) -> std::time::Duration {
        if self.stressed() {
            self.settings.stress_timeout
        } else {
            self.settings.command_timeout
        }
    }

    /// Counts a session ended for making no progress.
    pub fn no_progress(&self, why: SmtpCut) {
        if self.stressed() {
            tracing::info!(client = %self.conn.ip, reason = ?why, "smtp client let go under stress");
        }
        self.snapshot.journal.metrics().smtp_cut(why);
    }

    /// RFC 5321 §4.2: no enhanced status code in the greeting (RFC 2034 §4).
    pub fn greeting(&self) -> SmtpReply {
        let text = format!("{} ESMTP authmilter", self.settings.hostname);
        SmtpReply::new(220, "", text)
    }

    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::Mail(_))
    }

    /// What the next hop is told about the client.
    pub fn client_info(&self) -> ClientInfo {
        ClientInfo {
            ip: self.conn.ip,
            helo: self.conn.helo.clone(),
            protocol: self.protocol(false).to_string(),
        }
    }

    /// RFC 3848 / RFC 6531 §3.7.3 protocol names for `with`; with an `A` once the client
    /// authenticated (RFC 4954 §7).
    pub fn protocol(&self, utf8: bool) -> &'static str {
        let auth = self.conn.authenticated.is_some();
        match (utf8, self.esmtp || self.tls || auth, self.tls, auth) {
            (true, _, true, true) => "UTF8SMTPSA",
            (true, _, false, true) => "UTF8SMTPA",
            (true, _, true, false) => "UTF8SMTPS",
            (true, _, false, false) => "UTF8SMTP",
            (false, _, true, true) => "ESMTPSA",
            (false, _, false, true) => "ESMTPA",
            (false, _, true, false) => "ESMTPS",
            (false, true, false, false) => "ESMTP",
            (false, false, false, false) => "SMTP",
        }
    }

    /// Handles one command line. `stopping`: the server is shutting down, so anything but
    /// the end of the transaction in progress gets 421 (RFC 5321 §3.8).
    pub async fn command(&mut self, line: &[u8], stopping: bool, out: &mut Vec<SmtpReply>) -> Next {
        if stopping && !self.in_transaction() {
            out.push(SmtpReply::new(421, "4.3.2", "Service shutting down"));
            return Next::Close;
        }
        // Inside an AUTH exchange a line is a SASL response, not a command: `accepts` already
        // allowed the AUTH that started it.
        if let State::Auth(exchange) = &self.state {
            let exchange = exchange.clone();
            let text = String::from_utf8_lossy(line);
            let step = sasl::respond(exchange, &text);
            return self.auth_step(step, out).await;
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request.into_owned(),
            Err(e) => return self.error(parse_error(e), out),
        };
        // RFC 3030 §2: the chunk follows the command line whatever the reply, so it is read
        // first and answered after (a refusal included).
        if let Request::Bdat {
            chunk_size,
            is_last,
        } = request
        {
            self.junk = 0;
            self.chunk_refusal = self.refuse_chunk();
            return Next::Chunk {
                size: chunk_size,
                last: is_last,
            };
        }
        if let Err(reply) = self.accepts(&request) {
            return self.error(reply, out);
        }
        // Like Postfix's smtpd_junk_command_limit: commands that move no transaction forward
        // cannot keep a session (and its slot) forever.
        if matches!(
            request,
            Request::Noop { .. } | Request::Rset | Request::Help { .. } | Request::Vrfy { .. }
        ) {
            self.junk += 1;
            let limit = match self.stressed() {
                true => STRESS_JUNK_LIMIT.min(self.settings.junk_command_limit),
                false => self.settings.junk_command_limit,
            };
            if self.junk > limit && !self.exempt {
                self.no_progress(SmtpCut::Junk);
                out.push(SmtpReply::new(
                    421,
                    "4.4.2",
                    "Too many commands without progress, closing connection",
                ));
                return Next::Close;
            }
        } else if matches!(request, Request::Mail { .. } | Request::Data) {
            self.junk = 0;
        }
        let (handled, next) = match request {
            Request::Ehlo { host } => (Ok(self.hello(host, true).await), Next::Continue),
            Request::Helo { host } => (Ok(self.hello(host, false).await), Next::Continue),
            Request::Mail { from } => (self.mail(from).await, Next::Continue),
            Request::Rcpt { to } => (self.rcpt(to, line).await, Next::Continue),
            Request::Data => self.data(),
            Request::Rset => (Ok(self.rset().await), Next::Continue),
            Request::Noop { .. } => (Ok(ok("2.0.0")), Next::Continue),
            Request::Help { .. } => (Ok(help()), Next::Continue),
            // RFC 5321 §3.5.3: 252 says nothing about the user but is not an error.
            Request::Vrfy { .. } => (
                Ok(SmtpReply::new(252, "2.5.0", "Cannot VRFY user; try RCPT")),
                Next::Continue,
            ),
            Request::Quit => (Ok(SmtpReply::new(221, "2.0.0", "Bye")), Next::Close),
            Request::StartTls => (
                Ok(SmtpReply::new(220, "2.0.0", "Ready to start TLS")),
                Next::StartTls,
            ),
            Request::Auth {
                mechanism,
                initial_response,
            } => return self.auth(mechanism, &initial_response, out).await,
            // Refused by `accepts`.
            _ => (Err(not_implemented()), Next::Continue),
        };
        match handled {
            Ok(reply) => {
                out.push(reply);
                next
            }
            Err(reply) => self.error(reply, out),
        }
    }

    /// A command line over `max_line_length` (RFC 5321 §4.5.3.1.4, §4.2.2: "500 ... line too
    /// long"; 5.5.2 because X.5.6 is registered for AUTH lines only, RFC 4954 §4, which an
    /// over-long AUTH command or response gets). `head`: the line's first bytes.
    pub fn line_too_long(&mut self, head: &[u8], out: &mut Vec<SmtpReply>) -> Next {
        let in_auth = matches!(self.state, State::Auth(_));
        let auth_command = head.len() >= 5 && head[..5].eq_ignore_ascii_case(b"AUTH ");
        if in_auth || (auth_command && matches!(self.state, State::Ready)) {
            self.state = State::Ready;
            self.snapshot
                .journal
                .metrics()
                .smtp_auth(SmtpAuthResult::Malformed);
            return self.error(sasl::line_too_long(), out);
        }
        self.error(SmtpReply::new(500, "5.5.2", "Line too long"), out)
    }

    /// Is `request` legal now? The single place the command order is enforced.
    fn accepts(&self, request: &Request<String>) -> Result<(), SmtpReply> {
        use Request::*;
        let out_of_order = |text: &str| Err(SmtpReply::new(503, "5.5.1", text));
        match (request, &self.state) {
            // Not offered: ETRN, ATRN, BURL, and LHLO is LMTP's; AUTH only on a submission
            // listener (below). BDAT never comes here (`command` reads its chunk first).
            (Lhlo { .. } | Bdat { .. } | Etrn { .. } | Atrn { .. }, _)
            | (Burl { .. } | Expn { .. }, _) => Err(not_implemented()),
            (StartTls, _) if self.settings.tls.is_none() => Err(not_implemented()),
            (StartTls, _) if self.tls => out_of_order("TLS already active"),
            (StartTls, State::Mail(_)) => out_of_order("Mail transaction in progress"),
            (Auth { .. }, _) if !self.offers_auth_here() => Err(not_implemented()),
            (Auth { .. }, _) if self.conn.authenticated.is_some() => {
                out_of_order("Already authenticated")
            }
            (Auth { .. }, State::Greeted) => out_of_order("Send EHLO first"),
            (Auth { .. }, State::Mail(_)) => out_of_order("Mail transaction in progress"),
            // RFC 4954 §6: 538 when the mechanism needs an encrypted channel.
            (Auth { .. }, _) if !self.tls && !self.settings.listener.plaintext_auth => {
                Err(SmtpReply::new(
                    538,
                    "5.7.11",
                    "Encryption required for requested authentication mechanism",
                ))
            }
            (Mail { .. }, State::Greeted) => out_of_order("Send EHLO or HELO first"),
            // RFC 3207 §4: 530 until TLS, where the listener requires it.
            (Mail { .. }, _) if self.settings.listener.require_tls && !self.tls => Err(
                SmtpReply::new(530, "5.7.0", "Must issue a STARTTLS command first"),
            ),
            // RFC 4954 §6: 530 5.7.0 when the submission listener needs AUTH.
            (Mail { .. }, _) if !self.may_submit() => {
                Err(SmtpReply::new(530, "5.7.0", "Authentication required"))
            }
            (Mail { .. }, State::Mail(_)) => out_of_order("Nested MAIL command"),
            (Rcpt { .. } | Data, State::Greeted | State::Ready) => out_of_order("Need MAIL first"),
            _ => Ok(()),
        }
    }

    /// Counts a bad command; at `max_errors` the session ends (0: no limit).
    pub(super) fn error(&mut self, reply: SmtpReply, out: &mut Vec<SmtpReply>) -> Next {
        self.errors += 1;
        let max = self.settings.max_errors;
        if max > 0 && self.errors >= max {
            out.push(SmtpReply::new(421, "4.7.0", "Too many errors"));
            return Next::Close;
        }
        out.push(reply);
        Next::Continue
    }

    /// EHLO/HELO: a new hello also ends any transaction (RFC 5321 §4.1.4).
    async fn hello(&mut self, host: String, esmtp: bool) -> SmtpReply {
        self.abort().await;
        self.state = State::Ready;
        self.conn.helo = Some(host);
        self.esmtp = esmtp;
        self.dsn = false;
        let name = self.settings.hostname.clone();
        if !esmtp {
            return SmtpReply::new(250, "", name);
        }
        // RFC 3461: DSN only when the next hop offers it too, so the parameters can go on.
        self.dsn = self.hop.offers_dsn();
        let lines = self.extensions(name);
        // RFC 2034 §4: no enhanced status code in the EHLO reply.
        SmtpReply {
            code: 250,
            status: None,
            lines,
        }
    }

    async fn mail(&mut self, from: MailFrom<String>) -> Handled {
        let params = self.mail_params(&from)?;
        if from.size > self.settings.max_message_size {
            // RFC 1870 §6.1.
            return Ok(too_big());
        }
        if let Some(refused) = self.submission_mail(&from.address) {
            return Ok(refused);
        }
        let snapshot = Arc::clone(&self.snapshot);
        let tx = Transaction::begin(&snapshot.verifier, &self.conn, &from.address).await;
        if let Some(verdict) = tx
            .spf()
            .and_then(|spf| decide_at_mail(spf, &snapshot.policy))
        {
            tracing::info!(client = %self.conn.ip, sender = %from.address, verdict = %verdict.action,
                reasons = ?verdict.reasons, "smtp sender refused at MAIL");
            return Ok(SmtpReply::new(verdict.code, &verdict.status, verdict.text));
        }
        let client = self.client_info();
        if let Err(refused) = self.hop.mail(&client, &from.address, &params).await {
            return Ok(relayed(refused));
        }
        let mut tx = tx;
        tx.charge_to(snapshot.budget());
        self.state = State::Mail(Box::new(Message {
            id: queue_id(),
            from: from.address,
            params,
            rcpts: Vec::new(),
            tx,
            chunks: None,
        }));
        Ok(SmtpReply::new(250, "2.1.0", "Ok"))
    }

    async fn rcpt(&mut self, to: RcptTo<String>, line: &[u8]) -> Handled {
        let State::Mail(message) = &mut self.state else {
            return Err(SmtpReply::new(503, "5.5.1", "Need MAIL first"));
        };
        let dsn = Self::rcpt_params(&to, self.dsn)?;
        let address = match to.address {
            a if !a.is_empty() => a,
            _ if names_postmaster(line) => "postmaster".to_string(),
            _ => return Err(SmtpReply::new(501, "5.1.3", "Bad recipient address syntax")),
        };
        if !message.params.smtputf8 && !address.is_ascii() {
            return Err(needs_smtputf8());
        }
        if message.rcpts.len() >= self.settings.max_recipients {
            // RFC 5321 §4.5.3.1.10: 452, and the client sends the rest later.
            return Ok(SmtpReply::new(452, "4.5.3", "Too many recipients"));
        }
        if let Some(user) = &self.conn.authenticated {
            let limits = &self.snapshot.config.smtp.auth;
            if !self.guard.take_recipient(limits, user) {
                tracing::info!(client = %self.conn.ip, %user, "smtp: hourly recipient limit reached");
                self.snapshot
                    .journal
                    .metrics()
                    .smtp_submission_refused(SubmissionRefusal::Recipients);
                return Ok(SmtpReply::new(
                    452,
                    "4.5.3",
                    "Too many recipients this hour, try again later",
                ));
            }
        }
        let inbound = message.tx.skipped().is_none();
        if inbound && !is_local(&self.settings.local_domains, &address) {
            tracing::info!(client = %self.conn.ip, rcpt = %address, "smtp relaying denied");
            return Err(SmtpReply::new(550, "5.7.1", "Relaying denied"));
        }
        if let Err(refused) = self.hop.rcpt_dsn(&address, &dsn).await {
            return Ok(relayed(refused));
        }
        message.rcpts.push(address);
        Ok(SmtpReply::new(250, "2.1.5", "Ok"))
    }

    fn data(&mut self) -> (Handled, Next) {
        match &self.state {
            // RFC 3030 §2: a message begun with BDAT goes on with BDAT.
            State::Mail(m) if m.chunks.is_some() => (
                Err(SmtpReply::new(
                    503,
                    "5.5.1",
                    "BDAT in progress, DATA not allowed",
                )),
                Next::Continue,
            ),
            // RFC 5321 §3.3: no accepted recipient.
            State::Mail(m) if m.rcpts.is_empty() => (
                Ok(SmtpReply::new(554, "5.5.1", "No valid recipients")),
                Next::Continue,
            ),
            // The memory budget is spent: not the client's fault, and it may try again.
            _ if !self.snapshot.budget().has_room() => {
                self.snapshot.budget().refused();
                (Ok(no_memory()), Next::Continue)
            }
            // RFC 3463 classes have no 3: no enhanced code on 354.
            _ => (
                Ok(SmtpReply::new(354, "", "End data with <CR><LF>.<CR><LF>")),
                Next::Data,
            ),
        }
    }

    async fn rset(&mut self) -> SmtpReply {
        self.abort().await;
        ok("2.0.0")
    }

    /// Drops the transaction in progress, if any, here and at the next hop.
    pub async fn abort(&mut self) {
        if self.in_transaction() {
            self.state = State::Ready;
            self.hop.reset().await;
        }
    }

    /// After the TLS handshake: everything said before is forgotten (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.esmtp = false;
        self.conn.helo = None;
        self.conn.authenticated = None;
        self.exempt = self.snapshot.config.is_trusted(self.conn.ip);
        self.state = State::Greeted;
    }

    /// The end of the session, however it ended: nothing half-done is left at the next hop.
    pub async fn close(&mut self) {
        self.abort().await;
        self.hop.quit().await;
    }
}

/// Whether an untrusted client may send to `address`: only to our own domains, and never
/// with a local part that a next hop could route onwards (a quoted `@`, the `%` hack or a
/// `!` path), which would make us an open relay behind its back.
pub(super) fn is_local(local_domains: &[String], address: &str) -> bool {
    if address.eq_ignore_ascii_case("postmaster") {
        return true;
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    if local.contains(['@', '%', '!']) {
        return false;
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    local_domains
        .iter()
        .any(|d| d.trim_end_matches('.').eq_ignore_ascii_case(domain))
}
