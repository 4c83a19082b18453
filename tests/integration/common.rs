//! Shared test fixtures: the loopback DNS server with `testdata/dns/main.zone`, a verifier
//! pointed at it, test messages, and DKIM signing with the keys in `testdata/keys/`.

use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use authmilter::auth::{Connection, Verifier};
use authmilter::check::{check_message, Decision};
use authmilter::config::{Config, DnsConfig};
use authmilter::policy::Policy;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const AUTHSERV_ID: &str = "mx.test.example";

pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// A configuration that resolves only through the given loopback server, with short timeouts
/// (the zone's TIMEOUT names must not slow the suite down).
/// A policy directory under `dir` whose `default.toml` holds `rules`.
pub fn policy_dir(dir: &Path, rules: &str) -> PathBuf {
    let policy = dir.join("policy");
    std::fs::create_dir(&policy).unwrap();
    std::fs::write(policy.join("default.toml"), rules).unwrap();
    policy
}

pub fn config_for(addr: SocketAddr) -> Config {
    Config {
        authserv_id: AUTHSERV_ID.into(),
        dns: DnsConfig {
            nameservers: vec![addr],
            timeout: Duration::from_millis(300),
            attempts: 1,
            ..DnsConfig::default()
        },
        ..Config::default()
    }
}

/// The loopback DNS server with the main test zone, and a verifier using it.
pub struct Env {
    pub dns: DnsServer,
    pub verifier: Verifier,
    pub policy: Policy,
}

impl Env {
    pub async fn new() -> Env {
        Env::with_config(|_| {}).await
    }

    pub async fn with_config(adjust: impl FnOnce(&mut Config)) -> Env {
        let zone = Zone::from_file(testdata("dns/main.zone")).expect("main.zone parses");
        let dns = DnsServer::start(zone).await;
        let mut config = config_for(dns.addr);
        adjust(&mut config);
        let verifier = Verifier::new(Arc::new(config)).expect("resolver builds");
        Env {
            dns,
            verifier,
            policy: Policy::default(),
        }
    }

    /// Checks a message from an external client.
    pub async fn check(&self, ip: &str, helo: &str, mail_from: &str, raw: &[u8]) -> Decision {
        let conn = external(ip, helo);
        check_message(&self.verifier, &self.policy, &conn, mail_from, raw).await
    }
}

pub fn external(ip: &str, helo: &str) -> Connection {
    let mut c = Connection::new(ip.parse::<IpAddr>().unwrap());
    c.helo = Some(helo.to_string());
    c
}

/// A plain CRLF message.
pub fn message(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: bob@example.net\r\nSubject: {subject}\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@test>\r\n\r\n{body}"
    )
    .replace("\r\n\r\n\r\n", "\r\n\r\n")
    .into_bytes()
}

// mail-auth's PEM reader is deprecated in favour of DER; the tests only need the PEM key.
#[allow(deprecated)]
pub fn rsa_key() -> RsaKey<Sha256> {
    let pem = std::fs::read_to_string(testdata("keys/rsa2048.pem")).unwrap();
    RsaKey::<Sha256>::from_pkcs8_pem(&pem).unwrap()
}

pub fn ed_key() -> Ed25519Key {
    let der = std::fs::read(testdata("keys/ed25519.der")).unwrap();
    Ed25519Key::from_pkcs8_maybe_unchecked_der(&der).unwrap()
}

/// Signs `msg` (relaxed/relaxed unless `simple`) and returns the DKIM-Signature field.
pub fn rsa_signature(domain: &str, headers: &[&str], msg: &[u8], simple: bool) -> String {
    let c = if simple {
        Canonicalization::Simple
    } else {
        Canonicalization::Relaxed
    };
    DkimSigner::from_key(rsa_key())
        .domain(domain)
        .selector("rsa")
        .headers(headers.iter().copied())
        .header_canonicalization(c)
        .body_canonicalization(c)
        .sign(msg)
        .unwrap()
        .to_header()
}

pub fn sign_rsa(domain: &str, msg: &[u8]) -> Vec<u8> {
    let sig = rsa_signature(
        domain,
        &["From", "To", "Subject", "Date", "Message-ID"],
        msg,
        false,
    );
    [sig.as_bytes(), msg].concat()
}

pub fn sign_ed(domain: &str, msg: &[u8]) -> Vec<u8> {
    let sig = DkimSigner::from_key(ed_key())
        .domain(domain)
        .selector("ed")
        .headers(["From", "To", "Subject", "Date"])
        .sign(msg)
        .unwrap()
        .to_header();
    [sig.as_bytes(), msg].concat()
}

/// Where the shared conformance suites are (read-only; never copied into the repository).
pub fn conformance_dir() -> PathBuf {
    std::env::var_os("AUTHMILTER_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"))
}

/// Where the published reference artefacts are (read-only; never copied into the repository):
/// `$AUTHMILTER_REFERENCE`, default `../shared/reference` (RFC 9990's schema, Appendix A).
pub fn reference_dir() -> PathBuf {
    std::env::var_os("AUTHMILTER_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference"))
}

/// The example.com test keys (selectors `rsa` and `ed`) as signing configuration, copied into
/// `dir` with mode 0600: a checkout does not keep modes, and the daemon refuses keys others
/// can read.
pub fn signing_keys(dir: &Path) -> Vec<authmilter::config::KeySpec> {
    use std::os::unix::fs::PermissionsExt;
    [("rsa", "rsa2048.pem"), ("ed", "ed25519.pem")]
        .into_iter()
        .map(|(selector, file)| {
            let key_file = dir.join(file);
            std::fs::copy(testdata(&format!("keys/{file}")), &key_file).unwrap();
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
            authmilter::config::KeySpec {
                domain: "example.com".into(),
                selector: selector.into(),
                key_file,
                identity: None,
                origin: None,
            }
        })
        .collect()
}
