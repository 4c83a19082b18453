//! One regression test per mail-auth 0.13.3 defect listed in DESIGN.md, named after what
//! broke, plus hostile input. Each runs the whole pipeline against the loopback DNS server.

use crate::common::*;
use authmilter::auth::AuthResult;
use authmilter::policy::Action;

/// DESIGN.md item 1 / RFC 6376 §3.4.4: relaxed body canonicalization ignores whitespace-only
/// lines at the end of the body.
#[tokio::test]
async fn dkim_relaxed_trailing_blank_lines() {
    let env = Env::new().await;
    let clean = message("alice@example.com", "ws", "Hello\r\n");
    let trailing = message(
        "alice@example.com",
        "ws",
        "Hello\r\n \r\n\t\r\n  \t \r\n\r\n",
    );
    // A correct relaxed signature of `trailing` is the one of `clean`: same canonical body.
    let sig = rsa_signature("example.com", &["From", "Subject"], &clean, false);
    let raw = [sig.as_bytes(), &trailing].concat();
    let d = env
        .check("203.0.113.1", "h.example", "x@elsewhere.example", &raw)
        .await;
    assert_eq!(
        d.outcome.dkim[0].result,
        AuthResult::Pass,
        "{:?}",
        d.outcome.dkim[0]
    );
    // Simple canonicalization must still see those lines as content.
    let sig = rsa_signature("example.com", &["From", "Subject"], &clean, true);
    let raw = [sig.as_bytes(), &trailing].concat();
    let d = env
        .check("203.0.113.1", "h.example", "x@elsewhere.example", &raw)
        .await;
    assert_eq!(
        d.outcome.dkim[0].result,
        AuthResult::Fail,
        "{:?}",
        d.outcome.dkim[0]
    );
}

/// DESIGN.md item 2 / RFC 6376 §6.1.1: a signature whose h= lacks From must not pass.
#[tokio::test]
async fn dkim_signature_without_from_in_h_is_permerror() {
    let env = Env::new().await;
    let msg = message("alice@example.com", "nofrom", "x\r\n");
    let sig = rsa_signature("example.com", &["To", "Subject"], &msg, false);
    let raw = [sig.as_bytes(), &msg].concat();
    let d = env
        .check("203.0.113.1", "h.example", "x@elsewhere.example", &raw)
        .await;
    assert_eq!(d.outcome.dkim[0].result, AuthResult::Permerror);
    assert!(d.outcome.dkim[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("From is not signed"));
    assert_eq!(d.outcome.dmarc.as_ref().unwrap().result, AuthResult::Fail);
    assert_eq!(d.verdict.action, Action::Reject);
}

/// DESIGN.md item 3 / RFC 7489 §6.6.1: several From addresses or fields.
#[tokio::test]
async fn multiple_from_is_not_dmarc_none() {
    let env = Env::new().await;
    // Two addresses in one field, the first one's domain signs: must still not pass.
    let raw = sign_rsa(
        "example.com",
        &message("alice@example.com, mallory@evil.example", "m", "x\r\n"),
    );
    let d = env
        .check("192.0.2.10", "h.example", "alice@example.com", &raw)
        .await;
    let dmarc = d.outcome.dmarc.as_ref().unwrap();
    assert_ne!(dmarc.result, AuthResult::Pass);
    assert_eq!(d.verdict.action, Action::Reject);
    // Two From fields with the same address.
    let one = message("alice@example.com", "m2", "x\r\n");
    let raw = sign_rsa(
        "example.com",
        &[b"From: alice@example.com\r\n".as_slice(), &one].concat(),
    );
    let d = env
        .check("192.0.2.10", "h.example", "alice@example.com", &raw)
        .await;
    assert_eq!(d.outcome.from.fields, 2);
    assert_ne!(d.outcome.dmarc.as_ref().unwrap().result, AuthResult::Pass);
    assert_eq!(d.verdict.action, Action::Reject);
}

/// DESIGN.md item 4 / RFC 7208 §4.5: two v=spf1 records are a permerror, not "the first one".
#[tokio::test]
async fn spf_multiple_records_is_permerror() {
    let env = Env::new().await;
    let d = env
        .check(
            "192.0.2.10",
            "h.example",
            "a@multi-spf.example",
            &message("a@multi-spf.example", "s", "x\r\n"),
        )
        .await;
    let spf = &d.outcome.spf.as_ref().unwrap().mail_from;
    assert_eq!(spf.result, AuthResult::Permerror, "{spf:?}");
}

/// DESIGN.md item 5 / RFC 7208 §4.6.4: more than two void lookups is a permerror.
#[tokio::test]
async fn spf_void_lookup_limit() {
    let env = Env::new().await;
    let d = env
        .check(
            "192.0.2.10",
            "h.example",
            "a@void3.example",
            &message("a@void3.example", "v", "x\r\n"),
        )
        .await;
    assert_eq!(
        d.outcome.spf.as_ref().unwrap().mail_from.result,
        AuthResult::Permerror
    );
    let d = env
        .check(
            "192.0.2.10",
            "h.example",
            "a@void2.example",
            &message("a@void2.example", "v", "x\r\n"),
        )
        .await;
    assert_eq!(
        d.outcome.spf.as_ref().unwrap().mail_from.result,
        AuthResult::Pass
    );
}

/// DESIGN.md item 6 / RFC 8301 §3.1: rsa-sha1 is not accepted, and signatures are capped.
#[tokio::test]
async fn dkim_rsa_sha1_refused_and_signatures_capped() {
    let env = Env::with_config(|c| c.limits.max_dkim_signatures = 3).await;
    let msg = message("alice@example.com", "sha1", "x\r\n");
    let good = rsa_signature("example.com", &["From", "Subject"], &msg, false);
    // A sha1 signature is refused before any cryptography, so its b= need not be real.
    let sha1 = "DKIM-Signature: v=1; a=rsa-sha1; c=relaxed/relaxed; d=example.com; s=rsa;\r\n\th=From:Subject; bh=AAAAAAAAAAAAAAAAAAAAAAAAAAA=; b=AAAAAAAA\r\n";
    let raw = [sha1.as_bytes(), good.as_bytes(), &msg].concat();
    let d = env
        .check("203.0.113.1", "h.example", "x@elsewhere.example", &raw)
        .await;
    let results: Vec<_> = d
        .outcome
        .dkim
        .iter()
        .map(|x| (x.result, x.algorithm.as_str()))
        .collect();
    assert!(
        results.contains(&(AuthResult::Permerror, "rsa-sha1")),
        "{results:?}"
    );
    assert!(
        results.contains(&(AuthResult::Pass, "rsa-sha256")),
        "{results:?}"
    );

    let mut many = Vec::new();
    for _ in 0..5 {
        many.extend_from_slice(good.as_bytes());
    }
    many.extend_from_slice(&msg);
    let d = env
        .check("203.0.113.1", "h.example", "x@elsewhere.example", &many)
        .await;
    assert_eq!(d.outcome.dkim.len(), 3);
    assert_eq!(d.outcome.dkim_ignored, 2);
}

/// DESIGN.md item 7: a body-hash mismatch is `fail (body hash mismatch)`, not neutral.
#[tokio::test]
async fn dkim_body_hash_mismatch_is_fail() {
    let env = Env::new().await;
    let raw = sign_rsa(
        "example.com",
        &message("alice@example.com", "bh", "original\r\n"),
    );
    let tampered = String::from_utf8(raw)
        .unwrap()
        .replace("original", "tampered");
    let d = env
        .check(
            "203.0.113.1",
            "h.example",
            "x@elsewhere.example",
            tampered.as_bytes(),
        )
        .await;
    assert_eq!(d.outcome.dkim[0].result, AuthResult::Fail);
    assert_eq!(
        d.outcome.dkim[0].reason.as_deref(),
        Some("body hash mismatch")
    );
    assert!(d
        .authentication_results()
        .unwrap()
        .contains("dkim=fail (body hash mismatch)"));
}

/// Hostile input: never a panic, always a verdict with a reason.
#[tokio::test]
async fn malformed_messages_get_a_verdict() {
    let env = Env::new().await;
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut long_header = b"X-Long: ".to_vec();
    long_header.resize(10 * 1024 * 1024, b'a');
    long_header.extend_from_slice(b"\r\nFrom: a@example.org\r\n\r\nbody\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "no header/body split",
            b"just some text without any header".to_vec(),
        ),
        ("binary junk", junk),
        ("10 MB header line", long_header),
        ("only a blank line", b"\r\n".to_vec()),
        (
            "NUL bytes",
            b"From: a@example.org\r\n\0\0\0\r\n\r\n\0".to_vec(),
        ),
        (
            "broken DKIM-Signature",
            b"DKIM-Signature: v=1; a=; d=\r\nFrom: a@example.com\r\n\r\nx\r\n".to_vec(),
        ),
    ];
    for (what, raw) in cases {
        let d = env
            .check("203.0.113.1", "h.example", "a@example.org", &raw)
            .await;
        assert!(!d.verdict.reasons.is_empty(), "{what}: no reason");
        if d.outcome.malformed.is_some() {
            assert_eq!(d.verdict.action, Action::Reject, "{what}");
        }
    }
}

/// Over the size limit: nothing is verified and the verdict says so.
#[tokio::test]
async fn oversized_message_is_refused() {
    let env = Env::with_config(|c| c.limits.max_message_size = 2048).await;
    let raw = message("a@example.org", "big", &"x".repeat(4096));
    let d = env
        .check("203.0.113.1", "h.example", "a@example.org", &raw)
        .await;
    assert!(d.outcome.oversized);
    assert_eq!((d.verdict.action, d.verdict.code), (Action::Tempfail, 452));
}

/// RFC 7208 §4.5 (suite "null-text", §3.3): a TXT record with zero-length RDATA beside the SPF
/// record is no record, not a DNS failure; hickory refuses such an answer as a whole.
#[tokio::test]
async fn spf_null_text_empty_rdata_is_no_record() {
    use crate::dns_server::DnsServer;
    use crate::dns_zone::{Entry, Zone};
    let mut zone = Zone::new();
    zone.txt_strings("null.example.com", ["v=spf1 ip4:", "192.0.2.5 -all"])
        .push("null.example.com", Entry::Txt(Vec::new()));
    let dns = DnsServer::start(zone).await;
    let verifier =
        authmilter::auth::Verifier::new(std::sync::Arc::new(config_for(dns.addr))).unwrap();
    let conn = external("192.0.2.5", "hosed");
    let tx = authmilter::auth::Transaction::begin(&verifier, &conn, "silly@null.example.com").await;
    let spf = &tx.spf().unwrap().mail_from;
    assert_eq!(spf.result, AuthResult::Pass, "{}", spf.reason);
    let conn = external("192.0.2.6", "hosed");
    let tx = authmilter::auth::Transaction::begin(&verifier, &conn, "silly@null.example.com").await;
    assert_eq!(tx.spf().unwrap().mail_from.result, AuthResult::Fail);
}
