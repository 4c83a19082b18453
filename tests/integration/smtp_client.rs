//! A minimal SMTP client for tests: hands one message to a server as if it came from a given
//! client (RFC 5321, plus Postfix's XCLIENT), reporting the stage and reply where the
//! transaction ended. Much faster than starting swaks per message.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The SMTP stage at which a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Ehlo,
    Xclient,
    Mail,
    Rcpt,
    Data,
    EndOfData,
}

/// One SMTP reply: the code and each line's text after `NNN-`/`NNN `.
#[derive(Debug, Clone)]
pub struct SmtpReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl SmtpReply {
    /// The queue id from Postfix's `250 2.0.0 Ok: queued as 4Xb2...`.
    pub fn queue_id(&self) -> Option<&str> {
        self.lines
            .last()?
            .split_once("queued as ")
            .map(|(_, id)| id.trim())
    }

    pub fn text(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }
}

/// How a transaction ended: the stage and the server's reply there.
#[derive(Debug, Clone)]
pub struct Sent {
    pub stage: Stage,
    pub reply: SmtpReply,
}

impl fmt::Display for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {} {}",
            self.stage,
            self.reply.code,
            self.reply.lines.join(" / ")
        )
    }
}

/// Just enough SMTP (RFC 5321, plus Postfix's XCLIENT) to hand Postfix one message as if it
/// came from `client` (address, name): much faster than starting swaks per message.
pub fn send_mail(port: u16, client: (&str, &str), from: &str, to: &str, raw: &[u8]) -> Sent {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("postfix smtpd accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut read_reply = || -> SmtpReply {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("an SMTP reply line");
            let line = line.trim_end();
            assert!(line.len() >= 3, "short SMTP reply line {line:?}");
            let code = line[..3].parse().expect("an SMTP reply code");
            lines.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return SmtpReply { code, lines };
            }
        }
    };
    let greeting = read_reply();
    if greeting.code != 220 {
        return Sent {
            stage: Stage::Greeting,
            reply: greeting,
        };
    }
    let (addr, name) = client;
    let steps = [
        (Stage::Ehlo, "EHLO relay.test".to_string(), 250),
        (
            Stage::Xclient,
            format!("XCLIENT ADDR={addr} NAME={name}"),
            220,
        ),
        (Stage::Ehlo, format!("EHLO {name}"), 250),
        (Stage::Mail, format!("MAIL FROM:<{from}>"), 250),
        (Stage::Rcpt, format!("RCPT TO:<{to}>"), 250),
        (Stage::Data, "DATA".to_string(), 354),
    ];
    for (stage, command, expected) in steps {
        writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        let reply = read_reply();
        if reply.code != expected {
            let _ = writer.write_all(b"QUIT\r\n");
            return Sent { stage, reply };
        }
    }
    writer.write_all(&dot_stuffed(raw)).unwrap();
    writer.write_all(b".\r\n").unwrap();
    let reply = read_reply();
    let _ = writer.write_all(b"QUIT\r\n");
    Sent {
        stage: Stage::EndOfData,
        reply,
    }
}

/// RFC 5321 4.5.2: a line starting with `.` gets another; the text ends with CRLF.
fn dot_stuffed(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 8);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A plain SMTP client session for driving authmilter's own SMTP front end.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(port: u16) -> (Client, SmtpReply) {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("the SMTP server accepts");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut client = Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let greeting = client.reply();
        (client, greeting)
    }

    /// One reply, all its lines; code 0 when the server closed the connection.
    pub fn reply(&mut self) -> SmtpReply {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return SmtpReply { code: 0, lines },
                Ok(_) => {}
            }
            let line = line.trim_end();
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            lines.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return SmtpReply { code, lines };
            }
        }
    }

    /// Sends bytes as they are (pipelined commands, partial data).
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Sends one command line and reads its reply.
    pub fn command(&mut self, line: &str) -> SmtpReply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// After a 354: the message, dot-stuffed, and the final dot; returns the final reply.
    pub fn data(&mut self, raw: &[u8]) -> SmtpReply {
        self.send(&dot_stuffed(raw));
        self.send(b".\r\n");
        self.reply()
    }
}

/// A whole transaction through [`Client`]: EHLO, MAIL, each RCPT (all must be accepted), DATA.
pub fn send_plain(port: u16, from: &str, rcpts: &[&str], raw: &[u8]) -> Sent {
    let (mut c, greeting) = Client::connect(port);
    if greeting.code != 220 {
        return Sent {
            stage: Stage::Greeting,
            reply: greeting,
        };
    }
    let mut steps = vec![
        (Stage::Ehlo, "EHLO client.test".to_string(), 250),
        (Stage::Mail, format!("MAIL FROM:<{from}>"), 250),
    ];
    for to in rcpts {
        steps.push((Stage::Rcpt, format!("RCPT TO:<{to}>"), 250));
    }
    steps.push((Stage::Data, "DATA".to_string(), 354));
    for (stage, command, expected) in steps {
        let reply = c.command(&command);
        if reply.code != expected {
            let _ = c.command("QUIT");
            return Sent { stage, reply };
        }
    }
    let reply = c.data(raw);
    let _ = c.command("QUIT");
    Sent {
        stage: Stage::EndOfData,
        reply,
    }
}
