//! DMARC aggregate reports we receive: `report import` (library and binary) on hand-written
//! reports shaped like Google's (zip), Microsoft's (xml.gz), an RFC 9990 reporter's (XML in
//! the 2.0 namespace) and a whole report message (gzip attachment), all under
//! `testdata/reports/`; duplicates; the hostile corpus (`testdata/reports/hostile/`, plus gzip
//! and zip bombs of 1 GiB built here); foreign domains kept or dropped. [`doors`]: report
//! mail imported automatically through the milter and the SMTP front end, delivered or not;
//! [`api`]: the HTTP routes over what was stored; [`quirks`]: what real receivers get wrong,
//! imported as parsedmarc reads it.

mod api;
mod doors;
mod failures;
mod quirks;

use crate::common::*;
use authmilter::config::{Config, ForeignReports};
use authmilter::report::import::ImportError;
use authmilter::report::import_cmd::{import_target, Tally};
use authmilter::report::received::{Fate, ImportSettings};
use authmilter::store::{ReportFilter, Store};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: usize = 1024 * 1024;
pub const XML: &str = "mail.example.net!example.com!1714521600!1714608000.xml";

pub fn reports_dir() -> PathBuf {
    testdata("reports")
}

pub fn settings() -> ImportSettings {
    ImportSettings::from(&Config::default().reports)
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    (dir, store)
}

/// Imports `target`, returning the tally and the lines printed.
pub fn import(store: &mut Store, target: &Path, settings: &ImportSettings) -> (Tally, String) {
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
