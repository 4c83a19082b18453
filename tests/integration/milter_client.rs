//! A test MTA: speaks the MTA side of the milter protocol the way Postfix does (options,
//! macros, one command per SMTP event, no waiting on stages negotiated as no-reply), using
//! the library's codec. Also starts the daemon in-process on port 0.

use crate::common::*;
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use authmilter::config::{Config, ListenAddr, ListenerConfig};
use authmilter::milter::codec::{Decoded, Decoder};
use authmilter::milter::command::{Command, Family};
use authmilter::milter::consts::*;
use authmilter::milter::reply::Reply;
use authmilter::runtime::Snapshot;
use authmilter::server::{run_with, Loader, MilterListener, Services, Signal};
use authmilter::smtp::listener::SmtpListener;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What Postfix 3.7 offers.
pub const POSTFIX_ACTIONS: u32 = 0x1ff;
pub const POSTFIX_PROTOCOL: u32 = 0x1fffff;

/// The daemon running in-process, with its own loopback DNS server.
pub struct Daemon {
    pub addr: SocketAddr,
    pub dns: DnsServer,
    pub control: mpsc::Sender<Signal>,
    pub task: JoinHandle<()>,
    /// The configuration a reload will load next.
    pub next: Arc<Mutex<Config>>,
    /// The HTTP API, when started with [`Daemon::start_with_api`].
    pub http: Option<SocketAddr>,
    /// The SMTP front end, when the configuration asks for one (`smtp.listen`; port 0 works).
    pub smtp: Option<SocketAddr>,
    /// The `[[smtp.listeners]]`, in configuration order, with their real ports.
    pub listeners: Vec<SocketAddr>,
    /// Holds the verdict store's temporary folder (deleted when the daemon is dropped).
    #[allow(dead_code)]
    pub store_dir: Option<tempfile::TempDir>,
}

impl Daemon {
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> Daemon {
        Daemon::start_inner(adjust, false).await
    }

    /// Also the HTTP API on a loopback port 0 and a verdict store in a temporary folder.
    pub async fn start_with_api(adjust: impl FnOnce(&mut Config)) -> Daemon {
        Daemon::start_inner(adjust, true).await
    }

    async fn start_inner(adjust: impl FnOnce(&mut Config), api: bool) -> Daemon {
        let store_dir = api.then(|| tempfile::tempdir().unwrap());
        let dns = DnsServer::start(Zone::from_file(testdata("dns/main.zone")).unwrap()).await;
        let mut config = config_for(dns.addr);
        config.milter.listen = ListenAddr::Tcp("127.0.0.1:0".parse().unwrap());
        config.milter.timeout = Duration::from_secs(5);
        config.shutdown_grace = Duration::from_secs(5);
        if let Some(dir) = &store_dir {
            config.store.path = Some(dir.path().join("verdicts.sqlite"));
        }
        adjust(&mut config);
        let listener = MilterListener::bind(&config.milter.listen, 0o600)
            .await
            .unwrap();
        let addr = listener.local_addr().parse().unwrap();
        // An SMTP front end when asked for: bound here so port 0 becomes a real port.
        let mut smtp_listeners = Vec::new();
        let smtp = match config.smtp.listen {
            Some(addr) => {
                let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
                let addr = tcp.local_addr().unwrap();
                smtp_listeners.push(SmtpListener {
                    tcp,
                    config: ListenerConfig::mx(addr),
                });
                Some(addr)
            }
            None => None,
        };
        config.smtp.listen = smtp;
        let mut listeners = Vec::new();
        for endpoint in &mut config.smtp.listeners {
            let tcp = tokio::net::TcpListener::bind(endpoint.address)
                .await
                .unwrap();
            endpoint.address = tcp.local_addr().unwrap();
            listeners.push(endpoint.address);
            smtp_listeners.push(SmtpListener {
                tcp,
                config: endpoint.clone(),
            });
        }
        let next = Arc::new(Mutex::new(config.clone()));
        let for_loader = Arc::clone(&next);
        let loader: Loader = Arc::new(move || Snapshot::new(for_loader.lock().unwrap().clone()));
        let snapshot = Snapshot::new(config).unwrap();
        let (control, rx) = mpsc::channel(4);
        let http_listener = match api {
            true => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
            false => None,
        };
        let http = http_listener.as_ref().map(|l| l.local_addr().unwrap());
        let services = Services {
            http: http_listener,
            smtp: smtp_listeners,
        };
        let task = tokio::spawn(run_with(snapshot, loader, listener, rx, services));
        Daemon {
            addr,
            dns,
            control,
            task,
            next,
            http,
            smtp,
            listeners,
            store_dir,
        }
    }

    pub async fn mta(&self) -> Mta {
        Mta::connect(self.addr).await
    }
}

/// The MTA end of one milter connection.
pub struct Mta {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    /// What the milter answered in option negotiation.
    pub actions: u32,
    pub protocol: u32,
    pub macros: Vec<(u32, String)>,
}

impl Mta {
    pub async fn connect(addr: SocketAddr) -> Mta {
        Mta {
            stream: TcpStream::connect(addr).await.unwrap(),
            decoder: Decoder::new(1 << 20),
            buf: Vec::new(),
            actions: 0,
            protocol: 0,
            macros: Vec::new(),
        }
    }

    pub async fn negotiate(&mut self, version: u32, actions: u32, protocol: u32) -> u32 {
        self.send(&Command::OptNeg {
            version,
            actions,
            protocol,
        })
        .await;
        match self.reply().await.expect("optneg reply") {
            Reply::OptNeg {
                version,
                actions,
                protocol,
                macros,
            } => {
                self.actions = actions;
                self.protocol = protocol;
                self.macros = macros;
                version
            }
            other => panic!("expected optneg, got {other:?}"),
        }
    }

    pub async fn send(&mut self, command: &Command) {
        let mut out = Vec::new();
        command.encode(&mut out);
        self.send_raw(&out).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next reply, or `None` when the milter closed the connection.
    pub async fn reply(&mut self) -> Option<Reply> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Decoded::Frame(f) => return Some(Reply::decode(f).expect("valid reply")),
                Decoded::Incomplete => {}
                other => panic!("bad frame from milter: {other:?}"),
            }
            let n =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("milter answers within 10 s")
                    .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Replies up to and including the final one (continue, accept, reject, ...).
    pub async fn replies(&mut self) -> Vec<Reply> {
        let mut all = Vec::new();
        while let Some(r) = self.reply().await {
            let last = matches!(
                r,
                Reply::Continue
                    | Reply::Accept
                    | Reply::Reject
                    | Reply::Tempfail
                    | Reply::Discard
                    | Reply::ReplyCode { .. }
                    | Reply::Skip
            );
            all.push(r);
            if last {
                break;
            }
        }
        all
    }

    /// Sends a command; waits for the replies unless `no_reply` was negotiated for it.
    pub async fn step(&mut self, command: Command, no_reply: u32) -> Vec<Reply> {
        self.send(&command).await;
        if no_reply != 0 && self.protocol & no_reply != 0 {
            Vec::new()
        } else {
            self.replies().await
        }
    }

    pub async fn macros(&mut self, stage: u8, pairs: &[(&str, &str)]) {
        let pairs = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        self.send(&Command::Macro { stage, pairs }).await;
    }

    pub async fn connect_client(&mut self, ip: &str, helo: &str) {
        self.macros(
            SMFIC_CONNECT,
            &[("j", "mx.test.example"), ("{daemon_name}", "smtpd")],
        )
        .await;
        let family = if ip.contains(':') {
            Family::Inet6
        } else {
            Family::Inet4
        };
        let r = self
            .step(
                Command::Connect {
                    hostname: "client.example".into(),
                    family,
                    port: 40000,
                    address: ip.into(),
                },
                SMFIP_NR_CONN,
            )
            .await;
        assert!(r.is_empty() || r == vec![Reply::Continue], "{r:?}");
        if self.protocol & SMFIP_NOHELO == 0 {
            let r = self
                .step(Command::Helo { name: helo.into() }, SMFIP_NR_HELO)
                .await;
            assert!(r.is_empty() || r == vec![Reply::Continue], "{r:?}");
        }
    }

    /// One message, Postfix-style; returns the replies to MAIL (if not continue) or to EOM.
    pub async fn message(
        &mut self,
        queue_id: &str,
        mail_from: &str,
        auth: Option<&str>,
        raw: &[u8],
    ) -> Vec<Reply> {
        self.message_to(queue_id, mail_from, auth, &["bob@example.net"], raw)
            .await
    }

    /// As [`Mta::message`], to these recipients.
    pub async fn message_to(
        &mut self,
        queue_id: &str,
        mail_from: &str,
        auth: Option<&str>,
        rcpts: &[&str],
        raw: &[u8],
    ) -> Vec<Reply> {
        let mut mail_macros = vec![("i", queue_id)];
        if let Some(user) = auth {
            mail_macros.push(("{auth_authen}", user));
        }
        self.macros(SMFIC_MAIL, &mail_macros).await;
        let r = self
            .step(
                Command::Mail {
                    args: vec![format!("<{mail_from}>")],
                },
                SMFIP_NR_MAIL,
            )
            .await;
        // No reply (SMFIP_NR_MAIL) or continue: on with the message.
        if !r.is_empty() && r != vec![Reply::Continue] {
            return r;
        }
        for rcpt in rcpts {
            self.step(
                Command::Rcpt {
                    args: vec![format!("<{rcpt}>")],
                },
                SMFIP_NR_RCPT,
            )
            .await;
        }
        if self.protocol & SMFIP_NODATA == 0 {
            self.step(Command::Data, SMFIP_NR_DATA).await;
        }
        let (headers, body) = split_message(raw, self.protocol & SMFIP_HDR_LEADSPC != 0);
        for (name, value) in headers {
            self.step(Command::Header { name, value }, SMFIP_NR_HDR)
                .await;
        }
        self.step(Command::EndOfHeaders, SMFIP_NR_EOH).await;
        for chunk in body.chunks(65535) {
            let r = self
                .step(
                    Command::Body {
                        chunk: chunk.to_vec(),
                    },
                    SMFIP_NR_BODY,
                )
                .await;
            if r == vec![Reply::Skip] {
                break;
            }
        }
        self.macros(SMFIC_BODYEOB, &[("i", queue_id)]).await;
        self.send(&Command::EndOfMessage { chunk: Vec::new() })
            .await;
        self.replies().await
    }
}

/// Header fields as an MTA hands them to a milter: folds joined with LF, the space after the
/// colon dropped unless `SMFIP_HDR_LEADSPC`.
pub fn split_message(raw: &[u8], leading_space: bool) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let text = raw;
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let end = text[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| pos + p)
            .unwrap_or(text.len());
        let line = &text[pos..end];
        pos = (end + 2).min(text.len());
        if line.is_empty() {
            return (headers, text[pos..].to_vec());
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = headers.last_mut() {
                last.1.push(b'\n');
                last.1.extend_from_slice(line);
            }
            continue;
        }
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let name = String::from_utf8_lossy(&line[..colon]).into_owned();
        let mut value = line.get(colon + 1..).unwrap_or_default();
        if !leading_space && value.first() == Some(&b' ') {
            value = &value[1..];
        }
        headers.push((name, value.to_vec()));
    }
    (headers, Vec::new())
}

/// The Authentication-Results value inserted at index 0, if any.
pub fn inserted_ar(replies: &[Reply]) -> Option<String> {
    replies.iter().find_map(|r| match r {
        Reply::InsertHeader {
            index: 0,
            name,
            value,
        } if name == "Authentication-Results" => Some(value.clone()),
        _ => None,
    })
}
