//! The DATA decoder: turns the bytes after `354` into the message, with no I/O of its own.
//!
//! RFC 5321 §4.1.1.4: the message ends at `<CRLF>.<CRLF>` (the first CRLF belongs to the last
//! line); §4.5.2: a leading dot on any other line was added by the client and is removed.
//! Everything else is kept byte for byte, with one exception: a bare LF is taken as the end
//! of a line and stored as CRLF, as Postfix's `smtpd_forbid_bare_newline = normalize` does.
//! Only the exact `<CRLF>.<CRLF>` ends the data, never `<LF>.<LF>` or `<LF>.<CRLF>`, so what a
//! client hides behind a bare LF can never become a second message at the next hop (the
//! "SMTP smuggling" of CVE-2023-51764/51765/51766).
//!
//! Limits are enforced as bytes arrive: past the size or line-length limit nothing more is
//! kept (the buffer is freed), but the decoder keeps reading to the end marker so the
//! session stays in step with the client.

/// How the data ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataEnd {
    /// The message, dot-unstuffed, CRLF line ends, without the end marker.
    Message(Vec<u8>),
    /// More than the size limit arrived (RFC 1870 §6.3).
    TooLarge,
    /// A line was longer than the line limit (RFC 5321 §4.5.3.1.6).
    LineTooLong,
    /// The memory budget for messages in flight was spent while it arrived.
    NoMemory,
}

/// Where in a line the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// At the start of a line; `crlf` when the previous line ended with a real CRLF (only
    /// then can a lone dot end the data).
    LineStart { crlf: bool },
    /// Read a dot at the start of a line.
    Dot { crlf: bool },
    /// Read `.` CR at the start of a line.
    DotCr { crlf: bool },
    /// Inside a line.
    Text,
    /// Read a CR inside a line; it ends the line if LF follows.
    Cr,
}

/// What went over a limit first (the rest is read and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Size,
    Line,
    Memory,
}

/// Decodes one message's DATA, chunk by chunk.
#[derive(Debug)]
pub struct DataDecoder {
    max_size: usize,
    max_line: usize,
    message: Vec<u8>,
    position: Position,
    /// Bytes of the current line as sent (stuffing dot and line end included).
    line_len: usize,
    overflow: Option<Overflow>,
}

impl DataDecoder {
    /// A decoder keeping at most `max_size` bytes of message and lines of at most `max_line`
    /// bytes (CRLF included).
    pub fn new(max_size: usize, max_line: usize) -> DataDecoder {
        DataDecoder {
            max_size,
            max_line,
            message: Vec::new(),
            // The DATA command's own CRLF came just before.
            position: Position::LineStart { crlf: true },
            line_len: 0,
            overflow: None,
        }
    }

    /// Decodes `input`; returns how many bytes were used and, once the end marker was read,
    /// how the data ended. Bytes after the marker (pipelined commands) are left unused.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<DataEnd>) {
        let mut i = 0;
        while i < input.len() {
            if self.position == Position::Text {
                // Fast path: copy up to the next line break in one go.
                let run = input[i..]
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(input.len() - i);
                if run > 0 {
                    self.count(run);
                    self.emit(&input[i..i + run]);
                    i += run;
                    continue;
                }
            }
            let byte = input[i];
            i += 1;
            self.count(1);
            if self.step(byte) {
                return (i, Some(self.finish()));
            }
        }
        (i, None)
    }

    /// Bytes of message kept so far.
    pub fn kept(&self) -> usize {
        self.message.len()
    }

    /// Stops keeping the message (the memory budget is spent); the rest is still read to the
    /// end marker, and the data ends as [`DataEnd::NoMemory`].
    pub fn abandon(&mut self) {
        if self.overflow.is_none() {
            self.overflow = Some(Overflow::Memory);
            self.message = Vec::new();
        }
    }

    /// One byte outside the fast path; true at the end marker.
    fn step(&mut self, byte: u8) -> bool {
        use Position::*;
        self.position = match (self.position, byte) {
            (LineStart { crlf }, b'.') => Dot { crlf },
            (LineStart { .. } | Text, b'\r') => Cr,
            (LineStart { .. } | Text, b'\n') => self.bare_lf(),
            (LineStart { .. } | Text, _) => {
                self.emit(&[byte]);
                Text
            }
            (Dot { crlf }, b'\r') => DotCr { crlf },
            (Dot { .. }, b'\n') => {
                // A lone dot ended by a bare LF is not the end marker: keep it as a line.
                self.emit(b".");
                self.bare_lf()
            }
            (Dot { .. }, _) => {
                // §4.5.2: the line has more than the dot, so the dot was stuffing.
                self.emit(&[byte]);
                Text
            }
            (DotCr { crlf: true }, b'\n') => return true,
            (DotCr { crlf: false }, b'\n') => {
                self.emit(b".\r\n");
                self.new_line(true)
            }
            (DotCr { .. }, b'\r') => {
                // Stuffing dot, then a bare CR, then maybe the line's CRLF.
                self.emit(b"\r");
                Cr
            }
            (DotCr { .. }, _) => {
                self.emit(&[b'\r', byte]);
                Text
            }
            (Cr, b'\n') => {
                self.emit(b"\r\n");
                self.new_line(true)
            }
            (Cr, b'\r') => {
                // The first CR was bare: kept as it is.
                self.emit(b"\r");
                Cr
            }
            (Cr, _) => {
                self.emit(&[b'\r', byte]);
                Text
            }
        };
        false
    }

    fn bare_lf(&mut self) -> Position {
        self.emit(b"\r\n");
        self.new_line(false)
    }

    fn new_line(&mut self, crlf: bool) -> Position {
        self.line_len = 0;
        Position::LineStart { crlf }
    }

    /// Counts received bytes against the line limit.
    fn count(&mut self, n: usize) {
        self.line_len = self.line_len.saturating_add(n);
        if self.line_len > self.max_line && self.overflow.is_none() {
            self.overflow = Some(Overflow::Line);
            self.message = Vec::new();
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        if self.overflow.is_some() {
            return;
        }
        if self.message.len() + bytes.len() > self.max_size {
            self.overflow = Some(Overflow::Size);
            // Keep nothing: the message is refused anyway.
            self.message = Vec::new();
            return;
        }
        self.message.extend_from_slice(bytes);
    }

    fn finish(&mut self) -> DataEnd {
        match self.overflow {
            None => DataEnd::Message(std::mem::take(&mut self.message)),
            Some(Overflow::Size) => DataEnd::TooLarge,
            Some(Overflow::Line) => DataEnd::LineTooLong,
            Some(Overflow::Memory) => DataEnd::NoMemory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> (usize, Option<DataEnd>) {
        DataDecoder::new(1 << 20, 1000).feed(input)
    }

    fn message(input: &[u8]) -> Vec<u8> {
        match decode(input).1 {
            Some(DataEnd::Message(m)) => m,
            other => panic!("no message: {other:?}"),
        }
    }

    #[test]
    fn dot_unstuffing_keeps_exact_bytes() {
        // RFC 5321 §4.5.2: only the first dot of a line goes.
        let input =
            b"Subject: x\r\n\r\n..leading\r\n.\tx\r\nmid.dle\r\n...\r\n \t trailing \r\n.\r\n";
        assert_eq!(
            message(input),
            b"Subject: x\r\n\r\n.leading\r\n\tx\r\nmid.dle\r\n..\r\n \t trailing \r\n"
        );
    }

    #[test]
    fn empty_message_and_leftover_commands() {
        let (used, end) = decode(b".\r\nQUIT\r\n");
        assert_eq!(used, 3);
        assert_eq!(end, Some(DataEnd::Message(Vec::new())));
    }

    #[test]
    fn end_marker_split_across_chunks() {
        let input = b"a\r\n.\r\nRSET\r\n";
        for split in 0..input.len() {
            let mut d = DataDecoder::new(100, 100);
            let (used, end) = d.feed(&input[..split]);
            let result = match end {
                Some(e) => {
                    assert_eq!(used, 6, "split at {split}");
                    e
                }
                None => {
                    assert_eq!(used, split);
                    let (used2, end) = d.feed(&input[split..]);
                    assert_eq!(split + used2, 6, "split at {split}");
                    end.expect("ends")
                }
            };
            assert_eq!(
                result,
                DataEnd::Message(b"a\r\n".to_vec()),
                "split at {split}"
            );
        }
    }

    #[test]
    fn bare_lf_never_ends_the_data() {
        // CVE-2023-51764: <LF>.<CRLF> and <LF>.<LF> are content, not the end.
        let mut d = DataDecoder::new(100, 100);
        assert_eq!(d.feed(b"a\n.\r\nb\n.\nc\r\n").1, None);
        let (_, end) = d.feed(b".\r\n");
        assert_eq!(
            end,
            Some(DataEnd::Message(b"a\r\n.\r\nb\r\n.\r\nc\r\n".to_vec()))
        );
    }

    #[test]
    fn bare_cr_is_kept() {
        assert_eq!(message(b"a\rb\r\r\n.\r\r\n.\r\n"), b"a\rb\r\r\n\r\r\n");
    }

    #[test]
    fn size_limit_drops_everything_but_reads_to_the_end() {
        let mut d = DataDecoder::new(10, 1000);
        assert_eq!(d.feed(b"0123456789abc\r\n").1, None);
        assert!(d.message.capacity() == 0);
        let (used, end) = d.feed(b"more\r\n.\r\nQUIT\r\n");
        assert_eq!(used, 9);
        assert_eq!(end, Some(DataEnd::TooLarge));
    }

    #[test]
    fn exactly_the_size_limit_is_accepted() {
        let mut d = DataDecoder::new(5, 1000);
        assert_eq!(
            d.feed(b"abc\r\n.\r\n").1,
            Some(DataEnd::Message(b"abc\r\n".to_vec()))
        );
    }

    #[test]
    fn long_line_is_refused_after_reading_to_the_end() {
        let mut d = DataDecoder::new(1 << 20, 10);
        assert_eq!(
            d.feed(b"12345678\r\n").1,
            None,
            "10 bytes with CRLF is fine"
        );
        assert_eq!(d.feed(b"123456789\r\n").1, None);
        assert_eq!(d.feed(b"x\r\n.\r\n").1, Some(DataEnd::LineTooLong));
    }
}
