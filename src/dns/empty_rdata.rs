//! TXT answers holding a record with zero-length RDATA.
//!
//! A TXT RR with no character-strings is illegal (RFC 1035 §3.3.14), but servers send it (the
//! RFC 7208 suite's `null-text`, spec §3.3, publishes one beside a valid SPF record). hickory's
//! decoder refuses the whole message for it ("record with length 0 in non-update message"), so
//! the valid record next to it is lost and SPF would say temperror. RFC 7208 §4.5 wants the
//! record set looked through: an empty record is simply not an SPF record.
//!
//! When that decode error is seen, the query is asked again here, to the same nameservers:
//! the answer's RRs with RDLENGTH 0 are cut out of the wire message (the only parsing done by
//! hand: walking RR boundaries), and the rest is decoded by hickory as usual.

use mail_auth::hickory_resolver::net::NetError;
use mail_auth::hickory_resolver::proto::op::{Message, Query, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::{Name, Record, RecordType};
use mail_auth::hickory_resolver::proto::serialize::binary::DecodeError;
use mail_auth::hickory_resolver::proto::ProtoError;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether a lookup failed only because an answer RR had zero-length RDATA.
pub fn is_empty_rdata_error(e: &NetError) -> bool {
    fn empty(p: &ProtoError) -> bool {
        match p {
            ProtoError::Decode(DecodeError::InvalidEmptyRecord) => true,
            ProtoError::FormError { error, .. } => empty(error),
            _ => false,
        }
    }
    matches!(e, NetError::Proto(p) if empty(p))
}

/// What the tolerant query found: the answer's records (empty RDATA left out) and the
/// response code.
pub struct Answer {
    pub code: ResponseCode,
    pub records: Vec<Record>,
}

/// Asks each nameserver in turn (UDP, then TCP when truncated) for `name`'s records of
/// `rtype`, tolerating zero-length RDATA. The first decodable answer wins.
pub async fn query(
    servers: &[SocketAddr],
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Answer, String> {
    let mut request = Message::query();
    request.metadata.id = rand_id();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(name.clone(), rtype));
    let wire = request.to_vec().map_err(|e| e.to_string())?;
    let mut last = "no nameserver".to_string();
    for server in servers {
        let reply = match tokio::time::timeout(timeout, udp(*server, &wire)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                last = e;
                continue;
            }
            Err(_) => {
                last = "timed out".into();
                continue;
            }
        };
        let reply = if truncated(&reply) {
            match tokio::time::timeout(timeout, tcp(*server, &wire)).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    last = e;
                    continue;
                }
                Err(_) => {
                    last = "timed out".into();
                    continue;
                }
            }
        } else {
            reply
        };
        let Some(cleaned) = without_empty_rdata(&reply) else {
            last = "malformed reply".into();
            continue;
        };
        let message = std::panic::catch_unwind(|| Message::from_vec(&cleaned))
            .map_err(|_| "undecodable reply".to_string())?
            .map_err(|e| e.to_string())?;
        if message.metadata.id != request.metadata.id {
            last = "reply to another query".into();
            continue;
        }
        return Ok(Answer {
            code: message.metadata.response_code,
            records: message.answers.clone(),
        });
    }
    Err(last)
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    // Any value will do when the system RNG fails: the reply is matched on the socket too.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_be_bytes(b)
}

async fn udp(server: SocketAddr, wire: &[u8]) -> Result<Vec<u8>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(wire).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_535];
    let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
    buf.truncate(n);
    Ok(buf)
}

async fn tcp(server: SocketAddr, wire: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(wire.len()).map_err(|_| "query too long")?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

fn truncated(reply: &[u8]) -> bool {
    reply.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

/// The message without the RRs whose RDATA is empty (counts adjusted), or `None` if it does
/// not parse as far as RR boundaries go (RFC 1035 §4.1).
pub fn without_empty_rdata(wire: &[u8]) -> Option<Vec<u8>> {
    let count = |at: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *wire.get(at)?,
            *wire.get(at + 1)?,
        ])))
    };
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(wire, pos)? + 4;
    }
    let mut out = wire.get(..pos)?.to_vec();
    let mut counts = [an, ns, ar];
    for section in &mut counts {
        let total = *section;
        for _ in 0..total {
            let start = pos;
            let after_name = skip_name(wire, pos)?;
            let rdlength = usize::from(u16::from_be_bytes([
                *wire.get(after_name + 8)?,
                *wire.get(after_name + 9)?,
            ]));
            let rrtype = u16::from_be_bytes([*wire.get(after_name)?, *wire.get(after_name + 1)?]);
            pos = after_name + 10 + rdlength;
            let rr = wire.get(start..pos)?;
            // OPT (41) may legitimately have no options; anything else empty is dropped.
            if rdlength == 0 && rrtype != 41 {
                *section -= 1;
            } else {
                out.extend_from_slice(rr);
            }
        }
    }
    out.extend_from_slice(wire.get(pos..)?);
    for (k, c) in counts.iter().enumerate() {
        let c = u16::try_from(*c).ok()?.to_be_bytes();
        out[6 + 2 * k] = c[0];
        out[7 + 2 * k] = c[1];
    }
    Some(out)
}

/// The position after a (possibly compressed) domain name starting at `pos`.
fn skip_name(wire: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *wire.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xC0 == 0xC0 => return Some(pos + 2),
            l if l & 0xC0 == 0 => pos += 1 + usize::from(l),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_rdata_records_are_cut_out() {
        // Header: id 1, response, 1 question, 2 answers.
        let mut wire = vec![0, 1, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        wire.extend_from_slice(b"\x04null\x07example\x03com\x00\x00\x10\x00\x01");
        // An empty TXT RR (name: pointer to the question), then a real one.
        wire.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 1, 44, 0, 0]);
        wire.extend_from_slice(&[
            0xC0, 12, 0, 16, 0, 1, 0, 0, 1, 44, 0, 4, 3, b'a', b'b', b'c',
        ]);
        assert!(Message::from_vec(&wire).is_err(), "hickory refuses it");
        let cleaned = without_empty_rdata(&wire).unwrap();
        let message = Message::from_vec(&cleaned).unwrap();
        assert_eq!(message.answers.len(), 1);
        // Garbage never panics.
        for cut in 0..wire.len() {
            let _ = without_empty_rdata(&wire[..cut]);
        }
        assert!(without_empty_rdata(&[0xff; 40]).is_none());
    }
}
