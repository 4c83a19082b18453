use super::*;
use crate::auth::{ArcOutcome, DmarcOutcome, FromInfo, SpfCheck, SpfOutcome};
use std::path::Path;

fn outcome(dmarc: Option<(AuthResult, &str)>, spf: AuthResult) -> Outcome {
    let mut o = Outcome::empty_for_tests();
    o.from = FromInfo {
        fields: 1,
        addresses: vec!["alice@example.com".into()],
    };
    o.spf = Some(SpfOutcome {
        mail_from: SpfCheck {
            result: spf,
            domain: "example.com".into(),
            identity: "alice@example.com".into(),
            reason: String::new(),
            explanation: None,
        },
        null_sender: false,
        helo: None,
    });
    o.dmarc = dmarc.map(|(result, policy)| DmarcOutcome {
        result,
        domain: "example.com".into(),
        policy: policy.into(),
        spf_aligned: false,
        dkim_aligned: false,
        reason: None,
        published: None,
    });
    o
}

fn policy(text: &str) -> Policy {
    Policy::parse(text, Path::new("test.toml")).unwrap()
}

#[test]
fn dmarc_reject_is_honoured() {
    let v = decide(
        &outcome(Some((AuthResult::Fail, "reject")), AuthResult::Fail),
        &Policy::default(),
    );
    assert_eq!(v.action, Action::Reject);
    assert_eq!((v.code, v.status.as_str()), (550, "5.7.1"));
    assert_eq!(v.dmarc_disposition.as_deref(), Some("reject"));
}

#[test]
fn dmarc_quarantine_is_honoured() {
    let v = decide(
        &outcome(Some((AuthResult::Fail, "quarantine")), AuthResult::Pass),
        &Policy::default(),
    );
    assert_eq!(v.action, Action::Quarantine);
    assert_eq!(v.dmarc_disposition.as_deref(), Some("quarantine"));
}

#[test]
fn dmarc_none_policy_accepts_and_records() {
    let v = decide(
        &outcome(Some((AuthResult::Fail, "none")), AuthResult::Fail),
        &Policy::default(),
    );
    assert_eq!(v.action, Action::Accept);
    assert!(v.reasons[0].contains("DMARC fail"), "{:?}", v.reasons);
}

#[test]
fn per_domain_override_downgrades_reject() {
    let p = policy("[domains.\"example.com\"]\ndmarc_reject = \"quarantine\"\n");
    let v = decide(
        &outcome(Some((AuthResult::Fail, "reject")), AuthResult::Fail),
        &p,
    );
    assert_eq!(v.action, Action::Quarantine);
    assert!(v.local_override.is_some());
    // A parent domain's override covers subdomains; others are untouched.
    let p = policy("[domains.\"com\"]\ndmarc_reject = \"accept\"\n");
    assert_eq!(
        decide(
            &outcome(Some((AuthResult::Fail, "reject")), AuthResult::Pass),
            &p
        )
        .action,
        Action::Accept
    );
    let p = policy("[domains.\"example.org\"]\ndmarc_reject = \"accept\"\n");
    assert_eq!(
        decide(
            &outcome(Some((AuthResult::Fail, "reject")), AuthResult::Pass),
            &p
        )
        .action,
        Action::Reject
    );
}

#[test]
fn dns_temperror_tempfails_or_fails_open() {
    let o = outcome(Some((AuthResult::Temperror, "")), AuthResult::Pass);
    let v = decide(&o, &Policy::default());
    assert_eq!((v.action, v.code), (Action::Tempfail, 451));
    let v = decide(&o, &policy("dns_temperror = \"accept\"\n"));
    assert_eq!(v.action, Action::Accept);
}

#[test]
fn spf_fail_without_dmarc_is_configurable() {
    let o = outcome(Some((AuthResult::None, "")), AuthResult::Fail);
    let v = decide(&o, &Policy::default());
    assert_eq!(v.action, Action::Accept);
    assert!(
        v.reasons.iter().any(|r| r.contains("SPF fail")),
        "{:?}",
        v.reasons
    );
    let v = decide(&o, &policy("spf_fail_without_dmarc = \"reject\"\n"));
    assert_eq!(
        (v.action, v.code, v.status.as_str()),
        (Action::Reject, 550, "5.7.23")
    );
}

#[test]
fn multiple_from_is_not_dmarc_none() {
    // DESIGN.md item 3 / RFC 7489 6.6.1: never a pass, rejected by default.
    let mut o = outcome(Some((AuthResult::None, "")), AuthResult::Pass);
    o.from.addresses.push("mallory@evil.example".into());
    assert_eq!(decide(&o, &Policy::default()).action, Action::Reject);
    o.from.addresses.pop();
    o.from.fields = 2;
    assert_eq!(decide(&o, &Policy::default()).action, Action::Reject);
    assert_eq!(
        decide(&o, &policy("multiple_from = \"quarantine\"\n")).action,
        Action::Quarantine
    );
}

#[test]
fn trusted_arc_sealer_overrides_dmarc_failure() {
    let mut o = outcome(Some((AuthResult::Fail, "reject")), AuthResult::Fail);
    o.arc = Some(ArcOutcome {
        result: AuthResult::Pass,
        reason: None,
        chain_length: 1,
        sealers: vec!["lists.example.org".into()],
        oldest_pass: None,
        remote_ip: None,
    });
    let p = policy("[arc]\ntrusted_sealers = [\"Lists.Example.Org\"]\n");
    let v = decide(&o, &p);
    assert_eq!(v.action, Action::Accept);
    assert_eq!(
        v.local_override.as_deref(),
        Some("trusted ARC sealer lists.example.org")
    );
    // An untrusted sealer, or a failing chain, changes nothing.
    assert_eq!(decide(&o, &Policy::default()).action, Action::Reject);
    o.arc.as_mut().unwrap().result = AuthResult::Fail;
    assert_eq!(decide(&o, &p).action, Action::Reject);
}

#[test]
fn trusted_clients_are_accepted_unverified() {
    let mut o = Outcome::empty_for_tests();
    o.skipped = Some("trusted network (127.0.0.1)".into());
    let v = decide(&o, &Policy::default());
    assert_eq!(v.action, Action::Accept);
    assert!(v.reasons[0].contains("trusted network"));
}

#[test]
fn most_severe_finding_wins() {
    let mut o = outcome(Some((AuthResult::Fail, "quarantine")), AuthResult::Fail);
    o.from.fields = 2;
    let v = decide(&o, &Policy::default());
    assert_eq!(v.action, Action::Reject);
    assert_eq!(v.reasons.len(), 2);
}

#[test]
fn oversized_and_malformed() {
    let mut o = Outcome::empty_for_tests();
    o.oversized = true;
    let v = decide(&o, &Policy::default());
    assert_eq!(
        (v.action, v.code, v.status.as_str()),
        (Action::Tempfail, 452, "4.3.1")
    );
    let v = decide(&o, &policy("oversized = \"reject\"\n"));
    assert_eq!(
        (v.action, v.code, v.status.as_str()),
        (Action::Reject, 552, "5.3.4")
    );
    let mut o = Outcome::empty_for_tests();
    o.malformed = Some("no header fields".into());
    assert_eq!(decide(&o, &Policy::default()).action, Action::Reject);
}

#[test]
fn every_shipped_policy_file_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files = vec![root.join("default.toml")];
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        files.push(entry.unwrap().path());
    }
    assert!(files.len() >= 3);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        Policy::parse(&text, &f).unwrap_or_else(|e| panic!("{e}"));
    }
    // The compiled-in default is the shipped file and equals the documented defaults.
    assert_eq!(
        Policy::default().rules,
        super::super::file::Rules::default()
    );
}

#[test]
fn policy_errors_name_file_line_and_key() {
    let e = Policy::parse(
        "dmarc_reject = \"reject\"\ndmarc_rejct = \"accept\"\n",
        Path::new("p.toml"),
    )
    .unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("dmarc_rejct")));
    let e = Policy::parse(
        "\n[domains.\"x.org\"]\ndmarc_reject = \"bounce\"\n",
        Path::new("p.toml"),
    )
    .unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
}

#[test]
fn spf_fail_at_mail_is_off_by_default() {
    let o = outcome(None, AuthResult::Fail);
    let spf = o.spf.as_ref().unwrap();
    assert!(decide_at_mail(spf, &Policy::default()).is_none());
    let v = decide_at_mail(spf, &policy("spf_fail_at_mail = \"reject\"\n")).unwrap();
    assert_eq!(
        (v.action, v.code, v.status.as_str()),
        (Action::Reject, 550, "5.7.23")
    );
    let pass = outcome(None, AuthResult::Pass);
    assert!(decide_at_mail(
        pass.spf.as_ref().unwrap(),
        &policy("spf_fail_at_mail = \"reject\"\n")
    )
    .is_none());
    assert!(Policy::parse("spf_fail_at_mail = \"quarantine\"\n", Path::new("p.toml")).is_err());
}
