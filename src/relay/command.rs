//! What the relay says to the next hop: the EHLO keywords it understood and the command
//! lines it builds from them (MAIL, RCPT, XFORWARD). Pure functions, no I/O.

use super::{ClientInfo, MailParams, RcptDsn, SmtpReply};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets, CRLF included.
const MAX_COMMAND: usize = 512;
/// XFORWARD attributes we know how to fill, in the order Postfix documents them.
const XFORWARD_ATTRIBUTES: [&str; 4] = ["NAME", "ADDR", "PROTO", "HELO"];
/// A host name is at most 255 octets (RFC 1035 §2.3.4); a longer HELO is cut.
const MAX_HELO: usize = 255;

/// The service extensions of the next hop's EHLO reply that matter to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 1870: the `SIZE=` parameter is understood.
    pub size: bool,
    /// RFC 6152: `BODY=8BITMIME`.
    pub eight_bit_mime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// Postfix XFORWARD, with the attribute names offered (upper case); `None` if absent.
    pub xforward: Option<Vec<String>>,
    /// RFC 3461.
    pub dsn: bool,
}

impl Extensions {
    /// Reads the keywords of an EHLO reply; its first line is the greeting, not a keyword
    /// (RFC 5321 §4.1.1.1), and keywords are case-insensitive.
    pub fn from_ehlo(reply: &SmtpReply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => ext.starttls = true,
                "SIZE" => ext.size = true,
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "DSN" => ext.dsn = true,
                "XFORWARD" => {
                    ext.xforward = Some(words.map(str::to_ascii_uppercase).collect());
                }
                _ => {}
            }
        }
        ext
    }
}

/// `MAIL FROM:` with the parameters the next hop understands.
///
/// `SIZE=` only if offered; `BODY=8BITMIME` only if offered (if the client declared 8-bit
/// content and the next hop does not offer 8BITMIME, the message is still sent without
/// the parameter, as every MTA in use accepts 8-bit data; downgrading to 7 bit would break
/// DKIM signatures). `SMTPUTF8` is only asked for here when offered; the caller refuses
/// the transaction otherwise.
pub fn mail_from(from: &str, params: &MailParams, ext: &Extensions) -> String {
    let mut line = format!("MAIL FROM:<{from}>");
    if let (true, Some(size)) = (ext.size, params.size) {
        line.push_str(&format!(" SIZE={size}"));
    }
    if ext.eight_bit_mime && params.eight_bit {
        line.push_str(" BODY=8BITMIME");
    }
    if ext.smtputf8 && params.smtputf8 {
        line.push_str(" SMTPUTF8");
    }
    if ext.dsn {
        if let Some(ret) = params.dsn_ret {
            line.push_str(&format!(" RET={ret}"));
        }
        if let Some(envid) = &params.dsn_envid {
            // RFC 3461 §4.4: at most 100 characters, as xtext.
            line.push_str(&format!(" ENVID={}", xtext(envid, 100)));
        }
    }
    line
}

/// `RCPT TO:`, with the DSN parameters when the next hop offers DSN (RFC 3461 §4.1, §4.2).
pub fn rcpt_to(to: &str, dsn: &RcptDsn, ext: &Extensions) -> String {
    let mut line = format!("RCPT TO:<{to}>");
    if ext.dsn {
        if let Some(notify) = &dsn.notify {
            line.push_str(&format!(" NOTIFY={notify}"));
        }
        if let Some(orcpt) = &dsn.orcpt {
            line.push_str(&format!(" ORCPT=rfc822;{}", xtext(orcpt, 500 - line.len())));
        }
    }
    line
}

/// Whether an address could smuggle a second command into ours (CR, LF, NUL, …). The
/// session parsed it already; this is the last line of defence before the wire.
pub fn unsafe_address(address: &str) -> bool {
    address.chars().any(char::is_control)
}

/// The XFORWARD commands telling the next hop who the real client was, split so that
/// none exceeds 512 octets. Only the attributes the next hop offered are sent.
pub fn xforward(offered: &[String], client: &ClientInfo) -> Vec<String> {
    let mut commands = Vec::new();
    let mut line = String::from("XFORWARD");
    for name in XFORWARD_ATTRIBUTES {
        if !offered.iter().any(|o| o == name) {
            continue;
        }
        let value = match name {
            "NAME" => "[UNAVAILABLE]".to_string(),
            "ADDR" => client.ip.to_canonical().to_string(),
            "PROTO" => proto(&client.protocol).to_string(),
            _ => client
                .helo
                .as_deref()
                .map(|h| truncate(h, MAX_HELO).to_string())
                .unwrap_or_else(|| "[UNAVAILABLE]".to_string()),
        };
        // Room for one attribute on its own: "XFORWARD " + "NAME=" + value + CRLF.
        let room = MAX_COMMAND - "XFORWARD ".len() - name.len() - 1 - 2;
        let attribute = format!(" {name}={}", xtext(&value, room));
        if line.len() + attribute.len() + 2 > MAX_COMMAND {
            commands.push(std::mem::replace(&mut line, String::from("XFORWARD")));
        }
        line.push_str(&attribute);
    }
    if line.len() > "XFORWARD".len() {
        commands.push(line);
    }
    commands
}

/// XFORWARD's PROTO is the protocol family: `ESMTP` for every ESMTP variant (ESMTPS,
/// ESMTPA, …), `SMTP` otherwise.
fn proto(protocol: &str) -> &'static str {
    if protocol.to_ascii_uppercase().starts_with("ESMTP") {
        "ESMTP"
    } else {
        "SMTP"
    }
}

/// Longest prefix of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// xtext (RFC 3461 §4): printable ASCII except `+` and `=` as is, every other byte as
/// `+XX`; stops before an encoded byte would pass `max` so no `+XX` is ever cut.
fn xtext(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        let plain = (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=';
        let needed = if plain { 1 } else { 3 };
        if out.len() + needed > max {
            break;
        }
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn client(helo: Option<&str>) -> ClientInfo {
        ClientInfo {
            ip: "192.0.2.7".parse().unwrap(),
            helo: helo.map(str::to_string),
            protocol: "ESMTPS".into(),
        }
    }

    fn all() -> Vec<String> {
        ["NAME", "ADDR", "PROTO", "HELO", "SOURCE"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn ehlo_keywords_are_case_insensitive_and_skip_the_greeting() {
        let reply = SmtpReply {
            code: 250,
            status: None,
            lines: [
                "STARTTLS greeting",
                "size 1000",
                "8bitmime",
                "xforward name addr",
                "SMTPUTF8",
            ]
            .map(String::from)
            .to_vec(),
        };
        let ext = Extensions::from_ehlo(&reply);
        assert!(!ext.starttls, "the greeting line is not a keyword");
        assert!(ext.size && ext.eight_bit_mime && ext.smtputf8);
        assert_eq!(
            ext.xforward,
            Some(vec!["NAME".to_string(), "ADDR".to_string()])
        );
    }

    #[test]
    fn mail_from_sends_only_offered_parameters() {
        let params = MailParams {
            size: Some(1234),
            eight_bit: true,
            smtputf8: false,
            ..MailParams::default()
        };
        let none = Extensions::default();
        assert_eq!(
            mail_from("a@b.example", &params, &none),
            "MAIL FROM:<a@b.example>"
        );
        let all = Extensions {
            size: true,
            eight_bit_mime: true,
            smtputf8: true,
            ..Extensions::default()
        };
        assert_eq!(
            mail_from("", &params, &all),
            "MAIL FROM:<> SIZE=1234 BODY=8BITMIME"
        );
    }

    #[test]
    fn addresses_that_could_inject_commands_are_unsafe() {
        assert!(unsafe_address("a@b\r\nRCPT TO:<c@d>"));
        assert!(unsafe_address("a@b\0"));
        assert!(!unsafe_address("\"odd local\"@b.example"));
    }

    #[test]
    fn xforward_sends_offered_attributes_xtext_encoded() {
        let offered = ["ADDR", "HELO", "PROTO"].map(String::from).to_vec();
        let lines = xforward(&offered, &client(Some("we+ird=name é")));
        assert_eq!(
            lines,
            ["XFORWARD ADDR=192.0.2.7 PROTO=ESMTP HELO=we+2Bird+3Dname+20+C3+A9"]
        );
    }

    #[test]
    fn xforward_without_helo_or_offer() {
        let lines = xforward(&all(), &client(None));
        assert_eq!(
            lines,
            ["XFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.7 PROTO=ESMTP HELO=[UNAVAILABLE]"]
        );
        assert!(xforward(&[], &client(None)).is_empty());
    }

    #[test]
    fn xforward_addr_of_mapped_ipv4_is_plain_ipv4() {
        let mut c = client(None);
        c.ip = "::ffff:198.51.100.1".parse::<IpAddr>().unwrap();
        assert_eq!(
            xforward(&["ADDR".into()], &c),
            ["XFORWARD ADDR=198.51.100.1"]
        );
    }

    #[test]
    fn xforward_splits_at_512_octets() {
        // RFC 5321 §4.5.3.1.4; a HELO of control characters triples when xtext-encoded.
        let helo = "\u{1}".repeat(400);
        let lines = xforward(&all(), &client(Some(&helo)));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("XFORWARD NAME=[UNAVAILABLE] ADDR="));
        assert!(lines[1].starts_with("XFORWARD HELO=+01+01"));
        for line in &lines {
            assert!(line.len() + 2 <= MAX_COMMAND, "{} octets", line.len() + 2);
            assert!(
                !line.ends_with('+') && !line.ends_with("+0"),
                "cut inside +XX"
            );
        }
    }

    #[test]
    fn smtp_protocol_is_not_esmtp() {
        let mut c = client(None);
        c.protocol = "SMTP".into();
        assert_eq!(xforward(&["PROTO".into()], &c), ["XFORWARD PROTO=SMTP"]);
    }
}
