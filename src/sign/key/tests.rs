use super::*;
use crate::sign::der::base64_encode;
use std::os::unix::fs::PermissionsExt;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/keys")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).unwrap()
}

fn published(name: &str) -> String {
    std::fs::read_to_string(testdata(name))
        .unwrap()
        .trim()
        .to_string()
}

/// A copy of a test key with the given mode (git does not keep 0600, so tests set it).
fn copy_with_mode(name: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, pem(name)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    (dir, path)
}

#[test]
fn pkcs8_and_pkcs1_rsa_give_the_same_key() {
    let p8 = PrivateKey::from_pem(&pem("rsa2048.pem")).unwrap();
    let p1 = PrivateKey::from_pem(&pem("rsa2048-pkcs1.pem")).unwrap();
    assert_eq!(p8.format(), KeyFormat::Pkcs8);
    assert_eq!(p1.format(), KeyFormat::Pkcs1);
    assert_eq!(p8.algorithm(), KeyAlgorithm::Rsa);
    assert_eq!(p8.bits(), 2048);
    assert_eq!(p8.public_key(), p1.public_key());
    assert_eq!(base64_encode(p8.public_key()), published("rsa2048.pub.b64"));
    assert!(p8.dns_record().starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"));
}

#[test]
fn ed25519_from_openssl_pkcs8_v1() {
    let k = PrivateKey::from_pem(&pem("ed25519.pem")).unwrap();
    assert_eq!(k.algorithm(), KeyAlgorithm::Ed25519);
    assert_eq!(k.public_key().len(), 32);
    assert_eq!(
        k.dns_record(),
        format!("v=DKIM1; k=ed25519; p={}", published("ed25519.pub.b64"))
    );
}

#[test]
fn short_rsa_keys_are_refused_with_their_size() {
    // RFC 8301 §3.2: under 1024 bits is never acceptable.
    let e = PrivateKey::from_pem(&pem("rsa512.pem")).unwrap_err();
    assert!(matches!(e.kind, KeyErrorKind::RsaTooShort(512)), "{e}");
    // 1024..2047 is legal DKIM but ring will not sign with it: the error says what to do.
    let e = PrivateKey::from_pem(&pem("rsa1024.pem")).unwrap_err();
    assert!(
        matches!(e.kind, KeyErrorKind::RsaUnsupportedSize(1024)),
        "{e}"
    );
    assert!(e.to_string().contains("authmilter keygen"), "{e}");
}

#[test]
fn other_files_are_refused_with_a_reason() {
    let e = PrivateKey::from_pem(&pem("p256.pem")).unwrap_err();
    assert!(
        matches!(e.kind, KeyErrorKind::UnsupportedAlgorithm(_)),
        "{e}"
    );
    let e = PrivateKey::from_pem(&pem("ed25519-encrypted.pem")).unwrap_err();
    assert!(matches!(e.kind, KeyErrorKind::Encrypted), "{e}");
    let e = PrivateKey::from_pem(&pem("rsa2048.pub.b64")).unwrap_err();
    assert!(matches!(e.kind, KeyErrorKind::NotPem), "{e}");
    let e = PrivateKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nAQID\n-----END PUBLIC KEY-----\n")
        .unwrap_err();
    assert!(matches!(e.kind, KeyErrorKind::PublicKey(_)), "{e}");
    let e = PrivateKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n")
        .unwrap_err();
    assert!(matches!(e.kind, KeyErrorKind::Invalid(_)), "{e}");
    // A truncated RSA key: the outer structure reads, ring refuses the rest.
    let mut der = crate::sign::der::pem_decode(&pem("rsa2048-pkcs1.pem"))
        .unwrap()
        .der;
    der.truncate(600);
    assert!(PrivateKey::from_pkcs1_der(&der).is_err());
}

#[test]
fn key_files_others_can_read_are_refused() {
    for mode in [0o644, 0o640, 0o604, 0o620] {
        let (_dir, path) = copy_with_mode("ed25519.pem", mode);
        let e = PrivateKey::load(&path).unwrap_err();
        assert!(matches!(e.kind, KeyErrorKind::Permissions { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("chmod 600"), "{text}");
    }
    for mode in [0o600, 0o400] {
        let (_dir, path) = copy_with_mode("rsa2048-pkcs1.pem", mode);
        assert_eq!(PrivateKey::load(&path).unwrap().bits(), 2048);
    }
    let e = PrivateKey::load(Path::new("/nonexistent/key.pem")).unwrap_err();
    assert!(matches!(e.kind, KeyErrorKind::Read(_)), "{e}");
}

#[test]
fn signatures_verify_with_the_public_key() {
    use ring::signature::{UnparsedPublicKey, ED25519, RSA_PKCS1_2048_8192_SHA256};
    let data = b"dkim-signature:v=1; a=rsa-sha256";
    let rsa = PrivateKey::from_pem(&pem("rsa2048.pem")).unwrap();
    let sig = rsa.sign_bytes(data).unwrap();
    let pkcs1 = crate::sign::der::rsa_public_key_from_record(rsa.public_key()).unwrap();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pkcs1)
        .verify(data, &sig)
        .unwrap();
    // RFC 8463 §3: Ed25519 signs the SHA-256 digest, not the data.
    let ed = PrivateKey::from_pem(&pem("ed25519.pem")).unwrap();
    let sig = ed.sign_bytes(data).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    UnparsedPublicKey::new(&ED25519, ed.public_key())
        .verify(digest.as_ref(), &sig)
        .unwrap();
}

#[test]
fn debug_output_has_no_key_material() {
    let k = PrivateKey::from_pem(&pem("ed25519.pem")).unwrap();
    let text = format!("{k:?}");
    assert!(
        text.contains("Ed25519") && !text.contains("public"),
        "{text}"
    );
}
