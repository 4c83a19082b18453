//! The commands of one message (and of CONNECT/HELO), encoded once per connection the way
//! Postfix would send them under the flags the filter negotiated.
//!
//! A [`Script`] is one byte buffer plus the [`Step`]s that cut it into commands, each step
//! marking whether the MTA waits for a reply after it. Macro packets belong to the step of
//! the command they precede. The `i` macro carries a placeholder that
//! [`Script::set_queue_id`] overwrites in place for every message.

use super::run::Client;
use crate::milter::command::{Command, Family};
use crate::milter::consts::*;

/// Postfix's body chunk size (`MILTER_CHUNK_SIZE`).
pub(super) const CHUNK: usize = 65535;

/// Postfix's default `milter_*_macros`, indexed by `SMFIM_*` stage.
pub(super) const POSTFIX_MACROS: [&str; 7] = [
    "j {daemon_name} {daemon_addr} v _",
    "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
    "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}",
    "{rcpt_addr} {rcpt_host} {rcpt_mailer}",
    "i",
    "i",
    "i",
];

/// Stands in for the queue id in the encoded script; patched per message.
pub(super) const QID_MARK: &[u8; 10] = b"@QUEUE-ID@";

/// The events of the protocol the script is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    Header,
    Eoh,
    Body,
    Eom,
    /// Not a command: smtpd hands the milter connection to cleanup(8), which sends the
    /// content. What smtpd buffered goes out first, in a write of its own.
    Handoff,
}

/// One command (with the macros before it) in a [`Script`]: its bytes end at `end`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    pub(super) end: usize,
    pub(super) stage: Stage,
    /// Wait for the filter's reply after this command (no `SMFIP_NR_*` for it).
    pub(super) wait: bool,
    /// Write out everything pending after this step, even without waiting for a reply.
    pub(super) flush: bool,
}

/// Pre-encoded commands for one connection's negotiated flags.
#[derive(Debug, Default)]
pub(super) struct Script {
    pub(super) bytes: Vec<u8>,
    pub(super) steps: Vec<Step>,
    /// Where the queue-id placeholders are.
    pub(super) qid_at: Vec<usize>,
}

/// What the filter answered in option negotiation.
#[derive(Debug, Clone)]
pub(super) struct Negotiated {
    pub(super) protocol: u32,
    /// Macro names per `SMFIM_*` stage: the filter's list where it sent one, else Postfix's.
    pub(super) macros: [String; 7],
}

impl Script {
    fn command(&mut self, command: &Command, stage: Stage, wait: bool) {
        command.encode(&mut self.bytes);
        self.steps.push(Step {
            end: self.bytes.len(),
            stage,
            wait,
            flush: false,
        });
    }

    /// The end of smtpd's part (envelope) and the start of cleanup's (content). Postfix 3.x
    /// leaves Nagle on for milter sockets, so when the envelope's last commands need no reply,
    /// the content's write waits for the filter's ACK of the envelope's: a filter that delays
    /// that ACK costs every message the peer's delayed-ACK timer (about 40 ms on Linux).
    fn handoff(&mut self) {
        self.steps.push(Step {
            end: self.bytes.len(),
            stage: Stage::Handoff,
            wait: false,
            flush: true,
        });
    }

    /// The macro packet for `stage` (an `SMFIM_*` index) before command byte `code`. Sent
    /// even when empty, as Postfix does.
    fn macros(&mut self, neg: &Negotiated, stage: u32, code: u8, client: &Client, qid: bool) {
        let pairs = neg.macros[stage as usize]
            .split([' ', ','])
            .filter(|n| !n.is_empty())
            .filter_map(|n| macro_value(n, client, qid).map(|v| (n.to_string(), v)))
            .collect();
        let from = self.bytes.len();
        Command::Macro { stage: code, pairs }.encode(&mut self.bytes);
        let mut at = from;
        while let Some(p) = self.bytes[at..]
            .windows(QID_MARK.len())
            .position(|w| w == QID_MARK)
        {
            self.qid_at.push(at + p);
            at += p + QID_MARK.len();
        }
    }

    /// CONNECT and HELO.
    pub(super) fn connect(neg: &Negotiated, client: &Client) -> Script {
        let mut s = Script::default();
        let p = neg.protocol;
        s.macros(neg, SMFIM_CONNECT, SMFIC_CONNECT, client, false);
        if p & SMFIP_NOCONNECT == 0 {
            let family = match client.ip {
                std::net::IpAddr::V4(_) => Family::Inet4,
                std::net::IpAddr::V6(_) => Family::Inet6,
            };
            let connect = Command::Connect {
                hostname: client.helo.clone(),
                family,
                port: 40000,
                address: client.ip.to_string(),
            };
            s.command(&connect, Stage::Connect, p & SMFIP_NR_CONN == 0);
        }
        s.macros(neg, SMFIM_HELO, SMFIC_HELO, client, false);
        if p & SMFIP_NOHELO == 0 {
            let helo = Command::Helo {
                name: client.helo.clone(),
            };
            s.command(&helo, Stage::Helo, p & SMFIP_NR_HELO == 0);
        }
        s
    }

    /// One message transaction, MAIL to end of message.
    pub(super) fn message(neg: &Negotiated, client: &Client, raw: &[u8]) -> Script {
        let mut s = Script::default();
        let p = neg.protocol;
        s.macros(neg, SMFIM_ENVFROM, SMFIC_MAIL, client, false);
        if p & SMFIP_NOMAIL == 0 {
            let args = vec![format!("<{}>", client.mail_from)];
            s.command(&Command::Mail { args }, Stage::Mail, p & SMFIP_NR_MAIL == 0);
        }
        s.macros(neg, SMFIM_ENVRCPT, SMFIC_RCPT, client, false);
        if p & SMFIP_NORCPT == 0 {
            let args = vec![format!("<{}>", client.rcpt)];
            s.command(&Command::Rcpt { args }, Stage::Rcpt, p & SMFIP_NR_RCPT == 0);
        }
        s.macros(neg, SMFIM_DATA, SMFIC_DATA, client, true);
        if p & SMFIP_NODATA == 0 {
            s.command(&Command::Data, Stage::Data, p & SMFIP_NR_DATA == 0);
        }
        s.handoff();
        let (headers, body) = split_message(raw, p & SMFIP_HDR_LEADSPC != 0);
        if p & SMFIP_NOHDRS == 0 {
            for (name, value) in headers {
                s.macros(neg, SMFIM_EOH, SMFIC_HEADER, client, true);
                let header = Command::Header { name, value };
                s.command(&header, Stage::Header, p & SMFIP_NR_HDR == 0);
            }
        }
        if p & SMFIP_NOEOH == 0 {
            s.macros(neg, SMFIM_EOH, SMFIC_EOH, client, true);
            s.command(&Command::EndOfHeaders, Stage::Eoh, p & SMFIP_NR_EOH == 0);
        }
        if p & SMFIP_NOBODY == 0 {
            for chunk in body.chunks(CHUNK) {
                s.macros(neg, SMFIM_EOM, SMFIC_BODY, client, true);
                let body = Command::Body {
                    chunk: chunk.to_vec(),
                };
                s.command(&body, Stage::Body, p & SMFIP_NR_BODY == 0);
            }
        }
        s.macros(neg, SMFIM_EOM, SMFIC_BODYEOB, client, true);
        let eom = Command::EndOfMessage { chunk: Vec::new() };
        s.command(&eom, Stage::Eom, true);
        s
    }

    pub(super) fn set_queue_id(&mut self, id: &[u8; 10]) {
        for &at in &self.qid_at {
            self.bytes[at..at + id.len()].copy_from_slice(id);
        }
    }
}

/// What Postfix would have for macro `name` (`None`: undefined, not sent). `i` exists once
/// the queue file is open, which by default is after the first accepted RCPT.
fn macro_value(name: &str, c: &Client, qid: bool) -> Option<String> {
    let domain = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_string());
    Some(match name {
        "i" if qid => String::from_utf8_lossy(QID_MARK).into_owned(),
        "j" | "{daemon_name}" => "mx.bench.example".into(),
        "{daemon_addr}" => "127.0.0.1".into(),
        "{daemon_port}" => "25".into(),
        "v" => "Postfix 3.7".into(),
        "_" => format!("{} [{}]", c.helo, c.ip),
        "{client_addr}" => c.ip.to_string(),
        "{client_name}" | "{client_ptr}" => c.helo.clone(),
        "{client_port}" => "40000".into(),
        "{client_connections}" => "0".into(),
        "{mail_addr}" => c.mail_from.clone(),
        "{mail_host}" => domain(&c.mail_from)?,
        "{mail_mailer}" => "smtp".into(),
        "{rcpt_addr}" => c.rcpt.clone(),
        "{rcpt_host}" => domain(&c.rcpt)?,
        "{rcpt_mailer}" => "virtual".into(),
        _ => return None,
    })
}

/// Header fields as Postfix hands them to a milter (folds joined with LF, the space after the
/// colon dropped unless `leading_space`), and the body.
pub(super) fn split_message(raw: &[u8], leading_space: bool) -> (Vec<(String, Vec<u8>)>, &[u8]) {
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let rest = &raw[pos..];
        let len = rest.windows(2).position(|w| w == b"\r\n");
        let line = &rest[..len.unwrap_or(rest.len())];
        pos += len.map_or(rest.len(), |l| l + 2);
        if line.is_empty() {
            return (headers, &raw[pos..]);
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = headers.last_mut() {
                value.push(b'\n');
                value.extend_from_slice(line);
            }
            continue;
        }
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let name = String::from_utf8_lossy(&line[..colon])
            .trim_end()
            .to_string();
        let mut value = line.get(colon + 1..).unwrap_or_default();
        if !leading_space {
            value = value.strip_prefix(b" ").unwrap_or(value);
        }
        headers.push((name, value.to_vec()));
    }
    (headers, &[])
}
