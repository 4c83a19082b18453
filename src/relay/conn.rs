//! One SMTP client connection to the next hop: connect, greeting, EHLO (or HELO), STARTTLS,
//! then commands and the message, every wait bounded by a timeout.

use std::io;
use std::sync::Arc;

use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use super::command::Extensions;
use super::dot::DotStuffer;
use super::reply::ReplyDecoder;
use super::{tls, RelayConfig, RelayError, RelayTls};
use super::{SmtpReply, Stream};

/// Message bytes handed to the socket per write (each bounded by `data_timeout`).
const CHUNK: usize = 64 * 1024;

/// An open, greeted connection. `ext` is what the latest EHLO offered.
pub struct Connection {
    stream: Stream,
    replies: ReplyDecoder,
    pub ext: Extensions,
    /// A MAIL was accepted and neither the final DATA reply nor a RSET ended it yet.
    pub in_transaction: bool,
    command_timeout: Duration,
    data_timeout: Duration,
}

impl Connection {
    /// Connects, reads the greeting, says EHLO and upgrades to TLS as configured.
    pub async fn open(config: &RelayConfig) -> Result<Connection, RelayError> {
        // Before connecting: a broken CA file should not cost the next hop a session.
        let tls = match config.starttls {
            RelayTls::None => None,
            _ => Some(tls_setup(config).await?),
        };
        let tcp = timeout(config.connect_timeout, TcpStream::connect(&config.addr))
            .await
            .map_err(|_| RelayError::Connect(io::ErrorKind::TimedOut.into()))?
            .map_err(RelayError::Connect)?;
        // Commands are single small writes we wait on; Nagle would only add latency.
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            stream: Stream::Plain(tcp),
            replies: ReplyDecoder::default(),
            ext: Extensions::default(),
            in_transaction: false,
            command_timeout: config.command_timeout,
            data_timeout: config.data_timeout,
        };
        // RFC 5321 §3.1: anything but 220 (554 = "no service here") means go away; we
        // accept any 2xx, as the rest of the dialogue would fail anyway if it were wrong.
        let greeting = conn.read_reply(conn.command_timeout, "greeting").await?;
        strict(greeting, 2, "greeting")?;
        conn.hello(config).await?;
        match (tls, conn.ext.starttls) {
            (Some(tls), true) => conn.starttls(config, tls).await,
            (Some(_), false) if config.starttls == RelayTls::Required => {
                Err(RelayError::TlsNotOffered)
            }
            _ => Ok(conn),
        }
    }

    /// EHLO, or HELO if the next hop does not know EHLO (RFC 5321 §3.2).
    async fn hello(&mut self, config: &RelayConfig) -> Result<(), RelayError> {
        let reply = self
            .command(&format!("EHLO {}", config.helo_name), "EHLO")
            .await?;
        if reply.code / 100 == 2 {
            self.ext = Extensions::from_ehlo(&reply);
            return Ok(());
        }
        if reply.code / 100 != 5 {
            return Err(RelayError::Unexpected("EHLO", reply));
        }
        let reply = self
            .command(&format!("HELO {}", config.helo_name), "HELO")
            .await?;
        strict(reply, 2, "HELO")?;
        self.ext = Extensions::default();
        Ok(())
    }

    /// STARTTLS and the second EHLO (RFC 3207 §4.2: forget what the first one said).
    async fn starttls(
        mut self,
        config: &RelayConfig,
        (client, name): TlsSetup,
    ) -> Result<Connection, RelayError> {
        let reply = self.command("STARTTLS", "STARTTLS").await?;
        if reply.code != 220 {
            // RFC 3207 §4: the client may go on without TLS (454: not now), unless it must not.
            tracing::debug!(next_hop = %config.addr, code = reply.code, "STARTTLS refused");
            return match config.starttls {
                RelayTls::Required => Err(RelayError::TlsNotOffered),
                _ => Ok(self),
            };
        }
        // Bytes sent before the handshake would be read as if they came through TLS
        // (reply injection, as in CVE-2011-0411 on the server side).
        if self.replies.has_pending() {
            return Err(RelayError::Protocol("data after the STARTTLS reply".into()));
        }
        let tcp = match self.stream {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(_) => return Err(RelayError::Protocol("STARTTLS offered twice".into())),
        };
        let handshake = TlsConnector::from(client).connect(name, tcp);
        let stream = timeout(self.command_timeout, handshake)
            .await
            .map_err(|_| RelayError::Timeout("TLS handshake"))?
            .map_err(|e| RelayError::Tls(e.to_string()))?;
        self.stream = Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(stream)));
        self.ext = Extensions::default();
        self.hello(config).await?;
        Ok(self)
    }

    /// Sends one command line and reads its reply.
    pub async fn command(
        &mut self,
        line: &str,
        stage: &'static str,
    ) -> Result<SmtpReply, RelayError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes, self.command_timeout, stage).await?;
        self.read_reply(self.command_timeout, stage).await
    }

    /// DATA, the message, and the final reply (which ends the transaction either way,
    /// RFC 5321 §4.1.1.4).
    pub async fn data(&mut self, message: &[u8]) -> Result<SmtpReply, RelayError> {
        let reply = self.command("DATA", "DATA").await?;
        refusable(reply, 3, "DATA")?;
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::with_capacity(CHUNK + CHUNK / 8);
        for chunk in message.chunks(CHUNK) {
            out.clear();
            stuffer.encode(chunk, &mut out);
            self.write(&out, self.data_timeout, "message").await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        self.write(&out, self.data_timeout, "message").await?;
        // RFC 5321 §4.5.3.2.6 allows 10 minutes here; data_timeout should stay below the
        // client's own wait for our reply.
        let reply = self.read_reply(self.data_timeout, "end of data").await;
        self.in_transaction = false;
        refusable(reply?, 2, "end of data")
    }

    /// QUIT, waiting briefly for the reply; errors do not matter any more.
    pub async fn quit(mut self) {
        self.command_timeout = self.command_timeout.min(Duration::from_secs(10));
        let _ = self.command("QUIT", "QUIT").await;
        let _ = timeout(self.command_timeout, self.stream.shutdown()).await;
    }

    async fn write(
        &mut self,
        bytes: &[u8],
        limit: Duration,
        stage: &'static str,
    ) -> Result<(), RelayError> {
        let stream = &mut self.stream;
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match timeout(limit, write).await {
            Err(_) => Err(RelayError::Timeout(stage)),
            Ok(result) => result.map_err(|e| RelayError::Io(stage, e)),
        }
    }

    /// Reads one whole reply; the timeout covers the whole reply, so a next hop sending a
    /// byte a minute cannot hold us longer than a silent one.
    async fn read_reply(
        &mut self,
        limit: Duration,
        stage: &'static str,
    ) -> Result<SmtpReply, RelayError> {
        let deadline = Instant::now() + limit;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(reply) = self.replies.next_reply().map_err(RelayError::BadReply)? {
                return Ok(reply);
            }
            let n = timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| RelayError::Timeout(stage))?
                .map_err(|e| RelayError::Io(stage, e))?;
            if n == 0 {
                return Err(RelayError::Closed(stage));
            }
            self.replies.feed(&chunk[..n]);
        }
    }
}

/// What STARTTLS needs: the client configuration and the name to verify.
type TlsSetup = (Arc<ClientConfig>, ServerName<'static>);

/// Reads `ca_file` (asynchronously, and at each connection so a renewed file is used)
/// and builds the TLS client configuration.
async fn tls_setup(config: &RelayConfig) -> Result<TlsSetup, RelayError> {
    let ca_pem = match &config.ca_file {
        None => None,
        Some(path) => Some(
            tokio::fs::read(path)
                .await
                .map_err(|e| RelayError::Config(format!("ca_file {}: {e}", path.display())))?,
        ),
    };
    let client = tls::client_config(config, ca_pem.as_deref())?;
    Ok((client, tls::server_name(&config.addr)?))
}

/// A reply of the expected class, or a failure of the connection (the next hop refusing
/// EHLO, XFORWARD or RSET is not something to pass on to our client as its own refusal).
pub fn strict(reply: SmtpReply, class: u16, stage: &'static str) -> Result<SmtpReply, RelayError> {
    if reply.code / 100 == class {
        Ok(reply)
    } else {
        Err(RelayError::Unexpected(stage, reply))
    }
}

/// A reply of the expected class, or the next hop's refusal to pass on as it is. 421 is
/// the next hop closing the connection (RFC 5321 §3.8), a transport failure: passed on, it
/// would tell our client that *we* are closing.
pub fn refusable(
    reply: SmtpReply,
    class: u16,
    stage: &'static str,
) -> Result<SmtpReply, RelayError> {
    match reply.code / 100 {
        c if c == class => Ok(reply),
        4 | 5 if reply.code != 421 => Err(RelayError::Refused(reply)),
        _ => Err(RelayError::Unexpected(stage, reply)),
    }
}
