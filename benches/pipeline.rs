//! The verification pipeline on a ~3 KB message with one RSA-2048 signature, DNS answers
//! cached (a loopback DNS server answers the warm-up, then nothing goes to the network), next
//! to the floor it cannot beat: one RSA-2048 verification plus SHA-256 over the message.
//!
//! `cargo bench --bench pipeline`

#[path = "../tests/integration/dns_server.rs"]
mod dns_server;
#[path = "../tests/integration/dns_zone.rs"]
mod dns_zone;

use authmilter::auth::{Connection, Verifier};
use authmilter::check::check_message;
use authmilter::config::{Config, DnsConfig};
use authmilter::policy::{Action, Policy};
use criterion::{criterion_group, criterion_main, Criterion};
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use ring::signature::{self, KeyPair, RsaKeyPair};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn testdata(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// A ~3 KB message, signed by example.com (relaxed/relaxed, RSA-2048).
fn message() -> Vec<u8> {
    let mut body = String::new();
    while body.len() < 2600 {
        body.push_str(
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n",
        );
    }
    let msg = format!(
        "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: Quarterly figures\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@example.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    );
    let pem = std::fs::read_to_string(testdata("keys/rsa2048.pem")).unwrap();
    #[allow(deprecated)]
    let key = RsaKey::<Sha256>::from_pkcs8_pem(&pem).unwrap();
    let sig = DkimSigner::from_key(key)
        .domain("example.com")
        .selector("rsa")
        .headers([
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            "Content-Type",
        ])
        .sign(msg.as_bytes())
        .unwrap()
        .to_header();
    [sig.as_bytes(), msg.as_bytes()].concat()
}

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = message();
    let zone = dns_zone::Zone::from_file(testdata("dns/main.zone")).unwrap();
    let server = rt.block_on(dns_server::DnsServer::start(zone));
    let config = Config {
        authserv_id: "mx.bench.example".into(),
        dns: DnsConfig {
            nameservers: vec![server.addr],
            timeout: Duration::from_secs(1),
            ..DnsConfig::default()
        },
        ..Config::default()
    };
    let verifier = Verifier::new(Arc::new(config)).unwrap();
    let policy = Policy::default();
    let mut conn = Connection::new("192.0.2.10".parse().unwrap());
    conn.helo = Some("mail.example.com".into());

    // Warm the caches, and make sure the message really passes.
    let d = rt.block_on(check_message(
        &verifier,
        &policy,
        &conn,
        "alice@example.com",
        &raw,
    ));
    assert_eq!(d.verdict.action, Action::Accept, "{:?}", d.verdict);
    rt.block_on(check_message(
        &verifier,
        &policy,
        &conn,
        "alice@example.com",
        &raw,
    ));
    let warm = server.queries();

    let mut group = c.benchmark_group("pipeline");
    group.throughput(criterion::Throughput::Elements(1));
    group.bench_function("check_3k_rsa2048_cached", |b| {
        b.iter(|| {
            rt.block_on(check_message(
                &verifier,
                &policy,
                &conn,
                "alice@example.com",
                &raw,
            ))
        })
    });
    group.finish();
    let extra = server.queries() - warm;
    eprintln!("DNS queries during the measurement: {extra}");

    // The floor: RSA-2048 verify (ring) + SHA-256 over the whole message.
    let pem = std::fs::read_to_string(testdata("keys/rsa2048.pem")).unwrap();
    let der = authmilter::sign::der::pem_decode(pem.as_bytes())
        .unwrap()
        .der;
    let pair = RsaKeyPair::from_pkcs8(&der).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(&signature::RSA_PKCS1_SHA256, &rng, &raw[..200], &mut sig)
        .unwrap();
    let public = signature::UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public_key().as_ref().to_vec(),
    );
    c.bench_function("floor/rsa2048_verify_plus_sha256_3k", |b| {
        b.iter(|| {
            let digest = ring::digest::digest(&ring::digest::SHA256, &raw);
            public.verify(&raw[..200], &sig).unwrap();
            digest
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = pipeline
}
criterion_main!(benches);
