//! Published DKIM vectors: RFC 8463 Appendix A (Ed25519 and RSA signatures of one message),
//! verified through the loopback DNS server.

use crate::common::*;
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use authmilter::auth::{AuthResult, Transaction, Verifier};
use std::sync::Arc;

#[tokio::test]
async fn rfc8463_both_signatures_pass() {
    let dir = conformance_dir().join("dkim/rfc8463");
    let zone = Zone::from_txt_json_file(dir.join("dns.json")).unwrap();
    let server = DnsServer::start(zone).await;
    let verifier = Verifier::new(Arc::new(config_for(server.addr))).unwrap();
    let raw = std::fs::read(dir.join("A3-signed.eml")).unwrap();
    let conn = external("192.0.2.1", "relay.example");
    let mut tx = Transaction::begin(&verifier, &conn, "joe@football.example.com").await;
    tx.message(&raw);
    let outcome = tx.finish(&verifier).await;
    let mut results: Vec<_> = outcome
        .dkim
        .iter()
        .map(|d| (d.algorithm.clone(), d.result, d.selector.clone()))
        .collect();
    results.sort();
    assert_eq!(
        results,
        vec![
            (
                "ed25519-sha256".to_string(),
                AuthResult::Pass,
                "brisbane".to_string()
            ),
            (
                "rsa-sha256".to_string(),
                AuthResult::Pass,
                "test".to_string()
            ),
        ]
    );
}
