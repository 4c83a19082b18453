//! DMARC aggregate reports we receive: `report import` (library and binary) on hand-written
//! reports shaped like Google's (zip), Microsoft's (xml.gz), an RFC 9990 reporter's (XML in
//! the 2.0 namespace) and a whole report message (gzip attachment), all under
//! `testdata/reports/`; duplicates; the hostile corpus (`testdata/reports/hostile/`, plus gzip
//! and zip bombs of 1 GiB built here); foreign domains kept or dropped; report mail imported
//! automatically through the milter and the SMTP front end, delivered or not; and the HTTP
//! routes over what was stored.

use crate::common::*;
use crate::http::call;
use crate::milter_client::{Daemon, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use crate::smtp_client::*;
use crate::smtp_front::{blocking, delivered, inbound, port};
use authmilter::config::{Config, ForeignReports};
use authmilter::milter::reply::Reply;
use authmilter::report::import::ImportError;
use authmilter::report::import_cmd::{import_target, Tally};
use authmilter::report::received::{Fate, ImportSettings};
use authmilter::store::{ReportFilter, Store};
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const RUA: &str = "dmarc-rua@example.com";
const XML: &str = "mail.example.net!example.com!1714521600!1714608000.xml";

fn reports_dir() -> PathBuf {
    testdata("reports")
}

fn settings() -> ImportSettings {
    ImportSettings::from(&Config::default().reports)
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    (dir, store)
}

/// Imports `target`, returning the tally and the lines printed.
fn import(store: &mut Store, target: &Path, settings: &ImportSettings) -> (Tally, String) {
    let mut out = Vec::new();
    let tally = import_target(store, target.to_str().unwrap(), settings, &mut out).unwrap();
    (tally, String::from_utf8(out).unwrap())
}

fn authmilter(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(args)
        .env("AUTHMILTER_LOG", "off")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn real_world_shaped_reports_are_stored_with_their_figures() {
    let (_dir, mut s) = store();
    let (tally, out) = import(&mut s, &reports_dir(), &settings());
    assert_eq!(
        tally,
        Tally {
            stored: 4,
            ..Tally::default()
        },
        "{out}"
    );
    let page = s.received_reports(&ReportFilter::default(), 10).unwrap();
    let by_reporter = |email: &str| -> Value {
        page.items
            .iter()
            .find(|i| i["email"] == email)
            .unwrap_or_else(|| panic!("{email} not stored: {out}"))
            .clone()
    };
    // (reporter, messages, DMARC pass, rows), as written in the fixtures.
    let expected = [
        ("noreply-dmarc-support@google.com", 5, 3, 2),
        ("dmarcreport@microsoft.com", 11, 10, 2),
        ("dmarc-reports@mail.example.net", 8, 7, 2),
        ("dmarc@reports.example.net", 4, 2, 2),
    ];
    for (email, messages, pass, rows) in expected {
        let r = by_reporter(email);
        assert_eq!(
            (
                r["messages"].as_i64(),
                r["dmarc_pass"].as_i64(),
                r["row_count"].as_i64()
            ),
            (Some(messages), Some(pass), Some(rows)),
            "{email}: {r}"
        );
        assert_eq!(r["domain"], "example.com");
        assert_eq!(r["period"]["begin"], "2024-05-01T00:00:00.000Z");
    }
    let ms = by_reporter("dmarcreport@microsoft.com");
    let full = s
        .received_report(ms["id"].as_i64().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(full["policy"]["p"], "quarantine");
    assert_eq!(full["policy"]["fo"], "0");
    let rows = full["rows"].as_array().unwrap();
    assert_eq!(rows[0]["source_ip"], "203.0.113.5");
    assert_eq!(rows[0]["envelope_to"], "example.net");
    assert_eq!(rows[0]["auth_results"]["spf"][0]["scope"], "mfrom");
    assert_eq!(rows[1]["disposition"], "quarantine");
    let v6 = by_reporter("dmarc-reports@mail.example.net");
    let full = s
        .received_report(v6["id"].as_i64().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(full["rows"][1]["source_ip"], "2001:db8::25");
    assert_eq!(full["rows"][1]["reasons"][0]["type"], "local_policy");
    assert_eq!(full["policy"]["discovery_method"], "treewalk");

    let sum = s.received_summary(Some("example.com"), 0).unwrap();
    assert_eq!(
        (sum["messages"].as_i64(), sum["dmarc_pass"].as_i64()),
        (Some(28), Some(22))
    );
    // 198.51.100.20 failed in two reports (2 + 2), more than any other address.
    assert_eq!(sum["top_failing_sources"][0]["source_ip"], "198.51.100.20");
    assert_eq!(sum["top_failing_sources"][0]["messages"], 4);
    assert_eq!(sum["reporters"].as_array().unwrap().len(), 4);
}

#[test]
fn duplicates_are_stored_once() {
    let (_dir, mut s) = store();
    import(&mut s, &reports_dir(), &settings());
    let (tally, out) = import(&mut s, &reports_dir(), &settings());
    assert_eq!(
        tally,
        Tally {
            duplicate: 4,
            ..Tally::default()
        },
        "{out}"
    );
    assert!(out.contains("duplicate of #"), "{out}");
    let page = s.received_reports(&ReportFilter::default(), 100).unwrap();
    assert_eq!(page.items.len(), 4);
    // The same report inside a message and as a bare file is still one report.
    let eml = std::fs::read(reports_dir().join("reports.example.net-report.eml")).unwrap();
    let gz = authmilter::report::import::parse_input(&eml, MIB);
    let report = gz[0].report.as_ref().unwrap();
    assert_eq!(report.report_metadata.report_id, "1714608000.302218");
}

/// 1 GiB of zeros, compressed as it is written (never held in memory).
fn gzip_bomb() -> Vec<u8> {
    let zeros = vec![0u8; MIB];
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..1024 {
        e.write_all(&zeros).unwrap();
    }
    e.finish().unwrap()
}

/// A zip whose one entry inflates to 1 GiB of zeros.
fn zip_bomb() -> Vec<u8> {
    let zeros = vec![0u8; MIB];
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("report.xml", opts).unwrap();
    for _ in 0..1024 {
        w.write_all(&zeros).unwrap();
    }
    w.finish().unwrap().into_inner()
}

// RFC 9990 §4 reports arrive compressed from anyone: the hostile ones are refused one by one,
// with the reason, and the good report among them is stored all the same.
#[test]
fn hostile_corpus_is_refused_and_nothing_else_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(reports_dir().join("hostile")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let gz = gzip_bomb();
    let zip = zip_bomb();
    // Small on disk, a gigabyte each once inflated.
    assert!(
        gz.len() < 2 * MIB && zip.len() < 2 * MIB,
        "{} {}",
        gz.len(),
        zip.len()
    );
    std::fs::write(dir.path().join("bomb.xml.gz"), gz).unwrap();
    std::fs::write(dir.path().join("bomb.zip"), zip).unwrap();
    std::fs::copy(reports_dir().join(XML), dir.path().join("good.xml")).unwrap();

    let (_store_dir, mut s) = store();
    let (tally, out) = import(&mut s, dir.path(), &settings());
    assert_eq!((tally.stored, tally.refused), (1, 11), "{out}");
    let line = |file: &str| -> &str {
        out.lines()
            .find(|l| l.contains(&format!("/{file}:")))
            .unwrap_or_else(|| panic!("no line for {file}: {out}"))
    };
    let too_large = ImportError::TooLarge(10 * MIB).to_string();
    let expected = [
        ("bomb.xml.gz", too_large.as_str()),
        ("bomb.zip", too_large.as_str()),
        ("billion-laughs.xml", "with a DTD"),
        ("external-entity.xml", "with a DTD"),
        ("undeclared-entity.xml", "undeclared entity &lol9;"),
        ("wrong-namespace.xml", "namespace `urn:example:not-dmarc`"),
        ("wrong-root.xml", "root element is <html>"),
        ("truncated.xml", "truncated"),
        ("truncated.xml.gz", "truncated gzip"),
        ("not-xml.txt", "not a report"),
        ("mismatched-tags.xml", "malformed XML"),
        ("good.xml", "stored as #1"),
    ];
    for (file, says) in expected {
        assert!(line(file).contains(says), "{file}: {}", line(file));
    }
}

#[test]
fn foreign_domains_are_kept_or_dropped() {
    let xml = reports_dir().join(XML);
    let mut owned = settings();
    owned.owned_domains = vec!["example.org".into()];
    owned.foreign = ForeignReports::Drop;
    let (_d, mut s) = store();
    let (tally, out) = import(&mut s, &xml, &owned);
    assert_eq!(tally.dropped, 1, "{out}");
    assert!(out.contains("dropped (not an owned domain"), "{out}");
    assert!(s
        .received_reports(&ReportFilter::default(), 10)
        .unwrap()
        .items
        .is_empty());
    // A subdomain of an owned domain is owned.
    assert!(owned.owns("mail.example.org") && !owned.owns("notexample.org"));

    owned.foreign = ForeignReports::Keep;
    let (tally, _) = import(&mut s, &xml, &owned);
    assert_eq!(tally.stored, 1);
    owned.owned_domains = vec!["example.com".into()];
    owned.foreign = ForeignReports::Drop;
    let fates =
        authmilter::report::received::import(&mut s, &std::fs::read(&xml).unwrap(), &owned, 0);
    assert!(matches!(fates[0].fate, Fate::Duplicate { .. }), "{fates:?}");
}

#[test]
fn report_import_command_prints_each_file_and_sets_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.sqlite");
    let db = db.to_str().unwrap();
    let all = reports_dir();
    let out = authmilter(
        &["report", "import", "--store", db, all.to_str().unwrap()],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.matches("stored as #").count(), 4, "{text}");
    assert!(
        text.ends_with("4 stored, 0 duplicate, 0 dropped, 0 refused\n"),
        "{text}"
    );

    // Standard input: a duplicate is not an error.
    let eml = std::fs::read(all.join("reports.example.net-report.eml")).unwrap();
    let out = authmilter(&["report", "import", "--store", db, "-"], Some(&eml));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("-: [reports.example.net!"), "{text}");
    assert!(text.contains("duplicate of #"), "{text}");

    let hostile = all.join("hostile");
    let out = authmilter(
        &["report", "import", "--store", db, hostile.to_str().unwrap()],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.matches(": refused: ").count(), 9, "{text}");

    // Nowhere to store: nothing tried.
    let out = authmilter(&["report", "import", all.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no verdict store"));
    let out = authmilter(
        &["report", "import", "--store", db, "/nonexistent/report.xml"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot read"));
}

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
    let d = Daemon::start(|c| with_rua(c, false)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lists_filters_shows_and_summarises_received_reports() {
    let d = Daemon::start_with_api(|c| {
        c.reports.owned_domains = vec!["example.com".into()];
        // The fixtures are from 2024: retention would prune them as the writer starts.
        c.store.retention_days = 0;
    })
    .await;
    let api = d.http.unwrap();
    // Import into the daemon's store as `report import` would, beside the running server.
    let path = d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite");
    let mut s = Store::open(&path).unwrap();
    let (tally, out) = import(&mut s, &reports_dir(), &settings());
    assert_eq!(tally.stored, 4, "{out}");
    let foreign = std::fs::read_to_string(reports_dir().join(XML))
        .unwrap()
        .replace(
            "<domain>example.com</domain>\n    <p>",
            "<domain>example.org</domain>\n    <p>",
        )
        .replace("mail.example.net-2024-05-01-0001", "foreign-1");
    let fates = authmilter::report::received::import(&mut s, foreign.as_bytes(), &settings(), 0);
    assert!(matches!(fates[0].fate, Fate::Stored { .. }), "{fates:?}");

    let get = |target: &'static str| call(api, "GET", target, None, b"");
    let all = get("/v1/reports").await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert_eq!(all["items"][0]["domain"], "example.org");
    assert_eq!(all["items"][0]["owned"], false);
    assert_eq!(all["items"][1]["owned"], true);

    let page = get("/v1/reports?limit=2").await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap().to_string();
    let rest = call(
        api,
        "GET",
        &format!("/v1/reports?limit=10&next={next}"),
        None,
        b"",
    )
    .await
    .json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);

    let google = get("/v1/reports?domain=EXAMPLE.com&reporter=google.com")
        .await
        .json();
    let items = google["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["report_id"], "4170294883417309542");
    // Periods: all of May 1st 2024; since/until select by overlap.
    let after = get("/v1/reports?since=2024-05-02T00:00:01Z").await.json();
    assert!(after["items"].as_array().unwrap().is_empty());
    let during = get("/v1/reports?since=2024-05-01T12:00:00Z&until=2024-05-01T13:00:00Z").await;
    let during = during.json();
    assert_eq!(during["items"].as_array().unwrap().len(), 5, "{during}");

    let id = items[0]["id"].as_i64().unwrap();
    let one = call(api, "GET", &format!("/v1/reports/{id}"), None, b"")
        .await
        .json();
    assert_eq!(one["org_name"], "google.com");
    assert_eq!(one["rows"].as_array().unwrap().len(), 2);
    assert_eq!(one["rows"][0]["count"], 3);
    assert_eq!(one["owned"], true);

    let sum = get("/v1/reports/summary?domain=example.com&since=1714000000")
        .await
        .json();
    assert_eq!(
        (sum["reports"].as_i64(), sum["messages"].as_i64()),
        (Some(4), Some(28))
    );
    assert_eq!(sum["pass_rate"].as_f64(), Some(22.0 / 28.0));
    assert_eq!(sum["top_failing_sources"][0]["source_ip"], "198.51.100.20");
    let per = sum["reporters"].as_array().unwrap();
    assert_eq!(per.len(), 4);
    assert_eq!(per[0]["email"], "dmarcreport@microsoft.com");
    // Default window: the last 7 days, so these 2024 reports are not in it.
    let recent = get("/v1/reports/summary").await.json();
    assert_eq!(recent["reports"], 0);

    assert_eq!(get("/v1/reports/999999").await.status, 404);
    assert_eq!(get("/v1/reports/abc").await.status, 400);
    assert_eq!(get("/v1/reports?colour=blue").await.status, 400);
    assert_eq!(get("/v1/reports?limit=0").await.status, 400);
    assert_eq!(get("/v1/reports/summary?since=yesterday").await.status, 400);
}
