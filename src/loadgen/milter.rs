//! The MTA side of the milter protocol under load, sequenced the way Postfix 3.x does it.
//!
//! Per connection: option negotiation (version 6, actions 0x1ff, protocol 0x1fffff), then
//! CONNECT and HELO, then messages: MAIL, RCPT, DATA, one HEADER per field (folds joined with
//! LF, the space after the colon dropped unless `SMFIP_HDR_LEADSPC`), EOH, BODY chunks of at
//! most 65,535 bytes, end of message; then ABORT, as Postfix's `mail_reset` sends after every
//! transaction, and the next MAIL on the same connection. Like Postfix it
//!
//! * sends each stage's macros before the stage's command (before *every* header and body
//!   chunk too), from Postfix's default macro lists or the lists the filter asked for, and
//!   sends the macros even of events the filter negotiated away (`SMFIP_NOCONNECT`, ...);
//! * waits for a reply only where the filter did not negotiate `SMFIP_NR_*`, so everything
//!   between two replies goes out in one write, except that the envelope (written by smtpd)
//!   and the content (written by cleanup, to which smtpd hands the connection) are two
//!   writes; and like Postfix it leaves Nagle on, so a filter that delays its ACKs is
//!   measured with the stalls it causes behind Postfix;
//! * stops a message at the first final answer (accept, reject, tempfail, discard, reply
//!   code), honours SKIP, and treats a refusal at CONNECT/HELO as the end of the connection.
//!
//! The message is encoded once per connection (the negotiated flags decide its shape) into a
//! [`Script`]; each message only patches the queue id into the `i` macros, so the generator
//! spends its CPU on syscalls, not on re-encoding.

use super::run::{Budget, Client, Limit, Pacer, Target, RECONNECT_PAUSE};
use super::script::{split_message, Negotiated, Script, Stage, POSTFIX_MACROS};
use super::stats::{Recorder, Report};
use crate::milter::codec::{Decoded, Decoder, Frame};
use crate::milter::command::Command;
use crate::milter::consts::*;
use crate::milter::reply::Reply;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// What Postfix 3.7 offers in option negotiation.
pub const POSTFIX_VERSION: u32 = 6;
pub const POSTFIX_ACTIONS: u32 = 0x1ff;
pub const POSTFIX_PROTOCOL: u32 = 0x1f_ffff;

/// Settings of one `bench-milter` run.
#[derive(Debug, Clone)]
pub struct MilterOptions {
    pub target: Target,
    pub connections: usize,
    pub limit: Limit,
    /// The message, CRLF line endings, header and body.
    pub message: Arc<Vec<u8>>,
    pub client: Client,
    /// Messages per milter connection before QUIT and a new connection (0: no limit). Postfix
    /// opens one milter connection per SMTP session.
    pub session_messages: u64,
    /// Messages per second in all (`None`: as fast as the filter answers).
    pub rate: Option<f64>,
    /// Per read, write and connection attempt.
    pub timeout: Duration,
    /// Idle mode: open the connections (through HELO), hold them this long, quit. No messages.
    pub idle: Option<Duration>,
    /// Where to keep the first message's end-of-message answer and header edits (for
    /// checking what a filter does; see [`Captured`]). `None`: nothing is kept.
    pub capture: Option<Arc<OnceLock<Captured>>>,
}

/// The first message's answer at end of message, kept by [`MilterOptions::capture`]: what a
/// filter did to it (e.g. the Authentication-Results or DKIM-Signature it added).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The final answer's kind, as counted in the report (`continue`, `accept`, ...).
    pub answer: &'static str,
    /// The header edits (add, insert, change), in the order the filter sent them.
    pub edits: Vec<Reply>,
    /// Whether the filter negotiated `SMFIP_HDR_LEADSPC` (its values carry the space after
    /// the colon).
    pub leading_space: bool,
}

impl Captured {
    /// `raw` (CRLF, header and body) with the header edits applied the way Postfix applies
    /// them: add at the end of the header; insert at a 0-based index among all fields, where
    /// field 0 is the `Received:` the MTA put on top (not in `raw`), so 0 and 1 both insert
    /// at the top of `raw`'s header; change (empty: delete) the index-th field of that name,
    /// or add it if there is none. Folds in the values (LF or CRLF) become CRLF. Other edits
    /// (envelope, body) are not applied.
    pub fn apply(&self, raw: &[u8]) -> Vec<u8> {
        let (mut fields, body) = split_message(raw, true);
        let value = |v: &str| {
            let v = v.replace("\r\n", "\n");
            match self.leading_space {
                true => v.into_bytes(),
                false => format!(" {v}").into_bytes(),
            }
        };
        for edit in &self.edits {
            match edit {
                Reply::AddHeader { name, value: v } => fields.push((name.clone(), value(v))),
                Reply::InsertHeader {
                    index,
                    name,
                    value: v,
                } => {
                    let at = (*index as usize).saturating_sub(1).min(fields.len());
                    fields.insert(at, (name.clone(), value(v)));
                }
                Reply::ChangeHeader {
                    index,
                    name,
                    value: v,
                } => {
                    let at = fields
                        .iter()
                        .enumerate()
                        .filter(|(_, (n, _))| n.eq_ignore_ascii_case(name))
                        .nth((*index as usize).saturating_sub(1))
                        .map(|(i, _)| i);
                    match (at, v.is_empty()) {
                        (Some(i), true) => {
                            fields.remove(i);
                        }
                        (Some(i), false) => fields[i].1 = value(v),
                        (None, true) => {}
                        (None, false) => fields.push((name.clone(), value(v))),
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 1024);
        for (name, v) in fields {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            for &b in &v {
                if b == b'\n' {
                    out.push(b'\r');
                }
                out.push(b);
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }
}

/// Runs the load and reports; never panics on what the peer does.
pub async fn run(opts: MilterOptions) -> Report {
    let opts = Arc::new(opts);
    let start = Instant::now();
    let limit = match opts.idle {
        Some(idle) => Limit {
            messages: Some(0),
            duration: Some(idle),
        },
        None => opts.limit,
    };
    let budget = Arc::new(Budget::new(limit, start));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..opts.connections {
        let (opts, budget) = (Arc::clone(&opts), Arc::clone(&budget));
        match opts.target.clone() {
            Target::Tcp(addr) => {
                // Nagle stays on, as in Postfix 3.x (see `Stage::Handoff`): a filter is
                // measured with the delays it would cause behind Postfix.
                let dial = move || tokio::net::TcpStream::connect(addr);
                tasks.spawn(worker(dial, opts, budget, w));
            }
            Target::Unix(path) => {
                let dial = move || tokio::net::UnixStream::connect(path.clone());
                tasks.spawn(worker(dial, opts, budget, w));
            }
        }
    }
    let mut recorders = Vec::new();
    while let Some(done) = tasks.join_next().await {
        recorders.push(done.unwrap_or_else(|_| {
            let mut r = Recorder::default();
            r.error("panic");
            r
        }));
    }
    let target = opts.target.to_string();
    Report::build(
        "milter",
        target,
        opts.connections,
        recorders,
        start.elapsed(),
    )
}

/// One connection's loop: take a ticket, (re)connect if needed, run a message.
async fn worker<S, D, F>(
    dial: D,
    opts: Arc<MilterOptions>,
    budget: Arc<Budget>,
    w: usize,
) -> Recorder
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: Fn() -> F,
    F: Future<Output = std::io::Result<S>>,
{
    let mut rec = Recorder::default();
    let open = || async {
        let stream = match timeout(opts.timeout, dial()).await {
            Ok(Ok(s)) => s,
            _ => return Err(Failure::Connect),
        };
        Conn::open(stream, &opts).await
    };
    if opts.idle.is_some() {
        match open().await {
            Ok(conn) => {
                rec.session();
                tokio::time::sleep_until(budget.deadline().max(Instant::now()).into()).await;
                conn.quit().await;
            }
            Err(f) => rec.error(f.kind()),
        }
        return rec;
    }
    let mut pacer = Pacer::new(opts.rate, opts.connections, w);
    let mut conn: Option<Conn<S>> = None;
    let mut in_session = 0u64;
    let mut serial = 0u32;
    while budget.take() {
        pacer.wait().await;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match open().await {
                Ok(c) => {
                    rec.session();
                    in_session = 0;
                    conn.insert(c)
                }
                Err(f) => {
                    rec.error(f.kind());
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        serial = serial.wrapping_add(1);
        match c.message(queue_id(w, serial), &mut rec).await {
            Ok(true) => {}
            Ok(false) => conn = None, // the filter ended the SMTP session
            Err(f) => {
                rec.error(f.kind());
                conn = None;
                continue;
            }
        }
        in_session += 1;
        if opts.session_messages > 0 && in_session >= opts.session_messages {
            if let Some(c) = conn.take() {
                c.quit().await;
            }
        }
    }
    if let Some(c) = conn {
        c.quit().await;
    }
    rec
}

/// Ten upper-case hex digits, unique per worker and message (like a short Postfix queue id).
fn queue_id(worker: usize, serial: u32) -> [u8; 10] {
    let n = ((worker as u64 & 0xffff) << 24) | (serial as u64 & 0xff_ffff);
    let mut id = [b'0'; 10];
    for (i, b) in id.iter_mut().enumerate() {
        *b = b"0123456789ABCDEF"[((n >> (4 * (9 - i))) & 0xf) as usize];
    }
    id
}

/// Why a message or connection failed; the report counts these by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    Timeout,
    Closed,
    Io,
    /// A malformed frame, an unknown reply, or a reply not allowed at that stage.
    Protocol,
    /// The filter refused the SMTP client at CONNECT or HELO.
    Refused,
}

impl Failure {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Closed => "closed",
            Failure::Io => "io",
            Failure::Protocol => "protocol",
            Failure::Refused => "refused",
        }
    }
}

/// How a reply moves the conversation on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Continue,
    Skip,
    Progress,
    Quarantine,
    Edit(&'static str),
    /// A final answer for the message; `true` when it also ends the SMTP session.
    Final(&'static str, bool),
}

fn classify(frame: &Frame) -> Result<Answer, Failure> {
    let empty = |a: Answer| match frame.data.is_empty() {
        true => Ok(a),
        false => Err(Failure::Protocol),
    };
    match frame.code {
        SMFIR_CONTINUE => empty(Answer::Continue),
        SMFIR_SKIP => empty(Answer::Skip),
        SMFIR_PROGRESS => empty(Answer::Progress),
        SMFIR_ACCEPT => empty(Answer::Final("accept", false)),
        SMFIR_REJECT => empty(Answer::Final("reject", false)),
        SMFIR_TEMPFAIL => empty(Answer::Final("tempfail", false)),
        SMFIR_DISCARD => empty(Answer::Final("discard", false)),
        SMFIR_SHUTDOWN => empty(Answer::Final("shutdown", true)),
        SMFIR_CONN_FAIL => empty(Answer::Final("conn_fail", true)),
        // Checked the way Postfix checks it: 4xx or 5xx, then a space or a hyphen.
        SMFIR_REPLYCODE => match frame.data.as_slice() {
            [b'4', _, _, b' ' | b'-', ..] => Ok(Answer::Final("replycode_4xx", false)),
            [b'5', _, _, b' ' | b'-', ..] => Ok(Answer::Final("replycode_5xx", false)),
            _ => Err(Failure::Protocol),
        },
        SMFIR_QUARANTINE => Ok(Answer::Quarantine),
        code => {
            let kind = match code {
                SMFIR_ADDHEADER => "add_header",
                SMFIR_INSHEADER => "insert_header",
                SMFIR_CHGHEADER => "change_header",
                SMFIR_CHGFROM => "change_from",
                SMFIR_ADDRCPT | SMFIR_ADDRCPT_PAR => "add_rcpt",
                SMFIR_DELRCPT => "delete_rcpt",
                SMFIR_REPLBODY => return Ok(Answer::Edit("replace_body")),
                _ => return Err(Failure::Protocol),
            };
            // Edits must be well formed: that is the filter's job even under load.
            Reply::decode(frame.clone()).map_err(|_| Failure::Protocol)?;
            Ok(Answer::Edit(kind))
        }
    }
}

/// The message's end: its final answer and how long the filter took to give it.
struct Final {
    kind: &'static str,
    latency: Duration,
    stage: Stage,
    ends_session: bool,
}

/// One milter connection, negotiated and past HELO.
struct Conn<S> {
    stream: S,
    decoder: Decoder,
    buf: Vec<u8>,
    /// Bytes not yet written: everything up to the next command that waits for a reply.
    out: Vec<u8>,
    timeout: Duration,
    script: Script,
    /// Set while this connection may still capture the run's first message.
    capture: Option<Arc<OnceLock<Captured>>>,
    /// The current message's header edits, while capturing.
    edits: Vec<Reply>,
    leading_space: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Negotiates, then CONNECT and HELO.
    async fn open(stream: S, opts: &MilterOptions) -> Result<Conn<S>, Failure> {
        let mut conn = Conn {
            stream,
            decoder: Decoder::default(),
            buf: Vec::with_capacity(8 * 1024),
            out: Vec::with_capacity(8 * 1024),
            timeout: opts.timeout,
            script: Script::default(),
            capture: opts.capture.clone().filter(|c| c.get().is_none()),
            edits: Vec::new(),
            leading_space: false,
        };
        let offer = Command::OptNeg {
            version: POSTFIX_VERSION,
            actions: POSTFIX_ACTIONS,
            protocol: POSTFIX_PROTOCOL,
        };
        offer.encode(&mut conn.out);
        conn.flush().await?;
        let neg = match Reply::decode(conn.frame().await?) {
            Ok(Reply::OptNeg {
                protocol, macros, ..
            }) => {
                let mut lists = POSTFIX_MACROS.map(String::from);
                for (stage, names) in macros {
                    if let Some(list) = lists.get_mut(stage as usize) {
                        *list = names;
                    }
                }
                conn.leading_space = protocol & SMFIP_HDR_LEADSPC != 0;
                Negotiated {
                    protocol: protocol & POSTFIX_PROTOCOL,
                    macros: lists,
                }
            }
            _ => return Err(Failure::Protocol),
        };
        let hello = Script::connect(&neg, &opts.client);
        if conn.run(&hello, None).await?.is_some() {
            // Refused (or accepted wholesale) at CONNECT/HELO: nothing to measure here.
            return Err(Failure::Refused);
        }
        conn.flush().await?;
        conn.script = Script::message(&neg, &opts.client, &opts.message);
        Ok(conn)
    }

    /// One message; `Ok(false)` when the filter ended the session with its answer.
    async fn message(&mut self, qid: [u8; 10], rec: &mut Recorder) -> Result<bool, Failure> {
        self.script.set_queue_id(&qid);
        let script = std::mem::take(&mut self.script);
        let result = self.run(&script, Some(rec)).await;
        self.script = script;
        let Some(end) = result? else {
            // Every step continued but none was end of message: cannot happen with a
            // message script, whose last step always waits.
            return Err(Failure::Protocol);
        };
        rec.message(end.kind, end.latency);
        if let Some(capture) = self.capture.take() {
            // The first message to end wins; the others' edits are dropped.
            let _ = capture.set(Captured {
                answer: end.kind,
                edits: std::mem::take(&mut self.edits),
                leading_space: self.leading_space,
            });
        }
        if end.stage != Stage::Eom {
            rec.ended_early();
        }
        if end.ends_session {
            return Ok(false);
        }
        // Postfix's mail_reset after every transaction; goes out with the next write.
        Command::Abort.encode(&mut self.out);
        Ok(true)
    }

    /// Sends the script's steps, waiting where the filter replies. Returns the final answer,
    /// or `None` if every step was answered with continue (or not at all).
    async fn run(
        &mut self,
        script: &Script,
        mut rec: Option<&mut Recorder>,
    ) -> Result<Option<Final>, Failure> {
        let mut start = 0;
        let mut skipping: Option<Stage> = None;
        for step in &script.steps {
            if skipping == Some(step.stage) {
                // SMFIR_SKIP: no more events of that kind (nor their macros).
                start = step.end;
                continue;
            }
            skipping = None;
            self.out.extend_from_slice(&script.bytes[start..step.end]);
            start = step.end;
            if step.flush {
                self.flush().await?;
            }
            if !step.wait {
                continue;
            }
            let sent = Instant::now();
            self.flush().await?;
            let mut quarantined = false;
            loop {
                let frame = self.frame().await?;
                let answer = classify(&frame)?;
                let at_eom = step.stage == Stage::Eom;
                let kind = match answer {
                    Answer::Progress => continue,
                    Answer::Continue if !at_eom => break,
                    Answer::Skip if !at_eom => {
                        skipping = Some(step.stage);
                        break;
                    }
                    Answer::Quarantine if at_eom => {
                        quarantined = true;
                        continue;
                    }
                    Answer::Edit(kind) if at_eom => {
                        if let Some(r) = rec.as_deref_mut() {
                            r.edit(kind);
                        }
                        if self.capture.is_some() {
                            // Checked by `classify` already (except bodies, not kept).
                            self.edits.extend(Reply::decode(frame).ok());
                        }
                        continue;
                    }
                    Answer::Continue if quarantined => ("quarantine", false),
                    Answer::Continue => ("continue", false),
                    Answer::Final(kind, ends) => (kind, ends),
                    // Skip at end of message, edits or quarantine before it.
                    _ => return Err(Failure::Protocol),
                };
                return Ok(Some(Final {
                    kind: kind.0,
                    latency: sent.elapsed(),
                    stage: step.stage,
                    ends_session: kind.1,
                }));
            }
        }
        // Macros of an event the filter negotiated away, after the last command.
        self.out.extend_from_slice(&script.bytes[start..]);
        Ok(None)
    }

    async fn flush(&mut self) -> Result<(), Failure> {
        if self.out.is_empty() {
            return Ok(());
        }
        let written = timeout(self.timeout, self.stream.write_all(&self.out)).await;
        self.out.clear();
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Failure::Io),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// The next reply frame.
    async fn frame(&mut self) -> Result<Frame, Failure> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Decoded::Frame(f) => return Ok(f),
                Decoded::Incomplete => {}
                Decoded::TooLarge(_) | Decoded::Invalid => return Err(Failure::Protocol),
            }
            self.buf.reserve(4 * 1024);
            match timeout(self.timeout, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return Err(Failure::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(Failure::Io),
                Err(_) => return Err(Failure::Timeout),
            }
        }
    }

    /// Ends the connection as Postfix does at the end of an SMTP session.
    async fn quit(mut self) {
        Command::Quit.encode(&mut self.out);
        let _ = self.flush().await;
        let _ = timeout(self.timeout, self.stream.shutdown()).await;
    }
}

#[cfg(test)]
#[path = "milter_tests.rs"]
mod tests;
