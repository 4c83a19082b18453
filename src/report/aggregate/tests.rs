use super::*;
use crate::store::{Record, Transport};
use std::time::Duration;

pub(crate) fn policy(domain: &str) -> Published {
    Published {
        domain: domain.into(),
        adkim: "r".into(),
        aspf: "r".into(),
        p: "reject".into(),
        sp: "reject".into(),
        np: "reject".into(),
        testing: false,
        fo: "0".into(),
        rua: vec![(format!("dmarc@{domain}"), 0)],
        ruf: vec![],
    }
}

pub(crate) fn event(domain: &str, pass: bool) -> DmarcEvent {
    DmarcEvent {
        policy: policy(domain),
        header_from: domain.into(),
        envelope_from: domain.into(),
        envelope_to: Some("example.net".into()),
        disposition: if pass { "pass" } else { "reject" }.into(),
        dkim_aligned: pass,
        spf_aligned: false,
        reasons: vec![],
        dkim: vec![(
            domain.into(),
            "sel".into(),
            if pass { "pass" } else { "fail" }.into(),
        )],
        spf: (domain.into(), "mfrom".into(), "softfail".into()),
    }
}

pub(crate) fn record(at_ms: i64, ip: &str, event: Option<DmarcEvent>) -> Record {
    Record {
        received_at: at_ms,
        transport: Transport::Milter,
        queue_id: None,
        message_id: None,
        client_ip: ip.into(),
        helo: None,
        mail_from: None,
        rcpts: vec![],
        rcpt_count: 0,
        from_domain: event.as_ref().map(|e| e.header_from.clone()),
        verdict: "accept".into(),
        dmarc: Some("pass".into()),
        duration: Duration::from_millis(1),
        document: serde_json::json!({}),
        dmarc_event: event,
    }
}

pub(crate) fn reporter() -> Reporter {
    Reporter {
        org_name: "mx.test.example".into(),
        email: "dmarc-reports@test.example".into(),
        extra_contact_info: Some("https://test.example/<dmarc>&more".into()),
    }
}

#[test]
fn rows_group_by_ip_and_results_within_the_period_and_domain() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let day = 86_400_000;
    store
        .insert_batch(&[
            record(day + 1, "192.0.2.1", Some(event("example.com", true))),
            record(day + 2, "192.0.2.1", Some(event("example.com", true))),
            record(day + 3, "192.0.2.9", Some(event("example.com", false))),
            record(day + 4, "2001:db8::1", Some(event("example.com", true))),
            // Another domain, another period, and a verdict without an event: not counted.
            record(day + 5, "192.0.2.1", Some(event("example.org", true))),
            record(2 * day, "192.0.2.1", Some(event("example.com", true))),
            record(day + 6, "192.0.2.1", None),
        ])
        .unwrap();
    assert_eq!(
        store.dmarc_domains(day, 2 * day).unwrap().len(),
        2,
        "example.com and example.org"
    );
    let a = Aggregate::collect(&store, "example.com", day..2 * day, "r1".into())
        .unwrap()
        .unwrap();
    assert_eq!(a.messages, 4);
    let counts: Vec<(&str, bool, u64)> = a
        .rows
        .iter()
        .map(|(k, n)| (k.source_ip.as_str(), k.dkim_aligned, *n))
        .collect();
    assert_eq!(
        counts,
        [
            ("192.0.2.1", true, 2),
            ("192.0.2.9", false, 1),
            ("2001:db8::1", true, 1)
        ]
    );
    assert!(
        Aggregate::collect(&store, "example.net", day..2 * day, "r2".into())
            .unwrap()
            .is_none()
    );
    let xml = a.to_xml(&reporter());
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">"));
    assert!(xml.contains("<begin>86400</begin>") && xml.contains("<end>172800</end>"));
    // Text is escaped, not spliced.
    assert!(
        xml.contains("https://test.example/&lt;dmarc&gt;&amp;more"),
        "{xml}"
    );
    assert_eq!(xml.matches("<record>").count(), 3);
}

// RFC 9990 §3.1.3 and Appendix A: the SPF result reported is the MAIL FROM identity's, scope
// `mfrom` only; for the null sender that identity is postmaster@<HELO> (RFC 7208 §2.4), so the
// row keeps its SPF result with the HELO domain and scope `mfrom`, also for events stored with
// the older `helo` scope. mail-auth 0.13.3's writer drops a HELO-scope result altogether.
#[test]
fn dmarc_report_null_sender_reports_its_spf_result_as_mfrom() {
    let mut e = event("example.com", false);
    e.envelope_from = "mail.example.com".into();
    e.spf = ("mail.example.com".into(), "helo".into(), "pass".into());
    let a = Aggregate {
        domain: "example.com".into(),
        report_id: "r".into(),
        period: 0..86_400_000,
        policy: policy("example.com"),
        rows: vec![(RowKey::of("192.0.2.1", e), 1)],
        messages: 1,
    };
    let xml: String = a.to_xml(&reporter()).split_whitespace().collect();
    assert!(
        xml.contains(
            "<spf><domain>mail.example.com</domain><scope>mfrom</scope><result>pass</result>"
        ),
        "{xml}"
    );
    assert!(!xml.contains("helo"), "{xml}");
    // RFC 9990 Appendix A: generator, np, discovery_method and testing are reported.
    assert!(xml.contains("<generator>authmilter"), "{xml}");
    assert!(xml.contains("<np>reject</np>"), "{xml}");
    assert!(
        xml.contains("<discovery_method>treewalk</discovery_method>"),
        "{xml}"
    );
    assert!(xml.contains("<testing>n</testing>"), "{xml}");
    // The library's writer, for the same row: no <spf> at all.
    use mail_auth::report::{Record as MaRecord, Report, SPFAuthResult, SPFDomainScope};
    let theirs = Report::new()
        .with_record(MaRecord::new().with_spf_auth_result(SPFAuthResult {
            domain: "mail.example.com".into(),
            scope: SPFDomainScope::Helo,
            result: mail_auth::report::SpfResult::Pass,
            human_result: None,
        }))
        .to_xml();
    let auth_results = theirs
        .split("<auth_results>")
        .nth(1)
        .and_then(|s| s.split("</auth_results>").next())
        .unwrap();
    assert!(
        !auth_results.contains("<spf>"),
        "mail-auth fixed this: {theirs}"
    );
}
