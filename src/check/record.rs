//! The stored form of a decision: one [`Record`] per verdict, as the verdict journal hands it
//! to the store, with the message's bounded envelope and what an aggregate report needs of it
//! ([`DmarcEvent`]). Built here, next to [`Decision`], so that the store below the doors only
//! keeps plain data.

use super::decision::Decision;
use super::event::DmarcEvent;
use crate::auth::{Connection, Outcome, Transport};
use std::time::Duration;

/// One verdict, as stored.
#[derive(Debug, Clone)]
pub struct Record {
    /// Unix milliseconds.
    pub received_at: i64,
    pub transport: Transport,
    pub queue_id: Option<String>,
    pub message_id: Option<String>,
    pub client_ip: String,
    pub helo: Option<String>,
    /// Envelope sender ("" for the null sender); `None` when not known.
    pub mail_from: Option<String>,
    /// The first [`MAX_STORED_RCPTS`] recipients, each cut to [`MAX_RCPT_LEN`] bytes.
    pub rcpts: Vec<String>,
    /// How many recipients the message had.
    pub rcpt_count: usize,
    /// RFC 5322.From domain.
    pub from_domain: Option<String>,
    pub verdict: String,
    /// The DMARC result, when DMARC was evaluated.
    pub dmarc: Option<String>,
    /// How long the end-of-message check took.
    pub duration: Duration,
    /// The `check --json` document.
    pub document: serde_json::Value,
    /// What an aggregate report needs of this message, when its From domain asks for them.
    pub dmarc_event: Option<DmarcEvent>,
}

/// Recipients a record keeps; the rest are counted only, so one message with thousands of
/// recipients cannot make a row (or an API answer) of megabytes.
pub const MAX_STORED_RCPTS: usize = 100;
/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets; longer ones are cut for the record.
pub const MAX_RCPT_LEN: usize = 256;
/// The other text fields a record keeps from the client or the message, cut to this length
/// (RFC 5322 §2.1.1's line limit).
const MAX_FIELD_LEN: usize = 998;

/// Where a message came from, for [`Record::new`].
#[derive(Debug, Clone, Default)]
pub struct Envelope<'a> {
    pub queue_id: Option<&'a str>,
    pub mail_from: Option<&'a str>,
    /// The recipients kept (a door may keep only the first ones, see [`Recipients`]).
    pub rcpts: &'a [String],
    /// Recipients beyond `rcpts`, counted but not kept.
    pub more_rcpts: usize,
}

/// A door's bounded list of a message's recipients: the first [`MAX_STORED_RCPTS`], each cut
/// to [`MAX_RCPT_LEN`] bytes, and how many there were in all.
#[derive(Debug, Default)]
pub struct Recipients {
    kept: Vec<String>,
    total: usize,
}

impl Recipients {
    pub fn push(&mut self, address: &str) {
        self.total += 1;
        if self.kept.len() < MAX_STORED_RCPTS {
            self.kept.push(cut(address, MAX_RCPT_LEN).to_string());
        }
    }

    /// How many recipients were pushed.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The envelope a record is built from.
    pub fn envelope<'a>(&'a self, queue_id: Option<&'a str>) -> Envelope<'a> {
        Envelope {
            queue_id,
            mail_from: None,
            rcpts: &self.kept,
            more_rcpts: self.total - self.kept.len(),
        }
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn cut_owned(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| match cut(&t, max).len() {
        n if n == t.len() => t,
        n => t[..n].to_string(),
    })
}

impl Record {
    /// Builds the record of a decision about `raw` (whose header gives the Message-ID).
    pub fn new(
        transport: Transport,
        conn: &Connection,
        envelope: Envelope<'_>,
        raw: &[u8],
        decision: &Decision,
        duration: Duration,
    ) -> Record {
        let outcome: &Outcome = &decision.outcome;
        let mail_from = envelope.mail_from.map(str::to_string).or_else(|| {
            outcome.spf.as_ref().map(|s| {
                if s.null_sender {
                    String::new()
                } else {
                    s.mail_from.identity.clone()
                }
            })
        });
        let rcpts: Vec<String> = envelope
            .rcpts
            .iter()
            .take(MAX_STORED_RCPTS)
            .map(|r| cut(r, MAX_RCPT_LEN).to_string())
            .collect();
        Record {
            received_at: crate::dates::now_ms(),
            transport,
            queue_id: cut_owned(envelope.queue_id.map(str::to_string), MAX_FIELD_LEN),
            message_id: message_id(raw),
            client_ip: conn.ip.to_string(),
            helo: cut_owned(conn.helo.clone(), MAX_FIELD_LEN),
            mail_from: cut_owned(mail_from, MAX_FIELD_LEN),
            rcpt_count: envelope.rcpts.len() + envelope.more_rcpts,
            rcpts,
            from_domain: outcome.from.domain().map(str::to_ascii_lowercase),
            verdict: decision.verdict.action.as_str().to_string(),
            dmarc: outcome
                .dmarc
                .as_ref()
                .map(|d| d.result.as_str().to_string()),
            duration,
            document: serde_json::to_value(decision.report()).unwrap_or_default(),
            // A message checked over the HTTP API on request is not mail we received: it
            // would count twice in the reports if it also came through a door.
            dmarc_event: match transport {
                Transport::Http => None,
                _ => DmarcEvent::of(conn, envelope.rcpts, outcome, &decision.verdict),
            },
        }
    }
}

/// The Message-ID field's value, angle brackets kept, from the header section. The header
/// is read as bytes and only the value becomes text: converting the whole header would copy
/// all of it as soon as one byte in it is not UTF-8.
pub fn message_id(raw: &[u8]) -> Option<String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let mut lines = crlf_lines(&raw[..end]).peekable();
    while let Some(line) = lines.next() {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if std::str::from_utf8(name).is_ok_and(|n| n.trim().eq_ignore_ascii_case("Message-ID")) {
            let mut value = String::from_utf8_lossy(value).trim().to_string();
            while let Some(fold) = lines.next_if(|l| l.starts_with(b" ") || l.starts_with(b"\t")) {
                value.push_str(String::from_utf8_lossy(fold).trim());
            }
            return (!value.is_empty()).then(|| cut(&value, MAX_FIELD_LEN).to_string());
        }
    }
    None
}

/// The lines of `text` split at CRLF; a bare CR or LF stays inside its line.
fn crlf_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                rest = Some(&text[i + 2..]);
                Some(&text[..i])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_read_from_the_header_only() {
        let raw = b"From: a@b\r\nMessage-Id:\r\n <x@y>\r\n\r\nMessage-ID: <body@z>\r\n";
        assert_eq!(message_id(raw).as_deref(), Some("<x@y>"));
        assert_eq!(message_id(b"From: a@b\r\n\r\nMessage-ID: <b@z>\r\n"), None);
        let long = format!("Message-ID: <{}@x>\r\n\r\n", "m".repeat(5000));
        assert_eq!(message_id(long.as_bytes()).unwrap().len(), MAX_FIELD_LEN);
        // A byte that is not UTF-8 elsewhere in the header changes nothing; in the value it
        // becomes U+FFFD. A bare LF does not end a line.
        let raw = b"X-8bit: caf\xe9\r\nMessage-ID:\r\n\t<\xff@y>\r\n\r\n";
        assert_eq!(message_id(raw).as_deref(), Some("<\u{fffd}@y>"));
        assert_eq!(message_id(b"X-A: 1\nMessage-ID: <x@y>\r\n\r\n"), None);
    }

    #[test]
    fn recipients_are_bounded_and_counted() {
        let mut r = Recipients::default();
        let long = format!("{}é@example.net", "a".repeat(255));
        for _ in 0..250 {
            r.push(&long);
        }
        let e = r.envelope(Some("Q1"));
        assert_eq!((e.rcpts.len(), e.more_rcpts, r.total()), (100, 150, 250));
        // Cut at a character boundary: the two-byte é does not fit in 256.
        assert_eq!(e.rcpts[0].len(), 255);
        assert_eq!(cut("héllo", 2), "h");
    }
}
