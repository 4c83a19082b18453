//! DKIM signing throughput on one core: a ~3 KB message signed with RSA-2048 and with Ed25519
//! through `Signer::sign` (authorisation, header selection, canonicalization, body hash,
//! signature, field formatting), next to the bare ring signature of the same key — the floor
//! to compare with `openssl speed -seconds 3 rsa2048 ed25519` on the same machine.
//!
//! `cargo bench --bench signing`

use authmilter::config::SigningConfig;
use authmilter::sign::{DomainKey, PrivateKey, Signer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn key(file: &str, selector: &str) -> DomainKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/keys")
        .join(file);
    DomainKey {
        domain: "example.com".into(),
        selector: selector.into(),
        identity: None,
        key: PrivateKey::from_pem(&std::fs::read(path).unwrap()).unwrap(),
    }
}

/// A ~3 KB plain-text message.
fn message() -> Vec<u8> {
    let mut body = String::new();
    while body.len() < 2600 {
        body.push_str(
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n",
        );
    }
    format!(
        "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: Quarterly figures\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@example.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
    .into_bytes()
}

fn benches(c: &mut Criterion) {
    let msg = message();
    let mut group = c.benchmark_group("sign");
    group.throughput(Throughput::Elements(1));
    for (file, selector, name) in [
        ("rsa2048.pem", "rsa", "rsa2048"),
        ("ed25519.pem", "ed", "ed25519"),
    ] {
        let signer = Signer::with_keys(&SigningConfig::default(), vec![key(file, selector)]);
        group.bench_function(format!("{name}/message"), |b| {
            b.iter(|| {
                signer
                    .sign(black_box("example.com"), None, black_box(&msg))
                    .unwrap()
            })
        });
        // The signature alone, over a typical canonical header block (~600 bytes).
        let k = key(file, selector).key;
        let data = vec![b'h'; 600];
        group.bench_function(format!("{name}/ring-only"), |b| {
            b.iter(|| k.sign_bytes(black_box(&data)).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = signing;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = benches
}
criterion_main!(signing);
