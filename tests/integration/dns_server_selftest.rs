//! Proves the test DNS server and its zone loaders behave like real DNS as seen through
//! hickory's stub resolver (the one authmilter uses), so later failures in the mail tests
//! cannot be blamed on the fixture.

use crate::dns_server::{DnsServer, Entry, Outcome, Zone};
use crate::dns_zone::SPF_TYPE;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

const SPF_SUITE: &str = "/work/shared/conformance/spf/rfc7208-tests.json";
const SPF_SUITE_YAML: &str = "/work/shared/conformance/spf/rfc7208-tests.yml";
const MAIL_DKIM_DNS: &str = "/work/shared/conformance/dkim/mail-dkim/dns.json";

fn testdata(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(path)
}

/// Every TXT RR in the answer, each as its list of character-strings.
async fn txt(resolver: &TokioResolver, name: &str) -> Result<Vec<Vec<String>>, NetError> {
    let lookup = resolver.lookup(name, RecordType::TXT).await?;
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The raw RDATA of every type-99 RR in the answer.
async fn spf99(resolver: &TokioResolver, name: &str) -> Result<Vec<Vec<u8>>, NetError> {
    let lookup = resolver.lookup(name, RecordType::from(SPF_TYPE)).await?;
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::Unknown { code, rdata } if u16::from(*code) == SPF_TYPE => {
                Some(rdata.anything.clone())
            }
            _ => None,
        })
        .collect())
}

fn is_servfail(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))
    )
}

fn is_nodata(e: &NetError) -> bool {
    e.is_no_records_found() && !e.is_nx_domain()
}

/// Runs a lookup that must time out, and checks it failed as a timeout after about the
/// resolver's 1 s budget (a reply of any kind would end it sooner).
async fn assert_times_out<T: std::fmt::Debug>(
    lookup: impl std::future::Future<Output = Result<T, NetError>>,
) {
    let start = Instant::now();
    let result = lookup.await;
    let took = start.elapsed();
    match result {
        Err(NetError::Timeout) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(900),
        "gave up too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took too long: {took:?}");
}

fn spf_scenario(description: &str) -> Value {
    let text = std::fs::read_to_string(SPF_SUITE).expect("read the SPF suite JSON");
    let suite: Value = serde_json::from_str(&text).expect("SPF suite is JSON");
    suite["scenarios"]
        .as_array()
        .expect("scenarios list")
        .iter()
        .find(|s| s["description"] == description)
        .unwrap_or_else(|| panic!("no scenario {description:?}"))
        .clone()
}

#[tokio::test]
async fn txt_single_and_multi_string() {
    let mut zone = Zone::new();
    zone.txt("one.example", "v=spf1 -all")
        .txt_strings("two.example", ["v=spf1 ip4:", "192.0.2.5 -all"])
        .txt("two.example", "second RR");
    let server = DnsServer::start(zone).await;
    let resolver = server.resolver();

    assert_eq!(
        txt(&resolver, "one.example.").await.unwrap(),
        vec![vec!["v=spf1 -all"]]
    );
    let mut two = txt(&resolver, "TWO.Example.").await.unwrap();
    two.sort();
    assert_eq!(
        two,
        vec![
            vec!["second RR".to_string()],
            vec!["v=spf1 ip4:".into(), "192.0.2.5 -all".into()]
        ]
    );
}

#[tokio::test]
async fn address_mail_and_pointer_records() {
    let zone = Zone::from_file(testdata("dns/selftest.zone")).expect("load selftest.zone");
    let server = DnsServer::start(zone).await;
    let resolver = server.resolver();

    let a: Vec<_> = resolver
        .ipv4_lookup("mail.example.com.")
        .await
        .unwrap()
        .answers()
        .iter()
        .map(|r| r.data.clone())
        .collect();
    assert_eq!(
        a,
        vec![RData::A(
            "192.0.2.10".parse::<std::net::Ipv4Addr>().unwrap().into()
        )]
    );
    let aaaa = resolver.lookup_ip("mail.example.com.").await.unwrap();
    let ips: Vec<_> = aaaa.iter().map(|ip| ip.to_string()).collect();
    assert!(ips.contains(&"2001:db8::10".to_string()), "{ips:?}");

    let mx = resolver.mx_lookup("example.com.").await.unwrap();
    let mut mx: Vec<_> = mx
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
            _ => None,
        })
        .collect();
    mx.sort();
    assert_eq!(
        mx,
        vec![
            (10, "mail.example.com.".into()),
            (20, "backup.example.com.".into())
        ]
    );

    let ptr = resolver
        .reverse_lookup("192.0.2.10".parse::<std::net::IpAddr>().unwrap())
        .await
        .unwrap();
    let names: Vec<_> = ptr.answers().iter().map(|r| r.data.to_string()).collect();
    assert_eq!(names, vec!["mail.example.com."]);

    // The quoted form from the file: two strings, escapes decoded.
    assert_eq!(
        txt(&resolver, "split.example.com.").await.unwrap(),
        vec![vec!["v=spf1 ip4:", "192.0.2.5 \"x\" A -all"]]
    );
}

#[tokio::test]
async fn cname_is_answered_with_its_target_in_one_reply() {
    let mut zone = Zone::new();
    zone.cname("alias.example", "target.example.")
        .txt("target.example", "v=spf1 -all")
        .cname("dangling.example", "nowhere.example");
    let server = DnsServer::start(zone).await;
    let resolver = server.resolver();

    let lookup = resolver
        .lookup("alias.example.", RecordType::TXT)
        .await
        .unwrap();
    let kinds: Vec<_> = lookup.answers().iter().map(|r| r.record_type()).collect();
    assert_eq!(kinds, vec![RecordType::CNAME, RecordType::TXT]);
    assert_eq!(
        server.queries(),
        1,
        "the target should come in the same reply"
    );

    // Out-of-zone target: the resolver chases it itself and gets NXDOMAIN.
    let err = resolver
        .lookup("dangling.example.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(err.is_nx_domain(), "{err:?}");
    assert_eq!(server.queries_for("nowhere.example", RecordType::TXT), 1);
}

#[tokio::test]
async fn nxdomain_and_nodata_are_distinct() {
    let mut zone = Zone::new();
    zone.a("host.example", "192.0.2.1");
    let server = DnsServer::start(zone).await;
    let resolver = server.resolver();

    let nx = resolver
        .lookup("absent.example.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(nx.is_nx_domain(), "{nx:?}");
    let nodata = resolver
        .lookup("host.example.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(is_nodata(&nodata), "{nodata:?}");
}

#[tokio::test]
async fn timeout_markers_and_error_names_get_no_reply() {
    let zone = Zone::from_file(testdata("dns/selftest.zone")).expect("load selftest.zone");
    let server = DnsServer::start(zone).await;
    let resolver = server.resolver();

    // TXT is listed before the marker, so it is answered; A is listed after, so it times out.
    // The TXT listed after the marker is never seen.
    assert_eq!(
        txt(&resolver, "partial.example.com.").await.unwrap(),
        vec![vec!["ok"]]
    );
    // Concurrently, to pay the 1 s timeout once.
    tokio::join!(
        assert_times_out(resolver.lookup("partial.example.com.", RecordType::A)),
        assert_times_out(resolver.lookup("slow.example.com.", RecordType::TXT)),
        assert_times_out(resolver.lookup("error.anything.example.", RecordType::TXT)),
    );
}

#[tokio::test]
async fn servfail_is_reported() {
    let zone = Zone::from_file(testdata("dns/selftest.zone")).expect("load selftest.zone");
    let server = DnsServer::start(zone).await;
    let err = server
        .resolver()
        .lookup("broken.example.com.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(is_servfail(&err), "{err:?}");
    assert_eq!(
        server.queries(),
        1,
        "a SERVFAIL reply must not look like a lost packet"
    );
}

#[tokio::test]
async fn large_txt_falls_back_to_tcp() {
    let key = "p=".to_string() + &"A".repeat(1500);
    let mut zone = Zone::new();
    zone.txt("medium._domainkey.example", &key[..600])
        .txt("big._domainkey.example", &key);
    let server = DnsServer::start(zone).await;

    // Without EDNS the UDP limit is 512 bytes.
    let mut opts = DnsServer::resolver_opts();
    opts.edns0 = false;
    let plain = server.resolver_with(opts);
    let got = txt(&plain, "medium._domainkey.example.").await.unwrap();
    assert_eq!(got[0].concat(), &key[..600]);
    assert_eq!(got[0].len(), 3, "600 bytes travel as 255+255+90");
    assert_eq!(server.tcp_queries(), 1);

    // With EDNS the client's payload size (1232 in hickory) is the limit.
    let edns = server.resolver();
    assert_eq!(
        txt(&edns, "medium._domainkey.example.").await.unwrap()[0].concat(),
        &key[..600]
    );
    assert_eq!(server.tcp_queries(), 1, "600 bytes fit an EDNS UDP reply");
    assert_eq!(
        txt(&edns, "big._domainkey.example.").await.unwrap()[0].concat(),
        key
    );
    assert_eq!(server.tcp_queries(), 2);
}

#[tokio::test]
async fn raw_wire_echoes_id_question_flags_and_edns() {
    let mut zone = Zone::new();
    zone.txt("big.example", "x".repeat(700));
    let server = DnsServer::start(zone).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server.addr).await.unwrap();

    // Garbage first: it must be ignored without killing the server.
    socket.send(&[0x12, 0x34, 0x01]).await.unwrap();
    socket.send(&[0xff; 40]).await.unwrap();

    let mut query = Message::query();
    query.metadata.id = 0xbeef;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii("Big.Example.").unwrap(),
        RecordType::TXT,
    ));
    socket.send(&query.to_vec().unwrap()).await.unwrap();
    let reply = receive(&socket).await;
    assert_eq!(reply.metadata.id, 0xbeef);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert!(reply.metadata.recursion_available && reply.metadata.recursion_desired);
    assert!(reply.metadata.truncation, "700 bytes cannot fit 512");
    assert!(reply.answers.is_empty());
    assert_eq!(
        reply.queries[0].name().to_ascii(),
        "Big.Example.",
        "question echoed verbatim"
    );
    assert!(reply.edns.is_none(), "no OPT unless the query had one");

    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    query.metadata.id = 0xcafe;
    query.set_edns(edns);
    socket.send(&query.to_vec().unwrap()).await.unwrap();
    let reply = receive(&socket).await;
    assert_eq!(reply.metadata.id, 0xcafe);
    assert!(!reply.metadata.truncation && reply.metadata.authoritative);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.answers[0].ttl, 300);
    assert!(reply.edns.is_some(), "OPT echoed");
    assert_eq!(server.queries(), 2, "garbage is not counted");
}

async fn receive(socket: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 65_535];
    let len = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .expect("server replied")
        .unwrap();
    Message::from_vec(&buf[..len]).expect("reply decodes")
}

#[tokio::test]
async fn counter_shows_caching_and_zone_swaps_take_effect() {
    let mut zone = Zone::new();
    zone.txt("swap.example", "old");
    let server = DnsServer::start(zone).await;
    let mut opts = DnsServer::resolver_opts();
    opts.cache_size = 64;
    let caching = server.resolver_with(opts);

    assert_eq!(
        txt(&caching, "swap.example.").await.unwrap(),
        vec![vec!["old"]]
    );
    assert_eq!(
        txt(&caching, "swap.example.").await.unwrap(),
        vec![vec!["old"]]
    );
    assert_eq!(
        server.queries(),
        1,
        "second lookup should come from hickory's cache"
    );
    // Negative answers carry an SOA, so they are cached too.
    for _ in 0..2 {
        let nx = caching
            .lookup("absent.example.", RecordType::TXT)
            .await
            .unwrap_err();
        assert!(nx.is_nx_domain(), "{nx:?}");
    }
    assert_eq!(server.queries(), 2, "NXDOMAIN should be cached");

    let mut zone = Zone::new();
    zone.txt("swap.example", "new");
    server.set_zone(zone);
    server.reset_counters();
    assert_eq!(
        txt(&server.resolver(), "swap.example.").await.unwrap(),
        vec![vec!["new"]]
    );
    assert_eq!(
        server.query_log(),
        vec![("swap.example".to_string(), RecordType::TXT)]
    );
}

#[tokio::test]
async fn dropping_the_server_closes_its_port() {
    let server = DnsServer::start(Zone::new()).await;
    let addr = server.addr;
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(2);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "TCP listener still open after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn spf_suite_record_lookup_rules_over_the_wire() {
    let scenario = spf_scenario("Record lookup");
    let zone = Zone::from_spf_suite_zonedata(&scenario["zonedata"]).unwrap();
    let server = DnsServer::start(zone).await;
    let resolver = server.resolver();
    let spf_rdata = |s: &str| [&[s.len() as u8][..], s.as_bytes()].concat();

    // both: explicit TXT, so no duplicate copy of the SPF record.
    assert_eq!(
        txt(&resolver, "both.example.net.").await.unwrap(),
        vec![vec!["v=spf1 -all"]]
    );
    // spfonly: `TXT: NONE` suppresses the copy, the name still exists -> NODATA for TXT.
    let err = txt(&resolver, "spfonly.example.net.").await.unwrap_err();
    assert!(is_nodata(&err), "{err:?}");
    assert_eq!(
        spf99(&resolver, "spfonly.example.net.").await.unwrap(),
        vec![spf_rdata("v=spf1 -all")]
    );
    // spftimeout: TXT before the marker answers, SPF times out.
    assert_eq!(
        txt(&resolver, "spftimeout.example.net.").await.unwrap(),
        vec![vec!["v=spf1 -all"]]
    );
    // txttimeout: the other way round.
    assert_eq!(
        spf99(&resolver, "txttimeout.example.net.").await.unwrap(),
        vec![spf_rdata("v=spf1 -all")]
    );
    tokio::join!(
        assert_times_out(spf99(&resolver, "spftimeout.example.net.")),
        assert_times_out(txt(&resolver, "txttimeout.example.net.")),
        assert_times_out(txt(&resolver, "alltimeout.example.net.")),
    );
}

#[tokio::test]
async fn spf_suite_list_values_copies_and_cnames() {
    let initial =
        Zone::from_spf_suite_zonedata(&spf_scenario("Initial processing")["zonedata"]).unwrap();
    let server = DnsServer::start(initial).await;
    let resolver = server.resolver();

    // `SPF: [ "v=spf1 ip4:", "192.0.2.5 -all" ]` and `SPF: [ ]`, both copied to TXT; the
    // empty one goes on the wire as it is, RDLENGTH 0 (RFC 7208 suite "null-text", §3.3),
    // which hickory refuses as a whole.
    let refused = txt(&resolver, "null.example.com.").await.unwrap_err();
    assert!(
        authmilter::dns::empty_rdata::is_empty_rdata_error(&refused),
        "{refused:?}"
    );
    let name = hickory_resolver::proto::rr::Name::from_ascii("null.example.com.").unwrap();
    let answer = authmilter::dns::empty_rdata::query(
        &[server.addr],
        &name,
        RecordType::TXT,
        std::time::Duration::from_secs(2),
    )
    .await
    .unwrap();
    let strings: Vec<Vec<String>> = answer
        .records
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(
        strings,
        vec![vec![
            "v=spf1 ip4:".to_string(),
            "192.0.2.5 -all".to_string()
        ]]
    );
    // SPF only, copied to TXT.
    assert_eq!(
        txt(&resolver, "example.net.").await.unwrap(),
        vec![vec!["v=spf1 -all exp=exp.example.net"]]
    );
    assert_times_out(txt(&resolver, "example.com.")).await;

    // One server, next scenario: a CNAME to an in-zone name with several TXT records.
    let bugs = Zone::from_spf_suite_zonedata(
        &spf_scenario("Test cases from implementation bugs")["zonedata"],
    )
    .unwrap();
    server.set_zone(bugs);
    let got = txt(&resolver, "b.example.org.").await.unwrap();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got
        .iter()
        .any(|t| t[0].starts_with("v=spf1 ip4:192.0.2.225")));
}

/// The raw YAML (rules applied by our loader) and the JSON (rules applied by the suite's
/// tooling) must describe the same DNS for every scenario, name and type.
#[test]
fn spf_suite_yaml_rules_match_the_prepared_json() {
    use serde::Deserialize;
    let json: Value = serde_json::from_str(&std::fs::read_to_string(SPF_SUITE).unwrap()).unwrap();
    let yaml_text = std::fs::read_to_string(SPF_SUITE_YAML).unwrap();
    let yaml_docs: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml_text)
        .map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap())
        .collect();
    let scenarios = json["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), yaml_docs.len());
    let types = [
        RecordType::TXT,
        RecordType::from(SPF_TYPE),
        RecordType::A,
        RecordType::AAAA,
        RecordType::MX,
        RecordType::PTR,
        RecordType::CNAME,
    ];
    let mut compared = 0;
    for (prepared, raw) in scenarios.iter().zip(&yaml_docs) {
        assert_eq!(prepared["description"], raw["description"]);
        let from_json = Zone::from_spf_suite_zonedata(&prepared["zonedata"]).unwrap();
        let from_yaml = Zone::from_spf_suite_zonedata(&raw["zonedata"]).unwrap();
        assert_eq!(from_json.len(), from_yaml.len());
        for name in from_json.names() {
            for rtype in types {
                assert_eq!(
                    from_json.lookup(name, rtype),
                    from_yaml.lookup(name, rtype),
                    "{name} {rtype} in {}",
                    raw["description"]
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 1000, "only {compared} comparisons");
}

#[test]
fn dkim_dns_json_maps_null_errors_and_long_keys() {
    let text = std::fs::read_to_string(MAIL_DKIM_DNS).unwrap();
    let zone = Zone::from_txt_json(&serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(
        zone.lookup("nonexistent._domainkey.messiah.edu", RecordType::TXT),
        Outcome::NxDomain
    );
    assert_eq!(
        zone.lookup("test3._domainkey.blackhole.messiah.edu", RecordType::TXT),
        Outcome::Timeout
    );
    assert_eq!(
        zone.lookup("test3._domainkey.blackhole2.messiah.edu", RecordType::TXT),
        Outcome::ServFail
    );
    let long = zone
        .names()
        .filter_map(|n| zone.entries(n)?.first().cloned())
        .find_map(|e| match e {
            Entry::Txt(strings) if strings.len() > 1 => Some(strings),
            _ => None,
        })
        .expect("some key is longer than 255 bytes");
    assert!(long.iter().all(|s| s.len() <= 255) && long[0].len() == 255);
}

#[test]
fn text_format_errors_name_the_line() {
    let err = Zone::parse("# ok\nexample.com TXT ok\nexample.com A not-an-ip\n").unwrap_err();
    assert!(err.starts_with("line 3:"), "{err}");
    assert!(Zone::parse("x TXT \"unterminated").is_err());
    assert!(Zone::parse("x TIMEOUT now").is_err());
    assert!(Zone::parse("x BOGUS 1").is_err());

    let mut merged = Zone::parse("a.example TXT first\n").unwrap();
    merged.merge(Zone::parse("a.example TIMEOUT\nb.example A 192.0.2.1\n").unwrap());
    assert_eq!(
        merged.entries("A.EXAMPLE."),
        Some(&[Entry::Txt(vec![b"first".to_vec()]), Entry::Timeout][..])
    );
    assert_eq!(merged.len(), 2);
}
