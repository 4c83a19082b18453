//! The milter load generator (`bench-milter`) against the daemon in-process: the counts in
//! its report add up, every verdict shows up under the right reply kind, and a dead target
//! is counted as errors rather than crashing or hanging. Throughput is printed, never
//! asserted (the machine is shared).

use crate::common::*;
use crate::milter_client::Daemon;
use authmilter::loadgen::milter::{run, MilterOptions};
use authmilter::loadgen::stats::Report;
use authmilter::loadgen::{Client, Limit, Target};
use std::collections::BTreeMap;
use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;

fn options(target: Target, raw: Vec<u8>, ip: &str, messages: u64) -> MilterOptions {
    MilterOptions {
        target,
        connections: 4,
        limit: Limit {
            messages: Some(messages),
            duration: Some(Duration::from_secs(60)),
        },
        message: Arc::new(raw),
        client: Client {
            ip: ip.parse().unwrap(),
            helo: "mail.example.com".into(),
            mail_from: "alice@example.com".into(),
            rcpt: "bob@example.net".into(),
        },
        session_messages: 40,
        rate: None,
        timeout: Duration::from_secs(10),
        idle: None,
    }
}

fn signed_message() -> Vec<u8> {
    std::fs::read(testdata("messages/signed-example.com.eml")).unwrap()
}

fn counts(pairs: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    pairs.iter().copied().collect()
}

/// The invariants every report must keep, whatever the load.
fn check_consistent(r: &Report) {
    assert_eq!(r.messages, r.replies.values().sum::<u64>(), "{r:?}");
    assert_eq!(r.errors, r.error_kinds.values().sum::<u64>(), "{r:?}");
    assert!(r.p50_ms <= r.p90_ms && r.p90_ms <= r.p99_ms && r.p99_ms <= r.max_ms);
    let json = serde_json::to_value(r).unwrap();
    for key in [
        "messages",
        "seconds",
        "msgs_per_sec",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
        "errors",
        "replies",
    ] {
        assert!(json.get(key).is_some(), "JSON lacks {key}: {json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_milter_counts_add_up() {
    let d = Daemon::start(|_| {}).await;
    let target = Target::Tcp(d.addr);

    // Signed by example.com, from inside its SPF range: DMARC pass, A-R inserted, continue.
    let r = run(options(target.clone(), signed_message(), "192.0.2.10", 300)).await;
    println!("{}", r.text());
    check_consistent(&r);
    assert_eq!(r.messages, 300);
    assert_eq!(r.errors, 0, "{:?}", r.error_kinds);
    assert_eq!(r.replies, counts(&[("continue", 300)]));
    assert_eq!(r.edits, counts(&[("insert_header", 300)]));
    assert_eq!(r.ended_early, 0);
    // 4 connections, a new one every 40 messages: at least 300 / 40 sessions.
    assert!(r.sessions >= 8, "{r:?}");

    // Unsigned, from outside the SPF range: example.com's p=reject applies at end of message.
    let unsigned = b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n\r\nHi\r\n";
    let r = run(options(
        target.clone(),
        unsigned.to_vec(),
        "203.0.113.66",
        40,
    ))
    .await;
    check_consistent(&r);
    assert_eq!(r.replies, counts(&[("replycode_5xx", 40)]), "{r:?}");
    assert_eq!(r.errors, 0);

    // example.net publishes p=quarantine.
    let quarantined = b"From: Bob <bob@example.net>\r\nTo: carol@example.org\r\n\r\nHi\r\n";
    let mut opts = options(target.clone(), quarantined.to_vec(), "203.0.113.66", 40);
    opts.client.mail_from = "bob@example.net".into();
    let r = run(opts).await;
    check_consistent(&r);
    assert_eq!(r.replies, counts(&[("quarantine", 40)]), "{r:?}");

    // A trusted client with nothing to sign: MAIL is not answered (SMFIP_NR_MAIL), so the
    // content is sent and let through, untouched, at its end.
    let r = run(options(target, signed_message(), "127.0.0.1", 40)).await;
    check_consistent(&r);
    assert_eq!(r.replies, counts(&[("continue", 40)]), "{r:?}");
    assert_eq!(r.ended_early, 0);
    assert!(r.edits.is_empty(), "{r:?}");
}

/// Postfix writes each message's envelope (smtpd) and content (cleanup) separately, with
/// Nagle on; the envelope needs no reply from us, so unless we ACK it at once, the content
/// waits for our delayed ACK: about 40 ms per message (see `MilterStream` for TCP). The
/// generator writes the way Postfix does; a few milliseconds per message is normal, 40 is
/// the stall. Timing-based, so not part of the default run (speed is measured in benchmarks,
/// not asserted in tests, and a loaded CI machine could blur it): `cargo test -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing check; run with --ignored on a quiet machine"]
async fn postfix_write_pattern_gets_no_delayed_ack_stall() {
    let d = Daemon::start(|_| {}).await;
    let unsigned = b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n\r\nHi\r\n";
    let mut opts = options(Target::Tcp(d.addr), unsigned.to_vec(), "203.0.113.66", 30);
    opts.connections = 1;
    let r = run(opts).await;
    println!("{}", r.text());
    check_consistent(&r);
    assert_eq!(r.messages, 30);
    assert!(r.p50_ms < 20.0, "median {} ms: delayed-ACK stall", r.p50_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_milter_dead_target_is_errors_not_a_panic() {
    // A port nobody listens on: bound, then released.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut opts = options(Target::Tcp(addr), signed_message(), "192.0.2.10", 6);
    opts.connections = 2;
    let r = run(opts).await;
    check_consistent(&r);
    assert_eq!(r.messages, 0);
    assert_eq!(r.errors, 6);
    assert_eq!(r.error_kinds, counts(&[("connect", 6)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_milter_binary_prints_json() {
    let d = Daemon::start(|_| {}).await;
    let message = testdata("messages/signed-example.com.eml");
    let args = [
        "bench-milter".to_string(),
        "--target".into(),
        d.addr.to_string(),
        "--connections".into(),
        "3".into(),
        "--messages".into(),
        "60".into(),
        "--message".into(),
        message.display().to_string(),
        "--mail-from".into(),
        "<alice@example.com>".into(),
        "--json".into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Process::new(env!("CARGO_BIN_EXE_authmilter"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(json["messages"], 60);
    assert_eq!(json["errors"], 0);
    assert_eq!(json["replies"]["continue"], 60);
    assert!(json["msgs_per_sec"].as_f64().unwrap() > 0.0);

    // Unbounded runs are refused before anything is sent.
    let out = Process::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["bench-milter", "--target", "127.0.0.1:1", "--message"])
        .arg(testdata("messages/signed-example.com.eml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bounded"));
}
