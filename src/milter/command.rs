//! Commands from the MTA, parsed from [`Frame`]s into typed values.
//!
//! Parsing never panics and never indexes out of bounds: every field goes through the
//! codec's checked field reader, and anything malformed becomes a [`CommandError`] that
//! names the command and the field. Strictness follows libmilter, which is what MTAs are
//! tested against:
//!
//! * NUL-terminated strings must have their NUL, except the SMFIC_UNKNOWN command line, which
//!   libmilter hands to the filter without checking for one.
//! * Bytes after the last expected field are an error, except after SMFIC_OPTNEG's three
//!   words and after an unknown-family SMFIC_CONNECT, where libmilter ignores them.
//! * Text fields (hostnames, HELO, macros, envelope arguments, header names) are converted
//!   lossily: one bad byte should not cost a message its delivery; the checks that use these
//!   strings fail on U+FFFD anyway. Header values and body bytes stay raw because DKIM hashes
//!   them byte for byte.
//!
//! [`Command::encode`] is the inverse, for tests and for an MTA-side test client.

use super::codec::{encode_frame_with, lossy, put_cstr, put_u32, Fields, Frame, Malformed};
use super::consts::*;

/// The address family of an SMTP client, from SMFIC_CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `'4'`: IPv4.
    Inet4,
    /// `'6'`: IPv6.
    Inet6,
    /// `'L'`: Unix-domain socket; the address is its path.
    Unix,
    /// `'U'`: unknown; the MTA sends neither port nor address.
    Unknown,
}

impl Family {
    /// The wire byte (`SMFIA_*`).
    pub fn code(self) -> u8 {
        match self {
            Family::Inet4 => SMFIA_INET,
            Family::Inet6 => SMFIA_INET6,
            Family::Unix => SMFIA_UNIX,
            Family::Unknown => SMFIA_UNKNOWN,
        }
    }

    /// The family for a wire byte, or `None` if the byte is not one of `SMFIA_*`.
    pub fn from_code(code: u8) -> Option<Family> {
        Some(match code {
            SMFIA_INET => Family::Inet4,
            SMFIA_INET6 => Family::Inet6,
            SMFIA_UNIX => Family::Unix,
            SMFIA_UNKNOWN => Family::Unknown,
            _ => return None,
        })
    }
}

/// One command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// SMFIC_OPTNEG: what the MTA offers.
    OptNeg {
        /// Protocol version (Postfix and Sendmail 8.14 send 6).
        version: u32,
        /// `SMFIF_*` actions the MTA allows.
        actions: u32,
        /// `SMFIP_*` protocol flags the MTA supports.
        protocol: u32,
    },
    /// SMFIC_MACRO: macro values for the command that follows.
    Macro {
        /// The command byte these macros belong to (`b'C'`, `b'M'`, ...). Any byte is
        /// accepted; the session ignores stages it does not know, so a newer MTA cannot break us.
        stage: u8,
        /// `(name, value)` as sent, e.g. `("{daemon_name}", "smtpd")` or `("j", "mx.example")`.
        pairs: Vec<(String, String)>,
    },
    /// SMFIC_CONNECT: a new SMTP client.
    Connect {
        /// The client's name as the MTA resolved it (Postfix sends `unknown` or `[addr]`).
        hostname: String,
        /// Address family.
        family: Family,
        /// Client port; 0 for [`Family::Unknown`] and usually for [`Family::Unix`].
        port: u16,
        /// The address as text (or the socket path); empty for [`Family::Unknown`].
        address: String,
    },
    /// SMFIC_HELO: the HELO/EHLO argument.
    Helo { name: String },
    /// SMFIC_MAIL: `args[0]` is the sender with its angle brackets, the rest are ESMTP
    /// parameters such as `SIZE=1234`. Never empty after parsing.
    Mail { args: Vec<String> },
    /// SMFIC_RCPT: `args[0]` is the recipient with its angle brackets, then parameters.
    Rcpt { args: Vec<String> },
    /// SMFIC_DATA.
    Data,
    /// SMFIC_HEADER: one header field, `name` without the colon, `value` raw. Folded lines
    /// arrive joined with LF, and the value's leading space is dropped unless
    /// `SMFIP_HDR_LEADSPC` was negotiated.
    Header { name: String, value: Vec<u8> },
    /// SMFIC_EOH.
    EndOfHeaders,
    /// SMFIC_BODY: a chunk of the body, raw, with CRLF line endings as on the wire.
    Body { chunk: Vec<u8> },
    /// SMFIC_BODYEOB: end of message; `chunk` is a last piece of body (usually empty).
    EndOfMessage { chunk: Vec<u8> },
    /// SMFIC_ABORT: forget the current message, keep the connection.
    Abort,
    /// SMFIC_QUIT: close the milter connection.
    Quit,
    /// SMFIC_QUIT_NC: forget this SMTP connection; the next one arrives on this socket.
    QuitNewConnection,
    /// SMFIC_UNKNOWN: an SMTP command line the MTA did not recognise, raw, without the NUL.
    Unknown { command: Vec<u8> },
}

/// A command that could not be parsed. All variants are the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The code byte is not a milter command.
    #[error("unknown milter command code {0:#04x}")]
    UnknownCode(u8),
    /// The data does not have the `command`'s layout; `problem` names the field.
    #[error("malformed milter {command} command: {problem}")]
    Malformed {
        command: &'static str,
        problem: &'static str,
    },
}

impl From<Malformed> for CommandError {
    fn from(m: Malformed) -> Self {
        CommandError::Malformed {
            command: m.what,
            problem: m.problem,
        }
    }
}

impl Command {
    /// Parses a frame. Takes it by value so body chunks are moved, not copied.
    pub fn parse(frame: Frame) -> Result<Command, CommandError> {
        let Frame { code, data } = frame;
        Ok(match code {
            SMFIC_OPTNEG => parse_optneg(&data)?,
            SMFIC_MACRO => parse_macro(&data)?,
            SMFIC_CONNECT => parse_connect(&data)?,
            SMFIC_HELO => parse_helo(&data)?,
            SMFIC_MAIL => Command::Mail {
                args: parse_args("mail", &data)?,
            },
            SMFIC_RCPT => Command::Rcpt {
                args: parse_args("rcpt", &data)?,
            },
            SMFIC_HEADER => parse_header(data)?,
            SMFIC_BODY => Command::Body { chunk: data },
            SMFIC_BODYEOB => Command::EndOfMessage { chunk: data },
            // libmilter ignores any data on these; so do we.
            SMFIC_DATA => Command::Data,
            SMFIC_EOH => Command::EndOfHeaders,
            SMFIC_ABORT => Command::Abort,
            SMFIC_QUIT => Command::Quit,
            SMFIC_QUIT_NC => Command::QuitNewConnection,
            SMFIC_UNKNOWN => {
                // Lenient like libmilter: the NUL is expected but not required.
                let mut command = data;
                if command.last() == Some(&0) {
                    command.pop();
                }
                Command::Unknown { command }
            }
            other => return Err(CommandError::UnknownCode(other)),
        })
    }

    /// The command byte (`SMFIC_*`).
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg { .. } => SMFIC_OPTNEG,
            Command::Macro { .. } => SMFIC_MACRO,
            Command::Connect { .. } => SMFIC_CONNECT,
            Command::Helo { .. } => SMFIC_HELO,
            Command::Mail { .. } => SMFIC_MAIL,
            Command::Rcpt { .. } => SMFIC_RCPT,
            Command::Data => SMFIC_DATA,
            Command::Header { .. } => SMFIC_HEADER,
            Command::EndOfHeaders => SMFIC_EOH,
            Command::Body { .. } => SMFIC_BODY,
            Command::EndOfMessage { .. } => SMFIC_BODYEOB,
            Command::Abort => SMFIC_ABORT,
            Command::Quit => SMFIC_QUIT,
            Command::QuitNewConnection => SMFIC_QUIT_NC,
            Command::Unknown { .. } => SMFIC_UNKNOWN,
        }
    }

    /// Appends this command as one frame. `parse(encode(c)) == c` for every command whose
    /// strings contain no NUL, except that an unknown-family `Connect` loses port and address
    /// (they are not on the wire).
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_frame_with(self.code(), out, |out| match self {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => {
                put_u32(out, *version);
                put_u32(out, *actions);
                put_u32(out, *protocol);
            }
            Command::Macro { stage, pairs } => {
                out.push(*stage);
                for (name, value) in pairs {
                    put_cstr(out, name.as_bytes());
                    put_cstr(out, value.as_bytes());
                }
            }
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => {
                put_cstr(out, hostname.as_bytes());
                out.push(family.code());
                if *family != Family::Unknown {
                    out.extend_from_slice(&port.to_be_bytes());
                    put_cstr(out, address.as_bytes());
                }
            }
            Command::Helo { name } => put_cstr(out, name.as_bytes()),
            Command::Mail { args } | Command::Rcpt { args } => {
                for arg in args {
                    put_cstr(out, arg.as_bytes());
                }
            }
            Command::Header { name, value } => {
                put_cstr(out, name.as_bytes());
                put_cstr(out, value);
            }
            Command::Body { chunk } | Command::EndOfMessage { chunk } => {
                out.extend_from_slice(chunk)
            }
            Command::Unknown { command } => put_cstr(out, command),
            Command::Data
            | Command::EndOfHeaders
            | Command::Abort
            | Command::Quit
            | Command::QuitNewConnection => {}
        });
    }
}

fn parse_optneg(data: &[u8]) -> Result<Command, CommandError> {
    let mut f = Fields::new("optneg", data);
    const SHORT: &str = "shorter than version, actions and protocol (12 bytes)";
    // Anything after the three words is ignored, as libmilter does, leaving room for
    // extensions.
    Ok(Command::OptNeg {
        version: f.u32(SHORT)?,
        actions: f.u32(SHORT)?,
        protocol: f.u32(SHORT)?,
    })
}

fn parse_macro(data: &[u8]) -> Result<Command, CommandError> {
    let mut f = Fields::new("macro", data);
    let stage = f.u8("missing stage byte")?;
    let mut pairs = Vec::new();
    while !f.is_empty() {
        let name = f.cstr("name is not NUL-terminated")?;
        let value = f.cstr("name without a NUL-terminated value")?;
        pairs.push((lossy(name), lossy(value)));
    }
    Ok(Command::Macro { stage, pairs })
}

fn parse_connect(data: &[u8]) -> Result<Command, CommandError> {
    let mut f = Fields::new("connect", data);
    let hostname = lossy(f.cstr("hostname is not NUL-terminated")?);
    let family = f.u8("missing family")?;
    let family = Family::from_code(family).ok_or(f.bad("unknown family"))?;
    if family == Family::Unknown {
        // No port or address; libmilter ignores anything that follows.
        return Ok(Command::Connect {
            hostname,
            family,
            port: 0,
            address: String::new(),
        });
    }
    let port = f.u16("port truncated")?;
    let address = lossy(f.cstr("address is not NUL-terminated")?);
    f.end("data after the address")?;
    Ok(Command::Connect {
        hostname,
        family,
        port,
        address,
    })
}

fn parse_helo(data: &[u8]) -> Result<Command, CommandError> {
    let mut f = Fields::new("helo", data);
    let name = lossy(f.cstr("name is not NUL-terminated")?);
    f.end("data after the name")?;
    Ok(Command::Helo { name })
}

/// MAIL and RCPT: one or more NUL-terminated strings, the address first.
fn parse_args(command: &'static str, data: &[u8]) -> Result<Vec<String>, CommandError> {
    let mut f = Fields::new(command, data);
    if f.is_empty() {
        return Err(f.bad("no address").into());
    }
    let mut args = Vec::new();
    while !f.is_empty() {
        args.push(lossy(f.cstr("argument is not NUL-terminated")?));
    }
    Ok(args)
}

/// The value keeps the frame's allocation (the name is cut off the front): a header field
/// may be as large as a frame, and a copy of it would be held beside the frame.
fn parse_header(mut data: Vec<u8>) -> Result<Command, CommandError> {
    let mut f = Fields::new("header", &data);
    let name = f.cstr("name is not NUL-terminated")?;
    if name.is_empty() {
        return Err(f.bad("empty name").into());
    }
    let value = f.cstr("value is not NUL-terminated")?;
    f.end("data after the value")?;
    let value_start = name.len() + 1;
    let value_end = value_start + value.len();
    let name = lossy(name);
    data.truncate(value_end);
    data.drain(..value_start);
    Ok(Command::Header { name, value: data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::milter::codec::{encode_frame, Decoded, Decoder, XorShift};

    fn parse(code: u8, data: &[u8]) -> Result<Command, CommandError> {
        Command::parse(Frame {
            code,
            data: data.to_vec(),
        })
    }

    fn problem(code: u8, data: &[u8]) -> &'static str {
        match parse(code, data) {
            Err(CommandError::Malformed { problem, .. }) => problem,
            other => panic!("expected a malformed-command error, got {other:?}"),
        }
    }

    fn connect(hostname: &str, family: Family, port: u16, address: &str) -> Command {
        let (hostname, address) = (hostname.into(), address.into());
        Command::Connect {
            hostname,
            family,
            port,
            address,
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn every_command() -> Vec<Command> {
        let pairs = vec![
            ("j".into(), "mx.example".into()),
            ("{if_addr}".into(), "".into()),
        ];
        let header = |name: &str, value: &[u8]| Command::Header {
            name: name.into(),
            value: value.into(),
        };
        vec![
            Command::OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1f_ffff,
            },
            Command::Macro { stage: b'C', pairs },
            Command::Macro {
                stage: b'N',
                pairs: vec![],
            },
            connect("mail.example", Family::Inet4, 25, "192.0.2.1"),
            connect("[2001:db8::1]", Family::Inet6, 65535, "2001:db8::1"),
            connect("localhost", Family::Unix, 0, "/run/smtp.sock"),
            connect("unknown", Family::Unknown, 0, ""),
            Command::Helo {
                name: "client".into(),
            },
            Command::Mail {
                args: strings(&["<a@example.com>", "SIZE=100", "BODY=8BITMIME"]),
            },
            Command::Mail {
                args: strings(&["<>"]),
            },
            Command::Rcpt {
                args: strings(&["<b@example.org>"]),
            },
            Command::Data,
            header("Subject", b" caf\xc3\xa9\n\tfolded"),
            header("X-Empty", b""),
            Command::EndOfHeaders,
            Command::Body {
                chunk: b"line\r\n\0binary\xff\r\n".to_vec(),
            },
            Command::EndOfMessage { chunk: vec![] },
            Command::EndOfMessage {
                chunk: b"tail\r\n".to_vec(),
            },
            Command::Abort,
            Command::Quit,
            Command::QuitNewConnection,
            Command::Unknown {
                command: b"XFOO bar".to_vec(),
            },
        ]
    }

    #[test]
    fn every_command_round_trips_through_the_decoder() {
        let commands = every_command();
        let mut buf = Vec::new();
        for c in &commands {
            c.encode(&mut buf);
        }
        let mut decoder = Decoder::default();
        for c in &commands {
            match decoder.decode(&mut buf) {
                Decoded::Frame(f) => assert_eq!(&Command::parse(f).unwrap(), c),
                other => panic!("{c:?}: {other:?}"),
            }
        }
        assert_eq!(decoder.decode(&mut buf), Decoded::Incomplete);
    }

    #[test]
    fn wire_layout_matches_the_protocol() {
        let mut out = Vec::new();
        connect("h", Family::Inet4, 0x1234, "1.2.3.4").encode(&mut out);
        assert_eq!(out, b"\0\0\0\x0eCh\x004\x12\x341.2.3.4\0");
    }

    #[test]
    fn unknown_command_byte_is_an_error() {
        assert_eq!(parse(b'z', b""), Err(CommandError::UnknownCode(b'z')));
        assert_eq!(parse(0, b"x"), Err(CommandError::UnknownCode(0)));
    }

    #[test]
    fn optneg_needs_twelve_bytes_and_ignores_more() {
        assert_eq!(problem(SMFIC_OPTNEG, &[0; 11]), problem(SMFIC_OPTNEG, b""));
        let mut data = [0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff].to_vec();
        data.extend(b"future");
        assert_eq!(
            parse(SMFIC_OPTNEG, &data),
            Ok(Command::OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1f_ffff
            })
        );
    }

    #[test]
    fn connect_truncations_are_named() {
        let p = |d: &[u8]| problem(SMFIC_CONNECT, d);
        assert_eq!(p(b"host"), "hostname is not NUL-terminated");
        assert_eq!(p(b"host\0"), "missing family");
        assert_eq!(p(b"host\0X"), "unknown family");
        assert_eq!(p(b"host\x004\x00"), "port truncated");
        assert_eq!(
            p(b"host\x004\x00\x191.2.3.4"),
            "address is not NUL-terminated"
        );
        assert_eq!(p(b"host\x004\x00\x191.2.3.4\0x"), "data after the address");
        // libmilter ignores whatever follows an unknown family.
        assert!(matches!(
            parse(SMFIC_CONNECT, b"host\0U\x00\x19junk"),
            Ok(Command::Connect {
                family: Family::Unknown,
                port: 0,
                ..
            })
        ));
    }

    #[test]
    fn string_fields_must_be_terminated() {
        assert_eq!(problem(SMFIC_HELO, b"client"), "name is not NUL-terminated");
        assert_eq!(problem(SMFIC_HELO, b"a\0b\0"), "data after the name");
        assert_eq!(problem(SMFIC_MAIL, b""), "no address");
        assert_eq!(
            problem(SMFIC_RCPT, b"<a@b>\0SIZE"),
            "argument is not NUL-terminated"
        );
        assert_eq!(
            problem(SMFIC_HEADER, b"Subject"),
            "name is not NUL-terminated"
        );
        assert_eq!(
            problem(SMFIC_HEADER, b"Subject\0hi"),
            "value is not NUL-terminated"
        );
        assert_eq!(problem(SMFIC_HEADER, b"\0hi\0"), "empty name");
        assert_eq!(problem(SMFIC_HEADER, b"A\0b\0c"), "data after the value");
        assert_eq!(problem(SMFIC_MACRO, b""), "missing stage byte");
        assert_eq!(problem(SMFIC_MACRO, b"Cj"), "name is not NUL-terminated");
        assert_eq!(
            problem(SMFIC_MACRO, b"Cj\0"),
            "name without a NUL-terminated value"
        );
    }

    #[test]
    fn unknown_smtp_command_tolerates_a_missing_nul() {
        let want = Command::Unknown {
            command: b"XFOO".to_vec(),
        };
        assert_eq!(parse(SMFIC_UNKNOWN, b"XFOO\0"), Ok(want.clone()));
        assert_eq!(parse(SMFIC_UNKNOWN, b"XFOO"), Ok(want));
    }

    #[test]
    fn non_utf8_names_are_replaced_not_fatal() {
        assert_eq!(
            parse(SMFIC_HELO, b"b\xe4d\0"),
            Ok(Command::Helo {
                name: "b\u{fffd}d".into()
            })
        );
        // The header value stays raw; DKIM hashes these exact bytes.
        assert_eq!(
            parse(SMFIC_HEADER, b"X-\xff\0 \xff\xfe\0"),
            Ok(Command::Header {
                name: "X-\u{fffd}".into(),
                value: b" \xff\xfe".to_vec()
            })
        );
    }

    #[test]
    fn empty_event_commands_ignore_stray_data() {
        assert_eq!(parse(SMFIC_EOH, b"x"), Ok(Command::EndOfHeaders));
        assert_eq!(parse(SMFIC_ABORT, b"\0"), Ok(Command::Abort));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(0x5eed_c0de);
        let codes = b"ABCDEHKLMNOQRTUz\0";
        let mut frames = 0;
        for _ in 0..20_000 {
            // Honest frames of noise, frames whose length lies, and plain noise, mixed.
            let mut buf = Vec::new();
            for _ in 0..=rng.below(4) {
                let n = rng.below(30);
                match rng.below(3) {
                    0 => encode_frame(
                        codes[rng.below(codes.len())],
                        &rng.biased_bytes(n),
                        &mut buf,
                    ),
                    1 => {
                        buf.extend((rng.below(80) as u32).to_be_bytes());
                        buf.extend(rng.biased_bytes(n));
                    }
                    _ => buf.extend(rng.bytes(n)),
                }
            }
            let mut decoder = Decoder::new(64);
            while let Decoded::Frame(f) = decoder.decode(&mut buf) {
                frames += 1;
                let _ = Command::parse(f);
            }
        }
        assert!(frames > 10_000, "only {frames} frames exercised");
    }
}
