//! The command-side codec: command lines in, replies out. No I/O.
//!
//! Lines are cut at LF (a CR before it is part of the line for `smtp-proto`, which expects
//! it). A line longer than the limit is dropped as it arrives, never buffered whole, and
//! reported once its LF shows up (RFC 5321 §4.5.3.1.4).

use crate::smtp::SmtpReply;
use std::borrow::Cow;

/// What the buffered input holds next.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One command line, LF included.
    Line(Vec<u8>),
    /// A line over the limit ended (its bytes are gone).
    TooLong,
    /// No complete line yet.
    Incomplete,
}

/// Cuts buffered input into command lines.
#[derive(Debug)]
pub struct LineDecoder {
    max_line: usize,
    /// Inside a line over the limit: drop everything up to its LF.
    discarding: bool,
    /// The first bytes of the last line dropped, so AUTH can be told apart (RFC 4954 §4).
    head: Vec<u8>,
}

impl LineDecoder {
    pub fn new(max_line: usize) -> LineDecoder {
        LineDecoder {
            max_line,
            discarding: false,
            head: Vec::new(),
        }
    }

    /// The first bytes (at most 8) of the last line reported as [`Frame::TooLong`].
    pub fn dropped_head(&self) -> &[u8] {
        &self.head
    }

    /// Takes the next frame out of `buf`.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Frame {
        match buf.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let line: Vec<u8> = buf.drain(..=lf).collect();
                if std::mem::take(&mut self.discarding) {
                    Frame::TooLong
                } else if line.len() > self.max_line {
                    self.head = line[..8.min(line.len())].to_vec();
                    Frame::TooLong
                } else {
                    Frame::Line(line)
                }
            }
            None => {
                if self.discarding || buf.len() > self.max_line {
                    // Already too long without its end: keep nothing of it.
                    if !self.discarding {
                        self.head = buf[..8.min(buf.len())].to_vec();
                    }
                    self.discarding = true;
                    buf.clear();
                }
                Frame::Incomplete
            }
        }
    }
}

/// Appends `reply` in wire form: one line per text line, `-` after the code on all but the
/// last (RFC 5321 §4.2.1), the enhanced status code after it (RFC 2034 §4).
pub fn encode(reply: &SmtpReply, out: &mut Vec<u8>) {
    let code = reply.code.clamp(200, 599);
    let empty = [String::new()];
    let lines: &[String] = if reply.lines.is_empty() {
        &empty
    } else {
        &reply.lines
    };
    for (i, text) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.extend_from_slice(format!("{code}{sep}").as_bytes());
        if let Some(status) = &reply.status {
            out.extend_from_slice(status.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(printable(text).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Reply text as it may go on the wire: no line breaks or other controls (a next hop's
/// reply passes through here too).
fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(
            text.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// `RCPT TO:<Postmaster>` (RFC 5321 §4.5.1: accepted without a domain); `smtp-proto` gives
/// it back as an empty address, like `<>`, which is no recipient at all.
pub fn names_postmaster(line: &[u8]) -> bool {
    line.windows(12)
        .any(|w| w.eq_ignore_ascii_case(b"<postmaster>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_lf() {
        let mut d = LineDecoder::new(100);
        let mut buf = b"NOOP\r\nRSET\r\nQU".to_vec();
        assert_eq!(d.decode(&mut buf), Frame::Line(b"NOOP\r\n".to_vec()));
        assert_eq!(d.decode(&mut buf), Frame::Line(b"RSET\r\n".to_vec()));
        assert_eq!(d.decode(&mut buf), Frame::Incomplete);
        assert_eq!(buf, b"QU");
    }

    #[test]
    fn giant_line_is_dropped_as_it_arrives() {
        let mut d = LineDecoder::new(10);
        let mut buf = vec![b'x'; 1000];
        assert_eq!(d.decode(&mut buf), Frame::Incomplete);
        assert!(buf.is_empty(), "nothing of it is kept");
        buf.extend_from_slice(&[b'y'; 1000]);
        assert_eq!(d.decode(&mut buf), Frame::Incomplete);
        buf.extend_from_slice(b"zz\r\nNOOP\r\n");
        assert_eq!(d.decode(&mut buf), Frame::TooLong);
        assert_eq!(d.decode(&mut buf), Frame::Line(b"NOOP\r\n".to_vec()));
    }

    #[test]
    fn complete_line_over_the_limit() {
        let mut d = LineDecoder::new(6);
        let mut buf = b"NOOP\r\nNOOPS\r\n".to_vec();
        assert_eq!(d.decode(&mut buf), Frame::Line(b"NOOP\r\n".to_vec()));
        assert_eq!(d.decode(&mut buf), Frame::TooLong);
    }

    #[test]
    fn multiline_reply_with_status() {
        let mut out = Vec::new();
        let reply = SmtpReply {
            code: 250,
            status: Some("2.0.0".into()),
            lines: vec!["a".into(), "b\r\nc".into()],
        };
        encode(&reply, &mut out);
        assert_eq!(out, b"250-2.0.0 a\r\n250 2.0.0 b  c\r\n");
    }
}
