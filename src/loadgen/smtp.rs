//! SMTP sessions under load, for measuring an MTA (with or without milters) end to end.
//!
//! Each connection: greeting, EHLO, optionally XCLIENT (so a loopback client looks like the
//! outside host given with `--ip`, as Postfix allows for `smtpd_authorized_xclient_hosts`)
//! and EHLO again, then messages: MAIL, RCPT and DATA pipelined when the server offers
//! PIPELINING (RFC 2920), the dot-stuffed message, and the reply to the final dot, whose
//! latency is what is measured: with before-queue milters, that is where they run. A refused
//! message is followed by RSET; the session ends with QUIT.

use super::run::{Budget, Client, Limit, Pacer, RECONNECT_PAUSE};
use super::stats::{Recorder, Report};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Longest reply (all lines) accepted before the server is called broken.
const MAX_REPLY: usize = 64 * 1024;

/// Settings of one `bench-smtp` run.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    pub target: SocketAddr,
    pub connections: usize,
    pub limit: Limit,
    /// The message, CRLF line endings (dot-stuffed here).
    pub message: Arc<Vec<u8>>,
    pub client: Client,
    /// Send `XCLIENT ADDR=<ip> NAME=<helo>` after the first EHLO.
    pub xclient: bool,
    /// Messages per SMTP session before QUIT and a new connection (0: no limit).
    pub session_messages: u64,
    pub rate: Option<f64>,
    /// Per read, write and connection attempt.
    pub timeout: Duration,
}

/// Runs the load and reports; never panics on what the server does.
pub async fn run(opts: SmtpOptions) -> Report {
    let data = Arc::new(dot_stuff(&opts.message));
    let opts = Arc::new(opts);
    let start = Instant::now();
    let budget = Arc::new(Budget::new(opts.limit, start));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..opts.connections {
        let (opts, budget, data) = (Arc::clone(&opts), Arc::clone(&budget), Arc::clone(&data));
        tasks.spawn(worker(opts, budget, data, w));
    }
    let mut recorders = Vec::new();
    while let Some(done) = tasks.join_next().await {
        recorders.push(done.unwrap_or_else(|_| {
            let mut r = Recorder::default();
            r.error("panic");
            r
        }));
    }
    Report::build(
        "smtp",
        opts.target.to_string(),
        opts.connections,
        recorders,
        start.elapsed(),
    )
}

async fn worker(
    opts: Arc<SmtpOptions>,
    budget: Arc<Budget>,
    data: Arc<Vec<u8>>,
    w: usize,
) -> Recorder {
    let mut rec = Recorder::default();
    let mut pacer = Pacer::new(opts.rate, opts.connections, w);
    let mut session: Option<Session> = None;
    let mut in_session = 0u64;
    while budget.take() {
        pacer.wait().await;
        let s = match session.as_mut() {
            Some(s) => s,
            None => match Session::open(&opts).await {
                Ok(s) => {
                    rec.session();
                    in_session = 0;
                    session.insert(s)
                }
                Err(kind) => {
                    rec.error(kind);
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        if let Err(kind) = s.message(&opts, &data, &mut rec).await {
            rec.error(kind);
            session = None;
            continue;
        }
        in_session += 1;
        if opts.session_messages > 0 && in_session >= opts.session_messages {
            if let Some(s) = session.take() {
                s.quit().await;
            }
        }
    }
    if let Some(s) = session {
        s.quit().await;
    }
    rec
}

/// One SMTP connection past EHLO (and XCLIENT).
struct Session {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
    pipelining: bool,
}

/// A reply: its code and the text of its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SmtpReply {
    code: u16,
    lines: Vec<String>,
}

impl SmtpReply {
    fn class(&self) -> &'static str {
        match self.code / 100 {
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        }
    }
}

impl Session {
    async fn open(opts: &SmtpOptions) -> Result<Session, &'static str> {
        let stream = match timeout(opts.timeout, TcpStream::connect(opts.target)).await {
            Ok(Ok(s)) => s,
            _ => return Err("connect"),
        };
        stream.set_nodelay(true).map_err(|_| "io")?;
        let mut s = Session {
            stream,
            buf: Vec::with_capacity(4096),
            timeout: opts.timeout,
            pipelining: false,
        };
        s.expect(220).await?;
        let helo = opts.client.helo.clone();
        let ehlo = s.command(&format!("EHLO {helo}\r\n"), 250).await?;
        if opts.xclient {
            if !has_keyword(&ehlo, "XCLIENT") {
                return Err("refused");
            }
            let ip = opts.client.ip;
            s.command(&format!("XCLIENT ADDR={ip} NAME={helo}\r\n"), 220)
                .await?;
            let ehlo = s.command(&format!("EHLO {helo}\r\n"), 250).await?;
            s.pipelining = has_keyword(&ehlo, "PIPELINING");
        } else {
            s.pipelining = has_keyword(&ehlo, "PIPELINING");
        }
        Ok(s)
    }

    /// One transaction; refusals are recorded as answers, not errors.
    async fn message(
        &mut self,
        opts: &SmtpOptions,
        data: &[u8],
        rec: &mut Recorder,
    ) -> Result<(), &'static str> {
        let mail = format!("MAIL FROM:<{}>\r\n", opts.client.mail_from);
        let rcpt = format!("RCPT TO:<{}>\r\n", opts.client.rcpt);
        let mut envelope = Vec::with_capacity(3);
        let sent = Instant::now();
        if self.pipelining {
            self.write(format!("{mail}{rcpt}DATA\r\n").as_bytes())
                .await?;
            for _ in 0..3 {
                envelope.push(self.reply().await?);
            }
        } else {
            for cmd in [mail, rcpt, "DATA\r\n".to_string()] {
                self.write(cmd.as_bytes()).await?;
                let r = self.reply().await?;
                let refused = r.code >= 400;
                envelope.push(r);
                if refused {
                    break;
                }
            }
        }
        if let Some(refusal) = envelope.iter().find(|r| r.code >= 400) {
            // Refused before the content: MAIL, RCPT or DATA itself.
            rec.message(refusal.class(), sent.elapsed());
            rec.ended_early();
            if envelope.last().is_some_and(|r| r.code == 354) {
                // DATA was accepted although a recipient was not (can't happen with one
                // recipient, but never leave the server waiting for content).
                self.write(b".\r\n").await?;
                self.reply().await?;
            }
            return self.command("RSET\r\n", 250).await.map(|_| ());
        }
        if envelope.last().map(|r| r.code) != Some(354) {
            return Err("protocol");
        }
        let sent = Instant::now();
        self.write(data).await?;
        let end = self.reply().await?;
        rec.message(end.class(), sent.elapsed());
        if end.code >= 400 {
            self.command("RSET\r\n", 250).await?;
        }
        Ok(())
    }

    async fn quit(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
    }

    async fn command(&mut self, line: &str, want: u16) -> Result<SmtpReply, &'static str> {
        self.write(line.as_bytes()).await?;
        let r = self.reply().await?;
        match r.code == want {
            true => Ok(r),
            false => Err("refused"),
        }
    }

    async fn expect(&mut self, want: u16) -> Result<SmtpReply, &'static str> {
        let r = self.reply().await?;
        match r.code == want {
            true => Ok(r),
            false => Err("refused"),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        match timeout(self.timeout, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("io"),
            Err(_) => Err("timeout"),
        }
    }

    /// The next (possibly multi-line) reply.
    async fn reply(&mut self) -> Result<SmtpReply, &'static str> {
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            if self.buf.len() > MAX_REPLY {
                return Err("protocol");
            }
            self.buf.reserve(4096);
            match timeout(self.timeout, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return Err("closed"),
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err("io"),
                Err(_) => return Err("timeout"),
            }
        }
    }
}

/// A whole reply at the front of `buf` and the bytes it took, `None` if incomplete.
fn parse_reply(buf: &[u8]) -> Result<Option<(SmtpReply, usize)>, &'static str> {
    let mut pos = 0;
    let mut lines = Vec::new();
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let line = &buf[pos..pos + nl];
        pos += nl + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (code, sep, text) = match line {
            [a, b, c, rest @ ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
                let code =
                    u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
                match rest.split_first() {
                    Some((&sep, text)) => (code, sep, text),
                    None => (code, b' ', &[][..]),
                }
            }
            _ => return Err("protocol"),
        };
        lines.push(String::from_utf8_lossy(text).into_owned());
        match sep {
            b'-' => continue,
            b' ' => return Ok(Some((SmtpReply { code, lines }, pos))),
            _ => return Err("protocol"),
        }
    }
    Ok(None)
}

fn has_keyword(ehlo: &SmtpReply, keyword: &str) -> bool {
    ehlo.lines.iter().any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
    })
}

/// The DATA content: lines starting with a dot get another (RFC 5321 section 4.5.2), a final
/// CRLF if missing, and the terminating dot.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_single_and_multi_line() {
        assert_eq!(parse_reply(b"250-mx\r\n250-PIPE"), Ok(None));
        let (r, used) = parse_reply(b"250-mx\r\n250 PIPELINING\r\n354 go\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(used, 24);
        assert!(has_keyword(&r, "pipelining"));
        assert!(!has_keyword(&r, "XCLIENT"));
        let (r, _) = parse_reply(b"421\r\n").unwrap().unwrap();
        assert_eq!(r.class(), "4xx");
        assert_eq!(parse_reply(b"hello\r\n"), Err("protocol"));
        assert_eq!(parse_reply(b"250x\r\n"), Err("protocol"));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n..\r\n"), b"a\r\n..b\r\n...\r\n.\r\n");
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
    }
}
