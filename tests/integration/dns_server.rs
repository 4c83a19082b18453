//! An in-process DNS server for integration tests: answers from a [`Zone`] over UDP and TCP on
//! one loopback port, so authmilter's real hickory resolver can be pointed at it.
//!
//! It poses as a recursive resolver (RA=1) that is also authoritative (AA=1) for everything in
//! the zone, because that is what a stub resolver expects from its configured nameserver.
//! Timeouts are simulated by not replying at all; SERVFAIL, NXDOMAIN and NODATA are real
//! replies. Oversized UDP replies are truncated (TC=1) so clients exercise their TCP fallback.

// Shared by every integration-test module; no single module uses the whole API.
#![allow(dead_code)]

pub use crate::dns_zone::{Entry, Outcome, Zone};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, NULL, PTR, SOA, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{AbortHandle, JoinSet};

/// Classic DNS limit for UDP replies to clients that do not send EDNS.
const PLAIN_UDP_LIMIT: usize = 512;
/// What we advertise in our OPT record: the common "no fragmentation" EDNS size.
const OUR_EDNS_PAYLOAD: u16 = 1232;

/// A running server. Dropping it stops its tasks and closes its sockets.
pub struct DnsServer {
    /// UDP and TCP both listen here (127.0.0.1, same port).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

struct Shared {
    zone: RwLock<Arc<Zone>>,
    queries: AtomicUsize,
    tcp_queries: AtomicUsize,
    log: Mutex<Vec<(String, RecordType)>>,
}

impl Shared {
    fn zone(&self) -> Arc<Zone> {
        // A poisoned lock only means a test panicked while swapping zones; the Arc is intact.
        self.zone.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl DnsServer {
    /// Binds 127.0.0.1 (UDP on a free port, then TCP on the same number) and starts serving on
    /// the current tokio runtime. Panics if no port works: a test cannot run without it.
    pub async fn start(zone: Zone) -> DnsServer {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("UDP socket has an address");
        let shared = Arc::new(Shared {
            zone: RwLock::new(Arc::new(zone)),
            queries: AtomicUsize::new(0),
            tcp_queries: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(udp, shared.clone())).abort_handle(),
            tokio::spawn(serve_tcp(tcp, shared.clone())).abort_handle(),
        ];
        DnsServer {
            addr,
            shared,
            tasks,
        }
    }

    /// This server as hickory's one nameserver, UDP first with TCP for truncated replies (the
    /// shape authmilter builds from its `nameservers` setting).
    pub fn resolver_config(&self) -> ResolverConfig {
        let mut udp = ConnectionConfig::udp();
        udp.port = self.addr.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = self.addr.port();
        let server = NameServerConfig::new(self.addr.ip(), true, vec![udp, tcp]);
        ResolverConfig::from_parts(None, vec![], vec![server])
    }

    /// Options for tests: short timeout, a single try, no cache (so every lookup reaches us),
    /// names always absolute.
    pub fn resolver_opts() -> ResolverOpts {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(1);
        // In hickory 0.26 `attempts` counts *retries* (RetryDnsHandle), so 1 would mean two
        // tries and a 2 s timeout, and SERVFAIL asked twice.
        opts.attempts = 0;
        opts.cache_size = 0;
        opts.ndots = 0;
        opts.edns0 = true;
        opts
    }

    /// A resolver using [`resolver_config`](Self::resolver_config) and `opts`.
    pub fn resolver_with(&self, opts: ResolverOpts) -> TokioResolver {
        TokioResolver::builder_with_config(self.resolver_config(), TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .expect("build a hickory resolver")
    }

    /// A resolver with [`resolver_opts`](Self::resolver_opts).
    pub fn resolver(&self) -> TokioResolver {
        self.resolver_with(Self::resolver_opts())
    }

    /// Replaces the zone for all later queries; in-flight ones finish with the old one.
    pub fn set_zone(&self, zone: Zone) {
        *self.shared.zone.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(zone);
    }

    pub fn zone(&self) -> Arc<Zone> {
        self.shared.zone()
    }

    /// Well-formed queries received so far (UDP + TCP, including ones left unanswered; hickory
    /// re-sends unanswered UDP queries, so a lookup that times out counts several times).
    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }

    /// The subset of [`queries`](Self::queries) that came over TCP.
    pub fn tcp_queries(&self) -> usize {
        self.shared.tcp_queries.load(Ordering::SeqCst)
    }

    /// Every question received, in arrival order: (lower-cased name without the dot, type).
    pub fn query_log(&self) -> Vec<(String, RecordType)> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many times (name, type) was asked.
    pub fn queries_for(&self, name: &str, rtype: RecordType) -> usize {
        let name = crate::dns_zone::normalize_name(name);
        self.query_log()
            .iter()
            .filter(|(n, t)| *n == name && *t == rtype)
            .count()
    }

    /// Zeroes the counters and the log, e.g. between scenarios sharing one server.
    pub fn reset_counters(&self) {
        self.shared.queries.store(0, Ordering::SeqCst);
        self.shared.tcp_queries.store(0, Ordering::SeqCst);
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    let mut last_error = None;
    // The UDP port the kernel picks may already be taken for TCP; another pick usually works.
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a UDP socket on 127.0.0.1");
        let port = udp.local_addr().expect("UDP local address").port();
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(tcp) => return (udp, tcp),
            Err(e) => last_error = Some(e),
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1: {last_error:?}");
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP errors from earlier replies surface here on some systems; keep serving.
            Err(_) => continue,
        };
        if let Some(reply) = answer(&buf[..len], &shared, Transport::Udp) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the connection tasks here means aborting this task also ends every connection.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            // Usually fd exhaustion; back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        connections.spawn(serve_tcp_connection(stream, shared.clone()));
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(reply) = answer(&query, &shared, Transport::Tcp) else {
            continue;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// The wire reply to a wire query, or `None` when the query is garbage or the zone says
/// "time out".
fn answer(query: &[u8], shared: &Shared, transport: Transport) -> Option<Vec<u8>> {
    // hickory's decoder has `panic!`s for "impossible" states; a hostile packet must not be
    // able to kill the serving task.
    let request = std::panic::catch_unwind(|| Message::from_vec(query))
        .ok()?
        .ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    shared.queries.fetch_add(1, Ordering::SeqCst);
    if transport == Transport::Tcp {
        shared.tcp_queries.fetch_add(1, Ordering::SeqCst);
    }

    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(OUR_EDNS_PAYLOAD);
        response.set_edns(edns);
    }

    let code = match (&request.metadata.op_code, request.queries.as_slice()) {
        (OpCode::Query, [question]) => {
            let qname = question.name();
            let qtype = question.query_type();
            let key = name_key(qname);
            shared
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((key.clone(), qtype));
            let zone = shared.zone();
            fill_answers(&mut response, &zone, &key, qname, qtype)?
        }
        (OpCode::Query, _) => ResponseCode::FormErr,
        _ => ResponseCode::NotImp,
    };
    response.metadata.response_code = code;

    let wire = response.to_vec().ok()?;
    let limit = match (transport, &request.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(edns)) => usize::from(edns.max_payload()).max(PLAIN_UDP_LIMIT),
        (Transport::Udp, None) => PLAIN_UDP_LIMIT,
    };
    if wire.len() <= limit {
        return Some(wire);
    }
    // Too big for this transport: keep header and question, drop the records, set TC.
    response.truncate().to_vec().ok()
}

/// Adds the zone's answer to `response`; `None` means "do not reply" (simulated timeout).
fn fill_answers(
    response: &mut Message,
    zone: &Zone,
    key: &str,
    qname: &Name,
    qtype: RecordType,
) -> Option<ResponseCode> {
    let ttl = zone.ttl();
    let to_records = |owner: &Name, entries: &[&Entry]| -> Option<Vec<Record>> {
        entries
            .iter()
            .map(|e| rdata(e).map(|d| Record::from_rdata(owner.clone(), ttl, d)))
            .collect()
    };
    match zone.lookup(key, qtype) {
        Outcome::Records(entries) => match to_records(qname, &entries) {
            Some(records) => {
                response.add_answers(records);
                Some(ResponseCode::NoError)
            }
            None => Some(ResponseCode::ServFail),
        },
        Outcome::Alias { target, records } => {
            let Some(target_name) = wire_name(target) else {
                return Some(ResponseCode::ServFail);
            };
            let alias = RData::CNAME(CNAME(target_name.clone()));
            response.add_answer(Record::from_rdata(qname.clone(), ttl, alias));
            match to_records(&target_name, &records) {
                Some(records) => {
                    response.add_answers(records);
                    Some(ResponseCode::NoError)
                }
                None => Some(ResponseCode::ServFail),
            }
        }
        Outcome::NoData => {
            response.add_authority(negative_soa(ttl));
            Some(ResponseCode::NoError)
        }
        Outcome::NxDomain => {
            response.add_authority(negative_soa(ttl));
            Some(ResponseCode::NXDomain)
        }
        Outcome::ServFail => Some(ResponseCode::ServFail),
        Outcome::Timeout => None,
    }
}

/// Negative answers carry an SOA, as RFC 2308 servers send, because resolvers (hickory
/// included) only cache NXDOMAIN/NODATA for the SOA's TTL. The zone has no apex, so the root,
/// an ancestor of every name, owns it.
fn negative_soa(ttl: u32) -> Record {
    let name = |text: &str| Name::from_ascii(text).expect("constant name");
    let soa = SOA::new(
        name("ns.test."),
        name("hostmaster.test."),
        1,
        3600,
        600,
        86_400,
        ttl,
    );
    Record::from_rdata(Name::root(), ttl, RData::SOA(soa))
}

/// The zone key for a question name: labels as text, lower-cased, no root dot.
fn name_key(name: &Name) -> String {
    name.iter()
        .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(".")
}

/// Zone data is free text (the SPF suite has names like `foo:bar/baz.example.com`), so names
/// are built from raw labels rather than parsed as presentation format.
fn wire_name(text: &str) -> Option<Name> {
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() {
        return Some(Name::root());
    }
    Name::from_labels(text.split('.').map(str::as_bytes)).ok()
}

/// A TXT/SPF RR with no character-strings at all (the SPF suite's `SPF: [ ]`) goes on the
/// wire as it is: RDLENGTH 0, as a real server sends it (RFC 7208 suite `null-text`, §3.3).
/// hickory's decoder refuses such a message (InvalidEmptyRecord); the program under test has
/// to cope with that, not this server.
fn wire_strings(strings: &[Vec<u8>]) -> Vec<&[u8]> {
    strings.iter().map(Vec::as_slice).collect()
}

fn rdata(entry: &Entry) -> Option<RData> {
    Some(match entry {
        Entry::Txt(strings) => RData::TXT(TXT::from_bytes(wire_strings(strings))),
        Entry::Spf(strings) => {
            let mut bytes = Vec::new();
            for s in wire_strings(strings) {
                bytes.push(u8::try_from(s.len()).ok()?);
                bytes.extend_from_slice(s);
            }
            // Built by hand because NULL::with() is not for constructing arbitrary RDATA.
            let mut raw = NULL::new();
            raw.anything = bytes;
            RData::Unknown {
                code: RecordType::from(crate::dns_zone::SPF_TYPE),
                rdata: raw,
            }
        }
        Entry::A(ip) => RData::A(A(*ip)),
        Entry::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        Entry::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, wire_name(exchange)?)),
        Entry::Ptr(target) => RData::PTR(PTR(wire_name(target)?)),
        Entry::Cname(target) => RData::CNAME(CNAME(wire_name(target)?)),
        Entry::Timeout | Entry::ServFail => return None,
    })
}
