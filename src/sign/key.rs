//! DKIM private keys: PEM files (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) holding an
//! RSA or Ed25519 key, the algorithm taken from the key itself, signing through ring.
//!
//! Loading refuses what would be unsafe or useless at signing time, so the daemon fails at
//! start rather than on the first message: a file other users can read, a key that does not
//! parse, RSA keys shorter than RFC 8301 §3.2 allows (1024 bits) or outside what ring signs
//! with (2048–4096 bits).

use super::der::{self, KeyShape, PemError};
use mail_auth::common::crypto::{Algorithm, Sha256, SigningKey};
use mail_auth::common::headers::Writable;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use std::fmt;
use std::path::{Path, PathBuf};

/// RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits.
pub const RSA_MIN_BITS: usize = 1024;
/// RFC 8301 §3.2: signers SHOULD use at least 2048 bits; ring signs with nothing shorter.
pub const RSA_RING_MIN_BITS: usize = 2048;
/// The largest RSA key ring signs with (and the largest DNS TXT record people publish).
pub const RSA_MAX_BITS: usize = 4096;

/// The signing algorithm, fixed by the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// `rsa-sha256` (RFC 6376).
    Rsa,
    /// `ed25519-sha256` (RFC 8463).
    Ed25519,
}

impl KeyAlgorithm {
    /// The `k=` tag value of the DNS record.
    pub fn record_k(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "rsa",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    /// The `a=` tag value of signatures made with it.
    pub fn signature_a(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "rsa-sha256",
            KeyAlgorithm::Ed25519 => "ed25519-sha256",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.record_k())
    }
}

/// How the key was encoded in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `-----BEGIN PRIVATE KEY-----` (RFC 5208/5958).
    Pkcs8,
    /// `-----BEGIN RSA PRIVATE KEY-----` (RFC 8017).
    Pkcs1,
}

/// A key file the program refuses, and why. Always a configuration problem.
#[derive(Debug, thiserror::Error)]
pub struct KeyError {
    /// Where the key was configured (`file:line` or the `--sign` flag), when known.
    pub origin: Option<String>,
    /// The key file, when the key came from one.
    pub path: Option<PathBuf>,
    pub kind: KeyErrorKind,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        write!(f, "{}", self.kind)
    }
}

/// The reasons a key is refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyErrorKind {
    #[error("cannot read the key file: {0}")]
    Read(#[source] std::io::Error),
    #[error(
        "the key file has mode {mode:04o}, so group or others can read or change it; \
         run `chmod 600` on it (and make it owned by the user authmilter runs as)"
    )]
    Permissions { mode: u32 },
    #[error("not a PEM file (no -----BEGIN ...----- line)")]
    NotPem,
    #[error("the PEM block has no -----END ...----- line (is the file truncated?)")]
    Unterminated,
    #[error("the PEM block does not decode: {0}")]
    BadPem(String),
    #[error(
        "the key is encrypted; DKIM keys are read unattended, so store it decrypted \
         (`openssl pkey -in KEY -out PLAIN`) with mode 0600"
    )]
    Encrypted,
    #[error(
        "the file holds a certificate (`{0}`), not a private key; configure the private key \
         the certificate was made for"
    )]
    Certificate(String),
    #[error(
        "the file holds a public key (`{0}`), not a private key; the private key is the file \
         the public key was made from"
    )]
    PublicKey(String),
    #[error(
        "`{0}` is not a supported private key; use PKCS#8 (`PRIVATE KEY`) or PKCS#1 \
         (`RSA PRIVATE KEY`) PEM"
    )]
    UnsupportedPem(String),
    #[error("the key's algorithm (OID {0}) is not RSA or Ed25519")]
    UnsupportedAlgorithm(String),
    #[error("the RSA key has {0} bits; RFC 8301 requires at least 1024 and recommends 2048")]
    RsaTooShort(usize),
    #[error(
        "the RSA key has {0} bits; the signing library (ring) signs only with 2048 to 4096-bit \
         keys: generate a new one with `authmilter keygen --algorithm rsa --bits 2048` and \
         publish it under a new selector"
    )]
    RsaUnsupportedSize(usize),
    #[error("the key does not parse: {0}")]
    Invalid(String),
}

impl KeyError {
    pub(crate) fn new(kind: KeyErrorKind) -> Self {
        KeyError {
            origin: None,
            path: None,
            kind,
        }
    }

    pub(crate) fn at(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }
}

enum Inner {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A loaded private key, ready to sign. `Send + Sync`: one copy serves every session.
pub struct PrivateKey {
    inner: Inner,
    /// RSA modulus length; 256 for Ed25519.
    bits: usize,
    format: KeyFormat,
    /// The `p=` bytes: a SubjectPublicKeyInfo for RSA, the raw 32-byte key for Ed25519.
    public: Vec<u8>,
    rng: SystemRandom,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm())
            .field("bits", &self.bits)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Reads a key file, refusing one that group or others may access.
    pub fn load(path: &Path) -> Result<PrivateKey, KeyError> {
        check_permissions(path).map_err(|e| e.at(path))?;
        let pem = std::fs::read(path).map_err(|e| KeyError::new(KeyErrorKind::Read(e)).at(path))?;
        PrivateKey::from_pem(&pem).map_err(|e| e.at(path))
    }

    /// Parses a PEM private key (PKCS#8 or PKCS#1).
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, KeyError> {
        let block = der::pem_decode(pem).map_err(|e| {
            KeyError::new(match e {
                PemError::NoBlock => KeyErrorKind::NotPem,
                PemError::Unterminated => KeyErrorKind::Unterminated,
                // RFC 1421 headers in a key file are OpenSSL's legacy encryption.
                PemError::Headers => KeyErrorKind::Encrypted,
                PemError::Invalid(reason) => KeyErrorKind::BadPem(reason),
            })
        })?;
        let label = block.label;
        match label.as_str() {
            "PRIVATE KEY" => PrivateKey::from_pkcs8_der(&block.der),
            "RSA PRIVATE KEY" => PrivateKey::from_pkcs1_der(&block.der),
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::new(KeyErrorKind::Encrypted)),
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                Err(KeyError::new(KeyErrorKind::Certificate(label)))
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(KeyError::new(KeyErrorKind::PublicKey(label))),
            _ => Err(KeyError::new(KeyErrorKind::UnsupportedPem(label))),
        }
    }

    /// Parses a PKCS#8 DER key; the algorithm comes from its AlgorithmIdentifier.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, KeyError> {
        let shape = der::pkcs8_shape(der)
            .ok_or_else(|| invalid("not a PKCS#8 PrivateKeyInfo structure"))?;
        match shape {
            KeyShape::Rsa { bits } => {
                check_rsa_bits(bits)?;
                let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| invalid(&e.to_string()))?;
                Ok(PrivateKey::rsa(pair, KeyFormat::Pkcs8))
            }
            KeyShape::Ed25519 => {
                // "maybe_unchecked" accepts the v1 form OpenSSL writes (no public key inside);
                // ring still checks a public key when one is present.
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| invalid(&e.to_string()))?;
                let public = pair.public_key().as_ref().to_vec();
                Ok(PrivateKey {
                    inner: Inner::Ed25519(pair),
                    bits: 256,
                    format: KeyFormat::Pkcs8,
                    public,
                    rng: SystemRandom::new(),
                })
            }
            KeyShape::Other { oid } => Err(KeyError::new(KeyErrorKind::UnsupportedAlgorithm(oid))),
        }
    }

    /// Parses a PKCS#1 RSAPrivateKey in DER.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<PrivateKey, KeyError> {
        let bits = der::pkcs1_rsa_bits(der).ok_or_else(|| invalid("not a PKCS#1 RSAPrivateKey"))?;
        check_rsa_bits(bits)?;
        let pair = RsaKeyPair::from_der(der).map_err(|e| invalid(&e.to_string()))?;
        Ok(PrivateKey::rsa(pair, KeyFormat::Pkcs1))
    }

    fn rsa(pair: RsaKeyPair, format: KeyFormat) -> PrivateKey {
        let pkcs1 = pair.public_key().as_ref();
        let bits = der::rsa_public_bits(pkcs1).unwrap_or(pair.public().modulus_len() * 8);
        let public = der::rsa_spki(pkcs1);
        PrivateKey {
            inner: Inner::Rsa(pair),
            bits,
            format,
            public,
            rng: SystemRandom::new(),
        }
    }

    /// RSA or Ed25519, as the key file said.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            Inner::Rsa(_) => KeyAlgorithm::Rsa,
            Inner::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// RSA modulus length in bits; 256 for Ed25519.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// PKCS#8 or PKCS#1, as the key file was written.
    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// The public key as the DNS record's `p=` carries it (before base64).
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The DNS TXT record text: `v=DKIM1; k=rsa; p=...` (RFC 6376 §3.6.1, RFC 8463 §4).
    pub fn dns_record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm().record_k(),
            der::base64_encode(&self.public)
        )
    }

    /// Signs `data` as the DKIM algorithm of this key requires: RSASSA-PKCS1-v1_5 over
    /// SHA-256 of the data, or Ed25519 over the SHA-256 digest of the data (RFC 8463 §3).
    pub fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        match &self.inner {
            Inner::Rsa(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &self.rng, data, &mut sig)?;
                Ok(sig)
            }
            Inner::Ed25519(pair) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, data);
                Ok(pair.sign(digest.as_ref()).as_ref().to_vec())
            }
        }
    }
}

fn invalid(reason: &str) -> KeyError {
    KeyError::new(KeyErrorKind::Invalid(reason.to_string()))
}

fn check_rsa_bits(bits: usize) -> Result<(), KeyError> {
    if bits < RSA_MIN_BITS {
        return Err(KeyError::new(KeyErrorKind::RsaTooShort(bits)));
    }
    if !(RSA_RING_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(KeyError::new(KeyErrorKind::RsaUnsupportedSize(bits)));
    }
    Ok(())
}

/// A private key readable by anyone but its owner is as good as published.
fn check_permissions(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| KeyError::new(KeyErrorKind::Read(e)))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::new(KeyErrorKind::Permissions { mode }));
    }
    Ok(())
}

/// A borrowed key for mail-auth's signer, which takes its key by value; one loaded key then
/// signs every message without being copied.
pub(crate) struct KeyRef<'k>(pub &'k PrivateKey);

impl SigningKey for KeyRef<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        let mut data = Vec::with_capacity(512);
        input.write(&mut data);
        self.0.sign_bytes(&data).map_err(|_| {
            mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(
                "signing failed".into(),
            ))
        })
    }

    fn algorithm(&self) -> Algorithm {
        match self.0.algorithm() {
            KeyAlgorithm::Rsa => Algorithm::RsaSha256,
            KeyAlgorithm::Ed25519 => Algorithm::Ed25519Sha256,
        }
    }
}

/// A key with the name it signs under (`d=domain; s=selector`).
#[derive(Debug)]
pub struct DomainKey {
    /// Lower case, no trailing dot; also the From domain it signs for.
    pub domain: String,
    pub selector: String,
    /// A fixed `i=` for this key.
    pub identity: Option<String>,
    pub key: PrivateKey,
}

#[cfg(test)]
mod tests;
