//! The verification pipeline end to end: real resolver, loopback DNS serving
//! `testdata/dns/main.zone`, policy, Authentication-Results.

use crate::common::*;
use authmilter::auth::AuthResult;
use authmilter::policy::{Action, Policy};
use std::path::Path;

#[tokio::test]
async fn signed_aligned_message_passes_everything() {
    let env = Env::new().await;
    let raw = sign_rsa(
        "example.com",
        &message("Alice <alice@example.com>", "hello", "Hi Bob.\r\n"),
    );
    let d = env
        .check(
            "192.0.2.10",
            "mail.example.com",
            "<alice@example.com>",
            &raw,
        )
        .await;
    let o = &d.outcome;
    assert_eq!(o.spf.as_ref().unwrap().mail_from.result, AuthResult::Pass);
    assert_eq!(o.dkim.len(), 1);
    assert_eq!(o.dkim[0].result, AuthResult::Pass, "{:?}", o.dkim[0]);
    assert_eq!(o.dkim[0].domain, "example.com");
    assert_eq!(o.dkim[0].algorithm, "rsa-sha256");
    let dmarc = o.dmarc.as_ref().unwrap();
    assert_eq!(
        (dmarc.result, dmarc.policy.as_str()),
        (AuthResult::Pass, "reject")
    );
    assert!(dmarc.spf_aligned && dmarc.dkim_aligned);
    assert_eq!(d.verdict.action, Action::Accept);
    let ar = d.authentication_results().unwrap();
    assert!(ar.starts_with("mx.test.example;"), "{ar}");
    for needle in [
        "spf=pass",
        "smtp.mailfrom=alice@example.com",
        "dkim=pass",
        "header.d=example.com",
        "header.s=rsa",
        "header.a=rsa-sha256",
        "dmarc=pass",
        "header.from=example.com",
        "policy.dmarc=reject",
        "arc=none",
    ] {
        assert!(ar.contains(needle), "{needle} missing from {ar}");
    }
    assert!(ar.contains(&format!("header.b={}", &o.dkim[0].b)));
    assert_eq!(o.dkim[0].b.len(), 8);
    // Folded: no line longer than 78 characters.
    assert!(ar.split("\r\n").all(|l| l.len() <= 78), "{ar}");
}

#[tokio::test]
async fn ed25519_signature_verifies() {
    let env = Env::new().await;
    let raw = sign_ed(
        "example.com",
        &message("alice@example.com", "ed", "Hello\r\n"),
    );
    let d = env
        .check(
            "203.0.113.9",
            "ext.example",
            "alice@elsewhere.example",
            &raw,
        )
        .await;
    assert_eq!(
        d.outcome.dkim[0].result,
        AuthResult::Pass,
        "{:?}",
        d.outcome.dkim
    );
    assert_eq!(d.outcome.dkim[0].algorithm, "ed25519-sha256");
    assert_eq!(d.outcome.dmarc.as_ref().unwrap().result, AuthResult::Pass);
    assert_eq!(d.verdict.action, Action::Accept);
}

#[tokio::test]
async fn dmarc_reject_for_spoofed_mail() {
    let env = Env::new().await;
    let raw = message("CEO <ceo@example.com>", "wire", "Please pay.\r\n");
    let d = env
        .check("203.0.113.66", "evil.example", "<ceo@example.com>", &raw)
        .await;
    assert_eq!(
        d.outcome.spf.as_ref().unwrap().mail_from.result,
        AuthResult::Fail
    );
    let dmarc = d.outcome.dmarc.as_ref().unwrap();
    assert_eq!(
        (dmarc.result, dmarc.policy.as_str()),
        (AuthResult::Fail, "reject")
    );
    assert_eq!(
        (d.verdict.action, d.verdict.code, d.verdict.status.as_str()),
        (Action::Reject, 550, "5.7.1")
    );
    assert_eq!(d.verdict.dmarc_disposition.as_deref(), Some("reject"));
    assert!(d
        .authentication_results()
        .unwrap()
        .contains("dmarc=fail (p=reject dis=reject"));
}

#[tokio::test]
async fn dmarc_quarantine_and_per_domain_override() {
    let mut env = Env::new().await;
    let raw = message("news@example.net", "q", "x\r\n");
    let d = env
        .check("203.0.113.66", "evil.example", "news@example.net", &raw)
        .await;
    assert_eq!(d.verdict.action, Action::Quarantine);

    let raw = message("ceo@example.com", "r", "x\r\n");
    env.policy = Policy::parse(
        "[domains.\"example.com\"]\ndmarc_reject = \"quarantine\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let d = env
        .check("203.0.113.66", "evil.example", "ceo@example.com", &raw)
        .await;
    assert_eq!(d.verdict.action, Action::Quarantine);
    assert!(d.verdict.local_override.is_some());
}

#[tokio::test]
async fn dmarc_sp_and_np_apply_to_subdomains() {
    let env = Env::new().await;
    // Existing subdomain: sp=quarantine.
    let raw = message("a@sub.parent.example", "sp", "x\r\n");
    let d = env
        .check("203.0.113.66", "evil.example", "a@sub.parent.example", &raw)
        .await;
    assert_eq!(d.outcome.dmarc.as_ref().unwrap().policy, "quarantine");
    assert_eq!(d.verdict.action, Action::Quarantine);
    // Non-existent subdomain: np=none.
    let raw = message("a@nx.parent.example", "np", "x\r\n");
    let d = env
        .check("203.0.113.66", "evil.example", "a@nx.parent.example", &raw)
        .await;
    assert_eq!(d.outcome.dmarc.as_ref().unwrap().policy, "none");
    assert_eq!(d.verdict.action, Action::Accept);
    // The organisational domain itself: p=reject.
    let raw = message("a@parent.example", "p", "x\r\n");
    let d = env
        .check("203.0.113.66", "evil.example", "a@parent.example", &raw)
        .await;
    assert_eq!(d.verdict.action, Action::Reject);
}

#[tokio::test]
async fn dns_timeout_tempfails_or_fails_open() {
    let mut env = Env::new().await;
    let raw = sign_rsa("slow.example", &message("a@slow.example", "t", "x\r\n"));
    let d = env
        .check("192.0.2.10", "mail.slow.example", "a@slow.example", &raw)
        .await;
    assert_eq!(
        d.outcome.dmarc.as_ref().unwrap().result,
        AuthResult::Temperror
    );
    assert_eq!((d.verdict.action, d.verdict.code), (Action::Tempfail, 451));
    env.policy = Policy::parse("dns_temperror = \"accept\"\n", Path::new("t.toml")).unwrap();
    let d = env
        .check("192.0.2.10", "mail.slow.example", "a@slow.example", &raw)
        .await;
    assert_eq!(d.verdict.action, Action::Accept);
}

#[tokio::test]
async fn spf_fail_without_dmarc_is_accepted_and_recorded() {
    let env = Env::new().await;
    let raw = message("a@example.org", "s", "x\r\n");
    let d = env
        .check("192.0.2.99", "h.example", "a@example.org", &raw)
        .await;
    assert_eq!(
        d.outcome.spf.as_ref().unwrap().mail_from.result,
        AuthResult::Fail
    );
    assert_eq!(d.outcome.dmarc.as_ref().unwrap().result, AuthResult::None);
    assert_eq!(d.verdict.action, Action::Accept);
    assert!(d.verdict.reasons.iter().any(|r| r.contains("SPF fail")));
}

#[tokio::test]
async fn null_sender_uses_helo_and_dmarc_ignores_it() {
    let env = Env::new().await;
    let raw = message("alice@example.com", "bounce", "x\r\n");
    let d = env.check("192.0.2.1", "example.com", "<>", &raw).await;
    let spf = d.outcome.spf.as_ref().unwrap();
    assert!(spf.null_sender);
    assert_eq!(spf.mail_from.result, AuthResult::Pass);
    assert_eq!(spf.helo.as_ref().unwrap().result, AuthResult::Pass);
    // RFC 9989: the HELO identity is not used for DMARC, so this unsigned mail fails.
    assert_eq!(d.outcome.dmarc.as_ref().unwrap().result, AuthResult::Fail);
    assert!(d
        .authentication_results()
        .unwrap()
        .contains("smtp.helo=example.com"));
}

#[tokio::test]
async fn trusted_network_skips_verification() {
    let env = Env::new().await;
    let raw = message("ceo@example.com", "out", "x\r\n");
    let d = env
        .check("127.0.0.1", "localhost", "ceo@example.com", &raw)
        .await;
    assert!(d
        .outcome
        .skipped
        .as_deref()
        .unwrap()
        .contains("trusted network"));
    assert!(d.outcome.spf.is_none() && d.outcome.dmarc.is_none());
    assert_eq!(d.verdict.action, Action::Accept);
    assert!(d.edits.add.is_empty());
    assert_eq!(env.dns.queries(), 0);
}

#[tokio::test]
async fn forged_authentication_results_are_removed() {
    let env = Env::new().await;
    let body = message("a@example.org", "f", "x\r\n");
    let raw = [
        b"Authentication-Results: other.example; spf=pass\r\n".as_slice(),
        b"Authentication-Results: MX.TEST.EXAMPLE; dkim=pass header.d=example.com\r\n",
        b"Authentication-Results: (sneaky) mx.test.example 1; dmarc=pass\r\n",
        &body,
    ]
    .concat();
    let d = env
        .check("203.0.113.9", "h.example", "a@example.org", &raw)
        .await;
    assert_eq!(d.outcome.forged_ar, vec![2, 3]);
    assert_eq!(
        d.edits.remove,
        vec![
            ("Authentication-Results".to_string(), 2),
            ("Authentication-Results".to_string(), 3)
        ]
    );
}

#[tokio::test]
async fn received_spf_is_optional() {
    let env = Env::with_config(|c| c.received_spf = true).await;
    let raw = message("a@example.com", "r", "x\r\n");
    let d = env
        .check("192.0.2.10", "mail.example.com", "a@example.com", &raw)
        .await;
    let rs = d
        .edits
        .add
        .iter()
        .find(|(n, _)| n == "Received-SPF")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(rs.starts_with("pass ("), "{rs}");
    assert!(
        rs.contains("client-ip=192.0.2.10;") && rs.contains("envelope-from=a@example.com;"),
        "{rs}"
    );
}

#[tokio::test]
async fn dns_answers_are_cached_between_messages() {
    let env = Env::new().await;
    let raw = sign_rsa("example.com", &message("alice@example.com", "c", "x\r\n"));
    env.check("192.0.2.10", "mail.example.com", "alice@example.com", &raw)
        .await;
    let first = env.dns.queries();
    assert!(first > 0);
    let d = env
        .check("192.0.2.10", "mail.example.com", "alice@example.com", &raw)
        .await;
    assert_eq!(d.verdict.action, Action::Accept);
    assert_eq!(
        env.dns.queries(),
        first,
        "second message went to the DNS server"
    );
}
