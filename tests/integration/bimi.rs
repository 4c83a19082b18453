//! BIMI end to end on loopback: a mark-certificate CA and a TLS CA made at run time
//! (rcgen), mark certificates with the BIMI EKU and a logotype extension carrying an SVG,
//! an HTTPS server serving evidence and indicators, and `testdata/dns/bimi.zone` with BIMI
//! and DMARC records. Messages go through the real check (DKIM, DMARC) and then BIMI.

use crate::common::{config_for, external, message, rsa_signature, testdata};
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use authmilter::auth::Verifier;
use authmilter::bimi::{Bimi, BimiResult};
use authmilter::check::{add_bimi, apply_edits, check_message, Decision};
use authmilter::config::{BimiConfig, Config};
use authmilter::policy::Policy;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const LOGO: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.2" baseProfile="tiny-ps" viewBox="0 0 64 64">
<title>Brand</title>
<circle cx="32" cy="32" r="30" fill="#c21"/>
</svg>
"##;

const OTHER_LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" version="1.2" baseProfile="tiny-ps" viewBox="0 0 64 64"><title>Other</title><rect width="64" height="64" fill="#12c"/></svg>"##;

const SCRIPT_LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" version="1.2" baseProfile="tiny-ps"><title>x</title><script>alert(1)</script></svg>"##;

/// Domains the good certificate names.
const GOOD_NAMES: &[&str] = &[
    "brand.example",
    "quar.example",
    "pnone.example",
    "testing.example",
    "spnone.example",
    "a.weakorg.example",
    "two.example",
    "mismatch.example",
    "slowfetch.example",
    "unreachable.example",
];

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// RFC 3709's LogotypeExtn with a direct subject logo: the SVG gzipped in a `data:` URI
/// and its SHA-256, as mark certificates carry it.
pub fn logotype(svg: &str) -> Vec<u8> {
    use base64ct::Encoding;
    let image = gzip(svg.as_bytes());
    let uri = format!(
        "data:image/svg+xml;base64,{}",
        base64ct::Base64::encode_string(&image)
    );
    let sha256_oid = tlv(
        0x06,
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
    );
    let hash = ring::digest::digest(&ring::digest::SHA256, &image);
    let hash_alg_and_value = seq(&[seq(&[sha256_oid]), tlv(0x04, hash.as_ref())]);
    let details = seq(&[
        tlv(0x16, b"image/svg+xml"),
        seq(&[hash_alg_and_value]),
        seq(&[tlv(0x16, uri.as_bytes())]),
    ]);
    let images = seq(&[seq(&[details])]);
    let direct = tlv(0xa0, &images);
    seq(&[tlv(0xa2, &direct)])
}

/// How a mark certificate is made.
pub struct MarkSpec<'a> {
    pub names: &'a [&'a str],
    pub svg: &'a str,
    pub eku: bool,
    pub expired: bool,
    pub mark_type: &'a str,
}

impl Default for MarkSpec<'_> {
    fn default() -> Self {
        MarkSpec {
            names: GOOD_NAMES,
            svg: LOGO,
            eku: true,
            expired: false,
            mark_type: "Registered Mark",
        }
    }
}

/// A CA that issues mark certificates (or TLS server certificates).
pub struct TestCa {
    pub ca: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { ca }
    }

    pub fn pem(&self) -> String {
        self.ca.pem()
    }

    /// A mark certificate chain (PEM: the leaf, then the CA).
    pub fn mark(&self, spec: MarkSpec<'_>) -> String {
        let names: Vec<String> = spec.names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Brand Inc.");
        params.distinguished_name.push(
            DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 53087, 1, 13]),
            spec.mark_type,
        );
        params.extended_key_usages = vec![if spec.eku {
            ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 31])
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 1, 12],
                logotype(spec.svg),
            ));
        let now = time::OffsetDateTime::now_utc();
        if spec.expired {
            params.not_before = now - time::Duration::days(400);
            params.not_after = now - time::Duration::days(1);
        } else {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(365);
        }
        let leaf = params
            .signed_by(&KeyPair::generate().unwrap(), &*self.ca)
            .unwrap();
        format!("{}{}", leaf.pem(), self.ca.pem())
    }

    /// A TLS server certificate and key (DER) for `name`.
    pub fn server(&self, name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &*self.ca)
            .unwrap();
        (
            cert.der().clone(),
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
    }
}

/// One document the HTTPS server serves: status, body, delay before answering.
pub type Route = (u16, Vec<u8>, Duration);

/// An HTTPS server on loopback answering GETs from a fixed table.
pub struct HttpsServer {
    pub addr: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsServer {
    pub async fn start(
        cert: (CertificateDer<'static>, PrivateKeyDer<'static>),
        routes: HashMap<String, Route>,
    ) -> HttpsServer {
        use tokio_rustls::rustls::ServerConfig;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.0], cert.1)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Arc::new(routes);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let routes = Arc::clone(&routes);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split(' ').nth(1).unwrap_or("/").to_string();
                    let (status, body, delay) = routes.get(&path).cloned().unwrap_or((
                        404,
                        b"not found".to_vec(),
                        Duration::ZERO,
                    ));
                    tokio::time::sleep(delay).await;
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(&body).await;
                    let _ = tls.shutdown().await;
                });
            }
        })
        .abort_handle();
        HttpsServer { addr, task }
    }
}

/// Everything a BIMI test needs: DNS, the HTTPS server, the root files, a verifier and
/// the checker.
pub struct World {
    /// Kept alive for the world's lifetime (the resolver and the root files use them).
    _dns: DnsServer,
    pub https: HttpsServer,
    _dir: tempfile::TempDir,
    pub verifier: Verifier,
    pub bimi: Bimi,
    pub policy: Policy,
}

/// Files and routes the world serves; `mark_roots` and `fetch_roots` are PEM files.
pub struct Fixtures {
    pub routes: HashMap<String, Route>,
    pub mark_roots: PathBuf,
    pub fetch_roots: PathBuf,
    pub tls: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

pub fn fixtures(dir: &Path) -> Fixtures {
    let marks = TestCa::new("Test Mark Root");
    let stranger = TestCa::new("Some Other Root");
    let tls = TestCa::new("Test TLS Root");
    let quick = |body: Vec<u8>| (200, body, Duration::ZERO);
    let mut routes = HashMap::new();
    routes.insert("/logo.svg".into(), quick(LOGO.as_bytes().to_vec()));
    routes.insert("/other.svg".into(), quick(OTHER_LOGO.as_bytes().to_vec()));
    routes.insert("/script.svg".into(), quick(SCRIPT_LOGO.as_bytes().to_vec()));
    routes.insert("/bomb.svgz".into(), quick(gzip(&vec![b' '; 20 << 20])));
    routes.insert(
        "/good.pem".into(),
        quick(marks.mark(MarkSpec::default()).into()),
    );
    routes.insert(
        "/sel2.pem".into(),
        quick(
            marks
                .mark(MarkSpec {
                    names: &["sel2._bimi.brand.example"],
                    svg: OTHER_LOGO,
                    mark_type: "Prior Use Mark",
                    ..MarkSpec::default()
                })
                .into(),
        ),
    );
    routes.insert(
        "/expired.pem".into(),
        quick(
            marks
                .mark(MarkSpec {
                    names: &["expired.example"],
                    expired: true,
                    ..MarkSpec::default()
                })
                .into(),
        ),
    );
    routes.insert(
        "/eku.pem".into(),
        quick(
            marks
                .mark(MarkSpec {
                    names: &["eku.example"],
                    eku: false,
                    ..MarkSpec::default()
                })
                .into(),
        ),
    );
    routes.insert(
        "/san.pem".into(),
        quick(
            marks
                .mark(MarkSpec {
                    names: &["elsewhere.example"],
                    ..MarkSpec::default()
                })
                .into(),
        ),
    );
    routes.insert(
        "/root.pem".into(),
        quick(
            stranger
                .mark(MarkSpec {
                    names: &["root.example"],
                    ..MarkSpec::default()
                })
                .into(),
        ),
    );
    routes.insert(
        "/slow.pem".into(),
        (
            200,
            marks.mark(MarkSpec::default()).into(),
            Duration::from_millis(3000),
        ),
    );
    let mark_roots = dir.join("mark-roots.pem");
    std::fs::write(&mark_roots, marks.pem()).unwrap();
    let fetch_roots = dir.join("fetch-roots.pem");
    std::fs::write(&fetch_roots, tls.pem()).unwrap();
    Fixtures {
        routes,
        mark_roots,
        fetch_roots,
        tls: tls.server("bimi.test.example"),
    }
}

/// `bimi.zone` with the ports filled in, plus SPF and the DKIM key for every domain in it.
pub fn zone(port: u16, closed: u16) -> Zone {
    let main = Zone::from_file(testdata("dns/main.zone")).unwrap();
    let key = main.entries("rsa._domainkey.example.com").unwrap().to_vec();
    let text = std::fs::read_to_string(testdata("dns/bimi.zone"))
        .unwrap()
        .replace("{port}", &port.to_string())
        .replace("{closed}", &closed.to_string());
    let mut zone = Zone::parse(&text).unwrap();
    let mut domains: Vec<String> = zone
        .names()
        .filter_map(|n| {
            let n = n.trim_end_matches('.');
            n.strip_prefix("_dmarc.")
                .or_else(|| n.split_once("._bimi.").map(|(_, d)| d))
                .map(str::to_string)
        })
        .collect();
    domains.extend(["mail.brand.example", "sub.spnone.example"].map(String::from));
    domains.sort();
    domains.dedup();
    for d in domains {
        zone.txt(&d, "v=spf1 ip4:192.0.2.0/24 -all");
        for e in &key {
            zone.push(&format!("rsa._domainkey.{d}"), e.clone());
        }
    }
    zone.merge(main);
    zone
}

/// A port nothing listens on (bound, then closed).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl World {
    pub async fn new() -> World {
        World::with(|_| {}).await
    }

    pub async fn with(adjust: impl FnOnce(&mut BimiConfig)) -> World {
        let dir = tempfile::tempdir().unwrap();
        let f = fixtures(dir.path());
        let https = HttpsServer::start(f.tls, f.routes).await;
        let dns = DnsServer::start(zone(https.addr.port(), closed_port())).await;
        let mut config: Config = config_for(dns.addr);
        config.bimi = BimiConfig {
            enabled: true,
            mark_roots_file: Some(f.mark_roots),
            fetch_roots_file: Some(f.fetch_roots),
            allow_private_destinations: true,
            self_asserted: true,
            max_wait: Duration::from_millis(1000),
            ..BimiConfig::default()
        };
        adjust(&mut config.bimi);
        let verifier = Verifier::new(Arc::new(config.clone())).unwrap();
        let bimi = Bimi::build(&config.bimi, Arc::clone(verifier.dns())).unwrap();
        World {
            _dns: dns,
            https,
            _dir: dir,
            verifier,
            bimi,
            policy: Policy::default(),
        }
    }

    /// A message from `from`, signed by its domain (with `extra` header fields above From,
    /// signed too when `sign_extra`), checked from 192.0.2.1, then BIMI.
    pub async fn deliver(&self, from: &str, extra: &str, sign_extra: bool) -> (Decision, Vec<u8>) {
        let msg = [extra.as_bytes(), &message(from, "bimi", "hello\r\n")].concat();
        let domain = from.rsplit('@').next().unwrap();
        let mut headers = vec!["From", "To", "Subject", "Date", "Message-ID"];
        if sign_extra {
            headers.push("BIMI-Selector");
        }
        let sig = rsa_signature(domain, &headers, &msg, false);
        let raw = [sig.as_bytes(), &msg].concat();
        self.check(&raw).await
    }

    pub async fn check(&self, raw: &[u8]) -> (Decision, Vec<u8>) {
        let conn = external("192.0.2.1", "mx.sender.example");
        let mut d =
            check_message(&self.verifier, &self.policy, &conn, "s@sender.example", raw).await;
        add_bimi(&self.bimi, &mut d, &conn, raw).await;
        let delivered = apply_edits(raw, &d.edits);
        (d, delivered)
    }
}

fn ar(d: &Decision) -> String {
    d.authentication_results()
        .unwrap()
        .replace("\r\n\t  ", " ")
        .replace("\r\n\t", " ")
}

fn result(d: &Decision) -> (BimiResult, String) {
    let b = d.bimi.as_ref().expect("BIMI evaluated");
    (b.result, b.reason.clone().unwrap_or_default())
}

fn header<'a>(delivered: &'a [u8], name: &str) -> Vec<&'a str> {
    let text = std::str::from_utf8(delivered).unwrap();
    let head = text.split("\r\n\r\n").next().unwrap();
    let mut out = Vec::new();
    let prefix = format!("{}:", name.to_ascii_lowercase());
    for (i, line) in head.split("\r\n").enumerate() {
        if line.to_ascii_lowercase().starts_with(&prefix) {
            let start = head
                .split("\r\n")
                .take(i)
                .map(|l| l.len() + 2)
                .sum::<usize>();
            let end = head[start..]
                .match_indices("\r\n")
                .map(|(j, _)| start + j)
                .find(|&j| !head[j + 2..].starts_with([' ', '\t']))
                .unwrap_or(head.len());
            out.push(&head[start + name.len() + 1..end]);
        }
    }
    out
}

// The whole pass: DMARC pass at p=reject, record, VMC fetched and validated, the l=
// indicator the certificate's; A-R carries the draft's properties, the mailbox gets
// BIMI-Location and the SVG in BIMI-Indicator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_pass_adds_location_indicator_and_result() {
    let w = World::new().await;
    let (d, delivered) = w.deliver("news@brand.example", "", false).await;
    assert_eq!(result(&d), (BimiResult::Pass, String::new()));
    let port = w.https.addr.port();
    assert!(
        ar(&d).contains(&format!(
            "bimi=pass (VMC) header.d=brand.example header.selector=default \
             policy.authority=pass policy.authority-uri=\"https://bimi.test.example:{port}/good.pem\""
        )),
        "{}",
        ar(&d)
    );
    let location = header(&delivered, "BIMI-Location");
    assert_eq!(location.len(), 1);
    assert!(location[0].contains(&format!("l=https://bimi.test.example:{port}/logo.svg;")));
    let indicator = header(&delivered, "BIMI-Indicator");
    assert_eq!(indicator.len(), 1);
    let b64: String = indicator[0].split_whitespace().collect();
    use base64ct::Encoding;
    assert_eq!(base64ct::Base64::decode_vec(&b64).unwrap(), LOGO.as_bytes());
    let doc = serde_json::to_value(d.report()).unwrap();
    assert_eq!(doc["bimi"]["result"], "pass");
    assert_eq!(doc["bimi"]["mark_type"], "VMC");
    assert_eq!(doc["bimi"]["domain"], "brand.example");

    // Quarantine is enforcing (RFC 9989 dropped pct).
    let (d, _) = w.deliver("a@quar.example", "", false).await;
    assert_eq!(result(&d).0, BimiResult::Pass);
}

// Each DMARC prerequisite unmet gives bimi=skipped and no BIMI fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_needs_dmarc_pass_under_an_enforcing_policy() {
    let w = World::new().await;
    for (from, why) in [
        ("a@pnone.example", "DMARC policy none is not enforcing"),
        ("a@testing.example", "DMARC policy none is not enforcing"),
        ("a@sub.spnone.example", "DMARC policy none is not enforcing"),
        ("a@spnone.example", "sp=none is not enforcing"),
        ("a@a.weakorg.example", "Organizational Domain policy p=none"),
    ] {
        let (d, delivered) = w.deliver(from, "", false).await;
        let (r, reason) = result(&d);
        assert_eq!(r, BimiResult::Skipped, "{from}: {reason}");
        assert!(reason.contains(why), "{from}: {reason}");
        assert!(ar(&d).contains("bimi=skipped"), "{}", ar(&d));
        assert!(header(&delivered, "BIMI-Indicator").is_empty());
    }
    // DMARC fails (unsigned, from outside the SPF range) under p=quarantine: kept, skipped.
    let raw = message("a@quar.example", "unsigned", "x\r\n");
    let conn = external("203.0.113.9", "mx.other.example");
    let mut d = check_message(&w.verifier, &w.policy, &conn, "a@quar.example", &raw).await;
    add_bimi(&w.bimi, &mut d, &conn, &raw).await;
    if d.verdict.action == authmilter::policy::Action::Quarantine {
        assert_eq!(result(&d), (BimiResult::Skipped, "DMARC fail".to_string()));
    } else {
        assert!(d.bimi.is_none(), "refused mail gets no BIMI");
    }
    // Two From addresses.
    let raw = message("a@brand.example, b@brand.example", "two", "x\r\n");
    let sig = rsa_signature("brand.example", &["From", "To", "Subject"], &raw, false);
    let raw = [sig.as_bytes(), &raw].concat();
    let (d, _) = w.check(&raw).await;
    if let Some(b) = &d.bimi {
        assert_eq!(b.result, BimiResult::Skipped);
        assert_eq!(b.reason.as_deref(), Some("not exactly one From address"));
    } else {
        assert!(!matches!(
            d.verdict.action,
            authmilter::policy::Action::Accept | authmilter::policy::Action::Quarantine
        ));
    }
}

// BIMI-Selector is honoured only when an aligned DKIM signature covers it (draft §4.3); a
// subdomain without a record falls back to the Organizational Domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_selector_signed_vs_unsigned_and_org_fallback() {
    let w = World::new().await;
    let selector = "BIMI-Selector: v=BIMI1; s=sel2;\r\n";
    let (d, delivered) = w.deliver("a@brand.example", selector, true).await;
    assert_eq!(result(&d).0, BimiResult::Pass, "{:?}", d.bimi);
    assert!(ar(&d).contains("bimi=pass (CMC) header.d=brand.example header.selector=sel2"));
    let b64: String = header(&delivered, "BIMI-Indicator")[0]
        .split_whitespace()
        .collect();
    use base64ct::Encoding;
    assert_eq!(
        base64ct::Base64::decode_vec(&b64).unwrap(),
        OTHER_LOGO.as_bytes()
    );

    let (d, _) = w.deliver("a@brand.example", selector, false).await;
    assert_eq!(result(&d).0, BimiResult::Pass);
    assert!(ar(&d).contains("header.selector=default"), "{}", ar(&d));

    let (d, _) = w.deliver("a@mail.brand.example", "", false).await;
    assert_eq!(result(&d).0, BimiResult::Pass, "{:?}", d.bimi);
    assert!(ar(&d).contains("header.d=brand.example"), "{}", ar(&d));
}

// Records: a declination, no record, two records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_declined_none_and_several_records() {
    let w = World::new().await;
    let (d, delivered) = w.deliver("a@declined.example", "", false).await;
    assert_eq!(result(&d).0, BimiResult::Declined);
    assert!(ar(&d).contains("bimi=declined header.d=declined.example"));
    assert!(header(&delivered, "BIMI-Location").is_empty());
    let (d, _) = w.deliver("a@nobimi.example", "", false).await;
    assert_eq!(result(&d), (BimiResult::None, "no BIMI record".into()));
    let (d, _) = w.deliver("a@two.example", "", false).await;
    assert_eq!(result(&d).0, BimiResult::Fail);
    assert!(result(&d).1.contains("several v=BIMI1 records"));
}

// Mark certificates: expired, without the BIMI EKU, for another name, from another root;
// and an l= indicator that is not the certificate's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_refuses_bad_mark_certificates() {
    let w = World::new().await;
    for (from, why) in [
        ("a@expired.example", "mark certificate expired"),
        ("a@eku.example", "lacks the BIMI extended key usage"),
        (
            "a@san.example",
            "names neither san.example nor default._bimi.san.example",
        ),
        ("a@root.example", "does not chain to a mark root"),
        (
            "a@mismatch.example",
            "indicator at l= is not the mark certificate's",
        ),
    ] {
        let (d, delivered) = w.deliver(from, "", false).await;
        let (r, reason) = result(&d);
        assert_eq!(r, BimiResult::Fail, "{from}: {reason}");
        assert!(reason.contains(why), "{from}: {reason}");
        assert!(header(&delivered, "BIMI-Indicator").is_empty());
        assert!(header(&delivered, "BIMI-Location").is_empty());
    }
}

// Self-asserted indicators: accepted only when configured; a script or an SVGZ bomb fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_self_asserted_and_hostile_indicators() {
    let w = World::new().await;
    let (d, _) = w.deliver("a@plain.example", "", false).await;
    assert_eq!(result(&d).0, BimiResult::Pass);
    assert!(ar(&d).contains("policy.authority=none"), "{}", ar(&d));
    for (from, why) in [
        ("a@script.example", "forbidden <script>"),
        ("a@bomb.example", "after decompression"),
    ] {
        let (d, _) = w.deliver(from, "", false).await;
        let (r, reason) = result(&d);
        assert_eq!(r, BimiResult::Fail, "{from}: {reason}");
        assert!(reason.contains(why), "{from}: {reason}");
    }
    let strict = World::with(|c| c.self_asserted = false).await;
    let (d, _) = strict.deliver("a@plain.example", "", false).await;
    assert_eq!(
        result(&d),
        (
            BimiResult::Skipped,
            "self-asserted indicators are not accepted".into()
        )
    );
}

// Fetches: a slow server costs at most max_wait (temperror), and the fetch goes on to fill
// the cache; a port nothing listens on and a 404; the SSRF guard refuses loopback unless
// allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_slow_unreachable_and_private_fetches() {
    let w = World::new().await;
    let started = std::time::Instant::now();
    let (d, _) = w.deliver("a@slowfetch.example", "", false).await;
    assert_eq!(result(&d).0, BimiResult::Temperror, "{:?}", d.bimi);
    assert!(result(&d).1.contains("bimi.max_wait"));
    // The reply did not wait for the server (3 s), only for bimi.max_wait (1 s).
    assert!(started.elapsed() < Duration::from_millis(2500));
    // The fetch finished in the background: the next message passes from the cache.
    let mut passed = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (d, _) = w.deliver("a@slowfetch.example", "", false).await;
        if result(&d).0 == BimiResult::Pass {
            passed = true;
            break;
        }
    }
    assert!(passed, "the background fetch never filled the cache");

    let (d, _) = w.deliver("a@unreachable.example", "", false).await;
    assert_eq!(result(&d).0, BimiResult::Temperror, "{:?}", d.bimi);
    assert!(result(&d).1.contains("cannot connect"));
    let (d, _) = w.deliver("a@missing.example", "", false).await;
    assert_eq!(result(&d).0, BimiResult::Fail, "{:?}", d.bimi);
    assert!(result(&d).1.contains("404"));

    let guarded = World::with(|c| c.allow_private_destinations = false).await;
    let (d, _) = guarded.deliver("a@brand.example", "", false).await;
    assert_eq!(result(&d).0, BimiResult::Fail, "{:?}", d.bimi);
    assert!(result(&d).1.contains("private addresses"));
}

// Incoming BIMI-Location and BIMI-Indicator are deleted whatever the result; ours replace
// them on a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_forged_incoming_fields_are_removed() {
    let w = World::new().await;
    let forged = "BIMI-Location: v=BIMI1; l=https://evil.example/x.svg\r\n\
                  BIMI-Indicator: PHN2Zz48L3N2Zz4=\r\nBIMI-Indicator: Zm9v\r\n";
    let (d, delivered) = w.deliver("a@nobimi.example", forged, false).await;
    assert_eq!(result(&d).0, BimiResult::None);
    assert!(header(&delivered, "BIMI-Location").is_empty());
    assert!(header(&delivered, "BIMI-Indicator").is_empty());
    let (d, delivered) = w.deliver("a@brand.example", forged, false).await;
    assert_eq!(result(&d).0, BimiResult::Pass);
    let location = header(&delivered, "BIMI-Location");
    assert_eq!(location.len(), 1);
    assert!(!location[0].contains("evil.example"));
    assert_eq!(header(&delivered, "BIMI-Indicator").len(), 1);
}

// `authmilter bimi check DOMAIN`: the same checks from the command line, exit 0 on pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_check_command_reports_record_evidence_and_indicator() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures(dir.path());
    let https = HttpsServer::start(f.tls, f.routes).await;
    let dns = DnsServer::start(zone(https.addr.port(), closed_port())).await;
    let config = dir.path().join("authmilter.toml");
    std::fs::write(
        &config,
        format!(
            "[bimi]\nmark_roots_file = \"{}\"\nfetch_roots_file = \"{}\"\n\
             allow_private_destinations = true\n",
            f.mark_roots.display(),
            f.fetch_roots.display()
        ),
    )
    .unwrap();
    let run = |domain: &'static str, selector: &'static str| {
        let config = config.clone();
        let ns = dns.addr.to_string();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_authmilter"))
                .args(["bimi", "check", domain, "--selector", selector, "--config"])
                .arg(&config)
                .args(["--nameserver", &ns])
                .env("AUTHMILTER_LOG", "off")
                .output()
                .unwrap()
        })
    };
    let out = run("brand.example", "default").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("result: pass"), "{text}");
    assert!(text.contains("mark certificate: VMC"), "{text}");
    assert!(
        text.contains(&format!("indicator: SVG Tiny PS, {} bytes", LOGO.len())),
        "{text}"
    );
    let out = run("brand.example", "sel2").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("mark certificate: CMC"), "{text}");
    // `check --json` with [bimi] enabled runs BIMI after DMARC, as the daemon does.
    let with_bimi = dir.path().join("enabled.toml");
    std::fs::write(
        &with_bimi,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("[bimi]\n", "[bimi]\nenabled = true\n"),
    )
    .unwrap();
    let msg = message("News <news@brand.example>", "cli-bimi", "Hello.\r\n");
    let headers = ["From", "To", "Subject", "Date", "Message-ID"];
    let raw = [
        rsa_signature("brand.example", &headers, &msg, false).as_bytes(),
        &msg,
    ]
    .concat();
    let eml = dir.path().join("m.eml");
    std::fs::write(&eml, raw).unwrap();
    let ns = dns.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_authmilter"))
            .args([
                "check",
                "--json",
                "--ip",
                "192.0.2.1",
                "--mail-from",
                "news@brand.example",
            ])
            .arg("--config")
            .arg(&with_bimi)
            .args(["--nameserver", &ns])
            .arg(&eml)
            .env("AUTHMILTER_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(doc["bimi"]["result"], "pass", "{doc}");

    let out = run("expired.example", "default").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("result: fail") && text.contains("mark certificate expired"),
        "{text}"
    );
}

// The whole milter path with a real Postfix: the message Postfix delivers carries our
// BIMI-Location, BIMI-Indicator and bimi=pass, and not the sender's forged BIMI fields.
#[test]
fn bimi_headers_reach_the_mailbox_through_postfix() {
    use crate::milter_client::Daemon;
    use crate::postfix::{find_program, free_port, running_as_root, skip, Postfix};
    use crate::smtp_client::send_mail;
    let Some(postfix) = find_program("postfix").or_else(|| skip("postfix not installed")) else {
        return;
    };
    if !running_as_root() {
        skip::<()>("postfix tests need root (postfix start)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures(dir.path());
    let (https, dns, daemon) = runtime.block_on(async {
        let https = HttpsServer::start(f.tls, f.routes).await;
        let dns = DnsServer::start(zone(https.addr.port(), closed_port())).await;
        let (ns, marks, fetch) = (dns.addr, f.mark_roots.clone(), f.fetch_roots.clone());
        let daemon = Daemon::start(move |c| {
            c.dns.nameservers = vec![ns];
            c.bimi = BimiConfig {
                enabled: true,
                mark_roots_file: Some(marks),
                fetch_roots_file: Some(fetch),
                allow_private_destinations: true,
                ..BimiConfig::default()
            };
        })
        .await;
        (https, dns, daemon)
    });
    let scratch = tempfile::Builder::new()
        .prefix("authmilter-postfix-")
        .tempdir()
        .unwrap()
        // From here on the reaper removes it (see tests/peers/postfix-reaper.sh).
        .keep();
    let port = free_port();
    let pf = Postfix::start(&postfix, scratch, &[(port, daemon.addr)]);
    let forged =
        "BIMI-Indicator: Zm9yZ2Vk\r\nBIMI-Location: v=BIMI1; l=https://evil.example/x.svg\r\n";
    let msg = [
        forged.as_bytes(),
        &message("News <news@brand.example>", "pf-bimi", "Hello.\r\n"),
    ]
    .concat();
    let sig = rsa_signature(
        "brand.example",
        &["From", "To", "Subject", "Date", "Message-ID"],
        &msg,
        false,
    );
    let raw = [sig.as_bytes(), &msg].concat();
    let sent = send_mail(
        port,
        ("192.0.2.10", "ext.example"),
        "news@brand.example",
        "bimi@example.net",
        &raw,
    );
    assert_eq!(sent.reply.code, 250, "{:?}\n{}", sent.reply, pf.maillog());
    let mail = pf
        .delivered("<pf-bimi@test>", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("not delivered\n{}", pf.maillog()));
    let head = mail.split("\n\n").next().unwrap();
    assert!(head.contains("bimi=pass"), "{head}");
    assert!(
        !head.contains("evil.example") && !head.contains("Zm9yZ2Vk"),
        "{head}"
    );
    let location: Vec<&str> = head
        .lines()
        .filter(|l| l.starts_with("BIMI-Location:"))
        .collect();
    assert_eq!(location.len(), 1, "{head}");
    let indicator_at = head
        .find("BIMI-Indicator:")
        .expect("BIMI-Indicator delivered");
    let b64: String = head[indicator_at + "BIMI-Indicator:".len()..]
        .lines()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
        .map(|(_, l)| l.trim())
        .collect();
    use base64ct::Encoding;
    assert_eq!(
        base64ct::Base64::decode_vec(&b64).unwrap(),
        LOGO.as_bytes(),
        "{head}"
    );
    drop(pf);
    drop((https, dns, daemon));
    drop(runtime);
}

// The SMTP front end applies the same edits (the Maildir file has our BIMI fields, not the
// sender's), /v1/check answers the bimi member, the verdict store keeps it, /metrics counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_through_the_smtp_front_end_the_api_and_the_store() {
    use crate::http::call;
    use crate::milter_client::Daemon;
    use crate::smtp_front::{blocking, delivered, inbound, port};
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures(dir.path());
    let https = HttpsServer::start(f.tls, f.routes).await;
    let dns = DnsServer::start(zone(https.addr.port(), closed_port())).await;
    let maildir = dir.path().join("Maildir");
    let (ns, marks, fetch, m) = (dns.addr, f.mark_roots, f.fetch_roots, maildir.clone());
    let d = Daemon::start_with_api(move |c| {
        inbound(c, &m);
        c.dns.nameservers = vec![ns];
        c.bimi = BimiConfig {
            enabled: true,
            mark_roots_file: Some(marks),
            fetch_roots_file: Some(fetch),
            allow_private_destinations: true,
            ..BimiConfig::default()
        };
    })
    .await;
    let forged = "BIMI-Location: v=BIMI1; l=https://evil.example/x.svg\r\n";
    let msg = [
        forged.as_bytes(),
        &message("News <news@brand.example>", "smtp-bimi", "Hello.\r\n"),
    ]
    .concat();
    let headers = ["From", "To", "Subject", "Date", "Message-ID"];
    let raw = [
        rsa_signature("brand.example", &headers, &msg, false).as_bytes(),
        &msg,
    ]
    .concat();
    let p = port(&d);
    let to_send = raw.clone();
    // From 127.0.0.1, outside brand.example's SPF range: DMARC passes on DKIM alone.
    let sent = blocking(move || {
        crate::smtp_client::send_plain(p, "news@brand.example", &["bob@example.net"], &to_send)
    })
    .await;
    assert_eq!(sent.reply.code, 250, "{sent}");
    let files = delivered(&maildir);
    assert_eq!(files.len(), 1);
    let text = &files[0];
    assert!(text.contains("bimi=pass"), "{text}");
    assert!(!text.contains("evil.example"), "{text}");
    assert_eq!(header(text.as_bytes(), "BIMI-Location").len(), 1, "{text}");
    assert_eq!(header(text.as_bytes(), "BIMI-Indicator").len(), 1, "{text}");

    let api = d.http.unwrap();
    let target = "/v1/check?ip=192.0.2.1&helo=mx.example.com&mail_from=news%40brand.example";
    let r = call(api, "POST", target, None, &raw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert_eq!(doc["bimi"]["result"], "pass", "{doc}");
    assert_eq!(doc["bimi"]["mark_type"], "VMC");
    assert!(doc["authentication_results"]
        .as_str()
        .unwrap()
        .contains("bimi=pass"));
    let mut stored = serde_json::Value::Null;
    for _ in 0..100 {
        let r = call(
            api,
            "GET",
            "/v1/verdicts?message_id=%3Csmtp-bimi%40test%3E",
            None,
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let items = r.json()["items"].as_array().cloned().unwrap_or_default();
        // The SMTP front end's record and the /v1/check one.
        if let Some(item) = items.iter().find(|i| i["transport"] == "smtp") {
            let id = &item["id"];
            stored = call(api, "GET", &format!("/v1/verdicts/{id}"), None, b"")
                .await
                .json();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stored document is the item itself (merged with the record's columns).
    let document = &stored;
    assert_eq!(document["bimi"]["result"], "pass", "{stored}");
    assert_eq!(document["bimi"]["domain"], "brand.example", "{stored}");
    let metrics = call(api, "GET", "/metrics", None, b"").await.text();
    let passes = metrics
        .lines()
        .find(|l| l.starts_with("authmilter_bimi_results_total{result=\"pass\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .expect("the BIMI counter");
    assert!(passes >= 2, "{metrics}");
}

// A mailing list broke the DKIM signature but a trusted ARC sealer vouched for the message:
// local policy accepts the DMARC failure, and BIMI treats it as the DMARC pass it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimi_after_a_trusted_arc_sealer_override() {
    use authmilter::check::seal_inbound;
    use authmilter::config::{ArcSealConfig, SealMode};
    use authmilter::sign::seal::Sealer;
    use authmilter::sign::PrivateKey;
    let mut w = World::new().await;
    let key = PrivateKey::from_pem(&std::fs::read(testdata("keys/rsa2048.pem")).unwrap());
    let sealer = Sealer::with_key(
        &ArcSealConfig {
            mode: SealMode::Verified,
            domain: "lists.example.org".into(),
            selector: "arc".into(),
            ..ArcSealConfig::default()
        },
        key.unwrap(),
    );
    let msg = message("News <news@brand.example>", "listed", "Hello.\r\n");
    let headers = ["From", "To", "Subject", "Date", "Message-ID"];
    let original = [
        rsa_signature("brand.example", &headers, &msg, false).as_bytes(),
        &msg,
    ]
    .concat();
    // The list receives it, adds a footer, seals it.
    let conn = external("192.0.2.1", "mx.brand.example");
    let mut at_list = check_message(
        &w.verifier,
        &w.policy,
        &conn,
        "news@brand.example",
        &original,
    )
    .await;
    let modified = [&original[..], b"-- \r\nList footer\r\n"].concat();
    seal_inbound(&sealer, &mut at_list, &modified).unwrap();
    let forwarded = apply_edits(&modified, &at_list.edits);

    let conn = external("192.0.2.77", "lists.example.org");
    let d = from_list(&w, &conn, &forwarded).await;
    assert_eq!(
        d.verdict.action,
        authmilter::policy::Action::Reject,
        "{:?}",
        d.verdict
    );
    assert!(d.bimi.is_none());

    let dir = tempfile::tempdir().unwrap();
    let policy = crate::common::policy_dir(
        dir.path(),
        "[arc]\ntrusted_sealers = [\"lists.example.org\"]\n",
    );
    w.policy = Policy::load_dir(&policy).unwrap();
    let d = from_list(&w, &conn, &forwarded).await;
    assert_eq!(
        d.outcome.dmarc.as_ref().unwrap().result,
        authmilter::auth::AuthResult::Fail
    );
    assert_eq!(
        d.verdict.action,
        authmilter::policy::Action::Accept,
        "{:?}",
        d.verdict
    );
    assert_eq!(result(&d).0, BimiResult::Pass, "{:?}", d.bimi);
}

async fn from_list(w: &World, conn: &authmilter::auth::Connection, raw: &[u8]) -> Decision {
    let mut d = check_message(
        &w.verifier,
        &w.policy,
        conn,
        "bounce@lists.example.org",
        raw,
    )
    .await;
    add_bimi(&w.bimi, &mut d, conn, raw).await;
    d
}
