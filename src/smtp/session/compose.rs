//! The message as it goes on: our `Received:` trace field, the header fields the verdict adds
//! (on top), forged `Authentication-Results:` fields removed; plus the queue id and the date.
//!
//! Edits are made in place on the received bytes, so a large message is not copied again.

use crate::dates::rfc5322_date;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the `Received:` field says (RFC 5321 §4.4).
pub struct Trace<'a> {
    pub helo: Option<&'a str>,
    pub ip: IpAddr,
    pub hostname: &'a str,
    /// `ESMTP`, `ESMTPS`, `SMTP`, `UTF8SMTP`, ... (RFC 3848, RFC 6531 §3.7.3).
    pub protocol: &'a str,
    pub id: &'a str,
    pub rcpts: &'a [String],
}

/// The whole `Received:` field, CRLF-terminated and folded before `by` and `for`.
pub fn received(trace: &Trace<'_>, now: SystemTime) -> String {
    let helo = trace.helo.map(sanitize).unwrap_or_else(|| "unknown".into());
    let ip = match trace.ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPv6:{v6}"),
    };
    // §4.4 / §7.2: naming the recipient is only safe when there is exactly one.
    let rcpt = match trace.rcpts {
        [one] => format!("\r\n\tfor <{}>", sanitize(one)),
        _ => String::new(),
    };
    format!(
        "Received: from {helo} ([{ip}])\r\n\tby {} (authmilter) with {} id {}{rcpt};\r\n\t{}\r\n",
        sanitize(trace.hostname),
        trace.protocol,
        trace.id,
        rfc5322_date(now)
    )
}

/// Text from the client made safe inside a trace field: no controls, nothing that would end
/// a comment, an angle address or the clause list.
fn sanitize(text: &str) -> String {
    text.chars()
        .take(255)
        .map(|c| {
            if c.is_control() || c.is_whitespace() || "()<>;\\\"".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// A fresh queue id: 12 characters of base32 (60 random bits).
pub fn queue_id() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    const ALPHABET: &[u8; 32] = b"0123456789BCDFGHJKLMNPQRSTVWXYZA";
    let mut bytes = [0u8; 8];
    let bits = match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => u64::from_be_bytes(bytes),
        // No system randomness: time and a counter still make it unique in this process.
        Err(_) => {
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t.rotate_left(20) ^ n
        }
    };
    (0..12)
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// Puts `prefix` (whole header fields) on top of the message.
pub fn prepend(message: &mut Vec<u8>, prefix: &[u8]) {
    message.splice(0..0, prefix.iter().copied());
}

/// `name: value` CRLF, for fields whose value is already folded with CRLF.
pub fn field(name: &str, value: &str) -> String {
    format!("{name}: {value}\r\n")
}

/// Deletes header fields given as (name, 1-based index among the fields of that name), as
/// counted in the message before any deletion.
pub fn remove_fields(message: &mut Vec<u8>, removals: &[(String, usize)]) {
    let fields = header_fields(message);
    let mut ranges: Vec<(usize, usize)> = removals
        .iter()
        .filter_map(|(name, index)| {
            fields
                .iter()
                .filter(|f| f.0.eq_ignore_ascii_case(name.as_bytes()))
                .nth(index.checked_sub(1)?)
                .map(|f| (f.1, f.2))
        })
        .collect();
    // From the bottom up, so earlier ranges stay where they are.
    ranges.sort_unstable_by(|a, b| b.cmp(a));
    ranges.dedup();
    for (start, end) in ranges {
        message.drain(start..end);
    }
}

/// The header fields of `message`: (name, start, end) with `end` after the field's last CRLF
/// (folded lines included).
fn header_fields(message: &[u8]) -> Vec<(&[u8], usize, usize)> {
    let mut fields: Vec<(&[u8], usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        match (line[0], fields.last_mut()) {
            (b' ' | b'\t', Some(last)) => last.2 = end,
            _ => {
                let name = line.split(|&b| b == b':').next().unwrap_or(line);
                fields.push((name.trim_ascii(), pos, end));
            }
        }
        pos = end;
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_names_a_single_recipient_only() {
        let one = ["a@example.org".to_string()];
        let trace = Trace {
            helo: Some("client (evil); x"),
            ip: "2001:db8::1".parse().unwrap(),
            hostname: "mx.example.org",
            protocol: "ESMTPS",
            id: "ABC",
            rcpts: &one,
        };
        let r = received(&trace, UNIX_EPOCH);
        assert_eq!(
            r,
            "Received: from client__evil___x ([IPv6:2001:db8::1])\r\n\tby mx.example.org \
             (authmilter) with ESMTPS id ABC\r\n\tfor <a@example.org>;\r\n\t\
             Thu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
        let two = ["a@x".to_string(), "b@x".to_string()];
        let r = received(
            &Trace {
                rcpts: &two,
                ..trace
            },
            UNIX_EPOCH,
        );
        assert!(!r.contains("for <"), "{r}");
    }

    #[test]
    fn removes_the_right_fields_and_keeps_the_rest() {
        let mut m =
            b"Authentication-Results: a;\r\n  none\r\nX: 1\r\nauthentication-results: b\r\n\
                      Authentication-Results: c\r\n\r\nAuthentication-Results: body\r\n"
                .to_vec();
        let removals = vec![
            ("Authentication-Results".to_string(), 1),
            ("Authentication-Results".to_string(), 3),
            ("Authentication-Results".to_string(), 9),
        ];
        remove_fields(&mut m, &removals);
        assert_eq!(
            m,
            b"X: 1\r\nauthentication-results: b\r\n\r\nAuthentication-Results: body\r\n"
        );
    }

    #[test]
    fn queue_ids_differ() {
        let a = queue_id();
        assert_eq!(a.len(), 12);
        assert_ne!(a, queue_id());
    }
}
