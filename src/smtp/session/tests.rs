//! In-process tests of whole sessions on loopback: a real client socket, the real pipeline
//! (configuration, policy, verification), a next hop that records what it is asked to do, and
//! a loopback DNS server answering NXDOMAIN to everything, so inbound mail is verified
//! without leaving the machine.

mod chunking;
mod delivery;
mod protocol;
mod starttls;

use super::serve_connection;
use crate::config::Config;
use crate::policy::Policy;
use crate::runtime::smtp_service::SmtpSettings;
use crate::runtime::Snapshot;
use crate::smtp::stress::Load;
use crate::smtp::{ClientInfo, MailParams, NextHop, RcptDsn, SmtpReply};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the next hop was asked to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Mail {
        from: String,
        params: MailParams,
        protocol: String,
    },
    Rcpt(String),
    Data(Vec<u8>),
    Reset,
    Quit,
}

/// A next hop that accepts everything (unless told otherwise) and records each call.
#[derive(Clone, Default)]
pub struct RecordingHop {
    pub events: Arc<Mutex<Vec<Event>>>,
    /// Refuse this recipient with this reply.
    pub refuse_rcpt: Option<(String, SmtpReply)>,
    /// Refuse every message with this reply.
    pub refuse_data: Option<SmtpReply>,
    /// Say the next hop offers DSN; the DSN parameters each recipient came with.
    pub offer_dsn: bool,
    pub rcpt_dsn: Arc<Mutex<Vec<(String, RcptDsn)>>>,
}

impl RecordingHop {
    fn record(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }
}

impl NextHop for RecordingHop {
    async fn mail(
        &mut self,
        client: &ClientInfo,
        from: &str,
        params: &MailParams,
    ) -> Result<(), SmtpReply> {
        self.record(Event::Mail {
            from: from.to_string(),
            params: params.clone(),
            protocol: client.protocol.clone(),
        });
        Ok(())
    }

    async fn rcpt(&mut self, to: &str) -> Result<(), SmtpReply> {
        self.record(Event::Rcpt(to.to_string()));
        match &self.refuse_rcpt {
            Some((who, reply)) if who == to => Err(reply.clone()),
            _ => Ok(()),
        }
    }

    async fn rcpt_dsn(&mut self, to: &str, dsn: &RcptDsn) -> Result<(), SmtpReply> {
        self.rcpt_dsn
            .lock()
            .unwrap()
            .push((to.to_string(), dsn.clone()));
        self.rcpt(to).await
    }

    fn offers_dsn(&self) -> bool {
        self.offer_dsn
    }

    async fn data(&mut self, message: &[u8]) -> Result<SmtpReply, SmtpReply> {
        self.record(Event::Data(message.to_vec()));
        match &self.refuse_data {
            Some(reply) => Err(reply.clone()),
            None => Ok(SmtpReply::new(250, "2.0.0", "queued downstream")),
        }
    }

    async fn reset(&mut self) {
        self.record(Event::Reset);
    }

    async fn quit(&mut self) {
        self.record(Event::Quit);
    }
}

/// The smallest DNS server: every query gets NXDOMAIN (RFC 1035 §4.1.1, RCODE 3).
async fn nxdomain_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if let Some(answer) = nxdomain(&buf[..n]) {
                let _ = socket.send_to(&answer, from).await;
            }
        }
    });
    addr
}

/// The query's header and question, flagged as an authoritative NXDOMAIN answer.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    let mut i = 12;
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += len;
    }
    let end = i + 4;
    let mut answer = query.get(..end)?.to_vec();
    answer[2] = 0x80 | (query[2] & 0x78) | 0x04 | (query[2] & 0x01);
    answer[3] = 0x80 | 3;
    answer[6..12].fill(0); // no answer, authority or additional records (EDNS dropped)
    Some(answer)
}

/// A snapshot whose DNS is the NXDOMAIN server. `trusted`: loopback clients are outbound
/// (the default); otherwise nothing is trusted and the test client is an inbound sender.
pub async fn snapshot(trusted: bool, policy: Option<&str>) -> Arc<Snapshot> {
    let mut config = Config {
        authserv_id: "mx.test".into(),
        ..Config::default()
    };
    config.dns.nameservers = vec![nxdomain_server().await];
    config.dns.timeout = Duration::from_millis(500);
    config.dns.attempts = 1;
    if !trusted {
        config.trusted_networks = Vec::new();
    }
    let mut snapshot = Snapshot::new(config).expect("snapshot");
    if let Some(text) = policy {
        snapshot.policy = Arc::new(Policy::parse(text, Path::new("test.toml")).expect("policy"));
    }
    Arc::new(snapshot)
}

pub fn settings() -> SmtpSettings {
    SmtpSettings {
        hostname: "mx.test".into(),
        local_domains: vec!["example.org".into()],
        ..SmtpSettings::default()
    }
}

/// A server for one connection.
pub struct Server {
    pub addr: SocketAddr,
    pub events: Arc<Mutex<Vec<Event>>>,
    pub stop: watch::Sender<bool>,
    pub done: JoinHandle<()>,
}

impl Server {
    pub async fn start(snapshot: Arc<Snapshot>, settings: SmtpSettings, hop: RecordingHop) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let events = Arc::clone(&hop.events);
        let (stop, stop_rx) = watch::channel(false);
        let settings = Arc::new(settings);
        let done = tokio::spawn(async move {
            let (stream, peer) = listener.accept().await.unwrap();
            let load = Load::calm(Arc::clone(snapshot.journal.metrics()));
            let guard = Arc::default();
            serve_connection(stream, peer, snapshot, settings, hop, load, guard, stop_rx).await;
        });
        Server {
            addr,
            events,
            stop,
            done,
        }
    }

    /// A connected client that has read the greeting.
    pub async fn connect(&self) -> Client<TcpStream> {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let mut client = Client::new(stream);
        client.expect("220 mx.test ESMTP").await;
        client
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Waits for the session to end (it must, within a few seconds).
    pub async fn finished(self) -> Vec<Event> {
        let events = Arc::clone(&self.events);
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("session ends")
            .expect("session does not panic");
        let events = events.lock().unwrap().clone();
        events
    }
}

/// The test's SMTP client, over TCP or TLS.
pub struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client {
            io: BufReader::new(stream),
        }
    }

    pub fn into_inner(self) -> S {
        self.io.into_inner()
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
    }

    /// One whole reply, its lines joined with `\n` (CRLF removed); "" at end of stream.
    pub async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), async {
                self.io.read_until(b'\n', &mut line).await
            })
            .await
            .expect("reply in time")
            .unwrap();
            if read == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            let last = text.len() < 4 || text.as_bytes()[3] == b' ';
            lines.push(text);
            if last {
                break;
            }
        }
        lines.join("\n")
    }

    /// The next reply, which must start with `prefix`.
    pub async fn expect(&mut self, prefix: &str) -> String {
        let reply = self.reply().await;
        assert!(
            reply.starts_with(prefix),
            "expected {prefix:?}, got {reply:?}"
        );
        reply
    }

    /// Sends a command and checks the reply.
    pub async fn command(&mut self, line: &str, prefix: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.expect(prefix).await
    }

    /// True once the server has closed the connection.
    pub async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.io.read_to_end(&mut rest)).await,
            Ok(Ok(_)) | Ok(Err(_))
        ) && rest.is_empty()
    }
}

/// A message with the given header fields and body, CRLF line ends.
pub fn message(header: &[&str], body: &str) -> Vec<u8> {
    let mut m = String::new();
    for field in header {
        m.push_str(field);
        m.push_str("\r\n");
    }
    m.push_str("\r\n");
    m.push_str(body);
    m.into_bytes()
}

/// The message as a client sends it after 354: dot-stuffed, with the end marker.
pub fn stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The one message the next hop was given.
pub fn delivered(events: &[Event]) -> Vec<u8> {
    let data: Vec<&Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            Event::Data(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(data.len(), 1, "exactly one message handed on: {events:?}");
    data[0].clone()
}
