//! Base64 (RFC 4648 §4) through `base64ct`, the one base64 of the program: DKIM and ARC `b=`,
//! `bh=` and key `p=` values, and PEM key files.

use base64ct::{Base64, Encoding};

/// Standard base64 with padding (RFC 4648 §4), as PEM and DKIM `p=`/`b=` use.
pub fn base64_encode(data: &[u8]) -> String {
    Base64::encode_string(data)
}

/// Decodes base64, ignoring white space (DNS records and header fields are folded). `None`
/// for any other stray character, bad padding or non-zero fill bits.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let compact = std::str::from_utf8(&compact).ok()?;
    Base64::decode_vec(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors_and_refuses_what_is_not_base64() {
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
        assert_eq!(base64_decode(b"Zm9v\xff"), None, "not ASCII");
    }
}
