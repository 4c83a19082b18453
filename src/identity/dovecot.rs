//! A client of Dovecot's authentication service (its `auth-client` socket, protocol 1.2),
//! for sites whose users already live in Dovecot.
//!
//! One short connection per check: handshake (`VERSION`, `CPID`; the server lists its
//! mechanisms and ends with `DONE`), then one `AUTH` with the PLAIN response, answered by `OK`,
//! `FAIL` or `FAIL ... temp`. Authmilter enforces the TLS rule itself, so the request is
//! marked `secured` (Dovecot would otherwise refuse plain-text mechanisms off loopback).

use super::{CheckError, Checked};
use base64ct::{Base64, Encoding};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long one check may take, Dovecot's own failure delay included.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Longest line read from the server.
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct DovecotAuth {
    socket: PathBuf,
}

impl DovecotAuth {
    pub fn new(socket: PathBuf) -> DovecotAuth {
        DovecotAuth { socket }
    }

    pub async fn check(
        &self,
        user: &str,
        password: &[u8],
        client: IpAddr,
    ) -> Result<Checked, CheckError> {
        match tokio::time::timeout(TIMEOUT, self.exchange(user, password, client)).await {
            Ok(result) => result,
            Err(_) => Err(CheckError("dovecot auth: timed out".into())),
        }
    }

    async fn exchange(
        &self,
        user: &str,
        password: &[u8],
        client: IpAddr,
    ) -> Result<Checked, CheckError> {
        let fail =
            |what: &str| CheckError(format!("dovecot auth {}: {what}", self.socket.display()));
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| fail(&e.to_string()))?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let hello = format!("VERSION\t1\t2\nCPID\t{}\n", std::process::id());
        write
            .write_all(hello.as_bytes())
            .await
            .map_err(|e| fail(&e.to_string()))?;
        let mut plain = false;
        loop {
            let line = read_line(&mut lines).await.map_err(|e| fail(&e))?;
            let mut fields = line.split('\t');
            match fields.next() {
                Some("VERSION") if fields.next() != Some("1") => {
                    return Err(fail("unsupported protocol version"))
                }
                Some("MECH") if fields.next() == Some("PLAIN") => plain = true,
                Some("DONE") => break,
                _ => {}
            }
        }
        if !plain {
            return Err(fail("the PLAIN mechanism is not enabled"));
        }
        // RFC 4616: authzid NUL authcid NUL passwd.
        let mut response = Vec::with_capacity(user.len() + password.len() + 2);
        response.push(0);
        response.extend_from_slice(user.as_bytes());
        response.push(0);
        response.extend_from_slice(password);
        let request = format!(
            "AUTH\t1\tPLAIN\tservice=smtp\tsecured\trip={client}\tresp={}\n",
            Base64::encode_string(&response)
        );
        write
            .write_all(request.as_bytes())
            .await
            .map_err(|e| fail(&e.to_string()))?;
        let line = read_line(&mut lines).await.map_err(|e| fail(&e))?;
        let mut fields = line.split('\t');
        let verb = fields.next().unwrap_or_default();
        let _id = fields.next();
        let params: Vec<&str> = fields.collect();
        let named = |key: &str| {
            params
                .iter()
                .find_map(|p| p.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .map(unescape)
        };
        match verb {
            "OK" => Ok(Checked::Valid(
                named("user").unwrap_or_else(|| user.to_string()),
            )),
            "FAIL" if params.contains(&"temp") => Err(fail(
                &named("reason").unwrap_or_else(|| "temporary failure".into()),
            )),
            "FAIL" => Ok(Checked::Invalid),
            other => Err(fail(&format!("unexpected reply {other:?}"))),
        }
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<String, String> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed".into());
    }
    if buf.last() != Some(&b'\n') {
        return Err("line too long".into());
    }
    buf.pop();
    String::from_utf8(buf).map_err(|_| "reply not UTF-8".to_string())
}

/// Dovecot's tab escaping: `\x01` followed by `1`, `t`, `r`, `n` or `0`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

use tokio::io::AsyncReadExt as _;

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_dovecot_fields() {
        assert_eq!(super::unescape("a\x01tb\x011c"), "a\tb\x01c");
    }
}
