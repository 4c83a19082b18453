//! The relay against a scripted fake next hop on loopback: what it writes, what it makes of
//! each reply, and that every failure of the next hop is a 4xx and never an `Ok`.
//!
//! This file is the fake next hop; the tests are in [`dialogue`] (what goes over the wire
//! when things work or the next hop refuses), [`failures`] (transport failures) and
//! [`starttls`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::*;

mod dialogue;
mod failures;
mod starttls;

/// One step of the fake next hop's script.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Write these bytes.
    Say(&'static str),
    /// Read one command line into the transcript.
    Hear,
    /// Read the message through its final `.` line into the transcript.
    HearData,
    /// Accept a TLS handshake; the script goes on inside TLS.
    Tls,
    /// Close the connection.
    Close,
    /// Stay silent for longer than any test waits.
    Hang,
    /// Send a reply line that never ends.
    Flood,
}
use Step::*;

const GREETING: Step = Say("220 fake.example ESMTP\r\n");
const EHLO_FULL: Step = Say(
    "250-fake.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n\
     250-XFORWARD NAME ADDR PROTO HELO SOURCE\r\n250 ENHANCEDSTATUSCODES\r\n",
);
const EHLO_PLAIN: Step = Say("250 fake.example\r\n");
const OK: Step = Say("250 2.0.0 Ok\r\n");
const GO_AHEAD: Step = Say("354 End data with <CR><LF>.<CR><LF>\r\n");
const QUEUED: Step = Say("250 2.0.0 Ok: queued as 4ABC\r\n");
const BYE: Step = Say("221 2.0.0 Bye\r\n");

/// The greeting, then EHLO answered with `ehlo`.
fn hello(ehlo: Step) -> Vec<Step> {
    vec![GREETING, Hear, ehlo]
}

/// MAIL, one RCPT, DATA and the message, all accepted.
const ACCEPT_ONE: [Step; 8] = [Hear, OK, Hear, OK, Hear, GO_AHEAD, HearData, QUEUED];
/// QUIT and its reply.
const QUIT: [Step; 2] = [Hear, BYE];

/// A fake next hop serving one script per connection, in order.
struct Fake {
    addr: String,
    heard: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl Fake {
    async fn start(connections: Vec<Vec<Step>>, tls: Option<Arc<ServerConfig>>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&heard);
        let task = tokio::spawn(async move {
            for script in connections {
                let (tcp, _) = listener.accept().await.unwrap();
                serve(tcp, script, tls.clone(), &log).await;
            }
        });
        Fake { addr, heard, task }
    }

    /// Waits for the scripts to end (the relay closed its side) and returns what it heard.
    async fn transcript(self) -> String {
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("fake next hop still running")
            .unwrap();
        String::from_utf8(self.heard.lock().unwrap().clone()).unwrap()
    }
}

async fn serve(
    tcp: TcpStream,
    script: Vec<Step>,
    tls: Option<Arc<ServerConfig>>,
    log: &Mutex<Vec<u8>>,
) {
    let mut steps = script.into_iter();
    let mut tcp = tcp;
    if play(&mut tcp, &mut steps, log).await {
        let acceptor = TlsAcceptor::from(tls.expect("script asks for TLS without a config"));
        match acceptor.accept(tcp).await {
            Ok(mut stream) => {
                play(&mut stream, &mut steps, log).await;
            }
            Err(_) => log.lock().unwrap().extend_from_slice(b"<handshake failed>"),
        }
    }
}

/// Plays steps until the script ends (then logs whatever else comes until EOF), the
/// connection ends, or TLS is asked for (returns true).
async fn play<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    steps: &mut impl Iterator<Item = Step>,
    log: &Mutex<Vec<u8>>,
) -> bool {
    let mut buf = Vec::new();
    for step in steps.by_ref() {
        let heard = match step {
            Say(text) => {
                if stream.write_all(text.as_bytes()).await.is_err() {
                    return false;
                }
                continue;
            }
            Hear => read_through(stream, &mut buf, b"\r\n").await,
            HearData => read_through(stream, &mut buf, b"\r\n.\r\n").await,
            Tls => return true,
            Close => return false,
            Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return false;
            }
            Flood => {
                let _ = stream.write_all(b"250 ").await;
                while stream.write_all(&[b'x'; 4096]).await.is_ok() {}
                return false;
            }
        };
        match heard {
            Some(bytes) => log.lock().unwrap().extend_from_slice(&bytes),
            None => return false,
        }
    }
    log.lock().unwrap().extend_from_slice(&buf);
    let mut rest = [0u8; 1024];
    while let Ok(n @ 1..) = stream.read(&mut rest).await {
        log.lock().unwrap().extend_from_slice(&rest[..n]);
    }
    false
}

async fn read_through<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    end: &[u8],
) -> Option<Vec<u8>> {
    loop {
        if let Some(at) = buf.windows(end.len()).position(|w| w == end) {
            return Some(buf.drain(..at + end.len()).collect());
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn config(addr: &str) -> RelayConfig {
    RelayConfig {
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        data_timeout: Duration::from_secs(2),
        ..RelayConfig::new(addr, "filter.example")
    }
}

fn client() -> ClientInfo {
    ClientInfo {
        ip: "192.0.2.1".parse().unwrap(),
        helo: Some("client.example".into()),
        protocol: "ESMTP".into(),
    }
}

fn params() -> MailParams {
    MailParams {
        size: Some(42),
        eight_bit: true,
        smtputf8: false,
        ..MailParams::default()
    }
}

/// A failure of the next hop: a transient error the client will retry.
#[track_caller]
fn assert_tempfail<T: std::fmt::Debug>(result: Result<T, SmtpReply>, status: &str) {
    match result {
        Ok(value) => panic!("expected 451 {status}, got Ok({value:?})"),
        Err(reply) => assert_eq!(
            (reply.code, reply.status.as_deref()),
            (451, Some(status)),
            "{reply:?}"
        ),
    }
}

/// One whole transaction with one recipient.
async fn send_one(hop: &mut RelaySession, message: &[u8]) -> Result<SmtpReply, SmtpReply> {
    hop.mail(&client(), "s@example.org", &params()).await?;
    hop.rcpt("a@example.com").await?;
    hop.data(message).await
}
