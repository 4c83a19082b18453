//! The reader on ARF reports (our own sender's, and one shaped like a big mailbox
//! provider's) and on a plain-text notice.

use super::*;

/// An ARF auth-failure report as RFC 6591 §3 shows them, with a redacted original header
/// section and two Authentication-Results fields (`testdata/reports/failures/`).
const ARF: &str = include_str!("../../../testdata/reports/failures/arf-auth-failure.eml");

/// A plain-text notice without an ARF part, in the shape some MTAs send.
const TEXT: &str = include_str!("../../../testdata/reports/failures/plain-text-notice.eml");

#[test]
fn arf_auth_failure_report_is_read_with_its_identities_and_headers() {
    let r = parse(ARF.as_bytes(), 5).unwrap().unwrap();
    assert_eq!(r.format, "arf");
    assert_eq!(r.reporter, "dmarc-noreply@receiver.example");
    assert_eq!(
        r.report_message_id.as_deref(),
        Some("arf-1@receiver.example")
    );
    assert_eq!(r.domain.as_deref(), Some("example.com"));
    assert_eq!(r.source_ip.as_deref(), Some("203.0.113.5"));
    assert_eq!(r.auth_failure.as_deref(), Some("dmarc"));
    assert_eq!(r.delivery_result.as_deref(), Some("reject"));
    assert_eq!(r.identity_alignment.as_deref(), Some("none"));
    assert_eq!(r.dkim_selector.as_deref(), Some("s2024"));
    assert_eq!(r.arrival, Some(1_714_643_940));
    assert_eq!(r.authentication_results.len(), 2);
    assert_eq!(r.header_from.as_deref(), Some("example.com"));
    assert_eq!(r.subject.as_deref(), Some("Invoice 4711"));
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("spoof-4711@spoofer.example")
    );
    // Redacted as given, and the header section only.
    assert!(
        r.headers
            .contains("From: \"Accounts\" <redacted@example.com>"),
        "{}",
        r.headers
    );
    assert!(r.headers.starts_with("Received: from spoofer.example"));
    assert_eq!(r.received_at, 5);
}

#[test]
fn plain_text_failure_notice_is_read_when_its_fields_can_be() {
    let r = parse(TEXT.as_bytes(), 5).unwrap().unwrap();
    assert_eq!(r.format, "text");
    assert_eq!(r.domain.as_deref(), Some("example.com"));
    assert_eq!(r.source_ip.as_deref(), Some("198.51.100.23"));
    assert_eq!(r.identity_alignment.as_deref(), Some("dkim"));
    assert_eq!(r.delivery_result.as_deref(), Some("quarantine"));
    assert_eq!(r.arrival, Some(1_714_636_800));
    assert_eq!(r.subject.as_deref(), Some("Your statement"));
    assert!(
        r.headers.starts_with("Received: from relay.example"),
        "{}",
        r.headers
    );
    // Without a source address it is not taken for a notice.
    let unreadable = TEXT.replace("Sender IP Address: 198.51.100.23", "Sender IP Address: n/a");
    assert!(parse(unreadable.as_bytes(), 5).is_none());
}

#[test]
fn other_mail_and_other_feedback_types_are_not_failure_reports() {
    assert!(parse(b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n", 0).is_none());
    let abuse = ARF.replace("Feedback-Type: auth-failure", "Feedback-Type: abuse");
    assert!(parse(abuse.as_bytes(), 0).unwrap().is_err());
}
