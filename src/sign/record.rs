//! The DNS side of a key: the TXT record that publishes it (RFC 6376 §3.6.1, RFC 8463 §4),
//! written as a zone-file line, and read back from DNS to check it matches.

use super::der;
use super::key::{KeyAlgorithm, PrivateKey};

/// A DNS character-string holds at most 255 bytes (RFC 1035 §3.3); longer TXT data is split
/// into several strings of one record, which verifiers join without a separator.
pub const MAX_CHARACTER_STRING: usize = 255;

/// `selector._domainkey.domain.`: where the key is published (RFC 6376 §3.6.2.1).
pub fn record_name(domain: &str, selector: &str) -> String {
    format!("{selector}._domainkey.{}.", domain.trim_end_matches('.'))
}

/// The record text cut into character-strings of at most 255 bytes.
pub fn character_strings(record: &str) -> Vec<&str> {
    // Records are ASCII (tags and base64), so byte boundaries are character boundaries; the
    // fallback keeps any UTF-8 intact by cutting earlier.
    let mut out = Vec::new();
    let mut rest = record;
    while rest.len() > MAX_CHARACTER_STRING {
        let mut cut = MAX_CHARACTER_STRING;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

/// The zone-file line publishing `record`:
/// `sel._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; p=..." "..." )`.
pub fn zone_line(domain: &str, selector: &str, record: &str) -> String {
    let strings: Vec<String> = character_strings(record)
        .into_iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!(
        "{} IN TXT ( {} )",
        record_name(domain, selector),
        strings.join(" ")
    )
}

/// The zone-file line for a key.
pub fn key_zone_line(domain: &str, selector: &str, key: &PrivateKey) -> String {
    zone_line(domain, selector, &key.dns_record())
}

/// How a published record compares with a private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordMatch {
    /// The record publishes this key's public half.
    Matches,
    /// `p=` is empty: the key was revoked (RFC 6376 §3.6.1).
    Revoked,
    /// A DKIM record for another key or algorithm, or not a usable DKIM record: why.
    Differs(String),
}

/// Compares the text of one TXT record (character-strings joined) with `key`.
pub fn compare(record: &str, key: &PrivateKey) -> RecordMatch {
    let mut k = "rsa".to_string();
    let mut p = None;
    for (i, tag) in record.split(';').enumerate() {
        let Some((name, value)) = tag.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        match name {
            // RFC 6376 §3.6.1: v=, if present, must be first and DKIM1.
            "v" if i != 0 || value != "DKIM1" => {
                return RecordMatch::Differs(format!("bad version tag v={value}"))
            }
            "k" => k = value.to_ascii_lowercase(),
            "p" => p = Some(value.to_string()),
            _ => {}
        }
    }
    let Some(p) = p else {
        return RecordMatch::Differs("no p= tag".into());
    };
    if p.chars().all(char::is_whitespace) {
        return RecordMatch::Revoked;
    }
    let ours = key.algorithm().record_k();
    if k != ours {
        return RecordMatch::Differs(format!("the record has k={k}, the key is {ours}"));
    }
    let Some(published) = der::base64_decode(p.as_bytes()) else {
        return RecordMatch::Differs("p= is not base64".into());
    };
    let same = match key.algorithm() {
        KeyAlgorithm::Ed25519 => published == key.public_key(),
        // Either encoding may be published; compare the RSAPublicKey inside.
        KeyAlgorithm::Rsa => {
            der::rsa_public_key_from_record(&published)
                == der::rsa_public_key_from_record(key.public_key())
        }
    };
    if same {
        RecordMatch::Matches
    } else {
        RecordMatch::Differs("p= is another key".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> PrivateKey {
        let path = format!("{}/testdata/keys/{name}", env!("CARGO_MANIFEST_DIR"));
        PrivateKey::from_pem(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn zone_line_splits_strings_at_255_bytes() {
        let rsa = key("rsa2048.pem");
        let line = key_zone_line("Example.com.", "sel", &rsa);
        assert!(
            line.starts_with("sel._domainkey.Example.com. IN TXT ( \"v=DKIM1; k=rsa; p="),
            "{line}"
        );
        assert!(line.ends_with("\" )"));
        let inner = &line[line.find('(').unwrap() + 1..line.rfind(')').unwrap()];
        let strings: Vec<&str> = inner.split('"').filter(|s| !s.trim().is_empty()).collect();
        assert_eq!(strings.len(), 2);
        assert_eq!(strings[0].len(), 255);
        assert_eq!(strings.concat(), rsa.dns_record());
        let ed = key("ed25519.pem");
        assert_eq!(character_strings(&ed.dns_record()).len(), 1);
        assert_eq!(character_strings(""), [""]);
        assert_eq!(character_strings(&"a".repeat(510)).len(), 2);
    }

    #[test]
    fn compare_published_records() {
        let rsa = key("rsa2048.pem");
        let ed = key("ed25519.pem");
        assert_eq!(compare(&rsa.dns_record(), &rsa), RecordMatch::Matches);
        // Without v= and k= (both optional), with folding white space inside p=.
        let p = der::base64_encode(rsa.public_key());
        let spaced = format!("p={} {}", &p[..100], &p[100..]);
        assert_eq!(compare(&spaced, &rsa), RecordMatch::Matches);
        // A bare RSAPublicKey is also a valid p=.
        let bare = der::rsa_public_key_from_record(rsa.public_key()).unwrap();
        let bare = format!("v=DKIM1; p={}", der::base64_encode(bare));
        assert_eq!(compare(&bare, &rsa), RecordMatch::Matches);
        assert_eq!(compare(&ed.dns_record(), &ed), RecordMatch::Matches);
        assert_eq!(compare("v=DKIM1; k=rsa; p=", &rsa), RecordMatch::Revoked);
        assert!(matches!(
            compare(&ed.dns_record(), &rsa),
            RecordMatch::Differs(_)
        ));
        assert!(matches!(
            compare("k=ed25519; p=AAAA", &ed),
            RecordMatch::Differs(_)
        ));
        assert!(matches!(
            compare("v=spf1 -all", &ed),
            RecordMatch::Differs(_)
        ));
        assert!(matches!(
            compare("k=rsa; v=DKIM1; p=AAAA", &rsa),
            RecordMatch::Differs(_)
        ));
    }
}
