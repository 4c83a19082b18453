//! The ValiMail ARC *signing* suite (17 tests), checked where it applies to our sealer.
//! Suite: `$AUTHMILTER_CONFORMANCE/arc/tests/arc-draft-sign-tests.yml`.
//!
//! The suite's key is 1024-bit RSA, which ring refuses to sign with (and RFC 8301 with it),
//! and its expected AAR merges the message's Authentication-Results fields, where ours carries
//! our own verification (RFC 8617 §4.1.1 leaves that to the sealer). So instead of comparing
//! text, each test checks that the bytes our sealer would sign are exactly the bytes the
//! suite's signer signed: the expected `b=` values must verify, with the suite's public key,
//! over the data our code builds (header selection and relaxed canonicalization for the AMS,
//! the chain in instance order for the seal). Also checked: `bh=` is ours byte for byte, our
//! instance and `cv=` are the expected ones (from our own validation of the incoming chain
//! through the loopback DNS server), and where the suite expects no set (a chain that
//! already ended with cv=fail) we add none.

use crate::arc_suite::last_duplicate_wins;
use crate::common::*;
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use authmilter::auth::arc_canon::{ams_signed_data, body_hash, seal_signed_data, ChainState};
use authmilter::auth::{Transaction, Verifier};
use authmilter::sign::der::base64_decode;
use authmilter::sign::seal::split_message;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arc_signing_suite() {
    let path = conformance_dir().join("arc/tests/arc-draft-sign-tests.yml");
    let text = std::fs::read_to_string(&path).expect("ARC signing suite present");
    let server = DnsServer::start(Zone::new()).await;
    let (mut total, mut failures) = (0usize, Vec::new());
    for doc in serde_yaml::Deserializer::from_str(&last_duplicate_wins(&text)) {
        let scenario = serde_yaml::Value::deserialize(doc).unwrap();
        let records: HashMap<String, String> = scenario["txt-records"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().unwrap().split_whitespace().collect::<Vec<_>>();
                (k.as_str().unwrap().to_string(), v.join(" "))
            })
            .collect();
        let public = public_key(records.values().next().unwrap());
        server.set_zone(Zone::from_txt_map(&records));
        let mut config = config_for(server.addr);
        config.dns.cache_size = 0;
        let verifier = Verifier::new(Arc::new(config)).unwrap();
        for (name, test) in scenario["tests"].as_mapping().unwrap() {
            total += 1;
            let name = name.as_str().unwrap().to_string();
            let raw = test["message"].as_str().unwrap().replace('\n', "\r\n");
            let conn = external("192.0.2.1", "relay.example");
            let mut tx = Transaction::begin(&verifier, &conn, "jqd@d1.example").await;
            tx.message(raw.as_bytes());
            let outcome = tx.finish(&verifier).await;
            let (fields, body) = split_message(raw.as_bytes());
            let chain = ChainState::of(&fields, outcome.arc.as_ref());
            let field = |key: &str| folded(test[key].as_str().unwrap_or(""));
            let (ams, seal, aar) = (field("AMS"), field("AS"), field("AAR"));
            if ams.is_empty() {
                // "if a chain is failing, don't add another set"
                if let Ok(state) = chain {
                    failures.push(format!("{name}: expected no set, we would seal {state:?}"));
                }
                continue;
            }
            let chain = match chain {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{name}: not sealed: {e}"));
                    continue;
                }
            };
            let mut problems = Vec::new();
            if tag(&seal, "i") != chain.instance().to_string() || tag(&seal, "cv") != chain.cv() {
                problems.push(format!("we seal i={} cv={}", chain.instance(), chain.cv()));
            }
            if tag(&ams, "bh") != authmilter::sign::der::base64_encode(&body_hash(body)) {
                problems.push("bh= differs".to_string());
            }
            let h: Vec<String> = test["sig-headers"]
                .as_str()
                .unwrap()
                .split(':')
                .map(str::to_string)
                .collect();
            let data = ams_signed_data(&fields, &h, &without_b(&ams));
            if !verifies(&public, &data, &tag(&ams, "b")) {
                problems.push("AMS b= does not verify over our data".into());
            }
            match seal_signed_data(
                &fields,
                chain,
                aar.as_bytes(),
                ams.as_bytes(),
                without_b(&seal).as_bytes(),
            ) {
                Ok(data) if verifies(&public, &data, &tag(&seal, "b")) => {}
                Ok(_) => problems.push("AS b= does not verify over our data".into()),
                Err(e) => problems.push(format!("seal data: {e}")),
            }
            if !problems.is_empty() {
                failures.push(format!("{name}: {}", problems.join("; ")));
            }
        }
    }
    println!(
        "ARC signing suite: {}/{total} passed",
        total - failures.len()
    );
    assert_eq!(total, 17, "the suite has 17 tests");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The suite spreads values over several YAML lines: a line ending in `;` ends a tag (a fold
/// there is white space), any other line break is inside a base64 value (no white space).
fn folded(value: &str) -> String {
    let mut out = String::new();
    for line in value.trim().lines().map(str::trim) {
        if out.ends_with(';') {
            out.push_str("\r\n ");
        }
        out.push_str(line);
    }
    out
}

/// A tag's value, white space removed.
fn tag(value: &str, name: &str) -> String {
    value
        .split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.split_whitespace().collect())
        .unwrap_or_default()
}

/// The field as it was signed: the `b=` value removed (RFC 6376 §3.7).
fn without_b(value: &str) -> String {
    value
        .split(';')
        .map(|t| match t.split_once('=') {
            Some((n, _)) if n.trim() == "b" => format!("{n}="),
            _ => t.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The RSAPublicKey inside the record's `p=` SubjectPublicKeyInfo.
fn public_key(record: &str) -> Vec<u8> {
    use pkcs8::der::Decode;
    let spki = base64_decode(tag(record, "p").as_bytes()).unwrap();
    let info = pkcs8::spki::SubjectPublicKeyInfoRef::from_der(&spki).unwrap();
    info.subject_public_key.raw_bytes().to_vec()
}

fn verifies(public: &[u8], data: &[u8], b: &str) -> bool {
    let Some(signature) = base64_decode(b.as_bytes()) else {
        return false;
    };
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        public,
    )
    .verify(data, &signature)
    .is_ok()
}
