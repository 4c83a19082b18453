//! Report mail arriving through the milter and the SMTP front end is imported off the hot
//! path, and delivered or not as `reports.deliver_imported` says.

use super::{reports_dir, XML};
use crate::common::*;
use crate::http::call;
use crate::milter_client::{Daemon, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use crate::smtp_client::*;
use crate::smtp_front::{blocking, delivered, inbound, port};
use authmilter::config::Config;
use authmilter::milter::reply::Reply;
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const RUA: &str = "dmarc-rua@example.com";

/// A report message as a reporter sends one: From a domain without DMARC (so it is accepted),
/// a text part and the RFC 9990 fixture as a gzip attachment.
fn report_mail(subject: &str) -> Vec<u8> {
    let xml = std::fs::read(reports_dir().join(XML)).unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&xml).unwrap();
    let gz = e.finish().unwrap();
    use base64ct::Encoding;
    let b64 = base64ct::Base64::encode_string(&gz);
    let mut m = format!(
        "From: Reporter <dmarc-noreply@example.org>\r\nTo: {RUA}\r\nSubject: {subject}\r\n\
         Date: Thu, 2 May 2024 00:10:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nAn aggregate report.\r\n\
         --b\r\nContent-Type: application/gzip; name=\"r.xml.gz\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    );
    for line in b64.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(line).unwrap());
        m.push_str("\r\n");
    }
    m.push_str("--b--\r\n");
    m.into_bytes()
}

fn with_rua(c: &mut Config, deliver: bool) {
    c.reports.rua_addresses = vec![RUA.into()];
    c.reports.deliver_imported = deliver;
    // The report is from 2024: retention must not prune it before the test looks.
    c.store.retention_days = 0;
}

/// Polls `GET /v1/reports` until it lists `n` reports.
async fn reports_listed(api: SocketAddr, n: usize) -> Value {
    for _ in 0..100 {
        let r = call(api, "GET", "/v1/reports", None, b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        if v["items"].as_array().unwrap().len() >= n {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} reports after 5 s");
}

/// Polls `/metrics` until it has `line` (the importer counts after it stored).
async fn metric(api: SocketAddr, line: &str) -> bool {
    for _ in 0..100 {
        let text = call(api, "GET", "/metrics", None, b"").await.text();
        if text.lines().any(|l| l == line) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_imports_report_mail_and_delivers_it() {
    let d = Daemon::start_with_api(|c| with_rua(c, true)).await;
    let api = d.http.unwrap();
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("203.0.113.9", "mx.example.org").await;
    let r = mta
        .message_to(
            "Q1",
            "dmarc-noreply@example.org",
            None,
            &[RUA],
            &report_mail("m1"),
        )
        .await;
    assert_eq!(r.last(), Some(&Reply::Continue), "{r:?}");
    let v = reports_listed(api, 1).await;
    assert_eq!(v["items"][0]["email"], "dmarc-reports@mail.example.net");
    assert!(
        metric(
            api,
            "authmilter_reports_received_total{result=\"stored\"} 1"
        )
        .await
    );
    // The same report again: counted as a duplicate, delivered as before.
    let r = mta
        .message_to(
            "Q2",
            "dmarc-noreply@example.org",
            None,
            &[RUA],
            &report_mail("m2"),
        )
        .await;
    assert_eq!(r.last(), Some(&Reply::Continue), "{r:?}");
    assert!(
        metric(
            api,
            "authmilter_reports_received_total{result=\"duplicate\"} 1"
        )
        .await
    );
    assert_eq!(
        reports_listed(api, 1).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_discards_imported_report_mail_when_told_to() {
    let d = Daemon::start_with_api(|c| with_rua(c, false)).await;
    let api = d.http.unwrap();
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("203.0.113.9", "mx.example.org").await;
    let r = mta
        .message_to(
            "Q1",
            "dmarc-noreply@example.org",
            None,
            &["DMARC-RUA@Example.com"],
            &report_mail("d1"),
        )
        .await;
    assert_eq!(r, vec![Reply::Discard]);
    reports_listed(api, 1).await;
    // Mail for someone else as well is never discarded.
    let r = mta
        .message_to(
            "Q2",
            "dmarc-noreply@example.org",
            None,
            &[RUA, "bob@example.net"],
            &report_mail("d2"),
        )
        .await;
    assert_eq!(r.last(), Some(&Reply::Continue), "{r:?}");
    // Ordinary mail is untouched.
    let plain = message("Alice <alice@example.org>", "hello", "Hi.\r\n");
    let r = mta.message("Q3", "alice@example.org", None, &plain).await;
    assert_eq!(r.last(), Some(&Reply::Continue), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_without_a_store_delivers_report_mail_and_counts_it_lost() {
    let d = Daemon::start_with_api(|c| {
        with_rua(c, false);
        c.store.path = None;
    })
    .await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("203.0.113.9", "mx.example.org").await;
    let r = mta
        .message_to(
            "Q1",
            "dmarc-noreply@example.org",
            None,
            &[RUA],
            &report_mail("n1"),
        )
        .await;
    // Not imported, so not discarded either.
    assert_eq!(r.last(), Some(&Reply::Continue), "{r:?}");
    let api = d.http.unwrap();
    assert!(metric(api, "authmilter_reports_received_total{result=\"lost\"} 1").await);
}

async fn smtp_daemon(deliver: bool, maildir: &Path) -> Daemon {
    let m = maildir.to_path_buf();
    Daemon::start_with_api(move |c| {
        inbound(c, &m);
        c.smtp.local_domains = vec!["example.com".into(), "example.net".into()];
        with_rua(c, deliver);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_front_end_imports_report_mail_and_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let d = smtp_daemon(true, &maildir).await;
    let p = port(&d);
    let raw = report_mail("s1");
    let sent = blocking(move || send_plain(p, "dmarc-noreply@example.org", &[RUA], &raw)).await;
    assert_eq!(
        (sent.stage, sent.reply.code),
        (Stage::EndOfData, 250),
        "{sent}"
    );
    assert_eq!(delivered(&maildir).len(), 1);
    let v = reports_listed(d.http.unwrap(), 1).await;
    assert_eq!(
        v["items"][0]["report_id"],
        "mail.example.net-2024-05-01-0001"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_front_end_accepts_but_does_not_deliver_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let d = smtp_daemon(false, &maildir).await;
    let p = port(&d);
    let raw = report_mail("s2");
    let sent = blocking(move || send_plain(p, "dmarc-noreply@example.org", &[RUA], &raw)).await;
    assert_eq!(
        (sent.stage, sent.reply.code),
        (Stage::EndOfData, 250),
        "{sent}"
    );
    reports_listed(d.http.unwrap(), 1).await;
    assert!(delivered(&maildir).is_empty());
    // With another recipient it is delivered (to both) and imported again (a duplicate).
    let raw = report_mail("s3");
    let sent = blocking(move || {
        send_plain(
            p,
            "dmarc-noreply@example.org",
            &[RUA, "bob@example.net"],
            &raw,
        )
    })
    .await;
    assert_eq!(sent.reply.code, 250, "{sent}");
    assert_eq!(delivered(&maildir).len(), 1);
}
