//! The parser on the hand-written fixtures in `testdata/reports/` and on hostile input.

use super::*;
use std::io::Write;
use std::path::PathBuf;

const MIB: usize = 1024 * 1024;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/reports")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn one(input: &[u8], max: usize) -> Result<Report, ImportError> {
    let mut found = parse_input(input, max);
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0).report
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn google_style_zip() {
    let r = one(
        &fixture("google.com!example.com!1714521600!1714607999.zip"),
        10 * MIB,
    )
    .unwrap();
    assert_eq!(r.report_metadata.org_name, "google.com");
    assert_eq!(r.report_metadata.report_id, "4170294883417309542");
    assert_eq!(r.policy_published.domain, "example.com");
    assert_eq!(r.record.len(), 2);
    assert_eq!(r.record[1].row.count, 2);
}

#[test]
fn microsoft_style_gzip() {
    let name = "enterprise.protection.outlook.com!example.com!1714521600!1714608000.xml.gz";
    let r = one(&fixture(name), 10 * MIB).unwrap();
    assert_eq!(r.report_metadata.email, "dmarcreport@microsoft.com");
    assert_eq!(r.policy_published.fo.as_deref(), Some("0"));
    let to = r.record[0].identifiers.envelope_to.as_deref();
    assert_eq!(to, Some("example.net"));
}

#[test]
fn rfc9990_namespace_xml_with_ipv6_and_reason() {
    let name = "mail.example.net!example.com!1714521600!1714608000.xml";
    let r = one(&fixture(name), 10 * MIB).unwrap();
    assert_eq!(
        r.record[1].row.source_ip,
        Some("2001:db8::25".parse().unwrap())
    );
    assert_eq!(r.record[1].row.policy_evaluated.reason.len(), 1);
    // `&amp;` is read; mail-auth 0.13.3 trims the text either side of a reference (it reads
    // with `trim_text`), so the spaces around it are lost: cosmetic, kept as found.
    let human = r.record[0].auth_results.dkim[0].human_result.as_deref();
    assert_eq!(human, Some("good signature&aligned"));
}

#[test]
fn message_with_gzip_attachment() {
    let found = parse_input(&fixture("reports.example.net-report.eml"), 10 * MIB);
    assert_eq!(
        found.len(),
        1,
        "only the attachment, not the text part: {found:?}"
    );
    assert!(found[0].part.as_deref().unwrap().ends_with(".xml.gz"));
    let r = found[0].report.as_ref().unwrap();
    assert_eq!(r.report_metadata.report_id, "1714608000.302218");
}

#[test]
fn message_with_xml_body_and_several_reports() {
    let xml = fixture("mail.example.net!example.com!1714521600!1714608000.xml");
    let zip = fixture("google.com!example.com!1714521600!1714607999.zip");
    let mut m = b"From: r@example.net\r\nSubject: two reports\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/xml\r\n\r\n"
        .to_vec();
    m.extend_from_slice(&xml);
    m.extend_from_slice(b"\r\n--b\r\nContent-Type: application/zip; name=r.zip\r\n");
    m.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
    use base64ct::Encoding;
    m.extend_from_slice(base64ct::Base64::encode_string(&zip).as_bytes());
    m.extend_from_slice(b"\r\n--b--\r\n");
    let found = parse_input(&m, 10 * MIB);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|f| f.report.is_ok()), "{found:?}");
}

#[test]
fn hostile_corpus_is_refused_with_its_reason() {
    type Expected = fn(&ImportError) -> bool;
    let cases: [(&str, Expected); 9] = [
        ("billion-laughs.xml", |e| *e == ImportError::Dtd),
        ("external-entity.xml", |e| *e == ImportError::Dtd),
        ("undeclared-entity.xml", |e| {
            *e == ImportError::Entity("lol9".into())
        }),
        ("wrong-namespace.xml", |e| {
            *e == ImportError::Namespace("urn:example:not-dmarc".into())
        }),
        ("wrong-root.xml", |e| *e == ImportError::Root("html".into())),
        (
            "truncated.xml",
            |e| matches!(e, ImportError::Xml(m) if m.contains("truncated")),
        ),
        ("truncated.xml.gz", |e| matches!(e, ImportError::Gzip(_))),
        ("not-xml.txt", |e| *e == ImportError::NotAReport),
        ("mismatched-tags.xml", |e| matches!(e, ImportError::Xml(_))),
    ];
    for (name, expected) in cases {
        let e = one(&fixture(&format!("hostile/{name}")), 10 * MIB).unwrap_err();
        assert!(expected(&e), "{name}: {e}");
    }
}

// The bomb stops at the cap, not at the end of the data: the whole 64 MiB is never held.
#[test]
fn gzip_bomb_stops_at_the_cap() {
    let bomb = gzip(&vec![0u8; 64 * MIB]);
    assert!(bomb.len() < MIB / 4);
    assert_eq!(one(&bomb, MIB).unwrap_err(), ImportError::TooLarge(MIB));
}

#[test]
fn zip_entries_share_one_budget() {
    let xml = fixture("mail.example.net!example.com!1714521600!1714608000.xml");
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for i in 0..3 {
        w.start_file(format!("r{i}.xml"), opts).unwrap();
        w.write_all(&xml).unwrap();
    }
    let data = w.finish().unwrap().into_inner();
    // Room for two copies, not three.
    let found = parse_input(&data, 2 * xml.len() + 10);
    let results: Vec<_> = found.iter().map(|f| f.report.is_ok()).collect();
    assert_eq!(results, vec![true, true, false]);
    assert!(matches!(found[2].report, Err(ImportError::TooLarge(_))));
}

#[test]
fn input_larger_than_the_cap_is_not_read() {
    let xml = fixture("mail.example.net!example.com!1714521600!1714608000.xml");
    assert_eq!(
        one(&xml, xml.len() - 1).unwrap_err(),
        ImportError::TooLarge(xml.len() - 1)
    );
}

#[test]
fn missing_fields_and_bad_addresses_are_invalid() {
    let xml = String::from_utf8(fixture(
        "mail.example.net!example.com!1714521600!1714608000.xml",
    ))
    .unwrap();
    let cases = [
        (
            "<report_id>mail.example.net-2024-05-01-0001</report_id>",
            "<report_id> </report_id>",
        ),
        ("<begin>1714521600</begin>", "<begin>1714700000</begin>"),
        (
            "<domain>example.com</domain>\n    <p>",
            "<domain></domain>\n    <p>",
        ),
    ];
    for (from, to) in cases {
        let bad = xml.replacen(from, to, 1);
        assert_ne!(bad, xml, "{from}");
        let e = parse_xml(bad.as_bytes()).unwrap_err();
        assert!(matches!(e, ImportError::Invalid(_)), "{to}: {e}");
    }
}

// As parsedmarc: a record without a valid source address is skipped (and named), the rest
// of the report kept; a report with no valid record left is refused.
#[test]
fn records_without_a_source_address_are_skipped_and_named() {
    let xml = String::from_utf8(fixture(
        "mail.example.net!example.com!1714521600!1714608000.xml",
    ))
    .unwrap();
    let one_bad = xml.replacen(
        "<source_ip>192.0.2.10</source_ip>",
        "<source_ip>not-an-ip</source_ip>",
        1,
    );
    let mut repairs = Vec::new();
    let report = parse_xml_repaired(one_bad.as_bytes(), &mut repairs).unwrap();
    assert_eq!(report.record.len(), 1);
    assert_eq!(
        report.record[0].row.source_ip,
        Some("2001:db8::25".parse().unwrap())
    );
    assert_eq!(
        repairs,
        ["record 1 has no valid source_ip: skipped (7 message(s) not counted)"]
    );
    let none_left = one_bad.replacen(
        "<source_ip>2001:db8::25</source_ip>",
        "<source_ip></source_ip>",
        1,
    );
    let e = parse_xml(none_left.as_bytes()).unwrap_err();
    assert!(
        matches!(&e, ImportError::Invalid(why) if why.contains("no record has a valid source_ip")),
        "{e}"
    );
}

#[test]
fn garbage_never_panics() {
    let xml = fixture("mail.example.net!example.com!1714521600!1714608000.xml");
    let gz = gzip(&xml);
    // Every prefix of an XML and a gzip report: refused or parsed, never a panic.
    for input in [&xml, &gz] {
        for end in (0..input.len()).step_by(7) {
            let _ = parse_input(&input[..end], MIB);
        }
    }
    for junk in [
        &b""[..],
        b"\x1f\x8b",
        b"PK\x03\x04",
        b"<",
        b"<feedback",
        b"\xff\xfe<x/>",
    ] {
        let found = parse_input(junk, MIB);
        assert!(found.iter().all(|f| f.report.is_err()), "{junk:?}");
    }
}

#[test]
fn byte_order_mark_and_leading_blank_lines_are_read() {
    let xml = fixture("mail.example.net!example.com!1714521600!1714608000.xml");
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&xml);
    assert!(one(&bom, MIB).is_ok(), "{:?}", one(&bom, MIB));
    let without_decl = String::from_utf8(xml).unwrap().replacen(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "",
        1,
    );
    let blank = format!("\r\n\r\n{without_decl}");
    assert!(one(blank.as_bytes(), MIB).is_ok());
}
