//! The little encoding work key handling needs: base64, PEM armour, and just enough DER to
//! find a key's algorithm and size and to build the structures DNS records and key files use.
//!
//! ring parses the keys themselves; this module only looks far enough into them to give good
//! errors (a 1024-bit RSA key is "too short for ring", not "invalid encoding") and to write
//! the SubjectPublicKeyInfo that `p=` carries. Lengths are bounded by the input, so malformed
//! input fails with `None`, never a panic.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// DER encoding of the rsaEncryption OID (1.2.840.113549.1.1.1), tag and length included.
pub(crate) const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// DER encoding of the Ed25519 OID (1.3.101.112, RFC 8410).
pub(crate) const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const NULL: &[u8] = &[0x05, 0x00];

/// Standard base64 with padding (RFC 4648 §4), as PEM and DKIM `p=`/`b=` use.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= n {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64, ignoring white space (DNS records and PEM bodies are folded). `None` for
/// any other stray character or bad padding.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits, mut padding) = (0u32, 0u32, 0usize);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            c if c.is_ascii_whitespace() => continue,
            _ => return None,
        };
        // Data after padding is not base64.
        if padding > 0 {
            return None;
        }
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover bits must be the zero fill of the last group, and padding must complete it.
    let leftover_ok = bits < 6 && acc & ((1 << bits) - 1) == 0;
    let padding_ok = padding == 0 || (padding == bits as usize / 2);
    (leftover_ok && padding_ok && padding <= 2).then_some(out)
}

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
    /// A BEGIN line without its END line.
    Unterminated(String),
    /// The base64 between the lines does not decode.
    BadBase64(String),
    /// Headers such as `Proc-Type: 4,ENCRYPTED` (legacy OpenSSL encryption).
    Headers(String),
}

/// Reads the first PEM block of `text` (RFC 7468). Text before it is ignored, as OpenSSL does.
pub fn pem_decode(text: &[u8]) -> Result<Pem, PemError> {
    let text = String::from_utf8_lossy(text);
    let mut lines = text.lines().map(str::trim);
    let label = lines
        .find_map(|l| l.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .ok_or(PemError::NoBlock)?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    for line in lines.by_ref() {
        if line == end {
            if body.is_empty() {
                return Err(PemError::BadBase64(label));
            }
            return match base64_decode(body.as_bytes()) {
                Some(der) => Ok(Pem { label, der }),
                None => Err(PemError::BadBase64(label)),
            };
        }
        if line.contains(':') {
            return Err(PemError::Headers(label));
        }
        body.push_str(line);
    }
    Err(PemError::Unterminated(label))
}

/// PEM armour with 64-character lines, as OpenSSL writes it.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads one TLV with the expected tag from the front of `input`; returns its contents and
/// what follows. Definite lengths only (DER).
fn take(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Reads any TLV (for skipping optional fields): `(tag, whole encoding, rest)`.
fn take_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let (_, rest) = take(input, tag)?;
    Some((tag, &input[..input.len() - rest.len()], rest))
}

/// Bit length of a DER INTEGER's contents (leading zero bytes ignored).
fn bit_length(integer: &[u8]) -> usize {
    match integer.iter().position(|&b| b != 0) {
        Some(i) => (integer.len() - i - 1) * 8 + (8 - integer[i].leading_zeros() as usize),
        None => 0,
    }
}

/// What the outer structure of a private key says, before ring looks at it.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyShape {
    /// RSA, with the modulus length in bits.
    Rsa {
        bits: usize,
    },
    Ed25519,
    /// A PKCS#8 key of another algorithm: the AlgorithmIdentifier's OID, hex.
    Other {
        oid: String,
    },
}

/// Looks into a PKCS#8 PrivateKeyInfo (RFC 5208, or OneAsymmetricKey of RFC 5958).
pub fn pkcs8_shape(der: &[u8]) -> Option<KeyShape> {
    let (info, _) = take(der, SEQUENCE)?;
    let (_version, rest) = take(info, INTEGER)?;
    let (alg, rest) = take(rest, SEQUENCE)?;
    let (_, oid, _) = take_any(alg)?;
    if oid == OID_ED25519 {
        return Some(KeyShape::Ed25519);
    }
    if oid != OID_RSA {
        let hex = oid.iter().skip(2).map(|b| format!("{b:02x}")).collect();
        return Some(KeyShape::Other { oid: hex });
    }
    let (pkcs1, _) = take(rest, OCTET_STRING)?;
    pkcs1_rsa_bits(pkcs1).map(|bits| KeyShape::Rsa { bits })
}

/// Modulus length of a PKCS#1 RSAPrivateKey (RFC 8017 A.1.2).
pub fn pkcs1_rsa_bits(der: &[u8]) -> Option<usize> {
    let (key, _) = take(der, SEQUENCE)?;
    let (_version, rest) = take(key, INTEGER)?;
    let (modulus, _) = take(rest, INTEGER)?;
    Some(bit_length(modulus))
}

/// Modulus length of a PKCS#1 RSAPublicKey.
pub fn rsa_public_bits(der: &[u8]) -> Option<usize> {
    let (key, _) = take(der, SEQUENCE)?;
    let (modulus, _) = take(key, INTEGER)?;
    Some(bit_length(modulus))
}

fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(contents);
    out
}

fn rsa_algorithm_identifier() -> Vec<u8> {
    tlv(SEQUENCE, &[OID_RSA, NULL].concat())
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1): the form DKIM
/// records carry in practice (`openssl rsa -pubout`, OpenDKIM, every large provider).
pub fn rsa_spki(rsa_public_key: &[u8]) -> Vec<u8> {
    let bits = tlv(BIT_STRING, &[&[0u8][..], rsa_public_key].concat());
    tlv(SEQUENCE, &[rsa_algorithm_identifier(), bits].concat())
}

/// The RSAPublicKey inside a SubjectPublicKeyInfo, or the input itself if it already is one
/// (RFC 6376 §3.6.1 allows both in `p=`).
pub fn rsa_public_key_from_record(p: &[u8]) -> Option<&[u8]> {
    if rsa_public_bits(p).is_some() {
        return Some(p);
    }
    let (spki, _) = take(p, SEQUENCE)?;
    let (alg, rest) = take(spki, SEQUENCE)?;
    if !alg.starts_with(OID_RSA) {
        return None;
    }
    let (bits, _) = take(rest, BIT_STRING)?;
    let (&unused, key) = bits.split_first()?;
    (unused == 0).then_some(key)
}

/// Wraps a PKCS#1 RSAPrivateKey as a PKCS#8 PrivateKeyInfo (what `openssl genpkey` writes).
pub fn rsa_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let version = tlv(INTEGER, &[0]);
    let key = tlv(OCTET_STRING, pkcs1);
    tlv(
        SEQUENCE,
        &[version, rsa_algorithm_identifier(), key].concat(),
    )
}

/// A PKCS#8 v1 PrivateKeyInfo for an Ed25519 seed (RFC 8410 §7): the form `openssl genpkey`
/// writes and every tool reads (OpenSSL 3.0 cannot read ring's v2 form with the public key).
pub fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let version = tlv(INTEGER, &[0]);
    let alg = tlv(SEQUENCE, OID_ED25519);
    let key = tlv(OCTET_STRING, &tlv(OCTET_STRING, seed));
    tlv(SEQUENCE, &[version, alg, key].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_rfc4648_vectors() {
        // RFC 4648 §10.
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64_decode(b"Zm9v\r\n YmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode(b"Zm9v!"), None);
        assert_eq!(base64_decode(b"Zg==Zg=="), None);
        assert_eq!(base64_decode(b"Zh=="), None, "non-zero fill bits");
        assert_eq!(base64_decode(b"Zg="), None, "short padding");
    }

    #[test]
    fn pem_blocks() {
        let pem = pem_encode("PRIVATE KEY", &[1, 2, 3]);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\nAQID\n"));
        let back = pem_decode(format!("junk\n{pem}").as_bytes()).unwrap();
        assert_eq!(back.label, "PRIVATE KEY");
        assert_eq!(back.der, [1, 2, 3]);
        assert_eq!(pem_decode(b"hello"), Err(PemError::NoBlock));
        assert!(matches!(
            pem_decode(b"-----BEGIN X-----\nAQID\n"),
            Err(PemError::Unterminated(_))
        ));
        assert!(matches!(
            pem_decode(b"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nAQID\n-----END X-----\n"),
            Err(PemError::Headers(_))
        ));
    }

    #[test]
    fn long_lengths_encode_and_decode() {
        let big = vec![7u8; 300];
        let enc = tlv(OCTET_STRING, &big);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (contents, rest) = take(&enc, OCTET_STRING).unwrap();
        assert_eq!(contents.len(), 300);
        assert!(rest.is_empty());
        assert_eq!(take(&enc[..100], OCTET_STRING), None);
    }

    #[test]
    fn spki_round_trip() {
        let fake = tlv(
            SEQUENCE,
            &[tlv(INTEGER, &[0x00, 0xc0, 0, 0]), tlv(INTEGER, &[1, 0, 1])].concat(),
        );
        assert_eq!(rsa_public_bits(&fake), Some(24));
        let spki = rsa_spki(&fake);
        assert_eq!(rsa_public_key_from_record(&spki), Some(&fake[..]));
        assert_eq!(rsa_public_key_from_record(&fake), Some(&fake[..]));
        assert_eq!(bit_length(&[0, 0, 1]), 1);
    }
}
