//! Unit tests of the ARC set builder: canonical forms, the chain state read from hostile
//! fields, and that nothing panics on garbage.

use super::*;
use crate::auth::arc_canon::*;
use crate::auth::{ArcOutcome, AuthResult};
use mail_auth::dkim::Canonicalization;

fn arc(result: AuthResult) -> ArcOutcome {
    ArcOutcome {
        result,
        reason: None,
        chain_length: 0,
        sealers: Vec::new(),
        oldest_pass: None,
        remote_ip: None,
    }
}

fn state(fields: &[(&str, &str)], result: AuthResult) -> Result<ChainState, NotSealed> {
    let fields: Vec<Field<'_>> = fields
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    ChainState::of(&fields, Some(&arc(result)))
}

// RFC 6376 §3.4.2: only SP and HTAB are WSP; mail-auth 0.13.3 also folds form feed away.
#[test]
fn arc_relaxed_header_keeps_form_feed() {
    let mut ours = Vec::new();
    relaxed_header(b"Subject ", b" a\x0cb \t c \r\n\t d\r\n", &mut ours);
    assert_eq!(ours, b"subject:a\x0cb c d");
    let mut theirs = Vec::new();
    Canonicalization::Relaxed.canonicalize_headers(
        [(&b"Subject"[..], &b" a\x0cb \t c \r\n\t d\r\n"[..])].into_iter(),
        &mut theirs,
    );
    assert_eq!(
        theirs, b"subject:ab c d\r\n",
        "the mail-auth defect this covers"
    );
}

// RFC 6376 §3.4.4 (DESIGN.md item 1): trailing whitespace-only lines are not in the body hash.
#[test]
fn arc_ams_relaxed_trailing_blank_lines() {
    let plain = body_hash(b"Hello\r\n");
    assert_eq!(body_hash(b"Hello\r\n \r\n\t\r\n  \t \r\n"), plain);
    assert_eq!(
        plain,
        ring::digest::digest(&ring::digest::SHA256, b"Hello\r\n").as_ref()
    );
    // RFC 6376 §3.4.4: an empty body's relaxed form is empty.
    assert_eq!(
        body_hash(b""),
        ring::digest::digest(&ring::digest::SHA256, b"").as_ref()
    );
    assert_eq!(body_hash(b" \r\n\r\n"), body_hash(b""));
}

#[test]
fn chain_state_from_fields_and_validation() {
    assert_eq!(
        state(&[("From", "a@b")], AuthResult::None),
        Ok(ChainState::None)
    );
    let two = [
        ("ARC-Seal", " i=2; cv=pass; a=rsa-sha256"),
        ("ARC-Seal", " i=1; cv=none; a=rsa-sha256"),
    ];
    assert_eq!(state(&two, AuthResult::Pass), Ok(ChainState::Pass(2)));
    assert_eq!(state(&two, AuthResult::Fail), Ok(ChainState::Fail(2)));
    assert_eq!(
        state(&two, AuthResult::Temperror),
        Err(NotSealed::Undetermined)
    );
    // RFC 8617 §5.1: a chain whose newest seal says fail has ended.
    let ended = [("ARC-Seal", "i=2; cv=fail"), ("ARC-Seal", "i=1; cv=none")];
    assert_eq!(state(&ended, AuthResult::Fail), Err(NotSealed::ChainEnded));
    // A cv=fail below a newer seal does not end it (that chain fails: our set says so).
    let older = [("ARC-Seal", "i=2; cv=pass"), ("ARC-Seal", "i=1; cv=fail")];
    assert_eq!(state(&older, AuthResult::Fail), Ok(ChainState::Fail(2)));
    // ARC fields that validation did not see as a chain never give cv=pass or none.
    assert_eq!(
        state(
            &[("arc-authentication-results", "i=4; x")],
            AuthResult::None
        ),
        Ok(ChainState::Fail(4))
    );
    assert_eq!(
        state(&[("ARC-Seal", "i=50; cv=pass")], AuthResult::Pass),
        Err(NotSealed::TooManySets(50))
    );
    assert_eq!(
        state(&[("ARC-Seal", "cv=pass")], AuthResult::Fail),
        Err(NotSealed::UnreadableInstances)
    );
    assert_eq!(ChainState::Pass(3).instance(), 4);
    assert_eq!(ChainState::None.cv(), "none");
}

#[test]
fn instance_numbers() {
    assert_eq!(instance(b" i=1; lists.example.org; spf=pass"), Some(1));
    assert_eq!(instance(b"a=rsa-sha256;\r\n\ti = 12 ; cv=pass"), Some(12));
    assert_eq!(instance(b"i=0"), None);
    assert_eq!(instance(b"i=-1"), None);
    assert_eq!(instance(b"i=1x"), None);
    assert_eq!(instance(b"i=4294967296"), None);
    assert_eq!(instance(b"\xff\xfe i=\xff"), None);
    assert_eq!(instance(b""), None);
}

#[test]
fn signed_names_follow_the_message() {
    let fields: Vec<Field<'_>> = vec![
        (b"From", b" a@example.com\r\n"),
        (b"Subject", b" x\r\n"),
        (b"DKIM-Signature", b" v=1\r\n"),
        (b"DKIM-Signature", b" v=1\r\n"),
    ];
    let config = ArcSealConfig::default();
    assert_eq!(
        signed_names(&fields, &config.headers),
        ["from", "subject", "dkim-signature", "dkim-signature"]
    );
}

#[test]
fn garbage_never_panics() {
    let key = PrivateKey::from_pem(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/keys/rsa2048.pem"
        ))
        .unwrap(),
    )
    .unwrap();
    let config = ArcSealConfig {
        mode: SealMode::Verified,
        domain: "lists.example.org".into(),
        selector: "arc".into(),
        ..ArcSealConfig::default()
    };
    let sealer = Sealer::with_key(&config, key);
    let inputs: [&[u8]; 6] = [
        b"",
        b"\r\n",
        b":\r\n\r\n",
        b"From\r\n\r\nbody",
        b"ARC-Seal: i=\xff\r\n \r\n\t\r\n",
        b"\x00\x01: \xff\r\nFrom: a\r\n\r\n\xff\xfe",
    ];
    for raw in inputs {
        let (fields, body) = split_message(raw);
        let set = sealer.seal(&fields, body, "mx.example; none", ChainState::None, 1);
        let set = set.expect("a set is always built for i=1");
        assert!(set[0].1.starts_with("i=1; a=rsa-sha256; cv=none;"));
        let _ = ChainState::of(&fields, None);
    }
}
