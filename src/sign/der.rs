//! Key encodings, through RustCrypto's formats crates: PEM armour (`pem-rfc7468`), the
//! PKCS#8 / PKCS#1 / SubjectPublicKeyInfo structures (`pkcs8`, `pkcs1`, `spki` over `der`); the
//! base64 of key records and signatures is auth's (`auth::base64`).
//!
//! ring parses the keys themselves; this module only looks far enough into them to give good
//! errors (a 1024-bit RSA key is "too short", not "invalid encoding") and writes the structures
//! key files and DNS records use. Malformed input fails with an error or `None`, never a panic.

use pkcs1::{RsaPrivateKey, RsaPublicKey};
use pkcs8::der::asn1::{BitStringRef, OctetStringRef};
use pkcs8::der::{Decode, Encode};
use pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use pkcs8::{ObjectIdentifier, PrivateKeyInfo};

/// DKIM's and PEM's base64 lives with the verification core; key code reaches it here too.
pub use crate::auth::base64::{base64_decode, base64_encode};

/// The Ed25519 algorithm (RFC 8410 §3).
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// One PEM block: its label (`PRIVATE KEY`, `RSA PRIVATE KEY`, ...) and decoded contents.
#[derive(Debug, PartialEq, Eq)]
pub struct Pem {
    pub label: String,
    pub der: Vec<u8>,
}

/// Why a file is not a usable PEM block.
#[derive(Debug, PartialEq, Eq)]
pub enum PemError {
    /// No `-----BEGIN ...-----` line.
    NoBlock,
    /// A BEGIN line without an END line.
    Unterminated,
    /// Headers such as `Proc-Type: 4,ENCRYPTED` (legacy OpenSSL encryption).
    Headers,
    /// The block does not decode: what `pem-rfc7468` said.
    Invalid(String),
}

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";

/// Reads the first PEM block of `text` (RFC 7468 §2, the strict grammar: base64 lines of 64
/// columns, as OpenSSL writes them). Text before and after the block is ignored, as OpenSSL
/// does, so a file holding a key and its certificate gives the key.
pub fn pem_decode(text: &[u8]) -> Result<Pem, PemError> {
    let block = first_block(text)?;
    match pem_rfc7468::decode_vec(block) {
        Ok((label, der)) => Ok(Pem {
            label: label.to_string(),
            der,
        }),
        Err(pem_rfc7468::Error::HeaderDisallowed) => Err(PemError::Headers),
        Err(e) => Err(PemError::Invalid(e.to_string())),
    }
}

/// Cuts the first block out of `text`: from its BEGIN line through the end of its END line.
/// Only the boundaries are located here; the block itself is parsed by `pem-rfc7468`.
fn first_block(text: &[u8]) -> Result<&[u8], PemError> {
    let line_start = |at: usize| at == 0 || text[at - 1] == b'\n';
    let find = |needle: &[u8], from: usize| {
        text.get(from..)?
            .windows(needle.len())
            .enumerate()
            .map(|(i, w)| (i + from, w))
            .find(|&(i, w)| w == needle && line_start(i))
            .map(|(i, _)| i)
    };
    let begin = find(BEGIN, 0).ok_or(PemError::NoBlock)?;
    let end = find(END, begin + BEGIN.len()).ok_or(PemError::Unterminated)?;
    let stop = text[end..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(text.len(), |n| end + n + 1);
    Ok(&text[begin..stop])
}

/// PEM armour with 64-character lines and LF line ends, as OpenSSL writes it.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der)
        .expect("a fixed ASCII label encodes")
}

/// What the outer structure of a private key says, before ring looks at it.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyShape {
    /// RSA, with the modulus length in bits.
    Rsa {
        bits: usize,
    },
    Ed25519,
    /// A PKCS#8 key of another algorithm, with its OID in dotted form.
    Other {
        oid: String,
    },
}

/// Looks into a PKCS#8 PrivateKeyInfo (RFC 5208, or OneAsymmetricKey of RFC 5958).
pub fn pkcs8_shape(der: &[u8]) -> Option<KeyShape> {
    let info = PrivateKeyInfo::try_from(der).ok()?;
    match info.algorithm.oid {
        OID_ED25519 => Some(KeyShape::Ed25519),
        pkcs1::ALGORITHM_OID => pkcs1_rsa_bits(info.private_key).map(|bits| KeyShape::Rsa { bits }),
        oid => Some(KeyShape::Other {
            oid: oid.to_string(),
        }),
    }
}

/// Modulus length of a PKCS#1 RSAPrivateKey (RFC 8017 A.1.2).
pub fn pkcs1_rsa_bits(der: &[u8]) -> Option<usize> {
    let key = RsaPrivateKey::from_der(der).ok()?;
    Some(bit_length(key.modulus.as_bytes()))
}

/// Modulus length of a PKCS#1 RSAPublicKey (RFC 8017 A.1.1).
pub fn rsa_public_bits(der: &[u8]) -> Option<usize> {
    let key = RsaPublicKey::from_der(der).ok()?;
    Some(bit_length(key.modulus.as_bytes()))
}

/// Bit length of a big-endian unsigned integer (leading zero bytes ignored).
fn bit_length(be: &[u8]) -> usize {
    match be.iter().position(|&b| b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1): the form DKIM
/// records carry in practice (`openssl rsa -pubout`, OpenDKIM, every large provider).
pub fn rsa_spki(rsa_public_key: &[u8]) -> Vec<u8> {
    SubjectPublicKeyInfoRef {
        algorithm: pkcs1::ALGORITHM_ID,
        subject_public_key: BitStringRef::from_bytes(rsa_public_key)
            .expect("a key from ring fits a BIT STRING"),
    }
    .to_der()
    .expect("a SubjectPublicKeyInfo encodes")
}

/// The RSAPublicKey inside a SubjectPublicKeyInfo, or the input itself if it already is one
/// (RFC 6376 §3.6.1 allows both in `p=`).
pub fn rsa_public_key_from_record(p: &[u8]) -> Option<&[u8]> {
    if RsaPublicKey::from_der(p).is_ok() {
        return Some(p);
    }
    let spki = SubjectPublicKeyInfoRef::from_der(p).ok()?;
    if spki.algorithm.oid != pkcs1::ALGORITHM_OID {
        return None;
    }
    spki.subject_public_key.as_bytes()
}

/// Wraps a PKCS#1 RSAPrivateKey as a PKCS#8 PrivateKeyInfo (what `openssl genpkey` writes).
pub fn rsa_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    PrivateKeyInfo::new(pkcs1::ALGORITHM_ID, pkcs1)
        .to_der()
        .expect("a PrivateKeyInfo encodes")
}

/// A PKCS#8 v1 PrivateKeyInfo for an Ed25519 seed (RFC 8410 §7): the form `openssl genpkey`
/// writes and every tool reads (OpenSSL 3.0 cannot read ring's v2 form with the public key).
pub fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    // RFC 8410 §7: the privateKey OCTET STRING holds a CurvePrivateKey, itself an OCTET STRING.
    let curve_private_key = OctetStringRef::new(seed)
        .and_then(|s| s.to_der())
        .expect("32 bytes encode");
    let algorithm = AlgorithmIdentifierRef {
        oid: OID_ED25519,
        parameters: None,
    };
    PrivateKeyInfo::new(algorithm, &curve_private_key)
        .to_der()
        .expect("a PrivateKeyInfo encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks() {
        let pem = pem_encode("PRIVATE KEY", &[1, 2, 3]);
        assert_eq!(
            pem,
            "-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n"
        );
        let back = pem_decode(format!("junk\n{pem}trailing text\n").as_bytes()).unwrap();
        assert_eq!(back.label, "PRIVATE KEY");
        assert_eq!(back.der, [1, 2, 3]);
        // Only the first block is read.
        let two = format!("{pem}{}", pem_encode("CERTIFICATE", &[4]));
        assert_eq!(pem_decode(two.as_bytes()).unwrap().der, [1, 2, 3]);
        assert_eq!(pem_decode(b"hello"), Err(PemError::NoBlock));
        assert_eq!(
            pem_decode(b"-----BEGIN X-----\nAQID\n"),
            Err(PemError::Unterminated)
        );
        assert_eq!(
            pem_decode(b"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nAQID\n-----END X-----\n"),
            Err(PemError::Headers)
        );
        for bad in [
            &b"-----BEGIN X-----\nAQ!D\n-----END X-----\n"[..],
            b"-----BEGIN X-----\nAQID\n-----END Y-----\n",
            b"-----BEGIN X-----\n-----END X-----\n",
        ] {
            assert!(
                matches!(pem_decode(bad), Err(PemError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn spki_round_trip() {
        let fake = RsaPublicKey {
            modulus: pkcs1::UintRef::new(&[0xc0, 0, 0]).unwrap(),
            public_exponent: pkcs1::UintRef::new(&[1, 0, 1]).unwrap(),
        }
        .to_der()
        .unwrap();
        assert_eq!(rsa_public_bits(&fake), Some(24));
        let spki = rsa_spki(&fake);
        // SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING }, as `openssl rsa -pubout`.
        assert!(spki.starts_with(&[0x30, 0x1f, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86]));
        assert_eq!(rsa_public_key_from_record(&spki), Some(&fake[..]));
        assert_eq!(rsa_public_key_from_record(&fake), Some(&fake[..]));
        assert_eq!(rsa_public_key_from_record(&spki[..10]), None);
        assert_eq!(bit_length(&[0, 0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
    }

    #[test]
    fn ed25519_pkcs8_is_what_openssl_writes() {
        // `openssl genpkey -algorithm ed25519 -outform DER` with this seed.
        let der = ed25519_pkcs8(&[7; 32]);
        assert_eq!(
            der[..16],
            [
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20
            ]
        );
        assert_eq!(pkcs8_shape(&der), Some(KeyShape::Ed25519));
    }
}
