//! The quirk corpus (`testdata/reports/quirks/`, written by `make.py` there; its README says
//! which real sender behaviour each file reproduces): every file imports, with the same
//! reporter, report id, rows and counts parsedmarc reads from it, and the stored report names
//! what was repaired. parsedmarc runs on each file here (skipped when missing unless
//! `AUTHMILTER_REQUIRE_PEERS=1`).

use super::{import, settings};
use crate::common::*;
use crate::postfix::skip;
use authmilter::store::{ReportFilter, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Each file, the file parsedmarc reads for it (itself, but for the one quirk parsedmarc does
/// not read), and words the stored report's repair must contain (none for a clean read).
const CORPUS: &[(&str, &str, &str)] = &[
    ("empty-org-name.xml", "empty-org-name.xml", "empty org_name"),
    (
        "xs-schema-wrapper.xml",
        "xs-schema-wrapper.xml",
        "wrapper element <xs:schema>",
    ),
    ("latin1-bytes.xml", "latin1-bytes.xml", "not UTF-8"),
    (
        "unescaped-address.xml",
        "unescaped-address.xml",
        "unescaped '<', '>' or '&'",
    ),
    (
        "bare-ampersand.xml",
        "bare-ampersand.xml",
        "unescaped '<', '>' or '&'",
    ),
    ("empty-optional-fields.xml", "empty-optional-fields.xml", ""),
    (
        "missing-optional-fields.xml",
        "missing-optional-fields.xml",
        "",
    ),
    (
        "gzip-trailing-crlf.xml.gz",
        "gzip-trailing-crlf.xml.gz",
        "2 byte(s) after the end of the gzip",
    ),
    // parsedmarc decodes a zip's first member as text, so it cannot read a gzip inside a zip:
    // compared with its reading of the member once gunzipped.
    ("gzip-in-zip.zip", "gzip-in-zip.inner.xml", "held gzip"),
    (
        "octet-stream.eml",
        "octet-stream.eml",
        "labelled application/octet-stream (ATT00001.bin)",
    ),
    ("odd-name.eml", "odd-name.eml", ""),
];

/// What both readings must agree on: reporter, report id, policy domain, p, and the
/// messages per source address.
type Reading = (String, String, String, String, BTreeMap<String, u64>);

/// A reporter's name as both readers agree on it: its letters and digits. They differ only
/// in what they make of the characters repaired: bytes that are not UTF-8 become U+FFFD here,
/// so the operator sees where text was lost, where parsedmarc drops them; a bare `&` is kept
/// here and dropped there.
fn name(v: &serde_json::Value) -> String {
    v.as_str()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_alphanumeric() && *c != '\u{fffd}')
        .collect()
}

fn parsedmarc(file: &Path) -> Option<Reading> {
    let program = std::env::var("AUTHMILTER_PARSEDMARC")
        .unwrap_or("/opt/authmilter-venv/bin/parsedmarc".into());
    if !Path::new(&program).is_file() {
        return skip("parsedmarc not installed (.ci/run makes its virtualenv)");
    }
    let out = Command::new(&program)
        .arg("--offline")
        .arg(file)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let reports = json["aggregate_reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "parsedmarc on {}: {json}", file.display());
    let r = &reports[0];
    let mut rows = BTreeMap::new();
    for rec in r["records"].as_array().unwrap() {
        *rows
            .entry(rec["source"]["ip_address"].as_str().unwrap().to_string())
            .or_insert(0) += rec["count"].as_u64().unwrap();
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    Some((
        name(&r["report_metadata"]["org_name"]),
        s(&r["report_metadata"]["report_id"]),
        s(&r["policy_published"]["domain"]),
        s(&r["policy_published"]["p"]),
        rows,
    ))
}

// Real receivers' quirks import as parsedmarc reads them, each repair recorded.
#[test]
fn the_quirk_corpus_imports_as_parsedmarc_reads_it() {
    let dir = testdata("reports/quirks");
    for (file, theirs, repair) in CORPUS {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(&tmp.path().join("s.sqlite")).unwrap();
        let (tally, out) = import(&mut store, &dir.join(file), &settings());
        assert_eq!((tally.stored, tally.refused), (1, 0), "{file}: {out}");
        let page = store
            .received_reports(&ReportFilter::default(), 10)
            .unwrap();
        let id = page.items[0]["id"].as_i64().unwrap();
        let stored = store.received_report(id).unwrap().unwrap();
        let mut rows = BTreeMap::new();
        for row in stored["rows"].as_array().unwrap() {
            *rows
                .entry(row["source_ip"].as_str().unwrap().to_string())
                .or_insert(0) += row["count"].as_u64().unwrap();
        }
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let ours: Reading = (
            name(&stored["org_name"]),
            s(&stored["report_id"]),
            s(&stored["domain"]),
            s(&stored["policy"]["p"]),
            rows,
        );
        let errors = stored["errors"].to_string();
        if repair.is_empty() {
            assert_eq!(errors, "[]", "{file}: nothing to repair");
        } else {
            assert!(
                errors.contains("repaired on import: ") && errors.contains(repair),
                "{file}: {errors}"
            );
            assert!(out.contains("(repaired: "), "{file}: {out}");
        }
        if let Some(reading) = parsedmarc(&dir.join(theirs)) {
            assert_eq!(ours, reading, "{file}");
        }
    }
}

// What the quirk corpus does not open: the hostile corpus stays refused, as do a DTD behind a
// wrapper element and an entity declaration behind an unescaped address.
#[test]
fn repairs_never_open_the_door_to_hostile_input() {
    let dir = testdata("reports/hostile");
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(&tmp.path().join("s.sqlite")).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let (tally, out) = import(&mut store, &path, &settings());
        assert_eq!(tally.stored, 0, "{}: {out}", path.display());
    }
    let good = std::fs::read_to_string(testdata("reports/quirks/xs-schema-wrapper.xml")).unwrap();
    let body = good.split_once('\n').unwrap().1;
    for hostile in [
        format!("<!DOCTYPE x [<!ENTITY a \"aaaa\">]>\n{body}"),
        body.replace(
            "<xs:schema",
            "<!DOCTYPE feedback SYSTEM \"file:///etc/passwd\">\n<xs:schema",
        ),
        body.replace("Reporter A", "Reporter <a@b.example> &a;"),
    ] {
        let path = tmp.path().join("hostile.xml");
        std::fs::write(&path, &hostile).unwrap();
        let (tally, out) = import(&mut store, &path, &settings());
        assert_eq!((tally.stored, tally.refused), (0, 1), "{hostile}: {out}");
    }
}
