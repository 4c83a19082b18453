//! The real `authmilter` binary: `check` (text and JSON) against the loopback DNS server,
//! `validate`, and errors for bad arguments and input.

use crate::common::*;
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use std::process::{Command, Output};

fn authmilter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(args)
        .env("AUTHMILTER_LOG", "off")
        .output()
        .expect("binary runs")
}

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        authmilter(&args)
    })
    .await
    .unwrap()
}

async fn server() -> DnsServer {
    DnsServer::start(Zone::from_file(testdata("dns/main.zone")).unwrap()).await
}

fn sample() -> String {
    testdata("messages/signed-example.com.eml")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_json_document_has_the_stable_keys() {
    let dns = server().await;
    let out = run(vec![
        "check".into(),
        "--json".into(),
        "--nameserver".into(),
        dns.addr.to_string(),
        "--ip".into(),
        "192.0.2.10".into(),
        "--helo".into(),
        "mail.example.com".into(),
        "--mail-from".into(),
        "alice@example.com".into(),
        "--rcpt".into(),
        "bob@example.net".into(),
        "--authserv-id".into(),
        "mx.cli.test".into(),
        sample(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["verdict"], "accept");
    assert!(doc["reasons"].is_array());
    assert_eq!(doc["spf"]["result"], "pass");
    assert_eq!(doc["spf"]["domain"], "example.com");
    assert_eq!(doc["spf"]["helo_result"], "none");
    assert_eq!(doc["dkim"][0]["result"], "pass");
    assert_eq!(doc["dkim"][0]["domain"], "example.com");
    assert_eq!(doc["dkim"][0]["selector"], "rsa");
    assert_eq!(doc["dkim"][0]["algorithm"], "rsa-sha256");
    assert!(doc["dkim"][0].get("reason").is_some());
    assert_eq!(doc["arc"]["result"], "none");
    assert_eq!(doc["dmarc"]["result"], "pass");
    assert_eq!(doc["dmarc"]["policy"], "reject");
    assert_eq!(doc["dmarc"]["domain"], "example.com");
    assert_eq!(doc["dmarc"]["disposition"], "none");
    assert!(doc["authentication_results"]
        .as_str()
        .unwrap()
        .starts_with("mx.cli.test;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_text_output_and_exit_status_for_a_reject() {
    let dns = server().await;
    // The same signed message from a host outside example.com's SPF, tampered with: reject,
    // and still exit status 0.
    let tampered = std::fs::read_to_string(sample())
        .unwrap()
        .replace("Hello Bob", "Pay Mallory");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tampered.eml");
    std::fs::write(&file, tampered).unwrap();
    let out = run(vec![
        "check".into(),
        "--nameserver".into(),
        dns.addr.to_string(),
        "--ip".into(),
        "203.0.113.5".into(),
        "--mail-from".into(),
        "<alice@example.com>".into(),
        file.display().to_string(),
    ])
    .await;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("verdict: reject (550 5.7.1"), "{text}");
    assert!(text.contains("Authentication-Results: "), "{text}");
    assert!(text.contains("dkim=fail (body hash mismatch)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_stdin_and_null_sender() {
    let dns = server().await;
    let addr = dns.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_authmilter"))
            .args([
                "check",
                "--json",
                "--nameserver",
                &addr,
                "--ip",
                "192.0.2.1",
                "--helo",
                "example.com",
                "--mail-from",
                "<>",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&message("a@example.org", "stdin", "x\r\n"))
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["spf"]["result"], "pass");
    assert_eq!(doc["spf"]["helo_result"], "pass");
}

#[test]
fn bad_arguments_and_input_are_one_line_errors() {
    for args in [
        vec!["check", "/nonexistent/message.eml"],
        vec!["check", "--ip", "not-an-ip", "x.eml"],
        vec!["check", "--nameserver", "1.2.3.4", "x.eml"],
        vec!["check", "--config", "/nonexistent.toml", "x.eml"],
    ] {
        let out = authmilter(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?}: no message");
    }
    let out = authmilter(&["check", "/nonexistent/message.eml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/message.eml"));
}

#[test]
fn validate_accepts_good_and_names_the_place_of_bad_configs() {
    let out = authmilter(&[
        "validate",
        "--config",
        testdata("config/full.toml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    let out = authmilter(&[
        "validate",
        "--config",
        testdata("config/broken-unknown-key.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken-unknown-key.toml:5: key `dns.nameserver`"),
        "{err}"
    );

    let out = authmilter(&[
        "validate",
        "--config",
        testdata("config/broken-value.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken-value.toml:3: key `limits.max_dkim_signatures`"),
        "{err}"
    );
}

/// Writes the sample messages in testdata/messages (run with AUTHMILTER_REGENERATE=1 after
/// changing the keys). Ignored otherwise: the committed files are what the tests read.
#[test]
fn regenerate_sample_messages() {
    if std::env::var_os("AUTHMILTER_REGENERATE").is_none() {
        return;
    }
    let msg = message(
        "Alice <alice@example.com>",
        "Lunch",
        "Hello Bob,\r\n\r\nLunch at noon?\r\n\r\nAlice\r\n",
    );
    std::fs::write(sample(), sign_rsa("example.com", &msg)).unwrap();
}
