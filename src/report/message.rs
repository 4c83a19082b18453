//! The report as mail (RFC 9990 §5.2, RFC 7489 §7.2.1.1 where 9990 refers to it): the XML
//! gzipped as an attachment named `receiver!policy-domain!begin!end!id.xml.gz`, a subject
//! `Report Domain: … Submitter: … Report-ID: <…>`, composed with mail-builder.

use super::aggregate::{Aggregate, Reporter};
use flate2::write::GzEncoder;
use flate2::Compression;
use mail_builder::headers::address::Address;
use mail_builder::headers::HeaderType;
use mail_builder::MessageBuilder;
use std::io::Write;

/// A report ready to send: the message and what it is about.
#[derive(Debug, Clone)]
pub struct ReportMessage {
    pub bytes: Vec<u8>,
    /// The gzipped XML's size: what `rua=…!10m` limits are compared with.
    pub attachment_size: usize,
    pub filename: String,
}

/// The XML gzipped.
pub fn gzip(xml: &str) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::with_capacity(xml.len() / 8), Compression::default());
    gz.write_all(xml.as_bytes())
        .and_then(|()| gz.finish())
        .expect("compressing into memory cannot fail")
}

/// The receiver's name in file names and the subject: the domain of the reporting address.
fn submitter(reporter: &Reporter) -> &str {
    reporter
        .email
        .rsplit_once('@')
        .map_or(reporter.email.as_str(), |(_, d)| d)
}

/// Composes the report for `to`, dated `now` (Unix seconds).
pub fn compose(report: &Aggregate, reporter: &Reporter, to: &[String], now: i64) -> ReportMessage {
    let xml = report.to_xml(reporter);
    let gz = gzip(&xml);
    let submitter = submitter(reporter);
    let (begin, end) = (report.period.start / 1000, report.period.end / 1000);
    // RFC 9990 §5.2.1: receiver "!" policy-domain "!" begin "!" end [ "!" unique-id ].
    let filename = format!(
        "{submitter}!{}!{begin}!{end}!{}.xml.gz",
        report.domain,
        unique_part(&report.report_id)
    );
    let subject = format!(
        "Report Domain: {} Submitter: {submitter} Report-ID: <{}>",
        report.domain, report.report_id
    );
    let body = format!(
        "This is a DMARC aggregate report (RFC 9990) from {submitter}.\r\n\r\n\
         Report Domain: {}\r\nSubmitter: {submitter}\r\nReport-ID: {}\r\n\
         Period: {begin} to {end} (Unix time)\r\nMessages: {}\r\n",
        report.domain, report.report_id, report.messages
    );
    let recipients: Vec<Address> = to.iter().map(|a| Address::from(a.clone())).collect();
    let bytes = MessageBuilder::new()
        .from((reporter.org_name.clone(), reporter.email.clone()))
        .to(Address::new_list(recipients))
        // Folded between its parts rather than encoded (mail-builder encodes a long text),
        // so the subject reads the same unfolded (RFC 5322 §2.2.3).
        .header(
            "Subject",
            HeaderType::Raw(
                subject
                    .replace(" Submitter:", "\r\n Submitter:")
                    .replace(" Report-ID:", "\r\n Report-ID:")
                    .into(),
            ),
        )
        .date(now)
        .message_id(format!("{}@{submitter}", unique_part(&report.report_id)))
        .header("Auto-Submitted", HeaderType::Text("auto-generated".into()))
        .text_body(body)
        .attachment("application/gzip", filename.clone(), gz.clone())
        .write_to_vec()
        .expect("composing into memory cannot fail");
    ReportMessage {
        bytes,
        attachment_size: gz.len(),
        filename,
    }
}

/// The report id without characters a file name or Message-ID should not carry.
fn unique_part(report_id: &str) -> String {
    report_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::tests::{policy, reporter};
    use mail_parser::MimeHeaders;

    #[test]
    fn the_message_carries_the_gzipped_report_under_the_rfc_name() {
        let a = Aggregate {
            domain: "example.com".into(),
            report_id: "example.com!86400@test.example".into(),
            period: 86_400_000..172_800_000,
            policy: policy("example.com"),
            rows: vec![],
            messages: 0,
        };
        let m = compose(&a, &reporter(), &["dmarc@example.com".into()], 200_000);
        assert_eq!(
            m.filename,
            "test.example!example.com!86400!172800!example.com_86400_test.example.xml.gz"
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.bytes)
            .unwrap();
        assert_eq!(
            parsed.subject(),
            Some(
                "Report Domain: example.com Submitter: test.example \
                 Report-ID: <example.com!86400@test.example>"
            )
        );
        let attachment = parsed.attachment(0).unwrap();
        assert_eq!(attachment.attachment_name(), Some(m.filename.as_str()));
        assert_eq!(attachment.contents().len(), m.attachment_size);
        let mut xml = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(attachment.contents()),
            &mut xml,
        )
        .unwrap();
        assert!(xml.contains("<report_id>example.com!86400@test.example</report_id>"));
    }
}
