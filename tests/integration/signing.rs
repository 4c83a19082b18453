//! DKIM signing: our signatures verify in our own verifier (through the loopback DNS server)
//! for bodies and headers that trip canonicalization, in every canonicalization; key files
//! are refused when unsafe; and the real binary's `keygen`, `dns-record`, `dns-check` and
//! `sign` write what they should and exit as documented. Interop with dkimpy and Mail::DKIM is
//! in `signing_interop.rs`, over the same corpus.

use crate::common::*;
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use authmilter::auth::AuthResult;
use authmilter::config::{Config, SigningConfig};
use authmilter::sign::{DomainKey, KeyErrorKind, PrivateKey, Signer};
use mail_auth::dkim::Canonicalization::{self, Relaxed, Simple};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const HEAD: &str = "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: interop\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <interop@example.com>\r\n";

/// Messages whose canonical forms are easy to get wrong (RFC 6376 §3.4), by name.
pub fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let with_body = |body: &str| format!("{HEAD}\r\n{body}").into_bytes();
    let long = format!("{}\r\n{}\r\n", "x".repeat(998), "word ".repeat(800));
    vec![
        ("empty-body", with_body("")),
        ("one-empty-line", with_body("\r\n")),
        ("trailing-empty-lines", with_body("Hello\r\n\r\n\r\n\r\n")),
        // DESIGN.md item 1: the mail-auth defect.
        ("trailing-whitespace-lines", with_body("Hello\r\n \r\n\t\r\n  \t \r\n")),
        ("whitespace-only-body", with_body(" \r\n\t\r\n")),
        ("no-final-crlf", with_body("Hello\r\nworld")),
        ("no-final-crlf-trailing-space", with_body("Hello\r\nworld \t")),
        ("empty-lines-inside", with_body("a\r\n\r\n\r\nb\r\n")),
        ("long-lines", with_body(&long)),
        (
            "8bit-utf8",
            "From: Jörg <alice@example.com>\r\nTo: bob@example.net\r\nSubject: Grüße aus Köln ✉\r\n\r\nÜnïcödé ✓ 日本語\r\n\r\n"
                .as_bytes()
                .to_vec(),
        ),
        ("dot-leading", with_body(".\r\n..\r\n.hidden\r\n. \r\nend\r\n")),
        (
            "folded-headers",
            "From: Alice\r\n <alice@example.com>\r\nTo:   bob@example.net  ,\r\n   carol@example.net\r\nSubject: a\r\n  folded\r\n\tsubject   with   spaces  \r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"
                .as_bytes()
                .to_vec(),
        ),
        (
            "whitespace-heavy",
            "From:alice@example.com\r\nTo:\tbob@example.net\t\r\nSubject:\t  spaced\t\tout  \r\nX-Empty:\r\n\r\n  leading\r\ntrailing  \t\r\nin  the   middle\r\n\t\r\n"
                .as_bytes()
                .to_vec(),
        ),
    ]
}

/// The message as it arrives after crossing SMTP: DATA always ends the last line, so a body
/// without a final CRLF gets one. Peers verify (and sign) this form; see `signing_interop.rs`.
pub fn delivered(mut message: Vec<u8>) -> Vec<u8> {
    if !message.ends_with(b"\r\n") {
        message.extend_from_slice(b"\r\n");
    }
    message
}

/// Every header/body canonicalization pair.
pub const CANONICALIZATIONS: [(Canonicalization, Canonicalization); 4] = [
    (Relaxed, Relaxed),
    (Simple, Simple),
    (Relaxed, Simple),
    (Simple, Relaxed),
];

pub fn canon_name((h, b): (Canonicalization, Canonicalization)) -> String {
    let n = |c| if c == Relaxed { "relaxed" } else { "simple" };
    format!("{}-{}", n(h), n(b))
}

fn key(file: &str, selector: &str) -> DomainKey {
    DomainKey {
        domain: "example.com".into(),
        selector: selector.into(),
        identity: None,
        key: PrivateKey::from_pem(&std::fs::read(testdata(&format!("keys/{file}"))).unwrap())
            .unwrap(),
    }
}

/// Our dual signer with the test keys main.zone publishes (`rsa` and `ed` in example.com).
pub fn dual_signer(canon: (Canonicalization, Canonicalization)) -> Signer {
    let config = SigningConfig {
        header_canonicalization: canon.0,
        body_canonicalization: canon.1,
        ..SigningConfig::default()
    };
    Signer::with_keys(
        &config,
        vec![key("rsa2048.pem", "rsa"), key("ed25519.pem", "ed")],
    )
}

/// The message with our signatures on top, as an MTA would insert them.
pub fn signed(signer: &Signer, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in signer.sign("example.com", None, message).unwrap() {
        out.extend_from_slice(format!("DKIM-Signature: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(message);
    out
}

/// Every DKIM result of a message checked by our verifier, as `selector=result (reason)`.
pub async fn our_results(env: &Env, message: &[u8]) -> Vec<String> {
    let decision = env
        .check(
            "192.0.2.10",
            "mail.example.com",
            "alice@example.com",
            message,
        )
        .await;
    decision
        .outcome
        .dkim
        .iter()
        .map(|d| match &d.reason {
            Some(r) if d.result != AuthResult::Pass => format!("{}={} ({r})", d.selector, d.result),
            _ => format!("{}={}", d.selector, d.result),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_rsa_and_ed25519_signatures_verify_in_ours() {
    let env = Env::new().await;
    let mut failures = Vec::new();
    for canon in CANONICALIZATIONS {
        let signer = dual_signer(canon);
        for (name, message) in corpus() {
            let results = our_results(&env, &signed(&signer, &message)).await;
            if results != ["rsa=pass", "ed=pass"] {
                failures.push(format!("{name} {}: {results:?}", canon_name(canon)));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversigned_from_breaks_when_a_second_from_is_added() {
    // RFC 6376 §8.15: the extra h= entry makes an added From field change the signed data.
    let env = Env::new().await;
    let msg = signed(&dual_signer((Relaxed, Relaxed)), &corpus()[2].1);
    let forged = [b"From: ceo@example.com\r\n".as_slice(), &msg].concat();
    let results = our_results(&env, &forged).await;
    assert!(results.iter().all(|r| !r.ends_with("=pass")), "{results:?}");
}

fn write_key(dir: &Path, name: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::copy(testdata(&format!("keys/{name}")), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn signer_refuses_a_group_readable_key_naming_config_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path(), "rsa2048.pem", 0o640);
    let config_file = dir.path().join("authmilter.toml");
    let text = "[signing]\n\n[[signing.keys]]\ndomain = \"example.com\"\nselector = \"rsa\"\nkey_file = \"rsa2048.pem\"\n";
    let config = Config::parse(text, Some(&config_file)).unwrap();
    let e = Signer::new(&config.signing).unwrap_err();
    assert!(matches!(e.kind, KeyErrorKind::Permissions { mode: 0o640 }));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}:6: ", config_file.display())),
        "{msg}"
    );
    assert!(
        msg.contains("rsa2048.pem") && msg.contains("chmod 600"),
        "{msg}"
    );
    std::fs::set_permissions(
        dir.path().join("rsa2048.pem"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    assert_eq!(Signer::new(&config.signing).unwrap().keys().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs1_and_pkcs8_files_sign_alike() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    for file in ["rsa2048.pem", "rsa2048-pkcs1.pem"] {
        let path = write_key(dir.path(), file, 0o600);
        let mut config = SigningConfig::default();
        config.add_keys([authmilter::config::parse_sign_flag(&format!(
            "example.com:rsa:{}",
            path.display()
        ))
        .unwrap()]);
        let signer = Signer::new(&config).unwrap();
        let results = our_results(&env, &signed(&signer, &corpus()[3].1)).await;
        assert_eq!(results, ["rsa=pass"], "{file}");
    }
}

// --- the real binary ---

fn authmilter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(args)
        .env("AUTHMILTER_LOG", "off")
        .output()
        .expect("binary runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The character-strings of a zone-file line `NAME IN TXT ( "..." "..." )`.
fn zone_strings(line: &str) -> Vec<String> {
    let inner = &line[line.find('(').unwrap() + 1..line.rfind(')').unwrap()];
    inner
        .split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

#[test]
fn keygen_writes_a_0600_key_and_a_record_of_short_strings() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("keys");
    let out_dir = out_dir.to_str().unwrap();
    for (alg, sel) in [("rsa", "r1"), ("ed25519", "e1")] {
        let out = authmilter(&[
            "keygen",
            "--algorithm",
            alg,
            "--domain",
            "example.com",
            "--selector",
            sel,
            "--out",
            out_dir,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let key = Path::new(out_dir).join(format!("example.com.{sel}.pem"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let line = text(&out.stdout);
        let line = line.trim_end();
        let file =
            std::fs::read_to_string(Path::new(out_dir).join(format!("example.com.{sel}.txt")));
        assert_eq!(file.unwrap().trim_end(), line);
        assert!(
            line.starts_with(&format!(
                "{sel}._domainkey.example.com. IN TXT ( \"v=DKIM1; k={alg}; p="
            )),
            "{line}"
        );
        let strings = zone_strings(line);
        assert!(strings.iter().all(|s| s.len() <= 255), "{strings:?}");
        assert_eq!(strings.len(), if alg == "rsa" { 2 } else { 1 });
        // dns-record reproduces the line from the key file.
        let again = authmilter(&[
            "dns-record",
            key.to_str().unwrap(),
            "--domain",
            "example.com",
            "--selector",
            sel,
        ]);
        assert_eq!(again.status.code(), Some(0));
        assert_eq!(text(&again.stdout).trim_end(), line);
    }
    // A key others can read: `dns-record` still prints (with a warning), `sign` refuses.
    let key = Path::new(out_dir).join("example.com.e1.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let key = key.to_str().unwrap();
    let out = authmilter(&[
        "dns-record",
        key,
        "--domain",
        "example.com",
        "--selector",
        "e1",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
    let msg = testdata("messages/signed-example.com.eml");
    let sign = format!("example.com:e1:{key}");
    let out = authmilter(&["sign", "--sign", &sign, msg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--sign example.com:e1:") && err.contains("chmod 600"),
        "{err}"
    );
    // Never overwrite an existing key.
    let out = authmilter(&[
        "keygen",
        "--algorithm",
        "ed25519",
        "--domain",
        "example.com",
        "--selector",
        "e1",
        "--out",
        out_dir,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn keygen_and_key_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: [&[&str]; 4] = [
        &[
            "keygen",
            "--algorithm",
            "rsa",
            "--bits",
            "1024",
            "--domain",
            "example.com",
            "--selector",
            "s",
            "--out",
            d,
        ],
        &[
            "keygen",
            "--algorithm",
            "ed25519",
            "--bits",
            "2048",
            "--domain",
            "example.com",
            "--selector",
            "s",
            "--out",
            d,
        ],
        &[
            "keygen",
            "--algorithm",
            "dsa",
            "--domain",
            "example.com",
            "--selector",
            "s",
            "--out",
            d,
        ],
        &[
            "keygen",
            "--algorithm",
            "rsa",
            "--domain",
            "not a domain",
            "--selector",
            "s",
            "--out",
            d,
        ],
    ];
    for args in cases {
        assert_eq!(authmilter(args).status.code(), Some(2), "{args:?}");
    }
    // <1024 bits is refused outright (RFC 8301), 1024 because ring cannot sign with it.
    for (file, says) in [
        ("rsa512.pem", "at least 1024"),
        ("rsa1024.pem", "2048 to 4096"),
    ] {
        let key = write_key(dir.path(), file, 0o600);
        let out = authmilter(&[
            "sign",
            "--domain",
            "example.com",
            "--selector",
            "s",
            "--key",
            key.to_str().unwrap(),
            testdata("messages/signed-example.com.eml")
                .to_str()
                .unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{file}");
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_prints_a_message_that_verifies_and_exits_1_when_it_cannot_sign() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let rsa = write_key(dir.path(), "rsa2048.pem", 0o600);
    let ed = write_key(dir.path(), "ed25519.pem", 0o600);
    let msg = dir.path().join("msg.eml");
    // LF line endings, as an editor saves them: the output keeps them.
    std::fs::write(
        &msg,
        String::from_utf8(corpus()[3].1.clone())
            .unwrap()
            .replace("\r\n", "\n"),
    )
    .unwrap();
    let (rsa, ed, msg) = (
        rsa.to_str().unwrap(),
        ed.to_str().unwrap(),
        msg.to_str().unwrap(),
    );
    let sign_rsa = format!("example.com:rsa:{rsa}");
    let sign_ed = format!("example.com:ed:{ed}");
    // `sign` makes no DNS queries, so running it on this worker blocks nothing it needs.
    let out = authmilter(&["sign", "--sign", &sign_rsa, "--sign", &sign_ed, msg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!out.stdout.windows(2).any(|w| w == b"\r\n"));
    let crlf = text(&out.stdout).replace('\n', "\r\n");
    assert_eq!(
        our_results(&env, crlf.as_bytes()).await,
        ["rsa=pass", "ed=pass"]
    );

    // --key signs whatever the From domain says; --sign keys only their own domain.
    let other = dir.path().join("other.eml");
    std::fs::write(&other, b"From: x@example.org\r\nSubject: s\r\n\r\nhi\r\n").unwrap();
    let other = other.to_str().unwrap();
    let out = authmilter(&["sign", "--sign", &sign_rsa, other]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no key for the From domain example.org"));
    let out = authmilter(&[
        "sign",
        "--domain",
        "example.com",
        "--selector",
        "rsa",
        "--key",
        rsa,
        other,
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).starts_with("DKIM-Signature: v=1; a=rsa-sha256; s=rsa; d=example.com;")
    );

    // The [signing.users] map applies to --auth-user.
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("[signing]\n[[signing.keys]]\ndomain = \"example.com\"\nselector = \"rsa\"\nkey_file = \"{rsa}\"\n[signing.users]\nalice = [\"example.com\"]\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let as_user = |user: &str| authmilter(&["sign", "--config", config, "--auth-user", user, msg]);
    assert_eq!(as_user("alice").status.code(), Some(0));
    let out = as_user("mallory");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("mallory may not sign for example.com"));
    // No key at all is a usage error.
    assert_eq!(authmilter(&["sign", msg]).status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_check_compares_the_published_record() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = write_key(dir.path(), "rsa2048.pem", 0o600);
    let ed = write_key(dir.path(), "ed25519.pem", 0o600);
    let mut zone = Zone::from_file(testdata("dns/main.zone")).unwrap();
    zone.txt("two._domainkey.example.com", "v=DKIM1; p=AAAA")
        .txt("two._domainkey.example.com", "v=DKIM1; p=BBBB")
        .txt("gone._domainkey.example.com", "v=DKIM1; k=rsa; p=");
    let dns = DnsServer::start(zone).await;
    let ns = dns.addr.to_string();
    let check = move |key: &Path, selector: &str| {
        let (key, selector, ns) = (
            key.to_str().unwrap().to_string(),
            selector.to_string(),
            ns.clone(),
        );
        tokio::task::spawn_blocking(move || {
            authmilter(&[
                "dns-check",
                &key,
                "--domain",
                "example.com",
                "--selector",
                &selector,
                "--nameserver",
                &ns,
            ])
        })
    };
    let out = check(&rsa, "rsa").await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("OK"));
    assert_eq!(check(&ed, "ed").await.unwrap().status.code(), Some(0));
    for (key, selector, says) in [
        (&ed, "rsa", "MISMATCH"),
        (&rsa, "missing", "no TXT record"),
        (&rsa, "two", "2 TXT records"),
        (&rsa, "gone", "revokes"),
    ] {
        let out = check(key, selector).await.unwrap();
        assert_eq!(out.status.code(), Some(1), "{selector}");
        assert!(
            text(&out.stdout).contains(says),
            "{selector}: {}",
            text(&out.stdout)
        );
    }
    // A DNS server that does not answer: an error, not a verdict.
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[dns]\ntimeout_ms = 200\nattempts = 1\n").unwrap();
    let out = authmilter(&[
        "dns-check",
        rsa.to_str().unwrap(),
        "--domain",
        "example.com",
        "--selector",
        "rsa",
        "--nameserver",
        "127.0.0.1:9",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
}
