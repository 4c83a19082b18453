//! Key files as operators make them: each test runs `openssl` (Debian's `openssl`, installed
//! by `.ci/run`) to write a real file, then loads it the way `serve` does. Good keys load with
//! the right algorithm, size and `p=`; every refusal names what is wrong with the file.
//!
//! Without `openssl` the tests print "skipped: ..." and pass, unless
//! `AUTHMILTER_REQUIRE_PEERS=1` (CI).

use crate::postfix::require;
use authmilter::sign::der::base64_encode;
use authmilter::sign::{KeyAlgorithm, KeyErrorKind, KeyFormat, PrivateKey};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `openssl ARGS` in `dir` and returns the path of `out` there, with mode 0600.
fn openssl(openssl: &Path, dir: &Path, out: &str, args: &[&str]) -> PathBuf {
    let output = Command::new(openssl)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join(out);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The `p=` openssl derives from a private key file: base64 of the SubjectPublicKeyInfo for
/// RSA (RFC 6376 §3.6.1), of the raw 32-byte key for Ed25519 (RFC 8463 §4).
fn openssl_p(openssl: &Path, key: &Path, algorithm: KeyAlgorithm) -> String {
    let output = Command::new(openssl)
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(key)
        .output()
        .unwrap();
    assert!(output.status.success());
    let spki = output.stdout;
    match algorithm {
        KeyAlgorithm::Rsa => base64_encode(&spki),
        KeyAlgorithm::Ed25519 => base64_encode(&spki[spki.len() - 32..]),
    }
}

fn refusal(path: &Path) -> (KeyErrorKind, String) {
    let e = PrivateKey::load(path).unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    (e.kind, text)
}

#[test]
fn openssl_keys_load_with_the_public_key_openssl_derives() {
    let Some(bin) = require("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // OpenSSL 3's genrsa writes PKCS#8; -traditional the PKCS#1 form older versions wrote.
    let cases = [
        (
            openssl(&bin, d, "rsa.pem", &["genrsa", "-out", "rsa.pem", "2048"]),
            KeyAlgorithm::Rsa,
            KeyFormat::Pkcs8,
            2048,
        ),
        (
            openssl(
                &bin,
                d,
                "rsa1.pem",
                &["genrsa", "-traditional", "-out", "rsa1.pem", "3072"],
            ),
            KeyAlgorithm::Rsa,
            KeyFormat::Pkcs1,
            3072,
        ),
        (
            openssl(
                &bin,
                d,
                "ed.pem",
                &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"],
            ),
            KeyAlgorithm::Ed25519,
            KeyFormat::Pkcs8,
            256,
        ),
    ];
    for (path, algorithm, format, bits) in cases {
        let key = PrivateKey::load(&path).unwrap();
        assert_eq!(
            (key.algorithm(), key.format(), key.bits()),
            (algorithm, format, bits)
        );
        let p = openssl_p(&bin, &path, algorithm);
        assert_eq!(base64_encode(key.public_key()), p, "{}", path.display());
        assert!(key.dns_record().ends_with(&format!("; p={p}")));
    }
}

#[test]
fn openssl_files_that_are_not_usable_keys_are_named() {
    let Some(bin) = require("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // RFC 8301 §3.2: under 1024 bits is never acceptable; 1024 is legal but ring refuses it.
    let short = openssl(
        &bin,
        d,
        "short.pem",
        &["genrsa", "-out", "short.pem", "1024"],
    );
    let (kind, text) = refusal(&short);
    assert!(
        matches!(kind, KeyErrorKind::RsaUnsupportedSize(1024)),
        "{text}"
    );
    assert!(text.contains("1024 bits"), "{text}");
    let tiny = openssl(&bin, d, "tiny.pem", &["genrsa", "-out", "tiny.pem", "512"]);
    let (kind, text) = refusal(&tiny);
    assert!(matches!(kind, KeyErrorKind::RsaTooShort(512)), "{text}");
    assert!(text.contains("at least 1024"), "{text}");

    // An encrypted PKCS#8 key, and OpenSSL's legacy encrypted PKCS#1 (Proc-Type header).
    let plain = openssl(
        &bin,
        d,
        "ed.pem",
        &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"],
    );
    let encrypted = openssl(
        &bin,
        d,
        "enc.pem",
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "ed.pem",
            "-out",
            "enc.pem",
            "-passout",
            "pass:secret",
        ],
    );
    let legacy = openssl(
        &bin,
        d,
        "legacy.pem",
        &[
            "genrsa",
            "-traditional",
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            "legacy.pem",
            "2048",
        ],
    );
    for path in [&encrypted, &legacy] {
        let (kind, text) = refusal(path);
        assert!(matches!(kind, KeyErrorKind::Encrypted), "{text}");
        assert!(text.contains("encrypted"), "{text}");
    }

    // A certificate, and the public key, in place of the private key.
    let cert = openssl(
        &bin,
        d,
        "cert.pem",
        &[
            "req",
            "-x509",
            "-key",
            "ed.pem",
            "-subj",
            "/CN=mx.example.com",
            "-days",
            "1",
            "-out",
            "cert.pem",
        ],
    );
    let (kind, text) = refusal(&cert);
    assert!(matches!(kind, KeyErrorKind::Certificate(_)), "{text}");
    assert!(text.contains("certificate (`CERTIFICATE`)"), "{text}");
    let public = openssl(
        &bin,
        d,
        "pub.pem",
        &["pkey", "-in", "ed.pem", "-pubout", "-out", "pub.pem"],
    );
    let (kind, text) = refusal(&public);
    assert!(matches!(kind, KeyErrorKind::PublicKey(_)), "{text}");

    // Another PEM label is named; another algorithm is named by its OID.
    let params = openssl(
        &bin,
        d,
        "dh.pem",
        &[
            "genpkey",
            "-genparam",
            "-algorithm",
            "DH",
            "-pkeyopt",
            "dh_rfc5114:2",
            "-out",
            "dh.pem",
        ],
    );
    let (kind, text) = refusal(&params);
    assert!(matches!(kind, KeyErrorKind::UnsupportedPem(_)), "{text}");
    assert!(text.contains("`DH PARAMETERS`"), "{text}");
    let p256 = openssl(
        &bin,
        d,
        "p256.pem",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "p256.pem",
        ],
    );
    let (kind, text) = refusal(&p256);
    assert!(
        matches!(kind, KeyErrorKind::UnsupportedAlgorithm(_)),
        "{text}"
    );
    assert!(text.contains("1.2.840.10045.2.1"), "{text}");

    // The good key itself still loads after all that.
    assert_eq!(PrivateKey::load(&plain).unwrap().bits(), 256);
}

#[test]
fn truncated_and_garbage_pem_is_refused_with_a_reason() {
    let Some(bin) = require("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let good = openssl(
        &bin,
        dir.path(),
        "rsa.pem",
        &["genrsa", "-out", "rsa.pem", "2048"],
    );
    let text = std::fs::read_to_string(&good).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };

    // Cut in the middle: no END line.
    let cut = write("cut.pem", &text[..text.len() / 2]);
    let (kind, msg) = refusal(&cut);
    assert!(matches!(kind, KeyErrorKind::Unterminated), "{msg}");
    // Lines lost from the middle: the base64 still decodes, the DER inside does not.
    let mut short = lines.clone();
    short.drain(5..10);
    let short = write("short.pem", &(short.join("\n") + "\n"));
    let (kind, msg) = refusal(&short);
    assert!(
        matches!(kind, KeyErrorKind::BadPem(_) | KeyErrorKind::Invalid(_)),
        "{msg}"
    );
    // A character that is not base64.
    let mut bad = lines.clone();
    let spoiled = format!("{}!", &bad[3][..63]);
    bad[3] = &spoiled;
    let bad = write("bad.pem", &(bad.join("\n") + "\n"));
    let (kind, msg) = refusal(&bad);
    assert!(matches!(kind, KeyErrorKind::BadPem(_)), "{msg}");
    // END naming another label.
    let swapped = text.replace("END PRIVATE KEY", "END RSA PRIVATE KEY");
    let (kind, msg) = refusal(&write("swapped.pem", &swapped));
    assert!(matches!(kind, KeyErrorKind::BadPem(_)), "{msg}");
    // Not PEM at all: random bytes, an empty file, DER.
    for (name, body) in [("random", vec![0x9f, 0, 0xff, 7, 1]), ("empty", vec![])] {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (kind, msg) = refusal(&path);
        assert!(matches!(kind, KeyErrorKind::NotPem), "{msg}");
    }
}
