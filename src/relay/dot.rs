//! The message as DATA puts it on the wire (RFC 5321 §4.5.2): transparency dots added,
//! every line ended by CRLF, then the `.` line. Streams in chunks so a large message is
//! never copied whole.
//!
//! Bare CR and bare LF are written as CRLF. The session hands us CRLF text already; this
//! is defence in depth against SMTP smuggling (a lone `\n.\n` or `\r.\r` that a lenient
//! next hop could take for the end of the data, CVE-2023-51764 and relatives): whatever
//! the input, the only end-of-data sequence we ever send is the final one.

/// Encoder state carried from one chunk to the next.
#[derive(Debug)]
pub struct DotStuffer {
    /// The next byte starts a line.
    line_start: bool,
    /// The previous chunk ended with a CR whose LF may come next.
    pending_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            line_start: true,
            pending_cr: false,
        }
    }
}

impl DotStuffer {
    /// Appends the wire form of `input` to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while !rest.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                self.end_line(out);
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                }
                continue;
            }
            match rest[0] {
                b'\r' => {
                    self.pending_cr = true;
                    rest = &rest[1..];
                }
                b'\n' => {
                    self.end_line(out);
                    rest = &rest[1..];
                }
                _ => {
                    // RFC 5321 §4.5.2: a line starting with "." gets one more.
                    if self.line_start && rest[0] == b'.' {
                        out.push(b'.');
                    }
                    let run = rest
                        .iter()
                        .position(|&b| b == b'\r' || b == b'\n')
                        .unwrap_or(rest.len());
                    out.extend_from_slice(&rest[..run]);
                    self.line_start = false;
                    rest = &rest[run..];
                }
            }
        }
    }

    /// Ends the data: the missing final CRLF if any, then `.` CRLF.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        if self.pending_cr || !self.line_start {
            self.end_line(out);
        }
        out.extend_from_slice(b".\r\n");
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.line_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::default();
        stuffer.encode(input, &mut out);
        stuffer.finish(&mut out);
        out
    }

    #[test]
    fn leading_dots_are_doubled() {
        assert_eq!(
            stuff(b".first\r\nmid.dle\r\n..two\r\n.\r\n"),
            b"..first\r\nmid.dle\r\n...two\r\n..\r\n.\r\n"
        );
    }

    #[test]
    fn missing_final_crlf_is_added() {
        assert_eq!(
            stuff(b"Subject: x\r\n\r\nbody"),
            b"Subject: x\r\n\r\nbody\r\n.\r\n"
        );
        assert_eq!(stuff(b"body\r"), b"body\r\n.\r\n");
    }

    #[test]
    fn empty_message_is_just_the_end() {
        assert_eq!(stuff(b""), b".\r\n");
    }

    #[test]
    fn bare_cr_and_lf_cannot_end_the_data_early() {
        // SMTP smuggling: "\n.\n" and "\r.\r" must not reach the wire as such.
        let out = stuff(b"a\n.\nMAIL FROM:<x>\r.\rb");
        assert_eq!(out, b"a\r\n..\r\nMAIL FROM:<x>\r\n..\r\nb\r\n.\r\n");
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let input = b"x\r\n.a\r\n\r\n.\r\nlast.\r\n.\r";
        let whole = stuff(input);
        for split in 0..input.len() {
            let mut out = Vec::new();
            let mut stuffer = DotStuffer::default();
            stuffer.encode(&input[..split], &mut out);
            stuffer.encode(&input[split..], &mut out);
            stuffer.finish(&mut out);
            assert_eq!(out, whole, "split at {split}");
        }
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::default();
        for b in input {
            stuffer.encode(std::slice::from_ref(b), &mut out);
        }
        stuffer.finish(&mut out);
        assert_eq!(out, whole);
    }
}
