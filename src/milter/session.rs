//! One milter connection as an explicit state machine, driving the verification core.
//!
//! The session owns no socket: [`Session::handle`] takes a parsed command and pushes the
//! replies to send, so the listener can write all replies of one command (in particular the
//! end-of-message batch: header edits plus verdict) in a single write. Whether a command is
//! legal in the current state is decided in one place, [`Session::accepts`]; anything out of
//! order ends the connection, never a panic. The end of a message (the verdict or the
//! signatures, and the replies that carry them) is in [`finish`].

use super::command::{Command, Family};
use super::consts::*;
use super::reply::{Reply, ReplyText};
use crate::auth::ResourceLimit;
use crate::auth::{Connection, Transaction};
use crate::policy::{decide_at_mail, Action, Verdict};
use crate::runtime::Snapshot;
use crate::store::{cut, Recipients};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

mod finish;

/// Actions we may ask for: add/insert headers, delete forged ones, quarantine.
const WANTED_ACTIONS: u32 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST;

/// Stages we answer without a round trip when the MTA allows it, and ones we skip entirely.
/// MAIL is answered too unless the session's policy can never refuse there (see
/// [`Session::negotiate`]).
const WANTED_PROTOCOL: u32 = SMFIP_NR_CONN
    | SMFIP_NR_HELO
    | SMFIP_NR_RCPT
    | SMFIP_NR_DATA
    | SMFIP_NR_HDR
    | SMFIP_NR_EOH
    | SMFIP_NR_BODY
    | SMFIP_NR_UNKN
    | SMFIP_NODATA
    | SMFIP_NOUNKNOWN
    | SMFIP_SKIP
    | SMFIP_HDR_LEADSPC;

/// Macros we ask for, per stage (Postfix sends some of these without being asked).
const WANTED_MACROS: &[(u32, &str)] = &[
    (SMFIM_CONNECT, "j {daemon_name} {client_addr} {client_name}"),
    (SMFIM_HELO, "{tls_version}"),
    (SMFIM_ENVFROM, "i {auth_authen} {auth_type}"),
    (SMFIM_EOM, "i"),
];

/// Macros kept per stage, and the length each value is cut to: the MTA sends a handful of
/// short values; more or longer ones are what a hostile peer sends, not what we use.
const MAX_MACROS: usize = 64;
const MAX_MACRO_VALUE: usize = 1024;

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for option negotiation.
    Negotiate,
    /// Negotiated; waiting for an SMTP client (also after QUIT_NC).
    AwaitConnect,
    /// An SMTP client is connected; no message.
    Connected,
    /// Between MAIL FROM and end of message.
    Message,
    /// Over: close the socket.
    Closed,
}

/// What the listener should do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

/// A message in progress.
struct Message {
    tx: Transaction,
    /// RCPT TO addresses, for the verdict journal (bounded; the rest counted).
    rcpts: Recipients,
    /// Outbound (trusted or authenticated client): signed, not verified.
    outbound: bool,
    /// The body went over the size limit and the MTA was asked to skip the rest.
    skip_sent: bool,
    /// Recipients that are DMARC report addresses (`reports.rua_addresses`).
    report_rcpts: usize,
}

/// One milter connection.
pub struct Session {
    snapshot: Arc<Snapshot>,
    state: State,
    protocol: u32,
    actions: u32,
    conn: Connection,
    /// Macros of the current stage: `i`, `{auth_authen}`, ...
    macros: Vec<(String, String)>,
    queue_id: Option<String>,
    message: Option<Message>,
}

impl Session {
    /// A new session that will use `snapshot` (configuration, resolver, policy) until it ends.
    pub fn new(snapshot: Arc<Snapshot>) -> Session {
        Session {
            snapshot,
            state: State::Negotiate,
            protocol: 0,
            actions: 0,
            conn: Connection::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            macros: Vec::new(),
            queue_id: None,
            message: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// True between MAIL FROM and end of message: a graceful shutdown waits for this.
    pub fn in_message(&self) -> bool {
        self.state == State::Message
    }

    /// The queue id of the message in progress (the `i` macro), for logs.
    pub fn queue_id(&self) -> Option<&str> {
        self.queue_id.as_deref()
    }

    /// Is `command` legal now? The single place the protocol order is enforced.
    pub fn accepts(&self, command: &Command) -> bool {
        use Command::*;
        match (self.state, command) {
            (State::Closed, _) => false,
            (State::Negotiate, OptNeg { .. }) => true,
            (State::Negotiate, _) => false,
            // Quitting, aborting and macros are legal at any point after negotiation.
            (_, Quit | QuitNewConnection | Abort | Macro { .. }) => true,
            (_, OptNeg { .. }) => false,
            (State::AwaitConnect, Connect { .. }) => true,
            (State::AwaitConnect, _) => false,
            (State::Connected, Helo { .. } | Mail { .. } | Unknown { .. }) => true,
            (State::Connected, _) => false,
            // A MAIL inside a message starts over (some MTAs omit the abort after RSET).
            (
                State::Message,
                Mail { .. }
                | Rcpt { .. }
                | Data
                | Header { .. }
                | EndOfHeaders
                | Body { .. }
                | EndOfMessage { .. }
                | Unknown { .. },
            ) => true,
            (State::Message, _) => false,
        }
    }

    /// Handles one command, pushing the replies to send (possibly none).
    pub async fn handle(&mut self, command: Command, replies: &mut Vec<Reply>) -> Flow {
        if !self.accepts(&command) {
            tracing::warn!(
                state = ?self.state,
                command = command_name(&command),
                "milter command out of order; closing the connection"
            );
            self.state = State::Closed;
            return Flow::Close;
        }
        match command {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => {
                if version < SMFI_PROT_VERSION_MIN {
                    tracing::warn!(
                        version,
                        "milter protocol version not supported (2 to 6); closing"
                    );
                    self.state = State::Closed;
                    return Flow::Close;
                }
                self.negotiate(version, actions, protocol, replies)
            }
            Command::Macro { pairs, .. } => {
                self.macros = bounded_macros(pairs);
                // Postfix assigns the queue id only once a recipient is accepted, so `i`
                // may first arrive with the end-of-message macros.
                // Postfix repeats `i` before every header and body chunk: keep the copy.
                if let Some(id) = self.macro_value("i").filter(|i| !i.is_empty()) {
                    if self.queue_id.as_deref() != Some(id) {
                        self.queue_id = Some(id.to_string());
                    }
                }
            }
            Command::Connect {
                hostname,
                family,
                address,
                ..
            } => self.connect(hostname, family, address, replies),
            Command::Helo { name } => {
                self.conn.helo = Some(name);
                self.reply_unless(SMFIP_NR_HELO, Reply::Continue, replies);
            }
            Command::Mail { args } => self.mail(args, replies).await,
            Command::Rcpt { args } => {
                let max = self.snapshot.config.limits.max_recipients;
                if let (Some(m), Some(rcpt)) = (&mut self.message, args.first()) {
                    m.rcpts.push(rcpt.trim_matches(|c| c == '<' || c == '>'));
                    if self.snapshot.is_report_address(rcpt) {
                        m.report_rcpts += 1;
                    }
                    if m.rcpts.total() > max {
                        // Like Postfix's smtpd_recipient_limit; RCPT replies are negotiated
                        // away, so the message is deferred at its end.
                        m.tx.stop(ResourceLimit::Recipients);
                    }
                }
                self.reply_unless(SMFIP_NR_RCPT, Reply::Continue, replies);
            }
            Command::Data => self.reply_unless(SMFIP_NR_DATA, Reply::Continue, replies),
            Command::Header { name, value } => self.header(&name, &value, replies),
            Command::EndOfHeaders => {
                if let Some(m) = &mut self.message {
                    m.tx.end_of_headers();
                }
                self.reply_unless(SMFIP_NR_EOH, Reply::Continue, replies);
            }
            Command::Body { chunk } => self.body(&chunk, replies),
            Command::EndOfMessage { chunk } => self.end_of_message(&chunk, replies).await,
            Command::Abort => self.abort(),
            Command::Unknown { .. } => self.reply_unless(SMFIP_NR_UNKN, Reply::Continue, replies),
            Command::Quit => {
                self.state = State::Closed;
                return Flow::Close;
            }
            Command::QuitNewConnection => {
                self.abort();
                self.conn = Connection::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                self.state = State::AwaitConnect;
            }
        }
        Flow::Continue
    }

    fn negotiate(&mut self, version: u32, actions: u32, protocol: u32, replies: &mut Vec<Reply>) {
        // Answer with no more than was offered: version, actions and protocol steps alike.
        self.actions = actions & WANTED_ACTIONS;
        // MAIL needs a reply only when the policy may refuse the sender there (SPF fail with
        // `spf_fail_at_mail`); otherwise the MTA need not wait for us between the envelope
        // and the content, which saves a round trip (two wake-ups) per message. The policy is
        // the session's snapshot's, fixed for the connection's life.
        let mut wanted = WANTED_PROTOCOL;
        if self.snapshot.policy.rules.spf_fail_at_mail == Action::Accept {
            wanted |= SMFIP_NR_MAIL;
        }
        self.protocol = protocol & wanted;
        let macros = if self.actions & SMFIF_SETSYMLIST != 0 {
            WANTED_MACROS
                .iter()
                .map(|(s, m)| (*s, m.to_string()))
                .collect()
        } else {
            Vec::new()
        };
        replies.push(Reply::OptNeg {
            version: version.min(SMFI_PROT_VERSION),
            actions: self.actions,
            protocol: self.protocol,
            macros,
        });
        self.state = State::AwaitConnect;
    }

    fn connect(
        &mut self,
        hostname: String,
        family: Family,
        address: String,
        replies: &mut Vec<Reply>,
    ) {
        let ip = match family {
            Family::Inet4 | Family::Inet6 => address.parse().ok(),
            _ => None,
        }
        .or_else(|| {
            self.macro_value("{client_addr}")
                .and_then(|a| a.parse().ok())
        })
        // A local (Unix socket or unknown) client: treat as loopback, i.e. trusted by default.
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        tracing::debug!(%ip, %hostname, "milter connect");
        self.conn = Connection::new(ip);
        self.state = State::Connected;
        self.reply_unless(SMFIP_NR_CONN, Reply::Continue, replies);
    }

    async fn mail(&mut self, args: Vec<String>, replies: &mut Vec<Reply>) {
        if self.message.is_some() {
            tracing::debug!("MAIL without abort; starting over");
            self.abort();
        }
        self.conn.authenticated = self
            .macro_value("{auth_authen}")
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        self.queue_id = self
            .macro_value("i")
            .filter(|i| !i.is_empty())
            .map(str::to_string);
        let sender = args.first().map(String::as_str).unwrap_or("<>");
        let snapshot = Arc::clone(&self.snapshot);
        let tx = Transaction::begin(&snapshot.verifier, &self.conn, sender).await;
        let outbound = tx.skipped().is_some();
        if let Some(reason) = tx.skipped() {
            tracing::debug!(queue_id = self.queue_id(), %reason, "outbound: not verified");
            if snapshot.signer.is_empty() {
                // Nothing to sign either: let the MTA take it without asking us again.
                self.message = None;
                if self.protocol & SMFIP_NR_MAIL == 0 {
                    replies.push(Reply::Accept);
                    self.state = State::Connected;
                } else {
                    // No MAIL reply was negotiated, so the MTA sends the message anyway: it
                    // is taken in without being kept and let through at its end.
                    self.state = State::Message;
                }
                return;
            }
        }
        if let Some(verdict) = tx
            .spf()
            .and_then(|spf| decide_at_mail(spf, &snapshot.policy))
        {
            tracing::info!(queue_id = self.queue_id(), sender, verdict = %verdict.action, reasons = ?verdict.reasons, "refused at MAIL");
            replies.push(refusal(&verdict));
            self.state = State::Connected;
            return;
        }
        let mut tx = tx;
        tx.charge_to(snapshot.budget());
        self.message = Some(Message {
            tx,
            rcpts: Recipients::default(),
            outbound,
            skip_sent: false,
            report_rcpts: 0,
        });
        self.state = State::Message;
        self.reply_unless(SMFIP_NR_MAIL, Reply::Continue, replies);
    }

    fn header(&mut self, name: &str, value: &[u8], replies: &mut Vec<Reply>) {
        let leading_space = self.protocol & SMFIP_HDR_LEADSPC != 0;
        if let Some(m) = &mut self.message {
            m.tx.header_in_pieces(name, restore_crlf(value, !leading_space));
        }
        self.reply_unless(SMFIP_NR_HDR, Reply::Continue, replies);
    }

    fn body(&mut self, chunk: &[u8], replies: &mut Vec<Reply>) {
        let mut skip = false;
        if let Some(m) = &mut self.message {
            m.tx.body(chunk);
            // Over the limit: nothing more is kept, so stop the MTA sending it (SKIP is a
            // reply, impossible when body chunks are negotiated as no-reply).
            if m.tx.is_discarding()
                && !m.skip_sent
                && self.protocol & SMFIP_SKIP != 0
                && self.protocol & SMFIP_NR_BODY == 0
            {
                m.skip_sent = true;
                skip = true;
            }
        }
        if skip {
            replies.push(Reply::Skip);
        } else {
            self.reply_unless(SMFIP_NR_BODY, Reply::Continue, replies);
        }
    }

    fn abort(&mut self) {
        self.message = None;
        if self.state == State::Message {
            self.state = State::Connected;
        }
    }

    fn reply_unless(&self, no_reply_flag: u32, reply: Reply, replies: &mut Vec<Reply>) {
        if self.protocol & no_reply_flag == 0 {
            replies.push(reply);
        }
    }

    fn macro_value(&self, name: &str) -> Option<&str> {
        self.macros
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A reject or tempfail verdict as SMFIR_REPLYCODE (`550 5.7.1 text`).
fn refusal(verdict: &Verdict) -> Reply {
    let text = format!(
        "{} {} {}",
        verdict.code,
        verdict.status,
        verdict.text.replace(['\r', '\n'], " ")
    );
    match ReplyText::new(text) {
        Ok(text) => Reply::ReplyCode { text },
        // Our own codes are always valid; fall back to the MTA's default text if not.
        Err(_) if verdict.action == Action::Tempfail => Reply::Tempfail,
        Err(_) => Reply::Reject,
    }
}

/// Milter header values have folds joined with a bare LF; DKIM needs the CRLF back. Without
/// `SMFIP_HDR_LEADSPC` the MTA also dropped the space after the colon. The value comes back
/// as pieces of the original and CRLFs, so that it reaches the message without a copy.
fn restore_crlf(value: &[u8], add_space: bool) -> impl Iterator<Item = &[u8]> {
    let space: &[u8] = if add_space { b" " } else { b"" };
    let lines =
        value
            .split_inclusive(|&b| b == b'\n')
            .flat_map(|line| match line.strip_suffix(b"\n") {
                Some(text) if !text.ends_with(b"\r") => [text, b"\r\n"],
                _ => [line, b""],
            });
    std::iter::once(space).chain(lines)
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::OptNeg { .. } => "optneg",
        Command::Macro { .. } => "macro",
        Command::Connect { .. } => "connect",
        Command::Helo { .. } => "helo",
        Command::Mail { .. } => "mail",
        Command::Rcpt { .. } => "rcpt",
        Command::Data => "data",
        Command::Header { .. } => "header",
        Command::EndOfHeaders => "eoh",
        Command::Body { .. } => "body",
        Command::EndOfMessage { .. } => "eom",
        Command::Abort => "abort",
        Command::Quit => "quit",
        Command::QuitNewConnection => "quit_nc",
        Command::Unknown { .. } => "unknown",
    }
}

/// At most [`MAX_MACROS`] macros, each value cut to [`MAX_MACRO_VALUE`] bytes.
fn bounded_macros(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs.truncate(MAX_MACROS);
    for (name, value) in &mut pairs {
        name.truncate(cut(name, MAX_MACRO_VALUE).len());
        value.truncate(cut(value, MAX_MACRO_VALUE).len());
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[tokio::test]
    async fn queue_id_comes_from_whichever_macros_carry_it() {
        let mut config = Config::default();
        config.dns.nameservers = vec!["127.0.0.1:9".parse().unwrap()];
        let mut session = Session::new(Arc::new(Snapshot::new(config).unwrap()));
        let mut replies = Vec::new();
        let optneg = Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1fffff,
        };
        session.handle(optneg, &mut replies).await;
        assert_eq!(session.queue_id(), None);
        // Postfix sends `i` first with the end-of-message macros.
        let pairs = vec![("i".to_string(), "4XQ1".to_string())];
        session
            .handle(
                Command::Macro {
                    stage: SMFIC_BODYEOB,
                    pairs,
                },
                &mut replies,
            )
            .await;
        assert_eq!(session.queue_id(), Some("4XQ1"));
    }

    #[test]
    fn folds_get_their_cr_back() {
        let restored = |value: &[u8], add_space| -> Vec<u8> {
            restore_crlf(value, add_space).flatten().copied().collect()
        };
        assert_eq!(restored(b" a\n\tb", false), b" a\r\n\tb");
        assert_eq!(restored(b"a\r\n b", true), b" a\r\n b");
        assert_eq!(restored(b"\n a\n\n", false), b"\r\n a\r\n\r\n");
        assert_eq!(restored(b"", true), b" ");
    }
}
