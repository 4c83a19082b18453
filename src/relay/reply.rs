//! Decoder for the next hop's SMTP replies (RFC 5321 §4.2): bytes in, whole replies out.
//!
//! No I/O here: the connection feeds whatever it read and asks for the next complete reply.
//! The decoder is strict where leniency would be dangerous for a proxy (every line of a
//! multiline reply must carry the same code, RFC 5321 §4.2.1, so a `250-`…`451 ` reply is
//! garbage rather than a success) and bounded so that a hostile next hop cannot make us
//! buffer without limit.

use super::SmtpReply;

/// Largest reply we buffer, all lines included. RFC 5321 §4.5.3.1.5 allows 512 octets per
/// line; real EHLO replies are a few hundred bytes.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Most lines in one reply.
pub const MAX_REPLY_LINES: usize = 100;

/// Why a reply could not be decoded; always the next hop's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply longer than {MAX_REPLY_BYTES} bytes or {MAX_REPLY_LINES} lines")]
    TooLarge,
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("lines of one reply carry different codes ({0} then {1})")]
    MixedCodes(u16, u16),
}

/// Accumulates bytes and cuts them into replies.
#[derive(Debug, Default)]
pub struct ReplyDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already checked as continuation lines of the reply in progress, so
    /// a next hop dripping one byte at a time costs linear, not quadratic, work.
    scanned: usize,
    lines: usize,
}

impl ReplyDecoder {
    /// Appends bytes as read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether bytes beyond the last reply are waiting (they must not be, after STARTTLS).
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete reply, `None` if more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<SmtpReply>, ReplyError> {
        loop {
            let Some(newline) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                if self.buf.len() > MAX_REPLY_BYTES {
                    return Err(ReplyError::TooLarge);
                }
                return Ok(None);
            };
            let end = self.scanned + newline + 1;
            if end > MAX_REPLY_BYTES {
                return Err(ReplyError::TooLarge);
            }
            let (_, last, _) = split_line(&self.buf[self.scanned..end])?;
            self.lines += 1;
            if self.lines > MAX_REPLY_LINES {
                return Err(ReplyError::TooLarge);
            }
            self.scanned = end;
            if last {
                let reply = assemble(&self.buf[..end]);
                self.buf.drain(..end);
                self.scanned = 0;
                self.lines = 0;
                return reply.map(Some);
            }
        }
    }
}

/// Splits one line (LF included) into code, "is the last line", and text.
fn split_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let malformed =
        || ReplyError::Malformed(String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned());
    let (code, rest) = match line {
        [a @ b'1'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', rest @ ..] => {
            let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            (code, rest)
        }
        _ => return Err(malformed()),
    };
    // Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF
    match rest {
        [] => Ok((code, true, rest)),
        [b' ', text @ ..] => Ok((code, true, text)),
        [b'-', text @ ..] => Ok((code, false, text)),
        _ => Err(malformed()),
    }
}

/// Builds the reply from its lines, already known to be well formed.
fn assemble(bytes: &[u8]) -> Result<SmtpReply, ReplyError> {
    let mut code = None;
    let mut status = None;
    let mut lines = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let (this, _, text) = split_line(line)?;
        match code {
            None => code = Some(this),
            Some(first) if first != this => return Err(ReplyError::MixedCodes(first, this)),
            Some(_) => {}
        }
        let text = printable(text);
        let (line_status, text) = split_status(this, &text);
        if status.is_none() {
            status = line_status.map(str::to_string);
        }
        lines.push(text.to_string());
    }
    Ok(SmtpReply {
        code: code.unwrap_or_default(),
        status,
        lines,
    })
}

/// The text as a string we can safely repeat to our client: invalid UTF-8 and control
/// characters (other than tab) become replacement characters.
fn printable(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Splits a leading enhanced status code (RFC 3463 §2: class "." subject "." detail, subject
/// and detail of 1–3 digits, class matching the reply code's first digit, RFC 2034 §4).
fn split_status(code: u16, text: &str) -> (Option<&str>, &str) {
    let (candidate, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = candidate.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (None, text);
    };
    let digits =
        |s: &str, max: usize| (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let class_ok = class.len() == 1 && class.as_bytes()[0] == b'0' + (code / 100) as u8;
    if class_ok && matches!(class, "2" | "4" | "5") && digits(subject, 3) && digits(detail, 3) {
        (Some(candidate), rest)
    } else {
        (None, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Option<SmtpReply>, ReplyError> {
        let mut decoder = ReplyDecoder::default();
        decoder.feed(input);
        decoder.next_reply()
    }

    #[test]
    fn multiline_ehlo_keeps_every_line() {
        let reply = decode_all(b"250-mx.example\r\n250-PIPELINING\r\n250 XFORWARD NAME ADDR\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.status, None);
        assert_eq!(
            reply.lines,
            ["mx.example", "PIPELINING", "XFORWARD NAME ADDR"]
        );
    }

    #[test]
    fn enhanced_status_is_split_from_every_line() {
        let reply = decode_all(b"550-5.1.1 no such user\r\n550 5.1.1 really\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(reply.code, 550);
        assert_eq!(reply.status.as_deref(), Some("5.1.1"));
        assert_eq!(reply.lines, ["no such user", "really"]);
    }

    #[test]
    fn status_of_the_wrong_class_stays_text() {
        // RFC 3463 §2: the class must agree with the reply code.
        let reply = decode_all(b"250 5.0.0 odd\r\n").unwrap().unwrap();
        assert_eq!(reply.status, None);
        assert_eq!(reply.lines, ["5.0.0 odd"]);
        let reply = decode_all(b"250 8BITMIME\r\n").unwrap().unwrap();
        assert_eq!(reply.lines, ["8BITMIME"]);
    }

    #[test]
    fn bare_code_and_bare_lf_are_accepted() {
        let reply = decode_all(b"354\n").unwrap().unwrap();
        assert_eq!(
            (reply.code, reply.lines.clone()),
            (354, vec![String::new()])
        );
    }

    #[test]
    fn byte_at_a_time_gives_the_same_reply_and_keeps_the_rest() {
        let input = b"250-a\r\n250 2.0.0 b\r\n220 next";
        let mut decoder = ReplyDecoder::default();
        let mut got = None;
        for &b in input.iter() {
            decoder.feed(&[b]);
            if let Some(reply) = decoder.next_reply().unwrap() {
                got = Some(reply);
            }
        }
        let reply = got.unwrap();
        assert_eq!(reply.lines, ["a", "b"]);
        assert_eq!(reply.status.as_deref(), Some("2.0.0"));
        assert!(decoder.has_pending());
    }

    #[test]
    fn mixed_codes_are_garbage_not_success() {
        // RFC 5321 §4.2.1: every line of a multiline reply carries the same code.
        let err = decode_all(b"250-ok\r\n451 4.3.0 not ok\r\n").unwrap_err();
        assert_eq!(err, ReplyError::MixedCodes(250, 451));
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(matches!(
            decode_all(b"hello\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            decode_all(b"25\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            decode_all(b"250x\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            decode_all(b"650 no\r\n"),
            Err(ReplyError::Malformed(_))
        ));
    }

    #[test]
    fn endless_line_is_too_large() {
        let mut decoder = ReplyDecoder::default();
        decoder.feed(b"250 ");
        let mut result = Ok(None);
        for _ in 0..100 {
            decoder.feed(&[b'x'; 1024]);
            result = decoder.next_reply();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ReplyError::TooLarge));
    }

    #[test]
    fn endless_continuation_lines_are_too_large() {
        let mut decoder = ReplyDecoder::default();
        decoder.feed(&b"250-\r\n".repeat(MAX_REPLY_LINES + 1));
        assert_eq!(decoder.next_reply(), Err(ReplyError::TooLarge));
    }

    #[test]
    fn control_characters_are_not_repeated() {
        let reply = decode_all(b"550 bad\x1b[31m\r\n").unwrap().unwrap();
        assert_eq!(reply.lines, ["bad\u{fffd}[31m"]);
    }
}
