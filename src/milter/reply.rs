//! Replies to the MTA: encoding for the milter, decoding for tests and an MTA-side client.
//!
//! Building a reply cannot fail, so `encode` is infallible and writes strings exactly as
//! given. What the MTA would refuse or misread is caught by [`Reply::validate`], which
//! [`Reply::decode`] always runs and which the session should run on anything built from
//! message content. The one field that is checked at construction is the SMTP reply text
//! ([`ReplyText`]), because a bad one turns a deliberate reject into the MTA's default
//! reply or a configuration error.

use super::codec::{encode_frame_with, put_cstr, put_u32, Fields, Frame, Malformed};
use super::consts::*;
use std::fmt;

/// One reply to the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// SMFIR_OPTNEG, answering the MTA's offer: protocol `version` (at most the offer), the
    /// `SMFIF_*` `actions` and `SMFIP_*` `protocol` flags wanted (subsets of the offer), and
    /// the `macros` wanted per stage as `(SMFIM_* stage, space-separated names)`, e.g.
    /// `(SMFIM_ENVFROM, "{auth_authen} {auth_type}")`; those need `SMFIF_SETSYMLIST`.
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
        macros: Vec<(u32, String)>,
    },
    /// SMFIR_CONTINUE.
    Continue,
    /// SMFIR_ACCEPT.
    Accept,
    /// SMFIR_REJECT: the MTA's default 5xx.
    Reject,
    /// SMFIR_TEMPFAIL: the MTA's default 4xx.
    Tempfail,
    /// SMFIR_DISCARD.
    Discard,
    /// SMFIR_REPLYCODE: reject (5xx) or tempfail (4xx) with this checked text.
    ReplyCode { text: ReplyText },
    /// SMFIR_ADDHEADER: append the field `name` (no colon) at the end of the header.
    ///
    /// The value is sent as given. Fold with LF plus whitespace, not CRLF: libmilter's
    /// documentation says the MTA adds the CR (see [`lf_folded`]). Without
    /// `SMFIP_HDR_LEADSPC` the MTA puts a space after the colon; with it, include the space.
    AddHeader { name: String, value: String },
    /// SMFIR_INSHEADER: insert a field at 0-based `index` among all fields (0 is the very
    /// top, above Postfix's own `Received:`). Value conventions as for [`Reply::AddHeader`].
    InsertHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// SMFIR_CHGHEADER: replace the `index`-th (1-based) field called `name`; an empty value
    /// deletes it.
    ChangeHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// SMFIR_QUARANTINE: hold the message (Postfix: the hold queue). The reason is for the
    /// MTA's log and must not be empty.
    Quarantine { reason: String },
    /// SMFIR_PROGRESS: still working, reset the MTA's timer.
    Progress,
    /// SMFIR_SKIP: send no more body chunks (only if the MTA offered `SMFIP_SKIP`).
    Skip,
}

/// A reply that could not be decoded, or that the MTA would not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The code byte is not a reply this crate knows.
    #[error("unknown or unsupported milter reply code {0:#04x}")]
    UnknownCode(u8),
    /// The data does not have the `reply`'s layout (a peer fault when decoding); `problem`
    /// names the field.
    #[error("malformed milter {reply} reply: {problem}")]
    Malformed {
        reply: &'static str,
        problem: &'static str,
    },
    /// The layout is fine but the content would be refused or misread by the MTA (a bug on
    /// the sending side).
    #[error("invalid milter {reply} reply: {problem}")]
    Invalid {
        reply: &'static str,
        problem: &'static str,
    },
    /// The text for SMFIR_REPLYCODE is not a single-line 4xx/5xx SMTP reply.
    #[error("bad SMTP reply text {text:?}: {problem}")]
    BadReplyText { text: String, problem: &'static str },
}

/// A single-line SMTP reply such as `550 5.7.1 Rejected by DMARC policy`.
///
/// Checked on construction: a 4xx or 5xx code (RFC 5321 section 4.2), a space, an optional
/// enhanced status code whose class matches (RFC 3463 section 2), printable ASCII only, at
/// most 510 bytes so the line fits in 512 with CRLF (RFC 5321 section 4.5.3.1.5). Multi-line
/// replies are not supported. A `%` is fine here: encoding doubles it, because libmilter's
/// documentation tells filters to write `%%` and MTAs treat a lone `%` as an escape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyText(String);

impl ReplyText {
    /// Longest accepted text, in bytes.
    pub const MAX_LEN: usize = 510;

    /// Checks `text` and wraps it.
    pub fn new(text: impl Into<String>) -> Result<ReplyText, ReplyError> {
        let text = text.into();
        match check_reply_text(&text) {
            Ok(()) => Ok(ReplyText(text)),
            Err(problem) => Err(ReplyError::BadReplyText { text, problem }),
        }
    }

    /// The text, unescaped.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the code is 4xx (the MTA will tempfail rather than reject).
    pub fn is_temporary(&self) -> bool {
        self.0.starts_with('4')
    }
}

impl fmt::Display for ReplyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_reply_text(text: &str) -> Result<(), &'static str> {
    if text.len() > ReplyText::MAX_LEN {
        return Err("longer than 510 bytes");
    }
    if !text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err("not a single line of printable ASCII");
    }
    let (class, rest) = match text.as_bytes() {
        [class @ (b'4' | b'5'), b'0'..=b'5', b'0'..=b'9', b' ', rest @ ..] => (*class, rest),
        _ => return Err("does not start with a 4xx or 5xx code and a space"),
    };
    // A digit right after the code starts an enhanced status code; Postfix checks its class.
    if rest.first().is_some_and(u8::is_ascii_digit) {
        let token = rest.split(|&b| b == b' ').next().unwrap_or_default();
        let mut parts = token.split(|&b| b == b'.');
        let ok = parts.next() == Some(&[class][..])
            && parts.next().is_some_and(is_1_to_3_digits)
            && parts.next().is_some_and(is_1_to_3_digits)
            && parts.next().is_none();
        if !ok {
            return Err("enhanced status code is not class.subject.detail of the same class");
        }
    }
    Ok(())
}

fn is_1_to_3_digits(s: &[u8]) -> bool {
    (1..=3).contains(&s.len()) && s.iter().all(u8::is_ascii_digit)
}

/// Turns CRLF folding (as the SMTP and HTTP front ends use) into the LF folding milter
/// header replies want.
pub fn lf_folded(value: &str) -> String {
    value.replace("\r\n", "\n")
}

/// Lower-case name of a reply code, for error messages.
fn reply_name(code: u8) -> &'static str {
    match code {
        SMFIR_OPTNEG => "optneg",
        SMFIR_CONTINUE => "continue",
        SMFIR_ACCEPT => "accept",
        SMFIR_REJECT => "reject",
        SMFIR_TEMPFAIL => "tempfail",
        SMFIR_DISCARD => "discard",
        SMFIR_REPLYCODE => "replycode",
        SMFIR_ADDHEADER => "addheader",
        SMFIR_INSHEADER => "insheader",
        SMFIR_CHGHEADER => "chgheader",
        SMFIR_QUARANTINE => "quarantine",
        SMFIR_PROGRESS => "progress",
        SMFIR_SKIP => "skip",
        _ => "unknown",
    }
}

impl Reply {
    /// The reply byte (`SMFIR_*`).
    pub fn code(&self) -> u8 {
        match self {
            Reply::OptNeg { .. } => SMFIR_OPTNEG,
            Reply::Continue => SMFIR_CONTINUE,
            Reply::Accept => SMFIR_ACCEPT,
            Reply::Reject => SMFIR_REJECT,
            Reply::Tempfail => SMFIR_TEMPFAIL,
            Reply::Discard => SMFIR_DISCARD,
            Reply::ReplyCode { .. } => SMFIR_REPLYCODE,
            Reply::AddHeader { .. } => SMFIR_ADDHEADER,
            Reply::InsertHeader { .. } => SMFIR_INSHEADER,
            Reply::ChangeHeader { .. } => SMFIR_CHGHEADER,
            Reply::Quarantine { .. } => SMFIR_QUARANTINE,
            Reply::Progress => SMFIR_PROGRESS,
            Reply::Skip => SMFIR_SKIP,
        }
    }

    /// Appends this reply as one frame. Several replies may go into one buffer, which should
    /// then be sent in one write (see DESIGN.md on Nagle and delayed ACK).
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_frame_with(self.code(), out, |out| match self {
            Reply::OptNeg {
                version,
                actions,
                protocol,
                macros,
            } => {
                put_u32(out, *version);
                put_u32(out, *actions);
                put_u32(out, *protocol);
                for (stage, names) in macros {
                    put_u32(out, *stage);
                    put_cstr(out, names.as_bytes());
                }
            }
            // libmilter's documentation asks filters for `%%`; MTAs read a lone `%` as an escape.
            Reply::ReplyCode { text } => put_cstr(out, text.as_str().replace('%', "%%").as_bytes()),
            Reply::AddHeader { name, value } => {
                put_cstr(out, name.as_bytes());
                put_cstr(out, value.as_bytes());
            }
            Reply::InsertHeader { index, name, value }
            | Reply::ChangeHeader { index, name, value } => {
                put_u32(out, *index);
                put_cstr(out, name.as_bytes());
                put_cstr(out, value.as_bytes());
            }
            Reply::Quarantine { reason } => put_cstr(out, reason.as_bytes()),
            // The rest are a code byte alone.
            _ => {}
        });
    }

    /// Checks what the MTA would refuse or misread: NULs inside strings (they would cut the
    /// field short), header names outside RFC 5322 section 3.6.8, header values with CR, bare
    /// line breaks or lines over 998 bytes (RFC 5322 section 2.1.1), an empty quarantine
    /// reason, and macro stages past `SMFIM_EOH`.
    pub fn validate(&self) -> Result<(), ReplyError> {
        let invalid = |problem| ReplyError::Invalid {
            reply: reply_name(self.code()),
            problem,
        };
        match self {
            Reply::OptNeg { macros, .. } => {
                for (stage, names) in macros {
                    if command_for_stage(*stage).is_none() {
                        return Err(invalid("unknown macro stage"));
                    }
                    if names.contains('\0') {
                        return Err(invalid("NUL in macro list"));
                    }
                }
            }
            Reply::AddHeader { name, value }
            | Reply::InsertHeader { name, value, .. }
            | Reply::ChangeHeader { name, value, .. } => {
                check_header(name, value).map_err(invalid)?;
            }
            Reply::Quarantine { reason }
                if reason.is_empty() || reason.contains(['\0', '\r', '\n']) =>
            {
                return Err(invalid("reason is empty or not one line"));
            }
            // Nothing else carries text, except ReplyText, checked when it was made.
            _ => {}
        }
        Ok(())
    }

    /// Parses a reply frame strictly (every string NUL-terminated and UTF-8, no trailing
    /// bytes) and then [`validate`](Self::validate)s it. For an MTA-side client.
    pub fn decode(frame: Frame) -> Result<Reply, ReplyError> {
        let code = frame.code;
        let mut f = Fields::new(reply_name(code), &frame.data);
        let reply = match code {
            SMFIR_OPTNEG => {
                const SHORT: &str = "shorter than 12 bytes";
                let version = f.u32(SHORT)?;
                let actions = f.u32(SHORT)?;
                let protocol = f.u32(SHORT)?;
                let mut macros = Vec::new();
                while !f.is_empty() {
                    let stage = f.u32("macro stage truncated")?;
                    macros.push((stage, text(&mut f, "macro list is not NUL-terminated")?));
                }
                Reply::OptNeg {
                    version,
                    actions,
                    protocol,
                    macros,
                }
            }
            SMFIR_CONTINUE => Reply::Continue,
            SMFIR_ACCEPT => Reply::Accept,
            SMFIR_REJECT => Reply::Reject,
            SMFIR_TEMPFAIL => Reply::Tempfail,
            SMFIR_DISCARD => Reply::Discard,
            SMFIR_PROGRESS => Reply::Progress,
            SMFIR_SKIP => Reply::Skip,
            SMFIR_REPLYCODE => {
                let wire = text(&mut f, "text is not NUL-terminated")?;
                let plain = unescape_percent(&wire).ok_or(f.bad("single '%'"))?;
                Reply::ReplyCode {
                    text: ReplyText::new(plain)?,
                }
            }
            SMFIR_ADDHEADER => Reply::AddHeader {
                name: text(&mut f, "name is not NUL-terminated")?,
                value: text(&mut f, "value is not NUL-terminated")?,
            },
            SMFIR_INSHEADER | SMFIR_CHGHEADER => {
                let index = f.u32("index truncated")?;
                let name = text(&mut f, "name is not NUL-terminated")?;
                let value = text(&mut f, "value is not NUL-terminated")?;
                if code == SMFIR_INSHEADER {
                    Reply::InsertHeader { index, name, value }
                } else {
                    Reply::ChangeHeader { index, name, value }
                }
            }
            SMFIR_QUARANTINE => Reply::Quarantine {
                reason: text(&mut f, "reason is not NUL-terminated")?,
            },
            other => return Err(ReplyError::UnknownCode(other)),
        };
        f.end("data after the last field")?;
        reply.validate()?;
        Ok(reply)
    }
}

impl From<Malformed> for ReplyError {
    fn from(m: Malformed) -> Self {
        ReplyError::Malformed {
            reply: m.what,
            problem: m.problem,
        }
    }
}

/// A NUL-terminated UTF-8 string; we only ever send `String`s, so anything else is broken.
fn text(f: &mut Fields<'_>, problem: &'static str) -> Result<String, Malformed> {
    let bytes = f.cstr(problem)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| f.bad("string is not UTF-8"))
}

/// `%%` -> `%`; `None` on a lone `%`, which leaves a run of odd length.
fn unescape_percent(wire: &str) -> Option<String> {
    let even = wire.split(|c| c != '%').all(|run| run.len() % 2 == 0);
    even.then(|| wire.replace("%%", "%"))
}

fn check_header(name: &str, value: &str) -> Result<(), &'static str> {
    // RFC 5322 section 3.6.8: printable US-ASCII except the colon.
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err("header name is empty or not printable ASCII without ':'");
    }
    if value.contains('\0') {
        return Err("NUL in header value");
    }
    if value.contains('\r') {
        return Err("CR in header value: fold with LF and whitespace, the MTA adds the CR");
    }
    for (i, line) in value.split('\n').enumerate() {
        // The first line also holds "Name: ".
        let len = if i == 0 { name.len() + 2 } else { 0 } + line.len();
        if i > 0 && !line.starts_with([' ', '\t']) {
            return Err("line break in header value not followed by whitespace");
        }
        if len > 998 {
            return Err("header line longer than 998 bytes");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::milter::codec::{encode_frame, Decoded, Decoder, XorShift};

    fn decode(code: u8, data: &[u8]) -> Result<Reply, ReplyError> {
        Reply::decode(Frame {
            code,
            data: data.to_vec(),
        })
    }

    fn header(name: &str, value: &str) -> Reply {
        let (name, value) = (name.into(), value.into());
        Reply::AddHeader { name, value }
    }

    fn optneg(version: u32, actions: u32, protocol: u32, macros: &[(u32, &str)]) -> Reply {
        let macros = macros.iter().map(|&(s, m)| (s, m.into())).collect();
        Reply::OptNeg {
            version,
            actions,
            protocol,
            macros,
        }
    }

    fn reply_code(text: &str) -> Reply {
        let text = ReplyText::new(text).unwrap();
        Reply::ReplyCode { text }
    }

    fn quarantine(reason: &str) -> Reply {
        let reason = reason.into();
        Reply::Quarantine { reason }
    }

    fn wire(reply: &Reply) -> Vec<u8> {
        let mut out = Vec::new();
        reply.encode(&mut out);
        out
    }

    fn every_reply() -> Vec<Reply> {
        let (name, value) = ("Authentication-Results".to_string(), String::new());
        vec![
            optneg(
                6,
                0x1ff,
                SMFIP_NR_ALL,
                &[(SMFIM_CONNECT, "j _"), (SMFIM_EOM, "i")],
            ),
            optneg(2, 0, 0, &[]),
            Reply::Continue,
            Reply::Accept,
            Reply::Reject,
            Reply::Tempfail,
            Reply::Discard,
            reply_code("550 5.7.1 100% sure: rejected by DMARC"),
            reply_code("451 Try later"),
            header("Authentication-Results", " mx.example;\n\tspf=pass"),
            Reply::InsertHeader {
                index: 0,
                name: "ARC-Seal".into(),
                value: "i=1; cv=none".into(),
            },
            Reply::ChangeHeader {
                index: 2,
                name,
                value,
            },
            quarantine("DMARC quarantine"),
            Reply::Progress,
            Reply::Skip,
        ]
    }

    #[test]
    fn every_reply_round_trips_through_the_decoder() {
        let replies = every_reply();
        let mut buf = Vec::new();
        for r in &replies {
            r.validate().unwrap();
            r.encode(&mut buf);
        }
        let mut decoder = Decoder::default();
        for r in &replies {
            match decoder.decode(&mut buf) {
                Decoded::Frame(f) => assert_eq!(&Reply::decode(f).unwrap(), r),
                other => panic!("{r:?}: {other:?}"),
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn optneg_wire_layout() {
        assert_eq!(
            wire(&optneg(6, 0x21, 0x10_0000, &[(SMFIM_EOH, "i")])),
            b"\0\0\0\x13O\0\0\0\x06\0\0\0\x21\0\x10\0\0\0\0\0\x06i\0"
        );
    }

    #[test]
    fn percent_is_doubled_on_the_wire() {
        assert!(wire(&reply_code("550 5.7.1 100% spam")).ends_with(b"100%% spam\0"));
        let lone = decode(SMFIR_REPLYCODE, b"550 100%%% spam\0");
        assert!(matches!(
            lone,
            Err(ReplyError::Malformed {
                problem: "single '%'",
                ..
            })
        ));
    }

    #[test]
    fn reply_text_must_be_a_4xx_or_5xx_line() {
        let good = [
            "550 5.7.1 Rejected",
            "451 4.7.0 Try",
            "550 Rejected",
            "554 ",
        ];
        for good in good {
            assert!(ReplyText::new(good).is_ok(), "{good}");
        }
        for bad in [
            "250 2.0.0 Ok",
            "550",
            "550-5.7.1 multi-line",
            "550 4.7.1 class mismatch",
            "550 5.7 short code",
            "550 5.7.1234 long detail",
            "55O letter",
            "560 second digit",
            "550 5.7.1 a\r\n250 injected",
            "550 5.7.1 caf\u{e9}",
        ] {
            assert!(ReplyText::new(bad).is_err(), "{bad}");
        }
        assert!(ReplyText::new(format!("550 {}", "x".repeat(506))).is_ok());
        assert!(ReplyText::new(format!("550 {}", "x".repeat(507))).is_err());
        assert!(ReplyText::new("421 4.3.2 Busy").unwrap().is_temporary());
    }

    #[test]
    fn validate_refuses_what_the_mta_would_misread() {
        let bad = [
            header("", "x"),
            header("Bad Name", "x"),
            header("Bad:Name", "x"),
            header("X-Test", "a\0b"),
            header("X-Test", "a\r\n\tb"),
            header("X-Test", "a\nInjected: yes"),
            header("X-Test", "trailing break\n"),
            header("X-Test", &"x".repeat(991)),
            quarantine(""),
            quarantine("two\nlines"),
            optneg(6, 0, 0, &[(7, "i")]),
        ];
        for r in bad {
            assert!(r.validate().is_err(), "{r:?}");
        }
        header("X-Test", &"x".repeat(990)).validate().unwrap();
        let folded = lf_folded("a;\r\n\tb");
        header("X-Test", &folded).validate().unwrap();
    }

    #[test]
    fn malformed_replies_are_errors() {
        let problem = |code, data: &[u8]| match decode(code, data) {
            Err(ReplyError::Malformed { problem, .. }) => problem,
            other => panic!("expected malformed, got {other:?}"),
        };
        let no_list = [&[0; 16][..], b"i"].concat();
        let cases: [(u8, &[u8], &str); 7] = [
            (SMFIR_OPTNEG, &[0; 11], "shorter than 12 bytes"),
            (SMFIR_OPTNEG, &[0; 14], "macro stage truncated"),
            (SMFIR_OPTNEG, &no_list, "macro list is not NUL-terminated"),
            (SMFIR_CONTINUE, b"x", "data after the last field"),
            (SMFIR_ADDHEADER, b"X\0v", "value is not NUL-terminated"),
            (SMFIR_ADDHEADER, b"X\xff\0v\0", "string is not UTF-8"),
            (SMFIR_CHGHEADER, b"\0\0\0", "index truncated"),
        ];
        for (code, data, want) in cases {
            assert_eq!(problem(code, data), want, "{data:?}");
        }
        assert_eq!(decode(b'Z', b""), Err(ReplyError::UnknownCode(b'Z')));
        // Layout fine, content not: validate runs on decode.
        assert!(matches!(
            decode(SMFIR_ADDHEADER, b"X\0a\nb\0"),
            Err(ReplyError::Invalid { .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(0xdec0de);
        let codes = b"Ocartdyhimqps+Z\0";
        for _ in 0..20_000 {
            let code = codes[rng.below(codes.len())];
            let len = rng.below(32);
            let mut buf = Vec::new();
            encode_frame(code, &rng.biased_bytes(len), &mut buf);
            let mut decoder = Decoder::default();
            if let Decoded::Frame(f) = decoder.decode(&mut buf) {
                let _ = Reply::decode(f);
            }
        }
    }
}
