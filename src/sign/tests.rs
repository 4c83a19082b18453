use super::*;
use crate::config::SigningConfig;
use std::time::Duration;

fn key(file: &str, domain: &str, selector: &str) -> DomainKey {
    let path = format!("{}/testdata/keys/{file}", env!("CARGO_MANIFEST_DIR"));
    DomainKey {
        domain: domain.into(),
        selector: selector.into(),
        identity: None,
        key: PrivateKey::from_pem(&std::fs::read(path).unwrap()).unwrap(),
    }
}

fn signer(config: &SigningConfig) -> Signer {
    Signer::with_keys(
        config,
        vec![
            key("rsa2048.pem", "example.com", "rsa"),
            key("ed25519.pem", "example.com", "ed"),
        ],
    )
}

fn message(body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hi\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nX-Other: 1\r\n\r\n{body}"
    )
    .into_bytes()
}

/// The value of tag `name` in a DKIM-Signature value, white space removed.
fn tag(value: &str, name: &str) -> Option<String> {
    value.split(';').find_map(|t| {
        let (n, v) = t.split_once('=')?;
        (n.trim() == name).then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

fn sha256_b64(data: &[u8]) -> String {
    der::base64_encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

#[test]
fn signer_can_be_shared_between_sessions() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Signer>();
}

#[test]
fn dual_signing_gives_one_field_per_key() {
    let s = signer(&SigningConfig::default());
    let values = s.sign("example.com", None, &message("Hello\r\n")).unwrap();
    assert_eq!(values.len(), 2);
    assert_eq!(tag(&values[0], "a").unwrap(), "rsa-sha256");
    assert_eq!(tag(&values[1], "a").unwrap(), "ed25519-sha256");
    for v in &values {
        assert!(v.starts_with("v=1; "), "{v}");
        assert!(!v.ends_with("\r\n"), "{v}");
        assert!(v.contains("\r\n\t"), "folded: {v}");
        assert_eq!(tag(v, "d").unwrap(), "example.com");
        assert_eq!(tag(v, "c").unwrap(), "relaxed/relaxed");
        assert!(tag(v, "x").is_none() && tag(v, "i").is_none());
    }
}

#[test]
fn h_tag_oversigns_and_skips_absent_fields() {
    let s = signer(&SigningConfig::default());
    let v = &s.sign("example.com", None, &message("x\r\n")).unwrap()[0];
    let h: Vec<String> = tag(v, "h")
        .unwrap()
        .split(':')
        .map(str::to_ascii_lowercase)
        .collect();
    let count = |n: &str| h.iter().filter(|x| *x == n).count();
    // Present and oversigned: listed twice. Absent and oversigned: once (a null entry).
    assert_eq!(count("from"), 2, "{h:?}");
    assert_eq!(count("subject"), 2, "{h:?}");
    assert_eq!(count("reply-to"), 1, "{h:?}");
    // Absent, not oversigned: not listed. Not configured: not signed.
    assert_eq!(count("references"), 0, "{h:?}");
    assert_eq!(count("x-other"), 0, "{h:?}");
}

#[test]
fn relaxed_body_hash_ignores_trailing_whitespace_lines() {
    // DESIGN.md item 1 / RFC 6376 §3.4.4: these bodies all canonicalize to "Hi\r\n".
    let s = signer(&SigningConfig::default());
    let expected = sha256_b64(b"Hi\r\n");
    for body in [
        "Hi\r\n",
        "Hi\r\n \r\n\t\r\n",
        "Hi  \r\n\r\n\r\n",
        "Hi\r\n  ",
        "Hi",
    ] {
        let v = &s.sign("example.com", None, &message(body)).unwrap()[0];
        assert_eq!(tag(v, "bh").unwrap(), expected, "body {body:?}");
    }
    // RFC 6376 §3.4.4: an empty relaxed body is hashed as nothing at all.
    let empty = sha256_b64(b"");
    for body in ["", "\r\n", " \r\n\r\n"] {
        let v = &s.sign("example.com", None, &message(body)).unwrap()[0];
        assert_eq!(tag(v, "bh").unwrap(), empty, "body {body:?}");
    }
}

#[test]
fn simple_body_hash_keeps_whitespace_lines() {
    let config = SigningConfig {
        header_canonicalization: Canonicalization::Simple,
        body_canonicalization: Canonicalization::Simple,
        ..SigningConfig::default()
    };
    let s = signer(&config);
    let v = &s
        .sign("example.com", None, &message("Hi\r\n \r\n\r\n"))
        .unwrap()[0];
    assert_eq!(tag(v, "c").unwrap(), "simple/simple");
    // RFC 6376 §3.4.3: only empty lines at the end go; the space line stays.
    assert_eq!(tag(v, "bh").unwrap(), sha256_b64(b"Hi\r\n \r\n"));
    // §3.4.3: an empty body is a single CRLF.
    let v = &s.sign("example.com", None, &message("")).unwrap()[0];
    assert_eq!(tag(v, "bh").unwrap(), sha256_b64(b"\r\n"));
}

#[test]
fn expiry_and_identity() {
    let config = SigningConfig {
        expire: Some(Duration::from_secs(3600)),
        identity: IdentityMode::From,
        ..SigningConfig::default()
    };
    let s = signer(&config);
    let v = &s.sign("example.com", None, &message("x\r\n")).unwrap()[0];
    let t: u64 = tag(v, "t").unwrap().parse().unwrap();
    let x: u64 = tag(v, "x").unwrap().parse().unwrap();
    assert_eq!(x - t, 3600);
    assert_eq!(tag(v, "i").unwrap(), "alice@example.com");
    // A key's own i= wins over the From address.
    let mut k = key("ed25519.pem", "example.com", "ed");
    k.identity = Some("@mail.example.com".into());
    let s = Signer::with_keys(&config, vec![k]);
    let v = &s.sign("example.com", None, &message("x\r\n")).unwrap()[0];
    assert_eq!(tag(v, "i").unwrap(), "@mail.example.com");
}

#[test]
fn refusals_are_typed() {
    let config = SigningConfig {
        users: Some(BTreeMap::from([(
            "alice".to_string(),
            vec!["example.com".to_string()],
        )])),
        ..SigningConfig::default()
    };
    let s = signer(&config);
    assert!(matches!(
        s.sign("example.org", None, &message("x")),
        Err(SignError::NotOurDomain { domain }) if domain == "example.org"
    ));
    assert!(matches!(
        s.sign("example.com", Some("bob"), &message("x")),
        Err(SignError::Unauthorised { user, domain }) if user == "bob" && domain == "example.com"
    ));
    assert_eq!(
        s.sign("example.com", Some("alice"), &message("x"))
            .unwrap()
            .len(),
        2
    );
    let no_from = b"To: bob@example.net\r\nSubject: x\r\n\r\nbody\r\n";
    assert!(matches!(
        s.sign("example.com", None, no_from),
        Err(SignError::NoFrom)
    ));
}

#[test]
fn from_address_forms() {
    let m = |from: &str| format!("Subject: x\r\nFrom: {from}\r\n\r\nbody").into_bytes();
    assert_eq!(
        from_address(&m("Alice <alice@Example.com>")).as_deref(),
        Some("alice@Example.com")
    );
    assert_eq!(
        from_address(&m("alice@example.com (Alice)")).as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        from_address(&m("\"Smith, Al\"\r\n <al@example.org>")).as_deref(),
        Some("al@example.org")
    );
    assert_eq!(
        from_domain(&m("<al@Example.ORG>")).as_deref(),
        Some("example.org")
    );
    assert_eq!(from_address(&m("a@example.com, b@example.net")), None);
    assert_eq!(from_address(&m("undisclosed")), None);
    let two = b"From: a@example.com\r\nFrom: b@example.com\r\n\r\n";
    assert_eq!(from_address(two), None);
}

#[test]
fn dkim_signature_has_no_fold_before_the_final_semicolon() {
    // dkimpy does not delete white space after the b= value (RFC 6376 §3.7 says to), so a
    // fold there fails its verification; mail-auth puts one there when b= ends a line.
    // Signed field names of every length move b= across the wrap column.
    let mut folds_seen = 0;
    for n in 1..80 {
        let name = format!("X-{}", "a".repeat(n));
        let config = SigningConfig {
            headers: vec!["From".into(), name.clone()],
            ..SigningConfig::default()
        };
        let msg = format!("From: alice@example.com\r\n{name}: 1\r\n\r\nx\r\n");
        for v in signer(&config)
            .sign("example.com", None, msg.as_bytes())
            .unwrap()
        {
            assert!(v.ends_with(';') && !v.ends_with("\t;"), "{v:?}");
            // mail-auth wraps at 76 columns; a longer last line had its fold taken out.
            folds_seen += usize::from(v.rsplit("\r\n").next().unwrap().len() > 76);
        }
    }
    assert!(folds_seen > 0, "no signature hit the wrap column");
}

#[test]
fn field_value_drops_the_name_and_a_fold_before_the_semicolon() {
    assert_eq!(
        field_value("DKIM-Signature: v=1; b=abc\r\n\tdef==\r\n\t;\r\n"),
        "v=1; b=abc\r\n\tdef==;"
    );
    assert_eq!(
        field_value("DKIM-Signature: v=1; b=abc;\r\n"),
        "v=1; b=abc;"
    );
}
