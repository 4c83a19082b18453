use super::*;
use crate::report::aggregate::tests::{event, record};
use crate::store::{NewReport, NewRow};

const DAY: i64 = 86_400_000;

fn row(ip: &str, count: u64, aligned: bool, spf: (&str, &str), dkim: &[(&str, &str)]) -> NewRow {
    let word = if aligned { "pass" } else { "fail" };
    NewRow {
        source_ip: ip.into(),
        count,
        disposition: "none".into(),
        dkim: word.into(),
        spf: word.into(),
        header_from: "example.com".into(),
        envelope_from: Some(spf.0.into()),
        envelope_to: None,
        reasons: json!([]),
        auth_results: json!({
            "dkim": dkim.iter().map(|(d, r)| json!({"domain": d, "selector": "s", "result": r}))
                .collect::<Vec<_>>(),
            "spf": [{"domain": spf.0, "scope": "mfrom", "result": spf.1}],
        }),
    }
}

fn report(email: &str, rows: Vec<NewRow>) -> NewReport {
    NewReport {
        received_at: DAY * 2,
        org_name: email.into(),
        email: email.into(),
        report_id: "1".into(),
        domain: "example.com".into(),
        date_begin: DAY / 1000,
        date_end: 2 * DAY / 1000,
        policy: json!({"domain": "example.com", "p": "none"}),
        messages: rows.iter().map(|r| r.count).sum(),
        dmarc_pass: 0,
        errors: vec![],
        rows,
    }
}

#[test]
fn reports_and_verdicts_add_up_per_source_and_classes_follow_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    store
        .insert_received_report(&report(
            "dmarc@reporter.example",
            vec![
                row(
                    "192.0.2.10",
                    6,
                    true,
                    ("example.com", "pass"),
                    &[("example.com", "pass")],
                ),
                // An ESP: SPF passes for its bounce domain, DKIM for its own.
                row(
                    "198.51.100.5",
                    3,
                    false,
                    ("bounce.esp.example", "pass"),
                    &[("esp.example", "pass")],
                ),
                row("203.0.113.9", 1, false, ("example.com", "fail"), &[]),
            ],
        ))
        .unwrap();
    // Our own report read back: the verdicts count these messages already.
    store
        .insert_received_report(&report(
            "Dmarc-Reports@test.example",
            vec![row("192.0.2.10", 100, true, ("example.com", "pass"), &[])],
        ))
        .unwrap();
    store
        .insert_batch(&[
            record(DAY + 1, "192.0.2.10", Some(event("example.com", true))),
            record(DAY + 2, "192.0.2.10", Some(event("example.com", true))),
            record(DAY + 3, "203.0.113.9", Some(event("example.com", false))),
            // Another domain, and outside the period: not counted.
            record(DAY + 4, "203.0.113.9", Some(event("example.org", false))),
            record(3 * DAY, "203.0.113.9", Some(event("example.com", false))),
        ])
        .unwrap();
    let v = Readiness::gather(
        &store,
        "example.com",
        DAY,
        2 * DAY,
        Some("dmarc-reports@test.example"),
    )
    .unwrap();
    let got: Vec<_> = v
        .sources
        .iter()
        .map(|s| (s.ip.as_str(), s.reported, s.seen_here, s.class()))
        .collect();
    assert_eq!(
        got,
        [
            ("192.0.2.10", 6, 2, Class::Aligned),
            ("198.51.100.5", 3, 0, Class::Fixable),
            ("203.0.113.9", 1, 1, Class::Failing),
        ]
    );
    assert_eq!((v.reports, v.messages(), v.loss()), (1, 13, 5));
    let esp = &v.sources[1];
    assert_eq!(
        esp.spf_domains.iter().collect::<Vec<_>>(),
        ["bounce.esp.example"]
    );
    assert_eq!(v.loss_after_fixing(esp), 2);
    let j = v.to_json();
    assert_eq!(j["projected"]["reject"]["share"].as_f64(), Some(5.0 / 13.0));
    assert_eq!(j["sources"][1]["loss_if_fixed"]["messages"], 2);
    assert_eq!(j["sources"][0]["loss_if_fixed"], Value::Null);
    assert_eq!(j["classes"]["failing"]["messages"], 2);
    let table = v.table();
    assert!(
        table.contains("p=reject (pct=100) today: 5 messages rejected (38.5 %)"),
        "{table}"
    );
}

#[test]
fn a_source_takes_the_class_of_most_of_its_mail_ties_to_the_worse() {
    let s = |aligned, fixable, failing| Source {
        aligned,
        fixable,
        failing,
        ..Source::default()
    };
    assert_eq!(s(10, 1, 1).class(), Class::Aligned);
    assert_eq!(s(1, 1, 0).class(), Class::Fixable);
    assert_eq!(s(2, 2, 2).class(), Class::Failing);
    assert_eq!(s(0, 3, 1).class(), Class::Fixable);
}
