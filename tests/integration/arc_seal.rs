//! ARC sealing (RFC 8617 §5.1) through the shared end-of-message path: the milter and the SMTP
//! front end add our set in the same write as the rest, our own verifier validates what we
//! seal (several hops), and hostile chains (broken, ended, oversized, malformed) are sealed
//! with cv=fail or not at all, never with a second cv=pass. Peers are in `arc_interop.rs`.

use crate::common::*;
use crate::milter_client::*;
use authmilter::auth::arc_canon::NotSealed;
use authmilter::auth::AuthResult;
use authmilter::check::{apply_edits, seal_inbound};
use authmilter::config::{ArcSealConfig, Config, Delivery, SealMode};
use authmilter::milter::reply::Reply;
use authmilter::sign::seal::Sealer;
use authmilter::sign::PrivateKey;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The sealer the tests use: `d=lists.example.org; s=arc`, published in main.zone.
pub fn sealer(mode: SealMode) -> Sealer {
    let key = PrivateKey::from_pem(&std::fs::read(testdata("keys/rsa2048.pem")).unwrap());
    Sealer::with_key(&seal_config(mode, Path::new("unused")), key.unwrap())
}

fn seal_config(mode: SealMode, key_file: &Path) -> ArcSealConfig {
    ArcSealConfig {
        mode,
        domain: "lists.example.org".into(),
        selector: "arc".into(),
        key_file: key_file.to_path_buf(),
        ..ArcSealConfig::default()
    }
}

/// `[arc.seal]` for a daemon: the key copied with mode 0600 (the daemon refuses others).
fn configure(c: &mut Config, mode: SealMode, dir: &Path) {
    let key = dir.join("arc.pem");
    std::fs::copy(testdata("keys/rsa2048.pem"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    c.arc_seal = seal_config(mode, &key);
}

/// One forwarding hop: verify (from an address example.com's SPF allows), seal, and return
/// the message as it leaves, with what sealing said.
pub async fn hop(
    env: &Env,
    sealer: &Sealer,
    raw: &[u8],
) -> (Vec<u8>, Result<Option<u32>, NotSealed>) {
    let mut decision = env
        .check("192.0.2.10", "mail.example.com", "alice@example.com", raw)
        .await;
    let sealed = seal_inbound(sealer, &mut decision, raw);
    (apply_edits(raw, &decision.edits), sealed)
}

/// Our verifier's ARC result and chain length for a message.
pub async fn our_arc(env: &Env, raw: &[u8]) -> (AuthResult, u32) {
    let d = env
        .check("198.51.100.1", "next.example", "alice@example.com", raw)
        .await;
    let arc = d.outcome.arc.expect("ARC evaluated");
    (arc.result, arc.chain_length)
}

/// The values of the fields named `name`, top first.
fn values(raw: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    let unfolded = head.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

fn tag(value: &str, name: &str) -> String {
    value
        .split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

fn plain() -> Vec<u8> {
    message("Alice <alice@example.com>", "forwarded", "Hello list.\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_hops_validate_in_our_verifier() {
    let env = Env::new().await;
    let s = sealer(SealMode::Verified);
    let (one, sealed) = hop(&env, &s, &plain()).await;
    assert_eq!(sealed, Ok(Some(1)));
    assert_eq!(our_arc(&env, &one).await, (AuthResult::Pass, 1));
    // RFC 8617 §4.1: the set goes on top, ARC-Seal first, above our A-R.
    let text = String::from_utf8_lossy(&one);
    let order: Vec<&str> = text
        .split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .take(4)
        .collect();
    assert_eq!(
        order,
        [
            "ARC-Seal",
            "ARC-Message-Signature",
            "ARC-Authentication-Results",
            "Authentication-Results"
        ]
    );
    // The AAR carries exactly our A-R results, smtp.remote-ip included (RFC 8617 §10.2).
    let ar = &values(&one, "Authentication-Results")[0];
    let aar = &values(&one, "ARC-Authentication-Results")[0];
    assert_eq!(aar, &format!("i=1; {ar}"));
    assert!(ar.contains("arc=none smtp.remote-ip=192.0.2.10"), "{ar}");
    assert_eq!(tag(&values(&one, "ARC-Seal")[0], "cv"), "none");

    // Seal our own sealed output again, twice: cv=pass, i=2 then i=3.
    let (two, sealed) = hop(&env, &s, &one).await;
    assert_eq!(sealed, Ok(Some(2)));
    assert_eq!(tag(&values(&two, "ARC-Seal")[0], "cv"), "pass");
    let ar2 = &values(&two, "Authentication-Results")[0];
    assert!(
        ar2.contains("arc=pass (i=1 sealed by lists.example.org) header.oldest-pass=0"),
        "{ar2}"
    );
    let (three, sealed) = hop(&env, &s, &two).await;
    assert_eq!(sealed, Ok(Some(3)));
    assert_eq!(our_arc(&env, &three).await, (AuthResult::Pass, 3));
}

// RFC 8617 §5.1.2: a chain that does not validate is sealed with cv=fail over our set only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chain_is_sealed_with_cv_fail_never_pass() {
    let env = Env::new().await;
    let s = sealer(SealMode::Verified);
    let (one, _) = hop(&env, &s, &plain()).await;
    // A list footer after sealing breaks the AMS of i=1.
    let mut tampered = one.clone();
    tampered.extend_from_slice(b"-- \r\nlist footer\r\n");
    assert_eq!(our_arc(&env, &tampered).await.0, AuthResult::Fail);
    let (two, sealed) = hop(&env, &s, &tampered).await;
    assert_eq!(sealed, Ok(Some(2)));
    let seals = values(&two, "ARC-Seal");
    assert_eq!(tag(&seals[0], "cv"), "fail");
    assert_eq!(tag(&seals[0], "i"), "2");
    assert_eq!(our_arc(&env, &two).await.0, AuthResult::Fail);
    // RFC 8617 §5.1: the newest seal says fail, so the chain has ended: nothing is added.
    let (three, sealed) = hop(&env, &s, &two).await;
    assert_eq!(sealed, Err(NotSealed::ChainEnded));
    assert_eq!(values(&three, "ARC-Seal").len(), 2);
    assert!(values(&three, "ARC-Seal")
        .iter()
        .all(|v| tag(v, "cv") != "pass" || tag(v, "i") == "1"));
}

// RFC 8617 §4.2.1: at most 50 sets; a message that already has 50 is passed on unsealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sets_are_not_sealed_again() {
    let env = Env::new().await;
    let s = sealer(SealMode::Verified);
    let mut raw = plain();
    for i in (1..=50).rev() {
        let set = format!(
            "ARC-Seal: i={i}; a=rsa-sha256; cv={}; d=lists.example.org; s=arc; t=1; b=AAAA\r\n\
             ARC-Message-Signature: i={i}; a=rsa-sha256; c=relaxed/relaxed; d=lists.example.org; s=arc; t=1; h=from; bh=AAAA; b=AAAA\r\n\
             ARC-Authentication-Results: i={i}; lists.example.org; spf=pass\r\n",
            if i == 1 { "none" } else { "pass" }
        );
        raw.splice(0..0, set.into_bytes());
    }
    let (out, sealed) = hop(&env, &s, &raw).await;
    assert_eq!(sealed, Err(NotSealed::TooManySets(50)));
    assert_eq!(values(&out, "ARC-Seal").len(), 50);
    // Over the limit by instance number alone (i=51 in one forged field): not sealed either.
    let mut raw = plain();
    raw.splice(
        0..0,
        b"ARC-Seal: i=51; a=rsa-sha256; cv=pass; d=x.example; s=s; b=AAAA\r\n".to_vec(),
    );
    assert_eq!(hop(&env, &s, &raw).await.1, Err(NotSealed::TooManySets(51)));
}

// RFC 8617 §4.1: malformed ARC fields make the chain fail: cv=fail, or nothing when no
// instance can be read; never a panic, never cv=pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_arc_fields_are_sealed_with_cv_fail_or_not_at_all() {
    let env = Env::new().await;
    let s = sealer(SealMode::Verified);
    type Sealed = Result<Option<u32>, NotSealed>;
    let cases: &[(&[u8], Sealed)] = &[
        (
            b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=lists.example.org; s=arc; b=AAAA\r\n",
            Ok(Some(2)),
        ),
        (
            b"ARC-Seal: garbage\r\n",
            Err(NotSealed::UnreadableInstances),
        ),
        (
            b"ARC-Message-Signature: i=x; ;;==;\r\n",
            Err(NotSealed::UnreadableInstances),
        ),
        (b"ARC-Authentication-Results: i=3\r\n", Ok(Some(4))),
        (
            b"ARC-Seal: i=99999999999999999999; cv=pass\r\n",
            Err(NotSealed::UnreadableInstances),
        ),
        (
            b"ARC-Seal: i=2; i=1; cv=\xff\xfe; a=rsa-sha256\r\n",
            Ok(Some(3)),
        ),
        (
            b"arc-seal:i=1;cv=pass;b=\r\narc-seal:i=1;cv=pass;b=\r\n",
            Ok(Some(2)),
        ),
    ];
    for (fields, expected) in cases {
        let mut raw = fields.to_vec();
        raw.extend_from_slice(&plain());
        let (out, sealed) = hop(&env, &s, &raw).await;
        assert_eq!(&sealed, expected, "{}", String::from_utf8_lossy(fields));
        if sealed.is_ok() {
            let ours = &values(&out, "ARC-Seal")[0];
            assert_eq!(tag(ours, "cv"), "fail", "{ours}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_seals_verified_mail_in_the_end_of_message_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let d = Daemon::start(move |c| configure(c, SealMode::Verified, &path)).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    let raw = plain();
    let r = mta.message("ARC1", "alice@example.com", None, &raw).await;
    let names: Vec<String> = r
        .iter()
        .map(|x| match x {
            Reply::InsertHeader { index, name, .. } => format!("{index}:{name}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "0:ARC-Seal",
            "1:ARC-Message-Signature",
            "2:ARC-Authentication-Results",
            "3:Authentication-Results",
            "Continue"
        ]
    );
    // Written as Postfix writes them (LF folds back to CRLF), the chain validates downstream.
    let env = Env::new().await;
    let out = inserted_on_top(&r, &raw);
    assert_eq!(our_arc(&env, &out).await, (AuthResult::Pass, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_seals_outbound_mail_after_dkim_signing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = signing_keys(dir.path());
    let path = dir.path().to_path_buf();
    let d = Daemon::start(move |c| {
        c.signing.add_keys(keys);
        configure(c, SealMode::Outbound, &path);
    })
    .await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("127.0.0.1", "localhost").await;
    let raw = message("Alice <alice@example.com>", "out", "Hello \r\n \r\n");
    let r = mta.message("S1", "alice@example.com", None, &raw).await;
    let names: Vec<String> = r
        .iter()
        .filter_map(|x| match x {
            Reply::InsertHeader { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        [
            "ARC-Seal",
            "ARC-Message-Signature",
            "ARC-Authentication-Results",
            "DKIM-Signature",
            "DKIM-Signature"
        ]
    );
    let env = Env::new().await;
    let out = inserted_on_top(&r, &raw);
    assert_eq!(our_arc(&env, &out).await, (AuthResult::Pass, 1));
    // The AMS signs the DKIM-Signature fields added before it.
    let ams = &values(&out, "ARC-Message-Signature")[0];
    assert!(
        tag(ams, "h").contains("dkim-signature:dkim-signature"),
        "{ams}"
    );
    let v = env
        .check("203.0.113.5", "relay.example", "alice@example.com", &out)
        .await;
    assert!(v.outcome.dkim.iter().all(|x| x.result == AuthResult::Pass));
    // Verified mail is not sealed in outbound mode.
    let mut ext = d.mta().await;
    ext.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    ext.connect_client("192.0.2.10", "mail.example.com").await;
    let r = ext
        .message("IN1", "alice@example.com", None, &plain())
        .await;
    assert!(!r
        .iter()
        .any(|x| matches!(x, Reply::InsertHeader { name, .. } if name.starts_with("ARC"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_front_end_seals_what_it_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let (m, path) = (maildir.clone(), dir.path().to_path_buf());
    let d = Daemon::start(move |c| {
        c.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
        c.smtp.listen = Some("127.0.0.1:0".parse().unwrap());
        c.smtp.local_domains = vec!["example.net".into()];
        c.smtp.delivery = Delivery::Maildir(m);
        configure(c, SealMode::Verified, &path);
    })
    .await;
    let port = d.smtp.unwrap().port();
    // 127.0.0.1 is not in example.com's SPF: DKIM-sign so DMARC passes and the mail is kept.
    let raw = sign_rsa("example.com", &plain());
    let sent = tokio::task::spawn_blocking(move || {
        crate::smtp_client::send_plain(port, "alice@example.com", &["bob@example.net"], &raw)
    })
    .await
    .unwrap();
    assert_eq!(sent.reply.code, 250, "{sent}");
    let file = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let delivered = std::fs::read(file).unwrap();
    let text = String::from_utf8_lossy(&delivered);
    assert!(
        text.contains("\r\nARC-Seal: i=1; a=rsa-sha256; cv=none;"),
        "{text}"
    );
    let env = Env::new().await;
    assert_eq!(our_arc(&env, &delivered).await, (AuthResult::Pass, 1));
}

/// The message as the MTA writes it after the end-of-message replies: inserted fields on top
/// in index order, with the MTA's CRLF line ends.
fn inserted_on_top(replies: &[Reply], raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in replies {
        if let Reply::InsertHeader { name, value, .. } = r {
            out.extend_from_slice(format!("{name}:{}\r\n", value.replace('\n', "\r\n")).as_bytes());
        }
    }
    out.extend_from_slice(raw);
    out
}

// RFC 8617 §4.1.1 via RFC 8301: rsa-sha256 only, so an Ed25519 key refuses to start.
#[test]
fn sealing_key_must_be_rsa_of_2048_bits() {
    let dir = tempfile::tempdir().unwrap();
    for (file, expected) in [
        ("ed25519.pem", "needs an RSA key of at least 2048 bits"),
        ("rsa1024.pem", "1024"),
    ] {
        let key = dir.path().join(file);
        std::fs::copy(testdata(&format!("keys/{file}")), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut config = seal_config(SealMode::Verified, &key);
        config.origin = Some("a.toml:7".into());
        let e = Sealer::new(&config).unwrap_err().to_string();
        assert!(e.contains(expected) && e.contains("a.toml:7"), "{e}");
    }
    let off = seal_config(SealMode::Off, Path::new("/nonexistent"));
    assert!(Sealer::new(&off).unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_front_end_seals_outbound_mail_after_signing() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let keys = signing_keys(dir.path());
    let (m, path) = (maildir.clone(), dir.path().to_path_buf());
    // 127.0.0.1 is trusted by default: its mail is outbound, signed, then sealed.
    let d = Daemon::start(move |c| {
        c.smtp.listen = Some("127.0.0.1:0".parse().unwrap());
        c.smtp.delivery = Delivery::Maildir(m);
        c.signing.add_keys(keys);
        configure(c, SealMode::Outbound, &path);
    })
    .await;
    let port = d.smtp.unwrap().port();
    let raw = message("Alice <alice@example.com>", "out", "Hello\r\n");
    let sent = tokio::task::spawn_blocking(move || {
        crate::smtp_client::send_plain(port, "alice@example.com", &["bob@example.net"], &raw)
    })
    .await
    .unwrap();
    assert_eq!(sent.reply.code, 250, "{sent}");
    let file = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let delivered = std::fs::read(file).unwrap();
    let text = String::from_utf8_lossy(&delivered);
    let seal = text.find("\r\nARC-Seal: i=1;").expect("sealed");
    let signature = text.find("\r\nDKIM-Signature:").expect("signed");
    assert!(
        seal < signature,
        "the set goes above the signatures: {text}"
    );
    let env = Env::new().await;
    assert_eq!(our_arc(&env, &delivered).await, (AuthResult::Pass, 1));
    let v = env
        .check(
            "203.0.113.5",
            "relay.example",
            "alice@example.com",
            &delivered,
        )
        .await;
    assert!(!v.outcome.dkim.is_empty());
    assert!(v.outcome.dkim.iter().all(|x| x.result == AuthResult::Pass));
}
