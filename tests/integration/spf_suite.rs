//! The RFC 7208 SPF test suite (203 tests), every zone served by the loopback DNS server and
//! every test run through `Transaction::begin`, as a transport would.
//! Suite: `$AUTHMILTER_CONFORMANCE/spf/rfc7208-tests.json` (default `../shared/conformance`).

use crate::common::*;
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use authmilter::auth::{Connection, Transaction, Verifier};
use serde_json::Value;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7208_suite() {
    let path = conformance_dir().join("spf/rfc7208-tests.json");
    let suite: Value = serde_json::from_slice(&std::fs::read(&path).expect("SPF suite present"))
        .expect("suite is JSON");
    let server = DnsServer::start(Zone::new()).await;
    let (mut total, mut failures) = (0usize, Vec::new());
    for scenario in suite["scenarios"].as_array().unwrap() {
        let zone = Zone::from_spf_suite_zonedata(&scenario["zonedata"]).expect("zone converts");
        server.set_zone(zone);
        for test in scenario["tests"].as_array().unwrap() {
            total += 1;
            // No caching: each test must see only its scenario's zone.
            let mut config = config_for(server.addr);
            config.dns.cache_size = 0;
            config.authserv_id = "receiver.test".into();
            let verifier = Verifier::new(Arc::new(config)).unwrap();
            let mut conn = Connection::new(test["host"].as_str().unwrap().parse().unwrap());
            conn.helo = test["helo"].as_str().map(str::to_string);
            let mail_from = test["mailfrom"].as_str().unwrap_or("");
            let tx = Transaction::begin(&verifier, &conn, mail_from).await;
            let spf = &tx.spf().unwrap().mail_from;
            let expected: Vec<&str> = test["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let mut ok = expected.contains(&spf.result.as_str());
            if let (true, Some(exp)) = (
                ok && spf.result.as_str() == "fail",
                test["explanation"].as_str(),
            ) {
                // The suite's driver sets the default explanation to "DEFAULT".
                ok = spf.explanation.as_deref().unwrap_or("DEFAULT") == exp;
            }
            if !ok {
                failures.push(format!(
                    "{}: expected {expected:?} {:?}, got {} {:?} ({})",
                    test["name"].as_str().unwrap(),
                    test["explanation"],
                    spf.result,
                    spf.explanation,
                    spf.reason
                ));
            }
        }
    }
    println!("RFC 7208 suite: {}/{total} passed", total - failures.len());
    assert_eq!(total, 203, "the suite has 203 tests");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
