//! Entry points for the coverage-guided fuzz targets in `fuzz/` (libFuzzer, see the README's
//! "Fuzzing" section). Not a supported API: hidden from the docs, and free to change with
//! the targets.
//!
//! Each function takes the fuzzer's bytes and drives real code with them; none may panic,
//! whatever the bytes. The parsers are called as they are; the two sessions (milter, SMTP)
//! run whole conversations: the milter over an in-memory duplex stream, SMTP over a loopback
//! socket, both with a resolver whose only nameserver is an in-process loopback server
//! answering NXDOMAIN at once, so a lookup fails fast and nothing leaves the machine. The
//! verifier's record cache is seeded with the DKIM keys and DMARC record of
//! `testdata/dns/main.zone`, so signatures on seed messages reach the crypto.

use crate::auth::spf_record::{MacroContext, MacroString, MacroVars, Mechanism, Record};
use crate::auth::Connection;
use crate::config::{AuthConfig, Config, ListenerConfig, TlsMode};
use crate::identity::limits::Guard;
use crate::identity::passwd::PasswdFile;
use crate::identity::Backend;
use crate::milter::listener::MilterStream;
use crate::policy::Policy;
use crate::runtime::smtp_service::SmtpSettings;
use crate::runtime::Snapshot;
use crate::smtp::auth::{self as sasl, Exchange, Mechanism as SaslMechanism, Step};
use crate::smtp::stress::Load;
use crate::smtp::{ClientInfo, MailParams, NextHop, SmtpReply};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::{ResolverCache, Txt};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// Longest a session may take over one input before it counts as hung (a bug).
const SESSION_DEADLINE: Duration = Duration::from_secs(10);

/// `v=spf1` records and their macro-strings (RFC 7208 §4.6, §7): parsed, and every
/// domain-spec expanded and matched against a client address.
pub fn spf_record(data: &[u8]) {
    let vars = MacroVars {
        sender: "strong-bad@email.example.com",
        local: "strong-bad",
        sender_domain: "email.example.com",
        domain: "email.example.com",
        ip: IpAddr::from([192, 0, 2, 3]),
        validated: "mx.example.org",
        helo: "mx.example.org",
        receiver: "mx.test",
        timestamp: 1_700_000_000,
    };
    if let Ok(record) = Record::parse(data) {
        for directive in &record.directives {
            let spec = match &directive.mechanism {
                Mechanism::Include(spec) | Mechanism::Exists(spec) => Some(spec),
                Mechanism::A { domain, cidr } | Mechanism::Mx { domain, cidr } => {
                    let _ = cidr.contains(IpAddr::from([192, 0, 2, 1]), vars.ip);
                    let _ = cidr.contains(
                        "2001:db8::1".parse().unwrap(),
                        "2001:db8::2".parse().unwrap(),
                    );
                    domain.as_ref()
                }
                Mechanism::Ptr(domain) => domain.as_ref(),
                Mechanism::All | Mechanism::Ip4(_) | Mechanism::Ip6(_) => None,
            };
            if let Some(spec) = spec {
                let _ = spec.expand_domain(&vars);
            }
        }
        for spec in record.redirect.iter().chain(&record.exp) {
            let _ = spec.expand_domain(&vars);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for context in [MacroContext::Domain, MacroContext::Explanation] {
            if let Ok(spec) = MacroString::parse(text, context) {
                let _ = spec.trailing_literal();
                let _ = spec.expand(&vars);
                let _ = spec.expand_domain(&vars);
            }
        }
    }
}

/// RFC 6376 §3.2 tag lists as the ARC checks read them, and the ARC header helpers of the
/// sealer (instance numbers, chain state) over a message.
pub fn tag_lists(data: &[u8]) {
    let _ = crate::auth::arc::parse_tag_list(data);
    let _ = crate::auth::arc_canon::instance(data);
    let (fields, body) = crate::sign::seal::split_message(data);
    let _ = crate::auth::arc_canon::ChainState::of(&fields, None);
    let _ = crate::sign::seal::signed_names(&fields, &["From".into(), "Subject".into()]);
    let _ = crate::auth::arc_canon::body_hash_as(body, true, None);
}

/// DKIM key records (`v=DKIM1; k=…; p=…`) compared with a key, as `dns-check` does.
pub fn key_record(data: &[u8], key: &crate::sign::PrivateKey) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::sign::record::compare(text, key);
        let _ = crate::sign::record::character_strings(text);
    }
    let _ = <mail_auth::common::verify::DomainKey as TxtRecordParser>::parse(data);
}

/// Authentication-Results fields (RFC 8601): the authserv-id of a value, and the fields of a
/// message that claim ours.
pub fn authentication_results(data: &[u8]) {
    let _ = crate::auth::message::ar_authserv_id(data);
    let _ = crate::auth::claimed_results(data, "mx.test");
}

/// The configuration file (TOML) through parsing and validation.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text, None);
    }
}

/// A policy file (TOML), and the default policy's rules for a domain of the input.
pub fn policy(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = Policy::parse(text, Path::new("fuzz.toml")) {
            let _ = policy.rules_for("example.com");
            let _ = policy.rules_for("sub.example.com");
        }
    }
}

/// A DMARC aggregate report as the importer receives it (message, XML, gzip or zip), each
/// report found turned into the store's rows.
pub fn dmarc_report(data: &[u8]) {
    for found in crate::report::import::parse_input(data, 1024 * 1024) {
        if let Ok(report) = found.report {
            let _ = crate::report::received::to_new_report(&report, 1_700_000_000_000);
        }
    }
}

/// SMTP AUTH (RFC 4954) PLAIN and LOGIN exchanges: the first line is the AUTH command's
/// argument (mechanism and initial response), each further line a response; then a
/// passwd file (plaintext schemes allowed) made of the rest is checked against the claim.
pub fn smtp_auth(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let (mechanism, initial) = first.split_once(' ').unwrap_or((first, ""));
    let mechanism = match mechanism.to_ascii_uppercase().as_str() {
        "LOGIN" => SaslMechanism::Login,
        _ => SaslMechanism::Plain,
    };
    let mut step = sasl::start(mechanism, initial);
    let mut claim = None;
    loop {
        match step {
            Step::Challenge(exchange, _reply) => match lines.next() {
                Some(line) => step = sasl::respond(exchange, line),
                None => {
                    let _ = sasl::respond(Exchange::Plain, "*");
                    break;
                }
            },
            Step::Done(c) => {
                claim = Some(c);
                break;
            }
            Step::Failed(failure) => {
                let _ = failure.reply();
                break;
            }
        }
    }
    let rest: Vec<&str> = lines.collect();
    // Checked only against plaintext entries of users the file has: a hash in the input,
    // and the Argon2 hash an unknown user is checked against (same time as a known one),
    // cost what they are meant to cost, and that is not the parsing under test.
    if let Ok(file) = PasswdFile::parse(&rest.join("\n"), true) {
        if let Some(claim) = claim {
            let listed = rest
                .iter()
                .any(|l| l.split(':').next() == Some(claim.user.as_str()));
            if listed && !rest.iter().any(|l| l.contains('$')) {
                let _ = file.verify(&claim.user, &claim.password);
            }
            let senders = std::collections::BTreeMap::from([(
                "alice".to_string(),
                vec!["@example.com".to_string(), "bob@example.net".to_string()],
            )]);
            let address = String::from_utf8_lossy(&claim.password);
            let _ = crate::identity::may_send_as(Some(&senders), &claim.user, &address);
            let _ = crate::identity::may_send_as(None, &claim.user, &address);
        }
    }
}

/// A loopback UDP server answering every query with NXDOMAIN (RFC 1035 §4.1.1, RCODE 3), on
/// a thread of its own for the life of the process.
fn nxdomain_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the loopback DNS server");
    let addr = socket.local_addr().expect("its address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if let Some(answer) = nxdomain(&buf[..n]) {
                let _ = socket.send_to(&answer, from);
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
    let mut answer = query.get(..i + 4)?.to_vec();
    answer[2] = 0x80 | (query[2] & 0x78) | 0x04 | (query[2] & 0x01);
    answer[3] = 0x80 | 3;
    answer[6..12].fill(0);
    // One SOA in the authority section (RFC 2308 §3), so the resolver caches the answer
    // (for 300 s) and a name the fuzzer repeats costs no second round trip.
    answer[9] = 1;
    answer.extend_from_slice(&[0xc0, 0x0c, 0, 6, 0, 1, 0, 0, 0x01, 0x2c, 0, 22, 0, 0]);
    for value in [1u32, 3600, 600, 86400, 300] {
        answer.extend_from_slice(&value.to_be_bytes());
    }
    Some(answer)
}

/// Records of `testdata/dns/main.zone` the seed messages need (DKIM keys, DMARC).
const SEEDED_TXT: &[(&str, &str)] = &[
    ("rsa._domainkey.example.com.", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtxmgXZ2ss+By8SaAJRa0JrbcLOlDKC4/0bEQzIZZjeh+EnKmWXrC/yiLHJkO3DtQF4v2nzIxQrl5POOc7e+UjluLTgJ85YDIfu3am4ynbOSqsoN3IBlNIYBQuP4Rxrmta+M4u/Z8f4e+Y14DmmQlkefRQ67k4RyKJX/q4cADP6525E49cods3l8d4/roHlttLlThpSmd/dKIAFUIVlZPisfGU8ijw16sNmjmRML/Ta31+sErxde2pNfxiNskYeHghqEWLTcQoXVG4dQSp+85J6A+/BdYl64V1NJW93wgTZZ3jPmKm1B8dzlUvHdtMiN08xEP64Gpd7pJYoEAPEo/hwIDAQAB"),
    ("ed._domainkey.example.com.", "v=DKIM1; k=ed25519; p=yyiiWiJrD0g71rTX05ozJLm1nNGhZCnVlj4VIlmXSGI="),
    ("_dmarc.example.com.", "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"),
];

/// A snapshot for the sessions: NXDOMAIN for every lookup but the seeded records, AUTH
/// failures not delayed (the delay is a sleep, not code), everything else the defaults.
fn snapshot(trusted: bool) -> Snapshot {
    let mut config = Config {
        authserv_id: "mx.test".into(),
        ..Config::default()
    };
    config.dns.nameservers = vec![nxdomain_server()];
    config.dns.timeout = Duration::from_millis(500);
    config.dns.attempts = 1;
    config.smtp.auth = AuthConfig {
        failure_delay: Duration::ZERO,
        ..AuthConfig::default()
    };
    if !trusted {
        config.trusted_networks = Vec::new();
    }
    let snapshot = Snapshot::new(config).expect("the fuzzing snapshot");
    let until = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let dns = snapshot.verifier.dns();
    for (name, text) in SEEDED_TXT {
        let record: Txt = if name.starts_with("_dmarc") {
            mail_auth::dmarc::Dmarc::parse(text.as_bytes()).into()
        } else {
            mail_auth::common::verify::DomainKey::parse(text.as_bytes()).into()
        };
        dns.txt.insert((*name).into(), record, until);
    }
    snapshot
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A message through the whole inbound check (SPF at MAIL FROM, DKIM, ARC, DMARC, policy,
/// the Authentication-Results rendered), as the HTTP API's check does.
pub struct Verify {
    runtime: Runtime,
    snapshot: Snapshot,
}

impl Default for Verify {
    fn default() -> Self {
        let runtime = runtime();
        let snapshot = runtime.block_on(async { snapshot(false) });
        Verify { runtime, snapshot }
    }
}

impl Verify {
    pub fn run(&self, raw: &[u8]) {
        let snap = &self.snapshot;
        let mut conn = Connection::new(IpAddr::from([192, 0, 2, 10]));
        conn.helo = Some("mail.example.com".into());
        let decision = self.runtime.block_on(crate::check::check_message(
            &snap.verifier,
            &snap.policy,
            &conn,
            "<alice@example.com>",
            raw,
        ));
        let _ = decision.authentication_results();
        let _ = crate::check::apply_edits(raw, &decision.edits);
    }
}

/// The milter listener's connection handler over an in-memory stream (the tests' duplex).
impl MilterStream for tokio::io::DuplexStream {}

/// A milter conversation: the bytes are what the MTA sends, fed to a real session over an
/// in-memory duplex stream while its replies are read and dropped.
pub struct MilterSession {
    runtime: Runtime,
    snapshot: Arc<Snapshot>,
}

impl Default for MilterSession {
    fn default() -> Self {
        let runtime = runtime();
        let snapshot = Arc::new(runtime.block_on(async { snapshot(true) }));
        MilterSession { runtime, snapshot }
    }
}

impl MilterSession {
    pub fn run(&self, data: &[u8]) {
        let snapshot = Arc::clone(&self.snapshot);
        self.runtime.block_on(async move {
            let (mut mta, filter) = tokio::io::duplex(64 * 1024);
            let (_stop_tx, stop) = tokio::sync::watch::channel(false);
            let session = crate::milter::listener::serve_connection(filter, snapshot, stop);
            let client = async {
                let (mut read, mut write) = tokio::io::split(&mut mta);
                let writing = async {
                    let _ = write.write_all(data).await;
                    let _ = write.shutdown().await;
                };
                let reading = async {
                    let mut sink = Vec::new();
                    let _ = read.read_to_end(&mut sink).await;
                };
                tokio::join!(writing, reading);
            };
            let both = async { tokio::join!(session, client) };
            tokio::time::timeout(SESSION_DEADLINE, both)
                .await
                .expect("the milter session ends when the MTA closes");
        });
    }
}

/// A next hop that takes every message and keeps nothing.
#[derive(Clone, Copy, Default)]
struct AcceptingHop;

impl NextHop for AcceptingHop {
    async fn mail(&mut self, _: &ClientInfo, _: &str, _: &MailParams) -> Result<(), SmtpReply> {
        Ok(())
    }

    async fn rcpt(&mut self, _: &str) -> Result<(), SmtpReply> {
        Ok(())
    }

    async fn data(&mut self, _: &[u8]) -> Result<SmtpReply, SmtpReply> {
        Ok(SmtpReply::new(250, "2.0.0", "queued"))
    }

    async fn reset(&mut self) {}

    async fn quit(&mut self) {}
}

/// An SMTP conversation: the first byte picks the listener (MX from an outside address, MX
/// from a trusted one, or submission with AUTH against a plaintext passwd file, user `alice`
/// password `secret`); the rest is what the client sends, over a loopback socket to a real
/// session, while the replies are read and dropped.
pub struct SmtpSession {
    runtime: Runtime,
    snapshot: Arc<Snapshot>,
    listener: tokio::net::TcpListener,
    mx: Arc<SmtpSettings>,
    submission: Arc<SmtpSettings>,
}

impl Default for SmtpSession {
    fn default() -> Self {
        let runtime = runtime();
        let (snapshot, listener) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            (Arc::new(snapshot(true)), listener)
        });
        let mx = SmtpSettings {
            hostname: "mx.test".into(),
            local_domains: vec!["example.org".into(), "example.net".into()],
            max_message_size: 256 * 1024,
            ..SmtpSettings::default()
        };
        let passwd = PasswdFile::parse("alice:{PLAIN}secret\n", true).expect("passwd");
        let mut listener_config =
            ListenerConfig::submission(SocketAddr::from(([127, 0, 0, 1], 587)), TlsMode::StartTls);
        listener_config.require_tls = false;
        listener_config.plaintext_auth = true;
        listener_config.trusted_without_auth = false;
        let submission = SmtpSettings {
            listener: listener_config,
            credentials: Some(Arc::new(Backend::Passwd(Arc::new(passwd)))),
            ..mx.clone()
        };
        SmtpSession {
            runtime,
            snapshot,
            listener,
            mx: Arc::new(mx),
            submission: Arc::new(submission),
        }
    }
}

impl SmtpSession {
    pub fn run(&self, data: &[u8]) {
        let Some((&selector, input)) = data.split_first() else {
            return;
        };
        let (settings, peer) = match selector % 3 {
            0 => (&self.mx, IpAddr::from([192, 0, 2, 10])),
            1 => (&self.mx, IpAddr::from([127, 0, 0, 1])),
            _ => (&self.submission, IpAddr::from([192, 0, 2, 20])),
        };
        let settings = Arc::clone(settings);
        let snapshot = Arc::clone(&self.snapshot);
        let addr = self.listener.local_addr().expect("listener address");
        self.runtime.block_on(async move {
            let connect = tokio::net::TcpStream::connect(addr);
            let (client, accepted) = tokio::join!(connect, self.listener.accept());
            let (Ok(mut client), Ok((stream, _))) = (client, accepted) else {
                panic!("loopback connection failed");
            };
            let (_stop_tx, stop) = tokio::sync::watch::channel(false);
            let load = Load::calm(Arc::clone(snapshot.journal.metrics()));
            let session = crate::smtp::session::serve_connection(
                stream,
                SocketAddr::new(peer, 40000),
                snapshot,
                settings,
                AcceptingHop,
                load,
                Arc::new(Guard::default()),
                stop,
            );
            let conversation = async {
                let (mut read, mut write) = client.split();
                let writing = async {
                    let _ = write.write_all(input).await;
                    let _ = write.shutdown().await;
                };
                let reading = async {
                    let mut sink = Vec::new();
                    let _ = read.read_to_end(&mut sink).await;
                };
                tokio::join!(writing, reading);
            };
            let both = async { tokio::join!(session, conversation) };
            tokio::time::timeout(SESSION_DEADLINE, both)
                .await
                .expect("the SMTP session ends when the client closes");
        });
    }
}
